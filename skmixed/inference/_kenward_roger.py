"""Kenward-Roger inference for LMM fixed effects (Kenward & Roger 1997; pbkrtest's ``vcovAdj``,
``Lb_ddf`` and ``KRmodcomp``, Halekoh & Hojsgaard 2014).

The marginal covariance is linear in the variance parameters ``gamma``: the entries of each
random-effects block's covariance ``D_b`` (the free entries of its lower triangle, as pbkrtest's
``VarCorr`` entries) and the residual variance, ``V = sum_k gamma_k G_k`` with
``G_k = Z (I_J (x) E_k) Z'`` (``E_k`` the symmetric unit matrix of entry ``k``) and ``G = I``
for the residual. Kenward-Roger needs, at the REML estimates, with ``Phi = (X'V^-1 X)^-1``,

* ``P_k = -X'V^-1 G_k V^-1 X`` and ``Q_kl = X'V^-1 G_k V^-1 G_l V^-1 X``;
* the REML expected information ``I_kl = 1/2 tr(Pi G_k Pi G_l)``, ``Pi = V^-1 - V^-1 X Phi X'V^-1``,
  i.e. ``2 I_kl = tr(V^-1 G_k V^-1 G_l) - 2 tr(Phi Q_kl) + tr(Phi P_k Phi P_l)``;
* ``W = I^-1``, and the adjusted covariance ``Phi_A = Phi + 2 Phi (sum_kl W_kl (Q_kl - P_k Phi P_l)) Phi``
  (the second derivatives of ``V`` vanish: ``V`` is linear in ``gamma``);

then for a contrast ``L`` (``q`` rows) the scaled F statistic's denominator df and scale from
``A1, A2`` (pbkrtest's ``.KR_adjust``).

None of this needs the rows: with ``U = Z Lambda`` (``Lambda`` the fit's relative covariance
factor) and ``S = I + U'U`` (what the fit factors), ``V = sigma^2 (I + U U')`` and
``V^-m = sigma^(-2m) (I - U (S^-1 + ... + S^-m) U')``, so every ``a'V^-m b`` for ``a, b`` among
the columns of ``Z`` and ``X`` is a function of the cross-product blocks ``[Z X]'[Z X]`` the fit
already holds, and ``tr(V^-2) = sigma^-4 (n - q + tr S^-2)``. One grouping factor: everything is
block-diagonal by level and costs ``O(J q^3)`` (any number of rows; ``q`` columns per level).
Several factors (crossed or nested): the random-effects part is handled densely, which is
refused above :data:`MAX_DENSE_Q` random-effect columns (pbkrtest forms the ``n x n`` ``V``).

Weights: frequency weights are rows repeated; with precision weights the residual covariance is
``sigma^2 W^-1`` and its derivative ``W^-1`` (pbkrtest takes the identity there, so weighted fits
can differ from pbkrtest).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["kenward_roger", "kenward_roger_multi", "KRPieces", "MAX_DENSE_Q"]

#: random-effect columns above which a model with several grouping factors is refused
MAX_DENSE_Q = 3000


class KRPieces:
    """``Phi``, ``Phi_A``, ``P_k`` and ``W`` of one LMM fit, in the problem's (centred) coordinates.

    Parameters
    ----------
    problem : LMMProblem
        The fit's problem (its cross-product blocks and layout).
    theta : ndarray
        The REML estimate of the relative covariance parameters.
    sigma : float
        The residual SD.

    Attributes
    ----------
    Phi, PhiA : ndarray (p, p)
        ``(X'V^-1 X)^-1`` and the Kenward-Roger adjusted covariance.
    P : list of ndarray (p, p)
    W : ndarray (n_gamma, n_gamma)
        The inverse expected information of the variance parameters.
    condition : float
        Smallest absolute eigenvalue of ``2 I`` (pbkrtest's ``condi``: below 1e-10 a pseudo-inverse
        is used, as pbkrtest does).
    """

    def __init__(self, problem, theta, sigma):
        lay = problem.layout
        cp = problem.cp
        p = lay.p
        s2 = float(sigma) ** 2
        lams = problem.lambdas(np.asarray(theta, dtype=float))
        if lay.Q2 == 0:
            ZtZ, ZtX, XtX, Lam, E = self._one_factor(lay, cp, lams)
            K = ZtZ @ Lam  # Z'U per level, U = Z Lambda
            KxT = np.swapaxes(Lam, 1, 2) @ ZtX  # U'X
            S = np.swapaxes(Lam, 1, 2) @ K + np.eye(ZtZ.shape[1])
        else:
            ZtZ, ZtX, XtX, Lam, E = self._dense(lay, cp, lams)  # Lam sparse (block-diagonal)
            K = np.asarray((Lam.T @ ZtZ[0]).T)[None]
            KxT = np.asarray(Lam.T @ ZtX[0])[None]
            S = np.asarray(Lam.T @ K[0])[None] + np.eye(ZtZ.shape[1])
        J, q = ZtZ.shape[0], ZtZ.shape[1]
        # V^-m = s2^-m (I - U (S^-1 + ... + S^-m) U'); with R = K S^-1 and W1 = S^-1 U'X every
        # product below is one cubic step (R, R K') or quadratic in q
        Si = np.linalg.inv(S)
        Si = (Si + np.swapaxes(Si, 1, 2)) / 2
        R = K @ Si
        KT = np.swapaxes(K, 1, 2)
        W1 = Si @ KxT
        W1T = np.swapaxes(W1, 1, 2)
        Kx = np.swapaxes(KxT, 1, 2)
        A1 = (ZtZ - R @ KT) / s2  # Z'V^-1 Z
        B1 = (ZtX - K @ W1) / s2  # Z'V^-1 X
        B2 = (ZtX - K @ W1 - R @ W1) / s2**2  # Z'V^-2 X
        KW = (Kx @ W1).sum(axis=0)
        WW = (W1T @ W1).sum(axis=0)
        XV1X = (XtX - KW) / s2
        XV2X = (XtX - KW - WW) / s2**2
        XV3X = (XtX - KW - WW - (W1T @ Si @ W1).sum(axis=0)) / s2**3
        trV2 = (cp.n_obs - J * q + np.sum(Si * Si)) / s2**2

        Phi = np.linalg.inv(XV1X)
        Phi = (Phi + Phi.T) / 2
        n_re = len(E)
        ng = n_re + 1
        EB1 = [_E_at(Ek, B1) for Ek in E]  # (J, q, p) each
        EA1 = [_E_at(Ek, A1) for Ek in E]  # (J, q, q)
        B1T = np.swapaxes(B1, 1, 2)
        P = [-(B1T @ EB).sum(axis=0) for EB in EB1] + [-XV2X]
        P = [(Pk + Pk.T) / 2 for Pk in P]
        Q = {}
        Ktr = np.empty((ng, ng))
        for k in range(n_re):
            for m in range(k, n_re):
                Q[k, m] = (B1T @ _E_at(E[k], A1 @ EB1[m])).sum(axis=0)
                Ktr[k, m] = Ktr[m, k] = np.einsum("gij,gji->", EA1[k], EA1[m])
            Q[k, n_re] = (B1T @ _E_at(E[k], B2)).sum(axis=0)
            # tr(E_k Z'V^-2 Z) = (s2 tr(E_k A1) - tr(E_k R R')) / s2^2, E_k symmetric
            trA2 = s2 * np.einsum("gii->", EA1[k]) - np.sum(_E_at(E[k], R) * R)
            Ktr[k, n_re] = Ktr[n_re, k] = trA2 / s2**2
        Q[n_re, n_re] = XV3X
        Ktr[n_re, n_re] = trV2

        IE2 = np.empty((ng, ng))
        for k in range(ng):
            PhiPk = Phi @ P[k]
            for m in range(k, ng):
                IE2[k, m] = IE2[m, k] = (Ktr[k, m] - 2 * np.sum(Phi * Q[k, m])
                                         + np.sum(PhiPk * (P[m] @ Phi)))
        ev = np.linalg.eigvalsh(IE2)
        self.condition = float(np.min(np.abs(ev)))
        W = 2 * (np.linalg.inv(IE2) if self.condition > 1e-10 else np.linalg.pinv(IE2))
        W = (W + W.T) / 2
        U = np.zeros((p, p))
        for k in range(ng):
            for m in range(k + 1, ng):
                U += W[k, m] * (Q[k, m] - P[k] @ Phi @ P[m])
        U = U + U.T
        for k in range(ng):
            U += W[k, k] * (Q[k, k] - P[k] @ Phi @ P[k])
        PhiA = Phi + 2 * Phi @ U @ Phi
        self.Phi, self.PhiA, self.P, self.W = Phi, (PhiA + PhiA.T) / 2, P, W

    # -- the cross products per group ---------------------------------------------------------
    @staticmethod
    def _sym_units(pattern_pos, q, offsets=None, J=None, q_total=None):
        """The symmetric unit matrices ``E_k`` of the free covariance entries ``(a, c)``."""
        r, c = pattern_pos
        out = []
        for a, b in zip(r, c):
            if offsets is None:
                Ek = np.zeros((q, q))
                Ek[a, b] = Ek[b, a] = 1.0
            else:  # I_J (x) E in the dense random-effects coordinates: sparse
                ia = offsets + np.arange(J) * q + a
                ib = offsets + np.arange(J) * q + b
                r = np.r_[ia, ib] if a != b else ia
                c = np.r_[ib, ia] if a != b else ib
                Ek = sp.csr_matrix((np.ones(r.size), (r, c)), shape=(q_total, q_total))
            out.append(Ek)
        return out

    def _one_factor(self, lay, cp, lams):
        J, q, p = lay.J1, lay.q1, lay.p
        seg = np.asarray(cp.A21).reshape(J, p + 1, q)  # per level: X rows then y
        ZtX = np.swapaxes(seg[:, :p, :], 1, 2)
        XtX = _sym(np.asarray(cp.A22)[:p, :p])
        E = self._sym_units(lay.blocks[0].theta_index(), q)
        return np.asarray(cp.A11), ZtX, XtX, lams[0][None], E

    def _dense(self, lay, cp, lams):
        J1, q1, p, Q2 = lay.J1, lay.q1, lay.p, lay.Q2
        n1 = J1 * q1
        qt = n1 + Q2
        if qt > MAX_DENSE_Q:
            raise ValueError(
                f"ddf='Kenward-Roger' with several grouping factors works on the dense random-effects "
                f"cross-products, and this model has {qt} random-effect columns (more than {MAX_DENSE_Q}): "
                "Kenward-Roger is cubic in them (pbkrtest's is cubic in the rows); use ddf='Satterthwaite'")
        m = lay.m
        C = np.zeros((qt + p, qt + p))
        idx1 = np.arange(J1)[:, None, None] * q1
        a = np.arange(q1)
        C[(idx1 + a[None, :, None]).ravel(), (idx1 + a[None, None, :]).ravel()] = np.asarray(cp.A11).ravel()
        lev = np.repeat(np.arange(J1), np.diff(lay.ptr))
        keep = lay.cols < m - 1  # not y
        rows = n1 + lay.cols[keep]
        colsZ = lev[keep][:, None] * q1 + a[None, :]
        C[np.repeat(rows, q1), colsZ.ravel()] = np.asarray(cp.A21)[keep].ravel()
        C[colsZ.ravel(), np.repeat(rows, q1)] = np.asarray(cp.A21)[keep].ravel()
        C[n1:, n1:] = _sym(np.asarray(cp.A22)[:m - 1, :m - 1])
        E, lam_blocks = [], []
        offs = [0] + [n1 + int(o) for o in lay.dense_off]
        for blk, lam, off in zip(lay.blocks, lams, offs):
            lam_blocks.append(sp.kron(sp.identity(blk.n_levels), sp.csr_matrix(lam)))
            E.extend(self._sym_units(blk.theta_index(), blk.q, off, blk.n_levels, qt))
        Lam = sp.block_diag(lam_blocks, format="csr")
        return C[None, :qt, :qt], C[None, :qt, qt:], C[qt:, qt:], Lam, E


def _E_at(Ek, M):
    """``E_k @ M`` per level (``M``: (J, q, k)); a sparse ``E_k`` has one level (the dense path)."""
    if sp.issparse(Ek):
        return np.asarray(Ek @ M[0])[None]
    return Ek @ M


def _sym(A):
    """The symmetric matrix whose lower triangle is ``A``'s (blocks may fill one triangle only)."""
    return np.tril(A) + np.tril(A, -1).T


def kr_adjust(pieces: KRPieces, L):
    """pbkrtest's ``.KR_adjust`` without the statistic: ``(q, ddf, F_scaling)`` for contrast ``L``."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    Phi, P, W = pieces.Phi, pieces.P, pieces.W
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    ThetaPhi = Theta @ Phi
    u = [ThetaPhi @ Pk @ Phi for Pk in P]
    tr = np.array([np.trace(ui) for ui in u])
    A1 = float(tr @ W @ tr)
    A2 = float(sum(W[k, m] * np.sum(u[k] * u[m].T) for k in range(len(u)) for m in range(len(u))))
    q = int(np.linalg.matrix_rank(L))
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0 = 1 + c1 * B
    V1 = 1 - c2 * B
    V2 = 1 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    x = 1 - A2 / q
    ratio = 1.0 if abs(x) < 1e-14 and abs(V1) < 1e-14 else x / V1
    rho = ratio**2 * V0 / V2 / q
    ddf = 4 + (q + 2) / (q * rho - 1)
    scale = 1.0 if abs(ddf - 2) < 0.01 else ddf * (1 - A2 / q) / (ddf - 2)
    return q, float(ddf), float(scale)


def _pieces(est, inf) -> KRPieces:
    st = inf.state
    if inf.problem is None:
        raise ValueError("ddf='Kenward-Roger' needs random effects: this fit has none (its t-tests are exact, "
                         "with n - p degrees of freedom)")
    if not st.reml:
        raise ValueError("Kenward-Roger's method is only available for REML fits (as in lmerTest): "
                         "refit with reml=True")
    cache = st.extra.get("kenward_roger")
    if cache is not None and cache[0] == inf.sigma:
        return cache[1]
    pieces = KRPieces(inf.problem, st.theta, inf.sigma)
    st.extra["kenward_roger"] = (inf.sigma, pieces)
    return pieces


def kenward_roger(est, inf, L):
    """lmerTest's ``ddf = "Kenward-Roger"`` t-tests: ``(variance, df)`` per row of ``L`` (user coordinates).

    The variance is ``l' Phi_A l`` (pbkrtest's ``vcovAdj``), the df pbkrtest's ``Lb_ddf``.
    """
    pieces = _pieces(est, inf)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    T = inf.state.T
    Lc = L @ T
    var = np.einsum("ij,jk,ik->i", Lc, pieces.PhiA, Lc)
    df = np.array([kr_adjust(pieces, row)[1] for row in Lc])
    return var, df


def kenward_roger_multi(est, inf, L):
    """pbkrtest's ``KRmodcomp`` of ``L beta = 0``: ``(F_unscaled, numdf, dendf, F_scaling)``.

    ``F_unscaled`` is the Wald statistic with ``Phi_A`` over the rank ``q`` of ``L``; the test
    statistic is ``F_scaling * F_unscaled`` on ``(q, dendf)`` degrees of freedom (lmerTest's
    ``anova(m, ddf = "Kenward-Roger")`` reports its ``Sum Sq`` from the unscaled one).
    """
    pieces = _pieces(est, inf)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    Lc = L @ inf.state.T
    q, ddf, scale = kr_adjust(pieces, Lc)
    d = L @ np.asarray(inf.state.extra["beta"], dtype=float)
    wald = float(d @ np.linalg.lstsq(Lc @ pieces.PhiA @ Lc.T, d, rcond=None)[0])
    return wald / q, q, ddf, scale
