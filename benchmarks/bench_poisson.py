"""MixedPoissonRegressor vs lme4::glmer(family = poisson) on simulated counts with an exposure offset.

Workload (issue 19): ``count ~ x + b + offset(log(t)) + (1 | g)``, ``--rows`` rows (default 200,000),
``--groups`` levels (default 2,000), Poisson-log GLMM by Laplace (glmer's default ``nAGQ = 1``).
Every contender runs in its own process on the same data (the Python child regenerates it from the
seed, R reads a CSV written once); numba's cache is warmed first. The table gives fit time, the
child's CPU time, peak resident memory of the whole child process, the estimates and time ratios
(peer / skmixed). Run: ``python benchmarks/bench_poisson.py [--rows N] [--groups G] [--no-r]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _harness import machine_line, markdown_table, run_contenders  # noqa: E402

DATA = """
import json, time, numpy as np, pandas as pd
rng = np.random.default_rng({seed})
n, G = {rows}, {groups}
g = rng.integers(0, G, n)
x = rng.normal(size=n)
b = rng.binomial(1, 0.4, n).astype(float)
t = rng.uniform(0.5, 3.0, n)
eta = np.log(t) - 0.5 + 0.4 * x - 0.3 * b + rng.normal(0, 0.6, G)[g]
df = pd.DataFrame(dict(count=rng.poisson(np.exp(eta)).astype(float), x=x, b=b, t=t, g=g))
"""

SKMIXED = """
from skmixed import MixedPoissonRegressor
small = df.iloc[:3000]
MixedPoissonRegressor().fit(small[["x", "b"]], small["count"], groups=small["g"], offset=np.log(small["t"]))
t0, c0 = time.perf_counter(), time.process_time()
m = MixedPoissonRegressor().fit(df[["x", "b"]], df["count"], groups=df["g"], offset=np.log(df["t"]))
fit, cpu = time.perf_counter() - t0, time.process_time() - c0
fe = m.fixed_effects_
print("RESULT", json.dumps(dict(fit_s=fit, cpu_s=cpu, peak_mb=peak_mb(), b_0=fe["(Intercept)"], b_x=fe["x"],
      b_b=fe["b"], sd_g=float(m.theta_.iloc[0]), loglik=m.loglik_)))
"""

GLMER = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$g <- factor(d$g)
tm <- system.time(m <- glmer(count ~ x + b + offset(log(t)) + (1 | g), d, family = poisson))
fe <- fixef(m)
result(fit_s = tm[["elapsed"]], cpu_s = tm[["user.self"]] + tm[["sys.self"]], peak_mb = peak_mb(),
       b_0 = fe[["(Intercept)"]], b_x = fe[["x"]], b_b = fe[["b"]], sd_g = getME(m, "theta")[[1]],
       loglik = as.numeric(logLik(m)))
"""

COLUMNS = ["tool", "fit_s", "time ratio", "cpu_s", "peak_mb", "b_0", "b_x", "b_b", "sd_g", "loglik", "note"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args(argv)
    print(f"Machine: {machine_line()}")
    data = DATA.format(rows=args.rows, groups=args.groups, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "counts.csv")
        contenders = [("skmixed MixedPoissonRegressor (Laplace)", "py", SKMIXED)]
        if not args.no_r:
            ns = {}
            exec(data, ns)
            ns["df"].to_csv(csv, index=False, float_format="%.17g")
            contenders.append(("lme4 glmer poisson (Laplace)", "r", GLMER))
        rows = run_contenders(data, contenders, csv, progress=True)
    print(f"\n### count ~ x + b + offset(log(t)) + (1 | g): {args.rows:,} rows, {args.groups:,} groups (Poisson log)\n")
    print(markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
