"""Iterative profiled REML/ML for crossed random intercepts at scale (issue 16).

For ``y ~ x + (1 | a) + (1 | b) [+ (1 | c) ...]`` with many levels the exact path
(:mod:`.lmm`) factors the dense Schur complement of the first factor, ``Q2 x Q2``
for the later factors' ``Q2`` levels: on random crossings it is dense however it
is ordered, so 12,000 levels already need a 1.15 GB matrix. This module never
forms it. With ``Lambda = diag(theta_k I)`` and ``C = Z'WZ`` (level counts and the
sparse co-occurrence counts between factors, :class:`CrossedStats`, one pass over
the rows), the penalised system ``A = Lambda C Lambda + I`` is reduced exactly by
the first factor (a diagonal ``D1``) and its Schur complement ``S`` is applied
matrix-free (:mod:`skmixed._kernels.crossed_ops`) inside a blocked conjugate
gradient preconditioned by the exact diagonal of ``S`` (Jacobi):

* the penalised residual, the fixed effects and ``log|R_X|^2`` come from exact
  solves with ``[Lambda Z'X, Lambda Z'y]`` (``p + 1`` right-hand sides, relative
  residual ``1e-10``);
* ``log|A| = log|D1| + log|diag S| + tr log(S_hat)`` with ``S_hat`` the Jacobi-scaled
  Schur complement (unit diagonal); the last term by stochastic Lanczos quadrature
  (Ubaru, Chen & Saad 2017) on Rademacher probes ``z``, the Lanczos tridiagonal read
  off the same CG run that solves ``S_hat x = z`` (as GPBoost's iterative methods,
  Sigrist et al.), with the control variate ``z'(S_hat - I)z`` (mean zero: the first
  term of ``log(S_hat)``'s expansion) whose coefficient is fitted over the probes;
* the gradient's traces ``tr_k(A^{-1})`` by Hutchinson estimators on the same probes
  and solutions, each with the Neumann control variate ``2I - S_hat`` of
  ``S_hat^{-1}`` (exact expectation: its diagonal is 1); REML's correction through
  the fixed effects is exact;
* the Hessian is the average-information matrix (exact: it needs solves only).

The probes are drawn once per fit (fixed seed), so the estimated criterion and
gradient are smooth, deterministic functions of ``theta`` and the Newton
iteration (:meth:`CrossedIterative.minimize`) converges on them as on exact ones.
What remains random is the estimate's distance from the exact optimum: from the
probe-to-probe spread of the gradient the expected criterion excess
``0.5 tr(H^{-1} Cov(g))`` is estimated, and the probes are multiplied (within a
memory budget) until it is below ``1e-5``. The criterion's own standard error (the
log-determinant's) is reported beside it; the estimator says so by name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .._kernels import crossed_ops as kc
from .crossed_moments import henderson_start
from .lmm_newton import profiled_deviance_hessian

__all__ = ["CrossedStats", "CrossedIterative", "IterativeResult", "IterativeFitProblem", "StochasticCriterionWarning",
           "fit_iterative", "iterative_applies", "dense_bytes", "warn_stochastic", "DENSE_BYTES_LIMIT"]

_LOG2PI = np.log(2.0 * np.pi)

#: the exact path is kept while its dense Schur complement (8 Q2^2 bytes) stays below this
DENSE_BYTES_LIMIT = 256 * 2**20
#: memory the probe blocks of the conjugate gradients and the estimators may take
PROBE_BYTES = 256 * 2**20
#: the largest sparse Jacobi-scaled Schur complement formed for the log-determinant's second-order control variate
SPARSE_E_LIMIT = 1e7
#: the expected criterion excess (from the trace estimators' spread) the probes are multiplied down to
EXCESS_TARGET = 1e-5


class StochasticCriterionWarning(UserWarning):
    """The reported criterion (deviance / REML criterion, log-likelihood, AIC, BIC) is a stochastic estimate."""


def dense_bytes(blocks) -> float:
    """Bytes of the exact path's dense part for amalgamated ``blocks`` (``(sum_{k>1} J_k q_k)^2`` doubles)."""
    q2 = sum(b.n_levels * b.q for b in blocks[1:])
    return 8.0 * float(q2) ** 2


def iterative_applies(blocks, limit=None) -> bool:
    """Whether a fit with these amalgamated ``blocks`` takes the iterative path.

    Every term must be a scalar random intercept, there must be at least two
    factors, and the exact path's dense part must exceed ``limit`` bytes
    (default :data:`DENSE_BYTES_LIMIT`).
    """
    if len(blocks) < 2 or not all(b.intercept_slopes == [-1] for b in blocks):
        return False
    return dense_bytes(blocks) > (DENSE_BYTES_LIMIT if limit is None else limit)


