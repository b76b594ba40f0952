"""Estimates are equivariant to the units and origins of the columns (issue: Trust II).

A column multiplied by ``c`` has its coefficient (and random-slope SD) divided by ``c``;
a fixed-only column shifted by ``a`` moves the intercept by ``-a beta``; nothing else
changes. The estimators scale (and, where that is a reparametrisation, centre) the
columns internally, so these hold to ~1e-8 relative whatever the user's units.
Aliasing follows lme4's rule (pivoted QR, relative 1e-7 on the norm): a column with a
small spread around a large mean (a year, a raw longitude) is a real covariate.
"""

import warnings

import numpy as np
import pytest

import pandas as pd

from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor, SplitSampleMixed,
                     StreamingMixed)
from skmixed._design.scaling import PredictorScaleWarning

SCALES = [(1e6, 0.0), (1e-6, 0.0), (1e3, 0.0), (1.0, 1e4), (1e-3, 1e4)]


def _data(binary=False, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 15)
    X = rng.normal(size=(g.size, 3))
    eta = X @ [0.5, -0.3, 0.2] + rng.normal(size=30)[g] + 0.4 * X[:, 0] * rng.normal(size=30)[g]
    if binary:
        y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(float)
    else:
        y = eta + rng.normal(size=g.size)
    return X, y, g


def _transformed(X, c, a):
    """Column 0 (the random-slope column when there is one) times c, column 1 (fixed only) plus a."""
    Xs = X.copy()
    Xs[:, 0] *= c
    Xs[:, 1] += a
    return Xs


def _back(fe, c, a):
    """Fixed effects of the transformed design mapped back to the original columns."""
    fe = np.asarray(fe, dtype=float).copy()
    fe[1] *= c
    fe[0] += fe[2] * a
    return fe


def _fit(make, X, y, g):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PredictorScaleWarning)
        return make().fit(X, y, groups=g)


ESTIMATORS = {
    "linear": (lambda: MixedLinearRegressor(), False, False),
    "linear_slope": (lambda: MixedLinearRegressor(random_slopes=[0]), False, True),
    "linear_ml_slope": (lambda: MixedLinearRegressor(reml=False, random_slopes=[0]), False, True),
    "logistic": (lambda: MixedLogisticRegressor(), True, False),
    "logistic_slope": (lambda: MixedLogisticRegressor(random_slopes=[0]), True, True),
    "logistic_agq": (lambda: MixedLogisticRegressor(nagq=5), True, False),
    "split_linear": (lambda: SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0), False,
                     False),
    "additive": (lambda: AdditiveMixedRegressor(), False, False),
}


@pytest.mark.parametrize("c,a", SCALES)
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_scale_and_shift_equivariance(name, c, a):
    warnings.simplefilter("error", UserWarning)  # nothing spurious (singular fit, separation, aliasing)
    make, binary, slope = ESTIMATORS[name]
    X, y, g = _data(binary)
    ref = _fit(make, X, y, g)
    m = _fit(make, _transformed(X, c, a), y, g)
    np.testing.assert_allclose(_back(m.fixed_effects_, c, a), ref.fixed_effects_, rtol=1e-8, atol=1e-10)
    if hasattr(ref, "theta_"):
        th = m.theta_.to_numpy().copy()
        if slope:
            th[1:] *= c  # the slope column's rows of Lambda
        np.testing.assert_allclose(th, ref.theta_.to_numpy(), rtol=1e-8, atol=1e-10)
    if hasattr(ref, "loglik_") and not (isinstance(ref, MixedLinearRegressor) and ref.reml):
        assert m.loglik_ == pytest.approx(ref.loglik_, rel=1e-10)
    if isinstance(ref, MixedLinearRegressor) and ref.reml:
        # lme4's REML criterion carries log|R_X|^2: the scaled column adds 2 log c
        assert m.reml_criterion_ == pytest.approx(ref.reml_criterion_ + 2 * np.log(c), rel=1e-10)
    if hasattr(ref, "sigma_"):
        assert m.sigma_ == pytest.approx(ref.sigma_, rel=1e-8)


