"""MixedLinearRegressor vs statsmodels MixedLM, GPBoost and lme4::lmer on the seed-000 workload.

Workload 1 (issue 2): ``y ~ x + b + (1 | g)``, 2,000,000 rows, 2,000 groups (REML).
Workload 2: a crossed design shaped like lme4's InstEval: 73,000 rows, three crossed
random intercepts with 3,000, 1,100 and 14 levels.

Every contender runs in its own process on the same data (Python children regenerate
it from the seed; R reads the CSV written once), numba's cache is warmed first, and
the table prints fit time, peak memory and the estimates, with time ratios
(peer / skmixed). GPBoost (when installed) estimates by ML, the others by REML. Run: ``python benchmarks/bench_linear.py [--rows N] [--groups G]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _harness import have_gpboost, machine_line, markdown_table, run_contenders  # noqa: E402

SEED_DATA = """
import json, time, numpy as np, pandas as pd
from skmixed.datasets import make_big_grouped_data
df = make_big_grouped_data({rows}, {groups}, seed={seed})
"""

CROSSED_DATA = """
import json, time, numpy as np, pandas as pd
rng = np.random.default_rng({seed})
n = {rows}
a = rng.integers(0, 3000, n); b = rng.integers(0, 1100, n); c = rng.integers(0, 14, n)
x = rng.normal(size=n)
y = (1 + 0.5 * x + rng.normal(0, 1, 3000)[a] + rng.normal(0, .5, 1100)[b] + rng.normal(0, .3, 14)[c]
     + rng.normal(size=n))
df = pd.DataFrame(dict(y=y, x=x, a=a, b=b, c=c))
"""

SKMIXED_SEED = """
from skmixed import MixedLinearRegressor
MixedLinearRegressor().fit(df[["x", "b"]].iloc[:2000], df["y"].iloc[:2000], groups=df["g"].iloc[:2000])  # warm cache
t = time.perf_counter()
m = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
fit = time.perf_counter() - t
fe = m.fixed_effects_
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), b_x=fe["x"], b_b=fe["b"],
      sd_g=float(np.sqrt(m.cov_re_["g"].iloc[0, 0])), sigma=m.sigma_, crit=m.reml_criterion_)))
"""

STATSMODELS_SEED = """
import statsmodels.formula.api as smf
t = time.perf_counter()
r = smf.mixedlm("y ~ x + b", df, groups=df["g"]).fit(reml=True)
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), b_x=r.fe_params["x"], b_b=r.fe_params["b"],
      sd_g=float(np.sqrt(r.cov_re.iloc[0, 0])), sigma=float(np.sqrt(r.scale)))))
"""

GPBOOST_SEED = """
import gpboost as gpb
X = np.column_stack([np.ones(len(df)), df["x"].to_numpy(), df["b"].to_numpy()])
t = time.perf_counter()
gp = gpb.GPModel(group_data=df["g"].to_numpy(), likelihood="gaussian")
gp.fit(y=df["y"].to_numpy(), X=X)
fit = time.perf_counter() - t
coef, cp = np.asarray(gp.get_coef()).ravel(), np.asarray(gp.get_cov_pars()).ravel()  # [sigma^2, var_g]
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), b_x=coef[1], b_b=coef[2],
      sd_g=float(np.sqrt(cp[1])), sigma=float(np.sqrt(cp[0])))))
"""

GPBOOST_CROSSED = """
import gpboost as gpb
t = time.perf_counter()
gp = gpb.GPModel(group_data=df[["a", "b", "c"]].to_numpy(), likelihood="gaussian")
gp.fit(y=df["y"].to_numpy(), X=np.column_stack([np.ones(len(df)), df["x"].to_numpy()]))
fit = time.perf_counter() - t
coef, cp = np.asarray(gp.get_coef()).ravel(), np.asarray(gp.get_cov_pars()).ravel()  # [sigma^2, a, b, c]
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), b_x=coef[1], sd_a=float(np.sqrt(cp[1])),
      sd_b=float(np.sqrt(cp[2])), sd_c=float(np.sqrt(cp[3])), sigma=float(np.sqrt(cp[0])))))
"""

LMER_SEED = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$g <- factor(d$g)
tm <- system.time(m <- lmer(y ~ x + b + (1 | g), d, REML = TRUE))[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
result(fit_s = tm, peak_mb = peak_mb(), b_x = fixef(m)[["x"]], b_b = fixef(m)[["b"]],
       sd_g = vc$sdcor[1], sigma = sigma(m), crit = REMLcrit(m))
"""

