"""Exact fit of MixedLinearRegressor on a Dask DataFrame: a map-reduce of per-group statistics.

A linear mixed model needs only per-level cross-product blocks, which are sums
over rows. Each partition's :class:`~skmixed._solvers.lmm_stats.GroupedStats`
is computed on the workers (one pass over the partition's rows), the statistics
are added up in a tree (``split_every`` at a time, levels matched by label, so a
group may span partitions), and the variance parameters are optimised on the
driver, whose work does not depend on the number of rows. The result is the
exact fit, the same as ``fit`` on the concatenated rows.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone

from .._base import NoGroupsWarning, adopt_formula, fit_inputs, has_intercept, offset_response
from .._design.formula import FormulaSpec, parse_formula
from .._progress import dask_progress
from .._solvers.lmm_stats import GroupedStats
from ..linear import fit_grouped_stats
from ._common import as_list, plain_strings, tree_sum


def _partition_stats(df: pd.DataFrame, est, how: dict):
    """GroupedStats of one partition (None when it is empty)."""
    if len(df) == 0:
        return None
    # _prepare_fit sets state on the estimator (its formula, n_features_in_): on the threaded
    # scheduler the partitions share the driver's object, so each works on its own copy (a shared
    # one raced: a partition read another's half-reset formula and built different terms)
    est = copy.copy(est)
    w = df[how["weights"]] if how["weights"] is not None else None
    if how["formula"] is not None:
        # the estimator's formula is the driver's FormulaSpec: the same coding on every partition,
        # its expressions checked against the whitelist again here, on the worker
        X, y, groups = plain_strings(df), None, None
    else:
        X = df[how["X"]]
        y = df[how["y"]]
        groups = df[how["groups"]] if how["groups"] is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)  # the driver warns once
        # a formula's offset(): the LMM's statistics are those of y - offset, as in fit
        fd = offset_response(fit_inputs(est, X, y, groups, w, chunk=True, reset=True))
    return GroupedStats.from_rows(fd.X, fd.y, fd.weights, fd.factors, fd.terms, fd.feature_names)


def _merge(parts):
    parts = [p for p in parts if p is not None]
    return GroupedStats.merge(parts) if parts else None


def _formula_setup(est, formula: str, ddf):
    """Give ``est`` the formula state ``from_formula`` gives it, from a level-complete prototype.

    formulaic takes a categorical column's levels from the data it sees, so the
    model spec is built on a small prototype frame whose non-numeric columns carry
    *all* levels present in ``ddf`` (one cheap pass computes them): every
    partition then gets the same dummy columns, as one in-memory frame would.
    """
    import dask
    from formulaic import Formula

    parsed = parse_formula(formula)
    if parsed.response not in ddf.columns:
        raise ValueError(f"response {parsed.response!r} not in the dask DataFrame")
    needed = sorted(v for v in Formula(parsed.fixed).required_variables if v in ddf.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "fewer rows than requested": fine for a prototype
        proto = ddf.head(50, npartitions=1, compute=True)
    if len(proto) == 0:  # an empty first partition: look further
        proto = ddf.head(50, npartitions=-1, compute=True)
    if len(proto) == 0:
        raise ValueError("the dask DataFrame has no rows")
    cat_cols = [c for c in needed if not pd.api.types.is_numeric_dtype(ddf[c].dtype)
                or pd.api.types.is_bool_dtype(ddf[c].dtype)]
    if cat_cols:
        uniques = dask.compute(*[ddf[c].dropna().unique() for c in cat_cols])
        for c, u in zip(cat_cols, uniques):
            levels = pd.Index(pd.unique(np.asarray(u, dtype=object)))
            try:
                levels = levels.sort_values()
            except TypeError:
                pass
            proto[c] = pd.Categorical(proto[c].astype(object).to_numpy(), categories=levels)
    spec, _, _ = FormulaSpec.build(formula, proto)
    est.set_params(formula=spec)
    return spec


def fit_linear_dask(estimator, ddf, formula=None, *, y=None, X=None, groups=None, sample_weight=None,
                    split_every=8, verbose=False):
    """The linear branch of :func:`skmixed.dask.fit_dask` (see there)."""
    import dask
    from dask import delayed

    if not hasattr(ddf, "to_delayed") or not hasattr(ddf, "columns"):
        raise TypeError("ddf must be a dask DataFrame")
    if int(split_every) < 2:
        raise ValueError("split_every must be at least 2")
    est = clone(estimator)
    if formula is None and isinstance(getattr(est, "formula", None), str):
        formula = est.formula  # the estimator's own formula parameter
    weights = sample_weight
    if weights is not None and getattr(est, "weights", "frequency") == "precision":
        raise ValueError("the distributed fit accumulates frequency weights only; weights='precision' needs fit")
    if weights is not None and weights not in ddf.columns:
        raise ValueError(f"sample_weight column {weights!r} not in the dask DataFrame")
    if formula is not None:
        if y is not None or X is not None or groups is not None:
            raise ValueError("give either formula or y/X/groups column names, not both")
        spec = _formula_setup(est, formula, ddf)
        how = {"formula": formula, "weights": weights}
    else:
        Xc, gc = as_list(X), as_list(groups)
        if y is None or Xc is None:
            raise ValueError("give a formula, or the column names y= and X= (and groups=)")
        missing = [c for c in [y] + Xc + (gc or []) if c not in ddf.columns]
        if missing:
            raise ValueError(f"column(s) {missing} not in the dask DataFrame")
        how = {"formula": None, "X": Xc, "y": y, "groups": gc, "weights": weights}
        if gc is None and est.group_column is None:
            # the workers' warnings stay on the workers: say it here
            warnings.warn("fit_dask got no groups (and no group_column): fitting the fixed-effects part only",
                          NoGroupsWarning, stacklevel=2)
    parts = [delayed(_partition_stats)(p, est, how) for p in ddf.to_delayed()]
    with dask_progress(verbose, desc="fit_dask: partitions"):
        (total,) = dask.compute(tree_sum(parts, int(split_every), _merge))
    if total is None:
        raise ValueError("the dask DataFrame has no rows")
    # what validate_data would have set on the concatenated frame
    if formula is not None:
        adopt_formula(est, spec)  # what the workers' input validation set on their copies
    names_in = list(total.feature_names[int(has_intercept(est)):])
    if formula is None:
        names_in = list(how["X"])
    est.feature_names_in_ = np.asarray(names_in, dtype=object)
    est.n_features_in_ = len(names_in)
    fit_grouped_stats(est, total)
    if formula is not None:
        est.formula_ = formula
    return est
