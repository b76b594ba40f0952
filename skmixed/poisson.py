"""MixedPoissonRegressor: count GLMM (log link, offset for exposure) by Laplace / adaptive Gauss-Hermite."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import RegressorMixin

from ._base import GLMM_CONSTRAINTS, MixedModelBase, merge_offsets
from ._families import POISSON
from ._solvers._optim import warn_not_converged
from ._summary import Summary
from .logistic import MixedLogisticRegressor, SingularFitWarning
from ._transaction import transactional
from .inference._mixin import InferenceMixin

__all__ = ["MixedPoissonRegressor"]


class MixedPoissonRegressor(InferenceMixin, RegressorMixin, MixedModelBase):
    """Poisson mixed model (GLMM, log link), as ``lme4::glmer(family = poisson)``.

    ``y | b ~ Poisson(mu)``, ``log(mu) = offset + X beta + Z b``, ``b ~ N(0, Sigma)``.
    The fit is the one of :class:`MixedLogisticRegressor` with the Poisson family:
    the Laplace approximation (``nagq=1``), adaptive Gauss-Hermite quadrature
    (``nagq > 1``, one grouping factor with a single scalar random effect) or
    ``nagq=0``; one grouping factor runs per-level Newton steps in one numba pass
    with analytic gradients, crossed or nested factors the core's blocked sparse
    system. ``loglik_`` equals glmer's ``logLik`` (with the ``log y!`` terms).

    Parameters
    ----------
    nagq : int, default=1
        Quadrature points: 0, 1 (Laplace) or more (adaptive Gauss-Hermite).
    fit_intercept : bool, default=True
    random_slopes : list of str or int, optional
        Columns of X with a random slope (correlated with the random intercept).
    group_column : str, int or list, optional
        Column(s) of X holding the group labels.
    tol : float, default=1e-5
        Gradient tolerance of the optimiser in whitened coordinates.
    max_iter : int, default=500
    formula : str, optional
        An lme4-style formula (``"y ~ x + offset(log(t)) + (1 | g)"``); see
        :class:`MixedLogisticRegressor` for what a formula may contain.
    random_only : list of str or int, optional
        Columns of X (among ``random_slopes``) with a random slope and no fixed
        effect; see :class:`MixedLogisticRegressor`.

    Attributes
    ----------
    fixed_effects_, fixed_effects_se_, fixed_effects_z_, fixed_effects_pvalue_ : pandas.Series
    vcov_ : pandas.DataFrame
    coef_, intercept_ : ndarray of shape (p,), float
        scikit-learn's linear-model view (log scale).
    random_effects_, random_effects_sd_, cov_re_ : dict of DataFrame
    theta_ : pandas.Series
    loglik_, deviance_, aic_, bic_ : float
    is_singular_, converged_, n_iter_ : bool, bool, int
    boundary_params_ : list of str
    fit_log_ : FitLog or None

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed import MixedPoissonRegressor
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(50), 20)
    >>> x = rng.normal(size=g.size)
    >>> t = rng.uniform(0.5, 2.0, size=g.size)          # exposure
    >>> mu = t * np.exp(0.3 + 0.5 * x + rng.normal(scale=0.4, size=50)[g])
    >>> y = rng.poisson(mu)
    >>> m = MixedPoissonRegressor().fit(x[:, None], y, groups=g, offset=np.log(t))
    >>> m.fixed_effects_.round(1).tolist()
    [0.3, 0.5]
    >>> m.predict(x[:3, None], groups=g[:3], offset=np.log(t[:3])).shape
    (3,)
    """

    _family = POISSON
    _fits_offset = True
    _random_only_ok = True

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

    # one GLMM code path: the fit, storage and checks are MixedLogisticRegressor's with the family swapped
    _parameter_constraints: dict = GLMM_CONSTRAINTS
    _check_params = MixedLogisticRegressor._check_params
    _fit_glmm = MixedLogisticRegressor._fit_glmm
    _finish_fit = MixedLogisticRegressor._finish_fit
    _weights = MixedLogisticRegressor._weights
    _fit_mixed = MixedLogisticRegressor._fit_mixed
    _fit_fixed_only = MixedLogisticRegressor._fit_fixed_only
    _glmer_summary_lines = MixedLogisticRegressor._glmer_summary_lines
    _store = MixedLogisticRegressor._store

    def _refit_response(self, fd):
        # the bootstrap's refits, with a regressor's shapes as after fit
        MixedLogisticRegressor._refit_response(self, fd)
        self._regressor_shapes()

    def _regressor_shapes(self):
        # the shared storage sets a binary classifier's (1, p) / (1,)
        self.coef_ = np.ravel(self.coef_)
        self.intercept_ = float(np.ravel(self.intercept_)[0])

    def _validate_y(self, y, n):
        y_arr = super()._validate_y(y, n)
        self._family.check_y(y_arr)
        return y_arr

    @transactional
    def fit(self, X, y=None, groups=None, sample_weight=None, offset=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, p)
        y : array-like, shape (n,), optional
            Non-negative counts (with ``formula``: None takes the formula's response).
        groups : array-like (n,) or (n, k), or DataFrame, optional
            Group labels, one column per grouping factor.
        sample_weight : array-like, shape (n,), optional
            Frequency weights (a row with weight 3 counts as three identical rows).
        offset : array-like, shape (n,), optional
            Known term of the log-mean, e.g. ``log(exposure)`` (glmer's ``offset(log(t))``).

        Returns
        -------
        self
        """
        self._check_params()
        fd = self._prepare_fit(X, y, groups, sample_weight)
        offset = merge_offsets(fd.offset, offset, fd.X.shape[0])
        res = self._fit_glmm(fd, offset)
        self._finish_poisson(res)
        return self

    def _finish_poisson(self, res):
        """What the Poisson model changes in the shared storage (also after a distributed fit)."""
        # Nakagawa's R2 for counts needs a distribution-specific variance approximation (lognormal,
        # delta or trigamma, which R packages disagree on): refused by name rather than guessed
        self._glmm_state.extra.pop("r2_parts", None)
        self._glmm_state.extra["r2_unavailable"] = (
            "R² and the ICC are not available for the Poisson model: Nakagawa's R² for counts needs a "
            "distribution-specific variance approximation (lognormal, delta or trigamma) that skmixed does "
            "not implement")
        self._regressor_shapes()
        self._warn_problems(res)

    def _finish_distributed(self, res, classes):
        self._finish_poisson(res)

    def _warn_problems(self, res):
        if res.extra.get("hessian_failed") and not self.is_singular_:
            warnings.warn("the Hessian of the deviance is not positive definite at the optimum; standard errors "
                          "are conditional on the variance parameters (glmer's RX-based vcov)", UserWarning,
                          stacklevel=3)
        if self.is_singular_:
            warnings.warn(f"boundary (singular) fit: theta {self.boundary_params_} at 0 (a random-effects variance "
                          "0, or correlations +-1 within a term); see is_singular_, boundary_params_ and theta_",
                          SingularFitWarning, stacklevel=3)
        if not self.converged_:
            log = res.extra.get("fit_log")
            warn_not_converged(log.optimizer if log is not None else "PIRLS", self.n_iter_, res.message, log,
                               stacklevel=3)

    # ----------------------------------------------------------------- prediction
    def _linear_predictor(self, X, groups, offset):
        return MixedLogisticRegressor.decision_function(self, X, groups, offset)

    def predict(self, X, groups=None, offset=None):
        """Expected counts ``exp(offset + X beta + Z b)``: conditional for known groups, population otherwise.

        Parameters
        ----------
        X : array-like or DataFrame
        groups : array-like or DataFrame, optional
        offset : array-like of shape (n,), optional

        Returns
        -------
        ndarray of shape (n,)
        """
        # a formula model given a pandas DataFrame: a Series on its index
        return self._pandas_output(X, np.exp(self._linear_predictor(X, groups, offset)))

    def score(self, X, y, groups=None, sample_weight=None, offset=None):
        """D² (fraction of Poisson deviance explained), as scikit-learn's ``PoissonRegressor.score``."""
        from sklearn.metrics import d2_tweedie_score

        return d2_tweedie_score(y, self.predict(X, groups, offset), sample_weight=sample_weight, power=1)

    # ----------------------------------------------------------------- reporting
    def summary(self) -> Summary:
        """A ``summary(glmer(..., family = poisson))``-style report."""
        return Summary("\n".join(self._glmer_summary_lines(" Family: poisson  ( log )")))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.positive_only = True
        return tags
