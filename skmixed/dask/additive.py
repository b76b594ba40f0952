"""Exact fit of AdditiveMixedRegressor (``discrete=True``) on a Dask DataFrame.

bam's discretization makes the additive model a function of binned statistics:
every term is a small matrix of distinct (binned) rows plus a per-row index, and
every fREML iteration needs only sums over rows of the pair accumulators
(:func:`skmixed._kernels.binned.binned_pass`). Those sums add over partitions
*if every partition bins the same way*, so the fit runs in passes:

1. per column: range, distinct values (up to 1000), sum of squares; factor levels;
2. with the global ranges: the grid points that occur (a column with more than
   1000 distinct values is rounded to 1000 points over its global range, as bam),
   the tensor products' margin combinations and counts, the parametric block's
   distinct rows and scales, ranges of a smooth within each level of its ``by``;
3. each partition builds its terms with these global choices (the model's own
   :meth:`~skmixed.AdditiveMixedRegressor._model_terms`, asked through
   :class:`GlobalBinning`) and keeps them on its worker; the driver runs the
   fREML solver unchanged on a layout whose pass sums the partitions' passes
   (one pass for the Gaussian family, one per PIRLS iteration for the others).

The result equals the in-memory fit of the concatenated rows up to the order of
floating-point sums. Rows never leave the workers: ``fitted_values_`` is None
(``predict_dask`` gives the fitted values).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone

from .._base import FitData, NoGroupsWarning, check_params, fit_inputs, has_intercept
from .._design.grouping import GroupingFactor
from .._kernels.binned import GAUSSIAN, _round_to_grid, index_few_values
from .._solvers.freml import BinnedLayout, fit_freml
from ..additive import (_MAX_BINS, _parametric_matrix, fit_summary_sums, inverse_link, model_terms, smooth_specs,
                        store_fit, validated_rows)
from ._common import Runner, as_list, build_parts, default_client

_FEW = _MAX_BINS  # distinct values kept exactly (more: a grid over the range)

__all__ = ["fit_additive_dask"]


# ----------------------------------------------------------------- worker side
def _validated(df, est, how):
    """(estimator copy, FitData, input names) of one partition's rows."""
    est = clone(est)
    X = df[how["X"]]
    y = df[how["y"]]
    g = df[how["groups"]] if how["groups"] is not None else None
    w = df[how["weights"]] if how["weights"] is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)  # the driver warns once
        fd, names_all = validated_rows(est, X, y, g, w)
    return est, fd, names_all


def _pass1(df, est, how):
    """Row count, response sums, per-column range / distinct values / sum of squares, factor levels."""
    if len(df) == 0:
        return None
    est, fd, names_all = _validated(df, est, how)
    w = np.ones(fd.y.size) if fd.weights is None else fd.weights
    cols = []
    for j in range(fd.X.shape[1]):
        x = np.ascontiguousarray(fd.X[:, j])
        vals, _ = index_few_values(x, _FEW)
        cols.append((float(x.min()), float(x.max()), vals if vals.size else None, float(x @ x)))
    return {"n": fd.y.size, "sw": float(w.sum()), "swy": float(w @ fd.y), "sy": float(fd.y.sum()),
            "syy": float(fd.y @ fd.y), "cols": cols, "levels": [f.levels for f in fd.factors],
            "factor_names": [f.name for f in fd.factors], "names": list(fd.feature_names), "terms": fd.terms,
            "n_design": fd.n_design, "names_all": names_all}


def _raw_index(x, col):
    """Index of x among a column's exact values, or on its (unreduced) grid."""
    if col["grid"] is None:
        return np.searchsorted(col["table"], x)
    lo, dx = col["grid"]
    return _round_to_grid(np.ascontiguousarray(x), lo, dx, _MAX_BINS)


