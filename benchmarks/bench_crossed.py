"""Crossed random intercepts at scale: MixedLinearRegressor vs lme4::lmer (issue 16).

Workloads (each contender in its own process on the same data, numba's cache warmed first):

1. ``y ~ x + (1 | a) + (1 | b)`` by ML: ``--rows`` rows (default 60,000), crossed ``--levels-a`` x
   ``--levels-b`` levels (default 3,000 x 2,000), each row's levels drawn uniformly.
2. The InstEval-shaped case of ``bench_linear.py`` (73,000 rows, 3,000 x 1,100 x 14 levels, REML),
   same data code, same contenders.

skmixed's time is the median of three fits; the table prints each contender's peak resident memory,
the criterion (``crit``: deviance for ML, REML criterion otherwise, to 1e-7) and the difference of
lme4's criterion minus skmixed's (positive: skmixed's optimum is lower). Run:
``python benchmarks/bench_crossed.py [--skip-instEval]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _harness import machine_line, markdown_table, run_contenders  # noqa: E402
from bench_linear import CROSSED_DATA, LMER_CROSSED, SKMIXED_CROSSED  # noqa: E402

TWO_DATA = """
import json, time, numpy as np, pandas as pd
rng = np.random.default_rng({seed})
n = {rows}
a = rng.integers(0, {ja}, n); b = rng.integers(0, {jb}, n)
x = rng.normal(size=n)
y = 1 + 0.5 * x + rng.normal(0, 1, {ja})[a] + rng.normal(0, .7, {jb})[b] + rng.normal(size=n)
df = pd.DataFrame(dict(y=y, x=x, a=a, b=b))
"""

SKMIXED_TWO = """
from skmixed import MixedLinearRegressor
G = df[["a", "b"]]
MixedLinearRegressor(reml=False).fit(df[["x"]].iloc[:3000], df["y"].iloc[:3000], groups=G.iloc[:3000])  # warm
times = []
for _ in range(3):
    t = time.perf_counter()
    m = MixedLinearRegressor(reml=False).fit(df[["x"]], df["y"], groups=G)
    times.append(time.perf_counter() - t)
sd = {k: float(np.sqrt(v.iloc[0, 0])) for k, v in m.cov_re_.items()}
print("RESULT", json.dumps(dict(fit_s=float(np.median(times)), peak_mb=peak_mb(), b_x=m.fixed_effects_["x"],
      sd_a=sd["a"], sd_b=sd["b"], sigma=m.sigma_, crit=f"{m.deviance_:.7f}",
      note=f"median of 3 fits: {', '.join(f'{v:.2f}' for v in times)} s; {m.n_iter_} Newton iterations, "
           f"converged_={m.converged_}")))
"""

LMER_TWO = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
for (k in c("a", "b")) d[[k]] <- factor(d[[k]])
tm <- system.time(m <- lmer(y ~ x + (1 | a) + (1 | b), d, REML = FALSE))[["elapsed"]]
vc <- as.data.frame(VarCorr(m)); s <- setNames(vc$sdcor, vc$grp)
result(fit_s = tm, peak_mb = peak_mb(), b_x = fixef(m)[["x"]], sd_a = s[["a"]], sd_b = s[["b"]],
       sigma = sigma(m), crit = sprintf("%.7f", deviance(m)))
"""

LMER_INSTEVAL = LMER_CROSSED.replace("sigma = sigma(m), crit = REMLcrit(m))",
                                     'sigma = sigma(m), crit = sprintf("%.7f", REMLcrit(m)))')
SKMIXED_INSTEVAL = SKMIXED_CROSSED.replace("crit=m.reml_criterion_,", 'crit=f"{m.reml_criterion_:.7f}",')


def contest(title, data_code, contenders, columns, csv):
    rows = run_contenders(data_code, contenders, csv, progress=False)
    crits = [float(r["crit"]) for r in rows if isinstance(r.get("crit"), str)]
    if len(crits) == 2:
        rows[0]["lme4 crit - ours"] = f"{crits[1] - crits[0]:.2e}"
    print(f"\n### {title}\n")
    print(markdown_table(rows, ["tool", "fit_s", "time ratio", "peak_mb"] + columns + ["lme4 crit - ours", "note"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--levels-a", type=int, default=3_000)
    ap.add_argument("--levels-b", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--skip-instEval", action="store_true")
    args = ap.parse_args(argv)
    print(f"Machine: {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        data = TWO_DATA.format(rows=args.rows, ja=args.levels_a, jb=args.levels_b, seed=args.seed)
        ns = {}
        exec(data, ns)
        csv = os.path.join(tmp, "two.csv")
        ns["df"].to_csv(csv, index=False, float_format="%.17g")
        contest(f"crossed y ~ x + (1|a) + (1|b), ML: {args.rows:,} rows, {args.levels_a:,} x {args.levels_b:,} levels",
                data, [("skmixed MixedLinearRegressor", "py", SKMIXED_TWO), ("lme4 lmer", "r", LMER_TWO)],
                ["b_x", "sd_a", "sd_b", "sigma", "crit"], csv)
        if not args.skip_instEval:
            data2 = CROSSED_DATA.format(rows=73_000, seed=args.seed)
            ns = {}
            exec(data2, ns)
            csv2 = os.path.join(tmp, "crossed.csv")
            ns["df"].to_csv(csv2, index=False, float_format="%.17g")
            contest("crossed y ~ x + (1|a) + (1|b) + (1|c), REML: 73,000 rows, 3,000 x 1,100 x 14 levels", data2,
                    [("skmixed MixedLinearRegressor", "py", SKMIXED_INSTEVAL), ("lme4 lmer", "r", LMER_INSTEVAL)],
                    ["b_x", "sd_a", "sd_b", "sd_c", "sigma", "crit"], csv2)


if __name__ == "__main__":
    main()
