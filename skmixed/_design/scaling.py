"""Internal centring and scaling of the fixed-effect and random-slope columns.

The optimisers see every non-intercept column divided by its (weighted)
standard deviation and, where that is a pure reparametrisation, centred on its
mean: a column multiplied by ``c`` or shifted by ``a`` then gives the optimiser
the same numbers (up to rounding), so the estimates transform exactly (the
coefficient of a column ``x c`` is divided by ``c``, and so on) instead of
depending on how the user happened to measure a covariate. The results are
mapped back to the user's columns before anything is stored.

Centring is a reparametrisation only for columns that enter the fixed part
alone (with an intercept): a random-slope column is scaled but not centred.

With the internal columns ``x_int = (x - a) s`` the maps back are:

* fixed effects ``beta = T beta_int`` with ``T[j, j] = s_j`` and
  ``T[0, j] = -a_j s_j`` (the intercept absorbs the centring), ``vcov = T V T'``;
* per random-effects block ``D = diag(s)`` over its columns (1 for an intercept):
  ``b = D b_int``, ``Lambda = D Lambda_int`` (still lower triangular),
  ``condvar = D C D``;
* the REML criterion gains ``-2 sum log s_j`` (``log|R_X|^2`` changes, as lme4's
  does under rescaling); deviances and likelihoods of ML fits are unchanged.

:func:`check_scales` is lme4's ``checkScaleX``: it warns when the user's
continuous columns have standard deviations far from 1 or from each other.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .theta import ThetaMap

__all__ = ["ColumnScaling", "PredictorScaleWarning", "check_scales"]


class PredictorScaleWarning(UserWarning):
    """lme4's "Some predictor variables are on very different scales" (the fit itself is scaled internally)."""


def _column_sds(X, weights):
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    sw = w.sum()
    mean = (w @ X) / sw
    sd = np.sqrt(np.maximum((w @ (X - mean) ** 2) / sw, 0.0))
    return mean, sd


def check_scales(X, names, weights=None, tol=1e3, stacklevel=4):
    """Warn as lme4's ``checkScaleX`` when continuous columns are on very different scales.

    Columns that are all 0/1 and the intercept are ignored; the warning fires when a
    standard deviation is above ``tol`` or below ``1/tol``, or two differ by more than
    a factor ``tol``.
    """
    if X.shape[1] == 0 or X.shape[0] < 2:
        return
    cont = [j for j, nm in enumerate(names) if nm != "(Intercept)" and not np.all((X[:, j] == 0) | (X[:, j] == 1))]
    if not cont:
        return
    _, sd = _column_sds(X[:, cont], weights)
    sd = sd[sd > 0]
    if sd.size == 0:
        return
    lsd = np.log(sd)
    if np.max(np.abs(lsd)) > np.log(tol) or (lsd.max() - lsd.min()) > np.log(tol):
        warnings.warn("Some predictor variables are on very different scales: consider rescaling "
                      "(skmixed scales them internally, so the estimates are unaffected)", PredictorScaleWarning,
                      stacklevel=stacklevel)


