# Reference for the fREML global optimum (issue 19, acceptance 4b): a covariate with 7 distinct values and a
# near-linear signal; the fREML profile over the smoothing parameter has two minima (log sp ~ 4.5 and ~ 9.5 on
# skmixed's scale), the better one at the larger smoothing parameter.  bam's own Newton (from its start) stops
# at the worse one on these data (sp 100.55, fREML 566.2095); "global" is the better one found on bam's criterion.  Data: freml_two_minima.csv, made by
#   rng = numpy.random.default_rng(3); x = rng.integers(0, 7, 400); y = 0.4x + 0.2 sin(2.2x) + 0.04 (x-3)^2 + N(0,1)
# Run from tests/data: Rscript freml_two_minima.R
suppressMessages(library(mgcv)); library(jsonlite)
d <- read.csv("freml_two_minima.csv")
b <- bam(y ~ s(x, k = 7, bs = "cr"), data = d, discrete = TRUE, method = "fREML")
# the fREML score at a grid of fixed smoothing parameters: the profile with its two minima
sps <- exp(seq(-2, 12, by = 0.5))
prof <- sapply(sps, function(s) bam(y ~ s(x, k = 7, bs = "cr"), data = d, discrete = TRUE, sp = s)$gcv.ubre)
# the better minimum, located on mgcv's own criterion (fixed sp, 1-D search on log sp)
score <- function(l) bam(y ~ s(x, k = 7, bs = "cr"), data = d, discrete = TRUE, sp = exp(l))$gcv.ubre
opt <- optimize(score, c(7, 12), tol = 1e-6)
bg <- bam(y ~ s(x, k = 7, bs = "cr"), data = d, discrete = TRUE, sp = exp(opt$minimum))
out <- list(call = "bam(y ~ s(x, k = 7, bs = 'cr'), data = d, discrete = TRUE, method = 'fREML')",
            engine = paste("mgcv", packageVersion("mgcv")), sp = unname(b$sp), fREML = unname(b$gcv.ubre),
            edf = unname(sum(b$edf[-1])), sig2 = b$sig2, fitted = unname(fitted(b)),
            profile_sp = sps, profile_fREML = unname(prof),
            global = list(sp = exp(opt$minimum), fREML = opt$objective, edf = unname(sum(bg$edf[-1])),
                          sig2 = bg$sig2, fitted = unname(fitted(bg))))
write_json(out, "freml_two_minima_bam.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
cat(b$sp, b$gcv.ubre, sum(b$edf[-1]), "\n", exp(opt$minimum), opt$objective, sum(bg$edf[-1]), "\n")
print(cbind(log(sps), prof))
