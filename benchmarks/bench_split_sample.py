"""SplitSampleMixed: acceptance on the seed-000 workload, a coverage simulation, parallel speedup.

Part 1 (issue 6, acceptance 1): ``y ~ x + b + (1 | g)`` on 2,000,000 rows / 2,000 groups.
The full MixedLinearRegressor fit against SplitSampleMixed(M=8, strategy="groups") with 2 jobs
(and 1 job), plus statsmodels MixedLM (linear model), GPBoost (if installed) and lme4::lmer /
glmer on the full data when Rscript is installed; each contender in its own child process. Prints estimates, SEs, the split/full ratios (|difference| in full-fit SEs,
SE ratio, variance-component ratio) and times. The logistic version runs when
``skmixed.MixedLogisticRegressor`` exists.

Part 2 (acceptance 2): ``--reps`` replications of small data (``--groups`` x ``--per-group``),
full fit as baseline; bias, empirical SD, mean SE and coverage of 95 % intervals for each
strategy (and the naive independent-subsample SEs for ``within`` as a contrast).

Part 3 (acceptance 4): MixedLogisticRegressor on the 2,000,000-row workload, SplitSampleMixed
n_jobs=2 against n_jobs=1 run on one core (job scaling) and against n_jobs=1 with numba threads
on every core (the default), when the logistic estimator exists.

Run: ``python benchmarks/bench_split_sample.py [--rows N] [--groups G] [--reps R] [--part 1 2 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _harness import have_rscript, machine_line, markdown_table, run_python, run_r  # noqa: E402

DATA = """
import json, time, warnings, numpy as np, pandas as pd
from skmixed.datasets import make_big_grouped_data
df = make_big_grouped_data({rows}, {groups}, seed={seed})
X, G = df[["x", "b"]], df["g"]
Y = df["{response}"]
"""

FULL = """
from skmixed import {cls}
{cls}().fit(X.iloc[:20000], Y.iloc[:20000], groups=G.iloc[:20000])  # warm numba's cache
t = time.perf_counter()
m = {cls}().fit(X, Y, groups=G)
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), fe=m.fixed_effects_.tolist(),
      se=m.fixed_effects_se_.tolist(), var_g=float(m.cov_re_["g"].iloc[0, 0]),
      sigma=getattr(m, "sigma_", None))))
"""

SPLIT = """
from skmixed import {cls}, SplitSampleMixed
ss = SplitSampleMixed({cls}(), n_subsamples={M}, strategy="{strategy}", n_jobs={jobs}, random_state=0)
ss.fit(X.iloc[:40000], Y.iloc[:40000], groups=G.iloc[:40000])  # warm the worker pool and numba's cache
t = time.perf_counter()
ss.fit(X, Y, groups=G)
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), fe=ss.fixed_effects_.tolist(),
      se=ss.fixed_effects_se_.tolist(), var_g=float(ss.cov_re_["g"].iloc[0, 0]),
      sigma=getattr(ss, "sigma_", None))))
"""

LMER = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$g <- factor(d$g)
tm <- system.time(m <- {call})[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
se <- sqrt(diag(as.matrix(vcov(m))))
result(fit_s = tm, peak_mb = peak_mb(), fe0 = fixef(m)[[1]], fe1 = fixef(m)[["x"]], fe2 = fixef(m)[["b"]],
       se0 = se[[1]], se1 = se[[2]], se2 = se[[3]], var_g = vc$vcov[1])
"""

STATSMODELS = """
import statsmodels.formula.api as smf
t = time.perf_counter()
r = smf.mixedlm("y ~ x + b", df, groups=df["g"]).fit(reml=True)
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), fe=r.fe_params.tolist(), var_g=float(r.cov_re.iloc[0, 0]))))
"""

GPBOOST = """
import gpboost as gpb
t = time.perf_counter()
gp = gpb.GPModel(group_data=G.to_numpy(), likelihood="{lik}")
gp.fit(y=Y.to_numpy(float), X=np.column_stack([np.ones(len(df)), df["x"].to_numpy(), df["b"].to_numpy()]))
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), fe=np.asarray(gp.get_coef()).ravel().tolist(),
      var_g=float(np.asarray(gp.get_cov_pars()).ravel()[-1]))))
"""

NAMES = ["(Intercept)", "x", "b"]


def have_logistic() -> bool:
    try:
        from skmixed import MixedLogisticRegressor  # noqa: F401
    except ImportError:
        return False
    return True


def have_gpboost() -> bool:
    try:
        import gpboost  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------ part 1
