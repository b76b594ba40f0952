"""Parametric bootstrap: skmixed's ``bootstrap`` against ``lme4::bootMer`` in the same run.

1. sleepstudy, ``Reaction ~ Days + (Days | Subject)`` (REML): ``n_boot`` replicates of the
   default statistic (variance components on the SD scale, sigma, fixed effects) against
   ``bootMer(fit, FUN, nsim = n_boot)`` with the same statistic.
2. The seed study S0 (``make_big_grouped_data``, 2M rows, 2000 groups), ``y ~ x + b + (1 | g)``:
   ``--big-boot`` replicates (no R contender: bootMer would take hours) with the default
   ``simulation="auto"`` (here the per-level sufficient statistics, ``simulation="groups"``), and
   ``--big-rows-boot`` replicates with ``simulation="rows"`` (every response row simulated) for the
   per-replicate ratio. The load average is printed with the results.

Each contender runs in its own process (``_harness``); times are the bootstrap alone (the
data and the original fit are outside the timer). Run: ``python benchmarks/bench_bootstrap.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _harness import have_rscript, machine_line, markdown_table, run_python, run_r  # noqa: E402

SLEEP_PY = """
import time, json
from skmixed import MixedLinearRegressor
from skmixed.datasets import load_sleepstudy
m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
m.bootstrap(20, random_state=0)  # compile / warm caches
times = []
for r in range({repeats}):
    t = time.perf_counter()
    b = m.bootstrap({n}, random_state=r)
    times.append(time.perf_counter() - t)
times.sort()
ci = b.confint()
print("RESULT " + json.dumps(dict(boot_s=times[len(times) // 2], n_ok=len(b.replicates), peak_mb=peak_mb(),
                                   days_lo=float(ci.loc["Days"].iloc[0]), days_hi=float(ci.loc["Days"].iloc[1]))))
"""

SLEEP_R = """
suppressMessages(library(lme4))
sl <- read.csv("{csv}", colClasses = c(Subject = "factor"))
m <- lmer(Reaction ~ Days + (Days | Subject), sl)
f <- function(fit) c(unlist(as.data.frame(VarCorr(fit))$sdcor), fixef(fit))
t <- system.time(b <- bootMer(m, f, nsim = {n}, seed = 1))[["elapsed"]]
ci <- quantile(b$t[, 6], c(0.025, 0.975))
result(boot_s = t, n_ok = sum(complete.cases(b$t)), peak_mb = peak_mb(), days_lo = ci[[1]], days_hi = ci[[2]])
"""

BIG_PY = """
import time, json
from skmixed import MixedLinearRegressor
from skmixed.datasets import make_big_grouped_data
df = make_big_grouped_data({rows}, {groups}, seed=0)
m = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
m.bootstrap(2, random_state=0, simulation="{simulation}")
t = time.perf_counter()
b = m.bootstrap({n}, random_state=1, simulation="{simulation}")
el = time.perf_counter() - t
print("RESULT " + json.dumps(dict(boot_s=el, per_rep_s=el / {n}, n_ok=len(b.replicates), peak_mb=peak_mb())))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-boot", type=int, default=200)
    ap.add_argument("--big-rows-boot", type=int, default=10, help="replicates simulating rows (0: skip)")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--only-big", action="store_true", help="skip the sleepstudy comparison with bootMer")
    args = ap.parse_args()
    load0 = os.getloadavg()
    csv = os.path.join(os.path.dirname(__file__), "..", "skmixed", "datasets", "data", "sleepstudy.csv")
    rows = []
    if not args.only_big:
        res, wall, err = run_python(SLEEP_PY.format(n=args.n_boot, repeats=args.repeats))
        rows.append(dict(case=f"sleepstudy x{args.n_boot}", contender="skmixed.bootstrap",
                         **(res or {"error": err})))
    if have_rscript() and not args.only_big:
        res, wall, err = run_r(SLEEP_R.format(n=args.n_boot, csv=os.path.abspath(csv)), timeout=3600)
        rows.append(dict(case=f"sleepstudy x{args.n_boot}", contender="lme4::bootMer", **(res or {"error": err})))
    if len(rows) == 2 and "boot_s" in rows[0] and "boot_s" in rows[1]:
        rows[0]["ratio"] = rows[1]["boot_s"] / rows[0]["boot_s"]
    if not args.skip_big:
        big = [("auto", args.big_boot)] + ([("rows", args.big_rows_boot)] if args.big_rows_boot else [])
        for simulation, n in big:
            res, wall, err = run_python(BIG_PY.format(n=n, rows=args.rows, groups=args.groups,
                                                      simulation=simulation), timeout=3600)
            rows.append(dict(case=f"S0 {args.rows} rows x{n}", contender=f"skmixed.bootstrap({simulation})",
                             **(res or {"error": err})))
        if len(big) == 2 and all("per_rep_s" in r for r in rows[-2:]):
            rows[-1]["ratio"] = rows[-1]["per_rep_s"] / rows[-2]["per_rep_s"]
    print(machine_line())
    print("load average at the start:", " ".join(f"{x:.2f}" for x in load0))
    print("load average at the end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(markdown_table(rows, ["case", "contender", "boot_s", "per_rep_s", "ratio", "n_ok", "peak_mb", "days_lo",
                                "days_hi", "error"]))


if __name__ == "__main__":
    main()
