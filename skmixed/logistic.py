"""MixedLogisticRegressor: binary GLMM (logit link) by Laplace / adaptive Gauss-Hermite, glmer's optimum."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ._base import GLMM_CONSTRAINTS, FitData, MixedModelBase, fit_inputs, merge_offsets
from ._design.layout import amalgamate
from ._design.scaling import ColumnScaling, check_scales
from ._separation import group_separation
from ._kernels import glmm as kg
from ._solvers import glmm as sg
from ._solvers._optim import boundary_names, warn_not_converged
from ._families import BINOMIAL
from ._summary import Summary, format_coef_table, format_groups_and_flags, format_varcorr, varcorr_table
from ._transaction import transactional
from .inference._mixin import InferenceMixin, variance_parts
from .inference._state import GLMMState, LMMRows

__all__ = ["MixedLogisticRegressor", "SeparationWarning", "SingularFitWarning"]


class SeparationWarning(UserWarning):
    """The fixed effects (quasi-)separate the classes: some estimates diverge."""


class SingularFitWarning(UserWarning):
    """A variance parameter sits on the boundary (lme4's "boundary (singular) fit")."""


def _binary_numeric(y):
    """``(classes, codes)`` as ``np.unique`` gives them when ``y`` is numeric with exactly two
    integral values (what ``type_of_target`` calls binary); ``None`` otherwise."""
    if y.dtype.kind not in "biuf" or y.size == 0:
        return None
    lo, hi = y.min(), y.max()
    # floats count as labels only when integral and within int64 (type_of_target's test)
    if lo == hi or (y.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi) and lo == np.round(lo)
                                                 and hi == np.round(hi) and max(-lo, hi) < 2.0**63)):
        return None
    upper = y == hi
    if np.count_nonzero(upper | (y == lo)) != y.size:
        return None
    return np.array([lo, hi], dtype=y.dtype), upper.astype(np.float64)


