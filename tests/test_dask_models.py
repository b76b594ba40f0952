"""Distributed fits of the additive model and of GLMMs with several grouping factors equal in-memory fits.

These run on Dask's local threaded scheduler (the partition objects then live in
the driver process; the code path is the same as on a cluster, where
``test_dask.py`` checks the client side): the solvers' many small passes make a
cluster round trip per pass the dominant cost of such small tests.
"""

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")

from skmixed.dask import fit_dask, predict_dask  # noqa: E402


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads"):
        yield


def _gamsim(n, seed, n_groups=30):
    """gamSim(1)-like data (Gu & Wahba's four functions) with a random intercept and a factor by."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 4))
    f = (2 * np.sin(np.pi * x[:, 0]) + np.exp(2 * x[:, 1])
         + 0.2 * x[:, 2] ** 11 * (10 * (1 - x[:, 2])) ** 6 + 10 * (10 * x[:, 2]) ** 3 * (1 - x[:, 2]) ** 10)
    df = pd.DataFrame(x, columns=["x0", "x1", "x2", "x3"])
    df["x1"] = np.round(df["x1"], 2)  # few distinct values: exact bins; the others: a 1000-point grid
    df["fac"] = rng.integers(0, 3, n).astype(float)
    df["x4"] = rng.uniform(size=n)
    df["g"] = rng.integers(0, n_groups, n)
    df["h"] = rng.choice(["a", "b", "c", "d"], n)
    re = rng.normal(0, 0.5, n_groups)[df["g"]]
    df["y"] = f + np.cos(3 * df["x4"]) * (df["fac"] - 1) + re + rng.normal(0, 1.0, n)
    df["count"] = rng.poisson(np.exp((f - 4) / 3 + re))
    df["w"] = rng.integers(1, 3, n).astype(float)
    return df


def _assert_same_additive(d, m, rtol=1e-8):
    assert d.reml_score_ == pytest.approx(m.reml_score_, rel=1e-10)
    np.testing.assert_allclose(d.fixed_effects_, m.fixed_effects_, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(d.fixed_effects_se_, m.fixed_effects_se_, rtol=1e-6)
    np.testing.assert_allclose(d.edf_, m.edf_, rtol=0, atol=1e-6)
    assert list(d.edf_.index) == list(m.edf_.index)
    assert d.deviance_ == pytest.approx(m.deviance_, rel=1e-9)
    assert d.null_deviance_ == pytest.approx(m.null_deviance_, rel=1e-12)
    assert d.r2_adj_ == pytest.approx(m.r2_adj_, rel=1e-9)
    assert d.n_obs_ == m.n_obs_
    assert d.fitted_values_ is None  # the rows stayed on the workers


def test_additive_gaussian_equals_in_memory():
    from skmixed import AdditiveMixedRegressor
    from skmixed.dask import fit_additive

    df = _gamsim(12_000, 3)
    X = ["x0", "x1", "x2", "x3", "x4", "fac"]
    # an identifiable model (te(x3, x4) next to s(x4, by=fac) is not: its fit depends on the row order)
    params = dict(smooth=["x0", "x1", "te(x2,x3)", ("x4", "fac")], n_knots={"x0": 12}, basis={"x1": "ps"})
    ddf = dd.from_pandas(df, npartitions=6)
    d = fit_additive(ddf, y="y", X=X, groups=["g", "h"], sample_weight="w", **params)
    m = AdditiveMixedRegressor(**params).fit(df[X], df["y"], groups=df[["g", "h"]], sample_weight=df["w"])
    _assert_same_additive(d, m)
    # same bins, same smooths: predictions at the exact covariates agree too
    head = df.head(500)
    np.testing.assert_allclose(d.predict(head[X], groups=head[["g", "h"]]), m.predict(head[X], groups=head[["g", "h"]]),
                               rtol=0, atol=1e-8 * df["y"].std())
    got = predict_dask(d, ddf.head(500, npartitions=-1, compute=False), X=X, groups=["g", "h"]).compute()
    np.testing.assert_allclose(got.to_numpy(), m.predict(head[X], groups=head[["g", "h"]]), atol=1e-8 * df["y"].std())
    np.testing.assert_allclose(d.random_effects_["g"], m.random_effects_["g"], rtol=0, atol=1e-8)


@pytest.fixture(scope="module")
def two_factor_counts():
    rng = np.random.default_rng(11)
    n = 4000
    df = pd.DataFrame({"x": rng.normal(size=n), "b": rng.integers(0, 2, n).astype(float),
                       "g": rng.integers(0, 50, n), "item": rng.choice([f"i{k}" for k in range(12)], n)})
    df["site"] = df["g"] // 10  # g nested in site
    eta = (-0.3 + 0.5 * df["x"] + 0.4 * df["b"] + rng.normal(0, 0.8, 50)[df["g"]]
           + rng.normal(0, 0.5, 12)[pd.factorize(df["item"], sort=True)[0]] + rng.normal(0, 0.4, 5)[df["site"]])
    df["y"] = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-eta)), "yes", "no")
    df["count"] = rng.poisson(np.exp(eta / 2))
    df["w"] = rng.integers(1, 3, n).astype(float)
    return df


def _assert_same_glmm(d, m, same_search=True):
    """``same_search=False``: several grouping factors, where the in-memory fit searches on the exact
    gradient and the distributed one on finite differences; both stop within the optimiser's
    tolerance of the same optimum, so the estimates agree to a small fraction of a standard error."""
    tol = 1.0 if same_search else 10.0
    assert d.loglik_ == pytest.approx(m.loglik_, rel=1e-10)
    np.testing.assert_allclose(d.fixed_effects_, m.fixed_effects_, rtol=1e-6 * tol,
                               atol=0 if same_search else 1e-5 * m.fixed_effects_se_.max())
    np.testing.assert_allclose(d.theta_, m.theta_, rtol=1e-6 * tol, atol=1e-8)
    np.testing.assert_allclose(d.fixed_effects_se_, m.fixed_effects_se_, rtol=2e-5)
    for f in m.random_effects_:
        re, rf = d.random_effects_[f], m.random_effects_[f]
        assert list(re.index) == list(rf.index)
        np.testing.assert_allclose(re, rf, rtol=0, atol=1e-6 * tol * np.abs(rf.to_numpy()).max())


def test_glmm_crossed_logistic_equals_in_memory(two_factor_counts):
    from skmixed import MixedLogisticRegressor

    df = two_factor_counts
    ddf = dd.from_pandas(df, npartitions=4)  # levels of both factors span partitions: no shuffle needed
    m = MixedLogisticRegressor().fit(df[["x", "b"]], df["y"], groups=df[["g", "item"]])
    d = fit_dask(MixedLogisticRegressor(), ddf, y="y", X=["x", "b"], groups=["g", "item"])
    _assert_same_glmm(d, m, same_search=False)
    assert list(d.classes_) == ["no", "yes"]
    with pytest.raises(ValueError, match="training rows"):
        d.simulate()
    with pytest.raises(ValueError, match="variance decomposition"):
        d.r2_marginal_
    proba = predict_dask(d, ddf, method="predict_proba").compute()
    np.testing.assert_allclose(proba.to_numpy(), m.predict_proba(df[["x", "b"]], groups=df[["g", "item"]])[:, 1],
                               rtol=1e-6)


def test_glmm_nested_poisson_weighted_equals_in_memory(two_factor_counts):
    from skmixed import MixedPoissonRegressor

    df = two_factor_counts
    X = ["x", "b"]
    m = MixedPoissonRegressor().fit(df[X], df["count"], groups=df[["g", "site"]], sample_weight=df["w"])
    d = fit_dask(MixedPoissonRegressor(), dd.from_pandas(df, npartitions=3), y="count", X=X, groups=["g", "site"],
                 sample_weight="w")
    _assert_same_glmm(d, m, same_search=False)  # the loglik includes the counts' constant, summed over the partitions
    assert d.coef_.shape == m.coef_.shape and isinstance(d.intercept_, float)
    # one factor: the per-group path, Poisson family
    m1 = MixedPoissonRegressor().fit(df[X], df["count"], groups=df["g"])
    d1 = fit_dask(MixedPoissonRegressor(), dd.from_pandas(df, npartitions=3), y="count", X=X, groups="g")
    _assert_same_glmm(d1, m1)