def part1(args, cls="MixedLinearRegressor", response="y"):
    data = DATA.format(rows=args.rows, groups=args.groups, seed=args.seed, response=response)
    print(f"\n## Part 1: {cls} on {args.rows:,} rows / {args.groups:,} groups, M={args.M} groups strategy\n")
    full, t_full, err = run_python(data + FULL.format(cls=cls))
    if full is None:
        print(f"full fit failed: {err}")
        return
    runs = {}
    for jobs in (2, 1):
        res, _, err = run_python(data + SPLIT.format(cls=cls, M=args.M, strategy="groups", jobs=jobs))
        if res is None:
            print(f"split n_jobs={jobs} failed: {err}")
        runs[jobs] = res
    lme4 = None
    if have_rscript() and not args.no_r:
        with tempfile.TemporaryDirectory() as tmp:
            csv = os.path.join(tmp, "d.csv")
            from skmixed.datasets import make_big_grouped_data

            df = make_big_grouped_data(args.rows, args.groups, seed=args.seed)
            df[[response, "x", "b", "g"]].to_csv(csv, index=False)
            call = ("lmer(y ~ x + b + (1 | g), d, REML = TRUE)" if response == "y" else
                    "glmer(y_bin ~ x + b + (1 | g), d, family = binomial)")
            lme4, _, err = run_r(LMER.format(csv=csv, call=call), timeout=3600)
            if lme4 is None:
                print(f"lme4 failed: {err}")
    sp = runs.get(2) or runs.get(1)
    rows = []
    for k, nm in enumerate(NAMES):
        r = {"parameter": nm, "full": full["fe"][k], "full SE": full["se"][k]}
        if sp:
            r.update({"split": sp["fe"][k], "split SE": sp["se"][k],
                      "|diff|/SE": abs(sp["fe"][k] - full["fe"][k]) / full["se"][k],
                      "SE ratio": sp["se"][k] / full["se"][k]})
        if lme4:
            r["lme4"] = lme4[f"fe{k}"]
            r["lme4 SE"] = lme4[f"se{k}"]
        rows.append(r)
    r = {"parameter": "var(g)", "full": full["var_g"]}
    if sp:
        r.update({"split": sp["var_g"], "SE ratio": float("nan"), "var ratio": sp["var_g"] / full["var_g"]})
    if lme4:
        r["lme4"] = lme4["var_g"]
    rows.append(r)
    if full.get("sigma") is not None and sp and response == "y":
        rows.append({"parameter": "sigma", "full": full["sigma"], "split": sp["sigma"],
                     "var ratio": (sp["sigma"] / full["sigma"]) ** 2})
    print(markdown_table(rows, ["parameter", "full", "full SE", "split", "split SE", "|diff|/SE", "SE ratio",
                                "var ratio", "lme4", "lme4 SE"]))
    trows = [{"contender": f"skmixed {cls} full fit", "fit_s": full["fit_s"], "peak_mb": full["peak_mb"]}]
    for jobs, res in runs.items():
        if res:
            trows.append({"contender": f"SplitSampleMixed M={args.M}, n_jobs={jobs}", "fit_s": res["fit_s"],
                          "peak_mb": res["peak_mb"]})
    if lme4:
        trows.append({"contender": "lme4 full fit", "fit_s": lme4["fit_s"], "peak_mb": lme4["peak_mb"],
                      "x": lme4["fe1"], "var(g)": lme4["var_g"]})
    # Python peers on the full data (same child-process measurement)
    peers = []
    if response == "y" and not args.no_statsmodels:
        peers.append(("statsmodels MixedLM (REML) full fit", STATSMODELS))
    elif response != "y":
        trows.append({"contender": "statsmodels", "note": "no ML binary GLMM (its variational-Bayes "
                      "BinomialBayesMixedGLM: see bench_logistic, infeasible at this size)"})
    if have_gpboost():
        peers.append(("GPBoost GPModel (ML) full fit",
                      GPBOOST.format(lik="gaussian" if response == "y" else "bernoulli_logit")))
    for name, code in peers:
        res, _, err = run_python(data + code)
        trows.append({"contender": name, "note": err} if res is None else
                     {"contender": name, "fit_s": res["fit_s"], "peak_mb": res["peak_mb"], "x": res["fe"][1],
                      "var(g)": res["var_g"]})
    trows[0].update({"x": full["fe"][1], "var(g)": full["var_g"]})
    if sp:
        trows[1].update({"x": sp["fe"][1], "var(g)": sp["var_g"]})
    for t in trows:
        if "fit_s" not in t:
            continue
        t["time / full skmixed"] = t["fit_s"] / full["fit_s"]
    print()
    print(markdown_table(trows, ["contender", "fit_s", "peak_mb", "time / full skmixed", "x", "var(g)", "note"]))
    if sp:
        ok_fe = all(abs(sp["fe"][k] - full["fe"][k]) / full["se"][k] < 0.5 for k in range(3))
        ok_se = all(abs(sp["se"][k] / full["se"][k] - 1) < 0.15 for k in range(3))
        ok_vc = abs(sp["var_g"] / full["var_g"] - 1) < 0.05 and (
            response != "y" or abs((sp["sigma"] / full["sigma"]) ** 2 - 1) < 0.05)
        print(f"\nacceptance: fixed effects within 0.5 SE: {ok_fe}; SEs within 15 %: {ok_se}; "
              f"variance components within 5 %: {ok_vc}")
    if runs.get(1) and runs.get(2):
        print(f"split n_jobs=2 vs n_jobs=1 speedup: {runs[1]['fit_s'] / runs[2]['fit_s']:.2f}x")


