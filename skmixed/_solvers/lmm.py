"""Profiled REML/ML for linear mixed models (lme4 / MixedModels.jl formulation).

``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``. For a given ``theta`` the
blocked Cholesky factor of ``Lambda' Z'Z Lambda + I`` and its Schur complements
with ``X`` and ``y`` give ``log|L|^2``, ``log|R_X|^2`` and the penalized residual
sum of squares ``r^2``, so that

* ML:   ``-2 l = log|L|^2 + N (1 + log(2 pi r^2 / N))``
* REML: ``log|L|^2 + log|R_X|^2 + (N - p)(1 + log(2 pi r^2 / (N - p)))``

where ``N`` is the (frequency-weighted) number of rows. Each evaluation works on
the cross-product blocks only (:mod:`skmixed._kernels.lmm`); the rows are read
once, by :func:`skmixed._kernels.gram.accumulate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from scipy import optimize

from .._design.layout import BlockLayout
from .._design.theta import ThetaMap
from .._kernels import gram
from .._kernels import lmm as klmm
from .._numdiff import central_hessian, richardson_gradient
from .._numdiff import gradient as fd_gradient
from .._threads import blas_for_dense
from . import first_block
from ._optim import covariance_probes, probe_boundary
from .crossed_moments import henderson_start
from .lmm_newton import ScalarNewton, scalar_terms

__all__ = ["CrossProducts", "LMMProblem", "LMMResult", "cross_products", "aliased_keep", "drop_aliased",
           "rows_factor"]

_LOG2PI = np.log(2.0 * np.pi)
# dense parts up to this many columns (m x m doubles: 128 KiB) are downdated level by level, in cache
_CACHED_DENSE = 128


@dataclass
class CrossProducts:
    """Sufficient statistics of an LMM: the blocks of ``A`` (sums over rows)."""

    A11: np.ndarray
    A21: np.ndarray
    A22: np.ndarray
    n_obs: float  # sum of frequency weights

    def __add__(self, other):
        return CrossProducts(self.A11 + other.A11, self.A21 + other.A21, self.A22 + other.A22,
                             self.n_obs + other.n_obs)


def cross_products(layout: BlockLayout, X, y, weights=None, n_threads=None, z_source=None, x_shift=None,
                   y_shift=0.0) -> CrossProducts:
    """One pass over the rows filling the blocks of ``A`` for ``layout``.

    ``z_source`` (default ``X``) is the matrix the random-effect columns are read
    from, so the fixed part may have other (or no) columns. ``x_shift`` and
    ``y_shift`` are subtracted from the fixed columns and ``y`` on the fly
    (centring without a copy of X); the random-effect columns are never shifted.
    """
    import numba

    n = X.shape[0]
    zs = X if z_source is None else z_source
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    xs = np.zeros(X.shape[1]) if x_shift is None else np.ascontiguousarray(x_shift, dtype=np.float64)
    b1 = layout.blocks[0]
    Z1 = b1.z_rows(zs)
    dense = layout.blocks[1:]
    if dense:
        Zd = np.ascontiguousarray(np.hstack([b.z_rows(zs) for b in dense]))
    else:
        Zd = np.empty((n, 0))
    zoff = np.zeros(len(dense), dtype=np.int64)
    if dense:
        zoff[1:] = np.cumsum(layout.dense_q)[:-1]
    threads = numba.get_num_threads() if n_threads is None else n_threads
    # small problems are not worth the per-thread buffers; nor are rows that touch a few entries of
    # a large dense part (crossed factors): each chunk zeroes, sums and mirrors its own m x m buffer,
    # which costs more than the rows themselves (60k rows, m = 2,000: 0.25-1.2 s chunked, 0.03 s serial)
    n_chunks = int(max(1, min(threads, n // 20_000)))
    nv = Zd.shape[1] + X.shape[1] + 1
    if n * (nv * (nv + 1) // 2 + nv * Z1.shape[1]) < 4 * layout.m * layout.m:
        n_chunks = 1
    args = (layout.codes1, Z1, layout.dense_codes, layout.row_slot, Zd, zoff, layout.dense_q, layout.dense_off,
            layout.Q2, X, xs, y, float(y_shift), w, layout.ptr, layout.J1)
    if n_chunks == 1:  # no parallel region to start for one chunk (partial_fit's small chunks)
        A11, A21, A22 = gram.accumulate_serial(*args)
    else:
        A11, A21, A22 = gram.accumulate(*args, n_chunks)
    return CrossProducts(A11, A21, A22, float(n if weights is None else w.sum()))


@dataclass
class LMMResult:
    theta: np.ndarray
    beta: np.ndarray
    vcov_beta: np.ndarray
    sigma: float
    u: list  # per block, (J, q) spherical modes
    b: list  # per block, (J, q) random effects
    condvar: list  # per block, (J, q, q) conditional covariances of b
    lambdas: list  # per block (q, q)
    objective: float  # REML criterion or deviance
    loglik: float
    n_iter: int
    converged: bool
    message: str


class LMMProblem:
    """The profiled deviance of one LMM as a function of ``theta``.

    Parameters
    ----------
    layout : BlockLayout
    cp : CrossProducts
    reml : bool
    """

    #: a progress bar (``update``, ``set_postfix``) told of every criterion evaluation, or None
    progress = None

    def __init__(self, layout: BlockLayout, cp: CrossProducts, reml: bool = True):
        self.layout = layout
        self.cp = cp
        self.reml = reml
        self.p = layout.p
        blocks = layout.blocks
        self.theta_map = ThetaMap.for_blocks(blocks)
        self.n_theta = self.theta_map.n_theta
        self.lower = self.theta_map.lower
        dq = layout.dense_q
        self._lam_off = np.zeros(len(dq), dtype=np.int64)
        if len(dq):
            self._lam_off[1:] = np.cumsum(dq * dq)[:-1]
        self._L11 = np.zeros((layout.J1, layout.q1, layout.q1))
        self._L21 = np.zeros((layout.nnz, layout.q1))
        # contiguous views for the all-scalar fast path of the first block
        self._a11 = np.ascontiguousarray(cp.A11[:, 0, 0]) if layout.q1 == 1 else None
        self._a21 = np.ascontiguousarray(cp.A21[:, 0]) if layout.q1 == 1 else None
        self.n_eval = 0
        self._size_classes_cache = False  # not computed yet (None: not applicable)
        self._pending_lam1 = None  # L11/L21 still to fill for this first-block Lambda (size classes)
        self._at_optimum = None  # a ScalarNewton holding the factor at the optimum, if any
        self.optimizer = ""  # the optimiser the last optimize() ran (named by a convergence warning)

    # -- theta <-> Lambda ---------------------------------------------------------------
    def start(self) -> np.ndarray:
        """lme4's start: 1 on the diagonals, 0 elsewhere."""
        return self.theta_map.start()

    def moment_start(self) -> np.ndarray:
        """ANOVA-style start for random intercepts, from the blocks already formed.

        ``tau_k^2 = (SSB_k - (J_k - 1) s^2) / (N - sum n_l^2 / N)`` per intercept-only
        term, ``s^2`` the residual variance left after the terms, iterated twice;
        ``theta_k = tau_k / s``. Other terms keep lme4's start. Used where an
        evaluation is a large dense Cholesky, so a start near the optimum saves many.
        """
        lay, cp = self.layout, self.cp
        theta = self.start()
        if len(lay.blocks) > 1 and all(b.intercept_slopes == [-1] for b in lay.blocks):
            # crossed random intercepts: the moment equations of all factors together
            th = self._henderson_start()
            if th is not None:
                return th
        N = cp.n_obs
        m = lay.m
        vy = max(cp.A22[m - 1, m - 1] / N, 1e-300)
        stats = []  # (position in theta, SSB, J, N - sum n^2 / N)
        pos = 0
        for k, blk in enumerate(lay.blocks):
            if blk.intercept_slopes == [-1]:
                if k == 0:
                    n_l = cp.A11[:, 0, 0]
                    s_l = cp.A21[lay.ptr[1:] - 1, 0]
                else:
                    o, J = lay.dense_off[k - 1], blk.n_levels
                    idx = np.arange(o, o + J)
                    n_l = cp.A22[idx, idx]
                    s_l = cp.A22[m - 1, idx]
                ok = n_l > 0
                ssb = float((s_l[ok] ** 2 / n_l[ok]).sum())
                stats.append((pos, ssb, int(ok.sum()), N - float((n_l**2).sum()) / N))
            pos += blk.n_theta
        if not stats:
            return theta
        s2 = vy
        for _ in range(2):
            taus = [max(0.0, (ssb - (J - 1) * s2) / max(d, 1e-300)) for _, ssb, J, d in stats]
            s2 = max(vy - sum(taus), 0.05 * vy)
        for (p_, *_), t2 in zip(stats, taus):
            theta[p_] = min(max(np.sqrt(t2 / s2), 0.05), 10.0)
        return theta

    def _henderson_start(self):
        """:func:`.crossed_moments.henderson_start` from the cross-product blocks (random intercepts only)."""
        lay, cp = self.layout, self.cp
        m, p, Q2 = lay.m, lay.p, lay.Q2
        A22, a21 = cp.A22, cp.A21[:, 0]
        xy0 = lay.ptr[1:] - (p + 1)
        n, ZX, Zy = [cp.A11[:, 0, 0]], [a21[xy0[:, None] + np.arange(p)]], [a21[lay.ptr[1:] - 1]]
        spans = [(int(o), int(J)) for o, J in zip(lay.dense_off, lay.dense_J)]
        for o, J in spans:
            n.append(np.diagonal(A22)[o:o + J])
            ZX.append(A22[o:o + J, Q2:Q2 + p])
            Zy.append(A22[o:o + J, m - 1])
        lev = np.repeat(np.arange(lay.J1), np.diff(lay.ptr))
        pairs = {}
        for l, (o, J) in enumerate(spans, start=1):
            sel = (lay.cols >= o) & (lay.cols < o + J) & (a21 != 0)
            pairs[0, l] = (lev[sel], lay.cols[sel] - o, a21[sel])
            for h, (o2, J2) in enumerate(spans[:l - 1], start=1):
                i, j = np.nonzero(A22[o2:o2 + J2, o:o + J])
                pairs[h, l] = (i, j, A22[o2 + i, o + j])
        return henderson_start(cp.n_obs, A22[Q2:Q2 + p, Q2:Q2 + p], A22[Q2:Q2 + p, m - 1], A22[m - 1, m - 1],
                               n, ZX, Zy, pairs)

    def lambdas(self, theta) -> list:
        return self.theta_map.lambdas(theta)

    # -- the profiled deviance -------------------------------------------------------------
    def factor(self, theta):
        """Factor the penalised system at ``theta``.

        Returns ``(L, ldL2, ldRX2, r2)`` — the dense part's lower Cholesky factor
        (random-effect rows, then ``X``, then ``y``), ``log|L_Z|^2``, ``log|R_X|^2``
        and the penalised residual sum of squares — or ``None`` where the
        system is not positive definite. The first block's factors stay in this
        problem until the next call (:meth:`first_block_modes`,
        :meth:`conditional_u_cov` read them); ``L`` is the caller's.
        """
        lay = self.layout
        lams = self.lambdas(theta)
        classes = self._size_classes()
        if classes is not None:
            return self._factor_by_size_class(lams[0][0, 0], *classes)
        self._pending_lam1 = None
        s, vector_terms = self._dense_scaling(lams[1:])
        if lay.q1 == 1 and not vector_terms:
            ld11 = klmm.level_factors_scalar(self._a11, self._a21, lay.ptr, lay.cols, lams[0][0, 0], s,
                                             self._L11, self._L21)
        elif len(lams) == 1:
            ld11 = klmm.level_factors_one(self.cp.A11, self.cp.A21, lay.ptr, lams[0], self._L11, self._L21)
        else:
            lam_d = np.concatenate([lam.ravel() for lam in lams[1:]])
            ld11 = klmm.level_factors(self.cp.A11, self.cp.A21, lay.ptr, lay.cols, lams[0], lam_d,
                                      self._lam_off, lay.dense_q, lay.dense_off, lay.Q2, self._L11, self._L21)
        if not np.isfinite(ld11):
            return None
        M = self._scale_dense(s, vector_terms)
        if lay.m <= _CACHED_DENSE:
            klmm.downdate_levels(M, self._L21, lay.ptr, lay.cols)
        else:
            klmm.downdate_rows(M, self._L21, lay.ptr, lay.cols, *lay.dense_row_pattern)
        try:
            L = sla.cholesky(M, lower=True, check_finite=False, overwrite_a=True)  # M is ours
        except (sla.LinAlgError, ValueError):
            return None
        d = np.diag(L)
        if not np.all(d[:-1] > 0):
            return None
        Q2, p = lay.Q2, lay.p
        ldL2 = ld11 + 2.0 * np.log(d[:Q2]).sum()
        ldRX2 = 2.0 * np.log(d[Q2:Q2 + p]).sum()
        r2 = d[-1] ** 2
        return L, ldL2, ldRX2, r2

    def _size_classes(self):
        """One random intercept and nothing else: the levels grouped by their ``Z'Z`` entry.

        The first block's level ``j`` then enters the profiled deviance only through
        ``log(lam^2 a11_j + 1)`` and ``lam^2 / (lam^2 a11_j + 1) a21_j a21_j'``, so levels
        with equal ``a11_j`` (equal weighted sizes: with unit weights a handful of
        distinct values whatever the number of groups) share a term. Returns the
        distinct values, their counts and the per-class sums ``S_u`` of ``a21_j a21_j'``
        (computed once), or None where that does not pay (few levels, or about as
        many classes as levels).
        """
        if self._size_classes_cache is False:
            self._size_classes_cache = None
            lay = self.layout
            m = lay.m
            if lay.q1 == 1 and lay.Q2 == 0 and lay.J1 >= 1000 and lay.nnz == lay.J1 * m:
                au, inv, nu = np.unique(self._a11, return_inverse=True, return_counts=True)
                if au.size * 8 <= lay.J1 and np.array_equal(lay.cols[:m], np.arange(m)):
                    S = klmm.size_class_grams(self._a21, inv.astype(np.int64), au.size, m)
                    self._size_classes_cache = (au, nu.astype(float), S)
        return self._size_classes_cache

    def _factor_by_size_class(self, lam1, au, nu, S):
        """:meth:`factor` from :meth:`_size_classes` (cost independent of the number of levels)."""
        t = lam1 * lam1 * au + 1.0
        ld11 = float(nu @ np.log(t))
        M = self.cp.A22 - np.tensordot(lam1 * lam1 / t, S, axes=1)
        self._pending_lam1 = lam1  # the per-level factors are filled when asked for
        try:
            L = sla.cholesky(M, lower=True, check_finite=False, overwrite_a=True)
        except (sla.LinAlgError, ValueError):
            return None
        d = np.diag(L)
        if not np.all(d[:-1] > 0):
            return None
        p = self.layout.p
        return L, ld11, 2.0 * np.log(d[:p]).sum(), d[-1] ** 2

    def _fill_first_block(self):
        """The per-level ``L11``/``L21`` of the last :meth:`factor` call, where it deferred them."""
        lam1 = self._pending_lam1
        if lam1 is not None:
            lay = self.layout
            klmm.level_factors_scalar(self._a11, self._a21, lay.ptr, lay.cols, lam1, np.ones(lay.m),
                                      self._L11, self._L21)
            self._pending_lam1 = None

    def _dense_scaling(self, lams_dense):
        """Per dense column, the scalar terms' Lambda (1 elsewhere), and the vector terms."""
        lay = self.layout
        s = np.ones(lay.m)
        vector_terms = []
        for k, lam in enumerate(lams_dense):
            o, q, J = lay.dense_off[k], lay.dense_q[k], lay.dense_J[k]
            if q == 1:
                s[o:o + J] = lam[0, 0]
            else:
                vector_terms.append((o, q, J, lam))
        return s, vector_terms

    def _scale_dense(self, s, vector_terms):
        """``Lambda2' A22 Lambda2 + I`` on the random-effect part of the dense block.

        Only the lower triangle is meaningful (the Cholesky reads no other).
        Scalar terms are a diagonal scaling ``s``, done in one pass over the triangle;
        vector terms apply their ``q x q`` factor to each level's rows and columns.
        """
        lay = self.layout
        if not vector_terms:
            M = np.empty_like(self.cp.A22)
            klmm.scaled_lower(self.cp.A22, s, lay.Q2, M)
            return M
        M = self.cp.A22 * s[:, None]
        M *= s[None, :]
        for o, q, J, lam in vector_terms:
            rows = M[o:o + J * q].reshape(J, q, -1)
            M[o:o + J * q] = np.einsum("ba,jbc->jac", lam, rows).reshape(J * q, -1)
            cols = M[:, o:o + J * q].reshape(-1, J, q)
            M[:, o:o + J * q] = np.einsum("rjb,ba->rja", cols, lam).reshape(-1, J * q)
        idx = np.arange(lay.Q2)
        M[idx, idx] += 1.0
        return M

    @property
    def first_block_factors(self):
        """``(L11, L21)`` of the last :meth:`factor` call: the first block's factors and coupling rows."""
        self._fill_first_block()
        return self._L11, self._L21

    def criterion(self, ldL2, ldRX2, r2) -> float:
        """REML criterion or deviance from the pieces :meth:`factor` returns."""
        return self._criterion(ldL2, ldRX2, r2)

    def _criterion(self, ldL2, ldRX2, r2):
        N = self.cp.n_obs
        if self.reml:
            nmp = N - self.p
            return ldL2 + ldRX2 + nmp * (1.0 + _LOG2PI + np.log(r2 / nmp))
        return ldL2 + N * (1.0 + _LOG2PI + np.log(r2 / N))

    def objective(self, theta) -> float:
        """REML criterion (``reml=True``) or deviance (``-2 log L``) at ``theta``."""
        self.n_eval += 1
        f = self.factor(np.asarray(theta, dtype=float))
        if f is None or f[3] <= 0:
            return np.inf
        crit = self._criterion(*f[1:])
        if self.progress is not None:  # a tqdm bar (the estimator's verbose=)
            self.progress.update(1)
            self.progress.set_postfix(criterion=f"{crit:.10g}", refresh=False)
        return crit

    # -- optimisation ----------------------------------------------------------------------
    def _gradient(self, theta, f0):
        # central differences (one-sided at the boundary): evaluations are cheap
        # and independent of n, and central differences keep L-BFGS-B's final
        # iterates precise enough to reach lme4's optimum to ~1e-8
        return fd_gradient(self.objective, theta, 1e-6, self.lower, f0=f0)

    def optimize(self, theta0=None, max_iter=500, tol=1e-10):
        """Minimise the profiled criterion (see :meth:`_optimize`).

        Dense parts of a few hundred to a few thousand rows are factorised with
        one BLAS thread: per call the second thread gains little, and under load
        it costs an order of magnitude.
        """
        with blas_for_dense(self.layout.m):
            return self._optimize(theta0, max_iter, tol)

    def _optimize(self, theta0=None, max_iter=500, tol=1e-10):
        """Minimise the profiled criterion over theta (box-bounded at 0 for diagonals).

        Small dense parts (one grouping factor, or a few small crossed ones):
        L-BFGS-B on central-difference gradients — evaluations cost microseconds,
        and the gradient-based iterates land on lme4's optimum to ~1e-9.
        Large dense parts (crossed factors with thousands of levels, where one
        evaluation is a dense Cholesky): COBYQA, the bounded derivative-free
        successor of lme4's BOBYQA, which needs about half the evaluations.
        """
        large = self.layout.m > 200
        if large and len(self.layout.blocks) > 1 and scalar_terms(self.layout):
            return self._optimize_newton(theta0, max_iter)
        radius = 0.5
        if theta0 is None:
            theta0 = self.start()
            if large:
                theta0 = self.moment_start()
                # a start from the moments is within ~10% where every term is a random
                # intercept: a small first trust region then saves a quarter of the evaluations
                if all(b.intercept_slopes == [-1] for b in self.layout.blocks):
                    radius = 0.1
        theta0 = np.asarray(theta0, dtype=float)
        bounds = self.theta_map.bounds()
        self.optimizer = "COBYQA" if large else "L-BFGS-B"
        if large:
            res = optimize.minimize(self.objective, theta0, method="COBYQA", bounds=bounds,
                                    options={"maxfev": max(50, 20 * max_iter), "initial_tr_radius": radius,
                                             # theta to ~5e-6, the criterion to ~1e-8 (below
                                             # lme4's own on the reference fits); each further
                                             # decade costs ~10 evaluations of a dense Cholesky
                                             "final_tr_radius": 1e-5})
            converged = bool(res.success)
            n_iter = int(res.nit) if hasattr(res, "nit") else int(res.nfev)
        else:
            def fun(t):
                f = self.objective(t)
                if not np.isfinite(f):
                    return 1e300, np.zeros_like(t)
                return f, self._gradient(t, f)

            n_iter = 0
            start = theta0
            for _ in range(6):
                res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                        options={"maxiter": max_iter, "ftol": tol * 1e-3, "gtol": 1e-7,
                                                 "maxls": 50})
                n_iter += int(res.nit)
                x = np.asarray(res.x, dtype=float)
                # The criterion depends on a standard deviation through its square, so a
                # zero SD is always a stationary point: a long first step that lands on
                # the bound can stop there although the criterion falls inside. Probe
                # off the bound and restart from there when it does.
                start = self._escape_boundary(x, res.fun)
                if (start is None and res.nit > 0
                        and self._projected_gradient(x, res.jac) > max(1e-3, 1e-7 * abs(res.fun))):
                    # L-BFGS-B also stops on its relative-reduction test when a line search
                    # from a poor quasi-Newton model gains next to nothing, with the gradient
                    # still far from zero (seen near a small SD: 2.4e-4 above lme4's
                    # criterion, gradient 0.46): restart it from there with fresh memory
                    start = x
                if start is None:
                    break
            if self.n_theta <= 10 and np.any((self.lower == 0) & (res.x <= 1e-6)):
                res = self._boundary_restarts(fun, res, bounds, max_iter, tol)
            # status 2 = "ABNORMAL" line search: L-BFGS-B cannot improve further on the
            # finite-difference gradient; the Newton polish below decides convergence
            converged = bool(res.success)
        theta = np.asarray(res.x, dtype=float)
        fbest = self.objective(theta)
        # snap parameters that sit within rounding of the boundary onto it
        # (a singular fit), keeping the move only if it does not worsen the criterion
        near = (self.lower == 0) & (theta < 1e-6)
        if near.any():
            t2 = theta.copy()
            t2[near] = 0.0
            if self.objective(t2) <= fbest + 1e-10:
                theta = t2
        if not large and self.n_theta <= 20:
            theta, at_optimum = self.polish(theta)
            converged = converged or at_optimum
        return theta, n_iter, converged, str(res.message)

    def _boundary_restarts(self, fun, res, bounds, max_iter, tol):
        """A small fit that ended with a standard deviation at 0 may sit on a local branch of the
        boundary: with a zero SD its column's correlations are arbitrary, and another face (the
        other SD at 0, the correlation's other sign, or every variance at 0) can be lower. Seen
        with 5 groups and 19 rows: 0.14 and 0.18 log-likelihood units below lmer's optimum.
        Restarts from the point with the zero SDs moved off the bound and the correlations'
        signs flipped, and from the usual start; the all-zero point is compared too. The
        best wins only when lower beyond rounding. Cost: only for fits ending on a bound."""
        x = np.asarray(res.x, dtype=float)
        best, fbest = res, float(res.fun)
        zero = np.zeros_like(x)
        offdiag = ~np.isfinite(self.lower)
        flip = x.copy()
        flip[offdiag] = -flip[offdiag]
        flip[(self.lower == 0) & (x <= 1e-6)] = 0.5
        for start in (flip, np.asarray(self.start(), dtype=float)):
            r = optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options={"maxiter": max_iter, "ftol": tol * 1e-3, "gtol": 1e-7, "maxls": 50})
            if r.fun < fbest - 1e-10 * max(1.0, abs(fbest)):
                best, fbest = r, float(r.fun)
        f0 = self.objective(zero)
        if np.isfinite(f0) and f0 < fbest - 1e-10 * max(1.0, abs(fbest)):
            best = optimize.OptimizeResult(x=zero, fun=f0, jac=np.zeros_like(zero), nit=0, success=True,
                                           message="every variance at 0 (the fixed-effects model) is lower")
        return best

    def _optimize_newton(self, theta0, max_iter):
        """Large dense parts with scalar terms only: Newton on the exact gradient (:mod:`.lmm_newton`).

        A zero variance the iteration ends on is probed off the bound (:meth:`_escape_boundary`)
        and the iteration resumed from a better point if there is one.
        """
        newton = ScalarNewton(self)
        self.optimizer = "Newton"
        theta = self.moment_start() if theta0 is None else np.asarray(theta0, dtype=float)
        n_iter = 0
        for _ in range(4):
            theta, it, converged = newton.minimize(theta, max_iter=max_iter)
            n_iter += it
            if not np.any(theta == 0):
                break
            start = self._escape_boundary(theta, self.objective(theta))
            if start is None:
                break
            theta = start
        # the factor and inverse at the optimum serve the results (no second factorisation)
        self._at_optimum = newton if newton.last is not None and np.array_equal(newton.last["theta"], theta) \
            else None
        msg = "gradient vanishes (Newton decrement below 1e-9)" if converged else "Newton iteration stalled"
        return theta, n_iter, converged, msg

    def polish(self, theta, max_steps=5):
        """Newton steps on central-difference derivatives, from the optimiser's result.

        The optimiser stops somewhere in its tolerance ball (~1e-7 in theta), and
        where depends on its start. The zero of the finite-difference gradient
        does not, so fits reached from different starts (``partial_fit``'s warm
        starts, distributed fits) agree to ~1e-9 after this. The criterion carries
        rounding noise (~1e-12 relative, from the Schur complements), so the
        gradient is a Richardson-extrapolated central difference on steps of
        5e-3 and 2.5e-3 (truncation O(h^4), noise / h small); the Hessian uses
        steps of 2e-3. Parameters on or near their bound (< 1e-2) stay; a step
        is taken only when the Hessian is positive definite, the step is small
        (we are at the optimum already) and the criterion does not get worse
        beyond rounding.

        Returns ``(theta, at_optimum)``: ``at_optimum`` when the Hessian of the free
        parameters is positive definite and the Newton step is negligible — the
        optimiser's answer is a resolved minimum whatever its own stopping message.
        """
        theta = np.asarray(theta, dtype=float).copy()
        idx = np.flatnonzero(~((self.lower == 0) & (theta < 1e-2)))
        if idx.size == 0:
            return theta, True
        f0 = self.objective(theta)
        if not np.isfinite(f0):
            return theta, False
        at_optimum = False
        H = None
        for _ in range(max_steps):
            scale = np.maximum(1.0, np.abs(theta[idx]))
            hg = 5e-3 * scale
            g = richardson_gradient(self.objective, theta, hg, idx)
            if H is None:  # the Hessian barely changes over these tiny steps: compute it once
                H = central_hessian(self.objective, theta, 2e-3 * scale, f0=f0, idx=idx)
                if not np.all(np.isfinite(H)):
                    break
                try:
                    cho = sla.cho_factor(H)
                except (sla.LinAlgError, ValueError):
                    break
            if not np.all(np.isfinite(g)):
                break
            step = -sla.cho_solve(cho, g)
            rel = np.max(np.abs(step) / scale)
            if rel > 1e-3:
                break  # not at a well-resolved optimum: leave the optimiser's answer
            at_optimum = True
            t2 = theta.copy()
            t2[idx] += step
            if np.any(t2 < self.lower):
                break
            f2 = self.objective(t2)
            if not f2 <= f0 + 1e-10 * max(1.0, abs(f0)):
                break
            theta, f0 = t2, f2
            if rel < 1e-11:
                break
        return theta, at_optimum

    def _projected_gradient(self, theta, g):
        """Largest gradient component not pointing out of the box (zero-bounded SDs at 0 may push outwards)."""
        g = np.asarray(g, dtype=float)
        free = ~((self.lower == 0) & (theta <= 0.0) & (g > 0.0))
        return float(np.max(np.abs(g[free]), initial=0.0))

    def _escape_boundary(self, theta, f0):
        """A better point off the zero bound, or None when the boundary point is a minimum."""
        at = np.flatnonzero((self.lower == 0) & (theta < 1e-4))
        start = probe_boundary(self.objective, theta, self.lower, f0, at=at)
        if start is None and len(at):
            start = self._probe_covariance(theta, f0)
        return start

    def _probe_covariance(self, theta, f0):
        """The first covariance-scale probe (:func:`._optim.covariance_probes`) that improves ``f0``."""
        thresh = f0 - 1e-9 * max(1.0, abs(f0))
        for t in covariance_probes(theta, self.theta_map):
            f = self.objective(t)
            if np.isfinite(f) and f < thresh:
                return t
        return None

    # -- results ---------------------------------------------------------------------------
    def first_block_modes(self, v) -> np.ndarray:
        """The first block's conditional modes ``u1`` (J1, q1) given the dense part's solution ``v``.

        ``v`` holds the other terms' ``u`` then ``beta``, from the last :meth:`factor` call.
        """
        lay = self.layout
        self._fill_first_block()
        if len(lay.blocks) == 1:
            return first_block.modes(self._L11, self._L21, lay.p, v)
        return klmm.solve_first_block(self._L11, self._L21, lay.ptr, lay.cols, v, 0)

    def conditional_u_cov(self, L) -> list:
        """Per block, the (J, q, q) diagonal blocks of ``(L_Z L_Z')^{-1}`` (conditional covariances of u / sigma^2).

        ``L`` is the dense factor from the last :meth:`factor` call (whose ``L11``/``L21``
        this problem still holds).
        """
        lay = self.layout
        Q2 = lay.Q2
        if Q2:
            # LAPACK's triangular inverse: half the work of solving against the identity
            Minv, info = sla.lapack.dtrtri(L[:Q2, :Q2], lower=1)
            if info != 0:
                raise np.linalg.LinAlgError("the random-effects factor is singular")
        else:
            Minv = np.zeros((0, 0))
        self._fill_first_block()
        if len(lay.blocks) == 1:
            return [first_block.condvar(self._L11)]
        cvu = [klmm.first_block_condvar(self._L11, self._L21, lay.ptr, lay.cols, Minv, Q2)]
        for k, blk in enumerate(lay.blocks[1:]):
            o, q, J = lay.dense_off[k], blk.q, blk.n_levels
            Mk = Minv[:, o:o + J * q].reshape(Q2, J, q)
            cvu.append(np.einsum("rja,rjb->jab", Mk, Mk))
        return cvu

    def result(self, theta, n_iter=0, converged=True, message="") -> LMMResult:
        lay = self.layout
        done = self._at_optimum
        if done is not None and np.array_equal(done.last["theta"], theta):
            f = done.last["fac"]
            self._L11[...] = done.last["L11"]
            self._L21[...] = done.last["L21"]
            self._pending_lam1 = None
        else:
            done = None
            f = self.factor(theta)
        if f is None:
            raise ValueError("the model matrix is rank deficient at the optimum; cannot compute estimates")
        L, ldL2, ldRX2, r2 = f
        Q2, p, m = lay.Q2, lay.p, lay.m
        crit = self._criterion(ldL2, ldRX2, r2)
        N = self.cp.n_obs
        # dense solution v = [u2; beta] from the y row of the factor
        c = L[m - 1, :m - 1]
        if done is not None:
            v = done.last["Minv"].T @ c
        else:
            v = sla.solve_triangular(L[:m - 1, :m - 1], c, lower=True, trans="T", check_finite=False)
        u1 = self.first_block_modes(v)
        beta = v[Q2:Q2 + p]
        sigma2 = r2 / (N - p) if self.reml else r2 / N
        sigma = float(np.sqrt(sigma2))
        RX = L[Q2:Q2 + p, Q2:Q2 + p]
        RXinv = sla.solve_triangular(RX, np.eye(p), lower=True, check_finite=False)
        vcov = sigma2 * (RXinv.T @ RXinv)
        lams = self.lambdas(theta)
        cvu = done.conditional_u_cov() if done is not None else self.conditional_u_cov(L)
        us, bs, cvs = [u1], [], []
        for k, blk in enumerate(lay.blocks[1:]):
            o, q, J = lay.dense_off[k], blk.q, blk.n_levels
            us.append(v[o:o + J * q].reshape(J, q))
        for u, lam, cu in zip(us, lams, cvu):
            bs.append(u @ lam.T)
            cvs.append(sigma2 * np.einsum("ab,jbc,dc->jad", lam, cu, lam))
        # the log-likelihood at the optimum (REML: the restricted one, as lme4 reports)
        loglik = -0.5 * crit
        return LMMResult(theta=theta, beta=beta, vcov_beta=vcov, sigma=sigma, u=us, b=bs, condvar=cvs,
                         lambdas=lams, objective=crit, loglik=loglik, n_iter=n_iter, converged=converged,
                         message=message)


