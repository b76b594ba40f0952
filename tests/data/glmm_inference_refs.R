# Reference profile intervals and likelihood-ratio tables of glmer fits with an offset or a Poisson
# family (lme4 1.1-31), for tests/test_glmm_inference_family.py.
# Run from tests/data:  Rscript glmm_inference_refs.R   (reads epil.csv; writes glmm_inference_refs.json)
suppressMessages(library(lme4))
library(jsonlite)
ep <- read.csv("epil.csv")
ep$trt <- factor(ep$trt, levels = c("placebo", "progabide"))
ep$subject <- factor(ep$subject)
ctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12, optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
refs <- list()
prof <- function(f) {
  ci <- confint(f, method = "profile", level = 0.95)
  list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]), logLik = as.numeric(logLik(f)))
}
# Poisson with an exposure offset
f1 <- glmer(y ~ trt + lage + V4 + offset(log(rate_base)) + (1 | subject), data = ep, family = poisson,
            control = ctrl)
refs$epil_offset_profile <- prof(f1)
# nested models: likelihood-ratio table
f0 <- glmer(y ~ lage + V4 + offset(log(rate_base)) + (1 | subject), data = ep, family = poisson, control = ctrl)
a <- anova(f0, f1)
refs$epil_anova <- list(npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik, deviance = a$deviance,
                        Chisq = a$Chisq, Df = a$Df, p = a[["Pr(>Chisq)"]])
# binomial with an offset: y > 0 on epil as a Bernoulli response, offset log(rate_base)
ep$any <- as.numeric(ep$y > 2)
f2 <- glmer(any ~ lage + V4 + offset(0.3 * log(rate_base)) + (1 | subject), data = ep, family = binomial,
            control = ctrl)
refs$epil_logistic_offset_profile <- prof(f2)
writeLines(toJSON(refs, digits = NA, auto_unbox = TRUE, pretty = TRUE), "glmm_inference_refs.json")
