"""Command line: ``python -m skmixed warmup`` compiles every numba kernel ahead of time.

skmixed's kernels are compiled on first use and cached on disk, so the first fit on
a fresh install pays some seconds of compilation per estimator. Run this once where
that matters -- in a Docker image build, a CI cache step, or a Dask worker's start-up
(``client.run(skmixed.__main__.warmup)``) -- and every later process starts warm.
The compiled code lands in ``__pycache__`` beside the installed sources, or under
``NUMBA_CACHE_DIR`` when that is set (set it to the same directory at run time).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

__all__ = ["warmup"]


def _tiny_data(n_groups=12, per_group=8, seed=0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(n_groups), per_group)
    h = np.tile(np.arange(per_group), n_groups) % 4  # crossed with g
    x = rng.normal(size=n)
    b = rng.integers(0, 2, n)
    u = rng.normal(0, 0.7, n_groups)[g] + rng.normal(0, 0.5, 4)[h]
    lp = 0.5 * x + 0.25 * b + u
    y = lp + rng.normal(size=n)
    y_bin = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(np.int64)
    return pd.DataFrame({"y": y, "y_bin": y_bin, "x": x, "b": b, "g": g, "h": h})


def _steps():
    """(label, callable) for every path a fit, a prediction or a summary can take."""
    from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor,
                         SplitSampleMixed, StreamingMixed)

    import numpy as np

    df = _tiny_data()
    X, Xb, g = df[["x"]], df[["x", "b"]], df["g"]

    def lmm():
        MixedLinearRegressor().fit(Xb, df["y"], groups=g).predict(Xb, groups=g)
        MixedLinearRegressor(random_slopes=["x"]).fit(X, df["y"], groups=g)
        MixedLinearRegressor(reml=False).fit(Xb, df["y"], groups=df[["g", "h"]])
        MixedLinearRegressor(random_slopes=["x"]).fit(X, df["y"], groups=df[["g", "h"]])
        MixedLinearRegressor().fit(Xb, df["y"], groups=g, sample_weight=1.0 + (df["b"].to_numpy() > 0))
        # the iterative path of large crossed designs (taken automatically above a size; forced here)
        from skmixed._solvers.lmm_iterative import CrossedIterative, CrossedStats

        rng = np.random.default_rng(0)
        codes = [rng.integers(0, J, 300) for J in (30, 20, 5)]
        yy = rng.normal(size=300) + rng.normal(size=30)[codes[0]]
        it = CrossedIterative(CrossedStats.from_rows(codes, [30, 20, 5], np.ones((300, 1)), yy, y_shift=yy.mean()),
                              reml=False)
        it.result(*it.minimize(it.moment_start()))

    def logistic():
        for kw in ({}, {"nagq": 5}, {"nagq": 0}):
            MixedLogisticRegressor(**kw).fit(Xb, df["y_bin"], groups=g).predict_proba(Xb, groups=g)
        MixedLogisticRegressor(random_slopes=["x"]).fit(X, df["y_bin"], groups=g)
        MixedLogisticRegressor().fit(Xb, df["y_bin"], groups=df[["g", "h"]])
        counts = np.random.default_rng(1).poisson(np.exp(0.3 * df["x"].to_numpy()))
        MixedPoissonRegressor().fit(Xb, counts, groups=g).predict(Xb, groups=g)

    def additive():
        big = _tiny_data(n_groups=20, per_group=20)
        for fam, col in (("gaussian", "y"), ("binomial", "y_bin")):
            for discrete in (True, False):
                m = AdditiveMixedRegressor(smooth=["x"], family=fam, discrete=discrete)
                m.fit(big[["x", "b"]], big[col], groups=big["g"]).predict(big[["x", "b"]], groups=big["g"])
        AdditiveMixedRegressor().fit(Xb, df["y"], groups=g)

    def streaming():
        for kw in ({}, {"n_train": 40, "update_every": 20, "trace_every": 10}, {"forgetting": 50.0},
                   {"random_slopes": ["x"]}):
            m = StreamingMixed(**kw)
            for k in range(2):
                part = df.iloc[k * 48:(k + 1) * 48]
                m.partial_fit(part[["x", "b"]], part["y"], groups=part["g"])
            m.sweep()
            m.fixed_effects_se_, m.loglik_
            m.predict(Xb, groups=g)

    def split():
        SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, n_jobs=1, random_state=0).fit(Xb, df["y"],
                                                                                               groups=g)

    return [("linear", lmm), ("logistic", logistic), ("additive", additive), ("streaming", streaming),
            ("split-sample", split)]


def warmup(verbose=True):
    """Compile (or load from numba's cache) every skmixed kernel with tiny fits.

    Parameters
    ----------
    verbose : bool, default=True
        Print one line per estimator family with its time.

    Returns
    -------
    float
        Seconds taken in all (about a minute on an empty cache, a second or two
        when everything is cached already).
    """
    t_all = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny data: singular fits and the like are expected
        for label, step in _steps():
            t = time.perf_counter()
            step()
            if verbose:
                print(f"  {label:<13} {time.perf_counter() - t:6.1f} s", flush=True)
    total = time.perf_counter() - t_all
    if verbose:
        print(f"skmixed kernels ready ({total:.1f} s).", flush=True)
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m skmixed", description="skmixed utilities")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("warmup", help="compile every numba kernel now (for Docker images, CI, Dask workers)")
    args = ap.parse_args(argv)
    if args.command == "warmup":
        import numba

        from skmixed import _kernels  # noqa: F401  (the compile notice)

        print(f"compiling skmixed's numba kernels into {numba.config.CACHE_DIR or 'the package __pycache__'} ...",
              flush=True)
        warmup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
