"""Fitting and prediction on Dask DataFrames (``pip install skmixed[dask]``).

A linear mixed model needs only per-level cross-product blocks, which are sums
over rows. :func:`fit_lmm` / :func:`fit_dask` therefore compute each partition's
:class:`~skmixed._solvers.lmm_stats.GroupedStats` on the workers (one pass over
the partition's rows), add them up in a tree (``split_every`` at a time, levels
matched by label, so a group may span partitions), and optimise the variance
parameters on the driver, whose work does not depend on the number of rows. The
result is the exact fit, the same as ``fit`` on the concatenated rows.

Everything here runs on whatever Dask scheduler is active: the local threaded
one, or a ``dask.distributed`` cluster once a ``Client`` exists.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone

from ._base import NoGroupsWarning
from ._progress import dask_progress
from ._design.formula import FormulaSpec, parse_formula
from ._solvers.lmm_stats import GroupedStats
from .linear import MixedLinearRegressor

__all__ = ["fit_dask", "fit_lmm", "fit_glmm", "predict_dask"]


def _require_dask():
    try:
        import dask  # noqa: F401
        import dask.dataframe  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("skmixed.dask needs dask[dataframe]: pip install 'skmixed[dask]'") from e


def _as_list(cols):
    if cols is None:
        return None
    return [cols] if isinstance(cols, str) else list(cols)


# ----------------------------------------------------------------- per-partition work (runs on workers)
def _plain_strings(df: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed string columns (dask's default) as object: formulaic only encodes the latter."""
    cols = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)
            or str(df[c].dtype).startswith(("string", "large_string"))]
    if not cols:
        return df
    return df.assign(**{c: df[c].astype(object) for c in cols})


def _partition_stats(df: pd.DataFrame, est, how: dict):
    """GroupedStats of one partition (None when it is empty)."""
    if len(df) == 0:
        return None
    w = df[how["weights"]] if how["weights"] is not None else None
    if how["formula"] is not None:
        # the estimator's formula is the driver's FormulaSpec: the same coding on every partition,
        # its expressions checked against the whitelist again here, on the worker
        X, y, groups = _plain_strings(df), None, None
    else:
        X = df[how["X"]]
        y = df[how["y"]]
        groups = df[how["groups"]] if how["groups"] is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)  # the driver warns once
        # a formula's offset(): the LMM's statistics are those of y - offset, as in fit
        fd = est._offset_response(est._prepare_fit(X, y, groups, w, chunk=True, reset=True))
    return GroupedStats.from_rows(fd.X, fd.y, fd.weights, fd.factors, fd.terms, fd.feature_names)


def _merge(parts):
    parts = [p for p in parts if p is not None]
    return GroupedStats.merge(parts) if parts else None


def _tree_sum(delayed_parts, split_every):
    """Delayed tree reduction of partition statistics, ``split_every`` at a time."""
    from dask import delayed

    level = list(delayed_parts)
    while len(level) > 1:
        level = [delayed(_merge)(level[i:i + split_every]) for i in range(0, len(level), split_every)]
    return level[0]


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


