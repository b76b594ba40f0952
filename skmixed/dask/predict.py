"""Prediction on Dask DataFrames, partition by partition, for any fitted skmixed estimator."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._common import as_list, plain_strings, require_dask


def _predict_partition(df: pd.DataFrame, model, X, groups, name, method):
    if len(df) == 0:
        return pd.Series(np.empty(0), index=df.index, name=name)  # dask casts to the meta's dtype
    fn = getattr(model, method)
    if X is None:  # formula model: predict takes the frame
        pred = fn(plain_strings(df))
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
    require_dask()
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    if method not in ("predict", "predict_proba", "decision_function") or not hasattr(model, method):
        raise ValueError(f"method must be a prediction method of the model, got {method!r}")
    spec = model.formula_spec() if callable(getattr(model, "formula_spec", None)) else None
    if spec is not None and X is None:
        Xc, gc = None, None
    else:
        Xc = as_list(X) if X is not None else [str(c) for c in getattr(model, "feature_names_in_", [])]
        if not Xc:
            raise ValueError("give X= (the model was fitted without column names)")
        if groups is not None:
            gc = as_list(groups)
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
