# lme4's profile confidence intervals (confint.merMod, method = "profile") for logistic GLMMs, for
# tests/test_glmm_profile.py (run from tests/data: Rscript glmm_profile_reference.R).
suppressMessages({library(lme4); library(jsonlite)})
dd <- "../../skmixed/datasets/data"
cb <- read.csv(file.path(dd, "cbpp_bernoulli.csv"), stringsAsFactors = TRUE)
cb$period <- factor(cb$period)
cb$herd <- factor(cb$herd)
gctl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
ci <- function(m) {
  c0 <- suppressWarnings(suppressMessages(confint(m, method = "profile", oldNames = TRUE)))
  list(par = rownames(c0), lower = unname(c0[, 1]), upper = unname(c0[, 2]),
       theta = unname(getME(m, "theta")), beta = unname(fixef(m)), deviance = deviance(m))
}
out <- list()
out$cbpp_laplace <- ci(glmer(y ~ period + (1 | herd), cb, family = binomial, control = gctl))
out$cbpp_intercept <- ci(glmer(y ~ 1 + (1 | herd), cb, family = binomial, control = gctl))
out$cbpp_agq10 <- ci(glmer(y ~ period + (1 | herd), cb, family = binomial, nAGQ = 10, control = gctl))
# two crossed factors (1000 simulated rows: numpy seed 0, 40 levels of g x 25 rows, 6 levels of h, see
# tests/test_glmm_profile.py). (lme4's profile of y ~ x + (x | g) on these rows stops with "profiling
# detected new, lower deviance", so the random-slope model has no reference here.)
si <- read.csv("glmm_profile_sim.csv", colClasses = c(g = "factor", h = "factor"))
out$sim_crossed <- ci(glmer(y ~ x + (1 | g) + (1 | h), si, family = binomial, control = gctl))
# a correlated random slope (1500 simulated rows: numpy seed 5, 50 levels x 30 rows, covariance
# [[0.8, 0.2], [0.2, 0.5]], see tests/test_glmm_profile.py)
ss <- read.csv("glmm_profile_slope.csv", colClasses = c(g = "factor"))
m_slope <- glmer(y ~ x + (x | g), ss, family = binomial, control = gctl)
out$sim_slope <- c(ci(m_slope), list(minus2loglik = -2 * as.numeric(logLik(m_slope))))
out$versions <- list(lme4 = as.character(packageVersion("lme4")))
write_json(out, "glmm_profile_reference.json", digits = NA, auto_unbox = FALSE, pretty = TRUE)
