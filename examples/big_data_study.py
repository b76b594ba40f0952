"""The seed-000 big-data study in Python: every skmixed method on 2,000,000 rows in 2,000 groups.

Run: ``python examples/big_data_study.py [--rows N] [--groups G] [--out DIR] [--seed S]``.

The data (:func:`skmixed.datasets.make_big_grouped_data`) follow Clark (2019):
``y = 0.5 x + 0.25 b + u_g + e`` with ``sd(u_g) = 0.5``, ``sd(e) = 1`` and ``y_bin`` the
logistic version of the same linear predictor. Fitted, as the R study did with lme4 / mgcv:

===================  ===========================================  ==========================
method               model                                        R counterpart
===================  ===========================================  ==========================
LMM                  ``y ~ x + b + (1|g)``                        ``lmer``
GLMM                 ``y_bin ~ x + b + (1|g)``                    ``glmer(binomial)``
AMM                  ``y ~ x + b + s(g, bs="re")``                ``bam``
AMM s(x) discrete    ``y ~ b + s(x) + s(g, bs="re")``             ``bam(discrete=TRUE)``
AMM s(x) exact       the same, covariates not discretized         ``bam``
split LMM / GLMM     LMM / GLMM on M = 8 group subsamples,        (Clark 2019, split-sample)
                     combined
streaming            LMM fitted online in one pass (SEMA)         --
===================  ===========================================  ==========================

``discrete`` only bins smooth covariates, so the additive model without ``s(x)`` is fitted once.
Prints a table of fit times and estimates, and writes ``report.md`` with three plots to ``--out``:
estimates with 95 % intervals, fit times, and the 1 -> 2 thread scaling of LMM, GLMM and AMM
(measured, not assumed). Fit times exclude numba's one-off compilation (a tiny warm-up fit of
every method runs first; the kernels are cached on disk afterwards).
"""

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor,  # noqa: E402
                     SplitSampleMixed, StreamingMixed)
from skmixed.datasets import make_big_grouped_data  # noqa: E402

TRUE = {"x": 0.5, "b": 0.25, "sigma_g": 0.5, "sigma": 1.0}
PARAMS = ["(Intercept)", "x", "b", "sigma_g", "sigma"]


def _methods(seed):
    """(name, response column, estimator factory) for every method of the study."""
    return [
        ("LMM", "y", lambda: MixedLinearRegressor()),
        ("GLMM", "y_bin", lambda: MixedLogisticRegressor()),
        ("AMM", "y", lambda: AdditiveMixedRegressor()),
        ("AMM s(x) discrete", "y", lambda: AdditiveMixedRegressor(smooth=["x"], discrete=True)),
        ("AMM s(x) exact", "y", lambda: AdditiveMixedRegressor(smooth=["x"], discrete=False)),
        ("split LMM (M=8)", "y", lambda: SplitSampleMixed(MixedLinearRegressor(), n_subsamples=8,
                                                           n_jobs=2, random_state=seed)),
        ("split GLMM (M=8)", "y_bin", lambda: SplitSampleMixed(MixedLogisticRegressor(), n_subsamples=8,
                                                                n_jobs=2, random_state=seed)),
        ("streaming (1 pass)", "y", lambda: StreamingMixed()),
    ]


def estimates(model):
    """Estimates and standard errors of one fitted model on a common scale.

    Parameters
    ----------
    model : fitted skmixed estimator

    Returns
    -------
    dict
        Parameter name -> ``(estimate, se)``; ``sigma_g`` is the random-intercept SD, ``sigma``
        the residual SD (absent for the logistic models); ``se`` is NaN when not available
        (variance components: none of the methods, like lme4, report one).
    """
    out = {k: (float(v), float(model.fixed_effects_se_.get(k, np.nan)))
           for k, v in model.fixed_effects_.items()}
    if hasattr(model, "re_sd_"):                       # additive model: sd of the s(g) term
        out["sigma_g"] = (float(model.re_sd_["s(g)"]), np.nan)
    else:                                              # cov_re_ holds the variance
        out["sigma_g"] = (float(np.sqrt(model.cov_re_["g"].iloc[0, 0])), np.nan)
    if not isinstance(getattr(model, "estimator", model), MixedLogisticRegressor):
        out["sigma"] = (float(model.sigma_), np.nan)
    return out


