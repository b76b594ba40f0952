"""Helpers shared by the Dask fits: the extra's import check, column lists, partition clean-up, tree sums."""

from __future__ import annotations

import pandas as pd


def require_dask():
    try:
        import dask  # noqa: F401
        import dask.dataframe  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("skmixed.dask needs dask[dataframe]: pip install 'skmixed[dask]'") from e


def as_list(cols):
    if cols is None:
        return None
    return [cols] if isinstance(cols, str) else list(cols)


def plain_strings(df: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed string columns (dask's default) as object: formulaic only encodes the latter."""
    cols = [c for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)
            or str(df[c].dtype).startswith(("string", "large_string"))]
    if not cols:
        return df
    return df.assign(**{c: df[c].astype(object) for c in cols})


def tree_sum(delayed_parts, split_every, merge):
    """Delayed tree reduction of partition statistics with ``merge(list) -> total``, ``split_every`` at a time."""
    from dask import delayed

    level = list(delayed_parts)
    while len(level) > 1:
        level = [delayed(merge)(level[i:i + split_every]) for i in range(0, len(level), split_every)]
    return level[0]
