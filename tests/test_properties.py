"""Property tests (issue 8): the fit transforms as the data do.

Permuting rows, relabelling groups, affine maps of y, scaling X columns and duplicating rows versus
frequency weights of 2 give the correspondingly transformed fit.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skmixed import MixedLinearRegressor

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _data(seed, n=240, J=12):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    g[:J] = np.arange(J)
    X = rng.normal(size=(n, 2))
    y = 2 + X @ [0.7, -0.4] + rng.normal(0, 1.0, J)[g] + rng.normal(0, 1.0, n)
    return X, y, g


def _fit(X, y, g, **kw):
    w = kw.pop("sample_weight", None)
    return MixedLinearRegressor(random_slopes=[0], **kw).fit(X, y, groups=g, sample_weight=w)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_row_permutation_invariance(seed):
    X, y, g = _data(seed)
    perm = np.random.default_rng(seed + 1).permutation(len(y))
    a, b = _fit(X, y, g), _fit(X[perm], y[perm], g[perm])
    np.testing.assert_allclose(a.fixed_effects_, b.fixed_effects_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-5, atol=1e-6)
    assert a.reml_criterion_ == pytest.approx(b.reml_criterion_, abs=1e-8)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_group_relabelling(seed):
    X, y, g = _data(seed)
    names = np.array([f"level-{k}" for k in np.random.default_rng(seed).permutation(12)])
    a, b = _fit(X, y, g), _fit(X, y, names[g])
    np.testing.assert_allclose(a.fixed_effects_, b.fixed_effects_, rtol=1e-7, atol=1e-9)
    re_a = a.random_effects_["group"].to_numpy()
    re_b = b.random_effects_["group"].loc[names].to_numpy()
    np.testing.assert_allclose(re_a, re_b, rtol=1e-5, atol=1e-7)


@SETTINGS
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0), shift=st.floats(-1e3, 1e3))
def test_affine_response(seed, scale, shift):
    X, y, g = _data(seed)
    a, b = _fit(X, y, g), _fit(X, scale * y + shift, g)
    expect = scale * a.fixed_effects_.to_numpy()
    expect[0] += shift
    np.testing.assert_allclose(b.fixed_effects_.to_numpy(), expect, rtol=1e-5, atol=1e-6 * scale)
    assert b.sigma_ == pytest.approx(scale * a.sigma_, rel=1e-5)
    np.testing.assert_allclose(b.theta_, a.theta_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.cov_re_["group"], scale**2 * a.cov_re_["group"], rtol=1e-4,
                               atol=1e-6 * scale**2)


@SETTINGS
@given(seed=st.integers(0, 10_000), s=st.floats(0.05, 20.0))
def test_column_scaling(seed, s):
    X, y, g = _data(seed)
    X2 = X.copy()
    X2[:, 1] *= s
    a, b = _fit(X, y, g), _fit(X2, y, g)
    assert b.fixed_effects_.iloc[2] == pytest.approx(a.fixed_effects_.iloc[2] / s, rel=1e-5)
    assert b.reml_criterion_ == pytest.approx(a.reml_criterion_ + 2 * np.log(s), abs=1e-6)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_duplicated_rows_equal_weights_of_two(seed):
    X, y, g = _data(seed)
    a = _fit(np.vstack([X, X]), np.concatenate([y, y]), np.concatenate([g, g]))
    b = _fit(X, y, g, sample_weight=np.full(len(y), 2.0))
    np.testing.assert_allclose(a.fixed_effects_, b.fixed_effects_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-5, atol=1e-6)
    assert a.reml_criterion_ == pytest.approx(b.reml_criterion_, abs=1e-6)


def _binary(seed, n=600, J=20):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    g[:J] = np.arange(J)
    X = rng.normal(size=(n, 2))
    lp = -0.3 + X @ [0.8, -0.5] + rng.normal(0, 0.8, J)[g]
    return X, (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int), g


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_logistic_permutation_relabelling_and_duplication(seed):
    from skmixed import MixedLogisticRegressor

    X, y, g = _binary(seed)
    perm = np.random.default_rng(seed + 1).permutation(len(y))
    names = np.array([f"g{k}" for k in np.random.default_rng(seed).permutation(20)])
    a = MixedLogisticRegressor().fit(X, y, groups=g)
    b = MixedLogisticRegressor().fit(X[perm], y[perm], groups=names[g][perm])
    c = MixedLogisticRegressor().fit(np.vstack([X, X]), np.concatenate([y, y]), groups=np.concatenate([g, g]))
    d = MixedLogisticRegressor().fit(X, y, groups=g, sample_weight=np.full(len(y), 2.0))
    np.testing.assert_allclose(b.fixed_effects_, a.fixed_effects_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d.fixed_effects_, c.fixed_effects_, rtol=1e-4, atol=1e-6)
    assert d.loglik_ == pytest.approx(c.loglik_, abs=1e-5)
    np.testing.assert_allclose(b.random_effects_["group"].loc[names].to_numpy(),
                               a.random_effects_["group"].to_numpy(), rtol=1e-3, atol=1e-5)


@SETTINGS
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10.0), shift=st.floats(-100, 100))
def test_additive_affine_response_and_permutation(seed, scale, shift):
    from skmixed import AdditiveMixedRegressor

    X, y, g = _data(seed)
    perm = np.random.default_rng(seed + 1).permutation(len(y))
    make = lambda: AdditiveMixedRegressor(smooth=[1], n_knots=6)  # noqa: E731
    a = make().fit(X, y, groups=g)
    b = make().fit(X[perm], scale * y[perm] + shift, groups=g[perm])
    np.testing.assert_allclose(b.predict(X, groups=g), scale * a.predict(X, groups=g) + shift,
                               rtol=1e-4, atol=1e-4 * scale)
