"""numba kernels for the GLMMs with a canonical link (binomial-logit, Poisson-log).

All kernels work on rows bucketed by group through a CSR-like pointer:
``perm[gptr[g]:gptr[g + 1]]`` are the row indices of group ``g`` (computed once
with a stable argsort of the codes), so X is never copied or reordered; an
empty ``perm`` means the rows are already sorted by group and are read in place,
an empty ``w`` means unit weights (one n-vector less to stream per pass). The
random-effects covariates of a row are ``z_a = 1`` when ``zcols[a] < 0``
(random intercept) else ``X[row, zcols[a]]`` (random slope), so no Z matrix is
ever built.

Notation (lme4's): b_g = Lam u_g, eta = offset + X beta + z' Lam u_g, mu = g^-1(eta)
(``fam`` selects the family, see :func:`_row_eval`; an empty ``off`` means no offset),
weights w; the penalized deviance of group g is
``h_g(u) = sum_i w_i d_i + u'u`` with d_i the deviance term of the row, and
``H_g = Lam' A_g Lam + I`` with ``A_g = sum_i w_i var(mu_i) z_i z_i'``
is half its Hessian (exactly, the link being canonical). The Laplace
deviance is ``sum_g h_g(u_g*) + log det H_g(u_g*)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._jit import prange_only, run_in_threads

# error_model="numpy": a division by zero gives inf/nan (which the solvers treat as a failed
# evaluation and step back from) instead of raising inside a parallel region. A Poisson mean
# can overflow for wild trial points.


@njit(cache=True, inline="always", error_model="numpy")
def _row_eval(eta, y, w, fam):
    """mu, the weighted deviance term, the variance and its derivative in eta of one row.

    ``fam`` is the family's kernel id (:mod:`skmixed._families`): 0 binomial-logit, 1 Poisson-log;
    both canonical, so the working weight is ``w var`` and its derivative in eta ``w dvar``.
    The deviance term is ``-2 w (y eta - b(eta))``, the log-likelihood without its constant.

    Binomial: one exp and one log of ``1 + exp(-|eta|)``, so nothing overflows, and no
    data-dependent branch (eta's sign is a coin flip: a branch would mispredict
    half the time). log1p would also be exact for |eta| > 37, but costs three
    times as much and changes the deviance by less than 1e-16 per row.
    ``d = 2 w (log(1 + exp(eta)) - y eta)``. (The branch on ``fam`` is the same for every row.)
    """
    if fam == 1:
        mu = np.exp(eta)
        return mu, 2.0 * w * (mu - y * eta), mu, mu
    e = np.exp(-abs(eta))
    inv = 1.0 / (1.0 + e)
    mu = inv if eta >= 0.0 else e * inv
    sp_pos = max(eta, 0.0) + np.log(1.0 + e)  # log(1 + exp(eta))
    d = 2.0 * w * (sp_pos - y * eta)
    var = mu * (1.0 - mu)
    return mu, d, var, var * (1.0 - 2.0 * mu)


@njit(cache=True, inline="always", error_model="numpy")
def _row(perm, i):
    # an empty perm means the rows are already sorted by group: read them in place
    return i if perm.shape[0] == 0 else perm[i]


@njit(cache=True, inline="always", error_model="numpy")
def _wt(w, r):
    # an empty weight vector means unit weights (saves reading n doubles per pass)
    return 1.0 if w.shape[0] == 0 else w[r]


@njit(cache=True, inline="always", error_model="numpy")
def _offv(off, r):
    # an empty offset vector means no offset
    return 0.0 if off.shape[0] == 0 else off[r]


@njit(cache=True, inline="always", error_model="numpy")
def _xbeta(X, r, beta):
    # the fixed part of eta is recomputed in every pass: X's row is read anyway,
    # and it saves writing and re-reading an n-vector
    t = 0.0
    for j in range(beta.shape[0]):
        t += X[r, j] * beta[j]
    return t


@njit(cache=True, inline="always", error_model="numpy")
def _load_z(X, r, zcols, z):
    for a in range(zcols.shape[0]):
        c = zcols[a]
        z[a] = 1.0 if c < 0 else X[r, c]


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
def _group_pass(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s):
    """One pass over a group's rows at b = Lam u: fills A, s; returns sum of w d."""
    q = zcols.shape[0]
    for a in range(q):
        s[a] = 0.0
        for c in range(q):
            A[a, c] = 0.0
    h = 0.0
    for i in range(start, stop):
        r = _row(perm, i)
        _load_z(X, r, zcols, z)
        eta = _xbeta(X, r, beta) + _offv(off, r)
        for a in range(q):
            eta += z[a] * bvec[a]
        wr = _wt(w, r)
        mu, d, vr, dv = _row_eval(eta, y[r], wr, fam)
        h += d
        v = wr * vr
        res = wr * (y[r] - mu)
        for a in range(q):
            s[a] += res * z[a]
            za = v * z[a]
            for c in range(a + 1):
                A[a, c] += za * z[c]
    for a in range(q):
        for c in range(a):
            A[c, a] = A[a, c]
    return h


