# fREML scores (gcv.ubre) of bam's known-scale families on gamsim_re.csv, for
# tests/test_additive.py::test_known_scale_reml_score_against_bam.
# Run from the repository root:  Rscript tests/data/gamsim_freml_score_bam.R  (mgcv 1.8-41)
library(mgcv)
library(jsonlite)
d <- read.csv("skmixed/datasets/data/gamsim_re.csv")
d$fac <- factor(d$fac)
d$yc <- pmax(round(d$y), 0)
f <- ~ s(x0, bs = "cr") + s(x1, bs = "cr") + s(x2, bs = "cr") + s(x3, bs = "cr") + s(fac, bs = "re")
pois <- bam(update(f, yc ~ .), family = poisson, data = d, discrete = TRUE)
bin <- bam(update(f, yb ~ .), family = binomial, data = d, discrete = TRUE)
out <- list(engine = paste("mgcv", packageVersion("mgcv")),
            poisson = list(call = "bam(yc ~ ..., family=poisson, discrete=TRUE), yc = pmax(round(y), 0)",
                           reml = pois$gcv.ubre[[1]], deviance = pois$deviance, edf = sum(pois$edf)),
            binomial = list(call = "bam(yb ~ ..., family=binomial, discrete=TRUE)",
                            reml = bin$gcv.ubre[[1]], deviance = bin$deviance, edf = sum(bin$edf)))
write_json(out, "tests/data/gamsim_freml_score_bam.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
