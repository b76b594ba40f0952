"""StreamingMixed: linear mixed models fitted online, row by row, with SEMA.

SEMA (Streaming Expectation Maximization Approximation; Ippel, Kaptein & Vermunt 2019) keeps
per-group sufficient statistics and, for every arriving row, runs the E-step of that row's group
only, updates ``(X'X)^-1`` by Sherman-Morrison and runs the M-step.  Each row is seen once; memory
is ``O(J (p^2 + q^2))`` for ``J`` groups.  The math is in :mod:`skmixed._kernels.sema`, the state
in :mod:`skmixed._solvers.sema`.
"""

from __future__ import annotations

import numbers
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (SHARED_CONSTRAINTS, MixedModelBase, NoGroupsWarning, _check_groups_arg, _finite_or_raise,
                    _frame_as_pandas, checked_sample_weight)
from ._design.grouping import make_factors
from ._design.level_index import LevelIndex
from ._solvers import sema as _sema
from ._solvers import sema_exact as _exact
from ._solvers.lmm import drop_aliased
from ._transaction import transactional
from .streaming_multi import SeveralFactorsStream

__all__ = ["StreamOrderWarning", "StreamingMixed"]

#: rows between exact corrections inside a batch with ``refit_every="auto"``
AUTO_REFIT_EVERY = 20_000
#: ... and, before that, each time the rows seen double from this many
AUTO_FIRST = 500
#: the budget: with ``refit_every="auto"`` corrections are at least this many rows per group
#: apart (a correction costs about as much as 3-5 rows per group seen, so they take at most
#: about a quarter of the time of the rows between them) ...
AUTO_ROWS_PER_GROUP = 16
#: ... and a batch ends with one when this many rows per group arrived since the last, or
AUTO_END_ROWS_PER_GROUP = 4
#: ... this share of the rows seen (a stream's early batches, small data, groups arriving one
#: after another: held variance parameters would drift by ~sqrt(share) standard errors)
AUTO_END_SHARE = 0.01
#: rows per progress-bar / callback step within a long segment
_PROGRESS_STEP = 100_000


class StreamOrderWarning(UserWarning):
    """SEMA without exact corrections on a stream whose order makes its estimates unreliable.

    SEMA's per-row update is one partial EM step: on a shuffled stream it lands near the
    maximum-likelihood fit, on a stream whose rows arrive group by group or sorted by a
    covariate it can be far from it.  Turn the corrections on (``refit_every``).
    :class:`~skmixed.StreamingMixedLogistic` also raises it when its standard errors are
    asked at estimates that are not a minimum of the deviance of the rows seen.
    """

# attributes a fit creates (removed by a reset); parameters and sklearn's own
# bookkeeping (e.g. metadata-routing requests) are left alone
_FITTED = ("_state", "_shift", "_zidx", "_trace_rows", "_no_groups", "factors_", "_levels", "_keep",
           "_aliased_warned",
           "_order_warned",
           "n_features_in_", "feature_names_in_", "feature_names_", "re_names_", "n_seen_",
           "n_groups_", "n_iter_", "formula_", "_multi", "_multi_reg", "_multi_fit", "_multi_re_names")


