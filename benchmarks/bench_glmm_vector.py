"""Crossed / nested GLMMs with vector random terms: skmixed (exact gradient) vs its finite-difference path vs glmer.

Issue 16: multi-factor GLMMs with a vector term such as ``(1 + x | a) + (1 | b)`` searched on
finite differences over ``(theta, beta)``; they now use the exact Laplace gradient
(:class:`skmixed._solvers.glmm_multi_grad.BlockLaplaceGradient`). Cases: the three glmer reference
fits of ``tests/test_glmm_vector_reference.py`` (VerbAgg subset, simulated binomial trials with an
offset, grouseticks nested Poisson) and a simulated crossed logistic ``y ~ x + (1 + x | a) + (1 | b)``
on ``--rows`` rows with 1,000 x 300 levels. Every contender runs in its own process (fit time
inside it, peak resident memory of the whole process); "previous FD path" is skmixed with the exact
gradient switched off, i.e. the code before this change. ``loglik - glmer`` >= 0: an optimum at
least as good as glmer's (default control).

Run: ``python benchmarks/bench_glmm_vector.py [--rows 20000] [--no-r]``.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import machine_line, markdown_table, run_contenders  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

LOADERS = {
    "verbagg_item_slope": (f"""
df = pd.read_csv({os.path.join(DATA, 'verbagg_subset.csv')!r}, dtype={{"id": str, "item": str, "btype": str, "situ": str}})
weight = None
""", "y ~ Anger + male + btype + situ + (1 | id) + (1 + male | item)", "Logistic", f"""
d <- read.csv("{os.path.join(DATA, 'verbagg_subset.csv')}", colClasses = c("integer", "numeric", "numeric", "factor",
              "factor", "factor", "factor"))
fm <- y ~ Anger + male + btype + situ + (1 | id) + (1 + male | item); fam <- binomial
"""),
    "sim_trials_offset": (f"""
df = pd.read_csv({os.path.join(DATA, 'glmm_vector_sim.csv')!r}, dtype={{"subj": str, "item": str}})
df["p"] = df["s"] / df["trials"]
weight = "trials"
""", "p ~ x + offset(o) + (1 + x | subj) + (1 | item)", "Logistic", f"""
d <- read.csv("{os.path.join(DATA, 'glmm_vector_sim.csv')}"); d$subj <- factor(d$subj); d$item <- factor(d$item)
fm <- cbind(s, trials - s) ~ x + offset(o) + (1 + x | subj) + (1 | item); fam <- binomial
"""),
    "grouseticks_location_slope": (f"""
df = pd.read_csv({os.path.join(DATA, 'grouseticks.csv')!r}, dtype={{"YEAR": str, "BROOD": str, "LOCATION": str}})
df["cyear"] = df["YEAR"].astype(float) - 96
weight = None
""", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 + cyear | LOCATION)", "Poisson", f"""
d <- read.csv("{os.path.join(DATA, 'grouseticks.csv')}")
d$YEAR <- factor(d$YEAR); d$BROOD <- factor(d$BROOD); d$LOCATION <- factor(d$LOCATION)
d$cyear <- as.numeric(as.character(d$YEAR)) - 96
fm <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 + cyear | LOCATION); fam <- poisson
"""),
}

SIM = """
rng = np.random.default_rng({seed})
n, A, B = {rows}, 1000, 300
a, b, x = rng.integers(0, A, n), rng.integers(0, B, n), rng.normal(size=n)
ua = rng.multivariate_normal([0, 0], [[0.8, 0.2], [0.2, 0.3]], A)
eta = -0.3 + 0.5 * x + ua[a, 0] + ua[a, 1] * x + rng.normal(0, 0.5, B)[b]
df = pd.DataFrame(dict(y=(rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), x=x, a=a.astype(str), b=b.astype(str)))
weight = None
"""

PY = """
import json, time, warnings
import numpy as np, pandas as pd
{data}
import skmixed
from skmixed import MixedLogisticRegressor, MixedPoissonRegressor
if {fd}:
    # the previous path: no exact gradient for vector terms (finite differences, nAGQ=0 start stage)
    import skmixed._solvers.glmm as sg
    _orig = sg.MultiFactorGLMM.exact_gradient.fget
    sg.MultiFactorGLMM.exact_gradient = property(lambda self: (lambda g: g if g is not None and g.scalar else None)(_orig(self)))
Est = Mixed{est}Regressor
kw = {{}} if weight is None else {{"sample_weight": df[weight].to_numpy(float)}}
warnings.simplefilter("ignore")
Est.from_formula({formula!r}, df, **kw)  # compile / load the numba cache outside the timing
t, c = time.perf_counter(), time.process_time()
m = Est.from_formula({formula!r}, df, **kw)
fit, cpu = time.perf_counter() - t, time.process_time() - c
print("RESULT", json.dumps(dict(fit_s=fit, cpu_s=cpu, peak_mb=peak_mb(), loglik=m.loglik_, n_iter=int(m.n_iter_))))
"""

R = """
suppressMessages(library(lme4))
{load}
tm <- system.time(m <- glmer(fm, d, family = fam))
result(fit_s = tm[["elapsed"]], cpu_s = tm[["user.self"]] + tm[["sys.self"]], peak_mb = peak_mb(),
       loglik = as.numeric(logLik(m)))
"""


def run_case(name, data, formula, est, r_load, no_r):
    contenders = [("skmixed (exact gradient)", "py", PY.format(data="", fd=False, est=est, formula=formula)),
                  ("skmixed (previous FD path)", "py", PY.format(data="", fd=True, est=est, formula=formula))]
    if not no_r:
        contenders.append(("lme4 glmer (Laplace, default)", "r", R.format(load=r_load)))
    rows = run_contenders(data, contenders, "", progress=True)
    ref = rows[-1].get("loglik") if not no_r else None
    for r in rows:
        if ref is not None and "loglik" in r:
            r["loglik - glmer"] = r["loglik"] - ref
    print(f"\n### {name}: `{formula}`\n")
    print(markdown_table(rows, ["tool", "fit_s", "time ratio", "cpu_s", "peak_mb", "n_iter", "loglik", "loglik - glmer",
                                "note"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20000, help="rows of the simulated 1,000 x 300 crossed case (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args(argv)
    print(f"machine: {machine_line()}")
    for name, (data, formula, est, r_load) in LOADERS.items():
        run_case(name, "import numpy as np, pandas as pd\n" + data, formula, est, r_load, args.no_r)
    if args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            csv = os.path.join(tmp, "crossed_vector.csv")
            data = "import numpy as np, pandas as pd\n" + SIM.format(seed=args.seed, rows=args.rows)
            ns = {}
            exec(data, ns)
            ns["df"].to_csv(csv, index=False, float_format="%.17g")
            r_load = (f'd <- read.csv("{csv}"); d$a <- factor(d$a); d$b <- factor(d$b)\n'
                      "fm <- y ~ x + (1 + x | a) + (1 | b); fam <- binomial")
            run_case(f"simulated crossed logistic, {args.rows:,} rows, 1,000 x 300 levels", data,
                     "y ~ x + (1 + x | a) + (1 | b)", "Logistic", r_load, args.no_r)


if __name__ == "__main__":
    main()
