"""StreamingMixedLogistic: an online logistic GLMM (SEMA's idea with per-group Laplace statistics).

No published method fits a GLMM on a stream; this one carries SEMA's idea over (per-group
statistics, a per-row update of the row's group, corrections from the stored statistics):

* **Per group** the stream keeps its last ``max_rows_per_group`` rows as they are (the
  *buffer*) and a quadratic summary of the older ones: when the buffer is full its rows are
  *folded* -- each row's Bernoulli log-likelihood replaced by its second-order expansion in
  the linear predictor around the group's current conditional mode (the IRLS working weight
  and response), summed into ``p^2 + pq + q^2 + p + q + 1`` numbers.  The logistic GLMM has
  no finite sufficient statistics, so this is the approximation: exact for the buffered
  rows, and for folded ones accurate to third order in how far the final fit's linear
  predictor is from the fold's (the Bernoulli log-likelihood's third derivative is at most
  0.1, and a fold happens at a mode already fitted to ``max_rows_per_group`` rows of its
  group).  Memory: ``O(max_rows_per_group * p + p^2)`` per group, whatever the rows.
* **Per row**: the row joins its group's buffer and the group's conditional mode takes a
  Newton step (so its BLUP, used by :meth:`predict_proba`, is current).
* **Corrections** (budgeted as in :class:`~skmixed.streaming.StreamingMixed`): the Laplace
  (glmer ``nAGQ = 1``) fit of all rows seen, from the buffers and folded statistics: every
  group's conditional mode by Newton, the deviance ``sum_g [-2 h_g + log|H_g|]`` minimised
  over ``(beta, theta)`` by Newton steps with the last correction's curvature (scaled by the
  rows seen; one central-difference gradient per step), or L-BFGS-B when there is none or a
  variance is on its bound.  Its cost grows with the groups and the buffered rows, never with the rows
  folded.  The fixed effects and covariance parameters change only at corrections.

The kernels are in :mod:`skmixed._kernels.stream_glmm`.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import _check_groups_arg, _finite_or_raise, _frame_as_pandas, checked_sample_weight
from ._design.formula import FormulaSpec
from ._design.grouping import make_factors
from ._design.level_index import LevelIndex
from ._kernels import stream_glmm as _k
from ._kernels.sema import decay_factor
from ._numdiff import central_hessian
from ._numdiff import gradient as fd_gradient
from ._solvers.sema import Staging
from ._solvers.sema_exact import theta_positions
from ._transaction import transactional
from .streaming import AUTO_FIRST, AUTO_REFIT_EVERY, AUTO_ROWS_PER_GROUP, StreamOrderWarning, end_of_batch_due

__all__ = ["StreamingMixedLogistic"]


@dataclass
class LaplaceStreamState:
    """Everything the online logistic GLMM keeps (per group: first axis, ``capacity`` rows).

    Buffers ``Xbuf`` (rows x ``max_rows_per_group`` x p, the design with its intercept column),
    ``ybuf``, ``nbuf`` (rows buffered); ``gn`` rows seen, ``glast`` row number of the last row
    (-1: unseen); folded statistics ``Af, af, Bf, Df, cf, kf`` (see
    :mod:`skmixed._kernels.stream_glmm`); ``u`` the conditional mode (spherical scale).
    Global: ``beta``, ``theta`` and ``ic = [rows seen, row of the last correction attempt,
    corrections run]``.
    """

    ROW_FIELDS = ("Xbuf", "ybuf", "wbuf", "nbuf", "gn", "glast", "Af", "af", "Bf", "Df", "cf", "kf", "u", "poly", "bref",
                  "xbar", "polyx", "gfold")

    Xbuf: np.ndarray
    ybuf: np.ndarray
    wbuf: np.ndarray
    nbuf: np.ndarray
    gn: np.ndarray
    glast: np.ndarray
    Af: np.ndarray
    af: np.ndarray
    Bf: np.ndarray
    Df: np.ndarray
    cf: np.ndarray
    kf: np.ndarray
    u: np.ndarray
    poly: np.ndarray
    bref: np.ndarray
    xbar: np.ndarray
    polyx: np.ndarray
    gfold: np.ndarray
    beta: np.ndarray
    theta: np.ndarray
    ic: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    # forgetting: [alpha (0: none), epoch]; rows are stored with weights relative to the epoch's
    fg: np.ndarray = field(default_factory=lambda: np.zeros(2))
    # the deviance's Hessian in (beta, theta) at the last correction divided by the rows seen
    # then: the next one's Newton steps
    hess: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    @classmethod
    def new(cls, p, q, R, capacity=16):
        G = capacity
        k = q * (q + 1) // 2
        rows, cols = theta_positions(q)
        theta = np.where(rows == cols, 1.0, 0.0)[:k]
        return cls(Xbuf=np.zeros((G, R, p)), ybuf=np.zeros((G, R)), wbuf=np.zeros((G, R)), nbuf=np.zeros(G, dtype=np.int64),
                   gn=np.zeros(G), glast=np.full(G, -1, dtype=np.int64), Af=np.zeros((G, p, p)),
                   af=np.zeros((G, p)), Bf=np.zeros((G, q, q)), Df=np.zeros((G, p, q)), cf=np.zeros((G, q)),
                   kf=np.zeros(G), u=np.zeros((G, q)),
                   # higher-order series of folded rows: random intercept only (see the kernels)
                   poly=np.zeros((G, _k.POLY_DEGREE + 1 if q == 1 else 1)), bref=np.zeros(G), xbar=np.zeros((G, p)),
                   polyx=np.zeros((G, _k.POLY_DEGREE + 1 if q == 1 else 1, p)),
                   gfold=np.zeros(G, dtype=np.int64), beta=np.zeros(p), theta=theta)

    @property
    def capacity(self):
        return self.glast.shape[0]

    @property
    def p(self):
        return self.beta.shape[0]

    @property
    def q(self):
        return self.u.shape[1]

    def ensure_capacity(self, n_groups):
        G = self.capacity
        if n_groups <= G:
            return
        new = max(2 * G, n_groups)
        for name in self.ROW_FIELDS:
            old = getattr(self, name)
            arr = np.full((new,) + old.shape[1:], -1 if name == "glast" else 0, dtype=old.dtype)
            arr[:G] = old
            setattr(self, name, arr)

    def copy(self):
        return type(self)(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def lam(self, theta=None):
        q = self.q
        L = np.zeros((q, q))
        rows, cols = theta_positions(q)
        L[rows, cols] = self.theta if theta is None else theta
        return L

    def weight_scale(self) -> float:
        """What the stored weights are multiplied by now (forgetting since the epoch; 1 without)."""
        return float(decay_factor(self.fg[1], float(self.ic[0]), self.fg[0]))

    def rebase(self) -> None:
        """Fold the forgetting since the epoch into the stored weights (every group: after a privatize)."""
        ws = self.weight_scale()
        if ws != 1.0:
            for name in ("wbuf", "kf", "af", "Af", "Df", "cf", "Bf", "poly", "polyx"):
                getattr(self, name)[...] *= ws
        self.fg[1] = float(self.ic[0])

    def deviance(self, beta, theta, zidx, u=None):
        """Laplace deviance of all rows seen (modes into ``u``, a scratch copy by default)."""
        u = self.u.copy() if u is None else u
        return float(_k.laplace_deviance(np.ascontiguousarray(beta, dtype=float), self.lam(theta), zidx,
                                         self.Xbuf, self.ybuf, self.wbuf, self.nbuf, self.glast, self.Af, self.af,
                                         self.Bf, self.Df, self.cf, self.kf, self.poly, self.bref, self.xbar, self.polyx, u,
                                         self.weight_scale()))


class StreamingMixedLogistic(ClassifierMixin, BaseEstimator):
    """Logistic mixed model fitted online (one pass, ``partial_fit``): SEMA's idea with Laplace statistics.

    Model ``P(y = 1) = logistic(X beta + Z b_g)``, ``b_g ~ N(0, Phi)`` with one grouping
    factor (a random intercept plus random slopes on ``random_slopes``, correlated).  Each
    row updates its group's conditional mode; the fixed effects and ``Phi`` are the Laplace
    (glmer ``nAGQ = 1``) fit of all rows seen, recomputed at budgeted corrections from the
    per-group statistics (see the module docstring for the method and its approximation).

    Parameters
    ----------
    fit_intercept : bool, default=True
        Add a fixed intercept (named ``"(Intercept)"``).  The random intercept is always present.
    random_slopes : list of str or int, optional
        Columns of ``X`` (names for a DataFrame, else positions) with a random slope.
    max_rows_per_group : int, default=64
        Rows kept as they are per group; older rows are folded into the group's quadratic
        statistics.  Larger: closer to the batch Laplace fit, more memory
        (``max_rows_per_group * (n_features + 1)`` numbers per group) and slower corrections.
    refit_every : "auto" or int, default="auto"
        Corrections (the Laplace fit from the stored statistics): ``"auto"`` as in
        :class:`~skmixed.streaming.StreamingMixed` (rows doubling from 500, then every
        20,000 rows, at least 16 rows per group apart, and at the end of a batch bringing at
        least 4 rows per group, or 1% of the rows seen, since the last one); an int ``k``:
        every ``k`` rows.  A correction from or to a singular fit also runs from cold starts.
    verbose : int, default=0
        Show a tqdm progress bar over the rows of each batch.
    callback : callable, optional
        Called as ``callback(info)`` after every correction and at the end of every batch,
        ``info`` a dict with ``n_rows``, ``fixed_effects`` (Series), ``cov_re`` (DataFrame) and
        ``corrected`` (whether the estimates were just refitted).
    trace_every : int, optional
        Record the estimates every ``trace_every`` rows in :attr:`trace_` (a correction
        falling on such a row is recorded after it).
    formula : str, optional
        An lme4-style formula with one bar term, e.g. ``"y ~ x + b + (1 + x | g)"`` (the
        fixed part read by formulaic, as for :class:`~skmixed.MixedLogisticRegressor`; the
        random slopes must be fixed-effect columns too, the term must have a random
        intercept).  Then ``fit`` / ``partial_fit`` / ``predict`` take one DataFrame with
        the formula's columns (``y`` optional: the formula's response); the formula's
        intercept (``0 +`` drops it) takes the place of ``fit_intercept``, and
        ``random_slopes`` must be None.  See :meth:`from_formula`.
    forgetting : float, optional
        Smooth sliding window ``alpha`` (> 1), as :class:`~skmixed.streaming.StreamingMixed`'s:
        from row ``alpha`` on each new row down-weights all earlier rows by
        ``(alpha - 1) / alpha``, and the corrections fit the rows so weighted (each row's
        log-likelihood times its weight; the random-effects prior is not weighted).

    Attributes
    ----------
    fixed_effects_ : pandas.Series
    fixed_effects_se_ : pandas.Series
        From the finite-difference Hessian of the Laplace deviance in ``(beta, theta)`` at
        the current estimates (as glmer), computed on access.
    coef_, intercept_, classes_
    cov_re_ : dict
        Factor name -> random-effect covariance ``Phi`` (DataFrame).
    theta_ : ndarray
        lme4's ``theta`` (column-wise lower triangle of ``chol(Phi)``; no residual scale).
    random_effects_ : dict
        Factor name -> DataFrame of the conditional modes of the groups seen.
    deviance_ : float
        Laplace deviance of all rows seen at the current estimates.
    n_seen_, n_groups_, n_corrections_ : int
    trace_ : pandas.DataFrame
        Estimates every ``trace_every`` rows (``n_rows``, ``beta[...]``, ``Phi[...]``), the
        columns :func:`skmixed.plot.plot_trace` draws.

    Examples
    --------
    >>> from skmixed.datasets import make_big_grouped_data
    >>> from skmixed.streaming_logistic import StreamingMixedLogistic
    >>> df = make_big_grouped_data(20_000, 50, seed=0)
    >>> m = StreamingMixedLogistic()
    >>> for a in range(0, 20_000, 5_000):
    ...     m = m.partial_fit(df[["x", "b"]][a:a + 5_000], df["y_bin"][a:a + 5_000], groups=df["g"][a:a + 5_000])
    >>> m.fixed_effects_.round(1).tolist()
    [-0.0, 0.5, 0.3]
    >>> m.predict_proba(df[["x", "b"]][:2], groups=df["g"][:2]).shape
    (2, 2)
    """

    def __init__(self, fit_intercept=True, random_slopes=None, max_rows_per_group=64, refit_every="auto",
                 verbose=0, callback=None, trace_every=None, formula=None, forgetting=None):
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.max_rows_per_group = max_rows_per_group
        self.refit_every = refit_every
        self.verbose = verbose
        self.callback = callback
        self.trace_every = trace_every
        self.formula = formula
        self.forgetting = forgetting

    # ------------------------------------------------------------------ public API
    @transactional
    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Forget everything and consume ``X, y`` in one pass (= reset + :meth:`partial_fit`)."""
        return self._consume(X, y, groups, reset=True, sample_weight=sample_weight)

    @transactional
    def partial_fit(self, X, y=None, groups=None, classes=None, sample_weight=None):
        """Consume a batch of rows in order (validated as a whole first; all or nothing).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of 0/1 (or bool) of shape (n_samples,)
        groups : array-like of shape (n_samples,)
            Group labels (any hashable type); required.
        classes : ignored
            Accepted for scikit-learn's incremental-learning convention (always ``[0, 1]``).
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights, non-negative (as :class:`~skmixed.MixedLogisticRegressor`'s
            ``sample_weight`` for 0/1 outcomes: a weight of 2 counts the row twice); a row of
            weight 0 is skipped (not counted in ``n_seen_``).

        Returns
        -------
        self
        """
        return self._consume(X, y, groups, reset=not hasattr(self, "_state"), sample_weight=sample_weight)

    @classmethod
    def from_formula(cls, formula, data, **params):
        """Start a stream from an lme4-style formula and its first batch.

        ``"y ~ x + b + (1 + x | g)"``: one bar term with a random intercept (its slopes must
        also be fixed effects).  Later batches go to :meth:`partial_fit` as DataFrames with
        the formula's columns (``y`` omitted); :meth:`predict` takes such frames too.

        Parameters
        ----------
        formula : str
        data : DataFrame
            The first batch.
        **params
            Other constructor parameters (``max_rows_per_group``, ``refit_every``, ...).

        Returns
        -------
        StreamingMixedLogistic
            Fitted on ``data``.

        Examples
        --------
        >>> from skmixed.datasets import make_big_grouped_data
        >>> df = make_big_grouped_data(4_000, 20, seed=0)
        >>> m = StreamingMixedLogistic.from_formula("y_bin ~ x + b + (1 | g)", df.iloc[:2000])
        >>> m = m.partial_fit(df.iloc[2000:])
        >>> m.n_seen_, list(m.fixed_effects_.index)
        (4000, ['(Intercept)', 'x', 'b'])
        """
        for name in ("random_slopes", "fit_intercept"):
            if name in params:
                raise ValueError(f"{name} is set by the formula; do not pass it to from_formula")
        return cls(formula=formula, **params).fit(data)

    def predict_proba(self, X, groups=None):
        """``[P(y=0), P(y=1)]`` with the groups' conditional modes (new or no groups: ``b = 0``)."""
        eta = self.decision_function(X, groups)
        p1 = 1.0 / (1.0 + np.exp(-eta))
        return np.column_stack([1.0 - p1, p1])

    def decision_function(self, X, groups=None):
        """The linear predictor ``X beta + Z b_g``."""
        check_is_fitted(self)
        spec = self.__dict__.get("_formula")
        if spec is not None:
            if groups is not None:
                raise ValueError("groups given with a formula: the data's grouping column is used; drop groups=")
            X, groups = spec.rows(_frame_as_pandas(X))
        Xv = validate_data(self, X, reset=False, dtype=np.float64)
        _finite_or_raise(Xv, "X")
        Xd = _internal(self._design(Xv), self.__dict__.get("_origin"))
        st = self._state
        eta = Xd @ st.beta
        groups = _check_groups_arg(groups)
        if groups is not None:
            g = np.asarray(groups, dtype=object).ravel()
            if g.shape[0] != Xd.shape[0]:
                raise ValueError(f"X has {Xd.shape[0]} rows but groups has {g.shape[0]}")
            where = self._levels.lookup(g)
            known = where >= 0
            b = st.u[where[known]] @ st.lam().T
            Z = self._z(Xd[known])
            eta[known] += np.einsum("ij,ij->i", Z, b)
        return eta

    def predict(self, X, groups=None):
        """Class labels (0/1): ``P(y=1) > 0.5``."""
        return (self.decision_function(X, groups) > 0).astype(np.int64)

    @property
    def fixed_effects_(self):
        check_is_fitted(self)
        return pd.Series(self._user_beta(self._state.beta), index=self.feature_names_, name="fixed_effects")

    @property
    def coef_(self):
        b = self._user_beta(self._state.beta)
        return b[1:] if self._icpt() else b

    @property
    def intercept_(self):
        return float(self._user_beta(self._state.beta)[0]) if self._icpt() else 0.0

    @property
    def theta_(self):
        check_is_fitted(self)
        rows, cols = theta_positions(self._state.q)
        return self._user_lam(self._state)[rows, cols]

    @property
    def cov_re_(self):
        check_is_fitted(self)
        L = self._user_lam(self._state)
        return {self._factor_name: pd.DataFrame(L @ L.T, index=self.re_names_, columns=self.re_names_)}

    @property
    def random_effects_(self):
        check_is_fitted(self)
        st = self._state
        n = len(self._levels)
        return {self._factor_name: pd.DataFrame(st.u[:n] @ self._user_lam(st).T, index=self._levels.levels,
                                                 columns=self.re_names_)}

    @property
    def deviance_(self):
        check_is_fitted(self)
        st = self._state
        return st.deviance(st.beta, st.theta, self._zidx)

    @property
    def n_corrections_(self):
        check_is_fitted(self)
        return int(self._state.ic[2])

    @property
    def fixed_effects_se_(self):
        check_is_fitted(self)
        st = self._state
        p = st.p
        x0 = np.concatenate([st.beta, st.theta])
        on_bound = np.zeros(x0.size, dtype=bool)
        rows, cols = theta_positions(st.q)
        on_bound[p:] = (rows == cols) & (st.theta < 1e-4)
        idx = np.flatnonzero(~on_bound)
        H = _fd_hessian(lambda x: st.deviance(x[:p], x[p:], self._zidx), x0, idx)
        T = _beta_map(p, self.__dict__.get("_origin"), self._icpt())
        return pd.Series(_fixed_se(H, idx, p, int(st.ic[0]), int(st.ic[1]), T), index=self.feature_names_,
                         name="Std. Error")

    @property
    def trace_(self):
        check_is_fitted(self)
        cols = (["n_rows"] + [f"beta[{nm}]" for nm in self.feature_names_]
                + [f"Phi[{a},{b}]" for a in self.re_names_ for b in self.re_names_])
        rows = self.__dict__.get("_trace_rows") or []
        df = pd.DataFrame(np.array(rows) if rows else np.empty((0, len(cols))), columns=cols)
        df["n_rows"] = df["n_rows"].astype(np.int64)
        return df

    def __sklearn_is_fitted__(self):
        return hasattr(self, "_state")

    # ------------------------------------------------------------------ internals
    def _design(self, Xv):
        icpt = int(self._icpt())
        Xd = np.empty((Xv.shape[0], Xv.shape[1] + icpt))
        if icpt:
            Xd[:, 0] = 1.0
        Xd[:, icpt:] = Xv
        return np.ascontiguousarray(Xd)

    # the columns enter on an internal origin and scale (issue 15: equivariance), so the estimates do
    # not depend on the columns' units or origins: each non-intercept column divided by its
    # root-mean-square spread about the first row's value over the first batch, and a fixed-only
    # column (not a random slope: shifting one changes the model) shifted to the first row's value
    # when there is an intercept. The state holds the internal estimates; attributes map them back.
    def _origin_of(self, new=None):
        return (new or {}).get("_origin", self.__dict__.get("_origin"))

    def _user_beta(self, beta, new=None):
        return _beta_map(beta.size, self._origin_of(new), self._icpt(new)) @ beta

    def _user_lam(self, st, new=None):
        """Lambda on the user's columns (a random-slope column's rows divided by its scale)."""
        L = st.lam()
        origin = self._origin_of(new)
        if origin is None:
            return L
        zidx = (new or {}).get("_zidx", self.__dict__.get("_zidx"))
        return L / np.array([1.0 if c <= 0 else origin[1][c] for c in zidx])[:, None]

    def _z(self, Xd):
        return np.column_stack([np.ones(Xd.shape[0]) if c < 0 else Xd[:, c] for c in self._zidx])

    def _check_params(self):
        R = self.max_rows_per_group
        if isinstance(R, bool) or not isinstance(R, numbers.Integral) or R < 1:
            raise ValueError(f"max_rows_per_group must be a positive integer, got {R!r}")
        k = self.refit_every
        if not (isinstance(k, str) and k == "auto") and (
                isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1):
            raise ValueError(f"refit_every must be 'auto' or a positive integer, got {k!r}")
        t = self.trace_every
        if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1):
            raise ValueError(f"trace_every must be a positive integer or None, got {t!r}")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None, got {self.callback!r}")
        v = self.verbose
        if not isinstance(v, bool) and (not isinstance(v, numbers.Integral) or v < 0):
            raise ValueError(f"verbose must be a non-negative integer or bool, got {v!r}")
        a = self.forgetting
        if a is not None and (isinstance(a, bool) or not isinstance(a, numbers.Real) or not np.isfinite(a) or a <= 1):
            raise ValueError(f"forgetting must be a number > 1 (the window alpha) or None, got {a!r}")
        f = self.formula
        if f is not None:
            if not isinstance(f, (str, FormulaSpec)):
                raise TypeError(f"formula must be a string such as \"y ~ x + (1 | g)\", got {type(f).__name__}")
            if self.random_slopes is not None:
                raise ValueError("formula and random_slopes both given: the formula's bar term ((1 + x | g)) "
                                 "defines the random slopes; drop random_slopes")

    def _icpt(self, new=None):
        """Whether the design has an intercept: the formula's say, else ``fit_intercept``."""
        spec = (new or {}).get("_formula", self.__dict__.get("_formula"))
        return bool(spec.intercept) if spec is not None else bool(self.fit_intercept)

    def _formula_rows(self, X, y, groups, reset):
        """With a formula: (fixed design, response, grouping column, spec, slope names) of the frame ``X``."""
        spec = None if reset else self.__dict__.get("_formula")
        if (self.formula if reset else spec) is None:
            return X, y, groups, None, self.random_slopes
        if groups is not None:
            raise ValueError("groups given with a formula: its bar term names the grouping column ((1 | g)); "
                             "drop groups=")
        data = _frame_as_pandas(X)
        if not isinstance(data, pd.DataFrame):
            raise ValueError("a formula stream takes a DataFrame holding the formula's columns")
        if reset:
            if isinstance(self.formula, FormulaSpec):
                spec = self.formula
                Xf, gframe = spec.rows(data, need_groups=True)
            else:
                spec, Xf, gframe = FormulaSpec.build(self.formula, data)
            if spec.parsed.offsets or spec.parsed.cbind is not None:
                raise ValueError(f"StreamingMixedLogistic fits neither offset() terms nor cbind() responses "
                                 f"(formula {spec.formula!r}); use MixedLogisticRegressor")
            if len(spec.random) != 1:
                raise ValueError(f"StreamingMixedLogistic supports one random-effects term (one grouping factor); "
                                 f"{spec.formula!r} has {len(spec.random)}")
            term = spec.random[0]
            if not term.intercept:
                raise ValueError(f"({term.factor}): the stream always estimates a random intercept; write (1 + ... | g)")
            if term.columns and not term.correlated:
                raise ValueError("the stream estimates a full covariance matrix; use | (correlated random effects)")
            missing = [c for c in term.columns if c not in spec.columns]
            if missing or spec.extra:
                raise ValueError(f"random slope(s) {missing or list(term.columns)} must also be fixed-effect "
                                 "columns of the formula")
        else:
            Xf, gframe = spec.rows(data, need_groups=True)
        if y is None:
            y = spec.target(data)[0]
        self._formula = spec  # (restored by @transactional if the batch is refused)
        return Xf, y, gframe, spec, list(spec.random[0].columns) or None

    def _prepare(self, X, y, groups, reset):
        if reset:
            self._check_params()
            self.__dict__.pop("_formula", None)
        X, y, groups, spec, slopes = self._formula_rows(X, y, groups, reset)
        groups = _check_groups_arg(groups)
        if groups is None:
            raise ValueError("StreamingMixedLogistic requires groups")
        Xv, yv = validate_data(self, X, y, reset=reset, dtype=np.float64, y_numeric=False)
        _finite_or_raise(Xv, "X")
        yv = np.asarray(yv)
        if yv.dtype == bool:
            yv = yv.astype(np.float64)
        try:
            yv = np.ascontiguousarray(yv, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("y must be 0/1 (or boolean)") from None
        if not np.isin(yv, (0.0, 1.0)).all():
            raise ValueError("y must be 0/1 (or boolean): a binary outcome")
        factors = make_factors(groups)
        if len(factors) != 1:
            raise ValueError(f"StreamingMixedLogistic supports one grouping factor; groups has {len(factors)}")
        factor = factors[0]
        if factor.codes.shape[0] != Xv.shape[0]:
            raise ValueError(f"X has {Xv.shape[0]} rows but groups has {factor.codes.shape[0]}")
        return self._design(Xv), yv, factor, slopes

    def _consume(self, X, y, groups, reset, sample_weight=None):
        Xd, yv, factor, slope_cols = self._prepare(X, y, groups, reset)
        wts = np.empty(0)
        if sample_weight is not None:
            wts = checked_sample_weight(sample_weight, Xd)
            if float(wts.max(initial=0.0)) > 1e150:
                raise ValueError("sample_weight is too large (above 1e150): rescale the weights")
            keep = wts > 0
            if not keep.all():  # a row of weight 0 is a row not seen (nor is a group only such rows name)
                Xd, yv, wts = Xd[keep], yv[keep], wts[keep]
                factor = factor.rows(keep)
            wts = np.ascontiguousarray(wts)
        new = {}
        if reset:
            icpt = int(self._icpt(new))
            names_in = ([str(c) for c in self.feature_names_in_] if hasattr(self, "feature_names_in_")
                        else [f"x{k}" for k in range(Xd.shape[1] - icpt)])
            slopes = []
            for s in slope_cols or []:
                if isinstance(s, str):
                    if s not in names_in:
                        raise ValueError(f"random slope {s!r} is not a column of X")
                    slopes.append(names_in.index(s) + icpt)
                else:
                    if not 0 <= int(s) < len(names_in):
                        raise ValueError(f"random slope column {s!r} out of range")
                    slopes.append(int(s) + icpt)
            zidx = np.array([0 if icpt else -1] + slopes, dtype=np.int64)
            new["_origin"] = _make_origin(Xd, icpt, slopes)
            new.update(feature_names_=(["(Intercept)"] if icpt else []) + names_in,
                       re_names_=["(Intercept)"] + [names_in[c - icpt] for c in slopes],
                       _zidx=zidx, _levels=LevelIndex(factor.name), _factor_name=factor.name,
                       classes_=np.array([0, 1]))
            base = LaplaceStreamState.new(Xd.shape[1], zidx.size, int(self.max_rows_per_group))
            base.fg[0] = 0.0 if self.forgetting is None else float(self.forgetting)
        else:
            base = self._state
        Xd = _internal(Xd, self._origin_of(new))
        levels = new.get("_levels", getattr(self, "_levels", None))
        n_before = len(levels)
        base_corrections = int(base.ic[2])
        zidx = new.get("_zidx", getattr(self, "_zidx", None))
        stg = None
        try:
            # batch-local levels -> stream codes (new levels get the next ones): O(batch)
            codes = np.ascontiguousarray(levels.code(factor.levels)[factor.codes])
            stg = Staging(base, codes, fresh=reset)
            stg.ensure_capacity(len(levels))
            traces = self._run(stg, Xd, yv, codes, zidx, len(levels), new, wts)
            if stg.state.ic[2] > base_corrections:  # estimates changed in this batch: finite? separated?
                _warn_separation(stg.state, Xd, levels, new.get("feature_names_", getattr(self, "feature_names_",
                                                                                          None)),
                                 new.get("_factor_name", getattr(self, "_factor_name", None)),
                                 int(self._icpt(new)))
        except BaseException:
            if stg is not None:
                stg.rollback()
            levels.truncate(n_before)
            raise
        new.update(_state=stg.state, _levels=levels, n_seen_=int(stg.state.ic[0]), n_groups_=len(levels))
        if traces or reset:
            new["_trace_rows"] = ([] if reset else list(self.__dict__.get("_trace_rows") or [])) + traces
        self.__dict__.update(new)
        return self

    def _next_correction(self, last, n_groups):
        if self.refit_every == "auto":
            return last + max(min(AUTO_REFIT_EVERY, max(last, AUTO_FIRST)), AUTO_ROWS_PER_GROUP * n_groups)
        k = int(self.refit_every)
        return (last // k + 1) * k

    def _run(self, stg, Xd, yv, codes, zidx, n_groups, new, wts):
        """Feed the batch with the scheduled corrections; returns the trace rows recorded."""
        st = stg.state
        n = Xd.shape[0]
        start = int(st.ic[0])
        pos = 0
        fold_anyway = False
        traces = []
        te = self.trace_every
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="rows", desc="StreamingMixedLogistic", leave=False)
        try:
            while pos < n:
                if st.fg[0] > 0 and decay_factor(st.fg[1], float(st.ic[0] + n - pos), st.fg[0]) < 1e-200:
                    stg.privatize()  # (forgetting) keep the stored weights finite: fold the decay in now
                    st.rebase()
                pos, fold_anyway = self._segment(stg, Xd, yv, wts, codes, zidx, n_groups, new, start, pos, fold_anyway,
                                                 traces, te, bar)
        finally:
            if bar is not None:
                bar.close()
        return traces

    def _trace_row(self, st, n_rows, new=None):
        L = self._user_lam(st, new)
        return [n_rows] + self._user_beta(st.beta, new).tolist() + (L @ L.T).ravel().tolist()

    def _progress(self, new, st, corrected):
        L = self._user_lam(st, new)
        names = new.get("re_names_", getattr(self, "re_names_", None))
        return {"n_rows": int(st.ic[0]),
                "fixed_effects": pd.Series(self._user_beta(st.beta, new), index=new.get("feature_names_", getattr(
                    self, "feature_names_", None)), name="fixed_effects"),
                "cov_re": pd.DataFrame(L @ L.T, index=names, columns=names), "corrected": bool(corrected)}

    def _segment(self, stg, Xd, yv, wts, codes, zidx, n_groups, new, start, pos, fold_anyway, traces, te, bar):
        """Rows up to the next correction (or a full buffer); returns the new position and fold flag."""
        st = stg.state
        n = Xd.shape[0]
        due = max(self._next_correction(int(st.ic[1]), n_groups) - start, pos + 1)
        stop = min(due, n)
        scheduled = due <= n or (self.refit_every == "auto"
                                 and end_of_batch_due(start + n - int(st.ic[1]), n_groups, start + n))
        # no fold before the first correction: a fold linearises at the current beta
        first = st.ic[2] == 0 and not fold_anyway
        w = wts if wts.shape[0] == 0 else wts[pos:stop]
        k = _k.add_rows(Xd[pos:stop], yv[pos:stop], w, codes[pos:stop], zidx, st.beta, st.lam(), st.Xbuf, st.ybuf,
                        st.wbuf, st.nbuf, st.gn, st.glast, st.Af, st.af, st.Bf, st.Df, st.cf, st.kf, st.u,
                        st.poly, st.bref, st.xbar, st.polyx, st.gfold, start + pos, first, float(st.fg[0]),
                        float(st.fg[1]))
        st.ic[0] = start + pos + k
        full = k < stop - pos
        lo, hi = start + pos, start + pos + k
        if te:  # estimates are held between corrections: rows at the multiples before it
            row = self._trace_row(st, 0, new)
            traces.extend([[m] + row[1:] for m in range((lo // te + 1) * te, hi, te)])
        corrected = False
        if full:
            # a buffer is full: correct now (if the rows cannot be fitted yet, fold anyway)
            corrected = self._correct(stg, zidx)
            fold_anyway = not corrected
        elif scheduled:
            corrected = self._correct(stg, zidx)
        if te and hi % te == 0 and hi > lo:
            traces.append(self._trace_row(st, hi, new))
        if bar is not None:
            bar.update(k)
        pos += k
        if self.callback is not None and (corrected or pos == n):
            self.callback(self._progress(new, st, corrected))
        return pos, fold_anyway

    def _correct(self, stg, zidx):
        """The Laplace fit of all rows seen from the stored statistics (if it can be fitted yet)."""
        st = stg.state
        st.ic[1] = st.ic[0]
        seen = st.glast >= 0
        if seen.sum() < 2 or st.ic[0] <= st.p + st.theta.size:
            return False
        stg.privatize()  # every group's mode is rewritten
        st.rebase()  # (forgetting) the stored weights at their current scale
        p = st.p
        rows, cols = theta_positions(st.q)
        bounds = [(None, None)] * p + [(0.0 if r == c else None, None) for r, c in zip(rows, cols)]
        x0 = np.concatenate([st.beta, st.theta])
        u = st.u.copy()

        lower = np.array([-np.inf if b[0] is None else b[0] for b in bounds])

        def fun(x):
            f0 = st.deviance(x[:p], x[p:], zidx, u)
            if not np.isfinite(f0):
                return 1e300, np.zeros_like(x)
            return f0, fd_gradient(lambda v: st.deviance(v[:p], v[p:], zidx, u), x, 1e-5, lower, f0=f0)

        # Newton with the last curvature, unless a variance sat on its bound then (it may leave it)
        reuse = st.hess.shape == (x0.size, x0.size) and np.diag(st.hess * st.ic[0]).max() < 1e299
        # (kept per row seen: the curvature grows with the rows)
        x = _newton(fun, x0, st.hess * st.ic[0], lower) if reuse else None
        if x is None:
            # no curvature yet, or Newton could not proceed (a variance leaving its bound):
            # L-BFGS-B, then the curvature for the next corrections
            res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-5, "maxls": 50})
            if not res.fun < 1e300:
                return False
            x = res.x
            inside = np.flatnonzero(~(np.isfinite(lower) & (x < 1e-3)))
            st.hess = _fd_hessian(lambda v: st.deviance(v[:p], v[p:], zidx, u), x, inside) / st.ic[0]
            if not np.isfinite(st.hess).all():
                st.hess = np.empty((0, 0))
        # a singular start or result, or a diverged start (a separated earlier batch: beyond 10 logits
        # per unit-spread column, or a random-effect scale beyond 10), may leave steps on a poor branch
        if _singular(x0, lower) or _singular(x, lower) or np.abs(x0).max() > 10:
            x = _cold_restart(st, zidx, x, bounds, lower)
        st.beta[:] = x[:p]
        st.theta[:] = x[p:]
        st.deviance(st.beta, st.theta, zidx, st.u)  # the modes at the new estimates
        st.ic[2] += 1
        return True


def _warn_separation(st, Xd, levels, names, factor_name, icpt):
    """SeparationWarning naming the columns whose coefficients diverge (``|beta_j| sd_j > 15`` logits
    over the batch's spread of column j) and, when the random-effect SD diverges (above 10), the groups
    whose logit at x = 0 is beyond 5 (their rows of one class), as the batch GLMM does.
    Cost O(groups): run only after a correction (budgeted)."""
    from .logistic import SeparationWarning

    beta = st.beta
    if not np.all(np.isfinite(beta)) or not np.all(np.isfinite(st.theta)):
        raise ValueError("the stream's estimates became non-finite (overflow); the rows consumed before this "
                         "batch are kept")
    spread = Xd.std(axis=0) if Xd.shape[0] > 1 else np.zeros(Xd.shape[1])
    big = np.abs(beta) * spread > 15
    if icpt:
        big[0] = False
    if big.any():
        warnings.warn(f"fixed effects {[names[j] for j in np.flatnonzero(big)]} diverge: the data are "
                      "(quasi-)separated by them; estimates and standard errors of these coefficients are not "
                      "meaningful", SeparationWarning, stacklevel=4)
    L = st.lam()
    sd = float(np.sqrt(np.max(np.diag(L @ L.T)))) if L.size else 0.0
    if sd > 10:
        n = len(levels)
        b = st.u[:n] @ L.T
        if icpt:  # the group's logit at x = 0 (the intercept may absorb half of them)
            b[:, 0] += beta[0]
        # with the SD diverging, groups whose logit is beyond 5 (p < 0.007 or > 0.993) are the separated ones
        bad = np.flatnonzero(np.max(np.abs(b), axis=1) > 5)
        if bad.size:
            labels = [str(v) for v in np.asarray(levels.levels)[bad[:5]]]
            more = "" if bad.size <= 5 else f" and {bad.size - 5} more"
            warnings.warn(f"grouping factor {factor_name!r}: random-effect SD {sd:.3g} on the logit scale diverges; "
                          f"{bad.size} of {n} groups have logits beyond 5 (separation by "
                          f"groups: their rows are of one class), e.g. {labels}{more}", SeparationWarning,
                          stacklevel=4)


def _singular(x, lower, tol=1e-3):
    """A standard deviation in ``x = (beta, theta)`` at (or within ``tol`` of) its zero bound."""
    return bool(np.any(np.isfinite(lower) & (x < tol)))


def _cold_restart(st, zidx, x, bounds, lower):
    """``x`` or, if lower, the deviance's minimum from a cold start (``beta = 0``, ``Lambda = I``).

    A singular fit of fewer rows (the first groups of a grouped stream, a covariate's early
    range) is a poor start: steps from it can stop at a boundary point (a variance at zero,
    where the deviance's derivative in that standard deviation vanishes) with a higher
    deviance than the interior optimum.  The cold run has its own conditional modes; when it
    wins the curvature is recomputed for the next correction's Newton steps.
    """
    p = st.p
    u = np.zeros_like(st.u)

    def dev(v):
        return st.deviance(v[:p], v[p:], zidx, u)

    def fun(v):
        f0 = dev(v)
        if not np.isfinite(f0):
            return 1e300, np.zeros_like(v)
        return f0, fd_gradient(dev, v, 1e-5, lower, f0=f0)

    # starts: the default one, and ``x`` off its bound with the correlations' signs flipped
    # (with a standard deviation at zero the sign of its column's correlations is arbitrary)
    flip = x.copy()
    rows, cols = theta_positions(st.q)
    diag = rows == cols
    at = diag & (x[p:] < 1e-3)
    flip[p:][at] = 0.5
    flip[p:][~diag] = -x[p:][~diag]
    best, fbest = x, dev(x) - 1e-6  # a tie keeps x (the choice must not depend on rounding)
    for start in (np.concatenate([np.zeros(p), st.new(p, st.q, 1, capacity=1).theta]), flip):
        res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-5, "maxls": 50})
        if res.fun < fbest:
            best, fbest = res.x, res.fun
    if best is x:
        return x
    x = best
    inside = np.flatnonzero(~(np.isfinite(lower) & (x < 1e-3)))
    st.hess = _fd_hessian(dev, x, inside) / st.ic[0]
    if not np.isfinite(st.hess).all():
        st.hess = np.empty((0, 0))
    return x


def _newton(fun, x0, H, lower, max_steps=8):
    """Newton steps with a fixed Hessian ``H`` (the last correction's) from ``x0``; None if it cannot proceed.

    Between corrections the deviance's curvature moves little, so each step costs one
    central-difference gradient.  Converged when the Newton decrement ``g'H^-1 g / 2`` is
    below 1e-6 (deviance units); a step that would cross a bound, an indefinite ``H`` or no
    convergence in ``max_steps`` returns None (the caller then runs L-BFGS-B).
    """
    try:
        c = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    x = np.array(x0, dtype=float)
    f0, g = fun(x)
    for _ in range(max_steps):
        if not np.all(np.isfinite(g)) or not f0 < 1e300:
            return None
        w = np.linalg.solve(c, g)
        dec = 0.5 * float(w @ w)
        step = -np.linalg.solve(c.T, w)
        if dec < 1e-6:
            return x + step if np.all(x + step >= lower) else x
        t = 1.0
        while True:
            cand = x + t * step
            if np.all(cand >= lower):
                fc, gc = fun(cand)
                if fc <= f0:
                    break
            t *= 0.5
            if t < 1e-3:
                return None
        x, f0, g = cand, fc, gc
    return None


def _fixed_se(H, idx, p, n_rows, last, T=None):
    """Standard errors of the fixed effects from the deviance's Hessian ``H`` over the free coordinates ``idx``.

    ``H`` that is not positive definite means the estimates are not at a minimum of the
    deviance of the rows seen (they are an earlier correction's, or the rows do not identify
    them): the errors are then NaN with a :class:`~skmixed.MixedConvergenceWarning`, never the
    zeros a clipped negative variance would give.
    """
    Hi = H[np.ix_(idx, idx)]
    se = np.full(p, np.nan)
    try:
        np.linalg.cholesky(Hi)
        ok = bool(np.isfinite(Hi).all())
    except np.linalg.LinAlgError:
        ok = False
    if ok:
        V = 2.0 * np.linalg.inv(Hi)[:p, :p]  # beta: the first p coordinates, never on a bound
        if T is not None:  # on the user's columns
            V = T @ V @ T.T
        se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    else:
        warnings.warn("StreamingMixedLogistic: the Laplace deviance of the rows seen has no minimum at the current "
                      "estimates (its Hessian is not positive definite): they are not the fit of all "
                      f"{n_rows} rows seen (the last correction was at row {last}), or those rows do not identify "
                      "them; fixed_effects_se_ is NaN", StreamOrderWarning, stacklevel=3)
    return se


def _make_origin(Xd, icpt, slopes):
    """``(shift, scale)`` of the design's columns for the internal coordinates (see
    ``StreamingMixedLogistic._user_beta``), from the first batch."""
    shift, scale = np.zeros(Xd.shape[1]), np.ones(Xd.shape[1])
    for j in range(icpt, Xd.shape[1]):
        x0 = Xd[0, j]
        if icpt and j not in slopes:
            shift[j] = x0
        rms = float(np.sqrt(np.mean((Xd[:, j] - x0) ** 2)))
        sc = rms if rms > 0 else abs(x0)
        scale[j] = sc if np.isfinite(sc) and sc > 0 else 1.0
    return shift, scale


def _internal(Xd, origin):
    """The design on the internal origin and scale (``origin`` None: models saved before it)."""
    if origin is None:
        return Xd
    return np.ascontiguousarray((Xd - origin[0]) / origin[1])


def _beta_map(p, origin, icpt):
    """``T`` with the user's coefficients ``= T @`` the internal ones."""
    if origin is None:
        return np.eye(p)
    shift, scale = origin
    T = np.diag(1.0 / scale)
    if icpt:
        T[0] -= shift @ T
    return T


def _fd_hessian(f, x0, idx):
    """Central-difference Hessian of ``f`` at ``x0`` over the coordinates ``idx`` (others: identity rows)."""
    H = np.eye(x0.size) * 1e300  # coordinates outside idx: held (their variance ~0)
    h = 1e-4 * np.maximum(1.0, np.abs(x0))
    H[np.ix_(idx, idx)] = central_hessian(f, x0, h[idx], idx=idx)
    return H
