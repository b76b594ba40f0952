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

The iterative path (crossed random intercepts whose exact dense part would be too large,
:mod:`skmixed._solvers.lmm_iterative`) has its own cases, picked with ``--case``:

* ``--case 60k-iterative``: workload 1 with the iterative path forced, beside the exact path; the child
  also evaluates the *exact* criterion at the iterative estimates (``crit_exact_at_theta``), whose excess
  over the exact path's optimum is the iterative path's criterion error.
* ``--case 100k``: 100,000 rows, 20,000 x 12,000 crossed levels, ML (issue 16, acceptance 2). The fit's
  wall and CPU time (``time.process_time``), peak memory (VmHWM and ``getrusage`` maxrss) and the load
  average are printed; ``--verify-exact`` then runs the exact dense path once in another process (several
  GB, minutes): Newton on the exact gradient from the iterative estimates to the exact optimum, and the
  exact criterion at both; ``--with-lmer`` adds lmer (more than 15 minutes).
* ``--case 10m``: 10,000,000 rows, 1,000,000 x 100,000 crossed levels plus a fixed slope, ML
  (acceptance 3): time, memory, and every estimate's distance from the simulation truth in standard errors
  (fixed effects: their SEs; SDs: from the inverse average information).
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
import os
from skmixed._threads import spare_core
times, cpus, spare = [], [], []
for _ in range(3):
    spare.append(spare_core())
    t, c = time.perf_counter(), time.process_time()
    m = MixedLinearRegressor(reml=False).fit(df[["x"]], df["y"], groups=G)
    times.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
sd = {k: float(np.sqrt(v.iloc[0, 0])) for k, v in m.cov_re_.items()}
print("RESULT", json.dumps(dict(fit_s=float(np.median(times)), cpu_s=float(np.median(cpus)), load1=os.getloadavg()[0],
      threads=f"2 BLAS/numba threads in {sum(spare)} of 3 fits", peak_mb=peak_mb(), b_x=m.fixed_effects_["x"],
      sd_a=sd["a"], sd_b=sd["b"], sigma=m.sigma_, crit=f"{m.deviance_:.7f}",
      note=f"median of 3 fits: {', '.join(f'{v:.2f}' for v in times)} s; {m.n_iter_} Newton iterations, "
           f"converged_={m.converged_}")))
"""

LMER_TWO = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
for (k in c("a", "b")) d[[k]] <- factor(d[[k]])
st <- system.time(m <- lmer(y ~ x + (1 | a) + (1 | b), d, REML = FALSE))
tm <- st[["elapsed"]]
vc <- as.data.frame(VarCorr(m)); s <- setNames(vc$sdcor, vc$grp)
result(fit_s = tm, cpu_s = st[["user.self"]] + st[["sys.self"]], load1 = as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1]),
       peak_mb = peak_mb(), b_x = fixef(m)[["x"]], sd_a = s[["a"]], sd_b = s[["b"]],
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
    if len(rows) == 2 and all(isinstance(r.get("cpu_s"), (int, float)) for r in rows):
        rows[1]["cpu ratio"] = rows[1]["cpu_s"] / rows[0]["cpu_s"]
    print(markdown_table(rows, ["tool", "fit_s", "time ratio", "cpu_s", "cpu ratio", "load1", "peak_mb"] + columns
                         + ["lme4 crit - ours", "threads", "note"]))
    return rows


ITER_SK = """
import os, resource, warnings
import skmixed._solvers.lmm_iterative as li
from skmixed import MixedLinearRegressor
G = df[["a", "b"]]
if {force}:
    li.DENSE_BYTES_LIMIT = 0
phases = {{}}  # where the iterative fit's time goes: wall and CPU seconds per step, and calls