class StreamingMixed(SeveralFactorsStream, RegressorMixin, MixedModelBase):
    """Linear mixed model fitted online with SEMA (one pass, ``partial_fit``).

    Model ``y = X beta + Z b_g + e`` with one grouping factor ``g``, ``b_g ~ N(0, Phi)`` (a
    random intercept plus random slopes on ``random_slopes``, all correlated) and
    ``e ~ N(0, sigma^2)``, estimated by maximum likelihood (not REML).  Each row updates the
    estimates once and is never revisited; groups may appear at any time.  :meth:`sweep` (or
    ``update_every``) runs the SEMA-Update pass, one full EM iteration over the stored group
    summaries: repeated sweeps converge to the ML fit of all rows seen.

    SEMA's per-row step depends on the order of the rows: on a stream whose rows arrive group
    by group, or sorted by a covariate, its estimates can be far from the ML fit of the same
    rows.  The per-group summaries SEMA keeps are the sufficient statistics of the exact
    profiled likelihood, so with ``refit_every`` (on by default) the stream is *corrected*:
    the ML fit of all rows seen is computed from them (Newton steps on ``theta`` warm-started
    from the previous correction; the cost depends on the number of groups, never on the
    number of rows) and SEMA continues from it.  Between corrections each row still updates
    the fixed effects and its group's BLUP (which :meth:`predict` uses) in microseconds: the
    group's E-step as in SEMA, then one step of the fixed effects towards their GLS estimate
    at the last correction's variance parameters (ECME; EM's own step lags far behind on
    grouped streams), with the variance parameters held until the next correction.

    **Several grouping factors** (nested or crossed: ``groups`` with several columns, or a
    formula such as ``"y ~ x + (1 | user) + (1 | item)"`` or ``"y ~ x + (1 | school/class)"``):
    SEMA's per-group summaries are not sufficient statistics then, so the stream accumulates
    the chunked LMM's grouped cross-products (as :meth:`MixedLinearRegressor.partial_fit
    <skmixed.MixedLinearRegressor.partial_fit>`: per level, per co-occurring pair of levels;
    their size grows with the levels and pairs met, never with the rows) and every correction
    is the exact ML fit of all rows seen.  Between corrections each row updates its levels'
    random effects (one Gauss-Seidel step of each factor's normal equations, the fixed
    effects and variance parameters held at the last correction's) so predictions stay
    current.  ``fixed_effects_se_``, ``loglik_`` and ``theta_`` are the last correction's;
    ``n_groups_`` counts the levels of all factors.  ``forgetting``, ``n_train``,
    ``update_every`` and ``refit_every=None`` are single-factor only (a ValueError says so),
    as is :meth:`sweep`; with ``refit_every="auto"`` every batch ends with a correction
    (so the estimates a :meth:`partial_fit` call leaves are the ML fit of all rows seen).  A
    batch costs ``O(rows + levels + level pairs)`` plus that correction (the statistics are
    merged and refitted, warm-started), not ``O(rows)`` as with one factor: feed several-factor
    streams in batches of thousands of rows, or use an int ``refit_every`` with small batches.

    Parameters
    ----------
    fit_intercept : bool, default=True
        Add a fixed intercept (first coefficient, named ``"(Intercept)"``).  The random
        intercept is always present.
    random_slopes : list of str or int, optional
        Columns of ``X`` (names for a DataFrame, else positions) with a random slope.
    group_column : str or int, optional
        Column of ``X`` holding the group labels (then ``groups`` need not be passed).
    n_train : int, default=0
        Training phase: the first ``n_train`` rows are only accumulated, then EM runs on them
        to convergence (largest parameter change < 1e-4, at most 800 iterations, as in the
        paper) for start values; SEMA proper starts with the next row.  ``0``: stream from the
        first row with the start values ``beta = 0``, ``Phi = I``, ``sigma^2 = 1``.
    update_every : int, optional
        Run one SEMA-Update sweep every ``update_every`` rows ("SEMA Update" of the paper).
    forgetting : float, optional
        Smooth sliding window ``alpha`` (> 1): from row ``alpha`` on, each new row down-weights
        all earlier rows by ``(alpha - 1) / alpha``, the learn rate ``1 / min(n, alpha)`` of the
        paper's section 7.1, so the estimates track a drifting process.  See
        :mod:`skmixed._solvers.sema` for how it enters each statistic.
    trace_every : int, optional
        Record the estimates every ``trace_every`` rows in :attr:`trace_` (a correction
        falling on such a row is recorded).
    refit_every : "auto", int or None, default="auto"
        Exact corrections.  ``"auto"``: within a batch each time the rows seen double (from
        500) and then every 20,000 rows, but never more often than every 16 rows per group
        seen (a correction costs about as much as 3-5 rows per group, so this budget keeps
        corrections under about a quarter of the time); and at the end of every batch that
        brings at least 4 rows per group, or 1% of the rows seen, since the last correction
        (so the estimates such a :meth:`partial_fit` call leaves are the ML fit of all rows
        seen, whatever their order -- also on small data and when groups arrive one after
        another; after a smaller batch they are SEMA's ECME estimates: the fixed effects' GLS
        estimate at the last correction's variance parameters).  A correction that starts
        from or lands on a singular fit (a variance at zero) also runs the batch optimiser
        from its own start, the better optimum wins (several times a warm correction's cost).  An int ``k``: every ``k``
        rows (the
        results then do not depend on how the stream is cut into batches).  ``None``: plain
        SEMA; a :class:`StreamOrderWarning` then says when the stream's order looks grouped or
        sorted.  With ``forgetting`` the target is the ML fit of the down-weighted rows (each
        row weighted by ``lam ** (rows after it)``).  A correction costs a few milliseconds
        per thousand groups (15 fixed effects); between corrections a row costs about a microsecond.
    verbose : int, default=0
        Show a tqdm progress bar over the rows of each batch.
    callback : callable, optional
        Called as ``callback(info)`` after every correction and at the end of every batch,
        ``info`` a dict with ``n_rows``, ``fixed_effects`` (Series), ``cov_re`` (DataFrame),
        ``sigma2`` and ``corrected`` (whether the estimates are the exact fit).
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
        ``(1 | a/b)`` (nested) and ``(1 | a:b)`` give the random effects (one
        correlated term with a random intercept; its slopes must be fixed-effect
        columns too, else a ValueError; several terms: the several-factor stream
        described above). ``offset(expr)`` terms are a known part of
        the mean: the stream fits ``y - offset`` and :meth:`predict` adds the new
        data's offset.
        ``group_column`` and ``random_slopes`` must then be None and the formula's
        intercept (``0 +`` drops it) takes the place of ``fit_intercept``.

    Attributes
    ----------
    fixed_effects_ : pandas.Series
        Current ``beta`` (``"(Intercept)"`` first when ``fit_intercept``).
    fixed_effects_se_ : pandas.Series
        Standard errors from ``Var(beta) = [sum_j (A_j - D_j Cinv_j D_j') / sigma^2]^-1``
        computed from the stored group statistics at the current parameters.
    coef_, intercept_ : ndarray, float
        ``beta`` without / the intercept.
    cov_re_ : dict
        Factor name -> random-effect covariance ``Phi`` (DataFrame).
    sigma_ : float
        Residual standard deviation.
    theta_ : ndarray
        lme4's ``theta``: lower triangle (column-wise) of ``chol(Phi) / sigma``.
    loglik_, aic_, bic_ : float
        ML log-likelihood of all rows seen at the current estimates (computed from the group
        summaries; with ``forgetting``, of the weighted rows), and the information criteria.
    is_singular_ : bool
        ``Phi`` is singular (a variance component or correlation on the boundary).
    random_effects_ : dict
        Factor name -> DataFrame of the BLUPs of the groups seen (rows: group labels in order
        of first appearance).
    n_seen_ : int
        Rows consumed.
    n_groups_ : int
        Groups seen.
    n_iter_ : int
        SEMA-Update sweeps run so far (training-phase EM iterations included).
    n_corrections_ : int
        Exact corrections run so far.
    trace_ : pandas.DataFrame
        Estimates every ``trace_every`` rows (``n_rows``, ``beta[...]``, ``Phi[...]``,
        ``sigma2``).
    n_features_in_, feature_names_in_
        As in scikit-learn.

    Notes
    -----
    SEMA inherits EM's convergence speed.  For the fixed effects that speed is
    ``sum_j n_j shrink_j / N`` per EM iteration (``shrink_j`` the BLUP shrinkage of group
    ``j``), close to 1 when the random effects dominate the residual noise: then the intercept
    moves very little after the training phase (on the paper's simulation it stays within
    ~0.01 of its training value, while the full-data ML intercept differs from the training
    one by ~0.08 because of the groups not in the training set).  The variance components are
    not affected.  ``sweep(method="ecme")`` replaces the fixed effects by their GLS estimate
    at the current variance parameters from the stored statistics (one pass over the groups,
    no row revisited), which recovers the full-data ML fixed effects to ~1e-8 on that
    simulation.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed.streaming import StreamingMixed
    >>> rng = np.random.default_rng(0)
    >>> g = rng.integers(0, 50, 5000)
    >>> X = rng.normal(size=(5000, 2))
    >>> y = 1 + X @ [2.0, -1.0] + rng.normal(0, 2, 50)[g] + rng.normal(size=5000)
    >>> model = StreamingMixed(n_train=500)
    >>> for k in range(0, 5000, 1000):          # batches arrive
    ...     model = model.partial_fit(X[k:k + 1000], y[k:k + 1000], groups=g[k:k + 1000])
    >>> model.fixed_effects_.round(1).tolist()
    [1.2, 2.0, -1.0]
    >>> model.sweep(200).n_seen_
    5000
    """

    _FITTED_ATTRS = _FITTED
    # set per stream by _warn_if_aliased; the class default serves streams pickled before it existed
    _aliased_warned = False
    # subtracted from the design columns before the state sees them (None: nothing; see _centring)
    _shift = None
    _fits_offset = True  # a formula's offset(): the stream fits y - offset, predict adds it back

    def __init__(self, fit_intercept=True, random_slopes=None, group_column=None, n_train=0,
                 update_every=None, forgetting=None, trace_every=None, refit_every="auto", verbose=0,
                 callback=None, formula=None):
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.group_column = group_column
        self.n_train = n_train
        self.update_every = update_every
        self.forgetting = forgetting
        self.trace_every = trace_every
        self.refit_every = refit_every
        self.verbose = verbose
        self.callback = callback
        self.formula = formula

    # ================================================================ public API
    @transactional
    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Forget everything and consume ``X, y`` in one pass (= reset + :meth:`partial_fit`).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            With ``formula``: None takes the formula's response from X.
        groups : array-like of shape (n_samples,), optional
            Group labels (any hashable type).  Without groups (and no ``group_column``) only
            the fixed effects are fitted, with a warning.
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights, non-negative: a weight of 2 counts the row twice (as
            :class:`~skmixed.MixedLinearRegressor`'s default ``weights="frequency"``), a
            row of weight 0 is skipped (not counted in ``n_seen_``).

        Returns
        -------
        self
        """
        return self._consume(X, y, groups, reset=True, sample_weight=sample_weight)

    @transactional
    def partial_fit(self, X, y=None, groups=None, sample_weight=None):
        """Consume a batch of rows in order, updating the estimates after every row.

        The whole batch is validated before anything changes: a bad batch raises
        ``ValueError`` and leaves the model exactly as it was.  ``n_features_in_`` is fixed
        by the first call; new groups are welcome in any batch.  Rows are processed one at a
        time in order whatever the batch size (the result does not depend on how the stream
        is cut), but each call carries ~0.5 ms of input validation, so feed batches of
        hundreds of rows or more when throughput matters (a row costs ~1-3 microseconds).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            For a stream started by :meth:`from_formula`: a DataFrame with the
            formula's columns (response and grouping column included), ``y`` omitted.
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), optional
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights, non-negative (a weight of 2 counts the row twice, 0 skips it).

        Returns
        -------
        self
        """
        return self._consume(X, y, groups, reset=not self.__sklearn_is_fitted__(), sample_weight=sample_weight)

    @transactional
    def sweep(self, n=1, tol=None, method="em"):
        """Run ``n`` SEMA-Update sweeps: full EM iterations over the stored group statistics.

        No row is revisited (only the per-group summaries).  Repeated sweeps converge to the
        maximum-likelihood fit of all rows seen (with ``forgetting``: of the down-weighted
        rows).

        Parameters
        ----------
        n : int, default=1
            Number of sweeps.
        tol : float, optional
            Stop early once no parameter changes by more than ``tol`` in a sweep.
        method : {"em", "ecme"}, default="em"
            ``"em"`` is the paper's SEMA-Update (one EM iteration).  ``"ecme"`` first sets the
            fixed effects to their GLS estimate at the current variance parameters (computed
            from the stored statistics) -- EM is very slow for ``beta`` when the random effects
            dominate, so after a stream one ECME sweep brings the fixed effects to (nearly) the
            full-data ML values.  Both converge to the ML estimate.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        if self._is_multi():
            raise ValueError("sweep() is SEMA's EM sweep of a single-factor stream; a stream with several "
                             "grouping factors is the exact ML fit after every correction (refit_every)")
        if not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        st = self._state.copy()  # the sweeps update in place: the model's state changes only on success
        k = _sema.run_sweeps(st, int(n), tol=tol, alpha=self._alpha(), method=method)
        if k < 0:
            raise ValueError("X'X is not invertible yet (too few or collinear rows): cannot sweep")
        _check_finite_state(st)
        self.__dict__.update(_state=st, n_iter_=st.n_sweeps)
        return self

    def predict(self, X, groups=None):
        """Predict: fixed part plus the BLUP of known groups (population part for the rest).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        groups : array-like of shape (n_samples,), optional
            Group labels; unseen labels (and ``groups=None``) give the population prediction.

        Returns
        -------
        ndarray of shape (n_samples,)
            A formula model given a pandas DataFrame returns a Series on the frame's index.
        """
        pdata = self._prepare_predict(X, groups)
        if self._is_multi():
            out = self._predict_multi(pdata)
            out = out if pdata.offset is None else out + pdata.offset
            return self._pandas_output(X, out)
        Xd = pdata.X
        st = self._state
        out = Xd @ st.beta
        if not self._no_groups:
            codes = pdata.codes[0]
            known = codes >= 0
            if known.any():
                Z = self._z(Xd[known])
                out[known] += np.einsum("ij,ij->i", Z, st.gb[codes[known]])
        out = out if pdata.offset is None else out + pdata.offset
        return self._pandas_output(X, out)  # a formula model given pandas: a Series on its index

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of :meth:`predict` (conditional when ``groups`` is given), weighted by ``sample_weight``."""
        return r2_score(y, self.predict(X, groups), sample_weight=sample_weight)

    def summary(self):
        """A ``summary(lmer(..., REML=FALSE))``-style report of the current estimates."""
        from ._summary import Summary, format_coef_table, format_varcorr

        check_is_fitted(self)
        if self._is_multi():
            return self._summary_multi()
        st = self._state
        lines = ["Linear mixed model fit online by SEMA (maximum likelihood) [StreamingMixed]",
                 f"rows seen: {self.n_seen_:,}, groups: {self.n_groups_:,}, sweeps: {self.n_iter_}"
                 + (f", forgetting window: {self.forgetting:g}" if self.forgetting else ""),
                 "", "     AIC      BIC   logLik deviance",
                 f"{self.aic_:8.1f} {self.bic_:8.1f} {self.loglik_:8.1f} {-2 * self.loglik_:8.1f}",
                 "", format_varcorr(self.cov_re_, self.sigma_), "",
                 format_coef_table(self.fixed_effects_, self.fixed_effects_se_, "t value")]
        if not st.has_P:
            lines += ["", "X'X not invertible yet: estimates are start values"]
        return Summary("\n".join(lines))

    @classmethod
    def from_formula(cls, formula, data, sample_weight=None, **params):
        """Start a stream from an lme4-style formula and its first batch.

        ``"y ~ x1 + x2 + (1 + x1 | g)"``: the fixed part goes to formulaic (categorical
        columns are coded from the first batch's levels), one bar term gives the grouping
        factor and the random slopes (its columns must also be fixed effects). SEMA
        estimates a full covariance matrix with a random intercept, so the term must be
        ``(1 + ... | g)`` (``||`` only with a single column). Later batches go to
        :meth:`partial_fit` as DataFrames with the formula's columns, ``y`` omitted;
        :meth:`predict` takes such DataFrames too.

        Parameters
        ----------
        formula : str
        data : pandas.DataFrame
            The first batch.
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights of the first batch's rows (as in :meth:`fit`).
        **params
            Other constructor parameters (``n_train``, ``forgetting``, ...).

        Returns
        -------
        StreamingMixed
            Fitted on ``data``.

        Examples
        --------
        >>> from skmixed.datasets import load_sleepstudy
        >>> df = load_sleepstudy()
        >>> m = StreamingMixed.from_formula("Reaction ~ Days + (1 + Days | Subject)", df.iloc[:90])
        >>> m = m.partial_fit(df.iloc[90:])          # the next batch: y comes from the formula
        >>> int(m.n_seen_), m.re_names_
        (180, ['(Intercept)', 'Days'])
        """
        for name in ("random_slopes", "fit_intercept", "group_column"):
            if name in params:
                raise ValueError(f"{name} is set by the formula; do not pass it to from_formula")
        return cls(formula=formula, **params).fit(data, sample_weight=sample_weight)

    def _formula_slopes(self, spec):
        """The random slopes of a formula stream, refusing what SEMA cannot fit."""
        bars = spec.parsed.terms
        if len(bars) > 1:
            raise ValueError(f"StreamingMixed supports one random-effects term (one grouping factor); "
                             f"{spec.formula!r} has {len(bars)}")
        if not bars:
            return None
        term, bar = spec.random[0], bars[0]
        if not term.intercept:
            raise ValueError(f"({bar.expr} | {bar.factor}): SEMA always estimates a random intercept; "
                             "write (1 + ... | g)")
        if term.columns and not term.correlated:
            raise ValueError(f"({bar.expr} || {bar.factor}): SEMA estimates a full covariance matrix; "
                             "use | (correlated random effects)")
        missing = [c for c in term.columns if c not in spec.columns]
        if missing:
            raise ValueError(f"random slope(s) {missing} must also be fixed-effect columns of the formula")
        return list(term.columns) or None

    # ================================================================ results
    @property
    def fixed_effects_(self):
        check_is_fitted(self)
        if self._is_multi():
            return pd.Series(self._multi.beta.copy(), index=self.feature_names_, name="fixed_effects")
        return pd.Series(self._user_beta(self._state.beta), index=self.feature_names_, name="fixed_effects")

    @property
    def fixed_effects_se_(self):
        check_is_fitted(self)
        if self._is_multi():  # the last correction's
            return self._multi_result("se", pd.Series(np.nan, index=self.feature_names_, name="std_error")).copy()
        st = self._state
        if st.has_P and st.n_eff > 0:
            T = self._user_map()
            se = np.sqrt(np.diag(T @ _sema.beta_covariance(st, alpha=self._alpha()) @ T.T))
        else:
            se = np.full(st.p, np.nan)
        return pd.Series(se, index=self.feature_names_, name="std_error")

    @property
    def coef_(self):
        check_is_fitted(self)
        b = self.fixed_effects_.to_numpy()
        return b[1:].copy() if self._has_intercept() else b.copy()

    @property
    def intercept_(self):
        check_is_fitted(self)
        return float(self.fixed_effects_.iloc[0]) if self._has_intercept() else 0.0

    @property
    def sigma_(self):
        check_is_fitted(self)
        if self._is_multi():
            return float(np.sqrt(self._multi.s2))
        return float(np.sqrt(self._state.s2))

    @property
    def cov_re_(self):
        check_is_fitted(self)
        if self._no_groups:
            return {}
        if self._is_multi():
            st, out = self._multi, {}
            for k, ix in enumerate(self._levels):
                rn, q = self._multi_re_names[ix.name], int(st.qk[k])
                out[ix.name] = pd.DataFrame(st.Phi[k, :q, :q].copy(), index=rn, columns=rn)
            return out
        return {self.factors_[0].name: pd.DataFrame(self._state.Phi.copy(), index=self.re_names_,
                                                columns=self.re_names_)}

    @property
    def loglik_(self):
        check_is_fitted(self)
        if self._is_multi():  # of the rows seen at the last correction
            return self._multi_result("loglik")
        return _sema.loglik(self._state, alpha=self._alpha())

    @property
    def aic_(self):
        return -2.0 * self.loglik_ + 2.0 * self._n_params()

    @property
    def bic_(self):
        if self._is_multi():
            return -2.0 * self.loglik_ + np.log(self._multi_result("n_rows")) * self._n_params()
        return -2.0 * self.loglik_ + np.log(self._state.n_eff) * self._n_params()

    @property
    def is_singular_(self):
        """True when ``Phi`` is (numerically) singular: a variance or correlation at the boundary."""
        check_is_fitted(self)
        if self._is_multi():
            return self._multi_result("is_singular", False)
        L, Phi = self._state.Lphi, self._state.Phi
        return bool(np.any(np.diag(L) ** 2 <= 1e-8 * np.maximum(np.diag(Phi), 1e-300)))

    def _n_params(self):
        if self._is_multi():
            return self._multi_result("n_params", np.nan)
        q = self._state.q
        return self._state.p + q * (q + 1) // 2 + 1

    @property
    def theta_(self):
        check_is_fitted(self)
        if self._is_multi():
            return np.array(self._multi_result("theta", np.empty(0)), dtype=float)
        L = self._state.Lphi / np.sqrt(self._state.s2)
        q = L.shape[0]
        return np.array([L[i, j] for j in range(q) for i in range(j, q)])

    @property
    def factors_(self):
        """The grouping factor (levels in order of first appearance), as the batch estimators'."""
        try:
            index = self.__dict__["_levels"]
        except KeyError:
            raise AttributeError("factors_") from None
        return [ix.factor() for ix in index]

    @property
    def random_effects_(self):
        check_is_fitted(self)
        if self._no_groups:
            return {}
        if self._is_multi():
            st = self._multi
            return {ix.name: pd.DataFrame(st.effects(k, len(ix)), index=ix.levels,
                                          columns=self._multi_re_names[ix.name])
                    for k, ix in enumerate(self._levels)}
        levels = self.factors_[0].levels
        return {self.factors_[0].name: pd.DataFrame(self._state.gb[:len(levels)].copy(), index=levels,
                                                columns=self.re_names_)}

    @property
    def trace_(self):
        check_is_fitted(self)
        rows = self._trace_rows
        if self._is_multi():
            cols = self._trace_columns_multi()
            df = pd.DataFrame(np.concatenate(rows) if rows else np.empty((0, len(cols))), columns=cols)
            df["n_rows"] = df["n_rows"].astype(np.int64)
            return df
        cols = _sema.TRACE_COLUMNS(self.feature_names_, self.re_names_)
        data = np.concatenate(rows) if rows else np.empty((0, len(cols)))
        if self._shift is not None and len(data):
            data = data.copy()
            b = slice(1, 1 + len(self.feature_names_))  # the fixed effects, on the state's columns
            data[:, b] = data[:, b] @ self._user_map().T
        df = pd.DataFrame(data, columns=cols)
        df["n_rows"] = df["n_rows"].astype(np.int64)
        return df

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_state") or self._is_multi()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # ================================================================ internals
    def _alpha(self):
        return None if self.forgetting is None else float(self.forgetting)

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "n_train": [Interval(Integral, 0, None, closed="left")],
        "update_every": [Interval(Integral, 1, None, closed="left"), None],
        "forgetting": [Interval(Real, 1, None, closed="neither"), None],
        "trace_every": [Interval(Integral, 1, None, closed="left"), None],
        "refit_every": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["verbose"],
        "callback": [callable, None],
    }

    def _check_params(self):
        self._validate_params()

        def _int(name, lo, allow_none):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}"
                                 f"{' or None' if allow_none else ''}, got {v!r}")
        _int("n_train", 0, False)
        _int("update_every", 1, True)
        _int("trace_every", 1, True)
        if not (isinstance(self.refit_every, str) and self.refit_every == "auto"):
            _int("refit_every", 1, True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None, got {self.callback!r}")
        a = self.forgetting
        if a is not None and (isinstance(a, bool) or not isinstance(a, numbers.Real)
                              or not np.isfinite(a) or a <= 1):
            raise ValueError(f"forgetting must be a number > 1 (the window alpha) or None, got {a!r}")

    def _design(self, Xv, shift=None):
        """The design the state sees: intercept column, then X's columns minus ``shift`` (default ``_shift``)."""
        n = Xv.shape[0]
        icpt = self._has_intercept()
        Xd = np.empty((n, Xv.shape[1] + icpt))
        if icpt:
            Xd[:, 0] = 1.0
        Xd[:, icpt:] = Xv
        shift = self._shift if shift is None else shift
        if shift is not None:
            Xd -= shift
        return Xd

    def _centring(self, Xd, zidx):
        """The fixed-only columns' values in the stream's first row (0 elsewhere), or None.

        With an intercept, the state sees those columns shifted to that origin (an exact
        change of basis, undone by :meth:`_user_map`): a covariate with a small spread around
        a large mean (x + 1e4) would otherwise leave X'X ill-conditioned and cost the
        estimates digits that depend on the origin. The first row (not the first batch's
        means) keeps the stream independent of how it is cut into batches. Random-slope
        columns are left as they are (shifting them would change the random-effects model).
        """
        if not self._has_intercept() or Xd.shape[1] < 2 or Xd.shape[0] == 0:
            return None
        shift = Xd[0].copy()
        shift[0] = 0.0
        shift[[c for c in zidx if c >= 0]] = 0.0
        return shift if np.any(shift) else None

    def _user_map(self):
        """``T`` with the user's fixed effects ``= T @`` the state's (centred) ones."""
        T = np.eye(self._state.p)
        if self._shift is not None:
            T[0] -= self._shift
        return T

    def _user_beta(self, beta):
        return self._user_map() @ beta

    def _z(self, Xd):
        z = self._zidx
        Z = np.empty((Xd.shape[0], z.shape[0]))
        for k, c in enumerate(z):
            Z[:, k] = 1.0 if c < 0 else Xd[:, c]
        return Z

    def _consume(self, X, y, groups, reset, sample_weight=None):
        """Validate the batch, run it through a staged state, then commit in one assignment.

        The staged state (:class:`~skmixed._solvers.sema.Staging`) copies the global arrays
        and writes the batch's groups in place with an undo log, so a batch costs
        ``O(rows + groups touched)``, not ``O(groups)``.  A rejected batch, a numerical
        failure or an interrupt (``KeyboardInterrupt``) anywhere before the commit rolls the
        groups back and leaves the model as it was, so a batch is counted once or not at all.
        """
        if (self._several_factors(X, groups) if reset else self._is_multi()):
            return self._consume_multi(X, y, groups, reset, sample_weight)
        Xd, yv, factor, setup = self._prepare(X, y, groups, reset)
        w = None
        if sample_weight is not None:
            w = checked_sample_weight(sample_weight, Xd)
            if float(np.abs(Xd).max(initial=0.0)) ** 2 * float(w.max(initial=0.0)) > 1e300:
                raise ValueError("sample_weight times the squares of X overflow: rescale the weights")
            keep = w > 0
            if not keep.all():
                # a row of weight 0 is a row not seen (nor is a group that only such rows name)
                Xd, yv, w = Xd[keep], yv[keep], w[keep]
                if factor is not None:
                    factor = factor.rows(keep)
        # ---- the batch is valid: stage the new state
        if reset:
            new = {k: v for k, v in self.__dict__.items()
                   if k not in _FITTED or k in ("n_features_in_", "feature_names_in_")}
            new.update(setup)
        else:
            new = dict(self.__dict__)
        if new["_no_groups"]:
            codes = np.zeros(Xd.shape[0], dtype=np.int64)
            n_levels = 1
        index = None if new["_no_groups"] else new["_levels"][0]
        n_before = 0 if index is None else len(index)
        stg = None
        try:
            if index is not None:
                # batch-local levels -> stream codes (new levels get the next ones): O(batch)
                codes = np.ascontiguousarray(index.code(factor.levels)[factor.codes])
                n_levels = len(index)
            stg = _sema.Staging(setup["_state"], codes, fresh=True) if reset else _sema.Staging(self._state, codes)
            self._stage_batch(new, stg, Xd, yv, codes, n_levels, w)
        except BaseException:
            if stg is not None:
                stg.rollback()
            if index is not None:
                index.truncate(n_before)
            raise
        self.__dict__ = new  # the commit: one assignment
        correcting = self.refit_every is not None and not new["_no_groups"]
        self._warn_if_aliased(reset)
        if not correcting:
            self._warn_if_order_sensitive()
        return self

    def _stage_batch(self, new, stg, Xd, yv, codes, n_levels, w=None):
        """Run the batch on the staged state and fill ``new`` (the attributes to commit)."""
        stg.ensure_capacity(n_levels)
        st = stg.state
        correcting = self.refit_every is not None and not new["_no_groups"]
        n = Xd.shape[0]
        ue = self.update_every
        if ((not st.trained and st.n_rows + n >= self.n_train)  # the training EM: every group
                or (ue and (st.n_rows + n) // ue > st.n_rows // ue)  # a sweep: every group
                or (not correcting and st.stale[0])):  # SEMA's contributions rebuilt: every group
            stg.privatize()
        if not correcting:
            _exact.record_order(st, Xd, codes, st.n_rows)
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="rows", desc="StreamingMixed", leave=False)
        try:
            traces = self._run(new, stg, Xd, yv, codes, correcting, bar, n_levels, w)
        finally:
            if bar is not None:
                bar.close()
        _check_finite_state(st, Xd, yv)
        if traces:
            new["_trace_rows"] = list(new["_trace_rows"]) + traces
        new.update(_state=st, n_seen_=st.n_rows, n_groups_=0 if new["_no_groups"] else n_levels,
                   n_iter_=st.n_sweeps)
        return st

    # ---------------------------------------------------------------- exact corrections
    def _next_correction(self, last, n_groups):
        """The row of the next scheduled correction after one at row ``last`` (0: none yet)."""
        if self.refit_every == "auto":
            # early rows move the fit most: double the rows seen, then every AUTO_REFIT_EVERY,
            # but never more often than the budget allows (a correction's cost grows with the groups)
            gap = min(AUTO_REFIT_EVERY, max(last, AUTO_FIRST))
            return last + max(gap, AUTO_ROWS_PER_GROUP * n_groups)
        k = int(self.refit_every)
        return (last // k + 1) * k

    def _run(self, new, stg, Xd, yv, codes, correcting, bar, n_groups, w=None):
        """Feed the batch to the staged state ``st`` with the scheduled corrections; returns the trace rows.

        With ``refit_every="auto"`` the batch also ends with a correction when at least
        ``AUTO_END_ROWS_PER_GROUP`` rows per group arrived since the last one.  Long stretches
        without one are cut every 100,000 rows for the progress bar and the callback.
        """
        st = stg.state
        n = Xd.shape[0]
        start = st.n_rows
        pos = 0
        traces = []
        show = bool(self.verbose) or self.callback is not None
        while pos < n:
            stop = n
            scheduled = self.refit_every == "auto" and end_of_batch_due(start + n - int(st.xc[0]), n_groups,
                                                                         start + n)
            if correcting:
                due = max(self._next_correction(int(st.xc[0]), n_groups) - start, pos + 1)
                if due <= n:
                    stop, scheduled = due, True
            else:
                scheduled = False
            if show and stop - pos > _PROGRESS_STEP:
                stop, scheduled = pos + _PROGRESS_STEP, False
            trace = _sema.consume(st, Xd[pos:stop], yv[pos:stop], codes[pos:stop], new["_zidx"],
                                  n_train=self.n_train, alpha=self._alpha(), update_every=self.update_every,
                                  trace_every=self.trace_every, ecme=correcting,
                                  weights=None if w is None else w[pos:stop])
            done, pos = stop - pos, stop
            corrected = correcting and scheduled and self._correct(new, stg)
            if corrected and trace.shape[0] and trace[-1, 0] == st.n_rows:
                trace[-1] = _sema.trace_row(st)  # a trace row falling on a correction shows it
            if trace.shape[0]:
                traces.append(trace)
            if bar is not None:
                bar.update(done)
            if self.callback is not None and (corrected or pos == n):
                self.callback(self._progress_info(new, st, corrected))
        return traces

    def _correct(self, new, stg):
        """Replace SEMA's estimates in the staged state by the exact ML fit of the rows seen (if it can be fitted yet)."""
        st = stg.state
        st.xc[0] = st.n_rows  # the schedule counts from the last attempt
        if not st.trained or not st.has_P:
            return False
        stg.privatize()  # the fit rewrites every group's BLUP and contributions
        # warm start from the last correction, the first one from the training EM's estimates
        # (or, without a training phase, the batch optimiser's default start)
        theta0 = st.xtheta if st.xtheta.size else None
        if theta0 is None and st.n_train_iter > 0:
            theta0 = _exact.theta_of(st.Lphi, st.s2)
        H0 = st.xhess if st.xhess.size else None
        trusted = getattr(st, "xtrust", np.empty(0))
        fit = _exact.exact_fit(st, new["_zidx"], new["feature_names_"], new["re_names_"], alpha=self._alpha(),
                               theta0=theta0, H0=H0, intercept=self._has_intercept(),
                               trusted=trusted.astype(bool) if trusted.size else None)
        if fit is None:
            return False
        st.xtrust = np.empty(0, dtype=np.int64) if fit.trusted is None else fit.trusted.astype(np.int64)
        _exact.apply_fit(st, fit, alpha=self._alpha())
        st.xtheta = fit.theta
        st.xhess = np.empty((0, 0)) if fit.hessian is None else fit.hessian
        st.xc[1] += 1
        return True

    @staticmethod
    def _progress_info(new, st, corrected):
        names = new["re_names_"]
        return {"n_rows": st.n_rows,
                "fixed_effects": pd.Series(st.beta.copy() if new.get("_shift") is None else
                                           st.beta - new["_shift"] @ st.beta * (np.arange(st.p) == 0),
                                           index=new["feature_names_"], name="fixed_effects"),
                "cov_re": pd.DataFrame(st.Phi.copy(), index=names, columns=names) if names else None,
                "sigma2": st.s2, "corrected": bool(corrected)}

    def _warn_if_order_sensitive(self):
        """Without corrections, say (once per stream) when the order of the rows looks unsafe."""
        if self._no_groups or getattr(self, "_order_warned", False):
            return
        why = _exact.order_sensitivity(self._state, self.feature_names_)
        if why is None:
            return
        self._order_warned = True
        warnings.warn(f"StreamingMixed without exact corrections (refit_every=None) on a stream whose order "
                      f"makes SEMA's estimates unreliable: {why}. They may be far from the maximum-likelihood "
                      "fit of the same rows; use refit_every='auto' (or an int), or shuffle the rows",
                      StreamOrderWarning, stacklevel=4)

    @property
    def n_corrections_(self):
        check_is_fitted(self)
        if self._is_multi():
            return int(self._multi.n_corrections)
        return int(self._state.xc[1])

    def _warn_if_aliased(self, reset):
        """Warn (once per stream) while ``X'X`` of the rows seen is singular.

        A stream cannot drop columns the way the batch estimators do (later rows may
        separate them), so the fixed effects simply stay at their start values until
        ``X'X`` is invertible: say so instead of returning zeros silently. The warning
        describes the rows consumed, so it comes after the batch is in (with warnings
        turned into errors, the batch is consumed all the same).
        """
        if reset:
            self._aliased_warned = False
        st = self._state
        p = st.XtX.shape[0]
        if self._aliased_warned or st.n_rows < p:
            return
        keep = drop_aliased(st.XtX)
        if keep.size == p:
            return
        self._aliased_warned = True
        gone = [self.feature_names_[k] for k in range(p) if k not in set(keep.tolist())]
        warnings.warn(f"X'X of the {st.n_rows} rows seen is singular: column(s) {gone} are constant zero or "
                      "linear combinations of earlier columns, so the fixed effects stay at their start "
                      "values until later rows separate them; remove aliased columns and refit",
                      UserWarning, stacklevel=4)

    def _read_batch(self, X, y, groups, reset, several=False):
        """Read and check a batch: (X after the formula, X values, y - offset, grouping factors or None, slopes)."""
        X = data = _frame_as_pandas(X)
        X, y, groups, _ = self._formula_inputs(X, y, groups, None, reset)
        spec = self._formula
        rs = (self._formula_slopes(spec) if (reset and spec is not None and not several)
              else self.random_slopes)
        groups = _check_groups_arg(groups)
        if self.group_column is not None:
            if groups is not None:
                raise ValueError("groups given while group_column is set: give the labels one way (drop "
                                 "groups=, or set group_column=None)")
            _, groups = self._split_group_columns(X)
        if self.group_column is None:
            # validate_data with y: sklearn's messages/warnings for y (None, 2-D column)
            Xv, yv = validate_data(self, X, y, reset=reset, dtype=np.float64, y_numeric=True)
        else:
            if y is None:
                raise ValueError("StreamingMixed requires y to be passed, but the target y is None")
            Xv = self._check_x(X, reset=reset)
            _finite_or_raise(Xv, "X")
            yv = self._validate_y(y, Xv.shape[0])
        yv = np.ascontiguousarray(yv, dtype=np.float64)
        _finite_or_raise(yv, "y")
        offset = self._formula.offset(data) if self._formula is not None else None
        if offset is not None:  # a formula's offset(): the stream fits y - offset (predict adds it back)
            yv = yv - offset
        n = Xv.shape[0]
        factors = None
        if groups is not None:
            factors = make_factors(groups)
            for f in factors:
                if f.codes.shape[0] != n:
                    raise ValueError(f"X has {n} rows but groups has {f.codes.shape[0]}")
        return X, Xv, yv, factors, rs

    def _prepare(self, X, y, groups, reset):
        """Validate the whole batch; returns the design, y, the batch's factor and the setup."""
        if reset:
            self._check_params()
        X, Xv, yv, factors, rs = self._read_batch(X, y, groups, reset)
        factor = None
        if factors is not None:
            if len(factors) != 1:
                raise ValueError(f"this stream has one grouping factor; the batch has {len(factors)} (a stream "
                                 "with several factors is set up by its first batch or fit)")
            factor = factors[0]
        setup = {}
        Xd = np.ascontiguousarray(self._design(Xv, shift=0.0 if reset else None))
        if reset:
            names_in = self._input_names_after_groups(Xv.shape[1])
            icpt = int(self._has_intercept())
            feature_names = (["(Intercept)"] if icpt else []) + names_in
            no_groups = factor is None
            if no_groups:
                if rs is not None:
                    raise ValueError("random_slopes given but no groups (and no group_column)")
                warnings.warn("StreamingMixed got no groups (and no group_column): fitting the "
                              "fixed-effects part only", NoGroupsWarning, stacklevel=3)
                zidx = np.empty(0, dtype=np.int64)
                re_names = []
                levels_ = []
            else:
                slopes, slope_names = self._slope_indices(names_in, icpt, rs)
                zidx = np.array([0 if icpt else -1] + list(slopes), dtype=np.int64)
                re_names = ["(Intercept)"] + list(slope_names)
                levels_ = [LevelIndex(factor.name)]
            shift = self._centring(Xd, zidx)
            if shift is not None:
                Xd -= shift
            setup = dict(
                _state=_sema.SemaState.new(Xd.shape[1], len(zidx), n_train=self.n_train,
                                           capacity=16), _shift=shift,
                _zidx=zidx, _trace_rows=[], _no_groups=no_groups, _levels=levels_,
                # the base's predict keeps these design columns: a stream cannot know aliased
                # columns in advance, so it keeps all (an aliased column leaves X'X singular)
                _keep=np.arange(Xd.shape[1]),
                feature_names_=feature_names, re_names_=re_names,
            )
            if self._formula is not None:
                setup["formula_"] = self._formula.formula
        else:
            if self._no_groups and factor is not None:
                raise ValueError("this model was fitted without groups; cannot add grouped rows "
                                 "(refit with fit)")
            if not self._no_groups and factor is None:
                raise ValueError("groups are required: the model was fitted with groups")
        return Xd, yv, factor, setup


def end_of_batch_due(since, n_groups, n_rows):
    """Whether ``refit_every="auto"`` ends a batch with a correction.

    ``since`` rows arrived since the last correction, ``n_groups`` groups and ``n_rows`` rows
    seen: at least ``AUTO_END_ROWS_PER_GROUP`` rows per group or ``AUTO_END_SHARE`` of the
    rows seen.  The share keeps a batch of new groups (rows arriving group by group, small
    data) or of new covariate values (rows sorted by a covariate) from leaving the variance
    parameters of a much smaller sample; the per-group count bounds the cost on long streams.
    """
    return since > 0 and since >= min(AUTO_END_ROWS_PER_GROUP * n_groups, AUTO_END_SHARE * n_rows)


def _check_finite_state(st, Xd=None, yv=None):
    """A clear error instead of NaN estimates when the stream's sums overflow (|y| or |X| ~1e155).

    Checks the global statistics and, since the per-group sums hold squares of the batch's
    values, that those squares are finite (``O(rows)``, never ``O(groups)``).
    """
    ok = (np.isfinite(st.beta).all() and np.isfinite(st.Phi).all() and np.isfinite(st.sc).all()
          and np.isfinite(st.XtX).all() and np.isfinite(st.Info).all() and np.isfinite(st.Rhs).all())
    for v in (Xd, yv):
        if ok and v is not None and v.size:
            ok = float(np.abs(v).max()) < 1e154  # its square (and sums of a few) stay finite
    if not ok:
        raise ValueError("the batch makes the stream's statistics non-finite (values too large to square, "
                         "|X| or |y| above ~1e154?): rescale the data; the model is unchanged")
