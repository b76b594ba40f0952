# Reference fits for tests/test_crossed_newton.py: three crossed scalar terms (one a random slope)
# with integer frequency weights, fitted by lme4 on the rows replicated by their weights.
# Run from tests/data: Rscript crossed_weighted_lmer.R
suppressMessages(library(lme4)); library(jsonlite)
d <- read.csv("crossed_weighted.csv", stringsAsFactors = TRUE)
dx <- d[rep(seq_len(nrow(d)), d$w), ]
out <- list()
fitone <- function(name, f, reml) {
  m <- lmer(f, dx, REML = reml, control = lmerControl(optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12)))
  list(name = name, engine = paste("lme4", packageVersion("lme4")), call = deparse(f), REML = reml,
       nobs = nobs(m), fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       sigma = sigma(m), theta = as.list(getME(m, "theta")),
       logLik = as.numeric(logLik(m)), deviance_or_REMLcrit = if (reml) unname(REMLcrit(m)) else deviance(m),
       ranef_a = head(ranef(m)$a[[1]], 5), ranef_c = head(ranef(m)$c[[1]], 5))
}
f <- y ~ x + (1 | a) + (1 | b) + (0 + x | c)
out$reml <- fitone("reml", f, TRUE)
out$ml <- fitone("ml", f, FALSE)
write_json(out, "crossed_weighted_lmer.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
