"""Out-of-core LMM fits from parquet: time, peak memory, and equality with the in-memory fit.

Workload: the seed-000 design ``y ~ x + b + (1 | g)`` with 1,000 rows per group,
written by ``examples/parquet_20m.py`` in 1M-row chunks.

1. At ``--check-rows`` (default 2,000,000, where everything fits in memory): the
   out-of-core fits (``partial_fit`` over pyarrow batches; ``skmixed.dask.fit_lmm``
   on ``dd.read_parquet``) against skmixed's in-memory ``fit`` (their largest
   deviation over the fixed effects, ``sd_g`` and ``sigma`` is printed), and the
   in-memory peers statsmodels ``MixedLM`` and ``lme4::lmer`` on the same rows.
2. At ``--rows`` (default 20,000,000): writing, then the two out-of-core fits; no
   peer fits 20M rows without loading them (lme4 with ``--lme4-full``, from CSV).

Every fit runs in its own child process; ``peak_mb`` is that process's VmHWM
(imports, reading and fitting included; for the LocalCluster rows the driver's,
with the largest worker's in ``worker_peak_mb``); ``fit_s`` is reading + fitting, after
imports and a tiny warm-up fit (numba cache loaded). Target: < 1,500 MB at 20M rows.
Run: ``python benchmarks/bench_out_of_core.py [--rows N] [--check-rows N] [--dir D]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import have_rscript, machine_line, markdown_table, run_python, run_r  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")

CHILD = """
import json, sys, time
sys.path.insert(0, {examples!r})
import parquet_20m as ex
import numpy as np, pyarrow.parquet, dask.dataframe, skmixed.dask
from skmixed import MixedLinearRegressor
# imports and numba's cached kernels load before the clock starts (as for the peers)
_r = np.random.default_rng(0)
MixedLinearRegressor().partial_fit(_r.normal(size=(400, 1)), _r.normal(size=400), groups=np.arange(400) % 20)
info = {{}}
t = time.perf_counter()
{body}
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), **info, **ex.summary(m))))
"""

BODIES = {
    "skmixed fit (in memory)": "m = ex.fit_in_memory({path!r})",
    "skmixed partial_fit (parquet batches)": "m = ex.fit_partial({path!r}, {chunk})",
    "skmixed.dask fit_lmm (threads)": "m = ex.fit_with_dask({path!r})",
    "skmixed.dask fit_lmm (LocalCluster, 2 procs)": "m = ex.fit_with_dask({path!r}, workers=2, info=info)",
}

WRITE = """
import json, sys
sys.path.insert(0, {examples!r})
import parquet_20m as ex
info = ex.write_parquet({path!r}, {rows}, {chunk})
print("RESULT", json.dumps(dict(fit_s=info["write_s"], peak_mb=peak_mb(), groups=info["groups"])))
"""

STATSMODELS = """
import json, time, numpy as np, pyarrow.parquet as pq
import statsmodels.formula.api as smf
df = pq.read_table({path!r}, columns=["y", "x", "b", "g"]).to_pandas()
t = time.perf_counter()
r = smf.mixedlm("y ~ x + b", df, groups=df["g"]).fit(reml=True)
fit = time.perf_counter() - t
print("RESULT", json.dumps(dict(fit_s=fit, peak_mb=peak_mb(), intercept=r.fe_params["Intercept"],
      b_x=r.fe_params["x"], b_b=r.fe_params["b"], sd_g=float(np.sqrt(r.cov_re.iloc[0, 0])),
      sigma=float(np.sqrt(r.scale)))))
"""

LMER = """
suppressMessages(library(lme4))
d <- read.csv("{csv}")
d$g <- factor(d$g)
tm <- system.time(m <- lmer(y ~ x + b + (1 | g), d, REML = TRUE))[["elapsed"]]
vc <- as.data.frame(VarCorr(m))
result(fit_s = tm, peak_mb = peak_mb(), intercept = fixef(m)[["(Intercept)"]], b_x = fixef(m)[["x"]],
       b_b = fixef(m)[["b"]], sd_g = vc$sdcor[1], sigma = sigma(m), crit = REMLcrit(m))
