"""What every skmixed estimator shares: input validation, grouping, random terms, formulas.

Estimators subclass :class:`MixedModelBase` (plus ``RegressorMixin`` or
``ClassifierMixin``), call :meth:`_prepare_fit` / :meth:`_prepare_predict`, and
only implement their solver wiring. Nothing in here touches estimator state
before the whole input has been validated.
"""

from __future__ import annotations

import numbers
import warnings
import weakref
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._design.formula import FormulaSpec, as_pandas
from ._design.grouping import GroupingFactor, make_factors
from ._design.terms import RandomTerm, default_terms
from ._design.theta import ThetaMap
from ._results import MixedFit

__all__ = ["MixedModelBase", "FitData", "PredictData", "NoGroupsWarning", "fit_inputs", "predict_inputs",
           "refit_rows", "adopt_fit", "offset_response", "on_index"]


#: the constructor parameters most estimators share, as scikit-learn's ``_parameter_constraints``
#: (estimators spread these into their own; ``_validate_params()`` checks them at the start of a fit)
SHARED_CONSTRAINTS = {
    "fit_intercept": ["boolean"],
    "random_slopes": ["array-like", str, Integral, None],
    "group_column": ["array-like", str, Integral, None],
    "formula": [str, FormulaSpec, None],
}
#: a positive iteration count
POSITIVE_INT = Interval(Integral, 1, None, closed="left")
#: MixedLogisticRegressor's and MixedPoissonRegressor's parameters
GLMM_CONSTRAINTS = {
    **SHARED_CONSTRAINTS,
    "random_only": ["array-like", str, Integral, None],
    "nagq": [Interval(Integral, 0, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="neither")],
    "max_iter": [POSITIVE_INT],
}


class NoGroupsWarning(UserWarning):
    """Raised when ``fit`` gets no grouping: only the fixed-effects part is fitted."""


@dataclass
class FitData:
    """Validated fit inputs. ``X`` holds the kept (non-aliased) columns of the full
    design (intercept first); ``keep`` indexes them in the full design."""

    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    feature_names: list
    factors: list
    terms: list
    keep: np.ndarray = None
    n_design: int = 0  # columns of the full design (before dropping aliased ones)
    xtwx: np.ndarray = None  # X'WX of the kept columns (from the rank check)
    offset: np.ndarray = None  # a formula's offset() terms, summed (None without)
    # the whole data's number of observations when the rows are elsewhere (a distributed fit's
    # driver holds a row-free FitData); None: counted from X / weights
    n_obs_total: float = None
    # random-only columns (lme4's (0 + x | g) without a fixed x): in Z, not in X. A term's
    # slope index s points into z_source = [X | Z_extra]: X's column s < p, else Z_extra's s - p
    Z_extra: np.ndarray = None
    extra_names: tuple = ()

    @property
    def n_obs(self) -> float:
        if self.n_obs_total is not None:
            return float(self.n_obs_total)
        return float(self.X.shape[0] if self.weights is None else self.weights.sum())

    @property
    def z_source(self) -> np.ndarray:
        """The matrix the random-effects columns are read from: ``[X | Z_extra]``."""
        return _z_source(self.X, self.Z_extra)


@dataclass
class PredictData:
    X: np.ndarray
    codes: list
    offset: np.ndarray = None  # a formula model's offset() terms on the new data
    Z_extra: np.ndarray = None  # random-only columns (see FitData)

    @property
    def z_source(self) -> np.ndarray:
        """``[X | Z_extra]``: what the random-effects blocks read their columns from."""
        return _z_source(self.X, self.Z_extra)


def _z_source(X, Z_extra):
    if Z_extra is None or Z_extra.shape[1] == 0:
        return X
    return np.ascontiguousarray(np.hstack([X, Z_extra]))


def _reduce_columns(fd: FitData) -> FitData:
    """Drop aliased fixed-effects columns (with a warning), as lme4 does (pivoted QR, relative 1e-7)."""
    from ._solvers.lmm import aliased_keep, rows_factor

    p = fd.X.shape[1]
    R = rows_factor(fd.X, fd.weights) if p else np.zeros((0, 0))
    xtwx = R.T @ R
    keep = aliased_keep(R) if p else np.arange(0)
    extra = dict(Z_extra=fd.Z_extra, extra_names=fd.extra_names)
    if keep.size == p:
        return FitData(np.ascontiguousarray(fd.X), fd.y, fd.weights, fd.feature_names, fd.factors, fd.terms,
                       np.arange(p), p, xtwx, **extra)
    dropped = [fd.feature_names[k] for k in range(p) if k not in set(keep.tolist())]
    warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s): "
                  f"{dropped}", UserWarning, stacklevel=4)
    remap = {int(old): new for new, old in enumerate(keep)}
    remap.update({p + k: keep.size + k for k in range(len(fd.extra_names))})  # random-only columns
    terms = []
    for t in fd.terms:
        lost = [fd.feature_names[s] for s in t.slopes if s not in remap]
        if lost:
            raise ValueError(f"random slope column(s) {lost} are aliased with other fixed-effect columns")
        terms.append(RandomTerm(t.factor, t.intercept, tuple(remap[s] for s in t.slopes), t.names))
    return FitData(np.ascontiguousarray(fd.X[:, keep]), fd.y, fd.weights,
                   [fd.feature_names[k] for k in keep], fd.factors, terms, keep, p, xtwx[np.ix_(keep, keep)],
                   **extra)


