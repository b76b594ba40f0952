"""
Crossed random effects: the penicillin assay
============================================

Six penicillin samples were each assayed on 24 plates: ``plate`` and ``sample``
are *crossed* grouping factors, ``lmer(diameter ~ 1 + (1 | plate) + (1 | sample))``.
skmixed fits any number of crossed or nested factors without a dense design.
"""

import matplotlib.pyplot as plt

from skmixed import MixedLinearRegressor
from skmixed.datasets import load_penicillin
from skmixed.plot import plot_caterpillar

df = load_penicillin()
m = MixedLinearRegressor.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
print(m.summary())

fig, axes = plt.subplots(1, 2, figsize=(8, 5), gridspec_kw={"width_ratios": [1, 1]})
plot_caterpillar(m, factor="plate", ax=axes[0])
plot_caterpillar(m, factor="sample", ax=axes[1])
axes[0].set_title("plate")
axes[1].set_title("sample")
fig.tight_layout()
