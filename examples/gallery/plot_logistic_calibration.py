"""
Logistic mixed model: calibration and the herds
===============================================

Contagious bovine pleuropneumonia (lme4's ``cbpp``, one row per animal): the
probability that an animal shows the disease, by period, with a random intercept
per herd -- ``glmer(y ~ period + (1 | herd), family = binomial)``. Then, on a
larger simulated data set, the calibration of the predicted probabilities:
conditional on the groups' random effects, and for groups never seen.
"""

# %%
# The cbpp herds
# --------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import CalibrationDisplay

from skmixed import MixedLogisticRegressor
from skmixed.datasets import load_cbpp_bernoulli, make_big_grouped_data
from skmixed.plot import plot_caterpillar

cbpp = load_cbpp_bernoulli()
m = MixedLogisticRegressor.from_formula("y ~ period + (1 | herd)", cbpp)
print(m.summary())
ax = plot_caterpillar(m, factor="herd")
ax.set_xlabel("herd effect on the log-odds (BLUP)")

# %%
# Calibration, known and new groups
# ---------------------------------
# 20,000 rows in 200 groups; the model is fitted on the first 150 groups' rows
# (80 % of each group's rows) and checked on held-out rows of those groups
# (conditional predictions) and on the 50 unseen groups (population predictions).
df = make_big_grouped_data(20_000, 200, seed=1)
rng = np.random.default_rng(0)
seen = df["g"] < 150
train = seen & (rng.random(len(df)) < 0.8)
clf = MixedLogisticRegressor().fit(df.loc[train, ["x", "b"]], df.loc[train, "y_bin"], groups=df.loc[train, "g"])
held = seen & ~train
new = ~seen
p_known = clf.predict_proba(df.loc[held, ["x", "b"]], groups=df.loc[held, "g"])[:, 1]
p_new = clf.predict_proba(df.loc[new, ["x", "b"]], groups=df.loc[new, "g"])[:, 1]

fig, ax = plt.subplots(figsize=(5, 5))
CalibrationDisplay.from_predictions(df.loc[held, "y_bin"], p_known, n_bins=10, name="known groups (BLUPs)", ax=ax)
CalibrationDisplay.from_predictions(df.loc[new, "y_bin"], p_new, n_bins=10, name="new groups (population)", ax=ax)
ax.set_title("calibration of predict_proba")
print(f"accuracy, known groups: {clf.score(df.loc[held, ['x', 'b']], df.loc[held, 'y_bin'], groups=df.loc[held, 'g']):.3f}")
