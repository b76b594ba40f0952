"""numba kernels for the binomial-logit GLMM (MixedLogisticRegressor).

All kernels work on rows bucketed by group through a CSR-like pointer:
``perm[gptr[g]:gptr[g + 1]]`` are the row indices of group ``g`` (computed once
with a stable argsort of the codes), so X is never copied or reordered. The
random-effects covariates of a row are ``z_a = 1`` when ``zcols[a] < 0``
(random intercept) else ``X[row, zcols[a]]`` (random slope), so no Z matrix is
ever built.

Notation (lme4's): b_g = Lam u_g, eta = X beta + z' Lam u_g, mu = logistic(eta),
frequency weights w; the penalized deviance of group g is
``h_g(u) = sum_i w_i d_i + u'u`` with d_i the Bernoulli deviance residual, and
``H_g = Lam' A_g Lam + I`` with ``A_g = sum_i w_i mu_i (1 - mu_i) z_i z_i'``
is half its Hessian (exactly, the logit link being canonical). The Laplace
deviance is ``sum_g h_g(u_g*) + log det H_g(u_g*)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _row_eval(eta, y, w):
    """mu, weighted deviance residual and log-likelihood pieces for one row.

    Uses one exp and one log1p of -|eta| so neither overflows.
    """
    if eta >= 0.0:
        e = np.exp(-eta)
        mu = 1.0 / (1.0 + e)
        lg = np.log1p(e)
        sp_pos = eta + lg  # log(1 + exp(eta)) = -log(1 - mu)
        sp_neg = lg  # log(1 + exp(-eta)) = -log(mu)
    else:
        e = np.exp(eta)
        mu = e / (1.0 + e)
        lg = np.log1p(e)
        sp_pos = lg
        sp_neg = lg - eta
    d = 2.0 * w * (y * sp_neg + (1.0 - y) * sp_pos)
    return mu, d


@njit(cache=True, inline="always")
def _load_z(X, r, zcols, z):
    for a in range(zcols.shape[0]):
        c = zcols[a]
        z[a] = 1.0 if c < 0 else X[r, c]


@njit(cache=True)
def _chol(H, L):
    """Lower Cholesky factor of a small SPD matrix into L; returns log det H (nan if not PD)."""
    q = H.shape[0]
    ld = 0.0
    for j in range(q):
        d = H[j, j]
        for k in range(j):
            d -= L[j, k] * L[j, k]
        if not d > 0.0:
            return np.nan
        ljj = np.sqrt(d)
        L[j, j] = ljj
        ld += 2.0 * np.log(ljj)
        for i in range(j + 1, q):
            t = H[i, j]
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / ljj
        for i in range(j):
            L[i, j] = 0.0
    return ld


@njit(cache=True)
def _chol_solve(L, b, x):
    """Solve L L' x = b for a small lower-triangular L."""
    q = L.shape[0]
    for i in range(q):
        t = b[i]
        for k in range(i):
            t -= L[i, k] * x[k]
        x[i] = t / L[i, i]
    for i in range(q - 1, -1, -1):
        t = x[i]
        for k in range(i + 1, q):
            t -= L[k, i] * x[k]
        x[i] = t / L[i, i]


@njit(cache=True)
def _group_pass(xb, X, zcols, y, w, perm, start, stop, bvec, z, A, s):
    """One pass over a group's rows at b = Lam u: fills A, s; returns sum of w d."""
    q = zcols.shape[0]
    for a in range(q):
        s[a] = 0.0
        for c in range(q):
            A[a, c] = 0.0
    h = 0.0
    for i in range(start, stop):
        r = perm[i]
        _load_z(X, r, zcols, z)
        eta = xb[r]
        for a in range(q):
            eta += z[a] * bvec[a]
        mu, d = _row_eval(eta, y[r], w[r])
        h += d
        v = w[r] * mu * (1.0 - mu)
        res = w[r] * (y[r] - mu)
        for a in range(q):
            s[a] += res * z[a]
            za = v * z[a]
            for c in range(a + 1):
                A[a, c] += za * z[c]
    for a in range(q):
        for c in range(a):
            A[c, a] = A[a, c]
    return h


