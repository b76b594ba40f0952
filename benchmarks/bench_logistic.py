"""MixedLogisticRegressor vs lme4::glmer, GPBoost and statsmodels on the seed-000 workload.

Workload (issue 3): ``y_bin ~ x + b + (1 | g)`` from ``make_big_grouped_data`` with 2,000 groups,
binomial-logit GLMM by Laplace (glmer's default ``nAGQ = 1``):

1. ``--sm-rows`` rows (default 20,000): skmixed vs statsmodels' ``BinomialBayesMixedGLM.fit_vb``
   (the only Python peer with a binary GLMM; variational Bayes, not maximum likelihood). It
   needs about ten minutes already at 20,000 rows with 2,000 groups, so it is not run larger.
2. ``--rows`` rows (default 200,000): skmixed (Laplace and nAGQ=0), glmer (timed in R with
   ``system.time``) and GPBoost's ``GPModel(group_data=g, likelihood="bernoulli_logit")``.
3. ``--full-rows`` rows (default 2,000,000): skmixed alone (target < 5 s); ``--full-peers``
   adds GPBoost and glmer there too.
4. ``--crossed-rows`` rows (default 0: skipped, glmer needs minutes): three crossed factors of
   3,000 x 1,100 x 14 levels, ``y ~ x + (1 | a) + (1 | b) + (1 | c)``, skmixed and glmer.
5. ``--crossed-small-rows`` rows (default 0: skipped; 20000 in issue 16): two crossed factors of
   1,000 x 300 levels, ``y ~ x + (1 | a) + (1 | b)``, skmixed and glmer.

The crossed tables add ``loglik - glmer`` (skmixed's logLik minus glmer's: >= 0 means an optimum at
least as good).

Every contender runs in its own process on the same data (Python children regenerate it
from the seed; R reads a CSV written once to a temporary directory); numba's cache is
warmed first. The table gives fit time, the child's CPU time where available (the
machine may be shared: CPU time shows the work, wall time what the user waits),
peak resident memory of the whole child process, the estimates, and time ratios
(peer / skmixed Laplace). Run: ``python benchmarks/bench_logistic.py [--rows N]
[--full-rows N] [--groups G] [--no-statsmodels] [--no-gpboost] [--full-peers]
[--crossed-rows 73000] [--crossed-small-rows 20000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _harness import have_gpboost, machine_line, markdown_table, run_contenders  # noqa: E402

DATA = """
import json, time, numpy as np, pandas as pd
from skmixed.datasets import make_big_grouped_data
df = make_big_grouped_data({rows}, {groups}, seed={seed})
"""

SKMIXED = """
import warnings
from skmixed import MixedLogisticRegressor
small = df.iloc[:3000]
MixedLogisticRegressor(nagq={nagq}).fit(small[["x", "b"]], small["y_bin"], groups=small["g"])  # warm the cache
t, c = time.perf_counter(), time.process_time()
m = MixedLogisticRegressor(nagq={nagq}).fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
fit, cpu = time.perf_counter() - t, time.process_time() - c
fe = m.fixed_effects_
print("RESULT", json.dumps(dict(fit_s=fit, cpu_s=cpu, peak_mb=peak_mb(), b_0=fe["(Intercept)"], b_x=fe["x"],
      b_b=fe["b"], sd_g=float(m.theta_.iloc[0]), loglik=m.loglik_)))
"""

GPBOOST = """
import gpboost as gpb
X = np.column_stack([np.ones(len(df)), df["x"].to_numpy(), df["b"].to_numpy()])
y = df["y_bin"].to_numpy(float)
t, c = time.perf_counter(), time.process_time()
gp = gpb.GPModel(group_data=df["g"].to_numpy(), likelihood="bernoulli_logit")
gp.fit(y=y, X=X)
fit, cpu = time.perf_counter() - t, time.process_time() - c
coef = np.asarray(gp.get_coef()).ravel()
var = float(np.asarray(gp.get_cov_pars()).ravel()[0])
print("RESULT", json.dumps(dict(fit_s=fit, cpu_s=cpu, peak_mb=peak_mb(), b_0=coef[0], b_x=coef[1], b_b=coef[2],
      sd_g=var ** 0.5, loglik=-float(gp.get_current_neg_log_likelihood()))))
