# Reference for MixedLinearRegressor(weights="precision"): lmer's weights= (residual variance sigma^2 / w_i)
# on sleepstudy with known positive weights (stored beside this script in sleepstudy_weights.csv).
# Tight optimiser settings (bobyqa rhoend 1e-12) so theta is at the optimum to ~1e-8, not 1e-5.
# Run from tests/data: Rscript sleepstudy_precision_weights.R
suppressMessages(library(lme4)); library(jsonlite)
d <- sleepstudy
d$w <- 0.5 + (d$Days %% 3) + 0.75 * (as.integer(d$Subject) %% 2)
write.csv(d, "sleepstudy_weights.csv", row.names = FALSE)
fitone <- function(name, f, reml) {
  m <- lmer(f, d, REML = reml, weights = w,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5)))
  list(name = name, engine = paste("lme4", packageVersion("lme4")), call = deparse(f), REML = reml,
       weights = "w = 0.5 + Days %% 3 + 0.75 * (as.integer(Subject) %% 2)",
       nobs = nobs(m), fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       sigma = sigma(m), theta = as.list(getME(m, "theta")),
       logLik = as.numeric(logLik(m)), deviance_or_REMLcrit = if (reml) unname(REMLcrit(m)) else deviance(m))
}
out <- list()
out$reml <- fitone("reml", Reaction ~ Days + (Days | Subject), TRUE)
out$ml <- fitone("ml", Reaction ~ Days + (Days | Subject), FALSE)
out$intercept_ml <- fitone("intercept_ml", Reaction ~ Days + (1 | Subject), FALSE)
write_json(out, "sleepstudy_precision_weights.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
