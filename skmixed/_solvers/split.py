"""Split-sample fitting: partitions, combination rules and BLUPs given fixed parameters.

Three ways to cut the data (seed 001, after Clark 2019):

* ``groups``   — the levels of the first grouping factor are dealt into ``M``
  disjoint sets; subsamples are independent.
* ``within``   — every group's rows are dealt into ``M`` parts; every subsample
  holds (almost) every group, so subsample estimates share the groups' random
  effects and are correlated.
* ``pairwise`` — rows dealt into ``Q`` parts as for ``within``; the subsamples
  are the ``Q(Q-1)/2`` unions of two parts (overlapping subsamples).

For the LMM the covariance of a weighted combination ``sum_s W_s beta_s`` is
the pseudo-likelihood sandwich. With ``H_s = X_s' V_s^{-1} X_s`` and the GLS
score ``X_s' V_s^{-1} (y_s - X_s beta)``,
``Cov(beta_s, beta_t) = H_s^{-1} K_st H_t^{-1}`` where ``K_st`` is the
covariance of the two scores. Two subsamples' responses covary through the
shared random effects (``Z_sj Sigma Z_tj'`` for every group ``j``) and, for
overlapping subsamples, through the shared rows (``sigma^2 I``), so

``K_st = sum_j F_sj Sigma F_tj' + sigma^-2 sum_{k in s & t} sum_j
(X_kj - Z_kj C_sj)' (X_kj - Z_kj C_tj)``

with ``P_sj = Sigma (sigma^2 I + Z_sj'Z_sj Sigma)^{-1}``, ``C_sj = P_sj Z_sj'X_sj``
and ``F_sj = sigma^-2 (X_sj'Z_sj - C_sj' Z_sj'Z_sj)``. ``K_ss = H_s`` (a check the
tests make). Everything is computed from per-(group, part) blocks of
``[Z X y]'[Z X y]`` that the core's one-pass kernel fills.
"""

from __future__ import annotations

import numpy as np

from .._design.layout import BlockLayout, ReBlock
from .._design.theta import ThetaMap
from .lmm import LMMProblem, cross_products

__all__ = ["assign_parts", "subsample_parts", "part_group_blocks", "lmm_sandwich", "lmm_blups",
           "moment_covariance", "combine_means"]


