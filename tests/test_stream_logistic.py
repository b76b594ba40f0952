"""StreamingMixedLogistic: the online logistic GLMM against the batch Laplace fit (issue 17).

Rows arrive sorted by group (as make_big_grouped_data returns them), the hard order for a
stream.  Every check is in units of the batch fit's (MixedLogisticRegressor, Laplace)
standard errors.
"""

import pickle
import warnings

import numpy as np
import pytest

from skmixed import MixedLogisticRegressor
from skmixed.datasets import make_big_grouped_data
from skmixed.streaming_logistic import StreamingMixedLogistic


@pytest.fixture(scope="module")
def data():
    df = make_big_grouped_data(20_000, 50, seed=0)  # grouped order, 400 rows per group
    return df[["x", "b"]].to_numpy(float), df["y_bin"].to_numpy(), df["g"].to_numpy()


@pytest.fixture(scope="module")
def batch(data):
    X, y, g = data
    return MixedLogisticRegressor().fit(X, y, groups=g)


@pytest.fixture(scope="module")
def folded(data):
    # 16 rows per group kept, the other 384 of each group folded (24 folds per group)
    X, y, g = data
    return _stream(X, y, g, 4000, max_rows_per_group=16)


def _stream(X, y, g, size, **kw):
    m = StreamingMixedLogistic(**kw)
    for a in range(0, len(y), size):
        m.partial_fit(X[a:a + size], y[a:a + size], groups=g[a:a + size])
    return m


def test_grouped_stream_is_the_batch_laplace_fit(folded, batch):
    m = folded
    z = (m.fixed_effects_ - batch.fixed_effects_) / batch.fixed_effects_se_
    assert np.abs(z).max() < 0.2, z.to_numpy()
    np.testing.assert_allclose(m.cov_re_["group"], batch.cov_re_["group"], rtol=0.05)
    np.testing.assert_allclose(m.fixed_effects_se_, batch.fixed_effects_se_, rtol=0.02)
    assert m.n_seen_ == 20_000 and m.n_groups_ == 50 and m.n_corrections_ >= 5


def test_without_folds_it_is_the_batch_fit_exactly(data, batch):
    # every row kept: the corrections are the batch Laplace fit (the optimiser's check)
    X, y, g = data
    m = _stream(X, y, g, 5000, max_rows_per_group=400)
    z = (m.fixed_effects_ - batch.fixed_effects_) / batch.fixed_effects_se_
    assert np.abs(z).max() < 1e-3, z.to_numpy()
    np.testing.assert_allclose(m.cov_re_["group"], batch.cov_re_["group"], rtol=1e-3)
    assert m.deviance_ == pytest.approx(batch.deviance_, abs=1e-3)


def test_the_higher_order_fold_terms_matter(folded, batch):
    # the random-intercept series is what keeps folded rows accurate: without it (quadratic
    # folds only) the stored statistics describe the rows worse at the batch optimum
    import skmixed._kernels.stream_glmm as k

    m = folded
    st = m._state
    st2 = pickle.loads(pickle.dumps(st))
    st2.poly[:] = 0.0
    st2.polyx[:] = 0.0
    full = st.deviance(st.beta, st.theta, m._zidx)
    assert np.isfinite(full) and full == pytest.approx(batch.deviance_, abs=0.5)
    # (the stream's state is on its internal column origin and scale: the batch optimum mapped there)
    from skmixed.streaming_logistic import _beta_map

    b = np.linalg.solve(_beta_map(st.p, m._origin, True), batch.fixed_effects_.to_numpy())
    assert abs(st2.deviance(b, batch.theta_, m._zidx) - batch.deviance_) > \
        abs(st.deviance(b, batch.theta_, m._zidx) - batch.deviance_)
    assert k.POLY_DEGREE == 6


