"""Matrix-free products and a blocked preconditioned CG for crossed random intercepts.

The penalised system of an LMM whose random terms are all scalar random
intercepts is ``A = Lambda C Lambda + I`` with ``C = Z'WZ``: per factor a
diagonal of (weighted) level counts, and between two factors the sparse table of
co-occurrence counts. On uniformly random crossings the Schur complement of the
first factor is dense (every level of the second factor meets dozens of others
through the first), so :mod:`skmixed._solvers.lmm_iterative` never forms it: it
eliminates the first factor exactly (a diagonal) and applies the Schur complement

``S = A_rr - A_r1 D1^{-1} A_1r``      (``D1 = theta_1^2 n_1 + 1``)

through the co-occurrence pairs, on a block of right-hand sides at once (every
pair is read once per block product; the block's rows stay in cache). Cost per
product is ``O(nnz(pairs) * n_columns)``; nothing grows as (levels)^2.

All kernels are serial: they are memory bound and run beside other work.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def a1r_apply(pj, pl, pv, theta1, col_scale, X, out):
    """``out = A_1r X`` with ``A_1r = theta_1 N_1r diag(col_scale)`` (``out`` is (J1, nc), overwritten).

    ``(pj, pl, pv)`` are the first factor's co-occurrence pairs with the other factors'
    columns (``pl`` a column of the rest, ``pv`` the weighted count).
    """
    nc = X.shape[1]
    out[:, :] = 0.0
    for e in range(pj.shape[0]):
        j = pj[e]
        l = pl[e]
        c = theta1 * pv[e] * col_scale[l]
        for r in range(nc):
            out[j, r] += c * X[l, r]


@njit(cache=True)
def ar1_apply_add(pj, pl, pv, theta1, col_scale, T, out, sign):
    """``out += sign * A_r1 T`` (``A_r1 = A_1r'``)."""
    nc = T.shape[1]
    for e in range(pj.shape[0]):
        j = pj[e]
        l = pl[e]
        c = sign * theta1 * pv[e] * col_scale[l]
        for r in range(nc):
            out[l, r] += c * T[j, r]


@njit(cache=True)
def rest_apply(diag_rest, qa, qb, qv, col_scale, X, out):
    """``out = A_rr X``: the diagonal ``col_scale^2 n + 1`` and the pairs among the other factors."""
    nc = X.shape[1]
    for l in range(X.shape[0]):
        d = diag_rest[l]
        for r in range(nc):
            out[l, r] = d * X[l, r]
    for e in range(qa.shape[0]):
        a = qa[e]
        b = qb[e]
        c = qv[e] * col_scale[a] * col_scale[b]
        for r in range(nc):
            out[a, r] += c * X[b, r]
            out[b, r] += c * X[a, r]


@njit(cache=True)
def schur_apply(pptr, pl, pv, theta1, d1inv, diag_rest, qa, qb, qv, col_scale, X, out):
    """``out = S X`` for the Schur complement of the first factor, whose pairs are grouped by its
    level (CSR over ``pptr``).

    Each first-factor level's row of ``A_1r X`` is formed, scaled by ``D1^{-1}`` and scattered
    back while it is in registers: no ``(J1, nc)`` scratch block goes through memory (with a
    million first-factor levels that block is hundreds of MB, written and read once per product).
    """
    nc = X.shape[1]
    rest_apply(diag_rest, qa, qb, qv, col_scale, X, out)
    t = np.empty(nc)
    for j in range(pptr.shape[0] - 1):
        lo, hi = pptr[j], pptr[j + 1]
        if lo == hi:
            continue
        for r in range(nc):
            t[r] = 0.0
        for e in range(lo, hi):
            l = pl[e]
            c = theta1 * pv[e] * col_scale[l]
            for r in range(nc):
                t[r] += c * X[l, r]
        f = d1inv[j]
        for r in range(nc):
            t[r] *= f
        for e in range(lo, hi):
            l = pl[e]
            c = theta1 * pv[e] * col_scale[l]
            for r in range(nc):
                out[l, r] -= c * t[r]


@njit(cache=True)
def schur_diag(pj, pl, pv, theta1, d1inv, diag_rest, col_scale):
    """The exact diagonal of ``S``: ``diag_rest - theta_1^2 s_l^2 sum_j N_jl^2 / D1_j`` (the Jacobi preconditioner)."""
    out = diag_rest.copy()
    for e in range(pj.shape[0]):
        l = pl[e]
        c = theta1 * pv[e] * col_scale[l]
        out[l] -= c * c * d1inv[pj[e]]
    return out


@njit(cache=True)
def block_pcg(pptr, pl, pv, theta1, d1inv, diag_rest, qa, qb, qv, col_scale, minv, B, tol, max_iter):
    """Solve ``S X = B`` column by column (in lockstep) by CG preconditioned with ``diag(minv)``.

    Each column stops when its residual norm falls below ``tol`` times its right-hand
    side's. Returns ``(X, alphas, betas, iters, SP0)``: the CG step lengths and
    direction updates of every column (``(max_iter, nc)``) and its iteration count,
    from which the Lanczos tridiagonal of ``M^{1/2} S M^{1/2}`` started at
    ``M^{1/2} b`` follows (stochastic Lanczos quadrature, Ubaru, Chen & Saad 2017),
    and ``SP0 = S M B``, the first iteration's product (callers needing ``S M B`` get it free).
    """
    n, nc = B.shape
    X = np.zeros((n, nc))
    R = B.copy()
    Zp = np.empty((n, nc))
    P = np.empty((n, nc))
    AP = np.empty((n, nc))
    alphas = np.zeros((max_iter, nc))
    betas = np.zeros((max_iter, nc))
    iters = np.zeros(nc, dtype=np.int64)
    active = np.ones(nc, dtype=np.bool_)
    rz = np.zeros(nc)
    bnorm = np.zeros(nc)
    for r in range(nc):
        s = 0.0
        for i in range(n):
            s += B[i, r] * B[i, r]
        bnorm[r] = np.sqrt(s)
        if bnorm[r] == 0.0:
            active[r] = False
    for i in range(n):
        m = minv[i]
        for r in range(nc):
            z = m * R[i, r]
            Zp[i, r] = z
            P[i, r] = z
    for r in range(nc):
        s = 0.0
        for i in range(n):
            s += R[i, r] * Zp[i, r]
        rz[r] = s
    SP0 = np.zeros((n, nc))
    pap = np.zeros(nc)
    rr = np.zeros(nc)
    rz_new = np.zeros(nc)
    for it in range(max_iter):
        if not active.any():
            break
        schur_apply(pptr, pl, pv, theta1, d1inv, diag_rest, qa, qb, qv, col_scale, P, AP)
        if it == 0:
            SP0[:, :] = AP
        pap[:] = 0.0
        for i in range(n):
            for r in range(nc):
                pap[r] += P[i, r] * AP[i, r]
        for r in range(nc):
            if active[r]:
                a = rz[r] / pap[r]
                alphas[it, r] = a
        for i in range(n):
            for r in range(nc):
                if active[r]:
                    a = alphas[it, r]
                    X[i, r] += a * P[i, r]
                    R[i, r] -= a * AP[i, r]
        rr[:] = 0.0
        rz_new[:] = 0.0
        for i in range(n):
            m = minv[i]
            for r in range(nc):
                if active[r]:
                    z = m * R[i, r]
                    Zp[i, r] = z
                    rr[r] += R[i, r] * R[i, r]
                    rz_new[r] += R[i, r] * z
        for r in range(nc):
            if active[r]:
                iters[r] = it + 1
                if np.sqrt(rr[r]) <= tol * bnorm[r]:
                    active[r] = False
                else:
                    betas[it, r] = rz_new[r] / rz[r]
                    rz[r] = rz_new[r]
        for i in range(n):
            for r in range(nc):
                if active[r]:
                    P[i, r] = Zp[i, r] + betas[it, r] * P[i, r]
    return X, alphas, betas, iters, SP0


@njit(cache=True)
def gram_apply(n_all, J1, pj, pl, pv, qa, qb, qv, x, out):
    """``out = C x`` for the full, unscaled ``C = Z'WZ`` over all levels (first factor, then the rest).

    ``n_all`` holds every level's weighted count; the first factor's pairs ``(pj, pl, pv)`` and
    the pairs among the rest ``(qa, qb, qv)`` give the off-diagonal blocks (rest columns offset by ``J1``).
    """
    for i in range(x.shape[0]):
        out[i] = n_all[i] * x[i]
    for e in range(pj.shape[0]):
        a = pj[e]
        b = J1 + pl[e]
        v = pv[e]
        out[a] += v * x[b]
        out[b] += v * x[a]
    for e in range(qa.shape[0]):
        a = J1 + qa[e]
        b = J1 + qb[e]
        v = qv[e]
        out[a] += v * x[b]
        out[b] += v * x[a]


@njit(cache=True)
def pair_table(ca, cb, Ja, Jb, w):
    """The co-occurrence table of two factors: level pairs meeting in some row, sorted by ``(a, b)``.

    ``w`` holds the rows' weights (empty: unit weights). Returns ``(pa, pb, pv)``: the pairs
    and their summed weights, as ``np.unique`` of the keys ``a * Jb + b`` would give them (each
    pair's weights summed in row order), but in linear time: the rows are bucketed by ``a``
    (a counting sort), each bucket's ``b`` levels gathered in a marker array and sorted
    (insertion sort for the usual handful, a library sort for large buckets).
    """
    n = ca.shape[0]
    unit = w.shape[0] == 0
    ptr = np.zeros(Ja + 1, dtype=np.int64)
    for i in range(n):
        ptr[ca[i] + 1] += 1
    for j in range(Ja):
        ptr[j + 1] += ptr[j]
    pos = ptr[:-1].copy()
    bb = np.empty(n, dtype=np.int64)
    ww = np.empty(n)
    for i in range(n):
        j = ca[i]
        k = pos[j]
        bb[k] = cb[i]
        ww[k] = 1.0 if unit else w[i]
        pos[j] = k + 1
    mark = np.full(Jb, -1, dtype=np.int64)
    acc = np.zeros(Jb)
    touched = np.empty(Jb, dtype=np.int64)
    pa = np.empty(n, dtype=np.int64)
    pb = np.empty(n, dtype=np.int64)
    pv = np.empty(n)
    m = 0
    for j in range(Ja):
        nt = 0
        for k in range(ptr[j], ptr[j + 1]):
            b = bb[k]
            if mark[b] != j:
                mark[b] = j
                acc[b] = 0.0
                touched[nt] = b
                nt += 1
            acc[b] += ww[k]
        if nt > 32:
            touched[:nt] = np.sort(touched[:nt])
        else:
            for k in range(1, nt):
                key = touched[k]
                q = k - 1
                while q >= 0 and touched[q] > key:
                    touched[q + 1] = touched[q]
                    q -= 1
                touched[q + 1] = key
        for k in range(nt):
            b = touched[k]
            pa[m] = j
            pb[m] = b
            pv[m] = acc[b]
            m += 1
    return pa[:m].copy(), pb[:m].copy(), pv[:m].copy()