@njit(cache=True)
def _group_dev(xb, X, zcols, y, w, perm, start, stop, bvec, z):
    """Sum of w d over a group's rows at b (no derivatives)."""
    q = zcols.shape[0]
    h = 0.0
    for i in range(start, stop):
        r = perm[i]
        _load_z(X, r, zcols, z)
        eta = xb[r]
        for a in range(q):
            eta += z[a] * bvec[a]
        mu, d = _row_eval(eta, y[r], w[r])
        h += d
    return h


@njit(cache=True)
def _group_mode(xb, X, zcols, y, w, perm, start, stop, Lam, ug, tol, maxit, A, s, H, L, z, bvec, step, rhs, uold):
    """Penalized IRLS (Newton with step halving) for one group's u; A, s, H, L end at the mode.

    Returns (h, logdet H, iterations). Newton on h_g is exact IRLS here because
    the logit link is canonical, so it converges quadratically from a warm start.
    """
    q = zcols.shape[0]
    hprev = np.inf
    n_half = 0
    it = 0
    h = 0.0
    ld = 0.0
    while True:
        for a in range(q):
            t = 0.0
            for c in range(q):
                t += Lam[a, c] * ug[c]
            bvec[a] = t
        h = _group_pass(xb, X, zcols, y, w, perm, start, stop, bvec, z, A, s)
        for a in range(q):
            h += ug[a] * ug[a]
        if h > hprev + 1e-13 * abs(hprev) and n_half < 40:
            # the full Newton step overshot: halve it back towards the last accepted point
            for a in range(q):
                ug[a] = 0.5 * (ug[a] + uold[a])
            n_half += 1
            continue
        n_half = 0
        # H = Lam' A Lam + I, rhs = Lam' s - u (minus half the gradient of h)
        for a in range(q):
            for c in range(q):
                t = 0.0
                for k in range(q):
                    for m in range(q):
                        t += Lam[k, a] * A[k, m] * Lam[m, c]
                H[a, c] = t + (1.0 if a == c else 0.0)
            t = 0.0
            for k in range(q):
                t += Lam[k, a] * s[k]
            rhs[a] = t - ug[a]
        ld = _chol(H, L)
        _chol_solve(L, rhs, step)
        it += 1
        smax = 0.0
        for a in range(q):
            smax = max(smax, abs(step[a]))
        if smax < tol or it >= maxit:
            break
        hprev = h
        for a in range(q):
            uold[a] = ug[a]
            ug[a] += step[a]
    return h, ld, it