def test_predictions_transactions_and_errors(data):
    X, y, g = data
    m = _stream(X[:3000], y[:3000], g[:3000], 1000, max_rows_per_group=16)
    p = m.predict_proba(X[:5], groups=g[:5])
    assert p.shape == (5, 2) and np.allclose(p.sum(axis=1), 1)
    # a known group's conditional mode moves its predictions; an unseen group gets b = 0
    b = m.random_effects_["group"].loc[g[0], "(Intercept)"]
    eta = X[:5] @ m.coef_ + m.intercept_
    np.testing.assert_allclose(m.decision_function(X[:5], groups=g[:5]), eta + b)
    np.testing.assert_allclose(m.decision_function(X[:5], groups=["new"] * 5), eta)
    assert set(m.predict(X[:50], groups=g[:50])) <= {0, 1}
    before = pickle.dumps(m)
    for bad_y in (np.full(1000, 2.0), np.r_[y[3000:3999], np.nan]):
        with pytest.raises(ValueError):
            m.partial_fit(X[3000:4000], bad_y, groups=g[3000:4000])
        assert pickle.dumps(m) == before
    with pytest.raises(ValueError, match="groups"):
        m.partial_fit(X[3000:4000], y[3000:4000])
    with pytest.raises(ValueError, match="max_rows_per_group"):
        StreamingMixedLogistic(max_rows_per_group=0).fit(X[:100], y[:100], groups=g[:100])


def test_an_interrupted_batch_leaves_the_stream_as_it_was(data, monkeypatch):
    # rows are written into the groups' arrays in place (an undo log, not a copy of every
    # group): an interrupt after they went in rolls them back
    import skmixed.streaming_logistic as sl

    X, y, g = data
    m = _stream(X[:3000], y[:3000], g[:3000], 3000, max_rows_per_group=16)
    before = pickle.dumps(m)
    Xbuf = m._state.Xbuf

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sl.StreamingMixedLogistic, "_correct", boom)
    with pytest.raises(KeyboardInterrupt):
        m.partial_fit(X[3000:6000], y[3000:6000], groups=g[3000:6000])
    assert pickle.dumps(m) == before
    monkeypatch.undo()
    m.partial_fit(X[3000:3010], y[3000:3010], groups=g[3000:3010])  # a small batch: no copy
    assert m._state.Xbuf is Xbuf and m.n_seen_ == 3010


def test_progress_callback_and_trace_do_not_change_the_fit(data):
    X, y, g = (a[:6000] for a in data)
    info = []
    m = StreamingMixedLogistic(trace_every=1000, callback=info.append, verbose=1)
    plain = StreamingMixedLogistic()
    for a in range(0, 6000, 2000):
        m.partial_fit(X[a:a + 2000], y[a:a + 2000], groups=g[a:a + 2000])
        plain.partial_fit(X[a:a + 2000], y[a:a + 2000], groups=g[a:a + 2000])
    np.testing.assert_array_equal(m.fixed_effects_, plain.fixed_effects_)
    tr = m.trace_
    assert tr["n_rows"].tolist() == list(range(1000, 6001, 1000))
    assert {"beta[x0]", "Phi[(Intercept),(Intercept)]"} <= set(tr.columns)
    assert tr["beta[x0]"].iloc[-1] == m.fixed_effects_["x0"]  # the batch ends with a correction at 6000
    assert info[-1]["n_rows"] == 6000 and info[-1]["corrected"]
    assert sum(i["corrected"] for i in info) == m.n_corrections_
    with pytest.raises(ValueError, match="trace_every"):
        StreamingMixedLogistic(trace_every=0).fit(X, y, groups=g)


