"""The level labels of a stream: codes in order of first appearance, grown batch by batch.

A stream meets its groups a batch at a time.  Coding a batch against a ``pandas.Index`` of
all levels seen and appending the new ones rebuilds the index's hash table and copies every
label: ``O(levels seen)`` per batch, which dominates a stream of many groups (10^6 groups
over 1,000 batches: ~0.4 s per batch at the end).  :class:`LevelIndex` keeps the labels in
a list and a dict from label to code, so a batch costs ``O(its distinct labels)``;
the ``pandas.Index`` that :attr:`levels` returns (for ``random_effects_``, ``predict``) is
built on demand and cached until the next change.
"""

from __future__ import annotations

import weakref
from itertools import repeat

import numpy as np
import pandas as pd

from .grouping import GroupingFactor

__all__ = ["LevelIndex"]


class LevelIndex:
    """Labels of one grouping factor in order of first appearance, with ``O(1)`` lookups.

    The object holds only its name and the list of labels (what pickle, ``copy`` and
    :mod:`skmixed.persist` store); the label -> code dict and the ``pandas.Index`` are a
    cache beside it, rebuilt on first use after a load.

    Parameters
    ----------
    name : str
        The factor's name.

    Examples
    --------
    >>> idx = LevelIndex("g")
    >>> idx.code(["b", "a"]).tolist()
    [0, 1]
    >>> idx.code(["a", "c"]).tolist()
    [1, 2]
    >>> list(idx.levels), len(idx)
    (['b', 'a', 'c'], 3)
    >>> idx.truncate(2)                     # undo the last batch's new level
    >>> idx.lookup(["c", "b"]).tolist()
    [-1, 0]
    """

    def __init__(self, name: str):
        self.name = str(name)
        self._labels: list = []

    def __len__(self) -> int:
        return len(self._labels)

    def _cache(self) -> dict:
        """The label -> code dict and the cached Index, brought up to date with the labels."""
        c = _CACHE.get(self)
        if c is None:
            c = _CACHE[self] = {"map": {}, "n": 0, "index": None}
        n = len(self._labels)
        if c["n"] < n:  # labels added by another path (a load, a copy): map them
            c["map"].update(zip(self._labels[c["n"]:], range(c["n"], n)))
            c["n"] = n
        return c

    def lookup(self, labels) -> np.ndarray:
        """Codes of ``labels`` (a sequence or Index); ``-1`` for labels not seen."""
        labels = _as_list(labels)
        get = self._cache()["map"].get
        return np.fromiter(map(get, labels, repeat(-1)), dtype=np.int64, count=len(labels))

    def code(self, labels) -> np.ndarray:
        """Codes of ``labels`` (distinct values), giving unseen ones the next codes in order.

        Costs ``O(len(labels))``.  Undo with :meth:`truncate` (the length before the call).
        """
        labels = _as_list(labels)
        codes = self.lookup(labels)
        unseen = np.flatnonzero(codes < 0)
        if unseen.size:
            c = self._cache()
            n0, k = len(self._labels), unseen.size
            new = [labels[i] for i in unseen.tolist()]
            self._labels.extend(new)
            c["map"].update(zip(new, range(n0, n0 + k)))
            c["n"], c["index"] = n0 + k, None
            codes[unseen] = np.arange(n0, n0 + k)
        return codes

    def truncate(self, n: int) -> None:
        """Forget the labels from code ``n`` on (the undo of :meth:`code`)."""
        if n >= len(self._labels):
            return
        c = self._cache()
        for lab in self._labels[n:]:
            c["map"].pop(lab, None)
        del self._labels[n:]
        c["n"], c["index"] = n, None

    @property
    def levels(self) -> pd.Index:
        """The labels as a ``pandas.Index`` in code order (built once per change)."""
        c = self._cache()
        if c["index"] is None:
            c["index"] = pd.Index(list(self._labels)) if self._labels else pd.Index([], dtype=object)
        return c["index"]

    def factor(self) -> GroupingFactor:
        """A :class:`GroupingFactor` with these levels (no rows)."""
        return GroupingFactor(self.name, np.empty(0, dtype=np.int64), self.levels)


#: per LevelIndex object (by identity): its label -> code dict and Index; never pickled
_CACHE: "weakref.WeakKeyDictionary[LevelIndex, dict]" = weakref.WeakKeyDictionary()


def _as_list(labels) -> list:
    if isinstance(labels, list):
        return labels
    if isinstance(labels, (pd.Index, pd.Series, np.ndarray)):
        return labels.tolist()
    return list(labels)