@njit(cache=True, parallel=True)
def laplace_single(xb, X, zcols, y, w, perm, gptr, Lam, u, tol, maxit, want_grad,
                   h_out, ld_out, it_out, gbeta_out, glam_out):
    """Conditional modes, Laplace deviance pieces and their gradient, one grouping factor.

    Parameters
    ----------
    xb : (n,) fixed-effects linear predictor X beta.
    u : (G, q) spherical random effects; warm start in, conditional modes out.
    want_grad : also fill ``gbeta_out`` (G, p) and ``glam_out`` (G, q, q): each
        group's contribution to the total derivative of the Laplace deviance with
        respect to beta and to the entries of Lam (u moving with the parameters).

    Notes
    -----
    With F_g = h_g(u*) + log det H_g(u*), the envelope theorem removes du*/dphi
    from h, but log det H depends on u* through the weights, so
    dF = d_explicit h + tr(H^-1 dH)|_u + e' du*, e = Lam' sum_i c_i z_i with
    c_i = w_i mu_i(1-mu_i)(1-2mu_i) z_i' M z_i, M = Lam H^-1 Lam', and du* from
    the implicit function theorem: H du = Lam' s dLam... (see the solver docs).
    """
    G = gptr.shape[0] - 1
    q = zcols.shape[0]
    p = X.shape[1]
    for g in prange(G):
        A = np.empty((q, q))
        s = np.empty(q)
        H = np.empty((q, q))
        L = np.zeros((q, q))
        z = np.empty(q)
        bvec = np.empty(q)
        step = np.empty(q)
        rhs = np.empty(q)
        uold = np.zeros(q)
        ug = u[g]
        start = gptr[g]
        stop = gptr[g + 1]
        h, ld, it = _group_mode(xb, X, zcols, y, w, perm, start, stop, Lam, ug, tol, maxit,
                                A, s, H, L, z, bvec, step, rhs, uold)
        h_out[g] = h
        ld_out[g] = ld
        it_out[g] = it
        if not want_grad:
            continue
        # M = Lam H^-1 Lam'
        Hinv = np.empty((q, q))
        e_k = np.empty(q)
        col = np.empty(q)
        for c in range(q):
            for a in range(q):
                e_k[a] = 1.0 if a == c else 0.0
            _chol_solve(L, e_k, col)
            for a in range(q):
                Hinv[a, c] = col[a]
        LH = np.empty((q, q))  # Lam H^-1
        for a in range(q):
            for c in range(q):
                t = 0.0
                for k in range(q):
                    t += Lam[a, k] * Hinv[k, c]
                LH[a, c] = t
        M = np.empty((q, q))
        for a in range(q):
            for c in range(q):
                t = 0.0
                for k in range(q):
                    t += LH[a, k] * Lam[c, k]
                M[a, c] = t
        for a in range(q):
            t = 0.0
            for c in range(q):
                t += Lam[a, c] * ug[c]
            bvec[a] = t
        cz = np.zeros(q)
        cx = np.zeros(p)
        wrx = np.zeros(p)
        B = np.zeros((q, p))
        for i in range(start, stop):
            r = perm[i]
            _load_z(X, r, zcols, z)
            eta = xb[r]
            for a in range(q):
                eta += z[a] * bvec[a]
            mu, d = _row_eval(eta, y[r], w[r])
            v = w[r] * mu * (1.0 - mu)
            zmz = 0.0
            for a in range(q):
                t = 0.0
                for c in range(q):
                    t += M[a, c] * z[c]
                zmz += z[a] * t
            ci = v * (1.0 - 2.0 * mu) * zmz
            res = w[r] * (y[r] - mu)
            for a in range(q):
                cz[a] += ci * z[a]
            for j in range(p):
                xj = X[r, j]
                cx[j] += ci * xj
                wrx[j] += res * xj
                for a in range(q):
                    B[a, j] += v * z[a] * xj
        # k = H^-1 Lam' cz ; lk = Lam k ; alk = A Lam k
        for a in range(q):
            t = 0.0
            for c in range(q):
                t += Lam[c, a] * cz[c]
            rhs[a] = t
        kvec = np.empty(q)
        _chol_solve(L, rhs, kvec)
        lk = np.empty(q)
        for a in range(q):
            t = 0.0
            for c in range(q):
                t += Lam[a, c] * kvec[c]
            lk[a] = t
        alk = np.empty(q)
        for a in range(q):
            t = 0.0
            for c in range(q):
                t += A[a, c] * lk[c]
            alk[a] = t
        for j in range(p):
            t = 0.0
            for a in range(q):
                t += B[a, j] * lk[a]
            gbeta_out[g, j] = -2.0 * wrx[j] + cx[j] - t
        # dF/dLam = -2 s u' + 2 A Lam H^-1 + cz u' + s k' - (A Lam k) u'
        for a in range(q):
            for c in range(q):
                t = 0.0
                for k in range(q):
                    t += A[a, k] * LH[k, c]
                glam_out[g, a, c] = (2.0 * t + (cz[a] - 2.0 * s[a] - alk[a]) * ug[c]
                                     + s[a] * kvec[c])