# ----------------------------------------------------------------- public API
def fit_dask(estimator, ddf, formula=None, *, y=None, X=None, groups=None, sample_weight=None,
             split_every=8, shuffle=True, verbose=False):
    """Fit a mixed model exactly on a Dask DataFrame.

    ``MixedLinearRegressor``: map-reduce of per-group statistics (partitions in
    any order, groups may span partitions). ``MixedLogisticRegressor`` (one
    grouping factor, column names): the rows are shuffled so that each group
    lives in one partition, the partitions stay on the workers, and every
    optimiser step of the in-memory algorithm evaluates its per-group Laplace
    (or AGQ) terms and gradients there, summed on the driver: the exact fit.

    Parameters
    ----------
    estimator : MixedLinearRegressor or MixedLogisticRegressor
        Unfitted template; its parameters are used, a fitted clone is returned.
    ddf : dask.dataframe.DataFrame
    formula : str, optional
        lme4 formula (``"y ~ x + (1 + x | g)"``); alternatively give ``y``, ``X``
        and ``groups`` as column names.
    y : str, optional
        Response column.
    X : list of str, optional
        Fixed-effects columns (random slopes are chosen by the estimator's
        ``random_slopes``, by name). With ``group_column`` set, include it here.
    groups : str or list of str, optional
        Grouping column(s), one per grouping factor.
    sample_weight : str, optional
        Column of frequency weights.
    split_every : int, default=8
        Fan-in of the tree reduction (linear model).
    shuffle : bool, default=True
        Logistic model: shuffle the rows by group first (pass False when every
        group already lives in one partition).
    verbose : bool, default=False
        Linear model: a tqdm progress bar over the pass through the partitions
        (local Dask schedulers; a distributed cluster shows it on its dashboard).

    Returns
    -------
    estimator
        The fitted clone; equal to the in-memory ``fit`` / ``from_formula`` on
        the concatenated partitions.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.dask import fit_dask
    >>> from skmixed.datasets import make_big_grouped_data
    >>> df = make_big_grouped_data(20_000, 40, seed=0)
    >>> ddf = dd.from_pandas(df, npartitions=4)
    >>> m = fit_dask(MixedLinearRegressor(), ddf, y="y", X=["x", "b"], groups="g")
    >>> full = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    >>> bool(np.allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8))
    True
    """
    _require_dask()
    import dask
    from dask import delayed

    from .logistic import MixedLogisticRegressor

    if isinstance(estimator, MixedLogisticRegressor):
        if formula is not None:
            raise ValueError("the distributed logistic fit takes column names (y=, X=, groups=), not a formula")
        if y is None or X is None or groups is None:
            raise ValueError("give the column names y=, X= and groups=")
        from ._dask_glmm import fit_logistic_dask

        return fit_logistic_dask(estimator, ddf, y=y, X=X, groups=groups, sample_weight=sample_weight,
                                 shuffle=shuffle)
    if not isinstance(estimator, MixedLinearRegressor):
        raise TypeError(f"fit_dask supports MixedLinearRegressor and MixedLogisticRegressor, got "
                        f"{type(estimator).__name__}")
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
        Xc, gc = _as_list(X), _as_list(groups)
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
        (total,) = dask.compute(_tree_sum(parts, int(split_every)))
    if total is None:
        raise ValueError("the dask DataFrame has no rows")
    # what validate_data would have set on the concatenated frame
    if formula is not None:
        est._formula = spec  # what the workers' _prepare_fit set on their copies
    names_in = list(total.feature_names[int(est._has_intercept()):])
    if formula is None:
        names_in = list(how["X"])
    est.feature_names_in_ = np.asarray(names_in, dtype=object)
    est.n_features_in_ = len(names_in)
    est._stats = None
    est._fit_stats(total, unfit="raise")
    if formula is not None:
        est.formula_ = formula
    return est


def fit_lmm(ddf, formula=None, *, y=None, X=None, groups=None, sample_weight=None, split_every=8, **params):
    """Fit a :class:`~skmixed.MixedLinearRegressor` on a Dask DataFrame (see :func:`fit_dask`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    formula : str, optional
    y, X, groups, sample_weight : column names, optional
    split_every : int, default=8
    **params
        ``MixedLinearRegressor`` parameters (``reml``, ``random_slopes``, ...);
        ``verbose=True`` also shows the pass through the partitions.

    Returns
    -------
    MixedLinearRegressor
        Fitted.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed.dask import fit_lmm, predict_dask
    >>> from skmixed.datasets import load_sleepstudy
    >>> ddf = dd.from_pandas(load_sleepstudy(), npartitions=3)
    >>> m = fit_lmm(ddf, "Reaction ~ Days + (Days | Subject)")
    >>> m.fixed_effects_.round(3).tolist()
    [251.405, 10.467]
    >>> predict_dask(m, ddf).compute().shape
    (180,)
    """
    return fit_dask(MixedLinearRegressor(**params), ddf, formula, y=y, X=X, groups=groups,
                    sample_weight=sample_weight, split_every=split_every, verbose=params.get("verbose", False))


