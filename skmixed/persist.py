"""Saving and loading fitted estimators safely, with skops (a format that loads without running code).

``pickle`` runs whatever a file tells it to, so a pickled model is for trusted files
only. :func:`save` writes the skops format instead, and :func:`load` refuses a file
unless every type it would create is one of skmixed's own classes (listed
explicitly by :func:`trusted_types`) or a plain NumPy/Python type skops itself
trusts; the file records the skmixed version that wrote it, and loading a file
written by another version warns (:class:`VersionWarning`).

skops has no notion of pandas objects, which fitted estimators hold (coefficient
tables, random-effect frames, level labels). :func:`save` stores each of them as a
:class:`PandasRecord` (its values as NumPy arrays, its labels, its dtypes), and
:func:`load` rebuilds them.

Examples
--------
>>> import numpy as np
>>> from skmixed import MixedLinearRegressor
>>> from skmixed.datasets import load_sleepstudy
>>> from skmixed.persist import save, load
>>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "model.skops")
>>> save(m, path)
>>> m2 = load(path)
>>> bool(np.array_equal(m2.predict(load_sleepstudy()), m.predict(load_sleepstudy())))
True
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import numpy as np
import pandas as pd

__all__ = ["ItemsRecord", "ModelSpecRecord", "PandasRecord", "VersionWarning", "load", "save", "trusted_types"]

_FORMAT = "skmixed-skops-1"


class VersionWarning(UserWarning):
    """The file was written by another skmixed version: estimates load, but check them."""


class PandasRecord:
    """A pandas DataFrame, Series or Index as NumPy arrays and labels (what skops can store).

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.Series([1.0, 2.0], index=pd.Index(["a", "b"], name="k"), name="v")
    >>> PandasRecord.of(s).rebuild().equals(s)
    True
    """

    def __init__(self, kind, values, index=None, columns=None, name=None, dtype=None, extra=None):
        self.kind, self.values, self.index, self.columns = kind, values, index, columns
        self.name, self.dtype, self.extra = name, dtype, extra

    @classmethod
    def of(cls, obj) -> "PandasRecord":
        if isinstance(obj, pd.MultiIndex):
            return cls("multiindex", [cls.of(obj.get_level_values(k)) for k in range(obj.nlevels)],
                       name=[_plain(n) for n in obj.names])
        if isinstance(obj, pd.RangeIndex):
            return cls("range", [obj.start, obj.stop, obj.step], name=_plain(obj.name))
        if isinstance(obj, pd.Index):
            values, dtype, extra = _column(obj)
            return cls("index", values, name=_plain(obj.name), dtype=dtype, extra=extra)
        if isinstance(obj, pd.Series):
            values, dtype, extra = _column(obj)
            return cls("series", values, cls.of(obj.index), name=_plain(obj.name), dtype=dtype, extra=extra)
        if isinstance(obj, pd.DataFrame):
            cols = [_column(obj.iloc[:, k]) for k in range(obj.shape[1])]
            return cls("frame", [c[0] for c in cols], cls.of(obj.index), cls.of(obj.columns),
                       dtype=[c[1] for c in cols], extra=[c[2] for c in cols])
        raise TypeError(f"not a pandas object: {type(obj).__name__}")

    def rebuild(self):
        if self.kind == "multiindex":
            return pd.MultiIndex.from_arrays([r.rebuild() for r in self.values], names=self.name)
        if self.kind == "range":
            return pd.RangeIndex(*self.values, name=self.name)
        if self.kind == "index":
            return pd.Index(_uncolumn(self.values, self.dtype, self.extra), name=self.name, copy=False)
        if self.kind == "series":
            return pd.Series(_uncolumn(self.values, self.dtype, self.extra), index=self.index.rebuild(),
                             name=self.name, copy=False)
        if self.kind == "frame":
            cols = self.columns.rebuild()
            data = {k: _uncolumn(v, d, e) for k, (v, d, e) in enumerate(zip(self.values, self.dtype, self.extra))}
            df = pd.DataFrame(data, index=self.index.rebuild(), copy=False)
            df.columns = cols
            return df
        raise ValueError(f"unknown pandas record kind {self.kind!r}")


def _plain(v):
    """A label as a Python scalar (NumPy scalars as their Python value)."""
    return v.item() if isinstance(v, np.generic) else v


def _column(obj):
    """(values, dtype name, categories or None) of a Series / Index."""
    dtype = obj.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = PandasRecord.of(pd.Index(dtype.categories))
        return np.asarray(obj.cat.codes if isinstance(obj, pd.Series) else obj.codes), "category", \
            [cats, bool(dtype.ordered)]
    if dtype.kind in "biufc" and isinstance(dtype, np.dtype):
        return np.asarray(obj), str(dtype), None
    # strings, objects, nullable types: element by element as Python values
    return np.array([_plain(v) for v in obj.tolist()], dtype=object), str(dtype), None


def _uncolumn(values, dtype, extra):
    if dtype == "category":
        cats, ordered = extra
        return pd.Categorical.from_codes(values, categories=cats.rebuild(), ordered=ordered)
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values
    out = pd.array(list(values), dtype=dtype) if dtype != "object" else np.array(list(values), dtype=object)
    return out


class ModelSpecRecord:
    """A formulaic ``ModelSpec`` (how a formula reads new data) as plain values.

    The formula text, the materializer options, the per-factor encoder state (categorical
    levels) and the stateful transforms' state (``scale``, ``poly``, ...), all numbers and
    strings: formulaic rebuilds the same spec from them. The term structure and the
    contrast objects are re-derived from the formula. :meth:`rebuild` checks the formula
    against skmixed's whitelist first, so a file cannot smuggle in code to evaluate.
    """

    def __init__(self, spec):
        self.formula = str(spec.formula)
        self.materializer = spec.materializer if isinstance(spec.materializer, str) else "pandas"
        self.materializer_params = dict(spec.materializer_params or {})
        self.ensure_full_rank = bool(spec.ensure_full_rank)
        self.na_action = spec.na_action.value
        self.output = spec.output
        self.cluster_by = spec.cluster_by.value
        self.transform_state = dict(spec.transform_state)
        self.encoder_state = {k: (kind.value, {n: v for n, v in state.items() if n != "contrasts"})
                              for k, (kind, state) in spec.encoder_state.items()}

    def rebuild(self):
        from formulaic import Formula, ModelSpec
        from formulaic.parser.types import Factor

        from ._design.formula import check_formula

        check_formula(self.formula, self.formula)
        return ModelSpec(formula=Formula(self.formula), materializer=self.materializer,
                         materializer_params=self.materializer_params, ensure_full_rank=self.ensure_full_rank,
                         na_action=self.na_action, output=self.output, cluster_by=self.cluster_by,
                         transform_state=self.transform_state,
                         encoder_state={k: (Factor.Kind(kind), state)
                                        for k, (kind, state) in self.encoder_state.items()})


class ItemsRecord:
    """A dict whose keys skops cannot write as JSON (tuples: the chunked LMM's factor pairs), as its items.

    Examples
    --------
    >>> ItemsRecord({(0, 1): "v"}).items
    [((0, 1), 'v')]
    """

    def __init__(self, d):
        self.items = list(d.items())


def _is_model_spec(obj) -> bool:
    t = type(obj)
    return t.__name__ == "ModelSpec" and t.__module__.startswith("formulaic")


# ------------------------------------------------------------------ the object walk
def _is_ours(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "skmixed"


def _encode(obj, memo):
    """``obj`` with every pandas object inside skmixed's own objects and containers recorded."""
    key = id(obj)
    if key in memo:
        return memo[key][0]
    if isinstance(obj, (pd.DataFrame, pd.Series, pd.Index)):
        out = PandasRecord.of(obj)
    elif _is_model_spec(obj):
        out = ModelSpecRecord(obj)
        out.transform_state = _encode(out.transform_state, memo)
        out.encoder_state = _encode(out.encoder_state, memo)
    elif isinstance(obj, np.ndarray) and obj.dtype == object:
        out = np.empty(obj.shape, dtype=object)
        for i, v in np.ndenumerate(obj):
            out[i] = _encode(v, memo)
    elif type(obj) in (list, tuple, set, frozenset):
        out = type(obj)(_encode(v, memo) for v in obj)
    elif type(obj) is dict and not all(isinstance(k, (str, int, float, bool)) or k is None for k in obj):
        out = ItemsRecord({})
        out.items = [(_encode(k, memo), _encode(v, memo)) for k, v in obj.items()]
    elif type(obj) is dict:
        out = {_encode(k, memo): _encode(v, memo) for k, v in obj.items()}
    elif _is_ours(obj) and hasattr(obj, "__dict__") and not isinstance(obj, type):
        out = type(obj).__new__(type(obj))
        memo[key] = (out, obj)  # before descending: shared and cyclic references stay shared
        out.__dict__.update({k: _encode(v, memo) for k, v in obj.__dict__.items()})
        return out
    else:
        out = obj
    memo[key] = (out, obj)  # keep obj alive so its id is not reused during the walk
    return out


def _decode(obj, memo):
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, PandasRecord):
        out = obj.rebuild()
    elif isinstance(obj, ModelSpecRecord):
        obj.transform_state = _decode(obj.transform_state, memo)
        obj.encoder_state = _decode(obj.encoder_state, memo)
        out = obj.rebuild()
    elif isinstance(obj, np.ndarray) and obj.dtype == object:
        out = obj
        for i, v in np.ndenumerate(obj):
            out[i] = _decode(v, memo)
    elif type(obj) in (list, tuple, set, frozenset):
        out = type(obj)(_decode(v, memo) for v in obj)
    elif isinstance(obj, ItemsRecord):
        out = {_decode(k, memo): _decode(v, memo) for k, v in obj.items}
    elif type(obj) is dict:
        out = {_decode(k, memo): _decode(v, memo) for k, v in obj.items()}
    elif _is_ours(obj) and hasattr(obj, "__dict__") and not isinstance(obj, type):
        memo[key] = obj
        for k, v in list(obj.__dict__.items()):
            obj.__dict__[k] = _decode(v, memo)
        return obj
    else:
        out = obj
    memo[key] = out
    return out


