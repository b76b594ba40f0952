"""Exact corrections for SEMA: the ML (or REML) fit of all rows seen, from SEMA's own summaries.

SEMA (:mod:`skmixed._solvers.sema`) is one partial EM step per row, so its estimates depend on
the order of the rows: on a stream whose rows arrive group by group it can be far from the
maximum-likelihood fit of the same rows.  Yet the per-group summaries it keeps,
``A_j = X'X, a_j = X'y, s_j = y'y, B_j = Z'Z, D_j = X'Z, c_j = Z'y, n_j``, are exactly the
sufficient statistics of the profiled likelihood: they are the per-level blocks
``Z_j'Z_j`` and ``Z_j'[X y]`` plus the totals ``[X y]'[X y]`` that
:class:`~skmixed._solvers.lmm_stats.GroupedStats` holds for chunked fits.  This module lays
them out as such and hands them to :class:`~skmixed._solvers.lmm.LMMProblem`, the batch
estimator's profiled-deviance optimiser, warm-started from the previous correction's
``theta``.  The cost depends on the number of groups, never on the number of rows.

With forgetting, the summaries are the weighted sums (each row weighted by
``lam ** (rows after it)``), so the exact fit is the frequency-weighted ML fit of the rows,
the target a sliding window defines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla
from scipy import optimize

from .._design.terms import RandomTerm
from .._design.theta import ThetaMap
from .._kernels import sema as _k
from .._numdiff import central_hessian, second_difference
from .._numdiff import gradient as fd_gradient
from .lmm import LMMProblem
from .lmm_stats import GroupedStats

_LOG2PI = np.log(2.0 * np.pi)

__all__ = ["ExactFit", "Profile", "exact_fit", "apply_fit"]


@dataclass
class ExactFit:
    """Result of :func:`exact_fit`: the parameters in SEMA's form and lme4's ``theta``."""

    theta: np.ndarray
    beta: np.ndarray
    Phi: np.ndarray
    s2: float
    converged: bool
    n_iter: int
    hessian: np.ndarray = None  # curvature of the criterion at theta (for the next warm start)
    # the boundary pattern (standard deviations at zero) a cold run confirmed, or None
    trusted: np.ndarray = None


def grouped_stats(state, zidx, feature_names, re_names) -> GroupedStats:
    """The state's per-group summaries as :class:`GroupedStats` (unshifted sums).

    The summaries must refer to the current row (:func:`skmixed._kernels.sema.rebuild_sums`).
    Groups are labelled by their stream code.
    """
    seen = np.flatnonzero(state.glast >= 0)
    p = state.p
    term = RandomTerm(0, True, tuple(int(c) for c in zidx[1:]), tuple(re_names))
    D = np.ascontiguousarray(state.gB[seen])
    F = np.concatenate([state.gD[seen].transpose(0, 2, 1), state.gc[seen][:, :, None]], axis=2)
    G = np.empty((p + 1, p + 1))
    G[:p, :p] = state.gA[seen].sum(axis=0)
    G[:p, p] = G[p, :p] = state.ga[seen].sum(axis=0)
    G[p, p] = state.gs[seen].sum()
    return GroupedStats([term], ["group"], list(feature_names), [pd.Index(seen)], [D], [F], {}, G,
                        float(state.gn[seen].sum()), state.n_rows, [term.q], np.zeros(p + 1))


def fittable(state) -> bool:
    """Enough rows and groups for the profiled likelihood to have an interior optimum."""
    J = int((state.glast >= 0).sum())
    q = state.q
    n_par = state.p + q * (q + 1) // 2 + 1
    return J >= 2 and state.n_eff > max(n_par, J) and state.has_P


def theta_positions(q):
    """Rows and columns of ``theta`` in an unstructured (q, q) ``Lambda`` (column-wise, as lme4)."""
    rows, cols = ThetaMap.full(q).positions[0]
    return rows.astype(np.int64), cols.astype(np.int64)


def theta_of(Lphi, s2):
    """lme4's ``theta`` (column-wise lower triangle of ``chol(Phi) / sigma``) from SEMA's ``chol(Phi)``."""
    return ThetaMap.full(Lphi.shape[0]).theta_of([Lphi]) / np.sqrt(s2)


class Profile:
    """The profiled criterion of the rows seen as a function of ``theta``.

    Built once per correction from the state's summaries (which must refer to the current
    row): the shifted per-group blocks ``B_j = Z_j'Z_j``, ``F_j = Z_j'[X y]`` and the totals
    ``T = [X y]'[X y]``.  An evaluation is the per-group factorisation
    (:func:`skmixed._kernels.sema.profiled_blocks`, ``O(J q^2 (q + p))``), one product
    ``sum_j V_j'V_j`` and a ``(p+1)``-square Cholesky: the LMM criterion of
    :mod:`skmixed._solvers.lmm` for one grouping factor.  ``[X y]`` is shifted to its means
    (when the model has an intercept, whose random counterpart is ``Z``'s first column:
    ``Z'(x - s) = Z'x - s Z'1``) for the conditioning of the Schur complement, as ``fit`` does.
    """

    def __init__(self, state, reml=False, intercept=True):
        self.q = state.q
        self.p = p = state.p
        self.reml = bool(reml)
        self.theta_map = ThetaMap.full(self.q)
        self.rows, self.cols = self.theta_map.positions[0]
        self.lower = self.theta_map.lower
        seen = np.flatnonzero(state.glast >= 0)
        # X'X, X'y and N as rebuild_sums just summed them from the groups
        self.N = state.n_eff
        T = np.empty((p + 1, p + 1))
        T[:p, :p] = state.XtX
        T[:p, p] = T[p, :p] = state.Xy
        T[p, p] = state.gs[seen].sum()
        F = np.concatenate([state.gD[seen].transpose(0, 2, 1), state.gc[seen][:, :, None]], axis=2)
        shift = np.zeros(p + 1)
        if intercept and p and T[0, 0] > 0:
            shift[1:] = T[0, 1:] / T[0, 0]
            # column i -> x_i - shift_i x_0: a unit-triangular change of basis
            U = np.eye(p + 1)
            U[0, 1:] = -shift[1:]
            T = U.T @ T @ U
            F = F - state.gB[seen][:, :, :1] * shift[None, None, :]
        self.shift = shift
        self.T = T
        self.B = np.ascontiguousarray(state.gB[seen])
        self.F = np.ascontiguousarray(F)
        self.V = np.empty_like(self.F)
        self.n_eval = 0
        self._last = None

    def lam(self, theta):
        return self.theta_map.lambdas(theta)[0]

    def _factor(self, theta):
        """``(criterion, r^2, beta)`` at ``theta``; criterion ``inf`` where not positive definite."""
        self.n_eval += 1
        p, m = self.p, self.p + 1
        ld = _k.profiled_blocks(self.lam(theta), self.B, self.F, self.V)
        Vf = self.V.reshape(-1, m)
        S = self.T - Vf.T @ Vf
        try:
            C = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return np.inf, np.nan, None
        d = np.diag(C)
        if not np.all(d > 0) or not np.isfinite(ld):
            return np.inf, np.nan, None
        r2 = d[p] ** 2
        N = self.N
        if self.reml:
            nmp = N - p
            crit = ld + 2 * np.log(d[:p]).sum() + nmp * (1.0 + _LOG2PI + np.log(r2 / nmp))
        else:
            crit = ld + N * (1.0 + _LOG2PI + np.log(r2 / N))
        return crit, r2, C

    def __call__(self, theta):
        return float(self._factor(theta)[0])

    def fit_at(self, theta, converged=True, n_iter=0) -> ExactFit:
        """The parameters at ``theta``: ``beta`` by GLS, ``s2`` profiled, ``Phi = s2 Lam Lam'``."""
        crit, r2, C = self._factor(theta)
        if C is None:
            return None
        p = self.p
        beta = sla.solve_triangular(C[:p, :p], C[p, :p], lower=True, trans="T") if p else np.zeros(0)
        if p:
            beta[0] += self.shift[p] - self.shift[1:p] @ beta[1:]
        s2 = r2 / (self.N - p) if self.reml else r2 / self.N
        L = self.lam(theta)
        return ExactFit(np.asarray(theta, dtype=float).copy(), beta, s2 * L @ L.T, float(s2), converged, n_iter)

    def gradient(self, theta, f0, h):
        """Central differences (forward on a bound); also returns ``f(theta + h e_i)``, ``f(theta - h e_i)``."""
        on_bound = (self.lower == 0) & (theta <= h)
        g, fp, fm = fd_gradient(self, theta, h, f0=f0, absolute=True, forward=on_bound, full_output=True)
        return g, fp, fm, on_bound

    def hessian(self, theta, f0, h, fp, fm, idx):
        """Central-difference Hessian over the parameters ``idx`` (``fp``, ``fm`` from :meth:`gradient`).

        A full ``k x k`` matrix, NaN outside ``idx``; None when a parameter of ``idx`` sits on
        its bound (no central difference there).
        """
        k = theta.size
        if np.isnan(fm[idx]).any():
            return None
        H = np.full((k, k), np.nan)
        H[np.ix_(idx, idx)] = central_hessian(self, theta, h[idx], f0=f0, idx=idx, fp=fp, fm=fm)
        return H

    def escape(self, theta, f0):
        """Move standard deviations off the zero bound where that lowers the criterion.

        A zero standard deviation is always a stationary point (the criterion depends on it
        through its square), so derivatives cannot tell a boundary minimum from a saddle:
        probe off the bound, as the batch optimiser does.
        """
        at = np.flatnonzero((self.lower == 0) & (theta < 1e-4))
        for delta in (0.1, 0.01, 0.5):
            if not at.size:
                break
            t = theta.copy()
            t[at] = delta
            ft = self(t)
            if ft < f0 - 1e-9 * max(1.0, abs(f0)):
                return t, ft
        return theta, f0

    def newton(self, theta0, H0=None, max_steps=20, decrement=1e-9):
        """Projected (quasi-)Newton from a warm start; ``(fit, H)`` or ``(None, None)`` when it cannot proceed.

        Steps solve with the Hessian ``H0`` of the previous correction when it is given
        (the curvature moves slowly between corrections, so a step then costs one gradient:
        ``2 k`` evaluations) and with a fresh central-difference Hessian otherwise, or when the
        reused one stops giving a quadratic-rate decrease.  Parameters on their bound
        (``theta_ii = 0``) with a positive derivative stay there; a step goes at most 90% of
        the way to the bound.  Steps are halved until the criterion does not increase.  Converged when
        the Newton decrement ``g' H^-1 g / 2`` is below ``decrement`` (deviance units: a
        change of ``beta`` by 0.1 standard error moves the deviance by 0.01).
        """
        theta = np.maximum(np.asarray(theta0, dtype=float), self.lower)
        f0 = self(theta)
        if not np.isfinite(f0):
            return None, None
        theta, f0 = self.escape(theta, f0)
        H = None if H0 is None else np.array(H0, dtype=float)
        prev_dec = np.inf
        for it in range(1, max_steps + 1):
            h = 1e-4 * np.maximum(1.0, np.abs(theta))
            g, fp, fm, on_bound = self.gradient(theta, f0, h)
            free = ~(on_bound & (g >= 0))
            idx = np.flatnonzero(free)
            if idx.size == 0:
                return self.fit_at(theta, True, it), H
            if on_bound[idx].any():
                return None, None  # a step off the bound: the bounded optimiser's job
            for attempt in range(2):
                if H is not None and not np.isfinite(H[np.ix_(idx, idx)]).all():
                    H = None  # the free set changed
                if H is not None and not np.isnan(fm[idx]).any():
                    # the diagonal comes free with the gradient: only the off-diagonal is reused
                    H[idx, idx] = second_difference(fp[idx], f0, fm[idx], h[idx])
                fresh = H is None or idx.size == 1
                if fresh:
                    H = self.hessian(theta, f0, h, fp, fm, idx)
                    if H is None:
                        return None, None
                try:
                    c = np.linalg.cholesky(H[np.ix_(idx, idx)])
                except np.linalg.LinAlgError:
                    if attempt:
                        return None, None
                    H = None
                    continue
                w = np.linalg.solve(c, g[idx])
                dec = 0.5 * float(w @ w)
                if not fresh and dec > 0.1 * prev_dec:
                    H = None  # the reused curvature converges too slowly: refresh it
                    continue
                break
            step = np.zeros_like(theta)
            step[idx] = -np.linalg.solve(c.T, w)
            # stay inside the bound (at most 90% of the way to it): an optimum on the bound is
            # approached geometrically, then held there by the derivative test above
            toward = (self.lower == 0) & (step < 0)
            t = min(1.0, float(np.min(0.9 * theta[toward] / -step[toward]))) if toward.any() else 1.0
            if dec < decrement and t == 1.0:
                # the last step is below the criterion's resolution: take it unchecked
                return self.fit_at(theta + step, True, it), H
            for _ in range(30):
                cand = np.maximum(theta + t * step, self.lower)
                fc = self(cand)
                if fc <= f0 + 1e-12 * abs(f0):
                    break
                t *= 0.5
            else:
                return None, None
            theta, f0 = cand, fc
            if dec < decrement:
                return self.fit_at(theta, True, it), H
            prev_dec = dec
        return None, None

    def bounded(self, theta0, max_iter=200):
        """L-BFGS-B (box bounds ``theta_ii >= 0``) on central differences, then a Newton polish.

        For warm starts near a boundary (a variance close to zero), where the projected
        Newton steps of :meth:`newton` stop.  Returns an :class:`ExactFit` or None.
        """
        def fun(t):
            f0 = self(t)
            if not np.isfinite(f0):
                return 1e300, np.zeros_like(t)
            return f0, self.gradient(t, f0, 1e-6 * np.maximum(1.0, np.abs(t)))[0]

        bounds = self.theta_map.bounds()
        start = np.maximum(np.asarray(theta0, dtype=float), self.lower)
        start, _ = self.escape(start, self(start))
        res = optimize.minimize(fun, start, jac=True,
                                method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": max_iter, "ftol": 1e-13, "gtol": 1e-7, "maxls": 50})
        if not res.fun < 1e300:
            return None
        theta = np.asarray(res.x, dtype=float)
        # a variance within rounding of zero: on the boundary (a singular fit), if no worse
        near = (self.lower == 0) & (theta < 1e-6)
        if near.any():
            snapped = np.where(near, 0.0, theta)
            if self(snapped) <= res.fun + 1e-10 * max(1.0, abs(res.fun)):
                theta = snapped
        fit, H = self.newton(theta)
        if fit is not None:
            fit.hessian = H
            return fit
        return self.fit_at(theta, bool(res.success), int(res.nit))


def exact_fit(state, zidx, feature_names, re_names, *, alpha=None, theta0=None, H0=None, reml=False,
              intercept=True, max_iter=500, trusted=None):
    """Optimise the profiled likelihood of all rows seen, from the state's summaries.

    Brings the summaries to the current row first (forgetting) and rebuilds ``X'X`` and
    ``P`` from them.  From a warm start ``theta0`` (the previous correction's optimum)
    projected Newton steps on :class:`Profile` reach the new optimum in a few
    evaluations; without one, or when Newton cannot proceed (a parameter leaving its
    bound, an indefinite Hessian), the batch estimator's optimiser
    (:meth:`~skmixed._solvers.lmm.LMMProblem.optimize`: L-BFGS-B, boundary escapes and a
    Newton polish) runs on the same statistics laid out by :class:`GroupedStats`.
    A warm start or result on the boundary (a singular fit) also runs the batch optimiser
    from its own start and the lower criterion wins, unless both are on the boundary
    ``trusted`` (a boolean mask over ``theta``) that the last such run confirmed.
    Returns an :class:`ExactFit`, or None when the rows seen cannot be fitted yet (too few
    rows or groups, ``X'X`` singular, an aliased column).
    """
    if not _k.rebuild_sums(float(alpha or 0.0), state.gA, state.ga, state.gs, state.gB, state.gD,
                           state.gc, state.gn, state.gtime, state.glast, state.XtX, state.Xy,
                           state.P, state.sc, state.ic):
        return None
    if not fittable(state):
        return None
    prof = Profile(state, reml=reml, intercept=intercept)
    warm = None
    if theta0 is not None and np.shape(theta0) == prof.lower.shape:
        theta0 = np.asarray(theta0, dtype=float)
        if H0 is not None and np.shape(H0) != (theta0.size, theta0.size):
            H0 = None
        warm, H = prof.newton(theta0, H0)
        if warm is not None:
            warm.hessian = H
        else:
            # a parameter at or leaving its bound: L-BFGS-B on the same criterion, then Newton
            warm = prof.bounded(theta0)
        if warm is not None and not (_singular(prof, theta0) or _singular(prof, warm.theta)):
            return warm
        pattern = _bound_pattern(prof, theta0)
        if (warm is not None and trusted is not None and np.array_equal(pattern, trusted)
                and np.array_equal(_bound_pattern(prof, warm.theta), trusted)):
            # the same boundary as at the last cold run, which confirmed the warm optimum (a
            # variance that is zero in the data, say): no new cold run (~100x a warm correction)
            warm.trusted = trusted
            return warm
    # no warm start, or a singular one (start or result on the boundary): a singular fit of
    # fewer rows (a covariate's early range, the first groups) is a poor start -- projected
    # steps from it can stop on the boundary at a worse optimum than the interior one -- so
    # the batch optimiser also runs from its own start and the lower criterion wins
    stats = grouped_stats(state, zidx, feature_names, re_names)
    keep = stats.kept_columns()
    if keep.size < state.p:
        return warm
    sp = stats.to_problem(keep)
    problem = LMMProblem(sp.layout, sp.cp, reml=reml)
    theta, n_iter, converged, _ = problem.optimize(theta0=None if warm is not None else (
        theta0 if theta0 is not None and np.shape(theta0) == (problem.n_theta,) else None), max_iter=max_iter)
    cold = prof.fit_at(theta, bool(converged), n_iter)
    # the warm (Newton-polished) optimum unless the cold one is better beyond the optimisers'
    # resolution: on ties the choice must not depend on rounding (a stream cut differently)
    if warm is not None and (cold is None or prof(warm.theta) <= prof(cold.theta) + 1e-6):
        if np.array_equal(_bound_pattern(prof, warm.theta), pattern):
            warm.trusted = pattern  # the cold run confirmed the warm start's boundary
        return warm
    return cold


def _bound_pattern(prof, theta, tol=1e-3):
    """Which standard deviations of ``theta`` are at (or within ``tol`` of) their zero bound."""
    return (prof.lower == 0) & (np.asarray(theta) < tol)


def _singular(prof, theta, tol=1e-3):
    """A standard deviation of ``theta`` at (or within ``tol`` of) its zero bound."""
    return bool(np.any((prof.lower == 0) & (np.asarray(theta) < tol)))


def apply_fit(state, fit: ExactFit, alpha=None) -> None:
    """Make ``fit`` SEMA's current estimate: parameters, BLUPs and every group's contributions.

    SEMA's next rows then continue from the exact optimum (where its EM step is a fixed
    point).  The summaries must be at the current row (as :func:`exact_fit` leaves them).
    """
    state.beta[:] = fit.beta
    state.Phi[:, :] = fit.Phi
    state.sc[_k.SC_S2] = max(fit.s2, 1e-300)
    _k.refresh_phi(state.Phi, state.Lphi, state.Phiinv, state.sc, np.empty((state.q, state.q)))
    _k.estep_all(float(alpha or 0.0), state.beta, state.Lphi, state.Phiinv, state.gA, state.ga, state.gs,
                 state.gB, state.gD, state.gc, state.gb, state.gCinv, state.gt1, state.gT2w, state.gt3,
                 state.gJw, state.glast, state.t1, state.T2, state.sc, state.ic)
    _k.gls_all(state.gA, state.ga, state.gD, state.gc, state.gCinv, state.glast, state.ginfo, state.grhs,
               state.Info, state.Rhs)
    try:
        state.K = np.linalg.inv(state.Info)
    except np.linalg.LinAlgError:
        state.K = np.zeros_like(state.Info)
    state.stale[0] = 0


# ---------------------------------------------------------------------------- order of the stream
def record_order(state, X, codes, first_row):
    """Add a batch to the state's order statistics (rows numbered from ``first_row + 1``)."""
    n = codes.shape[0]
    t = np.arange(first_row + 1, first_row + n + 1, dtype=np.float64) - state.xc[2]
    # only the groups of the batch (O(rows), not O(groups): the batch may be one row)
    np.add.at(state.gord, (codes, 0), 1.0)
    np.add.at(state.gord, (codes, 1), t)
    np.add.at(state.gord, (codes, 2), t * t)
    state.xord[0] += X.sum(axis=0)
    state.xord[1] += np.einsum("ij,ij->j", X, X)
    state.xord[2] += t @ X


def order_sensitivity(state, feature_names, min_rows=1000):
    """Why SEMA's answer on this stream may depend on its order (a sentence), or None.

    Two signs, each measured against what a shuffled stream gives:

    * rows arriving group by group (in blocks, or groups coming and going): the share of the
      variance of the row number explained by the group, ``R^2``, is about
      ``(J - 1) / (N - 1)`` for a shuffled stream and near 1 for a grouped one;
    * rows sorted by (or trending in) a covariate: the correlation of a column with the row
      number is ``O(1 / sqrt(N))`` for a shuffled stream.
    """
    cnt, s1, s2 = state.gord[:, 0], state.gord[:, 1], state.gord[:, 2]
    N = cnt.sum()
    if N < min_rows:
        return None
    sst = s2.sum() - s1.sum() ** 2 / N
    used = cnt > 0
    J = int(used.sum())
    reasons = []
    if sst > 0 and J > 1:
        r2 = ((s1[used] ** 2 / cnt[used]).sum() - s1.sum() ** 2 / N) / sst
        if r2 > max(0.5, 3.0 * (J - 1) / (N - 1)):
            reasons.append(f"rows arrive grouped (the group explains {r2:.0%} of the variance of the row "
                           f"number; a shuffled stream: {(J - 1) / (N - 1):.1%})")
    mx = state.xord[0] / N
    vx = state.xord[1] / N - mx ** 2
    mt = s1.sum() / N
    cov = state.xord[2] / N - mt * mx
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(np.maximum(vx, 0) * sst / N)
    bad = np.flatnonzero((np.abs(corr) > max(0.3, 5.0 / np.sqrt(N))) & (vx > 1e-12 * np.maximum(1.0, mx ** 2)))
    if bad.size:
        cols = ", ".join(f"{feature_names[k]} (r = {corr[k]:+.2f})" for k in bad)
        reasons.append(f"rows are sorted by or trend in {cols}")
    return "; ".join(reasons) or None