def aliased_keep(F: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Columns to keep of a design whose cross-product matrix is ``F'F``: lme4's rank rule.

    LINPACK's limited-pivoting QR (``dqrdc2``, which lme4's ``chkRank.drop.cols``
    uses through ``qr(X, tol = 1e-7)``): Householder steps in column order; a column
    whose residual, after the kept columns are projected out, has a norm at most
    ``tol`` times its own norm is moved aside (dropped). ``F`` is any matrix with
    the design's cross-products: the rows themselves or a triangular factor (the
    residual norms are invariant to an orthogonal transformation of the rows).
    """
    F = np.asarray(F, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->j", F, F))
    ok = np.isfinite(norms) & (norms > 0)
    A = F[:, ok] / norms[ok]
    cols = np.flatnonzero(ok)
    keep = []
    k = 0
    for i, c in enumerate(cols):
        if k >= A.shape[0]:
            break
        x = A[k:, i]
        nrm = float(np.sqrt(x @ x))
        if not nrm > tol:
            continue
        keep.append(int(c))
        v = x.copy()
        v[0] += np.copysign(nrm, x[0])
        vv = float(v @ v)
        if vv > 0 and i + 1 < A.shape[1]:
            A[k:, i + 1:] -= np.outer(v, (2.0 / vv) * (v @ A[k:, i + 1:]))
        k += 1
    return np.array(keep, dtype=np.int64)


def rows_factor(X: np.ndarray, weights=None, block: int = 65536) -> np.ndarray:
    """A ``p x p`` triangular ``R`` with ``R'R = X'WX``, by QR over row blocks (no copy of ``X``).

    Householder QR is backward stable column by column, so the rank rule of
    :func:`aliased_keep` applied to ``R`` resolves residuals of ~1e-15 of a
    column's norm (the cross-product matrix itself resolves only ~1e-8).
    """
    n, p = X.shape
    R = np.zeros((0, p))
    sw = None if weights is None else np.sqrt(np.asarray(weights, dtype=np.float64))
    for s in range(0, n, block):
        Xb = X[s:s + block]
        if sw is not None:
            Xb = Xb * sw[s:s + block, None]
        R = sla.qr(np.vstack([R, Xb]), mode="r", check_finite=False)[0][:p]
    return R


def drop_aliased(XtX: np.ndarray, tol: float = 1e-7, shift=None) -> np.ndarray:
    """Indices of columns to keep from the cross-product matrix ``X'WX``: lme4's rule (:func:`aliased_keep`).

    A factor of ``XtX`` is formed from its eigen-decomposition after scaling to unit
    diagonal. ``shift`` (optional, ``(p,)``, 0 for an intercept in column 0) says
    that ``XtX`` is that of ``X - 1 shift'`` (the columns centred, which keeps the
    digits when means are large against spreads) while the rule must judge the raw
    ``X``: the factor is mapped back exactly (a unit-triangular change of basis).
    Prefer :func:`aliased_keep` on :func:`rows_factor` when the rows are at hand.
    """
    XtX = np.asarray(XtX, dtype=np.float64)
    p = XtX.shape[0]
    if p == 0:
        return np.arange(0)
    d = np.sqrt(np.clip(np.diag(XtX), 0, None))
    ok = np.isfinite(d) & (d > 0)
    F = np.zeros((p, p))
    if ok.any():
        S = XtX[np.ix_(ok, ok)] / np.outer(d[ok], d[ok])
        lam, V = np.linalg.eigh((S + S.T) / 2)
        Fo = (np.sqrt(np.clip(lam, 0, None))[:, None] * V.T) * d[ok][None, :]
        F = np.zeros((Fo.shape[0], p))
        F[:, ok] = Fo
    if shift is not None and np.any(shift):
        Tinv = np.eye(p)
        Tinv[0, 1:] = np.asarray(shift, dtype=np.float64)[1:p]
        F = F @ Tinv
    return aliased_keep(F, tol)