def _finite_or_raise(a: np.ndarray, what: str):
    if not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "infinite values"
        raise ValueError(f"{what} contains {bad}")


def checked_sample_weight(sample_weight, rows) -> np.ndarray:
    """``sample_weight`` as float64 for ``rows``: one per row, non-negative, finite, one positive entry."""
    w = _check_sample_weight(sample_weight, rows, dtype=np.float64, ensure_non_negative=True)
    _finite_or_raise(w, "sample_weight")
    if not (w > 0).any():
        raise ValueError("sample_weight has no positive entry")
    return w


# per estimator, the parameter objects last validated (a weak map, so the estimator's own
# state -- and its pickle -- is untouched by validation)
_VALIDATED = weakref.WeakKeyDictionary()


class MixedModelBase(BaseEstimator):
    """Base class: shared parameters ``fit_intercept``, ``random_slopes``, ``group_column``.

    Subclasses define ``__init__`` listing these explicitly (scikit-learn reads
    parameters from the signature) and store them untouched.
    """

    # fitted state of a formula model (the FormulaSpec read from the training data), None otherwise
    _formula = None

    def _validate_params(self):
        """scikit-learn's declarative check, skipped when no parameter object changed since the last one.

        The check reads the parameters through ``get_params`` (``inspect.signature``), ~100 us a
        call: for a stream of small ``partial_fit`` chunks that was most of each call's cost.
        Parameters are compared by identity, so ``set_params`` (or any reassignment) triggers
        a new check.
        """
        snap = tuple(self.__dict__.get(k, _VALIDATED) for k in self._parameter_constraints)
        old = _VALIDATED.get(self)
        if old is not None and len(old) == len(snap) and all(a is b for a, b in zip(old, snap)):
            return
        super()._validate_params()
        _VALIDATED[self] = snap
    # whether fit takes an offset (a formula's offset() terms go there)
    _fits_offset = False
    # whether fit reads random-only columns (random slopes without a fixed effect; FitData.Z_extra)
    _random_only_ok = False
    # positions in X (after group_column) of an array fit's random_only columns
    _ro_pos = ()

    # groups are requested by default wherever they are accepted: with metadata routing on,
    # cross_validate(est, X, y, params={"groups": g}) and pipelines need no set_*_request call
    # (an explicit set_fit_request(groups=False) still overrides)
    __metadata_request__fit = {"groups": True}
    __metadata_request__partial_fit = {"groups": True}
    __metadata_request__predict = {"groups": True}
    __metadata_request__predict_proba = {"groups": True}
    __metadata_request__decision_function = {"groups": True}
    __metadata_request__score = {"groups": True}

    def formula_spec(self):
        """The fitted :class:`~skmixed._design.formula.FormulaSpec` (None for array fits).

        It reads new data exactly as the training data were read; giving it as the
        ``formula`` of another estimator fits that one with the same coding.
        """
        return self._formula

    @property
    def mixed_fit_(self) -> MixedFit:
        """The fitted model as one results object (:class:`~skmixed._results.MixedFit`): random-effects
        blocks, their conditional modes, the kept fixed columns and the solver's state for inference.

        What inference, SplitSampleMixed and other wrappers read instead of private attributes.
        """
        check_is_fitted(self)
        blocks = list(getattr(self, "_re_blocks", []))
        state, kind = getattr(self, "_lmm_state", None), "lmm"
        if state is None:
            state = getattr(self, "_glmm_state", None)
            kind = "glmm" if state is not None else None
        return MixedFit(blocks, list(getattr(self, "_re_values", [])) if blocks else [], getattr(self, "_keep", None),
                        getattr(self, "_re_patterns", {}), state, kind, getattr(self, "_family", None))

    def _refit_response(self, fd: FitData):
        """Refit on ``fd`` (the training rows with a new response), keeping the model's structure
        (the parametric bootstrap); estimators that support it override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot be refitted on a new response")

    def _pandas_output(self, X, values):
        """A formula model's per-row output for a pandas DataFrame: a Series on the frame's index
        (what statsmodels' formula models return, so results align with the data); any other
        input or model keeps scikit-learn's ndarray."""
        return on_index(values, X) if self._formula is not None else values

    def _check_params(self):
        """Validate the constructor parameters (estimators with more checks extend this)."""
        self._validate_params()

    def _has_intercept(self) -> bool:
        """Whether the fixed design has an intercept: the formula's say, else ``fit_intercept``."""
        if self._formula is not None:
            return bool(self._formula.intercept)
        return bool(self.fit_intercept)

    # ----------------------------------------------------------------- formulas
    def _check_formula_params(self):
        f = self.formula
        if not isinstance(f, (str, FormulaSpec)):
            raise TypeError(f"formula must be a string such as \"y ~ x + (1 | g)\", got {type(f).__name__}")
        if getattr(self, "group_column", None) is not None:
            raise ValueError("formula and group_column both given: the formula names the grouping columns "
                             "((1 | g)); drop group_column")
        if getattr(self, "random_slopes", None) is not None:
            raise ValueError("formula and random_slopes both given: the formula's bar terms ((1 + x | g)) "
                             "define the random slopes; drop random_slopes")
        if getattr(self, "random_only", None) is not None:
            raise ValueError("formula and random_only both given: a bar term's columns that are not in the "
                             "fixed part ((0 + x | g)) are random-only already; drop random_only")

    def _formula_inputs(self, X, y, groups, sample_weight, reset):
        """With a formula: the fixed design, response, groups and weights it reads from the data frame X.

        ``reset`` (a fit): the formula is read afresh (a string) or taken as given (a
        :class:`FormulaSpec`); otherwise (later ``partial_fit`` batches) the fitted spec
        is used. Without a formula the inputs pass through, and a fit forgets any formula
        state of an earlier fit.
        """
        if reset:
            self._formula = None
            if getattr(self, "formula", None) is None:
                return X, y, groups, sample_weight
            self._check_formula_params()
            if isinstance(self.formula, FormulaSpec):
                spec = self.formula
                Xf, gframe = spec.rows(X, need_groups=True)
            else:
                spec, Xf, gframe = FormulaSpec.build(self._formula_source(), X)
        else:
            spec = self._formula
            if spec is None:
                return X, y, groups, sample_weight
            Xf, gframe = spec.rows(X, need_groups=True)
        if spec.parsed.offsets and not self._fits_offset:
            raise ValueError(f"{type(self).__name__} does not fit offset() terms (formula {spec.formula!r}); "
                             "remove the offset (MixedLinearRegressor, MixedLogisticRegressor, "
                             "MixedPoissonRegressor, StreamingMixed and the gaussian AdditiveMixedRegressor "
                             "take one)")
        trials = None
        if y is None:
            y, trials = spec.target(X)
        elif spec.parsed.cbind is not None:
            raise ValueError("the formula's response is cbind(successes, failures): do not pass y as well")
        groups = _reconcile_groups(gframe, groups, spec, "fit")
        self._formula = spec
        if trials is not None:
            return self._binomial_trials(Xf, y, groups, sample_weight, trials)
        return Xf, y, groups, sample_weight

    @staticmethod
    def _offset_response(fd: FitData) -> FitData:
        return offset_response(fd)

    def _formula_source(self) -> str:
        """The lme4 formula to read (estimators with their own syntax, e.g. mgcv smooths, translate)."""
        return self.formula


    def _binomial_trials(self, X, y, groups, sample_weight, trials):
        raise ValueError(f"cbind(successes, failures) is a binomial response: {type(self).__name__} does not "
                         "fit binomial counts (use MixedLogisticRegressor)")

    # ----------------------------------------------------------------- group columns
    def _split_group_columns(self, X):
        """Separate ``group_column`` labels from X; returns (X_rest, groups or None).

        Positions may be negative (``-1``: the last column); names may also be given
        without a ColumnTransformer prefix (``"g"`` finds ``"remainder__g"``) when that
        is unambiguous. The label columns never enter the fixed design.
        """
        gc = self.group_column
        if gc is None:
            return X, None
        cols = [gc] if isinstance(gc, (str, numbers.Integral)) else list(gc)
        if not cols:
            raise ValueError("group_column is an empty list")
        for c in cols:
            if isinstance(c, bool) or not isinstance(c, (str, numbers.Integral)):
                raise ValueError(f"group_column entries are column names or positions, got {c!r}")
        if not isinstance(X, pd.DataFrame) and not isinstance(X, np.ndarray) and _is_dataframe(X):
            X = as_pandas(X, "X")
        if isinstance(X, pd.DataFrame):
            names = [_resolve_group_name(X.columns, c) for c in cols]
            if len(set(names)) != len(names):
                raise ValueError(f"group_column lists a column twice: {cols}")
            return X.drop(columns=names), X[names]
        arr = np.asarray(X, dtype=object) if not hasattr(X, "shape") else np.asarray(X)
        if arr.ndim != 2:
            raise ValueError("X must be 2-D")
        if not all(isinstance(c, numbers.Integral) for c in cols):
            raise ValueError("group_column must be integer positions when X is not a DataFrame "
                             f"(got {cols})")
        p = arr.shape[1]
        bad = [c for c in cols if not -p <= c < p]
        if bad:
            raise ValueError(f"group_column {bad} out of range for X with {p} columns")
        pos = [int(c) % p for c in cols]
        if len(set(pos)) != len(pos):
            raise ValueError(f"group_column lists a column twice: {cols}")
        keep = [k for k in range(p) if k not in pos]
        return arr[:, keep], pd.DataFrame(arr[:, pos], columns=[f"group{c}" for c in pos])

    def _check_x(self, X, reset):
        """validate_data on X; with group_column the full X sets n_features_in_."""
        if self.group_column is None:
            # intercept-only models have no X columns; allowed through from_formula
            # (scikit-learn's convention is that plain arrays need a feature)
            empty_ok = self._formula is not None
            if empty_ok and isinstance(X, pd.DataFrame) and X.shape[1] == 0:
                X = np.empty((X.shape[0], 0))
            return validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False,
                                 ensure_min_samples=1, ensure_min_features=0 if empty_ok else 1)
        _check_n_features(self, X, reset=reset)
        _check_feature_names(self, X, reset=reset)
        Xr, _ = self._split_group_columns(X)
        return check_array(Xr, dtype=np.float64, ensure_all_finite=False, ensure_min_features=0)

    # ----------------------------------------------------------------- random-only columns
    def _random_only_columns(self, data, Xv, reset):
        """Split off the random-only columns: ``(X for the fixed part, Z_extra or None, names)``.

        A formula's bar terms may name columns that are not fixed effects (lme4's
        ``(0 + x | g)`` with no fixed ``x``); formulaic reads them from the data. An
        array fit lists such columns of X in a ``random_only`` parameter (estimators
        that have one); they must also be in ``random_slopes``.
        """
        if self._formula is not None:
            if reset:
                self.__dict__.pop("_ro_pos", None)
            extra = self._formula.random_only(data)
            if extra is None:
                return Xv, None, ()
            return Xv, np.ascontiguousarray(extra.to_numpy(dtype=np.float64)), tuple(extra.columns)
        if reset:  # an estimate of the fit (which columns are random-only); not kept when there are none
            pos = self._resolve_random_only(Xv.shape[1])
            if pos:
                self._ro_pos = pos
            else:
                self.__dict__.pop("_ro_pos", None)
        pos = list(self._ro_pos)
        if not pos:
            return Xv, None, ()
        names = self._input_names_after_groups(Xv.shape[1])
        keep = [k for k in range(Xv.shape[1]) if k not in set(pos)]
        return (np.ascontiguousarray(Xv[:, keep]), np.ascontiguousarray(Xv[:, pos]),
                tuple(names[k] for k in pos))

    def _input_names_after_groups(self, p_in):
        names = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        if names is None:
            return [f"x{k}" for k in range(p_in)]
        if self.group_column is not None:
            gc = self.group_column
            cols = [gc] if isinstance(gc, (str, numbers.Integral)) else list(gc)
            drop = {str(_resolve_group_name(names, c)) for c in cols}
            names = [c for c in names if str(c) not in drop]
        return [str(c) for c in names]

    def _resolve_random_only(self, p_in) -> tuple:
        ro = getattr(self, "random_only", None)
        if ro is None:
            return ()
        ro = [ro] if isinstance(ro, (str, numbers.Integral)) else list(ro)
        names = self._input_names_after_groups(p_in)
        pos = []
        for c in ro:
            if isinstance(c, str) and c in names:
                pos.append(names.index(c))
            elif isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < p_in:
                pos.append(int(c))
            else:
                raise ValueError(f"random_only entry {c!r} is not a column name or index of X (columns: {names})")
        if len(set(pos)) != len(pos):
            raise ValueError(f"random_only lists a column twice: {ro}")
        return tuple(pos)

    def _split_random_only(self, Xv):
        """Predict-time counterpart of :meth:`_random_only_columns` for array fits."""
        pos = list(self._ro_pos)
        if not pos:
            return Xv, None
        keep = [k for k in range(Xv.shape[1]) if k not in set(pos)]
        return np.ascontiguousarray(Xv[:, keep]), np.ascontiguousarray(Xv[:, pos])

    # ----------------------------------------------------------------- slopes and terms
    def _slope_indices(self, names_in, p_offset, rs=None):
        """Resolve ``random_slopes`` (or ``rs``: names or positions in X) to design columns."""
        rs = self.random_slopes if rs is None else rs
        if rs is None:
            return (), ()
        rs = [rs] if isinstance(rs, (str, numbers.Integral)) else list(rs)
        idx = []
        for s in rs:
            if isinstance(s, str) and s in names_in:
                idx.append(names_in.index(s))
            elif isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s < len(names_in):
                idx.append(int(s))
            else:
                raise ValueError(f"random slope {s!r} is not a column name or index of X "
                                 f"(columns: {names_in})")
        return tuple(i + p_offset for i in idx), tuple(names_in[i] for i in idx)

    # ----------------------------------------------------------------- fit inputs
    def _prepare_fit(self, X, y, groups=None, sample_weight=None, *, chunk=False, reset=True) -> FitData:
        """Validate everything and build the fixed design, factors and random terms.

        ``chunk=True`` (``partial_fit``, distributed fits): one chunk of a larger
        data set — a factor may have a single level, the full design is kept
        (aliased columns are judged on the totals) and the parameter count is not
        checked against the chunk's rows. ``reset=False`` checks X against the
        already-set ``n_features_in_`` / ``feature_names_in_``.
        """
        data = X = _frame_as_pandas(X)
        X, y, groups, sample_weight = self._formula_inputs(X, y, groups, sample_weight, reset)
        f_offset = self._formula.offset(data) if self._formula is not None else None
        groups = _check_groups_arg(groups)
        if self.group_column is not None:
            if groups is not None:
                raise ValueError("groups given while group_column is set: give the labels one way (drop "
                                 "groups=, or set group_column=None)")
            _, groups = self._split_group_columns(X)
        Xv = self._check_x(X, reset=reset)
        n, p_in = Xv.shape
        Xv, Z_extra, extra_names = self._random_only_columns(data, Xv, reset)
        if Z_extra is not None and (chunk or not self._random_only_ok):
            how = "in chunks (partial_fit, distributed fits)" if chunk else f"with {type(self).__name__}"
            raise ValueError(f"random-only column(s) {list(extra_names)} (random slopes without a fixed effect, "
                             f"lme4's (0 + x | g)) cannot be fitted {how} yet: add them to the fixed part, or "
                             "use MixedLinearRegressor / MixedLogisticRegressor / MixedPoissonRegressor .fit")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y_arr = self._validate_y(y, n)
        _finite_or_raise(Xv, "X")
        w = None if sample_weight is None else checked_sample_weight(sample_weight, Xv)
        names_in = self._input_names_after_groups(p_in)
        if self._formula is None and Z_extra is not None:  # random_only columns of an array fit
            names_in = [nm for k, nm in enumerate(names_in) if k not in set(self._ro_pos)]
        icpt = self._has_intercept()
        Xd = self._design(Xv)
        feature_names = (["(Intercept)"] if icpt else []) + names_in

        if groups is None:
            warnings.warn(f"{type(self).__name__}.fit got no groups (and no group_column): fitting the "
                          "fixed-effects part only", NoGroupsWarning, stacklevel=3)
            factors, terms = [], []
        else:
            factors = self._make_factors(groups, n, min_levels=1 if chunk else 2)
            terms = self._make_terms(factors, names_in, icpt, extra_names)
        if Z_extra is not None:
            _finite_or_raise(Z_extra, "the random-only columns")
            used = {s for t in terms for s in t.slopes}
            unused = [nm for k, nm in enumerate(extra_names) if Xd.shape[1] + k not in used]
            if unused:  # an array fit's random_only column without a random slope
                raise ValueError(f"random_only column(s) {unused} have no random slope: list them in "
                                 "random_slopes too (a column in neither part would be ignored)")
        if chunk:
            p = Xd.shape[1]
            return FitData(Xd, y_arr, w, feature_names, factors, terms, np.arange(p), p, offset=f_offset)
        fd = _reduce_columns(FitData(Xd, y_arr, w, feature_names, factors, terms, Z_extra=Z_extra,
                                     extra_names=tuple(extra_names)))
        fd.offset = f_offset
        n_par = fd.X.shape[1] + sum(t.q * (t.q + 1) // 2 for t in terms) + (1 if terms else 0)
        n_eff = n if w is None else float(w.sum())
        if n_eff < n_par:
            raise ValueError(f"n_samples={n} is too few for the model's {n_par} parameters")
        return fd

    @staticmethod
    def _check_y_shape(y, n):
        """y as a 1-D array of n entries (a column vector is accepted with a warning)."""
        y_arr = np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            y_arr = column_or_1d(y_arr, warn=True)
        if y_arr.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y_arr.shape}")
        if y_arr.shape[0] != n:
            raise ValueError(f"X has {n} rows but y has {y_arr.shape[0]}")
        return y_arr

    def _validate_y(self, y, n):
        y_arr = self._check_y_shape(y, n)
        try:
            y_arr = y_arr.astype(np.float64, copy=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"y must be numeric: {e}") from None
        _finite_or_raise(y_arr, "y")
        return y_arr

    def _make_factors(self, groups, n, min_levels=2) -> list:
        names = None
        if self._formula is not None:
            names = list(self._formula.factor_names)
        if isinstance(groups, (pd.DataFrame, pd.Series)) or np.ndim(groups) != 1:
            factors = make_factors(groups, names=names)
        else:
            factors = make_factors(np.asarray(groups), names=names)
        for f in factors:
            if f.codes.shape[0] != n:
                raise ValueError(f"X has {n} rows but groups has {f.codes.shape[0]}")
            if f.n_levels < min_levels:
                raise ValueError(f"grouping factor {f.name!r} has only one level; a random effect needs at least 2")
        return factors

    def _make_terms(self, factors, names_in, icpt, extra_names=()) -> list:
        if self._formula is not None:
            return self._formula_terms(factors, names_in, icpt, extra_names)
        names_all = list(names_in) + list(extra_names)  # random-only columns follow the fixed ones
        rs = self.random_slopes
        if extra_names and rs is not None:
            # positions in random_slopes refer to X as given (random_only columns included)
            orig = self._input_names_after_groups(len(names_all))
            rs = [rs] if isinstance(rs, (str, numbers.Integral)) else list(rs)
            rs = [orig[s] if isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s < len(orig)
                  else s for s in rs]
        slopes, slope_names = self._slope_indices(names_all, int(icpt), rs)
        return default_terms(len(factors), slopes, slope_names)

    def _formula_terms(self, factors, names_in, icpt, extra_names=()):
        fnames = [f.name for f in factors]
        terms = []
        for spec in self._formula.random:
            fi = fnames.index(spec.factor)
            idx = []
            for c in spec.columns:
                if c in names_in:
                    idx.append(names_in.index(c) + int(icpt))
                elif c in extra_names:  # a random-only column: read from Z_extra (after X's columns)
                    idx.append(len(names_in) + int(icpt) + list(extra_names).index(c))
                else:
                    raise ValueError(f"random slope {c!r} is neither a fixed-effect column nor a column the "
                                     "random-effects term defines")
            names = (["(Intercept)"] if spec.intercept else []) + list(spec.columns)
            if spec.correlated or len(names) == 1:
                terms.append(RandomTerm(fi, spec.intercept, tuple(idx), tuple(names)))
            else:
                if spec.intercept:
                    terms.append(RandomTerm(fi, True, (), ("(Intercept)",)))
                terms.extend(RandomTerm(fi, False, (i,), (c,)) for i, c in zip(idx, spec.columns))
        return terms

    # ----------------------------------------------------------------- predict inputs
    def _prepare_predict(self, X, groups=None) -> PredictData:
        check_is_fitted(self)
        X = _frame_as_pandas(X)
        if self._formula is not None and isinstance(X, pd.DataFrame):
            return self._prepare_predict_formula(X, groups)
        groups = _check_groups_arg(groups)
        if self.group_column is not None:
            if groups is not None:
                raise ValueError("groups given while group_column is set: give the labels one way (drop "
                                 "groups=, or set group_column=None)")
            _, groups = self._split_group_columns(X)
        Xv = self._check_x(X, reset=False)
        _finite_or_raise(Xv, "X")
        n = Xv.shape[0]
        Xv, Z_extra = self._split_random_only(Xv)
        return PredictData(self._design(Xv)[:, self._keep], self._encode_groups(groups, n), Z_extra=Z_extra)

    def _design(self, Xv):
        """The fixed-effects design: an intercept column first (when fitted), then X's columns."""
        icpt = self._has_intercept()
        Xd = np.empty((Xv.shape[0], Xv.shape[1] + icpt))
        if icpt:
            Xd[:, 0] = 1.0
        Xd[:, icpt:] = Xv
        return Xd

    def _encode_groups(self, groups, n):
        factors = getattr(self, "factors_", [])
        if groups is not None and not isinstance(groups, (pd.DataFrame, pd.Series)) and np.ndim(groups) == 0:
            raise ValueError(f"groups must hold one label per row, got the scalar {groups!r}")
        if groups is None or not factors:
            return [np.full(n, -1, dtype=np.int64) for _ in factors]
        if isinstance(groups, pd.DataFrame):
            cols = [groups.iloc[:, k] for k in range(groups.shape[1])]
        elif isinstance(groups, pd.Series):
            cols = [groups]
        else:
            arr = np.asarray(groups, dtype=object) if not isinstance(groups, np.ndarray) else groups
            cols = [arr] if arr.ndim == 1 else [arr[:, k] for k in range(arr.shape[1])]
        if len(cols) != len(factors):
            raise ValueError(f"groups has {len(cols)} columns; the model was fitted with {len(factors)} "
                             "grouping factors")
        out = []
        for f, c in zip(factors, cols):
            codes = f.encode(c)
            if codes.shape[0] != n:
                raise ValueError(f"X has {n} rows but groups has {codes.shape[0]}")
            out.append(codes)
        return out

    # ----------------------------------------------------------------- formulas
    @classmethod
    def from_formula(cls, formula: str, data, sample_weight=None, **params):
        """Fit from an lme4-style formula: ``cls(formula=formula, **params).fit(data)``.

        ``"y ~ x + b + (1 + x | g)"``: the fixed part goes to formulaic; bar terms
        ``(expr | g)``, ``(expr || g)``, ``(1 | a/b)``, ``(1 | a:b)`` define the random
        effects. See the ``formula`` parameter for what a formula may contain. The
        returned estimator's ``predict(data)`` takes a DataFrame with the formula's
        columns (grouping columns included).

        Parameters
        ----------
        formula : str
        data : DataFrame (pandas, polars, pyarrow, ...)
        sample_weight : array-like, optional
        **params
            Other constructor parameters of the estimator.

        Returns
        -------
        estimator
            The fitted estimator.
        """
        return cls(formula=formula, **params).fit(data, sample_weight=sample_weight)

    def _formula_rows(self, data):
        """``data`` under the fitted formula: the fixed design (no intercept column) and the
        grouping columns (``None`` when ``data`` lacks them)."""
        return self._formula.rows(data)

    def _prepare_predict_formula(self, data, groups):
        Xf, gframe = self._formula.rows(data)
        Xv = self._check_x(Xf, reset=False)
        _finite_or_raise(Xv, "X")
        n = Xv.shape[0]
        Xd = self._design(Xv)[:, self._keep]
        groups = _reconcile_groups(gframe, _check_groups_arg(groups), self._formula, "predict")
        extra = self._formula.random_only(data)
        Z_extra = None
        if extra is not None:
            Z_extra = np.ascontiguousarray(extra.to_numpy(dtype=np.float64))
            _finite_or_raise(Z_extra, "the random-only columns")
        # no grouping columns: the population prediction
        return PredictData(Xd, self._encode_groups(groups, n), self._formula.offset(data), Z_extra)

    # ----------------------------------------------------------------- shared results helpers
    def _set_factor_attrs(self, fd: FitData):
        """Keep what prediction needs: level maps (not the training codes) and kept columns."""
        self.factors_ = [GroupingFactor(f.name, np.empty(0, dtype=np.int64), f.levels) for f in fd.factors]
        self.feature_names_ = list(fd.feature_names)
        self._keep = np.asarray(fd.keep)
        if self._formula is not None:
            self.formula_ = self.formula if isinstance(self.formula, str) else self._formula.formula
        else:
            self.__dict__.pop("formula_", None)

    def _sklearn_coefs(self, fd: FitData, beta):
        """(intercept_, coef_) over the input columns; aliased columns get 0."""
        full = np.zeros(fd.n_design)
        full[fd.keep] = beta
        icpt = self._has_intercept()
        return (float(full[0]) if icpt else 0.0), full[int(icpt):]

    def _random_part(self, Xd, codes):
        """Sum over random-effect blocks of ``z_row . b[code]`` (0 for code -1)."""
        return MixedFit(getattr(self, "_re_blocks", []), getattr(self, "_re_values", [])).random_part(Xd, codes)

    def _store_random_effects(self, fd: FitData, blocks, b_values, condvars, covs, theta, theta_internal=None):
        """Set ``random_effects_``, ``random_effects_sd_``, ``cov_re_``, ``theta_``, ``is_singular_``.

        ``blocks`` are the amalgamated ReBlocks (one per factor, solver order),
        ``b_values[k]`` the (J, q) random effects, ``condvars[k]`` their (J, q, q)
        conditional covariances, ``covs[k]`` the (q, q) covariance matrix. ``theta_internal``:
        theta on the optimiser's (unit-spread) columns, where singularity is judged (default ``theta``).
        """
        self._re_blocks = list(blocks)
        self._re_values = [np.asarray(b) for b in b_values]
        self.random_effects_, self.random_effects_sd_, self.cov_re_ = {}, {}, {}
        self._re_patterns = {}
        for blk, b, cv, cov in zip(blocks, b_values, condvars, covs):
            f = fd.factors[blk.factor]
            self.random_effects_[f.name] = pd.DataFrame(b, index=f.levels, columns=blk.names)
            sd = np.sqrt(np.clip(np.einsum("jaa->ja", cv), 0, None))
            self.random_effects_sd_[f.name] = pd.DataFrame(sd, index=f.levels, columns=blk.names)
            self.cov_re_[f.name] = pd.DataFrame(cov, index=blk.names, columns=blk.names)
            self._re_patterns[f.name] = blk.pattern
        tmap = ThetaMap.for_blocks(blocks)
        theta_names = tmap.names([fd.factors[blk.factor].name for blk in blocks], [blk.names for blk in blocks])
        self.theta_ = pd.Series(np.asarray(theta, dtype=float), index=theta_names, name="theta")
        # lme4's isSingular, judged on the optimiser's columns
        self.is_singular_ = tmap.is_singular(theta if theta_internal is None else theta_internal)
        self.n_groups_ = {f.name: f.n_levels for f in fd.factors}


