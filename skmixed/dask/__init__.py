"""Fitting and prediction on Dask DataFrames (``pip install skmixed[dask]``).

A linear mixed model needs only per-level cross-product blocks, which are sums
over rows. :func:`fit_lmm` / :func:`fit_dask` therefore compute each partition's
statistics on the workers (one pass over the partition's rows), add them up in a
tree, and optimise the variance parameters on the driver, whose work does not
depend on the number of rows (:mod:`skmixed.dask.lmm`). The logistic GLMM keeps
each group's rows on one worker and runs every optimiser step's per-group work
there (:mod:`skmixed.dask.glmm`). Both are the exact fit, the same as ``fit`` on
the concatenated rows.

Everything here runs on whatever Dask scheduler is active: the local threaded
one, or a ``dask.distributed`` cluster once a ``Client`` exists.
"""

from __future__ import annotations

import numpy as np
import pandas as pd  # noqa: F401  (the examples use it)

from ..additive import AdditiveMixedRegressor
from ..linear import MixedLinearRegressor
from ._common import require_dask
from .lmm import fit_linear_dask
from .predict import predict_dask

__all__ = ["fit_dask", "fit_lmm", "fit_glmm", "fit_additive", "predict_dask"]


def fit_dask(estimator, ddf, formula=None, *, y=None, X=None, groups=None, sample_weight=None,
             split_every=8, shuffle=True, verbose=False):
    """Fit a mixed model exactly on a Dask DataFrame.

    ``MixedLinearRegressor``: map-reduce of per-group statistics (partitions in
    any order, groups may span partitions). ``MixedLogisticRegressor`` and
    ``MixedPoissonRegressor`` (column names), one grouping factor: the rows are
    shuffled so that each group lives in one partition, the partitions stay on
    the workers, and every optimiser step of the in-memory algorithm evaluates
    its per-group Laplace (or AGQ) terms and gradients there, summed on the
    driver: the exact fit. Several grouping factors (crossed or nested, Laplace
    or nAGQ=0): no shuffle; every PIRLS step sums the partitions' working
    cross-products on the whole data's block layout
    (:mod:`skmixed.dask.glmm_crossed`).
    ``AdditiveMixedRegressor`` (``discrete=True``, column names and ``smooth``):
    bins fixed from the whole data in two cheap passes, then the partitions'
    binned statistics are summed for every fREML iteration (see
    :mod:`skmixed.dask.additive`); ``fitted_values_`` is None (the rows stay
    on the workers).

    Parameters
    ----------
    estimator : MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor or AdditiveMixedRegressor
        Unfitted template; its parameters are used, a fitted clone is returned.
    ddf : dask.dataframe.DataFrame
    formula : str, optional
        lme4 formula (``"y ~ x + (1 + x | g)"``); alternatively give ``y``, ``X``
        and ``groups`` as column names.
    y : str, optional
        Response column.
    X : list of str, optional
        Fixed-effects columns (random slopes are chosen by the estimator's
        ``random_slopes``, by name). With ``group_column`` set, include it here.
    groups : str or list of str, optional
        Grouping column(s), one per grouping factor.
    sample_weight : str, optional
        Column of frequency weights.
    split_every : int, default=8
        Fan-in of the tree reduction (linear model).
    shuffle : bool, default=True
        GLMM with one grouping factor: shuffle the rows by group first (pass
        False when every group already lives in one partition).
    verbose : bool, default=False
        Linear model: a tqdm progress bar over the pass through the partitions
        (local Dask schedulers; a distributed cluster shows it on its dashboard).

    Returns
    -------
    estimator
        The fitted clone; equal to the in-memory ``fit`` / ``from_formula`` on
        the concatenated partitions.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.dask import fit_dask
    >>> from skmixed.datasets import make_big_grouped_data
    >>> df = make_big_grouped_data(20_000, 40, seed=0)
    >>> ddf = dd.from_pandas(df, npartitions=4)
    >>> m = fit_dask(MixedLinearRegressor(), ddf, y="y", X=["x", "b"], groups="g")
    >>> full = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    >>> bool(np.allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-8))
    True
    """
    require_dask()
    from ..logistic import MixedLogisticRegressor
    from ..poisson import MixedPoissonRegressor

    if isinstance(estimator, (MixedLogisticRegressor, MixedPoissonRegressor)):
        if formula is not None:
            raise ValueError("the distributed GLMM fit takes column names (y=, X=, groups=), not a formula")
        if y is None or X is None or groups is None:
            raise ValueError("give the column names y=, X= and groups=")
        from .glmm import fit_glmm_dask

        return fit_glmm_dask(estimator, ddf, y=y, X=X, groups=groups, sample_weight=sample_weight, shuffle=shuffle)
    if isinstance(estimator, AdditiveMixedRegressor):
        if formula is not None or y is None or X is None:
            raise ValueError("the distributed additive fit takes column names y= and X= (and groups=), not a "
                             "formula; name the smooth columns in the estimator's smooth=")
        from .additive import fit_additive_dask

        return fit_additive_dask(estimator, ddf, y=y, X=X, groups=groups, sample_weight=sample_weight)
    if not isinstance(estimator, MixedLinearRegressor):
        raise TypeError(f"fit_dask supports MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor "
                        f"and AdditiveMixedRegressor, got {type(estimator).__name__}")
    return fit_linear_dask(estimator, ddf, formula, y=y, X=X, groups=groups, sample_weight=sample_weight,
                           split_every=split_every, verbose=verbose)


