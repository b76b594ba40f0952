# Two 19-row, 5-group data sets where a fit ending on one face of the boundary (an SD at 0) is a
# local branch: lmer's ML optimum of y ~ x + z + (x | g) is elsewhere on the boundary (set a) or
# at every variance 0 (set b). lme4 1.1-31, bobyqa with rhoend 1e-10.
# Run from tests/data:  Rscript small_boundary_lmm.R   (reads small_boundary_lmm.csv, writes .json)
suppressMessages({library(lme4); library(jsonlite)})
d <- read.csv("small_boundary_lmm.csv")
out <- list()
for (s in c("a", "b")) {
  m <- lmer(y ~ x + z + (x | g), subset(d, set == s), REML = FALSE,
            control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                                  check.conv.singular = "ignore"))
  out[[s]] <- list(logLik = as.numeric(logLik(m)), theta = unname(getME(m, "theta")), fixef = unname(fixef(m)))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "small_boundary_lmm.json")
