"""Label-keyed, mergeable LMM sufficient statistics (for chunked and distributed fits).

The profiled LMM needs only the blocks of ``A = [Z X y]'[Z X y]``, which are sums
over rows. A :class:`BlockLayout`, however, is tied to the levels present in the
data, to their co-occurrence pattern and to the order of the random-effect
blocks (by decreasing number of levels), all of which differ between chunks.
:class:`GroupedStats` therefore stores the same sums in an order-free form keyed
by level *labels*:

* per grouping factor ``k`` (one amalgamated random-effect block each): the level
  labels, ``D_k[j] = Z_k' Z_k`` restricted to level ``j`` (``q_k x q_k``) and
  ``F_k[j] = Z_k' [X y]`` (``q_k x (p+1)``);
* per pair of factors ``k < l``: the co-occurring level pairs ``(j, i)`` (sorted,
  unique) and ``Z_k' Z_l`` restricted to the rows of level ``j`` of ``k`` and
  ``i`` of ``l`` (``q_k x q_l``);
* ``G = [X y]' [X y]`` and the weighted number of rows.

When the model has an intercept, the fixed columns and ``y`` enter shifted by a
vector ``shift`` (close to their means: the first chunk's), as ``fit`` centres
them, so that the sums keep their digits when means are large against spreads.
All chunks of a sum use the same shift (statistics with another one are
re-shifted exactly: a unit-triangular change of basis of ``[X y]``), and the
final problem is laid out at the totals' means, as ``fit`` lays it out.

A chunk's statistics are read off the blocks that
:func:`skmixed._solvers.lmm.cross_products` (the one pass over the rows) fills
for the chunk's own layout. Two statistics add exactly after mapping both sides'
level codes onto the union of their labels; the pair lists are concatenated and
coalesced by sort + ``np.add.reduceat``. :meth:`GroupedStats.to_problem` finally
lays the totals out in canonical order (levels sorted as
:class:`~skmixed._design.grouping.GroupingFactor` sorts them, blocks ordered as
:func:`~skmixed._design.layout.amalgamate` orders them, aliased columns dropped
as ``fit`` drops them), so that :class:`~skmixed._solvers.lmm.LMMProblem`
optimises exactly the problem ``fit`` would see on the concatenated rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._design.grouping import GroupingFactor
from .._design.layout import BlockLayout, amalgamate
from .._design.terms import RandomTerm
from .lmm import CrossProducts, cross_products, drop_aliased

__all__ = ["GroupedStats", "StatsProblem"]


def _block_index(off, J, q):
    """(J, q) positions of the columns of a dense block starting at ``off``."""
    return off + np.arange(J, dtype=np.int64)[:, None] * q + np.arange(q, dtype=np.int64)[None, :]


def _coalesce(k1, k2, vals, n2):
    """Sum ``vals`` over duplicate keys ``(k1, k2)``; returns sorted unique keys and sums."""
    if k1.size == 0:
        return k1, k2, vals
    key = k1 * np.int64(n2) + k2
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    summed = np.add.reduceat(vals[order], starts, axis=0)
    uk = key[starts]
    return uk // n2, uk % n2, summed


def _union_index(indexes):
    """Union of level labels (first-seen order) and, per input, the map into it."""
    union = indexes[0]
    for idx in indexes[1:]:
        new = idx[union.get_indexer(idx) < 0]
        if len(new):
            union = union.append(new)
    return union, [union.get_indexer(idx).astype(np.int64) for idx in indexes]


@dataclass
class StatsProblem:
    """What :meth:`GroupedStats.to_problem` returns: an LMM ready for :class:`LMMProblem`."""

    layout: BlockLayout
    cp: CrossProducts
    blocks: list  # amalgamated ReBlocks, solver order
    factors: list  # GroupingFactor with canonical levels (empty codes)
    terms: list  # RandomTerm over the kept columns
    keep: np.ndarray  # kept design columns
    feature_names: list  # names of the kept columns
    x_shift: np.ndarray = None  # centring of the kept columns in cp (None: not centred)
    y_shift: float = 0.0
    gram: np.ndarray = None  # [X y]'W[X y] of the kept columns, same centring


@dataclass
class GroupedStats:
    """Mergeable sufficient statistics of a linear mixed model (see module docstring).

    Parameters
    ----------
    terms : list of RandomTerm
        Random terms over the *full* design columns (intercept first when present).
    factor_names : list of str
    feature_names : list of str
        Names of the full design's ``p`` columns.
    levels : list of pandas.Index
        Level labels per factor (any order; codes below index into them).
    D : list of ndarray (J_k, q_k, q_k)
    F : list of ndarray (J_k, q_k, p + 1)
    pairs : dict
        ``(k, l) -> (codes_k, codes_l, V)`` for ``k < l`` with ``V`` of shape
        ``(n_pairs, q_k, q_l)``; keys sorted and unique.
    G : ndarray (p + 1, p + 1)
    n_obs : float
        Sum of frequency weights.
    n_rows : int
    q : list of int
        Random-effect columns per factor.
    shift : ndarray (p + 1,)
        What was subtracted from ``[X y]`` before summing (0 for the intercept).

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._design.grouping import make_factors
    >>> from skmixed._design.terms import default_terms
    >>> rng = np.random.default_rng(0)
    >>> X = np.c_[np.ones(40), rng.normal(size=40)]
    >>> y = rng.normal(size=40)
    >>> g = np.repeat(["a", "b", "c", "d"], 10)
    >>> def stats(rows):
    ...     fs = make_factors(g[rows], names=["g"])
    ...     return GroupedStats.from_rows(X[rows], y[rows], None, fs, default_terms(1, (), ()),
    ...                                   ["(Intercept)", "x"])
    >>> total = stats(slice(0, 25)) + stats(slice(25, 40))
    >>> whole = stats(slice(0, 40))
    >>> bool(np.allclose(total.to_problem().cp.A22, whole.to_problem().cp.A22))
    True
    """

    terms: list
    factor_names: list
    feature_names: list
    levels: list
    D: list
    F: list
    pairs: dict
    G: np.ndarray
    n_obs: float
    n_rows: int
    q: list = field(default_factory=list)
    shift: np.ndarray = None  # (p + 1,) subtracted from [X y] (0 for the intercept)

    def __post_init__(self):
        if not self.q:
            self.q = [d.shape[1] for d in self.D]
        if self.shift is None:
            self.shift = np.zeros(self.G.shape[0])

    @property
    def has_intercept(self) -> bool:
        return bool(self.feature_names) and self.feature_names[0] == "(Intercept)"

    def means(self) -> np.ndarray:
        """Weighted means of ``[X y]`` (0 for the intercept); the centring ``fit`` uses."""
        if not self.has_intercept or self.G[0, 0] <= 0:
            return np.zeros(self.G.shape[0])
        m = self.shift + self.G[0] / self.G[0, 0]
        m[0] = 0.0
        return m

    def reshifted(self, new_shift) -> "GroupedStats":
        """The same sums with ``[X y]`` shifted by ``new_shift`` instead (exact change of basis)."""
        new_shift = np.asarray(new_shift, dtype=np.float64)
        delta = new_shift - self.shift
        if not np.any(delta):
            return self
        if not self.has_intercept or delta[0] != 0:
            raise ValueError("only models with an intercept are centred")
        # column j of the new [X y] = old column j - delta_j * (intercept column)
        T = np.eye(delta.size)
        T[0, 1:] = -delta[1:]
        F = [np.einsum("jac,cd->jad", Fk, T) for Fk in self.F]
        G = T.T @ self.G @ T
        return GroupedStats(self.terms, self.factor_names, self.feature_names, self.levels, self.D, F, self.pairs,
                            G, self.n_obs, self.n_rows, list(self.q), new_shift.copy())

    @property
    def p(self) -> int:
        return self.G.shape[0] - 1

    # ----------------------------------------------------------------- from one chunk
    @classmethod
    def from_rows(cls, X, y, weights, factors, terms, feature_names, shift=None) -> "GroupedStats":
        """Statistics of one chunk: one pass over its rows (``gram.accumulate``), then relabelled.

        Parameters
        ----------
        X : ndarray (n, p)
            Full fixed design (intercept column first when present).
        y : ndarray (n,)
        weights : ndarray (n,) or None
        factors : list of GroupingFactor
            The chunk's factors (a factor may have a single level here).
        terms : list of RandomTerm
            Terms over the columns of ``X``.
        feature_names : list of str
        shift : ndarray (p + 1,), optional
            Subtracted from ``[X y]`` in the pass (intercept entry 0); default:
            this chunk's weighted means when the design has an intercept.
        """
        n, p = X.shape
        w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
        icpt = bool(feature_names) and feature_names[0] == "(Intercept)"
        if shift is None:
            shift = np.zeros(p + 1)
            if icpt and n:
                shift[1:p] = np.average(X[:, 1:], axis=0, weights=w)
                shift[p] = np.average(y, weights=w)
        shift = np.asarray(shift, dtype=np.float64)
        if shift.shape != (p + 1,) or (np.any(shift) and (not icpt or shift[0] != 0)):
            raise ValueError("shift must have p + 1 entries, 0 for the intercept (and all 0 without one)")
        G = np.zeros((p + 1, p + 1))
        nf = len(factors)
        levels = [f.levels for f in factors]
        if not terms:
            XY = np.column_stack([X, y]) - shift[None, :]
            G = (XY * w[:, None]).T @ XY if w is not None else XY.T @ XY
            n_obs = float(n if w is None else w.sum())
            return cls(list(terms), [f.name for f in factors], list(feature_names), levels, [], [], {}, G,
                       n_obs, n, [], shift)
        blocks = amalgamate(terms, [f.n_levels for f in factors])
        if len(blocks) != nf:
            raise ValueError("every grouping factor needs a random-effects term")
        codes = [f.codes for f in factors]
        layout = BlockLayout.build(blocks, codes, p)
        cp = cross_products(layout, X, y, w, x_shift=shift[:p], y_shift=float(shift[p]))
        D = [None] * nf
        F = [None] * nf
        q = [0] * nf
        pairs = {}
        xy = np.arange(p + 1)
        # first block: A11 and the X/y tail of every CSR segment of A21
        b1 = blocks[0]
        f1 = b1.factor
        q[f1] = b1.q
        D[f1] = cp.A11
        tail = layout.ptr[1:, None] - (p + 1) + xy[None, :]
        F[f1] = np.ascontiguousarray(cp.A21[tail].transpose(0, 2, 1))
        seg = np.repeat(np.arange(layout.J1, dtype=np.int64), np.diff(layout.ptr))
        dense_idx = []
        for k, b in enumerate(blocks[1:]):
            o, qk, Jk = int(layout.dense_off[k]), b.q, b.n_levels
            fk = b.factor
            q[fk] = qk
            idx = _block_index(o, Jk, qk)
            dense_idx.append(idx)
            D[fk] = cp.A22[idx[:, :, None], idx[:, None, :]]
            F[fk] = cp.A22[idx[:, :, None], (layout.Q2 + xy)[None, None, :]]
            # coupling with the first block: the q_k consecutive slots starting at each pair
            rel = layout.cols - o
            start = np.flatnonzero((rel >= 0) & (rel < Jk * qk) & (rel % qk == 0))
            V = cp.A21[start[:, None] + np.arange(qk)[None, :]]  # (n_pairs, q_k, q1)
            cj, cl = seg[start], rel[start] // qk
            pairs.update(cls._oriented(f1, fk, cj, cl, V.transpose(0, 2, 1)))
        # couplings between dense blocks: their pattern comes from the codes
        for a in range(1, len(blocks)):
            for c in range(a + 1, len(blocks)):
                fa, fc = blocks[a].factor, blocks[c].factor
                Jc = blocks[c].n_levels
                key = np.unique(codes[fa] * np.int64(Jc) + codes[fc])
                la, lc = key // Jc, key % Jc
                ia, ic = dense_idx[a - 1][la], dense_idx[c - 1][lc]
                V = cp.A22[ia[:, :, None], ic[:, None, :]]
                pairs.update(cls._oriented(fa, fc, la, lc, V))
        G = cp.A22[layout.Q2:, layout.Q2:].copy()
        for key, (ka, kb, V) in pairs.items():
            pairs[key] = _coalesce(ka, kb, V, len(levels[key[1]]))  # sorts; keys are already unique
        return cls(list(terms), [f.name for f in factors], list(feature_names), levels, D, F, pairs, G,
                   cp.n_obs, n, q, shift)

    @staticmethod
    def _oriented(fa, fb, ca, cb, V):
        """Store a pair under (min factor, max factor) with V of shape (n, q_min, q_max)."""
        if fa < fb:
            return {(fa, fb): (ca.astype(np.int64), cb.astype(np.int64), np.ascontiguousarray(V))}
        return {(fb, fa): (cb.astype(np.int64), ca.astype(np.int64),
                           np.ascontiguousarray(V.transpose(0, 2, 1)))}

    # ----------------------------------------------------------------- merging
    def _check_compatible(self, other: "GroupedStats"):
        if list(other.feature_names) != list(self.feature_names):
            raise ValueError(f"chunks have different fixed-effects columns: {self.feature_names} vs "
                             f"{other.feature_names}")
        if list(other.factor_names) != list(self.factor_names):
            raise ValueError(f"chunks have different grouping factors: {self.factor_names} vs "
                             f"{other.factor_names}")
        if list(other.terms) != list(self.terms):
            raise ValueError("chunks have different random-effects terms")

    @classmethod
    def merge(cls, stats: list) -> "GroupedStats":
        """Exact sum of several chunks' statistics (levels matched by label)."""
        stats = [s for s in stats if s is not None]
        if not stats:
            raise ValueError("nothing to merge")
        first = stats[0]
        for s in stats[1:]:
            first._check_compatible(s)
        if len(stats) == 1:
            return first
        stats = [first] + [s.reshifted(first.shift) for s in stats[1:]]
        nf = len(first.factor_names)
        levels, maps = [], []
        for k in range(nf):
            u, m = _union_index([s.levels[k] for s in stats])
            levels.append(u)
            maps.append(m)
        D, F = [], []
        for k in range(nf):
            if not first.D:
                break
            J = len(levels[k])
            Dk = np.zeros((J,) + first.D[k].shape[1:])
            Fk = np.zeros((J,) + first.F[k].shape[1:])
            for s, m in zip(stats, maps[k]):
                Dk[m] += s.D[k]  # m is injective: no repeated indices
                Fk[m] += s.F[k]
            D.append(Dk)
            F.append(Fk)
        pairs = {}
        keys = set().union(*[s.pairs.keys() for s in stats])
        for key in sorted(keys):
            a, b = key
            ka = [maps[a][i][s.pairs[key][0]] for i, s in enumerate(stats) if key in s.pairs]
            kb = [maps[b][i][s.pairs[key][1]] for i, s in enumerate(stats) if key in s.pairs]
            V = [s.pairs[key][2] for s in stats if key in s.pairs]
            pairs[key] = _coalesce(np.concatenate(ka), np.concatenate(kb), np.concatenate(V), len(levels[b]))
        G = sum(s.G for s in stats[1:]) + stats[0].G
        return cls(first.terms, first.factor_names, first.feature_names, levels, D, F, pairs, G,
                   float(sum(s.n_obs for s in stats)), int(sum(s.n_rows for s in stats)), list(first.q),
                   first.shift.copy())

    def __add__(self, other: "GroupedStats") -> "GroupedStats":
        return GroupedStats.merge([self, other])

    # ----------------------------------------------------------------- the final problem
    def canonical_factors(self):
        """Factors with levels in the order ``fit`` would give them, and the position maps."""
        factors, perms = [], []
        for name, lev in zip(self.factor_names, self.levels):
            f = GroupingFactor.from_labels(pd.Series(lev), name=name)
            factors.append(GroupingFactor(name, np.empty(0, dtype=np.int64), f.levels))
            perms.append(f.codes)  # union position -> canonical code
        return factors, perms

    def kept_columns(self):
        """Columns ``fit`` keeps (aliased ones dropped, by the same rule on the total X'WX)."""
        p = self.p
        if not p:
            return np.arange(0)
        # fit judges the raw X; the centred sums keep the digits, the rule maps them back
        return drop_aliased(self.G[:p, :p], shift=self.shift[:p] if self.has_intercept else None)

    def to_problem(self, keep=None) -> StatsProblem:
        """Lay the totals out as ``fit`` would on the concatenated rows.

        Parameters
        ----------
        keep : int array, optional
            Design columns to keep; default :meth:`kept_columns`.
        """
        if self.has_intercept:
            # lay out at the totals' means, as fit centres on them
            return self.reshifted(self.means())._to_problem(keep)
        return self._to_problem(keep)

    def _to_problem(self, keep=None) -> StatsProblem:
        p_full = self.p
        keep = self.kept_columns() if keep is None else np.asarray(keep, dtype=np.int64)
        remap = {int(old): new for new, old in enumerate(keep)}
        terms = []
        for t in self.terms:
            lost = [self.feature_names[s] for s in t.slopes if s not in remap]
            if lost:
                raise ValueError(f"random slope column(s) {lost} are aliased with other fixed-effect columns")
            terms.append(RandomTerm(t.factor, t.intercept, tuple(remap[s] for s in t.slopes), t.names))
        keep_xy = np.r_[keep, p_full].astype(np.int64)
        p = keep.size
        factors, perms = self.canonical_factors()
        names = [self.feature_names[k] for k in keep]
        x_shift = self.shift[keep].copy() if self.has_intercept else None
        y_shift = float(self.shift[p_full])
        gram = self.G[np.ix_(keep_xy, keep_xy)]
        if not terms:
            return StatsProblem(None, None, [], factors, terms, keep, names, x_shift, y_shift, gram)
        n_levels = [f.n_levels for f in factors]
        blocks = amalgamate(terms, n_levels)
        b1, dense = blocks[0], blocks[1:]
        f1, J1, q1 = b1.factor, b1.n_levels, b1.q
        dq = np.array([b.q for b in dense], dtype=np.int64)
        dJ = np.array([b.n_levels for b in dense], dtype=np.int64)
        doff = np.zeros(len(dense), dtype=np.int64)
        if len(dense):
            doff[1:] = np.cumsum(dJ * dq)[:-1]
        Q2 = int((dJ * dq).sum())
        m = Q2 + p + 1

        def canon_pair(fa, fb):
            """Pairs between factors fa and fb in canonical codes, V oriented (n, q_fa, q_fb), sorted."""
            lo, hi = min(fa, fb), max(fa, fb)
            if (lo, hi) not in self.pairs:
                return np.empty(0, np.int64), np.empty(0, np.int64), np.zeros((0, self.q[fa], self.q[fb]))
            ka, kb, V = self.pairs[(lo, hi)]
            ka, kb = perms[lo][ka], perms[hi][kb]
            if fa != lo:
                ka, kb, V = kb, ka, V.transpose(0, 2, 1)
            return _coalesce(ka, kb, V, n_levels[fb])

        # CSR pattern of A21 (as BlockLayout.build lays it out from the codes)
        per_j = np.full(J1, p + 1, dtype=np.int64)
        pinfo = []
        for k, b in enumerate(dense):
            pj, pl, V = canon_pair(f1, b.factor)
            cnt = np.bincount(pj, minlength=J1)
            pinfo.append((pj, pl, V, cnt))
            per_j += cnt * dq[k]
        ptr = np.zeros(J1 + 1, dtype=np.int64)
        np.cumsum(per_j, out=ptr[1:])
        nnz = int(ptr[-1])
        cols = np.empty(nnz, dtype=np.int64)
        A21 = np.zeros((nnz, q1))
        pre = ptr[:-1].copy()
        for k, (pj, pl, V, cnt) in enumerate(pinfo):
            first_pair = np.zeros(J1, dtype=np.int64)
            np.cumsum(cnt[:-1], out=first_pair[1:])
            rank = np.arange(pj.shape[0]) - first_pair[pj]
            slot = pre[pj] + rank * dq[k]
            sl = slot[:, None] + np.arange(dq[k])[None, :]
            cols[sl] = doff[k] + pl[:, None] * dq[k] + np.arange(dq[k])[None, :]
            A21[sl] = V.transpose(0, 2, 1)  # (n, q_k, q1)
            pre += cnt * dq[k]
        tail = ptr[1:, None] - (p + 1) + np.arange(p + 1)[None, :]
        cols[tail.ravel()] = np.tile(Q2 + np.arange(p + 1), J1)
        inv1 = np.argsort(perms[f1])  # canonical code -> union position
        A21[tail] = self.F[f1][inv1][:, :, keep_xy].transpose(0, 2, 1)
        A11 = np.ascontiguousarray(self.D[f1][inv1])

        # dense part
        A22 = np.zeros((m, m))
        xy = Q2 + np.arange(p + 1)
        A22[np.ix_(xy, xy)] = self.G[np.ix_(keep_xy, keep_xy)]
        idxs = []
        for k, b in enumerate(dense):
            fk = b.factor
            idx = _block_index(doff[k], dJ[k], dq[k])
            idxs.append(idx)
            inv = np.argsort(perms[fk])
            A22[idx[:, :, None], idx[:, None, :]] = self.D[fk][inv]
            Fk = self.F[fk][inv][:, :, keep_xy]
            A22[idx[:, :, None], xy[None, None, :]] = Fk
            A22[xy[None, None, :], idx[:, :, None]] = Fk
        for a in range(len(dense)):
            for c in range(a + 1, len(dense)):
                la, lc, V = canon_pair(dense[a].factor, dense[c].factor)
                ia, ic = idxs[a][la], idxs[c][lc]
                A22[ia[:, :, None], ic[:, None, :]] = V
                A22[ic[:, :, None], ia[:, None, :]] = V.transpose(0, 2, 1)
        nd = len(dense)
        layout = BlockLayout(blocks, q1, J1, doff, dq, dJ, Q2, p, ptr, cols,
                             np.empty((0, nd), dtype=np.int64), np.empty(0, dtype=np.int64),
                             np.empty((0, nd), dtype=np.int64))
        cp = CrossProducts(A11, A21, A22, float(self.n_obs))
        return StatsProblem(layout, cp, blocks, factors, terms, keep, names, x_shift, y_shift, gram)
