"""
Sleep deprivation: a first linear mixed model
=============================================

Reaction times of 18 subjects over 10 days of sleep deprivation (lme4's
``sleepstudy``). Each subject gets a random intercept and a random slope on
``Days`` -- ``lmer(Reaction ~ Days + (Days | Subject))`` -- and skmixed returns
lme4's estimates.
"""

# %%
# Fit from an lme4 formula
# ------------------------
import matplotlib.pyplot as plt

from skmixed import MixedLinearRegressor
from skmixed.datasets import load_sleepstudy
from skmixed.plot import plot_caterpillar, plot_group_lines

df = load_sleepstudy()
m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
print(m.summary())

# %%
# Caterpillar plot of the subjects' random effects
# ------------------------------------------------
# Each subject's BLUP (conditional mode) with a 95 % conditional interval,
# sorted: subjects whose interval clears zero differ from the average subject.
fig, axes = plt.subplots(1, 2, figsize=(8, 4.5), sharey=False)
plot_caterpillar(m, term="(Intercept)", ax=axes[0])
plot_caterpillar(m, term="Days", ax=axes[1])
fig.tight_layout()

# %%
# Fitted lines per subject
# ------------------------
# Orange: the subject's own line (population line plus its BLUPs); dashed grey:
# the population line, which is also what ``predict`` returns for a subject the
# model has never seen.
fig = plot_group_lines(m, df, x="Days", y="Reaction", group="Subject", ncols=6, max_groups=18)
