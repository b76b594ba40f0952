"""SplitSampleMixed: accuracy against the full fit, combination rules, parallel backends, sklearn."""

import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmixed import MixedLinearRegressor, NoGroupsWarning, SplitSampleMixed
from skmixed._design.layout import amalgamate
from skmixed._solvers import split as ssplit
from skmixed.datasets import load_penicillin, load_sleepstudy, make_big_grouped_data


@pytest.fixture(scope="module")
def big():
    """A seed-000-like workload, 10x smaller than the acceptance one (CI time)."""
    df = make_big_grouped_data(200_000, 400, seed=11)
    full = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    return df, full


@pytest.fixture(scope="module")
def big_groups(big):
    df, _ = big
    return SplitSampleMixed(MixedLinearRegressor(), n_subsamples=8, random_state=0).fit(
        df[["x", "b"]], df["y"], groups=df["g"])


# ---------------------------------------------------------------------------- (a) accuracy, groups
def test_groups_strategy_matches_full_fit(big, big_groups):
    df, full = big
    ss = big_groups
    assert len(ss.estimators_) == 8
    # every subsample holds 400 / 8 groups, and every group is in exactly one subsample
    assert (ss.subsample_estimates_["n_groups[g]"] == 50).all()
    assert ss.subsample_estimates_["n_rows"].sum() == len(df)
    z = (ss.fixed_effects_ - full.fixed_effects_) / full.fixed_effects_se_
    assert np.all(np.abs(z) < 0.5), z
    ratio = ss.fixed_effects_se_ / full.fixed_effects_se_
    assert np.all(np.abs(ratio - 1) < 0.15), ratio
    vc = ss.cov_re_["g"].iloc[0, 0] / full.cov_re_["g"].iloc[0, 0]
    assert abs(vc - 1) < 0.05
    assert abs(ss.sigma_ / full.sigma_ - 1) < 0.05
    # the stated rules: equal-weight mean; Var = (1/M^2) sum V_m; variances averaged
    tab = ss.subsample_estimates_
    np.testing.assert_allclose(ss.fixed_effects_, tab[["(Intercept)", "x", "b"]].mean(), rtol=1e-12)
    V = sum(e.vcov_.to_numpy() for e in ss.estimators_) / 64
    np.testing.assert_allclose(ss.vcov_.to_numpy(), V, rtol=1e-12)
    assert ss.cov_re_["g"].iloc[0, 0] == pytest.approx(tab["var[g.(Intercept)]"].mean(), rel=1e-12)
    assert ss.sigma_ == pytest.approx(np.sqrt(tab["sigma2"].mean()), rel=1e-12)


def test_inverse_variance_combination(big):
    df, full = big
    ss = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=8, combine="inverse_variance",
                          random_state=0).fit(df[["x", "b"]], df["y"], groups=df["g"])
    Vinv = [np.linalg.inv(e.vcov_.to_numpy()) for e in ss.estimators_]
    V = np.linalg.inv(sum(Vinv))
    beta = V @ sum(Vi @ e.fixed_effects_.to_numpy() for Vi, e in zip(Vinv, ss.estimators_))
    np.testing.assert_allclose(ss.vcov_.to_numpy(), V, rtol=1e-10)
    np.testing.assert_allclose(ss.fixed_effects_.to_numpy(), beta, rtol=1e-10)
    assert np.all(np.abs((ss.fixed_effects_ - full.fixed_effects_) / full.fixed_effects_se_) < 0.5)


