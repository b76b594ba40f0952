"""MixedLinearRegressor: linear mixed models by profiled REML/ML, lme4's optimum."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.linalg as sla
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from ._base import POSITIVE_INT, SHARED_CONSTRAINTS, FitData, MixedModelBase
from ._design.layout import BlockLayout, amalgamate
from ._design.scaling import ColumnScaling, check_scales, gram_scaling, scale_cross_products
from ._summary import Summary, varcorr_table
from ._progress import progress_bar
from ._row_buffer import RowBuffer, plain_chunk
from ._solvers._optim import warn_not_converged
from ._solvers.lmm import CrossProducts, LMMProblem, cross_products
from ._solvers.lmm_iterative import IterativeFitProblem, fit_iterative, iterative_applies, warn_stochastic
from ._solvers.lmm_stats import GroupedStats
from ._transaction import transactional
from .inference._mixin import InferenceMixin, variance_parts
from .inference._state import LMMRows, LMMState

__all__ = ["MixedLinearRegressor"]


@dataclass
class _TotalsFitData(FitData):
    """FitData of accumulated statistics: no rows, the weighted row count given."""

    total_obs: float = 0.0

    @property
    def n_obs(self) -> float:
        return self.total_obs


def _basis(p, shift):
    """``T`` with ``beta = T beta_centred`` for fixed columns centred by ``shift`` (None: identity)."""
    T = np.eye(p)
    if shift is not None:
        T[0, 1:] = -np.asarray(shift)[1:]
    return T


class MixedLinearRegressor(InferenceMixin, RegressorMixin, MixedModelBase):
    """Linear mixed model fitted by profiled REML or ML, as ``lme4::lmer``.

    ``y = X beta + Z b + e``, ``b ~ N(0, Sigma)``, ``e ~ N(0, sigma^2 I)``. The
    rows are read once to form per-level cross-product blocks; the relative
    covariance parameters ``theta`` are then optimised (L-BFGS-B, bounded at 0
    for standard deviations) on the profiled criterion, whose cost does not
    depend on the number of rows. Any number of grouping factors (nested or
    crossed) and random slopes are supported.

    Parameters
    ----------
    reml : bool, default=True
        REML (lme4's default) or maximum likelihood.
    fit_intercept : bool, default=True
        Add a fixed intercept (and, per grouping factor, a random intercept).
    random_slopes : list of str or int, optional
        Columns of X that get a random slope (correlated with the random
        intercept) for every grouping factor. Use :meth:`from_formula` for
        per-factor or uncorrelated structures.
    group_column : str, int or list, optional
        Column(s) of X holding the group labels, so that the estimator works in
        plain ``cross_val_score`` / ``GridSearchCV`` without metadata routing.
    max_iter : int, default=500
        Maximum optimiser iterations.
    weights : {"frequency", "precision"}, default="frequency"
        What ``sample_weight`` means. ``"frequency"``: a weight of 2 is the
        same row twice (the number of observations is the sum of the weights).
        ``"precision"``: lme4's ``lmer(weights=)``, row i has residual variance
        ``sigma^2 / w_i`` and counts once; the log-likelihood includes lme4's
        ``0.5 * sum(log w_i)``. The two agree for unit weights. Precision
        weights need every weight > 0 and are not accumulated by
        :meth:`partial_fit` (use :meth:`fit`).
    verbose : bool, default=False
        Show a progress bar (tqdm) of the optimiser's criterion evaluations and the
        current criterion, for fits that run longer than two seconds.
    formula : str, optional
        An lme4-style formula, e.g. ``"y ~ x + C(k) + (1 + x | g)"``. Then ``fit``
        takes one DataFrame (pandas, polars, pyarrow) holding the formula's columns,
        ``y`` optional (the formula's response is used when ``y`` is None), and
        ``predict`` takes such frames too. The fixed part may use data columns,
        numbers, arithmetic inside ``I()`` (``**`` or R's ``^``), ``C()``, ``log``,
        ``exp``, ``sqrt``, ``scale``, ``center``, ``poly``, ``bs``, ``cr`` and the
        formulaic operators (``+ - : * /``, ``0 +``); anything else (attribute access,
        other calls, builtins, lambdas, ...) is refused with a ValueError: a formula
        never executes code. Bar terms ``(expr | g)``, ``(expr || g)`` (uncorrelated),
        ``(1 | a/b)`` (nested) and ``(1 | a:b)`` give the random effects; a bar
        term's columns need not be fixed effects (``y ~ 1 + (0 + x | g)``, as lme4).
        ``offset(expr)`` terms are a known part of the mean (fitted as ``y - offset``,
        as lmer; :meth:`predict` adds the new data's offset).
        ``group_column`` and ``random_slopes`` must then be None and the formula's
        intercept (``0 +`` drops it) takes the place of ``fit_intercept``.
    random_only : list of str or int, optional
        Columns of X (among ``random_slopes``) that enter the random part only, with
        no fixed effect: lme4's ``(0 + x | g)`` or ``(x | g)`` without ``x`` in the
        fixed part. ``coef_`` and ``fixed_effects_`` leave them out. Fitted by
        :meth:`fit` (not by :meth:`partial_fit` or the distributed fits, which raise
        a ValueError).

    Attributes
    ----------
    fixed_effects_ : pandas.Series
        Fixed-effect estimates, ``(Intercept)`` first.
    fixed_effects_se_ : pandas.Series
        Their standard errors.
    coef_, intercept_ : ndarray, float
        scikit-learn view of the fixed effects (aliased columns get 0).
    random_effects_ : dict of DataFrame
        BLUPs (conditional modes) per grouping factor, levels x terms.
    random_effects_sd_ : dict of DataFrame
        Conditional standard deviations of the BLUPs (lme4's ``condVar``).
    cov_re_ : dict of DataFrame
        Random-effects covariance matrix per grouping factor.
    sigma_ : float
        Residual standard deviation.
    theta_ : pandas.Series
        Relative covariance factor parameters (lme4's ``getME(fit, "theta")``).
    loglik_, aic_, bic_ : float
        Log-likelihood (the REML one for REML fits, as lme4), AIC, BIC.
    reml_criterion_ / deviance_ : float
        The optimised criterion.
    is_singular_, converged_, n_iter_ : bool, bool, int
    solver_ : {"exact", "iterative"}
        Which path fitted the model: the exact blocked Cholesky, or (crossed random
        intercepts whose exact dense part would exceed 256 MB) the iterative path of
        :mod:`skmixed._solvers.lmm_iterative`, whose reported criterion is a stochastic
        estimate (a ``StochasticCriterionWarning`` says so).
    criterion_se_, iterative_info_ : float, dict
        Iterative path only: the standard error of the reported criterion, and the
        expected criterion excess of the estimates over the exact optimum, the number
        of probe vectors, evaluations and CG iterations, the SDs' standard errors.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"],
    ...                                                       groups=df["Subject"])
    >>> m.fixed_effects_.round(3).tolist()
    [251.405, 10.467]
    >>> round(m.reml_criterion_, 3)
    1743.628
    >>> m2 = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
    >>> round(m2.sigma_, 3)
    25.592

    Precision weights (``lmer(..., weights = w)``) against frequency weights:

    >>> w = 1.0 + (df["Days"] % 3)
    >>> mp = MixedLinearRegressor(weights="precision").fit(df[["Days"]], df["Reaction"],
    ...                                                     groups=df["Subject"], sample_weight=w)
    >>> mp.n_obs_, MixedLinearRegressor().fit(df[["Days"]], df["Reaction"], groups=df["Subject"],
    ...                                        sample_weight=w).n_obs_
    (180.0, 342.0)
    """

    _fits_offset = True  # a formula's offset(): fitted as y - offset, added back by predict
    _random_only_ok = True  # random slopes without a fixed effect (lme4's (0 + x | g))

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "random_only": ["array-like", str, Integral, None],
        "reml": ["boolean"],
        "max_iter": [POSITIVE_INT],
        "weights": [str],  # the values: _precision() (its message names both)
        "verbose": ["verbose"],
    }

    def __init__(self, reml=True, fit_intercept=True, random_slopes=None, group_column=None, max_iter=500,
                 weights="frequency", verbose=False, formula=None, random_only=None):
        self.reml = reml
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.group_column = group_column
        self.max_iter = max_iter
        self.weights = weights
        self.verbose = verbose
        self.formula = formula
        self.random_only = random_only

    def _precision(self) -> bool:
        if self.weights not in ("frequency", "precision"):
            raise ValueError(f"weights must be 'frequency' or 'precision', got {self.weights!r}")
        return self.weights == "precision"

    @staticmethod
    def _as_precision(fd: FitData) -> FitData:
        """Precision weights: each row counts once whatever its weight (lme4's ``nobs``)."""
        if fd.weights is not None and not (fd.weights > 0).all():
            raise ValueError("weights='precision' needs every sample_weight > 0 (a zero weight is an infinite "
                             "residual variance: drop the row instead)")
        fields = {f.name: getattr(fd, f.name) for f in dataclasses.fields(FitData)}
        return _TotalsFitData(**fields, total_obs=float(fd.X.shape[0]))

    @transactional
    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, p)
        y : array-like, shape (n,), optional
            With ``formula``: None takes the formula's response from X.
        groups : array-like (n,) or (n, k), or DataFrame, optional
            Group labels, one column per grouping factor.
        sample_weight : array-like, shape (n,), optional
            Frequency weights (a weight of 2 is the same as a duplicated row), or
            with ``weights="precision"`` lme4's precision weights (residual
            variance ``sigma^2 / w_i``).

        Returns
        -------
        self
        """
        self._validate_params()
        precision = self._precision()
        scale = 1.0
        if precision and sample_weight is not None:
            # the shared checks count observations as the sum of the weights: show them weights
            # of mean 1 (same aliasing, same row count); the fit uses the weights as given
            try:
                w = np.asarray(sample_weight, dtype=np.float64)
            except (TypeError, ValueError):
                w = None  # the shared check names the problem
            if w is not None and w.ndim == 1 and w.size and np.isfinite(w).all() and w.sum() > 0:
                scale = w.size / float(w.sum())
                sample_weight = w * scale
        fd = self._offset_response(self._prepare_fit(X, y, groups, sample_weight))
        if precision:
            if fd.weights is not None:
                fd.weights = fd.weights / scale
            fd = self._as_precision(fd)
        self._stats = self._theta_by_factor = self._held = None  # a fit ends any partial_fit accumulation
        self._pending = False
        if not fd.terms:
            self._fit_fixed_only(fd)
        else:
            self._fit_mixed(fd)
        self._finish(fd)
        return self

    def _fit_mixed(self, fd: FitData):
        for f in fd.factors:
            # as lme4: with one observation per level a random intercept is the residual
            if f.n_levels >= fd.X.shape[0]:
                raise ValueError(f"grouping factor {f.name!r} has {f.n_levels} levels for {fd.X.shape[0]} rows: "
                                 "the random effects are not identifiable from the residual (need fewer levels "
                                 "than observations)")
        w = np.ones_like(fd.y) if fd.weights is None else fd.weights
        ybar = np.average(fd.y, weights=w)
        if np.allclose(fd.y, ybar, rtol=0, atol=1e-12 * max(1.0, abs(ybar))):
            raise ValueError("y is constant: the variance components are not identifiable")
        blocks = amalgamate(fd.terms, [f.n_levels for f in fd.factors])
        # crossed random intercepts whose exact dense part would be too big: the iterative path
        iterative = iterative_applies(blocks)
        layout = None if iterative else BlockLayout.build(blocks, [f.codes for f in fd.factors], fd.X.shape[1])
        # the optimiser sees every column at unit spread (a scaled copy: inference keeps the
        # user's rows), so the answer is equivariant to the units of the columns (undone in _fit_blocks)
        check_scales(fd.X, fd.feature_names, fd.weights)
        # random-only columns (fd.Z_extra) follow X's in the matrix Z is read from, scaled alike
        zsrc, p = fd.z_source, fd.X.shape[1]
        scaling = ColumnScaling.for_design(zsrc, fd.weights, list(fd.feature_names) + list(fd.extra_names),
                                           fd.terms, center=False)
        Z = zsrc if scaling.identity else scaling.apply(zsrc)
        X = Z if zsrc is fd.X else np.ascontiguousarray(Z[:, :p])
        # centre X's other columns and y on the intercept (exact: a unit-triangular
        # change of basis of the fixed part, undone below) so the Gram blocks keep
        # their digits when means are large against spreads
        shift, yshift = np.zeros(X.shape[1]), 0.0
        icpt = self._has_intercept() and fd.feature_names[0] == "(Intercept)"
        if icpt and X.shape[1] > 1:
            shift[1:] = np.average(X[:, 1:], axis=0, weights=fd.weights)
        if icpt:
            yshift = float(np.average(fd.y, weights=fd.weights))
        if iterative:  # scalar random intercepts only: never random-only columns
            self._fit_iterative(fd, blocks, X, shift if icpt else None, yshift, scaling)
        else:
            cp = cross_products(layout, X, fd.y, fd.weights, z_source=None if zsrc is fd.X else Z, x_shift=shift,
                                y_shift=yshift)
            cp = dataclasses.replace(cp, n_obs=fd.n_obs)  # precision weights: rows, not the weights' sum
            _require_finite([cp.A11, cp.A21, cp.A22], "the cross-products of the data")
            self._fit_blocks(fd, blocks, layout, cp, shift=shift if icpt else None, yshift=yshift, scaling=scaling)
        self._lmm_state.rows = LMMRows(fd.X, fd.y, fd.weights, [f.codes for f in fd.factors], fd)
        self._lmm_state.extra["r2_parts"] = variance_parts(fd.X, fd.weights, blocks,
                                                           self.fixed_effects_.to_numpy(), fd.z_source)

    def _refit_response(self, fd: FitData):
        self._fit_mixed(fd)
        self._finish(fd)

    def _fit_blocks(self, fd: FitData, blocks, layout, cp, theta0=None, shift=None, yshift=0.0, scaling=None):
        """Optimise theta on the cross-products and set the fitted attributes.

        ``shift`` / ``yshift``: the centring of the fixed columns and y the
        cross-products were formed with (None: none), undone on beta here;
        ``scaling``: the internal column scaling (a ColumnScaling), undone after.
        """
        problem = LMMProblem(layout, cp, reml=bool(self.reml))
        with progress_bar(self.verbose, desc="REML" if self.reml else "ML", unit="eval", delay=2.0) as bar:
            problem.progress = bar if self.verbose else None
            theta, n_iter, converged, message = problem.optimize(theta0=theta0, max_iter=self.max_iter)
        if not converged:
            warn_not_converged(problem.optimizer, n_iter, message, stacklevel=2)
        res = problem.result(theta, n_iter, converged, message)
        if shift is not None:
            T = np.eye(fd.X.shape[1])
            T[0, 1:] = -shift[1:]
            res.beta = T @ res.beta
            res.beta[0] += yshift
            res.vcov_beta = T @ res.vcov_beta @ T.T
        if scaling is not None:
            scaling.unscale(res, blocks, reml=bool(self.reml))
        covs = [res.sigma**2 * lam @ lam.T for lam in res.lambdas]
        problem, shift = self._user_problem(problem, layout, cp, shift, scaling)
        self._lmm_state = LMMState(problem, _basis(fd.X.shape[1], shift), float(yshift), res.theta,
                                   bool(self.reml), float(fd.n_obs), extra={"ldw": self._log_weights(fd)})
        self._store_random_effects(fd, blocks, res.b, res.condvar, covs, res.theta,
                                   getattr(res, "theta_internal", None))
        self._set_common(fd, res.beta, res.vcov_beta, res.sigma, res.objective, problem.n_theta)
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        self.solver_ = "exact"
        return res.theta

    def _fit_iterative(self, fd: FitData, blocks, X, shift, yshift, scaling):
        """Crossed random intercepts too large for the exact dense part (:mod:`._solvers.lmm_iterative`).

        Sets what :meth:`_fit_blocks` sets; ``criterion_se_`` and ``iterative_info_`` say how well the
        stochastic estimates are resolved, and a StochasticCriterionWarning says so by name.
        """
        with progress_bar(self.verbose, desc="REML" if self.reml else "ML", unit="eval", delay=2.0) as bar:
            res = fit_iterative(blocks, [f.codes for f in fd.factors], X, fd.y, fd.weights, fd.n_obs,
                                bool(self.reml), shift, yshift, self.max_iter, bar if self.verbose else None)
        if not res.converged:
            warn_not_converged("Newton (stochastic gradient)", res.n_iter, res.message, stacklevel=2)
        if shift is not None:
            T = _basis(fd.X.shape[1], shift)
            res.beta = T @ res.beta
            res.beta[0] += yshift
            res.vcov_beta = T @ res.vcov_beta @ T.T
        scaling.unscale(res, blocks, reml=bool(self.reml))
        covs = [res.sigma**2 * lam @ lam.T for lam in res.lambdas]
        self._lmm_state = LMMState(IterativeFitProblem(res.info, fd.X.shape[1]), np.eye(fd.X.shape[1]), 0.0,
                                   res.theta, bool(self.reml), float(fd.n_obs),
                                   extra={"ldw": self._log_weights(fd)})
        self._store_random_effects(fd, blocks, res.b, res.condvar, covs, res.theta,
                                   getattr(res, "theta_internal", None))
        self._set_common(fd, res.beta, res.vcov_beta, res.sigma, res.objective, len(blocks))
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        self.solver_ = "iterative"
        self.criterion_se_ = float(res.info["criterion_se"])
        self.iterative_info_ = dict(res.info)
        warn_stochastic(res.info, "REML criterion" if self.reml else "deviance")

    @staticmethod
    def _user_problem(problem, layout, cp, shift, scaling):
        """The fitted problem on the user's columns (for inference), and its centring.

        The optimiser's problem is on internally scaled columns; inference (degrees of
        freedom, profiles, refits) works with the user's theta, so it gets the same blocks
        scaled back (cheap: independent of the number of rows).
        """
        if scaling is None or scaling.identity:
            return problem, shift
        inv = ColumnScaling(np.zeros_like(scaling.scale), 1.0 / scaling.scale)
        cpu = scale_cross_products(layout, CrossProducts(cp.A11.copy(), cp.A21.copy(), cp.A22.copy(), cp.n_obs),
                                   inv)
        return LMMProblem(layout, cpu, reml=problem.reml), (None if shift is None
                                                             else shift / scaling.scale[:shift.shape[0]])

    # ----------------------------------------------------------------- chunked fitting
    @transactional
    def partial_fit(self, X, y=None, groups=None, sample_weight=None, refit=True):
        """Add a chunk of rows and refit on all rows seen so far (exactly).

        The chunk's per-level cross-products are added to the running totals,
        matched by group label (groups may recur across chunks, new groups may
        appear at any time), and theta is re-optimised on the totals, warm-started
        from the previous chunk's optimum. After the last chunk the estimator
        equals :meth:`fit` on the concatenated rows. Memory is that of one chunk
        plus the statistics (per-level blocks), whatever the number of rows.

        The chunk is validated as a whole before anything is updated. Aliased
        columns are judged on the accumulated ``X'WX``; if the totals cannot be
        fitted yet (e.g. a grouping factor has a single level so far), the chunk
        is still accumulated and a warning says why the model was not refitted.
        :meth:`fit` discards the accumulated statistics; a ``partial_fit`` after
        ``fit`` starts a new accumulation.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, p)
        y : array-like, shape (n,), optional
            With ``formula``: None takes the formula's response from X.
        groups : array-like (n,) or (n, k), or DataFrame, optional
            Group labels of the chunk (same grouping factors in every chunk).
        sample_weight : array-like, shape (n,), optional
            Frequency weights.
        refit : bool, default=True
            Refit on the totals now. With ``refit=False`` the chunk is only
            accumulated (its cost is that of reading its rows) and the estimates
            are dropped; they are computed once, on the totals, at the first
            access to a fitted attribute (``fixed_effects_``, ``predict``,
            ``summary()``, ...). Feed many small chunks this way: plain NumPy chunks
            (float X, integer labels, one grouping factor, no weights) are checked,
            copied and held back, and merged into the totals in bulk once they
            amount to about as many rows as there are levels, so a chunk costs
            O(its rows) however many levels the totals have.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from skmixed import MixedLinearRegressor
        >>> from skmixed.datasets import make_big_grouped_data
        >>> df = make_big_grouped_data(20_000, 50, seed=1).sample(frac=1, random_state=0)
        >>> m = MixedLinearRegressor()
        >>> for rows in np.array_split(np.arange(len(df)), 4):
        ...     chunk = df.iloc[rows]
        ...     m = m.partial_fit(chunk[["x", "b"]], chunk["y"], groups=chunk["g"])
        >>> full = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
        >>> bool(np.allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8))
        True
        """
        self._validate_params()
        if self._precision() and sample_weight is not None:
            raise ValueError("partial_fit accumulates frequency weights only; with weights='precision' "
                             "use fit on all rows")
        # all or nothing (@transactional): a rejected, failed or interrupted chunk is not counted
        first = getattr(self, "_stats", None) is None
        held = self.__dict__.get("_held") or RowBuffer()
        if not refit and not first and self._plain_chunks_allowed(sample_weight):
            chunk = plain_chunk(X, y, groups, self.n_features_in_)
            if chunk is not None:
                # a small plain chunk is held back (checked and copied, nothing else) until the held
                # rows pay for a merge into the totals: O(rows of the chunk) per call
                held = held.add(chunk)
                new = {k: v for k, v in self.__dict__.items() if not _is_estimate(k)} \
                    if not self.__dict__.get("_pending") else dict(self.__dict__)
                if held.n_rows >= max(_HOLD_ROWS, sum(len(lev) for lev in self._stats.levels)):
                    new["_stats"], held = self._merged_held(held), None
                new.update(_held=held, _pending=True)
                self.__dict__ = new
                return self
        fd = self._offset_response(self._prepare_fit(X, y, groups, sample_weight, chunk=True, reset=first))
        # every chunk is centred like the first one (close to the means, so the sums keep
        # their digits); the totals are re-centred on their own means for the fit
        shift = None if first else self._stats.shift
        stats = GroupedStats.from_rows(fd.X, fd.y, fd.weights, fd.factors, fd.terms, fd.feature_names, shift)
        total = stats if first else GroupedStats.merge([self._merged_held(held), stats])
        _require_finite([total.G, *total.D, *total.F], "the accumulated statistics")
        self._held = None
        if refit:
            self._fit_stats(total)
            self.__dict__.update(_stats=total, _pending=False)
        else:
            # estimates of fewer rows must not be read as the totals': drop them, refit on access
            new = {k: v for k, v in self.__dict__.items() if not _is_estimate(k)}
            new.update(_stats=total, _pending=True)
            self.__dict__ = new
        return self

    def _plain_chunks_allowed(self, sample_weight):
        """Whether chunks may be held back as plain rows (one integer-labelled factor, no formula)."""
        return (sample_weight is None and self._formula is None and self.group_column is None
                and "feature_names_in_" not in self.__dict__ and len(self._stats.factor_names) == 1)

    def _merged_held(self, held):
        """The totals with the held-back rows merged in (the estimator is not changed)."""
        if held is None or not held.n_rows:
            return self._stats
        X, y, g = held.rows()
        fd = self._prepare_fit(X, y, g, None, chunk=True, reset=False)
        stats = GroupedStats.from_rows(fd.X, fd.y, fd.weights, fd.factors, fd.terms, fd.feature_names,
                                       self._stats.shift)
        total = GroupedStats.merge([self._stats, stats])
        _require_finite([total.G, *total.D, *total.F], "the accumulated statistics")
        return total

    # ----------------------------------------------------------------- lazy estimates
    def __getattr__(self, name):
        # only reached for attributes that are not set: after partial_fit(refit=False)
        # the estimates are computed from the accumulated statistics on first access
        d = self.__dict__
        if d.get("_pending") and _is_estimate(name) and name not in _VALIDATION_ATTRS:
            self._refit_pending()
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __sklearn_is_fitted__(self):
        d = self.__dict__
        return bool(d.get("_pending")) or any(_is_estimate(k) and k not in _VALIDATION_ATTRS for k in d)

    def _refit_pending(self):
        """Fit on the accumulated statistics (all or nothing)."""
        saved = dict(self.__dict__)
        try:
            self.__dict__["_pending"] = False
            if self.__dict__.get("_held") is not None:
                self.__dict__.update(_stats=self._merged_held(self._held), _held=None)
            self._fit_stats(self._stats)
        except BaseException:
            self.__dict__ = saved
            raise

    def _fit_stats(self, stats: GroupedStats, unfit="warn"):
        """Fit on accumulated statistics (partial_fit and the distributed fits).

        When the totals cannot be fitted yet, ``unfit="warn"`` (partial_fit: more
        chunks may come) warns and leaves the estimator as it was; ``"raise"``
        raises a ValueError naming the reason.
        """
        n_par = len(stats.feature_names) + sum(t.q * (t.q + 1) // 2 for t in stats.terms)
        n_par += 1 if stats.terms else 0
        small = [nm for nm, lev in zip(stats.factor_names, stats.levels) if len(lev) < 2]
        many = [nm for nm, lev in zip(stats.factor_names, stats.levels) if len(lev) >= stats.n_rows]
        reason = None
        if stats.terms and stats.has_intercept:
            # fit's "y is constant" check, on the centred sum of squares of y
            p = stats.p
            G, ybar = stats.G, stats.means()[-1]
            yy = G[p, p] - G[0, p] ** 2 / G[0, 0]
            if yy <= stats.n_obs * (1e-12 * max(1.0, abs(ybar))) ** 2:
                reason = "y is constant so far: the variance components are not identifiable"
        if reason is not None:
            pass
        elif small:
            reason = f"grouping factor(s) {small} have a single level so far"
        elif many:
            reason = (f"grouping factor(s) {many} have as many levels as rows so far: the random effects are "
                      "not identifiable from the residual")
        elif stats.n_obs < n_par:
            reason = f"{stats.n_obs:g} rows so far are too few for the model's {n_par} parameters"
        else:
            keep = stats.kept_columns()
            try:
                sp = stats.to_problem(keep)
            except ValueError as e:
                reason = str(e)
        if reason is not None:
            if unfit == "raise":
                raise ValueError(f"the model cannot be fitted: {reason}")
            warnings.warn(f"statistics accumulated but the model was not refitted: {reason}", UserWarning,
                          stacklevel=3)
            return
        if keep.size < stats.p:
            dropped = [nm for k, nm in enumerate(stats.feature_names) if k not in set(keep.tolist())]
            warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s): "
                          f"{dropped}", UserWarning, stacklevel=3)
        p = keep.size
        fd = _TotalsFitData(np.empty((0, p)), np.empty(0), None, sp.feature_names, sp.factors, sp.terms,
                            sp.keep, stats.p, total_obs=float(stats.n_obs))
        if not sp.terms:
            self._fit_fixed_only_gram(fd, sp.gram, sp.x_shift, sp.y_shift)
        else:
            # the optimiser sees the columns at unit spread, as in fit (from the totals' spreads)
            scaling = gram_scaling(sp.gram, stats.n_obs, sp.feature_names, sp.terms)
            scale_cross_products(sp.layout, sp.cp, scaling)
            prev = getattr(self, "_theta_by_factor", None) or {}
            theta0 = None
            if all(b.factor in prev for b in sp.blocks):
                theta0 = scaling.theta_internal(np.concatenate([prev[b.factor] for b in sp.blocks]), sp.blocks)
            shift = None if sp.x_shift is None else sp.x_shift * scaling.scale
            theta = self._fit_blocks(fd, sp.blocks, sp.layout, sp.cp, theta0=theta0, shift=shift,
                                     yshift=sp.y_shift, scaling=scaling)
            by, k = {}, 0
            for b in sp.blocks:
                by[b.factor] = np.asarray(theta[k:k + b.n_theta], dtype=float)
                k += b.n_theta
            self._theta_by_factor = by
        self._finish(fd)

    def _fit_fixed_only_gram(self, fd: FitData, G, shift=None, yshift=0.0):
        """Fixed-effects-only fit from ``[X y]'W[X y]`` (the chunked counterpart of the QR fit).

        ``G`` may be centred (``shift``/``yshift``, None: not): a unit-triangular change of
        basis that leaves ``log|X'WX|`` and the residuals unchanged and is undone on beta.
        """
        p = G.shape[0] - 1
        XtX, Xty, yty = G[:p, :p], G[:p, p], G[p, p]
        R = sla.cholesky(XtX, lower=False)  # R'R = X'WX: the R of a QR of sqrt(W) X (up to signs)
        beta = sla.cho_solve((R, False), Xty)
        rss = float(max(yty - Xty @ beta, 0.0))
        N = fd.n_obs
        dof = N - p if self.reml else N
        sigma2 = rss / dof if dof > 0 else 0.0
        Rinv = sla.solve_triangular(R, np.eye(p))
        vcov = sigma2 * Rinv @ Rinv.T
        if shift is not None:
            T = np.eye(p)
            T[0, 1:] = -shift[1:]
            beta = T @ beta
            beta[0] += yshift
            vcov = T @ vcov @ T.T
        if sigma2 > 0:
            if self.reml:
                crit = 2 * np.log(np.abs(np.diag(R))).sum() + dof * (1 + np.log(2 * np.pi * rss / dof))
            else:
                crit = N * (1 + np.log(2 * np.pi * rss / N))
        else:
            crit = -np.inf
        self._store_random_effects(fd, [], [], [], [], np.empty(0))
        self._set_common(fd, beta, vcov, float(np.sqrt(sigma2)), float(crit), 0)
        self.n_iter_, self.converged_ = 1, True
        self._lmm_state = LMMState(None, np.eye(p), 0.0, np.empty(0), bool(self.reml), float(N),
                                   extra={"rss": rss, "ldw": self._log_weights(fd)})

    def _fit_fixed_only(self, fd: FitData):
        w = np.ones(fd.X.shape[0]) if fd.weights is None else fd.weights
        sw = np.sqrt(w)
        Q, R = np.linalg.qr(fd.X * sw[:, None])
        beta = np.linalg.solve(R, Q.T @ (fd.y * sw))
        rss = float(np.sum(w * (fd.y - fd.X @ beta) ** 2))
        N, p = fd.n_obs, fd.X.shape[1]
        dof = N - p if self.reml else N
        sigma2 = rss / dof if dof > 0 else 0.0
        Rinv = np.linalg.inv(R)
        vcov = sigma2 * Rinv @ Rinv.T
        if sigma2 > 0:
            if self.reml:
                _, ld = np.linalg.slogdet(R.T @ R)
                crit = ld + dof * (1 + np.log(2 * np.pi * rss / dof))
            else:
                crit = N * (1 + np.log(2 * np.pi * rss / N))
        else:
            crit = -np.inf
        self._store_random_effects(fd, [], [], [], [], np.empty(0))
        self._set_common(fd, beta, vcov, float(np.sqrt(sigma2)), float(crit), 0)
        self.n_iter_, self.converged_ = 1, True  # closed form: one 'iteration'
        self._lmm_state = LMMState(None, np.eye(p), 0.0, np.empty(0), bool(self.reml), float(N),
                                   rows=LMMRows(fd.X, fd.y, fd.weights, [], fd),
                                   extra={"rss": rss, "ldw": self._log_weights(fd)})

    def _log_weights(self, fd) -> float:
        """lme4's ``ldW`` (sum of log precision weights; 0 for frequency weights)."""
        if self.weights == "precision" and fd.weights is not None:
            return float(np.log(fd.weights).sum())
        return 0.0

    def _set_common(self, fd, beta, vcov, sigma, crit, n_theta):
        if self.weights == "precision" and fd.weights is not None:
            # lme4: -2 log L of precision-weighted rows includes -sum(log w_i) (ldW)
            crit = crit - float(np.log(fd.weights).sum())
        names = fd.feature_names
        self.fixed_effects_ = pd.Series(beta, index=names, name="Estimate")
        self.fixed_effects_se_ = pd.Series(np.sqrt(np.diag(vcov)), index=names, name="Std. Error")
        self.vcov_ = pd.DataFrame(vcov, index=names, columns=names)
        self.sigma_ = float(sigma)
        if self.reml:
            self.reml_criterion_ = float(crit)
        else:
            self.deviance_ = float(crit)
        self.loglik_ = -0.5 * float(crit)
        k = len(beta) + n_theta + 1
        self.n_obs_ = fd.n_obs
        self.aic_ = -2 * self.loglik_ + 2 * k
        self.bic_ = -2 * self.loglik_ + k * np.log(fd.n_obs)
        self.varcorr_ = varcorr_table(self.cov_re_, self.sigma_, self._re_patterns)

    def _finish(self, fd):
        self._set_factor_attrs(fd)
        self.intercept_, self.coef_ = self._sklearn_coefs(fd, self.fixed_effects_.to_numpy())

    # ----------------------------------------------------------------- prediction
    def predict(self, X, groups=None, return_std=False):
        """Predict: conditional on the BLUPs for known groups, population (random effects 0) otherwise.

        Parameters
        ----------
        X : array-like or DataFrame
        groups : array-like or DataFrame, optional
            Group labels; levels unseen in training and ``groups=None`` give
            the population prediction.
        return_std : bool, default=False
            Also return the standard error of the fixed part, ``sqrt(x' V x)``
            (see :meth:`predict_interval` for intervals with the random effects).

        Returns
        -------
        ndarray of shape (n,), or (prediction, std) with ``return_std``
            A formula model given a pandas DataFrame returns pandas Series on the
            frame's index instead (as statsmodels' formula models).
        """
        pdata = self._prepare_predict(X, groups)
        pred = self._mean(pdata)
        if not return_std:
            return self._pandas_output(X, pred)
        from .inference._mixin import prediction_std

        std = prediction_std(self, pdata.X, pdata.codes, pdata.z_source)[0]
        return self._pandas_output(X, pred), self._pandas_output(X, std)

    def predict_interval(self, X, groups=None, level=0.95, kind="prediction"):
        """Intervals around :meth:`predict`.

        ``kind="confidence"``: the fixed part's uncertainty only. ``kind="prediction"``:
        an interval for a new observation — the fixed part's variance, the random
        effects' (their full variance ``z' Sigma z`` for levels not seen in training,
        the BLUPs' conditional variances for known ones) and the residual variance.

        Returns
        -------
        pandas.DataFrame
            Columns ``fit, lower, upper, std``; the index of ``X`` when it is a pandas DataFrame.

        Examples
        --------
        >>> from skmixed import MixedLinearRegressor
        >>> from skmixed.datasets import load_sleepstudy
        >>> df = load_sleepstudy()
        >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
        >>> new = df.head(2).assign(Subject="new")
        >>> m.predict_interval(new).shape
        (2, 4)
        """
        from .inference._mixin import normal_quantile, prediction_std

        if kind not in ("prediction", "confidence"):
            raise ValueError(f"kind must be 'prediction' or 'confidence', got {kind!r}")
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        pdata = self._prepare_predict(X, groups)
        pred = self._mean(pdata)
        sd_fixed, sd_all = prediction_std(self, pdata.X, pdata.codes, pdata.z_source)
        sd = sd_fixed if kind == "confidence" else np.sqrt(sd_all**2 + self.sigma_**2)
        z = normal_quantile(level)
        return pd.DataFrame({"fit": pred, "lower": pred - z * sd, "upper": pred + z * sd, "std": sd},
                            index=X.index if isinstance(X, pd.DataFrame) else None)

    def _mean(self, pdata):
        """Fixed part + BLUPs (+ a formula's offset()) at prepared prediction rows."""
        pred = pdata.X @ self.fixed_effects_.to_numpy() + self._random_part(pdata.z_source, pdata.codes)
        return pred if pdata.offset is None else pred + pdata.offset

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of :meth:`predict` (conditional when ``groups`` is given)."""
        return r2_score(y, self.predict(X, groups), sample_weight=sample_weight)

    # ----------------------------------------------------------------- reporting
    def summary(self, ddf="Satterthwaite") -> Summary:
        """A ``summary(lmer(...))``-style report with lmerTest's t-tests.

        Parameters
        ----------
        ddf : {"Satterthwaite", "Kenward-Roger"}
            Denominator degrees of freedom of the t-tests (lmerTest's ``ddf``);
            Kenward-Roger also adjusts the standard errors (pbkrtest's ``vcovAdj``).

        Returns
        -------
        Summary
            Prints as R does; ``.to_frame()`` gives the coefficient table.
        """
        from sklearn.utils.validation import check_is_fitted

        from .inference._api import lmm_summary

        check_is_fitted(self)
        return lmm_summary(self, ddf)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _require_finite(arrays, what):
    """A clear error where sums of squares overflow (|X| or |y| above ~1e154) instead of NaN estimates."""
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{what} are not finite: values too large to square (|X| or |y| above ~1e154?); "
                         "rescale the data")


# held-back rows of plain chunks are merged into the totals once there are this many (or as
# many as the totals have levels): a merge then costs about what reading its rows costs
_HOLD_ROWS = 50_000

# set by validation (never stale) / what prediction reads besides the trailing-underscore estimates
_VALIDATION_ATTRS = ("n_features_in_", "feature_names_in_")
_PRIVATE_ESTIMATES = ("_keep", "_re_blocks", "_re_values", "_re_patterns", "_lmm_state")


def _is_estimate(name):
    """Whether an attribute holds an estimate (stale once more chunks are accumulated)."""
    if name.startswith("__"):
        return False
    return (name.endswith("_") and name not in _VALIDATION_ATTRS) or name in _PRIVATE_ESTIMATES


# ------------------------------------------------------------------ seams for the distributed fit (skmixed.dask)
def fit_grouped_stats(est: MixedLinearRegressor, stats: GroupedStats) -> None:
    """Fit ``est`` from scratch on merged grouped statistics (the distributed fit's driver):
    the end of ``partial_fit``'s path with no earlier accumulation; ``est``'s input-validation
    state (names, formula) is the caller's. Raises when the statistics cannot be fitted.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> from skmixed._base import fit_inputs
    >>> from skmixed._solvers.lmm_stats import GroupedStats
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor(random_slopes=["Days"])
    >>> fd = fit_inputs(m, df[["Days"]], df["Reaction"], df["Subject"], chunk=True)
    >>> fit_grouped_stats(m, GroupedStats.from_rows(fd.X, fd.y, fd.weights, fd.factors, fd.terms,
    ...                                             fd.feature_names))
    >>> round(float(m.sigma_), 2)
    25.59
    """
    est._stats = None
    est._fit_stats(stats, unfit="raise")