def test_formula_stream_is_the_array_stream_and_the_batch_fit():
    df = make_big_grouped_data(8_000, 20, seed=3)  # grouped order, 400 rows per group
    form = "y_bin ~ x + b + (1 + x | g)"
    m = StreamingMixedLogistic.from_formula(form, df.iloc[:3000], max_rows_per_group=500)
    m.partial_fit(df.iloc[3000:6000]).partial_fit(df.iloc[6000:])
    arr = StreamingMixedLogistic(random_slopes=["x"], max_rows_per_group=500)
    for a, b in ((0, 3000), (3000, 6000), (6000, 8000)):
        arr.partial_fit(df[["x", "b"]][a:b], df["y_bin"][a:b], groups=df["g"][a:b])
    np.testing.assert_array_equal(m.fixed_effects_, arr.fixed_effects_)
    np.testing.assert_array_equal(m.predict_proba(df.iloc[:50]), arr.predict_proba(df[["x", "b"]][:50],
                                                                                     groups=df["g"][:50]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLogisticRegressor.from_formula(form, df)
    d = np.abs((m.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max()
    assert d < 1e-4, d  # no row folded: the stream's Laplace fit is the batch one
    assert isinstance(m.predict_proba(df.iloc[:3]), np.ndarray)
    pop = m.decision_function(df.iloc[:3].drop(columns=["g"]))  # no grouping column: population part
    np.testing.assert_allclose(pop, df[["x", "b"]][:3].to_numpy() @ m.coef_ + m.intercept_)
    for form_bad, msg in [("y_bin ~ x + (1 | g) + (1 | b)", "one random-effects term"),
                          ("y_bin ~ x + (0 + x | g)", "random intercept"),
                          ("y_bin ~ b + (1 + x | g)", "must also be fixed-effect")]:
        with pytest.raises(ValueError, match=msg):
            StreamingMixedLogistic.from_formula(form_bad, df.iloc[:500])
    with pytest.raises(ValueError, match="groups given with a formula"):
        m.partial_fit(df.iloc[:10], groups=df["g"][:10])
    bad = df.iloc[:100].copy()
    bad.loc[bad.index[5], "x"] = np.nan
    before = pickle.dumps(m)
    with pytest.raises(ValueError):
        m.partial_fit(bad)
    assert pickle.dumps(m) == before


def test_sample_weight_counts_rows_and_matches_the_weighted_batch_fit():
    df = make_big_grouped_data(6_000, 20, seed=5)  # grouped order, 300 rows per group
    X, y, g = df[["x", "b"]].to_numpy(float), df["y_bin"].to_numpy(), df["g"].to_numpy()
    w = np.random.default_rng(1).integers(0, 3, len(y)).astype(float)  # zeros included
    m = StreamingMixedLogistic(max_rows_per_group=400)
    for a in range(0, 6000, 2000):
        m.partial_fit(X[a:a + 2000], y[a:a + 2000], groups=g[a:a + 2000], sample_weight=w[a:a + 2000])
    assert m.n_seen_ == int((w > 0).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLogisticRegressor().fit(X, y, groups=g, sample_weight=w)
    d = np.abs((m.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max()
    assert d < 1e-3, d
    np.testing.assert_allclose(m.theta_, ref.theta_, rtol=1e-3)
    # rows folded too (16 kept per group, the other ~180 weighted rows of each group folded)
    folded = StreamingMixedLogistic(max_rows_per_group=16).fit(X, y, groups=g, sample_weight=w)
    d2 = np.abs((folded.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max()
    assert d2 < 0.05, d2  # measured 0.013
    before = pickle.dumps(m)
    with pytest.raises(ValueError, match="(?i)negative"):
        m.partial_fit(X[:10], y[:10], groups=g[:10], sample_weight=-np.ones(10))
    assert pickle.dumps(m) == before


def test_forgetting_targets_the_down_weighted_batch_fit():
    from skmixed._kernels.sema import decay_factor

    df = make_big_grouped_data(6_000, 20, seed=5).sample(frac=1, random_state=1)
    X, y, g = df[["x", "b"]].to_numpy(float), df["y_bin"].to_numpy(), df["g"].to_numpy()
    alpha, n = 2000.0, len(y)
    w = np.array([decay_factor(i, n, alpha) for i in range(1, n + 1)])  # lam ** (rows after it, from alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLogisticRegressor().fit(X, y, groups=g, sample_weight=w)
    for keep, tol in ((1000, 1e-5), (16, 0.05)):  # no row folded (measured 3e-8 SE); folded (0.010)
        m = StreamingMixedLogistic(max_rows_per_group=keep, forgetting=alpha)
        for a in range(0, n, 1500):
            m.partial_fit(X[a:a + 1500], y[a:a + 1500], groups=g[a:a + 1500])
        d = np.abs((m.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max()
        assert d < tol, (keep, d)
    plain = StreamingMixedLogistic(max_rows_per_group=1000).fit(X, y, groups=g)
    assert np.abs((plain.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max() > 0.2  # it matters
    with pytest.raises(ValueError, match="forgetting"):
        StreamingMixedLogistic(forgetting=1.0).fit(X, y, groups=g)