@pytest.mark.parametrize("c,a", SCALES)
def test_streaming_scale_and_shift_equivariance(c, a):
    X, y, g = _data()
    ref, m = StreamingMixed(trace_every=100), StreamingMixed(trace_every=100)
    for rows in np.array_split(np.arange(g.size), 3):  # (the first row fixes the internal origin)
        ref.partial_fit(X[rows], y[rows], groups=g[rows])
        m.partial_fit(_transformed(X[rows], c, a), y[rows], groups=g[rows])
    np.testing.assert_allclose(_back(m.fixed_effects_, c, a), ref.fixed_effects_, rtol=1e-8)
    se = m.fixed_effects_se_.to_numpy() * np.r_[1.0, c, 1.0, 1.0]
    np.testing.assert_allclose(se[1:], ref.fixed_effects_se_.to_numpy()[1:], rtol=1e-8)
    assert m.sigma_ == pytest.approx(ref.sigma_, rel=1e-8)
    np.testing.assert_allclose(m.cov_re_["group"].to_numpy(), ref.cov_re_["group"].to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(m.predict(_transformed(X, c, a), groups=g), ref.predict(X, groups=g), rtol=1e-8)
    tr, tr0 = m.trace_, ref.trace_  # the trace reports the user's coefficients too
    assert len(tr) == len(tr0) >= 4
    np.testing.assert_allclose(tr["beta[x1]"], tr0["beta[x1]"], rtol=1e-8)
    np.testing.assert_allclose(tr["beta[(Intercept)]"] + a * tr["beta[x1]"], tr0["beta[(Intercept)]"], rtol=1e-8)


def test_random_slope_on_huge_column_reaches_the_same_optimum():
    X, y, g = _data()
    ref = MixedLinearRegressor(random_slopes=[0]).fit(X, y, groups=g)
    with pytest.warns(PredictorScaleWarning, match="very different scales"):
        m = MixedLinearRegressor(random_slopes=[0]).fit(_transformed(X, 1e6, 0.0), y, groups=g)
    assert m.converged_
    assert m.cov_re_["group"].iloc[1, 1] * 1e12 == pytest.approx(ref.cov_re_["group"].iloc[1, 1], rel=1e-8)


def test_partial_fit_is_scaled_like_fit():
    X, y, g = _data()
    Xs = _transformed(X, 1e6, 1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PredictorScaleWarning)
        full = MixedLinearRegressor(random_slopes=[0]).fit(Xs, y, groups=g)
    m = MixedLinearRegressor(random_slopes=[0])
    for rows in np.array_split(np.arange(g.size), 3):
        m.partial_fit(Xs[rows], y[rows], groups=g[rows])
    np.testing.assert_allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8)
    np.testing.assert_allclose(m.theta_, full.theta_, rtol=1e-7)


def test_shifted_covariates_are_not_aliased():
    """lme4 keeps x + 1e4 (residual 1e-4 of the norm); the old squared rule dropped it."""
    X, y, g = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "rank deficient" warning
        m = MixedLinearRegressor().fit(X + 1e4, y, groups=g)
    ref = MixedLinearRegressor().fit(X, y, groups=g)
    np.testing.assert_allclose(m.fixed_effects_.iloc[1:], ref.fixed_effects_.iloc[1:], rtol=1e-8)
    # an exact combination is still dropped, by name
    X3 = np.c_[X, X[:, 0] - 2 * X[:, 1]]
    with pytest.warns(UserWarning, match=r"dropping 1 column\(s\): \['x3'\]"):
        MixedLinearRegressor().fit(X3, y, groups=g)


def test_aliasing_rule_on_cross_products_matches_rows():
    from skmixed._solvers.lmm import aliased_keep, drop_aliased, rows_factor

    rng = np.random.default_rng(1)
    Z = rng.normal(size=(500, 3))
    X = np.c_[np.ones(500), Z + 1e4, Z[:, 0] + Z[:, 1], 2000 + 1e-3 * rng.normal(size=500)]
    keep_rows = aliased_keep(rows_factor(X))
    assert keep_rows.tolist() == [0, 1, 2, 3, 5]
    shift = np.r_[0.0, X[:, 1:].mean(axis=0)]
    Xc = X - shift
    assert drop_aliased(Xc.T @ Xc, shift=shift).tolist() == keep_rows.tolist()


