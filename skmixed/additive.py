"""AdditiveMixedRegressor: mgcv ``bam(..., discrete=TRUE)`` additive mixed models, sklearn-style."""

from __future__ import annotations

import numbers
from numbers import Integral
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import SHARED_CONSTRAINTS, MixedModelBase, fit_inputs, has_intercept
from ._design.formula import as_pandas
from ._design.mgcv_formula import SmoothSpec, is_smooth_term, parse_smooth, split_mgcv_formula
from ._design.smooths import SMOOTHS, make_smooth
from ._design.tensor import TensorSmooth
from ._kernels.binned import discretize, index_few_values, remap_codes
from ._solvers.freml import FAMILIES, BinnedLayout, BinnedTerm, fit_freml
from ._summary import Summary
from ._transaction import transactional

__all__ = ["AdditiveMixedRegressor"]

_MAX_BINS = 1000  # mgcv's discretization of 1-D smooth margins
_PRED_CHUNK = 65_536


def _compress_rows(Xp):
    """Index parametric rows by their distinct values when there are few (intercept, dummies).

    Returns (Xbar, index): exact, only a cheaper representation.  With a continuous column the
    block stays row-wise (index = row number), so linear coefficients are never rounded.
    """
    n, p = Xp.shape
    codes = np.zeros(n, dtype=np.int64)
    radix = 1
    uniq = []
    for j in range(p):
        v, k = index_few_values(np.ascontiguousarray(Xp[:, j]), 64)
        if v.size == 0:  # a continuous column: keep the rows
            return Xp, np.arange(n, dtype=np.int64)
        uniq.append(v)
        codes += k * radix
        radix *= v.size
        if radix > 4096:
            return Xp, np.arange(n, dtype=np.int64)
    index, ucodes = remap_codes(codes, radix)
    Xbar = np.empty((ucodes.size, p))
    rem = ucodes.copy()
    for j in range(p):
        Xbar[:, j] = uniq[j][rem % uniq[j].size]
        rem //= uniq[j].size
    return Xbar, index


class _SmoothInfo:
    """What predict / plots need of a fitted smooth.

    ``column``: design column of a 1-D smooth; ``columns``: all of them (tensor products);
    ``by``: by column with ``level`` (factor by) or ``level=None`` (numeric by: a multiplier).
    """

    def __init__(self, name, column, centred, lo, hi, by=None, level=None, columns=None):
        self.name, self.column, self.centred, self.lo, self.hi = name, column, centred, lo, hi
        self.by, self.level = by, level
        self.columns = (column,) if columns is None else tuple(columns)

    @property
    def tensor(self) -> bool:
        return hasattr(self.centred, "S_list")

    def rows(self, Xd):
        """The smooth's block of the design at the rows of ``Xd``."""
        if hasattr(self.centred, "S_list"):
            B = self.centred.basis([Xd[:, j] for j in self.columns])
        else:
            B = self.centred.basis(Xd[:, self.column])
        if self.by is not None:
            B = B * ((Xd[:, self.by] == self.level) if self.level is not None else Xd[:, self.by])[:, None]
        return B


class _Uncentred:
    """A 1-D smooth without the sum-to-zero constraint (numeric ``by``: mgcv drops it), penalty
    rescaled as ``smoothCon``."""

    def __init__(self, smooth, X):
        self.smooth = smooth
        maXX = np.max(np.abs(X).sum(axis=1)) ** 2
        S0 = smooth.penalty
        self.S_scale = float(np.max(np.abs(S0).sum(axis=0)) / maXX)
        self.S = (S0 + S0.T) / 2 / self.S_scale
        ev = np.linalg.eigvalsh(self.S)
        pos = ev[ev > ev.max() * 1e-10]
        self.rank, self.logdet_S = int(pos.size), float(np.log(pos).sum())

    def basis(self, x):
        return self.smooth.basis(x)


def _fmt_level(v):
    return str(int(v)) if float(v).is_integer() else str(v)


def _parametric_matrix(Xd, par_cols, by_dummies):
    """Parametric columns plus treatment dummies of by-factors (level == value)."""
    cols = [Xd[:, par_cols]] + [(Xd[:, [b]] == lv[None, :]).astype(np.float64) for b, lv in by_dummies]
    return np.ascontiguousarray(np.hstack(cols)) if cols else np.empty((Xd.shape[0], 0))


class _Design(NamedTuple):
    """The terms of a fit and what its storage needs to name and unscale them."""

    terms: list
    smooths: list
    re_info: list
    par_cols: list
    par_names: list
    by_dummies: list
    par_scale: np.ndarray
    zscale: dict
    zmax: dict  # max |z| of each random-slope term's (scaled) column
    rowwise_parametric: bool  # the parametric block is kept row by row (no few distinct rows)
    par_shift: np.ndarray = None  # subtracted from the parametric columns before par_scale (None: 0)


class RowBinning:
    """Data-dependent design choices taken from the rows at hand (the in-memory fit).

    :meth:`AdditiveMixedRegressor._model_terms` asks an object of this shape for every choice that
    depends on the data; a distributed fit answers with the whole data's choices instead (the
    same bins and scales on every partition), so partition statistics add up.
    """

    def __init__(self, exact=False):
        self.exact = exact

    def discretize(self, j, x):
        """(distinct or binned values, index) of smooth column ``j``."""
        return discretize(x, _MAX_BINS, exact=self.exact)

    def few_values(self, j, x, m):
        """Sorted distinct values of column ``j`` if at most ``m``, else empty."""
        return index_few_values(np.ascontiguousarray(x), m)[0]

    def range(self, j, x, level=None, sel=None):
        """(min, max) of column ``j`` (over the rows ``sel`` of a by ``level``)."""
        xs = x if sel is None else x[sel]
        return float(xs.min()), float(xs.max())

    def parametric_rms(self, Xpar, shift=None):
        if not Xpar.shape[1]:
            return np.zeros(0)
        Xc = Xpar if shift is None or not np.any(shift) else Xpar - shift
        return np.sqrt(np.mean(Xc * Xc, axis=0))

    def parametric_mean(self, Xpar):
        return Xpar.mean(axis=0) if Xpar.shape[1] else np.zeros(0)

    def slope_rms(self, col, z):
        return float(np.sqrt(np.mean(z * z)))

    def slope_absmax(self, col, z):
        return float(np.max(np.abs(z)))

    def compress(self, Xpar, shift=None, scale=None):
        """(Xbar, index, row-wise?) of the scaled parametric block (``shift``/``scale``: how it was made)."""
        Xbar, idx = _compress_rows(Xpar)
        return Xbar, idx, Xbar is Xpar

    def combinations(self, label, code, radix):
        """(index, kept codes, counts) of a tensor term's margin-code combinations that occur."""
        if radix < 2 ** 62:
            index, kept = remap_codes(code, radix)
        else:  # pragma: no cover - astronomically many combinations
            uniq, index = np.unique(code, return_inverse=True)
            kept, index = uniq, index.astype(np.int64)
        return index, kept, np.bincount(index, minlength=kept.size).astype(np.float64)

    def margin_rows(self, label, margin_vals):
        """A ti() term's margins at the data rows (each margin is centred over them)."""
        return [v[kk] for v, kk in margin_vals]


def fit_summary_sums(family, y, w, mu, ybar):
    """Sums over rows behind the fit summary (null deviance, adjusted R^2), additive over
    partitions: row count, sums of (y - ybar) and its square, of residuals and their squares,
    and the null deviance at ``ybar`` (the weighted mean of y)."""
    y = np.asarray(y, dtype=np.float64)
    dy = y - ybar
    r = y - mu
    if family == "gaussian":
        null_dev = float(np.sum(w * dy ** 2))
    else:
        null_dev = float(np.sum(_unit_deviance(family, y, np.full_like(y, ybar)) * w))
    return {"n": float(y.size), "sdy": float(dy.sum()), "sdy2": float(dy @ dy), "sr": float(r.sum()),
            "sr2": float(r @ r), "null_dev": null_dev}


