"""partial_fit(refit=False) holds small plain chunks back and merges them in bulk: same answer, same guarantees."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed.linear as lin
from skmixed import MixedLinearRegressor
from skmixed._row_buffer import RowBuffer


def _data(n=3000, n_groups=60, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    X = rng.normal(size=(n, 2)) + [3.0, -1.0]
    y = X @ [0.5, -0.3] + rng.normal(size=n_groups)[g] + rng.normal(size=n)
    return X, y, g


def _rows_counted(m):
    held = m.__dict__.get("_held")
    return m._stats.n_rows + (held.n_rows if held is not None else 0)


@pytest.fixture
def small_hold(monkeypatch):
    monkeypatch.setattr(lin, "_HOLD_ROWS", 400)  # several bulk merges on a small data set


def test_held_chunks_equal_fit(small_hold):
    X, y, g = _data()
    m = MixedLinearRegressor()
    merges = 0
    for s in range(0, len(y), 37):
        before = m.__dict__.get("_stats")
        m.partial_fit(X[s:s + 37], y[s:s + 37], groups=g[s:s + 37], refit=False)
        merges += s > 0 and m._stats is not before
    assert merges >= 5  # held rows were merged in bulk several times
    assert _rows_counted(m) == len(y)
    full = MixedLinearRegressor().fit(X, y, groups=g)
    np.testing.assert_allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8)
    np.testing.assert_allclose(m.theta_, full.theta_, rtol=1e-7)
    np.testing.assert_allclose(m.predict(X, groups=g), full.predict(X, groups=g), rtol=1e-8)


def test_held_and_checked_chunks_mix(small_hold):
    # plain chunks are held; a DataFrame chunk or a refit takes the checked path, which merges them first
    X, y, g = _data(seed=1)
    m = MixedLinearRegressor()
    parts = np.array_split(np.arange(len(y)), 12)
    for k, rows in enumerate(parts):
        if k == 5:
            m.partial_fit(pd.DataFrame(X[rows], columns=["x0", "x1"]).to_numpy(), y[rows], groups=g[rows].tolist(),
                          refit=False)
        elif k == 8:
            m.partial_fit(X[rows], y[rows], groups=g[rows])  # refit now
            assert m.__dict__.get("_held") is None and m._stats.n_rows == rows[-1] + 1
        else:
            m.partial_fit(X[rows], y[rows], groups=g[rows], refit=False)
    full = MixedLinearRegressor().fit(X, y, groups=g)
    np.testing.assert_allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8)


@pytest.mark.parametrize("bad", ["nan X", "inf y", "huge y", "wrong columns", "fewer labels"])
def test_rejected_chunk_changes_nothing(bad):
    X, y, g = _data(seed=2)
    m = MixedLinearRegressor()
    m.partial_fit(X[:500], y[:500], groups=g[:500])
    m.partial_fit(X[500:540], y[500:540], groups=g[500:540], refit=False)
    Xb, yb, gb = X[540:580].copy(), y[540:580].copy(), g[540:580]
    if bad == "nan X":
        Xb[3, 1] = np.nan
    elif bad == "inf y":
        yb[0] = np.inf
    elif bad == "huge y":
        yb *= 1e160
    elif bad == "wrong columns":
        Xb = Xb[:, :1]
    else:
        gb = gb[:-1]
    before = pickle.dumps(m)
    with pytest.raises(ValueError):
        m.partial_fit(Xb, yb, groups=gb, refit=False)
    assert pickle.dumps(m) == before


def test_held_chunks_are_copies():
    # a caller reusing its buffer arrays for the next chunk must not change held rows
    X, y, g = _data(seed=3)
    m = MixedLinearRegressor()
    m.partial_fit(X[:1000], y[:1000], groups=g[:1000])
    bx, by, bg = np.empty((100, 2)), np.empty(100), np.empty(100, dtype=np.int64)
    for s in range(1000, len(y), 100):
        bx[:], by[:], bg[:] = X[s:s + 100], y[s:s + 100], g[s:s + 100]
        m.partial_fit(bx, by, groups=bg, refit=False)
    full = MixedLinearRegressor().fit(X, y, groups=g)
    np.testing.assert_allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8)


def test_interrupted_held_chunk_counts_once(monkeypatch):
    import skmixed._row_buffer as rb
    import skmixed._solvers.lmm_stats as sstats

    points = [(RowBuffer, "add"), (RowBuffer, "rows"), (sstats.GroupedStats, "from_rows"),
              (sstats.GroupedStats, "merge"), (lin, "_require_finite"), (rb, "plain_chunk"), (lin, "plain_chunk")]
    X, y, g = _data(seed=4)
    m = MixedLinearRegressor()
    m.partial_fit(X[:300], y[:300], groups=g[:300])
    monkeypatch.setattr(lin, "_HOLD_ROWS", 100)  # a bulk merge every other chunk or so
    rng = np.random.default_rng(0)
    s, interrupted = 300, 0
    for case in range(60):
        owner, attr = points[case % len(points)]
        rows = int(rng.integers(5, 80))
        Xb, yb, gb = X[s:s + rows], y[s:s + rows], g[s:s + rows]
        s += rows
        before, n0 = pickle.dumps(m), _rows_counted(m)
        orig = getattr(owner, attr)
        is_static = isinstance(owner.__dict__.get(attr), (staticmethod, classmethod))

        def boom(*a, **kw):
            raise KeyboardInterrupt

        monkeypatch.setattr(owner, attr, staticmethod(boom) if is_static else boom)
        try:
            m.partial_fit(Xb, yb, groups=gb, refit=False)
        except KeyboardInterrupt:
            interrupted += 1
            assert pickle.dumps(m) == before, f"{attr}: an interrupted call changed the state"
        finally:
            monkeypatch.undo()  # (restores _HOLD_ROWS too)
            monkeypatch.setattr(lin, "_HOLD_ROWS", 100)
        if _rows_counted(m) == n0:
            m.partial_fit(Xb, yb, groups=gb, refit=False)  # the natural retry
        assert _rows_counted(m) == n0 + rows, f"{attr}: batch counted {_rows_counted(m) - n0} times {rows}"
    assert interrupted >= 25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = MixedLinearRegressor().fit(X[:s], y[:s], groups=g[:s])
    np.testing.assert_allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8)