# ------------------------------------------------------------------ seams for wrappers (inference, split-sample)
def fit_inputs(est: MixedModelBase, X, y=None, groups=None, sample_weight=None, **kwargs) -> FitData:
    """The validated inputs of a fit of ``est`` (what its ``fit`` reads), as a :class:`FitData`.

    Like the start of ``fit``, this sets ``est``'s input-validation state (``n_features_in_``,
    feature names, the fitted formula). ``kwargs``: ``chunk`` and ``reset`` of ``_prepare_fit``.
    """
    return est._prepare_fit(X, y, groups, sample_weight, **kwargs)


def has_intercept(est: MixedModelBase) -> bool:
    """Whether ``est``'s fixed design has an intercept (the formula's say, else ``fit_intercept``)."""
    return est._has_intercept()


def check_params(est: MixedModelBase) -> None:
    """Validate ``est``'s constructor parameters as its ``fit`` does (a ValueError/TypeError naming the
    parameter)."""
    est._check_params()


def adopt_formula(est: MixedModelBase, spec) -> None:
    """Give ``est`` the fitted formula state ``spec`` (a :class:`~skmixed._design.formula.FormulaSpec`):
    what a fit's input validation sets, for a fit whose rows were validated elsewhere (Dask partitions)."""
    est._formula = spec


