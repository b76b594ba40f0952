"""Transactions: a public method completes or leaves the estimator pickle-identical (issue Trust II)."""

import pickle
import warnings

import numpy as np
import pytest

from skmixed import MixedLinearRegressor, MixedLogisticRegressor, SplitSampleMixed, StreamingMixed
from skmixed.logistic import SeparationWarning


def _data(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(20), 20)
    X = rng.normal(size=(400, 2))
    y = X @ [0.5, -0.3] + rng.normal(size=20)[g] + rng.normal(size=400)
    return X, y, g


@pytest.mark.parametrize("make", [MixedLinearRegressor, StreamingMixed])
def test_rejected_calls_keep_the_accumulated_state(make):
    X, y, g = _data()
    est = make().partial_fit(X[:200], y[:200], groups=g[:200])
    for bad in (lambda: est.fit(X, np.ones(400), groups=g) if make is MixedLinearRegressor else
                est.fit(X, np.r_[y[:-1], np.nan], groups=g),
                lambda: est.partial_fit(X[200:], 1e155 * y[200:], groups=g[200:]),
                lambda: est.fit(np.c_[X, X], np.r_[y[:-1], np.nan], groups=g),
                lambda: est.partial_fit(X[200:, :1], y[200:], groups=g[200:])):
        before = pickle.dumps(est)
        with pytest.raises(ValueError):
            bad()
        assert pickle.dumps(est) == before
    est.partial_fit(X[200:], y[200:], groups=g[200:])  # not stuck: the clean chunk goes in
    full = make().fit(X, y, groups=g)
    n = est.n_seen_ if make is StreamingMixed else est._stats.n_rows
    assert n == 400
    if make is MixedLinearRegressor:
        np.testing.assert_allclose(est.fixed_effects_, full.fixed_effects_, rtol=1e-7)


def test_huge_y_is_a_clear_error_not_nan():
    X, y, g = _data()
    with pytest.raises(ValueError, match="not finite"):
        MixedLinearRegressor().fit(X, 1e155 * y, groups=g)
    with pytest.raises(ValueError, match="non-finite"):
        StreamingMixed().fit(X, 1e155 * y, groups=g)


def test_interrupted_partial_fit_counts_the_batch_once(monkeypatch):
    import skmixed._solvers.lmm as slmm

    X, y, g = _data()
    est = MixedLinearRegressor().partial_fit(X[:200], y[:200], groups=g[:200])
    before = pickle.dumps(est)

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(slmm.LMMProblem, "optimize", interrupt)
    with pytest.raises(KeyboardInterrupt):
        est.partial_fit(X[200:], y[200:], groups=g[200:])
    assert pickle.dumps(est) == before
    monkeypatch.undo()
    est.partial_fit(X[200:], y[200:], groups=g[200:])
    assert est._stats.n_rows == 400


def test_refused_fit_keeps_n_features_in():
    X, y, g = _data()
    est = MixedLinearRegressor().fit(X, y, groups=g)
    X3 = np.c_[X, X[:, 0]]
    X3[0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X3, y, groups=g)
    assert est.n_features_in_ == 2
    est.predict(X, groups=g)


def test_split_keeps_its_estimators_when_combining_fails(monkeypatch):
    X, y, g = _data()
    est = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0).fit(X, y, groups=g)
    before = pickle.dumps(est)

    def fail(*a, **k):
        raise ValueError("combine failed")

    monkeypatch.setattr(SplitSampleMixed, "_combine", fail)
    with pytest.raises(ValueError, match="combine failed"):
        est.fit(X[:300], y[:300], groups=g[:300])
    assert pickle.dumps(est) == before


def test_group_level_separation_is_named():
    X, _, g = _data()
    y = (g % 2).astype(float)  # every group holds one class
    with pytest.warns(SeparationWarning, match="grouping factor 'group'"):
        MixedLogisticRegressor().fit(X, y, groups=g)
    with pytest.warns(SeparationWarning, match="grouping factor 'group'"):
        SplitSampleMixed(MixedLogisticRegressor(), n_subsamples=2, random_state=0).fit(X, y, groups=g)
    rng = np.random.default_rng(1)
    y2 = (rng.random(400) < 0.5).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        MixedLogisticRegressor().fit(X, y2, groups=g)


def test_fixed_effect_separation_is_named_whatever_the_units():
    X, _, g = _data()
    y = (X[:, 0] > 0).astype(float)
    for c in (1.0, 1e-4):
        Xs = X.copy()
        Xs[:, 0] *= c
        with pytest.warns(SeparationWarning, match="x0"):
            MixedLogisticRegressor().fit(Xs, y, groups=g)


def test_duplicated_random_term_is_a_clear_error():
    import pandas as pd

    from skmixed import AdditiveMixedRegressor

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60), "S": np.repeat(np.arange(10), 6)})
    for cls in (AdditiveMixedRegressor, MixedLinearRegressor):
        with pytest.raises(ValueError, match="twice"):
            cls.from_formula("y ~ x + (1|S) + (1|S)", df)


def test_partial_fit_without_refit_is_lazy_and_exact():
    from sklearn.utils.validation import check_is_fitted

    import skmixed._solvers.lmm as slmm

    X, y, g = _data()
    m = MixedLinearRegressor()
    calls = {"n": 0}
    optimize = slmm.LMMProblem.optimize

    def counted(self, *a, **k):
        calls["n"] += 1
        return optimize(self, *a, **k)

    slmm.LMMProblem.optimize = counted
    try:
        for rows in np.array_split(np.arange(400), 8):
            m.partial_fit(X[rows], y[rows], groups=g[rows], refit=False)
        assert calls["n"] == 0  # nothing refitted while accumulating
        check_is_fitted(m)
        blob = pickle.dumps(m)  # a pending model pickles and refits after loading
        full = MixedLinearRegressor().fit(X, y, groups=g)
        n_fit = calls["n"]
        np.testing.assert_allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8)
        assert calls["n"] == n_fit + 1  # one refit, on first access
        np.testing.assert_allclose(m.theta_, full.theta_, rtol=1e-7)
        assert calls["n"] == n_fit + 1
        np.testing.assert_allclose(pickle.loads(blob).predict(X, groups=g), full.predict(X, groups=g), rtol=1e-8)
    finally:
        slmm.LMMProblem.optimize = optimize
    # a later chunk with refit=False drops the now stale estimates again
    m.partial_fit(X[:10], y[:10], groups=g[:10], refit=False)
    assert "fixed_effects_" not in vars(m)
    assert m._stats.n_rows + m._held.n_rows == 410  # the 10 rows held back, not yet merged
