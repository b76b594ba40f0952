"""Trace plots of a streaming fit: how the estimates move as rows arrive."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_trace"]


def plot_trace(trace, params=None, truth=None, axes=None, label=None, **plot_kw):
    """Plot estimates against the number of rows seen.

    Parameters
    ----------
    trace : StreamingMixed or pandas.DataFrame
        A model fitted with ``trace_every`` (its ``trace_`` is used) or such a DataFrame.
    params : list of str, optional
        Trace columns to plot (default: every column but ``n_rows``), e.g.
        ``["beta[x1]", "Phi[(Intercept),(Intercept)]", "sigma2"]``.
    truth : dict, optional
        Column -> reference value drawn as a dashed horizontal line (true or ML value).
    axes : array of matplotlib Axes, optional
        One per parameter, to overlay several traces; new figure when None.
    label : str, optional
        Legend label of this trace.
    **plot_kw
        Passed to ``Axes.plot``.

    Returns
    -------
    ndarray of matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skmixed.streaming import StreamingMixed
    >>> from skmixed.plot import plot_trace
    >>> rng = np.random.default_rng(0)
    >>> g = rng.integers(0, 20, 2000)
    >>> X = rng.normal(size=(2000, 1))
    >>> y = 2 * X[:, 0] + rng.normal(0, 1, 20)[g] + rng.normal(size=2000)
    >>> m = StreamingMixed(n_train=200, trace_every=100).fit(X, y, groups=g)
    >>> axes = plot_trace(m, params=["beta[x0]", "sigma2"], truth={"beta[x0]": 2.0})
    >>> len(axes)
    2
    """
    import matplotlib.pyplot as plt  # lazy: matplotlib is an optional dependency

    df = trace if isinstance(trace, pd.DataFrame) else trace.trace_
    if "n_rows" not in df.columns:
        raise ValueError("trace must have an 'n_rows' column (StreamingMixed.trace_)")
    cols = [c for c in df.columns if c != "n_rows"] if params is None else list(params)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"not in the trace: {missing}; available: {list(df.columns)}")
    if axes is None:
        ncol = min(3, len(cols))
        nrow = int(np.ceil(len(cols) / ncol))
        _, axs = plt.subplots(nrow, ncol, figsize=(4 * ncol, 2.8 * nrow), squeeze=False,
                              sharex=True)
        for ax in axs.ravel()[len(cols):]:
            ax.set_visible(False)
        axes = axs.ravel()[: len(cols)]
    axes = np.asarray(axes).ravel()
    if len(axes) < len(cols):
        raise ValueError(f"{len(cols)} parameters but {len(axes)} axes")
    for ax, c in zip(axes, cols):
        ax.plot(df["n_rows"], df[c], label=label, **plot_kw)
        if truth is not None and c in truth:
            ax.axhline(truth[c], color="k", ls="--", lw=1)
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("rows seen")
    if label is not None:
        axes[0].legend(fontsize=8)
    return axes
