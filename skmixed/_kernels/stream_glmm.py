"""numba kernels of the online logistic GLMM (:mod:`skmixed.streaming_logistic`).

Model: ``P(y_i = 1) = logistic(x_i'beta + z_i'b_g)``, ``b_g = Lam u_g``, ``u_g ~ N(0, I)``
(``Phi = Lam Lam'``).  A group's rows enter its *buffer* (at most ``R`` rows, kept as they
are) and, when the buffer is full, are *folded* into the group's quadratic statistics: each
row's log-likelihood ``l_i(eta) = y eta - log(1 + e^eta)`` is replaced by its second-order
Taylor expansion around ``eta0_i = x_i'beta + z_i'b_g`` at the group's current conditional
mode (the IRLS working quantities ``w = mu0 (1 - mu0)``, ``s = y - mu0``)::

    l_i(eta) ~ k_i + (s + w eta0) eta - w eta^2 / 2,   k_i = l_i(eta0) - s eta0 - w eta0^2 / 2

summed per group as ``kf = sum k_i``, ``af = sum (s + w eta0) x``, ``cf = sum (s + w eta0) z``,
``Af = sum w x x'``, ``Df = sum w x z'``, ``Bf = sum w z z'``.  The group's approximate
log-likelihood is then ``Q_g(beta, b) + sum_{buffer} l_i`` with
``Q_g = kf + af'beta + cf'b - (beta'Af beta + 2 beta'Df b + b'Bf b) / 2`` -- exact for the
buffered rows, second-order accurate (in the distance of the fit from the linearisation
point, third derivative of the Bernoulli log-likelihood ``<= 0.1``) for the folded ones.

For a random intercept alone (``q = 1``, ``z = 1``: every row of a group moves with the same
``b``) the fold also keeps the higher-order terms in ``b``: ``sum_i l_i^(k)(eta0_i) / k!`` for
``k = 3 .. 6``, re-expanded around the group's first fold point ``bref`` into the polynomial
``poly[g, j] (b - bref)^j`` (``j = 0 .. 6``; a polynomial's re-expansion is exact), so the
folded rows are exact in ``b`` to sixth order (the series of ``log(1 + e^eta)`` converges for
``|b - b0| < pi``); only the cross terms with the change of ``beta`` since the fold stay
second order.  Without these terms the quadratic rows bias the fixed effects by about
``sum_i l3_i x_i (b^ - b0)^2 / 2`` (``l3`` the third derivative; measured: 0.26 SE on 20,000
rows of 50 groups).

Rows may carry frequency weights (``wbuf``, 1 by default): a row of weight ``w`` enters its
buffer's log-likelihood as ``w l_i`` and every folded sum (all linear in the row's terms) with
the factor ``w``, so a weight of 2 counts the row twice.

The Laplace deviance of all rows seen (:func:`laplace_deviance`) is glmer's (nAGQ = 1)
``sum_g [-2 h_g(u_g^) + log|H_g|]`` with ``h_g(u) = Q_g + sum_buffer l_i - |u|^2 / 2`` and
``H_g = Lam'(Bf + sum_buffer w z z')Lam + I`` at the conditional mode ``u_g^`` (Newton with
step halving).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from .glmm import _chol as chol_small, _chol_solve as chol_solve_small
from .sema import decay_factor


@njit(cache=True)
def _loglik_row(y, eta):
    """``y eta - log(1 + e^eta)`` without overflow."""
    if eta > 0.0:
        return y * eta - eta - np.log1p(np.exp(-eta))
    return y * eta - np.log1p(np.exp(eta))


@njit(cache=True)
def _mu(eta):
    if eta >= 0.0:
        return 1.0 / (1.0 + np.exp(-eta))
    e = np.exp(eta)
    return e / (1.0 + e)


#: highest order of the random-intercept series kept by a fold
POLY_DEGREE = 6


@njit(cache=True)
def _derivs(mu, d):
    """``d[k] = l^(k)(eta) / k!`` for ``k = 3 .. 6`` (``l`` the Bernoulli log-likelihood, ``mu = logistic(eta)``).

    ``l^(k) = -mu (1 - mu) P_k(mu)`` with ``P_3 = 1 - 2 mu``, ``P_4 = 1 - 6 mu + 6 mu^2``,
    ``P_5 = 1 - 14 mu + 36 mu^2 - 24 mu^3``, ``P_6 = 1 - 30 mu + 150 mu^2 - 240 mu^3 + 120 mu^4``.
    """
    w = mu * (1.0 - mu)
    m2 = mu * mu
    m3 = m2 * mu
    d[3] = -w * (1.0 - 2.0 * mu) / 6.0
    d[4] = -w * (1.0 - 6.0 * mu + 6.0 * m2) / 24.0
    d[5] = -w * (1.0 - 14.0 * mu + 36.0 * m2 - 24.0 * m3) / 120.0
    d[6] = -w * (1.0 - 30.0 * mu + 150.0 * m2 - 240.0 * m3 + 120.0 * m3 * mu) / 720.0


#: the series is used within this distance of its centre and continued linearly beyond (it
#: converges within pi; a degree-6 polynomial grows without bound, and a mode search must
#: not run off to where it does: beyond, the quadratic part alone bounds the objective)
POLY_RADIUS = 2.0


@njit(cache=True)
def _poly(c, x):
    """Value, first and second derivative of ``sum_j c[j] x^j`` (linear beyond ``|x| > POLY_RADIUS``)."""
    xc = min(max(x, -POLY_RADIUS), POLY_RADIUS)
    v = 0.0
    d1 = 0.0
    d2 = 0.0
    for j in range(c.shape[0] - 1, -1, -1):
        d2 = d2 * xc + 2.0 * d1
        d1 = d1 * xc + v
        v = v * xc + c[j]
    if xc != x:
        return v + d1 * (x - xc), d1, 0.0
    return v, d1, d2


@njit(cache=True)
def _shift(g, b, beta, bref, xbar):
    """The group's shift of the linear predictor from its series' centre: ``b + xbar'beta - bref``.

    ``xbar`` is the mean design row of the group's first fold: for the intercept and
    group-level covariates (constant within the group) a change of ``beta`` moves every row
    of the group like ``b`` does, so the series must follow ``b + xbar'beta``, not ``b`` (or
    the objective would be unbounded along ``beta_0 + t, b - t``).
    """
    a = b[0] - bref[g]
    for m in range(beta.shape[0]):
        a += xbar[g, m] * beta[m]
    return a


@njit(cache=True)
def _series(g, beta, poly, polyx):
    """The group's series coefficients at ``beta``: ``poly[g, j] + polyx[g, j] . beta``."""
    c = poly[g].copy()
    for j in range(c.shape[0]):
        t = 0.0
        for m in range(beta.shape[0]):
            t += polyx[g, j, m] * beta[m]
        c[j] += t
    return c