@njit(cache=True, parallel=True)
def agq_single(xb, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out):
    """Adaptive Gauss-Hermite deviance per group for one scalar random effect (lme4's nAGQ > 1).

    ``u`` must hold the conditional modes; ``nodes``/``weights`` integrate against
    the standard normal density. Around the mode u0 with scale sd = 1 / sqrt(H_g)
    the group's -2 log marginal likelihood is
    ``h0 + log H_g - 2 log sum_k w_k exp(-(h(u0 + z_k sd) - h0) / 2 + z_k^2 / 2)``.
    """
    G = gptr.shape[0] - 1
    K = nodes.shape[0]
    for g in prange(G):
        z = np.empty(1)
        A = np.empty((1, 1))
        s = np.empty(1)
        bvec = np.empty(1)
        start = gptr[g]
        stop = gptr[g + 1]
        u0 = u[g, 0]
        bvec[0] = lam * u0
        h0 = _group_pass(xb, X, zcols, y, w, perm, start, stop, bvec, z, A, s) + u0 * u0
        Hg = lam * lam * A[0, 0] + 1.0
        sd = 1.0 / np.sqrt(Hg)
        mult = 0.0
        for k in range(K):
            zk = nodes[k]
            if zk == 0.0:
                mult += weights[k]
                continue
            uk = u0 + zk * sd
            bvec[0] = lam * uk
            hk = _group_dev(xb, X, zcols, y, w, perm, start, stop, bvec, z) + uk * uk
            mult += weights[k] * np.exp(-0.5 * (hk - h0) + 0.5 * zk * zk)
        out[g] = h0 + np.log(Hg) - 2.0 * np.log(mult)


@njit(cache=True, parallel=True)
def joint_stats(xb, X, zcols, y, w, perm, gptr, chunks, Lam, u,
                A_out, B_out, s_out, h_out, C_out, xr_out):
    """Blocks of the joint (u, beta) penalized IRLS system, one grouping factor.

    Per group: A_g = sum v z z', B_g = sum v z x', s_g = sum w (y - mu) z and
    the deviance sum h_g; per chunk of groups (so threads never share an
    accumulator): C = sum v x x' and xr = sum w (y - mu) x.
    """
    q = zcols.shape[0]
    p = X.shape[1]
    nchunk = chunks.shape[0] - 1
    for c in prange(nchunk):
        z = np.empty(q)
        bvec = np.empty(q)
        C = C_out[c]
        xr = xr_out[c]
        for j in range(p):
            xr[j] = 0.0
            for k in range(p):
                C[j, k] = 0.0
        for g in range(chunks[c], chunks[c + 1]):
            for a in range(q):
                t = 0.0
                for k in range(q):
                    t += Lam[a, k] * u[g, k]
                bvec[a] = t
            A = A_out[g]
            B = B_out[g]
            s = s_out[g]
            for a in range(q):
                s[a] = 0.0
                for k in range(q):
                    A[a, k] = 0.0
                for j in range(p):
                    B[a, j] = 0.0
            h = 0.0
            for i in range(gptr[g], gptr[g + 1]):
                r = perm[i]
                _load_z(X, r, zcols, z)
                eta = xb[r]
                for a in range(q):
                    eta += z[a] * bvec[a]
                mu, d = _row_eval(eta, y[r], w[r])
                h += d
                v = w[r] * mu * (1.0 - mu)
                res = w[r] * (y[r] - mu)
                for a in range(q):
                    s[a] += res * z[a]
                    for k in range(a + 1):
                        A[a, k] += v * z[a] * z[k]
                for j in range(p):
                    xj = X[r, j]
                    vx = v * xj
                    xr[j] += res * xj
                    for a in range(q):
                        B[a, j] += vx * z[a]
                    for k in range(j + 1):
                        C[j, k] += vx * X[r, k]
            for a in range(q):
                for k in range(a):
                    A[k, a] = A[a, k]
            h_out[g] = h
        for j in range(p):
            for k in range(j):
                C[k, j] = C[j, k]


@njit(cache=True, parallel=True)
def linear_predictor(X, beta, out):
    """out = X beta, parallel over rows (used at every objective evaluation)."""
    n, p = X.shape
    for i in prange(n):
        t = 0.0
        for j in range(p):
            t += X[i, j] * beta[j]
        out[i] = t


@njit(cache=True, parallel=True)
def add_random_part(X, zcols, codes, blup, out):
    """out += z_i' b_{codes_i} for rows with a known level (code >= 0); unseen levels add 0."""
    n = out.shape[0]
    q = zcols.shape[0]
    for i in prange(n):
        g = codes[i]
        if g < 0:
            continue
        t = 0.0
        for a in range(q):
            c = zcols[a]
            t += (1.0 if c < 0 else X[i, c]) * blup[g, a]
        out[i] += t
