"""A drifting stream: ``forgetting`` tracks a changed fixed effect that plain SEMA averages away.

Rows of ``J`` individuals arrive in random order; ``y = 10 + beta1(t) x1 - x2 + b_j + e``
with random intercepts ``b_j ~ N(0, 4)`` and ``e ~ N(0, 1)``.  Halfway through the stream the
effect of ``x1`` jumps from 1 to 3 (concept drift).  Plain SEMA weighs every row equally and
ends near the average of the two regimes; ``StreamingMixed(forgetting=alpha)`` -- the SEMA
paper's smooth sliding window, learn rate ``1/min(n, alpha)`` -- forgets the old regime.

Usage::

    python examples/streaming_drift.py            # prints a small table (about a second)
    python examples/streaming_drift.py --plot     # and shows the traces
"""

from __future__ import annotations

import argparse

import numpy as np

from skmixed.streaming import StreamingMixed


def make_drifting_stream(n_rows=40_000, n_groups=200, jump_at=0.5, before=1.0, after=3.0, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n_rows)
    X = rng.normal(size=(n_rows, 2))
    beta1 = np.where(np.arange(n_rows) < int(jump_at * n_rows), before, after)
    y = 10 + beta1 * X[:, 0] - X[:, 1] + rng.normal(0, 2, n_groups)[g] + rng.normal(size=n_rows)
    return X, y, g, beta1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=2_000, help="forgetting window (rows)")
    ap.add_argument("--plot", action="store_true", help="show the traces (needs matplotlib)")
    args = ap.parse_args(argv)

    X, y, g, beta1 = make_drifting_stream(args.rows, args.groups)
    every = max(args.rows // 200, 1)
    common = dict(n_train=1000, trace_every=every)
    plain = StreamingMixed(**common).fit(X, y, groups=g)
    forget = StreamingMixed(forgetting=args.alpha, **common).fit(X, y, groups=g)

    print(f"{args.rows:,} rows, {args.groups} individuals; effect of x1 jumps "
          f"{beta1[0]:g} -> {beta1[-1]:g} at row {int(np.argmax(beta1 != beta1[0])):,}\n")
    print("| rows seen | true beta1 | plain SEMA | SEMA forgetting=%g |" % args.alpha)
    print("|---|---|---|---|")
    tp, tf = plain.trace_, forget.trace_
    for frac in (0.25, 0.5, 0.55, 0.6, 0.75, 1.0):
        i = min(int(frac * len(tp)) - 1, len(tp) - 1)
        n = int(tp["n_rows"].iloc[i])
        print(f"| {n:,} | {beta1[n - 1]:g} | {tp['beta[x0]'].iloc[i]:.3f} | {tf['beta[x0]'].iloc[i]:.3f} |")
    print(f"\nend of stream: plain SEMA beta1 = {plain.coef_[0]:.3f}, "
          f"forgetting beta1 = {forget.coef_[0]:.3f} (truth {beta1[-1]:g}); "
          f"sigma {plain.sigma_:.3f} vs {forget.sigma_:.3f} (truth 1)")

    if args.plot:
        import matplotlib.pyplot as plt

        from skmixed.plot import plot_trace

        params = ["beta[x0]", "beta[x1]", "Phi[(Intercept),(Intercept)]", "sigma2"]
        axes = plot_trace(plain, params=params, label="plain SEMA")
        plot_trace(forget, params=params, axes=axes, label=f"forgetting={args.alpha:g}")
        axes[0].plot(np.arange(1, args.rows + 1), beta1, "k--", lw=1, label="truth")
        axes[0].legend(fontsize=8)
        plt.tight_layout()
        plt.show()


if __name__ == "__main__":
    main()