def _pass2(df, est, how, plan):
    """Occurring grid points, tensor combinations (with counts), parametric sums and distinct rows,
    and ranges of smooth columns within the levels of their ``by``."""
    if len(df) == 0:
        return None
    est, fd, _ = _validated(df, est, how)
    out = {"grid": {}, "combos": {}, "by_range": {}}
    for j, col in plan["cols"].items():
        if col["grid"] is not None:
            out["grid"][j] = np.unique(_raw_index(fd.X[:, j], col))
    for label, js in plan["tensors"].items():
        code = np.zeros(fd.X.shape[0], dtype=np.int64)
        for j in js:
            col = plan["cols"][j]
            code = code * col["raw_size"] + _raw_index(fd.X[:, j], col)
        out["combos"][label] = np.unique(code, return_counts=True)
    Xpar = _parametric_matrix(fd.X, plan["par_cols"], plan["by_dummies"])
    out["par_ss"] = (Xpar * Xpar).sum(axis=0)
    out["par_sum"] = Xpar.sum(axis=0)
    if plan["par_tables"] is not None:
        code = np.zeros(Xpar.shape[0], dtype=np.int64)
        radix = 1
        for j, table in enumerate(plan["par_tables"]):
            code += np.searchsorted(table, Xpar[:, j]) * radix
            radix *= table.size
        out["par_codes"] = np.unique(code)
    for (j, b, lev) in plan["by_ranges"]:
        sel = fd.X[:, b] == lev
        x = fd.X[sel, j]
        out["by_range"][(j, b, lev)] = (float(x.min()), float(x.max())) if x.size else (np.inf, -np.inf)
    return out


class GlobalBinning:
    """The whole data's design choices (see :class:`skmixed.additive.RowBinning`), for any rows."""

    def __init__(self, info):
        self.info = info

    def discretize(self, j, x):
        col = self.info["cols"][j]
        raw = _raw_index(x, col)
        if col["grid"] is None:
            return col["vals"], raw.astype(np.int64)
        return col["vals"], np.searchsorted(col["kept"], raw).astype(np.int64)

    def few_values(self, j, x, m):
        table = self.info["cols"][j]["table"]
        return table if table is not None and table.size <= m else np.empty(0)

    def range(self, j, x, level=None, sel=None):
        if level is None:
            return self.info["cols"][j]["range"]
        return self.info["by_range"][(j,) + tuple(level)]

    def parametric_rms(self, Xpar, shift=None):
        if shift is None or not np.any(shift):
            return self.info["par_rms"]
        # E (x - s)^2 from the sums (the in-memory fit takes it from the rows)
        ms = self.info["par_rms"] ** 2 - 2.0 * shift * self.info["par_mean"] + shift * shift
        return np.sqrt(np.maximum(ms, 0.0))

    def parametric_mean(self, Xpar):
        return self.info["par_mean"]

    def slope_rms(self, col, z):
        return self.info["cols"][col]["rms"]

    def slope_absmax(self, col, z):
        lo, hi = self.info["cols"][col]["range"]
        rms = self.info["cols"][col]["rms"]
        return float(max(abs(lo), abs(hi)) / (rms if rms > 0 else 1.0))

    def compress(self, Xpar, shift=None, scale=None):
        raw = self.info["par_raw_tables"]
        if raw is None:  # continuous columns: the block stays row by row, on the worker
            return Xpar, np.arange(Xpar.shape[0], dtype=np.int64), True
        if shift is None:
            shift = np.zeros(len(raw))
        if scale is None:
            scale = np.where(self.info["par_rms"] > 0, self.info["par_rms"], 1.0)
        # the distinct values of each column, transformed as the rows are
        tables = [(t - c) / s for t, c, s in zip(raw, shift, scale)]
        kept = self.info["par_kept"]
        Xbar = np.empty((kept.size, len(tables)))
        rem = kept.copy()
        for j, t in enumerate(tables):
            Xbar[:, j] = t[rem % t.size]
            rem //= t.size
        code = np.zeros(Xpar.shape[0], dtype=np.int64)
        radix = 1
        for j, table in enumerate(tables):
            code += np.searchsorted(table, Xpar[:, j]) * radix
            radix *= table.size
        return Xbar, np.searchsorted(kept, code).astype(np.int64), False

    def combinations(self, label, code, radix):
        kept, counts = self.info["combos"][label]
        return np.searchsorted(kept, code).astype(np.int64), kept, counts

    def margin_rows(self, label, margin_vals):
        raise ValueError(f"{label}: ti() terms are not supported by the distributed fit (their margins are "
                         "centred over the rows); use te() or fit in memory")


