"""Exact Laplace fit of a GLMM with several grouping factors (crossed or nested) on a Dask DataFrame.

The multi-factor solver (:class:`skmixed._solvers.glmm.MultiFactorGLMM`) touches
the rows in two places only: the cross-products of the PIRLS working model (one
weighted pass, :func:`skmixed._solvers.lmm.cross_products`) and the deviance at
the current coefficients. Both are sums over rows, so they add over partitions
as long as every partition fills the blocks of the *same* layout. The fit
therefore runs

1. a pass for the factors' levels, the columns' moments (the in-memory fit's
   column scaling), X'WX (aliased columns), the log-likelihood constant;
2. a pass for the distinct combinations of the factors' codes: the driver builds
   the whole data's :class:`~skmixed._design.layout.BlockLayout` from them;
3. each partition becomes a worker-resident ``MultiFactorGLMM`` on that layout,
   and the driver runs the solver unchanged on a row-free problem whose two row
   passes are the sums of the partitions' (rows never leave the workers; no
   shuffle is needed: a level may span partitions).

Every optimiser step sees the in-memory numbers up to the order of floating-point
sums, so the estimates agree with the in-memory fit to optimiser noise.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from .._base import FitData
from .._design.grouping import GroupingFactor
from .._design.layout import BlockLayout, amalgamate
from .._design.scaling import ColumnScaling
from .._design.terms import RandomTerm
from .._solvers import glmm as sg
from .._solvers.lmm import drop_aliased
from ..logistic import finish_fit, glmm_family
from ._common import Runner, build_parts, default_client

__all__ = ["fit_crossed_glmm_dask"]


# ----------------------------------------------------------------- worker side
def _meta(df, est, how, classes, validate):
    """Levels, column moments, X'WX and sums of one partition (None when empty)."""
    if len(df) == 0:
        return None
    fd = validate(df, est, how, classes)
    w = np.ones(fd.y.size) if fd.weights is None else fd.weights
    sw = float(w.sum())
    mean = (w @ fd.X) / sw
    return {"levels": [f.levels for f in fd.factors], "factor_names": [f.name for f in fd.factors],
            "names": list(fd.feature_names), "terms": fd.terms, "n_design": fd.n_design, "n": fd.y.size,
            "sw": sw, "swy": float(w @ fd.y), "mean": mean, "m2": w @ (fd.X - mean) ** 2,
            "ss": np.sum(fd.X ** 2, axis=0), "xtwx": (fd.X * w[:, None]).T @ fd.X,
            "ones": np.all(fd.X == 1.0, axis=0), "const": glmm_family(est).loglik_constant(fd.y, w)}


def _global_codes(fd, levels):
    return [levels[k].get_indexer(f.levels)[f.codes].astype(np.int64) for k, f in enumerate(fd.factors)]


def _key(codes, radix):
    key = np.zeros(codes[0].size, dtype=np.int64)
    for c, r in zip(codes, radix):
        key = key * r + c
    return key


def _combinations(df, est, how, classes, validate, levels, radix):
    """Distinct combinations of the factors' (global) codes in one partition, as int64 keys."""
    if len(df) == 0:
        return None
    fd = validate(df, est, how, classes)
    return np.unique(_key(_global_codes(fd, levels), radix))


def _build(df, est, how, classes, validate, info):
    """One partition as a MultiFactorGLMM on the whole data's layout (scaled, kept columns)."""
    if len(df) == 0:
        return None
    fd = validate(df, est, how, classes)
    codes = _global_codes(fd, info["levels"])
    lay = info["layout"]
    t = np.searchsorted(info["keys"], _key(codes, info["radix"]))
    part_layout = dataclasses.replace(lay, row_slot=np.ascontiguousarray(lay.row_slot[t]),
                                      codes1=np.ascontiguousarray(lay.codes1[t]),
                                      dense_codes=np.ascontiguousarray(lay.dense_codes[t]))
    X = info["scaling"].apply(np.ascontiguousarray(fd.X[:, info["keep"]]))
    w = np.ones(fd.y.size) if fd.weights is None else fd.weights
    factors = [GroupingFactor(f.name, c, lv) for f, c, lv in zip(fd.factors, codes, info["levels"])]
    return sg.MultiFactorGLMM(X, np.ascontiguousarray(fd.y, dtype=np.float64), w, factors, info["blocks"],
                              family=glmm_family(est), layout=part_layout)


def _cross_products(prob, lams, beta, u, joint):
    return prob.working_cross_products(lams, beta, u, joint)


def _deviance(prob, lams, beta, u):
    return prob.deviance(lams, beta, u)


# ----------------------------------------------------------------- driver side
class DistributedMultiFactorGLMM(sg.MultiFactorGLMM):
    """The solver's problem without rows: its two row passes are the partitions' sums."""

    def __init__(self, runner, layout, blocks, family):
        self.runner = runner
        self.family = family
        self.blocks = blocks
        self.layout = layout
        self.off = np.zeros(1)  # the start values' one summary row has no offset
        self._init_parameters(blocks, layout.p)

    def _each(self, *args):
        k = len(self.runner.parts)
        return [[a] * k for a in args]

    def working_cross_products(self, lams, beta, u, joint):
        parts = self.runner.map(_cross_products, *self._each(lams, beta, u, joint))
        total = parts[0]
        for cp in parts[1:]:
            total = total + cp
        return total

    def deviance(self, lams, beta, u):
        return float(sum(self.runner.map(_deviance, *self._each(lams, beta, u))))