@njit(cache=True, error_model="numpy")
def _group_dev(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z):
    """Sum of w d over a group's rows at b (no derivatives)."""
    q = zcols.shape[0]
    h = 0.0
    for i in range(start, stop):
        r = _row(perm, i)
        _load_z(X, r, zcols, z)
        eta = _xbeta(X, r, beta) + _offv(off, r)
        for a in range(q):
            eta += z[a] * bvec[a]
        wr = _wt(w, r)
        mu, d, vr, dv = _row_eval(eta, y[r], wr, fam)
        h += d
    return h


@njit(cache=True, error_model="numpy")
def _group_pass_full(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, B, wrx, Tx, Tz, Cg):
    """Like :func:`_group_pass`, also accumulating what the Laplace gradient needs.

    B = sum v z x', wrx = sum w (y - mu) x, and the third-derivative moments
    Tx[a, b, j] = sum v' z_a z_b x_j, Tz[a, b, c] = sum v' z_a z_b z_c
    (v' = w mu (1 - mu)(1 - 2 mu), the derivative of the working weight), so the
    gradient needs no second pass over the rows.
    """
    q = zcols.shape[0]
    p = X.shape[1]
    for a in range(q):
        s[a] = 0.0
        for c in range(q):
            A[a, c] = 0.0
            for k in range(q):
                Tz[a, c, k] = 0.0
            for j in range(p):
                Tx[a, c, j] = 0.0
        for j in range(p):
            B[a, j] = 0.0
    for j in range(p):
        wrx[j] = 0.0
        for k in range(p):
            Cg[j, k] = 0.0
    h = 0.0
    for i in range(start, stop):
        r = _row(perm, i)
        _load_z(X, r, zcols, z)
        eta = _xbeta(X, r, beta) + _offv(off, r)
        for a in range(q):
            eta += z[a] * bvec[a]
        wr = _wt(w, r)
        mu, d, vr, dv = _row_eval(eta, y[r], wr, fam)
        h += d
        v = wr * vr
        v1 = wr * dv
        res = wr * (y[r] - mu)
        for j in range(p):
            xj = X[r, j]
            wrx[j] += res * xj
            vx = v * xj
            for k in range(j + 1):
                Cg[j, k] += vx * X[r, k]
        for a in range(q):
            s[a] += res * z[a]
            za = v * z[a]
            for j in range(p):
                B[a, j] += za * X[r, j]
            for c in range(a + 1):
                A[a, c] += za * z[c]
                t = v1 * z[a] * z[c]
                for j in range(p):
                    Tx[a, c, j] += t * X[r, j]
                for k in range(c + 1):
                    Tz[a, c, k] += t * z[k]
    for j in range(p):
        for k in range(j):
            Cg[k, j] = Cg[j, k]
    for a in range(q):
        for c in range(a + 1):
            A[c, a] = A[a, c]
            for j in range(p):
                Tx[c, a, j] = Tx[a, c, j]
            for k in range(c + 1):
                t = Tz[a, c, k]
                Tz[a, k, c] = t
                Tz[c, a, k] = t
                Tz[c, k, a] = t
                Tz[k, a, c] = t
                Tz[k, c, a] = t
    return h


