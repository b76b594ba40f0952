# Data and reference fits for tests/test_stream_order_small.py: small R data sets streamed in
# the order they are stored or sorted by a covariate (StreamingMixed / StreamingMixedLogistic).
# Run from tests/data:  Rscript stream_order_refs.R
# Writes bacteria_stream.csv (MASS::bacteria, stored order: grouped by ID; y01 = (y == "y"),
# late = (week > 2), drug = (trt != "placebo")), chickweight_stream.csv (datasets::ChickWeight)
# and stream_order_refs.json (the full-data fits the final stream estimates must match).
suppressMessages(library(lme4))
library(jsonlite)
b <- MASS::bacteria
b <- data.frame(ID = as.character(b$ID), drug = as.numeric(b$trt != "placebo"),
                late = as.numeric(b$week > 2), y01 = as.numeric(b$y == "y"))
write.csv(b, "bacteria_stream.csv", row.names = FALSE)
cw <- data.frame(weight = ChickWeight$weight, Time = ChickWeight$Time, Chick = as.character(ChickWeight$Chick))
write.csv(cw, "chickweight_stream.csv", row.names = FALSE)
ctl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10))
gb <- glmer(y01 ~ drug + late + (1 | ID), b, family = binomial, control = ctl)
lc <- lmer(weight ~ Time + (Time | Chick), cw, REML = FALSE,
           control = lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5, rhoend = 1e-10)))
out <- list(
  bacteria = list(fixef = unname(fixef(gb)), se = unname(sqrt(diag(as.matrix(vcov(gb))))),
                  var_ID = unname(VarCorr(gb)$ID[1, 1]), deviance = -2 * as.numeric(logLik(gb))),
  chickweight = list(fixef = unname(fixef(lc)), se = unname(sqrt(diag(as.matrix(vcov(lc))))),
                     Phi = unname(as.matrix(VarCorr(lc)$Chick))[1:2, 1:2], sigma = sigma(lc),
                     loglik = unname(as.numeric(logLik(lc)))))
write_json(out, "stream_order_refs.json", digits = 12, auto_unbox = TRUE, pretty = TRUE)