def _merge_meta(metas):
    levels = []
    for k, name in enumerate(metas[0]["factor_names"]):
        parts = [m["levels"][k] for m in metas]
        union = parts[0].append(parts[1:]) if len(parts) > 1 else parts[0]
        f = GroupingFactor.from_labels(pd.Series(union.unique()), name=name)
        if f.n_levels < 2:
            raise ValueError(f"grouping factor {name!r} has only one level; a random effect needs at least 2")
        levels.append(f.levels)
    sw = sum(m["sw"] for m in metas)
    n = sum(m["n"] for m in metas)
    mean = sum(m["sw"] * m["mean"] for m in metas) / sw
    m2 = sum(m["m2"] + m["sw"] * (m["mean"] - mean) ** 2 for m in metas)
    return {"levels": levels, "sw": sw, "n": n, "ybar": sum(m["swy"] for m in metas) / sw, "mean": mean,
            "sd": np.sqrt(np.maximum(m2 / sw, 0.0)), "rms": np.sqrt(sum(m["ss"] for m in metas) / n),
            "xtwx": sum(m["xtwx"] for m in metas), "ones": np.logical_and.reduce([m["ones"] for m in metas]),
            "const": float(sum(m["const"] for m in metas))}


def fit_crossed_glmm_dask(estimator, ddf, *, X, y, groups, sample_weight, classes, validate):
    """Laplace fit of a MixedLogisticRegressor / MixedPoissonRegressor with several grouping factors.

    ``validate(df, est, how, classes)`` gives a partition's FitData (the response coded as the
    estimator fits it); ``classes``: the logistic model's two labels (None for Poisson).
    """
    import dask
    from dask import delayed

    est = estimator
    if int(est.nagq) > 1:
        raise ValueError("nAGQ > 1 is only available for models with a single, scalar random-effects "
                         "term (one grouping factor, random intercept or one random slope)")
    how = {"X": X, "y": y, "groups": groups, "weights": sample_weight}
    parts = ddf.to_delayed()
    metas = [m for m in dask.compute(*[delayed(_meta)(p, est, how, classes, validate) for p in parts])
             if m is not None]
    if not metas:
        raise ValueError("the dask DataFrame has no rows")
    info = _merge_meta(metas)
    first = metas[0]
    names, p_full = first["names"], len(first["names"])
    keep = drop_aliased(info["xtwx"])
    if keep.size < p_full:
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {p_full - keep.size} column(s): "
                      f"{[names[k] for k in range(p_full) if k not in set(keep.tolist())]}", UserWarning,
                      stacklevel=3)
    remap = {int(o): i for i, o in enumerate(keep)}
    terms = [RandomTerm(t.factor, t.intercept, tuple(remap[s] for s in t.slopes), t.names) for t in first["terms"]]
    kept_names = [names[k] for k in keep]
    n_levels = [lv.size for lv in info["levels"]]
    blocks = amalgamate(terms, n_levels)
    rms = info["rms"][keep]
    scaling = ColumnScaling.from_moments(info["mean"][keep], info["sd"][keep], lambda j: rms[j], kept_names, terms)
    # the whole data's layout, from the distinct combinations of the factors' codes
    radix = [int(n) for n in n_levels]
    if np.sum(np.log2(radix)) > 62:
        raise ValueError("too many combinations of grouping levels for the distributed fit")
    keys = np.unique(np.concatenate([k for k in dask.compute(
        *[delayed(_combinations)(p, est, how, classes, validate, info["levels"], radix) for p in parts])
        if k is not None]))
    codes, rem = [None] * len(radix), keys.copy()
    for k in range(len(radix) - 1, -1, -1):
        codes[k] = rem % radix[k]
        rem //= radix[k]
    layout = BlockLayout.build(blocks, codes, keep.size)
    info.update(layout=layout, keys=keys, radix=radix, keep=keep, scaling=scaling, blocks=blocks)
    client = default_client()
    runner = Runner(build_parts([delayed(_build)(p, est, how, classes, validate, info) for p in parts], client),
                    client)
    prob = DistributedMultiFactorGLMM(runner, dataclasses.replace(layout, row_slot=layout.row_slot[:0],
                                                                  codes1=layout.codes1[:0],
                                                                  dense_codes=layout.dense_codes[:0]),
                                      blocks, glmm_family(est))
    # start values from one summary row: the columns that are 1 on every row (scaled), the weighted mean of y
    ones = info["ones"][keep] & ((1.0 - scaling.center) * scaling.scale == 1.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = sg.fit_multi_factor(ones.astype(np.float64)[None, :], np.array([info["ybar"]]), np.ones(1), None,
                                  blocks, nagq=int(est.nagq), tol=float(est.tol), max_iter=int(est.max_iter),
                                  family=glmm_family(est), problem=prob)
    factors = [GroupingFactor(name, np.empty(0, dtype=np.int64), lv)
               for name, lv in zip(first["factor_names"], info["levels"])]
    fd = FitData(np.empty((0, keep.size)), np.empty(0), None, kept_names, factors, terms, keep, first["n_design"],
                 n_obs_total=info["sw"])
    finish_fit(est, fd, blocks, res, scaling, info["const"])
    return est, res