def fit_glmm(ddf, *, y, X, groups, sample_weight=None, shuffle=True, **params):
    """Fit a :class:`~skmixed.MixedLogisticRegressor` on a Dask DataFrame (see :func:`fit_dask`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    y, X, groups, sample_weight : column names
        One grouping column.
    shuffle : bool, default=True
        Shuffle rows by group first (``ddf.shuffle(on=groups)``).
    **params
        ``MixedLogisticRegressor`` parameters (``nagq``, ``random_slopes``, ...).

    Returns
    -------
    MixedLogisticRegressor
        Fitted; equal to the in-memory fit up to optimiser noise.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed import MixedLogisticRegressor
    >>> from skmixed.dask import fit_glmm
    >>> from skmixed.datasets import make_big_grouped_data
    >>> df = make_big_grouped_data(4_000, 40, seed=0)
    >>> m = fit_glmm(dd.from_pandas(df, npartitions=2), y="y_bin", X=["x", "b"], groups="g")
    >>> full = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    >>> bool(np.allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-6))
    True
    """
    from .logistic import MixedLogisticRegressor

    return fit_dask(MixedLogisticRegressor(**params), ddf, y=y, X=X, groups=groups,
                    sample_weight=sample_weight, shuffle=shuffle)


def _predict_partition(df: pd.DataFrame, model, X, groups, name, method):
    if len(df) == 0:
        return pd.Series(np.empty(0), index=df.index, name=name)  # dask casts to the meta's dtype
    fn = getattr(model, method)
    if X is None:  # formula model: predict takes the frame
        pred = fn(_plain_strings(df))
    else:
        pred = fn(df[X], groups=df[groups] if groups else None)
    pred = np.asarray(pred)
    if pred.ndim == 2:  # predict_proba: the probability of the second (positive) class
        pred = pred[:, -1]
    if not (method == "predict" and hasattr(model, "classes_")):
        pred = pred.astype(np.float64)
    return pd.Series(pred, index=df.index, name=name)


def predict_dask(model, ddf, X=None, groups=None, name="prediction", method="predict"):
    """Predict partition by partition; returns a Dask Series aligned with ``ddf``.

    Parameters
    ----------
    model : fitted skmixed estimator
    ddf : dask.dataframe.DataFrame
    X : list of str, optional
        Feature columns; default the model's ``feature_names_in_`` (formula
        models take the whole frame).
    groups : str or list of str, optional
        Grouping columns; default the model's grouping factor names when ``ddf``
        has them all (conditional prediction), else population prediction.
    name : str, default="prediction"
    method : {"predict", "predict_proba", "decision_function"}, default="predict"
        Which method of the model to map; ``predict_proba`` gives the
        probability of the positive class (``classes_[1]``).

    Returns
    -------
    dask.dataframe.Series

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.dask import predict_dask
    >>> from skmixed.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m = MixedLinearRegressor().fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    >>> s = predict_dask(m, dd.from_pandas(df, npartitions=2))
    >>> bool(np.allclose(s.compute(), m.predict(df[["Days"]], groups=df["Subject"])))
    True
    """
    _require_dask()
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    if method not in ("predict", "predict_proba", "decision_function") or not hasattr(model, method):
        raise ValueError(f"method must be a prediction method of the model, got {method!r}")
    if getattr(model, "_formula", None) is not None and X is None:
        Xc, gc = None, None
    else:
        Xc = _as_list(X) if X is not None else [str(c) for c in getattr(model, "feature_names_in_", [])]
        if not Xc:
            raise ValueError("give X= (the model was fitted without column names)")
        if groups is not None:
            gc = _as_list(groups)
        elif getattr(model, "group_column", None) is not None:
            gc = None  # the labels travel inside X
        else:
            names = [f.name for f in getattr(model, "factors_", [])]
            gc = names if names and all(c in ddf.columns for c in names) else None
        missing = [c for c in Xc + (gc or []) if c not in ddf.columns]
        if missing:
            raise ValueError(f"column(s) {missing} not in the dask DataFrame")
    # labels of a classifier's predict keep their dtype; every other output is float
    classes = getattr(model, "classes_", None)
    dtype = classes.dtype if (method == "predict" and classes is not None) else np.dtype("f8")
    meta = pd.Series(np.empty(0, dtype=dtype), name=name)
    return ddf.map_partitions(_predict_partition, model, Xc, gc, name, method, meta=meta)