@njit(cache=True)
def _chol_solve(H, g, R, out):
    """Cholesky ``H = R R'`` (lower, into ``R``), ``out = H^-1 g``; returns ``log|H|`` (-inf if not SPD).

    The batch GLMM kernels' small Cholesky and solve (:mod:`.glmm`), with this module's
    -inf convention for a matrix that is not positive definite.
    """
    ld = chol_small(H, R)
    if not np.isfinite(ld):
        return -np.inf
    chol_solve_small(R, g, out)
    return ld


@njit(cache=True)
def _group_h(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, b, eta_off, poly, bref, xbar, polyx,
             ws):
    """``h_g(u)`` (the group's approximate log-likelihood plus the prior ``-|u|^2 / 2``).

    ``eta_off[i]`` must hold ``x_i'beta`` for the group's buffered rows; ``b`` is workspace.
    ``ws`` multiplies the log-likelihood (all stored weights; forgetting), not the prior.
    """
    p = beta.shape[0]
    q = Lam.shape[0]
    # b = Lam u (Lam lower triangular)
    for k in range(q):
        t = 0.0
        for m in range(k + 1):
            t += Lam[k, m] * u[m]
        b[k] = t
    h = kf[g]
    for i in range(p):
        h += af[g, i] * beta[i]
        t = 0.0
        for m in range(p):
            t += Af[g, i, m] * beta[m]
        h -= 0.5 * beta[i] * t
        t = 0.0
        for k in range(q):
            t += Df[g, i, k] * b[k]
        h -= beta[i] * t
    for k in range(q):
        h += cf[g, k] * b[k]
        t = 0.0
        for m in range(q):
            t += Bf[g, k, m] * b[m]
        h -= 0.5 * b[k] * t
        h -= 0.5 * u[k] * u[k] / ws  # (ws * h below: the prior is not weighted)
    if q == 1 and poly.shape[1] > 1:
        h += _poly(_series(g, beta, poly, polyx), _shift(g, b, beta, bref, xbar))[0]
    for r in range(nbuf[g]):
        eta = eta_off[r]
        for k in range(q):
            c = zidx[k]
            eta += b[k] * (1.0 if c < 0 else Xbuf[g, r, c])
        h += wbuf[g, r] * _loglik_row(ybuf[g, r], eta)
    return ws * h


