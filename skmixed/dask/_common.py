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


class Runner:
    """Runs a function on every worker-resident partition object: on a distributed client, or in-process."""

    def __init__(self, parts, client):
        self.parts, self.client = parts, client

    def map(self, fn, *per_part):
        if self.client is None:
            return [fn(p, *a) for p, *a in zip(self.parts, *per_part)]
        futs = [self.client.submit(fn, p, *a, pure=False) for p, *a in zip(self.parts, *per_part)]
        return self.client.gather(futs)

    def update(self, fn, *per_part):
        if self.client is None:
            self.parts = [fn(p, *a) for p, *a in zip(self.parts, *per_part)]
        else:
            self.parts = [self.client.submit(fn, p, *a, pure=False) for p, *a in zip(self.parts, *per_part)]


def default_client():
    """The active ``dask.distributed`` client, or None (local schedulers)."""
    try:
        from dask.distributed import default_client as dc

        return dc()
    except (ImportError, ValueError):
        return None


def build_parts(built, client):
    """Compute delayed partition objects: futures left on the workers (a client), else in-process.

    Returns the non-None objects (empty partitions give None)."""
    import dask

    if client is None:
        return [b for b in dask.compute(*built) if b is not None]
    futs = client.compute(built)
    present = client.gather([client.submit(_is_present, f) for f in futs])
    return [f for f, ok in zip(futs, present) if ok]


def _is_present(b):
    return b is not None
