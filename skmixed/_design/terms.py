"""Random-effects terms: which columns vary by which grouping factor.

A :class:`RandomTerm` is one lme4 bar term ``(1 + x | g)``: a grouping factor
and the columns of the fixed design whose coefficients get a random deviation
per level. Uncorrelated terms ``(1 + x || g)`` are expanded, as lme4 does, into
one single-column term per column on the same factor; the LMM solver
amalgamates terms that share a factor into one block with a constrained
(block-diagonal) relative covariance factor, as MixedModels.jl does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RandomTerm", "default_terms"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term.

    Parameters
    ----------
    factor : int
        Index of the grouping factor in the model's list of factors.
    intercept : bool
        Whether the term has a random intercept.
    slopes : tuple of int
        Columns of the fixed design ``X`` (which holds the intercept column
        first when the model has one) with a random slope.
    names : tuple of str
        Column names of the term, ``"(Intercept)"`` first when present.

    Examples
    --------
    >>> import numpy as np
    >>> t = RandomTerm(factor=0, intercept=True, slopes=(1,), names=("(Intercept)", "x"))
    >>> t.q
    2
    >>> t.z_rows(np.array([[1.0, 5.0], [1.0, 7.0]])).tolist()
    [[1.0, 5.0], [1.0, 7.0]]
    """

    factor: int
    intercept: bool
    slopes: tuple
    names: tuple

    def __post_init__(self):
        if not self.intercept and not self.slopes:
            raise ValueError("a random-effects term needs an intercept or at least one slope")
        if len(self.names) != int(self.intercept) + len(self.slopes):
            raise ValueError("names must list the intercept (if any) and every slope")

    @property
    def q(self) -> int:
        return int(self.intercept) + len(self.slopes)

    def z_rows(self, X: np.ndarray) -> np.ndarray:
        """Per-row covariates of the term, shape (n, q), C-contiguous float64."""
        n = X.shape[0]
        Z = np.empty((n, self.q), dtype=np.float64)
        k = 0
        if self.intercept:
            Z[:, 0] = 1.0
            k = 1
        for j, col in enumerate(self.slopes):
            Z[:, k + j] = X[:, col]
        return Z


def default_terms(n_factors: int, slopes: tuple, slope_names: tuple, correlated: bool = True) -> list:
    """Random intercept (plus the given slopes) for every grouping factor."""
    terms = []
    for f in range(n_factors):
        if correlated or not slopes:
            terms.append(RandomTerm(f, True, tuple(slopes), ("(Intercept)",) + tuple(slope_names)))
        else:
            terms.append(RandomTerm(f, True, (), ("(Intercept)",)))
            terms.extend(RandomTerm(f, False, (s,), (nm,)) for s, nm in zip(slopes, slope_names))
    return terms