def _global_fd(est, fd, info):
    """``fd`` with the factors' codes on the whole data's levels."""
    import dataclasses

    factors = []
    for f, levels in zip(fd.factors, info["levels"]):
        idx = levels.get_indexer(f.levels)
        factors.append(GroupingFactor(f.name, np.ascontiguousarray(idx[f.codes], dtype=np.int64), levels))
    return dataclasses.replace(fd, factors=factors)


def _rowwise(design, n_total):
    return [design.rowwise_parametric if t.name == "parametric"
            else (t.Xbar is not None and t.m > max(n_total // 4, 1000)) for t in design.terms]


class _Part:
    """One partition's terms (global bins and codes) and its rows, resident on a worker."""

    def __init__(self, df, est, how, info):
        est, fd, names_all = _validated(df, est, how)
        fd = _global_fd(est, fd, info)
        design = model_terms(est, fd, names_all, GlobalBinning(info))
        self.lay = BinnedLayout(design.terms, fd.X.shape[0], rowwise=_rowwise(design, info["n"]), plan_n=info["n"])
        self.y = np.ascontiguousarray(fd.y, dtype=np.float64)
        self.pw = np.ones(self.y.size) if fd.weights is None else np.ascontiguousarray(fd.weights)

    def pass_(self, fam, V, beta):
        from .._kernels.binned import binned_pass
        from .._threads import effective_n_threads

        lay, init = self.lay, V is None
        if init:
            V, beta = np.zeros(lay.vtot), np.zeros(lay.btot_beta)
        buf, r, _, dev, zWz = binned_pass(lay.K, lay.Zm, self.y, self.pw, fam, init, V, beta, lay.Xflat, lay.tinfo,
                                          lay.pinfo, lay.btot, lay.rtot, max(1, effective_n_threads()))
        return buf, r, dev, zWz

    def summary(self, est, V, beta, ybar):
        from .._kernels.binned import linear_predictor

        lay = self.lay
        eta = linear_predictor(lay.K, lay.Zm, V, beta, lay.Xflat, lay.tinfo, lay.n)
        return fit_summary_sums(est.family, self.y, self.pw, inverse_link(est, eta), ybar)


def _build_part(df, est, how, info):
    return None if len(df) == 0 else _Part(df, est, how, info)


def _run_pass(p, fam, V, beta):
    return p.pass_(fam, V, beta)


def _run_summary(p, est, V, beta, ybar):
    return p.summary(est, V, beta, ybar)


# ----------------------------------------------------------------- driver side
class DistributedLayout(BinnedLayout):
    """The driver's layout: the whole data's plan, no rows; its pass is the sum of the partitions'."""

    def __init__(self, terms, rowwise, n_total, runner, y_variance):
        super().__init__(terms, 0, rowwise=rowwise, plan_n=n_total)
        self.n = n_total
        self.runner = runner
        self._y_variance = y_variance

    def _coefs(self, beta_d, u):
        if beta_d is None:
            return None, None
        return self.fitted_values(beta_d, u)

    def pass_(self, y, pw, fam, beta_d=None, u=None):
        V, beta = self._coefs(beta_d, u)
        k = len(self.runner.parts)
        outs = self.runner.map(_run_pass, [fam] * k, [V] * k, [beta] * k)
        buf = np.sum([o[0] for o in outs], axis=0)
        r = np.sum([o[1] for o in outs], axis=0)
        return buf, r, None, float(sum(o[2] for o in outs)), float(sum(o[3] for o in outs))

    def response_variance(self, y):
        return self._y_variance

    def linear_predictor(self, beta_d, u):
        return None  # the rows are on the workers

    def fit_deviance(self, y, pw, beta_d, u):
        return None, self.pass_(None, None, GAUSSIAN, beta_d, u)[3]


def _merge_pass1(stats):
    first = stats[0]
    n = int(sum(s["n"] for s in stats))
    cols = []
    for j in range(len(first["cols"])):
        per = [s["cols"][j] for s in stats]
        lo, hi = min(c[0] for c in per), max(c[1] for c in per)
        tables = [c[2] for c in per]
        table = None
        if all(t is not None for t in tables):
            table = np.unique(np.concatenate(tables))
            if table.size > _FEW:
                table = None
        cols.append({"range": (lo, hi), "table": table, "rms": float(np.sqrt(sum(c[3] for c in per) / n))})
    levels = []
    for k, name in enumerate(first["factor_names"]):
        parts = [s["levels"][k] for s in stats]
        union = parts[0].append(parts[1:]) if len(parts) > 1 else parts[0]
        f = GroupingFactor.from_labels(pd.Series(union.unique()), name=name)
        if f.n_levels < 2:
            raise ValueError(f"grouping factor {name!r} has only one level; a random effect needs at least 2")
        levels.append(f.levels)
    sw = sum(s["sw"] for s in stats)
    sy, syy = sum(s["sy"] for s in stats), sum(s["syy"] for s in stats)
    return {"n": n, "sw": sw, "ybar": sum(s["swy"] for s in stats) / sw, "y_var": max(syy / n - (sy / n) ** 2, 0.0),
            "cols": cols, "levels": levels}


def _plan_pass2(est, first, info):
    """What pass 2 must look at: smooth columns' bins, tensors, the parametric block, by ranges."""
    names = first["names"]
    col = names.index
    specs = smooth_specs(est, first["names_all"])
    icpt = int(has_intercept(est))
    sm_cols = sorted({col(c) for sp in specs for c in sp.columns if c in names})
    by_cols = sorted({col(sp.by) for sp in specs if sp.by is not None and sp.by in names})
    cols = {}
    for j in sm_cols:
        c = info["cols"][j]
        if c["table"] is not None:
            c.update(vals=c["table"], grid=None, raw_size=c["table"].size)
        else:
            lo, hi = c["range"]
            c.update(grid=(lo, (hi - lo) / (_MAX_BINS - 1)), raw_size=_MAX_BINS)
        cols[j] = c
    tensors = {sp.label: [col(c) for c in sp.columns] for sp in specs if sp.kind != "s"}
    by_levels = {}
    for b in by_cols:
        t = info["cols"][b]["table"]
        by_levels[b] = t if t is not None and t.size <= 50 else np.empty(0)
    fac_by = [b for b in by_cols if by_levels[b].size > 0]
    by_dummies = [(b, by_levels[b][1:] if icpt else by_levels[b]) for b in fac_by]
    par_cols = [j for j in range(len(names)) if j not in sm_cols and j not in by_cols]
    # distinct rows of the parametric block as _compress_rows finds them (<= 64 values a column,
    # <= 4096 combinations), else row by row
    tables = [info["cols"][j]["table"] for j in par_cols] + [np.array([0.0, 1.0]) for _, lv in by_dummies
                                                              for _ in lv]
    radix = 1
    for t in tables:
        if t is None or t.size > 64:
            tables = None
            break
        radix *= t.size
        if radix > 4096:
            tables = None
            break
    by_ranges = [(col(sp.columns[0]), col(sp.by), float(lev)) for sp in specs
                 if sp.kind == "s" and sp.by is not None and col(sp.by) in fac_by for lev in by_levels[col(sp.by)]]
    return {"cols": cols, "tensors": tensors, "par_cols": par_cols, "by_dummies": by_dummies,
            "par_tables": tables, "by_ranges": by_ranges}


def _merge_pass2(stats, info, plan):
    n = info["n"]
    for j, c in plan["cols"].items():
        if c["grid"] is not None:
            kept = np.unique(np.concatenate([s["grid"][j] for s in stats]))
            lo, dx = c["grid"]
            c.update(kept=kept, vals=lo + kept * dx)
    combos = {}
    for label, js in plan["tensors"].items():
        raw = np.concatenate([s["combos"][label][0] for s in stats])
        cnt = np.concatenate([s["combos"][label][1] for s in stats]).astype(np.float64)
        uniq, inv = np.unique(raw, return_inverse=True)
        counts = np.bincount(inv.ravel(), weights=cnt, minlength=uniq.size)
        # raw (per-margin exact or grid) indices -> the margins' final indices, folded as _add_tensor
        rem, idx = uniq.copy(), []
        for j in reversed(js):
            c = plan["cols"][j]
            k = rem % c["raw_size"]
            rem //= c["raw_size"]
            idx.append(k if c["grid"] is None else np.searchsorted(c["kept"], k))
        code = np.zeros(uniq.size, dtype=np.int64)
        for j, k in zip(js, reversed(idx)):
            code = code * plan["cols"][j]["vals"].size + k
        combos[label] = (code, counts)  # raw order = final order (the index maps are increasing)
    par_ss = np.sum([s["par_ss"] for s in stats], axis=0)
    par_rms = np.sqrt(par_ss / n)
    par_mean = np.sum([s["par_sum"] for s in stats], axis=0) / n
    info.update(combos=combos, par_rms=par_rms, par_mean=par_mean, par_raw_tables=None)
    if plan["par_tables"] is not None:
        kept = np.unique(np.concatenate([s["par_codes"] for s in stats]))
        # scaled (and centred) by GlobalBinning.compress, as the model transforms the rows
        info.update(par_raw_tables=list(plan["par_tables"]), par_kept=kept)
    by_range = {}
    for key in plan["by_ranges"]:
        rs = [s["by_range"][key] for s in stats]
        by_range[key] = (min(r[0] for r in rs), max(r[1] for r in rs))
    info["by_range"] = by_range
    info["cols"] = [plan["cols"].get(j, c) for j, c in enumerate(info["cols"])]


def fit_additive_dask(estimator, ddf, *, y, X, groups=None, sample_weight=None):
    """Exact fREML fit of an AdditiveMixedRegressor (``discrete=True``) on a Dask DataFrame."""
    import dask
    from dask import delayed

    est = clone(estimator)
    check_params(est)
    if not est.discrete:
        raise ValueError("the distributed additive fit needs discrete=True (bam's binned covariates)")
    if est.formula is not None:
        raise ValueError("the distributed additive fit takes column names (y=, X=, groups=) and smooth=, "
                         "not a formula")
    Xc, gc = as_list(X), as_list(groups)
    missing = [c for c in [y] + Xc + (gc or []) + ([sample_weight] if sample_weight else []) if c not in ddf.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the dask DataFrame")
    how = {"X": Xc, "y": y, "groups": gc, "weights": sample_weight}
    if gc is None and est.group_column is None:
        warnings.warn("fit_dask got no groups (and no group_column): fitting without random effects",
                      NoGroupsWarning, stacklevel=3)
    parts = ddf.to_delayed()
    s1 = [s for s in dask.compute(*[delayed(_pass1)(p, est, how) for p in parts]) if s is not None]
    if not s1:
        raise ValueError("the dask DataFrame has no rows")
    info = _merge_pass1(s1)
    plan = _plan_pass2(est, s1[0], info)
    s2 = [s for s in dask.compute(*[delayed(_pass2)(p, est, how, plan) for p in parts]) if s is not None]
    _merge_pass2(s2, info, plan)
    client = default_client()
    runner = Runner(build_parts([delayed(_build_part)(p, est, how, info) for p in parts], client), client)
    # the driver: the validation state of a fit (names, factors) and the terms without rows
    head = ddf.head(5, npartitions=-1, compute=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_inputs(est, head[Xc], head[y], head[gc] if gc else None, None, chunk=True, reset=True)
    first = s1[0]
    fd0 = FitData(np.empty((0, len(first["names"]))), np.empty(0), None, first["names"],
                  [GroupingFactor(name, np.empty(0, dtype=np.int64), lv) for name, lv in
                   zip(first["factor_names"], info["levels"])],
                  first["terms"], np.arange(first["n_design"]), first["n_design"], n_obs_total=info["sw"])
    design = model_terms(est, fd0, first["names_all"], GlobalBinning(info))
    lay = DistributedLayout(design.terms, _rowwise(design, info["n"]), info["n"], runner, info["y_var"])
    res = fit_freml(lay, None, None, est.family)
    V, beta = lay.fitted_values(res.beta_d, res.u)
    k = len(runner.parts)
    sums = runner.map(_run_summary, [clone(est)] * k, [V] * k, [beta] * k, [info["ybar"]] * k)
    gof = {key: float(sum(s[key] for s in sums)) for key in sums[0]}
    store_fit(est, fd0, lay, res, design, gof)
    return est
