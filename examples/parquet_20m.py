"""Fit ``y ~ x + b + (1 | g)`` on a 20,000,000-row parquet file that is never loaded whole.

The data follow the seed-000 study design (Clark 2019, "Mixed Models for Big
Data": 1,000 rows per group, so 20,000 groups at 20M rows). They are written in
chunks of ``--chunk-rows`` rows (``skmixed.datasets.make_big_grouped_data`` with a
distinct seed per chunk and a group offset, so labels are unique across chunks),
one parquet row group per chunk.

The fit is exact, not an approximation. A linear mixed model needs only per-group
cross-products, which are sums over rows, so:

* ``--method partial`` streams record batches with pyarrow and calls
  ``MixedLinearRegressor.partial_fit`` on each (memory: one batch plus the
  per-group statistics);
* ``--method dask`` reads the file with ``dask.dataframe.read_parquet`` and calls
  ``skmixed.dask.fit_lmm`` (per-partition statistics, tree reduction; pass
  ``--workers N`` for a ``dask.distributed`` LocalCluster).

Both give the estimates ``fit`` would give on the whole table in memory.

Run::

    python examples/parquet_20m.py --rows 20000000 --out /tmp/seed000_20m.parquet
    python examples/parquet_20m.py --rows 2000000 --method dask --no-write --out ...
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

ROWS_PER_GROUP = 1_000  # seed 000: 2,000,000 rows in 2,000 groups


def peak_mb() -> float:
    """Peak resident memory of this process (VmHWM), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def write_parquet(out: str, rows: int, chunk_rows: int = 1_000_000, seed: int = 0) -> dict:
    """Write the seed-000 design in chunks; returns rows, groups and seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skmixed.datasets import make_big_grouped_data

    if rows < ROWS_PER_GROUP:
        raise ValueError(f"--rows must be at least {ROWS_PER_GROUP}")
    chunk_rows = max(ROWS_PER_GROUP, (chunk_rows // ROWS_PER_GROUP) * ROWS_PER_GROUP)
    t0 = time.perf_counter()
    writer, offset = None, 0
    try:
        for i, start in enumerate(range(0, rows, chunk_rows)):
            n = min(chunk_rows, rows - start)
            n_groups = max(1, n // ROWS_PER_GROUP)
            df = make_big_grouped_data(n, n_groups, seed=seed * 100_003 + i)
            df["g"] += offset
            offset += n_groups
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=chunk_rows)
    finally:
        if writer is not None:
            writer.close()
    return {"rows": rows, "groups": offset, "write_s": time.perf_counter() - t0}


def fit_partial(path: str, batch_rows: int = 1_000_000, **params):
    """``partial_fit`` over pyarrow record batches of the parquet file."""
    import pyarrow.parquet as pq

    from skmixed import MixedLinearRegressor

    m = MixedLinearRegressor(**params)
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["y", "x", "b", "g"]):
        df = batch.to_pandas()
        m.partial_fit(df[["x", "b"]], df["y"], groups=df["g"])
        del df, batch
    return m


def fit_with_dask(path: str, workers: int = 0, info=None, **params):
    """``skmixed.dask.fit_lmm`` on ``dd.read_parquet`` (threads, or a LocalCluster of ``workers``).

    With a cluster, ``info`` (a dict) receives the workers' peak resident memory.
    """
    import dask.dataframe as dd

    from skmixed.dask import fit_lmm

    ddf = dd.read_parquet(path, columns=["y", "x", "b", "g"], split_row_groups=True)
    if workers:
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            m = fit_lmm(ddf, y="y", X=["x", "b"], groups="g", **params)
            if info is not None:
                info["worker_peak_mb"] = max(client.run(peak_mb).values())
            return m
    return fit_lmm(ddf, y="y", X=["x", "b"], groups="g", **params)


def fit_in_memory(path: str, **params):
    """The reference: read everything, ``fit`` once."""
    import pyarrow.parquet as pq

    from skmixed import MixedLinearRegressor

    df = pq.read_table(path, columns=["y", "x", "b", "g"]).to_pandas()
    return MixedLinearRegressor(**params).fit(df[["x", "b"]], df["y"], groups=df["g"])


def summary(m) -> dict:
    fe = m.fixed_effects_
    return {"intercept": float(fe["(Intercept)"]), "b_x": float(fe["x"]), "b_b": float(fe["b"]),
            "sd_g": float(np.sqrt(m.cov_re_["g"].iloc[0, 0])), "sigma": float(m.sigma_),
            "crit": float(m.reml_criterion_), "n_obs": float(m.n_obs_), "groups": int(m.n_groups_["g"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--out", default="seed000_20m.parquet")
    ap.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per written chunk / fitted batch")
    ap.add_argument("--method", choices=["partial", "dask", "memory", "none"], default="partial")
    ap.add_argument("--workers", type=int, default=0, help="dask: LocalCluster workers (0 = threads)")
    ap.add_argument("--no-write", action="store_true", help="reuse an existing --out file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    info = {}
    if not (args.no_write and os.path.exists(args.out)):
        info.update(write_parquet(args.out, args.rows, args.chunk_rows, args.seed))
        print(f"wrote {info['rows']:,} rows, {info['groups']:,} groups to {args.out} in {info['write_s']:.1f} s")
    if args.method != "none":
        t0 = time.perf_counter()
        if args.method == "partial":
            m = fit_partial(args.out, args.chunk_rows)
        elif args.method == "dask":
            m = fit_with_dask(args.out, args.workers, info)
        else:
            m = fit_in_memory(args.out)
        info["fit_s"] = time.perf_counter() - t0
        info.update(summary(m))
        print(m.summary())
        print(f"{args.method} fit: {info['fit_s']:.1f} s")
    info["peak_mb"] = peak_mb()
    print(f"peak resident memory (VmHWM): {info['peak_mb']:.0f} MB")
    print("RESULT", json.dumps(info))


if __name__ == "__main__":
    main()
