"""AdditiveMixedRegressor against mgcv 1.8-41 bam fits (tests/data/*.json) and inside scikit-learn."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmixed import AdditiveMixedRegressor, NoGroupsWarning
from skmixed._kernels.binned import count_unique_upto, discretize
from skmixed._solvers.freml import BinnedLayout, BinnedTerm
from skmixed.datasets import load_gamsim_re, load_metacognition, make_big_grouped_data

SMOOTH = ["x0", "x1", "x2", "x3"]

# name of reference, constructor params, response, edf tolerance
CASES = [
    ("gamsim_re_bam_plain", dict(discrete=False), "y", 0.1),
    ("gamsim_re_bam_discrete", dict(discrete=True), "y", 0.3),
    ("gamsim_re_bam_binomial_discrete", dict(discrete=True, family="binomial"), "yb", 0.3),
]


@pytest.fixture(scope="module")
def gamsim():
    return load_gamsim_re()


@pytest.mark.parametrize("name, params, ycol, edf_tol", CASES)
def test_gamsim_against_bam(gamsim, reference, name, params, ycol, edf_tol):
    ref = reference(name)  # call: bam(y ~ s(x0,bs='cr')+...+s(x3,bs='cr')+s(fac,bs='re'), ...)
    df = gamsim
    m = AdditiveMixedRegressor(smooth=SMOOTH, **params).fit(df[SMOOTH], df[ycol], groups=df["fac"])
    assert m.converged_
    names = list(ref["sp"])
    assert list(m.edf_.index) == names
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_by_term"], atol=edf_tol)
    assert m.re_sd_["s(fac)"] == pytest.approx(ref["re_sd"], rel=0.02)
    if "sig2" in ref:
        assert m.scale_ == pytest.approx(ref["sig2"], rel=0.01)
        tol = 0.01 * np.std(df[ycol], ddof=1)
    else:
        assert m.scale_ == 1.0
        tol = 0.01  # probabilities
    np.testing.assert_allclose(m.fitted_values_[:20], ref["fitted_head"], atol=tol)
    # predict at the exact covariates, conditional on the fitted random effects
    np.testing.assert_allclose(m.predict(df[SMOOTH].head(20), groups=df["fac"].head(20)),
                               ref["fitted_head"], atol=tol)
    # smoothing parameters of well-determined terms on mgcv's scale (x3's is ~infinite)
    for k in ["s(x0)", "s(x1)", "s(x2)", "s(fac)"]:
        assert m.smoothing_params_[k] == pytest.approx(ref["sp"][k], rel=0.02)
    if "fREML" in ref and params["discrete"]:
        assert m.reml_score_ == pytest.approx(ref["fREML"], rel=1e-5)


def test_metacognition_random_slopes(reference):
    # bam(confidence ~ s(contrast, bs='cr', k=5) + correct + s(id, bs='re') + s(id, contrast, bs='re'))
    ref = reference("metacognition_bam")
    df = load_metacognition()
    X = df[["contrast", "correct"]]
    m = AdditiveMixedRegressor(smooth=["contrast"], n_knots=5, random_slopes=["contrast"], discrete=False)
    m.fit(X, df["confidence"], groups=df["id"])
    assert m.scale_ == pytest.approx(ref["sig2"], rel=0.01)
    np.testing.assert_allclose(m.edf_.to_numpy(), ref["edf_by_term"], atol=0.1)
    assert list(m.edf_.index) == list(ref["sp"])
    np.testing.assert_allclose(m.smoothing_params_.to_numpy(), list(ref["sp"].values()), rtol=0.02)
    for k, v in ref["coef_parametric"].items():
        assert m.fixed_effects_[k] == pytest.approx(v, rel=1e-3)
    np.testing.assert_allclose(m.predict(X.head(20), groups=df["id"].head(20)), ref["fitted_head"],
                               atol=0.01 * df["confidence"].std())
    assert set(m.random_effects_["id"].columns) == {"(Intercept)", "contrast"}
    assert m.re_sd_["s(id)"] ** 2 == pytest.approx(m.cov_re_["id"].loc["(Intercept)", "(Intercept)"])
    s = m.summary()
    assert "s(contrast)" in s and "Parametric coefficients" in s and "R-sq.(adj)" in s


def test_poisson_against_bam(gamsim):
    # R: d$yc <- pmax(round(d$y), 0)
    #    bam(yc ~ s(x0,bs='cr')+s(x1,bs='cr')+s(x2,bs='cr')+s(x3,bs='cr')+s(fac,bs='re'),
    #        family=poisson, data=d, discrete=TRUE)   (mgcv 1.8-41)
    edf = [4.54311043225177, 3.11280608812287, 8.59042047703205, 1.00068567501028, 37.91517403304449]
    sp_fac = 22.1275712456918
    fitted = [4.45547794179700, 6.06026057350469, 7.61539141075994, 10.78423823616723, 10.52441792611049]
    df = gamsim
    yc = np.maximum(np.round(df["y"]), 0)
    m = AdditiveMixedRegressor(smooth=SMOOTH, family="poisson").fit(df[SMOOTH], yc, groups=df["fac"])
    np.testing.assert_allclose(m.edf_.to_numpy(), edf, atol=0.01)
    assert m.smoothing_params_["s(fac)"] == pytest.approx(sp_fac, rel=1e-3)
    np.testing.assert_allclose(m.fitted_values_[:5], fitted, rtol=1e-4)


def test_by_factor_smooth_against_bam(gamsim):
    # R: d$f <- factor(d$fac %% 3)
    #    bam(y ~ f + s(x2, bs='cr', by=f) + s(x0, bs='cr') + s(fac, bs='re'), data=d, discrete=FALSE,
    #        method='fREML')   (mgcv 1.8-41)
    sig2 = 7.53736778508423
    edf = [8.47801209209975, 8.30431635811873, 8.49263194852323, 4.99414238409691, 36.07327902972595]
    sp = [8.98211505749603, 13.67164407333948, 9.51387794551478, 1127.30576599486290, 2.52159585939808]
    fitted = [5.85711335510398, 5.81241732409840, 5.91773186518063, 12.50278990281587, 12.60664434049849]
    coef = [8.549134603553878, -0.767834935090291, -0.415072327608344]
    df = gamsim.assign(f=gamsim["fac"].astype(int) % 3)
    X = df[["x2", "x0", "f"]]
    m = AdditiveMixedRegressor(smooth=[("x2", "f"), "x0"], discrete=False).fit(X, df["y"], groups=df["fac"])
    assert list(m.edf_.index) == ["s(x2):f0", "s(x2):f1", "s(x2):f2", "s(x0)", "s(fac)"]
    assert list(m.fixed_effects_.index) == ["(Intercept)", "f1", "f2"]
    assert m.scale_ == pytest.approx(sig2, rel=1e-5)
    np.testing.assert_allclose(m.edf_.to_numpy(), edf, atol=1e-3)
    np.testing.assert_allclose(m.smoothing_params_.to_numpy(), sp, rtol=1e-3)
    np.testing.assert_allclose(m.fitted_values_[:5], fitted, atol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), coef, atol=1e-4)
    np.testing.assert_allclose(m.predict(X.head(5), groups=df["fac"].head(5)), fitted, atol=1e-4)
    assert m.partial_effect("s(x2):f1")["se"].gt(0).all()
    # discrete fit of the same model is close
    md = AdditiveMixedRegressor(smooth=[("x2", "f"), "x0"]).fit(X, df["y"], groups=df["fac"])
    np.testing.assert_allclose(md.edf_.to_numpy(), edf, atol=0.3)
    # a by column with many values is numeric (mgcv's s(x2, by=x0): the smooth times x0, uncentred)
    mn = AdditiveMixedRegressor(smooth=[("x2", "x0")]).fit(X, df["y"], groups=df["fac"])
    assert list(mn.edf_.index) == ["s(x2):x0", "s(fac)"] and "x0" not in mn.fixed_effects_.index


def test_crossed_factors_against_bam():
    # R: bam(confidence ~ s(contrast, bs='cr', k=5) + correct + s(id, bs='re') + s(block, bs='re'),
    #        data=metacognition, method='fREML')   (mgcv 1.8-41); id (20 levels) is eliminated by
    # Schur complement, block (9 levels) joins the dense part.
    sig2 = 644.84506763966
    edf = [3.98648492501700, 18.8446659767940, 6.18264662356029]
    sp = [10.6976849185671, 3.11384604111189, 246.850153218579]
    fitted = [104.3428727085613, 33.8186931211326, 86.3270657238807, 43.3189088367315, 59.0644343849937]
    df = load_metacognition()
    m = AdditiveMixedRegressor(smooth=["contrast"], n_knots=5, discrete=False)
    m.fit(df[["contrast", "correct"]], df["confidence"], groups=df[["id", "block"]])
    assert m.scale_ == pytest.approx(sig2, rel=1e-5)
    np.testing.assert_allclose(m.edf_.to_numpy(), edf, atol=1e-3)
    np.testing.assert_allclose(m.smoothing_params_.to_numpy(), sp, rtol=1e-3)
    np.testing.assert_allclose(m.fitted_values_[:5], fitted, atol=1e-3)
    assert list(m.edf_.index) == ["s(contrast)", "s(id)", "s(block)"]
    assert len(m.random_effects_["block"]) == 9


def test_metadata_routing_groups():
    import sklearn
    from sklearn.model_selection import cross_validate

    df = make_big_grouped_data(3000, 30, seed=7)
    sklearn.set_config(enable_metadata_routing=True)
    try:
        est = AdditiveMixedRegressor(smooth=["x"]).set_fit_request(groups=True).set_score_request(groups=True)
        res = cross_validate(est, df[["x", "b"]], df["y"], cv=GroupKFold(3), params={"groups": df["g"]},
                             return_estimator=True)
    finally:
        sklearn.set_config(enable_metadata_routing=False)
    assert all(len(e.random_effects_["g"]) == 20 for e in res["estimator"])


def test_predict_modes_and_std(gamsim):
    df = gamsim
    m = AdditiveMixedRegressor(smooth=SMOOTH, discrete=False).fit(df[SMOOTH], df["y"], groups=df["fac"])
    X = df[SMOOTH].head(50)
    cond, se_c = m.predict(X, groups=df["fac"].head(50), return_std=True)
    pop, se_p = m.predict(X, return_std=True)
    unseen = m.predict(X, groups=np.full(50, "new-level"))
    np.testing.assert_allclose(unseen, pop)
    u = m.random_effects_["fac"]["(Intercept)"].reindex(df["fac"].head(50)).to_numpy()
    np.testing.assert_allclose(cond - pop, u, atol=1e-10)
    assert np.all(se_c > 0) and np.all(se_p > 0)
    # standard errors against the explicit dense posterior covariance (small problem)
    D, Zu, g = m._design_rows(np.column_stack([np.ones(50), X.to_numpy()]), [m.factors_[0].encode(df["fac"].head(50))])
    Hinv, M, Uinv = m._Hinv, m._M, m._Uinv
    G = M.shape[0]
    P = np.zeros((G + Hinv.shape[0],) * 2)
    P[G:, G:] = Hinv
    P[:G, G:] = -M[:, 0, :] @ Hinv
    P[G:, :G] = P[:G, G:].T
    P[:G, :G] = np.diag(Uinv[:, 0, 0]) + M[:, 0, :] @ Hinv @ M[:, 0, :].T
    full = np.hstack([np.eye(G)[g] * Zu, D])
    np.testing.assert_allclose(se_c, np.sqrt(np.einsum("ij,jk,ik->i", full, P, full) * m.scale_), rtol=1e-8)


def test_binomial_predict_is_probability(gamsim):
    df = gamsim
    m = AdditiveMixedRegressor(smooth=["x2"], family="binomial").fit(df[["x2", "x0"]], df["yb"], groups=df["fac"])
    p, se = m.predict(df[["x2", "x0"]], return_std=True)
    assert np.all((p > 0) & (p < 1)) and np.all(se > 0)
    assert "x0" in m.fixed_effects_.index


def test_ps_basis_against_bam(gamsim):
    # R: bam(y ~ s(x0,bs='ps')+s(x1,bs='ps')+s(x2,bs='ps')+s(x3,bs='ps')+s(fac,bs='re'),
    #        data=d, discrete=FALSE, method='fREML')   (mgcv 1.8-41)
    sig2 = 4.07201566307601
    edf = [4.70119725095040, 4.14424510540103, 8.83110786306617, 1.00007159289517, 38.45939804146717]
    sp = [279.638548163699, 551.711062892124, 0.264442256657218, 1.38327896061555]  # without s(x3)
    fitted = [3.80505602033925, 6.06569982932165, 7.93418265693257, 11.42145580872416, 11.41784538279101]
    df = gamsim
    m = AdditiveMixedRegressor(smooth=SMOOTH, basis="ps", discrete=False).fit(df[SMOOTH], df["y"], groups=df["fac"])
    assert m.scale_ == pytest.approx(sig2, rel=1e-4)
    np.testing.assert_allclose(m.edf_.to_numpy(), edf, atol=0.01)
    np.testing.assert_allclose(m.smoothing_params_.drop("s(x3)").to_numpy(), sp, rtol=1e-3)
    np.testing.assert_allclose(m.fitted_values_[:5], fitted, atol=1e-4)


def test_discrete_equals_exact_with_few_values():
    # <= 1000 distinct values: discretization is exact, so discrete and exact fits agree
    df = make_big_grouped_data(5000, 50, seed=2)
    df["xr"] = np.round(df["x"], 2)
    X = df[["xr", "b"]]
    a = AdditiveMixedRegressor(smooth=["xr"], discrete=True).fit(X, df["y"], groups=df["g"])
    b = AdditiveMixedRegressor(smooth=["xr"], discrete=False).fit(X, df["y"], groups=df["g"])
    np.testing.assert_allclose(a.fitted_values_, b.fitted_values_, atol=1e-6)
    np.testing.assert_allclose(a.edf_.to_numpy(), b.edf_.to_numpy(), atol=1e-5)


def test_binned_crossproducts_match_dense():
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=n)
    g = rng.integers(0, 30, n).astype(np.int64)
    z = rng.normal(size=n)
    w = rng.uniform(0.5, 2, n)
    y = rng.normal(size=n)
    vals, k = discretize(x, 50)  # forced rounding: 50 grid points
    assert vals.size <= 50 and np.max(np.abs(vals[k] - x)) <= (x.max() - x.min()) / 49 / 2 + 1e-12
    B = np.column_stack([vals, vals**2, np.cos(vals)])
    Xp = np.column_stack([np.ones(n), rng.normal(size=n)])
    k2 = rng.integers(0, 2, n).astype(np.int64)
    k3 = rng.integers(0, 3, n).astype(np.int64)
    X2, X3 = rng.normal(size=(2, 2)), rng.normal(size=(3, 3))
    terms = [BinnedTerm("par", np.arange(n, dtype=np.int64), Xp, n),  # row-wise (m = n): OUTER
             BinnedTerm("sm", k, B, vals.size, S=np.eye(3), rank=3),  # DIAG with itself, CACC with par/re
             BinnedTerm("f2", k2, X2, 2), BinnedTerm("f3", k3, X3, 3),  # tiny: WBAR between them
             BinnedTerm("re", g, None, 30), BinnedTerm("re2", g, None, 30, z=z)]
    lay = BinnedLayout(terms, n)
    assert set(lay.pinfo[:, 2]) == {0, 1, 2, 3}  # every accumulation mode is exercised
    buf, r, _, _, zWz = lay.pass_(y, w, 0)
    Add, Aud, Auu, fd, fu = lay.assemble(buf, r)
    Xd = np.hstack([Xp, B[k], X2[k2], X3[k3]])
    Zd = np.hstack([np.eye(30)[g], np.eye(30)[g] * z[:, None]])
    np.testing.assert_allclose(Add, Xd.T @ (w[:, None] * Xd), rtol=1e-10, atol=1e-9)
    ZX = Zd.T @ (w[:, None] * Xd)
    np.testing.assert_allclose(Aud[:, 0, :], ZX[:30], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(Aud[:, 1, :], ZX[30:], rtol=1e-10, atol=1e-9)
    ZZ = Zd.T @ (w[:, None] * Zd)
    np.testing.assert_allclose(Auu[:, 0, 1], np.diag(ZZ[:30, 30:]), rtol=1e-10)
    np.testing.assert_allclose(fd, Xd.T @ (w * y), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(fu[:, 1], Zd[:, 30:].T @ (w * y), rtol=1e-10, atol=1e-9)
    assert zWz == pytest.approx(np.sum(w * y * y))
    # linear predictor from binned terms (row-wise and per-distinct-row) equals the dense product
    bd, u = rng.normal(size=lay.pd), rng.normal(size=(30, 2))
    eta_dense = Xd @ bd + Zd @ np.concatenate([u[:, 0], u[:, 1]])
    np.testing.assert_allclose(lay.linear_predictor(bd, u), eta_dense, rtol=1e-10, atol=1e-10)
    _, _, eta, dev, _ = lay.pass_(y, w, 0, bd, u)
    np.testing.assert_allclose(eta, eta_dense, rtol=1e-10, atol=1e-10)
    assert dev == pytest.approx(np.sum(w * (y - eta_dense) ** 2))
    assert count_unique_upto(x, 10) == 11 and count_unique_upto(np.array([1.0, 2, 1, 3]), 10) == 3


# ---------------------------------------------------------------------------- errors
def test_errors(gamsim):
    df = gamsim.head(400).copy()
    g = df["fac"]
    df["const"] = 1.0
    with pytest.raises(ValueError, match="constant"):
        AdditiveMixedRegressor(smooth=["const"], fit_intercept=False).fit(df[["const", "x0"]], df["y"], groups=g)
    df["few"] = np.arange(400) % 4
    with pytest.raises(ValueError, match="unique"):
        AdditiveMixedRegressor(smooth=["few"]).fit(df[["few"]], df["y"], groups=g)
    Xn = df[SMOOTH].copy()
    Xn.iloc[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AdditiveMixedRegressor(smooth=SMOOTH).fit(Xn, df["y"], groups=g)
    with pytest.raises(ValueError, match="not a column"):
        AdditiveMixedRegressor(smooth=["nope"]).fit(df[SMOOTH], df["y"], groups=g)
    with pytest.raises(ValueError, match="binomial"):
        AdditiveMixedRegressor(family="binomial").fit(df[SMOOTH], df["y"], groups=g)
    for bad in [dict(basis="tp"), dict(n_knots=2), dict(family="gamma")]:
        with pytest.raises(ValueError):
            AdditiveMixedRegressor(**bad).fit(df[SMOOTH], df["y"], groups=g)
    m = AdditiveMixedRegressor(smooth=SMOOTH)
    with pytest.raises(ValueError, match="NaN"):
        m.fit(df[SMOOTH], df["y"].where(df.index != 5), groups=g)
    assert not hasattr(m, "edf_")  # nothing half-updated
    with pytest.raises(ValueError, match="not a smooth"):
        AdditiveMixedRegressor(smooth=["x0"]).fit(df[SMOOTH], df["y"], groups=g).plot_partial("x1")


# ---------------------------------------------------------------------------- sklearn
SMOOTH_EST = AdditiveMixedRegressor(smooth=[0], n_knots=5)
_TINY = "the checks' tiny data have fewer distinct values than n_knots: a clear ValueError, intended"


def _expected_failures(est):
    if est.smooth is None:
        return {}
    return {
        "check_estimators_dtypes": _TINY,
        "check_sample_weights_pandas_series": _TINY,
        "check_sample_weights_not_an_array": _TINY,
        "check_sample_weights_shape": _TINY,
        "check_sample_weights_not_overwritten": _TINY,
        "check_fit2d_1sample": "one row: the smooth column is aliased with the intercept; the error says so",
        "check_sample_weight_equivalence_on_dense_data": "prior weights, as mgcv: REML uses the number of rows, "
                                                         "so weights are not frequency weights for smoothing",
    }


@parametrize_with_checks([AdditiveMixedRegressor(), SMOOTH_EST], expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        check(estimator)


def test_gridsearch_n_knots_pipeline_group_column():
    df = make_big_grouped_data(6000, 60, seed=5)
    df["x2"] = np.sin(2 * df["x"]) + df["x"]
    est = AdditiveMixedRegressor(smooth=["x"], group_column="g")
    pipe = Pipeline([("id", FunctionTransformer(validate=False)), ("amm", est)])
    grid = GridSearchCV(pipe, {"amm__n_knots": [5, 8]}, cv=GroupKFold(3))
    grid.fit(df[["x", "b", "g"]], df["y"], groups=df["g"])
    best = grid.best_estimator_[-1]
    assert best.n_knots in (5, 8)
    assert len(best.random_effects_["g"]) == 60
    assert best.re_sd_["s(g)"] == pytest.approx(0.5, rel=0.3)
    # labels inside X: predict uses them for conditional predictions
    p_cond = best.predict(df[["x", "b", "g"]].head(10))
    p_pop = AdditiveMixedRegressor(smooth=["x"]).fit(df[["x", "b"]], df["y"], groups=df["g"]).predict(
        df[["x", "b"]].head(10))
    assert not np.allclose(p_cond, p_pop)


def test_pickle_and_plot(gamsim, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    df = gamsim
    m = AdditiveMixedRegressor(smooth=SMOOTH).fit(df[SMOOTH], df["y"], groups=df["fac"])
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(m2.predict(df[SMOOTH].head()), m.predict(df[SMOOTH].head()))
    ax = m.plot_partial("x2")
    assert "s(x2)" in ax.get_ylabel()
    pe = m.partial_effect("s(x2)")
    # the partial effect of a centred smooth averages ~0 over the data and has positive SEs
    assert np.all(pe["se"] > 0)
    assert isinstance(pe, pd.DataFrame)


def test_scale_equivariance_and_no_spurious_warning():
    # a column in other units (x 1e3) moves nothing but its own coefficient / slope SD (issue 19)
    from skmixed.datasets import load_sleepstudy

    df = load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on a well-posed model
        a = AdditiveMixedRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
        b = AdditiveMixedRegressor(random_slopes=["Days"]).fit(df[["Days"]] * 1e3, df["Reaction"],
                                                                groups=df["Subject"])
    assert b.re_sd_["s(Subject)"] == pytest.approx(a.re_sd_["s(Subject)"], rel=1e-6)
    assert b.re_sd_["s(Subject,Days)"] * 1e3 == pytest.approx(a.re_sd_["s(Subject,Days)"], rel=1e-6)
    assert b.fixed_effects_["Days"] * 1e3 == pytest.approx(a.fixed_effects_["Days"], rel=1e-6)
    assert b.scale_ == pytest.approx(a.scale_, rel=1e-8)
    np.testing.assert_allclose(b.predict(df[["Days"]] * 1e3, groups=df["Subject"]),
                               a.predict(df[["Days"]], groups=df["Subject"]), rtol=1e-7)
    # lmer(Reaction ~ Days + (Days || Subject)): sd 25.0513, 5.98817, sigma 25.5653
    assert a.re_sd_["s(Subject)"] == pytest.approx(25.0513, rel=1e-4)
    assert a.re_sd_["s(Subject,Days)"] == pytest.approx(5.98817, rel=1e-4)
    assert a.sigma_ == pytest.approx(25.5653, rel=1e-4)


@pytest.mark.parametrize("family, ycol", [("poisson", "yc"), ("binomial", "yb")])
def test_known_scale_reml_score_against_bam(gamsim, reference, family, ycol):
    # bam's score for a known scale uses the penalized deviance, not the working model's penalized
    # residual sum of squares (their difference, Pearson's X^2 minus the deviance, was 214 here)
    ref = reference("gamsim_freml_score_bam")[family]  # tests/data/gamsim_freml_score_bam.R
    df = gamsim.assign(yc=np.maximum(np.round(gamsim["y"]), 0))
    m = AdditiveMixedRegressor(smooth=SMOOTH, family=family).fit(df[SMOOTH], df[ycol], groups=df["fac"])
    assert m.deviance_ == pytest.approx(ref["deviance"], rel=1e-6)
    assert m.reml_score_ == pytest.approx(ref["reml"], abs=1e-3)
