"""
Shrinkage: per-subject regressions against the mixed model
==========================================================

Fitting one regression per subject over-fits subjects with noisy data; the mixed
model pulls every subject's line towards the population line, the more so the
less its data say. The arrows run from each subject's own least-squares line to
its line in the mixed model.
"""

import matplotlib.pyplot as plt
import numpy as np

from skmixed import MixedLinearRegressor
from skmixed.datasets import load_sleepstudy

df = load_sleepstudy()
m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)

# per-subject least squares
ols = {s: np.polyfit(d["Days"], d["Reaction"], 1)[::-1] for s, d in df.groupby("Subject")}
# mixed model: population effects plus each subject's BLUPs
blup = m.random_effects_["Subject"]
fe = m.fixed_effects_

fig, ax = plt.subplots(figsize=(6, 5))
for s, (a, b) in ols.items():
    a2 = fe["(Intercept)"] + blup.loc[s, "(Intercept)"]
    b2 = fe["Days"] + blup.loc[s, "Days"]
    ax.annotate("", xy=(a2, b2), xytext=(a, b), arrowprops=dict(arrowstyle="->", color="0.4", lw=0.8))
    ax.plot(a, b, "o", color="C0", ms=4)
    ax.plot(a2, b2, "o", color="C1", ms=4)
ax.plot(fe["(Intercept)"], fe["Days"], "k+", ms=14, mew=2)
ax.plot([], [], "o", color="C0", label="per-subject least squares")
ax.plot([], [], "o", color="C1", label="mixed model (BLUP)")
ax.plot([], [], "k+", ms=10, mew=2, label="population")
ax.set_xlabel("intercept (ms)")
ax.set_ylabel("slope (ms / day)")
ax.legend(fontsize=8)
print(m.varcorr_)
