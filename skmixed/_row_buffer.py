"""Rows of small ``partial_fit`` chunks held back until enough of them pay for a merge.

Merging a chunk's statistics into the totals costs O(levels seen so far), so
merging every 50-row chunk into 5,000 levels costs a hundred times the chunk.
:class:`RowBuffer` keeps the (validated, copied) rows of plain-array chunks
instead and hands them back concatenated once they amount to about as many
rows as the totals have levels: every row is then read a bounded number of
times and the per-chunk cost is that of its checks and copy.

A buffer is immutable (``add`` returns a new one), so an estimator that holds
one can restore its previous state by one assignment (see
:mod:`skmixed._transaction`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RowBuffer", "plain_chunk"]

# values this large could overflow the sums of squares: such chunks take the checked path
_BIG = 1e100


def plain_chunk(X, y, groups, n_features):
    """``(X, y, groups)`` copied, when the chunk is plain, finite and small-valued, else None.

    Plain: float64 ``X`` of ``n_features`` columns, a numeric 1-D ``y`` and 1-D integer group
    labels, all NumPy arrays with the same number of rows (at least one). Anything else — data
    frames, other label types, NaN, huge values, wrong shapes — returns None, and the caller
    validates it the usual way (which also names what is wrong).

    Examples
    --------
    >>> import numpy as np
    >>> X, y, g = np.ones((3, 2)), np.arange(3.0), np.array([0, 1, 1])
    >>> plain_chunk(X, y, g, 2)[2].tolist()
    [0, 1, 1]
    >>> plain_chunk(X, y, g.astype(str), 2) is None
    True
    """
    if type(X) is not np.ndarray or type(y) is not np.ndarray or type(groups) is not np.ndarray:
        return None
    if X.ndim != 2 or X.dtype != np.float64 or X.shape[1] != n_features or y.ndim != 1 or groups.ndim != 1:
        return None
    n = X.shape[0]
    if n == 0 or y.shape[0] != n or groups.shape[0] != n or groups.dtype.kind not in "iu":
        return None
    if y.dtype.kind not in "fiu":
        return None
    y = y.astype(np.float64)  # a copy
    if n_features and not (np.abs(X).max() < _BIG):  # also False for NaN
        return None
    if not (np.abs(y).max() < _BIG):
        return None
    return np.array(X, dtype=np.float64, order="C"), y, groups.astype(np.int64)


@dataclass(frozen=True)
class RowBuffer:
    """Immutable list of held-back chunks ``(X, y, groups)`` and their total row count.

    Examples
    --------
    >>> import numpy as np
    >>> b = RowBuffer().add((np.ones((2, 1)), np.zeros(2), np.array([0, 1])))
    >>> b = b.add((np.ones((3, 1)), np.ones(3), np.array([1, 2, 2])))
    >>> X, y, g = b.rows()
    >>> b.n_rows, X.shape, g.tolist()
    (5, (5, 1), [0, 1, 1, 2, 2])
    """

    chunks: tuple = ()
    n_rows: int = 0

    def add(self, chunk) -> "RowBuffer":
        return RowBuffer(self.chunks + (chunk,), self.n_rows + chunk[0].shape[0])

    def rows(self):
        """The held-back rows, concatenated in arrival order."""
        return tuple(np.concatenate(parts) for parts in zip(*self.chunks))
