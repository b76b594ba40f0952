"""Dask fits on a LocalCluster (2 worker processes) equal in-memory fits (issue 7)."""

import warnings

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("dask.distributed")
dd = pytest.importorskip("dask.dataframe")

from skmixed import MixedLinearRegressor  # noqa: E402
from skmixed.dask import fit_dask, fit_lmm, predict_dask  # noqa: E402
from skmixed.datasets import load_penicillin, load_sleepstudy, make_big_grouped_data  # noqa: E402

from test_partial_fit import assert_same_fit  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # one small cluster for the whole module: worker start-up dominates the run time
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                  memory_limit="2GB") as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def seed000():
    df = make_big_grouped_data(20_000, 200, seed=12).sample(frac=1, random_state=5).reset_index(drop=True)
    df["w"] = np.random.default_rng(1).integers(1, 3, len(df)).astype(float)
    return df


def test_columns_fit_equals_in_memory(client, seed000):
    df = seed000
    ddf = dd.from_pandas(df, npartitions=7)  # shuffled rows: every group spans partitions
    m = fit_lmm(ddf, y="y", X=["x", "b"], groups="g", random_slopes=["x"], split_every=3)
    f = MixedLinearRegressor(random_slopes=["x"]).fit(df[["x", "b"]], df["y"], groups=df["g"])
    assert_same_fit(m, f)
    assert m.n_features_in_ == 2 and list(m.feature_names_in_) == ["x", "b"]
    # the partition statistics were computed on the workers
    assert len(client.scheduler_info()["workers"]) == 2


def test_weighted_ml_fit(client, seed000):
    df = seed000
    ddf = dd.from_pandas(df, npartitions=4)
    m = fit_dask(MixedLinearRegressor(reml=False), ddf, y="y", X=["x"], groups="g", sample_weight="w")
    f = MixedLinearRegressor(reml=False).fit(df[["x"]], df["y"], groups=df["g"], sample_weight=df["w"])
    assert_same_fit(m, f)


def test_formula_crossed_with_categorical_fixed_effect(client):
    pen = load_penicillin()
    rng = np.random.default_rng(4)
    df = pd.concat([pen] * 3, ignore_index=True).sample(frac=1, random_state=3).reset_index(drop=True)
    df["diameter"] = df["diameter"] + rng.normal(0, 0.5, len(df))
    # a string fixed effect whose level "c" only occurs in the last rows (last partition)
    df["trt"] = np.where(np.arange(len(df)) < 300, rng.choice(["a", "b"], len(df)), "c")
    formula = "diameter ~ trt + (1 | plate) + (1 | sample)"
    m = fit_lmm(dd.from_pandas(df, npartitions=5), formula)
    f = MixedLinearRegressor.from_formula(formula, df)
    assert list(m.fixed_effects_.index) == ["(Intercept)", "trtb", "trtc"]
    assert_same_fit(m, f)
    # formula models predict from the frame itself
    pred = predict_dask(m, dd.from_pandas(df, npartitions=3))
    np.testing.assert_allclose(pred.compute().to_numpy(), f.predict(df), rtol=1e-9)


def test_predict_dask_series(client, seed000):
    df = seed000
    m = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    new = df.iloc[:3000].copy()
    new.loc[new.index[:100], "g"] = 10_000  # unseen group: population prediction
    ddf = dd.from_pandas(new, npartitions=4)
    s = predict_dask(m, ddf)
    assert isinstance(s, dd.Series)
    got = s.compute()
    pd.testing.assert_index_equal(got.index, new.index)
    np.testing.assert_allclose(got.to_numpy(), m.predict(new[["x", "b"]], groups=new["g"]), rtol=1e-12)
    # without grouping columns: the population prediction
    pop = predict_dask(m, ddf[["x", "b"]]).compute()
    np.testing.assert_allclose(pop.to_numpy(), m.predict(new[["x", "b"]]), rtol=1e-12)


