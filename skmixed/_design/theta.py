"""The covariance parameters theta and the relative covariance factors Lambda they fill.

One :class:`ThetaMap` per model (as MixedModels.jl's ``setθ!`` / ``lowerbd`` on each ``ReMat``):
every random-effects block (a grouping factor's amalgamated terms) owns the free entries of its
lower-triangular ``Lambda`` given by its pattern, taken column-major (lme4's theta order), blocks in
the model's order. Diagonal entries are standard-deviation ratios, bounded below at 0; off-diagonal
ones are free. Every solver builds Lambda, bounds and theta names here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ThetaMap", "pattern_positions", "scipy_bounds"]


def pattern_positions(pattern: np.ndarray):
    """Row and column of each free entry of a (q, q) lower-triangular ``pattern``, column-major (lme4)."""
    c, r = np.nonzero(np.asarray(pattern, dtype=bool).T)  # row-major over pattern.T = column-major over pattern
    return r, c


def scipy_bounds(lower) -> list:
    """``lower`` bounds (``-inf``: free) as scipy.optimize's ``bounds`` (None for no bound, no upper bounds)."""
    return [(lo if np.isfinite(lo) else None, None) for lo in lower]


class ThetaMap:
    """theta <-> the Lambda of each random-effects block, the bounds and names of theta.

    Parameters
    ----------
    patterns : list of (q_k, q_k) bool arrays
        The free (lower-triangular) entries of each block's Lambda.

    Examples
    --------
    >>> import numpy as np
    >>> tm = ThetaMap([np.tril(np.ones((2, 2), bool)), np.ones((1, 1), bool)])
    >>> tm.n_theta, tm.lower.tolist()
    (4, [0.0, -inf, 0.0, 0.0])
    >>> tm.lambdas([1.0, 0.5, 2.0, 3.0])[0].tolist()
    [[1.0, 0.0], [0.5, 2.0]]
    >>> tm.theta_of(tm.lambdas([1.0, 0.5, 2.0, 3.0])).tolist()
    [1.0, 0.5, 2.0, 3.0]
    """

    def __init__(self, patterns):
        self.patterns = [np.asarray(p, dtype=bool) for p in patterns]
        self.positions = [pattern_positions(p) for p in self.patterns]
        sizes = [r.size for r, _ in self.positions]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_theta = int(self.offsets[-1])
        self.lower = (np.concatenate([np.where(r == c, 0.0, -np.inf) for r, c in self.positions])
                      if self.positions else np.zeros(0))

    @classmethod
    def for_blocks(cls, blocks) -> "ThetaMap":
        """The map of a model's random-effects blocks (``ReBlock``, in the solver's order)."""
        return cls([b.pattern for b in blocks])

    @classmethod
    def full(cls, q: int) -> "ThetaMap":
        """One block with an unstructured (q, q) covariance."""
        return cls([np.tril(np.ones((q, q), dtype=bool))])

    @property
    def is_diagonal(self) -> np.ndarray:
        """Per theta entry: a diagonal entry of its Lambda (a standard-deviation ratio, bounded at 0)."""
        return self.lower == 0

    def start(self) -> np.ndarray:
        """lme4's starting theta: identity Lambdas (1 on the diagonal, 0 off it)."""
        return self.is_diagonal.astype(float)

    def bounds(self) -> list:
        """scipy.optimize bounds of theta."""
        return scipy_bounds(self.lower)

    def lambdas(self, theta) -> list:
        """Each block's lower-triangular Lambda filled from ``theta``."""
        out = []
        for pat, (r, c), k in zip(self.patterns, self.positions, self.offsets):
            lam = np.zeros(pat.shape)
            lam[r, c] = theta[k:k + len(r)]
            out.append(lam)
        return out

    def theta_of(self, lambdas) -> np.ndarray:
        """theta read back from each block's Lambda (entries outside the patterns are ignored)."""
        return np.concatenate([np.asarray(lam)[r, c] for lam, (r, c) in zip(lambdas, self.positions)]) \
            if self.positions else np.zeros(0)

    def names(self, factor_names, term_names) -> list:
        """theta's names: ``"g.(Intercept)"`` for a diagonal entry, ``"g.x.(Intercept)"`` off it (row, column),
        given each block's factor name and its columns' names."""
        out = []
        for g, names, (r, c) in zip(factor_names, term_names, self.positions):
            out.extend(f"{g}.{names[i]}" if i == j else f"{g}.{names[i]}.{names[j]}" for i, j in zip(r, c))
        return out

    def is_singular(self, theta, tol=1e-4) -> bool:
        """lme4's ``isSingular``: a parameter bounded at zero that sits (numerically) on it."""
        th = np.asarray(theta)
        return bool(np.any(th[self.lower == 0] < tol))