def test_predict_uses_blups_given_combined_parameters(big, big_groups):
    df, full = big
    ss = big_groups
    assert set(ss.random_effects_) == {"g"} and len(ss.random_effects_["g"]) == 400
    # BLUP from the closed form b_j = sum_i (y - x beta) / (n_j + sigma^2 / tau^2), by pandas
    r = df["y"] - ss.combined_estimator_.predict(df[["x", "b"]])
    tau2 = ss.cov_re_["g"].iloc[0, 0]
    agg = r.groupby(df["g"]).agg(["sum", "size"])
    b = agg["sum"] / (agg["size"] + ss.sigma_**2 / tau2)
    np.testing.assert_allclose(ss.random_effects_["g"]["(Intercept)"].to_numpy(), b.to_numpy(), rtol=1e-8)
    X = df[["x", "b"]].iloc[:5]
    pop = ss.fixed_effects_["(Intercept)"] + X.to_numpy() @ ss.fixed_effects_[["x", "b"]].to_numpy()
    np.testing.assert_allclose(ss.predict(X), pop, rtol=1e-12)
    np.testing.assert_allclose(ss.predict(X, groups=[-7] * 5), pop, rtol=1e-12)  # unseen level
    g = df["g"].iloc[:5]
    np.testing.assert_allclose(ss.predict(X, groups=g), pop + b.loc[g].to_numpy(), rtol=1e-10)
    # and they are close to the full fit's BLUPs
    np.testing.assert_allclose(ss.random_effects_["g"], full.random_effects_["g"], atol=0.01)


def test_blups_given_parameters_equal_lmm_blups():
    """lmm_blups at an LMM's own estimates reproduces its BLUPs (slopes; crossed factors)."""
    df = load_sleepstudy()
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    pen = load_penicillin()
    Xp = np.random.default_rng(0).normal(size=(len(pen), 1))
    m2 = MixedLinearRegressor().fit(Xp, pen["diameter"], groups=pen[["plate", "sample"]])
    for est, X, y, G in [(m, df[["Days"]], df["Reaction"], df["Subject"]),
                         (m2, Xp, pen["diameter"], pen[["plate", "sample"]])]:
        fd = clone(est)._prepare_fit(X, y, G)
        blocks = amalgamate(fd.terms, [f.n_levels for f in fd.factors])
        names = [fd.factors[b.factor].name for b in blocks]
        b = ssplit.lmm_blups(fd.X, fd.y, None, [f.codes for f in fd.factors], blocks,
                             est.fixed_effects_.to_numpy(), [est.cov_re_[n].to_numpy() for n in names], est.sigma_)
        for n, bb in zip(names, b):
            np.testing.assert_allclose(bb, est.random_effects_[n].to_numpy(), atol=1e-9 * np.abs(bb).max())


# ---------------------------------------------------------------------------- (b) backends
def _small():
    df = make_big_grouped_data(40_000, 80, seed=5)
    return df[["x", "b"]], df["y"], df["g"]


