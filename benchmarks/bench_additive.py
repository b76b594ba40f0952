"""Benchmark AdditiveMixedRegressor against mgcv bam, statsmodels and GPBoost on the seed-000 workload.

Workloads (``make_big_grouped_data(n, n_groups, seed=0)``):

* ``y ~ x + b + s(g, bs="re")`` (gaussian) and ``y_bin ~ x + b + s(g, bs="re")`` (binomial) at
  ``--rows`` rows (default 200,000) against ``bam(..., discrete=TRUE, nthreads=2)`` (Rscript, timed
  inside R with ``system.time``), statsmodels (``MixedLM`` REML for gaussian; ``BinomialBayesMixedGLM``
  variational Bayes for binomial, a different approximation) and GPBoost when installed;
* ``y ~ b + s(x) + s(g, bs="re")`` at ``--big-rows`` rows (default 2,000,000), skmixed alone unless
  ``--big-r``.

Every fit runs in a fresh process; "peak MB" is that process's peak resident memory (VmHWM: data
included), read inside R for bam.  Prints a Markdown table with time ratios to skmixed.

    python benchmarks/bench_additive.py [--rows 200000] [--groups 2000] [--big-rows 2000000]
                                        [--no-r] [--no-statsmodels] [--no-gpboost] [--no-big] [--big-r]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time


def _peak_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _data(rows, groups):
    from skmixed.datasets import make_big_grouped_data

    return make_big_grouped_data(rows, groups, seed=0)


def _job_skmixed(rows, groups, family, big):
    import numpy as np

    import skmixed._kernels.binned as kb
    from skmixed import AdditiveMixedRegressor

    df = _data(rows, groups)
    # warm-up on a small problem so numba's cached kernels (serial and parallel pass) are loaded
    # (or compiled, on a fresh install) before timing
    small = df.iloc[:5000]
    saved, kb.PARALLEL_MIN_ROWS = kb.PARALLEL_MIN_ROWS, 0
    for _ in range(2):
        AdditiveMixedRegressor(smooth=["x"] if big else None, family=family).fit(
            small[["x", "b"]], small["y" if family == "gaussian" else "y_bin"], groups=small["g"])
        kb.PARALLEL_MIN_ROWS = saved
    y = df["y" if family == "gaussian" else "y_bin"]
    t0 = time.perf_counter()
    m = AdditiveMixedRegressor(smooth=["x"] if big else None, family=family, discrete=True)
    m.fit(df[["x", "b"]], y, groups=df["g"])
    t = time.perf_counter() - t0
    est = {"re_sd": float(m.re_sd_["s(g)"]), "b": float(m.fixed_effects_["b"])}
    if not big:
        est["x"] = float(m.fixed_effects_["x"])
    else:
        est["edf s(x)"] = float(m.edf_["s(x)"])
    if family == "gaussian":
        est["sigma"] = float(np.sqrt(m.scale_))
    return {"time": t, "peak": _peak_mb(), "est": est, "iter": m.n_iter_}


def _job_statsmodels(rows, groups, family):
    import numpy as np
    import statsmodels.api as sm

    df = _data(rows, groups)
    t0 = time.perf_counter()
    if family == "gaussian":
        r = sm.MixedLM.from_formula("y ~ x + b", groups="g", data=df).fit(reml=True)
        est = {"re_sd": float(np.sqrt(r.cov_re.iloc[0, 0])), "x": float(r.fe_params["x"]),
               "b": float(r.fe_params["b"]), "sigma": float(np.sqrt(r.scale))}
    else:
        from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

        r = BinomialBayesMixedGLM.from_formula("y_bin ~ x + b", {"g": "0 + C(g)"}, df).fit_vb()
        est = {"re_sd": float(np.exp(r.vcp_mean[0])), "x": float(r.fe_mean[1]), "b": float(r.fe_mean[2])}
    return {"time": time.perf_counter() - t0, "peak": _peak_mb(), "est": est}


def _job_gpboost(rows, groups, family):
    import gpboost as gpb
    import numpy as np

    df = _data(rows, groups)
    X = np.column_stack([np.ones(len(df)), df["x"], df["b"]])
    t0 = time.perf_counter()
    lik = "gaussian" if family == "gaussian" else "bernoulli_logit"
    m = gpb.GPModel(group_data=df["g"].to_numpy(), likelihood=lik)
    m.fit(y=df["y" if family == "gaussian" else "y_bin"].to_numpy(), X=X)
    t = time.perf_counter() - t0
    cp = np.asarray(m.get_cov_pars()).ravel()
    coef = np.asarray(m.get_coef()).ravel()
    est = {"re_sd": float(np.sqrt(cp[-1])), "x": float(coef[1]), "b": float(coef[2])}
    if family == "gaussian":
        est["sigma"] = float(np.sqrt(cp[0]))
    return {"time": t, "peak": _peak_mb(), "est": est}


R_SCRIPT = r"""
suppressMessages(library(mgcv))
args <- commandArgs(TRUE)
d <- read.csv(args[1]); d$g <- factor(d$g)
fam <- args[2]; big <- args[3] == "1"
f <- if (big) y ~ b + s(x) + s(g, bs="re") else y ~ x + b + s(g, bs="re")
if (fam == "binomial") f <- update(f, y_bin ~ .)
invisible(gc(reset=TRUE))
tm <- system.time(m <- bam(f, data=d, family=if (fam == "binomial") binomial else gaussian,
                          discrete=TRUE, nthreads=2))[["elapsed"]]
