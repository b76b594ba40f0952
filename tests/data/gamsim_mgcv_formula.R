# Reference for AdditiveMixedRegressor.from_formula with mgcv terms (issue 19, acceptance 4a).
# gamSim(1) data, covariates rounded to 200 equally spaced values each (so that bam's discretization
# keeps every value and its padding of the discretized frame is not needed), a 20-level random effect,
# a numeric parametric column z and a 3-level factor f coded 0/1/2.
# Run from tests/data: Rscript gamsim_mgcv_formula.R
suppressMessages(library(mgcv)); library(jsonlite)
set.seed(19)
d <- gamSim(1, n = 3000, dist = "normal", scale = 2, verbose = FALSE)
for (v in c("x0", "x1", "x2", "x3")) d[[v]] <- round(d[[v]] * 199) / 199
d$fac <- factor(sample(1:20, nrow(d), replace = TRUE))
d$z <- round(runif(nrow(d)) * 199) / 199
re <- rnorm(20)
d$f <- sample(0:2, nrow(d), replace = TRUE)
d$y <- d$y + re[as.integer(d$fac)] + 0.8 * d$z + 0.5 * d$f + (d$f == 1) * sin(3 * d$x1)
d <- d[, c("y", "x0", "x1", "x2", "x3", "z", "f", "fac")]
write.csv(d, "gamsim_mgcv_formula.csv", row.names = FALSE)
df <- d; df$fF <- factor(df$f)
fitone <- function(f, discrete, data = d) {
  b <- bam(f, data = data, discrete = discrete, method = "fREML")
  list(call = paste(deparse(f), collapse = ""), discrete = discrete, engine = paste("mgcv", packageVersion("mgcv")),
       edf = setNames(as.list(sapply(b$smooth, function(s) sum(b$edf[s$first.para:s$last.para]))),
                      sapply(b$smooth, function(s) s$label)), sp = as.list(b$sp), sig2 = b$sig2, fREML = unname(b$gcv.ubre),
       coef_parametric = as.list(coef(b)[seq_len(b$nsdf)]), fitted = unname(fitted(b)))
}
f1 <- y ~ s(x0, k = 10, bs = "cr") + s(x1, bs = "ps") + te(x2, x3) + s(fac, bs = "re") + z
f2 <- y ~ s(x0, k = 6, bs = "cr") + s(x1, k = 12, bs = "ps") + te(x2, x3, k = c(4, 6), bs = c("cr", "ps")) + z
f3 <- y ~ fF + s(x1, by = fF, k = 8, bs = "cr") + s(x0, bs = "cr") + s(fac, bs = "re")
f4 <- y ~ s(x2, bs = "cr") + s(x3, bs = "cr") + ti(x2, x3, k = 5) + s(x0, by = z, bs = "cr") + s(fac, bs = "re")
out <- list(main_discrete = fitone(f1, TRUE), main_exact = fitone(f1, FALSE),
            margins_discrete = fitone(f2, TRUE), by_factor_discrete = fitone(f3, TRUE, df),
            ti_numeric_by_discrete = fitone(f4, TRUE))
write_json(out, "gamsim_mgcv_formula_bam.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
for (o in out) { cat(o$call, o$discrete, "\n"); print(unlist(o$edf)); print(unlist(o$sp)) }
