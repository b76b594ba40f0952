"""StreamingMixed with exact corrections: right whatever the order of the rows (issue 17).

Plain SEMA is one partial EM step per row, so its answer depends on the row order; the
corrections refit the ML fit of all rows seen from SEMA's own group statistics.  Every check
here is against the batch ML fit (``MixedLinearRegressor(reml=False)``) of the same rows, in
units of that fit's standard errors.
"""

import pickle
import warnings

import numpy as np
import pytest

from skmixed import MixedLinearRegressor
from skmixed._kernels.sema import decay_factor
from skmixed.datasets import make_big_grouped_data
from skmixed.streaming import StreamingMixed, StreamOrderWarning

N_ROWS, N_GROUPS, BATCH, TRACE = 24_000, 60, 4_000, 2_000


def _orders(g, x, seed=0):
    n, J = g.shape[0], int(g.max()) + 1
    rng = np.random.default_rng(seed)
    return {
        "shuffled": rng.permutation(n),
        "grouped": np.argsort(g, kind="stable"),  # as make_big_grouped_data returns them
        "sorted_by_x": np.argsort(x, kind="stable"),
        "groups_one_after_another": np.argsort(rng.permutation(J)[g], kind="stable"),
        # groups come and go: each group's rows spread over a window of ~1/5 of the stream
        "drifting": np.argsort(g + rng.normal(0.0, J / 10, n), kind="stable"),
    }


@pytest.fixture(scope="module")
def data():
    df = make_big_grouped_data(N_ROWS, N_GROUPS, seed=3)
    return df[["x", "b"]].to_numpy(), df["y"].to_numpy(), df["g"].to_numpy()


def _ml(X, y, g, slopes, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary fits (the slope variance is 0 in truth)
        return MixedLinearRegressor(reml=False, random_slopes=slopes).fit(X, y, groups=g, **kw)


@pytest.mark.parametrize("slopes", [None, [0]], ids=["intercept", "slope"])
@pytest.mark.parametrize("order", ["shuffled", "grouped", "sorted_by_x", "groups_one_after_another", "drifting"])
def test_corrected_stream_is_the_batch_ml_fit_in_any_order(data, order, slopes):
    X, y, g = data
    o = _orders(g, X[:, 0])[order]
    X, y, g = X[o], y[o], g[o]
    m = StreamingMixed(random_slopes=slopes, trace_every=TRACE)
    for a in range(0, N_ROWS, BATCH):
        m.partial_fit(X[a:a + BATCH], y[a:a + BATCH], groups=g[a:a + BATCH])
    assert m.n_corrections_ >= N_ROWS // BATCH
    trace = m.trace_.set_index("n_rows")
    beta_cols = [c for c in trace.columns if c.startswith("beta[")]
    for rows in trace.index[trace.index >= 10_000]:
        ml = _ml(X[:rows], y[:rows], g[:rows], slopes)
        z = (trace.loc[rows, beta_cols].to_numpy(float) - ml.fixed_effects_.to_numpy()) / ml.fixed_effects_se_
        # every estimate of the stream (SEMA's per-row update between corrections) within 0.5 SE,
        # and after every batch (a correction) within 0.1 SE
        limit = 0.1 if rows % BATCH == 0 else 0.5
        assert np.abs(z).max() < limit, (rows, z.to_numpy())
    ml = _ml(X, y, g, slopes)
    z = (m.fixed_effects_ - ml.fixed_effects_) / ml.fixed_effects_se_
    assert np.abs(z).max() < 1e-3
    np.testing.assert_allclose(m.fixed_effects_se_, ml.fixed_effects_se_, rtol=1e-3)
    np.testing.assert_allclose(m.sigma_, ml.sigma_, rtol=1e-5)
    np.testing.assert_allclose(m.cov_re_["group"], ml.cov_re_["group"], rtol=1e-3, atol=1e-6)
    # the same optimum up to the optimisers' tolerances near the boundary (slope variance ~0)
    assert m.loglik_ >= ml.loglik_ - 1e-4


def test_plain_sema_is_wrong_on_a_grouped_stream_and_warns(data):
    # the finding, in small: without the corrections SEMA is far from ML on grouped
    # rows, and now says so by name
    X, y, g = data
    o = _orders(g, X[:, 0])["grouped"]
    ml = _ml(X, y, g, [0])
    with pytest.warns(StreamOrderWarning, match="rows arrive grouped"):
        plain = StreamingMixed(random_slopes=[0], refit_every=None).fit(X[o], y[o], groups=g[o])
    assert np.abs((plain.fixed_effects_ - ml.fixed_effects_) / ml.fixed_effects_se_).max() > 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamOrderWarning)
        StreamingMixed(random_slopes=[0]).fit(X[o], y[o], groups=g[o])  # corrected: no warning
        shuffled = np.random.default_rng(1).permutation(len(y))
        StreamingMixed(random_slopes=[0], refit_every=None).fit(X[shuffled], y[shuffled], groups=g[shuffled])
    s = np.argsort(X[:, 0])
    with pytest.warns(StreamOrderWarning, match=r"sorted by or trend in x0"):
        StreamingMixed(refit_every=None).fit(X[s], y[s], groups=g[s])