@njit(cache=True, error_model="numpy")
def _group_pass_q1(beta, X, zc, y, w, fam, off, perm, start, stop, b, A, s, full, B, wrx, Tx, Tz, Cg):
    """:func:`_group_pass` / :func:`_group_pass_full` for one random-effect column.

    The common case (random intercept, or one random slope) with scalar
    accumulators the compiler keeps in registers: about twice as fast per row.
    """
    p = X.shape[1]
    h = 0.0
    a_ = 0.0
    s_ = 0.0
    t3 = 0.0
    for j in range(p):
        wrx[j] = 0.0
        B[0, j] = 0.0
        Tx[0, 0, j] = 0.0
        for k in range(p):
            Cg[j, k] = 0.0
    unit = w.shape[0] == 0
    for i in range(start, stop):
        r = _row(perm, i)
        zi = 1.0 if zc < 0 else X[r, zc]
        eta = _xbeta(X, r, beta) + _offv(off, r) + zi * b
        wr = 1.0 if unit else w[r]
        yr = y[r]
        mu, d, vr, dv = _row_eval(eta, yr, wr, fam)
        h += d
        v = wr * vr
        res = wr * (yr - mu)
        s_ += res * zi
        vz = v * zi
        a_ += vz * zi
        if full:
            v1z2 = wr * dv * zi * zi
            t3 += v1z2 * zi
            for j in range(p):
                xj = X[r, j]
                wrx[j] += res * xj
                B[0, j] += vz * xj
                Tx[0, 0, j] += v1z2 * xj
                vx = v * xj
                for k in range(j + 1):
                    Cg[j, k] += vx * X[r, k]
    if full:
        for j in range(p):
            for k in range(j):
                Cg[k, j] = Cg[j, k]
    A[0, 0] = a_
    s[0] = s_
    Tz[0, 0, 0] = t3
    return h


def _zsel(zcols):
    """What the group kernels specialise on: the one random-effect column's index (q = 1), else ``zcols``.

    Its type (integer or array) picks the per-group pass at compile time (:func:`_mode_pass`),
    so a first fit compiles the q = 1 pass or the general ones, never all three.
    """
    return int(zcols[0]) if zcols.shape[0] == 1 else zcols


def _mode_pass(zsel, beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, full, B, wrx, Tx, Tz, Cg):
    """One pass over a group's rows for :func:`_group_mode` (chosen by the type of ``zsel``, see :func:`_zsel`)."""
    raise NotImplementedError  # numba only: resolved by the overload below


@overload(_mode_pass)
def _mode_pass_impl(zsel, beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, full, B, wrx, Tx, Tz,
                    Cg):
    if isinstance(zsel, types.Integer):
        def one(zsel, beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, full, B, wrx, Tx, Tz, Cg):
            return _group_pass_q1(beta, X, zsel, y, w, fam, off, perm, start, stop, bvec[0], A, s, full, B, wrx,
                                  Tx, Tz, Cg)
        return one

    def general(zsel, beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, full, B, wrx, Tx, Tz, Cg):
        if full:
            return _group_pass_full(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, B, wrx, Tx, Tz,
                                    Cg)
        return _group_pass(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s)
    return general


