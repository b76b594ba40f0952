"""State of a stream with several grouping factors (nested or crossed) between exact corrections.

With one grouping factor the per-group SEMA summaries are the sufficient statistics of the
likelihood.  With several factors they are not: the likelihood also needs the cross-products
of the factors' random-effect columns over the rows where their levels meet.  The exact
corrections of such a stream therefore accumulate the grouped cross-product statistics of the
chunked LMM (:class:`~skmixed._solvers.lmm_stats.GroupedStats`: per level of each factor, per
co-occurring pair of levels, and ``[X y]'[X y]``; their size grows with the levels and the
pairs met, never with the rows) and solve the ML problem on them exactly.  This module holds
the rest: the per-row, SEMA-style update of every factor's random effects between
corrections (:func:`skmixed._kernels.stream_multi.update_rows`), which keeps predictions
current row by row, and its reset from each correction's fit.

Per level (global code over all factors) it keeps ``C = sum w z z'``, ``h`` (the linear term
of the level's conditional normal equation in the ``u`` scale, ``b = Lam u``) and ``b``.  At a
correction ``b`` is set to the exact BLUPs and ``h = (Lam' C Lam + s2 I) Lam^+ b``, the value
for which the level's own equation returns that BLUP (at the joint optimum each factor's
BLUPs solve their block of the normal equations given the others'), so the per-row steps
start from the exact fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .._kernels import stream_multi as _k

__all__ = ["MultiStreamState", "factor_root"]


def factor_root(Phi: np.ndarray, rtol: float = 1e-12):
    """``Lam`` with ``Lam Lam' = Phi`` and its pseudo-inverse (``Phi`` may be singular)."""
    lam, V = np.linalg.eigh((Phi + Phi.T) / 2)
    top = max(float(lam.max(initial=0.0)), 0.0)
    pos = lam > rtol * top if top > 0 else np.zeros(lam.shape, dtype=bool)
    root = np.where(pos, np.sqrt(np.where(pos, lam, 1.0)), 0.0)
    Lam = V * root[None, :]
    Lpinv = (V * np.where(pos, 1.0 / root.clip(1e-300), 0.0)[None, :]).T
    return Lam, Lpinv


