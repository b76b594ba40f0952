"""What an LMM fit keeps for inference: its profiled-deviance problem and, after ``fit``, its rows.

:class:`LMMState` is attached to a fitted :class:`~skmixed.MixedLinearRegressor`
(as ``_lmm_state``). It holds the :class:`~skmixed._solvers.lmm.LMMProblem` the
optimiser used (the cross-product blocks, independent of the number of rows) and
the change of basis between the centred fixed columns the blocks were formed with
and the user's columns, so that Satterthwaite / Kenward-Roger degrees of freedom,
profile intervals and likelihood-ratio refits all work on the exact criterion the
fit optimised, without touching the rows again. ``fit`` also attaches the rows
(no copy: the design the fit built) for the parametric bootstrap and
:meth:`simulate`; pickles leave the rows (and the layout's per-row codes) out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LMMState", "LMMRows", "GLMMState"]


@dataclass
class LMMRows:
    """The training rows of a ``fit``: design (intercept first, kept columns), y, weights, codes."""

    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    codes: list  # per grouping factor, int64 codes
    fit_data: object = None  # the fit's FitData (refits on simulated responses reuse it)

    @property
    def z_source(self) -> np.ndarray:
        """The matrix the random-effects blocks read their columns from (``X``, then any
        random-only columns)."""
        zs = getattr(self.fit_data, "z_source", None)
        return self.X if zs is None else zs


@dataclass
class LMMState:
    """An LMM fit as inference needs it (see the module docstring).

    ``T`` maps the problem's (centred) fixed effects to the user's: ``beta = T beta_c``
    (plus ``y_shift`` on the intercept); identity when the blocks are not centred.
    """

    problem: object  # LMMProblem, or None for a fixed-effects-only fit
    T: np.ndarray
    y_shift: float
    theta: np.ndarray
    reml: bool
    n_obs: float
    rows: LMMRows | None = None
    extra: dict = field(default_factory=dict)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["rows"] = None
        prob = state["problem"]
        if prob is not None:
            prob = copy.copy(prob)
            lay = copy.copy(prob.layout)
            empty = np.empty((0,), dtype=np.int64)
            lay.codes1 = empty
            lay.row_slot = np.empty((0, lay.row_slot.shape[1]), dtype=np.int64)
            lay.dense_codes = np.empty((0, lay.dense_codes.shape[1]), dtype=np.int64)
            lay.__dict__.pop("dense_row_pattern", None)
            prob.layout = lay
            state["problem"] = prob
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass
class GLMMState:
    """A logistic fit as inference needs it: its random-effects blocks and (after ``fit``) its rows."""

    blocks: list
    rows: LMMRows | None = None
    extra: dict = field(default_factory=dict)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["rows"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
