"""Progress bars for long loops, shared by every estimator (``verbose=``).

One rule everywhere: ``verbose`` false (the default) prints nothing and costs
nothing; ``verbose`` true shows a tqdm bar (``tqdm.auto``: a widget in Jupyter, text
elsewhere) on stderr. Loops whose length is unknown or whose steps are uneven (an
optimiser's iterations) pass ``delay=`` so that only runs lasting longer than that
ever show a bar.

Use :func:`track` to wrap an iterable and :func:`progress_bar` for manual updates::

    for batch in track(batches, verbose, total=n, desc="StreamingMixed"):
        ...

    with progress_bar(verbose, desc="REML", unit="eval", delay=2.0) as bar:
        ...
        bar.update(1)
        bar.set_postfix(criterion=f"{crit:.6g}", refresh=False)
"""

from __future__ import annotations

import contextlib

__all__ = ["dask_progress", "progress_bar", "track"]


class _NoBar:
    """Stands in for a tqdm bar when ``verbose`` is off: every call does nothing."""

    n = 0
    disable = True

    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def write(self, *args, **kwargs):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _on(verbose) -> bool:
    return bool(verbose) and int(verbose) > 0


def progress_bar(verbose, total=None, desc=None, unit="it", delay=0.0, leave=None, **kwargs):
    """A tqdm bar when ``verbose`` is true, else an object whose methods do nothing.

    Parameters
    ----------
    verbose : bool or int
        Show the bar when true (or > 0).
    total : int, optional
        Number of steps, when known.
    desc : str, optional
        Label in front of the bar.
    unit : str, default="it"
        Name of one step.
    delay : float, default=0.0
        Seconds before the bar first appears: runs shorter than that print nothing.
    leave : bool, optional
        Keep the finished bar on screen (tqdm's default when None).
    **kwargs
        Passed on to :class:`tqdm.tqdm`.

    Returns
    -------
    tqdm.tqdm or a do-nothing stand-in
        Usable as a context manager; ``update``, ``set_postfix``, ``close`` work on both.

    Examples
    --------
    >>> with progress_bar(False, total=3) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> bar.n
    0
    """
    if not _on(verbose):
        return _NoBar()
    from tqdm.auto import tqdm  # imported on first use: tqdm.auto probes for Jupyter

    return tqdm(total=total, desc=desc, unit=unit, delay=delay, leave=leave, **kwargs)


def track(iterable, verbose, total=None, desc=None, unit="it", delay=0.0, **kwargs):
    """``iterable`` itself, or wrapped in a tqdm bar when ``verbose`` is true.

    Parameters
    ----------
    iterable : iterable
    verbose : bool or int
        Show the bar when true (or > 0).
    total : int, optional
        Length, when ``len(iterable)`` does not give it (generators).
    desc, unit, delay, **kwargs
        As in :func:`progress_bar`.

    Returns
    -------
    iterable
        Yields the same items as ``iterable``.

    Examples
    --------
    >>> [x * 2 for x in track(range(3), verbose=False)]
    [0, 2, 4]
    """
    if not _on(verbose):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, delay=delay, **kwargs)


def dask_progress(verbose, desc=None):
    """Context manager showing a tqdm bar over the Dask tasks computed inside it.

    tqdm's own Dask callback (:class:`tqdm.dask.TqdmCallback`), so it follows the
    local schedulers (threads, processes); on a ``dask.distributed`` cluster the
    dashboard shows progress instead. A no-op when ``verbose`` is false.

    Parameters
    ----------
    verbose : bool or int
    desc : str, optional
        Label in front of the bar.

    Returns
    -------
    context manager
    """
    if not _on(verbose):
        return contextlib.nullcontext()
    from tqdm.dask import TqdmCallback

    return TqdmCallback(desc=desc)