class MixedLogisticRegressor(InferenceMixin, ClassifierMixin, MixedModelBase):
    """Binary logistic mixed model (GLMM, logit link), as ``lme4::glmer(family = binomial)``.

    ``P(y = 1 | b) = logistic(X beta + Z b)``, ``b ~ N(0, Sigma)``. The
    likelihood integral over ``b`` is approximated by the Laplace method
    (``nagq=1``, glmer's default), by adaptive Gauss-Hermite quadrature
    (``nagq > 1``; one grouping factor with a single scalar random effect only,
    as in lme4), or ``nagq=0`` estimates ``beta`` inside the penalized IRLS
    (glmer's fast, slightly less accurate mode).

    With one grouping factor the conditional modes are independent small Newton
    problems per level, solved in one parallel numba pass over the rows that
    also yields the analytic gradient of the Laplace deviance; L-BFGS-B then
    reaches glmer's optimum in a handful of iterations. Crossed or nested
    factors (Laplace or ``nagq=0``) run penalized IRLS on the core's blocked
    sparse system.

    Parameters
    ----------
    nagq : int, default=1
        Quadrature points: 0 (``beta`` in PIRLS), 1 (Laplace) or more (adaptive
        Gauss-Hermite, scalar random intercept of a single factor only).
    fit_intercept : bool, default=True
        Add a fixed intercept (and, per grouping factor, a random intercept).
    random_slopes : list of str or int, optional
        Columns of X with a random slope (correlated with the random intercept)
        for every grouping factor. Use :meth:`from_formula` for anything else.
    group_column : str, int or list, optional
        Column(s) of X holding the group labels (for plain ``cross_val_score``
        / ``GridSearchCV`` without metadata routing).
    tol : float, default=1e-5
        Gradient tolerance of the optimiser in whitened coordinates: roughly
        the largest distance to the optimum, in standard errors.
    max_iter : int, default=500
        Maximum optimiser iterations.
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
        term's columns need not be fixed effects (``y ~ 1 + (0 + x | g)``, as glmer;
        Laplace only). ``offset(expr)`` terms and ``cbind(successes, failures)``
        responses are read as glmer does.
        ``group_column`` and ``random_slopes`` must then be None and the formula's
        intercept (``0 +`` drops it) takes the place of ``fit_intercept``.
    random_only : list of str or int, optional
        Columns of X (among ``random_slopes``) that enter the random part only, with
        no fixed effect (glmer's ``(0 + x | g)`` without a fixed ``x``); fitted by the
        Laplace approximation (``nagq`` 0 or 1), not by the distributed fits.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Class labels; ``classes_[1]`` is the modelled "success" class.
    fixed_effects_, fixed_effects_se_, fixed_effects_z_ : pandas.Series
        Estimates, standard errors (glmer's default: from the Hessian of the
        deviance in ``(theta, beta)``) and z values, ``(Intercept)`` first.
    fixed_effects_pvalue_ : pandas.Series
        Wald p-values ``Pr(>|z|)``.
    vcov_ : pandas.DataFrame
        Covariance matrix of the fixed effects.
    coef_, intercept_ : ndarray of shape (1, p), ndarray of shape (1,)
        scikit-learn's linear-classifier view of the fixed effects.
    random_effects_ : dict of DataFrame
        Conditional modes of the random effects per grouping factor (levels x terms).
    random_effects_sd_ : dict of DataFrame
        Their conditional standard deviations (lme4's ``condVar``).
    cov_re_ : dict of DataFrame
        Random-effects covariance matrix per grouping factor.
    theta_ : pandas.Series
        Relative covariance factor parameters (lme4's ``getME(fit, "theta")``).
    loglik_, deviance_, aic_, bic_ : float
        Approximate log-likelihood (equal to glmer's ``logLik`` for 0/1 data),
        ``-2 loglik``, AIC and BIC.
    sigma_ : float
        1.0 (the binomial family has no scale parameter).
    is_singular_, converged_, n_iter_ : bool, bool, int
        ``converged_`` only after a final check found no improving feasible
        direction (projected gradient and probes off every bound).
    boundary_params_ : list of str
        Names (as in ``theta_``) of the parameters on their bound 0: a variance
        at 0 or, in a correlated term, a correlation at +-1.
    fit_log_ : FitLog or None
        What the optimiser met: ``started_on_boundary``, ``touched_boundary``,
        ``n_escapes`` (restarts off a bound), ``final_check``.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmixed import MixedLogisticRegressor
    >>> from skmixed.datasets import load_cbpp_bernoulli
    >>> df = load_cbpp_bernoulli()
    >>> X = pd.get_dummies(df["period"], prefix="period", drop_first=True, dtype=float)
    >>> m = MixedLogisticRegressor().fit(X, df["y"], groups=df["herd"])
    >>> m.fixed_effects_.round(2).tolist()
    [-1.4, -0.99, -1.13, -1.58]
    >>> round(m.loglik_, 2)
    -277.5
    >>> m2 = MixedLogisticRegressor.from_formula("y ~ period + (1 | herd)", df)
    >>> m2.predict_proba(df.head(2)).shape
    (2, 2)
    """

    def __init__(self, nagq=1, fit_intercept=True, random_slopes=None, group_column=None, tol=1e-5,
                 max_iter=500, formula=None, random_only=None):
        self.nagq = nagq
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.group_column = group_column
        self.tol = tol
        self.max_iter = max_iter
        self.formula = formula
        self.random_only = random_only

    # ----------------------------------------------------------------- input checks
    def _validate_y(self, y, n):
        y_arr = self._check_y_shape(y, n)
        if pd.isna(pd.Series(y_arr)).any():
            raise ValueError("y contains NaN / missing labels")
        fast = _binary_numeric(y_arr)
        if fast is not None:
            # the common case (0/1 labels, millions of rows): two passes instead of a sort
            self._pending_classes, codes = fast
            return codes
        if y_arr.dtype.kind == "f" and y_arr.size and np.all((y_arr >= 0) & (y_arr <= 1)) \
                and np.any((y_arr > 0) & (y_arr < 1)):
            # binomial proportions (the trials come as sample_weight): glmer's weights= form
            self._pending_classes, self._pending_trials = np.array([0.0, 1.0]), True
            return y_arr.astype(np.float64)
        y_type = type_of_target(y_arr, input_name="y", raise_unknown=True)
        classes, codes = np.unique(y_arr, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); a logistic model needs two")
        if y_type != "binary":
            raise ValueError("Only binary classification is supported. The type of the target "
                             f"is {y_type}; MixedLogisticRegressor needs exactly two classes in y.")
        self._pending_classes = classes
        return codes.astype(np.float64)

    def _binomial_trials(self, X, y, groups, sample_weight, trials):
        """A ``cbind(successes, failures)`` response: the proportions with the trials as weights (glmer's)."""
        w = trials if sample_weight is None else trials * np.asarray(sample_weight, dtype=np.float64)
        return X, np.asarray(y, dtype=np.float64), groups, w

    _parameter_constraints: dict = GLMM_CONSTRAINTS

    def _check_params(self):
        self._validate_params()

    # ----------------------------------------------------------------- fitting
    _family = BINOMIAL
    _fits_offset = True
    _random_only_ok = True  # random slopes without a fixed effect (lme4's (0 + x | g)), Laplace

    @transactional
    def fit(self, X, y=None, groups=None, sample_weight=None, offset=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, p)
        y : array-like, shape (n,), optional
            With ``formula``: None takes the formula's response from X.
            Two class labels (any dtype), or binomial proportions in [0, 1]
            with the numbers of trials as ``sample_weight`` (glmer's
            ``cbind(successes, failures)`` or ``weights=`` with a proportion).
        groups : array-like (n,) or (n, k), or DataFrame, optional
            Group labels, one column per grouping factor.
        sample_weight : array-like, shape (n,), optional
            Frequency weights: a row with weight 3 counts as three identical
            rows, so aggregated binomial data can be fitted as weighted 0/1 rows;
            with proportions in y, the numbers of trials.
        offset : array-like, shape (n,), optional
            A known term added to the linear predictor (log-odds scale).

        Returns
        -------
        self
        """
        self._check_params()
        try:
            fd = self._prepare_fit(X, y, groups, sample_weight)
            classes = self._pending_classes
            trials = self.__dict__.get("_pending_trials", False)
        finally:
            self.__dict__.pop("_pending_classes", None)
            self.__dict__.pop("_pending_trials", None)
        if trials:
            if fd.weights is None:
                raise ValueError("y holds proportions (values strictly between 0 and 1): pass the numbers of "
                                 "trials as sample_weight, as glmer's weights=")
            k = fd.y * fd.weights
            if np.any(np.abs(k - np.round(k)) > 1e-6 * np.maximum(1.0, np.abs(k))):
                warnings.warn("non-integer numbers of successes (y * sample_weight) in a binomial model",
                              UserWarning, stacklevel=2)
        offset = merge_offsets(fd.offset, offset, fd.X.shape[0])
        res = self._fit_glmm(fd, offset)
        self.classes_ = classes
        self._warn_problems(res, fd)
        return self

    def _fit_glmm(self, fd, offset):
        """Fit the validated data (shared with MixedPoissonRegressor); stores everything but the classes."""
        if offset is not fd.offset:
            # the fit's data carries its whole offset (formula's and argument's): simulations,
            # bootstrap refits and likelihood profiles read it from there
            fd = dataclasses.replace(fd, offset=offset)
        blocks = amalgamate(fd.terms, [f.n_levels for f in fd.factors]) if fd.terms else []
        if self.nagq > 1 and blocks and (len(blocks) > 1 or blocks[0].q > 1):
            raise ValueError("nAGQ > 1 is only available for models with a single, scalar random-effects "
                             "term (one grouping factor, random intercept or one random slope)")
        if self.nagq > 1 and fd.Z_extra is not None:
            raise ValueError(f"nAGQ > 1 is not available with random-only columns {list(fd.extra_names)} "
                             "(random slopes without a fixed effect) yet: use nagq=1 (Laplace) or add them to "
                             "the fixed part")
        # the optimiser sees centred, unit-spread columns (a copy of the design), so the
        # answer is equivariant to the columns' units and origins; mapped back below
        check_scales(fd.X, fd.feature_names, fd.weights)
        # random-only columns (fd.Z_extra, after X's in fd.z_source) are scaled alike, never centred
        scaling = ColumnScaling.for_design(fd.z_source, fd.weights, list(fd.feature_names) + list(fd.extra_names),
                                           fd.terms)
        if scaling.identity:
            fd_int = fd
        elif fd.Z_extra is None:
            fd_int = dataclasses.replace(fd, X=scaling.apply(fd.X))
        else:
            Zs, p = scaling.apply(fd.z_source), fd.X.shape[1]
            fd_int = dataclasses.replace(fd, X=np.ascontiguousarray(Zs[:, :p]),
                                         Z_extra=np.ascontiguousarray(Zs[:, p:]))
        res = self._fit_mixed(fd_int, blocks, offset) if blocks else self._fit_fixed_only(fd_int, offset)
        # the kernels leave out the log-likelihood's constant (log binomial coefficients, log y!);
        # glmer's nAGQ > 1 deviance is on the unit-deviance scale instead (equal for 0/1 rows)
        const = self._family.saturated_constant if fd.terms and self.nagq > 1 else self._family.loglik_constant
        self._finish_fit(fd, blocks, res, scaling, const(fd.y, self._weights(fd)))
        return res

    def _finish_fit(self, fd, blocks, res, scaling, loglik_constant):
        """The internal (scaled-column) fit on the user's columns, stored; shared with the distributed fit,
        whose ``fd`` holds no rows."""
        # divergence is judged on the internal (unit-spread) scale, where it does not depend on units
        res.extra["beta_internal"] = np.asarray(res.beta, dtype=float).copy()
        res.extra["se_internal"] = np.sqrt(np.clip(np.diag(np.asarray(res.vcov_beta, dtype=float)), 0, None))
        res.extra["re_sd_internal"] = {fd.factors[blk.factor].name: float(np.sqrt(np.max(np.sum(lam**2, axis=1))))
                                       for blk, lam in zip(blocks, res.lambdas)}
        scaling.unscale(res, blocks)
        res.deviance = float(res.deviance) + loglik_constant
        res.loglik = -0.5 * res.deviance
        self._store(fd, blocks, res)

    def _refit_response(self, fd: FitData):
        # the bootstrap's refits: the fitted blocks, the design as given (no re-scaling)
        blocks = self._glmm_state.blocks
        self._store(fd, blocks, self._fit_mixed(fd, blocks, fd.offset))

    def _weights(self, fd):
        return np.ones(fd.X.shape[0]) if fd.weights is None else fd.weights

    def _fit_mixed(self, fd: FitData, blocks, offset=None):
        X = np.ascontiguousarray(fd.X)
        w = self._weights(fd)
        if len(blocks) == 1 and fd.Z_extra is None:
            blk = blocks[0]
            prob = sg.SingleFactorGLMM(X, fd.y, w, fd.factors[blk.factor].codes, blk.n_levels,
                                       np.asarray(blk.intercept_slopes, dtype=np.int64), blk.pattern,
                                       family=self._family, offset=offset)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), sg.serial_if_small(X.shape[0]):
                res = sg.fit_single_factor(prob, nagq=int(self.nagq), tol=float(self.tol),
                                           max_iter=int(self.max_iter))
            res.extra["lower"] = prob.lower_theta
        else:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), sg.serial_if_small(X.shape[0]):
                # random-only columns go this way too (its Z is read from [X | Z_extra])
                res = sg.fit_multi_factor(X, fd.y, w, fd.factors, blocks, nagq=int(self.nagq),
                                          tol=float(self.tol), max_iter=int(self.max_iter), family=self._family,
                                          offset=offset, z_source=None if fd.Z_extra is None else fd.z_source)
        return res

    def _fit_fixed_only(self, fd: FitData, offset=None):
        X = np.ascontiguousarray(fd.X)
        w = self._weights(fd)
        # a plain GLM: the joint PIRLS with a single dummy group and theta = 0
        prob = sg.SingleFactorGLMM(X, fd.y, w, np.zeros(X.shape[0], dtype=np.int64), 1,
                                   np.array([-1], dtype=np.int64), np.ones((1, 1), dtype=bool),
                                   family=self._family, offset=offset)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), sg.serial_if_small(X.shape[0]):
            dev, _, beta, _, S = prob.joint_pirls(np.zeros(1), sg.start_beta(X, fd.y, w, self._family, offset), prob.u,
                                                  tol=1e-9, maxit=100)
        try:
            V = np.linalg.inv(S)
        except np.linalg.LinAlgError:
            V = np.linalg.pinv(S)
        return sg.GLMMResult(theta=np.empty(0), beta=beta, vcov_beta=V, u=[], b=[], condvar=[], lambdas=[],
                             deviance=float(dev), loglik=-0.5 * float(dev), n_iter=1, n_eval=1, converged=True,
                             message="GLM", vcov_method="glm", extra={"lower": np.empty(0)})

    def _store(self, fd, blocks, res):
        names = fd.feature_names
        beta = np.asarray(res.beta, dtype=float)
        V = np.asarray(res.vcov_beta, dtype=float)
        se = np.sqrt(np.clip(np.diag(V), 0, None))
        self.fixed_effects_ = pd.Series(beta, index=names, name="Estimate")
        self.fixed_effects_se_ = pd.Series(se, index=names, name="Std. Error")
        with np.errstate(divide="ignore", invalid="ignore"):
            z = beta / se
        self.fixed_effects_z_ = pd.Series(z, index=names, name="z value")
        self.fixed_effects_pvalue_ = pd.Series(2 * stats.norm.sf(np.abs(z)), index=names, name="Pr(>|z|)")
        self.vcov_ = pd.DataFrame(V, index=names, columns=names)
        covs = [lam @ lam.T for lam in res.lambdas]  # binomial: sigma = 1
        self._store_random_effects(fd, blocks, res.b, res.condvar, covs, res.theta,
                                   getattr(res, "theta_internal", None))
        self.sigma_ = 1.0
        self.loglik_ = float(res.loglik)
        self.deviance_ = -2.0 * self.loglik_
        k = beta.size + len(res.theta)
        self.n_obs_ = fd.n_obs
        self.aic_ = self.deviance_ + 2 * k
        self.bic_ = self.deviance_ + k * np.log(fd.n_obs)
        self.varcorr_ = varcorr_table(self.cov_re_, None, self._re_patterns)
        self.n_iter_, self.converged_ = int(res.n_iter), bool(res.converged)
        # which parameters sit on their bound (a diagonal theta at 0: a variance 0 or, for a
        # later term of a correlated block, correlations +-1); lme4's isSingular per parameter
        self.boundary_params_ = boundary_names(res.theta, res.extra["lower"], self.theta_.index)
        self.fit_log_ = res.extra.get("fit_log")
        self.vcov_method_ = res.vcov_method
        self.nagq_ = int(self.nagq) if blocks else 0
        self._set_factor_attrs(fd)
        if fd.X.shape[0] == 0 and fd.n_obs > 0:
            # a distributed fit: the rows stayed on the workers, so the row-based inference
            # (simulate, bootstrap, Nakagawa R2) must refuse clearly rather than work on no rows
            rows, extra = None, {}
        else:
            rows = LMMRows(fd.X, fd.y, fd.weights, [f.codes for f in fd.factors], fd)
            extra = {"r2_parts": variance_parts(fd.X, fd.weights, blocks, beta, fd.z_source)}
        self._glmm_state = GLMMState(list(blocks), rows, extra=extra)
        icpt, coef = self._sklearn_coefs(fd, beta)
        self.intercept_ = np.array([icpt])
        self.coef_ = coef.reshape(1, -1)

    def _re_sds(self):
        """Largest random-effect SD per grouping factor (logit scale)."""
        return {f: float(np.sqrt(np.max(np.diag(c.to_numpy())))) for f, c in self.cov_re_.items() if c.size}

    def _finish_distributed(self, res, classes):
        """After a distributed fit: the classes seen across the partitions, and the warnings of a fit."""
        self.classes_ = classes
        self._warn_problems(res)

    def _warn_problems(self, res, fd=None):
        beta = res.extra.get("beta_internal", self.fixed_effects_.to_numpy())
        se = res.extra.get("se_internal", self.fixed_effects_se_.to_numpy())
        separated = np.any(np.abs(beta) > 15) or np.any(~np.isfinite(se)) or np.any(se > 100)
        if separated:
            bad = list(self.fixed_effects_.index[(np.abs(beta) > 15) | ~np.isfinite(se) | (se > 100)])
            warnings.warn(f"fixed effects {bad} diverge: the data are (quasi-)separated by them; estimates and "
                          "standard errors of these coefficients are not meaningful", SeparationWarning,
                          stacklevel=3)
        if fd is not None and fd.factors:
            sds = res.extra.get("re_sd_internal") or self._re_sds()
            for msg in group_separation(fd.y, fd.weights, fd.factors, sds):
                separated = True
                warnings.warn(msg, SeparationWarning, stacklevel=3)
        if res.extra.get("hessian_failed") and not (separated or self.is_singular_):
            warnings.warn("the Hessian of the deviance is not positive definite at the optimum; standard errors "
                          "are conditional on the variance parameters (glmer's RX-based vcov)", UserWarning,
                          stacklevel=3)
        if self.is_singular_:
            warnings.warn(f"boundary (singular) fit: theta {self.boundary_params_} at 0 (a random-effects variance "
                          "0, or correlations +-1 within a term); see is_singular_, boundary_params_ and theta_; "
                          "the model is usable", SingularFitWarning, stacklevel=3)
        if not self.converged_:
            log = res.extra.get("fit_log")
            warn_not_converged(log.optimizer if log is not None else "PIRLS", self.n_iter_, res.message, log,
                               stacklevel=3)

    # ----------------------------------------------------------------- prediction
    def decision_function(self, X, groups=None, offset=None):
        """Linear predictor (log-odds of ``classes_[1]``).

        Conditional on the random effects for known groups; population
        (random effects 0) for unseen levels or ``groups=None``.

        Parameters
        ----------
        X : array-like or DataFrame
        groups : array-like or DataFrame, optional
        offset : array-like of shape (n,), optional
            Added to the linear predictor (as the ``offset`` of :meth:`fit`).

        Returns
        -------
        ndarray of shape (n,)
        """
        pdata = self._prepare_predict(X, groups)
        eta = np.empty(pdata.X.shape[0])
        kg.linear_predictor(np.ascontiguousarray(pdata.X), self.fixed_effects_.to_numpy(), eta)
        for blk, b in zip(self._re_blocks, self._re_values):
            kg.add_random_part(pdata.z_source, np.asarray(blk.intercept_slopes, dtype=np.int64),
                               pdata.codes[blk.factor], np.ascontiguousarray(b), eta)
        off = merge_offsets(pdata.offset, offset, eta.shape[0])
        return eta if off is None else eta + off

    def predict_proba(self, X, groups=None, marginal=False, offset=None):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like or DataFrame
        groups : array-like or DataFrame, optional
        marginal : bool, default=False
            For levels not seen in training (and ``groups=None``): ``False`` gives
            the probability at random effect 0, ``True`` averages the probability
            over the random effects' fitted distribution (Gauss-Hermite quadrature)
            — the calibrated prediction for a new group. Known levels use their
            conditional modes either way.
        offset : array-like of shape (n,), optional
            Added to the linear predictor (as the ``offset`` of :meth:`fit`).

        Returns
        -------
        ndarray of shape (n, 2)
        """
        if marginal:
            if offset is not None:
                raise ValueError("marginal=True does not take an offset")
            from .inference._predict import marginal_proba

            p1 = marginal_proba(self, X, groups)
            return np.column_stack([1.0 - p1, p1])
        eta = self.decision_function(X, groups, offset)
        p1 = np.empty_like(eta)
        pos = eta >= 0
        p1[pos] = 1.0 / (1.0 + np.exp(-eta[pos]))
        e = np.exp(eta[~pos])
        p1[~pos] = e / (1.0 + e)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X, groups=None):
        """Most probable class (conditional on known groups, population otherwise).

        Parameters
        ----------
        X : array-like or DataFrame
        groups : array-like or DataFrame, optional

        Returns
        -------
        ndarray of shape (n,)
            A formula model given a pandas DataFrame returns a Series on the frame's index.
            (``predict_proba`` and ``decision_function`` stay ndarrays, which scikit-learn's
            scorers index by column.)
        """
        eta = self.decision_function(X, groups)
        return self._pandas_output(X, self.classes_[(eta > 0).astype(int)])

    def score(self, X, y, groups=None, sample_weight=None):
        """Accuracy of :meth:`predict` (conditional when ``groups`` is given)."""
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, groups), sample_weight=sample_weight)

    # ----------------------------------------------------------------- reporting
    def _glmer_summary_lines(self, family_line):
        """The lines of glmer's summary shared by the GLMMs (MixedPoissonRegressor borrows this)."""
        check_is_fitted(self)
        if self.nagq_ == 1:
            how = "maximum likelihood (Laplace Approximation)"
        elif self.nagq_ > 1:
            how = f"maximum likelihood (Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nagq_})"
        else:
            how = "maximum likelihood (nAGQ = 0: fixed effects in the penalized IRLS)" if self._re_blocks \
                else "maximum likelihood (no random effects)"
        lines = [f"Generalized linear mixed model fit by {how} [{type(self).__name__}]", family_line]
        if getattr(self, "formula_", None):
            lines.append(f"Formula: {self.formula_}")
        k = len(self.fixed_effects_) + len(self.theta_)
        nobs = int(self.n_obs_) if float(self.n_obs_).is_integer() else self.n_obs_
        lines += ["", "     AIC      BIC   logLik deviance df.resid",
                  f"{self.aic_:8.1f} {self.bic_:8.1f} {self.loglik_:8.1f} {self.deviance_:8.1f} {nobs - k:8}", ""]
        lines.append(format_varcorr(self.cov_re_, None))
        head, flags = format_groups_and_flags(self, nobs)
        lines += [head, "", format_coef_table(self.fixed_effects_, self.fixed_effects_se_, "z value",
                                              p_values=self.fixed_effects_pvalue_)] + flags
        return lines

    def summary(self) -> Summary:
        """A ``summary(glmer(...))``-style report."""
        lines = self._glmer_summary_lines(" Family: binomial  ( logit )")
        from .inference._api import glmm_summary

        return glmm_summary(self, "\n".join(lines))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_class = False
        return tags