ADDITIVE_FORMULAS = [
    "y ~ s(x0) + x1 + x2 + (1 | g)",  # the scaled column is a smooth, the shifted one parametric
    "y ~ s(x1) + x0 + x2 + (1 | g)",  # the shifted column is a smooth
    "y ~ s(x0) + s(x1, bs='ps') + x2 + (x2 | g)",
]


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("formula", ADDITIVE_FORMULAS)
def test_additive_smooths_are_equivariant(formula, discrete):
    """s(x) of a rescaled or shifted x is the same function of the data: identical fit."""
    X, y, g = _data()
    y = y + np.sin(2 * X[:, 0]) + np.cos(X[:, 1])

    def fit(Xm):
        df = pd.DataFrame({"x0": Xm[:, 0], "x1": Xm[:, 1], "x2": Xm[:, 2], "y": y, "g": g})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PredictorScaleWarning)
            return AdditiveMixedRegressor(formula=formula, discrete=discrete).fit(df), df

    ref, df0 = fit(X)
    for c, a in SCALES:
        m, df = fit(_transformed(X, c, a))
        scale = np.abs(ref.predict(df0)).max()
        assert np.abs(m.predict(df) - ref.predict(df0)).max() <= 1e-8 * scale
        assert m.sigma_ == pytest.approx(ref.sigma_, rel=1e-8)
        np.testing.assert_allclose(m.edf_, ref.edf_, rtol=1e-8)
        np.testing.assert_allclose(m.re_sd_.iloc[:1], ref.re_sd_.iloc[:1], rtol=1e-8)
        # a parametric column's coefficient transforms; the intercept absorbs a shift
        for name, k in (("x0", 0), ("x1", 1)):
            if name in ref.fixed_effects_.index:
                f = 1.0 / c if k == 0 else 1.0
                assert m.fixed_effects_[name] == pytest.approx(ref.fixed_effects_[name] * f, rel=1e-8)


# ---------------------------------------------------------------- non-Gaussian additive models (PQL fREML)
GLM_ADDITIVE_FORMULAS = [
    "y ~ s(x0) + x1 + x2 + (1 | g)",  # the scaled column a smooth, the shifted one parametric
    "y ~ s(x1) + x0 + x2 + (1 | g)",  # the shifted column a smooth (here linear: its sp at the bound)
    "y ~ s(x1) + x0 + x2 + (x0 | g)",  # the scaled column carries a random slope
    "y ~ s(x0) + s(x1, bs='ps') + x2 + (x2 | g)",
]


def _glm_data(family):
    X, y, g = _data(binary=family == "binomial")
    if family == "poisson":
        rng = np.random.default_rng(3)
        eta = 0.3 * X[:, 0] - 0.2 * X[:, 1] + 0.3 * np.sin(2 * X[:, 0]) + rng.normal(0, 0.5, 30)[g]
        y = rng.poisson(np.exp(eta)).astype(float)
    return X, y, g