def fit_all(df, seed, progress):
    """Fit every method of the study on ``df``.

    Parameters
    ----------
    df : pandas.DataFrame
        ``make_big_grouped_data`` output.
    seed : int
        Seeds the split-sample partition and the streaming row order.
    progress : tqdm.tqdm
        Advanced once per method.

    Returns
    -------
    estimates : pandas.DataFrame
        Long table: ``method, parameter, estimate, se``.
    times : pandas.Series
        Fit seconds per method.
    """
    rows, times = [], {}
    for name, ycol, make in _methods(seed):
        progress.set_description(f"fit {name}")
        data = df
        if name.startswith("streaming"):
            # the data are sorted by group; a stream of them would be a drifting stream, so the
            # rows arrive in random order (what a stream of independent visits looks like)
            data = df.iloc[np.random.default_rng(seed).permutation(len(df))]
        t0 = time.perf_counter()
        model = make().fit(data[["x", "b"]], data[ycol], groups=data["g"])
        times[name] = time.perf_counter() - t0
        for par, (est, se) in estimates(model).items():
            rows.append({"method": name, "parameter": par, "estimate": est, "se": se})
        progress.update()
    return pd.DataFrame(rows), pd.Series(times, name="fit_s")


def thread_scaling(df, progress, repeats=2):
    """Time LMM, GLMM and AMM s(x) discrete under 1 and 2 threads (numba and BLAS, via threadpoolctl).

    Parameters
    ----------
    df : pandas.DataFrame
    progress : tqdm.tqdm
        Advanced once per model.
    repeats : int, default=2
        Fits per setting; the best is kept (the least disturbed by other processes).

    Returns
    -------
    pandas.DataFrame
        ``method``, ``1 thread (s)``, ``2 threads (s)``, ``speedup``.
    """
    out = []
    X, g = df[["x", "b"]], df["g"]
    for name, ycol, make in [m for m in _methods(0) if m[0] in ("LMM", "GLMM", "AMM s(x) discrete")]:
        progress.set_description(f"threads {name}")
        best = {}
        for n in (1, 2):
            with threadpool_limits(n):
                best[n] = min(_timed(lambda: make().fit(X, df[ycol], groups=g)) for _ in range(repeats))
        out.append({"method": name, "1 thread (s)": best[1], "2 threads (s)": best[2],
                    "speedup": best[1] / best[2]})
        progress.update()
    return pd.DataFrame(out)


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def plot_estimates(est, path):
    """One panel per parameter: estimate +/- 1.96 SE by method, the true value dashed; saved to ``path``."""
    pars = ["x", "b", "sigma_g", "sigma"]
    fig, axes = plt.subplots(1, 4, figsize=(13, 4), sharey=True)
    methods = list(dict.fromkeys(est["method"]))
    for ax, par in zip(axes, pars):
        d = est[est["parameter"] == par].set_index("method").reindex(methods)
        ypos = np.arange(len(methods))[::-1]
        half = 1.96 * d["se"].fillna(0).to_numpy()
        ax.errorbar(d["estimate"], ypos, xerr=half, fmt="o", capsize=3)
        ax.axvline(TRUE[par], color="k", ls="--", lw=1, label="true")
        ax.set_title(par)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_yticks(ypos, methods)
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("Estimates with 95 % intervals (no bar: SE not available or too small to see)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_times(times, path):
    """Horizontal bars of the fit time per method (``times``: Series), saved to ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4))
    times[::-1].plot.barh(ax=ax)
    ax.set_xlabel("fit time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_threads(scaling, path):
    """Grouped bars of 1- and 2-thread fit times with the speedup written on top, saved to ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4))
    scaling.set_index("method")[["1 thread (s)", "2 threads (s)"]].plot.bar(ax=ax, rot=0)
    for i, s in enumerate(scaling["speedup"]):
        ax.annotate(f"x{s:.2f}", (i, scaling["2 threads (s)"].iloc[i]), ha="left", va="bottom")
    ax.set_ylabel("fit time (s), best of 2")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _md(frame):
    """Markdown table of a DataFrame (no tabulate dependency)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join("" if (isinstance(v, float) and np.isnan(v)) else
                                        (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None):
    """Run the study; ``argv`` as on the command line (``None``: ``sys.argv[1:]``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--groups", type=int, default=2_000)
    ap.add_argument("--out", default="out/study")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()

    n_methods = len(_methods(args.seed))
    with tqdm(total=2 + n_methods + 3 + 1, unit="step") as progress:
        progress.set_description("compile (warm-up fits)")
        tiny = make_big_grouped_data(20_000, 200, seed=1)
        fit_all(tiny, 0, tqdm(disable=True))           # numba kernels compile / load from cache
        progress.update()
        progress.set_description("simulate data")
        df = make_big_grouped_data(args.rows, args.groups, seed=args.seed)
        progress.update()
        est, times = fit_all(df, args.seed, progress)
        scaling = thread_scaling(df, progress)
        progress.set_description("report")
        plot_estimates(est, os.path.join(args.out, "estimates.png"))
        plot_times(times, os.path.join(args.out, "fit_times.png"))
        plot_threads(scaling, os.path.join(args.out, "threads.png"))
        progress.update()

    wide = est.assign(cell=[f"{e:.4f}" + (f" ({s:.4f})" if s == s else "") for e, s in zip(est.estimate, est.se)])
    table = (wide.pivot(index="method", columns="parameter", values="cell")
             .reindex(index=list(times.index), columns=PARAMS).fillna("–"))
    table.insert(0, "fit (s)", times.round(2).map("{:.2f}".format))
    table = table.reset_index()
    print(f"\n{args.rows:,} rows, {args.groups:,} groups, seed {args.seed}: estimate (SE)")
    print(table.to_string(index=False))
    print("\nThread scaling (best of 2 fits):")
    print(scaling.round(3).to_string(index=False))
    gain = ", ".join(f"{m} x{s:.2f}" for m, s in zip(scaling["method"], scaling["speedup"]))
    load = os.getloadavg()[0]
    finding = (f"Measured speedup from 1 to 2 threads: {gain} (ideal x2; 1-minute load average "
               f"{load:.1f} on {os.cpu_count()} cores while measuring). ")
    best = scaling["speedup"].max()
    if best < 1.05:
        finding += ("Extra threads gave no gain here: the 2-thread fits were no faster. Only the "
                    "cross-product passes run in parallel (a fraction of a second at this size); the "
                    "optimiser, per-group solves and data preparation are serial, and a second thread "
                    "competes with other processes for the 2nd core: diminishing returns at their strongest")
    elif best < 1.6:
        finding += ("Returns already diminish at 2 threads: only the cross-product passes run in parallel, "
                    "the optimiser, per-group solves and data preparation are serial")
    else:
        finding += "Close to linear at 2 threads"
    print(finding)

    report = f"""# The seed-000 big-data study, in skmixed

{args.rows:,} rows, {args.groups:,} groups (`make_big_grouped_data(seed={args.seed})`); true values
x = 0.5, b = 0.25, sigma_g = 0.5, sigma = 1 (sigma: Gaussian models only). Cells: estimate (standard
error); fit times exclude numba's one-off compilation. The additive models report Bayesian posterior SEs;
`AMM s(x)` fits x as a smooth (no linear coefficient). Streaming: the rows in random order, one pass.

{_md(table)}

![estimates](estimates.png)

![fit times](fit_times.png)

## Thread scaling, 1 -> 2 threads ({os.cpu_count()} cores)

{_md(scaling)}

{finding}. The R study found diminishing returns beyond 8-10 threads for `bam`; with
{os.cpu_count()} cores only the first doubling(s) can be measured here. Other processes on the machine
compete for the cores and depress the multi-threaded times: read the load average with the numbers.

![threads](threads.png)

Total run time of this script: {time.perf_counter() - t_start:.0f} s.
"""
    with open(os.path.join(args.out, "report.md"), "w") as fh:
        fh.write(report)
    print(f"\nreport: {os.path.join(args.out, 'report.md')}  ({time.perf_counter() - t_start:.0f} s in all)")


if __name__ == "__main__":
    main()