# ------------------------------------------------------------------ seams for the distributed fits (skmixed.dask)
def glmm_family(est: MixedLogisticRegressor):
    """The :mod:`~skmixed._families` family ``est`` fits (binomial, or Poisson for the subclass)."""
    return est._family


def coded_fit_inputs(est: MixedLogisticRegressor, X, y, groups=None, sample_weight=None, **kwargs):
    """:func:`~skmixed._base.fit_inputs` of a response already coded against the classes of the whole
    data (a partition may hold one class): ``y`` checked as numbers, not re-coded into classes.
    ``est`` is changed for this purpose: give it a copy."""
    est._validate_y = functools.partial(MixedModelBase._validate_y, est)
    return fit_inputs(est, X, y, groups, sample_weight, **kwargs)


def finish_fit(est: MixedLogisticRegressor, fd, blocks, res, scaling, loglik_constant) -> None:
    """Set ``est``'s fitted attributes from the solver's result ``res`` (a
    :class:`~skmixed._solvers.glmm.GLMMResult` on the columns ``scaling`` maps back); ``fd`` may hold no rows."""
    est._finish_fit(fd, blocks, res, scaling, loglik_constant)


def finish_distributed_fit(est: MixedLogisticRegressor, res, classes=None) -> None:
    """The last step of a distributed fit: the classes (logistic) or count attributes (Poisson), and the
    warnings a fit gives (singular fit, separation, non-convergence)."""
    est._finish_distributed(res, classes)