def predict_inputs(est: MixedModelBase, X, groups=None) -> PredictData:
    """The kept fixed design and group codes (-1: unseen) ``est.predict`` reads from ``X``."""
    return est._prepare_predict(X, groups)


def refit_rows(est: MixedModelBase, fd: FitData) -> None:
    """Refit ``est`` in place on ``fd`` (its own training rows with a new response): no re-validation,
    the same random-effects structure (the parametric bootstrap)."""
    est._refit_response(fd)


def adopt_fit(est: MixedModelBase, fd: FitData, fit: MixedFit, beta) -> tuple:
    """Make the fitted estimator ``est`` predict with the random effects of ``fit`` on the design of ``fd``
    (SplitSampleMixed's combined model): level maps, kept columns, blocks and modes.

    Returns ``(intercept_, coef_)`` of the fixed effects ``beta`` over the input columns.
    """
    est._set_factor_attrs(fd)
    est._re_blocks = list(fit.blocks)
    est._re_values = [np.asarray(v) for v in fit.b]
    est.n_groups_ = {f.name: f.n_levels for f in fd.factors}
    return est._sklearn_coefs(fd, beta)


def offset_response(fd: FitData) -> FitData:
    """Gaussian models: a formula's ``offset()`` is a known part of the mean, so the
    model is fitted to ``y - offset`` (what lmer does); predictions add it back."""
    if fd.offset is not None:
        fd.y = fd.y - fd.offset
    return fd


