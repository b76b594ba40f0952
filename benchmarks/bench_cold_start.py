"""Cold start: ``import skmixed`` and the first fit of each estimator on an empty numba cache.

Every workload runs in a fresh child process with a fresh, empty ``NUMBA_CACHE_DIR``
(numba's ``cache=True`` would otherwise read and write ``__pycache__`` next to the
sources), so each first fit pays exactly the compiles it needs -- what a new user,
a fresh container or a new Dask worker sees. A second child on the same (now warm)
cache shows the cost once compiled. Times are seconds timed inside the child:
``import`` is ``import skmixed`` alone, ``estimator import`` the ``from skmixed import
<Estimator>`` that follows (scikit-learn, pandas, numba), ``first fit`` the first
``fit``/``partial_fit`` call (wall clock, then the child's CPU time over the same
span), and "whole child" the parent's view of the child process: its wall time and
its CPU time (user + sys from ``getrusage(RUSAGE_CHILDREN)``), interpreter start-up
and imports included. Numba compiles single-threaded, so on a busy machine the CPU
time is about the wall time the same child would take alone; the load average
(1 min) beside each row says how busy the machine was.

Usage: ``python benchmarks/bench_cold_start.py [--repeat 3] [--only lmm,logistic]``
(prints a Markdown table; medians over ``--repeat`` cold children).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, estimator, data + fit code); the fit is the first statement timed
WORKLOADS = {
    "lmm": ("sleepstudy LMM: Reaction ~ Days + (Days | Subject)", "MixedLinearRegressor", """
        from skmixed.datasets import load_sleepstudy
        df = load_sleepstudy()
        t0, c0 = time.perf_counter(), time.process_time()
        m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
        m.summary()
    """),
    "logistic": ("cbpp logistic: y ~ period + (1 | herd)", "MixedLogisticRegressor", """
        from skmixed.datasets import load_cbpp_bernoulli
        df = load_cbpp_bernoulli()
        t0, c0 = time.perf_counter(), time.process_time()
        m = MixedLogisticRegressor.from_formula("y ~ period + (1 | herd)", df)
        m.summary()
    """),
    "streaming": ("streaming: 10 batches of 1,000 rows, (1 + x | g)", "StreamingMixed", """
        from skmixed.datasets import make_big_grouped_data
        df = make_big_grouped_data(10_000, 100, seed=0)
        t0, c0 = time.perf_counter(), time.process_time()
        m = StreamingMixed(random_slopes=["x"])
        for k in range(10):
            c = df.iloc[k * 1000:(k + 1) * 1000]
            m.partial_fit(c[["x", "b"]], c["y"], groups=c["g"])
        m.fixed_effects_se_
    """),
    "additive": ("additive: gamSim y ~ s(x0..x3) + (1 | fac)", "AdditiveMixedRegressor", """
        from skmixed.datasets import load_gamsim_re
        df = load_gamsim_re()
        t0, c0 = time.perf_counter(), time.process_time()
        m = AdditiveMixedRegressor(smooth=["x0", "x1", "x2", "x3"])
        m.fit(df[["x0", "x1", "x2", "x3"]], df["y"], groups=df["fac"])
    """),
    "split": ("split-sample LMM: 4 subsamples, 20,000 rows", "SplitSampleMixed", """
        from skmixed import MixedLinearRegressor
        from skmixed.datasets import make_big_grouped_data
        df = make_big_grouped_data(20_000, 200, seed=0)
        t0, c0 = time.perf_counter(), time.process_time()
        m = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=4, random_state=0)
        m.fit(df[["x", "b"]], df["y"], groups=df["g"])
    """),
}

CHILD = """
import time, json, sys
sys.path.insert(0, {root!r})
t = time.perf_counter()
import skmixed
t_import = time.perf_counter() - t
c_start = time.process_time()
t = time.perf_counter()
from skmixed import {est}
t_est = time.perf_counter() - t
{body}
t_fit = time.perf_counter() - t0
c_fit = time.process_time() - c0
c_total = time.process_time() - c_start
print("RESULT " + json.dumps({{"import_s": t_import, "est_import_s": t_est, "fit_s": t_fit, "fit_cpu_s": c_fit,
                              "cpu_s": c_total}}))
"""


def run_child(key: str, cache_dir: str) -> dict:
    _, est, body = WORKLOADS[key]
    code = CHILD.format(root=str(ROOT), est=est, body=textwrap.indent(textwrap.dedent(body), ""))
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=900, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["process_s"] = wall
            res["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            res["load"] = os.getloadavg()[0]
            return res
    raise RuntimeError(f"{key}: child failed\n{proc.stderr[-3000:]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="cold children per workload (median reported)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    args = ap.parse_args(argv)
    keys = [k for k in args.only.split(",") if k]
    t_all = time.perf_counter()
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| workload | import skmixed (s) | estimator import (s) | first fit, cold (s) | first fit CPU, cold (s) | "
          "whole child, cold: wall / CPU (s) | load avg | fit, warm cache (s) | cold first fits (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for key in keys:
        cold = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="skmixed-numba-") as d:
                cold.append(run_child(key, d))
                warm = run_child(key, d)
        med = {k: statistics.median(r[k] for r in cold) for k in cold[0]}
        runs = ", ".join(f"{r['fit_s']:.1f}/{r['fit_cpu_s']:.1f}" for r in cold)
        print(f"| {WORKLOADS[key][0]} | {med['import_s']:.2f} | {med['est_import_s']:.2f} | "
              f"{med['fit_s']:.2f} | {med['fit_cpu_s']:.2f} | {med['process_s']:.1f} / {med['process_cpu_s']:.1f} | "
              f"{med['load']:.1f} | {warm['fit_s']:.2f} | {runs} |", flush=True)
    print(f"\n{time.perf_counter() - t_all:.0f} s in all; load average at the end: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
