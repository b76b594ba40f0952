"""Load figures of issue "Trust II": many small partial_fit chunks, a huge number of groups, AGQ.

Prints, from one run on this machine (medians of ``--repeat`` runs):

1. 10^4 chunks of 50 rows through ``MixedLinearRegressor.partial_fit(refit=False)`` and one
   final estimate, against one ``fit`` of the same rows (target: <= 5x);
2. a random-intercept LMM on ``--groups`` groups x 2 rows (target: <= 2 s at 10^6 groups);
3. ``MixedLogisticRegressor(nagq=5)`` against Laplace on ``--agq-groups`` groups x 2 rows
   (target: <= 3x).

Usage: ``python benchmarks/bench_load.py [--chunks 10000] [--groups 1000000] [--agq-groups 100000]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from skmixed import MixedLinearRegressor, MixedLogisticRegressor


_CPU = {}


def _median_time(fn, repeat):
    """Median wall time of ``repeat`` runs; the median CPU time (all threads) goes to ``_CPU[fn]``.

    Other processes on a shared machine inflate wall times; CPU time shows the work done.
    """
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    _CPU[fn] = float(np.median(cpu))
    return float(np.median(times))


def chunks(n_chunks, rows=50, n_groups=5000, repeat=1, seed=0):
    rng = np.random.default_rng(seed)
    n = n_chunks * rows
    g = rng.integers(0, n_groups, n)
    X = rng.normal(size=(n, 2))
    y = X @ [0.5, -0.3] + rng.normal(size=n_groups)[g] + rng.normal(size=n)

    def stream():
        m = MixedLinearRegressor()
        for s in range(0, n, rows):
            m.partial_fit(X[s:s + rows], y[s:s + rows], groups=g[s:s + rows], refit=False)
        return m.fixed_effects_

    def batch():
        return MixedLinearRegressor().fit(X, y, groups=g).fixed_effects_

    batch()  # compile / warm caches
    tb, ts = _median_time(batch, repeat), _median_time(stream, repeat)
    cb, cs = _CPU[batch], _CPU[stream]
    print(f"partial_fit: {n_chunks} chunks x {rows} rows (refit=False) + final estimate: {ts:.2f} s "
          f"(CPU {cs:.2f} s); one fit of the {n} rows: {tb:.2f} s (CPU {cb:.2f} s); ratio {ts / tb:.1f}x wall, "
          f"{cs / cb:.1f}x CPU (target <= 5x)")


def many_groups(n_groups, repeat=1, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), 2)
    X = rng.normal(size=(g.size, 1))
    y = 0.5 * X[:, 0] + rng.normal(size=n_groups)[g] + rng.normal(size=g.size)
    MixedLinearRegressor().fit(X[:2000], y[:2000], groups=g[:2000])
    def fit():
        return MixedLinearRegressor().fit(X, y, groups=g)

    t = _median_time(fit, repeat)
    print(f"LMM, {n_groups} groups x 2 rows: {t:.2f} s (CPU {_CPU[fit]:.2f} s) (target <= 2 s at 10^6 groups)")


def agq(n_groups, repeat=1, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), 2)
    X = rng.normal(size=(g.size, 1))
    eta = 0.5 * X[:, 0] + rng.normal(size=n_groups)[g]
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MixedLogisticRegressor(nagq=5).fit(X[:2000], y[:2000], groups=g[:2000])
        def laplace():
            return MixedLogisticRegressor().fit(X, y, groups=g)

        def agq5():
            return MixedLogisticRegressor(nagq=5).fit(X, y, groups=g)

        tl, ta = _median_time(laplace, repeat), _median_time(agq5, repeat)
    cl, ca = _CPU[laplace], _CPU[agq5]
    print(f"logistic, {n_groups} groups x 2 rows: Laplace {tl:.2f} s (CPU {cl:.2f} s), nAGQ=5 {ta:.2f} s "
          f"(CPU {ca:.2f} s); ratio {ta / tl:.1f}x wall, {ca / cl:.1f}x CPU (target <= 3x)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=1_000_000)
    ap.add_argument("--agq-groups", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    chunks(a.chunks, repeat=a.repeat)
    many_groups(a.groups, repeat=a.repeat)
    agq(a.agq_groups, repeat=a.repeat)