@dataclass
class CrossedStats:
    """Sufficient statistics of a crossed random-intercepts LMM, linear in rows and levels.

    Factors are in the solver's order (first = most levels, eliminated exactly).
    ``pj, pl, pv``: co-occurrence pairs of the first factor's levels with the other
    factors' columns (``pl`` indexes the concatenated rest, offsets ``off``);
    ``qa, qb, qv``: pairs among the rest (``qa < qb``).
    """

    J: np.ndarray
    n: list
    ZX: list
    Zy: list
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    n_obs: float
    pj: np.ndarray
    pl: np.ndarray
    pv: np.ndarray
    qa: np.ndarray
    qb: np.ndarray
    qv: np.ndarray
    off: np.ndarray

    @classmethod
    def from_rows(cls, codes, n_levels, X, y, weights=None, x_shift=None, y_shift=0.0):
        """One pass per statistic over the rows (``np.bincount`` per level sum, a linear-time co-occurrence
        table per factor pair: :func:`skmixed._kernels.crossed_ops.pair_table`).

        ``codes[k]`` are factor ``k``'s level codes (solver order), ``x_shift`` / ``y_shift``
        centre the fixed columns and ``y`` as :func:`.lmm.cross_products` does.
        """
        n, p = X.shape
        K = len(codes)
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        Xc = X if x_shift is None or not np.any(x_shift) else X - np.asarray(x_shift)[None, :]
        yc = np.asarray(y, dtype=np.float64) - float(y_shift)
        wX = Xc if w is None else Xc * w[:, None]  # no copies for unit weights (10^7 rows: 160 MB each)
        wy = yc if w is None else yc * w
        J = np.asarray(n_levels, dtype=np.int64)
        cnt, ZX, Zy = [], [], []
        for k in range(K):
            c = np.asarray(codes[k], dtype=np.int64)
            cnt.append(np.bincount(c, weights=w, minlength=J[k]).astype(np.float64))
            ZX.append(np.stack([np.bincount(c, weights=wX[:, a], minlength=J[k]) for a in range(p)], axis=1)
                      if p else np.zeros((J[k], 0)))
            Zy.append(np.bincount(c, weights=wy, minlength=J[k]).astype(np.float64))
        off = np.zeros(K, dtype=np.int64)  # offsets of factors 1..K-1 in the rest (entry 0 unused)
        if K > 1:
            off[1:] = np.concatenate([[0], np.cumsum(J[1:-1])])
        pairs = {}
        wk = np.empty(0) if w is None else w
        for k in range(K):
            for l in range(k + 1, K):
                pairs[k, l] = kc.pair_table(np.asarray(codes[k], dtype=np.int64), np.asarray(codes[l], dtype=np.int64),
                                            int(J[k]), int(J[l]), wk)
        e64, e0 = np.empty(0, dtype=np.int64), np.empty(0)
        pj = np.concatenate([pairs[0, l][0] for l in range(1, K)]) if K > 1 else e64
        pl = np.concatenate([pairs[0, l][1] + off[l] for l in range(1, K)]) if K > 1 else e64
        pv = np.concatenate([pairs[0, l][2] for l in range(1, K)]) if K > 1 else e0
        if K > 2:  # grouped by first-factor level (the Schur products walk them level by level)
            order = np.argsort(pj, kind="stable")
            pj, pl, pv = pj[order], pl[order], pv[order]
        rr = [(k, l) for k in range(1, K) for l in range(k + 1, K)]
        qa = np.concatenate([pairs[k, l][0] + off[k] for k, l in rr]) if rr else e64
        qb = np.concatenate([pairs[k, l][1] + off[l] for k, l in rr]) if rr else e64
        qv = np.concatenate([pairs[k, l][2] for k, l in rr]) if rr else e0
        return cls(J, cnt, ZX, Zy, wX.T @ Xc, wX.T @ yc, float(wy @ yc), float(n if w is None else w.sum()),
                   np.ascontiguousarray(pj), np.ascontiguousarray(pl), np.ascontiguousarray(pv),
                   np.ascontiguousarray(qa), np.ascontiguousarray(qb), np.ascontiguousarray(qv), off)

    @property
    def p(self) -> int:
        return self.XtX.shape[0]


@dataclass
class IterativeResult:
    """What :meth:`CrossedIterative.result` returns: an :class:`.lmm.LMMResult`'s fields and the error report."""

    theta: np.ndarray
    beta: np.ndarray
    vcov_beta: np.ndarray
    sigma: float
    u: list
    b: list
    condvar: list
    lambdas: list
    objective: float
    loglik: float
    n_iter: int
    converged: bool
    message: str
    info: dict = field(default_factory=dict)


