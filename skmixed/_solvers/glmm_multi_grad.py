"""Exact gradient of the multi-factor Laplace deviance (scalar and vector random terms).

Model and notation as in :mod:`skmixed._solvers.glmm`: ``eta = X beta + Z Lambda u + offset``,
``Lambda = diag(theta_k I_{J_k})`` (every term a random intercept or a ``(0 + x | g)`` slope),
prior weights ``w``, working weights ``W_i = w_i V(mu_i)`` (canonical link: ``d mu / d eta = V``),
``H = Lambda' Z' W Z Lambda + I`` (half the Hessian in ``u`` of the penalized deviance ``D``) and

    F(theta, beta) = D(u*) + log det H(u*),      u* = argmin_u D(u).

With ``r = w (y - mu)`` (so ``dD / d eta = -2 r``), ``zt_i = Lambda' Z' e_i`` (row ``i`` of ``Z Lambda``),
the leverages ``l_i = zt_i' H^{-1} zt_i`` and ``W'_i = d W_i / d eta_i = w_i V(mu_i) V'(mu_i)``:

* at fixed ``u``, ``d log det H = 2 tr(H^{-1} Lambda' Z' W Z dLambda) + sum_i l_i W'_i d eta_i``; for a
  scalar term ``2 tr(H^{-1} Lambda' Z' W Z E_k) = 2 (J_k - tr_k(H^{-1})) / theta_k`` (as for the LMM,
  :mod:`skmixed._solvers.lmm_newton`);
* ``D`` is stationary in ``u`` at the mode, so only its explicit part counts: ``-2 r' d eta``;
* the modes move with the parameters, ``H du* = -d(grad_u D / 2)``; the log-determinant's
  dependence on them, ``g_u = Lambda' Z' (l * W')``, is pushed through by ONE adjoint solve
  ``H v = g_u`` with the factor at hand, giving ``-v' d(grad_u D / 2)``.

Collecting, with ``e = -2 r + l W' - W (Z Lambda v)``:

    dF/dbeta    = X' e
    dF/dtheta_k = (Z_k u_k)' e + v_k' Z_k' r + 2 (J_k - tr_k(H^{-1})) / theta_k

(the last two vanish with ``theta_k``). The leverages need ``H^{-1}`` only on the pattern the rows
touch: the diagonal, the coupling slots between the first factor and the others, and the pairs of
dense levels that share a row (:mod:`skmixed._kernels.glmm_multi`). One evaluation costs one
triangular inverse of the dense factor plus work linear in the rows and the coupling pattern —
what one more factorization costs, where central differences cost ``2 (n_theta + p)`` PIRLS runs.

The same solves give the first-order change of the modes, ``du*/dx = -H^{-1} d(grad_u D / 2)/dx``
(``gradient(..., want_jac=True)``), which warm-starts PIRLS at the next point.

Vector terms (``(1 + x | g)``, any ``Lambda_k`` pattern) take the same route with ``q_k x q_k``
level blocks (:class:`BlockLaplaceGradient`): the trace term is written without ``Lambda^{-1}``
as ``2 sum_i W_i z_ik[a] (H^{-1} zt_i)_{k, c_k(i), b}`` per entry ``(a, b)`` of ``Lambda_k``, from
the same selected inverse, so a singular ``Lambda_k`` (a correlation of +-1) is no special case.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .._kernels import glmm_multi as km
from .._kernels.lmm_grad import forward_first_block

__all__ = ["ScalarLaplaceGradient", "variance_slope"]


def variance_slope(family, mu):
    """``V'(mu)``, the derivative of the family's variance function (canonical links only)."""
    if family.name == "binomial":
        return 1.0 - 2.0 * mu
    if family.name == "poisson":
        return np.ones_like(mu)
    raise ValueError(f"no variance derivative for family {family.name!r}")


class ScalarLaplaceGradient:
    """Exact gradient of :class:`skmixed._solvers.glmm.MultiFactorGLMM`'s Laplace deviance (scalar terms).

    Parameters
    ----------
    glmm : MultiFactorGLMM
        The problem; its blocks must all have one column (:attr:`applies`).

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._design.layout import amalgamate
    >>> from skmixed._design.terms import RandomTerm
    >>> from skmixed._solvers.glmm import MultiFactorGLMM
    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.integers(0, 20, 400), rng.integers(0, 8, 400)
    >>> y = (rng.random(400) < 0.4).astype(float)
    >>> blocks = amalgamate([RandomTerm(0, True, (), ["(Intercept)"]), RandomTerm(1, True, (), ["(Intercept)"])],
    ...                     [20, 8])
    >>> class Codes:
    ...     def __init__(self, c): self.codes = c
    >>> prob = MultiFactorGLMM(np.ones((400, 1)), y, np.ones(400), [Codes(a), Codes(b)], blocks)
    >>> F, g = prob.laplace_grad(np.array([0.5, 0.3, -0.4]))
    >>> g.shape
    (3,)
    """

    def __init__(self, glmm):
        blocks = self._bind(glmm)
        lay = self.lay
        self.applies = self.scalar = all(b.q == 1 for b in blocks)
        if not self.applies:
            return
        self.z = [np.ascontiguousarray(Z[:, 0]) for Z in glmm.Z]
        self.unit_z = [bool(np.all(zk == 1.0)) for zk in self.z]
        # dense-part column of each row's level, per dense block
        self.dcol = [None] + [lay.dense_off[k - 1] + self.codes[k] for k in range(1, self.K)]
        # distinct pairs of dense levels sharing a row, per pair of dense blocks
        self.pairs = []
        for k in range(1, self.K):
            for m in range(k + 1, self.K):
                key = self.codes[k] * self.J[m] + self.codes[m]
                uniq, inv = np.unique(key, return_inverse=True)
                ca = (lay.dense_off[k - 1] + uniq // self.J[m]).astype(np.int64)
                cb = (lay.dense_off[m - 1] + uniq % self.J[m]).astype(np.int64)
                self.pairs.append((k, m, ca, cb, inv.astype(np.int64)))

    def _bind(self, glmm):
        """The problem, its layout and per block the levels and the rows' codes; returns the blocks."""
        self.glmm = glmm
        self.lay = glmm.layout
        blocks = self.lay.blocks
        self.K = len(blocks)
        self.J = [b.n_levels for b in blocks]
        self.codes = [glmm.codes[b.factor] for b in blocks]
        return blocks

    # -- linear algebra with the factor at hand ----------------------------------------------------
    def _dense_inverse(self, Minv):
        """``Minv' Minv`` (lower triangle): the dense part's block of ``H^{-1}``."""
        if not self.lay.Q2:
            return np.zeros((0, 0))
        Sinv, info = sla.lapack.dlauum(Minv, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("the random-effects factor is singular")
        return Sinv

    def _inverse_factor(self, L):
        Q2 = self.lay.Q2
        if not Q2:
            return np.zeros((0, 0), order="F")
        Minv, info = sla.lapack.dtrtri(np.asfortranarray(L[:Q2, :Q2]), lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("the random-effects factor is singular")
        return np.asfortranarray(Minv)

    def _solve(self, L11, L21, Minv, g1, g2):
        """``H^{-1} [g1; g2]`` by forward and back substitution with the blocked factor."""
        lay = self.lay
        c2 = np.array(g2, dtype=float)
        z1 = forward_first_block(L11, L21, lay.ptr, lay.cols, np.ascontiguousarray(g1, dtype=float), c2, lay.Q2)
        z2 = Minv @ c2
        y2 = Minv.T @ z2
        y1 = km.back_first_block(L11, L21, lay.ptr, lay.cols, z1, y2, lay.Q2)
        return y1, y2

    def _split(self, per_block):
        """Per-block level vectors -> (first factor's, dense part's)."""
        g2 = np.concatenate(per_block[1:]) if self.K > 1 else np.zeros(0)
        return per_block[0], g2

    def _join(self, y1, y2):
        out = [y1]
        for k in range(1, self.K):
            o = int(self.lay.dense_off[k - 1])
            out.append(y2[o:o + self.J[k]])
        return out

    def _zt_mul(self, theta, a):
        """``Lambda' Z' a`` per block (level sums of ``theta_k z_k a``)."""
        return [theta[k] * np.bincount(self.codes[k], weights=a if self.unit_z[k] else self.z[k] * a,
                                       minlength=self.J[k]) for k in range(self.K)]

    def _zt_row(self, theta, v):
        """``Z Lambda v`` (per row) for per-block level vectors ``v``."""
        out = np.zeros(self.codes[0].shape[0])
        for k in range(self.K):
            t = v[k][self.codes[k]]
            out += theta[k] * (t if self.unit_z[k] else self.z[k] * t)
        return out

    # -- the gradient ------------------------------------------------------------------------------
    def leverages(self, theta, L11, L21, Minv):
        """``l_i = zt_i' H^{-1} zt_i`` per row, and ``tr_k(H^{-1})`` per block."""
        lay = self.lay
        Q2 = lay.Q2
        d1 = np.empty(lay.J1)
        sel = np.zeros(lay.nnz)
        Sinv = self._dense_inverse(Minv)
        km.coupling_inverse(L11, L21, lay.ptr, lay.cols, Sinv, Q2, d1, sel)
        d2 = np.diagonal(Sinv).copy()
        tz = [theta[k] * self.z[k] for k in range(self.K)]
        lev = tz[0] ** 2 * d1[self.codes[0]]
        for k in range(1, self.K):
            lev += tz[k] ** 2 * d2[self.dcol[k]]
            lev += 2.0 * tz[0] * tz[k] * sel[lay.row_slot[:, k - 1]]
        for k, m, ca, cb, inv in self.pairs:
            vals = np.empty(ca.shape[0])
            km.lower_gather(Sinv, ca, cb, vals)
            lev += 2.0 * tz[k] * tz[m] * vals[inv]
        tr = [float(d1.sum())] + [float(d2[lay.dense_off[k - 1]:lay.dense_off[k - 1] + self.J[k]].sum())
                                  for k in range(1, self.K)]
        return lev, tr

    def _random_rows(self, theta, u):
        """``Z Lambda u`` per row."""
        return self._zt_row(theta, [uk[:, 0] for uk in u])

    def state(self, theta, beta, u):
        """Row quantities at the modes: ``(mu, r, W, W')``."""
        g = self.glmm
        eta = g.X @ beta + self._random_rows(theta, u) + g.off
        mu = g.family.linkinv(eta)
        var = np.maximum(g.family.variance(mu), 1e-300)
        W = g.w * var
        dW = W * variance_slope(g.family, mu)
        return mu, g.w * (g.y - mu), W, dW

    def gradient(self, theta, beta, u, fac, want_jac=False):
        """``dF/d(theta, beta)`` at the modes ``u`` whose factor ``fac = (L, LMMProblem)`` is at hand.

        With ``want_jac`` returns ``(gradient, jac, g_u)``: also ``du*/d(theta, beta)`` as per-block
        ``(J_k, n_theta + p)`` arrays and the gradient of ``log det H`` in the modes (per block).
        """
        theta = np.asarray(theta, dtype=float)
        L, lp = fac
        L11, L21 = lp.first_block_factors
        Minv = self._inverse_factor(L)
        lev, tr = self.leverages(theta, L11, L21, Minv)
        mu, r, W, dW = self.state(theta, beta, u)
        a = lev * dW
        gu = self._zt_mul(theta, a)  # d log det H / du
        v = self._join(*self._solve(L11, L21, Minv, *self._split(gu)))
        e = a - 2.0 * r - W * self._zt_row(theta, v)
        g = self.glmm
        nt = self.K
        grad = np.empty(nt + g.p)
        grad[nt:] = g.X.T @ e
        Ztr = [np.bincount(self.codes[k], weights=r if self.unit_z[k] else self.z[k] * r, minlength=self.J[k])
               for k in range(self.K)]
        zu = []
        for k in range(self.K):
            uk = u[k][:, 0][self.codes[k]]
            zu.append(uk if self.unit_z[k] else self.z[k] * uk)
            gk = float(zu[k] @ e) + float(v[k] @ Ztr[k])
            if theta[k] > 0:
                gk += 2.0 * (self.J[k] - tr[k]) / theta[k]
            grad[k] = gk
        if not want_jac:
            return grad
        # du*/dx = -H^{-1} d(grad_u D / 2)/dx: theta_k -> -E_k Z_k' r + Lambda' Z' W Z_k u_k,
        # beta_j -> Lambda' Z' W X_j
        cols = []
        for k in range(self.K):
            rhs = self._zt_mul(theta, W * zu[k])
            rhs[k] = rhs[k] - Ztr[k]
            cols.append(rhs)
        for j in range(g.p):
            cols.append(self._zt_mul(theta, W * g.X[:, j]))
        jac = [np.empty((self.J[k], len(cols))) for k in range(self.K)]
        for c, rhs in enumerate(cols):
            sol = self._join(*self._solve(L11, L21, Minv, *self._split(rhs)))
            for k in range(self.K):
                jac[k][:, c] = -sol[k]
        return grad, jac, gu


class BlockLaplaceGradient(ScalarLaplaceGradient):
    """Exact gradient of the multi-factor Laplace deviance with vector random terms.

    The scalar derivation (module docstring) with ``q_k x q_k`` blocks: ``Lambda`` is
    ``Lambda_k`` on every level of factor ``k``, ``theta_t`` one entry ``(a, b)`` of it and
    ``dLambda = I_{J_k} (x) e_a e_b'``, so ``d eta_i = z_ik[a] u_{k, c_k(i), b}``. The trace term
    is taken without ``Lambda^{-1}`` (a singular ``Lambda_k`` on the boundary is no special case):
    ``2 tr(H^{-1} Lambda' Z' W Z dLambda) = 2 sum_i W_i z_ik[a] g_ik[b]``, ``g_ik`` the entries
    of ``H^{-1} zt_i`` at the row's own level of factor ``k``, which the selected inverse gives
    (:func:`skmixed._kernels.glmm_multi.row_inverse_products`; the leverages are
    ``l_i = zt_i' g_i``). With ``e`` as for scalar terms, per block

        dF/dLambda_k[a, b] = sum_i z_ik[a] (e_i u_{k,c(i)} + r_i v_{k,c(i)} + 2 W_i g_ik)[b].

    Parameters
    ----------
    glmm : MultiFactorGLMM
        Any random terms (scalar ones too, though :class:`ScalarLaplaceGradient` serves those).

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._design.layout import amalgamate
    >>> from skmixed._design.terms import RandomTerm
    >>> from skmixed._solvers.glmm import MultiFactorGLMM
    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.integers(0, 20, 400), rng.integers(0, 8, 400)
    >>> X = np.column_stack([np.ones(400), rng.normal(size=400)])
    >>> y = (rng.random(400) < 0.4).astype(float)
    >>> blocks = amalgamate([RandomTerm(0, True, (1,), ["(Intercept)", "x"]),
    ...                      RandomTerm(1, True, (), ["(Intercept)"])], [20, 8])
    >>> class Codes:
    ...     def __init__(self, c): self.codes = c
    >>> prob = MultiFactorGLMM(X, y, np.ones(400), [Codes(a), Codes(b)], blocks)
    >>> F, g = prob.laplace_grad(np.array([0.5, 0.1, 0.3, 0.4, -0.4, 0.2]))
    >>> g.shape
    (6,)
    """

    def __init__(self, glmm):
        blocks = self._bind(glmm)
        lay = self.lay
        self.applies = True
        self.scalar = False
        self.q = [b.q for b in blocks]
        self.Z = glmm.Z
        self.zoff = np.concatenate([[0], np.cumsum(self.q)]).astype(np.int64)
        n = self.codes[0].shape[0]
        self.dcols = np.empty((n, self.K - 1), dtype=np.int64)
        for k in range(1, self.K):
            self.dcols[:, k - 1] = lay.dense_off[k - 1] + self.codes[k] * self.q[k]
        self.theta_pos = glmm.theta_map.positions
        self.theta_off = glmm.theta_map.offsets

    # -- linear algebra with the factor at hand ----------------------------------------------------
    def _solve(self, L11, L21, Minv, g1, g2):
        lay = self.lay
        c2 = np.array(g2, dtype=float)
        z1 = km.forward_blocks(L11, L21, lay.ptr, lay.cols, np.ascontiguousarray(g1, dtype=float), c2, lay.Q2)
        y2 = Minv.T @ (Minv @ c2)
        return km.back_blocks(L11, L21, lay.ptr, lay.cols, z1, y2, lay.Q2), y2

    def _split(self, per_block):
        g2 = np.concatenate([g.ravel() for g in per_block[1:]]) if self.K > 1 else np.zeros(0)
        return per_block[0], g2

    def _join(self, y1, y2):
        out = [y1]
        for k in range(1, self.K):
            o = int(self.lay.dense_off[k - 1])
            out.append(y2[o:o + self.J[k] * self.q[k]].reshape(self.J[k], self.q[k]))
        return out

    def _zt_mul(self, lams, a):
        """``Lambda' Z' a`` per block, ``(J_k, q_k)`` (level sums of ``a_i z_ik``, then ``Lambda_k'``)."""
        out = []
        for k in range(self.K):
            s = np.empty((self.J[k], self.q[k]))
            for c in range(self.q[k]):
                s[:, c] = np.bincount(self.codes[k], weights=a * self.Z[k][:, c], minlength=self.J[k])
            out.append(s @ lams[k])
        return out

    def _zt_row(self, lams, v):
        """``Z Lambda v`` per row for per-block ``(J_k, q_k)`` level arrays ``v``."""
        out = np.zeros(self.codes[0].shape[0])
        for k in range(self.K):
            out += np.einsum("ij,ij->i", self.Z[k], (v[k] @ lams[k].T)[self.codes[k]])
        return out

    # -- the gradient ------------------------------------------------------------------------------
    def row_products(self, lams, L11, L21, Minv):
        """``(G, lev)``: per row the own-level entries of ``H^{-1} zt_i`` (blocks stacked) and the leverages."""
        lay = self.lay
        Q2 = lay.Q2
        Sinv = self._dense_inverse(Minv)
        q1 = self.q[0]
        D1 = np.empty((lay.J1, q1, q1))
        SEL = np.zeros((lay.nnz, q1))
        km.coupling_inverse_blocks(L11, L21, lay.ptr, lay.cols, Sinv, Q2, D1, SEL)
        ZT = np.empty((self.codes[0].shape[0], int(self.zoff[-1])))
        for k in range(self.K):
            ZT[:, self.zoff[k]:self.zoff[k + 1]] = self.Z[k] @ lams[k]
        G = np.empty_like(ZT)
        lev = np.empty(ZT.shape[0])
        km.row_inverse_products(ZT, self.zoff, self.codes[0], self.dcols, lay.row_slot, D1, SEL, Sinv, G, lev)
        return G, lev

    def _random_rows(self, theta, u):
        return self._zt_row(self.glmm.lambdas(theta), u)

    def _theta_grad(self, k, M):
        r, c = self.theta_pos[k]
        return M[r, c]

    def gradient(self, theta, beta, u, fac, want_jac=False):
        """:meth:`ScalarLaplaceGradient.gradient` for any terms; ``jac`` per block is ``(J_k, q_k, n_theta + p)``
        and ``g_u`` per block flattened ``(J_k q_k,)``."""
        theta = np.asarray(theta, dtype=float)
        g = self.glmm
        lams = g.lambdas(theta)
        L, lp = fac
        L11, L21 = lp.first_block_factors
        Minv = self._inverse_factor(L)
        G, lev = self.row_products(lams, L11, L21, Minv)
        mu, r, W, dW = self.state(theta, beta, u)
        a = lev * dW
        gu = self._zt_mul(lams, a)
        v = self._join(*self._solve(L11, L21, Minv, *self._split(gu)))
        e = a - 2.0 * r - W * self._zt_row(lams, v)
        nt = g.n_theta
        grad = np.empty(nt + g.p)
        grad[nt:] = g.X.T @ e
        for k in range(self.K):
            c = self.codes[k]
            P = e[:, None] * u[k][c] + r[:, None] * v[k][c] + 2.0 * W[:, None] * G[:, self.zoff[k]:self.zoff[k + 1]]
            grad[self.theta_off[k]:self.theta_off[k + 1]] = self._theta_grad(k, self.Z[k].T @ P)
        if not want_jac:
            return grad
        # du*/dx = -H^{-1} d(grad_u D / 2)/dx: Lambda_k[a, b] -> Lambda' Z' W (z_k[a] u_k[., b]) - e_b Z_k[a]' r,
        # beta_j -> Lambda' Z' W X_j
        cols = []
        for k in range(self.K):
            rows, cs = self.theta_pos[k]
            uk = u[k][self.codes[k]]
            for ra, cb in zip(rows, cs):
                zdu = self.Z[k][:, ra] * uk[:, cb]
                rhs = self._zt_mul(lams, W * zdu)
                rhs[k][:, cb] -= np.bincount(self.codes[k], weights=self.Z[k][:, ra] * r, minlength=self.J[k])
                cols.append(rhs)
        for j in range(g.p):
            cols.append(self._zt_mul(lams, W * g.X[:, j]))
        jac = [np.empty((self.J[k], self.q[k], len(cols))) for k in range(self.K)]
        for ci, rhs in enumerate(cols):
            sol = self._join(*self._solve(L11, L21, Minv, *self._split(rhs)))
            for k in range(self.K):
                jac[k][:, :, ci] = -sol[k]
        return grad, jac, [x.ravel() for x in gu]
