"""StreamingMixedLogistic (the online logistic GLMM) against the batch Laplace fit.

The seed-000 study design (``make_big_grouped_data``: 200,000 rows, 500 groups, rows sorted
by group -- the hard order for a stream), model ``y_bin ~ x + b + (1 | g)``.  The stream
gets batches of 10,000 rows and keeps ``max_rows_per_group`` rows per group (the others are
folded into per-group Laplace statistics); ``MixedLogisticRegressor`` (Laplace, glmer's
nAGQ = 1) fits all rows at once.  Printed: both estimates, their difference in units of the
batch fit's standard errors (acceptance of issue 17: within 0.2), and the times (wall clock
and CPU seconds of the process, with the load average: the machine may be shared).

Usage::

    python benchmarks/bench_streaming_logistic.py [--rows 200000] [--groups 500] [--keep 64]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from skmixed import MixedLogisticRegressor, StreamingMixedLogistic
from skmixed.datasets import make_big_grouped_data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--keep", type=int, default=64, help="max_rows_per_group")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    df = make_big_grouped_data(args.rows, args.groups, seed=args.seed)
    X, y, g = df[["x", "b"]].to_numpy(float), df["y_bin"].to_numpy(), df["g"].to_numpy()
    # compile the kernels outside the timings
    StreamingMixedLogistic(max_rows_per_group=4).fit(X[:2000], y[:2000], groups=g[:2000])
    with threadpool_limits(1):
        t, c = time.perf_counter(), time.process_time()
        ml = MixedLogisticRegressor().fit(X, y, groups=g)
        t_ml, c_ml = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        m = StreamingMixedLogistic(max_rows_per_group=args.keep)
        for a in range(0, args.rows, args.batch):
            m.partial_fit(X[a:a + args.batch], y[a:a + args.batch], groups=g[a:a + args.batch])
        t_s, c_s = time.perf_counter() - t, time.process_time() - c
    z = (m.fixed_effects_ - ml.fixed_effects_) / ml.fixed_effects_se_
    print(f"# Online logistic GLMM: {args.rows:,} rows, {args.groups} groups, sorted by group, "
          f"{args.keep} rows kept per group, batches of {args.batch:,}\n")
    print("| parameter | batch Laplace | SE | stream | (stream - batch) / SE |\n|---|---|---|---|---|")
    for name in ml.fixed_effects_.index:
        print(f"| {name} | {ml.fixed_effects_[name]:.5f} | {ml.fixed_effects_se_[name]:.5f} | "
              f"{m.fixed_effects_[name]:.5f} | {z[name]:+.4f} |")
    v_ml = float(ml.cov_re_["group"].iloc[0, 0])
    v_s = float(m.cov_re_["group"].iloc[0, 0])
    print(f"| var (Intercept) | {v_ml:.5f} | | {v_s:.5f} | rel. {v_s / v_ml - 1:+.2%} |")
    print(f"\nacceptance (all fixed effects within 0.2 SE): {'PASS' if np.abs(z).max() < 0.2 else 'FAIL'} "
          f"(max {np.abs(z).max():.4f})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n| single thread | wall s | CPU s |\n|---|---|---|\n| MixedLogisticRegressor (all rows) | "
          f"{t_ml:.2f} | {c_ml:.2f} |\n| StreamingMixedLogistic ({m.n_corrections_} corrections) | {t_s:.2f} | "
          f"{c_s:.2f} |\n\nload average {load:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