def on_index(values, X):
    """``values`` (n,) as a Series on ``X``'s index when ``X`` is a pandas DataFrame."""
    if isinstance(X, pd.DataFrame) and np.ndim(values) == 1 and len(values) == len(X):
        return pd.Series(values, index=X.index)
    return values


def _is_dataframe(X) -> bool:
    """A pandas DataFrame or any other dataframe narwhals reads (polars, pyarrow, ...)."""
    if isinstance(X, pd.DataFrame):
        return True
    if isinstance(X, (np.ndarray, list, tuple)) or X is None:
        return False
    import narwhals as nw

    try:
        return isinstance(nw.from_native(X, eager_only=True, pass_through=True), nw.DataFrame)
    except Exception:  # not something narwhals knows
        return False


def _frame_as_pandas(X):
    """polars / pyarrow / other narwhals-readable frames as pandas (names kept); anything else as is."""
    if isinstance(X, (pd.DataFrame, np.ndarray)) or not _is_dataframe(X):
        return X
    return as_pandas(X, "X")


def _check_groups_arg(groups):
    """``groups`` as given, refusing a scalar (``groups=3``) with a clear message."""
    if groups is None:
        return None
    if isinstance(groups, (str, bytes, numbers.Number)) or np.ndim(groups) == 0:
        raise ValueError(f"groups must hold one label per row (array-like of shape (n,) or (n, k)), got the "
                         f"scalar {groups!r}")
    if not isinstance(groups, (pd.DataFrame, pd.Series, np.ndarray)) and _is_dataframe(groups):
        groups = as_pandas(groups, "groups")
    elif not isinstance(groups, (pd.DataFrame, pd.Series, np.ndarray, list, tuple)):
        import narwhals as nw

        s = nw.from_native(groups, series_only=True, pass_through=True)
        if isinstance(s, nw.Series):
            groups = s.to_pandas()
    return groups


