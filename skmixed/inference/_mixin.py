"""The estimators' inference methods, as a mixin (the work is in the modules beside this one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils.validation import check_is_fitted

__all__ = ["InferenceMixin", "variance_parts"]


def variance_parts(X, weights, blocks, beta, z_source=None):
    """Nakagawa-Schielzeth ingredients from the training rows.

    Returns ``(var_fixed, [mean z z' per random-effects block])``: the (sample) variance of
    the fixed-part predictions ``X beta`` and, per block, the average outer product of the
    random-effect columns (Johnson's extension to random slopes: the variance a block
    contributes is ``trace(Sigma_k mean(z z'))``). ``z_source``: the matrix the blocks read
    their columns from when it is not ``X`` (random-only columns after X's).
    """
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    eta = X @ beta
    N = w.sum()
    mean = (w * eta).sum() / N
    var_fixed = float((w * (eta - mean) ** 2).sum() / max(N - 1, 1))
    mzz = []
    for blk in blocks:
        Z = blk.z_rows(X if z_source is None else z_source)
        mzz.append((Z * w[:, None]).T @ Z / N)
    return var_fixed, mzz


class InferenceMixin:
    """``confint``, ``bootstrap``, ``simulate``, ``coef_table_``, ``icc_`` and Nakagawa's R²."""

    # ------------------------------------------------------------------ tables
    @property
    def coef_table_(self) -> pd.DataFrame:
        """The fixed-effects table (lmerTest's Satterthwaite t-tests for LMMs, z-tests for the logistic model)."""
        from ._api import coef_table

        return coef_table(self)

    def confint(self, parm=None, level=0.95, method="wald", n_boot=500, random_state=None, n_jobs=None):
        """Confidence intervals (lme4's ``confint``); see :func:`skmixed.confint`.

        Examples
        --------
        >>> from skmixed import MixedLinearRegressor
        >>> from skmixed.datasets import load_sleepstudy
        >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
        >>> m.confint(parm=["Days"]).round(2).to_numpy().tolist()
        [[7.44, 13.5]]
        """
        from ._api import confint

        return confint(self, parm=parm, level=level, method=method, n_boot=n_boot, random_state=random_state,
                       n_jobs=n_jobs)

    def bootstrap(self, n_boot=1000, statistic=None, n_jobs=None, random_state=None, verbose=False,
                  simulation="auto"):
        """Parametric bootstrap (lme4's ``bootMer``); see :func:`skmixed.bootstrap`."""
        from ._bootstrap import bootstrap

        return bootstrap(self, n_boot, statistic=statistic, n_jobs=n_jobs, random_state=random_state,
                         verbose=verbose, simulation=simulation)

    def simulate(self, n=1, random_state=None):
        """Responses simulated from the fitted model at the training rows (lme4's ``simulate``).

        New random effects are drawn for every simulation (``use.u = FALSE``).

        Returns
        -------
        ndarray of shape (n_rows, n)
        """
        from ._bootstrap import simulate

        return simulate(self, n, random_state)

    # ------------------------------------------------------------------ Nakagawa & Schielzeth
    def _variance_parts(self):
        check_is_fitted(self)
        st = getattr(self, "_lmm_state", None) or getattr(self, "_glmm_state", None)
        parts = None if st is None else st.extra.get("r2_parts")
        why = None if st is None else st.extra.get("r2_unavailable")
        if why:
            raise ValueError(why)
        if parts is None:
            raise ValueError("R² and the ICC need the fit's variance decomposition, which fit() computes "
                             "(partial_fit and the distributed fits do not)")
        var_fixed, mzz = parts
        var_re = 0.0
        for blk, M in zip(self._re_blocks, mzz):
            C = self.cov_re_[self.factors_[blk.factor].name].to_numpy()
            var_re += float(np.trace(C @ M))
        resid = self.sigma_**2 if hasattr(self, "_lmm_state") else np.pi**2 / 3
        return var_fixed, var_re, resid

    @property
    def icc_(self) -> float:
        """Adjusted intraclass correlation: random-effect variance over random plus residual
        (latent-scale ``pi^2 / 3`` for the logistic model)."""
        _, vr, ve = self._variance_parts()
        return vr / (vr + ve)

    @property
    def r2_marginal_(self) -> float:
        """Nakagawa & Schielzeth's marginal R²: variance of the fixed part over the total."""
        vf, vr, ve = self._variance_parts()
        return vf / (vf + vr + ve)

    @property
    def r2_conditional_(self) -> float:
        """Nakagawa & Schielzeth's conditional R²: fixed plus random over the total."""
        vf, vr, ve = self._variance_parts()
        return (vf + vr) / (vf + vr + ve)


def prediction_std(est, Xd, codes, z_source=None):
    """Standard deviations of the linear predictor at design rows ``Xd``: ``(fixed part, with
    random effects)``. The second adds, per grouping factor, ``z' Sigma z`` for levels not seen in
    training and the BLUPs' conditional variances (their diagonal) for known levels. ``z_source``:
    the matrix the random-effects columns are read from, when not ``Xd``."""
    V = est.vcov_.to_numpy()
    var_fixed = np.einsum("ij,jk,ik->i", Xd, V, Xd)
    var_re = np.zeros(Xd.shape[0])
    for blk in est.mixed_fit_.blocks:
        name = est.factors_[blk.factor].name
        Z = blk.z_rows(Xd if z_source is None else z_source)
        c = codes[blk.factor]
        C = est.cov_re_[name].to_numpy()
        unseen = c < 0
        var_re[unseen] += np.einsum("ij,jk,ik->i", Z[unseen], C, Z[unseen])
        sd = est.random_effects_sd_[name].to_numpy()
        known = ~unseen
        var_re[known] += np.einsum("ij,ij->i", Z[known] ** 2, sd[c[known]] ** 2)
    return np.sqrt(var_fixed), np.sqrt(var_fixed + var_re)


def normal_quantile(level):
    return stats.norm.ppf((1 + level) / 2)