# ------------------------------------------------------------------------------ part 2
def simulate_once(rng, n_groups, per_group, M, beta, tau, sigma):
    from skmixed import MixedLinearRegressor, SplitSampleMixed

    n = n_groups * per_group
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=n)
    b = rng.binomial(1, 0.5, n_groups)[g].astype(float)
    y = beta[0] + beta[1] * x + beta[2] * b + rng.normal(0, tau, n_groups)[g] + rng.normal(0, sigma, n)
    X = np.column_stack([x, b])
    out = {}
    full = MixedLinearRegressor().fit(X, y, groups=g)
    out["full fit"] = (full.fixed_effects_.to_numpy(), full.fixed_effects_se_.to_numpy(),
                       next(iter(full.cov_re_.values())).iloc[0, 0], full.sigma_**2)
    seed = int(rng.integers(2**31))
    for name, strategy, combine in [("groups", "groups", "equal"), ("groups, inverse-variance", "groups",
                                                                    "inverse_variance"),
                                    ("within", "within", "equal"), ("pairwise", "pairwise", "equal")]:
        ss = SplitSampleMixed(MixedLinearRegressor(), n_subsamples=M, strategy=strategy, combine=combine,
                              random_state=seed).fit(X, y, groups=g)
        out[name] = (ss.fixed_effects_.to_numpy(), ss.fixed_effects_se_.to_numpy(), next(iter(ss.cov_re_.values())).iloc[0, 0],
                     ss.sigma_**2)
        if name == "within":
            naive = np.sqrt(np.diag(sum(e.vcov_.to_numpy() for e in ss.estimators_))) / M
            out["within, naive SE"] = (out[name][0], naive, out[name][2], out[name][3])
    return out


def part2(args):
    beta, tau, sigma = np.array([0.0, 0.5, 0.25]), 0.5, 1.0
    print(f"\n## Part 2: simulation, {args.reps} replications of {args.sim_groups} groups x {args.per_group} rows, "
          f"M={args.sim_M}, y = 0.5 x + 0.25 b + u_g + e, sd(u)={tau}, sd(e)={sigma}\n")
    rng = np.random.default_rng(args.seed)
    res = {}
    t0 = time.perf_counter()
    from threadpoolctl import threadpool_limits

    # small fits: one thread each (thread hand-offs cost more than they save at 2,000 rows)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        for _ in range(args.reps):
            for k, v in simulate_once(rng, args.sim_groups, args.per_group, args.sim_M, beta, tau, sigma).items():
                res.setdefault(k, []).append(v)
    elapsed = time.perf_counter() - t0
    full_sd = np.std([v[0] for v in res["full fit"]], axis=0, ddof=1)
    rows = []
    for name, vals in res.items():
        est = np.array([v[0] for v in vals])
        se = np.array([v[1] for v in vals])
        cover = np.abs(est - beta) <= 1.959964 * se
        for k, nm in enumerate(NAMES):
            rows.append({"strategy": name, "parameter": nm, "bias": est[:, k].mean() - beta[k],
                         "bias / full SD": (est[:, k].mean() - beta[k]) / full_sd[k],
                         "emp. SD": est[:, k].std(ddof=1), "mean SE": se[:, k].mean(),
                         "mean SE / emp. SD": se[:, k].mean() / est[:, k].std(ddof=1),
                         "coverage %": 100 * cover[:, k].mean()})
    print(markdown_table(rows, ["strategy", "parameter", "bias", "bias / full SD", "emp. SD", "mean SE",
                                "mean SE / emp. SD", "coverage %"]))
    mc = 100 * 1.96 * np.sqrt(0.95 * 0.05 / args.reps)
    print(f"\n(Monte-Carlo 95 % band of a coverage of 95 %: +/-{mc:.1f} points)\n")
    vrows = []
    for name, vals in res.items():
        if "naive" in name:
            continue
        t2 = np.array([v[2] for v in vals])
        s2 = np.array([v[3] for v in vals])
        vrows.append({"strategy": name, "mean var(u)": t2.mean(), "rel. bias var(u) %": 100 * (t2.mean() / tau**2 - 1),
                      "mean sigma^2": s2.mean(), "rel. bias sigma^2 %": 100 * (s2.mean() / sigma**2 - 1)})
    print(markdown_table(vrows, ["strategy", "mean var(u)", "rel. bias var(u) %", "mean sigma^2",
                                 "rel. bias sigma^2 %"]))
    cov_groups = [r["coverage %"] for r in rows if r["strategy"] == "groups"]
    print(f"\ncoverage of the groups strategy: {min(cov_groups):.1f}-{max(cov_groups):.1f} % "
          f"(acceptance 92-98 %: {all(92 <= c <= 98 for c in cov_groups)}); simulation took {elapsed:.0f} s")