def test_threading_backend_equals_sequential():
    X, y, g = _small()
    est = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=4, random_state=1)
    a = clone(est).set_params(n_jobs=1).fit(X, y, groups=g)
    with joblib.parallel_config(backend="threading"):
        b = clone(est).set_params(n_jobs=2).fit(X, y, groups=g)
    np.testing.assert_allclose(b.fixed_effects_, a.fixed_effects_, rtol=1e-9)
    np.testing.assert_allclose(b.fixed_effects_se_, a.fixed_effects_se_, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_dask_distributed_equals_local():
    distributed = pytest.importorskip("distributed")
    X, y, g = _small()
    est = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=4, n_jobs=2, random_state=3)
    local = clone(est).fit(X, y, groups=g)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        with joblib.parallel_config(backend="dask"):
            remote = clone(est).fit(X, y, groups=g)
    np.testing.assert_allclose(remote.fixed_effects_, local.fixed_effects_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(remote.fixed_effects_se_, local.fixed_effects_se_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(remote.cov_re_["g"], local.cov_re_["g"], rtol=0, atol=1e-10)
    assert remote.sigma_ == pytest.approx(local.sigma_, abs=1e-10)
    np.testing.assert_allclose(remote.predict(X, g), local.predict(X, g), rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------- (c) within / pairwise
@pytest.mark.parametrize("strategy,M", [("within", 8), ("pairwise", 4)])
def test_dependent_strategies(big, strategy, M):
    df, full = big
    ss = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=M, strategy=strategy, random_state=0,
                          n_jobs=2).fit(df[["x", "b"]], df["y"], groups=df["g"])
    assert ss.covariance_rule_ == "sandwich"
    assert len(ss.estimators_) == (M if strategy == "within" else M * (M - 1) // 2)
    # every subsample sees every group
    assert (ss.subsample_estimates_["n_groups[g]"] == 400).all()
    z = (ss.fixed_effects_ - full.fixed_effects_) / full.fixed_effects_se_
    assert np.all(np.abs(z) < 0.5), z
    ratio = ss.fixed_effects_se_ / full.fixed_effects_se_
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    # the naive independent rule would understate the group-level SEs by ~sqrt(M)
    naive = np.sqrt(np.diag(sum(e.vcov_.to_numpy() for e in ss.estimators_))) / len(ss.estimators_)
    assert naive[0] < 0.6 * full.fixed_effects_se_.iloc[0]
    assert abs(ss.cov_re_["g"].iloc[0, 0] / full.cov_re_["g"].iloc[0, 0] - 1) < 0.05
    assert abs(ss.sigma_ / full.sigma_ - 1) < 0.01
    assert ss.score(df[["x", "b"]], df["y"], groups=df["g"]) == pytest.approx(
        full.score(df[["x", "b"]], df["y"], groups=df["g"]), abs=1e-4)


@pytest.mark.parametrize("strategy", ["within", "pairwise"])
def test_sandwich_diagonal_blocks_are_the_information(strategy):
    """K_ss = H_s exactly (the score's variance is the information), and H_s^-1 ~ the subsample vcov."""
    df = make_big_grouped_data(20_000, 100, seed=2)
    m = MixedLinearRegressor(random_slopes=["x"]).fit(df[["x", "b"]], df["y"], groups=df["g"])
    fd = clone(m)._prepare_fit(df[["x", "b"]], df["y"], df["g"])
    codes = fd.factors[0].codes
    part = ssplit.assign_parts(codes, 100, len(df), 4, strategy, np.random.default_rng(0))
    assert np.all(np.bincount(part[codes == 7]) == 50)  # 200 rows of a group dealt evenly
    parts = ssplit.subsample_parts(4, strategy)
    blk = amalgamate(fd.terms, [100])[0]
    B = ssplit.part_group_blocks(fd.X, fd.y, None, codes, 100, blk.intercept_slopes, part, 4)
    W = [np.eye(3) / len(parts)] * len(parts)
    V, H, K = ssplit.lmm_sandwich(B, 2, 3, m.cov_re_["g"].to_numpy(), m.sigma_**2, parts, W)
    for s in range(len(parts)):
        np.testing.assert_allclose(K[(s, s)], H[s], rtol=1e-10, atol=1e-10 * np.abs(H[s]).max())
    # at a subsample fit's own parameters, H_s^-1 is that fit's vcov_
    rows = np.isin(part, parts[0])
    ms = MixedLinearRegressor(random_slopes=["x"]).fit(df[["x", "b"]][rows], df["y"][rows], groups=df["g"][rows])
    _, Hs, _ = ssplit.lmm_sandwich(B, 2, 3, ms.cov_re_["g"].to_numpy(), ms.sigma_**2, parts[:1], W[:1])
    np.testing.assert_allclose(np.linalg.inv(Hs[0]), ms.vcov_.to_numpy(), rtol=1e-6)
    # the combination has about the full fit's precision
    np.testing.assert_allclose(np.sqrt(np.diag(V)), m.fixed_effects_se_, rtol=0.05)


def test_moment_rule_for_crossed_factors():
    rng = np.random.default_rng(4)
    n = 6000
    a, c = rng.integers(0, 60, n), rng.integers(0, 30, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.7, 60)[a] + rng.normal(0, 0.4, 30)[c] + rng.normal(size=n)
    G = pd.DataFrame({"a": a, "c": c})
    full = MixedLinearRegressor().fit(x[:, None], y, groups=G)
    ss = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=4, strategy="within", random_state=0).fit(
        x[:, None], y, groups=G)
    assert ss.covariance_rule_ == "moment"
    # clipped between the independent and the fully dependent cases
    se_sub = np.array([e.fixed_effects_se_.to_numpy() for e in ss.estimators_])
    assert np.all(ss.fixed_effects_se_.to_numpy() <= np.sqrt((se_sub**2).mean(0)) + 1e-12)
    assert np.all(ss.fixed_effects_se_.to_numpy() >= np.sqrt((se_sub**2).sum(0)) / 4 - 1e-12)
    assert abs(ss.fixed_effects_["x0"] - full.fixed_effects_["x0"]) < 0.5 * full.fixed_effects_se_["x0"]
    assert set(ss.random_effects_) == {"a", "c"}


# ---------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("params,msg", [
    ({"strategy": "rows"}, "strategy"), ({"combine": "median"}, "combine"), ({"n_subsamples": 1}, "n_subsamples"),
    ({"n_subsamples": 2, "strategy": "pairwise"}, "pairwise"), ({"n_subsamples": 50}, "levels"),
])
def test_bad_parameters(params, msg):
    X, y, g = _small()
    with pytest.raises(ValueError, match=msg):
        SplitSampleMixed(MixedLinearRegressor(), **params).fit(X, y, groups=g)


