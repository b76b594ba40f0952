"""Newton steps with an analytic gradient for LMMs whose random terms are all scalar.

With several grouping factors of thousands of levels (crossed designs), one
evaluation of the profiled criterion is a dense Cholesky of the Schur complement
of the first factor: on random crossed designs that complement is dense however
it is ordered (every level of the second factor meets dozens of others through
the first), so the number of evaluations is what decides the fit time.

For scalar terms (random intercepts, ``(0 + x | g)``, ``||`` terms) the gradient
of the profiled deviance is exact and cheap from the factor at hand. With
``Lambda = diag(theta_k I_{J_k})``, ``K`` the penalised system over ``[u, beta]``
(ML: its ``u`` block), ``u_hat`` the modes and ``sigma^2 = r^2 / (N - p)`` (REML) or
``r^2 / N`` (ML),

``d f / d theta_k = (2 / theta_k) (J_k - tr_k(K^{-1})) - 2 theta_k ||Z_k' e||^2 / sigma^2``

(the score equation of REML/ML variance components in lme4's parametrisation; ``e``
the penalised residual, ``Z_k' e = u_hat_k / theta_k``). ``tr_k`` needs the diagonal of
``K^{-1}``: one triangular inverse of the dense factor plus one sparse pass over the
coupling rows (:mod:`skmixed._kernels.lmm_grad`). The Hessian is the average
information matrix of AI-REML (Gilmour, Thompson & Cullis 1995): with working
vectors ``w_e = e / sigma^2`` and ``w_k = Z_k Z_k' e / sigma^2``,
``AI_ab = w_a' P w_b / 2`` in the variance parameters ``(sigma^2, sigma^2 theta_k^2)``,
which needs only products with the cross-product blocks and forward solves with
the factor; it is mapped to ``theta`` and ``sigma^2`` profiled out by a Schur
complement. From the moment start the iteration takes 3–6 factorisations where a
derivative-free search takes ~45, and it stops on the gradient itself (the
Newton decrement), so ``converged`` states that the gradient vanishes.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .._kernels import lmm_grad as kg
from .._threads import blas_for_dense

__all__ = ["scalar_terms", "ScalarNewton"]


def scalar_terms(layout) -> bool:
    """Whether every random-effects block of ``layout`` has one column (the case handled here)."""
    return all(b.q == 1 for b in layout.blocks)


def profiled_deviance_hessian(AI, sigma2, theta):
    """The profiled deviance's Hessian in theta from the average information ``AI``.

    ``AI`` is the information of the log-likelihood in ``(sigma^2, sigma^2 theta_k^2)``
    (scalar terms); it is mapped to ``(sigma^2, theta)`` and ``sigma^2`` is profiled out
    (Schur complement); the deviance is ``-2`` log-likelihood.
    """
    K = theta.shape[0]
    Jac = np.zeros((K + 1, K + 1))
    Jac[0, 0] = 1.0
    Jac[1:, 0] = theta**2
    Jac[np.arange(1, K + 1), np.arange(1, K + 1)] = 2.0 * sigma2 * theta
    Hp = Jac.T @ AI @ Jac
    return 2.0 * (Hp[1:, 1:] - np.outer(Hp[1:, 0], Hp[0, 1:]) / Hp[0, 0])


class ScalarNewton:
    """Profiled criterion, exact gradient and AI Hessian of an all-scalar-terms :class:`LMMProblem`.

    Parameters
    ----------
    problem : LMMProblem
        Its layout must satisfy :func:`scalar_terms`.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._design.layout import BlockLayout, amalgamate
    >>> from skmixed._design.terms import RandomTerm
    >>> from skmixed._solvers.lmm import LMMProblem, cross_products
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.integers(0, 30, 600), rng.integers(0, 20, 600)
    >>> y = rng.normal(size=30)[a] + rng.normal(size=20)[b] + rng.normal(size=600)
    >>> X = np.ones((600, 1))
    >>> blocks = amalgamate([RandomTerm(0, True, (), ["(Intercept)"]), RandomTerm(1, True, (), ["(Intercept)"])],
    ...                     [30, 20])
    >>> lay = BlockLayout.build(blocks, [a, b], 1)
    >>> prob = LMMProblem(lay, cross_products(lay, X, y), reml=True)
    >>> theta, n_iter, converged = ScalarNewton(prob).minimize(prob.start())
    >>> bool(converged)
    True
    """

    def __init__(self, problem):
        self.problem = problem
        lay = problem.layout
        if not scalar_terms(lay):
            raise ValueError("ScalarNewton handles scalar random-effects terms only")
        self.J = np.array([b.n_levels for b in lay.blocks], dtype=float)
        self.n_eval = 0
        self.last = None  # what derivatives() last computed (reused for the results at the optimum)

    # -- one evaluation ----------------------------------------------------------------------
    def evaluate(self, theta):
        """The criterion at ``theta`` and the factor it came from (``(inf, None)`` where not PD)."""
        self.n_eval += 1
        # the thread setting is re-read per call (it only ever lowers the caller's): a core taken
        # by another process mid-fit drops the second thread at the next factorisation
        with blas_for_dense(self.problem.layout.m):
            f = self.problem.factor(theta)
        if f is None or not f[3] > 0:
            return np.inf, None
        return self.problem.criterion(*f[1:]), f

    def derivatives(self, theta, fac):
        """Exact gradient and average-information Hessian of the criterion at ``theta``.

        ``fac`` is what :meth:`evaluate` returned there (the problem still holds its first block).
        """
        with blas_for_dense(self.problem.layout.m):  # re-read per call, as in :meth:`evaluate`
            return self._derivatives(theta, fac)

    def _derivatives(self, theta, fac):
        prob = self.problem
        lay, cp = prob.layout, prob.cp
        L, _, _, r2 = fac
        m, Q2, p = lay.m, lay.Q2, lay.p
        K = len(lay.blocks)
        N = cp.n_obs
        nmp = N - p if prob.reml else N
        sigma2 = r2 / nmp
        L11, L21 = prob.first_block_factors
        ptr, cols = lay.ptr, lay.cols
        nc = Q2 + p
        # L22^{-1} over the u and beta columns: the diagonal of K^{-1} (its column norms, and the
        # first block's through the coupling rows) and every solve below (products, no copies)
        if nc:
            Minv, info = sla.lapack.dtrtri(np.asfortranarray(L[:nc, :nc]), lower=1)
            if info != 0:
                return None
            Minv = np.asfortranarray(Minv)
        else:
            Minv = np.zeros((0, 0), order="F")
        # modes and fixed effects from the y row of the factor
        v = Minv.T @ L[m - 1, :nc]
        u1 = prob.first_block_modes(v)[:, 0]
        beta = v[Q2:Q2 + p]
        spans = [(0, 0, lay.J1)] + [(1, int(lay.dense_off[k]), int(lay.dense_J[k])) for k in range(K - 1)]
        # REML: diag of K^{-1}; ML: of its u block (whose inverse factor is Minv's leading block)
        ncut = nc if prob.reml else Q2
        d2 = np.einsum("ij,ij->j", Minv[:ncut, :ncut], Minv[:ncut, :ncut])
        d1 = kg.first_block_inv_diag(L11, L21, ptr, cols, Minv, ncut)
        self.last = dict(theta=theta.copy(), fac=fac, Minv=Minv, L11=L11.copy(), L21=L21.copy(),
                         d=(d1, d2) if not prob.reml else None)
        tr = np.array([d1.sum() if part == 0 else d2[o:o + J].sum() for part, o, J in spans])

        # Z'e (and X'e, y'e) in one product with A: x = [-Lambda u; -beta; 1]
        s_dense = self._dense_scale(theta)
        x1 = -theta[0] * u1
        x2 = np.zeros(m)
        x2[:Q2] = -s_dense[:Q2] * v[:Q2]
        x2[Q2:Q2 + p] = -beta
        x2[m - 1] = 1.0
        t1, t2 = self._amul(x1, x2)
        d = [t1 if part == 0 else t2[o:o + J] for part, o, J in spans]  # Z_k' e
        dd = np.array([float(dk @ dk) for dk in d])
        g = np.zeros(K)
        pos = theta > 0
        g[pos] = 2.0 * ((self.J[pos] - tr[pos]) / theta[pos] - theta[pos] * dd[pos] / sigma2)

        # average information over (sigma^2, tau_k = sigma^2 theta_k^2); unscaled working vectors
        # w_e = e and w_k = Z_k d_k: G'w = [Lambda' Z' w; X' w] and their forward solves with F
        C1 = np.zeros((K + 1, lay.J1))
        C2 = np.zeros((K + 1, m))
        W = np.zeros((K + 1, K + 1))
        u2 = v[:Q2]
        C1[0] = u1
        C2[0, :Q2] = u2
        W[0, 0] = r2 - float(u1 @ u1) - float(u2 @ u2)
        T1 = np.zeros((K, lay.J1))
        T2 = np.zeros((K, m))
        for k, (part, o, J) in enumerate(spans):
            y1 = np.zeros(lay.J1)
            y2 = np.zeros(m)
            if part == 0:
                y1, y2 = self._amul(d[k], np.zeros(m))
            else:
                x = np.zeros(m)
                x[o:o + J] = d[k]
                y1, y2 = self._amul(np.zeros(lay.J1), x)
            T1[k], T2[k] = y1, y2
            C1[k + 1] = theta[0] * y1
            C2[k + 1, :Q2] = s_dense[:Q2] * y2[:Q2]
            C2[k + 1, Q2:nc] = y2[Q2:nc]
            W[0, k + 1] = W[k + 1, 0] = dd[k]
        for k, (part, o, J) in enumerate(spans):
            for j in range(k + 1):
                pj, oj, Jj = spans[j]
                tk = T1[k] if pj == 0 else T2[k, oj:oj + Jj]  # (Z_j' Z_k d_k)
                W[k + 1, j + 1] = W[j + 1, k + 1] = float(d[j] @ tk)
        Zs = np.empty((K + 1, lay.J1 + nc))
        for a in range(K + 1):
            c2 = C2[a, :nc].copy()
            z1 = kg.forward_first_block(L11, L21, ptr, cols, C1[a], c2, nc)
            z2 = Minv @ c2
            Zs[a, :lay.J1] = z1
            Zs[a, lay.J1:] = z2
        AI = (W - Zs @ Zs.T) / (2.0 * sigma2**3)
        return g, profiled_deviance_hessian(AI, sigma2, theta)

    def conditional_u_cov(self):
        """Per block, the (J, 1, 1) diagonal of ``(L_Z L_Z')^{-1}`` at the last :meth:`derivatives` point.

        What :meth:`LMMProblem.conditional_u_cov` computes, from the inverse factor already at hand
        (ML: the very diagonal the gradient used).
        """
        lay, last = self.problem.layout, self.last
        Q2 = lay.Q2
        if last["d"] is not None:
            d1, d2 = last["d"]
        else:
            Mz = last["Minv"][:Q2, :Q2]
            d2 = np.einsum("ij,ij->j", Mz, Mz)
            d1 = kg.first_block_inv_diag(last["L11"], last["L21"], lay.ptr, lay.cols, last["Minv"], Q2)
        out = [d1.reshape(-1, 1, 1)]
        for k in range(len(lay.blocks) - 1):
            o, J = int(lay.dense_off[k]), int(lay.dense_J[k])
            out.append(d2[o:o + J].reshape(-1, 1, 1).copy())
        return out

    def _dense_scale(self, theta):
        """Per dense column, its term's theta (1 for X and y)."""
        lay = self.problem.layout
        s = np.ones(lay.m)
        for k in range(len(lay.blocks) - 1):
            o, J = int(lay.dense_off[k]), int(lay.dense_J[k])
            s[o:o + J] = theta[k + 1]
        return s

    def _amul(self, x1, x2):
        """``A [x1; x2]`` split as (first block, dense part)."""
        lay, cp = self.problem.layout, self.problem.cp
        y1 = cp.A11[:, 0, 0] * x1
        y2 = cp.A22 @ x2
        kg.coupling_matvec(cp.A21[:, 0], lay.ptr, lay.cols, x1, x2, y1, y2)
        return y1, y2

    # -- the iteration -----------------------------------------------------------------------
    def minimize(self, theta0, max_iter=100, tol=1e-9):
        """Projected Newton iteration from ``theta0``; returns ``(theta, n_iter, converged)``.

        ``converged`` when the Newton decrement ``g' H^{-1} g`` over the free parameters is
        below ``tol`` (the criterion is then within ~``tol`` of its minimum) and parameters
        held at zero have no descent off the bound. A step is halved until the criterion
        does not increase; a parameter heading below zero shrinks a hundredfold instead and
        is held at zero once below 1e-6 (the caller probes off the bound).
        """
        prob = self.problem
        theta = np.maximum(np.asarray(theta0, dtype=float).copy(), 0.0)
        f, fac = self.evaluate(theta)
        if fac is None:
            theta = prob.start()
            f, fac = self.evaluate(theta)
            if fac is None:
                return theta, 0, False
        n_iter, converged = 0, False
        for n_iter in range(1, max_iter + 1):
            der = self.derivatives(theta, fac)
            if der is None:
                break
            g, H = der
            free = theta > 0
            if not free.any():
                converged = True
                break
            Hf = H[np.ix_(free, free)]
            gf = g[free]
            try:
                step_f = -np.linalg.solve(Hf + 1e-12 * np.trace(Hf) * np.eye(Hf.shape[0]), gf)
            except np.linalg.LinAlgError:
                break
            dec = -float(gf @ step_f)
            if not np.isfinite(dec):
                break
            if dec < tol:
                converged = True
                break
            step = np.zeros_like(theta)
            step[free] = step_f
            alpha, accepted = 1.0, False
            for _ in range(30):
                t2 = theta + alpha * step
                low = t2 < 0.01 * theta
                t2[low] = 0.01 * theta[low]
                t2[t2 < 1e-6] = 0.0
                f2, fac2 = self.evaluate(t2)
                if fac2 is not None and f2 <= f + 1e-12 * max(1.0, abs(f)):
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:
                # no decrease along the step: within rounding of the minimum if the decrement is tiny
                converged = dec < 1e3 * tol
                break
            theta, f, fac = t2, f2, fac2
        return theta, n_iter, converged
