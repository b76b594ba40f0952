"""MixedLinearRegressor.partial_fit: chunked accumulation equals fit on all rows (issue 7)."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from skmixed import MixedLinearRegressor
from skmixed._design.grouping import make_factors
from skmixed._design.layout import BlockLayout, amalgamate
from skmixed._design.terms import RandomTerm
from skmixed._solvers.lmm import cross_products
from skmixed._solvers.lmm_stats import GroupedStats
from skmixed.datasets import load_penicillin, make_big_grouped_data


def _split(df, k):
    return [df.iloc[i] for i in np.array_split(np.arange(len(df)), k)]


def assert_same_fit(m, f, rtol=1e-8):
    """Fixed effects, their SEs, variance components and BLUPs agree to ``rtol`` (relative to scale).

    Fixed effects near zero are compared to ``rtol`` times their standard error.
    """
    np.testing.assert_array_less(np.abs(m.fixed_effects_ - f.fixed_effects_),
                                 rtol * np.maximum(np.abs(f.fixed_effects_), f.fixed_effects_se_))
    np.testing.assert_allclose(m.fixed_effects_se_, f.fixed_effects_se_, rtol=rtol, atol=0)
    np.testing.assert_allclose(m.theta_, f.theta_, rtol=rtol, atol=rtol)
    assert m.sigma_ == pytest.approx(f.sigma_, rel=rtol)
    assert m.loglik_ == pytest.approx(f.loglik_, rel=1e-12, abs=1e-8)
    assert m.n_obs_ == f.n_obs_
    assert m.n_groups_ == f.n_groups_
    for name, cov in f.cov_re_.items():
        np.testing.assert_allclose(m.cov_re_[name], cov, rtol=rtol, atol=rtol * np.abs(cov.to_numpy()).max())
    for name, re in f.random_effects_.items():
        mine = m.random_effects_[name]
        assert list(mine.index) == list(re.index)  # canonical (sorted) level order
        scale = np.abs(re.to_numpy()).max()
        np.testing.assert_allclose(mine, re, rtol=0, atol=rtol * scale)


@pytest.fixture(scope="module")
def late_groups_chunks():
    """Shuffled seed-000 data: groups recur across 8 chunks; 40 groups appear only in the last 2."""
    df = make_big_grouped_data(24_000, 240, seed=5).sample(frac=1, random_state=1).reset_index(drop=True)
    early, late = df[df.g < 200], df[df.g >= 200]
    return _split(early, 8) + _split(late, 2)


@pytest.mark.parametrize("reml", [True, False])
def test_ten_chunks_equal_fit_slopes(late_groups_chunks, reml):
    chunks = late_groups_chunks
    m = MixedLinearRegressor(reml=reml, random_slopes=["x"])
    n_groups = []
    for c in chunks:
        m.partial_fit(c[["x", "b"]], c["y"], groups=c["g"])
        n_groups.append(m.n_groups_["g"])
    assert n_groups[7] == 200 and n_groups[-1] == 240  # usable after every chunk, late groups arrive
    whole = pd.concat(chunks)
    f = MixedLinearRegressor(reml=reml, random_slopes=["x"]).fit(whole[["x", "b"]], whole["y"],
                                                                  groups=whole["g"])
    assert_same_fit(m, f)
    # and against the generating values, so the comparison is not between two wrong fits
    assert f.fixed_effects_["x"] == pytest.approx(0.5, abs=0.03)
    assert f.cov_re_["g"].iloc[0, 0] == pytest.approx(0.25, rel=0.3)


def test_crossed_two_factors_ten_chunks():
    # penicillin (24 plates x 6 samples, fully crossed), rows shuffled and replicated with
    # noise so that 10 chunks each see only part of the level pairs
    pen = load_penicillin()
    rng = np.random.default_rng(0)
    reps = []
    for r in range(5):
        d = pen.copy()
        d["diameter"] = d["diameter"] + rng.normal(0, 0.5, len(d))
        reps.append(d)
    df = pd.concat(reps).sample(frac=1, random_state=2).reset_index(drop=True)
    df["x"] = rng.normal(size=len(df))
    chunks = _split(df, 10)
    m = MixedLinearRegressor()
    for c in chunks:
        m.partial_fit(c[["x"]], c["diameter"], groups=c[["plate", "sample"]])
    f = MixedLinearRegressor().fit(df[["x"]], df["diameter"], groups=df[["plate", "sample"]])
    assert_same_fit(m, f)
    assert set(f.random_effects_) == {"plate", "sample"}


def test_three_crossed_factors_block_order_changes():
    # factor "a" has the most levels overall but not in the first chunk: the block-diagonal
    # factor differs between chunks and the totals; dense-dense couplings are merged too
    rng = np.random.default_rng(3)
    n = 3000
    a = rng.integers(0, 60, n)
    b = rng.choice(list("pqrstuvwxyz"), n)
    c = rng.integers(0, 6, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.7, 60)[a] + rng.normal(0, 0.4, 11)[(b.view("U1") < "u").astype(int)] \
        + rng.normal(0, 0.3, 6)[c] + rng.normal(size=n)
    df = pd.DataFrame({"x": x, "y": y, "a": a, "b": b, "c": c})
    first = df[df.a < 3].iloc[:40]
    rest = df.drop(first.index)
    chunks = [first] + _split(rest, 9)
    m = MixedLinearRegressor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # chunk 1 alone may be too small to fit
        for ch in chunks:
            m.partial_fit(ch[["x"]], ch["y"], groups=ch[["c", "b", "a"]])
    whole = pd.concat(chunks)
    f = MixedLinearRegressor().fit(whole[["x"]], whole["y"], groups=whole[["c", "b", "a"]])
    assert_same_fit(m, f)


def test_stats_merge_reproduces_cross_products_exactly():
    rng = np.random.default_rng(1)
    n = 2000
    g = pd.DataFrame({"a": rng.integers(0, 30, n), "b": rng.choice(list("abcdefgh"), n),
                      "c": rng.integers(0, 5, n)})
    X = np.c_[np.ones(n), rng.normal(size=(n, 2))]
    y = rng.normal(size=n)
    terms = [RandomTerm(0, True, (1,), ("(Intercept)", "x1")), RandomTerm(1, True, (), ("(Intercept)",)),
             RandomTerm(2, False, (2,), ("x2",))]
    names = ["(Intercept)", "x1", "x2"]

    def stats(rows):
        return GroupedStats.from_rows(X[rows], y[rows], None, make_factors(g.iloc[rows]), terms, names)

    parts = np.array_split(rng.permutation(n), 6)
    merged = GroupedStats.merge([stats(r) for r in parts[:3]]) + GroupedStats.merge([stats(r) for r in parts[3:]])
    fs = make_factors(g)
    blocks = amalgamate(terms, [f.n_levels for f in fs])
    lay = BlockLayout.build(blocks, [f.codes for f in fs], 3)
    # fit's centring: the fixed columns and y at their means (the chunks were centred at their own)
    shift = np.r_[0.0, X[:, 1:].mean(axis=0)]
    cp = cross_products(lay, X, y, x_shift=shift, y_shift=y.mean())
    sp = merged.to_problem()
    np.testing.assert_allclose(sp.x_shift, shift, rtol=1e-13)
    assert sp.y_shift == pytest.approx(y.mean(), rel=1e-13)
    np.testing.assert_array_equal(sp.layout.ptr, lay.ptr)
    np.testing.assert_array_equal(sp.layout.cols, lay.cols)
    for nm in ("A11", "A21", "A22"):
        ref = getattr(cp, nm)
        np.testing.assert_allclose(getattr(sp.cp, nm), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    assert sp.cp.n_obs == n
    assert [list(f.levels) for f in sp.factors] == [list(f.levels) for f in fs]


def test_weights_and_string_labels_and_pickle():
    df = make_big_grouped_data(6000, 60, seed=7).sample(frac=1, random_state=3).reset_index(drop=True)
    df["g"] = "s" + df["g"].astype(str)  # strings sort differently from ints ("s10" < "s2")
    w = np.random.default_rng(2).integers(1, 4, len(df)).astype(float)
    m = MixedLinearRegressor()
    for idx in np.array_split(np.arange(len(df)), 10):
        c = df.iloc[idx]
        m.partial_fit(c[["x", "b"]], c["y"], groups=c["g"], sample_weight=w[idx])
    m = pickle.loads(pickle.dumps(m))
    f = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"], sample_weight=w)
    assert_same_fit(m, f)
    np.testing.assert_allclose(m.predict(df[["x", "b"]], groups=df["g"]),
                               f.predict(df[["x", "b"]], groups=df["g"]), rtol=1e-9, atol=1e-9)
    # a partial_fit after unpickling keeps accumulating
    c = df.iloc[:100]
    m.partial_fit(c[["x", "b"]], c["y"], groups=c["g"])
    assert m.n_obs_ == pytest.approx(w.sum() + 100)


def test_chunk_rank_deficient_but_totals_fine():
    # "b" is constant within the first chunk (aliased with the intercept there), not overall
    df = make_big_grouped_data(5000, 50, seed=8).sample(frac=1, random_state=4).reset_index(drop=True)
    first = df[df.b == 1].iloc[:500]
    rest = df.drop(first.index)
    m = MixedLinearRegressor()
    with pytest.warns(UserWarning, match="rank deficient"):
        m.partial_fit(first[["x", "b"]], first["y"], groups=first["g"])
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x"]
    for c in _split(rest, 9):
        m.partial_fit(c[["x", "b"]], c["y"], groups=c["g"])
    whole = pd.concat([first, rest])
    f = MixedLinearRegressor().fit(whole[["x", "b"]], whole["y"], groups=whole["g"])
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x", "b"]
    assert_same_fit(m, f)


def test_single_group_so_far_warns_then_fits():
    df = make_big_grouped_data(2000, 20, seed=9)  # sorted by group
    m = MixedLinearRegressor()
    c0 = df[df.g == 0]
    with pytest.warns(UserWarning, match="single level"):
        m.partial_fit(c0[["x"]], c0["y"], groups=c0["g"])
    assert not hasattr(m, "fixed_effects_")
    rest = df[df.g > 0]
    m.partial_fit(rest[["x"]], rest["y"], groups=rest["g"])
    f = MixedLinearRegressor().fit(df[["x"]], df["y"], groups=df["g"])
    assert_same_fit(m, f)


def test_bad_chunk_leaves_state_untouched():
    df = make_big_grouped_data(3000, 30, seed=10)
    m = MixedLinearRegressor()
    m.partial_fit(df[["x", "b"]].iloc[::2], df["y"].iloc[::2], groups=df["g"].iloc[::2])
    before = (m.fixed_effects_.copy(), m.n_obs_, m._stats.n_rows)
    bad_y = df["y"].iloc[1::2].to_numpy().copy()
    bad_y[5] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        m.partial_fit(df[["x", "b"]].iloc[1::2], bad_y, groups=df["g"].iloc[1::2])
    with pytest.raises(ValueError, match="feature names"):
        m.partial_fit(df[["x"]].iloc[1::2], df["y"].iloc[1::2], groups=df["g"].iloc[1::2])
    with pytest.raises(ValueError, match="grouping factors"):
        m.partial_fit(df[["x", "b"]].iloc[1::2], df["y"].iloc[1::2],
                      groups=pd.DataFrame({"g": df["g"].iloc[1::2], "h": 1}))
    pd.testing.assert_series_equal(m.fixed_effects_, before[0])
    assert (m.n_obs_, m._stats.n_rows) == before[1:]
    # the first call's failure leaves no n_features_in_ behind
    m2 = MixedLinearRegressor()
    with pytest.raises(ValueError):
        m2.partial_fit(df[["x", "b"]], bad_y[:10], groups=df["g"])
    assert not hasattr(m2, "n_features_in_")


def test_fit_resets_accumulation():
    df = make_big_grouped_data(3000, 30, seed=11)
    m = MixedLinearRegressor().partial_fit(df[["x"]], df["y"], groups=df["g"])
    m.fit(df[["x"]].iloc[:1500], df["y"].iloc[:1500], groups=df["g"].iloc[:1500])
    m.partial_fit(df[["x"]].iloc[1500:], df["y"].iloc[1500:], groups=df["g"].iloc[1500:])
    assert m.n_obs_ == 1500
