"""The profiled LMM criterion of a one-factor model at many (theta, y) pairs at once.

For the parametric bootstrap: replicates share ``Z'Z``, ``Z'X`` and ``X'X`` and
differ in their ``y`` cross-products and in where their optimiser is. One call
evaluates the criterion (and ``beta`` given ``theta``) at every requested point,
in parallel over points; each evaluation walks the levels' ``q x q`` blocks once.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _eval_point(theta, tr, tc, A11, A21x, a21y, A22xx, a22xy, a22yy, reml, N, beta_out):
    J, q = A11.shape[0], A11.shape[1]
    p = A21x.shape[1]
    m = p + 1
    lam = np.zeros((q, q))
    for k in range(theta.shape[0]):
        lam[tr[k], tc[k]] = theta[k]
    M = np.empty((m, m))
    for a in range(p):
        for b in range(p):
            M[a, b] = A22xx[a, b]
        M[p, a] = a22xy[a]
        M[a, p] = a22xy[a]
    M[p, p] = a22yy
    S = np.empty((q, q))
    T = np.empty((q, q))
    L = np.zeros((q, q))
    W = np.empty((m, q))
    ld = 0.0
    for j in range(J):
        # S = lam' A11_j lam + I
        for a in range(q):
            for b in range(q):
                s = 0.0
                for c in range(q):
                    s += A11[j, a, c] * lam[c, b]
                T[a, b] = s
        for a in range(q):
            for b in range(q):
                s = 0.0
                for c in range(q):
                    s += lam[c, a] * T[c, b]
                S[a, b] = s + (1.0 if a == b else 0.0)
        for a in range(q):
            for b in range(a + 1):
                s = S[a, b]
                for c in range(b):
                    s -= L[a, c] * L[b, c]
                if a == b:
                    if s <= 0.0:
                        return np.inf
                    L[a, a] = np.sqrt(s)
                else:
                    L[a, b] = s / L[b, b]
            ld += 2.0 * np.log(L[a, a])
        # W = [X y]_j' Z_j lam, then W <- W L^{-T} (forward substitution per row)
        for r in range(m):
            for b in range(q):
                s = 0.0
                for c in range(q):
                    s += (A21x[j, r, c] if r < p else a21y[j, c]) * lam[c, b]
                W[r, b] = s
            for b in range(q):
                s = W[r, b]
                for c in range(b):
                    s -= W[r, c] * L[b, c]
                W[r, b] = s / L[b, b]
        for a in range(m):
            for b in range(a + 1):
                s = 0.0
                for c in range(q):
                    s += W[a, c] * W[b, c]
                M[a, b] -= s
    # Cholesky of the Schur complement [X y]
    R = np.zeros((m, m))
    for a in range(m):
        for b in range(a + 1):
            s = M[a, b]
            for c in range(b):
                s -= R[a, c] * R[b, c]
            if a == b:
                if s <= 0.0:
                    return np.inf
                R[a, a] = np.sqrt(s)
            else:
                R[a, b] = s / R[b, b]
    ldrx = 0.0
    for a in range(p):
        ldrx += 2.0 * np.log(R[a, a])
    r2 = R[p, p] * R[p, p]
    # beta: R_X' beta = the y row of R
    for a in range(p - 1, -1, -1):
        s = R[p, a]
        for c in range(a + 1, p):
            s -= R[c, a] * beta_out[c]
        beta_out[a] = s / R[a, a]
    beta_out[p] = r2
    log2pi = np.log(2.0 * np.pi)
    if reml:
        nmp = N - p
        return ld + ldrx + nmp * (1.0 + log2pi + np.log(r2 / nmp))
    return ld + N * (1.0 + log2pi + np.log(r2 / N))


@njit(cache=True, parallel=True)
def criterion_batch(thetas, rep, tr, tc, A11, A21x, A21y, A22xx, A22xy, A22yy, reml, N, crit, beta):
    """``crit[i]`` and ``beta[i] = [beta_c, r2]`` at ``thetas[i]`` for replicate ``rep[i]``'s y."""
    for i in prange(thetas.shape[0]):
        r = rep[i]
        crit[i] = _eval_point(thetas[i], tr, tc, A11, A21x, A21y[r], A22xx, A22xy[r], A22yy[r], reml, N,
                              beta[i])


@njit(cache=True)
def criterion_batch_serial(thetas, rep, tr, tc, A11, A21x, A21y, A22xx, A22xy, A22yy, reml, N, crit, beta):
    """:func:`criterion_batch` in the calling thread (calls too small to be worth threads)."""
    for i in range(thetas.shape[0]):
        r = rep[i]
        crit[i] = _eval_point(thetas[i], tr, tc, A11, A21x, A21y[r], A22xx, A22xy[r], A22yy[r], reml, N,
                              beta[i])