# ------------------------------------------------------------------ trust
def trusted_types() -> list:
    """The types :func:`load` accepts besides skops' defaults: skmixed's own classes, by name.

    Every class defined in a module of the installed skmixed package (estimators, their
    fitted state, :class:`PandasRecord`); nothing from any other library.

    Examples
    --------
    >>> "skmixed.linear.MixedLinearRegressor" in trusted_types()
    True
    """
    import skmixed

    names = set()
    for info in pkgutil.walk_packages(skmixed.__path__, "skmixed."):
        if info.name.startswith(("skmixed.dask", "skmixed.plot")) or info.name.endswith("__main__"):
            continue  # optional dependencies; they hold no fitted state
        try:
            mod = importlib.import_module(info.name)
        except ImportError:
            continue
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__:
                names.add(f"{cls.__module__}.{cls.__qualname__}")
    return sorted(names)


# ------------------------------------------------------------------ save / load
def save(estimator, file) -> None:
    """Write a fitted skmixed estimator (or a streaming state) to ``file`` in the skops format.

    Parameters
    ----------
    estimator : object
        Any skmixed estimator, fitted or not.
    file : str, path or binary file object
    """
    import skops.io as sio

    import skmixed

    payload = {"format": _FORMAT, "skmixed_version": skmixed.__version__, "object": _encode(estimator, {})}
    sio.dump(payload, file)


