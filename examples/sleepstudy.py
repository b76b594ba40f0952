"""sleepstudy end to end: lmer's model in skmixed, the table lme4 prints, and the plots.

Run: ``python examples/sleepstudy.py [--out DIR]``. Writes a caterpillar plot of the subjects'
random effects and the fitted lines per subject (conditional, solid; population, dashed).
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skmixed import MixedLinearRegressor  # noqa: E402
from skmixed.datasets import load_sleepstudy  # noqa: E402
from skmixed.plot import plot_caterpillar, plot_group_lines  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/sleepstudy")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    df = load_sleepstudy()

    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
    print(m.summary())
    ml = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df, reml=False)
    un = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days || Subject)", df, reml=False)
    # likelihood-ratio test of the intercept-slope correlation (both by ML, as anova() refits)
    lr = 2 * (ml.loglik_ - un.loglik_)
    print(f"\nLR test of the correlation: chi2(1) = {lr:.3f}")

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.5))
    plot_caterpillar(m, term="(Intercept)", ax=axes[0])
    plot_caterpillar(m, term="Days", ax=axes[1])
    axes[1].set_ylabel("")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "caterpillar.png"), dpi=110)
    fig = plot_group_lines(m, df, "Days", "Reaction", "Subject")
    fig.savefig(os.path.join(args.out, "fitted_lines.png"), dpi=110)
    print(f"plots written to {args.out}/")


if __name__ == "__main__":
    main()
