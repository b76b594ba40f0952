"""AdditiveMixedRegressor: mgcv ``bam(..., discrete=TRUE)`` additive mixed models, sklearn-style."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from ._base import MixedModelBase
from ._design.smooths import SMOOTHS, make_smooth
from ._kernels.binned import discretize, index_few_values, remap_codes
from ._solvers.freml import FAMILIES, Layout, Term, fit_freml
from ._summary import Summary

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
    """What predict / plots need of a fitted smooth (``by``: factor column and level, or None)."""

    def __init__(self, name, column, centred, lo, hi, by=None, level=None):
        self.name, self.column, self.centred, self.lo, self.hi = name, column, centred, lo, hi
        self.by, self.level = by, level


def _fmt_level(v):
    return str(int(v)) if float(v).is_integer() else str(v)


def _parametric_matrix(Xd, par_cols, by_dummies):
    """Parametric columns plus treatment dummies of by-factors (level == value)."""
    cols = [Xd[:, par_cols]] + [(Xd[:, [b]] == lv[None, :]).astype(np.float64) for b, lv in by_dummies]
    return np.ascontiguousarray(np.hstack(cols)) if cols else np.empty((Xd.shape[0], 0))


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
        The other columns enter linearly.
    basis : {"cr", "ps"}, default="cr"
        Cubic regression spline (mgcv ``bs="cr"``) or P-spline (``bs="ps"``).
    n_knots : int, default=10
        Basis dimension k of every smooth (mgcv's ``k``); one is lost to centring.
    discrete : bool, default=True
        Discretize smooth covariates (``bam(discrete=TRUE)``); ``False`` is the exact fit.
    family : {"gaussian", "binomial", "poisson"}, default="gaussian"
        Response distribution (identity, logit and log link).
    fit_intercept : bool, default=True
    random_slopes : list of str or int, optional
        Columns with a random slope per level of every grouping factor (``s(g, x, bs="re")``).
    group_column : str, int or list, optional
        Column(s) of X holding the group labels (instead of ``groups``).

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

    def __init__(self, smooth=None, basis="cr", n_knots=10, discrete=True, family="gaussian",
                 fit_intercept=True, random_slopes=None, group_column=None):
        self.smooth = smooth
        self.basis = basis
        self.n_knots = n_knots
        self.discrete = discrete
        self.family = family
        self.fit_intercept = fit_intercept
        self.random_slopes = random_slopes
        self.group_column = group_column

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        if self.basis not in SMOOTHS:
            raise ValueError(f"basis must be one of {sorted(SMOOTHS)}, got {self.basis!r}")
        if not isinstance(self.n_knots, numbers.Integral) or isinstance(self.n_knots, bool) or self.n_knots < 3:
            raise ValueError(f"n_knots must be an integer >= 3, got {self.n_knots!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {self.family!r}")

    def _smooth_indices(self, names):
        """Resolve ``smooth`` to (position, by-position or None) among the non-group columns."""
        sm = self.smooth
        if sm is None:
            return []
        sm = [sm] if isinstance(sm, (str, numbers.Integral)) else list(sm)

        def pos(c):
            if isinstance(c, str) and c in names:
                return names.index(c)
            if isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < len(names):
                return int(c)
            raise ValueError(f"smooth column {c!r} is not a column name or index of X (columns: {names})")

        out = []
        for s in sm:
            if isinstance(s, tuple):
                if len(s) != 2:
                    raise ValueError(f"a by-smooth is given as (column, by_column), got {s!r}")
                out.append((pos(s[0]), pos(s[1])))
            else:
                out.append((pos(s), None))
        if len(set(out)) != len(out):
            raise ValueError("smooth lists a term twice")
        if {j for j, _ in out} & {b for _, b in out if b is not None}:
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
    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit the additive mixed model.

        Parameters
        ----------
        X : array-like or DataFrame, shape (n, p)
        y : array-like, shape (n,)
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
        self._check_y_family(fd.y)
        icpt = int(bool(self.fit_intercept))
        # smooth columns are named/indexed among the input columns (before aliased ones are dropped)
        names_all = self._input_names(X, fd.n_design - icpt)
        spec = [(names_all[i], None if b is None else names_all[b]) for i, b in self._smooth_indices(names_all)]
        missing = [c for pair in spec for c in pair if c is not None and c not in fd.feature_names]
        if missing:
            raise ValueError(f"smooth column(s) {missing} are aliased with other columns")
        spec = [(fd.feature_names.index(a), None if b is None else fd.feature_names.index(b)) for a, b in spec]
        sm_cols = [a for a, _ in spec]
        n = fd.X.shape[0]
        # ---- design (all validation before any fitted attribute is set)
        terms, smooths = [], []
        # by-factor columns enter the parametric part as treatment dummies (mgcv: y ~ f + s(x, by=f))
        by_cols = sorted({b for _, b in spec if b is not None})
        by_levels = {}
        for b in by_cols:
            lev, _ = index_few_values(np.ascontiguousarray(fd.X[:, b]), 50)
            if lev.size < 2:
                raise ValueError(f"by column {fd.feature_names[b]!r} needs 2 to 50 distinct values (a factor)")
            by_levels[b] = lev
        par_cols = [j for j in range(fd.X.shape[1]) if j not in sm_cols and j not in by_cols]
        by_dummies = [(b, by_levels[b][1:] if icpt else by_levels[b]) for b in by_cols]
        par_names = [fd.feature_names[j] for j in par_cols] + [
            f"{fd.feature_names[b]}{_fmt_level(v)}" for b, lv in by_dummies for v in lv]
        Xpar = _parametric_matrix(fd.X, par_cols, by_dummies)
        if Xpar.shape[1]:
            Xbar, idx = _compress_rows(Xpar)
            terms.append(Term("parametric", idx, np.ascontiguousarray(Xbar), Xbar.shape[0]))
        for j, byc in spec:
            name = fd.feature_names[j]
            x = fd.X[:, j]
            vals, k = discretize(x, _MAX_BINS, exact=not self.discrete)
            if vals.size < 2:
                raise ValueError(f"smooth column {name!r} is constant: a smooth needs varying values")
            try:
                sm = make_smooth(self.basis, vals, self.n_knots)
            except ValueError as e:
                raise ValueError(f"smooth column {name!r}: {e}") from None
            B = sm.basis(vals)
            if byc is None:
                # centre over the data rows (exact) or the distinct values (discrete, as bam)
                c = sm.centred(B, None if self.discrete else np.bincount(k, minlength=vals.size))
                terms.append(Term(f"s({name})", k, np.ascontiguousarray(B @ c.Z), vals.size, S=c.S,
                                  rank=c.rank, logdet_S=c.logdet_S, kind="smooth"))
                smooths.append(_SmoothInfo(f"s({name})", j, c, float(x.min()), float(x.max())))
                continue
            # by-factor: one smooth per level on the shared basis, X_l = 1{f = l} B, each with its own
            # smoothing parameter; mgcv centres each level's curve over all rows (not the level's)
            fcol = fd.X[:, byc]
            for lev in by_levels[byc]:
                ind = (fcol == lev).astype(np.float64)
                c = sm.centred(B, None if self.discrete else np.bincount(k, minlength=vals.size))
                tname = f"s({name}):{fd.feature_names[byc]}{_fmt_level(lev)}"
                terms.append(Term(tname, k, np.ascontiguousarray(B @ c.Z), vals.size, z=ind, S=c.S,
                                  rank=c.rank, logdet_S=c.logdet_S, kind="smooth"))
                sel = ind > 0
                smooths.append(_SmoothInfo(tname, j, c, float(x[sel].min()), float(x[sel].max()), byc, lev))
        # random effects: one identity-penalized term per (factor, column), as mgcv's re smooths
        re_info = []
        if fd.factors:
            primary = int(np.argmax([f.n_levels for f in fd.factors]))
            for rt in fd.terms:
                f = fd.factors[rt.factor]
                cols = ([None] if rt.intercept else []) + list(rt.slopes)
                for col, cname in zip(cols, rt.names):
                    tname = f"s({f.name})" if col is None else f"s({f.name},{fd.feature_names[col]})"
                    z = None if col is None else np.ascontiguousarray(fd.X[:, col])
                    if rt.factor == primary:
                        t = Term(tname, f.codes, None, f.n_levels, z=z, kind="re")
                    else:  # small factors join the dense block (explicit identity basis)
                        t = Term(tname, f.codes, np.eye(f.n_levels), f.n_levels, z=z, S=np.eye(f.n_levels),
                                 rank=f.n_levels, kind="re")
                    terms.append(t)
                    re_info.append((tname, rt.factor, col, cname))
        lay = Layout(terms, n)
        pw = np.ones(n) if fd.weights is None else fd.weights
        res = fit_freml(lay, fd.y, pw, self.family)
        self._store(fd, lay, res, terms, smooths, re_info, par_cols, par_names, by_dummies)
        return self

    def _store(self, fd, lay, res, terms, smooths, re_info, par_cols, par_names, by_dummies):
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
        self._Uinv = res.factor.Uinv
        self._M = res.factor.M
        self._primary = None
        self._sparse_slot = {}
        for i in lay.sparse:
            self._sparse_slot[terms[i].name] = lay.slot[i]
        self.family_ = self.family
        self.scale_ = float(phi)
        self.sigma_ = float(np.sqrt(phi))
        self.reml_score_ = res.reml
        self.deviance_ = res.deviance
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.n_obs_ = fd.n_obs
        # parametric
        pnames = par_names
        if pnames:
            c = self._lay_cols["parametric"]
            b = res.beta_d[c]
            se = np.sqrt(np.diag(Hinv[c, c]) * phi)
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
        re_scale = np.array([1.0 if t.kind != "re" or t.z is None else float(np.max(np.abs(t.z))) ** 2
                             for t in pen_terms])
        self.smoothing_params_ = pd.Series(np.exp(res.rho) / np.where(re_scale > 0, re_scale, 1.0),
                                           index=[t.name for t in pen_terms], name="sp")
        self.edf_ = pd.Series({t.name: e for t, e in zip(terms, res.edf) if t.kind != "parametric"},
                              name="edf", dtype=float)
        self._edf_total = float(np.sum(res.edf))
        self.smooth_coef_ = {s.name: res.beta_d[self._lay_cols[s.name]] for s in smooths}
        lam = dict(zip([t.name for t in pen_terms], np.exp(res.rho)))
        self.re_sd_ = pd.Series({name: float(np.sqrt(phi / lam[name])) for name, *_ in re_info},
                                name="sd", dtype=float)
        self.random_effects_, self.cov_re_ = {}, {}
        self._re_values = {}
        for name, fi, col, cname in re_info:
            f = fd.factors[fi]
            if name in self._sparse_slot:
                v = res.u[:, self._sparse_slot[name]]
            else:
                v = res.beta_d[self._lay_cols[name]]
            self._re_values[name] = v
            df = self.random_effects_.setdefault(f.name, pd.DataFrame(index=f.levels))
            df[cname] = v
            cov = self.cov_re_.setdefault(f.name, {})
            cov[cname] = self.re_sd_[name] ** 2
        self.cov_re_ = {k: pd.DataFrame(np.diag(list(v.values())), index=list(v), columns=list(v))
                        for k, v in self.cov_re_.items()}
        self._set_factor_attrs(fd)
        # in-sample fitted values of the fit itself (binned covariates when discrete), mgcv's
        # fitted.values; predict(X) evaluates the bases at the exact covariates instead
        self.fitted_values_ = self._inv_link(res.eta)
        # goodness of fit as mgcv's summary
        y, w = fd.y, (np.ones_like(fd.y) if fd.weights is None else fd.weights)
        mu = self._inv_link(res.eta)
        ybar = np.sum(w * y) / np.sum(w)
        if self.family == "gaussian":
            null_dev = float(np.sum(w * (y - ybar) ** 2))
        else:
            null_dev = float(np.sum(_unit_deviance(self.family, y, np.full_like(y, ybar)) * w))
        self.null_deviance_ = null_dev
        self.deviance_explained_ = 1 - res.deviance / null_dev if null_dev > 0 else np.nan
        n = fd.X.shape[0]
        self.residual_df_ = n - self._edf_total
        r = y - mu
        vy = np.var(y, ddof=1) if n > 1 else np.nan
        self.r2_adj_ = float(1 - np.var(r, ddof=1) * (n - 1) / (vy * self.residual_df_)) if vy > 0 else np.nan
        self._n = n

    # ------------------------------------------------------------------ prediction
    def _inv_link(self, eta):
        if self.family == "binomial":
            return 1.0 / (1.0 + np.exp(-eta))
        if self.family == "poisson":
            return np.exp(eta)
        return eta

    def _design_rows(self, Xd, codes):
        """Dense-block rows (n, p_d) and primary-factor covariates (n, q), group codes."""
        n = Xd.shape[0]
        pd_ = self._Hinv.shape[0]
        D = np.zeros((n, pd_))
        if "parametric" in self._lay_cols:
            D[:, self._lay_cols["parametric"]] = _parametric_matrix(Xd, self._par_cols, self._by_dummies)
        for s in self._smooths:
            Bx = s.centred.basis(Xd[:, s.column])
            if s.by is not None:
                Bx *= (Xd[:, s.by] == s.level)[:, None]
            D[:, self._lay_cols[s.name]] = Bx
        q = len(self._sparse_slot)
        Zu = np.zeros((n, q))
        gcode = np.full(n, -1, dtype=np.int64)
        for name, fi, col, _ in self._re_info:
            c = codes[fi] if codes else np.full(n, -1, dtype=np.int64)
            z = np.ones(n) if col is None else Xd[:, col]
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
            eta[sl] = e
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
        """
        check_is_fitted(self)
        eta, se = self._predict_eta(X, groups, return_std)
        mu = self._inv_link(eta)
        if not return_std:
            return mu
        if self.family == "binomial":
            se = se * mu * (1 - mu)
        elif self.family == "poisson":
            se = se * mu
        return mu, se

    def score(self, X, y, groups=None, sample_weight=None):
        """R^2 of :meth:`predict` (conditional when ``groups`` is given)."""
        return r2_score(y, self.predict(X, groups), sample_weight=sample_weight)

    # ------------------------------------------------------------------ reporting
    def _smooth_tests(self):
        """Approximate Wald tests of smooth terms (rank-truncated, Wood 2013's simpler variant)."""
        rows = {}
        for s in self._smooths:
            c = self._lay_cols[s.name]
            b = self._res_beta_d[c]
            V = self._Hinv[c, c] * self.scale_
            edf = float(self.edf_[s.name])
            r = int(max(1, min(len(b), np.ceil(edf - 0.05))))
            ev, U = np.linalg.eigh(V)
            ev, U = ev[::-1][:r], U[:, ::-1][:, :r]
            stat = float(np.sum((U.T @ b) ** 2 / ev))
            if self.family == "gaussian":
                F = stat / r
                p = float(stats.f.sf(F, r, self.residual_df_))
                rows[s.name] = (edf, r, F, p)
            else:
                rows[s.name] = (edf, r, stat, float(stats.chi2.sf(stat, r)))
        return rows

    def summary(self) -> Summary:
        """A ``summary(bam(...))``-style report."""
        check_is_fitted(self)
        link = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}[self.family]
        lines = [f"Family: {self.family}", f"Link function: {link}", "", "Parametric coefficients:"]
        stat = "t value" if self.family == "gaussian" else "z value"
        est, se = self.fixed_effects_, self.fixed_effects_se_
        tval = est / se
        if self.family == "gaussian":
            p = 2 * stats.t.sf(np.abs(tval), self.residual_df_)
        else:
            p = 2 * stats.norm.sf(np.abs(tval))
        tab = pd.DataFrame({"Estimate": est, "Std. Error": se, stat: tval, f"Pr(>|{stat[0]}|)": p})
        with pd.option_context("display.float_format", "{:.5g}".format, "display.width", 120):
            lines.append(tab.to_string())
            lines += ["", "Approximate significance of smooth terms:"]
            tests = self._smooth_tests()
            rows = []
            for name, edf in self.edf_.items():
                if name in tests:
                    _, r, st, pv = tests[name]
                    rows.append((name, edf, r, st, pv))
                else:
                    rows.append((name, edf, np.nan, np.nan, np.nan))
            head = "F" if self.family == "gaussian" else "Chi.sq"
            st = pd.DataFrame(rows, columns=["term", "edf", "Ref.df", head, "p-value"]).set_index("term")
            st.index.name = None
            lines.append(st.to_string())
        if len(self.re_sd_):
            lines += ["", "Random-effect standard deviations (re terms):"]
            lines += [f"  {k}: {v:.5g}" for k, v in self.re_sd_.items()]
        lines += ["", f"R-sq.(adj) = {self.r2_adj_:.4f}   Deviance explained = {100 * self.deviance_explained_:.1f}%",
                  f"fREML = {self.reml_score_:.5g}  Scale est. = {self.scale_:.5g}  n = {self._n}"]
        if not self.converged_:
            lines += ["", "fREML did not converge: see converged_"]
        return Summary("\n".join(lines))

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

    def plot_partial(self, term, ax=None, n_points=100, level=0.95):
        """Plot a smooth's partial effect with a pointwise confidence band (as ``plot.gam``).

        Parameters
        ----------
        term : str
            Smooth term (``"s(x0)"`` or ``"x0"``).
        ax : matplotlib Axes, optional
        n_points : int, default=100
        level : float, default=0.95
            Coverage of the band.

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
        ax.set_xlabel(s.name[2:s.name.index(")")])
        ax.set_ylabel(f"{s.name}, edf={self.edf_[s.name]:.2f}")
        return ax

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


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