"""

EST = ["intercept", "b_x", "b_b", "sd_g", "sigma"]


def _row(name, res, err):
    row = {"tool": name}
    if res is None:
        row["note"] = err
    else:
        row.update(res)
    return row


def _csv(path):
    import pyarrow.parquet as pq

    csv = path[:-8] + ".csv"
    pq.read_table(path).to_pandas().to_csv(csv, index=False, float_format="%.17g")
    return csv


def check_size(args, d):
    path = os.path.join(d, f"seed000_{args.check_rows}.parquet")
    res, _, err = run_python(WRITE.format(examples=EXAMPLES, path=path, rows=args.check_rows, chunk=args.chunk_rows))
    if res is None:
        raise SystemExit(f"writing failed: {err}")
    rows = []
    for name in ["skmixed fit (in memory)", "skmixed partial_fit (parquet batches)", "skmixed.dask fit_lmm (threads)",
                 "skmixed.dask fit_lmm (LocalCluster, 2 procs)"]:
        body = BODIES[name].format(path=path, chunk=args.chunk_rows)
        res, _, err = run_python(CHILD.format(examples=EXAMPLES, body=body), timeout=args.timeout)
        rows.append(_row(name, res, err))
    if not args.no_statsmodels:
        res, _, err = run_python(STATSMODELS.format(path=path), timeout=args.timeout)
        rows.append(_row("statsmodels MixedLM (in memory)", res, err))
    if have_rscript():
        res, _, err = run_r(LMER.format(csv=_csv(path)), timeout=args.timeout)
        rows.append(_row("lme4 lmer (in memory)", res, err))
    else:
        rows.append({"tool": "lme4 lmer (in memory)", "note": "Rscript not installed"})
    ref = rows[0]
    for r in rows:
        if "fit_s" in r and "fit_s" in ref:
            r["time ratio"] = r["fit_s"] / ref["fit_s"]
        if all(k in r for k in EST) and all(k in ref for k in EST):
            r["max abs diff vs fit"] = max(abs(r[k] - ref[k]) for k in EST)
    print(f"\n### Check size: {args.check_rows:,} rows, {args.check_rows // 1000:,} groups (REML)\n")
    print(markdown_table(rows, ["tool", "fit_s", "time ratio", "peak_mb", "worker_peak_mb", "max abs diff vs fit"]
                         + EST + ["note"]))
    return rows


def full_size(args, d):
    path = os.path.join(d, f"seed000_{args.rows}.parquet")
    rows = []
    if not (args.reuse and os.path.exists(path)):
        res, _, err = run_python(WRITE.format(examples=EXAMPLES, path=path, rows=args.rows, chunk=args.chunk_rows),
                                 timeout=args.timeout)
        rows.append(_row("write parquet (examples/parquet_20m.py)", res, err))
    names = ["skmixed partial_fit (parquet batches)", "skmixed.dask fit_lmm (threads)"]
    if args.cluster_full:
        names.append("skmixed.dask fit_lmm (LocalCluster, 2 procs)")
    for name in names:
        body = BODIES[name].format(path=path, chunk=args.chunk_rows)
        res, _, err = run_python(CHILD.format(examples=EXAMPLES, body=body), timeout=args.timeout)
        rows.append(_row(name, res, err))
    if args.lme4_full and have_rscript():
        res, _, err = run_r(LMER.format(csv=_csv(path)), timeout=args.timeout)
        rows.append(_row("lme4 lmer (in memory, from CSV)", res, err))
    fits = [r for r in rows if "intercept" in r]
    for r in fits:
        r["within 1.5 GB"] = "yes" if max(r.get("peak_mb", 1e9), r.get("worker_peak_mb", 0)) < 1500 else "NO"
    if len(fits) > 1:
        for r in fits[1:]:
            r["max abs diff vs first"] = max(abs(r[k] - fits[0][k]) for k in EST)
    print(f"\n### Full size: {args.rows:,} rows, {args.rows // 1000:,} groups (REML), out of core\n")
    print(markdown_table(rows, ["tool", "fit_s", "peak_mb", "worker_peak_mb", "within 1.5 GB", "max abs diff vs first"]
                         + EST + ["note"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--check-rows", type=int, default=2_000_000)
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None, help="where the parquet files go (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing full-size file in --dir")
    ap.add_argument("--no-statsmodels", action="store_true", help="skip statsmodels (minutes at 2M rows)")
    ap.add_argument("--no-check", action="store_true", help="skip the check-size comparison")
    ap.add_argument("--cluster-full", action="store_true", help="also fit the full size on a LocalCluster")
    ap.add_argument("--lme4-full", action="store_true", help="also fit lme4 at full size (in memory, slow)")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)
    print(f"Machine: {machine_line()}")
    # warm numba's on-disk cache so no child pays compilation
    import numpy as np

    from skmixed import MixedLinearRegressor

    rng = np.random.default_rng(0)
    MixedLinearRegressor().fit(rng.normal(size=(400, 1)), rng.normal(size=400), groups=np.arange(400) % 20)
    with tempfile.TemporaryDirectory() as tmp:
        d = args.dir or tmp
        os.makedirs(d, exist_ok=True)
        if not args.no_check:
            check_size(args, d)
        full_size(args, d)


if __name__ == "__main__":
    main()
