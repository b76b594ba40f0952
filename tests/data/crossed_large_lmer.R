suppressMessages(library(lme4)); library(jsonlite)
d <- read.csv("crossed_large.csv", stringsAsFactors = TRUE)
out <- list()
fitone <- function(name, f, reml) {
  m <- lmer(f, d, REML = reml, control = lmerControl(optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12)))
  vc <- as.data.frame(VarCorr(m))
  list(name = name, engine = paste("lme4", packageVersion("lme4")), call = deparse(f), REML = reml,
       nobs = nobs(m), fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       varcorr = vc, sigma = sigma(m), theta = as.list(getME(m, "theta")),
       logLik = as.numeric(logLik(m)), deviance_or_REMLcrit = if (reml) unname(REMLcrit(m)) else deviance(m))
}
out$crossed3 <- fitone("crossed3", y ~ x + (1 | a) + (1 | b) + (1 | c), TRUE)
out$slopes <- fitone("slopes", y ~ x + (1 | a) + (1 + x | b), TRUE)
out$crossed3_ml <- fitone("crossed3_ml", y ~ x + (1 | a) + (1 | b) + (1 | c), FALSE)
write_json(out, "crossed_large_lmer.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
