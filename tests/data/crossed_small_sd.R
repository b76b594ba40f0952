# lme4 reference for tests/test_linear_reference.py::test_crossed_small_sd_reaches_lme4
# (two crossed random intercepts, the second SD close to 0; ML). lme4 1.1-31, bobyqa polished.
suppressMessages(library(lme4))
d <- read.csv("crossed_small_sd.csv"); d$g0 <- factor(d$g0); d$g1 <- factor(d$g1)
m <- lmer(y ~ x + (1 | g0) + (1 | g1), d, REML = FALSE,
          control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12)))
cat(sprintf("deviance %.8f\n", deviance(m))); print(getME(m, "theta"), digits = 10)