def test_sleepstudy_reference_on_cluster(client):
    # lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy) -> fixef 251.405, 10.467
    df = load_sleepstudy()
    m = fit_lmm(dd.from_pandas(df, npartitions=4), "Reaction ~ Days + (Days | Subject)")
    np.testing.assert_allclose(m.fixed_effects_, [251.405105, 10.467286], rtol=1e-6)
    assert m.reml_criterion_ == pytest.approx(1743.628, abs=1e-3)


def test_bad_inputs(client, seed000):
    ddf = dd.from_pandas(seed000, npartitions=2)
    with pytest.raises(ValueError, match="not in the dask DataFrame"):
        fit_lmm(ddf, y="y", X=["x", "nope"], groups="g")
    with pytest.raises(ValueError, match="either formula"):
        fit_lmm(ddf, "y ~ x + (1 | g)", y="y")
    bad = seed000.copy()
    bad.loc[bad.index[-1], "x"] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        fit_lmm(dd.from_pandas(bad, npartitions=3), y="y", X=["x"], groups="g")
    one = seed000.assign(g=7)
    with pytest.raises(ValueError, match="cannot be fitted: .*single level"):
        fit_lmm(dd.from_pandas(one, npartitions=2), y="y", X=["x"], groups="g")


def test_group_column_and_fixed_only(client, seed000):
    df = seed000
    ddf = dd.from_pandas(df, npartitions=3)
    m = fit_dask(MixedLinearRegressor(group_column="g"), ddf, y="y", X=["x", "b", "g"])
    f = MixedLinearRegressor(group_column="g").fit(df[["x", "b", "g"]], df["y"])
    assert_same_fit(m, f)
    got = predict_dask(m, ddf).compute()
    np.testing.assert_allclose(got.to_numpy(), f.predict(df[["x", "b", "g"]]), rtol=1e-9, atol=1e-9)
    # no grouping at all: the fixed-effects part (least squares), with the usual warning
    with pytest.warns(UserWarning):
        m0 = fit_lmm(ddf, y="y", X=["x", "b"])
    with pytest.warns(UserWarning):
        f0 = MixedLinearRegressor().fit(df[["x", "b"]], df["y"])
    np.testing.assert_allclose(m0.fixed_effects_, f0.fixed_effects_, rtol=1e-10)
    np.testing.assert_allclose(m0.fixed_effects_se_, f0.fixed_effects_se_, rtol=1e-10)
    assert m0.reml_criterion_ == pytest.approx(f0.reml_criterion_, rel=1e-12)


# ----------------------------------------------------------------- logistic (Laplace) on the cluster
def test_glmm_laplace_equals_in_memory(client, seed000):
    from skmixed import MixedLogisticRegressor
    from skmixed.dask import fit_glmm

    df = seed000.iloc[:8000]
    ddf = dd.from_pandas(df, npartitions=4)  # rows shuffled: groups span partitions until fit_glmm shuffles
    m = fit_glmm(ddf, y="y_bin", X=["x", "b"], groups="g")
    f = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    np.testing.assert_allclose(m.fixed_effects_, f.fixed_effects_, rtol=1e-6)
    np.testing.assert_allclose(m.fixed_effects_se_, f.fixed_effects_se_, rtol=1e-6)
    np.testing.assert_allclose(m.theta_, f.theta_, rtol=1e-6)
    assert m.loglik_ == pytest.approx(f.loglik_, rel=1e-10)
    re, rf = m.random_effects_["g"], f.random_effects_["g"]
    assert list(re.index) == list(rf.index)
    np.testing.assert_allclose(re, rf, rtol=0, atol=1e-6 * np.abs(rf.to_numpy()).max())
    assert list(m.classes_) == [0, 1]
    proba = predict_dask(m, ddf, method="predict_proba").compute()
    np.testing.assert_allclose(proba.to_numpy(), f.predict_proba(df[["x", "b"]], groups=df["g"])[:, 1], rtol=1e-6)
    labels = predict_dask(m, ddf).compute()
    np.testing.assert_array_equal(labels.to_numpy(), f.predict(df[["x", "b"]], groups=df["g"]))
    # the rows stayed on the workers: row-based inference refuses by name instead of running on
    # no rows (it returned an empty simulation, NaN R2 and a ZeroDivisionError before)
    for call in (m.simulate, lambda: m.bootstrap(n_boot=3)):
        with pytest.raises(ValueError, match="training rows"):
            call()
    for attr in ("r2_marginal_", "r2_conditional_", "icc_"):
        with pytest.raises(ValueError, match="variance decomposition"):
            getattr(m, attr)
    ci = m.confint(method="wald")  # lme4's Wald intervals: NA for the variance parameters
    np.testing.assert_allclose(ci.loc[["x", "b"]], f.confint(method="wald").loc[["x", "b"]], rtol=1e-5)


