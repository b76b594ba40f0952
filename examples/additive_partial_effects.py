"""Partial effects of an additive mixed model: mgcv's gamSim example with a random intercept.

Fits ``y ~ s(x0) + s(x1) + s(x2) + s(x3) + s(fac, bs="re")`` (the reference call of bam) with
``AdditiveMixedRegressor(discrete=True)``, prints the mgcv-style summary and plots each smooth's
partial effect with its 95% band. Run: ``python examples/additive_partial_effects.py [--out DIR]``.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skmixed import AdditiveMixedRegressor  # noqa: E402
from skmixed.datasets import load_gamsim_re  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/additive")
    ap.add_argument("--n-knots", type=int, default=10)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    df = load_gamsim_re()
    smooths = ["x0", "x1", "x2", "x3"]
    m = AdditiveMixedRegressor(smooth=smooths, n_knots=args.n_knots, discrete=True)
    m.fit(df[smooths], df["y"], groups=df["fac"])
    print(m.summary())
    fig, axes = plt.subplots(1, 4, figsize=(12, 3), sharey=True)
    for ax, term in zip(axes, smooths):
        m.plot_partial(term, ax=ax)
    fig.tight_layout()
    path = os.path.join(args.out, "partial_effects.png")
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
