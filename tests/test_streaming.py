"""StreamingMixed (SEMA): exactness of the sweeps, the paper's simulation, streaming contracts."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmixed import MixedLinearRegressor, NoGroupsWarning
from skmixed._solvers.sema import SemaState, consume
from skmixed.datasets import load_sleepstudy
from skmixed.datasets._sema_stream import SEMA_FIXED_EFFECTS, SEMA_RE_VARIANCES, make_sema_stream
from skmixed.streaming import StreamingMixed


def _state_bytes(model):
    return pickle.dumps(model)


def _assert_states_equal(a, b):
    """Same state bit for bit (per-group arrays over the groups seen: capacities may differ)."""
    assert a.n_groups_ == b.n_groups_
    J = max(a.n_groups_, 1)
    for name in a._state.__dataclass_fields__:
        u, v = getattr(a._state, name), getattr(b._state, name)
        if name.startswith("g"):
            u, v = u[:J], v[:J]
        np.testing.assert_array_equal(u, v, err_msg=name)


@pytest.fixture(scope="module")
def sleep():
    d = load_sleepstudy()
    return d[["Days"]], d["Reaction"].to_numpy(), d["Subject"]


@pytest.fixture(scope="module")
def small_stream():
    # 5 random effects (condition B of the paper), small
    X, y, g, _ = make_sema_stream(6000, 150, n_random=5, seed=7)
    return X, y, g


# ---------------------------------------------------------------------------- (a) sweeps -> ML
@pytest.mark.parametrize("method", ["em", "ecme"])
def test_sweeps_converge_to_ml_sleepstudy(sleep, reference, method):
    X, y, g = sleep
    m = StreamingMixed(random_slopes=["Days"], refit_every=None).fit(X, y, groups=g)
    # the single pass of plain SEMA from the default start (rows ordered by subject) is far from ML ...
    ml = MixedLinearRegressor(reml=False, random_slopes=["Days"]).fit(X, y, groups=g)
    assert abs(m.fixed_effects_["Days"] - ml.fixed_effects_["Days"]) > 1.0
    # ... and repeated SEMA-Update sweeps (= EM on the stored summaries) converge to it
    m.sweep(5000, tol=1e-11, method=method)
    np.testing.assert_allclose(m.fixed_effects_, ml.fixed_effects_, rtol=1e-5)
    np.testing.assert_allclose(m.cov_re_["Subject"], ml.cov_re_["Subject"], rtol=1e-5)
    np.testing.assert_allclose(m.sigma_, ml.sigma_, rtol=1e-5)
    np.testing.assert_allclose(m.fixed_effects_se_, ml.fixed_effects_se_, rtol=1e-5)
    re_ml = ml.random_effects_["Subject"].loc[m.random_effects_["Subject"].index]
    np.testing.assert_allclose(m.random_effects_["Subject"], re_ml, rtol=1e-4, atol=1e-4)
    # and agrees with lme4 (REML=FALSE) to lme4's own optimizer accuracy
    ref = reference("sleepstudy_ml")
    np.testing.assert_allclose(m.fixed_effects_, list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(m.sigma_, ref["sigma"], rtol=1e-5)
    vc = {(v["var1"], v["var2"]): v["vcov"] for v in ref["varcorr"]}
    Phi = m.cov_re_["Subject"].to_numpy()
    np.testing.assert_allclose([Phi[0, 0], Phi[1, 1], Phi[0, 1]],
                               [vc[("(Intercept)", "")], vc[("Days", "")], vc[("(Intercept)", "Days")]],
                               rtol=1e-4)
    np.testing.assert_allclose(m.fixed_effects_se_, list(ref["fixef_se"].values()), rtol=1e-4)
    np.testing.assert_allclose(m.predict(X, g), ml.predict(X, g), rtol=1e-6)
    np.testing.assert_allclose(m.loglik_, ml.loglik_, rtol=1e-10)
    np.testing.assert_allclose([m.aic_, m.bic_], [ml.aic_, ml.bic_], rtol=1e-10)
    assert not m.is_singular_
    text = str(m.summary())
    assert "Subject" in text and "Days" in text and f"{m.loglik_:8.1f}" in text


def _dense_loglik(X, y, groups, zcols, beta, Phi, s2):
    """ML log-likelihood by brute force (dense V_j per group): an independent check."""
    Xd = np.column_stack([np.ones(len(y)), X])
    tot = 0.0
    for lev in np.unique(groups):
        m = groups == lev
        Z = Xd[m][:, zcols]
        V = Z @ Phi @ Z.T + s2 * np.eye(m.sum())
        r = y[m] - Xd[m] @ beta
        tot -= 0.5 * (np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r) + m.sum() * np.log(2 * np.pi))
    return tot


def test_sweeps_converge_to_ml_simulation(small_stream):
    X, y, g = small_stream
    slopes = [0, 1, 2, 3]
    m = StreamingMixed(random_slopes=slopes, n_train=600, refit_every=None).fit(X, y, groups=g)
    m.sweep(20000, tol=1e-12)
    ml = MixedLinearRegressor(reml=False, random_slopes=slopes).fit(X, y, groups=g)
    np.testing.assert_allclose(m.fixed_effects_, ml.fixed_effects_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.sigma_, ml.sigma_, rtol=1e-5)
    np.testing.assert_allclose(m.fixed_effects_se_, ml.fixed_effects_se_, rtol=1e-5)
    # The 5x5 covariance agrees to ~5e-4 only: the likelihood is very flat there and
    # MixedLinearRegressor's L-BFGS-B stops a little short.  The EM fixed point is the better
    # optimum: its log-likelihood (computed independently, by brute force) is not lower.
    np.testing.assert_allclose(m.cov_re_["group"], ml.cov_re_["group"], rtol=2e-3, atol=1e-4)
    zc = [0, 1, 2, 3, 4]
    ll_sema = _dense_loglik(X, y, g, zc, m.fixed_effects_.to_numpy(), m.cov_re_["group"].to_numpy(),
                            m.sigma_ ** 2)
    ll_ml = _dense_loglik(X, y, g, zc, ml.fixed_effects_.to_numpy(), ml.cov_re_["group"].to_numpy(),
                          ml.sigma_ ** 2)
    np.testing.assert_allclose(ll_ml, ml.loglik_, rtol=1e-10)
    assert ll_sema >= ll_ml - 1e-9
    # loglik_ from the group summaries equals the brute-force value
    np.testing.assert_allclose(m.loglik_, ll_sema, rtol=1e-12)


def test_one_ecme_sweep_gives_the_gls_fixed_effects():
    # EM's rate for the intercept is sum_j n_j shrink_j / N (~0.998 here), so SEMA's intercept
    # stays near its training value; one ECME sweep replaces beta by its GLS estimate at the
    # current variance parameters, which are already (nearly) ML
    X, y, g, _ = make_sema_stream(20_000, 300, n_random=1, seed=5)
    m = StreamingMixed(n_train=1000, refit_every=None).fit(X, y, groups=g)
    ml = MixedLinearRegressor(reml=False).fit(X, y, groups=g)
    before = abs(m.fixed_effects_.iloc[0] - ml.fixed_effects_.iloc[0])
    m.sweep(1, method="ecme")
    after = abs(m.fixed_effects_.iloc[0] - ml.fixed_effects_.iloc[0])
    assert after < 1e-3 * ml.fixed_effects_se_.iloc[0] < before
    np.testing.assert_allclose(m.fixed_effects_, ml.fixed_effects_, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="method"):
        m.sweep(1, method="newton")


# ---------------------------------------------------------------------------- (b) the paper's simulation
@pytest.mark.parametrize("n_random", [1, 5])
def test_paper_simulation_small(n_random):
    # the paper's design at 1/5 size: 10,000 rows, 200 individuals, training 1,000 rows
    X, y, g, _ = make_sema_stream(10_000, 200, n_random=n_random, seed=11)
    slopes = list(range(n_random - 1)) or None
    m = StreamingMixed(random_slopes=slopes, n_train=1000, refit_every=None).fit(X, y, groups=g)
    ml = MixedLinearRegressor(reml=False, random_slopes=slopes).fit(X, y, groups=g)
    assert m.n_seen_ == 10_000 and m.n_groups_ == 200
    se = ml.fixed_effects_se_.to_numpy()
    beta = m.fixed_effects_.to_numpy()
    # one pass of SEMA lands within half a standard error of the full-data ML fit ...
    assert np.all(np.abs(beta - ml.fixed_effects_.to_numpy()) < 0.5 * se)
    # ... and within 4 standard errors of the truth
    assert np.all(np.abs(beta - SEMA_FIXED_EFFECTS) < 4 * se)
    phi, phi_ml = np.diag(m.cov_re_["group"]), np.diag(ml.cov_re_["group"])
    np.testing.assert_allclose(phi, phi_ml, rtol=0.03, atol=0.01)
    np.testing.assert_allclose(phi, SEMA_RE_VARIANCES[:n_random], rtol=0.35)
    np.testing.assert_allclose(m.sigma_ ** 2, ml.sigma_ ** 2, rtol=2e-3)
    np.testing.assert_allclose(m.sigma_ ** 2, 5.0, rtol=0.05)
    np.testing.assert_allclose(m.fixed_effects_se_, se, rtol=0.02)
    # SEMA-Update every 1,000 rows does not move it away from ML
    su = StreamingMixed(random_slopes=slopes, n_train=1000, update_every=1000, refit_every=None).fit(X, y, groups=g)
    assert np.all(np.abs(su.fixed_effects_.to_numpy() - ml.fixed_effects_.to_numpy()) < 0.5 * se)
    assert su.n_iter_ == m.n_iter_ + 10  # rows 1000, 2000, ..., 10000


# ---------------------------------------------------------------------------- (c) pickle / resume
@pytest.mark.parametrize("forgetting,refit_every", [(None, None), (800.0, None), (None, 1000), (800.0, 1000)])
def test_pickle_mid_stream_resumes_identically(small_stream, forgetting, refit_every):
    X, y, g = small_stream
    # an int refit_every corrects at fixed rows: the stream does not depend on its batches
    params = dict(random_slopes=[0, 1], n_train=500, update_every=700, trace_every=250,
                  forgetting=forgetting, refit_every=refit_every)
    full = StreamingMixed(**params).fit(X, y, groups=g)
    a = StreamingMixed(**params)
    for k in range(0, 3000, 1000):
        a.partial_fit(X[k:k + 1000], y[k:k + 1000], groups=g[k:k + 1000])
    b = pickle.loads(pickle.dumps(a))
    for m in (a, b):
        m.partial_fit(X[3000:4500], y[3000:4500], groups=g[3000:4500])
        m.partial_fit(X[4500:], y[4500:], groups=g[4500:])
    _assert_states_equal(a, b)
    # batch boundaries do not matter either (up to the order groups are summed in a sweep)
    np.testing.assert_allclose(b.fixed_effects_, full.fixed_effects_, rtol=1e-12)
    np.testing.assert_allclose(b.cov_re_["group"], full.cov_re_["group"], rtol=1e-10)
    pd.testing.assert_frame_equal(b.trace_, full.trace_, rtol=1e-10)
    assert len(full.trace_) == 6000 // 250
    np.testing.assert_allclose(b.predict(X[:50], g[:50]), full.predict(X[:50], g[:50]), rtol=1e-12)


# ---------------------------------------------------------------------------- (d) bad batches
def test_bad_batch_leaves_state_identical(small_stream):
    X, y, g = small_stream
    m = StreamingMixed(random_slopes=[0], n_train=300).partial_fit(X[:1000], y[:1000], groups=g[:1000])
    before = _state_bytes(m)
    Xn = X[1000:1100].copy()
    Xn[50, 3] = np.nan
    yn = y[1000:1100].copy()
    yn[99] = np.inf
    gn = g[1000:1100].astype(object)
    gn[10] = None
    bad = [
        ((Xn, y[1000:1100], g[1000:1100]), "NaN"),
        ((X[1000:1100], yn, g[1000:1100]), "infinit"),
        ((X[1000:1100], y[1000:1100], gn), "missing"),
        ((X[1000:1100, :-1], y[1000:1100], g[1000:1100]), "features"),
        ((X[1000:1100], y[1000:1099], g[1000:1100]), "inconsistent|rows"),
        ((X[1000:1100], y[1000:1100], g[1000:1099]), "rows"),
        ((X[1000:1100], y[1000:1100], np.column_stack([g, g])[1000:1100]), "one grouping factor"),
        ((X[1000:1100], y[1000:1100], None), "groups are required"),
    ]
    for (Xb, yb, gb), msg in bad:
        with pytest.raises(ValueError, match=msg):
            m.partial_fit(Xb, yb, groups=gb)
        assert _state_bytes(m) == before
    # a bad first batch leaves an unfitted estimator unfitted
    fresh = StreamingMixed()
    with pytest.raises(ValueError):
        fresh.partial_fit(Xn, y[1000:1100], groups=g[1000:1100])
    assert not hasattr(fresh, "n_features_in_") and not hasattr(fresh, "_state")
    # and a bad fit does not destroy the fitted model
    with pytest.raises(ValueError):
        m.fit(Xn, y[1000:1100], groups=g[1000:1100])
    assert _state_bytes(m) == before


# ---------------------------------------------------------------------------- behaviour
def test_new_groups_and_prediction(sleep):
    X, y, g = sleep
    subj = g.to_numpy()
    first = np.isin(subj, np.unique(subj)[:9])
    m = StreamingMixed(random_slopes=["Days"]).partial_fit(X[first], y[first], groups=g[first])
    assert m.n_groups_ == 9
    m.partial_fit(X[~first], y[~first], groups=g[~first])
    assert m.n_groups_ == 18 and m.n_seen_ == 180
    assert set(m.random_effects_["Subject"].index) == set(np.unique(subj))
    Xd = np.column_stack([np.ones(len(X)), X.to_numpy()])
    pop = Xd @ m.fixed_effects_.to_numpy()
    np.testing.assert_allclose(m.predict(X), pop)
    np.testing.assert_allclose(m.predict(X, ["unseen"] * len(X)), pop)
    re = m.random_effects_["Subject"].loc[subj].to_numpy()
    np.testing.assert_allclose(m.predict(X, g), pop + re[:, 0] + re[:, 1] * X["Days"].to_numpy())


def test_group_column_equals_groups_argument(sleep):
    X, y, g = sleep
    Xg = X.assign(Subject=g.to_numpy())
    a = StreamingMixed(random_slopes=["Days"], group_column="Subject").fit(Xg, y)
    b = StreamingMixed(random_slopes=["Days"]).fit(X, y, groups=g)
    _assert_states_equal(a, b)
    np.testing.assert_array_equal(a.predict(Xg), b.predict(X, g))
    assert a.n_features_in_ == 2 and list(a.fixed_effects_.index) == ["(Intercept)", "Days"]


def test_no_groups_is_recursive_least_squares():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = X @ [1.0, -2.0, 0.5, 3.0] + 2 + rng.normal(size=300)
    with pytest.warns(NoGroupsWarning):
        m = StreamingMixed().fit(X, y)
    ols = LinearRegression().fit(X, y)
    np.testing.assert_allclose(m.coef_, ols.coef_, rtol=1e-9)
    np.testing.assert_allclose(m.intercept_, ols.intercept_, rtol=1e-9)
    rss = np.sum((y - ols.predict(X)) ** 2)
    # online, each row's residual sum of squares is taken at the previous row's beta ...
    np.testing.assert_allclose(m.sigma_ ** 2, rss / 300, rtol=1e-3)
    # ... one sweep re-evaluates it at the current one
    np.testing.assert_allclose(m.sweep().sigma_ ** 2, rss / 300, rtol=1e-9)
    Xd = np.column_stack([np.ones(300), X])
    se = np.sqrt(np.diag(rss / 300 * np.linalg.inv(Xd.T @ Xd)))
    np.testing.assert_allclose(m.fixed_effects_se_, se, rtol=1e-9)


def test_xtx_not_yet_invertible_keeps_start_values():
    X, y, g, _ = make_sema_stream(40, 5, seed=1)
    m = StreamingMixed().partial_fit(X[:10], y[:10], groups=g[:10])  # 15 coefficients, 10 rows
    np.testing.assert_array_equal(m.fixed_effects_, 0.0)
    assert np.isnan(m.fixed_effects_se_).all()
    with pytest.raises(ValueError, match="not invertible"):
        m.sweep()
    m.partial_fit(X[10:], y[10:], groups=g[10:])
    assert np.all(m.fixed_effects_ != 0.0)


def test_aliased_column_warns_once_and_names_it():
    X, y, g, _ = make_sema_stream(400, 20, seed=2)
    Xa = np.column_stack([X[:, :2], 2.0 * X[:, 1]])  # the third column is the second doubled
    m = StreamingMixed()
    with pytest.warns(UserWarning, match=r"singular: column\(s\) \['x2'\]"):
        m.fit(Xa, y, groups=g)
    np.testing.assert_array_equal(m.fixed_effects_, 0.0)  # not estimated, and now said so
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.partial_fit(Xa[:50], y[:50], groups=g[:50])  # once per stream
        # full-rank data: no warning
        StreamingMixed().fit(X[:, :2], y, groups=g)
    with pytest.warns(UserWarning, match="singular"):
        m.fit(Xa, y, groups=g)  # a refit is a new stream


def test_stream_pickled_before_the_aliasing_check_resumes():
    X, y, g, _ = make_sema_stream(400, 20, seed=2)
    m = StreamingMixed().partial_fit(X[:200], y[:200], groups=g[:200])
    m.__dict__.pop("_aliased_warned")  # as a stream pickled by the previous version
    m = pickle.loads(pickle.dumps(m))
    m.partial_fit(X[200:], y[200:], groups=g[200:])
    ref = StreamingMixed().partial_fit(X[:200], y[:200], groups=g[:200]).partial_fit(X[200:], y[200:],
                                                                                    groups=g[200:])
    np.testing.assert_array_equal(m.fixed_effects_, ref.fixed_effects_)


def test_update_every_is_a_sweep_every_k_rows(small_stream):
    X, y, g = small_stream
    a = StreamingMixed(random_slopes=[0], n_train=400, update_every=500, refit_every=None)
    b = StreamingMixed(random_slopes=[0], n_train=400, refit_every=None)
    for k in range(0, 2000, 500):
        a.partial_fit(X[k:k + 500], y[k:k + 500], g[k:k + 500])
        b.partial_fit(X[k:k + 500], y[k:k + 500], g[k:k + 500]).sweep()
    _assert_states_equal(a, b)


def test_forgetting_tracks_a_drifting_effect():
    rng = np.random.default_rng(5)
    n, J = 40_000, 200
    g = rng.integers(0, J, n)
    X = rng.normal(size=(n, 2))
    slope = np.where(np.arange(n) < n // 2, 1.0, 3.0)  # x0's effect jumps halfway
    y = 10 + slope * X[:, 0] - X[:, 1] + rng.normal(0, 2, J)[g] + rng.normal(size=n)
    plain = StreamingMixed(n_train=1000).fit(X, y, g)
    forget = StreamingMixed(n_train=1000, forgetting=2000).fit(X, y, g)
    assert abs(plain.coef_[0] - 2.0) < 0.1  # plain SEMA averages old and new regimes
    assert abs(forget.coef_[0] - 3.0) < 0.1  # the window follows the new one
    assert abs(forget.coef_[1] + 1.0) < 0.1
    np.testing.assert_allclose(forget.sigma_, 1.0, rtol=0.1)
    np.testing.assert_allclose(forget.cov_re_["group"].iloc[0, 0], 4.0, rtol=0.4)
    # forgetting=None is plain SEMA exactly; a window longer than the stream changes nothing
    long = StreamingMixed(n_train=1000, forgetting=10 * n).fit(X, y, g)
    _assert_states_equal(long, plain)


def test_random_slopes_validation(sleep):
    X, y, g = sleep
    with pytest.raises(ValueError, match="random slope"):
        StreamingMixed(random_slopes=["nope"]).fit(X, y, groups=g)
    for bad in (dict(n_train=-1), dict(update_every=0), dict(forgetting=1.0), dict(trace_every=0.5)):
        with pytest.raises(ValueError):
            StreamingMixed(**bad).fit(X, y, groups=g)


def test_solver_consume_matches_estimator(sleep):
    X, y, g = sleep
    m = StreamingMixed(random_slopes=["Days"], refit_every=None).fit(X, y, groups=g)
    Xd = np.ascontiguousarray(np.column_stack([np.ones(len(y)), X.to_numpy(float)]))
    codes = pd.Index(m.factors_[0].levels).get_indexer(g.to_numpy()).astype(np.int64)
    st = SemaState.new(2, 2)
    st.ensure_capacity(18)
    consume(st, Xd, y, codes, np.array([0, 1], dtype=np.int64))
    np.testing.assert_array_equal(st.beta, m._state.beta)
    np.testing.assert_array_equal(st.Phi, m._state.Phi)


def test_boundary_fit_singular_phi():
    # no between-group variance at all: the ML estimate of Phi is 0 (lme4: singular fit);
    # SEMA must stay finite (the E-step switches to the factor form of Cinv)
    rng = np.random.default_rng(2)
    g = rng.integers(0, 30, 3000)
    X = rng.normal(size=(3000, 1))
    y = 1 + 2 * X[:, 0] + rng.normal(size=3000)
    m = StreamingMixed(random_slopes=[0], n_train=300).fit(X, y, groups=g)
    m.sweep(3000)
    ml = MixedLinearRegressor(reml=False, random_slopes=[0]).fit(X, y, groups=g)
    assert np.isfinite(m.cov_re_["group"].to_numpy()).all() and np.isfinite(m.loglik_)
    np.testing.assert_allclose(m.fixed_effects_, ml.fixed_effects_, atol=2e-3)
    np.testing.assert_allclose(m.sigma_, ml.sigma_, rtol=1e-3)
    assert m.loglik_ >= ml.loglik_ - 1e-2
    assert np.trace(m.cov_re_["group"]) < 0.01


def test_plot_trace():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from skmixed.plot import plot_trace

    X, y, g, _ = make_sema_stream(3000, 50, seed=3)
    m = StreamingMixed(n_train=300, trace_every=100).fit(X, y, groups=g)
    axes = plot_trace(m, params=["beta[(Intercept)]", "sigma2"], truth={"sigma2": 5.0})
    assert len(axes) == 2
    line = axes[1].get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(100, 3001, 100))
    np.testing.assert_array_equal(line.get_ydata(), m.trace_["sigma2"].to_numpy())
    with pytest.raises(ValueError, match="not in the trace"):
        plot_trace(m, params=["nope"])
    matplotlib.pyplot.close("all")


# ---------------------------------------------------------------------------- (e) scikit-learn
@parametrize_with_checks([StreamingMixed(), StreamingMixed(n_train=5, update_every=7, forgetting=50.0)])
def test_sklearn_compatible(estimator, check):
    # no expected failures: without groups the model is online least squares (with a
    # NoGroupsWarning), which passes every check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        check(estimator)


# ---------------------------------------------------------------------------------------------------
# formula-started streams
def test_from_formula_stream_equals_the_array_stream():
    df = load_sleepstudy()
    m = StreamingMixed.from_formula("Reaction ~ Days + (1 + Days | Subject)", df.iloc[:60], n_train=40)
    for k in range(60, len(df), 40):
        m.partial_fit(df.iloc[k:k + 40])  # y and the groups come from the formula's columns
    a = StreamingMixed(random_slopes=["Days"], n_train=40)
    a.partial_fit(df[["Days"]].iloc[:60], df["Reaction"].iloc[:60], groups=df["Subject"].iloc[:60])
    for k in range(60, len(df), 40):
        a.partial_fit(df[["Days"]].iloc[k:k + 40], df["Reaction"].iloc[k:k + 40],
                      groups=df["Subject"].iloc[k:k + 40])
    assert m.n_seen_ == len(df) and m.formula_.startswith("Reaction")
    np.testing.assert_array_equal(m.fixed_effects_, a.fixed_effects_)
    np.testing.assert_array_equal(m.cov_re_["Subject"], a.cov_re_["Subject"])
    assert m.sigma_ == a.sigma_
    np.testing.assert_array_equal(m.predict(df), a.predict(df[["Days"]], groups=df["Subject"]))
    # a batch without the grouping column is refused, naming it, and changes nothing
    with pytest.raises(ValueError, match="Subject"):
        m.partial_fit(df.drop(columns=["Subject"]).iloc[:10])
    assert m.n_seen_ == len(df)
    # no grouping column: the population prediction
    np.testing.assert_allclose(m.predict(df.drop(columns=["Subject"])),
                               m.fixed_effects_["(Intercept)"] + m.fixed_effects_["Days"] * df["Days"])


def test_from_formula_categorical_fixed_effect_and_new_levels():
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({"x": rng.normal(size=n), "k": rng.choice(["a", "b", "c"], n), "g": rng.integers(0, 40, n)})
    df["y"] = df["x"] + 0.5 * (df["k"] == "b") + rng.normal(size=40)[df["g"]] + rng.normal(size=n)
    m = StreamingMixed.from_formula("y ~ x + k + (1 | g)", df.iloc[:1000])
    m.partial_fit(df.iloc[1000:])
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x", "kb", "kc"]
    full = MixedLinearRegressor(reml=False).fit(pd.get_dummies(df[["x", "k"]], drop_first=True, dtype=float),
                                                df["y"], groups=df["g"])
    m.sweep(300, method="ecme")
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), full.fixed_effects_.to_numpy(), atol=2e-3)
    # a level the first batch did not have is refused, and the stream is left as it was
    first = df.iloc[:1000][df["k"].iloc[:1000] != "c"]
    s = StreamingMixed.from_formula("y ~ x + k + (1 | g)", first)
    state = pickle.dumps(s)
    with pytest.raises(ValueError, match="the fixed-effect coding has not seen"):
        s.partial_fit(df.iloc[1000:])
    assert pickle.dumps(s) == state


@pytest.mark.parametrize("formula,kwargs,msg", [
    ("Reaction ~ Days + (1 | Subject) + (1 | Days)", {"forgetting": 100.0}, "does not support forgetting"),
    ("Reaction ~ Days + (1 | Subject) + (1 | Days)", {"refit_every": None}, "does not support refit_every=None"),
    ("Reaction ~ Days + (1 + Days || Subject)", {}, "full covariance"),
    ("Reaction ~ Days + (0 + Days | Subject)", {}, "random intercept"),
    ("Reaction ~ 1 + (1 + Days | Subject)", {}, "must also be fixed-effect"),
    ("Reaction ~ Days + (1 | Subject)", {"random_slopes": ["Days"]}, "set by the formula"),
    ("Missing ~ Days + (1 | Subject)", {}, "not in data"),
])
def test_from_formula_rejects_what_sema_cannot_fit(formula, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        StreamingMixed.from_formula(formula, load_sleepstudy(), **kwargs)
