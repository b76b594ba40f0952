# References for issue 14: random-only columns ((0 + x | g), (x | g) without a fixed x) and offset()
# in lmer formulas, and random-only columns in glmer (logistic). Tight optimiser settings (bobyqa,
# rhoend 1e-12) so the optimum is reached to ~1e-8. Data: lme4's sleepstudy (skmixed ships the same
# table) plus an offset column defined below, and a simulated binary set written to random_only_glmm.csv.
# Run from tests/data: Rscript random_only_offset.R
suppressMessages(library(lme4)); library(jsonlite)
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5))
# glmer: also a tight PIRLS tolerance (tolPwrss): at the default 1e-7 its Laplace deviance is ~1e-4 above
# the converged one on these data
gctl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13,
                     optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5))
d <- sleepstudy
d$off <- 3 * d$Days + 7 * (as.integer(d$Subject) %% 3)   # offset column (also rebuilt in the tests)
vc <- function(m) {
  v <- as.data.frame(VarCorr(m))
  setNames(as.list(v$vcov), paste(v$grp, v$var1, ifelse(is.na(v$var2), "", v$var2), sep = "|"))
}
lmm <- function(f, reml) {
  m <- lmer(f, d, REML = reml, control = ctl)
  list(engine = paste("lme4", packageVersion("lme4")), call = deparse(f), REML = reml,
       fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       sigma = sigma(m), theta = as.list(getME(m, "theta")), vcov = vc(m),
       logLik = as.numeric(logLik(m)),
       deviance_or_REMLcrit = if (reml) unname(REMLcrit(m)) else deviance(m),
       ranef = lapply(ranef(m)[[1]], function(col) col),
       fitted_head = unname(fitted(m)[1:5]))
}
out <- list()
out$slope_only_reml <- lmm(Reaction ~ 1 + (0 + Days | Subject), TRUE)
out$slope_only_ml <- lmm(Reaction ~ 1 + (0 + Days | Subject), FALSE)
out$corr_slope_reml <- lmm(Reaction ~ 1 + (Days | Subject), TRUE)
out$corr_slope_ml <- lmm(Reaction ~ 1 + (Days | Subject), FALSE)
out$offset_reml <- lmm(Reaction ~ Days + offset(off) + (1 | Subject), TRUE)
out$offset_slope_ml <- lmm(Reaction ~ Days + offset(off) + (Days | Subject), FALSE)

# logistic: simulated, 40 groups of 25 rows, x varies within groups, a random slope on x and no fixed x
set.seed(14)
J <- 40; nj <- 25
g <- rep(sprintf("g%02d", 1:J), each = nj)
x <- round(rnorm(J * nj), 4)
b0 <- rnorm(J, 0, 0.8); b1 <- rnorm(J, 0, 1.0)
eta <- 0.3 + b0[as.integer(factor(g))] + b1[as.integer(factor(g))] * x
y <- rbinom(J * nj, 1, plogis(eta))
gd <- data.frame(y = y, x = x, g = g)
write.csv(gd, "random_only_glmm.csv", row.names = FALSE)
glmm <- function(f) {
  m <- glmer(f, gd, family = binomial, control = gctl)
  list(engine = paste("lme4", packageVersion("lme4")), call = deparse(f),
       fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       theta = as.list(getME(m, "theta")), vcov = vc(m),
       logLik = as.numeric(logLik(m)), deviance = deviance(m))
}
out$glmm_slope_only <- glmm(y ~ 1 + (0 + x | g))
out$glmm_corr_slope <- glmm(y ~ 1 + (x | g))
write_json(out, "random_only_offset.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
