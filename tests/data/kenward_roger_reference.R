# Kenward-Roger reference numbers for tests/test_kenward_roger.py (run from tests/data:
# Rscript kenward_roger_reference.R). pbkrtest's vcovAdj (the adjusted covariance Phi_A), Lb_ddf (the
# one-contrast df) and KRmodcomp (the scaled F test), and lmerTest's ddf = "Kenward-Roger" tables.
# Also writes sleepstudy_unbalanced.csv: sleepstudy without 30 rows drawn with set.seed(18), and a
# three-level factor `phase` (Days 0-2, 3-5, 6-9), so that the adjustment of Phi is not zero (it is
# zero on the balanced sleepstudy) and the F scaling of a two-df test is not 1.
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)})
dd <- "../../skmixed/datasets/data"
sl <- read.csv(file.path(dd, "sleepstudy.csv"), colClasses = c(Subject = "factor"))
pe <- read.csv(file.path(dd, "penicillin.csv"), stringsAsFactors = TRUE)
pa <- read.csv(file.path(dd, "pastes.csv"), stringsAsFactors = TRUE)
set.seed(18)
su <- sl[-sample(nrow(sl), 30), ]
su$phase <- c("a", "b", "c")[findInterval(su$Days, c(0, 3, 6))]
write.csv(su, "sleepstudy_unbalanced.csv", row.names = FALSE)
su <- read.csv("sleepstudy_unbalanced.csv", colClasses = c(Subject = "factor"), stringsAsFactors = TRUE)
ctl <- lmerControl(optCtrl = list(xtol_abs = 1e-10, ftol_abs = 1e-12))
one <- function(m) {
  s <- coef(summary(m, ddf = "Kenward-Roger"))
  PhiA <- vcovAdj(m)
  p <- length(fixef(m))
  a <- anova(m, type = 3, ddf = "Kenward-Roger")
  kr <- lapply(seq_len(nrow(a)), function(i) {
    # the same L lmerTest builds for the term (its anova uses pbkrtest's KRmodcomp on it)
    L <- lmerTest:::get_contrasts_type3(m)[[rownames(a)[i]]]
    st <- KRmodcomp(m, L)$stats
    list(ndf = st$ndf, ddf = st$ddf, Fstat = st$Fstat, FstatU = st$FstatU, F_scaling = st$F.scaling,
         p = st$p.value)
  })
  names(kr) <- rownames(a)
  list(term = rownames(s), estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
       df = unname(s[, "df"]), t = unname(s[, "t value"]), p = unname(s[, "Pr(>|t|)"]),
       se_unadjusted = unname(sqrt(diag(as.matrix(vcov(m))))),
       PhiA = unname(as.matrix(PhiA)), Phi = unname(as.matrix(vcov(m))),
       theta = unname(getME(m, "theta")), sigma = sigma(m),
       anova = list(term = rownames(a), sumsq = a[["Sum Sq"]], meansq = a[["Mean Sq"]], numdf = a[["NumDF"]],
                    dendf = a[["DenDF"]], F = a[["F value"]], p = a[["Pr(>F)"]]),
       krmodcomp = kr)
}
out <- list()
out$sleepstudy <- one(lmer(Reaction ~ Days + (Days | Subject), sl, control = ctl))
out$sleepstudy_unbalanced <- one(lmer(Reaction ~ Days + phase + (Days | Subject), su, control = ctl))
out$sleepstudy_unbalanced0 <- one(lmer(Reaction ~ Days + (1 | Subject), su, control = ctl))
out$sleepstudy_unbalanced_uncorr <- one(lmer(Reaction ~ Days + (Days || Subject), su, control = ctl))
out$penicillin <- one(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pe, control = ctl))
out$pastes <- one(lmer(strength ~ 1 + (1 | batch) + (1 | sample), pa, control = ctl))
out$versions <- list(lme4 = as.character(packageVersion("lme4")), lmerTest = as.character(packageVersion("lmerTest")),
                     pbkrtest = as.character(packageVersion("pbkrtest")))
write_json(out, "kenward_roger_reference.json", digits = NA, auto_unbox = FALSE, pretty = TRUE)
