"""The simulated data stream of the SEMA paper (Ippel, Kaptein & Vermunt 2019, section 5)."""

from __future__ import annotations

import numpy as np

#: the paper's 15 fixed effects: intercept 100, then 0.1, 0.5, ..., 5.3
SEMA_FIXED_EFFECTS = np.array([100.0] + [round(0.1 + 0.4 * k, 1) for k in range(14)])
#: random-effect variances: intercept (condition A uses only this one), then 4 slopes (B-D)
SEMA_RE_VARIANCES = np.array([50.0, 0.2, 0.6, 1.8, 5.0])


def make_sema_stream(n_rows=50_000, n_groups=1_000, n_random=1, corr=0.0, resid_var=5.0,
                     seed=None):
    """Simulate the SEMA paper's stream.

    ``n_groups`` individuals are drawn uniformly with replacement for every row (as the
    authors' ``build_dataset``).  Covariates: 13 level-1 covariates ``x1..x13`` ~ N(0, 1) per
    row and one level-2 covariate ``x14`` ~ N(0, 1) per individual, with fixed effects
    ``0.1, 0.5, ..., 5.3`` (intercept 100).  ``n_random=1`` is condition A (random intercept,
    variance 50); ``n_random=5`` adds random slopes on ``x1..x4`` (the effects 0.1, 0.5, 0.9,
    1.3, variances 0.2, 0.6, 1.8, 5.0 as in the paper's text) with correlation ``corr``
    between all random effects (0, .15, .5 for conditions B, C, D).  Residual variance 5.

    Returns
    -------
    X : ndarray (n_rows, 14)
        Covariates (no intercept column).
    y : ndarray (n_rows,)
    groups : ndarray (n_rows,) int64
        Individual ids in stream order.
    b : ndarray (n_groups, n_random)
        The true random effects.

    Examples
    --------
    >>> from skmixed.datasets._sema_stream import make_sema_stream
    >>> X, y, g, b = make_sema_stream(1000, 50, seed=0)
    >>> X.shape, b.shape
    ((1000, 14), (50, 1))
    """
    rng = np.random.default_rng(seed)
    sd = np.sqrt(SEMA_RE_VARIANCES[:n_random])
    R = np.full((n_random, n_random), corr)
    np.fill_diagonal(R, 1.0)
    cov = R * np.outer(sd, sd)
    b = rng.multivariate_normal(np.zeros(n_random), cov, size=n_groups)
    groups = rng.integers(0, n_groups, size=n_rows).astype(np.int64)
    X = np.empty((n_rows, 14))
    X[:, :13] = rng.standard_normal((n_rows, 13))
    X[:, 13] = rng.standard_normal(n_groups)[groups]
    Z = np.column_stack([np.ones(n_rows), X[:, : n_random - 1]])
    y = (SEMA_FIXED_EFFECTS[0] + X @ SEMA_FIXED_EFFECTS[1:] + np.einsum("ij,ij->i", Z, b[groups])
         + rng.normal(0.0, np.sqrt(resid_var), n_rows))
    return X, y, groups, b