def load(file, *, version_mismatch="warn"):
    """Read an estimator written by :func:`save`, creating no type outside :func:`trusted_types`.

    Parameters
    ----------
    file : str, path or binary file object
    version_mismatch : {"warn", "raise"}, default="warn"
        What to do when the file was written by another skmixed version.

    Raises
    ------
    ValueError
        The file holds types that are neither skmixed's nor trusted by skops (the message
        lists them), is not a skmixed file, or (``version_mismatch="raise"``) comes from
        another skmixed version.
    """
    import skops.io as sio

    import skmixed

    if version_mismatch not in ("warn", "raise"):
        raise ValueError(f"version_mismatch must be 'warn' or 'raise', got {version_mismatch!r}")
    if hasattr(file, "read"):
        data = file.read()
    else:
        with open(file, "rb") as fh:
            data = fh.read()
    allowed = set(trusted_types())
    untrusted = sio.get_untrusted_types(data=data)
    unknown = sorted(set(untrusted) - allowed)
    if unknown:
        raise ValueError(f"refusing to load: the file holds types that are not skmixed's: {unknown}")
    payload = sio.loads(data, trusted=sorted(set(untrusted)))
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError("not a file written by skmixed.persist.save")
    version = payload.get("skmixed_version")
    if version != skmixed.__version__:
        msg = (f"this file was written by skmixed {version}, this is skmixed {skmixed.__version__}: the "
               "estimator may not work or may give different answers; refit it with this version")
        if version_mismatch == "raise":
            raise ValueError(msg)
        warnings.warn(msg, VersionWarning, stacklevel=2)
    return _decode(payload["object"], {})