def test_forgetting_target_is_the_weighted_batch_fit(data):
    # with a window the target is the ML fit of the down-weighted rows
    X, y, g = data
    o = _orders(g, X[:, 0])["drifting"]
    X, y, g = X[o][:12_000], y[o][:12_000], g[o][:12_000]
    alpha = 3000.0
    m = StreamingMixed(forgetting=alpha)
    for a in range(0, 12_000, 3000):
        m.partial_fit(X[a:a + 3000], y[a:a + 3000], groups=g[a:a + 3000])
    n = len(y)
    w = np.array([decay_factor(i, n, alpha) for i in range(1, n + 1)])
    keep = w > 1e-12
    ml = _ml(X[keep], y[keep], g[keep], None, sample_weight=w[keep])
    z = (m.fixed_effects_ - ml.fixed_effects_) / ml.fixed_effects_se_
    assert np.abs(z).max() < 1e-3
    np.testing.assert_allclose(m.sigma_, ml.sigma_, rtol=1e-5)
    np.testing.assert_allclose(m.cov_re_["group"], ml.cov_re_["group"], rtol=1e-3)


def test_corrections_every_k_rows_do_not_depend_on_the_batches(data):
    X, y, g = data
    o = _orders(g, X[:, 0])["groups_one_after_another"]
    X, y, g = X[o][:9000], y[o][:9000], g[o][:9000]
    one = StreamingMixed(random_slopes=[0], refit_every=1500, trace_every=500).fit(X, y, groups=g)
    many = StreamingMixed(random_slopes=[0], refit_every=1500, trace_every=500)
    for a, b in [(0, 700), (700, 3100), (3100, 3101), (3101, 9000)]:
        many.partial_fit(X[a:b], y[a:b], groups=g[a:b])
        many = pickle.loads(pickle.dumps(many))  # and survive a pickle round trip mid-stream
    assert one.n_corrections_ == many.n_corrections_ == 6
    np.testing.assert_allclose(many.fixed_effects_, one.fixed_effects_, rtol=1e-10)
    np.testing.assert_allclose(many.trace_, one.trace_, rtol=1e-7, atol=1e-10)


def test_progress_callback_and_trace(data):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from skmixed.plot import plot_trace

    X, y, g = data
    seen = []
    m = StreamingMixed(trace_every=1000, refit_every=3000, callback=seen.append, verbose=1)
    m.fit(X[:12_000], y[:12_000], groups=g[:12_000])
    assert [info["n_rows"] for info in seen] == [3000, 6000, 9000, 12_000]
    assert all(info["corrected"] for info in seen)
    last = seen[-1]
    np.testing.assert_array_equal(last["fixed_effects"], m.fixed_effects_)
    assert last["sigma2"] == pytest.approx(m.sigma_ ** 2, rel=1e-12) and list(last["cov_re"].index) == ["(Intercept)"]
    # a trace row that falls on a correction records the corrected estimates
    tr = m.trace_.set_index("n_rows")
    np.testing.assert_allclose(tr.loc[12_000, "beta[x0]"], m.fixed_effects_["x0"], rtol=1e-12)
    axes = plot_trace(m, params=["beta[x0]", "sigma2"])
    np.testing.assert_array_equal(axes[0].get_lines()[0].get_xdata(), np.arange(1000, 12_001, 1000))
    matplotlib.pyplot.close("all")
    with pytest.raises(ValueError, match="callback"):
        StreamingMixed(callback=3).fit(X[:100], y[:100], groups=g[:100])
    with pytest.raises(ValueError, match="refit_every"):
        StreamingMixed(refit_every=0).fit(X[:100], y[:100], groups=g[:100])