def test_bad_input_raises_before_any_fit():
    X, y, g = _small()
    Xb = X.copy()
    Xb.iloc[3, 0] = np.nan
    ss = SplitSampleMixed(MixedLinearRegressor())
    with pytest.raises(ValueError, match="NaN"):
        ss.fit(Xb, y, groups=g)
    assert not hasattr(ss, "estimators_")


def test_verbose_progress_bar(capsys):
    X, y, g = _small()
    SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, verbose=True, random_state=0).fit(X, y, groups=g)
    assert "SplitSampleMixed" in capsys.readouterr().err


# ---------------------------------------------------------------------------- (d) sklearn
# n_subsamples=2: the checks use 10-30 rows with up to 10 columns, which 4 parts alias away
@parametrize_with_checks(
    [SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0)],
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data":
            "the random partition depends on which rows are present, so zero weights and removed rows "
            "give different subsamples",
    },
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        check(estimator)


def test_get_params_deep_clone_pickle():
    ss = SplitSampleMixed(MixedLinearRegressor(reml=False), n_subsamples=3)
    params = ss.get_params(deep=True)
    assert params["estimator__reml"] is False and params["n_subsamples"] == 3
    c = clone(ss)
    assert c.estimator is not ss.estimator and c.estimator.reml is False
    X, y, g = _small()
    ss.fit(X, y, groups=g)
    assert ss.estimator.__dict__ == MixedLinearRegressor(reml=False).__dict__  # not fitted itself
    ss2 = pickle.loads(pickle.dumps(ss))
    np.testing.assert_array_equal(ss2.predict(X, g), ss.predict(X, g))
    pd.testing.assert_frame_equal(ss2.subsample_estimates_, ss.subsample_estimates_)


def test_gridsearch_over_inner_parameters_group_column():
    df = make_big_grouped_data(8000, 80, seed=6)
    ss = SplitSampleMixed(MixedLinearRegressor(group_column="g"), n_subsamples=2, random_state=0)
    grid = GridSearchCV(ss, {"estimator__reml": [True, False]}, cv=GroupKFold(3))
    grid.fit(df[["x", "b", "g"]], df["y"], groups=df["g"])
    best = grid.best_estimator_
    assert best.n_features_in_ == 3
    assert list(best.fixed_effects_.index) == ["(Intercept)", "x", "b"]
    assert len(best.random_effects_["g"]) == 80
    assert {r["estimator__reml"] for r in grid.cv_results_["params"]} == {True, False}


def test_gridsearch_routes_groups(routing):
    df = make_big_grouped_data(8000, 80, seed=7)
    ss = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0)
    ss.set_fit_request(groups=True).set_score_request(groups=True)
    grid = GridSearchCV(ss, {"estimator__reml": [True, False]}, cv=GroupKFold(3))
    grid.fit(df[["x", "b"]], df["y"], groups=df["g"])
    best = grid.best_estimator_
    # the routed groups reached the subsample fits: random effects for all 80 groups
    assert len(best.random_effects_["g"]) == 80
    assert best.cov_re_["g"].iloc[0, 0] == pytest.approx(0.25, rel=0.4)


