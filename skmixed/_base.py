"""What every skmixed estimator shares: input validation, grouping, random terms, formulas.

Estimators subclass :class:`MixedModelBase` (plus ``RegressorMixin`` or
``ClassifierMixin``), call :meth:`_prepare_fit` / :meth:`_prepare_predict`, and
only implement their solver wiring. Nothing in here touches estimator state
before the whole input has been validated.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._design.formula import fixed_design, group_frame, parse_formula, term_columns
from ._design.grouping import GroupingFactor, make_factors
from ._design.terms import RandomTerm, default_terms

__all__ = ["MixedModelBase", "FitData", "PredictData", "NoGroupsWarning"]


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

    @property
    def n_obs(self) -> float:
        return float(self.X.shape[0] if self.weights is None else self.weights.sum())


@dataclass
class PredictData:
    X: np.ndarray
    codes: list


def _reduce_columns(fd: FitData) -> FitData:
    """Drop aliased fixed-effects columns (with a warning), as lme4 does (pivoted QR, relative 1e-7)."""
    from ._solvers.lmm import aliased_keep, rows_factor

    p = fd.X.shape[1]
    R = rows_factor(fd.X, fd.weights) if p else np.zeros((0, 0))
    xtwx = R.T @ R
    keep = aliased_keep(R) if p else np.arange(0)
    if keep.size == p:
        return FitData(np.ascontiguousarray(fd.X), fd.y, fd.weights, fd.feature_names, fd.factors, fd.terms,
                       np.arange(p), p, xtwx)
    dropped = [fd.feature_names[k] for k in range(p) if k not in set(keep.tolist())]
    warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s): "
                  f"{dropped}", UserWarning, stacklevel=4)
    remap = {int(old): new for new, old in enumerate(keep)}
    terms = []
    for t in fd.terms:
        lost = [fd.feature_names[s] for s in t.slopes if s not in remap]
        if lost:
            raise ValueError(f"random slope column(s) {lost} are aliased with other fixed-effect columns")
        terms.append(RandomTerm(t.factor, t.intercept, tuple(remap[s] for s in t.slopes), t.names))
    return FitData(np.ascontiguousarray(fd.X[:, keep]), fd.y, fd.weights,
                   [fd.feature_names[k] for k in keep], fd.factors, terms, keep, p, xtwx[np.ix_(keep, keep)])


def _finite_or_raise(a: np.ndarray, what: str):
    if not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "infinite values"
        raise ValueError(f"{what} contains {bad}")


def read_formula(formula: str, data: pd.DataFrame):
    """An lme4 formula read against its data.

    Returns ``(state, X, y, groups, intercept)``: what a formula-fitted estimator
    keeps (the formula, formulaic's model spec, the parsed bar terms), the fixed
    design without its intercept column, the response, the grouping columns
    (``None`` without bar terms) and whether the fixed part has an intercept.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError("from_formula needs a pandas DataFrame")
    parsed = parse_formula(formula)
    if parsed.response not in data.columns:
        raise ValueError(f"response {parsed.response!r} not in data")
    Xf, spec = fixed_design(parsed.fixed, data)
    icpt = "(Intercept)" in Xf.columns
    Xf = Xf.drop(columns=["(Intercept)"]) if icpt else Xf
    gframe = group_frame(parsed.terms, data) if parsed.terms else None
    terms = []
    for t in parsed.terms:
        has_i, cols = term_columns(t.expr, data)
        terms.append({"factor": t.factor, "intercept": has_i, "columns": tuple(cols), "correlated": t.correlated})
    state = {"formula": formula, "spec": spec, "parsed": parsed, "terms": terms,
             "factor_names": list(gframe.columns) if gframe is not None else []}
    return state, Xf, data[parsed.response], gframe, icpt


class MixedModelBase(BaseEstimator):
    """Base class: shared parameters ``fit_intercept``, ``random_slopes``, ``group_column``.

    Subclasses define ``__init__`` listing these explicitly (scikit-learn reads
    parameters from the signature) and store them untouched.
    """

    # set by from_formula on the instance (not a constructor parameter): the
    # random-term specification and the fixed part's formulaic model spec
    _formula = None

    # ----------------------------------------------------------------- group columns
    def _split_group_columns(self, X):
        """Separate ``group_column`` labels from X; returns (X_rest, groups or None)."""
        gc = self.group_column
        if gc is None:
            return X, None
        cols = [gc] if isinstance(gc, (str, numbers.Integral)) else list(gc)
        if isinstance(X, pd.DataFrame):
            if all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in cols) and not all(
                c in X.columns for c in cols
            ):
                names = [X.columns[c] for c in cols]
            else:
                names = cols
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise ValueError(f"group_column {missing} not among X's columns")
            return X.drop(columns=names), X[names]
        arr = np.asarray(X, dtype=object) if not hasattr(X, "shape") else np.asarray(X)
        if arr.ndim != 2:
            raise ValueError("X must be 2-D")
        if not all(isinstance(c, numbers.Integral) for c in cols):
            raise ValueError("group_column must be integer positions when X is not a DataFrame")
        keep = [k for k in range(arr.shape[1]) if k not in cols]
        return arr[:, keep], pd.DataFrame(arr[:, cols], columns=[f"group{c}" for c in cols])

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

    # ----------------------------------------------------------------- slopes and terms
    def _slope_indices(self, names_in, p_offset):
        """Resolve ``random_slopes`` (names or positions in X) to design columns."""
        rs = self.random_slopes
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
        if groups is None and self.group_column is not None:
            _, groups = self._split_group_columns(X)
        Xv = self._check_x(X, reset=reset)
        n, p_in = Xv.shape
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y_arr = self._validate_y(y, n)
        _finite_or_raise(Xv, "X")
        w = None
        if sample_weight is not None:
            w = _check_sample_weight(sample_weight, Xv, dtype=np.float64, ensure_non_negative=True)
            _finite_or_raise(w, "sample_weight")
            if not (w > 0).any():
                raise ValueError("sample_weight has no positive entry")
        names_in = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        if self.group_column is not None and names_in is not None:
            _, g = self._split_group_columns(X)
            names_in = [c for c in names_in if c not in set(map(str, g.columns))]
        names_in = [str(c) for c in names_in] if names_in is not None else [f"x{k}" for k in range(p_in)]
        icpt = bool(self.fit_intercept)
        Xd = self._design(Xv)
        feature_names = (["(Intercept)"] if icpt else []) + names_in

        if groups is None:
            warnings.warn(f"{type(self).__name__}.fit got no groups (and no group_column): fitting the "
                          "fixed-effects part only", NoGroupsWarning, stacklevel=3)
            factors, terms = [], []
        else:
            factors = self._make_factors(groups, n, min_levels=1 if chunk else 2)
            terms = self._make_terms(factors, names_in, icpt)
        if chunk:
            p = Xd.shape[1]
            return FitData(Xd, y_arr, w, feature_names, factors, terms, np.arange(p), p)
        fd = _reduce_columns(FitData(Xd, y_arr, w, feature_names, factors, terms))
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
            names = list(self._formula["factor_names"])
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

    def _make_terms(self, factors, names_in, icpt) -> list:
        if self._formula is not None:
            return self._formula_terms(factors, names_in, icpt)
        slopes, slope_names = self._slope_indices(names_in, int(icpt))
        return default_terms(len(factors), slopes, slope_names)

    def _formula_terms(self, factors, names_in, icpt):
        fnames = [f.name for f in factors]
        terms = []
        for spec in self._formula["terms"]:
            fi = fnames.index(spec["factor"])
            idx = []
            for c in spec["columns"]:
                if c not in names_in:
                    raise ValueError(f"random slope {c!r} must also be a fixed-effect column of the formula")
                idx.append(names_in.index(c) + int(icpt))
            names = (["(Intercept)"] if spec["intercept"] else []) + list(spec["columns"])
            if spec["correlated"] or len(names) == 1:
                terms.append(RandomTerm(fi, spec["intercept"], tuple(idx), tuple(names)))
            else:
                if spec["intercept"]:
                    terms.append(RandomTerm(fi, True, (), ("(Intercept)",)))
                terms.extend(RandomTerm(fi, False, (i,), (c,)) for i, c in zip(idx, spec["columns"]))
        return terms

    # ----------------------------------------------------------------- predict inputs
    def _prepare_predict(self, X, groups=None) -> PredictData:
        check_is_fitted(self)
        if self._formula is not None and isinstance(X, pd.DataFrame):
            return self._prepare_predict_formula(X, groups)
        if groups is None and self.group_column is not None:
            _, groups = self._split_group_columns(X)
        Xv = self._check_x(X, reset=False)
        _finite_or_raise(Xv, "X")
        n = Xv.shape[0]
        return PredictData(self._design(Xv)[:, self._keep], self._encode_groups(groups, n))

    def _design(self, Xv):
        """The fixed-effects design: an intercept column first (when fitted), then X's columns."""
        icpt = bool(self.fit_intercept)
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
    def from_formula(cls, formula: str, data: pd.DataFrame, sample_weight=None, **params):
        """Fit from an lme4-style formula, e.g. ``"y ~ x + b + (1 + x | g)"``.

        The fixed part goes to formulaic; bar terms ``(expr | g)``, ``(expr || g)``,
        ``(1 | a/b)``, ``(1 | a:b)`` define the random effects. The returned estimator's
        ``predict(data)`` takes a DataFrame with the formula's columns (grouping
        columns included).

        Parameters
        ----------
        formula : str
        data : pandas.DataFrame
        sample_weight : array-like, optional
        **params
            Constructor parameters of the estimator.

        Returns
        -------
        estimator
            The fitted estimator.
        """
        state, Xf, y, gframe, icpt = read_formula(formula, data)
        est = cls(**{**params, "fit_intercept": icpt})
        est._formula = state
        est.fit(Xf, y, groups=gframe, sample_weight=sample_weight)
        est.formula_ = formula
        return est

    def _formula_rows(self, data):
        """``data`` under the stored formula: the fixed design (no intercept column) and the
        grouping columns (``None`` when ``data`` lacks them)."""
        Xf, _ = fixed_design(self._formula["spec"], data)
        if "(Intercept)" in Xf.columns:
            Xf = Xf.drop(columns=["(Intercept)"])
        parsed = self._formula["parsed"]
        groups = None
        if parsed.terms:
            try:
                groups = group_frame(parsed.terms, data)
            except ValueError:
                groups = None  # grouping columns absent
        return Xf, groups

    def _prepare_predict_formula(self, data, groups):
        Xf, gframe = self._formula_rows(data)
        Xv = self._check_x(Xf, reset=False)
        _finite_or_raise(Xv, "X")
        n = Xv.shape[0]
        Xd = self._design(Xv)[:, self._keep]
        # no grouping columns: the population prediction
        return PredictData(Xd, self._encode_groups(gframe if groups is None else groups, n))

    # ----------------------------------------------------------------- shared results helpers
    def _set_factor_attrs(self, fd: FitData):
        """Keep what prediction needs: level maps (not the training codes) and kept columns."""
        self.factors_ = [GroupingFactor(f.name, np.empty(0, dtype=np.int64), f.levels) for f in fd.factors]
        self.feature_names_ = list(fd.feature_names)
        self._keep = np.asarray(fd.keep)

    def _sklearn_coefs(self, fd: FitData, beta):
        """(intercept_, coef_) over the input columns; aliased columns get 0."""
        full = np.zeros(fd.n_design)
        full[fd.keep] = beta
        icpt = bool(self.fit_intercept)
        return (float(full[0]) if icpt else 0.0), full[int(icpt):]

    def _random_part(self, Xd, codes):
        """Sum over random-effect blocks of ``z_row . b[code]`` (0 for code -1)."""
        out = np.zeros(Xd.shape[0])
        for blk, b in zip(getattr(self, "_re_blocks", []), getattr(self, "_re_values", [])):
            c = codes[blk.factor]
            known = c >= 0
            if not known.any():
                continue
            Z = blk.z_rows(Xd[known])
            out[known] += np.einsum("ij,ij->i", Z, b[c[known]])
        return out

    def _store_random_effects(self, fd: FitData, blocks, b_values, condvars, covs, theta, lower, theta_internal=None):
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
        theta_names = []
        for blk, b, cv, cov in zip(blocks, b_values, condvars, covs):
            f = fd.factors[blk.factor]
            self.random_effects_[f.name] = pd.DataFrame(b, index=f.levels, columns=blk.names)
            sd = np.sqrt(np.clip(np.einsum("jaa->ja", cv), 0, None))
            self.random_effects_sd_[f.name] = pd.DataFrame(sd, index=f.levels, columns=blk.names)
            self.cov_re_[f.name] = pd.DataFrame(cov, index=blk.names, columns=blk.names)
            self._re_patterns[f.name] = blk.pattern
            for r, c in zip(*blk.theta_index()):
                theta_names.append(f"{f.name}.{blk.names[r]}" if r == c
                                   else f"{f.name}.{blk.names[r]}.{blk.names[c]}")
        self.theta_ = pd.Series(np.asarray(theta, dtype=float), index=theta_names, name="theta")
        # lme4's isSingular: a parameter bounded at zero that sits (numerically) on it
        th = np.asarray(theta if theta_internal is None else theta_internal)
        self.is_singular_ = bool(np.any(th[np.asarray(lower) == 0] < 1e-4))
        self.n_groups_ = {f.name: f.n_levels for f in fd.factors}