@dataclass
class MultiStreamState:
    """Per-level statistics and current estimates of a several-factor stream.

    Parameters
    ----------
    zidx : ndarray (nf, qmax) of int64
        Per factor, the design column of each random-effect column (-1: the constant 1;
        entries beyond ``qk[k]`` unused).
    qk : ndarray (nf,) of int64
    beta : ndarray (p,)
        Fixed effects (design columns; the last correction's).
    s2 : float
    Lam, Phi : ndarray (nf, qmax, qmax)
    C, h, b : per global level ``(cap, qmax, qmax)``, ``(cap, qmax)``, ``(cap, qmax)``
    gmap : list of ndarray
        Per factor, the global code of each of its levels (local code order).
    n_levels : int
        Global levels in use.
    n_rows : int
    """

    zidx: np.ndarray
    qk: np.ndarray
    beta: np.ndarray
    s2: float
    Lam: np.ndarray
    Phi: np.ndarray
    C: np.ndarray
    h: np.ndarray
    b: np.ndarray
    gmap: list = field(default_factory=list)
    n_levels: int = 0
    n_rows: int = 0
    last_correction: int = 0
    n_corrections: int = 0

    @classmethod
    def new(cls, p: int, zidx: np.ndarray, qk: np.ndarray, capacity: int = 64) -> "MultiStreamState":
        nf, qmax = zidx.shape
        Lam = np.zeros((nf, qmax, qmax))
        for k in range(nf):
            Lam[k, :qk[k], :qk[k]] = np.eye(qk[k])
        return cls(zidx=np.ascontiguousarray(zidx, dtype=np.int64), qk=np.asarray(qk, dtype=np.int64),
                   beta=np.zeros(p), s2=1.0, Lam=Lam, Phi=Lam.copy(),
                   C=np.zeros((capacity, qmax, qmax)), h=np.zeros((capacity, qmax)), b=np.zeros((capacity, qmax)),
                   gmap=[np.empty(0, dtype=np.int64) for _ in range(nf)])

    def copy(self) -> "MultiStreamState":
        """An independent copy (the batch works on it; the model keeps the original until commit)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = [a.copy() for a in v] if isinstance(v, list) else (v.copy() if isinstance(v, np.ndarray)
                                                                             else v)
        return MultiStreamState(**out)

    def add_levels(self, k: int, n_local: int) -> None:
        """Give factor ``k``'s levels up to local code ``n_local - 1`` global codes."""
        have = self.gmap[k].shape[0]
        if n_local <= have:
            return
        new = np.arange(self.n_levels, self.n_levels + n_local - have, dtype=np.int64)
        self.gmap[k] = np.concatenate([self.gmap[k], new])
        self.n_levels += new.shape[0]
        cap = self.C.shape[0]
        if self.n_levels > cap:
            cap = max(2 * cap, self.n_levels)
            for name in ("C", "h", "b"):
                a = getattr(self, name)
                grown = np.zeros((cap,) + a.shape[1:])
                grown[:a.shape[0]] = a
                setattr(self, name, grown)

    def feed(self, X, y, w, codes) -> None:
        """The per-row update of the rows ``X, y`` (global codes ``codes`` (n, nf))."""
        w = np.empty(0) if w is None else np.ascontiguousarray(w, dtype=np.float64)
        _k.update_rows(np.ascontiguousarray(X), np.ascontiguousarray(y), w, np.ascontiguousarray(codes),
                       self.zidx, self.qk, self.Lam, self.beta, float(self.s2), self.C, self.h, self.b)
        self.n_rows += int(X.shape[0])

    def set_fit(self, beta, s2, Phis, blups) -> None:
        """Adopt an exact fit: ``Phis[k]`` (q_k, q_k), ``blups[k]`` = (local codes, values (m, q_k))."""
        self.beta = np.asarray(beta, dtype=np.float64).copy()
        self.s2 = float(s2)
        Lam = np.zeros_like(self.Lam)
        Phi = np.zeros_like(self.Phi)
        b, h = self.b.copy(), self.h.copy()
        for k, (P, (local, vals)) in enumerate(zip(Phis, blups)):
            q = int(self.qk[k])
            Lk, Lpinv = factor_root(np.asarray(P, dtype=np.float64))
            Lam[k, :q, :q], Phi[k, :q, :q] = Lk, P
            g = self.gmap[k][local]
            b[g, :q] = vals
            # h = (Lam' C Lam + s2 I) Lam^+ b: the level's own equation returns the exact BLUP
            Ck = self.C[g, :q, :q]
            M = np.einsum("da,gde,ec->gac", Lk, Ck, Lk) + self.s2 * np.eye(q)[None]
            h[g, :q] = np.einsum("gac,gc->ga", M, vals @ Lpinv.T)
        self.Lam, self.Phi, self.b, self.h = Lam, Phi, b, h
        self.n_corrections += 1

    def effects(self, k: int, n_local: int) -> np.ndarray:
        """Factor ``k``'s current random effects, (n_local, q_k), in local code order."""
        return self.b[self.gmap[k][:n_local], :int(self.qk[k])].copy()

    def random_part(self, X, codes) -> np.ndarray:
        """``sum_k z_k' b_k`` of rows with *local* codes per factor (``-1``: unseen level, 0)."""
        out = np.zeros(X.shape[0])
        for k in range(self.zidx.shape[0]):
            known = codes[k] >= 0
            if not known.any():
                continue
            q = int(self.qk[k])
            Z = np.empty((int(known.sum()), q))
            for a in range(q):
                c = self.zidx[k, a]
                Z[:, a] = 1.0 if c < 0 else X[known, c]
            out[known] += np.einsum("ij,ij->i", Z, self.b[self.gmap[k][codes[k][known]], :q])
        return out

    def finite(self) -> bool:
        return bool(np.isfinite(self.h[:self.n_levels]).all() and np.isfinite(self.b[:self.n_levels]).all()
                    and np.isfinite(self.C[:self.n_levels]).all())
