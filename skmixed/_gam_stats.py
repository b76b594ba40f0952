"""Inference and diagnostics for additive models, as mgcv's ``summary.gam`` and ``gam.check``.

* :func:`smooth_test` -- Wood (2013)'s Wald test of a smooth term with a fractional rank
  (mgcv's ``testStat``, ``p.type=0``): the statistic on the leading eigen-directions of the
  term's covariance, its p-value a mixture of chi-squares (F-like when the scale is estimated).
* :func:`psum_chisq_sf` -- P(sum_i lambda_i chi2_{df_i} > q) by Imhof's (1961) inversion.
* :func:`k_index` -- the basis-dimension check of ``gam.check`` (mgcv's ``k.check``): residual
  differences between neighbours in the covariates against random neighbours.
* :func:`format_pval` -- R's ``format.pval`` (``<2e-16``).
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, stats

__all__ = ["smooth_test", "psum_chisq_sf", "k_index", "format_pval"]

_EPS_P = 2.220446e-16


def format_pval(p, digits=4):
    """R's ``format.pval(p, digits, eps=.Machine$double.eps)`` (``<2e-16`` below the eps).

    Examples
    --------
    >>> format_pval(0.0), format_pval(0.03512), format_pval(1.234e-7)
    ('<2e-16', '0.03512', '1.234e-07')
    """
    if p is None or not np.isfinite(p):
        return "NA"
    if p < _EPS_P:
        return "<2e-16"
    if p < 1e-4:
        m, e = f"{p:.{digits - 1}e}".split("e")
        m = m.rstrip("0").rstrip(".")
        return f"{m}e{int(e):03d}" if int(e) < 0 else f"{m}e+{int(e):02d}"
    return f"{p:.{digits}g}"


def psum_chisq_sf(q, lam, df=None):
    """P(sum_i lam_i chi2_{df_i} > q) by Imhof's inversion of the characteristic function.

    Examples
    --------
    >>> round(psum_chisq_sf(3.84, [1.0]), 5)  # chi2_1 upper tail at 3.84
    0.05004
    """
    lam = np.asarray(lam, dtype=np.float64)
    df = np.ones_like(lam) if df is None else np.asarray(df, dtype=np.float64)

    def f(u):
        if u == 0:
            return 0.5 * (np.sum(df * lam) - q)
        th = 0.5 * np.sum(df * np.arctan(lam * u)) - 0.5 * q * u
        lr = np.sum(df / 4 * np.log1p((lam * u) ** 2))
        return np.sin(th) / u * np.exp(-lr)

    # the integrand oscillates with period ~ 2 pi / q and decays slowly for few degrees of
    # freedom: integrate period by period until the pieces vanish
    L = 2 * np.pi / q if q > 0 else 2 * np.pi / max(np.abs(lam).max(), 1e-12)
    val, a, small = 0.0, 0.0, 0
    for _ in range(5000):
        v, _ = integrate.quad(f, a, a + L, limit=100)
        val += v
        a += L
        small = small + 1 if abs(v) < 1e-13 else 0
        if small >= 3:
            break
    return float(min(1.0, max(0.0, 0.5 + val / np.pi)))


def smooth_test(beta, V, R, rank, res_df=-1.0):
    """mgcv's ``testStat(p, X, V, rank, type=0, res.df)``.

    Parameters
    ----------
    beta : (p,) the term's coefficients
    V : (p, p) their Bayesian covariance
    R : (p, p) with R'R = the term's block of X'WX
    rank : float, the (fractional) reference degrees of freedom
    res_df : float, residual df when the scale is estimated (F-type), else -1

    Returns
    -------
    stat, p_value, rank
    """
    Vr = R @ V @ R.T
    Vr = (Vr + Vr.T) / 2
    ev, vec = np.linalg.eigh(Vr)
    ev, vec = ev[::-1], vec[:, ::-1]
    siv = np.sign(vec[0, :])
    siv[siv == 0] = 1
    vec = vec * siv
    k = max(0, int(np.floor(rank)))
    nu = abs(rank - k)
    k1 = k + 1 if nu > 0 else k
    r_est = int(np.sum(ev > ev.max() * np.finfo(float).eps ** 0.9))
    if r_est < k1:
        k1 = k = r_est
        nu = 0.0
        rank = r_est
    if k1 < vec.shape[1]:
        vec = vec[:, :k1]
    if nu > 0 and k > 0:
        vec = vec.copy()
        if k > 1:
            vec[:, :k - 1] = vec[:, :k - 1] / np.sqrt(ev[:k - 1])
        b12 = np.sqrt(max(0.5 * nu * (1 - nu), 0.0))
        B = np.array([[1.0, b12], [b12, nu]])
        evk = np.diag(ev[k - 1:k1] ** -0.5)
        B = evk @ B @ evk
        eb, ebv = np.linalg.eigh(B)
        rB = ebv @ np.diag(np.sqrt(np.maximum(eb, 0))) @ ebv.T
        vec1 = vec.copy()
        vec1[:, k - 1:k1] = (rB @ np.diag([-1.0, 1.0]) @ vec[:, k - 1:k1].T).T
        vec[:, k - 1:k1] = (rB @ vec[:, k - 1:k1].T).T
    else:
        if k == 0:
            vec = vec * np.sqrt(1 / ev[0])
        else:
            vec = vec / np.sqrt(ev[:k])
        vec1 = vec
        if k == 1:
            rank = 1
    Rp = R @ beta
    d = float(np.sum((vec.T @ Rp) ** 2))
    d1 = float(np.sum((vec1.T @ Rp) ** 2))
    rank1 = rank
    pval = 2.0
    if nu > 0:
        if k1 == 1:
            rank1 = 1
            val = np.ones(1)
        else:
            val = np.ones(k1)
            rp = nu + 1
            val[k - 1] = (rp + np.sqrt(rp * (2 - rp))) / 2
            val[k1 - 1] = rp - val[k - 1]
        if res_df <= 0:
            pval = (psum_chisq_sf(d, val) + psum_chisq_sf(d1, val)) / 2
        else:
            k0 = max(1, round(res_df))
            df = np.append(np.ones(val.size), k0)
            pval = (psum_chisq_sf(0.0, np.append(val, -d / k0), df)
                    + psum_chisq_sf(0.0, np.append(val, -d1 / k0), df)) / 2
        if pval < 1e-10:
            pval = 2.0  # beyond the quadrature's accuracy: the tail approximation below
    if pval > 1:
        if res_df <= 0:
            pval = (stats.chi2.sf(d, rank1) + stats.chi2.sf(d1, rank1)) / 2
        else:
            pval = (stats.f.sf(d / rank1, rank1, res_df) + stats.f.sf(d1 / rank1, rank1, res_df)) / 2
    return d, float(min(1.0, pval)), rank


def k_index(resid, cols, f_eval=None, n_rep=400, rng=None):
    """mgcv's ``k.check`` for one smooth: (k-index, p-value).

    Parameters
    ----------
    resid : (n,) residuals
    cols : (n, d) the smooth's covariates
    f_eval : callable, optional
        For d > 1: the fitted smooth at a covariate matrix, used (as mgcv) to rescale each
        covariate by the smooth's mean absolute gradient along it before finding neighbours.
    n_rep : int
        Random permutations for the p-value.
    rng : numpy Generator

    Returns
    -------
    k_index, p_value
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(rng)
    r = np.asarray(resid, dtype=np.float64)
    X = np.asarray(cols, dtype=np.float64).reshape(r.size, -1)
    nr = r.size
    ve = np.empty(n_rep)
    if X.shape[1] == 1:
        e = np.diff(r[np.argsort(X[:, 0], kind="stable")])
        v_obs = np.mean(e ** 2) / 2
        for i in range(n_rep):
            e = np.diff(r[rng.permutation(nr)])
            ve[i] = np.mean(e ** 2) / 2
    else:
        X = X.copy()
        if f_eval is not None:
            f0 = f_eval(X)
            gr = np.empty(X.shape[1])
            for i in range(X.shape[1]):
                dx = np.ptp(X[:, i]) / 1000
                Xp = X.copy()
                Xp[:, i] += dx
                gr[i] = np.mean(np.abs(f_eval(Xp) - f0)) / dx
            for i in range(X.shape[1]):
                X[:, i] -= X[:, i].min()
                X[:, i] = gr[i] * X[:, i] / X[:, i].max()
        _, ni = cKDTree(X).query(X, k=4)
        ni = ni[:, 1:]
        e = (r[:, None] - r[ni]).ravel()
        v_obs = np.mean(e ** 2) / 2
        for i in range(n_rep):
            rr = r[rng.permutation(nr)]
            ve[i] = np.mean(((rr[:, None] - rr[ni]).ravel()) ** 2) / 2
    p = float(np.mean(ve < v_obs))
    return float(v_obs / np.mean(r ** 2)), p
