"""Crossed fits on an idle machine and under load, in one run (issue 16, acceptance 5).

For each workload a child process warms numba's cache, then alternates fits "as the machine is" and
fits with a busy process pinned to one core (``taskset -c 0 python -c 'while 1: pass'``, started
before the fit and stopped after it), ``--reps`` of each. It prints per workload the median wall and
CPU time (``time.process_time``: all of the fit's threads) of both kinds of fit, the ratio loaded /
idle (acceptance: <= 2.5x), the one-minute load average and the kernel's runnable-thread count before
each kind of fit, and what skmixed's thread policy decided (``skmixed._threads.spare_core``: True
means a second BLAS/numba thread for the large dense parts).

Workloads (``--cases``, default all but ``glmm3``):

* ``lmm``: ``y ~ x + (1|a) + (1|b)``, ML, 60,000 rows, 3,000 x 2,000 crossed levels (bench_crossed.py's data);
* ``lmm3``: the InstEval-shaped ``y ~ x + (1|a) + (1|b) + (1|c)``, REML, 73,000 rows, 3,000 x 1,100 x 14;
* ``glmm``: crossed logistic ``y ~ x + (1|a) + (1|b)``, 20,000 rows, 1,000 x 300 (bench_logistic.py's data);
* ``glmm3``: crossed logistic with three factors, 73,000 rows, 3,000 x 1,100 x 14.

On a shared machine "idle" is whatever the other processes leave: read the load average beside the
figures. Run: ``python benchmarks/bench_crossed_load.py [--reps 5] [--cases lmm,lmm3,glmm,glmm3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _harness import machine_line, markdown_table, run_python  # noqa: E402
from bench_crossed import TWO_DATA  # noqa: E402
from bench_linear import CROSSED_DATA as LMM3_DATA  # noqa: E402
from bench_logistic import CROSSED_CASES, CROSSED_DATA as GLMM_DATA  # noqa: E402

CHILD = """
import os, subprocess, sys, time, warnings
from skmixed import {cls}
from skmixed._threads import spare_core

def state():
    with open("/proc/loadavg") as fh:
        f = fh.read().split()
    return float(f[0]), int(f[3].split("/")[0])

G = df[{groups}]
kw = dict({kw})
est = lambda: {cls}(**kw)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    est().fit(df[["x"]].iloc[:3000], df["y"].iloc[:3000], groups=G.iloc[:3000])  # warm the cache
    est().fit(df[["x"]], df["y"], groups=G)
    out = {{"idle": [], "loaded": []}}
    for r in range({reps}):
        for kind in ("idle", "loaded"):
            busy = None
            if kind == "loaded":
                busy = subprocess.Popen({busy_cmd})
                time.sleep(1.0)  # let the scheduler see it
            load1, runnable = state()
            spare = spare_core()
            t, c = time.perf_counter(), time.process_time()
            m = est().fit(df[["x"]], df["y"], groups=G)
            w, cp = time.perf_counter() - t, time.process_time() - c
            if busy is not None:
                busy.kill()
                busy.wait()
            out[kind].append(dict(wall=w, cpu=cp, load1=load1, runnable=runnable, spare=spare,
                                  crit=float(-2 * m.loglik_)))
            time.sleep(0.5)
print("RESULT", json.dumps(out))
"""

CASES = {
    "lmm": ("crossed LMM y ~ x + (1|a) + (1|b), ML, 60,000 rows, 3,000 x 2,000",
            TWO_DATA.format(rows=60_000, ja=3_000, jb=2_000, seed=2024),
            "MixedLinearRegressor", '["a", "b"]', "reml=False"),
    "lmm3": ("crossed LMM y ~ x + (1|a) + (1|b) + (1|c), REML, 73,000 rows, 3,000 x 1,100 x 14",
             LMM3_DATA.format(rows=73_000, seed=2024), "MixedLinearRegressor", '["a", "b", "c"]', ""),
    "glmm": ("crossed logistic y ~ x + (1|a) + (1|b), 20,000 rows, 1,000 x 300",
             GLMM_DATA.format(rows=20_000, seed=2024, levels=CROSSED_CASES["two"][1], sds=CROSSED_CASES["two"][2],
                              names=list(CROSSED_CASES["two"][0])),
             "MixedLogisticRegressor", '["a", "b"]', ""),
    "glmm3": ("crossed logistic y ~ x + (1|a) + (1|b) + (1|c), 73,000 rows, 3,000 x 1,100 x 14",
              GLMM_DATA.format(rows=73_000, seed=2024, levels=CROSSED_CASES["three"][1],
                               sds=CROSSED_CASES["three"][2], names=list(CROSSED_CASES["three"][0])),
              "MixedLogisticRegressor", '["a", "b", "c"]', ""),
}


def _median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="fits of each kind (idle, loaded) per workload")
    ap.add_argument("--cases", default="lmm,lmm3,glmm", help="comma-separated: " + ", ".join(CASES))
    args = ap.parse_args(argv)
    busy = [sys.executable, "-c", "while 1: pass"]
    if shutil.which("taskset"):
        busy = ["taskset", "-c", "0"] + busy
    print(f"Machine: {machine_line()}")
    print(f"busy process: {' '.join(busy)}; {args.reps} fits of each kind, alternating")
    rows = []
    for case in args.cases.split(","):
        title, data, cls, groups, kw = CASES[case]
        res, _, err = run_python(data + CHILD.format(cls=cls, groups=groups, kw=kw, reps=args.reps,
                                                     busy_cmd=repr(busy)), timeout=7200)
        if res is None:
            rows.append(dict(workload=title, note=err))
            continue
        i, b = res["idle"], res["loaded"]
        row = dict(workload=title)
        for kind, runs in (("idle", i), ("loaded", b)):
            row[f"{kind} wall_s"] = _median([r["wall"] for r in runs])
            row[f"{kind} cpu_s"] = _median([r["cpu"] for r in runs])
            row[f"{kind} load1"] = _median([r["load1"] for r in runs])
            row[f"{kind} runnable"] = _median([r["runnable"] for r in runs])
            row[f"{kind} 2 threads"] = f"{sum(r['spare'] for r in runs)}/{len(runs)}"
        row["wall ratio loaded/idle"] = row["loaded wall_s"] / row["idle wall_s"]
        row["cpu ratio loaded/idle"] = row["loaded cpu_s"] / row["idle cpu_s"]
        crits = [r["crit"] for r in i + b]
        row["crit spread"] = max(crits) - min(crits)
        row["all walls idle / loaded"] = (", ".join(f"{r['wall']:.2f}" for r in i) + " / "
                                         + ", ".join(f"{r['wall']:.2f}" for r in b))
        rows.append(row)
        print(f"\n{title}: wall {row['idle wall_s']:.3f} s idle, {row['loaded wall_s']:.3f} s loaded "
              f"-> {row['wall ratio loaded/idle']:.2f}x (target <= 2.5x)", flush=True)
    cols = ["workload", "idle wall_s", "loaded wall_s", "wall ratio loaded/idle", "idle cpu_s", "loaded cpu_s",
            "cpu ratio loaded/idle", "idle load1", "loaded load1", "idle runnable", "loaded runnable",
            "idle 2 threads", "loaded 2 threads", "crit spread", "all walls idle / loaded", "note"]
    print()
    print(markdown_table(rows, cols))


if __name__ == "__main__":
    main()