# ------------------------------------------------------------------------------ part 3
SPEED = """
from threadpoolctl import threadpool_limits
import skmixed._threads  # numba follows threadpoolctl
from skmixed import MixedLogisticRegressor, SplitSampleMixed
ss = SplitSampleMixed(MixedLogisticRegressor(), n_subsamples={M}, n_jobs={jobs}, random_state=0)
with threadpool_limits(limits={cores}):
    ss.fit(X.iloc[:40000], Y.iloc[:40000], groups=G.iloc[:40000])  # warm the pool and numba's cache
    times = []
    for _ in range({repeat}):  # best of a few: the machine is shared
        t = time.perf_counter()
        ss.fit(X, Y, groups=G)
        times.append(time.perf_counter() - t)
print("RESULT", json.dumps(dict(fit_s=min(times), median_s=float(np.median(times)), peak_mb=peak_mb())))
"""

# (label, n_jobs, thread budget of the whole fit: None = all cores)
SPEED_RUNS = [("1 job on 1 core", 1, 1),
              ("1 job, numba threads on all cores (the default)", 1, None),
              ("2 jobs, 1 thread each (the default)", 2, None)]


def part3(args):
    if not have_logistic():
        print("\n## Part 3: skipped (MixedLogisticRegressor not available in this build)")
        return
    print(f"\n## Part 3: SplitSampleMixed(MixedLogisticRegressor, M={args.M}) on {args.rows:,} rows, "
          f"n_jobs=2 vs n_jobs=1 ({os.cpu_count()} cores)\n")
    data = DATA.format(rows=args.rows, groups=args.groups, seed=args.seed, response="y_bin")
    rows = []
    for label, jobs, cores in SPEED_RUNS:
        res, _, err = run_python(data + SPEED.format(M=args.M, jobs=jobs, cores=cores, repeat=args.repeat))
        if res is None:
            print(f"{label} failed: {err}")
            return
        rows.append({"run": label, "best fit_s": res["fit_s"], "median fit_s": res["median_s"],
                     "peak_mb": res["peak_mb"]})
    two = rows[-1]
    for r in rows:
        r["2 jobs faster by (best)"] = r["best fit_s"] / two["best fit_s"]
        r["2 jobs faster by (median)"] = r["median fit_s"] / two["median fit_s"]
    print(markdown_table(rows, ["run", "best fit_s", "median fit_s", "peak_mb", "2 jobs faster by (best)",
                                "2 jobs faster by (median)"]))
    print(f"(best / median of {args.repeat} fits each; load average at the end: {os.getloadavg()[0]:.1f})")
    print("Job scaling is the first row: each job is one core's work, as in the workers. With one job the\n"
          "fits' numba kernels already use every core (second row), so a second job can only add what\n"
          "kernel threading leaves on the table.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--M", type=int, default=8)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--sim-groups", type=int, default=100)
    ap.add_argument("--per-group", type=int, default=20)
    ap.add_argument("--sim-M", type=int, default=4)
    ap.add_argument("--part", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--repeat", type=int, default=5, help="timed fits per n_jobs in part 3")
    ap.add_argument("--model", choices=["linear", "logistic", "both"], default="both", help="part 1 models")
    ap.add_argument("--no-r", action="store_true", help="skip lme4 even when Rscript is installed")
    ap.add_argument("--no-statsmodels", action="store_true", help="skip statsmodels MixedLM in part 1")
    args = ap.parse_args()
    print(f"# SplitSampleMixed benchmark\n\n{machine_line()}")
    if 1 in args.part:
        if args.model in ("linear", "both"):
            part1(args)
        if args.model in ("logistic", "both"):
            if have_logistic():
                part1(args, cls="MixedLogisticRegressor", response="y_bin")
            else:
                print("\n## Part 1 (logistic): skipped (MixedLogisticRegressor not available in this build)")
    if 2 in args.part:
        part2(args)
    if 3 in args.part:
        part3(args)


if __name__ == "__main__":
    main()
