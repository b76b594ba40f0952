"""Outputs keep the input's pandas index (issue 14) without breaking scikit-learn's tools.

The rule: a *formula* model given a pandas DataFrame returns its per-row ``predict`` output as a
Series on the frame's index (what statsmodels' formula models do); models given arrays keep
scikit-learn's ndarray, and ``predict_proba`` / ``decision_function`` stay ndarrays (scorers index
them by column). ``predict_interval`` frames and random-effects tables are labelled by the input's
index and the level names.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmixed import (
    AdditiveMixedRegressor,
    MixedLinearRegressor,
    MixedLogisticRegressor,
    MixedPoissonRegressor,
    SplitSampleMixed,
    StreamingMixed,
)
from skmixed.datasets import load_sleepstudy

CV = GroupKFold(3)


@pytest.fixture(scope="module")
def sleep():
    df = load_sleepstudy()
    df = df.assign(hi=(df["Reaction"] > 300).astype(int), count=(df["Reaction"] // 50).astype(int))
    # a non-default index: labels that are not positions, shuffled
    rng = np.random.default_rng(0)
    df.index = pd.Index([f"r{k}" for k in rng.permutation(len(df))], name="row")
    return df


FORMULA_MODELS = {
    "linear": lambda: MixedLinearRegressor(formula="Reaction ~ Days + (Days | Subject)"),
    "logistic": lambda: MixedLogisticRegressor(formula="hi ~ Days + (1 | Subject)"),
    "poisson": lambda: MixedPoissonRegressor(formula="count ~ Days + (1 | Subject)"),
    "additive": lambda: AdditiveMixedRegressor(formula="Reaction ~ s(Days, k=5) + (1 | Subject)"),
    "streaming": lambda: StreamingMixed(formula="Reaction ~ Days + (1 | Subject)"),
    "split": lambda: SplitSampleMixed(MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)"),
                                      n_subsamples=2, random_state=0),
}
TARGET = {"logistic": "hi", "poisson": "count"}


@pytest.mark.parametrize("name", list(FORMULA_MODELS))
def test_formula_predictions_keep_the_frame_index(sleep, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = FORMULA_MODELS[name]().fit(sleep)
    new = sleep.iloc[::7]
    pred = m.predict(new)
    assert isinstance(pred, pd.Series)
    assert pred.index.equals(new.index)
    # the values are those of the same rows given in another order (aligned by label)
    back = m.predict(new.iloc[::-1])
    pd.testing.assert_series_equal(back.loc[new.index], pred, rtol=1e-12)
    # polars or other frames: an ndarray (no pandas index to keep)
    pl = pytest.importorskip("polars")
    out = m.predict(pl.from_pandas(new.reset_index(drop=True)))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, pred.to_numpy(), rtol=1e-12)


def test_array_models_keep_ndarrays_and_proba_stays_an_array(sleep):
    m = MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    assert isinstance(m.predict(sleep[["Days"]], groups=sleep["Subject"]), np.ndarray)
    lg = MixedLogisticRegressor(formula="hi ~ Days + (1 | Subject)").fit(sleep)
    assert isinstance(lg.predict_proba(sleep), np.ndarray)
    assert isinstance(lg.decision_function(sleep), np.ndarray)
    assert set(lg.predict(sleep).unique()) <= {0, 1}


def test_interval_and_random_effect_tables_are_labelled(sleep):
    m = MixedLinearRegressor(formula="Reaction ~ Days + (Days | Subject)").fit(sleep)
    iv = m.predict_interval(sleep.head(6))
    assert iv.index.equals(sleep.head(6).index)
    pred, std = m.predict(sleep.head(6), return_std=True)
    assert pred.index.equals(iv.index) and std.index.equals(iv.index)
    np.testing.assert_allclose(iv["fit"], pred, rtol=1e-12)
    re = m.random_effects_["Subject"]
    assert sorted(re.index) == sorted(sleep["Subject"].astype(str).unique())
    assert list(re.columns) == ["(Intercept)", "Days"]
    arr = MixedLinearRegressor().fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    assert arr.predict_interval(sleep[["Days"]].head(3)).index.equals(sleep.head(3).index)


@pytest.mark.parametrize("name", ["linear", "logistic", "additive", "streaming"])
def test_sklearn_tools_still_work_with_series_predictions(sleep, name):
    est = FORMULA_MODELS[name]()
    y = sleep[TARGET.get(name, "Reaction")]
    g = sleep["Subject"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = cross_val_predict(est, sleep, y, groups=g, cv=CV)
        assert isinstance(pred, np.ndarray) and pred.shape == (len(sleep),)
        scoring = ["accuracy", "roc_auc", "neg_log_loss"] if name == "logistic" else ["r2", "neg_mean_squared_error"]
        res = cross_validate(Pipeline([("model", est)]), sleep, y, groups=g, cv=CV, scoring=scoring)
    for s in scoring:
        assert np.isfinite(res[f"test_{s}"]).all()
    # per fold, cross_val_predict equals a fit on the training rows predicting the test rows
    train, test = next(CV.split(sleep, y, g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fold = FORMULA_MODELS[name]().fit(sleep.iloc[train], y.iloc[train])
    np.testing.assert_allclose(pred[test], np.asarray(fold.predict(sleep.iloc[test])), rtol=1e-9)


def test_grid_search_with_series_predictions(sleep):
    grid = GridSearchCV(MixedLinearRegressor(), {"formula": ["Reaction ~ 1 + (1 | Subject)",
                                                             "Reaction ~ Days + (1 | Subject)"]},
                        cv=CV, scoring="neg_mean_absolute_error")
    grid.fit(sleep, sleep["Reaction"], groups=sleep["Subject"])
    assert grid.best_params_["formula"] == "Reaction ~ Days + (1 | Subject)"
    assert isinstance(grid.predict(sleep), pd.Series)


# ----------------------------------------------------------------- set_output(transform="pandas")
ARRAY_MODELS = {
    "linear": lambda: MixedLinearRegressor(random_slopes=["Days"]),
    "logistic": lambda: MixedLogisticRegressor(random_slopes=["Days"]),
    "poisson": lambda: MixedPoissonRegressor(random_slopes=["Days"]),
    "additive": lambda: AdditiveMixedRegressor(smooth=["Days"], n_knots=5),
    "streaming": lambda: StreamingMixed(random_slopes=["Days"]),
    "split": lambda: SplitSampleMixed(MixedLinearRegressor(random_slopes=["Days"]), n_subsamples=2,
                                      random_state=0),
}


@pytest.mark.parametrize("name", list(ARRAY_MODELS))
def test_set_output_pandas_pipeline_keeps_column_names(sleep, name):
    X = sleep[["Days"]].assign(z=np.cos(np.arange(len(sleep))))
    y = sleep[TARGET.get(name, "Reaction")]
    pipe = Pipeline([("scale", StandardScaler().set_output(transform="pandas")), ("model", ARRAY_MODELS[name]())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X, y, model__groups=sleep["Subject"])
    model = pipe[-1]
    assert list(model.feature_names_in_) == ["Days", "z"]
    fe = model.fixed_effects_ if name != "split" else model.combined_estimator_.fixed_effects_
    assert "z" in list(fe.index)
    if name not in ("additive",):
        assert "Days" in list(fe.index)
        cov = model.cov_re_["Subject"]
        assert list(cov.index) == ["(Intercept)", "Days"]  # random_slopes found "Days" by name
    assert np.isfinite(np.asarray(pipe.predict(X))).all()