def test_logit_modes_match_glmer_conditional_modes(reference):
    """Per-group Newton at lme4's (beta, Sigma) reproduces glmer's ranef and fitted values.

    glmer(y ~ period + (1 | herd), cbpp_bernoulli, family = binomial), lme4 1.1-31 (tests/data).
    """
    from skmixed._design.grouping import make_factors
    from skmixed._design.layout import ReBlock
    from skmixed.datasets import load_cbpp_bernoulli

    ref = reference("cbpp_bernoulli_laplace")
    df = load_cbpp_bernoulli()
    X = np.column_stack([np.ones(len(df))] + [(df["period"] == k).to_numpy(float) for k in "234"])
    f = make_factors(df["herd"])[0]
    blk = ReBlock(0, f.n_levels, ["(Intercept)"], [-1], np.ones((1, 1), dtype=bool))
    beta = np.array([ref["fixef"][k] for k in ["(Intercept)", "period2", "period3", "period4"]])
    want = pd.Series({r["level"]: r["(Intercept)"] for r in ref["ranef"]["herd"]})
    # both routes: the numpy Newton and (when built) the GLMM kernel
    for fun in (ssplit.logit_modes_newton, ssplit.logit_modes):
        b, mu = fun(X, df["y"].to_numpy(float), None, f.codes, blk, beta, np.array([[ref["varcorr"][0]["vcov"]]]))
        got = pd.Series(b[:, 0], index=f.levels.astype(str))
        np.testing.assert_allclose(got.loc[want.index], want, atol=1e-7)
        np.testing.assert_allclose(mu[:len(ref["fitted_head"])], ref["fitted_head"], atol=1e-8)


# ---------------------------------------------------------------------------- logistic GLMM
import skmixed  # noqa: E402

MixedLogisticRegressor = getattr(skmixed, "MixedLogisticRegressor", None)
needs_logistic = pytest.mark.skipif(MixedLogisticRegressor is None, reason="MixedLogisticRegressor not in this build")


@pytest.fixture(scope="module")
def binary():
    df = make_big_grouped_data(60_000, 240, seed=12)
    X, y, g = df[["x", "b"]], df["y_bin"].map({0: "no", 1: "yes"}), df["g"]
    return X, y, g, MixedLogisticRegressor().fit(X, y, groups=g)


@needs_logistic
@pytest.mark.parametrize("strategy,rule", [("groups", "independent"), ("within", "sandwich"),
                                           ("pairwise", "sandwich")])
def test_logistic_strategies_match_full_fit(binary, strategy, rule):
    X, y, g, full = binary
    ss = SplitSampleMixed(MixedLogisticRegressor(), n_subsamples=4, strategy=strategy, random_state=0).fit(
        X, y, groups=g)
    assert ss.covariance_rule_ == rule
    z = (ss.fixed_effects_ - full.fixed_effects_) / full.fixed_effects_se_
    assert np.all(np.abs(z) < 0.5), z
    ratio = ss.fixed_effects_se_ / full.fixed_effects_se_
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    # Laplace variance estimates on 60 groups per subsample are biased low a little
    assert abs(ss.cov_re_["g"].iloc[0, 0] / full.cov_re_["g"].iloc[0, 0] - 1) < 0.1
    # conditional modes recomputed at the combined parameters for all 240 groups
    np.testing.assert_allclose(ss.random_effects_["g"], full.random_effects_["g"], atol=0.03)
    assert list(ss.classes_) == ["no", "yes"] and ss.coef_.shape == (1, 2) and ss.intercept_.shape == (1,)
    proba = ss.predict_proba(X.iloc[:50], g.iloc[:50])
    np.testing.assert_allclose(proba, full.predict_proba(X.iloc[:50], g.iloc[:50]), atol=0.01)
    assert set(ss.predict(X.iloc[:50], g.iloc[:50])) <= {"no", "yes"}
    assert ss.score(X, y, groups=g) == pytest.approx(full.score(X, y, groups=g), abs=0.005)


