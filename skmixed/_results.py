"""The fitted mixed model as one results object (issue #13, "one spine").

:class:`MixedFit` is what the rest of skmixed (inference, SplitSampleMixed, predictions)
reads of a fitted estimator instead of reaching into its private attributes: the
random-effects blocks (one amalgamated :class:`~skmixed._design.layout.ReBlock` per grouping
factor, solver order), their conditional modes, the kept fixed-effects columns, and the
solver's state for inference (:class:`~skmixed.inference._state.LMMState` of a linear fit,
:class:`~skmixed.inference._state.GLMMState` of a GLMM). Every estimator exposes it as
``mixed_fit_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MixedFit"]


@dataclass(frozen=True)
class MixedFit:
    """A fitted mixed model's random-effects structure and solver state.

    Parameters
    ----------
    blocks : list of ReBlock
        One per grouping factor with random effects, in the solver's order.
    b : list of ndarray
        ``b[k]`` the (J_k, q_k) conditional modes (BLUPs) of ``blocks[k]``, on the user's columns.
    keep : ndarray of int
        Positions of the fitted (non-aliased) columns in the full fixed design.
    patterns : dict
        Per grouping factor name, the block's covariance pattern (``varcorr_`` reads it).
    state : LMMState, GLMMState or None
        What inference needs of the solver (profiled problem or GLMM blocks, training rows).
    kind : {"lmm", "glmm"} or None
        Which solver family ``state`` belongs to (None: neither, e.g. the additive model).
    family : Family or None
        The GLMM family (:mod:`skmixed._families`) of a GLMM fit.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> fit = m.mixed_fit_
    >>> fit.kind, [blk.q for blk in fit.blocks], fit.b[0].shape
    ('lmm', [2], (18, 2))
    """

    blocks: list = field(default_factory=list)
    b: list = field(default_factory=list)
    keep: np.ndarray = None
    patterns: dict = field(default_factory=dict)
    state: object = None
    kind: str | None = None
    family: object = None

    def random_part(self, Xd, codes) -> np.ndarray:
        """Sum over the blocks of ``z_row . b[code]`` for rows ``Xd`` (kept design columns);
        0 for rows whose code is -1 (a level not seen in training, or no groups)."""
        out = np.zeros(Xd.shape[0])
        for blk, b in zip(self.blocks, self.b):
            c = codes[blk.factor]
            known = c >= 0
            if not known.any():
                continue
            Z = blk.z_rows(Xd[known])
            out[known] += np.einsum("ij,ij->i", Z, b[c[known]])
        return out
