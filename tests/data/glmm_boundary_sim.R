# Simulated GLMM data sets and polished glmer fits for tests/test_glmm_boundary.py (issue 21).
# Run from tests/data:  Rscript glmm_boundary_sim.R
# Writes glmm_boundary_sim.csv (all data sets, one `ds` id column) and glmm_boundary_sim_glmer.json.
# Every glmer fit is polished: bobyqa with rhoend 1e-10, maxfun 1e5, a tight PIRLS tolerance (tolPwrss, so
# the Laplace deviance is evaluated at converged modes), then restarted from its own end point; the better
# logLik of the two is stored.
suppressMessages(library(lme4))
library(jsonlite)
set.seed(20261202)

sims <- list()
add <- function(d, family, formula, nAGQ, info) {
  id <- length(sims) + 1L
  d$ds <- id
  sims[[id]] <<- list(data = d, family = family, formula = formula, nAGQ = nAGQ, info = info)
}
make_groups <- function(G, nmin, nmax) {
  sizes <- if (nmin == nmax) rep(nmin, G) else sample(nmin:nmax, G, replace = TRUE)
  factor(rep(seq_len(G), sizes))
}
ranef2 <- function(G, sd0, sd1, rho) {
  S <- matrix(c(sd0^2, rho * sd0 * sd1, rho * sd0 * sd1, sd1^2), 2)
  matrix(rnorm(2 * G), G) %*% chol(S)
}
rhos <- seq(-0.9, 0.9, length.out = 10)
# 40 logistic data sets, correlated random intercept and slope, Laplace
configs <- list(list(G = 40, nmin = 10, nmax = 10, sd0 = 1.0, sd1 = 0.5),
                list(G = 30, nmin = 3, nmax = 5, sd0 = 1.0, sd1 = 0.8),    # small groups
                list(G = 50, nmin = 8, nmax = 8, sd0 = 0.8, sd1 = 0.02),   # near-zero slope variance
                list(G = 20, nmin = 2, nmax = 10, sd0 = 1.5, sd1 = 1.0))   # small, unbalanced groups
for (cf in configs) for (rho in rhos) {
  g <- make_groups(cf$G, cf$nmin, cf$nmax)
  n <- length(g)
  x <- round(rnorm(n), 4)
  b <- ranef2(cf$G, cf$sd0, cf$sd1, rho)
  eta <- -0.3 + 0.7 * x + b[g, 1] + b[g, 2] * x
  y <- rbinom(n, 1, plogis(eta))
  add(data.frame(g = as.integer(g), x = x, y = y, t = 1), "binomial", "y ~ x + (1 + x | g)", 1L,
      list(G = cf$G, sd0 = cf$sd0, sd1 = cf$sd1, rho = rho))
}
# 10 logistic data sets, random intercept only, nAGQ = 9
for (k in 1:10) {
  G <- c(15, 25, 40, 60, 20, 30, 45, 12, 35, 50)[k]
  sd0 <- c(0, 0.05, 0.3, 0.7, 1.5, 0.02, 1.0, 2.0, 0.1, 0.5)[k]
  g <- make_groups(G, 2, 12)
  n <- length(g)
  x <- round(rnorm(n), 4)
  eta <- 0.2 - 0.5 * x + rnorm(G, sd = sd0)[g]
  y <- rbinom(n, 1, plogis(eta))
  add(data.frame(g = as.integer(g), x = x, y = y, t = 1), "binomial", "y ~ x + (1 | g)", 9L,
      list(G = G, sd0 = sd0))
}
# 10 Poisson data sets, correlated random intercept and slope, exposure offset, Laplace
for (k in 1:10) {
  rho <- rhos[k]
  G <- c(30, 20, 40, 25, 15, 35, 30, 20, 45, 25)[k]
  sd1 <- c(0.3, 0.02, 0.5, 0.3, 0.02, 0.4, 0.01, 0.6, 0.2, 0.3)[k]
  g <- make_groups(G, 2, 10)
  n <- length(g)
  x <- round(rnorm(n), 4)
  t <- round(runif(n, 0.5, 2), 3)
  b <- ranef2(G, 0.5, sd1, rho)
  eta <- log(t) + 0.2 + 0.4 * x + b[g, 1] + b[g, 2] * x
  y <- rpois(n, exp(eta))
  add(data.frame(g = as.integer(g), x = x, y = y, t = t), "poisson", "y ~ x + offset(log(t)) + (1 + x | g)", 1L,
      list(G = G, sd0 = 0.5, sd1 = sd1, rho = rho))
}

fit_one <- function(s) {
  d <- s$data
  d$g <- factor(d$g)
  fam <- if (s$family == "binomial") binomial else poisson
  ctrl <- function(tolp) glmerControl(optimizer = "bobyqa", tolPwrss = tolp, check.conv.singular = "ignore",
                                      optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
  fit <- function(start, tolp) {
    suppressWarnings(suppressMessages(
      glmer(as.formula(s$formula), data = d, family = fam, nAGQ = s$nAGQ, control = ctrl(tolp), start = start)))
  }
  tolp <- 1e-12
  f1 <- tryCatch(fit(NULL, tolp), error = function(e) NULL)
  if (is.null(f1)) { tolp <- 1e-9; f1 <- fit(NULL, tolp) }
  f2 <- tryCatch(fit(list(theta = getME(f1, "theta"), fixef = fixef(f1)), tolp), error = function(e) NULL)
  best <- if (!is.null(f2) && as.numeric(logLik(f2)) > as.numeric(logLik(f1))) f2 else f1
  list(ds = d$ds[1], family = s$family, formula = s$formula, nAGQ = s$nAGQ, info = s$info,
       nobs = nrow(d), tolPwrss = tolp,
       logLik = as.numeric(logLik(best)), logLik_first = as.numeric(logLik(f1)),
       theta = unname(getME(best, "theta")), fixef = unname(fixef(best)), singular = isSingular(best))
}
res <- lapply(sims, fit_one)
dat <- do.call(rbind, lapply(sims, function(s) s$data[, c("ds", "g", "x", "y", "t")]))
write.csv(dat, "glmm_boundary_sim.csv", row.names = FALSE)
writeLines(toJSON(list(engine = paste("lme4", packageVersion("lme4")), fits = res), auto_unbox = TRUE,
                  digits = NA, pretty = FALSE), "glmm_boundary_sim_glmer.json")