@njit(cache=True)
def group_mode(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, max_iter, tol,
               ws):
    """Conditional mode ``u_g^`` (Newton from ``u``, in place, with step halving).

    Returns ``(h_g(u^), log|H_g(u^)|)``; ``log|H|`` is ``nan`` when Newton fails.
    """
    p = beta.shape[0]
    q = Lam.shape[0]
    nb = nbuf[g]
    eta_off = np.empty(max(nb, 1))
    for r in range(nb):
        t = 0.0
        for m in range(p):
            t += Xbuf[g, r, m] * beta[m]
        eta_off[r] = t
    b = np.empty(q)
    z = np.empty(q)
    gb = np.empty(q)  # gradient in b
    M = np.empty((q, q))  # Bf + sum w z z'
    H = np.empty((q, q))
    R = np.empty((q, q))
    grad = np.empty(q)
    step = np.empty(q)
    cand = np.empty(q)
    h = _group_h(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, b, eta_off, poly, bref, xbar, polyx, ws)
    ld = np.nan
    polish = False
    for it in range(max_iter + 2):
        # b = Lam u (from _group_h); gradient and Hessian at u
        for k in range(q):
            t = cf[g, k]
            for m in range(p):
                t -= Df[g, m, k] * beta[m]
            for m in range(q):
                t -= Bf[g, k, m] * b[m]
            gb[k] = t
            for m in range(q):
                M[k, m] = Bf[g, k, m]
        if q == 1 and poly.shape[1] > 1:
            _, d1, d2 = _poly(_series(g, beta, poly, polyx), _shift(g, b, beta, bref, xbar))
            gb[0] += d1
            M[0, 0] -= d2
        for r in range(nb):
            eta = eta_off[r]
            for k in range(q):
                c = zidx[k]
                z[k] = 1.0 if c < 0 else Xbuf[g, r, c]
                eta += b[k] * z[k]
            mu = _mu(eta)
            wr = wbuf[g, r]
            w = wr * mu * (1.0 - mu)
            res = wr * (ybuf[g, r] - mu)
            for k in range(q):
                gb[k] += res * z[k]
                for m in range(q):
                    M[k, m] += w * z[k] * z[m]
        if ws != 1.0:  # the log-likelihood's weight (forgetting); the prior keeps its own
            for k in range(q):
                gb[k] *= ws
                for m in range(q):
                    M[k, m] *= ws
        # grad_u = Lam' gb - u ; H = Lam' M Lam + I
        for k in range(q):
            t = 0.0
            for m in range(k, q):
                t += Lam[m, k] * gb[m]
            grad[k] = t - u[k]
        for k in range(q):
            for l in range(q):
                t = 0.0
                for m in range(k, q):
                    for n in range(l, q):
                        t += Lam[m, k] * M[m, n] * Lam[n, l]
                H[k, l] = t + (1.0 if k == l else 0.0)
        ld = _chol_solve(H, grad, R, step)
        if not np.isfinite(ld):
            return h, np.nan
        dec = 0.0
        for k in range(q):
            dec += grad[k] * step[k]
        if polish or it == max_iter:
            break
        if dec < tol:
            # converged: one more (unchecked, tiny) Newton step, then h and log|H| at its end.
            # h is flat at the mode but log|H| is not: stopping where the decrement first
            # falls below tol would leave an error ~ sqrt(tol) in log|H| that depends on the
            # start, and finite differences of the deviance would pick it up
            for k in range(q):
                u[k] += step[k]
            h = _group_h(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, b, eta_off, poly, bref, xbar, polyx, ws)
            polish = True
            continue
        t = 1.0
        ok = False
        for _ in range(40):
            for k in range(q):
                cand[k] = u[k] + t * step[k]
            hc = _group_h(g, cand, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, b, eta_off, poly, bref, xbar, polyx, ws)
            if hc >= h - 1e-12 * abs(h):
                ok = True
                break
            t *= 0.5
        if not ok:
            _group_h(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, b, eta_off, poly, bref, xbar, polyx, ws)
            break
        for k in range(q):
            u[k] = cand[k]
        h = hc
    return h, ld