def fit_lmm(ddf, formula=None, *, y=None, X=None, groups=None, sample_weight=None, split_every=8, **params):
    """Fit a :class:`~skmixed.MixedLinearRegressor` on a Dask DataFrame (see :func:`fit_dask`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    formula : str, optional
    y, X, groups, sample_weight : column names, optional
    split_every : int, default=8
    **params
        ``MixedLinearRegressor`` parameters (``reml``, ``random_slopes``, ...);
        ``verbose=True`` also shows the pass through the partitions.

    Returns
    -------
    MixedLinearRegressor
        Fitted.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed.dask import fit_lmm, predict_dask
    >>> from skmixed.datasets import load_sleepstudy
    >>> ddf = dd.from_pandas(load_sleepstudy(), npartitions=3)
    >>> m = fit_lmm(ddf, "Reaction ~ Days + (Days | Subject)")
    >>> m.fixed_effects_.round(3).tolist()
    [251.405, 10.467]
    >>> predict_dask(m, ddf).compute().shape
    (180,)
    """
    return fit_dask(MixedLinearRegressor(**params), ddf, formula, y=y, X=X, groups=groups,
                    sample_weight=sample_weight, split_every=split_every, verbose=params.get("verbose", False))


def fit_glmm(ddf, *, y, X, groups, sample_weight=None, shuffle=True, **params):
    """Fit a :class:`~skmixed.MixedLogisticRegressor` on a Dask DataFrame (see :func:`fit_dask`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    y, X, groups, sample_weight : column names
        One grouping column, or several (crossed or nested factors).
    shuffle : bool, default=True
        One grouping factor: shuffle rows by group first (``ddf.shuffle(on=groups)``).
    **params
        ``MixedLogisticRegressor`` parameters (``nagq``, ``random_slopes``, ...).

    Returns
    -------
    MixedLogisticRegressor
        Fitted; equal to the in-memory fit up to optimiser noise.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed import MixedLogisticRegressor
    >>> from skmixed.dask import fit_glmm
    >>> from skmixed.datasets import make_big_grouped_data
    >>> df = make_big_grouped_data(4_000, 40, seed=0)
    >>> m = fit_glmm(dd.from_pandas(df, npartitions=2), y="y_bin", X=["x", "b"], groups="g")
    >>> full = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    >>> bool(np.allclose(m.fixed_effects_, full.fixed_effects_, rtol=1e-6))
    True
    """
    from ..logistic import MixedLogisticRegressor

    return fit_dask(MixedLogisticRegressor(**params), ddf, y=y, X=X, groups=groups,
                    sample_weight=sample_weight, shuffle=shuffle)


def fit_additive(ddf, *, y, X, groups=None, sample_weight=None, **params):
    """Fit an :class:`~skmixed.AdditiveMixedRegressor` (``discrete=True``) on a Dask DataFrame.

    The covariates are binned as one in-memory fit of all rows bins them (bam's
    discretization over the whole data's ranges), then every fREML iteration
    sums the partitions' binned statistics (see :func:`fit_dask`).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    y, X, groups, sample_weight : column names
        ``groups``: one column per grouping factor (random intercepts, and slopes
        named by ``random_slopes``).
    **params
        ``AdditiveMixedRegressor`` parameters (``smooth``, ``basis``, ``n_knots``,
        ``family``, ...); ``formula`` and ``ti()`` terms are not supported here.

    Returns
    -------
    AdditiveMixedRegressor
        Fitted; equal to the in-memory fit of the concatenated rows up to the
        order of floating-point sums. ``fitted_values_`` is None.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> from skmixed import AdditiveMixedRegressor
    >>> from skmixed.dask import fit_additive
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"x": rng.uniform(size=3000), "g": rng.integers(0, 20, 3000)})
    >>> df["y"] = np.sin(6 * df["x"]) + rng.normal(0, 0.3, 20)[df["g"]] + rng.normal(0, 0.5, 3000)
    >>> m = fit_additive(dd.from_pandas(df, npartitions=3), y="y", X=["x"], groups="g", smooth=["x"])
    >>> full = AdditiveMixedRegressor(smooth=["x"]).fit(df[["x"]], df["y"], groups=df["g"])
    >>> bool(abs(m.reml_score_ - full.reml_score_) < 1e-6)
    True
    """
    return fit_dask(AdditiveMixedRegressor(**params), ddf, y=y, X=X, groups=groups, sample_weight=sample_weight)

