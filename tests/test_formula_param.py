"""``formula=`` as a constructor parameter: clone, CV, grid search, pickling, default routing."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor, SplitSampleMixed,
                     StreamingMixed)
from skmixed.datasets import load_cbpp_bernoulli, load_gamsim_re, load_sleepstudy

CV = GroupKFold(3)


def _cases():
    sleep = load_sleepstudy()
    cbpp = load_cbpp_bernoulli()
    cbpp_X = pd.get_dummies(cbpp["period"], prefix="period", drop_first=True, dtype=float)
    cbpp_X.columns = [c.replace("_", "") for c in cbpp_X.columns]
    gam = load_gamsim_re()
    return {
        "linear": (MixedLinearRegressor(formula="Reaction ~ Days + (Days | Subject)"),
                   MixedLinearRegressor(random_slopes=["Days"], group_column="Subject"),
                   sleep, sleep[["Days", "Subject"]], sleep["Reaction"], sleep["Subject"],
                   ["r2", "neg_mean_squared_error"]),
        "logistic": (MixedLogisticRegressor(formula="y ~ period + (1 | herd)"),
                     MixedLogisticRegressor(group_column="herd"),
                     cbpp, cbpp_X.assign(herd=cbpp["herd"]), cbpp["y"], cbpp["herd"],
                     ["accuracy", "neg_log_loss"]),
        "additive": (AdditiveMixedRegressor(formula="y ~ x0 + x1 + x2 + (1 | fac)", smooth=["x0", "x1"]),
                     AdditiveMixedRegressor(smooth=["x0", "x1"], group_column="fac"),
                     gam, gam[["x0", "x1", "x2", "fac"]], gam["y"], gam["fac"],
                     ["r2", "neg_mean_squared_error"]),
        "streaming": (StreamingMixed(formula="Reaction ~ Days + (1 + Days | Subject)", n_train=60),
                      StreamingMixed(random_slopes=["Days"], group_column="Subject", n_train=60),
                      sleep, sleep[["Days", "Subject"]], sleep["Reaction"], sleep["Subject"],
                      ["r2", "neg_mean_squared_error"]),
    }


@pytest.mark.parametrize("name", ["linear", "logistic", "additive", "streaming"])
def test_formula_model_cv_scores_equal_the_array_model(name):
    # acceptance 1: clone keeps the formula, so every fold fits the formula's model (not every column
    # of the frame): the scores equal those of the same model given as arrays
    f_est, a_est, data, X, y, g, scoring = _cases()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = cross_validate(f_est, data, y, groups=g, cv=CV, scoring=scoring)
        a = cross_validate(a_est, X, y, groups=g, cv=CV, scoring=scoring)
    for s in scoring:
        assert np.all(np.isfinite(f[f"test_{s}"]))
        np.testing.assert_allclose(f[f"test_{s}"], a[f"test_{s}"], rtol=0, atol=1e-12)
    if name != "logistic":
        assert f["test_r2"].max() < 0.95  # not a fit of the response on itself


def test_grid_search_over_formulas_picks_the_better_one():
    df = load_sleepstudy()
    grid = GridSearchCV(MixedLinearRegressor(), {"formula": ["Reaction ~ 1 + (1 | Subject)",
                                                             "Reaction ~ Days + (1 | Subject)"]}, cv=CV)
    grid.fit(df, df["Reaction"], groups=df["Subject"])
    assert grid.best_params_["formula"] == "Reaction ~ Days + (1 | Subject)"
    s = grid.cv_results_["mean_test_score"]
    assert s[1] > s[0] + 0.2
    assert grid.best_estimator_.formula_ == "Reaction ~ Days + (1 | Subject)"
    assert list(grid.best_estimator_.fixed_effects_.index) == ["(Intercept)", "Days"]


@pytest.mark.parametrize("make", [
    lambda: MixedLinearRegressor(formula="Reaction ~ Days + (Days || Subject)"),
    lambda: MixedLogisticRegressor(formula="I(Reaction > 300) ~ Days + (1 | Subject)"),
    lambda: AdditiveMixedRegressor(formula="Reaction ~ Days + (1 | Subject)", smooth=["Days"], n_knots=5),
    lambda: StreamingMixed(formula="Reaction ~ Days + (1 | Subject)"),
    lambda: SplitSampleMixed(MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)"), n_subsamples=2,
                             random_state=0),
], ids=["linear", "logistic", "additive", "streaming", "split_sample"])
def test_clone_params_and_pickle_keep_the_formula(make):
    df = load_sleepstudy()
    est = make()
    c = clone(est)
    assert c.get_params()["formula" if not isinstance(est, SplitSampleMixed) else "estimator__formula"] \
        == est.get_params()["formula" if not isinstance(est, SplitSampleMixed) else "estimator__formula"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = c.fit(df)
    p1 = fitted.predict(df)
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict(df), p1)
    # refit of a fresh clone on a polars-free pandas copy gives the same predictions
    np.testing.assert_array_equal(clone(est).fit(df).predict(df), p1)


def test_refit_with_arrays_forgets_the_formula():
    df = load_sleepstudy()
    m = MixedLinearRegressor(formula="Reaction ~ Days + I(Days^2) + (1 | Subject)").fit(df)
    assert m.formula_spec() is not None and list(m.fixed_effects_.index)[-1] == "I(Days ** 2)"
    m.set_params(formula=None).fit(df[["Days"]].to_numpy(), df["Reaction"], groups=df["Subject"])
    assert m.formula_spec() is None and not hasattr(m, "formula_")
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x0"]
    with pytest.raises(ValueError, match="X has 2 features"):
        m.predict(df[["Days", "Reaction"]].to_numpy())
    # and a formula model needs a data frame
    with pytest.raises(TypeError, match="DataFrame"):
        MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)").fit(df.to_numpy())


def test_from_formula_is_the_constructor_parameter():
    df = load_sleepstudy()
    a = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df, reml=False)
    b = MixedLinearRegressor(formula="Reaction ~ Days + (Days | Subject)", reml=False).fit(df)
    assert a.get_params() == b.get_params()
    np.testing.assert_array_equal(a.fixed_effects_, b.fixed_effects_)
    # y given: used instead of the formula's response column
    c = MixedLinearRegressor(formula="Reaction ~ Days + (Days | Subject)", reml=False).fit(df, 2 * df["Reaction"])
    np.testing.assert_allclose(c.fixed_effects_, 2 * b.fixed_effects_, rtol=1e-6)


def test_formula_excludes_group_column_and_random_slopes():
    df = load_sleepstudy()
    with pytest.raises(ValueError, match="group_column"):
        MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)", group_column="Subject").fit(df)
    with pytest.raises(ValueError, match="random_slopes"):
        MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)", random_slopes=["Days"]).fit(df)


def test_groups_routed_to_a_formula_fit_must_agree_with_the_formula():
    df = load_sleepstudy()
    est = MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)")
    ref = clone(est).fit(df)
    same = clone(est).fit(df, groups=df["Subject"])
    np.testing.assert_array_equal(same.fixed_effects_, ref.fixed_effects_)
    other = df["Subject"].sample(frac=1, random_state=0).to_numpy()
    with pytest.raises(ValueError, match="differ from the formula's grouping"):
        clone(est).fit(df, groups=other)


# ----------------------------------------------------------------- routing by default (acceptance 2)
@pytest.mark.parametrize("est", [
    MixedLinearRegressor(),
    MixedLogisticRegressor(),
    AdditiveMixedRegressor(smooth=[0], n_knots=5),
    StreamingMixed(n_train=50),
    SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0),
], ids=["linear", "logistic", "additive", "streaming", "split_sample"])
def test_pipeline_cross_validate_routes_groups_without_request_calls(est, routing):
    rng = np.random.default_rng(0)
    n, J = 600, 30
    g = rng.integers(0, J, n)
    X = rng.normal(size=(n, 2)) * [1.0, 10.0] + [0.0, 5.0]
    eta = 0.8 * X[:, 0] + 0.05 * X[:, 1] + rng.normal(0, 1.0, J)[g]
    y = (eta + rng.normal(size=n) > 0).astype(int) if isinstance(est, MixedLogisticRegressor) else eta + \
        rng.normal(size=n)
    pipe = Pipeline([("scale", StandardScaler()), ("model", est)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no NoGroupsWarning: the groups reached fit
        warnings.filterwarnings("ignore", message=".*singular.*")
        res = cross_validate(pipe, X, y, params={"groups": g}, cv=CV)
    assert np.all(np.isfinite(res["test_score"]))
    # an explicit request still overrides the default
    pipe2 = Pipeline([("scale", StandardScaler()), ("model", clone(est).set_fit_request(groups=False))])
    with pytest.warns(UserWarning, match="no groups"):
        cross_validate(pipe2, X, y, params={"groups": g}, cv=GroupKFold(2))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_every_score_takes_sample_weight():
    df = load_sleepstudy()
    w = np.linspace(0.5, 2, len(df))
    for est in [MixedLinearRegressor(), StreamingMixed(), AdditiveMixedRegressor(n_knots=5),
                SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0)]:
        est.fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
        s1 = est.score(df[["Days"]], df["Reaction"], groups=df["Subject"])
        s2 = est.score(df[["Days"]], df["Reaction"], groups=df["Subject"], sample_weight=w)
        assert np.isfinite(s1) and np.isfinite(s2) and s1 != s2


def test_additive_mgcv_formula_as_a_parameter():
    df = load_gamsim_re()
    formula = "y ~ s(x0, k=8) + s(x1, bs='ps') + x2 + (1 | fac)"
    est = AdditiveMixedRegressor(formula=formula)
    a = clone(est).fit(df)
    b = AdditiveMixedRegressor.from_formula(formula, df)
    assert a.formula_ == formula and list(a.edf_.index) == list(b.edf_.index) == ["s(x0)", "s(x1)", "s(fac)"]
    np.testing.assert_array_equal(a.predict(df), b.predict(df))
    with pytest.raises(ValueError, match="do not pass smooth"):
        AdditiveMixedRegressor(formula=formula, smooth=["x0"]).fit(df)


def test_interaction_coefficients_are_named_as_lme4():
    # R names the coefficient of recipe*temperature's interaction 'recipeB:temperatureT185'
    from skmixed._design.formula import r_style_name

    assert r_style_name("recipe[T.B]:temperature[T.T185]") == "recipeB:temperatureT185"
    assert r_style_name("Sex[T.Male]:age") == "SexMale:age"
    assert r_style_name("age:Sex[T.Male]") == "age:SexMale"
    assert r_style_name("C(g)[T.a]:x") == "ga:x"
    assert r_style_name("g[T.a:b]") == "ga:b"  # a ':' inside a level stays
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"f": rng.choice(["a", "b"], 200), "x": rng.normal(size=200),
                       "g": np.repeat(np.arange(20), 10)})
    df["y"] = df.x + (df.f == "b") * df.x + rng.normal(size=200) + np.repeat(rng.normal(size=20), 10)
    m = MixedLinearRegressor.from_formula("y ~ f * x + (1 | g)", df)
    assert list(m.fixed_effects_.index) == ["(Intercept)", "fb", "x", "fb:x"]
