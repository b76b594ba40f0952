"""StreamingMixed with several grouping factors (crossed, nested): exact after every correction.

Every correction's estimates are compared with the batch ML fit (MixedLinearRegressor,
reml=False) of the rows seen at that point, in shuffled and grouped row orders.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from skmixed import MixedLinearRegressor, StreamingMixed

N = 3000


def _crossed(seed=0, n=N, slope=False):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 50, n)  # users
    i = rng.integers(0, 30, n)  # items
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(0, 0.8, 50)[u] + rng.normal(0, 0.5, 30)[i]
         + (rng.normal(0, 0.3, 50)[u] * x if slope else 0) + rng.normal(size=n))
    return pd.DataFrame(dict(user=u, item=i, x=x, y=y))


def _nested(seed=0, n=N):
    rng = np.random.default_rng(seed)
    school = rng.integers(0, 20, n)
    klass = rng.integers(0, 4, n)  # class labels repeat across schools: (1 | school/class)
    x = rng.normal(size=n)
    y = 2 - 0.3 * x + rng.normal(0, 1.0, 20)[school] + rng.normal(0, 0.5, (20, 4))[school, klass] + rng.normal(size=n)
    return pd.DataFrame(dict(school=school, klass=klass, x=x, y=y))


def _ordered(df, order, cols):
    if order == "grouped":
        return df.sort_values(cols, kind="stable").reset_index(drop=True)
    return df.sample(frac=1, random_state=3).reset_index(drop=True)


def _record(store):
    def cb(info):
        if info["corrected"]:
            store.append((info["n_rows"], info["fixed_effects"].copy(),
                          {k: v.copy() for k, v in info["cov_re"].items()}, info["sigma2"]))
    return cb


def _check_against_batch(corrections, fit_rows, min_corrections):
    """Each correction equals the batch ML fit of the rows seen then (beta in SE units, Phi, sigma)."""
    assert len(corrections) >= min_corrections
    worst = 0.0
    for n_rows, fe, cov, s2 in corrections:
        ref = fit_rows(n_rows)
        d = np.abs((fe - ref.fixed_effects_[fe.index]) / ref.fixed_effects_se_[fe.index]).max()
        worst = max(worst, d)
        for name, C in cov.items():
            np.testing.assert_allclose(C.to_numpy(), ref.cov_re_[name].loc[C.index, C.columns].to_numpy(),
                                       rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s2, ref.sigma_ ** 2, rtol=1e-6)
    assert worst < 1e-5, worst
    return worst


@pytest.mark.parametrize("order", ["shuffled", "grouped"])
def test_crossed_stream_equals_batch_fit_after_every_correction(order):
    df = _ordered(_crossed(), order, ["user", "item"])
    seen = []
    m = StreamingMixed(refit_every=750, callback=_record(seen))
    for rows in np.array_split(np.arange(N), 7):  # batch boundaries do not fall on the corrections
        c = df.iloc[rows]
        m.partial_fit(c[["x"]], c["y"], groups=c[["user", "item"]])
    assert m.n_corrections_ == 4 and m.n_seen_ == N

    def fit_rows(k):
        d = df.iloc[:k]
        return MixedLinearRegressor(reml=False).fit(d[["x"]], d["y"], groups=d[["user", "item"]])
    _check_against_batch(seen, fit_rows, 4)
    ref = fit_rows(N)
    np.testing.assert_allclose(m.fixed_effects_, ref.fixed_effects_, rtol=1e-6)
    np.testing.assert_allclose(m.theta_, ref.theta_, rtol=1e-5)
    np.testing.assert_allclose(m.loglik_, ref.loglik_, rtol=1e-9)
    for name in ("user", "item"):  # the BLUPs after a correction are the exact ones
        np.testing.assert_allclose(m.random_effects_[name].loc[ref.random_effects_[name].index],
                                   ref.random_effects_[name], atol=1e-6)
    np.testing.assert_allclose(m.predict(df[["x"]], groups=df[["user", "item"]]),
                               ref.predict(df[["x"]], groups=df[["user", "item"]]), atol=1e-6)


@pytest.mark.parametrize("order", ["shuffled", "grouped"])
def test_nested_formula_stream_equals_batch_fit(order):
    df = _ordered(_nested(1), order, ["school", "klass"])
    seen = []
    form = "y ~ x + (1 | school/klass)"
    m = StreamingMixed.from_formula(form, df.iloc[:1000], refit_every=1000, callback=_record(seen))
    m.partial_fit(df.iloc[1000:2200]).partial_fit(df.iloc[2200:])
    assert set(m.cov_re_) == {"school", "klass:school"}

    def fit_rows(k):
        return MixedLinearRegressor.from_formula(form, df.iloc[:k], reml=False)
    _check_against_batch(seen, fit_rows, 3)
    ref = fit_rows(N)
    np.testing.assert_allclose(m.predict(df.iloc[:50]), ref.predict(df.iloc[:50]), atol=1e-6)


def test_crossed_random_slope_formula_and_weights():
    df = _ordered(_crossed(2, slope=True), "grouped", ["user"])
    w = np.random.default_rng(0).integers(0, 3, N).astype(float)  # frequency weights, zeros included
    form = "y ~ x + (1 + x | user) + (1 | item)"
    m = StreamingMixed.from_formula(form, df.iloc[:1500], sample_weight=w[:1500], refit_every=100_000)
    m.partial_fit(df.iloc[1500:], sample_weight=w[1500:])  # "ends with" the end-of-batch rule: int k
    assert m.n_seen_ == int((w > 0).sum())
    m2 = StreamingMixed.from_formula(form, df.iloc[:1500], sample_weight=w[:1500])
    m2.partial_fit(df.iloc[1500:], sample_weight=w[1500:])  # "auto": ends with a correction
    ref = MixedLinearRegressor.from_formula(form, df, reml=False, sample_weight=w)
    d = np.abs((m2.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max()
    assert d < 1e-5, d
    np.testing.assert_allclose(m2.cov_re_["user"], ref.cov_re_["user"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(m2.sigma_, ref.sigma_, rtol=1e-6)


def test_rows_between_corrections_update_the_random_effects():
    df = _crossed(4)
    m = StreamingMixed(refit_every=2000).partial_fit(df[["x"]][:2000], df.y[:2000], groups=df[["user", "item"]][:2000])
    before = m.random_effects_["user"].copy()
    items_before = m.random_effects_["item"].copy()
    fe = m.fixed_effects_.copy()
    new_user = df.iloc[2000:2100].assign(user=999)  # a new user's first rows, no correction due
    m.partial_fit(new_user[["x"]], new_user.y, groups=new_user[["user", "item"]])
    assert m.n_corrections_ == 1
    pd.testing.assert_series_equal(m.fixed_effects_, fe)  # held until the next correction
    re = m.random_effects_["user"]
    resid = (new_user.y - new_user.x * fe["x"] - fe["(Intercept)"]
             - m.random_effects_["item"].loc[new_user.item].to_numpy()[:, 0]).mean()
    assert abs(re.loc[999, "(Intercept)"] - resid) < 0.1 * abs(resid) + 0.05  # shrunk towards the mean residual
    pd.testing.assert_frame_equal(re.loc[before.index], before)  # users without rows keep their BLUPs
    touched = np.unique(new_user.item)
    assert (m.random_effects_["item"].loc[touched] != items_before.loc[touched]).all().all()  # items with rows move
    x0 = pd.DataFrame({"x": [0.0]})
    assert m.predict(x0, groups=pd.DataFrame({"user": [12345], "item": [54321]}))[0] == fe["(Intercept)"]


def test_several_factor_refusals_and_trace():
    df = _crossed(5, n=600)
    g = df[["user", "item"]]
    for kw, msg in [({"forgetting": 50.0}, "does not support forgetting"),
                    ({"refit_every": None}, "refit_every=None"),
                    ({"n_train": 100}, "n_train"), ({"update_every": 10}, "update_every")]:
        with pytest.raises(ValueError, match=msg):
            StreamingMixed(**kw).fit(df[["x"]], df.y, groups=g)
    m = StreamingMixed(refit_every=200, trace_every=100, verbose=1).fit(df[["x"]], df.y, groups=g)
    with pytest.raises(ValueError, match="sweep"):
        m.sweep()
    tr = m.trace_
    assert tr["n_rows"].tolist() == list(range(100, 601, 100))
    assert "Phi[user:(Intercept),(Intercept)]" in tr.columns and "beta[x]" in tr.columns
    assert tr.loc[tr.n_rows == 600, "beta[x]"].item() == m.fixed_effects_["x"]
    with pytest.raises(ValueError, match="grouping factors"):
        m.partial_fit(df[["x"]], df.y, groups=df["user"])
    assert "Random effects" in str(m.summary())
    twin = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(twin.predict(df[["x"]], groups=g), m.predict(df[["x"]], groups=g))


def test_several_factor_batches_are_transactions(monkeypatch):
    import skmixed._solvers.lmm_stats as sstats
    import skmixed._solvers.stream_multi as smulti
    from skmixed._design.level_index import LevelIndex

    df = _crossed(6, n=1200)
    first, rest = df.iloc[:600], df.iloc[600:].assign(user=lambda d: d.user + 100)  # new levels
    points = [(smulti.MultiStreamState, "feed"), (smulti.MultiStreamState, "set_fit"),
              (sstats.GroupedStats, "merge"), (sstats.GroupedStats, "to_problem"), (LevelIndex, "code")]
    for owner, attr in points:
        m = StreamingMixed(refit_every=300).fit(first[["x"]], first.y, groups=first[["user", "item"]])
        before = pickle.dumps(m)
        orig = getattr(owner, attr)
        calls = {"n": 0}

        def boom(*a, _orig=orig, **k):
            calls["n"] += 1
            if calls["n"] > 1:
                raise KeyboardInterrupt
            return _orig(*a, **k)

        monkeypatch.setattr(owner, attr, boom)
        with pytest.raises(KeyboardInterrupt):
            m.partial_fit(rest[["x"]], rest.y, groups=rest[["user", "item"]])
        monkeypatch.undo()
        assert pickle.dumps(m) == before, attr
        m.partial_fit(rest[["x"]], rest.y, groups=rest[["user", "item"]])
        assert m.n_seen_ == 1200
    bad = rest[["x"]].copy()
    bad.iloc[3, 0] = np.nan
    before = pickle.dumps(m)
    with pytest.raises(ValueError, match="NaN"):
        m.partial_fit(bad, rest.y, groups=rest[["user", "item"]])
    assert pickle.dumps(m) == before


def test_several_factor_stream_saves_and_loads_with_skops(tmp_path):
    from skmixed import persist

    df = _crossed(7, n=900)
    g = df[["user", "item"]]
    m = StreamingMixed(refit_every=450).fit(df[["x"]][:600], df.y[:600], groups=g[:600])
    path = tmp_path / "stream.skops"
    persist.save(m, path)  # the grouped statistics hold tuple-keyed dicts (factor pairs)
    twin = persist.load(path)
    np.testing.assert_array_equal(twin.predict(df[["x"]], groups=g), m.predict(df[["x"]], groups=g))
    twin.partial_fit(df[["x"]][600:], df.y[600:], groups=g[600:])
    m.partial_fit(df[["x"]][600:], df.y[600:], groups=g[600:])
    np.testing.assert_array_equal(twin.fixed_effects_, m.fixed_effects_)