def _fit_glm_additive(formula, family, discrete, Xm, y, g):
    df = pd.DataFrame({"x0": Xm[:, 0], "x1": Xm[:, 1], "x2": Xm[:, 2], "y": y, "g": g})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PredictorScaleWarning)
        warnings.simplefilter("error", UserWarning)  # and no ConvergenceWarning
        return AdditiveMixedRegressor(formula=formula, family=family, discrete=discrete).fit(df), df


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("family", ["binomial", "poisson"])
@pytest.mark.parametrize("formula", GLM_ADDITIVE_FORMULAS)
def test_glm_additive_is_equivariant(formula, family, discrete):
    """Binomial/Poisson additive models: the same fit (1e-8) whatever the columns' units and origins.

    The PQL outer loop runs to its fixed point (coefficients still by < 1e-10 relative), so where it
    stops does not depend on the path the transformed columns make it take."""
    X, y, g = _glm_data(family)
    ref, df0 = _fit_glm_additive(formula, family, discrete, X, y, g)
    assert ref.converged_
    slope = "(x0 | g)" in formula
    for c, a in SCALES:
        m, df = _fit_glm_additive(formula, family, discrete, _transformed(X, c, a), y, g)
        assert m.converged_
        p0 = ref.predict(df0, groups=g)
        np.testing.assert_allclose(m.predict(df, groups=g), p0, rtol=1e-8, atol=1e-8 * np.abs(p0).max())
        np.testing.assert_allclose(m.edf_, ref.edf_, rtol=1e-8, atol=1e-10)
        sd = m.re_sd_.copy()
        if slope:
            sd["s(g,x0)"] *= c
        np.testing.assert_allclose(sd, ref.re_sd_, rtol=1e-8)
        np.testing.assert_allclose(m.smoothing_params_.filter(like="s(x"), ref.smoothing_params_.filter(like="s(x"),
                                   rtol=1e-8)
        fe, fe0 = m.fixed_effects_, ref.fixed_effects_
        if "x0" in fe0.index:
            assert fe["x0"] * c == pytest.approx(fe0["x0"], rel=1e-8)
        if "x1" in fe0.index:  # the shifted column's slope, and the intercept absorbing the shift
            assert fe["x1"] == pytest.approx(fe0["x1"], rel=1e-8)
            assert fe["(Intercept)"] + a * fe["x1"] == pytest.approx(fe0["(Intercept)"], rel=1e-8, abs=1e-9)
        else:
            assert fe["(Intercept)"] == pytest.approx(fe0["(Intercept)"], rel=1e-8, abs=1e-9)
        # the score differs by the parametric columns' log-scale (as lme4's REML criterion)
        if "x0" not in fe0.index:
            assert m.reml_score_ == pytest.approx(ref.reml_score_, rel=1e-10)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_glm_additive_refinement_from_end_point_does_not_improve(family):
    """Restarting the PQL iteration at the end point's smoothing parameters ends at the same point
    with the same criterion (it was the fixed point, not a stall)."""
    import skmixed.additive as additive
    from skmixed._solvers.freml import fit_freml, fit_freml_local

    X, y, g = _glm_data(family)
    seen = {}

    def spy(lay, yy, pw, fam, *args, **kw):
        seen["fit"] = (lay, yy, pw, fam, fit_freml(lay, yy, pw, fam, *args, **kw))
        return seen["fit"][-1]

    additive.fit_freml = spy
    try:
        _fit_glm_additive("y ~ s(x0) + s(x1, bs='ps') + x2 + (x2 | g)", family, True, X, y, g)
    finally:
        additive.fit_freml = fit_freml
    lay, yy, pw, fam, res = seen["fit"]
    assert res.converged
    again = fit_freml_local(lay, yy, pw, fam, rho0=res.rho)
    assert again.converged
    assert again.reml >= res.reml - 1e-9 * abs(res.reml)
    np.testing.assert_allclose(again.rho, res.rho, atol=1e-6)
    np.testing.assert_allclose(again.beta_d, res.beta_d, rtol=1e-8, atol=1e-9)



@pytest.mark.parametrize("slope", [False, True])
@pytest.mark.parametrize("c,a", SCALES)
def test_streaming_logistic_scale_and_shift_equivariance(c, a, slope):
    """StreamingMixedLogistic puts the columns on an internal origin and scale (first row, first batch):
    a column x1e3 moved its estimates by 160% and a shift by 1e4 by 100% before."""
    from skmixed import StreamingMixedLogistic

    X, y, g = _data(binary=True)

    def run(Xm):
        m = StreamingMixedLogistic(max_rows_per_group=8, random_slopes=[0] if slope else None, trace_every=150)
        for rows in np.array_split(np.arange(g.size), 3):
            m.partial_fit(Xm[rows], y[rows], groups=g[rows])
        return m

    ref, m = run(X), run(_transformed(X, c, a))
    np.testing.assert_allclose(_back(m.fixed_effects_, c, a), ref.fixed_effects_, rtol=1e-8, atol=1e-10)
    th = m.theta_.copy()
    if slope:
        th[1:] *= c
    np.testing.assert_allclose(th, ref.theta_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.predict_proba(_transformed(X, c, a), groups=g), ref.predict_proba(X, groups=g),
                               rtol=1e-8, atol=1e-12)
    se = m.fixed_effects_se_.to_numpy() * np.r_[1.0, c, 1.0, 1.0]
    np.testing.assert_allclose(se[1:], ref.fixed_effects_se_.to_numpy()[1:], rtol=1e-6)
    assert m.trace_["beta[x1]"].to_numpy() == pytest.approx(ref.trace_["beta[x1]"].to_numpy(), rel=1e-8)