"""

STATSMODELS = """
from scipy import sparse
from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
g = df["g"].to_numpy()
G = int(g.max()) + 1
# the random-intercept design as a sparse indicator matrix (from_formula would build it dense)
Zs = sparse.csr_matrix((np.ones(len(df)), (np.arange(len(df)), g)), shape=(len(df), G))
X = np.column_stack([np.ones(len(df)), df["x"].to_numpy(), df["b"].to_numpy()])
t, c = time.perf_counter(), time.process_time()
mod = BinomialBayesMixedGLM(df["y_bin"].to_numpy(float), X, Zs, np.zeros(G, dtype=int))
r = mod.fit_vb()
fit, cpu = time.perf_counter() - t, time.process_time() - c
print("RESULT", json.dumps(dict(fit_s=fit, cpu_s=cpu, peak_mb=peak_mb(), b_0=r.fe_mean[0], b_x=r.fe_mean[1],
      b_b=r.fe_mean[2], sd_g=float(np.exp(r.vcp_mean[0])))))
"""

GLMER = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$g <- factor(d$g)
tm <- system.time(m <- glmer(y_bin ~ x + b + (1 | g), d, family = binomial))
fe <- fixef(m)
result(fit_s = tm[["elapsed"]], cpu_s = tm[["user.self"]] + tm[["sys.self"]], peak_mb = peak_mb(),
       b_0 = fe[["(Intercept)"]], b_x = fe[["x"]], b_b = fe[["b"]], sd_g = getME(m, "theta")[[1]],
       loglik = as.numeric(logLik(m)))
"""

CROSSED_DATA = """
import json, time, numpy as np, pandas as pd
rng = np.random.default_rng({seed})
n = {rows}
levels, sds, names = {levels}, {sds}, {names}
codes = [rng.integers(0, L, n) for L in levels]
x = rng.normal(size=n)
lp = -0.3 + 0.5 * x
for L, s, c in zip(levels, sds, codes):
    lp = lp + rng.normal(0, s, L)[c]
df = pd.DataFrame(dict(y=(rng.random(n) < 1 / (1 + np.exp(-lp))).astype(float), x=x))
for k, c in zip(names, codes):
    df[k] = c
"""

SKMIXED_CROSSED = """
from skmixed import MixedLogisticRegressor
G = df[names]
MixedLogisticRegressor().fit(df[["x"]].iloc[:3000], df["y"].iloc[:3000], groups=G.iloc[:3000])  # warm the cache
t, c = time.perf_counter(), time.process_time()
m = MixedLogisticRegressor().fit(df[["x"]], df["y"], groups=G)
fit, cpu = time.perf_counter() - t, time.process_time() - c
th = m.theta_
print("RESULT", json.dumps(dict(fit_s=fit, cpu_s=cpu, peak_mb=peak_mb(), b_0=m.fixed_effects_["(Intercept)"],
      b_x=m.fixed_effects_["x"], **{"th_" + k: float(th.iloc[i]) for i, k in enumerate(names)},
      loglik=m.loglik_)))
"""

GLMER_CROSSED = """
suppressMessages(library(lme4))
d <- read.csv("{{csv}}")
for (k in c({r_names})) d[[k]] <- factor(d[[k]])
tm <- system.time(m <- glmer(y ~ x + {r_terms}, d, family = binomial))
fe <- fixef(m); th <- getME(m, "theta")
names(th) <- sub("[.].*", "", names(th))
result(fit_s = tm[["elapsed"]], cpu_s = tm[["user.self"]] + tm[["sys.self"]], peak_mb = peak_mb(),
       b_0 = fe[["(Intercept)"]], b_x = fe[["x"]], {r_theta},
       loglik = as.numeric(logLik(m)))
"""

#: the crossed cases: (name, levels, standard deviations) per grouping factor
CROSSED_CASES = {
    "three": (("a", "b", "c"), (3000, 1100, 14), (1.0, 0.5, 0.3)),
    "two": (("a", "b"), (1000, 300), (1.0, 0.5)),
}