mu <- gc()
vmhwm <- as.numeric(sub("kB", "", sub("VmHWM:", "", grep("VmHWM", readLines("/proc/self/status"), value=TRUE)))) / 1024
cf <- coef(m)
est <- list(re_sd = sqrt(m$sig2 / m$sp[["s(g)"]]), b = unname(cf["b"]))
sx <- m$smooth[[1]]
if (!big) est$x <- unname(cf["x"]) else est[["edf s(x)"]] <- sum(m$edf[sx$first.para:sx$last.para])
if (fam == "gaussian") est$sigma <- sqrt(m$sig2)
cat(sprintf('{"time": %.6f, "peak": %.3f, "heap_max_mb": %.3f, "est": {%s}}\n', tm, vmhwm, sum(mu[, 6]),
    paste(sprintf('"%s": %.6f', names(est), unlist(est)), collapse=", ")))
"""


def _run_bam(rows, groups, family, big, tmp):
    csv = os.path.join(tmp, f"d_{rows}.csv")
    if not os.path.exists(csv):
        _data(rows, groups).to_csv(csv, index=False)
    rs = os.path.join(tmp, "bam.R")
    with open(rs, "w") as fh:
        fh.write(R_SCRIPT)
    out = subprocess.run(["Rscript", rs, csv, family, "1" if big else "0"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _in_process(fn, *args, timeout=None):
    """Run one fit in a fresh process; None when it exceeds ``timeout`` seconds (then killed)."""
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(1)
    try:
        return pool.apply_async(fn, args).get(timeout)
    except mp.TimeoutError:
        return None
    finally:
        pool.terminate()
        pool.join()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--big-rows", type=int, default=2_000_000)
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--no-gpboost", action="store_true")
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--big-r", action="store_true", help="also run bam on the big workload (slow)")
    ap.add_argument("--peer-timeout", type=float, default=600,
                    help="seconds after which a Python peer's fit is abandoned (reported as '>')")
    a = ap.parse_args(argv)
    have_r = shutil.which("Rscript") is not None and not a.no_r
    try:
        import gpboost  # noqa: F401
        have_gpb = not a.no_gpboost
    except ImportError:
        have_gpb = False

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in ["gaussian", "binomial"]:
            wl = f"{'y' if family == 'gaussian' else 'y_bin'} ~ x + b + s(g,re), {family}, n={a.rows:,}, G={a.groups}"
            res = {"skmixed": _in_process(_job_skmixed, a.rows, a.groups, family, False)}
            if have_r:
                res["mgcv bam(discrete, nthreads=2)"] = _run_bam(a.rows, a.groups, family, False, tmp)
            if not a.no_statsmodels:
                name = "statsmodels MixedLM" if family == "gaussian" else "statsmodels BinomialBayesMixedGLM (VB)"
                res[name] = _in_process(_job_statsmodels, a.rows, a.groups, family, timeout=a.peer_timeout)
            if have_gpb:
                res["GPBoost"] = _in_process(_job_gpboost, a.rows, a.groups, family, timeout=a.peer_timeout)
            rows.append((wl, res))
            _print_rows([(wl, res)], a.peer_timeout, header=len(rows) == 1)
        if not a.no_big:
            wl = f"y ~ b + s(x) + s(g,re), gaussian, n={a.big_rows:,}, G={a.groups}"
            res = {"skmixed": _in_process(_job_skmixed, a.big_rows, a.groups, "gaussian", True)}
            if have_r and a.big_r:
                res["mgcv bam(discrete, nthreads=2)"] = _run_bam(a.big_rows, a.groups, "gaussian", True, tmp)
            rows.append((wl, res))
            _print_rows([(wl, res)], a.peer_timeout, header=len(rows) == 1)


def _print_rows(rows, timeout, header):
    if header:
        print("| workload | engine | time (s) | time / skmixed | peak RSS (MB) | estimates |")
        print("|---|---|---:|---:|---:|---|")
    for wl, res in rows:
        base = res["skmixed"]["time"]
        for eng, r in res.items():
            if r is None:
                print(f"| {wl} | {eng} | > {timeout:.0f} | > {timeout / base:.0f} | | (abandoned) |")
                continue
            est = ", ".join(f"{k}={v:.4g}" for k, v in r["est"].items())
            print(f"| {wl} | {eng} | {r['time']:.3f} | {r['time'] / base:.1f} | {r['peak']:.0f} | {est} |")
    print(flush=True)


if __name__ == "__main__":
    main()
