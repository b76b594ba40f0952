"""
scikit-learn: pipelines and grouped cross-validation
====================================================

The estimators are scikit-learn estimators: they go into pipelines, grid search
and cross-validation. With ``group_column=`` the group labels travel as a column
of ``X`` (dropped before the fixed part), so plain ``cross_val_score`` works.

Two questions need two cross-validation schemes: ``KFold`` scores predictions for
groups the model has seen (the BLUPs help), ``GroupKFold`` for new groups (the
population prediction is all there is). A ridge regression that ignores the groups
is the baseline.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skmixed import MixedLinearRegressor
from skmixed.datasets import make_big_grouped_data

df = make_big_grouped_data(6_000, 60, seed=3)
X = df[["x", "b", "g"]]
y = df["y"]

mixed = MixedLinearRegressor(group_column="g")
ridge = make_pipeline(FunctionTransformer(lambda d: d[["x", "b"]]), StandardScaler(), Ridge())

scores = {}
for cv_name, cv, kw in [("KFold (seen groups)", KFold(5, shuffle=True, random_state=0), {}),
                        ("GroupKFold (new groups)", GroupKFold(5), {"groups": df["g"]})]:
    for name, est in [("MixedLinearRegressor", mixed), ("Ridge, groups ignored", ridge)]:
        s = cross_val_score(est, X, y, cv=cv, scoring="r2", **kw)
        scores[(cv_name, name)] = s
        print(f"{cv_name:<24} {name:<22} R^2 = {s.mean():.3f} +/- {s.std():.3f}")

fig, ax = plt.subplots(figsize=(6.5, 3.2))
labels = list(dict.fromkeys(k[0] for k in scores))
for j, name in enumerate(["MixedLinearRegressor", "Ridge, groups ignored"]):
    means = [scores[(c, name)].mean() for c in labels]
    sds = [scores[(c, name)].std() for c in labels]
    ax.bar(np.arange(len(labels)) + (j - 0.5) * 0.38, means, 0.38, yerr=sds, label=name, color=f"C{j}")
ax.set_xticks(range(len(labels)), labels)
ax.set_ylabel("cross-validated R$^2$")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
