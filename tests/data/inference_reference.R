# Reference numbers for tests/test_inference.py (run from tests/data: Rscript inference_reference.R).
# lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2; data are skmixed/datasets/data/*.csv.
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)})
dd <- "../../skmixed/datasets/data"
sl <- read.csv(file.path(dd, "sleepstudy.csv"), colClasses = c(Subject = "factor"))
dy <- read.csv(file.path(dd, "dyestuff.csv"), stringsAsFactors = TRUE)
pe <- read.csv(file.path(dd, "penicillin.csv"), stringsAsFactors = TRUE)
ctl <- lmerControl(optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12))
tab <- function(m, ddf) {
  s <- coef(summary(m, ddf = ddf))
  list(term = rownames(s), estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
       df = unname(s[, "df"]), t = unname(s[, "t value"]), p = unname(s[, "Pr(>|t|)"]),
       theta = unname(getME(m, "theta")), sigma = sigma(m))
}
aov3 <- function(m, ddf) {
  a <- anova(m, type = 3, ddf = ddf)
  list(term = rownames(a), sumsq = a[["Sum Sq"]], meansq = a[["Mean Sq"]], numdf = a[["NumDF"]],
       dendf = a[["DenDF"]], F = a[["F value"]], p = a[["Pr(>F)"]])
}
ci <- function(m, method) {
  c0 <- suppressMessages(confint(m, method = method, oldNames = TRUE))
  list(par = rownames(c0), lower = unname(c0[, 1]), upper = unname(c0[, 2]))
}
out <- list()
m_sl <- lmer(Reaction ~ Days + (Days | Subject), sl, control = ctl)
m_sl0 <- lmer(Reaction ~ Days + (1 | Subject), sl, control = ctl)
m_sl_ml <- lmer(Reaction ~ Days + (Days | Subject), sl, REML = FALSE, control = ctl)
m_pe <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pe, control = ctl)
m_dy <- lmer(Yield ~ 1 + (1 | Batch), dy, control = ctl)
out$sleepstudy_satterthwaite <- tab(m_sl, "Satterthwaite")
out$sleepstudy_kenward_roger <- tab(m_sl, "Kenward-Roger")
out$sleepstudy_ml_satterthwaite <- tab(m_sl_ml, "Satterthwaite")
out$sleepstudy0_satterthwaite <- tab(m_sl0, "Satterthwaite")
out$penicillin_satterthwaite <- tab(m_pe, "Satterthwaite")
out$dyestuff_satterthwaite <- tab(m_dy, "Satterthwaite")
out$sleepstudy_anova3 <- aov3(m_sl, "Satterthwaite")
out$sleepstudy_anova3_kr <- aov3(m_sl, "Kenward-Roger")
out$sleepstudy_profile <- ci(m_sl, "profile")
out$sleepstudy_wald <- ci(m_sl, "Wald")
out$dyestuff_profile <- ci(m_dy, "profile")
out$sleepstudy0_profile <- ci(m_sl0, "profile")
a <- suppressMessages(anova(m_sl0, m_sl))
out$sleepstudy_lrt <- list(model = rownames(a), npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik,
                           deviance = a$deviance, Chisq = a$Chisq, Df = a$Df, p = a[["Pr(>Chisq)"]])
m_fe <- lm(Reaction ~ Days, sl)
m_slA <- lmer(Reaction ~ 1 + (1 | Subject), sl, control = ctl)
a2 <- suppressMessages(anova(m_slA, m_sl0))
out$sleepstudy_lrt_fixed <- list(model = rownames(a2), npar = a2$npar, AIC = a2$AIC, BIC = a2$BIC,
                                 logLik = a2$logLik, deviance = a2$deviance, Chisq = a2$Chisq, Df = a2$Df,
                                 p = a2[["Pr(>Chisq)"]])
out$versions <- list(lme4 = as.character(packageVersion("lme4")), lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")))
write_json(out, "inference_reference.json", digits = NA, auto_unbox = FALSE, pretty = TRUE)
# logistic GLMM: likelihood-ratio test between two glmer fits (Laplace) on the 0/1 cbpp rows
cb <- read.csv(file.path(dd, "cbpp_bernoulli.csv"), stringsAsFactors = TRUE)
cb$period <- factor(cb$period)
gctl <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
g0 <- glmer(y ~ 1 + (1 | herd), cb, family = binomial, control = gctl)
g1 <- glmer(y ~ period + (1 | herd), cb, family = binomial, control = gctl)
a3 <- anova(g0, g1)
out2 <- list(cbpp_lrt = list(npar = a3$npar, AIC = a3$AIC, BIC = a3$BIC, logLik = a3$logLik, deviance = a3$deviance,
                             Chisq = a3$Chisq, Df = a3$Df, p = a3[["Pr(>Chisq)"]]))
write_json(out2, "inference_reference_glmm.json", digits = NA, auto_unbox = FALSE, pretty = TRUE)
