"""Grouping factors: labels factorized once into int64 codes, with the level map kept.

A :class:`GroupingFactor` is what lme4 calls a factor on the right of ``|``:
its levels (sorted like R's ``factor()``), one int64 code per row, and the
ability to encode new labels at prediction time (unseen levels get ``-1``,
which every estimator treats as "random effect zero").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["GroupingFactor", "make_factors", "interaction"]


def _as_label_series(labels, name) -> pd.Series:
    if isinstance(labels, pd.Series):
        s = labels.reset_index(drop=True)
    else:
        arr = np.asarray(labels)
        if arr.ndim != 1:
            raise ValueError(f"grouping factor {name!r} must be 1-D, got shape {arr.shape}")
        s = pd.Series(arr)
    if s.isna().any():
        raise ValueError(f"grouping factor {name!r} contains missing labels (NaN/None)")
    if s.dtype.kind == "f" and not np.isfinite(s.to_numpy()).all():
        raise ValueError(f"grouping factor {name!r} contains infinite labels")
    return s


def _dense_int_range(a: np.ndarray) -> bool:
    lo, hi = a.min(), a.max()
    return int(hi) - int(lo) <= 4 * a.shape[0] + 1024


def _factorize_dense_ints(a: np.ndarray):
    """O(n) factorization of integer labels in a compact range (sorted levels).

    Labels that already are ``0 .. J-1`` with every level present (the usual
    group ids) are their own codes: no copy, no gather.
    """
    lo = a.min()
    off = a.astype(np.int64, copy=False) if lo == 0 else (a - lo).astype(np.int64)
    present = np.bincount(off) > 0
    levels = np.flatnonzero(present) + lo
    if present.all():
        return off, pd.Index(levels.astype(a.dtype))
    remap = np.cumsum(present, dtype=np.int64) - 1
    return remap[off], pd.Index(levels.astype(a.dtype))


@dataclass(eq=False)
class GroupingFactor:
    """One grouping factor: int64 codes per row and the level labels.

    Parameters
    ----------
    name : str
        Factor name (``"g"``, or ``"a:b"`` for an interaction).
    codes : ndarray of int64, shape (n,)
        Level index of every row, ``0 .. n_levels - 1``.
    levels : pandas.Index
        Level labels in code order.

    Examples
    --------
    >>> f = GroupingFactor.from_labels(["b", "a", "b"], name="g")
    >>> f.codes.tolist(), list(f.levels)
    ([1, 0, 1], ['a', 'b'])
    >>> f.encode(["b", "z"]).tolist()
    [1, -1]
    """

    name: str
    codes: np.ndarray
    levels: pd.Index

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @classmethod
    def from_labels(cls, labels, name: str = "group") -> "GroupingFactor":
        """Factorize labels (any hashable dtype) with levels sorted as R does."""
        arr = labels.to_numpy() if isinstance(labels, pd.Series) and labels.dtype.kind in "iu" else labels
        if isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind in "iu" and len(arr) \
                and _dense_int_range(arr):
            # integer ids (no missing values possible): skip pandas altogether
            codes, levels = _factorize_dense_ints(arr)
            return cls(name=str(name), codes=np.ascontiguousarray(codes), levels=levels)
        s = _as_label_series(labels, name)
        if isinstance(s.dtype, pd.CategoricalDtype):
            # keep the categorical's own level order, dropping unused levels as lme4 does
            s = s.cat.remove_unused_categories()
            codes = s.cat.codes.to_numpy().astype(np.int64)
            levels = pd.Index(s.cat.categories)
        elif s.dtype.kind in "iu" and len(s) and _dense_int_range(s.to_numpy()):
            codes, levels = _factorize_dense_ints(s.to_numpy())
        else:
            try:
                codes, levels = pd.factorize(s, sort=True)
            except TypeError:  # mixed, unorderable labels: order of appearance
                codes, levels = pd.factorize(s, sort=False)
            codes = codes.astype(np.int64)
        return cls(name=str(name), codes=np.ascontiguousarray(codes), levels=pd.Index(levels))

    def rows(self, keep) -> "GroupingFactor":
        """The factor of the rows ``keep`` (a boolean mask): levels only the other rows name are dropped."""
        used, codes = np.unique(self.codes[keep], return_inverse=True)
        return type(self)(self.name, codes.astype(np.int64), self.levels[used])

    def encode(self, labels) -> np.ndarray:
        """Codes of new labels; ``-1`` for levels not seen in training."""
        s = _as_label_series(labels, self.name)
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        return np.ascontiguousarray(self.levels.get_indexer(s.to_numpy()), dtype=np.int64)


def interaction(a: pd.Series, b: pd.Series) -> pd.Series:
    """Labels of the interaction ``a:b`` (as lme4 builds ``(1 | a/b)``'s second term)."""
    return a.astype(str).str.cat(b.astype(str), sep=":")


def make_factors(groups, names=None) -> list[GroupingFactor]:
    """Build grouping factors from the ``groups`` argument of ``fit``.

    Parameters
    ----------
    groups : array-like of shape (n,) or (n, k), or DataFrame
        One column of labels per grouping factor.
    names : list of str, optional
        Factor names; default the DataFrame's column names, else ``group``,
        ``group1``, ...

    Returns
    -------
    list of GroupingFactor

    Examples
    --------
    >>> import pandas as pd
    >>> fs = make_factors(pd.DataFrame({"s": [1, 1, 2], "i": ["x", "y", "x"]}))
    >>> [(f.name, f.n_levels) for f in fs]
    [('s', 2), ('i', 2)]
    """
    if isinstance(groups, pd.DataFrame):
        cols = [groups[c] for c in groups.columns]
        default = [str(c) for c in groups.columns]
    elif isinstance(groups, pd.Series):
        cols = [groups]
        default = [str(groups.name) if groups.name is not None else "group"]
    else:
        arr = np.asarray(groups, dtype=object) if not isinstance(groups, np.ndarray) else groups
        if arr.ndim == 1:
            cols = [arr]
        elif arr.ndim == 2:
            cols = [arr[:, k] for k in range(arr.shape[1])]
        else:
            raise ValueError(f"groups must be 1-D or 2-D, got shape {arr.shape}")
        default = ["group"] if len(cols) == 1 else [f"group{k}" for k in range(len(cols))]
    names = list(names) if names is not None else default
    if len(names) != len(cols):
        raise ValueError(f"{len(names)} names given for {len(cols)} grouping factors")
    return [GroupingFactor.from_labels(c, name=n) for c, n in zip(cols, names)]