# ---------------------------------------------------------------------------- partitions
def assign_parts(codes, n_levels, n_rows, n_parts, strategy, rng) -> np.ndarray:
    """Part (0..n_parts-1) of every row.

    ``groups``: levels are shuffled and dealt round-robin (equal numbers of
    groups per part). ``within``/``pairwise``: each group's rows are shuffled
    and dealt round-robin starting at a random part, so every group is spread
    evenly over the parts. ``codes=None`` (no grouping) deals rows at random.
    """
    if codes is None:
        part = np.empty(n_rows, dtype=np.int64)
        part[rng.permutation(n_rows)] = np.arange(n_rows) % n_parts
        return part
    if strategy == "groups":
        perm = rng.permutation(n_levels)
        part_of_level = np.empty(n_levels, dtype=np.int64)
        part_of_level[perm] = np.arange(n_levels) % n_parts
        return part_of_level[codes]
    n = codes.shape[0]
    perm = rng.permutation(n)
    # rows ordered by group, in random order within each group (no loop over groups)
    order = perm[np.argsort(codes[perm], kind="stable")]
    counts = np.bincount(codes, minlength=n_levels)
    start = np.zeros(n_levels, dtype=np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    c = codes[order]
    rank = np.arange(n, dtype=np.int64) - start[c]
    offset = rng.integers(0, n_parts, n_levels)
    part = np.empty(n, dtype=np.int64)
    part[order] = (rank + offset[c]) % n_parts
    return part


def subsample_parts(n_parts, strategy) -> list:
    """Parts making up each subsample: singletons, or all pairs for ``pairwise``."""
    if strategy == "pairwise":
        return [(a, b) for a in range(n_parts) for b in range(a + 1, n_parts)]
    return [(a,) for a in range(n_parts)]


# ---------------------------------------------------------------------------- blocks
def part_group_blocks(X, y, weights, codes, n_levels, zcols, part, n_parts) -> np.ndarray:
    """Per-(level, part) blocks of ``[Z X y]' W [Z X y]``, shape ``(J, K, d, d)``.

    One pass of the core kernel with a pseudo-factor ``level * K + part`` whose
    "random-effect columns" are all of ``[Z X y]`` (``zcols`` index X; -1 = 1).
    """
    n, p = X.shape
    src = np.empty((n, p + 1))
    src[:, :p] = X
    src[:, p] = y
    cols = list(zcols) + list(range(p + 1))
    d = len(cols)
    J = n_levels * n_parts
    cx = np.asarray(codes, dtype=np.int64) * n_parts + np.asarray(part, dtype=np.int64)
    blk = ReBlock(0, J, [f"c{k}" for k in range(d)], cols, np.tril(np.ones((d, d), dtype=bool)))
    layout = BlockLayout.build([blk], [cx], 0)
    cp = cross_products(layout, np.empty((n, 0)), y, weights, z_source=src)
    return cp.A11.reshape(n_levels, n_parts, d, d)


# ---------------------------------------------------------------------------- LMM covariance
def lmm_sandwich(blocks, q, p, Sigma, sigma2, parts, weights) -> tuple:
    """Covariance of ``sum_s W_s beta_s`` for LMM subsample fits (single grouping factor).

    Parameters
    ----------
    blocks : (J, K, d, d) from :func:`part_group_blocks`.
    q, p : random-effect and fixed-effect columns.
    Sigma : (q, q) random-effects covariance; sigma2 : residual variance.
    parts : list of tuples, the parts of each subsample.
    weights : list of (p, p) combination matrices ``W_s``.

    Returns
    -------
    V : (p, p) covariance of the combination.
    H : list of (p, p) ``H_s`` (for checks).
    K : dict (s, t) -> (p, p) score covariances (for checks).
    """
    zs, xs = slice(0, q), slice(q, q + p)
    S = len(parts)
    ZZ_k = blocks[:, :, zs, zs]
    ZX_k = blocks[:, :, zs, xs]
    XX_k = blocks[:, :, xs, xs]
    C, F, H = [], [], []
    Iq = np.eye(q)
    for pt in parts:
        idx = list(pt)
        ZZ = ZZ_k[:, idx].sum(axis=1)
        ZX = ZX_k[:, idx].sum(axis=1)
        XX = XX_k[:, idx].sum(axis=1)
        # P = Sigma (sigma2 I + ZZ Sigma)^-1, i.e. P' = solve((sigma2 I + ZZ Sigma)', Sigma)
        A = sigma2 * Iq + ZZ @ Sigma
        P = np.swapaxes(np.linalg.solve(np.swapaxes(A, 1, 2), np.broadcast_to(Sigma, A.shape)), 1, 2)
        Cs = P @ ZX  # (J, q, p)
        C.append(Cs)
        F.append((np.swapaxes(ZX, 1, 2) - np.swapaxes(Cs, 1, 2) @ ZZ) / sigma2)  # (J, p, q)
        H.append((XX.sum(0) - np.einsum("jap,jaq->pq", ZX, Cs)) / sigma2)
    Hinv = [np.linalg.inv(h) for h in H]
    K = {}
    V = np.zeros((p, p))
    for s in range(S):
        for t in range(S):
            Kst = np.einsum("jpa,ab,jrb->pr", F[s], Sigma, F[t])
            for k in set(parts[s]) & set(parts[t]):
                XX, ZX, ZZ = XX_k[:, k], ZX_k[:, k], ZZ_k[:, k]
                Kst = Kst + (XX.sum(0)
                             - np.einsum("jap,jaq->pq", ZX, C[t])
                             - np.einsum("jap,jaq->pq", C[s], ZX)
                             + np.einsum("jap,jab,jbq->pq", C[s], ZZ, C[t])) / sigma2
            K[(s, t)] = Kst
            V += weights[s] @ Hinv[s] @ Kst @ Hinv[t] @ weights[t].T
    return 0.5 * (V + V.T), H, K


def moment_covariance(betas, vcovs, weights):
    """Model-free covariance of ``sum_s W_s beta_s`` for exchangeable dependent subsamples.

    Write ``beta_s = beta + c + d_s``: a part ``c`` shared by all subsamples
    (the groups' random effects) and independent parts ``d_s``. ``Var(beta_s) =
    C + D`` is estimated by the mean subsample covariance ``Vbar`` and ``D`` by
    the between-subsample spread ``S``; as the weights sum to ``I``,
    ``Var(sum W_s beta_s) = C + sum W_s D W_s' = Vbar - S + sum W_s S W_s'``.
    The diagonal is clipped between the independent case ``sum W_s V_s W_s'``
    and the fully dependent one ``Vbar``. Only ``M - 1`` degrees of freedom
    estimate ``S``: a rough rule, used when no model-based rule applies.
    """
    B = np.asarray(betas)
    M, p = B.shape
    Vbar = np.mean(np.asarray(vcovs), axis=0)
    S = np.atleast_2d(np.cov(B.T, ddof=1)) if M > 1 else np.zeros((p, p))
    est = Vbar - S + sum(W @ S @ W.T for W in weights)
    lo = np.diag(sum(W @ V @ W.T for W, V in zip(weights, vcovs)))
    d = np.clip(np.diag(est), lo, np.diag(Vbar))
    s = np.sqrt(np.clip(np.diag(est), 1e-300, None))
    corr = np.clip(est / np.outer(s, s), -1.0, 1.0)
    out = corr * np.outer(np.sqrt(d), np.sqrt(d))
    return 0.5 * (out + out.T)


# ---------------------------------------------------------------------------- combination
def combine_means(betas, vcovs, combine):
    """Weights and combined estimate. ``equal``: ``W_s = I/M``; ``inverse_variance``:
    ``W_s = (sum_t V_t^-1)^-1 V_s^-1``."""
    M, p = len(betas), betas[0].shape[0]
    if combine == "equal":
        W = [np.eye(p) / M for _ in range(M)]
    else:
        Vinv = [np.linalg.pinv(V) for V in vcovs]
        T = np.linalg.pinv(sum(Vinv))
        W = [T @ Vi for Vi in Vinv]
    beta = sum(Ws @ b for Ws, b in zip(W, betas))
    return beta, W


# ---------------------------------------------------------------------------- BLUPs
def theta_from_cov(blocks, covs, sigma):
    """lme4's theta for given covariance matrices: ``Lambda Lambda' = Sigma / sigma^2``."""
    lams = []
    for blk, S in zip(blocks, covs):
        R = np.asarray(S, dtype=float) / sigma**2
        R = np.where(blk.pattern | blk.pattern.T, R, 0.0)
        try:
            lam = np.linalg.cholesky(R)
        except np.linalg.LinAlgError:
            # singular (boundary) covariance: a tiny ridge keeps the factor real
            lam = np.linalg.cholesky(R + 1e-12 * max(np.trace(R), 1e-300) * np.eye(R.shape[0]))
        lams.append(lam)
    return ThetaMap.for_blocks(blocks).theta_of(lams)


def lmm_blups(X, y, weights, factor_codes, blocks, beta, covs, sigma):
    """BLUPs of every level given fixed ``beta``, covariances and ``sigma``.

    ``b = (Z'Z + sigma^2 Sigma^-1)^-1 Z'(y - X beta)`` (jointly over factors):
    the core's LMM machinery on the offset response ``y - X beta`` with no fixed
    columns — one pass over the rows, then the block-diagonal per-level solves.
    Returns the list of (J_k, q_k) arrays in ``blocks`` order.
    """
    n = X.shape[0]
    layout = BlockLayout.build(blocks, factor_codes, 0)
    r = y - X @ beta
    cp = cross_products(layout, np.empty((n, 0)), r, weights, z_source=X)
    prob = LMMProblem(layout, cp, reml=False)
    res = prob.result(theta_from_cov(blocks, covs, sigma))
    return res.b


def logit_modes(X, y, weights, codes, block, beta, Sigma, b0=None, want_mu=True):
    """Conditional modes of a logistic GLMM with one grouping factor, given ``beta`` and ``Sigma``.

    Uses the GLMM's own fused per-group Newton kernel (one pass over the rows per
    sweep, :class:`skmixed._solvers.glmm.SingleFactorGLMM`) when the package has
    it, else :func:`logit_modes_newton`. Returns ``(b, mu)`` (``mu`` None unless
    ``want_mu``).
    """
    try:
        from .glmm import SingleFactorGLMM
    except ImportError:
        SingleFactorGLMM = None
    if SingleFactorGLMM is None:
        b, mu = logit_modes_newton(X, y, weights, codes, block, beta, Sigma, b0=b0)
        return b, (mu if want_mu else None)
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.ascontiguousarray(weights, dtype=float)
    Xc = np.ascontiguousarray(X, dtype=float)
    prob = SingleFactorGLMM(Xc, np.ascontiguousarray(y, dtype=float), w, codes, block.n_levels,
                            np.asarray(block.intercept_slopes, dtype=np.int64), block.pattern)
    theta = theta_from_cov([block], [Sigma], 1.0)
    lam = prob.lam(theta)
    if b0 is not None and np.all(np.diag(lam) > 0):
        prob.u = np.linalg.solve(lam, np.asarray(b0, dtype=float).T).T.copy()
    prob.laplace(np.concatenate([theta, np.asarray(beta, dtype=float)]), want_grad=False)
    b = prob.u @ lam.T
    mu = None
    if want_mu:
        from scipy.special import expit

        eta = Xc @ beta + np.einsum("iq,iq->i", block.z_rows(Xc), b[codes])
        mu = expit(eta)
    return b, mu


def logit_modes_newton(X, y, weights, codes, block, beta, Sigma, b0=None, tol=1e-9, maxit=100):
    """Conditional modes of a logistic GLMM (one grouping factor) by numpy-level Newton.

    Per-group Newton on ``u`` (``b = Lambda u``, ``Lambda Lambda' = Sigma``):
    maximise ``sum_i w_i [y_i eta_i - log(1 + e^eta_i)] - |u_j|^2 / 2``. All
    groups step together; each iteration is one pass of the core kernel
    (per-group ``Z'WZ`` and ``Z'(y - mu)``) and ``J`` small solves, with step
    halving per group when the penalised log-likelihood would drop. ``b0``
    (e.g. the subsample fits' modes) is a warm start.
    Returns ``(b, mu)``: the (J, q) modes and the fitted probabilities.
    """
    from scipy.special import expit

    n = X.shape[0]
    J, q = block.n_levels, block.q
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    lam = np.linalg.cholesky(Sigma + 1e-12 * max(np.trace(Sigma), 1e-300) * np.eye(q))
    Z = block.z_rows(X)
    ZL = Z @ lam  # rows of Z Lambda: eta = X beta + (Z Lambda)_i . u_j
    eta0 = X @ beta
    blk = type(block)(0, J, list(block.names), list(range(q)), block.pattern)
    layout = BlockLayout.build([blk], [codes], 0)
    empty = np.empty((n, 0))
    u = np.zeros((J, q)) if b0 is None else np.linalg.solve(lam, np.asarray(b0, dtype=float).T).T

    def penalised(u):
        eta = eta0 + np.einsum("iq,iq->i", ZL, u[codes])
        ll = w * (y * eta - np.logaddexp(0.0, eta))
        return np.bincount(codes, ll, minlength=J) - 0.5 * np.einsum("jq,jq->j", u, u), eta

    f, eta = penalised(u)
    eye = np.eye(q)
    for _ in range(maxit):
        mu = expit(eta)
        v = np.clip(mu * (1.0 - mu), 1e-12, None)
        # one pass: A11 = sum w v (ZL)(ZL)' per group, A21 = sum w v (ZL) (y - mu)/v = (ZL)'(y - mu)
        cp = cross_products(layout, empty, (y - mu) / v, w * v, z_source=ZL)
        g = cp.A21.reshape(J, q) - u
        if np.max(np.abs(g)) < tol:  # stationary: no step (and no objective pass) needed
            break
        du = np.linalg.solve(cp.A11 + eye, g[..., None])[..., 0]
        step = np.ones(J)
        for _half in range(30):
            f_new, eta_new = penalised(u + step[:, None] * du)
            bad = f_new < f - 1e-12 * (1 + np.abs(f))
            if not bad.any():
                break
            step[bad] *= 0.5
        u = u + step[:, None] * du
        f, eta = f_new, eta_new
        if np.max(np.abs(step[:, None] * du)) < tol:
            break
    return u @ lam.T, expit(eta)
