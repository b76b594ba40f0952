"""A mixed model inside scikit-learn: Pipeline + GroupKFold + GridSearchCV with routed groups.

Two ways to hand the group labels to the estimator:
1. metadata routing (``set_fit_request(groups=True)``), the scikit-learn ≥1.4 mechanism;
2. ``group_column=``: the labels are a column of X, so no routing is needed at all.

Run: ``python examples/sklearn_pipeline.py [--rows N]``.
"""

import argparse

import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmixed import MixedLinearRegressor
from skmixed.datasets import make_big_grouped_data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--groups", type=int, default=500)
    args = ap.parse_args(argv)
    df = make_big_grouped_data(args.rows, args.groups, seed=0)
    X, y, g = df[["x", "b"]], df["y"], df["g"]

    # 1. metadata routing: groups go to the splitter *and* to the estimator's fit
    sklearn.set_config(enable_metadata_routing=True)
    lmm = MixedLinearRegressor().set_fit_request(groups=True).set_score_request(groups=False)
    pipe = Pipeline([("scale", StandardScaler()), ("lmm", lmm)])
    grid = GridSearchCV(pipe, {"lmm__reml": [True, False], "lmm__random_slopes": [None, [0]]},
                        cv=GroupKFold(n_splits=5))
    grid.fit(X, y, groups=g)
    sklearn.set_config(enable_metadata_routing=False)
    print("routing: best", grid.best_params_, f"R^2 (new groups) = {grid.best_score_:.4f}")
    print(grid.best_estimator_[-1].summary())

    # 2. group_column: the labels ride along in X; nothing to route
    ct = ColumnTransformer([("scale", StandardScaler(), ["x", "b"])], remainder="passthrough",
                           verbose_feature_names_out=False).set_output(transform="pandas")
    pipe2 = Pipeline([("prep", ct), ("lmm", MixedLinearRegressor(group_column="g"))])
    grid2 = GridSearchCV(pipe2, {"lmm__reml": [True, False]}, cv=GroupKFold(n_splits=5))
    grid2.fit(df[["x", "b", "g"]], y, groups=g)
    print("group_column: best", grid2.best_params_, f"R^2 = {grid2.best_score_:.4f}")


if __name__ == "__main__":
    main()
