"""
Split-sample fitting: subsamples combined
=========================================

:class:`~skmixed.SplitSampleMixed` fits a model on disjoint subsamples of the
groups -- in parallel processes, or on a Dask cluster -- and combines the
estimates (Clark 2019, "Mixed models for big data"). The figure shows each
subsample's estimate of the effect of ``x`` and the between-group standard
deviation with 95 % intervals, the combination, and the fit on all rows.
"""

import matplotlib.pyplot as plt
import numpy as np

from skmixed import MixedLinearRegressor, SplitSampleMixed
from skmixed.datasets import make_big_grouped_data

df = make_big_grouped_data(40_000, 400, seed=0)
X, y, g = df[["x", "b"]], df["y"], df["g"]
split = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=8, random_state=0).fit(X, y, groups=g)
full = MixedLinearRegressor().fit(X, y, groups=g)

sub = split.subsample_estimates_
print(sub[["parts", "n_rows", "x", "se[x]", "var[g.(Intercept)]"]].round(4).to_string(index=False))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
k = np.arange(len(sub))
ax = axes[0]
ax.errorbar(sub["x"], k, xerr=1.96 * sub["se[x]"], fmt="o", color="0.5", ms=4, label="subsamples")
ax.errorbar(split.fixed_effects_["x"], -1.5, xerr=1.96 * split.fixed_effects_se_["x"], fmt="D", color="C0",
            label="combined")
ax.errorbar(full.fixed_effects_["x"], -2.5, xerr=1.96 * full.fixed_effects_se_["x"], fmt="s", color="C1",
            label="all rows")
ax.axvline(0.5, color="k", ls="--", lw=0.8)
ax.set_yticks([])
ax.set_xlabel("effect of x (truth 0.5 dashed)")
ax.legend(fontsize=8)
ax = axes[1]
ax.plot(np.sqrt(sub["var[g.(Intercept)]"]), k, "o", color="0.5", ms=4)
ax.plot(float(np.sqrt(split.cov_re_["g"].iloc[0, 0])), -1.5, "D", color="C0")
ax.plot(float(np.sqrt(full.cov_re_["g"].iloc[0, 0])), -2.5, "s", color="C1")
ax.axvline(0.5, color="k", ls="--", lw=0.8)
ax.set_yticks([])
ax.set_xlabel("between-group SD (truth 0.5 dashed)")
fig.tight_layout()
print(split.fixed_effects_.round(4))