def test_glmm_weighted_string_classes(client):
    from skmixed import MixedLogisticRegressor
    from skmixed.datasets import load_cbpp_bernoulli

    df = load_cbpp_bernoulli()
    cols = list(df.columns)
    assert {"herd", "period"} <= set(cols)
    ycol = [c for c in cols if c not in ("herd", "period")][0]
    df = df.assign(lab=np.where(df[ycol].to_numpy() > 0, "sick", "well"), w=1.0 + (np.arange(len(df)) % 2))
    X = pd.get_dummies(df["period"], prefix="period", drop_first=True, dtype=float)
    data = pd.concat([df, X], axis=1)
    xcols = list(X.columns)
    m = fit_dask(MixedLogisticRegressor(), dd.from_pandas(data, npartitions=3), y="lab", X=xcols, groups="herd",
                 sample_weight="w")
    f = MixedLogisticRegressor().fit(data[xcols], data["lab"], groups=data["herd"], sample_weight=data["w"])
    assert list(m.classes_) == ["sick", "well"]
    np.testing.assert_allclose(m.fixed_effects_, f.fixed_effects_, rtol=1e-6)
    np.testing.assert_allclose(m.theta_, f.theta_, rtol=1e-6)


def test_glmm_adaptive_quadrature(client, seed000):
    from skmixed import MixedLogisticRegressor

    df = seed000.iloc[:4000]
    m = fit_dask(MixedLogisticRegressor(nagq=5), dd.from_pandas(df, npartitions=3), y="y_bin", X=["x"], groups="g")
    f = MixedLogisticRegressor(nagq=5).fit(df[["x"]], df["y_bin"], groups=df["g"])
    np.testing.assert_allclose(m.fixed_effects_, f.fixed_effects_, rtol=1e-6)
    np.testing.assert_allclose(m.theta_, f.theta_, rtol=1e-6)
    assert m.loglik_ == pytest.approx(f.loglik_, rel=1e-10)