def _resolve_group_name(columns, c):
    """A ``group_column`` entry (name or position) as a column name of ``columns``."""
    cols = list(columns)
    if isinstance(c, numbers.Integral) and not isinstance(c, bool):
        if c in cols:  # integer column labels
            return c
        if not -len(cols) <= c < len(cols):
            raise ValueError(f"group_column {c} out of range for X with {len(cols)} columns")
        return cols[int(c)]
    if c in cols:
        return c
    prefixed = [k for k in cols if isinstance(k, str) and k.endswith("__" + c)]
    if len(prefixed) == 1:
        return prefixed[0]
    hint = ""
    if prefixed:
        hint = f" (several prefixed columns end in '__{c}': {prefixed}; give the full name)"
    raise ValueError(f"group_column {c!r} not among X's columns {cols[:20]}{hint}")


def _reconcile_groups(gframe, groups, spec, where):
    """The grouping frame of a formula model given also a ``groups`` argument.

    Without grouping columns in the data, ``groups`` is used. With them, a ``groups``
    argument (often routed by cross-validation for the splitter) must agree with one or
    all of the formula's grouping factors; it never silently replaces them.
    """
    if groups is None:
        return gframe
    if gframe is None:
        if not spec.parsed.terms:
            raise ValueError(f"groups given, but the formula {spec.formula!r} has no random-effects term "
                             "(to use groups only to split the data, call set_fit_request(groups=False) / "
                             "do not route them to the estimator)")
        return groups
    g = groups if isinstance(groups, pd.DataFrame) else (
        pd.DataFrame({"g": groups}) if np.ndim(groups) == 1 else pd.DataFrame(np.asarray(groups)))
    n = gframe.shape[0]
    if g.shape[0] != n:
        raise ValueError(f"the data have {n} rows but groups has {g.shape[0]}")

    def same(a, b):
        a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
        if (a == b).all():
            return True
        return (a.astype(str) == b.astype(str)).all()

    fcols = [gframe.iloc[:, k] for k in range(gframe.shape[1])]
    gcols = [g.iloc[:, k] for k in range(g.shape[1])]
    if len(gcols) == len(fcols) and all(same(a, b) for a, b in zip(fcols, gcols)):
        return gframe
    if len(gcols) == 1 and any(same(f, gcols[0]) for f in fcols):
        return gframe
    raise ValueError(f"groups passed to {where} differ from the formula's grouping column(s) "
                     f"{list(gframe.columns)}: with a formula the grouping comes from the data's columns; pass "
                     "groups only to split the data (set_fit_request(groups=False)) or drop them")


def merge_offsets(fd_offset, offset, n):
    """The fit's offset: an ``offset=`` argument or the formula's ``offset()`` terms, not both."""
    from ._families import check_offset

    offset = check_offset(offset, n)
    if fd_offset is None:
        return offset
    if offset is not None:
        raise ValueError("offset given both in the formula (offset(...)) and as an argument: give it once")
    return fd_offset
