"""Plots of random effects: caterpillar plots and fitted lines per group."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_caterpillar", "plot_group_lines"]


def _plt():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ImportError("plotting needs matplotlib: pip install 'skmixed[plot]'") from e
    return plt


def plot_caterpillar(estimator, factor=None, term=None, level=0.95, ax=None):
    """Caterpillar plot: BLUPs of one factor with conditional intervals, sorted.

    Parameters
    ----------
    estimator : fitted skmixed estimator with ``random_effects_`` and ``random_effects_sd_``
    factor : str, optional
        Grouping factor; default the first.
    term : str, optional
        Column of the random effects (default the first, usually ``(Intercept)``).
    level : float
        Coverage of the intervals (normal quantile of the conditional SD).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> ax = plot_caterpillar(m, term="Days")
    >>> ax.get_xlabel()
    'Days (BLUP)'
    """
    from scipy.stats import norm

    plt = _plt()
    factor = factor or next(iter(estimator.random_effects_))
    re = estimator.random_effects_[factor]
    term = term or re.columns[0]
    b = re[term].to_numpy()
    sd = estimator.random_effects_sd_[factor][term].to_numpy()
    z = norm.ppf(0.5 + level / 2)
    order = np.argsort(b)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, max(2.5, 0.18 * len(b))))
    pos = np.arange(len(b))
    ax.errorbar(b[order], pos, xerr=z * sd[order], fmt="o", ms=3, lw=1, color="C0")
    ax.axvline(0, color="0.5", lw=0.8)
    if len(b) <= 60:
        ax.set_yticks(pos, [str(v) for v in re.index[order]])
    ax.set_ylabel(factor)
    ax.set_xlabel(f"{term} (BLUP)")
    return ax


def plot_group_lines(estimator, data, x, y, group, ncols=6, max_groups=24):
    """Data and conditional fitted lines per group (lattice of small panels).

    ``estimator`` must have been fitted with :meth:`from_formula` so that
    ``predict(data)`` works on the DataFrame.

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    levels = list(data[group].drop_duplicates())[:max_groups]
    nrows = int(np.ceil(len(levels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 1.9 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, lev in zip(axes.ravel(), levels):
        d = data[data[group] == lev].sort_values(x)
        ax.plot(d[x], d[y], "o", ms=2.5, color="C0")
        ax.plot(d[x], estimator.predict(d), "-", color="C1", lw=1.2)
        pop = estimator.predict(d.assign(**{group: "__population__"}))
        ax.plot(d[x], pop, "--", color="0.5", lw=0.8)
        ax.set_title(str(lev), fontsize=8)
    for ax in axes.ravel()[len(levels):]:
        ax.set_visible(False)
    fig.supxlabel(x)
    fig.supylabel(y)
    fig.tight_layout()
    return fig