class AdditiveMixedRegressor(RegressorMixin, MixedModelBase):
    """Additive mixed model fitted by fREML, as mgcv's ``bam(..., method="fREML")``.

    ``y ~ parametric columns + s(smooth columns) + s(g, bs="re") [+ s(g, x, bs="re")]``:
    penalized regression splines for the ``smooth`` columns, linear terms for the other columns,
    and independent Gaussian random intercepts (and slopes) per grouping factor, each random-effect
    term with its own variance (mgcv's ``re`` smooths; no correlation between intercept and slope).
    Smoothing parameters and variances are estimated together by fast REML (one Newton step per
    penalized IRLS iteration, Wood et al. 2015).  With ``discrete=True`` each smooth covariate is
    rounded to at most 1000 values (exact with fewer) and the cross-products are built from binned
    weights (Li & Wood 2020), so a fit costs a few passes over the data.  Random effects are never
    put in a dense matrix: the grouping factor with the most levels is eliminated group by group.

    Parameters
    ----------
    smooth : list of str, int or (column, by_column) tuples, optional
        Columns of X that get a smooth ``s()`` (names for DataFrames, else positions).
        ``(x, f)`` is mgcv's factor by-smooth ``f + s(x, by=f)``: ``f`` (a column with 2 to 50
        distinct values) enters as treatment dummies and each level gets its own smooth of ``x``.
        Entries may also be mgcv terms written out: ``"s(x0, k=5, bs='ps')"``,
        ``"te(x2, x3, k=c(5, 6))"`` (tensor product, one smoothing parameter per margin),
        ``"ti(x2, x3)"`` (pure interaction), ``"s(x0, by=z)"`` (by a factor column as above, or
        a numeric column: the smooth multiplied by it, uncentred). The other columns enter linearly.
    basis : {"cr", "ps"} or dict, default="cr"
        Cubic regression spline (mgcv ``bs="cr"``) or P-spline (``bs="ps"``); a dict maps column
        names or term labels (``"te(x2,x3)"``) to a basis, others get ``"cr"``. A term's own
        ``bs=`` wins.
    n_knots : int or dict, default=10
        Basis dimension k of the ``s()`` smooths (mgcv's ``k``; one is lost to centring); a dict
        maps column names or term labels to k (others get 10). Tensor products take 5 per margin
        unless the term says ``k=`` or the dict has its label.
    discrete : bool, default=True
        Discretize smooth covariates (``bam(discrete=TRUE)``); ``False`` is the exact fit.
    family : {"gaussian", "binomial", "poisson"}, default="gaussian"
        Response distribution (identity, logit and log link).
    fit_intercept : bool, default=True
    random_slopes : list of str or int, optional
        Columns with a random slope per level of every grouping factor (``s(g, x, bs="re")``).
    group_column : str, int or list, optional
        Column(s) of X holding the group labels (instead of ``groups``).
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
        ``(1 | a/b)`` (nested) and ``(1 | a:b)`` give the random effects (a bar term's
        columns must be fixed-effect columns too, else a ValueError). ``offset(expr)``
        terms (gaussian family only; a ValueError otherwise) are a known part of the
        mean: the model is fitted to ``y - offset`` and :meth:`predict` adds the new
        data's offset.
        ``group_column`` and ``random_slopes`` must then be None and the formula's
        intercept (``0 +`` drops it) takes the place of ``fit_intercept``.

    Attributes
    ----------
    fixed_effects_ : pandas.Series
        Parametric coefficients, ``"(Intercept)"`` first.
    fixed_effects_se_ : pandas.Series
        Their (Bayesian posterior) standard errors.
    coef_, intercept_ : ndarray, float
        Parametric slopes / intercept (smooth columns have no linear coefficient: 0 in ``coef_``).
    smooth_coef_ : dict
        Term name -> constrained spline coefficients.
    edf_ : pandas.Series
        Effective degrees of freedom per smooth and random-effect term (mgcv's ``edf`` by term).
    smoothing_params_ : pandas.Series
        Smoothing parameters on mgcv's scale (penalties scaled as ``smoothCon``).
    re_sd_ : pandas.Series
        Random-effect standard deviation per ``re`` term, ``sqrt(scale_ / lambda)``.
    random_effects_ : dict
        Factor name -> DataFrame (levels x term columns) of predicted random effects.
    cov_re_ : dict
        Factor name -> diagonal covariance DataFrame of the random effects.
    scale_ : float
        Scale parameter (sigma^2 for the Gaussian family, 1 otherwise).
    sigma_ : float
        ``sqrt(scale_)``.
    fitted_values_ : ndarray (n,)
        In-sample fitted means of the fit (with discretized covariates when ``discrete=True``).
    reml_score_ : float
        fREML criterion at convergence (mgcv's ``gcv.ubre`` for ``method="fREML"``).
    deviance_ : float
    n_iter_ : int
    converged_ : bool

    Notes
    -----
    Differences from ``bam``: parametric columns are never rounded (``discrete=True`` only bins the
    smooth covariates; continuous parametric columns are handled row-wise in the same pass), random
    effects of the grouping factor with most levels are eliminated by Schur complement instead of
    a dense Cholesky, and ``sample_weight`` are prior weights as in mgcv (not frequency weights for
    the REML criterion).  ``reml_score_`` equals bam's ``fREML`` for ``discrete=True``; for
    ``discrete=False`` bam reports the score in an internally reparametrized basis, which shifts it
    by a constant (the optimum is the same).  Random slopes apply to every grouping factor and are
    uncorrelated with the intercepts (``s(g, x, bs="re")``).

    fREML can have several local optima along one smoothing parameter (typically a wiggly fit
    and a near-linear one when a covariate has few distinct values).  After the Newton iteration
    converges, each smooth's smoothing parameter is scanned over a wide grid on the converged
    working model, and the fit restarts from any point with a lower score; the best fit is kept.
    ``reml_score_`` reports the criterion so fits can be compared.

    Examples
    --------
    >>> from skmixed import AdditiveMixedRegressor
    >>> from skmixed.datasets import load_gamsim_re
    >>> df = load_gamsim_re()
    >>> m = AdditiveMixedRegressor(smooth=["x0", "x1", "x2", "x3"], discrete=False)
    >>> m = m.fit(df[["x0", "x1", "x2", "x3"]], df["y"], groups=df["fac"])
    >>> round(m.scale_, 3), round(float(m.re_sd_["s(fac)"]), 3)
    (4.096, 1.712)
    """

    _fits_offset = True  # a formula's offset() (gaussian family: fitted as y - offset)

    def __init__(self, smooth=None, basis="cr", n_knots=10, discrete=True, family="gaussian",
                 fit_intercept=True, random_slopes=None, group_column=None, formula=None):
        self.smooth = smooth
        self.basis = basis
        self.n_knots = n_knots
        self.discrete = discrete
        self.family = family
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.group_column = group_column
        self.formula = formula

    # ------------------------------------------------------------------ parameters
    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "smooth": ["array-like", str, None],
        "basis": [str, dict],  # the names (also inside a dict): _check_params
        "n_knots": [Interval(Integral, 3, None, closed="left"), tuple, dict],
        "discrete": ["boolean"],
        "family": [StrOptions(set(FAMILIES))],
    }

    def _check_params(self):
        self._validate_params()
        bases = self.basis.values() if isinstance(self.basis, dict) else [self.basis]
        bases = [b for v in bases for b in (v if isinstance(v, tuple) else (v,))]
        for b in bases:
            if not isinstance(b, str) or b not in SMOOTHS:
                raise ValueError(f"basis must be one of {sorted(SMOOTHS)} (or a dict of them), got {b!r}")
        ks = self.n_knots.values() if isinstance(self.n_knots, dict) else [self.n_knots]
        for k in ks:
            if isinstance(k, tuple):
                bad = [v for v in k if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 3]
            else:
                bad = [] if isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 3 else [k]
            if bad:
                raise ValueError(f"n_knots must be an integer >= 3 (or a dict of them), got {k!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")

    def _term_options(self, spec: SmoothSpec):
        """(k, bs) of a term: its own, else the dict entry for its label or column, else defaults;
        tensor products get one of each per margin."""
        def pick(own, param, default_s, default_te, global_ok):
            if own is not None:
                return own
            if isinstance(param, dict):
                for key in (spec.label,) + (spec.columns if spec.kind == "s" else ()):
                    if key in param:
                        return param[key]
                return default_s if spec.kind == "s" else default_te
            return param if (spec.kind == "s" or global_ok) else default_te

        k = pick(spec.k, self.n_knots, 10, 5, False)
        bs = pick(spec.bs, self.basis, "cr", "cr", True)
        if spec.kind == "s":
            if isinstance(k, tuple) or isinstance(bs, tuple):
                raise ValueError(f"{spec.label}: one k and one basis for an s() term")
            if bs not in SMOOTHS:
                raise ValueError(f"{spec.label}: basis must be one of {sorted(SMOOTHS)}, got {bs!r}")
            return int(k), bs
        d = len(spec.columns)
        ks = tuple(k) if isinstance(k, tuple) else (k,) * d
        bss = tuple(bs) if isinstance(bs, tuple) else (bs,) * d
        if len(ks) == 1:
            ks = ks * d
        if len(bss) == 1:
            bss = bss * d
        if len(ks) != d or len(bss) != d:
            raise ValueError(f"{spec.label}: give one k and one basis per margin ({d})")
        for b in bss:
            if b not in SMOOTHS:
                raise ValueError(f"{spec.label}: basis must be one of {sorted(SMOOTHS)}, got {b!r}")
        return tuple(int(v) for v in ks), bss

    def _mgcv_parts(self):
        """``(smooth terms, lme4 formula)`` of an mgcv ``formula`` (``s()``/``te()``/``ti()`` terms);
        ``(None, formula)`` when the formula has none (or there is no formula)."""
        f = self.formula
        if not isinstance(f, str):
            return None, f
        specs, lme4_formula = split_mgcv_formula(f)
        if not specs and lme4_formula.replace(" ", "") == f.replace(" ", ""):
            return None, f
        if not specs and not any(is_smooth_term(t) for t in f.split("~", 1)[1].split("+")):
            return None, f
        return [_spec_text(sp) for sp in specs] or None, lme4_formula

    def _formula_source(self):
        return self._mgcv_parts()[1]

    def _formula_inputs(self, X, y, groups, sample_weight, reset):
        if reset and isinstance(self.formula, str):
            smooth, _ = self._mgcv_parts()
            if smooth is not None:
                if self.smooth is not None:
                    raise ValueError("the formula has smooth terms: do not pass smooth= as well")
                specs, _ = split_mgcv_formula(self.formula)
                data = as_pandas(X)
                for sp in specs:
                    for c in sp.columns + ((sp.by,) if sp.by else ()):
                        if c not in data.columns:
                            raise ValueError(f"{sp.label}: column {c!r} not in data")
                        if not pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c]):
                            raise ValueError(f"{sp.label}: column {c!r} must be numeric (code a by factor's "
                                             "levels as numbers)")
        return super()._formula_inputs(X, y, groups, sample_weight, reset)

    def _smooth_specs(self, names):
        """Resolve ``smooth`` (or the formula's smooth terms) to :class:`SmoothSpec` over the input columns."""
        sm = self.smooth
        if self._formula is not None and isinstance(self.formula, str):
            sm = self._mgcv_parts()[0] or sm
        if sm is None:
            return []
        sm = [sm] if isinstance(sm, (str, numbers.Integral)) else list(sm)

        def name(c):
            if isinstance(c, str) and c in names:
                return c
            if isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < len(names):
                return names[int(c)]
            raise ValueError(f"smooth column {c!r} is not a column name or index of X (columns: {names})")

        out = []
        for s in sm:
            if isinstance(s, str) and is_smooth_term(s):
                spec = parse_smooth(s)
                if spec.bs == "re":
                    raise ValueError(f"{s!r}: random effects come from groups (or (1 | g) in a formula), not "
                                     "from smooth")
                spec = SmoothSpec(spec.kind, tuple(name(c) for c in spec.columns), spec.k, spec.bs,
                                  None if spec.by is None else name(spec.by))
            elif isinstance(s, tuple):
                if len(s) != 2:
                    raise ValueError(f"a by-smooth is given as (column, by_column), got {s!r}")
                spec = SmoothSpec("s", (name(s[0]),), by=name(s[1]))
            else:
                spec = SmoothSpec("s", (name(s),))
            out.append(spec)
        keys = [(sp.kind, sp.columns, sp.by) for sp in out]
        if len(set(keys)) != len(keys):
            raise ValueError("smooth lists a term twice")
        if {c for sp in out for c in sp.columns} & {sp.by for sp in out if sp.by is not None}:
            raise ValueError("a by column cannot also be smoothed")
        return out

    def _input_names(self, X, p_in):
        names = list(self.feature_names_in_) if hasattr(self, "feature_names_in_") else None
        if names is None:
            return [f"x{k}" for k in range(p_in)]
        if self.group_column is not None:
            _, g = self._split_group_columns(X)
            names = [c for c in names if c not in set(map(str, g.columns))]
        return [str(c) for c in names]

    def _check_y_family(self, y):
        if self.family == "binomial" and ((y < 0).any() or (y > 1).any()):
            raise ValueError("family='binomial' needs y in [0, 1] (0/1 outcomes or proportions)")
        if self.family == "poisson" and (y < 0).any():
            raise ValueError("family='poisson' needs non-negative y")

    # ------------------------------------------------------------------ fit
    @transactional
    def fit(self, X, y=None, groups=None, sample_weight=None):
        """Fit the additive mixed model.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, p)
        y : array-like, shape (n,), optional
            With ``formula``: None takes the formula's response from X.
        groups : array-like (n,) or (n, k), or DataFrame, optional
            Group labels, one column per grouping factor.
        sample_weight : array-like, shape (n,), optional
            Prior weights.

        Returns
        -------
        self
        """
        self._check_params()
        fd = self._prepare_fit(X, y, groups, sample_weight)
        if fd.offset is not None and self.family != "gaussian":
            raise ValueError(f"offset() terms are fitted by the gaussian family only (family={self.family!r}); "
                             "for binomial or Poisson data with an offset use MixedLogisticRegressor or "
                             "MixedPoissonRegressor")
        fd = self._offset_response(fd)
        self._check_y_family(fd.y)
        icpt = int(self._has_intercept())
        # smooth columns are named/indexed among the input columns (before aliased ones are dropped)
        names_all = self._input_names(X, fd.n_design - icpt)
        design = self._model_terms(fd, names_all, RowBinning(exact=not self.discrete))
        lay = BinnedLayout(design.terms, fd.X.shape[0])
        pw = np.ones(fd.X.shape[0]) if fd.weights is None else fd.weights
        res = fit_freml(lay, fd.y, pw, self.family)
        ybar = float(np.sum(pw * fd.y) / np.sum(pw))
        gof = fit_summary_sums(self.family, fd.y, pw, self._inv_link(res.eta), ybar)
        self._store(fd, lay, res, design, gof)
        return self

    def _model_terms(self, fd, names_all, binning) -> "_Design":
        """The model's terms for the rows of ``fd``, every data-dependent choice (bins, by levels,
        column scales, distinct parametric rows, tensor combinations) asked of ``binning``: the rows
        themselves in memory, the whole data's first passes in a distributed fit."""
        icpt = int(self._has_intercept())
        specs = self._smooth_specs(names_all)
        for sp in specs:
            self._term_options(sp)  # validate every term's k / bs before any work
        missing = sorted({c for sp in specs for c in sp.columns + ((sp.by,) if sp.by else ())
                          if c not in fd.feature_names})
        if missing:
            raise ValueError(f"smooth column(s) {missing} are aliased with other columns")
        col = fd.feature_names.index
        sm_cols = sorted({col(c) for sp in specs for c in sp.columns})
        # ---- design (all validation before any fitted attribute is set)
        terms, smooths = [], []
        # by columns: a factor (2 to 50 distinct values) enters the parametric part as treatment
        # dummies (mgcv: y ~ f + s(x, by=f)); a numeric by multiplies its smooth and is not parametric
        by_cols = sorted({col(sp.by) for sp in specs if sp.by is not None})
        by_levels = {}
        for b in by_cols:
            lev = binning.few_values(b, fd.X[:, b], 50)
            if lev.size == 1:
                raise ValueError(f"by column {fd.feature_names[b]!r} is constant")
            by_levels[b] = lev
        fac_by = [b for b in by_cols if by_levels[b].size > 0]
        par_cols = [j for j in range(fd.X.shape[1]) if j not in sm_cols and j not in by_cols]
        by_dummies = [(b, by_levels[b][1:] if icpt else by_levels[b]) for b in fac_by]
        par_names = [fd.feature_names[j] for j in par_cols] + [
            f"{fd.feature_names[b]}{_fmt_level(v)}" for b, lv in by_dummies for v in lv]
        Xpar = _parametric_matrix(fd.X, par_cols, by_dummies)
        # with an intercept the other parametric columns enter centred (an exact change of basis,
        # undone in _store): a covariate with a small spread around a large mean (x + 1e4) is
        # otherwise nearly collinear with the intercept and the fit loses digits to the origin.
        # Gaussian only for now: with a Poisson random slope on a centred column the PQL iteration
        # was seen to stall (issue 15: to investigate), so the other families keep raw columns
        par_shift = np.zeros(Xpar.shape[1])
        if "(Intercept)" in par_names and Xpar.shape[1] > 1 and self.family == "gaussian":
            par_shift = np.asarray(binning.parametric_mean(Xpar), dtype=float).copy()
            par_shift[par_names.index("(Intercept)")] = 0.0
        # ... and on a unit root-mean-square scale (coefficients are unscaled in _store): the
        # fREML Newton steps then do not depend on the columns' units
        par_scale = binning.parametric_rms(Xpar, par_shift)
        par_scale = np.where(par_scale > 0, par_scale, 1.0)
        Xpar = (Xpar - par_shift) / par_scale
        rowwise_par = False
        if Xpar.shape[1]:
            Xbar, idx, rowwise_par = binning.compress(Xpar, par_shift, par_scale)
            terms.append(BinnedTerm("parametric", idx, np.ascontiguousarray(Xbar), Xbar.shape[0]))
        for sp in specs:
            if sp.kind == "s":
                self._add_smooth(fd, sp, terms, smooths, by_levels, binning)
            else:
                self._add_tensor(fd, sp, terms, smooths, binning)
        # random effects: one identity-penalized term per (factor, column), as mgcv's re smooths
        re_info = []
        zscale, zmax = {}, {}
        if fd.factors:
            primary = int(np.argmax([f.n_levels for f in fd.factors]))
            for rt in fd.terms:
                f = fd.factors[rt.factor]
                cols = ([None] if rt.intercept else []) + list(rt.slopes)
                for col, cname in zip(cols, rt.names):
                    tname = f"s({f.name})" if col is None else f"s({f.name},{fd.feature_names[col]})"
                    z = None
                    if col is not None:
                        # slopes enter on a unit root-mean-square scale (undone in _store) so that the
                        # fit does not depend on the column's units: starts and steps are scale-free
                        z = np.ascontiguousarray(fd.X[:, col])
                        rms = binning.slope_rms(col, z)
                        zscale[tname] = rms if rms > 0 else 1.0
                        z = z / zscale[tname]
                        zmax[tname] = binning.slope_absmax(col, z)
                    if rt.factor == primary:
                        t = BinnedTerm(tname, f.codes, None, f.n_levels, z=z, kind="re")
                    else:  # small factors join the dense block (explicit identity basis)
                        t = BinnedTerm(tname, f.codes, np.eye(f.n_levels), f.n_levels, z=z, S=np.eye(f.n_levels),
                                 rank=f.n_levels, kind="re")
                    terms.append(t)
                    re_info.append((tname, rt.factor, col, cname))
        seen = set()
        for t in terms:
            if t.name in seen:
                raise ValueError(f"term {t.name!r} appears twice in the model (a duplicated random-effect term?)")
            seen.add(t.name)
        return _Design(terms, smooths, re_info, par_cols, par_names, by_dummies, par_scale, zscale, zmax,
                       rowwise_par and bool(Xpar.shape[1]), par_shift)

    def _add_smooth(self, fd, sp, terms, smooths, by_levels, binning):
        """Terms of an ``s()`` smooth (with a factor by: one per level)."""
        k_, bs = self._term_options(sp)
        j = fd.feature_names.index(sp.columns[0])
        name = sp.columns[0]
        x = fd.X[:, j]
        vals, k = binning.discretize(j, x)
        if vals.size < 2:
            raise ValueError(f"smooth column {name!r} is constant: a smooth needs varying values")
        try:
            sm = make_smooth(bs, vals, k_)
        except ValueError as e:
            raise ValueError(f"smooth column {name!r}: {e}") from None
        B = sm.basis(vals)
        # centre over the data rows (exact) or the distinct values (discrete, as bam)
        cw = None if self.discrete else np.bincount(k, minlength=vals.size)
        if sp.by is None:
            c = sm.centred(B, cw)
            terms.append(BinnedTerm(f"s({name})", k, np.ascontiguousarray(B @ c.Z), vals.size, S=c.S,
                              rank=c.rank, logdet_S=c.logdet_S, kind="smooth"))
            smooths.append(_SmoothInfo(f"s({name})", j, c, *binning.range(j, x)))
            return
        byc = fd.feature_names.index(sp.by)
        if by_levels[byc].size == 0:
            # numeric by: f(x) * z, no centring constraint (mgcv drops it for a non-constant by)
            c = _Uncentred(sm, B)
            tname = f"s({name}):{sp.by}"
            terms.append(BinnedTerm(tname, k, np.ascontiguousarray(B), vals.size, z=np.ascontiguousarray(fd.X[:, byc]),
                              S=c.S, rank=c.rank, logdet_S=c.logdet_S, kind="smooth"))
            smooths.append(_SmoothInfo(tname, j, c, *binning.range(j, x), byc, None))
            return
        # by-factor: one smooth per level on the shared basis, X_l = 1{f = l} B, each with its own
        # smoothing parameter; mgcv centres each level's curve over all rows (not the level's)
        fcol = fd.X[:, byc]
        for lev in by_levels[byc]:
            ind = (fcol == lev).astype(np.float64)
            c = sm.centred(B, cw)
            tname = f"s({name}):{sp.by}{_fmt_level(lev)}"
            terms.append(BinnedTerm(tname, k, np.ascontiguousarray(B @ c.Z), vals.size, z=ind, S=c.S,
                              rank=c.rank, logdet_S=c.logdet_S, kind="smooth"))
            smooths.append(_SmoothInfo(tname, j, c, *binning.range(j, x, (byc, lev), ind > 0), byc, lev))

    def _add_tensor(self, fd, sp, terms, smooths, binning):
        """The term of a ``te()``/``ti()`` tensor product: margins discretized one by one (as bam),
        the term indexed by the distinct combinations that occur."""
        if sp.by is not None:
            raise ValueError(f"{sp.label}: by= is supported for s() terms only")
        ks, bss = self._term_options(sp)
        js = [fd.feature_names.index(c) for c in sp.columns]
        margin_vals, code, radix = [], np.zeros(fd.X.shape[0], dtype=np.int64), 1
        for jj, c in zip(js, sp.columns):
            vals, k = binning.discretize(jj, fd.X[:, jj])
            if vals.size < 2:
                raise ValueError(f"smooth column {c!r} is constant: a smooth needs varying values")
            margin_vals.append((vals, k))
            code = code * vals.size + k
            radix *= vals.size
        index, kept, counts = binning.combinations(sp.label, code, radix)
        # per-margin value of each distinct combination (last margin fastest in the code)
        rem = kept.copy()
        xs = [None] * len(js)
        for m in range(len(js) - 1, -1, -1):
            vals = margin_vals[m][0]
            xs[m] = vals[rem % vals.size]
            rem //= vals.size
        # ti: each margin centred over the data rows, so built on them (knots use unique values)
        build = binning.margin_rows(sp.label, margin_vals) if sp.kind == "ti" else [v for v, _ in margin_vals]
        try:
            ts = TensorSmooth(build, ks, bss, interaction=sp.kind == "ti")
        except ValueError as e:
            raise ValueError(f"{sp.label}: {e}") from None
        B = ts.basis(xs)
        c = ts.centred(B, counts)
        terms.append(BinnedTerm(sp.label, index, np.ascontiguousarray(B @ c.Z), kept.size, S=sum(c.S_list),
                          rank=c.rank, kind="smooth", S_list=c.S_list))
        lo, hi = zip(*[binning.range(jj, fd.X[:, jj]) for jj in js])
        lo, hi = list(lo), list(hi)
        smooths.append(_SmoothInfo(sp.label, js[0], c, lo, hi, columns=js))

    @staticmethod
    def _reference_df(lay, res):
        """mgcv's Ref.df per dense term, min(p_t, edf1_t) with edf1 = tr(2F - FF) over the term,
        F = (X'WX + S)^-1 X'WX; and the term blocks of X'WX (for the tests' R factors)."""
        Fd = res.factor
        Hinv = Fd.Hinv
        HS = Hinv @ Fd.Sd
        F = np.eye(Hinv.shape[0]) - HS
        FF = F @ F
        if lay.q and res.lam_u is not None and res.lam_u.size:
            # F_du F_ud = Hinv (sum_g M_g' diag(lambda_u) M_g) Hinv S_dd
            K = np.einsum("gqp,q,gqr->pr", Fd.M, res.lam_u, Fd.M)
            FF = FF + Hinv @ K @ HS
        ref, blocks = {}, {}
        for i, t in enumerate(lay.terms):
            if t.Xbar is None:
                continue
            c = lay.cols[i]
            e1 = 2 * np.trace(F[c, c]) - np.trace(FF[c, c])
            ref[t.name] = float(min(t.p, e1))
            blocks[t.name] = res.xtwx_dd[c, c].copy()
        return ref, blocks

    def _store(self, fd, lay, res, design, gof):
        """Fitted attributes from the fREML result; ``gof``: :func:`fit_summary_sums` of the rows."""
        terms, smooths, re_info = design.terms, design.smooths, design.re_info
        par_cols, par_names, by_dummies = design.par_cols, design.par_names, design.by_dummies
        self._re_zscale = design.zscale
        self._par_scale = design.par_scale
        self._par_shift = design.par_shift
        self._par_icpt = par_names.index("(Intercept)") if "(Intercept)" in par_names else -1
        phi = res.phi
        Hinv = res.factor.Hinv
        self._lay_cols = {t.name: lay.cols.get(i) for i, t in enumerate(terms)}
        self._smooths = smooths
        self._par_cols = par_cols
        self._by_dummies = by_dummies
        self._re_info = re_info
        self._res_beta_d = res.beta_d
        self._res_u = res.u
        self._Hinv = Hinv
        self._ref_df, self._xtwx_blocks = self._reference_df(lay, res)
        self._Uinv = res.factor.Uinv
        self._M = res.factor.M
        self._primary = None
        self._sparse_slot = {}
        for i in lay.sparse:
            self._sparse_slot[terms[i].name] = lay.slot[i]
        self.family_ = self.family
        self.scale_ = float(phi)
        self.sigma_ = float(np.sqrt(phi))
        # the fit ran on unit-rms parametric columns: add back the Jacobian so the score is bam's
        self.reml_score_ = res.reml + float(np.sum(np.log(self._par_scale)))
        self.deviance_ = res.deviance
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.n_obs_ = fd.n_obs
        # parametric
        pnames = par_names
        if pnames:
            c = self._lay_cols["parametric"]
            T = self._parametric_map()
            b = T @ res.beta_d[c]
            se = np.sqrt(np.diag(T @ Hinv[c, c] @ T.T) * phi)
        else:
            b = se = np.zeros(0)
        self.fixed_effects_ = pd.Series(b, index=pnames, name="Estimate")
        self.fixed_effects_se_ = pd.Series(se, index=pnames, name="Std. Error")
        beta = np.zeros(fd.X.shape[1])
        beta[par_cols] = b[:len(par_cols)]  # by-factor dummies have no input column: not in coef_
        self.intercept_, self.coef_ = self._sklearn_coefs(fd, beta)
        # smooths and re terms
        pen_terms = [terms[i] for i in lay.pen]
        # mgcv rescales an re term's identity penalty by max|z|^2 (smoothCon's scale.penalty
        # with the row-abs-sum norm of the one-hot x z basis); report sp on that scale
        re_scale = np.array([1.0 if t.kind != "re" or t.z is None else design.zmax[t.name] ** 2
                             for t in pen_terms])
        # a multi-penalty term's smoothing parameters are named like mgcv's: te(x2,x3)1, te(x2,x3)2
        sp_names, seen = [], {}
        for t in pen_terms:
            seen[t.name] = seen.get(t.name, 0) + 1
            sp_names.append(f"{t.name}{seen[t.name]}" if t.S_list is not None else t.name)
        self.smoothing_params_ = pd.Series(np.exp(res.rho) / np.where(re_scale > 0, re_scale, 1.0),
                                           index=sp_names, name="sp")
        self.edf_ = pd.Series({t.name: e for t, e in zip(terms, res.edf) if t.kind != "parametric"},
                              name="edf", dtype=float)
        self._edf_total = float(np.sum(res.edf))
        self.smooth_coef_ = {s.name: res.beta_d[self._lay_cols[s.name]] for s in smooths}
        lam = dict(zip([t.name for t in pen_terms], np.exp(res.rho)))
        zs = getattr(self, "_re_zscale", {})
        self.re_sd_ = pd.Series({name: float(np.sqrt(phi / lam[name])) / zs.get(name, 1.0) for name, *_ in re_info},
                                name="sd", dtype=float)
        self.random_effects_, self.cov_re_ = {}, {}
        self._re_values = {}
        for name, fi, col, cname in re_info:
            f = fd.factors[fi]
            if name in self._sparse_slot:
                v = res.u[:, self._sparse_slot[name]]
            else:
                v = res.beta_d[self._lay_cols[name]]
            self._re_values[name] = v  # on the internal (unit-rms) scale of the slope column
            df = self.random_effects_.setdefault(f.name, pd.DataFrame(index=f.levels))
            df[cname] = v / zs.get(name, 1.0)
            cov = self.cov_re_.setdefault(f.name, {})
            cov[cname] = self.re_sd_[name] ** 2
        self.cov_re_ = {k: pd.DataFrame(np.diag(list(v.values())), index=list(v), columns=list(v))
                        for k, v in self.cov_re_.items()}
        self._set_factor_attrs(fd)
        # in-sample fitted values of the fit itself (binned covariates when discrete), mgcv's
        # fitted.values; predict(X) evaluates the bases at the exact covariates instead
        # (a distributed fit keeps its rows, and so these, on the workers: None)
        self.fitted_values_ = None if res.eta is None else self._inv_link(res.eta)
        # goodness of fit as mgcv's summary
        null_dev = gof["null_dev"]
        self.null_deviance_ = null_dev
        self.deviance_explained_ = 1 - res.deviance / null_dev if null_dev > 0 else np.nan
        n = int(gof["n"])
        self.residual_df_ = n - self._edf_total
        if n > 1:
            vy = (gof["sdy2"] - gof["sdy"] ** 2 / n) / (n - 1)
            vr = (gof["sr2"] - gof["sr"] ** 2 / n) / (n - 1)
        else:
            vy = vr = np.nan
        self.r2_adj_ = float(1 - vr * (n - 1) / (vy * self.residual_df_)) if vy > 0 else np.nan
        self._n = n

    # ------------------------------------------------------------------ formulas
    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, sample_weight=None, **params):
        """Fit from an mgcv formula with lme4 bars.

        ``"y ~ s(x0, k=10, bs='cr') + s(x1, bs='ps') + te(x2, x3) + s(fac, bs='re') + z + (1 | g)"``:
        ``s()``/``te()``/``ti()`` terms (arguments ``k``, ``bs``, ``by``) are read without
        evaluating anything; ``s(g, bs='re')`` is ``(1 | g)`` and ``s(g, x, bs='re')`` is
        ``(0 + x | g)``; the parametric part and the bars go to the lme4 formula reader.
        Smooth covariates and ``by`` variables must be numeric columns (a factor ``by`` coded
        as numbers, 2 to 50 values; as for ``smooth=[(x, f)]`` its treatment dummies enter the
        parametric part).

        Parameters
        ----------
        formula : str
        data : pandas.DataFrame
        sample_weight : array-like, optional
        **params
            Other constructor parameters (``basis``/``n_knots`` dicts give defaults for terms
            that do not say ``bs=``/``k=``).

        Returns
        -------
        AdditiveMixedRegressor
            The fitted estimator; ``predict(data)`` takes a frame with the formula's columns.

        Examples
        --------
        >>> from skmixed import AdditiveMixedRegressor
        >>> from skmixed.datasets import load_gamsim_re
        >>> df = load_gamsim_re()
        >>> m = AdditiveMixedRegressor.from_formula(
        ...     "y ~ s(x0, k=8) + s(x1, bs='ps') + te(x2, x3) + s(fac, bs='re')", df)
        >>> list(m.edf_.index)
        ['s(x0)', 's(x1)', 'te(x2,x3)', 's(fac)']
        """
        if "smooth" in params:
            raise ValueError("from_formula takes the smooth terms from the formula: do not pass smooth=")
        return cls(formula=formula, **params).fit(data, sample_weight=sample_weight)

    # ------------------------------------------------------------------ prediction
    def _inv_link(self, eta):
        if self.family == "binomial":
            return 1.0 / (1.0 + np.exp(-eta))
        if self.family == "poisson":
            return np.exp(eta)
        return eta

    def _parametric_map(self):
        """``T`` with user-scale parametric coefficients ``= T @`` the internal (centred, scaled) ones."""
        T = np.diag(1.0 / self._par_scale)
        shift = getattr(self, "_par_shift", None)  # (fits saved before centring have none)
        if shift is not None and np.any(shift):
            # intercept = internal intercept - sum_j shift_j beta_j
            T[self._par_icpt] -= shift @ T
        return T

    def _design_rows(self, Xd, codes):
        """Dense-block rows (n, p_d) and primary-factor covariates (n, q), group codes."""
        n = Xd.shape[0]
        pd_ = self._Hinv.shape[0]
        D = np.zeros((n, pd_))
        if "parametric" in self._lay_cols:
            shift = getattr(self, "_par_shift", None)
            P = _parametric_matrix(Xd, self._par_cols, self._by_dummies)
            D[:, self._lay_cols["parametric"]] = (P - (0.0 if shift is None else shift)) / self._par_scale
        for s in self._smooths:
            D[:, self._lay_cols[s.name]] = s.rows(Xd)
        q = len(self._sparse_slot)
        Zu = np.zeros((n, q))
        gcode = np.full(n, -1, dtype=np.int64)
        for name, fi, col, _ in self._re_info:
            c = codes[fi] if codes else np.full(n, -1, dtype=np.int64)
            z = np.ones(n) if col is None else Xd[:, col] / self._re_zscale.get(name, 1.0)
            if name in self._sparse_slot:
                Zu[:, self._sparse_slot[name]] = z
                gcode = c
            else:
                known = np.flatnonzero(c >= 0)
                cols = self._lay_cols[name]
                D[known, cols.start + c[known]] = z[known]
        return D, Zu, gcode

    def _predict_eta(self, X, groups, return_std):
        pdata = self._prepare_predict(X, groups)
        Xd = np.ascontiguousarray(pdata.X)  # _prepare_predict kept the fitted columns
        n = Xd.shape[0]
        eta = np.empty(n)
        se = np.empty(n) if return_std else None
        for s0 in range(0, n, _PRED_CHUNK):  # bounded memory for big prediction sets
            sl = slice(s0, min(n, s0 + _PRED_CHUNK))
            D, Zu, g = self._design_rows(Xd[sl], [c[sl] for c in pdata.codes])
            e = D @ self._res_beta_d
            known = g >= 0
            if Zu.shape[1]:
                e[known] += np.einsum("iq,iq->i", Zu[known], self._res_u[g[known]])
            eta[sl] = e if pdata.offset is None else e + pdata.offset[sl]
            if return_std:
                # x'Px with the u block eliminated: (x_d - M_g' z)' H^-1 (x_d - M_g' z) + z' U_g^-1 z
                R = D.copy()
                v = np.zeros(D.shape[0])
                if Zu.shape[1] and known.any():
                    R[known] -= np.einsum("iq,iqp->ip", Zu[known], self._M[g[known]])
                    v[known] = np.einsum("iq,iqr,ir->i", Zu[known], self._Uinv[g[known]], Zu[known])
                se[sl] = np.sqrt(np.maximum(np.einsum("ip,pk,ik->i", R, self._Hinv, R) + v, 0) * self.scale_)
        return eta, se

    def predict(self, X, groups=None, return_std=False):
        """Predict the mean: conditional on the random effects for known groups, population otherwise.

        Parameters
        ----------
        X : array-like or DataFrame
        groups : array-like or DataFrame, optional
            Group labels; unseen levels and ``groups=None`` give the population prediction.
        return_std : bool, default=False
            Also return standard errors (from the Bayesian posterior covariance, mgcv's ``Vp``;
            for binomial/poisson on the response scale by the delta method).

        Returns
        -------
        y_pred : ndarray (n,)
        y_std : ndarray (n,), only with ``return_std=True``
            A formula model given a pandas DataFrame returns Series on the frame's index.
        """
        check_is_fitted(self)
        eta, se = self._predict_eta(X, groups, return_std)
        mu = self._inv_link(eta)
        if not return_std:
            return self._pandas_output(X, mu)  # a formula model given pandas: a Series on its index
        if self.family == "binomial":
            se = se * mu * (1 - mu)
        elif self.family == "poisson":
            se = se * mu
        return self._pandas_output(X, mu), self._pandas_output(X, se)

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of :meth:`predict` (conditional when ``groups`` is given)."""
        return r2_score(y, self.predict(X, groups), sample_weight=sample_weight)

    # ------------------------------------------------------------------ reporting
    def _term_R(self, name):
        """R with R'R = the term's block of X'WX (pivot-free Cholesky, eigen-floored)."""
        A = self._xtwx_blocks[name]
        ev, U = np.linalg.eigh((A + A.T) / 2)
        return (U * np.sqrt(np.maximum(ev, 0))).T

    def _smooth_tests(self):
        """Wald tests of the smooth and random-effect terms, as ``summary.gam``.

        Smooths: mgcv's ``testStat`` (Wood 2013, ``p.type=0``) with the fractional reference df.
        Random-effect terms: the Wald statistic on the rank of the term's covariance, referred
        to F (or chi-squared) with that rank (mgcv's ``reTest`` uses a chi-squared mixture;
        its statistic is the same quadratic form).
        """
        from ._gam_stats import smooth_test

        res_df = self.residual_df_ if self.family == "gaussian" else -1.0
        rows = {}
        for s in self._smooths:
            c = self._lay_cols[s.name]
            b = self._res_beta_d[c]
            V = self._Hinv[c, c] * self.scale_
            ref = self._ref_df.get(s.name, float(self.edf_[s.name]))
            stat, p, _ = smooth_test(b, V, self._term_R(s.name), ref, res_df)
            st = stat / ref if self.family == "gaussian" else stat
            rows[s.name] = (float(self.edf_[s.name]), ref, st, p)
        for name, *_ in self._re_info:
            v = self._re_values[name]
            if name in self._sparse_slot:
                sl = self._sparse_slot[name]
                # posterior covariance of one factor's effects: U^-1 + M H^-1 M' (G x G, block form)
                Ms = self._M[:, sl, :]
                V = np.diag(self._Uinv[:, sl, sl]) + Ms @ self._Hinv @ Ms.T
            else:
                c = self._lay_cols[name]
                V = self._Hinv[c, c]
            V = V * self.scale_
            ev, U = np.linalg.eigh((V + V.T) / 2)
            keep = ev > ev.max() * np.finfo(float).eps ** 0.8
            r = int(keep.sum())
            stat = float(np.sum((U[:, keep].T @ v) ** 2 / ev[keep]))
            if self.family == "gaussian":
                rows[name] = (float(self.edf_[name]), float(r), stat / r, float(stats.f.sf(stat / r, r, res_df)))
            else:
                rows[name] = (float(self.edf_[name]), float(r), stat, float(stats.chi2.sf(stat, r)))
        return rows

    def smooth_table(self) -> pd.DataFrame:
        """``summary.gam``'s table of smooth terms: edf, Ref.df, F (or Chi.sq) and p-value.

        Returns
        -------
        pandas.DataFrame indexed by term
        """
        check_is_fitted(self)
        tests = self._smooth_tests()
        head = "F" if self.family == "gaussian" else "Chi.sq"
        rows = [(name, *tests[name]) for name in self.edf_.index]
        tab = pd.DataFrame(rows, columns=["term", "edf", "Ref.df", head, "p-value"]).set_index("term")
        tab.index.name = None
        return tab

    def summary(self) -> Summary:
        """A ``summary(bam(...))``-style report: the formula, parametric coefficients, smooth-term
        tests (edf, Ref.df, F/Chi.sq, p-value printed as R does), R-sq.(adj), deviance explained."""
        from ._gam_stats import format_pval
        from ._summary import significance_stars as signif_stars

        check_is_fitted(self)
        link = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}[self.family]
        lines = [f"Family: {self.family}", f"Link function: {link}", ""]
        formula = getattr(self, "formula_", None)
        if formula:
            lines += ["Formula:", formula, ""]
        lines.append("Parametric coefficients:")
        stat = "t value" if self.family == "gaussian" else "z value"
        est, se = self.fixed_effects_, self.fixed_effects_se_
        tval = est / se
        if self.family == "gaussian":
            p = 2 * stats.t.sf(np.abs(tval), self.residual_df_)
        else:
            p = 2 * stats.norm.sf(np.abs(tval))
        pname = f"Pr(>|{stat[0]}|)"
        tab = pd.DataFrame({"Estimate": est.map("{:.5g}".format), "Std. Error": se.map("{:.5g}".format),
                            stat: tval.map("{:.3f}".format), pname: [format_pval(v) for v in p],
                            "": [signif_stars(v) for v in p]}, index=est.index)
        lines.append(tab.to_string() if len(tab) else "(none)")
        st = self.smooth_table()
        if len(st):
            head = st.columns[2]
            out = pd.DataFrame({"edf": st["edf"].map("{:.3f}".format), "Ref.df": st["Ref.df"].map("{:.3f}".format),
                                head: st[head].map("{:.3f}".format),
                                "p-value": [format_pval(v) for v in st["p-value"]],
                                "": [signif_stars(v) for v in st["p-value"]]}, index=st.index)
            lines += ["", "Approximate significance of smooth terms:", out.to_string()]
        lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
        if len(self.re_sd_):
            lines += ["", "Random-effect standard deviations (re terms):"]
            lines += [f"  {k}: {v:.5g}" for k, v in self.re_sd_.items()]
        lines += ["", f"R-sq.(adj) = {self.r2_adj_:.3g}   Deviance explained = {100 * self.deviance_explained_:.3g}%",
                  f"fREML = {self.reml_score_:.5g}  Scale est. = {self.scale_:.5g}  n = {self._n}"]
        if not self.converged_:
            lines += ["", "fREML did not converge: see converged_"]
        return Summary("\n".join(lines))

    def gam_check(self, X, y, groups=None, n_rep=400, subsample=5000, random_state=None, plot=False):
        """Basis-dimension check and residual plots, as mgcv's ``gam.check``.

        For each smooth, the k-index compares the mean squared difference of residuals of
        neighbouring points in the smooth's covariates (ordered for 1-D smooths; 3 nearest
        neighbours after mgcv's gradient scaling for tensor products) with the residual
        variance; the p-value is the share of ``n_rep`` random orderings giving a smaller
        difference (mgcv's ``k.check``).  A k-index clearly below 1 with a small p-value, and an
        edf close to k', suggest the basis dimension k is too low.

        Parameters
        ----------
        X, y, groups
            The training data (residuals are ``y`` minus the conditional prediction).
        n_rep : int, default=400
        subsample : int, default=5000
            At most this many rows (drawn at random) are used, as mgcv.
        random_state : int or Generator, optional
        plot : bool, default=False
            Also draw mgcv's four residual plots (QQ plot, residuals against the linear
            predictor, histogram, response against fitted values) with matplotlib.

        Returns
        -------
        pandas.DataFrame
            ``k'``, ``edf``, ``k-index``, ``p-value`` per smooth (NaN for random effects).
        """
        from ._gam_stats import k_index

        check_is_fitted(self)
        rng = np.random.default_rng(random_state)
        y = self._check_y_shape(y, len(X))
        y = np.asarray(y, dtype=np.float64)
        mu = self.predict(X, groups)
        resid = np.sign(y - mu) * np.sqrt(np.maximum(_unit_deviance(self.family, y, mu), 0))
        Xd = np.ascontiguousarray(self._prepare_predict(X, groups).X[:, self._keep])
        n = y.shape[0]
        ind = rng.choice(n, subsample, replace=False) if n > subsample else np.arange(n)
        rows = []
        for sm in self._smooths:
            cols = Xd[np.ix_(ind, sm.columns)]
            f_eval = None
            if sm.tensor:
                c = self._lay_cols[sm.name]
                beta = self._res_beta_d[c]

                def f_eval(M, sm=sm, beta=beta):
                    return sm.centred.basis([M[:, i] for i in range(M.shape[1])]) @ beta
            kx, pv = k_index(resid[ind], cols, f_eval, n_rep=n_rep, rng=rng)
            rows.append((sm.name, self._lay_cols[sm.name].stop - self._lay_cols[sm.name].start,
                         float(self.edf_[sm.name]), kx, pv))
        for name, *_ in self._re_info:
            rows.append((name, float(len(self._re_values[name])), float(self.edf_[name]), np.nan, np.nan))
        out = pd.DataFrame(rows, columns=["term", "k'", "edf", "k-index", "p-value"]).set_index("term")
        out.index.name = None
        if plot:
            import matplotlib.pyplot as plt  # optional dependency: imported only when plotting

            eta = self._predict_eta(X, groups, False)[0]
            fig, ax = plt.subplots(2, 2, figsize=(8, 7))
            q = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
            ax[0, 0].plot(q, np.sort(resid), ".", ms=2)
            ax[0, 0].plot(q, q * np.std(resid), color="r")
            ax[0, 0].set(xlabel="theoretical quantiles", ylabel="deviance residuals")
            ax[0, 1].plot(eta, resid, ".", ms=2)
            ax[0, 1].set(title="Resids vs. linear pred.", xlabel="linear predictor", ylabel="residuals")
            ax[1, 0].hist(resid, bins=30)
            ax[1, 0].set(title="Histogram of residuals", xlabel="Residuals")
            ax[1, 1].plot(mu, y, ".", ms=2)
            ax[1, 1].set(title="Response vs. Fitted Values", xlabel="Fitted Values", ylabel="Response")
            fig.tight_layout()
            out.attrs["figure"] = fig
        return out

    def concurvity(self, X, groups=None, max_columns=3000):
        """mgcv's ``concurvity(b, full=TRUE)``: how far each term is a function of the others.

        For each term (``para`` for the parametric part, then smooths and random-effect terms)
        with model-matrix columns X_j and the rest X_i: ``worst`` is the largest share of a
        function in X_j's span that X_i reproduces, ``observed`` the share for the fitted
        term, ``estimate`` the average share (trace ratio); 0 none, 1 total concurvity.

        Parameters
        ----------
        X, groups
            The training data (the model matrix is rebuilt from them, in chunks).
        max_columns : int, default=3000
            The measures need the model's dense Gram matrix (random effects included): refused
            with a ValueError above this many columns.

        Returns
        -------
        pandas.DataFrame
            Rows ``worst``, ``observed``, ``estimate``; one column per term.
        """
        check_is_fitted(self)
        pdata = self._prepare_predict(X, groups)
        Xd = np.ascontiguousarray(pdata.X[:, self._keep])
        G_u = self._res_u.shape[0] if self._res_u.ndim == 2 else 0
        q = len(self._sparse_slot)
        pd_ = self._Hinv.shape[0]
        ptot = pd_ + G_u * q
        if ptot > max_columns:
            raise ValueError(f"concurvity needs a dense {ptot} x {ptot} Gram matrix (more than max_columns="
                             f"{max_columns})")
        Gm = np.zeros((ptot, ptot))
        n = Xd.shape[0]
        for s0 in range(0, n, _PRED_CHUNK):
            sl = slice(s0, min(n, s0 + _PRED_CHUNK))
            D, Zu, g = self._design_rows(Xd[sl], [c[sl] for c in pdata.codes])
            full = np.zeros((D.shape[0], ptot))
            full[:, :pd_] = D
            known = np.flatnonzero(g >= 0)
            for r in range(q):
                full[known, pd_ + g[known] * q + r] = Zu[known, r]
            Gm += full.T @ full
        beta = np.zeros(ptot)
        beta[:pd_] = self._res_beta_d
        if q:
            beta[pd_:] = self._res_u.ravel()
        blocks = []
        if "parametric" in self._lay_cols:
            blocks.append(("para", np.arange(pd_)[self._lay_cols["parametric"]]))
        for name in self.edf_.index:
            if name in self._lay_cols and self._lay_cols[name] is not None:
                blocks.append((name, np.arange(pd_)[self._lay_cols[name]]))
            elif name in self._sparse_slot:
                blocks.append((name, pd_ + np.arange(G_u) * q + self._sparse_slot[name]))
        out = {}
        allc = np.arange(ptot)
        for name, jc in blocks:
            ic = np.setdiff1d(allc, jc)
            Gjj = Gm[np.ix_(jc, jc)]
            Gij = Gm[np.ix_(ic, jc)]
            P = Gij.T @ np.linalg.lstsq(Gm[np.ix_(ic, ic)], Gij, rcond=None)[0]  # Xj'Xi (Xi'Xi)^- Xi'Xj
            P = (P + P.T) / 2
            L = np.linalg.cholesky(Gjj + 1e-12 * np.trace(Gjj) / len(jc) * np.eye(len(jc)))
            Li = np.linalg.inv(L)
            worst = float(np.linalg.eigvalsh(Li @ P @ Li.T).max())
            b = beta[jc]
            observed = float(b @ P @ b / (b @ Gjj @ b)) if b @ Gjj @ b > 0 else np.nan
            out[name] = (worst, observed, float(np.trace(P) / np.trace(Gjj)))
        return pd.DataFrame(out, index=["worst", "observed", "estimate"])

    def partial_effect(self, term, n_points=100):
        """Partial effect of a smooth on a grid with its standard error.

        Parameters
        ----------
        term : str
            Smooth term name (``"s(x0)"``) or its column name (``"x0"``).
        n_points : int, default=100

        Returns
        -------
        pandas.DataFrame with columns ``x``, ``fit``, ``se``
        """
        check_is_fitted(self)
        s = self._find_smooth(term)
        if s.tensor:
            raise ValueError(f"{s.name} is a tensor product of {len(s.columns)} covariates: partial_effect "
                             "draws 1-D smooths (evaluate it on a grid with predict)")
        x = np.linspace(s.lo, s.hi, n_points)
        B = s.centred.basis(x)
        c = self._lay_cols[s.name]
        fit = B @ self._res_beta_d[c]
        se = np.sqrt(np.maximum(np.einsum("ip,pk,ik->i", B, self._Hinv[c, c], B), 0) * self.scale_)
        return pd.DataFrame({"x": x, "fit": fit, "se": se})

    def _find_smooth(self, term):
        for s in self._smooths:
            if term in (s.name, s.name[2:s.name.index(")")]) and (term == s.name or s.by is None):
                return s
        raise ValueError(f"{term!r} is not a smooth term; smooth terms: {[s.name for s in self._smooths]}")

    def plot_partial(self, term, ax=None, n_points=100, level=0.95, rug=None):
        """Plot a smooth's partial effect with a pointwise confidence band (as ``plot.gam``).

        Parameters
        ----------
        term : str
            Smooth term (``"s(x0)"`` or ``"x0"``).
        ax : matplotlib Axes, optional
        n_points : int, default=100
        level : float, default=0.95
            Coverage of the band.
        rug : array-like, optional
            Covariate values to mark along the x axis (``plot.gam``'s rug), e.g. ``df["x0"]``.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt  # optional dependency: imported only when plotting

        pe = self.partial_effect(term, n_points)
        z = stats.norm.ppf(0.5 + level / 2)
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(pe["x"], pe["fit"], color="k")
        ax.fill_between(pe["x"], pe["fit"] - z * pe["se"], pe["fit"] + z * pe["se"], alpha=0.3)
        s = self._find_smooth(term)
        if rug is not None:
            r = np.asarray(rug, dtype=np.float64).ravel()
            if r.size > 10_000:  # a rug of distinct values says the same
                r = np.unique(r)
            ax.plot(r, np.zeros_like(r), "|", color="k", ms=8, transform=ax.get_xaxis_transform())
        ax.set_xlabel(s.name[2:s.name.index(")")])
        ax.set_ylabel(f"{s.name}, edf={self.edf_[s.name]:.2f}")
        return ax

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _spec_text(sp: SmoothSpec) -> str:
    """A parsed smooth term written back as text (what ``smooth=`` stores)."""
    args = list(sp.columns)
    for key in ("k", "bs"):
        v = getattr(sp, key)
        if v is not None:
            args.append(f"{key}={v!r}")
    if sp.by is not None:
        args.append(f"by={sp.by}")
    return f"{sp.kind}({', '.join(args)})"


def _unit_deviance(family, y, mu):
    if family == "gaussian":
        return (y - mu) ** 2
    if family == "binomial":
        mu = np.clip(mu, 1e-10, 1 - 1e-10)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0.0)
            b = np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1) / (1 - mu)), 0.0)
        return 2 * (a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0.0)
    return 2 * (a - (y - mu))


# ------------------------------------------------------------------ seams for the distributed fit (skmixed.dask)
def validated_rows(est: AdditiveMixedRegressor, X, y, groups=None, sample_weight=None):
    """``(fd, names_all)``: the validated rows of ``X`` (a :class:`~skmixed._base.FitData`, response
    checked against the family) and the input column names; sets ``est``'s input-validation state."""
    fd = fit_inputs(est, X, y, groups, sample_weight, chunk=True, reset=True)
    est._check_y_family(fd.y)
    return fd, est._input_names(X, fd.n_design - int(has_intercept(est)))


def smooth_specs(est: AdditiveMixedRegressor, names):
    """The smooth terms of ``est`` over the input columns ``names`` (:class:`SmoothSpec` per term)."""
    return est._smooth_specs(names)


def model_terms(est: AdditiveMixedRegressor, fd, names_all, binning):
    """The model's binned terms for ``fd`` with every data-dependent choice asked of ``binning``."""
    return est._model_terms(fd, names_all, binning)


def store_fit(est: AdditiveMixedRegressor, fd, lay, res, design, gof) -> None:
    """Set ``est``'s fitted attributes from the fREML result ``res`` (``gof``: :func:`fit_summary_sums`)."""
    est._store(fd, lay, res, design, gof)


def inverse_link(est: AdditiveMixedRegressor, eta):
    """The mean from the linear predictor ``eta`` under ``est``'s family."""
    return est._inv_link(eta)