@dataclass
class ColumnScaling:
    """The centring ``a`` and scaling ``s`` the optimiser's columns get (see the module docstring)."""

    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def for_design(cls, X, weights, feature_names, terms, center=True) -> "ColumnScaling":
        """Scales from the design ``X`` (intercept, if any, first), its weights and random terms.

        ``center=False`` scales only (for solvers that centre by themselves).
        """
        p = X.shape[1]
        mean, sd = _column_sds(X, weights) if X.shape[0] else (np.zeros(p), np.zeros(p))

        def rms(j):
            return np.sqrt(np.mean(X[:, j] ** 2)) if X.shape[0] else 0.0
        return cls.from_moments(mean, sd, rms, feature_names, terms, center)

    @classmethod
    def from_moments(cls, mean, sd, rms, feature_names, terms, center=True) -> "ColumnScaling":
        """Scales from the columns' weighted means and SDs (a distributed fit sums them over its
        partitions); ``rms(j)``: root mean square of column ``j``, for columns without spread."""
        p = len(mean)
        icpt = p > 0 and feature_names[0] == "(Intercept)"
        scale = np.ones(p)
        ctr = np.zeros(p)
        slopes = {s for t in terms for s in t.slopes}
        for j in range(int(icpt), p):
            if sd[j] > 0 and np.isfinite(sd[j]):
                scale[j] = 1.0 / sd[j]
            else:
                r = rms(j)
                scale[j] = 1.0 / r if r > 0 and np.isfinite(r) else 1.0
            if center and icpt and j not in slopes:
                ctr[j] = mean[j]
        return cls(ctr, scale)

    @property
    def identity(self) -> bool:
        return not np.any(self.center) and np.all(self.scale == 1.0)

    def apply(self, X, out=None):
        """``(X - a) s`` (in place when ``out is X``)."""
        if out is None:
            out = np.empty_like(X, dtype=np.float64)
        np.subtract(X, self.center, out=out)
        out *= self.scale
        return out

    def T(self) -> np.ndarray:
        """``beta_user = T beta_int``."""
        T = np.diag(self.scale.astype(float))
        if np.any(self.center):
            T[0, :] -= self.center * self.scale
            T[0, 0] = 1.0
        return T

    def block_scale(self, blk) -> np.ndarray:
        """``diag(D)`` of a random-effects block (1 for the intercept column)."""
        return np.array([1.0 if c < 0 else self.scale[c] for c in blk.intercept_slopes])

    def theta_internal(self, theta, blocks) -> np.ndarray:
        """A user-scale ``theta`` (e.g. a warm start) on the internal columns: ``Lambda_int = D^-1 Lambda``."""
        tmap = ThetaMap.for_blocks(blocks)
        return tmap.theta_of([lam / self.block_scale(blk)[:, None]
                              for blk, lam in zip(blocks, tmap.lambdas(theta))])

    def log_det(self, p=None) -> float:
        """``log|T|^2 = 2 sum log s_j``: what ``log|R_X|^2`` gains on the internal columns
        (the first ``p``, the fixed ones, when the scaling also covers random-only columns)."""
        return float(2.0 * np.log(self.scale[:p]).sum())

    def unscale(self, res, blocks, reml: bool = False):
        """Map a solver result (LMMResult or GLMMResult, fields ``beta``, ``vcov_beta``, ``b``,
        ``condvar``, ``lambdas``, ``theta``) back to the user's columns, in place."""
        res.theta_internal = np.asarray(res.theta, dtype=float).copy()  # lme4's singularity test reads this
        if self.identity:
            return res
        p = np.asarray(res.beta).shape[0]
        T = self.T()[:p, :p]  # columns past p: random-only columns (random slopes without a fixed effect)
        res.beta = T @ np.asarray(res.beta, dtype=float)
        res.vcov_beta = T @ np.asarray(res.vcov_beta, dtype=float) @ T.T
        for k, blk in enumerate(blocks):
            d = self.block_scale(blk)
            res.b[k] = np.asarray(res.b[k]) * d[None, :]
            res.condvar[k] = np.asarray(res.condvar[k]) * d[None, :, None] * d[None, None, :]
            res.lambdas[k] = d[:, None] * np.asarray(res.lambdas[k])
        if blocks:
            res.theta = ThetaMap.for_blocks(blocks).theta_of(res.lambdas).astype(float)
        if reml and hasattr(res, "objective"):
            res.objective = float(res.objective) - self.log_det(p)
            res.loglik = -0.5 * res.objective
        return res


def gram_scaling(gram, n_obs, feature_names, terms) -> ColumnScaling:
    """The scaling :meth:`ColumnScaling.for_design` gives (``center=False``), from the
    weighted ``[X y]'[X y]`` of columns centred at their means (``gram``) and the
    weighted row count, for fits from accumulated statistics."""
    p = gram.shape[0] - 1
    icpt = p > 0 and feature_names[0] == "(Intercept)"
    scale = np.ones(p)
    for j in range(int(icpt), p):
        m = gram[0, j] / gram[0, 0] if icpt else 0.0
        var = gram[j, j] / n_obs - m * m
        if var > 0 and np.isfinite(var):
            scale[j] = 1.0 / np.sqrt(var)
        elif gram[j, j] > 0 and np.isfinite(gram[j, j]):
            scale[j] = 1.0 / np.sqrt(gram[j, j] / n_obs)
    return ColumnScaling(np.zeros(p), scale)


def scale_cross_products(layout, cp, scaling: ColumnScaling):
    """Put LMM cross-product blocks (:class:`~skmixed._solvers.lmm.CrossProducts`) on the
    internal columns, in place: every ``Z`` and ``X`` column times its scale (``y`` as is)."""
    if scaling.identity:
        return cp
    d1 = scaling.block_scale(layout.blocks[0])
    dense = [np.tile(scaling.block_scale(b), b.n_levels) for b in layout.blocks[1:]]
    sd = np.concatenate(dense + [scaling.scale[:layout.p], np.ones(1)])  # past p: random-only columns
    cp.A11 *= d1[None, :, None] * d1[None, None, :]
    cp.A21 *= sd[layout.cols][:, None] * d1[None, :]
    cp.A22 *= sd[:, None] * sd[None, :]
    return cp