class CrossedIterative:
    """Profiled REML/ML criterion, stochastic gradient and AI Hessian of a crossed random-intercepts LMM.

    Parameters
    ----------
    stats : CrossedStats
    reml : bool
    n_probes : int
        Rademacher probes to start with (multiplied as needed, see the module docstring).
    seed : int
        Seed of the probes (fixed: the estimated criterion is then a deterministic function of theta).
    cg_tol : float
        Relative residual at which the conjugate gradients stop.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> n = 4000
    >>> a, b = rng.integers(0, 300, n), rng.integers(0, 200, n)
    >>> y = rng.normal(size=300)[a] + 0.7 * rng.normal(size=200)[b] + rng.normal(size=n)
    >>> st = CrossedStats.from_rows([a, b], [300, 200], np.ones((n, 1)), y, y_shift=y.mean())
    >>> it = CrossedIterative(st, reml=False)
    >>> theta, n_iter, converged = it.minimize(it.moment_start())
    >>> bool(converged), bool(0.7 < theta[0] < 1.3)
    (True, True)
    """

    def __init__(self, stats: CrossedStats, reml: bool = True, n_probes: int | None = None, seed: int = 0,
                 cg_tol: float = 1e-10):
        self.st = stats
        self.reml = bool(reml)
        self.K = len(stats.J)
        self.J1 = int(stats.J[0])
        self.Q2 = int(stats.J[1:].sum())
        self.cg_tol = cg_tol
        self.seed = seed
        self.n_all = np.concatenate(stats.n)
        self.n_rest = np.concatenate(stats.n[1:])
        self.ZX_all = np.concatenate(stats.ZX, axis=0)
        self.Zy_all = np.concatenate(stats.Zy)
        self.fac_of_rest = np.repeat(np.arange(1, self.K), stats.J[1:])
        self.spans = [(0, self.J1)] + [(self.J1 + int(stats.off[k]), int(stats.J[k])) for k in range(1, self.K)]
        if np.any(np.diff(stats.pj) < 0):  # statistics built elsewhere: group the pairs by first-factor level
            order = np.argsort(stats.pj, kind="stable")
            stats.pj, stats.pl, stats.pv = stats.pj[order], stats.pl[order], stats.pv[order]
        self.pptr = np.zeros(self.J1 + 1, dtype=np.int64)  # CSR pointer of the pairs over the first factor
        np.cumsum(np.bincount(stats.pj, minlength=self.J1), out=self.pptr[1:])
        # per probe: ~16 vectors over the rest's levels alive at once (CG's six, the solutions and
        # the estimators' temporaries) and two over the first factor's
        per_col = 8.0 * (16 * self.Q2 + 2 * self.J1)
        self.max_probes = int(max(8, min(1024, PROBE_BYTES // per_col)))
        if n_probes is None:  # 64, fewer on very large problems (the adaptive rule adds where needed)
            n_probes = int(np.clip(2e8 / max(stats.pj.shape[0] + stats.qa.shape[0], 1), 16, 64))
        self.n_probes = int(min(n_probes, self.max_probes))
        self._draw_probes()
        self.n_eval = 0
        self.last = None
        self._w_pattern = None

    def _draw_probes(self):
        rng = np.random.default_rng(self.seed)
        self.Z = np.ascontiguousarray((2.0 * rng.integers(0, 2, size=(self.Q2, self.n_probes)) - 1.0))

    # -- start ---------------------------------------------------------------------------------
    def moment_start(self) -> np.ndarray:
        """Henderson's method-1 moment estimates (:func:`.crossed_moments.henderson_start`), as the exact
        path starts from; per-factor ANOVA estimates where the moment equations are singular."""
        st = self.st
        pairs = {}
        for l in range(1, self.K):
            o, J = int(st.off[l]), int(st.J[l])
            sel = (st.pl >= o) & (st.pl < o + J)
            pairs[0, l] = (st.pj[sel], st.pl[sel] - o, st.pv[sel])
            for h in range(1, l):
                o2, J2 = int(st.off[h]), int(st.J[h])
                sel = (st.qa >= o2) & (st.qa < o2 + J2) & (st.qb >= o) & (st.qb < o + J)
                pairs[h, l] = (st.qa[sel] - o2, st.qb[sel] - o, st.qv[sel])
        theta = henderson_start(st.n_obs, st.XtX, st.Xty, st.yty, st.n, st.ZX, st.Zy, pairs)
        if theta is not None:
            return theta
        N = st.n_obs
        vy = max(st.yty / N, 1e-300)
        stats = []
        for k in range(self.K):
            n_l, s_l = st.n[k], st.Zy[k]
            ok = n_l > 0
            ssb = float((s_l[ok] ** 2 / n_l[ok]).sum())
            stats.append((ssb, int(ok.sum()), N - float((n_l**2).sum()) / N))
        s2 = vy
        for _ in range(2):
            taus = [max(0.0, (ssb - (J - 1) * s2) / max(d, 1e-300)) for ssb, J, d in stats]
            s2 = max(vy - sum(taus), 0.05 * vy)
        return np.array([min(max(np.sqrt(t2 / s2), 0.05), 10.0) for t2 in taus])

    # -- linear algebra at theta -----------------------------------------------------------------
    def _ops(self, theta):
        st = self.st
        t1 = float(theta[0])
        d1inv = 1.0 / (t1 * t1 * st.n[0] + 1.0)
        cs = np.ascontiguousarray(theta[self.fac_of_rest].astype(np.float64))
        diag_rest = cs * cs * self.n_rest + 1.0
        D = kc.schur_diag(st.pj, st.pl, st.pv, t1, d1inv, diag_rest, cs)
        return dict(t1=t1, d1inv=d1inv, cs=cs, diag_rest=diag_rest, D=D)

    def _pcg(self, o, B, tol):
        st = self.st
        return kc.block_pcg(self.pptr, st.pl, st.pv, o["t1"], o["d1inv"], o["diag_rest"], st.qa, st.qb, st.qv,
                            o["cs"], 1.0 / o["D"], np.ascontiguousarray(B), tol, 20 * int(np.sqrt(self.Q2)) + 200)

    def _a1r(self, o, X):
        st = self.st
        out = np.empty((self.J1, X.shape[1]))
        kc.a1r_apply(st.pj, st.pl, st.pv, o["t1"], o["cs"], np.ascontiguousarray(X), out)
        return out

    def _ar1(self, o, T):
        st = self.st
        out = np.zeros((self.Q2, T.shape[1]))
        kc.ar1_apply_add(st.pj, st.pl, st.pv, o["t1"], o["cs"], np.ascontiguousarray(T), out, 1.0)
        return out

    def _solve_A(self, o, R1, R2, tol):
        """``A^{-1} [R1; R2]`` through the Schur complement (columns solved together)."""
        b2 = R2 - self._ar1(o, o["d1inv"][:, None] * R1)
        x2 = self._pcg(o, b2, tol)[0]
        x1 = o["d1inv"][:, None] * (R1 - self._a1r(o, x2))
        return np.vstack([x1, x2])

    def _trace_e2(self, o):
        """``tr(E^2)``, the squared off-diagonal of the Jacobi-scaled Schur complement, or None.

        ``S_hat = V A_rr V - W'W`` with ``W = D1^{-1/2} A_1r V`` is sparse (``sum_j r_j^2`` entries,
        ``r_j`` the other factors' levels met by first-factor level ``j``) though its Cholesky factor
        is dense; it is formed (a sparse product) when that count is below :data:`SPARSE_E_LIMIT`.
        """
        st = self.st
        if self._w_pattern is None:
            r = np.bincount(st.pj, minlength=self.J1).astype(float)
            if float(r @ r) > SPARSE_E_LIMIT or st.pj.shape[0] == 0:
                self._w_pattern = False
            else:
                W0 = sp.csr_matrix((np.arange(1.0, st.pj.shape[0] + 1.0), (st.pj, st.pl)), shape=(self.J1, self.Q2))
                self._w_pattern = (W0.data.astype(np.int64) - 1, W0.indices, W0.indptr)
        if self._w_pattern is False:
            return None
        perm, ind, ptr = self._w_pattern
        sqD = np.sqrt(o["D"])
        vals = o["t1"] * st.pv * o["cs"][st.pl] * np.sqrt(o["d1inv"][st.pj]) / sqD[st.pl]
        W = sp.csr_matrix((vals[perm], ind, ptr), shape=(self.J1, self.Q2))
        off = -(W.T @ W).tocsr()
        if st.qa.shape[0]:
            rv = st.qv * o["cs"][st.qa] * o["cs"][st.qb] / (sqD[st.qa] * sqD[st.qb])
            R = sp.csr_matrix((rv, (st.qa, st.qb)), shape=(self.Q2, self.Q2))
            off = off + R + R.T
        off = off.tocoo()
        keep = off.row != off.col
        return float((off.data[keep] ** 2).sum())

    def _gram(self, x):
        st = self.st
        out = np.empty_like(x)
        kc.gram_apply(self.n_all, self.J1, st.pj, st.pl, st.pv, st.qa, st.qb, st.qv, x, out)
        return out

    def _theta_all(self, theta):
        return np.repeat(theta, self.st.J)

    # -- one evaluation ----------------------------------------------------------------------------
    #: a progress bar (``update``, ``set_postfix``) told of every evaluation, or None
    progress = None

    def evaluate(self, theta):
        """Criterion and everything the gradient needs at ``theta`` (a dict; ``crit`` inf where not PD)."""
        self.n_eval += 1
        if self.progress is not None:
            self.progress.update(1)
        st = self.st
        theta = np.asarray(theta, dtype=float)
        p, J1, Q2, nv = st.p, self.J1, self.Q2, self.n_probes
        o = self._ops(theta)
        D = o["D"]
        if not np.all(D > 0):
            return dict(theta=theta, crit=np.inf)
        sqD = np.sqrt(D)
        R1 = theta[0] * np.column_stack([st.ZX[0], st.Zy[0]])
        R2 = o["cs"][:, None] * np.column_stack([np.concatenate(st.ZX[1:], axis=0),
                                                   np.concatenate(st.Zy[1:])])
        b2 = R2 - self._ar1(o, o["d1inv"][:, None] * R1)
        B = np.hstack([b2, sqD[:, None] * self.Z])
        Xs, alphas, betas, iters, SP0 = self._pcg(o, B, self.cg_tol)
        x2 = Xs[:, :p + 1]
        x1 = o["d1inv"][:, None] * (R1 - self._a1r(o, x2))
        AinvR = np.vstack([x1, x2])  # A^{-1} Lambda Z'[X y]
        Rf = np.vstack([R1, R2])
        M = Rf.T @ AinvR
        SX = st.XtX - M[:p, :p]
        c = st.Xty - M[:p, p]
        try:
            LX = sla.cholesky(SX, lower=True) if p else np.zeros((0, 0))
        except (sla.LinAlgError, ValueError):
            return dict(theta=theta, crit=np.inf)
        beta = sla.cho_solve((LX, True), c) if p else np.zeros(0)
        r2 = float(st.yty - M[p, p] - c @ beta)
        if not r2 > 0:
            return dict(theta=theta, crit=np.inf)
        u = AinvR[:, p] - AinvR[:, :p] @ beta
        # log-determinants: exact diagonals, SLQ of the Jacobi-scaled Schur complement
        ld_exact = float(-np.log(o["d1inv"]).sum() + np.log(D).sum())
        quad = np.empty(nv)
        for i in range(nv):
            m = int(iters[p + 1 + i])
            a = alphas[:m, p + 1 + i]
            bt = betas[:m, p + 1 + i]
            dg = 1.0 / a
            dg[1:] += bt[:m - 1] / a[:m - 1]
            off = np.sqrt(np.maximum(bt[:m - 1], 0.0)) / a[:m - 1]
            lam, vec = sla.eigh_tridiagonal(dg, off)
            quad[i] = Q2 * float((vec[0] ** 2 * np.log(np.maximum(lam, 1e-300))).sum())
        VZ = self.Z / sqD[:, None]
        # S_hat Z: CG's first product was S applied to the preconditioned probes, M sqD Z = Z / sqD = VZ
        SZ = SP0[:, p + 1:] / sqD[:, None]
        # control variate: the expansion log(I - E) = -E - E^2/2 - ..., E = I - S_hat (zero diagonal);
        # its second term's trace is exact where the sparse S_hat is small enough to form
        EZ = self.Z - SZ
        ctrl_ld = -np.einsum("ij,ij->j", self.Z, EZ)
        trE2 = self._trace_e2(o)
        if trE2 is not None:
            ctrl_ld -= 0.5 * np.einsum("ij,ij->j", EZ, EZ)
        ld_slq, ld_se, _ = _controlled_mean(quad, ctrl_ld, 0.0 if trE2 is None else -0.5 * trE2)
        ldRX2 = 2.0 * float(np.log(np.diag(LX)).sum()) if p else 0.0
        N = st.n_obs
        ldA = ld_exact + ld_slq
        if self.reml:
            nmp = N - p
            crit = ldA + ldRX2 + nmp * (1.0 + _LOG2PI + np.log(r2 / nmp))
        else:
            nmp = N
            crit = ldA + N * (1.0 + _LOG2PI + np.log(r2 / N))
        ev = dict(theta=theta.copy(), crit=float(crit), crit_se=ld_se, o=o, AinvR=AinvR, Rf=Rf, LX=LX, beta=beta,
                  r2=r2, u=u, sigma2=r2 / nmp, Y=Xs[:, p + 1:] * sqD[:, None], SZ=SZ, VZ=VZ,
                  ldA=ldA, ldRX2=ldRX2, cg_iters=int(iters.max()) if iters.size else 0)
        return ev

    def _traces(self, ev):
        """Per factor, ``tr_k`` of ``A^{-1}`` (ML) or of the ``u`` block of ``K^{-1}`` (REML): per-probe values.

        Returns ``(tr, per_probe)``: the estimates and their adjusted per-probe terms ``(K, nv)``
        (the spread of which is the estimate's error).
        """
        o, Z, Y, SZ, VZ = ev["o"], self.Z, ev["Y"], ev["SZ"], ev["VZ"]
        D = o["D"]
        nv = Z.shape[1]
        tr = np.zeros(self.K)
        per = np.zeros((self.K, nv))
        cv = Z * (2.0 * Z - SZ)  # the Neumann control variate's per-entry terms
        for k in range(1, self.K):
            s0 = int(self.st.off[k])
            sl = slice(s0, s0 + int(self.st.J[k]))
            est = np.einsum("ij,ij->j", Z[sl] / D[sl, None], Y[sl])
            ctrl = (cv[sl] / D[sl, None]).sum(axis=0)
            tr[k], _, per[k] = _controlled_mean(est, ctrl, float((1.0 / D[sl]).sum()))
        # first factor: sum 1/D1 + tr(S^{-1} G), G = A_r1 D1^{-2} A_1r
        T = self._a1r(o, VZ)
        T *= (o["d1inv"] ** 2)[:, None]
        VGVz = self._ar1(o, T) / np.sqrt(D)[:, None]
        est = np.einsum("ij,ij->j", VGVz, Y)
        ctrl = np.einsum("ij,ij->j", VGVz, Z)
        cs = o["cs"]
        gdiag = np.zeros(self.Q2)
        gdiag += np.bincount(self.st.pl, weights=(o["t1"] * self.st.pv * cs[self.st.pl]) ** 2 * o["d1inv"][self.st.pj] ** 2,
                             minlength=self.Q2)
        t1, _, per[0] = _controlled_mean(est, ctrl, float((gdiag / D).sum()))
        tr[0] = float(o["d1inv"].sum()) + t1
        if self.reml and self.st.p:
            H = sla.solve_triangular(ev["LX"], ev["AinvR"][:, :self.st.p].T, lower=True).T  # A^-1 B L_X^-T
            h2 = np.einsum("ij,ij->i", H, H)
            for k, (s0, Jk) in enumerate(self.spans):
                tr[k] += float(h2[s0:s0 + Jk].sum())
        return tr, per

    def derivatives(self, ev):
        """Stochastic gradient, its covariance, and the (exact) average-information Hessian at ``ev``."""
        st = self.st
        theta, o = ev["theta"], ev["o"]
        K, p = self.K, st.p
        sigma2, r2, u = ev["sigma2"], ev["r2"], ev["u"]
        th_all = self._theta_all(theta)
        # Z'e = Z'y - Z'X beta - C Lambda u
        d = self.Zy_all - self.ZX_all @ ev["beta"] - self._gram(th_all * u)
        dk = [d[s0:s0 + Jk] for s0, Jk in self.spans]
        dd = np.array([float(x @ x) for x in dk])
        tr, per = self._traces(ev)
        g = np.zeros(K)
        pos = theta > 0
        g[pos] = 2.0 * ((st.J[pos] - tr[pos]) / theta[pos] - theta[pos] * dd[pos] / sigma2)
        scale = np.where(pos, -2.0 / np.where(pos, theta, 1.0), 0.0)
        nv = per.shape[1]
        covg = np.cov(per) * np.outer(scale, scale) / nv if nv > 1 else np.zeros((K, K))
        covg = np.atleast_2d(covg)
        # average information: working vectors e and Z_k d_k through their cross-products
        Q = self.J1 + self.Q2
        Cu = np.zeros((K + 1, Q))
        Cx = np.zeros((K + 1, p))
        W = np.zeros((K + 1, K + 1))
        Cu[0] = th_all * d
        W[0, 0] = r2 - float(u @ u)
        Cd = []
        for k, (s0, Jk) in enumerate(self.spans):
            x = np.zeros(Q)
            x[s0:s0 + Jk] = dk[k]
            cdk = self._gram(x)
            Cd.append(cdk)
            Cu[k + 1] = th_all * cdk
            Cx[k + 1] = st.ZX[k].T @ dk[k]
            W[0, k + 1] = W[k + 1, 0] = dd[k]
        for k in range(K):
            for j in range(k + 1):
                s0, Jj = self.spans[j]
                W[k + 1, j + 1] = W[j + 1, k + 1] = float(dk[j] @ Cd[k][s0:s0 + Jj])
        Yu = self._solve_A(o, Cu[:, :self.J1].T, Cu[:, self.J1:].T, 1e-8)  # Q x (K+1)
        Rx = ev["Rf"][:, :p]
        rx = Cx.T - Rx.T @ Yu  # p x (K+1)
        sx = sla.cho_solve((ev["LX"], True), rx) if p else np.zeros((0, K + 1))
        Qm = Cu @ Yu + rx.T @ sx
        Qm = 0.5 * (Qm + Qm.T)
        AI = (W - Qm) / (2.0 * sigma2**3)
        H = profiled_deviance_hessian(AI, sigma2, theta)
        self.last_ai = AI  # information of the log-likelihood in (sigma^2, sigma^2 theta_k^2)
        return g, H, covg

    # -- the iteration --------------------------------------------------------------------------------
    def _newton(self, theta, max_iter, tol):
        ev = self.evaluate(theta)
        if not np.isfinite(ev["crit"]):
            return ev, 0, False, None
        n_iter, converged, der = 0, False, None
        for n_iter in range(1, max_iter + 1):
            g, H, covg = der = self.derivatives(ev)
            free = ev["theta"] > 0
            if not free.any():
                converged = True
                break
            Hf = H[np.ix_(free, free)]
            try:
                step_f = -np.linalg.solve(Hf + 1e-12 * np.trace(Hf) * np.eye(Hf.shape[0]), g[free])
            except np.linalg.LinAlgError:
                break
            dec = -float(g[free] @ step_f)
            if not np.isfinite(dec):
                break
            if dec < tol:
                converged = True
                break
            step = np.zeros_like(ev["theta"])
            step[free] = step_f
            alpha, accepted = 1.0, False
            for _ in range(20):
                t2 = ev["theta"] + alpha * step
                low = t2 < 0.01 * ev["theta"]
                t2[low] = 0.01 * ev["theta"][low]
                t2[t2 < 1e-6] = 0.0
                ev2 = self.evaluate(t2)
                # the estimated criterion is smooth but its minimum is the gradient's zero only up to
                # the estimators' error: near the optimum (small decrement) the full step is taken
                if np.isfinite(ev2["crit"]) and (ev2["crit"] <= ev["crit"] + 1e-9 * abs(ev["crit"]) or dec < 1e-2):
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:
                converged = dec < 1e-6
                break
            ev = ev2
        return ev, n_iter, converged, der

    def minimize(self, theta0, max_iter=50, tol=1e-9):
        """Newton iteration on the probe-based gradient; more probes while the expected excess is too large.

        Returns ``(theta, n_iter, converged)``; ``converged`` when the Newton decrement is below ``tol``
        and the expected criterion excess at most :data:`EXCESS_TARGET` (or the probe budget is spent).
        """
        theta = np.maximum(np.asarray(theta0, dtype=float).copy(), 0.0)
        total = 0
        escapes = 0
        while True:
            ev, it, converged, der = self._newton(theta, max_iter, tol)
            total += it
            theta = ev["theta"]
            if escapes < 4 and np.isfinite(ev["crit"]) and np.any(theta == 0):
                # a zero SD is always a stationary point: probe off the bound, resume from a better point
                start = self._escape_boundary(ev)
                if start is not None:
                    escapes += 1
                    theta = start
                    continue
            if der is None:
                der = self.derivatives(ev) if np.isfinite(ev["crit"]) else None
            excess = _expected_excess(der, theta) if der is not None else np.inf
            self.last = dict(ev=ev, der=der, excess=excess)
            if not converged or excess <= EXCESS_TARGET or self.n_probes >= self.max_probes:
                break
            want = int(np.ceil(self.n_probes * 2.0 * excess / EXCESS_TARGET))
            self.n_probes = int(min(self.max_probes, max(2 * self.n_probes, want)))
            self._draw_probes()
        return theta, total, bool(converged and excess <= EXCESS_TARGET)

    def _escape_boundary(self, ev, probes=(0.1, 0.01, 0.5)):
        """A start off the zero bound whose estimated criterion is lower than at ``ev``, or None.

        The probes are fixed, so the estimated criterion is a deterministic function of theta and
        differences of it are resolved far below its standard error.
        """
        theta, f0 = ev["theta"], ev["crit"]
        thresh = f0 - 1e-9 * max(1.0, abs(f0))
        for k in np.flatnonzero(theta == 0):
            for d in probes:
                t = theta.copy()
                t[k] = d
                f = self.evaluate(t)["crit"]
                if np.isfinite(f) and f < thresh:
                    return t
        return None

    def refine_report(self, theta, factor=4):
        """Re-evaluate the criterion at the optimum on ``factor`` times the probes (within the budget).

        The optimum is not moved; only the reported criterion's standard error shrinks (as 1/sqrt(probes)).
        """
        nv = int(min(self.max_probes, factor * self.n_probes))
        if nv <= self.n_probes or self.last is None:
            return
        self.n_probes = nv
        self._draw_probes()
        ev = self.evaluate(theta)
        if np.isfinite(ev["crit"]):
            self.last = dict(self.last, ev=ev)

    # -- results -------------------------------------------------------------------------------------
    def result(self, theta, n_iter, converged, message="") -> IterativeResult:
        last = self.last
        ev = last["ev"] if last is not None and np.array_equal(last["ev"]["theta"], theta) else self.evaluate(theta)
        st = self.st
        o, sigma2 = ev["o"], ev["sigma2"]
        p = st.p
        vcov = sigma2 * sla.cho_solve((ev["LX"], True), np.eye(p)) if p else np.zeros((0, 0))
        # conditional variances of u: Jacobi approximations of diag(A^{-1}) (first factor to second order)
        D = o["D"]
        h = o["t1"] * st.pv * o["cs"][st.pl]
        corr1 = np.zeros(self.J1)
        corr1 += np.bincount(st.pj, weights=h**2 / D[st.pl], minlength=self.J1)
        diag1 = o["d1inv"] + o["d1inv"] ** 2 * corr1
        diag = np.concatenate([diag1, 1.0 / D])
        us, bs, cvs, lams = [], [], [], []
        for k, (s0, Jk) in enumerate(self.spans):
            uk = ev["u"][s0:s0 + Jk].reshape(-1, 1)
            us.append(uk)
            bs.append(theta[k] * uk)
            cvs.append((sigma2 * theta[k] ** 2 * diag[s0:s0 + Jk]).reshape(-1, 1, 1))
            lams.append(np.array([[theta[k]]]))
        exc = last["excess"] if last is not None else np.nan
        # standard errors of the SDs (each factor's, then the residual's) from the inverse average information
        sd_se = np.full(self.K + 1, np.nan)
        if last is not None and last["der"] is not None and np.all(theta > 0):
            try:
                cov = np.linalg.inv(self.last_ai)
                sds = np.sqrt(np.concatenate([sigma2 * theta**2, [sigma2]]))
                var = np.concatenate([np.diag(cov)[1:], [cov[0, 0]]])
                sd_se = np.sqrt(np.maximum(var, 0.0)) / (2.0 * sds)
            except np.linalg.LinAlgError:
                pass
        info = dict(criterion_se=float(ev["crit_se"]), expected_excess=float(exc), n_probes=int(self.n_probes),
                    n_evaluations=int(self.n_eval), cg_iterations=int(ev["cg_iters"]), sd_se=sd_se.tolist())
        return IterativeResult(theta=np.asarray(theta, dtype=float), beta=ev["beta"], vcov_beta=vcov,
                               sigma=float(np.sqrt(sigma2)), u=us, b=bs, condvar=cvs, lambdas=lams,
                               objective=float(ev["crit"]), loglik=-0.5 * float(ev["crit"]), n_iter=n_iter,
                               converged=converged, message=message, info=info)


_REFUSAL = ("this fit took the iterative path (crossed random intercepts too large for the exact dense "
            "factor, solver_='iterative'): inference that needs the exact factor (degrees of freedom, "
            "profiles, likelihood-ratio refits, bootstrap) is not available for it")


class _Refusing:
    """Any attribute not set explicitly is refused by name (dunder lookups stay AttributeErrors for pickle)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise NotImplementedError(_REFUSAL)


class _IterativeLayout(_Refusing):
    """What callers choosing a BLAS policy (``m``) and pickling (the per-row arrays, empty) read of a layout."""

    def __init__(self):
        e = np.empty(0, dtype=np.int64)
        self.m = 10**9  # a big problem: no single-threaded BLAS policy for it
        self.codes1 = e
        self.row_slot = np.empty((0, 0), dtype=np.int64)
        self.dense_codes = np.empty((0, 0), dtype=np.int64)


class IterativeFitProblem(_Refusing):
    """What an iterative fit keeps in place of the exact :class:`.lmm.LMMProblem` for inference.

    Inference that needs the exact factor (Satterthwaite / Kenward-Roger degrees of freedom,
    profiles, likelihood-ratio refits, the bootstrap) refuses by name (NotImplementedError)
    instead of forming the dense part the fit avoided.
    """

    def __init__(self, info, p):
        self.info = dict(info)
        self.layout = _IterativeLayout()


def fit_iterative(blocks, codes, X, y, weights, n_obs, reml, shift, yshift, max_iter=50, progress=None):
    """Fit a crossed random-intercepts LMM by the iterative path; returns an :class:`IterativeResult`.

    ``blocks`` are the amalgamated blocks (solver order), ``codes`` the per-factor codes (by factor),
    ``shift`` / ``yshift`` the centring of the fixed columns and ``y`` (None: none).
    """
    st = CrossedStats.from_rows([codes[b.factor] for b in blocks], [b.n_levels for b in blocks], X, y, weights,
                                x_shift=shift, y_shift=yshift)
    st.n_obs = float(n_obs)  # precision weights: rows, not the weights' sum
    if not (np.isfinite(st.XtX).all() and np.isfinite(st.yty)):
        raise ValueError("the cross-products of the data are not finite: values too large to square "
                         "(|X| or |y| above ~1e154?); rescale the data")
    it = CrossedIterative(st, reml=reml)
    it.progress = progress
    theta, n_iter, converged = it.minimize(it.moment_start(), max_iter=min(int(max_iter), 100))
    it.refine_report(theta)
    msg = ("gradient vanishes (Newton decrement below 1e-9) and the trace estimators' expected criterion "
           "excess is below 1e-5" if converged else
           "Newton iteration on the stochastic gradient stalled, or the probe budget was spent before the "
           "expected criterion excess fell below 1e-5")
    return it.result(theta, n_iter, converged, msg)


def _controlled_mean(est, ctrl, ctrl_mean):
    """Mean of ``est`` with the control variate ``ctrl`` (known mean), coefficient fitted over the probes.

    Returns ``(estimate, standard error, adjusted per-probe values)``.
    """
    est = np.asarray(est, dtype=float)
    ctrl = np.asarray(ctrl, dtype=float)
    n = est.shape[0]
    if n > 2:
        vc = float(np.var(ctrl))
        c = float(np.cov(est, ctrl)[0, 1] / vc) if vc > 0 else 0.0
    else:
        c = 0.0
    adj = est - c * (ctrl - ctrl_mean)
    se = float(np.std(adj, ddof=1) / np.sqrt(n)) if n > 1 else np.inf
    return float(adj.mean()), se, adj


def _expected_excess(der, theta):
    """``0.5 tr(H^{-1} Cov(g))`` over the free parameters: the criterion lost to the gradient's error."""
    g, H, covg = der
    free = np.asarray(theta) > 0
    if not free.any():
        return 0.0
    Hf = H[np.ix_(free, free)]
    try:
        return float(0.5 * np.trace(np.linalg.solve(Hf, covg[np.ix_(free, free)])))
    except np.linalg.LinAlgError:
        return np.inf


def warn_stochastic(info, crit_name):
    """Say by name that the fit's criterion is estimated (and how well)."""
    warnings.warn(f"the {crit_name} of this iterative fit (crossed random intercepts with many levels) is a "
                  f"stochastic estimate: standard error {info['criterion_se']:.2g} from {info['n_probes']} "
                  f"probe vectors (log-determinant by stochastic Lanczos quadrature); the estimates' expected "
                  f"criterion excess over the exact optimum is {info['expected_excess']:.1g}. log-likelihood, AIC "
                  "and BIC carry the same error; compare fits with care", StochasticCriterionWarning, stacklevel=4)