@njit(cache=True)
def fold_group(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, gfold, ws):
    """Fold the group's buffered rows into its quadratic statistics at its conditional mode."""
    p = beta.shape[0]
    q = Lam.shape[0]
    group_mode(g, u[g], beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, 50, 1e-12, ws)
    b = np.zeros(q)
    for k in range(q):
        t = 0.0
        for m in range(k + 1):
            t += Lam[k, m] * u[g, m]
        b[k] = t
    z = np.empty(q)
    K = poly.shape[1] - 1
    use_poly = q == 1 and K >= 3
    dk = np.zeros(POLY_DEGREE + 1)
    Dk = np.zeros(POLY_DEGREE + 1)
    Ck = np.zeros((POLY_DEGREE + 1, p))
    if use_poly and gfold[g] == 0:
        sw = 0.0
        for r in range(nbuf[g]):
            sw += wbuf[g, r]
        for m in range(p):
            t = 0.0
            for r in range(nbuf[g]):
                t += wbuf[g, r] * Xbuf[g, r, m]
            xbar[g, m] = t / sw if sw > 0.0 else 0.0
    for r in range(nbuf[g]):
        eta = 0.0
        for m in range(p):
            eta += Xbuf[g, r, m] * beta[m]
        for k in range(q):
            c = zidx[k]
            z[k] = 1.0 if c < 0 else Xbuf[g, r, c]
            eta += b[k] * z[k]
        y = ybuf[g, r]
        wr = wbuf[g, r]  # the row's weight: every term below is linear in it
        mu = _mu(eta)
        w = wr * mu * (1.0 - mu)
        s = wr * (y - mu)
        lin = s + w * eta
        kf[g] += wr * _loglik_row(y, eta) - s * eta - 0.5 * w * eta * eta
        if use_poly:
            _derivs(mu, dk)
            for k in range(3, K + 1):
                Dk[k] += wr * dk[k]
                # first order in the row's own move (x - xbar)'(beta - beta0): k l^(k)/k! (x - xbar)
                for m in range(p):
                    Ck[k, m] += wr * k * dk[k] * (Xbuf[g, r, m] - xbar[g, m])
        for m in range(p):
            xm = Xbuf[g, r, m]
            af[g, m] += lin * xm
            for l in range(p):
                Af[g, m, l] += w * xm * Xbuf[g, r, l]
            for k in range(q):
                Df[g, m, k] += w * xm * z[k]
        for k in range(q):
            cf[g, k] += lin * z[k]
            for l in range(q):
                Bf[g, k, l] += w * z[k] * z[l]
    if use_poly:
        # sum_k Dk (a - a0)^k, a = b + xbar'beta, re-expanded around the first fold's
        # a: (a - aref + d0)^k, d0 = aref - a0
        a0 = b[0]
        for m in range(p):
            a0 += xbar[g, m] * beta[m]
        if gfold[g] == 0:
            bref[g] = a0
        d0 = bref[g] - a0
        for k in range(3, K + 1):
            c = 1.0  # binomial(k, j) d0^(k - j), from j = k down
            for j in range(k, -1, -1):
                poly[g, j] += Dk[k] * c
                c = c * d0 * j / (k - j + 1)
            # Ck . (beta - beta0) (a - a0)^(k-1): the beta0 part is a constant series
            c = 1.0
            for j in range(k - 1, -1, -1):
                cb = 0.0
                for m in range(p):
                    polyx[g, j, m] += Ck[k, m] * c
                    cb += Ck[k, m] * beta[m]
                poly[g, j] -= cb * c
                c = c * d0 * j / (k - 1 - j + 1)
    gfold[g] += 1
    nbuf[g] = 0