SKMIXED_CROSSED = """
from skmixed import MixedLinearRegressor
G = df[["a", "b", "c"]]
MixedLinearRegressor().fit(df[["x"]].iloc[:3000], df["y"].iloc[:3000], groups=G.iloc[:3000])  # warm cache
times = []
for _ in range(3):  # the median of three: one fit is short enough for a neighbour's burst to matter
    t = time.perf_counter()
    m = MixedLinearRegressor().fit(df[["x"]], df["y"], groups=G)
    times.append(time.perf_counter() - t)
sd = {k: float(np.sqrt(v.iloc[0, 0])) for k, v in m.cov_re_.items()}
print("RESULT", json.dumps(dict(fit_s=float(np.median(times)), peak_mb=peak_mb(), b_x=m.fixed_effects_["x"],
      sd_a=sd["a"], sd_b=sd["b"], sd_c=sd["c"], sigma=m.sigma_, crit=m.reml_criterion_,
      note=f"median of 3 fits; all: {', '.join(f'{v:.2f}' for v in times)} s; {m.n_iter_} optimiser iterations")))
"""

LMER_CROSSED = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
for (k in c("a", "b", "c")) d[[k]] <- factor(d[[k]])
tm <- system.time(m <- lmer(y ~ x + (1 | a) + (1 | b) + (1 | c), d, REML = TRUE))[["elapsed"]]
vc <- as.data.frame(VarCorr(m)); s <- setNames(vc$sdcor, vc$grp)
result(fit_s = tm, peak_mb = peak_mb(), b_x = fixef(m)[["x"]], sd_a = s[["a"]], sd_b = s[["b"]],
       sd_c = s[["c"]], sigma = sigma(m), crit = REMLcrit(m))
"""


def contest(title, data_code, contenders, columns, csv):
    rows = run_contenders(data_code, contenders, csv, progress=False)
    print(f"\n### {title}\n")
    print(markdown_table(rows, ["tool", "fit_s", "time ratio", "peak_mb"] + columns + ["note"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--crossed-rows", type=int, default=73_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-statsmodels", action="store_true", help="skip statsmodels (minutes at 2M rows)")
    args = ap.parse_args(argv)
    print(f"Machine: {machine_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np  # noqa: F401
        from skmixed.datasets import make_big_grouped_data

        csv = os.path.join(tmp, "seed.csv")
        make_big_grouped_data(args.rows, args.groups, seed=args.seed).to_csv(csv, index=False, float_format="%.17g")
        data = SEED_DATA.format(rows=args.rows, groups=args.groups, seed=args.seed)
        contenders = [("skmixed MixedLinearRegressor", "py", SKMIXED_SEED)]
        if not args.no_statsmodels:
            contenders.append(("statsmodels MixedLM", "py", STATSMODELS_SEED))
        if have_gpboost():
            contenders.append(("GPBoost GPModel (ML)", "py", GPBOOST_SEED))
        contenders.append(("lme4 lmer", "r", LMER_SEED))
        contest(f"y ~ x + b + (1 | g): {args.rows:,} rows, {args.groups:,} groups (REML)", data, contenders,
                ["b_x", "b_b", "sd_g", "sigma", "crit"], csv)

        ns = {}
        exec(CROSSED_DATA.format(rows=args.crossed_rows, seed=args.seed), ns)
        csv2 = os.path.join(tmp, "crossed.csv")
        ns["df"].to_csv(csv2, index=False, float_format="%.17g")
        data2 = CROSSED_DATA.format(rows=args.crossed_rows, seed=args.seed)
        contest(f"crossed y ~ x + (1|a) + (1|b) + (1|c): {args.crossed_rows:,} rows, 3,000 x 1,100 x 14 levels",
                data2, [("skmixed MixedLinearRegressor", "py", SKMIXED_CROSSED),
                        ("statsmodels MixedLM", "note", "no crossed random effects (only variance components "
                         "nested in one group: a dense 4,114-column design)")]
                + ([("GPBoost GPModel (ML)", "py", GPBOOST_CROSSED)] if have_gpboost() else [])
                + [("lme4 lmer", "r", LMER_CROSSED)],
                ["b_x", "sd_a", "sd_b", "sd_c", "sigma", "crit"], csv2)


if __name__ == "__main__":
    main()
