# Profile intervals with correlated random slopes whose profiles jump between branches (issue:
# a warm-started re-optimisation followed a local branch and gave a too narrow .sigma interval;
# females only crashed the root search). lme4 1.1-31, tight Nelder-Mead so lmer's optimum is reached.
# Run from tests/data:  Rscript orthodont_profile.R   (writes orthodont.csv, orthodont_profile.json)
suppressMessages({library(lme4); library(jsonlite)})
data(Orthodont, package = "nlme")
d <- data.frame(distance = Orthodont$distance, age = Orthodont$age,
                Subject = as.character(Orthodont$Subject), Sex = as.character(Orthodont$Sex))
write.csv(d, "orthodont.csv", row.names = FALSE)
d$Sex <- factor(d$Sex, levels = c("Male", "Female"))
ctrl <- lmerControl(optimizer = "Nelder_Mead", optCtrl = list(FtolAbs = 1e-12, FtolRel = 1e-14, maxfun = 1e5))
pr <- function(m) {
  ci <- suppressWarnings(suppressMessages(confint(m, method = "profile", oldNames = TRUE)))
  list(names = I(rownames(ci)), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}
out <- list(
  both = pr(lmer(distance ~ age * Sex + (age | Subject), d, control = ctrl)),
  female = pr(lmer(distance ~ age + (age | Subject), subset(d, Sex == "Female"), control = ctrl)))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "orthodont_profile.json")
