# Reference glmer fits (lme4) for crossed / nested GLMMs with VECTOR random terms (issue 16),
# tests/test_glmm_vector_reference.py. Run from tests/data:  Rscript glmm_vector_crossed.R
# Writes verbagg_subset.csv, glmm_vector_sim.csv and glmm_vector_refs.json (grouseticks.csv is
# written by glmm_poisson_refs.R). Every fit is polished as in glmm_poisson_refs.R: bobyqa with
# rhoend 1e-10, maxfun 1e5, tolPwrss 1e-12, restarted from its own end point, the better logLik kept.
# The seconds of one default glmer() call (the user's call, default control) are stored beside each.
suppressMessages(library(lme4))
library(jsonlite)
data(VerbAgg, package = "lme4")
data(grouseticks, package = "lme4")

# VerbAgg: the first 120 respondents (all 24 items): crossed id x item, a random Gender effect per item
va <- VerbAgg[as.integer(VerbAgg$id) <= 120, c("r2", "Anger", "Gender", "btype", "situ", "id", "item")]
va$id <- droplevels(va$id)
va$y <- as.integer(va$r2 == "Y")
va$male <- as.integer(va$Gender == "M")
write.csv(va[, c("y", "Anger", "male", "btype", "situ", "id", "item")], "verbagg_subset.csv", row.names = FALSE)
va <- read.csv("verbagg_subset.csv", colClasses = c("integer", "numeric", "numeric", "factor", "factor",
                                                     "factor", "factor"))

# simulated crossed binomial proportions (trials as weights) with an offset and a correlated
# random slope on the larger factor: cbind(s, n - s) ~ x + offset(o) + (1 + x | subj) + (1 | item)
set.seed(16)
n <- 3000; J <- 150; K <- 40
subj <- sample.int(J, n, replace = TRUE); item <- sample.int(K, n, replace = TRUE)
x <- rnorm(n); o <- 0.3 * rnorm(n); trials <- sample(1:4, n, replace = TRUE)
S <- matrix(c(0.8, 0.25, 0.25, 0.35), 2)
b <- MASS::mvrnorm(J, c(0, 0), S)
eta <- -0.4 + 0.6 * x + o + b[subj, 1] + b[subj, 2] * x + rnorm(K, 0, 0.5)[item]
s <- rbinom(n, trials, plogis(eta))
sim <- data.frame(s = s, trials = trials, x = round(x, 6), o = round(o, 6), subj = subj, item = item)
write.csv(sim, "glmm_vector_sim.csv", row.names = FALSE)
sim <- read.csv("glmm_vector_sim.csv")
sim$subj <- factor(sim$subj); sim$item <- factor(sim$item)

gt <- read.csv("grouseticks.csv")
gt$YEAR <- factor(gt$YEAR); gt$BROOD <- factor(gt$BROOD); gt$LOCATION <- factor(gt$LOCATION)
gt$cyear <- as.numeric(as.character(gt$YEAR)) - 96

ctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-12, check.conv.singular = "ignore",
                     optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
polish <- function(formula, data, family) {
  f1 <- glmer(formula, data = data, family = family, control = ctrl)
  f2 <- tryCatch(glmer(formula, data = data, family = family, control = ctrl,
                       start = list(theta = getME(f1, "theta"), fixef = fixef(f1))), error = function(e) NULL)
  if (!is.null(f2) && as.numeric(logLik(f2)) > as.numeric(logLik(f1))) f2 else f1
}
out <- function(f, call, secs) {
  list(call = call, engine = paste("lme4", packageVersion("lme4")), logLik = as.numeric(logLik(f)),
       fixef = as.list(fixef(f)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(f))))),
       theta = as.list(getME(f, "theta")), nobs = nobs(f), glmer_default_seconds = secs)
}
timed <- function(formula, data, family) {
  unname(system.time(glmer(formula, data = data, family = family))["elapsed"])
}
refs <- list()
fm <- y ~ Anger + male + btype + situ + (1 | id) + (1 + male | item)
refs$verbagg_item_slope <- out(polish(fm, va, binomial), paste(deparse(fm), collapse = ""), timed(fm, va, binomial))
fm <- cbind(s, trials - s) ~ x + offset(o) + (1 + x | subj) + (1 | item)
refs$sim_trials_offset <- out(polish(fm, sim, binomial), paste(deparse(fm), collapse = ""), timed(fm, sim, binomial))
fm <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 + cyear | LOCATION)
refs$grouseticks_location_slope <- out(polish(fm, gt, poisson), paste(deparse(fm), collapse = ""), timed(fm, gt, poisson))
writeLines(toJSON(refs, auto_unbox = TRUE, digits = NA, pretty = TRUE), "glmm_vector_refs.json")
