"""The stream's level index: O(batch) coding of new levels, undone with a rejected batch."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from skmixed import StreamingMixed
from skmixed._design.level_index import LevelIndex
from skmixed._solvers import sema as ssema
from skmixed.streaming_logistic import StreamingMixedLogistic


def test_level_index_codes_in_order_of_appearance_and_truncates():
    idx = LevelIndex("g")
    assert idx.code(pd.Index([3, 1])).tolist() == [0, 1]
    assert idx.code([1, 7, ("t", 1)]).tolist() == [1, 2, 3]  # a tuple label stays one label
    assert idx.lookup([7, 99, ("t", 1)]).tolist() == [2, -1, 3]
    assert list(idx.levels) == [3, 1, 7, ("t", 1)]
    idx.truncate(2)
    assert len(idx) == 2 and idx.lookup([7]).tolist() == [-1]
    assert idx.code([7]).tolist() == [2]
    twin = pickle.loads(pickle.dumps(idx))
    assert list(twin.levels) == list(idx.levels) and twin.lookup([3, 1, 7]).tolist() == [0, 1, 2]
    big = LevelIndex("u")
    big.code(np.arange(100))  # grows past the initial capacity
    assert big.lookup([99, 100]).tolist() == [99, -1]


def _batch(seed, lo, hi, n=300):
    rng = np.random.default_rng(seed)
    g = rng.integers(lo, hi, n)
    X = rng.normal(size=(n, 2))
    y = X @ [1.0, -0.5] + 0.3 * g % 2 + rng.normal(size=n)
    return X, y, g


@pytest.mark.parametrize("make", [StreamingMixed, StreamingMixedLogistic])
def test_interrupted_batch_with_new_levels_is_undone(make, monkeypatch):
    X, y, g = _batch(0, 0, 20)
    yb = (y > 0).astype(float) if make is StreamingMixedLogistic else y
    est = make().partial_fit(X, yb, groups=g)
    before = pickle.dumps(est)
    X2, y2, g2 = _batch(1, 10, 40)  # 20 new levels
    y2 = (y2 > 0).astype(float) if make is StreamingMixedLogistic else y2

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ssema.Staging, "ensure_capacity", boom)
    with pytest.raises(KeyboardInterrupt):
        est.partial_fit(X2, y2, groups=g2)
    monkeypatch.undo()
    assert pickle.dumps(est) == before
    est.partial_fit(X2, y2, groups=g2)
    ref = make().partial_fit(X, yb, groups=g).partial_fit(X2, y2, groups=g2)
    assert est.n_groups_ == ref.n_groups_ == 40
    name = next(iter(ref.random_effects_))
    pd.testing.assert_frame_equal(est.random_effects_[name], ref.random_effects_[name])
    # predictions use the same codes for old and new labels
    np.testing.assert_array_equal(est.predict(X2, groups=g2), ref.predict(X2, groups=g2))
