"""numba kernels for SEMA, the streaming EM approximation of Ippel, Kaptein & Vermunt (2019).

Model: ``y_j = X_j beta + Z_j b_j + e_j``, ``b_j ~ N(0, Phi)``, ``e ~ N(0, s2 I)``, fitted by
maximum likelihood with EM.  All the EM algorithm needs from the rows of group ``j`` are the
summaries ``A_j = X'X, a_j = X'y, s_j = y'y, B_j = Z'Z, D_j = X'Z, c_j = Z'y, n_j``; the
kernels here keep them in preallocated per-group arrays indexed by an int64 group code and
never look at a row twice.

Per row ``(j, x, z, y)`` (:func:`process_rows`, the notes' "online point"):

1. add the row to ``j``'s summaries and to the global ``X'X``, ``X'y``, ``N``;
2. E-step for ``j`` alone with the current parameters; the old contributions of ``j`` to the
   complete-data sufficient statistics ``t1 = sum D_j b_j``, ``T2 = sum (b_j b_j' + s2 Cinv_j)``,
   ``t3 = sum E||e_j||^2`` are swapped out and the new ones in;
3. ``P = (X'X)^-1`` by a Sherman-Morrison rank-one update (until ``X'X`` is first invertible it
   is accumulated and inverted directly, and the M-step of that row is skipped, as in the
   reference implementation);
4. M-step ``beta = P (X'y - t1)``, ``Phi = T2 / J``, ``s2 = t3 / N``.

:func:`sweep` is the SEMA-Update pass: one offline EM iteration over the stored summaries (every
contribution recomputed with the current parameters, ``X'X``, ``X'y`` and ``P`` rebuilt from the
summaries, so repeated sweeps are exactly the ML EM algorithm on the data seen so far).

``Phi^-1`` is computed once each time ``Phi`` changes (in the M-step, :func:`refresh_phi`), not
once per E-step as in the reference code, and only when ``Phi`` is well conditioned: for a
(near-)singular ``Phi`` (a variance at the boundary, where the reference code's ``solve(Phi)``
fails) the E-step uses the equivalent ``Cinv_j = L (L' B_j L + s2 I)^-1 L'`` with the
semidefinite Cholesky factor ``Phi = L L'``.  Both forms are exact.

Forgetting (``alpha > 0``, the paper's "smooth sliding window"): from row ``alpha`` on, every
new row multiplies all previous row-level statistics by ``lam = (alpha - 1) / alpha`` so the
effective number of rows, and the learn rate ``1 / min(n, alpha)`` of a running mean, match the
paper's definition.  Global sums are decayed each row (``O(p^2)``); a group's own summaries and
its stored contributions are decayed lazily, ``lam ** (rows since last touched)``, when the
group is next touched or swept.  Each group's weight in ``T2`` and ``J`` is
``lam ** (rows since its last row)``, so individuals who stopped arriving fade out of ``Phi``.

Scalar state lives in two small arrays so the kernels can update it in place:
``sc = [N, J, s2, t3, Phiinv valid]`` (float64) and ``ic = [n_rows, has_P, trained, n_sweeps, n_train_iter]``
(int64).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# indices into the float scalar state ``sc``
SC_N = 0  # (decayed) number of rows
SC_J = 1  # (decayed) number of groups
SC_S2 = 2  # residual variance
SC_T3 = 3  # sum of expected squared residuals
SC_PHIOK = 4  # 1.0 when Phiinv holds Phi^-1 (Phi well conditioned), else 0.0
N_SC = 5
# indices into the integer scalar state ``ic``
IC_NROWS = 0  # rows consumed
IC_HASP = 1  # P = (X'X)^-1 available
IC_TRAINED = 2  # training-phase EM done (or not requested)
IC_NSWEEPS = 3  # SEMA-Update sweeps run (training EM iterations included)
IC_NTRAINIT = 4  # EM iterations of the training phase
N_IC = 5
# why process_rows stopped before the end of its rows (the whole-state step its caller runs)
STAGE_TRAIN = 1  # the training phase's EM is due
STAGE_SWEEP = 2  # a SEMA-Update sweep is due


@njit(cache=True)
def scale_(a, f):
    """``a *= f`` in place, as a plain loop over the (C-contiguous) array's elements.

    The array expression ``a *= f`` compiles numpy's broadcasting machinery and its
    shape-error messages (seconds on a cold cache, for every kernel that uses it).
    """
    flat = a.reshape(a.size)
    for i in range(flat.size):
        flat[i] *= f


@njit(cache=True)
def add_(a, b):
    """``a += b`` in place for C-contiguous arrays of equal shape, as a plain loop (see :func:`scale_`)."""
    fa = a.reshape(a.size)
    fb = b.reshape(b.size)
    for i in range(fa.size):
        fa[i] += fb[i]



@njit(cache=True)
def decay_factor(t_from, t_to, alpha):
    """Product of the per-row forgetting factors of rows ``t_from + 1 .. t_to``.

    Row ``n`` (1-based) decays the past by ``(alpha - 1) / alpha`` when ``n > alpha``.
    """
    if alpha <= 0.0:
        return 1.0
    start = float(t_from)
    a = np.floor(alpha)
    if start < a:
        start = a
    k = float(t_to) - start
    if k <= 0.0:
        return 1.0
    return ((alpha - 1.0) / alpha) ** k


@njit(cache=True)
def chol_psd(A, L):
    """Lower Cholesky factor of a symmetric positive *semi*-definite ``A`` into ``L``.

    A pivot that is not clearly positive (relative to its diagonal) gives a zero column, so
    ``L L'`` reproduces ``A`` on its range; used for ``Phi`` which may sit on the boundary.
    """
    q = A.shape[0]
    for j in range(q):
        for i in range(j):
            L[i, j] = 0.0
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if A[j, j] <= 0.0 or s <= 1e-12 * A[j, j]:
            for i in range(j, q):
                L[i, j] = 0.0
            continue
        d = np.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, q):
            t = A[i, j]
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / d


@njit(cache=True)
def chol_logdet(M, R):
    """Lower Cholesky factor of a small SPD ``M`` (here ``>= I``) into ``R``; returns ``log|M|``.

    Reads only the lower triangle of ``M`` and writes only that of ``R``.
    """
    q = M.shape[0]
    logdet = 0.0
    for j in range(q):
        s = M[j, j]
        for k in range(j):
            s -= R[j, k] * R[j, k]
        d = np.sqrt(s)
        R[j, j] = d
        logdet += 2.0 * np.log(d)
        for i in range(j + 1, q):
            t = M[i, j]
            for k in range(j):
                t -= R[i, k] * R[j, k]
            R[i, j] = t / d
    return logdet


@njit(cache=True)
def refresh_phi(Phi, Lphi, Phiinv, sc, R):
    """After ``Phi`` changed: its semidefinite Cholesky factor and, if well conditioned, inverse.

    The E-step then uses ``Cinv = (B + s2 Phi^-1)^-1`` (one small SPD inversion per group) and
    falls back to the factor form ``L (L'BL + s2 I)^-1 L'`` only for a (near-)singular ``Phi``.
    ``Phi^-1`` is computed once per change of ``Phi`` (per M-step), never per group.
    """
    chol_psd(Phi, Lphi)
    q = Phi.shape[0]
    ok = True
    for j in range(q):
        # pivot^2 / diagonal: a tiny ratio means Phi^-1 would be huge and inaccurate
        if not (Lphi[j, j] * Lphi[j, j] > 1e-8 * Phi[j, j]):
            ok = False
    if ok:
        ok = spd_inverse(Phi, Phiinv, R)
    sc[SC_PHIOK] = 1.0 if ok else 0.0



@njit(cache=True)
def spd_inverse(A, out, R):
    """Inverse of a symmetric positive definite ``A`` into ``out`` (``R`` is workspace).

    Returns False, leaving ``out`` untouched, when a Cholesky pivot is not clearly positive
    relative to its diagonal (``X'X`` not yet invertible / collinear columns).
    """
    n = A.shape[0]
    # Cholesky A = R R'
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= R[j, k] * R[j, k]
        if not (A[j, j] > 0.0) or not (s > 1e-10 * A[j, j]):
            return False
        d = np.sqrt(s)
        R[j, j] = d
        for i in range(j + 1, n):
            t = A[i, j]
            for k in range(j):
                t -= R[i, k] * R[j, k]
            R[i, j] = t / d
        for i in range(j):
            R[i, j] = 0.0
    # R^-1 in place (lower triangular)
    for j in range(n):
        R[j, j] = 1.0 / R[j, j]
        for i in range(j + 1, n):
            t = 0.0
            for k in range(j, i):
                t -= R[i, k] * R[k, j]
            R[i, j] = t / R[i, i]
    # A^-1 = R^-T R^-1
    for i in range(n):
        for j in range(i + 1):
            t = 0.0
            for k in range(i, n):
                t += R[k, i] * R[k, j]
            out[i, j] = t
            out[j, i] = t
    return True


@njit(cache=True)
def _cinv(B, L, Phiinv, phi_ok, s2, Cinv, W1, W2, W3):
    """``Cinv = (B + s2 Phi^-1)^-1``; for a singular ``Phi`` as ``L (L' B L + s2 I)^-1 L'``."""
    q = B.shape[0]
    if phi_ok:
        for i in range(q):
            for k in range(q):
                W2[i, k] = B[i, k] + s2 * Phiinv[i, k]
        if spd_inverse(W2, Cinv, W3):
            return
    for i in range(q):
        for k in range(q):
            t = 0.0
            for m in range(q):
                t += B[i, m] * L[m, k]
            W1[i, k] = t
    for i in range(q):
        for k in range(i + 1):
            t = 0.0
            for m in range(q):
                t += L[m, i] * W1[m, k]
            W2[i, k] = t
            W2[k, i] = t
        W2[i, i] += s2
    # W2 is positive definite because s2 > 0
    spd_inverse(W2, W1, W3)
    # Cinv = L W1 L'
    for i in range(q):
        for k in range(q):
            t = 0.0
            for m in range(q):
                t += L[i, m] * W1[m, k]
            W3[i, k] = t
    for i in range(q):
        for k in range(i + 1):
            t = 0.0
            for m in range(q):
                t += W3[i, m] * L[k, m]
            Cinv[i, k] = t
            Cinv[k, i] = t


@njit(cache=True)
def estep_group(g, beta, Lphi, Phiinv, phi_ok, s2, gA, ga, gs, gB, gD, gc, gb, gCinv, t1_out, T2_out, W1, W2, W3, r):
    """E-step for group ``g`` with the current parameters.

    Writes ``b_g``, ``Cinv_g`` (into ``gb``, ``gCinv``), ``t1_g = D_g b_g`` into ``t1_out``,
    ``T2_g = b b' + s2 Cinv`` into ``T2_out`` and returns ``t3_g = E||y_g - X_g beta - Z_g b_g||^2``.
    """
    p = beta.shape[0]
    q = Lphi.shape[0]
    A = gA[g]
    a = ga[g]
    B = gB[g]
    D = gD[g]
    c = gc[g]
    b = gb[g]
    Cinv = gCinv[g]
    _cinv(B, Lphi, Phiinv, phi_ok, s2, Cinv, W1, W2, W3)
    for k in range(q):
        t = c[k]
        for i in range(p):
            t -= D[i, k] * beta[i]
        r[k] = t
    for k in range(q):
        t = 0.0
        for m in range(q):
            t += Cinv[k, m] * r[m]
        b[k] = t
    bDb = 0.0
    for i in range(p):
        t = 0.0
        for k in range(q):
            t += D[i, k] * b[k]
        t1_out[i] = t
        bDb += beta[i] * t
    for k in range(q):
        for m in range(q):
            T2_out[k, m] = b[k] * b[m] + s2 * Cinv[k, m]
    bAb = 0.0
    ab = 0.0
    for i in range(p):
        t = 0.0
        for m in range(p):
            t += A[i, m] * beta[m]
        bAb += beta[i] * t
        ab += a[i] * beta[i]
    bBb = 0.0
    cb = 0.0
    trCB = 0.0
    for k in range(q):
        t = 0.0
        u = 0.0
        for m in range(q):
            t += B[k, m] * b[m]
            u += Cinv[k, m] * B[m, k]
        bBb += b[k] * t
        cb += c[k] * b[k]
        trCB += u
    return gs[g] + bAb + bBb - 2.0 * ab - 2.0 * cb + 2.0 * bDb + s2 * trCB


@njit(cache=True)
def mstep(P, Xy, t1, T2, beta, Phi, Lphi, Phiinv, sc, Rq, update_beta):
    """M-step: ``beta = P (X'y - t1)`` (unless ``update_beta`` is False), ``Phi = T2 / J``,
    ``s2 = t3 / N``; refresh ``chol(Phi)`` and ``Phi^-1``."""
    p = beta.shape[0]
    q = Phi.shape[0]
    if update_beta:
        for i in range(p):
            t = 0.0
            for m in range(p):
                t += P[i, m] * (Xy[m] - t1[m])
            beta[i] = t
    J = sc[SC_J]
    for k in range(q):
        for m in range(q):
            Phi[k, m] = T2[k, m] / J
    s2 = sc[SC_T3] / sc[SC_N]
    # guard: an exact fit (or rounding) must not give a non-positive residual variance,
    # which would make (L'BL + s2 I) singular in the next E-step
    if not (s2 > 1e-300):
        s2 = 1e-300
    sc[SC_S2] = s2
    refresh_phi(Phi, Lphi, Phiinv, sc, Rq)


@njit(cache=True)
def rebuild_sums(alpha, gA, ga, gs, gB, gD, gc, gn, gtime, glast, XtX, Xy, P, sc, ic):
    """Bring every seen group's summaries to the current row and rebuild the global sums.

    With forgetting the groups' lazily decayed summaries are scaled to the current row;
    ``X'X``, ``X'y`` and ``N`` are then summed from the groups (which also removes
    Sherman-Morrison round-off) and ``P = (X'X)^-1`` recomputed.  Returns False, with
    ``P`` untouched, while ``X'X`` is not invertible.
    """
    G = gA.shape[0]
    p = XtX.shape[0]
    now = ic[IC_NROWS]
    XtX[:, :] = 0.0
    Xy[:] = 0.0
    N = 0.0
    for g in range(G):
        if glast[g] < 0:
            continue
        if alpha > 0.0:
            f = decay_factor(gtime[g], now, alpha)
            if f != 1.0:
                scale_(gA[g], f)
                scale_(ga[g], f)
                gs[g] *= f
                scale_(gB[g], f)
                scale_(gD[g], f)
                scale_(gc[g], f)
                gn[g] *= f
                gtime[g] = now
        add_(XtX, gA[g])
        add_(Xy, ga[g])
        N += gn[g]
    if not spd_inverse(XtX, P, np.empty((p, p))):
        return False
    sc[SC_N] = N
    ic[IC_HASP] = 1
    return True


@njit(cache=True)
def estep_all(alpha, beta, Lphi, Phiinv, gA, ga, gs, gB, gD, gc, gb, gCinv, gt1, gT2w, gt3, gJw, glast,
              t1, T2, sc, ic):
    """E-step for every seen group at the current parameters: BLUPs and all contributions.

    Rebuilds ``t1, T2, t3, J`` from scratch (groups weighted by ``lam ** (rows since their
    last row)`` in ``T2`` and ``J``); the summaries must be at the current row
    (:func:`rebuild_sums`).  No parameter changes.
    """
    G = gA.shape[0]
    q = Lphi.shape[0]
    now = ic[IC_NROWS]
    W1 = np.empty((q, q))
    W2 = np.empty((q, q))
    W3 = np.empty((q, q))
    r = np.empty(q)
    T2g = np.empty((q, q))
    t1[:] = 0.0
    T2[:, :] = 0.0
    t3 = 0.0
    J = 0.0
    s2 = sc[SC_S2]
    phi_ok = sc[SC_PHIOK] > 0.5
    for g in range(G):
        if glast[g] < 0:
            continue
        w = decay_factor(glast[g], now, alpha) if alpha > 0.0 else 1.0
        t3g = estep_group(g, beta, Lphi, Phiinv, phi_ok, s2, gA, ga, gs, gB, gD, gc, gb, gCinv,
                          gt1[g], T2g, W1, W2, W3, r)
        gt3[g] = t3g
        gJw[g] = w
        for k in range(q):
            for m in range(q):
                gT2w[g, k, m] = w * T2g[k, m]
        add_(t1, gt1[g])
        add_(T2, gT2w[g])
        t3 += t3g
        J += w
    sc[SC_T3] = t3
    sc[SC_J] = J



@njit(cache=True)
def gls_contribution(A, a, D, c, Cinv, DC, info, rhs):
    """One group's GLS contributions: ``info = A - D Cinv D'`` and ``rhs = a - D Cinv c`` (``DC`` scratch, p x q)."""
    p = A.shape[0]
    q = Cinv.shape[0]
    for m in range(p):
        for k in range(q):
            t = 0.0
            for l in range(q):
                t += D[m, l] * Cinv[l, k]
            DC[m, k] = t
    for m in range(p):
        t = a[m]
        for k in range(q):
            t -= DC[m, k] * c[k]
        rhs[m] = t
        for l in range(p):
            t = A[m, l]
            for k in range(q):
                t -= DC[m, k] * D[l, k]
            info[m, l] = t


@njit(cache=True)
def gls_all(gA, ga, gD, gc, gCinv, glast, ginfo, grhs, Info, Rhs):
    """Every seen group's GLS contributions ``A_j - D_j Cinv_j D_j'``, ``a_j - D_j Cinv_j c_j`` and their sums.

    ``gCinv`` must hold the current parameters' ``Cinv_j`` (:func:`estep_all`); the summaries
    must refer to the current row.  ``Info^-1 Rhs`` is then the GLS estimate of ``beta``.
    """
    G = gA.shape[0]
    p = gA.shape[1]
    q = gCinv.shape[1]
    DC = np.empty((p, q))
    Info[:, :] = 0.0
    Rhs[:] = 0.0
    for g in range(G):
        if glast[g] < 0:
            continue
        gls_contribution(gA[g], ga[g], gD[g], gc[g], gCinv[g], DC, ginfo[g], grhs[g])
        add_(Rhs, grhs[g])
        add_(Info, ginfo[g])


@njit(cache=True)
def sweep(n_sweeps, tol, gls, alpha, gA, ga, gs, gB, gD, gc, gn, gb, gCinv, gt1, gT2w, gt3, gJw,
          gtime, glast, XtX, Xy, P, t1, T2, beta, Phi, Lphi, Phiinv, sc, ic):
    """Run up to ``n_sweeps`` SEMA-Update sweeps (= offline EM iterations on the summaries).

    With ``gls`` each sweep is an ECME iteration (Liu & Rubin 1994) instead: ``beta`` is the
    GLS estimate ``[sum_j (A_j - D_j Cinv_j D_j')]^-1 sum_j (a_j - D_j Cinv_j c_j)`` at the
    current ``Phi, s2`` (it maximizes the likelihood over ``beta``), then the E-step and the EM
    update of ``Phi, s2``.  Same fixed point (the ML estimate), much faster for ``beta`` when
    the random effects dominate (EM's rate for the intercept is ``sum_j n_j shrink_j / N``).

    Stops early when the largest absolute change of ``beta``, ``Phi`` and ``s2`` falls below
    ``tol`` (``tol <= 0``: never).  Returns the number of sweeps run, or -1 when ``X'X`` is not
    invertible yet (nothing changed then).
    """
    G = gA.shape[0]
    p = beta.shape[0]
    q = Phi.shape[0]
    W1 = np.empty((q, q))
    W2 = np.empty((q, q))
    W3 = np.empty((q, q))
    Rp = np.empty((p, p))
    old_beta = np.empty(p)
    old_Phi = np.empty((q, q))
    info = np.empty((p, p))
    info_inv = np.empty((p, p))
    rhs = np.empty(p)
    info_g = np.empty((p, p))
    rhs_g = np.empty(p)
    DC = np.empty((p, q))
    Cq = np.empty((q, q))
    if not rebuild_sums(alpha, gA, ga, gs, gB, gD, gc, gn, gtime, glast, XtX, Xy, P, sc, ic):
        return -1
    it = 0
    for it in range(1, n_sweeps + 1):
        for m in range(beta.shape[0]):  # loops, not slice assignment: no broadcast-error code to compile
            old_beta[m] = beta[m]
        if gls:
            info.fill(0.0)
            rhs.fill(0.0)
            s2 = sc[SC_S2]
            for g in range(G):
                if glast[g] < 0:
                    continue
                _cinv(gB[g], Lphi, Phiinv, sc[SC_PHIOK] > 0.5, s2, Cq, W1, W2, W3)
                gls_contribution(gA[g], ga[g], gD[g], gc[g], Cq, DC, info_g, rhs_g)
                add_(rhs, rhs_g)
                add_(info, info_g)
            if spd_inverse(info, info_inv, Rp):
                for i in range(p):
                    t = 0.0
                    for m in range(p):
                        t += info_inv[i, m] * rhs[m]
                    beta[i] = t
        estep_all(alpha, beta, Lphi, Phiinv, gA, ga, gs, gB, gD, gc, gb, gCinv, gt1, gT2w, gt3, gJw, glast,
                  t1, T2, sc, ic)
        for a in range(Phi.shape[0]):  # a loop: slice assignment compiles broadcast-error code
            for b in range(Phi.shape[1]):
                old_Phi[a, b] = Phi[a, b]
        old_s2 = sc[SC_S2]
        mstep(P, Xy, t1, T2, beta, Phi, Lphi, Phiinv, sc, W3, not gls)
        ic[IC_NSWEEPS] += 1
        if tol > 0.0:
            d = abs(sc[SC_S2] - old_s2)
            for i in range(p):
                d = max(d, abs(beta[i] - old_beta[i]))
            for k in range(q):
                for m in range(q):
                    d = max(d, abs(Phi[k, m] - old_Phi[k, m]))
            if d < tol:
                break
    return it


@njit(cache=True)
def start_values(XtX, Xy, P, gs, glast, beta, Phi, Lphi, Phiinv, sc):
    """Training-phase start: OLS ``beta``, ``s2`` = OLS residual variance, ``Phi = s2 I``."""
    p = beta.shape[0]
    q = Phi.shape[0]
    for i in range(p):
        t = 0.0
        for m in range(p):
            t += P[i, m] * Xy[m]
        beta[i] = t
    yy = 0.0
    for g in range(gs.shape[0]):
        if glast[g] >= 0:
            yy += gs[g]
    rss = yy
    for i in range(p):
        rss -= beta[i] * Xy[i]
    s2 = rss / sc[SC_N]
    if not (s2 > 0.0):
        s2 = 1.0
    sc[SC_S2] = s2
    for k in range(q):
        for m in range(q):
            Phi[k, m] = s2 if k == m else 0.0
    refresh_phi(Phi, Lphi, Phiinv, sc, np.empty((q, q)))


@njit(cache=True)
def process_rows(X, y, codes, zidx, n_train, alpha, update_every, trace_every, lo, stage, n_trace, wts,
                 gA, ga, gs, gB, gD, gc, gn, gb, gCinv, gt1, gT2w, gt3, gJw, gtime, glast,
                 XtX, Xy, P, t1, T2, beta, Phi, Lphi, Phiinv, sc, ic, trace,
                 ecme, ginfo, grhs, Info, Rhs, K):
    """Consume rows ``X[i], y[i]`` of group ``codes[i]`` in order (the SEMA online step).

    ``zidx[k]`` is the column of ``X`` holding random-effect covariate ``k`` (-1: constant 1).
    ``wts[i]`` is row ``i``'s frequency weight (a weight of 2 counts as the row twice).
    ``trace`` receives ``[n_rows, beta, vec(Phi), s2]`` every ``trace_every`` rows (``n_trace``
    written so far).

    The whole-state EM steps -- the training phase's EM once ``n_train`` rows are in, a
    SEMA-Update sweep every ``update_every`` rows -- are not run here: the kernel stops
    at that row and returns ``(i, STAGE_TRAIN or STAGE_SWEEP, n_trace)``, the caller runs
    :func:`start_values` / :func:`sweep` and calls again with ``lo = i`` and
    ``stage`` the step it ran, which finishes row ``i`` (``stage`` 0: start afresh at
    ``lo``). So this kernel's compile does not hold the sweep's (a first fit that never
    sweeps compiles no sweep at all). Returns ``(n, 0, n_trace)`` when every row is in.

    With ``ecme`` (after an exact correction) the variance parameters stay at the last
    correction's values (SEMA's per-row update of ``Phi`` and ``s2`` is order-sensitive too;
    the next correction moves them exactly) and the fixed effects follow their GLS estimate
    at those values instead of EM's update ``P (X'y - t1)``, which lags
    far behind on streams whose rows arrive group by group (EM's rate for ``beta`` is
    ``sum_j n_j shrink_j / N``, close to 1): each group keeps its contributions
    ``info_j = A_j - D_j Cinv_j D_j'`` and ``rhs_j = a_j - D_j Cinv_j c_j`` (in ``ginfo``,
    ``grhs``; totals ``Info``, ``Rhs``), swapped like ``t1`` when a row arrives, and every
    row takes one preconditioned step ``beta += K (Rhs - Info beta)`` with ``K`` the inverse
    of ``Info`` at the last correction, refreshed every 256 rows (an iterative solve of
    ``Info beta = Rhs`` that the rows keep converged, ``O(p^2 q)`` per row).
    """
    n = X.shape[0]
    p = X.shape[1]
    q = zidx.shape[0]
    # mstep() is called with this rather than a literal True, which would compile another
    # copy of it (the sweep passes a plain bool)
    update_beta = np.bool_(True)
    x = np.empty(p)
    z = np.empty(q)
    u = np.empty(p)
    W1 = np.empty((q, q))
    W2 = np.empty((q, q))
    W3 = np.empty((q, q))
    r = np.empty(q)
    Rp = np.empty((p, p))
    T2g = np.empty((q, q))
    t1g = np.empty(p)
    DCw = np.empty((p, q))
    res = np.empty(p)
    lam = (alpha - 1.0) / alpha if alpha > 0.0 else 1.0
    for i in range(lo, n):
        if i == lo and stage != 0:
            # row i is in; the caller ran its training EM or sweep: finish the row
            now = ic[IC_NROWS]
            if stage == STAGE_TRAIN and update_every > 0 and now % update_every == 0:
                return i, STAGE_SWEEP, n_trace
            if trace_every > 0 and now % trace_every == 0:
                _trace_row(trace[n_trace], now, beta, Phi, sc)
                n_trace += 1
            continue
        g = codes[i]
        # a frequency weight w: the row's sums scaled by w (x, z, y by sqrt(w)), its count by w
        wi = wts[i]
        sw = np.sqrt(wi)
        yi = y[i] * sw
        for m in range(p):
            x[m] = X[i, m] * sw
        for k in range(q):
            z[k] = sw if zidx[k] < 0 else X[i, zidx[k]] * sw
        ic[IC_NROWS] += 1
        now = ic[IC_NROWS]
        decaying = alpha > 0.0 and now > np.floor(alpha)
        if decaying:
            # the past loses weight; P is handled in the Sherman-Morrison step below
            if ic[IC_HASP] == 0 or ic[IC_TRAINED] == 0:
                scale_(XtX, lam)
            scale_(Xy, lam)
            scale_(t1, lam)
            scale_(T2, lam)
            if ecme:
                scale_(Info, lam)
                scale_(Rhs, lam)
            sc[SC_N] *= lam
            sc[SC_J] *= lam
            sc[SC_T3] *= lam
        # ---- 1. the row enters group g's summaries and the global sums
        f = 1.0
        if glast[g] < 0:
            # new group: fresh zero summaries and contributions (the arrays may hold
            # nothing else, but be explicit: capacity is reused after a reset)
            gA[g] = 0.0
            ga[g] = 0.0
            gs[g] = 0.0
            gB[g] = 0.0
            gD[g] = 0.0
            gc[g] = 0.0
            gn[g] = 0.0
            gb[g] = 0.0
            gCinv[g] = 0.0
            gt1[g] = 0.0
            gT2w[g] = 0.0
            gt3[g] = 0.0
            gJw[g] = 0.0
            if ecme:
                ginfo[g] = 0.0
                grhs[g] = 0.0
        elif alpha > 0.0:
            f = decay_factor(gtime[g], now, alpha)
            if f != 1.0:
                scale_(gA[g], f)
                scale_(ga[g], f)
                gs[g] *= f
                scale_(gB[g], f)
                scale_(gD[g], f)
                scale_(gc[g], f)
                gn[g] *= f
        A = gA[g]
        a = ga[g]
        B = gB[g]
        D = gD[g]
        c = gc[g]
        # the global X'X is only needed while P = (X'X)^-1 is unknown (training phase, or
        # not yet invertible); afterwards P is updated directly and sweeps rebuild X'X from
        # the group summaries
        need_xtx = ic[IC_HASP] == 0 or ic[IC_TRAINED] == 0
        for m in range(p):
            xm = x[m]
            for l in range(p):
                A[m, l] += xm * x[l]
            if need_xtx:
                for l in range(p):
                    XtX[m, l] += xm * x[l]
            a[m] += xm * yi
            Xy[m] += xm * yi
            for k in range(q):
                D[m, k] += xm * z[k]
        for k in range(q):
            for l in range(q):
                B[k, l] += z[k] * z[l]
            c[k] += z[k] * yi
        gs[g] += yi * yi
        gn[g] += wi
        sc[SC_N] += wi
        gtime[g] = now
        glast[g] = now

        if ic[IC_TRAINED] == 0:
            # ---- training phase: only accumulate; EM on the summaries once n_train rows
            # are in and X'X is invertible
            if now >= n_train and spd_inverse(XtX, P, Rp):
                return i, STAGE_TRAIN, n_trace
        elif ecme:
            # ---- 2'. ECME row (after a correction): the group's BLUP at the held variance
            # parameters and its GLS contributions swapped in; SEMA's complete-data
            # contributions (t1, T2, t3) and P are left stale -- nothing reads them before the
            # next correction or sweep rebuilds them (StreamingMixed marks the state so)
            _cinv(B, Lphi, Phiinv, sc[SC_PHIOK] > 0.5, sc[SC_S2], gCinv[g], W1, W2, W3)
            Cg = gCinv[g]
            bg = gb[g]
            for k in range(q):
                t = c[k]
                for m in range(p):
                    t -= D[m, k] * beta[m]
                r[k] = t
            for k in range(q):
                t = 0.0
                for l in range(q):
                    t += Cg[k, l] * r[l]
                bg[k] = t
            for m in range(p):
                for k in range(q):
                    t = 0.0
                    for l in range(q):
                        t += D[m, l] * Cg[l, k]
                    DCw[m, k] = t
            Gi = ginfo[g]
            for m in range(p):
                t = a[m]
                for k in range(q):
                    t -= DCw[m, k] * c[k]
                Rhs[m] += t - f * grhs[g, m]
                grhs[g, m] = t
                # info_g = A - D Cinv D' is symmetric: the lower triangle, mirrored
                for l in range(m + 1):
                    t = A[m, l]
                    for k in range(q):
                        t -= DCw[m, k] * D[l, k]
                    d = t - f * Gi[m, l]
                    Info[m, l] += d
                    Gi[m, l] = t
                    if l < m:
                        Info[l, m] += d
                        Gi[l, m] = t
            if now % 256 == 0:
                # keep the preconditioner close to Info^-1 as rows change Info (a stale one
                # can make the iteration diverge on a stream sorted by x)
                spd_inverse(Info, K, Rp)
            # ---- 4'. beta one preconditioned step towards the GLS estimate Info^-1 Rhs: every
            # 8th row, on trace rows and on a batch's last row (the only places where beta is
            # seen; between them a row changes Info and Rhs by one rank-q term, so a step
            # with K ~ Info^-1 lands as close to the GLS estimate as eight steps would)
            if now % 8 == 0 or i == n - 1 or (trace_every > 0 and now % trace_every == 0):
                for m in range(p):
                    t = Rhs[m]
                    for l in range(p):
                        t -= Info[m, l] * beta[l]
                    res[m] = t
                for m in range(p):
                    t = 0.0
                    for l in range(p):
                        t += K[m, l] * res[l]
                    beta[m] += t
        else:
            # ---- 2. E-step for g only with the current parameters; swap its contributions
            s2 = sc[SC_S2]
            t3g = estep_group(g, beta, Lphi, Phiinv, sc[SC_PHIOK] > 0.5, s2, gA, ga, gs, gB, gD, gc, gb, gCinv,
                              t1g, T2g, W1, W2, W3, r)
            # old contributions were booked at gtime (before this row): scale like the sums
            for m in range(p):
                t1[m] += t1g[m] - f * gt1[g, m]
                gt1[g, m] = t1g[m]
            for k in range(q):
                for l in range(q):
                    T2[k, l] += T2g[k, l] - f * gT2w[g, k, l]
                    gT2w[g, k, l] = T2g[k, l]
            sc[SC_T3] += t3g - f * gt3[g]
            gt3[g] = t3g
            sc[SC_J] += 1.0 - f * gJw[g]
            gJw[g] = 1.0
            # ---- 3. P = (X'X)^-1
            if ic[IC_HASP] == 1:
                # Sherman-Morrison for X'X <- lam X'X + x x'
                xu = 0.0
                for m in range(p):
                    t = 0.0
                    for l in range(p):
                        t += P[m, l] * x[l]
                    u[m] = t
                    xu += x[m] * t
                ld = lam if decaying else 1.0
                den = ld + xu
                inv_ld = 1.0 / ld
                for m in range(p):
                    um = u[m] / den
                    for l in range(p):
                        P[m, l] = (P[m, l] - um * u[l]) * inv_ld
                # ---- 4. M-step
                mstep(P, Xy, t1, T2, beta, Phi, Lphi, Phiinv, sc, W3, update_beta)
            elif spd_inverse(XtX, P, Rp):
                # first invertible X'X: invert it, skip this row's M-step (reference code)
                ic[IC_HASP] = 1
        if update_every > 0 and now % update_every == 0 and ic[IC_TRAINED] == 1:
            return i, STAGE_SWEEP, n_trace
        if trace_every > 0 and now % trace_every == 0:
            _trace_row(trace[n_trace], now, beta, Phi, sc)
            n_trace += 1
    return n, 0, n_trace


@njit(cache=True, inline="always")
def _trace_row(row, now, beta, Phi, sc):
    """``row = [now, beta, vec(Phi), s2]``."""
    p = beta.shape[0]
    q = Phi.shape[0]
    row[0] = now
    for m in range(p):
        row[1 + m] = beta[m]
    for k in range(q):
        for l in range(q):
            row[1 + p + k * q + l] = Phi[k, l]
    row[1 + p + q * q] = sc[SC_S2]


@njit(cache=True)
def beta_information(beta, Lphi, Phiinv, phi_ok, s2, alpha, now, gA, gB, gD, gtime, glast):
    """``sum_j (A_j - D_j Cinv_j D_j')`` with ``Cinv_j`` at the current parameters.

    Divided by ``s2`` this is ``X' V^-1 X``, whose inverse is ``Var(beta)``.
    """
    G = gA.shape[0]
    p = beta.shape[0]
    q = Lphi.shape[0]
    out = np.zeros((p, p))
    Cinv = np.empty((q, q))
    W1 = np.empty((q, q))
    W2 = np.empty((q, q))
    W3 = np.empty((q, q))
    DC = np.empty((p, q))
    Bf = np.empty((q, q))
    for g in range(G):
        if glast[g] < 0:
            continue
        f = decay_factor(gtime[g], now, alpha) if alpha > 0.0 else 1.0
        for k in range(q):
            for m in range(q):
                Bf[k, m] = f * gB[g, k, m]
        _cinv(Bf, Lphi, Phiinv, phi_ok, s2, Cinv, W1, W2, W3)
        D = gD[g]
        for i in range(p):
            for k in range(q):
                t = 0.0
                for m in range(q):
                    t += f * D[i, m] * Cinv[m, k]
                DC[i, k] = t
        for i in range(p):
            for l in range(p):
                t = f * gA[g, i, l]
                for k in range(q):
                    t -= DC[i, k] * f * D[l, k]
                out[i, l] += t
    return out


@njit(cache=True)
def loglik(beta, Lphi, s2, alpha, now, gA, ga, gs, gB, gD, gc, gn, gtime, glast):
    """Marginal (ML) log-likelihood at the current parameters, from the group summaries.

    Per group, with ``r = y - X beta``, ``Phi = L L'`` and ``M = I + L' B L / s2``:
    ``log|V| = n log s2 + log|M|`` and
    ``r'V^-1 r = (r'r - u' M^-1 u / s2) / s2`` with ``u = L' Z'r`` (Woodbury), where
    ``r'r = s - 2 a'beta + beta'A beta`` and ``Z'r = c - D'beta``.  With forgetting the rows
    carry their weights (``n`` is then the decayed count).
    """
    G = gA.shape[0]
    p = beta.shape[0]
    q = Lphi.shape[0]
    M = np.empty((q, q))
    R = np.empty((q, q))
    W = np.empty((q, q))
    zr = np.empty(q)
    u = np.empty(q)
    total = 0.0
    log2pi = np.log(2.0 * np.pi)
    for g in range(G):
        if glast[g] < 0:
            continue
        f = decay_factor(gtime[g], now, alpha) if alpha > 0.0 else 1.0
        A = gA[g]
        a = ga[g]
        B = gB[g]
        D = gD[g]
        c = gc[g]
        rr = gs[g]
        for i in range(p):
            t = 0.0
            for m in range(p):
                t += A[i, m] * beta[m]
            rr += beta[i] * t - 2.0 * a[i] * beta[i]
        rr *= f
        for k in range(q):
            t = c[k]
            for i in range(p):
                t -= D[i, k] * beta[i]
            zr[k] = f * t
        # M = I + L' (f B) L / s2
        for i in range(q):
            for k in range(q):
                t = 0.0
                for m in range(q):
                    t += f * B[i, m] * Lphi[m, k]
                W[i, k] = t
        for i in range(q):
            for k in range(q):
                t = 0.0
                for m in range(q):
                    t += Lphi[m, i] * W[m, k]
                M[i, k] = t / s2 + (1.0 if i == k else 0.0)
            t = 0.0
            for m in range(q):
                t += Lphi[m, i] * zr[m]
            u[i] = t
        # Cholesky of M (SPD, >= I): log|M| and u' M^-1 u by forward substitution
        logdet = chol_logdet(M, R)
        # w = R^-1 u (stored over zr, no longer needed); u' M^-1 u = |w|^2
        quad = 0.0
        for i in range(q):
            t = u[i]
            for k in range(i):
                t -= R[i, k] * zr[k]
            zr[i] = t / R[i, i]
            quad += zr[i] * zr[i]
        n = f * gn[g]
        total -= 0.5 * (n * (log2pi + np.log(s2)) + logdet + (rr - quad / s2) / s2)
    return total



@njit(cache=True)
def profiled_blocks(Lam, B, F, V):
    """Per-group factors of the profiled LMM at relative covariance factor ``Lam``.

    For each group ``j`` (``B[j] = Z_j'Z_j``, ``F[j] = Z_j'[X y]``, shifted):
    ``M_j = Lam' B_j Lam + I = R_j R_j'`` and ``V_j = R_j^-1 Lam' F_j`` into ``V[j]``, so that
    ``[X y]' (I + Z Lam Lam' Z')^-1 [X y] = [X y]'[X y] - sum_j V_j' V_j``.  Returns
    ``log|L|^2 = sum_j log|M_j|``.  See :class:`skmixed._solvers.sema_exact.Profile`.
    """
    J = B.shape[0]
    q = Lam.shape[0]
    m = F.shape[2]
    BL = np.empty((q, q))
    M = np.empty((q, q))
    R = np.empty((q, q))
    ld = 0.0
    for g in range(J):
        for a in range(q):
            for b in range(q):
                t = 0.0
                for c in range(q):
                    t += B[g, a, c] * Lam[c, b]
                BL[a, b] = t
        for a in range(q):
            for b in range(a + 1):
                t = 0.0
                for c in range(q):
                    t += Lam[c, a] * BL[c, b]
                M[a, b] = t + (1.0 if a == b else 0.0)
        ld += chol_logdet(M, R)
        for a in range(q):
            for i in range(m):
                t = 0.0
                for c in range(a, q):
                    t += Lam[c, a] * F[g, c, i]
                for k in range(a):
                    t -= R[a, k] * V[g, k, i]
                V[g, a, i] = t / R[a, a]
    return ld