@njit(cache=True, error_model="numpy")
def _group_mode(zsel, beta, X, zcols, y, w, fam, off, perm, start, stop, Lam, ug, tol, maxit, A, s, H, L, z, bvec, step,
                rhs, uold, full, B, wrx, Tx, Tz, Cg):
    """Penalized IRLS (Newton with step halving) for one group's u; A, s, H, L end at the mode.

    Returns (h, logdet H, iterations). Newton on h_g is exact IRLS here because
    the logit link is canonical, so it converges quadratically from a warm start.
    The final tiny step (below ``tol``) is not applied, so every accumulated
    quantity belongs to the returned u.
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
        h = _mode_pass(zsel, beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s, full, B, wrx, Tx, Tz,
                       Cg)
        for a in range(q):
            h += ug[a] * ug[a]
        if not (h <= hprev + 1e-13 * abs(hprev)) and n_half < 40:  # (a nan h, e.g. exp overflow, too)
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


def laplace_single(beta, X, zcols, y, w, perm, gptr, Lam, u, tol, maxit, want_grad,
                   h_out, ld_out, it_out, gbeta_out, glam_out, t_rows, t_cols, jac_out, fam, off):
    """Conditional modes, Laplace deviance pieces and their gradient, one grouping factor.

    Runs :func:`_laplace_groups` over the groups in parallel threads; see there.
    """
    run_in_threads(_laplace_groups, gptr.shape[0] - 1, _zsel(zcols), beta, X, zcols, y, w, perm, gptr, Lam, u, tol,
                   maxit, want_grad, h_out, ld_out, it_out, gbeta_out, glam_out, t_rows, t_cols, jac_out, fam, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _laplace_groups(g0, g1, zsel, beta, X, zcols, y, w, perm, gptr, Lam, u, tol, maxit, want_grad,
                    h_out, ld_out, it_out, gbeta_out, glam_out, t_rows, t_cols, jac_out, fam, off):
    """Conditional modes, Laplace deviance pieces and their gradient, one grouping factor.

    Parameters
    ----------
    beta : (p,) fixed effects.
    u : (G, q) spherical random effects; warm start in, conditional modes out.
    want_grad : also fill ``gbeta_out`` (G, p) and ``glam_out`` (G, q, q): each
        group's contribution to the total derivative of the Laplace deviance with
        respect to beta and to the entries of Lam (u* moving with the parameters).

    Notes
    -----
    With F_g = h_g(u*) + log det H_g(u*), the envelope theorem removes du*/dphi
    from h, but log det H depends on u* through the working weights:

    dF = -2 sum w r (x'dbeta + z'dLam u) + tr(H^-1 dH)|_u + e'du*,
    e = Lam' sum_i c_i z_i,  c_i = v'_i z_i' M z_i,  M = Lam H^-1 Lam',
    H du* = dLam' s - Lam' B dbeta - Lam' A dLam u   (implicit function theorem).

    With k = H^-1 e this gives per group
    dF/dbeta = -2 sum w r x + sum c x - B' Lam k and
    dF/dLam = 2 A Lam H^-1 + (sum c z - 2 s - A Lam k) u' + s k'.
    """
    q = zcols.shape[0]
    p = X.shape[1]
    for g in range(g0, g1):
        A = np.empty((q, q))
        s = np.empty(q)
        H = np.empty((q, q))
        L = np.zeros((q, q))
        z = np.empty(q)
        bvec = np.empty(q)
        step = np.empty(q)
        rhs = np.empty(q)
        uold = np.zeros(q)
        B = np.empty((q, p))
        wrx = np.empty(p)
        Tx = np.empty((q, q, p))
        Tz = np.empty((q, q, q))
        Cg = np.empty((p, p))
        ug = u[g]
        h, ld, it = _group_mode(zsel, beta, X, zcols, y, w, fam, off, perm, gptr[g], gptr[g + 1], Lam, ug, tol,
                                maxit, A, s, H, L, z, bvec, step, rhs, uold, want_grad, B, wrx, Tx, Tz, Cg)
        h_out[g] = h
        ld_out[g] = ld
        it_out[g] = it
        if not want_grad:
            continue
        # Hinv = H^-1, LH = Lam H^-1, M = Lam H^-1 Lam'
        Hinv = np.empty((q, q))
        col = np.empty(q)
        for c in range(q):
            for a in range(q):
                rhs[a] = 1.0 if a == c else 0.0
            _chol_solve(L, rhs, col)
            for a in range(q):
                Hinv[a, c] = col[a]
        LH = np.empty((q, q))
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
        # sum_i c_i z_i and sum_i c_i x_i from the moments
        cz = np.zeros(q)
        cx = np.zeros(p)
        for a in range(q):
            for c in range(q):
                mac = M[a, c]
                for k in range(q):
                    cz[k] += mac * Tz[a, c, k]
                for j in range(p):
                    cx[j] += mac * Tx[a, c, j]
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
        for a in range(q):
            for c in range(q):
                t = 0.0
                for k in range(q):
                    t += A[a, k] * LH[k, c]
                glam_out[g, a, c] = (2.0 * t + (cz[a] - 2.0 * s[a] - alk[a]) * ug[c]
                                     + s[a] * kvec[c])
        # du*/d(theta, beta) (implicit function theorem), for first-order warm starts:
        # H du = dLam' s - Lam' B dbeta - Lam' A dLam u
        nt = t_rows.shape[0]
        for j in range(p):
            for a in range(q):
                t = 0.0
                for k in range(q):
                    t += Lam[k, a] * B[k, j]
                rhs[a] = -t
            _chol_solve(L, rhs, col)
            for a in range(q):
                jac_out[g, a, nt + j] = col[a]
        for m in range(nt):
            r = t_rows[m]
            cc = t_cols[m]
            for a in range(q):
                t = 0.0
                for k in range(q):
                    t += Lam[k, a] * A[k, r]
                rhs[a] = (s[r] if a == cc else 0.0) - ug[cc] * t
            _chol_solve(L, rhs, col)
            for a in range(q):
                jac_out[g, a, m] = col[a]


def agq_single(beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out, fam, off):
    """Adaptive Gauss-Hermite deviance per group (:func:`_agq_groups`, groups in parallel threads)."""
    run_in_threads(_agq_groups, gptr.shape[0] - 1, beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out,
                   fam, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _agq_groups(g0, g1, beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out, fam, off):
    """Adaptive Gauss-Hermite deviance per group for one scalar random effect (lme4's nAGQ > 1).

    ``u`` must hold the conditional modes; ``nodes``/``weights`` integrate against
    the standard normal density. Around the mode u0 with scale sd = 1 / sqrt(H_g)
    the group's -2 log marginal likelihood is
    ``h0 + log H_g - 2 log sum_k w_k exp(-(h(u0 + z_k sd) - h0) / 2 + z_k^2 / 2)``.
    """
    K = nodes.shape[0]
    for g in range(g0, g1):
        z = np.empty(1)
        A = np.empty((1, 1))
        s = np.empty(1)
        bvec = np.empty(1)
        start = gptr[g]
        stop = gptr[g + 1]
        u0 = u[g, 0]
        bvec[0] = lam * u0
        h0 = _group_pass(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z, A, s) + u0 * u0
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
            hk = _group_dev(beta, X, zcols, y, w, fam, off, perm, start, stop, bvec, z) + uk * uk
            mult += weights[k] * np.exp(-0.5 * (hk - h0) + 0.5 * zk * zk)
        out[g] = h0 + np.log(Hg) - 2.0 * np.log(mult)


def agq_grad_single(beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out, gout, fam, off):
    """:func:`agq_single` and its gradient in ``(lam, beta)`` per group (:func:`_agq_grad_groups`)."""
    run_in_threads(_agq_grad_groups, gptr.shape[0] - 1, beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights,
                   out, gout, fam, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _agq_grad_groups(g0, g1, beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out, gout, fam, off):
    """Adaptive Gauss-Hermite deviance per group and its exact gradient (scalar random effect).

    With ``h(u) = sum_i d_i + u^2`` (in eta: ``d1 = -2 w (y - mu)``, ``d2 = 2 w var``,
    ``d3 = 2 w dvar``), the mode ``u0`` (``h_u(u0) = 0``), ``H = lam^2 A + 1`` with
    ``A = sum w var z^2`` (``h_uu = 2 H``), ``sd = H^-1/2`` and nodes ``u_k = u0 + sd z_k``,
    the group's deviance is ``F = -2 log sd - 2 log sum_k w_k exp(-h(u_k) / 2 + z_k^2 / 2)``.
    The nodes move with the parameters ``phi``, so

    ``dF/dphi = -2 dlog(sd)/dphi + sum_k pi_k [h_phi(u_k) + h_u(u_k) (du0/dphi + z_k dsd/dphi)]``

    with ``pi_k`` the nodes' normalised terms, ``du0/dphi = -h_uphi(u0) / h_uu(u0)`` (implicit
    function theorem) and ``dsd/dphi`` from ``dA/dphi = sum w dvar z^2 deta/dphi`` (eta moving
    with ``u0`` too). ``gout[g, 0]`` is the derivative in ``lam``, ``gout[g, 1:]`` in ``beta``:
    one pass at the mode and one per node, as for the deviance alone.
    """
    K = nodes.shape[0]
    p = X.shape[1]
    np1 = p + 1
    z = np.empty(1)
    Bx = np.empty(p)
    T3x = np.empty(p)
    rx0 = np.empty(p)
    rxk = np.empty(p)
    du = np.empty(np1)
    dlsd = np.empty(np1)
    num = np.empty(np1)
    for g in range(g0, g1):
        start = gptr[g]
        stop = gptr[g + 1]
        u0 = u[g, 0]
        b0 = lam * u0
        h0 = 0.0
        A0 = 0.0
        s0 = 0.0
        T3z = 0.0
        for j in range(p):
            Bx[j] = 0.0
            T3x[j] = 0.0
            rx0[j] = 0.0
        for i in range(start, stop):
            r = _row(perm, i)
            _load_z(X, r, zcols, z)
            zi = z[0]
            eta = _xbeta(X, r, beta) + _offv(off, r) + zi * b0
            wr = _wt(w, r)
            mu, d, vr, dv = _row_eval(eta, y[r], wr, fam)
            h0 += d
            v = wr * vr
            res = wr * (y[r] - mu)
            wdv = wr * dv
            A0 += v * zi * zi
            s0 += res * zi
            T3z += wdv * zi * zi * zi
            for j in range(p):
                xj = X[r, j]
                Bx[j] += v * zi * xj
                T3x[j] += wdv * zi * zi * xj
                rx0[j] += res * xj
        h0 += u0 * u0
        Hg = lam * lam * A0 + 1.0
        sd = 1.0 / np.sqrt(Hg)
        # du0/dphi (phi = lam, beta) and dlog(sd)/dphi = -dH/dphi / (2 H)
        du[0] = (s0 - lam * u0 * A0) / Hg
        dA = T3z * (u0 + lam * du[0])
        dlsd[0] = -0.5 * (2.0 * lam * A0 + lam * lam * dA) / Hg
        for j in range(p):
            du[1 + j] = -lam * Bx[j] / Hg
            dA = T3x[j] + lam * du[1 + j] * T3z
            dlsd[1 + j] = -0.5 * lam * lam * dA / Hg
        mult = 0.0
        for c in range(np1):
            num[c] = 0.0
        for k in range(K):
            zk = nodes[k]
            if zk == 0.0:
                hk = h0
                sk = s0
                uk = u0
                for j in range(p):
                    rxk[j] = rx0[j]
            else:
                uk = u0 + zk * sd
                bk = lam * uk
                hk = 0.0
                sk = 0.0
                for j in range(p):
                    rxk[j] = 0.0
                for i in range(start, stop):
                    r = _row(perm, i)
                    _load_z(X, r, zcols, z)
                    zi = z[0]
                    eta = _xbeta(X, r, beta) + _offv(off, r) + zi * bk
                    wr = _wt(w, r)
                    mu, d, vr, dv = _row_eval(eta, y[r], wr, fam)
                    hk += d
                    res = wr * (y[r] - mu)
                    sk += res * zi
                    for j in range(p):
                        rxk[j] += res * X[r, j]
                hk += uk * uk
            e = weights[k] * np.exp(-0.5 * (hk - h0) + 0.5 * zk * zk)
            mult += e
            hu = -2.0 * lam * sk + 2.0 * uk  # h_u(u_k)
            # h_lam(u_k) = -2 u_k sum res z ; h_beta(u_k) = -2 sum res x
            num[0] += e * (-2.0 * uk * sk + hu * (du[0] + zk * sd * dlsd[0]))
            for j in range(p):
                num[1 + j] += e * (-2.0 * rxk[j] + hu * (du[1 + j] + zk * sd * dlsd[1 + j]))
        out[g] = h0 + np.log(Hg) - 2.0 * np.log(mult)
        for c in range(np1):
            gout[g, c] = -2.0 * dlsd[c] + num[c] / mult


def joint_stats(beta, X, zcols, y, w, perm, gptr, chunks, Lam, u, solve_u, tol,
                A_out, B_out, s_out, h_out, C_out, xr_out, fam, off):
    """Blocks of the joint (u, beta) PIRLS system (:func:`_joint_stats_chunks`, chunks in parallel threads)."""
    run_in_threads(_joint_stats_chunks, chunks.shape[0] - 1, _zsel(zcols), beta, X, zcols, y, w, perm, gptr, chunks,
                   Lam, u, solve_u, tol, A_out, B_out, s_out, h_out, C_out, xr_out, fam, off)


@njit(cache=True, nogil=True, error_model="numpy")
def _joint_stats_chunks(c0, c1, zsel, beta, X, zcols, y, w, perm, gptr, chunks, Lam, u, solve_u, tol,
                        A_out, B_out, s_out, h_out, C_out, xr_out, fam, off):
    """Blocks of the joint (u, beta) penalized IRLS system, one grouping factor.

    Per group: A_g = sum v z z', B_g = sum v z x', s_g = sum w (y - mu) z and
    the deviance sum h_g; per chunk of groups (so threads never share an
    accumulator): C = sum v x x' and xr = sum w (y - mu) x.

    With ``solve_u`` each group's u is first moved to its conditional mode
    given beta (Newton iterations on the group's rows, which are then in cache),
    so one pass over memory gives the blocks at the profiled point and the
    beta step is an exact Newton step of the profiled penalized deviance.
    Without, the blocks are those at the given u: the same kernel stopped after
    its first pass (``maxit`` 1: the Newton step is computed, never taken), so
    there is no second row loop to compile.
    """
    q = zcols.shape[0]
    p = X.shape[1]
    # typed like laplace_single's arguments (literal 50 / True would compile a second _group_mode)
    maxit = np.int64(50) if solve_u else np.int64(1)
    full = np.bool_(True)
    for c in range(c0, c1):
        z = np.empty(q)
        bvec = np.empty(q)
        H = np.empty((q, q))
        L = np.zeros((q, q))
        step = np.empty(q)
        rhs = np.empty(q)
        uold = np.zeros(q)
        wrx = np.empty(p)
        Tx = np.empty((q, q, p))
        Tz = np.empty((q, q, q))
        Cg = np.empty((p, p))
        C = C_out[c]
        xr = xr_out[c]
        for j in range(p):
            xr[j] = 0.0
            for k in range(p):
                C[j, k] = 0.0
        for g in range(chunks[c], chunks[c + 1]):
            # the last sweep (at the returned u) also accumulated B, X'WX and X'W(y - mu):
            # no separate pass needed
            hg, _, _ = _group_mode(zsel, beta, X, zcols, y, w, fam, off, perm, gptr[g], gptr[g + 1], Lam, u[g],
                                   tol, maxit, A_out[g], s_out[g], H, L, z, bvec, step, rhs, uold, full,
                                   B_out[g], wrx, Tx, Tz, Cg)
            uu = 0.0
            for a in range(q):
                uu += u[g, a] * u[g, a]
            h_out[g] = hg - uu
            for j in range(p):
                xr[j] += wrx[j]
                for k in range(p):
                    C[j, k] += Cg[j, k]


@njit(cache=True, parallel=prange_only(), error_model="numpy")
def linear_predictor(X, beta, out):
    """out = X beta, parallel over rows (used at every objective evaluation)."""
    n, p = X.shape
    for i in prange(n):
        t = 0.0
        for j in range(p):
            t += X[i, j] * beta[j]
        out[i] = t


@njit(cache=True, parallel=prange_only(), error_model="numpy")
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