@needs_logistic
def test_logistic_modes_at_its_own_estimates():
    """logit_modes at a fitted GLMM's (beta, Sigma) reproduces its conditional modes."""
    df = make_big_grouped_data(20_000, 100, seed=13)
    m = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    fd = clone(m)._prepare_fit(df[["x", "b"]], df["y_bin"], df["g"])
    blk = amalgamate(fd.terms, [100])[0]
    b, _ = ssplit.logit_modes(fd.X, fd.y, None, fd.factors[0].codes, blk, m.fixed_effects_.to_numpy(),
                              m.cov_re_["g"].to_numpy())
    np.testing.assert_allclose(b, m.random_effects_["g"].to_numpy(), atol=1e-6)


# ---------------------------------------------------------------------------- additive model (generic path)
@pytest.mark.parametrize("strategy,rule", [("groups", "independent"), ("within", "moment")])
def test_additive_model_generic_path(strategy, rule):
    from skmixed import AdditiveMixedRegressor

    df = make_big_grouped_data(60_000, 160, seed=14)
    X, y, g = df[["x", "b"]], df["y"], df["g"]
    full = AdditiveMixedRegressor(smooth=["x"]).fit(X, y, groups=g)
    ss = SplitSampleMixed(AdditiveMixedRegressor(smooth=["x"]), n_subsamples=4, strategy=strategy,
                          random_state=0).fit(X, y, groups=g)
    # spline bases differ between subsamples: parametric part and variances combine, predictions average
    assert not ss.combines_parameters_ and ss.combined_estimator_ is None
    assert ss.covariance_rule_ == rule
    assert list(ss.fixed_effects_.index) == ["(Intercept)", "b"]
    z = (ss.fixed_effects_ - full.fixed_effects_) / full.fixed_effects_se_
    assert np.all(np.abs(z) < 0.5), z
    assert np.all(np.abs(ss.fixed_effects_se_ / full.fixed_effects_se_ - 1) < 0.15)
    assert abs(ss.cov_re_["g"].iloc[0, 0] / full.cov_re_["g"].iloc[0, 0] - 1) < 0.1
    assert abs(ss.sigma_ / full.sigma_ - 1) < 0.01
    np.testing.assert_allclose(ss.predict(X.iloc[:100]), full.predict(X.iloc[:100]), atol=0.02)
    np.testing.assert_allclose(ss.predict(X.iloc[:100], g.iloc[:100]), full.predict(X.iloc[:100], g.iloc[:100]),
                               atol=0.15)
    assert ss.score(X, y, groups=g) == pytest.approx(full.score(X, y, groups=g), abs=0.01)
    assert len(ss.random_effects_["g"]) == 160


class _ThreadProbe(MixedLinearRegressor):
    """Records numba's thread count inside each subsample fit."""

    seen = []

    def fit(self, X, y, groups=None, sample_weight=None):
        import numba

        _ThreadProbe.seen.append(numba.get_num_threads())
        return super().fit(X, y, groups=groups, sample_weight=sample_weight)


def test_threads_capped_inside_parallel_fits():
    import numba

    X, y, g = _small()
    budget = min(joblib.cpu_count(), numba.get_num_threads())
    _ThreadProbe.seen = []
    with joblib.parallel_config(backend="threading"):
        SplitSampleMixed(_ThreadProbe(), n_subsamples=4, n_jobs=2, random_state=0).fit(X, y, groups=g)
    assert _ThreadProbe.seen == [max(1, budget // 2)] * 4
    _ThreadProbe.seen = []
    SplitSampleMixed(_ThreadProbe(), n_subsamples=4, n_jobs=1, random_state=0).fit(X, y, groups=g)
    assert _ThreadProbe.seen == [budget] * 4
    assert numba.get_num_threads() == budget  # the limits are undone afterwards
