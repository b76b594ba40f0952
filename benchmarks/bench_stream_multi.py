"""StreamingMixed with several grouping factors (crossed users x items, nested school/class).

For each design and row order (shuffled; grouped: sorted by the first factor, then the
second) the stream gets batches of ``--batch`` rows with the default exact corrections
(``refit_every="auto"``), and is compared at the end with the batch ML fit of the same rows
(``MixedLinearRegressor(reml=False)``): the largest fixed-effect difference in units of the
batch fit's standard errors, the largest relative difference of ``theta``, and the times
(wall clock and CPU seconds of the process, with the load average: the machine may be shared).

Usage::

    python benchmarks/bench_stream_multi.py [--rows 200000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from skmixed import MixedLinearRegressor, StreamingMixed


def crossed(n, n_users, n_items, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.8, n_users)[u] + rng.normal(0, 0.5, n_items)[i] + rng.normal(size=n)
    return pd.DataFrame(dict(a=u, b=i, x=x, y=y)), "y ~ x + (1 | a) + (1 | b)"


def nested(n, n_schools, n_classes, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_schools, n)
    c = rng.integers(0, n_classes, n)
    x = rng.normal(size=n)
    y = (2 - 0.3 * x + rng.normal(0, 1.0, n_schools)[s] + rng.normal(0, 0.5, (n_schools, n_classes))[s, c]
         + rng.normal(size=n))
    return pd.DataFrame(dict(a=s, b=c, x=x, y=y)), "y ~ x + (1 | a/b)"


def run(df, formula, batch):
    m = StreamingMixed.from_formula(formula, df.iloc[:batch])
    w0, c0 = time.perf_counter(), time.process_time()
    for a in range(batch, len(df), batch):
        m.partial_fit(df.iloc[a:a + batch])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    w1, c1 = time.perf_counter(), time.process_time()
    ref = MixedLinearRegressor.from_formula(formula, df, reml=False)
    bwall, bcpu = time.perf_counter() - w1, time.process_time() - c1
    d = float(np.abs((m.fixed_effects_ - ref.fixed_effects_) / ref.fixed_effects_se_).max())
    th = float(np.abs(m.theta_ / ref.theta_.to_numpy() - 1).max())
    return m, d, th, wall, cpu, bwall, bcpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    designs = {"crossed 2,000 users x 200 items": crossed(args.rows, 2000, 200, args.seed),
               "nested 500 schools / 8 classes": nested(args.rows, 500, 8, args.seed)}
    print(f"# StreamingMixed, several factors: {args.rows:,} rows in batches of {args.batch:,}\n")
    print("| design | order | corrections | max abs d beta (batch SE) | max rel d theta | stream wall s | "
          "stream CPU s | rows/s (wall) | rows/s (CPU) | batch fit wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (df, formula) in designs.items():
            for order in ("shuffled", "grouped"):
                d_ = df.sort_values(["a", "b"], kind="stable") if order == "grouped" else df
                d_ = d_.reset_index(drop=True)
                m, d, th, wall, cpu, bwall, bcpu = run(d_, formula, args.batch)
                n = len(d_) - args.batch
                print(f"| {name} | {order} | {m.n_corrections_} | {d:.2e} | {th:.2e} | {wall:.2f} | {cpu:.2f} | "
                      f"{n / wall:,.0f} | {n / cpu:,.0f} | {bwall:.2f} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
