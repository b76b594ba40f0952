"""The level labels of a stream: codes in order of first appearance, grown batch by batch.

A stream meets its groups a batch at a time.  Coding a batch against a ``pandas.Index`` of
all levels seen and appending the new ones rebuilds the index's hash table and copies every
label: ``O(levels seen)`` per batch, which dominates a stream of many groups (10^6 groups
over 1,000 batches: ~0.4 s per batch at the end).  :class:`LevelIndex` keeps a dict from
label to code and the labels in a growing array, so a batch costs ``O(its distinct labels)``;
the ``pandas.Index`` that :attr:`levels` returns (for ``random_effects_``, ``predict``) is
built on demand and cached until the next change.
"""

from __future__ import annotations

from itertools import repeat

import numpy as np
import pandas as pd

from .grouping import GroupingFactor

__all__ = ["LevelIndex"]


class LevelIndex:
    """Labels of one grouping factor in order of first appearance, with ``O(1)`` lookups.

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
        self._labels = np.empty(16, dtype=object)
        self._n = 0
        self._map: dict = {}
        self._index = None  # the cached pandas.Index of the labels (None: rebuild)

    def __len__(self) -> int:
        return self._n

    def lookup(self, labels) -> np.ndarray:
        """Codes of ``labels`` (a sequence or Index); ``-1`` for labels not seen."""
        labels = _as_list(labels)
        return np.fromiter(map(self._map.get, labels, repeat(-1)), dtype=np.int64, count=len(labels))

    def code(self, labels) -> np.ndarray:
        """Codes of ``labels`` (distinct values), giving unseen ones the next codes in order.

        Costs ``O(len(labels))``.  Undo with :meth:`truncate` (the length before the call).
        """
        labels = _as_list(labels)
        codes = self.lookup(labels)
        unseen = np.flatnonzero(codes < 0)
        if unseen.size:
            n0, k = self._n, unseen.size
            if n0 + k > self._labels.shape[0]:
                grown = np.empty(max(2 * self._labels.shape[0], n0 + k), dtype=object)
                grown[:n0] = self._labels[:n0]
                self._labels = grown
            new = [labels[i] for i in unseen.tolist()]
            self._labels[n0:n0 + k] = np.fromiter(new, dtype=object, count=k)  # tuples stay labels
            self._map.update(zip(new, range(n0, n0 + k)))
            self._n = n0 + k
            self._index = None
            codes[unseen] = np.arange(n0, n0 + k)
        return codes

    def truncate(self, n: int) -> None:
        """Forget the labels from code ``n`` on (the undo of :meth:`code`)."""
        for lab in self._labels[n:self._n].tolist():
            self._map.pop(lab, None)
        self._labels[n:self._n] = None
        if n != self._n:
            self._n = n
            self._index = None

    @property
    def levels(self) -> pd.Index:
        """The labels as a ``pandas.Index`` in code order (built once per change)."""
        if self._index is None:
            self._index = pd.Index(self._labels[:self._n].tolist()) if self._n else pd.Index([], dtype=object)
        return self._index

    def factor(self) -> GroupingFactor:
        """A :class:`GroupingFactor` with these levels (no rows)."""
        return GroupingFactor(self.name, np.empty(0, dtype=np.int64), self.levels)

    # the dict and the cached Index are rebuilt on load: the pickle holds the labels only
    def __getstate__(self):
        return {"name": self.name, "labels": self._labels[:self._n].copy()}

    def __setstate__(self, state):
        self.__init__(state["name"])
        labels = state["labels"]
        if len(labels):
            self.code(labels.tolist())

    def __eq__(self, other):
        return (isinstance(other, LevelIndex) and self.name == other.name and self._n == other._n
                and self._labels[:self._n].tolist() == other._labels[:other._n].tolist())

    __hash__ = None


def _as_list(labels) -> list:
    if isinstance(labels, list):
        return labels
    if isinstance(labels, (pd.Index, pd.Series, np.ndarray)):
        return labels.tolist()
    return list(labels)