def test_rows_after_a_correction_follow_the_gls_fixed_effects(data):
    # between corrections the fixed effects take ECME steps (GLS at the current variance
    # parameters), which keeps them near ML on a grouped stream where EM's step lags
    X, y, g = data
    o = _orders(g, X[:, 0])["groups_one_after_another"]
    X, y, g = X[o], y[o], g[o]
    m = StreamingMixed(refit_every=10_000).fit(X[:10_000], y[:10_000], groups=g[:10_000])
    m.partial_fit(X[10_000:14_000], y[10_000:14_000], groups=g[10_000:14_000])  # no correction
    assert m.n_corrections_ == 1
    ml = _ml(X[:14_000], y[:14_000], g[:14_000], None)
    z = (m.fixed_effects_ - ml.fixed_effects_) / ml.fixed_effects_se_
    assert np.abs(z).max() < 0.3


def test_a_small_batch_touches_only_its_groups_and_rolls_back(data, monkeypatch):
    # a batch writes its groups in place (with an undo log) instead of copying every group's
    # statistics: the per-group arrays stay the same objects; an interrupt after the rows
    # went in leaves the model pickle-identical
    import skmixed._solvers.sema as ssema
    import skmixed.streaming as stream

    X, y, g = data
    m = StreamingMixed().fit(X, y, groups=g)
    arrays = {n: getattr(m._state, n) for n in ("gA", "gb", "ginfo", "glast")}
    monkeypatch.setattr(ssema.SemaState, "copy", lambda self: pytest.fail("a batch copied the whole state"))
    m.partial_fit(X[:50], y[:50], groups=g[:50])  # 50 rows of 60 groups: below the correction budget
    assert m.n_seen_ == N_ROWS + 50 and m.n_corrections_ >= 1
    for n, a in arrays.items():
        assert getattr(m._state, n) is a, n
    before = pickle.dumps(m)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream, "_check_finite_state", boom)  # after the rows were consumed in place
    with pytest.raises(KeyboardInterrupt):
        m.partial_fit(X[100:150] + 1.0, y[100:150], groups=g[100:150])
    assert pickle.dumps(m) == before


def test_sample_weight_counts_a_row_that_many_times(data):
    # frequency weights: a row of weight k is k copies of the row, in the stream's
    # statistics and so in the corrections' ML fit (MixedLinearRegressor's weights="frequency")
    X, y, g = data
    o = _orders(g, X[:, 0])["grouped"]
    X, y, g = X[o][:6000], y[o][:6000], g[o][:6000]
    w = np.random.default_rng(5).integers(1, 4, len(y)).astype(float)
    m = StreamingMixed(random_slopes=[0])
    for a in range(0, 6000, 1500):
        m.partial_fit(X[a:a + 1500], y[a:a + 1500], groups=g[a:a + 1500], sample_weight=w[a:a + 1500])
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    copies = StreamingMixed(random_slopes=[0]).fit(X[rep], y[rep], groups=g[rep])
    ml = _ml(X, y, g, [0], sample_weight=w)
    for est in (m, copies):
        z = (est.fixed_effects_ - ml.fixed_effects_) / ml.fixed_effects_se_
        assert np.abs(z).max() < 1e-3
        np.testing.assert_allclose(est.sigma_, ml.sigma_, rtol=1e-5)
    np.testing.assert_allclose(m.cov_re_["group"], copies.cov_re_["group"], rtol=1e-4, atol=1e-8)
    assert m.n_seen_ == 6000
    skip = pickle.loads(pickle.dumps(m)).partial_fit(X[:100], y[:100], groups=g[:100],
                                                     sample_weight=np.r_[np.zeros(50), np.ones(50)])
    assert skip.n_seen_ == 6050
    for bad in (np.full(100, -1.0), np.full(100, np.nan), np.ones(99)):
        before = pickle.dumps(m)
        with pytest.raises(ValueError):
            m.partial_fit(X[:100], y[:100], groups=g[:100], sample_weight=bad)
        assert pickle.dumps(m) == before
