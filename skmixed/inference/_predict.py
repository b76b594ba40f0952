"""Population-averaged (marginal) probabilities of the logistic GLMM for unseen groups."""

from __future__ import annotations

import numpy as np

from .._base import predict_inputs
from .._kernels import glmm as kg

__all__ = ["marginal_proba"]

_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(40)


def _expit(x):
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def marginal_proba(est, X, groups=None) -> np.ndarray:
    """``P(y = classes_[1])`` averaged over the random effects of levels not seen in training.

    For a row, the random part of the linear predictor from its unseen levels is
    ``N(0, s^2)`` with ``s^2 = sum_k z_k' Sigma_k z_k`` over those factors; known levels
    contribute their conditional modes. ``E[expit(eta + s e)]``, ``e ~ N(0, 1)``, is
    computed by 40-point Gauss-Hermite quadrature.
    """
    pdata = predict_inputs(est, X, groups)
    fit = est.mixed_fit_
    Xd = np.ascontiguousarray(pdata.X)
    Zs = pdata.z_source  # X, then any random-only columns
    eta = np.empty(Xd.shape[0])
    kg.linear_predictor(Xd, est.fixed_effects_.to_numpy(), eta)
    if pdata.offset is not None:  # a formula's offset()
        eta += pdata.offset
    s2 = np.zeros(Xd.shape[0])
    for blk, b in zip(fit.blocks, fit.b):
        codes = pdata.codes[blk.factor]
        kg.add_random_part(np.ascontiguousarray(Zs), np.asarray(blk.intercept_slopes, dtype=np.int64), codes,
                           np.ascontiguousarray(b), eta)
        unseen = codes < 0
        if unseen.any():
            Z = blk.z_rows(Zs[unseen])
            C = est.cov_re_[est.factors_[blk.factor].name].to_numpy()
            s2[unseen] += np.einsum("ij,jk,ik->i", Z, C, Z)
    s = np.sqrt(s2)
    p = np.zeros_like(eta)
    for x, w in zip(_NODES, _WEIGHTS):
        p += w * _expit(eta + np.sqrt(2.0) * s * x)
    return p / np.sqrt(np.pi)
