"""Block layout of the mixed-model cross-product matrix ``A = [Z X y]'[Z X y]``.

Terms are amalgamated per grouping factor and ordered by decreasing number of
random-effect columns (as lme4 and MixedModels.jl do). The first term's block
``A11`` is block-diagonal (one ``q1 x q1`` block per level) and is never formed
densely. Everything else — the other terms, the fixed-effects columns and ``y``
— is the *dense part* of size ``m = sum_k J_k q_k + p + 1``. The coupling block
``A21`` between a level ``j`` of the first term and the dense part is sparse:
only the levels of the other factors that co-occur with ``j`` (plus ``X`` and
``y``, always) are stored, CSR-style, so crossed designs with thousands of
levels cost what their co-occurrence pattern costs.

A :class:`BlockLayout` is built once from the grouping codes (numpy only);
:mod:`skmixed._kernels.gram` then fills the blocks in one pass over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .theta import pattern_positions

__all__ = ["ReBlock", "BlockLayout", "amalgamate"]


@dataclass
class ReBlock:
    """Random-effects block: all terms of one grouping factor, amalgamated.

    ``pattern`` is a boolean lower-triangular ``q x q`` mask of the free entries
    of the relative covariance factor ``Lambda`` (full lower triangle for a
    correlated term, diagonal blocks for ``||`` terms).
    """

    factor: int
    n_levels: int
    names: list
    intercept_slopes: list  # per column: -1 for intercept, else X column index
    pattern: np.ndarray

    @property
    def q(self) -> int:
        return len(self.names)

    @property
    def n_theta(self) -> int:
        return int(self.pattern.sum())

    def theta_index(self):
        """Row/column of each free Lambda entry, column-major (lme4's theta order)."""
        return pattern_positions(self.pattern)

    def z_rows(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        Z = np.empty((n, self.q), dtype=np.float64)
        for k, c in enumerate(self.intercept_slopes):
            Z[:, k] = 1.0 if c < 0 else X[:, c]
        return Z


def amalgamate(terms: list, n_levels: list) -> list:
    """Merge terms on the same factor; order blocks by decreasing levels (stable)."""
    by_factor: dict = {}
    for t in terms:
        by_factor.setdefault(t.factor, []).append(t)
    blocks = []
    for f, ts in by_factor.items():
        names, cols, sizes = [], [], []
        for t in ts:
            tcols = ([-1] if t.intercept else []) + list(t.slopes)
            for nm, c in zip(t.names, tcols):
                if c in cols:
                    raise ValueError(f"column {nm!r} appears twice in the random terms of one factor")
            names.extend(t.names)
            cols.extend(tcols)
            sizes.append(t.q)
        q = len(names)
        pattern = np.zeros((q, q), dtype=bool)
        start = 0
        for s in sizes:
            pattern[start:start + s, start:start + s] = np.tril(np.ones((s, s), dtype=bool))
            start += s
        blocks.append(ReBlock(f, n_levels[f], names, cols, pattern))
    # lme4 orders terms by decreasing number of levels; ties keep formula order
    order = sorted(range(len(blocks)), key=lambda i: -blocks[i].n_levels)
    return [blocks[i] for i in order]


@dataclass
class BlockLayout:
    """Sparse pattern of ``A`` for given grouping codes.

    Attributes
    ----------
    blocks : list of ReBlock
        ``blocks[0]`` is the block-diagonal term; the rest are dense.
    q1, J1 : int
        Columns and levels of the first block.
    dense_off : int64 array
        Start of each dense block (``blocks[1:]``) in the dense part.
    Q2 : int
        Random-effect columns in the dense part; ``X`` starts at ``Q2``.
    p : int
        Fixed-effects columns; ``m = Q2 + p + 1`` (``y`` is last).
    ptr : int64 array, shape (J1 + 1,)
        CSR row pointer over the levels of the first block.
    cols : int64 array, shape (nnz,)
        Dense-part column of every stored entry of ``A21``.
    row_slot : int64 array, shape (n, n_dense_blocks)
        For each row and dense block, the slot of its first column in ``cols``.
    """

    blocks: list
    q1: int
    J1: int
    dense_off: np.ndarray
    dense_q: np.ndarray
    dense_J: np.ndarray
    Q2: int
    p: int
    ptr: np.ndarray
    cols: np.ndarray
    row_slot: np.ndarray
    codes1: np.ndarray
    dense_codes: np.ndarray

    @property
    def m(self) -> int:
        return self.Q2 + self.p + 1

    @property
    def nnz(self) -> int:
        return int(self.ptr[-1])

    @cached_property
    def dense_row_pattern(self):
        """The coupling pattern by dense row: ``(tptr, tpos, tlev)``.

        For dense row ``r``, ``tpos[tptr[r]:tptr[r + 1]]`` are the positions ``e`` in
        ``cols`` with ``cols[e] == r`` and ``tlev`` their first-block levels (what
        :func:`skmixed._kernels.lmm.downdate_rows` walks). It depends on the layout
        only, so it is built once however many times the solvers factor.
        """
        cols = np.asarray(self.cols, dtype=np.int64)
        order = np.argsort(cols, kind="stable").astype(np.int64)
        tptr = np.zeros(self.m + 1, dtype=np.int64)
        np.cumsum(np.bincount(cols, minlength=self.m), out=tptr[1:])
        lev = np.repeat(np.arange(self.J1, dtype=np.int64), np.diff(self.ptr))
        return tptr, order, lev[order]

    @classmethod
    def build(cls, blocks: list, codes: list, p: int) -> "BlockLayout":
        """Lay out ``A`` for ``blocks`` given per-factor codes (list indexed by factor)."""
        b1 = blocks[0]
        codes1 = np.ascontiguousarray(codes[b1.factor], dtype=np.int64)
        n = codes1.shape[0]
        J1, q1 = b1.n_levels, b1.q
        dense = blocks[1:]
        dq = np.array([b.q for b in dense], dtype=np.int64)
        dJ = np.array([b.n_levels for b in dense], dtype=np.int64)
        doff = np.zeros(len(dense), dtype=np.int64)
        if len(dense):
            doff[1:] = np.cumsum(dJ * dq)[:-1]
        Q2 = int((dJ * dq).sum())

        # co-occurring (level of block 1, level of dense block k) pairs, sorted by (j, l)
        per_j = np.full(J1, p + 1, dtype=np.int64)  # X and y columns are always present
        pair_info = []
        for k, b in enumerate(dense):
            ck = np.asarray(codes[b.factor], dtype=np.int64)
            key = codes1 * dJ[k] + ck
            uniq, inv = np.unique(key, return_inverse=True)
            pj = uniq // dJ[k]
            pl = uniq % dJ[k]
            cnt = np.bincount(pj, minlength=J1)
            pair_info.append((pj, pl, inv, cnt))
            per_j += cnt * dq[k]
        ptr = np.zeros(J1 + 1, dtype=np.int64)
        np.cumsum(per_j, out=ptr[1:])
        nnz = int(ptr[-1])
        cols = np.empty(nnz, dtype=np.int64)
        row_slot = np.empty((n, len(dense)), dtype=np.int64)
        pre = ptr[:-1].copy()  # next free slot of each j
        for k, (pj, pl, inv, cnt) in enumerate(pair_info):
            first_pair = np.zeros(J1, dtype=np.int64)
            np.cumsum(cnt[:-1], out=first_pair[1:])
            rank = np.arange(pj.shape[0]) - first_pair[pj]
            slot = pre[pj] + rank * dq[k]
            for r in range(dq[k]):
                cols[slot + r] = doff[k] + pl * dq[k] + r
            row_slot[:, k] = slot[inv]
            pre += cnt * dq[k]
        # X and y columns close every j's segment
        xy = ptr[1:, None] - (p + 1) + np.arange(p + 1)[None, :]
        cols[xy.ravel()] = np.tile(Q2 + np.arange(p + 1), J1)
        dense_codes = np.empty((n, len(dense)), dtype=np.int64)
        for k, b in enumerate(dense):
            dense_codes[:, k] = codes[b.factor]
        return cls(blocks, q1, J1, doff, dq, dJ, Q2, p, ptr, cols, row_slot, codes1, dense_codes)
