"""numba kernel of the several-factor stream's per-row update (:mod:`skmixed._solvers.stream_multi`).

Between exact corrections every row updates, for each grouping factor ``k`` in turn, the
random effect ``b`` of its level ``g`` of ``k``: one Gauss-Seidel (SEMA E-step) step of the
normal equations with the fixed effects and the other factors' current effects held::

    C_g += w z z',   h_g += w Lam' z (y - x'beta - sum_{l != k} z_l' b_l),
    b_g  = Lam (Lam' C_g Lam + s2 I)^-1 h_g

``Lam`` (``Phi = Lam Lam'``, possibly singular) and ``s2`` are the last correction's.  The
statistics live in one array per quantity over the *global* level codes of all factors (a
level of factor ``k`` has its own global code), padded to the largest ``q``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .glmm import _chol as chol_small, _chol_solve as chol_solve_small


@njit(cache=True, error_model="numpy")
def update_rows(X, y, w, codes, zidx, qk, Lam, beta, s2, C, h, b):
    """Feed rows ``X, y`` (weights ``w``; empty: 1) with global level codes ``codes`` (n, nf).

    ``zidx[k, a]``: design column of factor ``k``'s random-effect column ``a`` (-1: the
    constant 1), for ``a < qk[k]``.  Updates ``C, h, b`` in place; returns False when a
    system was not positive definite (left unsolved).
    """
    n, p = X.shape
    nf = codes.shape[1]
    qmax = zidx.shape[1]
    z = np.zeros((nf, qmax))
    M = np.zeros((qmax, qmax))
    T = np.zeros((qmax, qmax))
    L = np.zeros((qmax, qmax))
    v = np.zeros(qmax)
    u = np.zeros(qmax)
    ok = True
    for i in range(n):
        wi = 1.0 if w.shape[0] == 0 else w[i]
        xb = 0.0
        for c in range(p):
            xb += X[i, c] * beta[c]
        for k in range(nf):
            for a in range(qk[k]):
                col = zidx[k, a]
                z[k, a] = 1.0 if col < 0 else X[i, col]
        for k in range(nf):
            g = codes[i, k]
            q = qk[k]
            e = y[i] - xb
            for l in range(nf):
                if l != k:
                    gl = codes[i, l]
                    for a in range(qk[l]):
                        e -= z[l, a] * b[gl, a]
            for a in range(q):
                t = 0.0
                for c in range(q):
                    t += Lam[k, c, a] * z[k, c]
                h[g, a] += wi * t * e
                for c in range(q):
                    C[g, a, c] += wi * z[k, a] * z[k, c]
            # M = Lam' C Lam + s2 I
            for a in range(q):
                for c in range(q):
                    t = 0.0
                    for d in range(q):
                        t += C[g, a, d] * Lam[k, d, c]
                    T[a, c] = t
            for a in range(q):
                for c in range(q):
                    t = 0.0
                    for d in range(q):
                        t += Lam[k, d, a] * T[d, c]
                    M[a, c] = t + (s2 if a == c else 0.0)
            Mq, Lq, vq, uq = M[:q, :q], L[:q, :q], v[:q], u[:q]
            if np.isnan(chol_small(Mq, Lq)):
                ok = False
                continue
            for a in range(q):
                vq[a] = h[g, a]
            chol_solve_small(Lq, vq, uq)
            for a in range(q):
                t = 0.0
                for c in range(q):
                    t += Lam[k, a, c] * uq[c]
                b[g, a] = t
    return ok