def test_glmm_in_memory_fit_during_a_distributed_fit_is_untouched(client, seed000, monkeypatch):
    # the distributed fit runs the solver with worker-side kernels; an in-memory fit made
    # meanwhile in the same process (here: from inside a remote kernel call, the worst
    # moment) must still use the local kernels and give its own answer
    from skmixed import MixedLogisticRegressor
    from skmixed.dask import glmm as _dask_glmm
    from skmixed.dask import fit_glmm

    small = seed000.iloc[:3000]
    expected = MixedLogisticRegressor().fit(small[["x"]], small["y_bin"], groups=small["g"])
    inner = {}
    real = _dask_glmm._RemoteKernels.joint_stats

    def joint_stats(self, *args, **kwargs):
        if not inner:
            inner["fit"] = MixedLogisticRegressor().fit(small[["x"]], small["y_bin"], groups=small["g"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_dask_glmm._RemoteKernels, "joint_stats", joint_stats)
    df = seed000.iloc[:8000]
    m = fit_glmm(dd.from_pandas(df, npartitions=2), y="y_bin", X=["x", "b"], groups="g")
    assert "fit" in inner
    np.testing.assert_array_equal(inner["fit"].fixed_effects_, expected.fixed_effects_)
    np.testing.assert_array_equal(inner["fit"].theta_, expected.theta_)
    f = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    np.testing.assert_allclose(m.fixed_effects_, f.fixed_effects_, rtol=1e-6)


# ----------------------------------------------------------------- additive model and crossed GLMMs on the cluster
# (the equality tests at length are in test_dask_models.py, on the threaded scheduler)
from test_dask_models import _assert_same_additive, _gamsim, two_factor_counts  # noqa: E402,F401


def test_additive_poisson_with_slope_equals_in_memory(client):
    from skmixed import AdditiveMixedRegressor

    df = _gamsim(8_000, 4)
    X = ["x0", "x1", "x2", "x3"]
    est = AdditiveMixedRegressor(smooth=["x0", "x1", "x2"], family="poisson", random_slopes=["x3"])
    d = fit_dask(est, dd.from_pandas(df, npartitions=4), y="count", X=X, groups="g")
    m = AdditiveMixedRegressor(**est.get_params()).fit(df[X], df["count"], groups=df["g"])
    _assert_same_additive(d, m)
    np.testing.assert_allclose(d.re_sd_, m.re_sd_, rtol=1e-6)
    assert d.n_iter_ == m.n_iter_


def test_additive_bad_inputs(client):
    from skmixed import AdditiveMixedRegressor

    df = _gamsim(600, 5)
    ddf = dd.from_pandas(df, npartitions=2)
    with pytest.raises(ValueError, match="discrete=True"):
        fit_dask(AdditiveMixedRegressor(smooth=["x0"], discrete=False), ddf, y="y", X=["x0"], groups="g")
    with pytest.raises(ValueError, match="ti\\(\\) terms"):
        fit_dask(AdditiveMixedRegressor(smooth=["ti(x0,x1)"]), ddf, y="y", X=["x0", "x1"], groups="g")
    with pytest.raises(ValueError, match="not in the dask DataFrame"):
        fit_dask(AdditiveMixedRegressor(smooth=["x0"]), ddf, y="y", X=["x0", "nope"], groups="g")
    with pytest.raises(ValueError, match="non-negative"):
        fit_dask(AdditiveMixedRegressor(smooth=["x0"], family="poisson"), ddf, y="y", X=["x0"], groups="g")


# ----------------------------------------------------------------- GLMMs with several grouping factors on the cluster
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


def test_glmm_crossed_on_cluster_follows_the_in_memory_iterates(client, two_factor_counts):
    # every PIRLS pass is a round trip to the workers, so a full fit is slow on a small shared test
    # cluster (the full fits are compared in test_dask_models.py): here the same few optimiser
    # iterations (nAGQ=0, max_iter=2) from both, which must give the same iterate
    from sklearn.exceptions import ConvergenceWarning

    from skmixed import MixedLogisticRegressor

    df = two_factor_counts.iloc[:1500]
    est = MixedLogisticRegressor(nagq=0, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = MixedLogisticRegressor(**est.get_params()).fit(df[["x", "b"]], df["y"], groups=df[["g", "item"]])
        d = fit_dask(est, dd.from_pandas(df, npartitions=3), y="y", X=["x", "b"], groups=["g", "item"])
    assert d.loglik_ == pytest.approx(m.loglik_, rel=1e-9)
    np.testing.assert_allclose(d.fixed_effects_, m.fixed_effects_, rtol=1e-6)
    np.testing.assert_allclose(d.theta_, m.theta_, rtol=1e-6)


def test_glmm_crossed_refuses_agq(client, two_factor_counts):
    from skmixed import MixedLogisticRegressor

    ddf = dd.from_pandas(two_factor_counts, npartitions=2)
    with pytest.raises(ValueError, match="nAGQ > 1"):
        fit_dask(MixedLogisticRegressor(nagq=3), ddf, y="y", X=["x"], groups=["g", "item"])
    with pytest.raises(ValueError, match="not in the dask DataFrame"):
        fit_dask(MixedLogisticRegressor(), ddf, y="y", X=["x"], groups=["g", "nope"])
