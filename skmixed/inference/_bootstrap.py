"""Parametric bootstrap (lme4's ``bootMer``) and ``simulate`` on the fitted design.

For the LMM every replicate reuses the fit's :class:`~skmixed._solvers.lmm.LMMProblem`
layout: only the parts of the cross-product blocks that involve ``y`` change (``Z'y``,
``X'y``, ``y'y``), and those are formed for a batch of simulated responses at once by
one sparse product ``Z' Y`` and one dense ``X' Y``. The ``Z'Z``, ``Z'X``, ``X'X`` blocks are
shared. Each refit starts from the fitted ``theta``. Replicates run in parallel with
joblib (threads: the criterion's kernels release the GIL); a tqdm bar with ``verbose``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._base import refit_rows
from .._numdiff import stencil_derivatives, stencil_offsets
from ._lmm import _chol_psd, blas_for, profile_names

__all__ = ["bootstrap", "simulate", "BootstrapResult", "training_rows"]


def _is_lmm(est) -> bool:
    return est.mixed_fit_.kind == "lmm"


def training_rows(est):
    """The rows ``fit`` kept (design, y, weights, codes); a clear error when there are none."""
    st = est.mixed_fit_.state
    rows = None if st is None else st.rows
    if rows is None:
        raise ValueError("this needs the training rows, which fit() keeps but partial_fit(), the distributed "
                         "fits and unpickled estimators do not: refit with fit()")
    return rows


def _random_draws(est, rng, n_sim):
    """Per block, random effects (q, J, n_sim) drawn from the fitted covariance (level rows of
    ``n_sim`` contiguous values, so that gathering them by the rows' codes streams memory)."""
    out = []
    for blk in est.mixed_fit_.blocks:
        C = est.cov_re_[est.factors_[blk.factor].name].to_numpy()
        Lc = _chol_psd(C)
        if Lc is None:
            Lc = np.linalg.cholesky(C + 1e-12 * np.eye(C.shape[0]))
        e = rng.standard_normal((blk.q, blk.n_levels, n_sim))
        out.append(np.einsum("ab,bjs->ajs", Lc, e))
    return out


def _linear_predictors(est, rows, rng, n_sim):
    """(n, n_sim) linear predictors with new random effects."""
    eta0 = rows.X @ est.fixed_effects_.to_numpy()
    offset = getattr(rows.fit_data, "offset", None)
    if offset is not None and not _is_lmm(est):  # a GLMM's offset is part of its linear predictor
        eta0 = eta0 + offset
    eta = np.empty((eta0.shape[0], n_sim))
    eta[:] = eta0[:, None]
    for blk, b in zip(est.mixed_fit_.blocks, _random_draws(est, rng, n_sim)):
        c = rows.codes[blk.factor]
        for a, col in enumerate(blk.intercept_slopes):
            if col < 0:
                eta += b[a][c]
            else:
                eta += rows.z_source[:, col:col + 1] * b[a][c]
    return eta


def _residual_sd(est, rows):
    """Per-row residual SD: ``sigma``, or ``sigma / sqrt(w)`` with precision weights."""
    n = rows.X.shape[0]
    if getattr(est, "weights", "frequency") == "precision" and rows.weights is not None:
        return est.sigma_ / np.sqrt(rows.weights)
    return np.full(n, est.sigma_)


def simulate(est, n=1, random_state=None):
    """Responses simulated from a fitted model at its training rows, ``(n_rows, n)``.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> m.simulate(3, random_state=0).shape
    (180, 3)
    """
    check_is_fitted(est)
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = check_random_state(random_state)
    rows = training_rows(est)
    y = simulate_batch(est, rows, rng, int(n))
    fit = est.mixed_fit_
    if fit.kind == "lmm":
        # an LMM is fitted to y - offset (as lmer): the simulated responses get their offset back
        offset = getattr(rows.fit_data, "offset", None)
        return y if offset is None else y + np.asarray(offset, dtype=float)[:, None]
    if fit.family.name != "binomial" or rows.weights is not None:
        return y  # responses; weighted binomial rows: proportions of their trials, as glmer's simulate
    labels = est.classes_
    return np.where(y > 0, labels[1], labels[0]) if labels.dtype.kind not in "biuf" else labels[y.astype(int)]


# ---------------------------------------------------------------------- results
@dataclass
class BootstrapResult:
    """Parametric bootstrap replicates.

    Attributes
    ----------
    estimate : pandas.Series
        The statistic on the fitted model.
    replicates : pandas.DataFrame
        One row per replicate (failed refits are dropped and counted in ``n_failed``).
    n_failed : int
    """

    estimate: pd.Series
    replicates: pd.DataFrame
    n_failed: int = 0

    def confint(self, level=0.95) -> pd.DataFrame:
        """Percentile intervals (``boot.ci(type = "perc")``)."""
        a = (1 - level) / 2
        q = self.replicates.quantile([a, 1 - a]).T
        q.columns = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
        return q

    def to_frame(self, level=0.95) -> pd.DataFrame:
        """Tidy table: term, estimate, bootstrap bias and std.error, percentile interval."""
        ci = self.confint(level)
        out = pd.DataFrame({"term": self.estimate.index, "estimate": self.estimate.to_numpy(),
                            "bias": (self.replicates.mean() - self.estimate).to_numpy(),
                            "std.error": self.replicates.std(ddof=1).to_numpy(),
                            "conf.low": ci.iloc[:, 0].to_numpy(), "conf.high": ci.iloc[:, 1].to_numpy()})
        return out

    def _repr_html_(self):
        return self.to_frame()._repr_html_()

    def __repr__(self):
        return (f"BootstrapResult({len(self.replicates)} replicates, {self.n_failed} failed)\n"
                + self.to_frame().to_string(index=False))


def _default_statistic_names(est):
    lmm = _is_lmm(est)
    return profile_names(len(est.theta_), has_sigma=lmm) + list(est.fixed_effects_.index)


def _sdcor_from(blocks, lambdas, sigma):
    vals = []
    for blk, lam in zip(blocks, lambdas):
        C = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.clip(np.diag(C), 0, None))
        r, c = blk.theta_index()
        for a, b in zip(r, c):
            vals.append(sd[a] if a == b else (C[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else np.nan))
    return vals


# ---------------------------------------------------------------------- LMM replicates
class _LMMReplicator:
    """Refits of the LMM on simulated responses, sharing the fitted layout and X/Z blocks."""

    def __init__(self, est):
        st = est.mixed_fit_.state
        self.est, self.st = est, st
        self.rows = training_rows(est)
        self.prob = st.problem
        lay = self.prob.layout
        X, w = self.rows.X, self.rows.weights
        n = X.shape[0]
        self.w = np.ones(n) if w is None else np.asarray(w, dtype=float)
        T = st.T
        shift = -T[0].copy() if T.shape[0] else np.zeros(0)
        shift[0] = 0.0
        self.x_shift = shift
        self.centred = bool(np.any(shift != 0)) or st.y_shift != 0.0
        # sparse W Z (n x (J1 q1 + Q2)): columns = first block (level-major), then the dense part's
        blocks = lay.blocks
        data, rows_idx, cols_idx = [], [], []
        for k, blk in enumerate(blocks):
            Z = blk.z_rows(self.rows.z_source)
            c = np.asarray(self.rows.codes[blk.factor], dtype=np.int64)
            base = 0 if k == 0 else lay.J1 * lay.q1 + lay.dense_off[k - 1]
            for a in range(blk.q):
                data.append(Z[:, a] * self.w)
                rows_idx.append(np.arange(n))
                cols_idx.append(base + c * blk.q + a)
        self.WZt = sp.csr_matrix((np.concatenate(data), (np.concatenate(cols_idx), np.concatenate(rows_idx))),
                                 shape=(lay.J1 * lay.q1 + lay.Q2, n))
        self.WXc_t = np.ascontiguousarray(((X - shift) * self.w[:, None]).T)
        self.y_slots = lay.ptr[1:] - 1  # the y entry of each first-block level's A21 segment

    def y_parts(self, Y):
        """Cross-products with ``y`` for a batch ``Y`` (n, B): (Z'Wy, X_c'Wy_c, y_c'Wy_c, y shifts)."""
        w = self.w
        N = w.sum()
        ysh = (w @ Y) / N if self.centred else np.zeros(Y.shape[1])
        Yc = Y - ysh
        zy = self.WZt @ Yc  # (J1 q1 + Q2, B)
        xy = self.WXc_t @ Yc  # (p, B)
        yy = np.einsum("i,ib,ib->b", w, Yc, Yc)
        return zy, xy, yy, ysh

    def refit(self, zy, xy, yy, ysh):
        from .._solvers.lmm import CrossProducts, LMMProblem

        lay, cp = self.prob.layout, self.prob.cp
        J1q1 = lay.J1 * lay.q1
        A21 = cp.A21.copy()
        A21[self.y_slots, :] = zy[:J1q1].reshape(lay.J1, lay.q1)
        A22 = cp.A22.copy()
        m = lay.m
        col = np.concatenate([zy[J1q1:], xy, [yy]])
        A22[m - 1, :] = col
        A22[:, m - 1] = col
        prob = LMMProblem(lay, CrossProducts(cp.A11, A21, A22, cp.n_obs), reml=self.st.reml)
        theta, n_iter, converged, msg = prob.optimize(theta0=np.asarray(self.st.theta, float))
        res = prob.result(theta, n_iter, converged, msg)
        beta = self.st.T @ res.beta
        beta[0] += ysh if self.centred else 0.0
        return res, beta

    def statistic(self, res, beta):
        return np.r_[_sdcor_from(self.prob.layout.blocks, res.lambdas, res.sigma), res.sigma, beta]

    # -- one grouping factor: all replicates optimised together (batched Newton on a numba criterion)
    @property
    def batchable(self) -> bool:
        return len(self.prob.layout.blocks) == 1

    def refit_batch(self, zy, xy, yy, ysh, max_iter=40):
        """Statistics of a batch of replicates; rows of replicates the Newton iteration could not
        settle (a parameter at its bound, an indefinite Hessian) are refitted one by one."""
        from .._kernels.lmm_batch import criterion_batch, criterion_batch_serial

        lay, cp, st = self.prob.layout, self.prob.cp, self.st
        J, q, p = lay.J1, lay.q1, lay.p
        B = yy.shape[0]
        A21 = cp.A21.reshape(J, p + 1, q)
        A21x = np.ascontiguousarray(A21[:, :p, :])
        A21y = np.ascontiguousarray(zy.T.reshape(B, J, q))
        A22xx = np.ascontiguousarray(cp.A22[:p, :p])
        A22xy = np.ascontiguousarray(xy.T)
        A22yy = np.ascontiguousarray(yy)
        tr, tc = (np.asarray(a, dtype=np.int64) for a in lay.blocks[0].theta_index())
        k = tr.size
        N = float(cp.n_obs)
        lower = self.prob.lower

        def evaluate(thetas, reps):
            crit = np.empty(thetas.shape[0])
            beta = np.empty((thetas.shape[0], p + 1))
            # a call is worth threads only when it has work: points x levels x q^2 well above ~1e6
            kernel = criterion_batch if thetas.shape[0] * J * q * q > 2_000_000 else criterion_batch_serial
            kernel(np.ascontiguousarray(thetas), np.ascontiguousarray(reps, dtype=np.int64), tr, tc,
                            cp.A11, A21x, A21y, A22xx, A22xy, A22yy, bool(st.reml), N, crit, beta)
            return crit, beta

        theta = np.tile(np.asarray(st.theta, dtype=float), (B, 1))
        f, _ = evaluate(theta, np.arange(B))
        active = np.isfinite(f)
        done = np.zeros(B, dtype=bool)
        # finite-difference stencil: centre, +-h e_i, +-h e_i +-h e_j (i < j)
        offs = stencil_offsets(k)
        for _ in range(max_iter):
            idx = np.flatnonzero(active & ~done)
            if idx.size == 0:
                break
            th = theta[idx]
            h = 1e-4 * np.maximum(1.0, np.abs(th))  # (n, k)
            pts = th[:, None, :] + offs[None, :, :] * h[:, None, :]
            vals, _ = evaluate(pts.reshape(-1, k), np.repeat(idx, len(offs)))
            vals = vals.reshape(idx.size, len(offs))
            f0 = vals[:, 0]
            g, H = stencil_derivatives(vals, h)
            # projected Newton: a standard deviation on its bound whose gradient points outwards
            # stays there (it must curve upwards: the bound is then a minimum along it)
            fixed = (lower == 0)[None, :] & (th <= 0) & (g >= 0)
            diagH = np.einsum("nii->ni", H)
            ok = np.all(np.isfinite(H), axis=(1, 2)) & np.all(np.isfinite(g), axis=1)
            # on the bound the criterion is flat (it is even in a standard deviation): the bound is a
            # minimum along it where it curves upwards, required at convergence
            curved = ~np.any(fixed & ~(diagH > 0), axis=1)
            # a bound that is not a minimum along it (the criterion curves downwards off it, a
            # step overshot onto it): step off it, as the fit's optimiser does, and go on from there
            esc = fixed & ~(diagH > 0)
            rows_esc = np.flatnonzero(esc.any(axis=1) & np.all(np.isfinite(H), axis=(1, 2)))
            if rows_esc.size:
                moved = th[rows_esc].copy()
                moved[esc[rows_esc]] = 0.05
                theta[idx[rows_esc]] = moved
                ok[rows_esc] = False
                escaped = np.zeros(idx.size, dtype=bool)
                escaped[rows_esc] = True
            else:
                escaped = np.zeros(idx.size, dtype=bool)
            free = (~fixed).astype(float)
            scale = np.abs(H).max(axis=(1, 2))
            scale[~np.isfinite(scale)] = 1.0
            H = H * free[:, :, None] * free[:, None, :] + np.einsum("ni,ij->nij", (1.0 - free) * scale[:, None],
                                                                    np.eye(k))
            g = g * free
            ev = np.full((idx.size, k), 1.0)
            ev[ok] = np.linalg.eigvalsh(H[ok])
            active[idx[~ok & ~escaped]] = False  # non-finite: refit one by one
            idx, th, g, H, f0, ev, curved = idx[ok], th[ok], g[ok], H[ok], f0[ok], ev[ok], curved[ok]
            fixed, diagH = fixed[ok], diagH[ok]
            if idx.size == 0:
                continue
            # away from the optimum the Hessian can be indefinite: shift it (Levenberg-Marquardt)
            shift = np.maximum(0.0, 1e-8 * np.abs(ev).max(axis=1) - ev.min(axis=1))
            shift[shift > 0] += 1e-3 * np.abs(ev[shift > 0]).max(axis=1)
            H = H + shift[:, None, None] * np.eye(k)[None]
            d = -np.linalg.solve(H, g[..., None])[..., 0]
            t = np.ones(idx.size)
            accepted = np.zeros(idx.size, dtype=bool)
            new = th.copy()
            fnew = f0.copy()
            for _ls in range(12):
                todo = np.flatnonzero(~accepted)
                if todo.size == 0:
                    break
                cand = np.maximum(th[todo] + t[todo, None] * d[todo], lower)
                cand[(cand < 1e-7) & (lower == 0)[None, :]] = 0.0
                fc, _ = evaluate(cand, idx[todo])
                good = fc <= f0[todo] + 1e-12 * np.abs(f0[todo])
                accepted[todo[good]] = True
                new[todo[good]] = cand[good]
                fnew[todo[good]] = fc[good]
                t[todo[~good]] *= 0.5
            theta[idx[accepted]] = new[accepted]
            f[idx[accepted]] = fnew[accepted]
            rel = np.max(np.abs(d) / np.maximum(1.0, np.abs(th)), axis=1)
            pd_h = (shift == 0) & curved
            # converged: a negligible Newton step on a positive definite Hessian (a step the line
            # search cannot improve on is within the criterion's rounding when it is this small)
            small = (accepted & (rel < 1e-9)) | (~accepted & (rel < 1e-7))
            done[idx[pd_h & small]] = True
            # settled on the free parameters with a bound that is not a minimum (the criterion
            # curves downwards off it): step off the bound, as the fit's optimiser does
            stuck = np.flatnonzero(small & (shift == 0) & ~curved)
            if stuck.size:
                bad = fixed[stuck] & ~(diagH[stuck] > 0)
                cand = theta[idx[stuck]].copy()
                cand[bad] = 0.05
                fc, _ = evaluate(cand, idx[stuck])
                better = fc < f[idx[stuck]] - 1e-10 * np.abs(f[idx[stuck]])
                theta[idx[stuck[better]]] = cand[better]
                f[idx[stuck[better]]] = fc[better]
                active[idx[stuck[~better]]] = False
                accepted[stuck] = True  # keep iterating from the new point
            active[idx[~accepted]] = False
        good = done

        out = np.full((B, k + 1 + p), np.nan)
        gi = np.flatnonzero(good)
        if gi.size:
            _, bet = evaluate(theta[gi], gi)
            r2 = bet[:, p]
            sigma = np.sqrt(r2 / (N - p if st.reml else N))
            beta = bet[:, :p] @ st.T.T
            if self.centred:
                beta[:, 0] += ysh[gi]
            for n_, b in enumerate(gi):
                lam = np.zeros((q, q))
                lam[tr, tc] = theta[b]
                out[b] = np.r_[_sdcor_from(lay.blocks, [lam], sigma[n_]), sigma[n_], beta[n_]]
        for b in np.flatnonzero(~good):
            try:
                res, beta = self.refit(zy[:, b], xy[:, b], yy[b], ysh[b])
                out[b] = self.statistic(res, beta)
            except (ValueError, np.linalg.LinAlgError):
                pass
        self.n_fallback = getattr(self, "n_fallback", 0) + int((~good).sum())
        return [None if np.isnan(r).all() else r for r in out]


def _chunks(n, size):
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def bootstrap(est, n_boot=1000, statistic=None, n_jobs=None, random_state=None, verbose=False,
              batch_size=None, simulation="auto"):
    """Parametric bootstrap of a fitted mixed model (lme4's ``bootMer``, ``use.u = FALSE``).

    Responses are simulated from the fitted model (new random effects and residuals each
    time) and the model is refitted on each. LMM refits reuse the fitted design: only the
    ``y`` cross-products are recomputed and ``theta`` starts at the fitted value.

    Parameters
    ----------
    est : fitted MixedLinearRegressor, MixedLogisticRegressor or MixedPoissonRegressor
        Fitted with ``fit`` (the training rows are needed). A GLMM's offset is kept in its
        linear predictor; weighted binomial rows are drawn as proportions of their trials
        and frequency-weighted Poisson rows as the mean of their identical rows.
    n_boot : int
        Number of replicates.
    statistic : callable, optional
        ``statistic(refitted_estimator) -> array-like or Series`` computed on each
        replicate (then the refit builds a full estimator, slower). Default: the
        variance components on the standard-deviation scale (``.sig01, ..., .sigma``)
        and the fixed effects, computed without building estimators.
    n_jobs : int, optional
        joblib workers (threads).
    random_state : int, RandomState or None
    verbose : bool
        A tqdm progress bar.
    batch_size : int, optional
        Replicates simulated (and, for one grouping factor, optimised) together.
    simulation : {"auto", "rows", "groups"}, default="auto"
        How an LMM's replicates are drawn. ``"rows"``: every response row is simulated and
        its cross-products with the design formed (``O(rows)`` per replicate). ``"groups"``
        (one grouping factor, the default statistic, no frequency weights): each level's
        cross-products are drawn directly from their exact joint distribution
        (:mod:`skmixed.inference._grouped_sim`), ``O(levels)`` per replicate whatever the rows.
        Both draw from the same distribution, but not the same numbers for a ``random_state``.
        ``"auto"``: ``"groups"`` where it applies and the rows outnumber ten times the levels'
        cross-product entries, else ``"rows"``.

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> b = m.bootstrap(50, random_state=1)
    >>> list(b.confint().index)
    ['.sig01', '.sig02', '.sig03', '.sigma', '(Intercept)', 'Days']
    """
    check_is_fitted(est)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if statistic is not None and not callable(statistic):
        raise TypeError("statistic must be a callable taking the refitted estimator")
    rng = check_random_state(random_state)
    lmm = _is_lmm(est)
    if lmm and est.mixed_fit_.state.problem is None:
        raise ValueError("bootstrap needs a model with random effects")
    rows = training_rows(est)
    n = rows.X.shape[0]
    rep = _LMMReplicator(est) if lmm else None
    grouped = _grouped_simulator(est, rep, rows, statistic, simulation)
    if batch_size is None:
        per_rep = 8 * (grouped.J * grouped.pp if grouped is not None else n)
        batch_size = int(max(1, min(n_boot, 256, 2e8 // max(per_rep, 1))))
    seeds = rng.randint(0, 2**31 - 1, size=len(_chunks(n_boot, batch_size)))
    names = _default_statistic_names(est)
    est0 = _statistic_of(est, statistic, names)

    from joblib import Parallel, delayed

    def run_batch(b0, b1, seed):
        r = np.random.default_rng(seed)
        if grouped is not None:
            return rep.refit_batch(*grouped.y_parts(r, b1 - b0))
        sims = simulate_batch(est, rows, r, b1 - b0)
        out = []
        if lmm:
            parts = rep.y_parts(sims)
            if statistic is None and rep.batchable:
                return rep.refit_batch(*parts)
            for s in range(b1 - b0):
                try:
                    res, beta = rep.refit(parts[0][:, s], parts[1][:, s], parts[2][s], parts[3][s])
                    if statistic is None:
                        out.append(rep.statistic(res, beta))
                    else:
                        out.append(np.asarray(statistic(_refit_estimator(est, sims[:, s])), float))
                except (ValueError, np.linalg.LinAlgError):
                    out.append(None)
        else:
            for s in range(b1 - b0):
                try:
                    m = _refit_estimator(est, sims[:, s])
                    out.append(_statistic_of(m, statistic, names).to_numpy())
                except (ValueError, np.linalg.LinAlgError):
                    out.append(None)
        return out

    chunks = _chunks(n_boot, batch_size)
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_boot, desc="bootstrap")
    results = []
    with blas_for(est.mixed_fit_.state.problem if lmm else None):
        if n_jobs in (None, 1):
            for (b0, b1), seed in zip(chunks, seeds):
                results.extend(run_batch(b0, b1, seed))
                if bar is not None:
                    bar.update(b1 - b0)
        else:
            gen = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
                delayed(run_batch)(b0, b1, seed) for (b0, b1), seed in zip(chunks, seeds))
            for (b0, b1), part in zip(chunks, gen):
                results.extend(part)
                if bar is not None:
                    bar.update(b1 - b0)
    if bar is not None:
        bar.close()
    ok = [r for r in results if r is not None]
    cols = est0.index
    reps = pd.DataFrame(np.vstack(ok) if ok else np.empty((0, len(cols))), columns=cols)
    n_failed = len(results) - len(ok)
    if n_failed:
        import warnings

        warnings.warn(f"{n_failed} of {n_boot} bootstrap refits failed and were dropped", UserWarning,
                      stacklevel=2)
    return BootstrapResult(est0, reps, n_failed)


def _grouped_simulator(est, rep, rows, statistic, simulation):
    """The per-level simulator when ``simulation`` asks for it (or ``"auto"`` finds it pays), else None."""
    if simulation not in ("auto", "rows", "groups"):
        raise ValueError(f"simulation must be 'auto', 'rows' or 'groups', got {simulation!r}")
    if simulation == "rows":
        return None
    why = None
    if rep is None:
        why = "GLMMs"
    elif not rep.batchable:
        why = "models with more than one grouping factor"
    elif statistic is not None:
        why = "a user statistic (it refits estimators on simulated rows)"
    elif rows.weights is not None and getattr(est, "weights", "frequency") != "precision":
        why = "frequency weights"
    if why is not None:
        if simulation == "groups":
            raise ValueError(f"simulation='groups' is not available for {why}; use simulation='rows'")
        return None
    lay = est.mixed_fit_.state.problem.layout
    p = rows.X.shape[1] + 1
    if simulation == "auto" and rows.X.shape[0] <= 10 * lay.J1 * p * p:
        return None
    from ._grouped_sim import GroupedSimulator

    return GroupedSimulator(est, rep)


def simulate_batch(est, rows, rng, n_sim):
    """``(n_rows, n_sim)`` responses drawn at the training rows, on the scale the fit takes them."""
    eta = _linear_predictors(est, rows, rng, n_sim)
    if _is_lmm(est):
        return eta + _residual_sd(est, rows)[:, None] * rng.standard_normal(eta.shape)
    family = est.mixed_fit_.family
    with np.errstate(over="ignore"):
        mu = family.linkinv(eta)
    return family.simulate(mu, rows.weights, rng)


def _statistic_of(est, statistic, names):
    if statistic is None:
        vals = list(_sdcor_values_est(est)) + ([est.sigma_] if _is_lmm(est) else []) + \
            list(est.fixed_effects_.to_numpy())
        return pd.Series(vals, index=names, dtype=float)
    v = statistic(est)
    if isinstance(v, pd.Series):
        return v.astype(float)
    v = np.atleast_1d(np.asarray(v, dtype=float))
    return pd.Series(v, index=[f"stat{k}" for k in range(v.size)])


def _sdcor_values_est(est):
    from ._api import _sdcor_values

    return _sdcor_values(est)


def _refit_estimator(est, y_new):
    """A copy of ``est`` refitted on its own rows with response ``y_new`` (no re-validation)."""
    m = copy.copy(est)
    m.__dict__ = dict(est.__dict__)
    fd = training_rows(est).fit_data
    from dataclasses import replace

    refit_rows(m, replace(fd, y=np.asarray(y_new, dtype=float)))
    return m