def _timed(owner, name, key):
    fn = getattr(owner, name)
    def wrapper(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return fn(*a, **k)
        finally:
            ph = phases.setdefault(key, [0.0, 0.0, 0])
            ph[0] += time.perf_counter() - t
            ph[1] += time.process_time() - c
            ph[2] += 1
    setattr(owner, name, wrapper)

for owner, name, key in [(li.CrossedStats, "from_rows", "one pass over the rows (CrossedStats)"),
                         (li.CrossedIterative, "evaluate", "criterion evaluations (PCG solves, SLQ probes; all)"),
                         (li.CrossedIterative, "_pcg", "  block PCG (within evaluations and derivatives)"),
                         (li.CrossedIterative, "derivatives", "gradient traces + AI Hessian"),
                         (li.CrossedIterative, "refine_report", "  report refinement (one evaluation on more probes)"),
                         (li.CrossedIterative, "result", "results")]:
    _timed(owner, name, key)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    li.DENSE_BYTES_LIMIT, keep = 0, li.DENSE_BYTES_LIMIT
    MixedLinearRegressor(reml=False).fit(df[["x"]].iloc[:3000], df["y"].iloc[:3000], groups=G.iloc[:3000])  # warm
    li.DENSE_BYTES_LIMIT = keep
    phases.clear()
    t, c = time.perf_counter(), time.process_time()
    m = MixedLinearRegressor(reml=False).fit(df[["x"]], df["y"], groups=G)
    fit_s, cpu_s = time.perf_counter() - t, time.process_time() - c
sd = {{k: float(np.sqrt(v.iloc[0, 0])) for k, v in m.cov_re_.items()}}
info = getattr(m, "iterative_info_", {{}})
out = dict(fit_s=fit_s, cpu_s=cpu_s, load1=os.getloadavg()[0], peak_mb=peak_mb(),
           maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, solver=m.solver_,
           b_0=float(m.fixed_effects_.iloc[0]), b_x=float(m.fixed_effects_["x"]), sd_a=sd["a"], sd_b=sd["b"],
           sigma=m.sigma_, crit=f"{{m.deviance_:.7f}}", crit_se=info.get("criterion_se", 0.0),
           excess=info.get("expected_excess", 0.0), probes=info.get("n_probes", 0),
           theta=m.theta_.tolist(), se_b0=float(m.fixed_effects_se_.iloc[0]), se_bx=float(m.fixed_effects_se_["x"]),
           sd_se=info.get("sd_se"), realised=globals().get("realised"), phases=phases,
           cg_iterations=info.get("cg_iterations"), n_evaluations=info.get("n_evaluations"),
           note=f"{{m.n_iter_}} Newton iterations, converged_={{m.converged_}}")
if {exact_at_theta}:
    from skmixed._design.layout import BlockLayout
    from skmixed._solvers.lmm import LMMProblem, cross_products
    Xd = np.column_stack([np.ones(len(df)), df["x"].to_numpy()])
    lay = BlockLayout.build(m._re_blocks, [df["a"].to_numpy(), df["b"].to_numpy()], 2)
    prob = LMMProblem(lay, cross_products(lay, Xd, df["y"].to_numpy(), x_shift=np.array([0.0, df["x"].mean()]),
                                          y_shift=df["y"].mean()), reml=False)
    out["crit_exact_at_theta"] = f"{{prob.objective(np.asarray(m.theta_)):.7f}}"
print("RESULT", json.dumps(out))
"""

VERIFY_EXACT = """
import os, resource
from skmixed._design.layout import BlockLayout, amalgamate
from skmixed._design.terms import RandomTerm
from skmixed._solvers.lmm import LMMProblem, cross_products
from skmixed._solvers.lmm_newton import ScalarNewton
theta_it = np.array({theta})
codes = [df["a"].to_numpy(), df["b"].to_numpy()]
blocks = amalgamate([RandomTerm(0, True, (), ["(Intercept)"]), RandomTerm(1, True, (), ["(Intercept)"])],
                    [{ja}, {jb}])
Xd = np.column_stack([np.ones(len(df)), df["x"].to_numpy()])
t, c = time.perf_counter(), time.process_time()
lay = BlockLayout.build(blocks, codes, 2)
prob = LMMProblem(lay, cross_products(lay, Xd, df["y"].to_numpy(), x_shift=np.array([0.0, df["x"].mean()]),
                                      y_shift=df["y"].mean()), reml=False)
f_it = prob.objective(theta_it)
theta_ex, n_it, conv = ScalarNewton(prob).minimize(theta_it, max_iter=20)
f_ex = prob.objective(theta_ex)
print("RESULT", json.dumps(dict(fit_s=time.perf_counter() - t, cpu_s=time.process_time() - c, peak_mb=peak_mb(),
      crit_exact_at_iterative=f"{{f_it:.7f}}", crit_exact_optimum=f"{{f_ex:.7f}}", excess=f"{{f_it - f_ex:.3g}}",
      theta=theta_ex.tolist(), note=f"exact Newton from the iterative estimates: {{n_it}} iterations, "
                                    f"gradient vanishes={{conv}}")))
"""

INTERNET_DATA = """
import json, time, numpy as np, pandas as pd
rng = np.random.default_rng({seed})
n = {rows}
a = rng.integers(0, {ja}, n); b = rng.integers(0, {jb}, n)
x = rng.normal(size=n)
ea, eb, e = rng.normal(0, 1, {ja}), rng.normal(0, .7, {jb}), rng.normal(size=n)
y = 1 + 0.5 * x + ea[a] + eb[b] + e
df = pd.DataFrame(dict(y=y, x=x, a=a, b=b))
realised = dict(sd_a=float(ea.std()), sd_b=float(eb.std()), sigma=float(e.std()))  # the draws' own SDs
del a, b, x, y, ea, eb, e
"""


def _iterative_cases(args):
    from _harness import run_python

    cols = ["tool", "solver", "fit_s", "cpu_s", "load1", "peak_mb", "maxrss_mb", "b_x", "sd_a", "sd_b", "sigma",
            "crit", "crit_se", "excess", "probes", "note"]
    if args.case == "60k-iterative":
        data = TWO_DATA.format(rows=args.rows, ja=args.levels_a, jb=args.levels_b, seed=args.seed)
        rows = []
        for name, force in (("skmixed exact path", False), ("skmixed iterative path (forced)", True)):
            res, _, err = run_python(data + ITER_SK.format(force=force, exact_at_theta=True))
            rows.append(dict(tool=name, **(res or {"note": err})))
        ex = rows[0].get("crit")
        for r in rows:
            if ex and "crit_exact_at_theta" in r:
                r["exact crit at theta - exact optimum"] = f"{float(r['crit_exact_at_theta']) - float(ex):.2e}"
        print(f"\n### crossed ML, {args.rows:,} rows, {args.levels_a:,} x {args.levels_b:,}: exact vs iterative\n")
        print(markdown_table(rows, cols + ["crit_exact_at_theta", "exact crit at theta - exact optimum"]))
        return
    big = args.case == "10m"
    rows_n, ja, jb = (10_000_000, 1_000_000, 100_000) if big else (100_000, 20_000, 12_000)
    data = INTERNET_DATA.format(rows=rows_n, ja=ja, jb=jb, seed=args.seed)
    res, _, err = run_python(data + ITER_SK.format(force=False, exact_at_theta=False), timeout=3600)
    row = dict(tool="skmixed MixedLinearRegressor", **(res or {"note": err}))
    print(f"\n### crossed y ~ x + (1|a) + (1|b), ML: {rows_n:,} rows, {ja:,} x {jb:,} levels\n")
    print(markdown_table([row], cols))
    if res and res.get("phases"):
        print(f"\nWhere the fit's time went ({res['n_evaluations']} criterion evaluations, at most "
              f"{res['cg_iterations']} CG iterations in the last; the rest of the fit: input checks, factor codes, "
              f"scaling):\n")
        ph = [dict(step=k, wall_s=v[0], cpu_s=v[1], calls=v[2]) for k, v in res["phases"].items()]
        top = [v for k, v in res["phases"].items() if not k.startswith(" ")]
        ph.append(dict(step="rest of the fit", wall_s=res["fit_s"] - sum(v[0] for v in top),
                       cpu_s=res["cpu_s"] - sum(v[1] for v in top), calls=""))
        print(markdown_table(ph, ["step", "wall_s", "cpu_s", "calls"]))
    if res and big:
        truth = dict(b_0=1.0, b_x=0.5, sd_a=1.0, sd_b=0.7, sigma=1.0)
        ses = dict(b_0=res["se_b0"], b_x=res["se_bx"], sd_a=res["sd_se"][0], sd_b=res["sd_se"][1],
                   sigma=res["sd_se"][2])
        real = res.get("realised") or {}
        print("\nTruth: the simulation's parameters; for the SDs also the SD of the effects actually drawn.\n")
        print("| estimate | value | truth | SE | (value - truth) / SE | drawn SD | (value - drawn) / SE |\n"
              "|---|---|---|---|---|---|---|")
        for k in truth:
            dr = f"{real[k]:.6g} | {(res[k] - real[k]) / ses[k]:+.2f}" if k in real else "– | –"
            print(f"| {k} | {res[k]:.6g} | {truth[k]} | {ses[k]:.3g} | {(res[k] - truth[k]) / ses[k]:+.2f} | {dr} |")
    if res and not big and args.verify_exact:
        ver, _, err = run_python(data + VERIFY_EXACT.format(theta=res["theta"], ja=ja, jb=jb), timeout=7200)
        vrow = dict(tool="exact dense path (verification)", **(ver or {"note": err}))
        if ver:
            vrow["iterative crit - exact optimum (exact criterion at both)"] = ver["excess"]
        print(markdown_table([vrow], ["tool", "fit_s", "cpu_s", "peak_mb", "crit_exact_at_iterative",
                                      "crit_exact_optimum", "iterative crit - exact optimum (exact criterion at both)",
                                      "note"]))
    if res and not big and args.with_lmer:
        with tempfile.TemporaryDirectory() as tmp:
            ns = {}
            exec(data, ns)
            csv = os.path.join(tmp, "big.csv")
            ns["df"].to_csv(csv, index=False, float_format="%.17g")
            contest("lmer on the same data", data, [("lme4 lmer", "r", LMER_TWO)], ["b_x", "sd_a", "sd_b", "crit"], csv)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--levels-a", type=int, default=3_000)
    ap.add_argument("--levels-b", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--skip-instEval", action="store_true")
    ap.add_argument("--case", choices=["lmer", "60k-iterative", "100k", "10m"], default="lmer",
                    help="lmer: the lmer comparisons (default); the others: the iterative path's cases")
    ap.add_argument("--verify-exact", action="store_true", help="--case 100k: verify against the exact dense path")
    ap.add_argument("--with-lmer", action="store_true", help="--case 100k: also run lmer (> 15 minutes)")
    args = ap.parse_args(argv)
    print(f"Machine: {machine_line()}")
    if args.case != "lmer":
        _iterative_cases(args)
        return
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
