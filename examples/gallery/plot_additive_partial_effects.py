"""
Additive mixed model: partial effects of smooths
================================================

mgcv's ``gamSim(1)`` test function with a random intercept for ``fac``:
``bam(y ~ s(x0) + s(x1) + s(x2) + s(x3) + s(fac, bs = "re"), discrete = TRUE)``.
Each panel is a smooth's partial effect with its 95 % pointwise band, as
``plot.gam`` draws it.
"""

import matplotlib.pyplot as plt

from skmixed import AdditiveMixedRegressor
from skmixed.datasets import load_gamsim_re

df = load_gamsim_re()
cols = ["x0", "x1", "x2", "x3"]
m = AdditiveMixedRegressor(smooth=cols).fit(df[cols], df["y"], groups=df["fac"])
print(m.summary())

fig, axes = plt.subplots(1, 4, figsize=(12, 3), sharey=True)
for c, ax in zip(cols, axes):
    m.plot_partial(c, ax=ax)
    ax.plot(df[c], df[c] * 0 + ax.get_ylim()[0], "|", color="0.6", ms=4)  # rug
fig.tight_layout()