def crossed_contest(rows, case, seed, tmp, no_r):
    """skmixed vs glmer on a crossed random-intercept logistic model (its loglik difference in the table)."""
    names, levels, sds = CROSSED_CASES[case]
    data = CROSSED_DATA.format(rows=rows, seed=seed, levels=levels, sds=sds, names=list(names))
    csv = os.path.join(tmp, f"crossed_{case}.csv")
    ns = {}
    exec(data, ns)
    ns["df"].to_csv(csv, index=False, float_format="%.17g")
    contenders = [("skmixed MixedLogisticRegressor (Laplace)", "py", SKMIXED_CROSSED)]
    if not no_r:
        glmer = GLMER_CROSSED.format(r_names=", ".join(f'"{k}"' for k in names),
                                     r_terms=" + ".join(f"(1 | {k})" for k in names),
                                     r_theta=", ".join(f'th_{k} = th[["{k}"]]' for k in names))
        contenders.append(("lme4 glmer (Laplace)", "r", glmer))
    out = run_contenders(data, contenders, csv, progress=True)
    if len(out) > 1 and "loglik" in out[0] and "loglik" in out[1]:
        out[0]["loglik - glmer"] = out[0]["loglik"] - out[1]["loglik"]
    terms = " + ".join(f"(1|{k})" for k in names)
    print(f"\n### crossed y ~ x + {terms}, binomial logit: {rows:,} rows, "
          + " x ".join(f"{L:,}" for L in levels) + " levels\n")
    print(markdown_table(out, ["tool", "fit_s", "time ratio", "cpu_s", "peak_mb", "b_0", "b_x"]
                         + [f"th_{k}" for k in names] + ["loglik", "loglik - glmer", "note"]))
    return out


COLUMNS = ["tool", "fit_s", "time ratio", "cpu_s", "peak_mb", "b_0", "b_x", "b_b", "sd_g", "loglik", "note"]


def contest(title, data_code, contenders, csv):
    rows = run_contenders(data_code, contenders, csv, progress=True)
    print(f"\n### {title}\n")
    print(markdown_table(rows, COLUMNS))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sm-rows", type=int, default=20_000, help="statsmodels comparison size; 0 skips it")
    ap.add_argument("--rows", type=int, default=200_000, help="0 skips the 200k comparison")
    ap.add_argument("--full-rows", type=int, default=2_000_000, help="0 skips the full-size run")
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--no-gpboost", action="store_true")
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--full-peers", action="store_true", help="run GPBoost and glmer at the full size too")
    ap.add_argument("--crossed-rows", type=int, default=0,
                    help="also fit y ~ x + (1|a) + (1|b) + (1|c) with 3,000 x 1,100 x 14 levels on this many "
                         "rows (73000 as in bench_linear; glmer takes minutes there); 0 skips it")
    ap.add_argument("--crossed-small-rows", type=int, default=0,
                    help="also fit y ~ x + (1|a) + (1|b) with 1,000 x 300 crossed levels on this many rows "
                         "(20000 in issue 16's acceptance); 0 skips it")
    args = ap.parse_args(argv)
    print(f"Machine: {machine_line()}")
    gpb_ok = have_gpboost() and not args.no_gpboost
    from skmixed.datasets import make_big_grouped_data

    with tempfile.TemporaryDirectory() as tmp:
        if args.sm_rows and not args.no_statsmodels:
            data = DATA.format(rows=args.sm_rows, groups=args.groups, seed=args.seed)
            contest(f"y_bin ~ x + b + (1 | g): {args.sm_rows:,} rows, {args.groups:,} groups (vs statsmodels)",
                    data, [("skmixed MixedLogisticRegressor (Laplace)", "py", SKMIXED.format(nagq=1)),
                           ("statsmodels BinomialBayesMixedGLM.fit_vb", "py", STATSMODELS)], None)
        sizes = (([(args.rows, True)] if args.rows else [])
                 + ([(args.full_rows, args.full_peers)] if args.full_rows else []))
        for rows, peers in sizes:
            csv = os.path.join(tmp, f"seed_{rows}.csv")
            data = DATA.format(rows=rows, groups=args.groups, seed=args.seed)
            contenders = [("skmixed MixedLogisticRegressor (Laplace)", "py", SKMIXED.format(nagq=1)),
                          ("skmixed MixedLogisticRegressor (nAGQ=0)", "py", SKMIXED.format(nagq=0))]
            if peers:
                if not args.no_r:
                    make_big_grouped_data(rows, args.groups, seed=args.seed).to_csv(csv, index=False,
                                                                                   float_format="%.17g")
                    contenders.append(("lme4 glmer (Laplace)", "r", GLMER))
                if gpb_ok:
                    contenders.append(("GPBoost GPModel bernoulli_logit", "py", GPBOOST))
            contest(f"y_bin ~ x + b + (1 | g): {rows:,} rows, {args.groups:,} groups (binomial logit)", data,
                    contenders, csv)
        if args.crossed_small_rows:
            crossed_contest(args.crossed_small_rows, "two", args.seed, tmp, args.no_r)
        if args.crossed_rows:
            crossed_contest(args.crossed_rows, "three", args.seed, tmp, args.no_r)

if __name__ == "__main__":
    main()