@njit(cache=True)
def add_rows(X, y, wts, codes, zidx, beta, Lam, Xbuf, ybuf, wbuf, nbuf, gn, glast, Af, af, Bf, Df, cf, kf, u, poly, bref,
             xbar, polyx, gfold, n0, stop_at_fold, alpha, epoch):
    """Stream rows in: each joins its group's buffer (a full buffer is folded first), then the
    group's conditional mode takes one Newton step (its BLUP ``Lam u_g`` is current for
    predictions).  ``n0`` is the number of rows seen before the batch.

    With ``stop_at_fold`` the kernel returns before the first fold (a fold linearises at the
    current ``beta``, which should then come from a correction): returns the rows consumed.

    Forgetting (``alpha > 0``): row ``t`` is stored with the weight ``w / d(epoch, t)`` and
    the log-likelihood at row ``t`` is weighted by ``d(epoch, t)`` (``d`` = :func:`decay_factor`),
    so row ``i`` counts ``w_i d(i, t)`` -- the sliding window of :class:`StreamingMixed`.
    """
    n = X.shape[0]
    p = X.shape[1]
    R = Xbuf.shape[1]
    for i in range(n):
        g = codes[i]
        ws = decay_factor(epoch, n0 + i + 1, alpha)
        if nbuf[g] == R:
            if stop_at_fold:
                return i
            fold_group(g, u, beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, gfold,
                       ws)
        r = nbuf[g]
        for m in range(p):
            Xbuf[g, r, m] = X[i, m]
        ybuf[g, r] = y[i]
        wbuf[g, r] = (1.0 if wts.shape[0] == 0 else wts[i]) / ws
        nbuf[g] = r + 1
        gn[g] += 1.0
        glast[g] = n0 + i + 1
        group_mode(g, u[g], beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, 1, 0.0, ws)
    return n


@njit(cache=True)
def laplace_deviance(beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, glast, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, u,
                     ws):
    """glmer's Laplace deviance of all rows seen at ``(beta, Lam)``; the modes are left in ``u``.

    Every group's mode is found by Newton from the ``u`` given (the modes of a nearby
    evaluation: two or three steps), iterated until the Newton decrement is below 1e-13, so
    the value does not depend on the start beyond that (finite differences of it are clean).
    ``inf`` when a mode cannot be found.
    """
    G = glast.shape[0]
    q = Lam.shape[0]
    dev = 0.0
    for g in range(G):
        if glast[g] < 0:
            continue
        h, ld = group_mode(g, u[g], beta, Lam, zidx, Xbuf, ybuf, wbuf, nbuf, Af, af, Bf, Df, cf, kf, poly, bref, xbar, polyx, 50, 1e-13, ws)
        if not np.isfinite(ld):
            return np.inf
        dev += -2.0 * h + ld
    return dev
