"""GLMMs with a canonical link by Laplace, adaptive Gauss-Hermite and nAGQ=0 (glmer's three modes).

Model (lme4's notation): ``eta = offset + X beta + Z Lambda(theta) u``, ``u ~ N(0, I)``,
``y ~ Bernoulli(logistic(eta))`` (or binomial proportions with the trials as
weights, or ``Poisson(exp(eta))``: :mod:`skmixed._families`) with weights ``w``. For fixed
``(theta, beta)`` the conditional modes ``u*`` minimise the penalized deviance
``sum_i w_i d_i + ||u||^2`` (penalized IRLS, PIRLS) and the Laplace
approximation of ``-2 log L`` is

    F(theta, beta) = sum_i w_i d_i(u*) + ||u*||^2 + log det(Lambda' Z' W Z Lambda + I),

exactly the quantity glmer minimises with ``nAGQ = 1`` (so ``loglik = -F / 2``
equals glmer's ``logLik`` for 0/1 data).

One grouping factor (the common case) decouples: PIRLS is an independent
``q x q`` Newton iteration per level, run in one numba kernel that also returns
the analytic gradient of ``F`` (implicit differentiation of ``u*`` including the
log-determinant's dependence on it), so L-BFGS-B over ``(theta, beta)``
converges in a few dozen cheap evaluations. glmer's strategy is kept: an
``nAGQ = 0`` stage (``beta`` estimated inside PIRLS jointly with ``u``, only
``theta`` optimised) gives start values, then ``(theta, beta)`` jointly.

Several grouping factors (crossed or nested) use the core's one-pass
cross-product kernel and blocked Cholesky (:mod:`skmixed._solvers.lmm`) with
PIRLS working weights. The gradient in ``(theta, beta)`` is exact
(:mod:`skmixed._solvers.glmm_multi_grad`: selected inverse on the coupling pattern and
one adjoint solve), for scalar terms (random intercepts, ``(0 + x | g)``) and vector
terms (``(1 + x | g)``, correlated or not) alike, and the standard errors difference
that gradient. With scalar terms the search starts from one PQL step, with vector
terms from the joint PIRLS at lme4's start. Only a problem without local rows (the
distributed one) keeps central differences and glmer's nAGQ=0 start stage.

Standard errors of ``beta`` follow glmer's default: the inverse of half the
Hessian of ``F`` with respect to ``(theta, beta)``, the Hessian here by central
differences of the analytic gradient (glmer: finite differences of ``F``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.linalg as sla
from scipy import optimize

from .._design.theta import ThetaMap, scipy_bounds
from .._kernels import glmm as kg
from .._numdiff import central_hessian, gradient_curvatures, hessian_from_gradient
from .._numdiff import gradient as fd_gradient
from .._threads import blas_for_dense, single_threaded_blas
from .._families import BINOMIAL
from ._optim import FitLog, covariance_probes, minimize_bounded

__all__ = ["GLMMResult", "SingleFactorGLMM", "MultiFactorGLMM", "group_pointer", "gauss_hermite",
           "fit_single_factor", "fit_multi_factor", "serial_if_small"]


def group_pointer(codes: np.ndarray, n_levels: int):
    """Rows bucketed by group: ``perm[gptr[g]:gptr[g+1]]`` are group g's rows (stable order)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and np.all(codes[1:] >= codes[:-1]):
        perm = np.empty(0, dtype=np.int64)  # already sorted: kernels read rows in place
    else:
        perm = np.argsort(codes, kind="stable").astype(np.int64)
    gptr = np.zeros(n_levels + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=n_levels), out=gptr[1:])
    return perm, gptr


def gauss_hermite(nagq: int):
    """Nodes and weights integrating against the standard normal density (lme4's GHrule)."""
    x, wts = np.polynomial.hermite.hermgauss(nagq)
    z = x * np.sqrt(2.0)
    z[np.abs(z) < 1e-12] = 0.0  # the centre node of an odd rule is exactly the mode
    return z, wts / np.sqrt(np.pi)


@dataclass
class GLMMResult:
    theta: np.ndarray
    beta: np.ndarray
    vcov_beta: np.ndarray
    u: list  # per factor (J, q) spherical conditional modes
    b: list  # per factor (J, q) conditional modes of the random effects
    condvar: list  # per factor (J, q, q) conditional covariances of b
    lambdas: list  # per factor (q, q)
    deviance: float  # -2 log L (Laplace / AGQ approximation)
    loglik: float
    n_iter: int
    n_eval: int
    converged: bool
    message: str
    vcov_method: str = "hessian"
    extra: dict = field(default_factory=dict)


class serial_if_small:
    """Run numba kernels on one thread for small inputs.

    A parallel region costs a thread wake-up and a barrier (tens of microseconds,
    milliseconds on a loaded machine); PIRLS calls kernels hundreds of times, so
    below ``min_rows`` rows the threads cost more than they save.
    """

    def __init__(self, n_rows: int, min_rows: int = 100_000):
        self.serial = n_rows < min_rows

    def __enter__(self):
        self.prev = numba.get_num_threads()
        if self.serial:
            numba.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self.prev)
        return False


def _n_chunks(n_groups: int) -> np.ndarray:
    k = max(1, min(n_groups, 4 * numba.get_num_threads()))
    return np.linspace(0, n_groups, k + 1).round().astype(np.int64)


class SingleFactorGLMM:
    """Laplace / AGQ / nAGQ=0 objective for a model with one grouping factor.

    Parameters
    ----------
    X : (n, p) float64 fixed-effects design.
    y : (n,) 0/1 float64.
    w : (n,) float64 frequency weights.
    codes : (n,) int64 level codes, ``n_levels`` levels.
    zcols : int64 array, per random-effect column: -1 intercept, else column of X.
    pattern : (q, q) bool lower-triangular mask of the free entries of Lambda.
    family : :class:`skmixed._families.Family`, default binomial-logit.
    offset : (n,) float64 or None, a known term of the linear predictor.

    The per-group kernels are called through ``self.kernels`` (the numba module
    :mod:`skmixed._kernels.glmm`); the Dask fit gives its problem a stand-in with
    the same signatures that runs them on the workers.
    """

    kernels = kg

    def __init__(self, X, y, w, codes, n_levels, zcols, pattern, family=BINOMIAL, offset=None):
        self.X = X
        self.y = y
        self.family = family
        self.fam_id = int(family.kernel_id)
        # an empty offset is read as 0 by the kernels (no n-vector to stream)
        self.off = np.empty(0) if offset is None or not np.any(offset) else np.ascontiguousarray(offset, dtype=float)
        self.w_full = w
        self.n_obs = float(w.sum())
        # unit weights are not passed to the kernels (one n-vector less to read per pass)
        self.w = np.empty(0) if np.all(w == 1.0) else w
        self.G = int(n_levels)
        self.zcols = np.ascontiguousarray(zcols, dtype=np.int64)
        self.q = self.zcols.size
        self.p = X.shape[1]
        self.pattern = np.asarray(pattern, dtype=bool)
        self.theta_map = ThetaMap([self.pattern])
        r, c = self.theta_map.positions[0]  # column-major lower triangle: lme4's theta order
        self.t_rows, self.t_cols = r.astype(np.int64), c.astype(np.int64)
        self.n_theta = self.theta_map.n_theta
        self.lower_theta = self.theta_map.lower
        self.perm, self.gptr = group_pointer(codes, self.G)
        self.chunks = _n_chunks(self.G)
        self.u = np.zeros((self.G, self.q))
        self._lam_u = None  # the Lambda the stored modes belong to
        self._jac = None  # (modes, parameters, du*/dparameters) of the last gradient evaluation
        self._memo = {}  # the last few evaluations: parameters -> (F, gradient, modes)
        self.n_eval = 0
        self.n_joint = 0  # joint-PIRLS passes over the rows
        self.tol_u = 1e-10
        self.maxit_u = 60

    def lam(self, theta):
        return self.theta_map.lambdas(theta)[0]

    def _rescale(self, u, Lam):
        """Warm start for a new Lambda: keep b = Lambda u (not u) from the last modes.

        The random effects b move little between nearby theta, the spherical u
        scale with 1/theta; rescaling saves a Newton sweep or two per evaluation.
        """
        old = self._lam_u
        self._lam_u = Lam
        if old is None or np.array_equal(old, Lam):
            return
        d_new = np.abs(np.diag(Lam))
        if np.any(d_new < 1e-8) or np.any(np.abs(np.diag(old)) < 1e-8):
            return
        u[:] = np.linalg.solve(Lam, old @ u.T).T

    # -- Laplace (nAGQ = 1) ---------------------------------------------------------------
    def laplace(self, params, want_grad=True, u=None):
        """F(theta, beta) and its gradient; conditional modes are warm-started in ``self.u``."""
        params = np.asarray(params, dtype=float)
        key = params.tobytes()
        if u is None and key in self._memo:
            # L-BFGS-B re-evaluates its start point and the fit re-evaluates the optimum
            F, grad, um = self._memo[key]
            if grad is not None or not want_grad:
                self.u[:] = um
                self._lam_u = self.lam(params[:self.n_theta])
                return (F, grad.copy()) if want_grad else F
        self.n_eval += 1
        theta = params[:self.n_theta]
        beta = params[self.n_theta:]
        Lam = self.lam(theta)
        beta = np.ascontiguousarray(beta)
        own = u is None
        u = self.u if u is None else u
        if want_grad and self._jac is not None:
            # first-order prediction of the new modes from the last gradient evaluation:
            # the Newton iterations then start O(|dx|^2) from the mode
            u[:] = self._jac[0] + np.einsum("gqk,k->gq", self._jac[2], params - self._jac[1])
            self._lam_u = Lam
        else:
            self._rescale(u, Lam)
        G = self.G
        k = self.n_theta + self.p
        h = np.empty(G)
        ld = np.empty(G)
        it = np.empty(G, dtype=np.int64)
        gb = np.empty((G, self.p) if want_grad else (1, self.p))
        gl = np.empty((G, self.q, self.q) if want_grad else (1, self.q, self.q))
        jac = np.empty((G, self.q, k) if want_grad else (1, self.q, k))
        self.kernels.laplace_single(beta, self.X, self.zcols, self.y, self.w, self.perm, self.gptr, Lam, u,
                                    self.tol_u, self.maxit_u, want_grad, h, ld, it, gb, gl, self.t_rows,
                                    self.t_cols, jac, self.fam_id, self.off)
        F = float(h.sum() + ld.sum())
        grad = None
        if want_grad:
            if np.isfinite(F):
                self._jac = (u.copy(), params.copy(), jac)
            GL = gl.sum(axis=0)
            grad = np.concatenate([GL[self.t_rows, self.t_cols], gb.sum(axis=0)])
        if own:
            if len(self._memo) >= 4:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = (F, None if grad is None else grad.copy(), u.copy())
        return (F, grad) if want_grad else F

    # -- adaptive Gauss-Hermite (nAGQ > 1, scalar random effect) ---------------------------
    def agq(self, params, nodes, weights):
        F = self.laplace(params, want_grad=False)  # conditional modes into self.u
        if not np.isfinite(F):
            return F
        lam = float(params[0])
        out = np.empty(self.G)
        self.kernels.agq_single(np.ascontiguousarray(params[self.n_theta:]), self.X, self.zcols, self.y, self.w,
                                self.perm, self.gptr, lam, self.u, nodes, weights, out, self.fam_id, self.off)
        return float(out.sum())

    def agq_grad(self, params, nodes, weights):
        """:meth:`agq` and its exact gradient in ``(theta, beta)`` (gradient None where not finite).

        One kernel pass per node, as for the deviance alone (see
        :func:`skmixed._kernels.glmm._agq_grad_groups`), instead of two deviances per
        parameter for a central difference.
        """
        params = np.asarray(params, dtype=float)
        F = self.laplace(params, want_grad=False)  # conditional modes into self.u
        if not np.isfinite(F):
            return F, None
        out = np.empty(self.G)
        gout = np.empty((self.G, 1 + self.p))
        self.kernels.agq_grad_single(np.ascontiguousarray(params[self.n_theta:]), self.X, self.zcols, self.y,
                                     self.w, self.perm, self.gptr, float(params[0]), self.u, nodes, weights, out,
                                     gout, self.fam_id, self.off)
        F = float(out.sum())
        return F, (gout.sum(axis=0) if np.isfinite(F) else None)

    # -- nAGQ = 0: beta inside PIRLS -------------------------------------------------------
    def joint_pirls(self, theta, beta, u, tol=1e-9, maxit=50, tol_u=None):
        """Joint penalized IRLS over (u, beta) at fixed theta (glmer's nAGQ=0 inner problem).

        Profiled form: each pass first moves every group's u to its mode given
        beta (in the kernel, in cache), then beta takes a Newton step with the
        Schur complement ``S = X'WX - X'WZ Lam H^-1 Lam' Z'WX`` (the inverse
        conditional vcov of beta). Returns (pwrss, logdet, beta, u, S).
        """
        G, q, p = self.G, self.q, self.p
        Lam = self.lam(theta)
        A = np.empty((G, q, q))
        B = np.empty((G, q, p))
        s = np.empty((G, q))
        h = np.empty(G)
        nck = self.chunks.size - 1
        C = np.empty((nck, p, p))
        xr = np.empty((nck, p))
        beta = np.ascontiguousarray(beta, dtype=float).copy()
        u = u.copy()
        self._rescale(u, Lam)
        prev = np.inf
        old = None
        eye = np.eye(q)
        ld, S = np.inf, None
        for it in range(maxit):
            self.n_joint += 1
            self.kernels.joint_stats(beta, self.X, self.zcols, self.y, self.w, self.perm, self.gptr, self.chunks,
                                     Lam, u, True, self.tol_u if tol_u is None else tol_u, A, B, s, h, C, xr,
                                     self.fam_id, self.off)
            pwrss = h.sum() + np.einsum("gq,gq->", u, u)
            if (not np.isfinite(pwrss) or pwrss > prev + 1e-12 * abs(prev)) and old is not None:
                # step halving towards the last accepted point
                beta = 0.5 * (beta + old[0])
                u = old[1].copy()
                if np.max(np.abs(beta - old[0])) < 1e-12:
                    break
                continue
            H = np.einsum("ka,gkm,mc->gac", Lam, A, Lam) + eye
            try:
                Lc = np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                Lc = None  # non-finite working weights (a mean overflowed at this beta)
            if Lc is None:
                if old is None:
                    return np.inf, np.inf, beta, u, None
                beta = 0.5 * (beta + old[0])
                u = old[1].copy()
                continue
            LB = np.einsum("ka,gkj->gaj", Lam, B)
            HinvLB = np.linalg.solve(H, LB)
            S = C.sum(axis=0) - np.einsum("gap,gar->pr", LB, HinvLB)
            rb = xr.sum(axis=0) - np.einsum("gap,ga->p", HinvLB, s @ Lam - u)
            try:
                db = np.linalg.solve(S, rb)
            except np.linalg.LinAlgError:
                # separated data drive the working weights to 0: take the least-squares step
                db = np.linalg.lstsq(S, rb, rcond=None)[0]
            ld = 2.0 * np.log(np.diagonal(Lc, axis1=1, axis2=2)).sum()
            if not np.all(np.isfinite(db)) or np.max(np.abs(db)) < tol:
                return pwrss, ld, beta, u, S
            prev = pwrss
            old = (beta.copy(), u.copy())
            beta = beta + db
            # first-order prediction of the new modes: fewer Newton steps in the kernel
            u = u - np.einsum("gap,p->ga", HinvLB, db)
        return pwrss, ld, beta, u, S

    def nagq0(self, theta0, beta0, final=False, search=True):
        """Optimise theta with beta inside PIRLS; returns (theta, beta, u, S, objective, n_eval).

        As a start-value stage (``final=False``) the search is coarse: the
        Laplace stage that follows refines everything with analytic gradients.
        """
        state = {"beta": beta0.copy(), "u": self.u.copy(), "n": 0}
        # start values need ~2 digits: the Laplace stage refines everything
        ptol = 1e-8 if final else 1e-4

        def f(theta):
            theta = np.atleast_1d(theta)
            state["n"] += 1
            # beta is warm and moves little with theta: for start values one Newton step
            # per theta suffices; for the final nAGQ=0 search two (the objective is then
            # evaluated one quadratically convergent step from the profiled optimum; one
            # step leaves an O(dbeta^2) error that biases Brent's parabolic steps)
            pw, ld, b, u, S = self.joint_pirls(theta, state["beta"], state["u"], tol=ptol,
                                               maxit=2 if final else 1, tol_u=None if final else 1e-4)
            val = pw + ld
            if not (np.isfinite(val) and val <= state["best"][0] + 50.0 and np.all(np.isfinite(b))):
                # the warm (beta, u) came from an unchecked Newton step that overshot (a nearly
                # singular Schur complement, e.g. quasi-separation at this theta): converge
                # afresh, with step halving, from the best state seen so far
                pw, ld, b, u, S = self.joint_pirls(theta, state["best"][1], state["best"][2], tol=ptol,
                                                   maxit=50, tol_u=None if final else 1e-4)
                val = pw + ld
            if np.isfinite(val) and val < state["best"][0]:
                state["best"] = (val, b, u)
            state["beta"], state["u"] = b, u
            return val

        # converge (beta, u) once at the start, later evaluations are warm
        pw, ld, state["beta"], state["u"], _ = self.joint_pirls(np.atleast_1d(theta0), beta0, state["u"], tol=ptol,
                                                                tol_u=None if final else 1e-4)
        state["best"] = (pw + ld if np.isfinite(pw + ld) else np.inf, state["beta"], state["u"])
        if not search:
            theta = np.asarray(theta0, dtype=float)
        elif self.n_theta == 1:
            # one variance parameter: bounded Brent search on the standard deviation scale
            hi = max(4.0, 4 * float(theta0[0]))
            res = optimize.minimize_scalar(f, bounds=(0.0, hi), method="bounded",
                                           options={"xatol": 1e-4 if final else 5e-2})
            theta = np.array([res.x])
        else:
            bounds = self.theta_map.bounds()
            res = optimize.minimize(f, theta0, method="L-BFGS-B", bounds=bounds,
                                    options={"eps": 1e-5, "gtol": 1e-5 if final else 1e-2,
                                             "maxiter": 200})
            theta = np.asarray(res.x)
        pw, ld, b, u, S = self.joint_pirls(theta, state["beta"], state["u"], tol=1e-8)
        if not (np.isfinite(pw + ld) and pw + ld <= state["best"][0] + 50.0 and np.all(np.isfinite(b))):
            pw, ld, b, u, S = self.joint_pirls(theta, state["best"][1], state["best"][2], tol=1e-8)
        return theta, b, u, S, pw + ld, state["n"]


def _vcov_from_hessian(Hdev, n_theta):
    """glmer's vcov: beta block of (Hdev / 2)^-1; None if the Hessian is not positive definite."""
    try:
        np.linalg.cholesky(Hdev)
    except np.linalg.LinAlgError:
        return None
    V = 2.0 * np.linalg.inv(Hdev)
    V = V[n_theta:, n_theta:]
    return 0.5 * (V + V.T)


def start_beta(X, y, w, family=BINOMIAL, offset=None):
    """Intercept at the link of the weighted mean when X has a constant column, else zeros."""
    beta = np.zeros(X.shape[1])
    const = np.flatnonzero(np.all(X[:10] == 1.0, axis=0))
    if const.size and np.all(X[:, const[0]] == 1.0):
        beta[const[0]] = float(family.linkfun(family.start_mean(y, w, offset)))
    return beta


class _Scaled:
    """Affine reparametrisation x = x0 + T xi in which the Hessian is roughly the identity.

    T whitens beta with the Cholesky factor of the nAGQ=0 stage's Schur complement
    (half the Hessian of the penalized deviance in beta) and scales theta by the
    curvature of F along it, so L-BFGS-B needs few iterations and its gradient
    tolerance reads in units of standard errors.
    """

    def __init__(self, x0, T, lower):
        self.x0, self.T = x0, T
        diagT = np.diag(T)
        self.lo = np.where(np.isfinite(lower), (lower - x0[:lower.size]) / diagT[:lower.size], -np.inf)

    def x(self, xi):
        return self.x0 + self.T @ xi

    def bounds(self, n):
        return scipy_bounds(self.lo) + [(None, None)] * (n - self.lo.size)


def _pql_start(prob, theta, fac):
    """Start values from one PQL step: the working LMM at the joint PIRLS weights.

    The weighted cross-products of the last PIRLS step are those of a linear mixed model
    (working response and weights, residual variance profiled); its ML optimum by
    :class:`.lmm_newton.ScalarNewton` (a few factorizations on the blocks, no pass over the
    rows) with ``sigma`` folded back in is within a few percent of the Laplace optimum on
    the designs measured. Returns ``(theta, theta_scale, beta, S)``: the start, a scale per
    theta from the LMM's average-information Hessian, the LMM's fixed effects and the Schur
    complement of the fixed effects (the curvature in beta); None where the step fails.
    """
    from .lmm import CrossProducts, LMMProblem
    from .lmm_newton import ScalarNewton

    _, lp = fac
    cp = lp.cp
    # the rows' prior weights count the observations (the working weights only weight them)
    cp = CrossProducts(cp.A11, cp.A21, cp.A22, float(prob.w.sum()))
    lmm = LMMProblem(lp.layout, cp, reml=False)
    newton = ScalarNewton(lmm)
    # start values need two digits, not the 1e-9 Newton decrement of an LMM fit
    t, _, _ = newton.minimize(theta, max_iter=5, tol=1e-2)
    f = lmm.factor(t) if np.all(np.isfinite(t)) else None
    if f is None or not f[3] > 0:
        return None
    der = newton.derivatives(t, f)
    if der is None:
        return None
    sigma = np.sqrt(f[3] / cp.n_obs)
    hd = np.diag(der[1])
    scale = sigma / np.sqrt(hd) if np.all(np.isfinite(hd)) and np.all(hd > 0) else None
    L = f[0]
    lay = lp.layout
    Q2, p, m = lay.Q2, lay.p, lay.m
    v = sla.solve_triangular(L[:m - 1, :m - 1], L[m - 1, :m - 1], lower=True, trans="T", check_finite=False)
    beta = v[Q2:Q2 + p]
    RX = L[Q2:Q2 + p, Q2:Q2 + p]
    if not np.all(np.isfinite(beta)):
        return None
    return np.maximum(t * sigma, 0.05), scale, beta, RX @ RX.T


def _covariance_probe(sc, nt, theta_map, f_probe):
    """:func:`._optim.covariance_probes` in the optimiser's scaled coordinates (beta kept)."""
    def probe(xi, f0):
        x = sc.x(xi)
        thresh = f0 - 1e-9 * max(1.0, abs(f0))
        for t in covariance_probes(x[:nt], theta_map):
            xn = x.copy()
            xn[:nt] = t
            xin = np.linalg.solve(sc.T, xn - sc.x0)
            f = f_probe(xin)
            if np.isfinite(f) and f < thresh:
                return xin
        return None
    return probe


def _start_subset(prob, max_groups=400, min_rows=100_000):
    """A sub-problem on every k-th group for start values, or None for small problems.

    The nAGQ=0 stage only provides start values (the Laplace stage refines all
    parameters on all rows), and ~400 groups pin theta down to a few percent,
    about what the coarse start search resolves anyway; on big data this
    removes most of the work of the stage.
    """
    n = prob.X.shape[0]
    if prob.G < 2 * max_groups or n < min_rows:
        return None
    k = prob.G // max_groups
    groups = np.arange(0, prob.G, k)
    counts = prob.gptr[groups + 1] - prob.gptr[groups]
    if counts.sum() * 4 > n:
        return None
    idx = np.concatenate([np.arange(prob.gptr[g], prob.gptr[g + 1]) for g in groups])
    rows = idx if prob.perm.size == 0 else prob.perm[idx]
    codes = np.repeat(np.arange(groups.size, dtype=np.int64), counts)
    w = prob.w_full[rows]
    sp = SingleFactorGLMM(np.ascontiguousarray(prob.X[rows]), prob.y[rows], w, codes, groups.size, prob.zcols,
                          prob.pattern, family=prob.family, offset=prob.off[rows] if prob.off.size else None)
    return sp, groups


def _make_scaling(prob, x0, S):
    nt = prob.n_theta
    k = x0.size
    T = np.zeros((k, k))
    try:
        R = np.linalg.cholesky(2.0 * S)  # F ~ 2 (-log L): Hessian in beta ~ 2 S
        T[nt:, nt:] = np.linalg.inv(R).T
    except np.linalg.LinAlgError:
        T[nt:, nt:] = np.eye(k - nt)
    u_save = prob.u.copy()
    _, g0 = prob.laplace(x0)

    def grad(z):
        prob.u[:] = u_save
        return prob.laplace(z)[1]
    for i, curv in enumerate(gradient_curvatures(grad, x0, g0, 1e-3, range(nt))):
        T[i, i] = 1.0 / np.sqrt(curv) if curv > 0 else 0.1 * max(1.0, abs(x0[i]))
    prob.u[:] = u_save
    return T


def fit_single_factor(prob: SingleFactorGLMM, nagq=1, tol=1e-5, max_iter=500, compute_se=True):
    """Fit by glmer's strategy on one grouping factor; returns GLMMResult.

    ``tol`` is L-BFGS-B's gradient tolerance in whitened coordinates, i.e.
    roughly the distance to the optimum in standard errors.
    """
    X, y, w = prob.X, prob.y, prob.w_full
    nt = prob.n_theta
    beta0 = start_beta(X, y, w, prob.family, prob.off)
    theta0 = prob.theta_map.start()
    prob.u[:] = 0.0
    sub = _start_subset(prob) if nagq != 0 else None
    if sub is None:
        theta, beta, u, S, f0, n0 = prob.nagq0(theta0, beta0, final=(nagq == 0))
        prob.u[:] = u
    else:
        # start values from the nAGQ=0 stage on every k-th group, then one joint
        # PIRLS step on all rows for the modes and the Schur complement S
        sp, groups = sub
        theta, beta, _, _, _, n0 = sp.nagq0(theta0, beta0)
        _, _, beta, u, S = prob.joint_pirls(theta, beta, prob.u, maxit=2, tol_u=1e-4)
        prob.u[:] = u
    message = "nAGQ=0"
    n_iter = 0
    converged = True
    diag = prob.theta_map.is_diagonal
    hessian_failed = False
    fit_log = None
    if nagq == 0:
        # nAGQ=0 reports the penalized deviance at the joint mode and the
        # conditional vcov of beta, as glmer does
        dev = f0
        V = np.linalg.inv(S)
        vmethod = "conditional"
        x = np.concatenate([theta, beta])
    else:
        x0 = np.concatenate([theta, beta])
        # theta = 0 is a stationary point of F (it is even in theta), so a
        # start exactly on the boundary would never leave it
        fit_log = FitLog(started_on_boundary=bool(np.any(diag & (x0[:nt] < 1e-4))))
        x0[:nt][diag & (x0[:nt] < 1e-3)] = 0.1
        sc = _Scaled(x0, _make_scaling(prob, x0, S), prob.lower_theta)
        # probes off a bound at theta = lower + d for d in _optim.PROBES: one theta unit is 1 / T_ii in xi
        lo_xi = np.concatenate([sc.lo, np.full(x0.size - nt, -np.inf)])
        xi_scale = np.concatenate([1.0 / np.diag(sc.T)[:nt], np.ones(x0.size - nt)])
        if nagq == 1:
            def fg(xi):
                F, g = prob.laplace(sc.x(xi))
                if not np.isfinite(F):
                    return 1e300, np.zeros_like(xi)
                return F, sc.T.T @ g

            def f_probe(xi):
                u_save = prob.u.copy()
                F = prob.laplace(sc.x(xi), want_grad=False)
                prob.u[:] = u_save
                return F
            res, fit_log = minimize_bounded(fg, np.zeros(x0.size), lo_xi, fun=f_probe, scale=xi_scale,
                                            maxiter=max_iter, gtol=tol, log=fit_log,
                                            extra_probe=_covariance_probe(sc, nt, prob.theta_map, f_probe))
        else:
            nodes, weights = gauss_hermite(nagq)

            # the exact gradient where the kernels provide it (a Dask stand-in may not)
            exact = hasattr(prob.kernels, "agq_grad_single")

            def fa(x):
                return prob.agq(x, nodes, weights)

            def fg(xi):
                x = sc.x(xi)
                if exact:
                    F, g = prob.agq_grad(x, nodes, weights)
                    if g is None:
                        return 1e300, np.zeros_like(xi)
                    return F, sc.T.T @ g
                f0 = fa(x)
                u_save = prob.u.copy()

                def restore():
                    prob.u[:] = u_save
                return f0, fd_gradient(lambda z: fa(sc.x(z)), xi, 1e-4, absolute=True, restore=restore)

            def f_probe(xi):
                u_save = prob.u.copy()
                F = fa(sc.x(xi))
                prob.u[:] = u_save
                return F
            res, fit_log = minimize_bounded(fg, np.zeros(x0.size), lo_xi, fun=f_probe, scale=xi_scale,
                                            maxiter=max_iter, gtol=tol, log=fit_log,
                                            extra_probe=_covariance_probe(sc, nt, prob.theta_map, f_probe))
        x = sc.x(np.asarray(res.x, dtype=float))
        x[:nt][diag] = np.maximum(x[:nt][diag], 0.0)
        n_iter = int(res.nit)
        # converged only when the final check (projected gradient, probes off every bound) passed
        converged = bool(res.success)
        message = str(res.message)
        # snap a near-zero standard deviation onto the boundary if that does not hurt
        near = diag & (x[:nt] < 1e-6)
        if near.any():
            x2 = x.copy()
            x2[:nt][near] = 0.0
            f2 = prob.laplace(x2, want_grad=False) if nagq == 1 else fa(x2)
            fcur = prob.laplace(x, want_grad=False) if nagq == 1 else fa(x)
            if f2 <= fcur + 1e-10 * max(1.0, abs(fcur)):
                x = x2
        dev = prob.laplace(x, want_grad=False) if nagq == 1 else fa(x)
        V = None
        vmethod = "hessian"
        hessian_failed = False
        if compute_se:
            u_save = prob.u.copy()
            if nagq == 1:
                def gfun(xx):
                    prob.u[:] = u_save
                    return prob.laplace(xx)[1]
                Hdev = hessian_from_gradient(gfun, x, gfun(x))
            elif exact:
                def gfun(xx):
                    prob.u[:] = u_save
                    g = prob.agq_grad(xx, nodes, weights)[1]
                    return np.full(xx.size, np.nan) if g is None else g
                Hdev = hessian_from_gradient(gfun, x, gfun(x))
            else:
                def ffun(xx):
                    prob.u[:] = u_save
                    return fa(xx)
                Hdev = central_hessian(ffun, x, 1e-4)
            prob.u[:] = u_save
            V = _vcov_from_hessian(Hdev, nt)
        if V is None:
            # glmer falls back the same way: the conditional vcov of beta given theta
            _, _, _, _, S = prob.joint_pirls(x[:nt], x[nt:], prob.u, tol=1e-9)
            V = np.linalg.inv(S)
            vmethod = "conditional"
            # (the estimator warns unless the fit is singular, where this is expected)
            hessian_failed = compute_se
        # prob.u holds the conditional modes at x (computed with ``dev``, restored after the Hessian)
    theta, beta = x[:nt], x[nt:]
    Lam = prob.lam(theta)
    u = prob.u.copy()
    b = u @ Lam.T
    # conditional covariance of b: Lam H^-1 Lam' per level
    condvar = _condvar_single(prob, Lam, u, beta)
    return GLMMResult(theta=theta, beta=beta, vcov_beta=V, u=[u], b=[b], condvar=[condvar], lambdas=[Lam],
                      deviance=float(dev), loglik=-0.5 * float(dev), n_iter=n_iter, n_eval=prob.n_eval,
                      converged=converged, message=message, vcov_method=vmethod,
                      extra={"hessian_failed": hessian_failed, "fit_log": fit_log})


def _condvar_single(prob, Lam, u, beta):
    G, q, p = prob.G, prob.q, prob.p
    A = np.empty((G, q, q))
    B = np.empty((G, q, p))
    s = np.empty((G, q))
    h = np.empty(G)
    nck = prob.chunks.size - 1
    prob.kernels.joint_stats(np.ascontiguousarray(beta), prob.X, prob.zcols, prob.y, prob.w, prob.perm, prob.gptr,
                             prob.chunks, Lam, u, False, 1.0, A, B, s, h, np.empty((nck, p, p)), np.empty((nck, p)),
                             prob.fam_id, prob.off)
    H = np.einsum("ka,gkm,mc->gac", Lam, A, Lam) + np.eye(q)
    Hinv = np.linalg.inv(H)
    return np.einsum("ab,gbc,dc->gad", Lam, Hinv, Lam)


# --------------------------------------------------------------------------------------------
# several grouping factors (crossed / nested): PIRLS on the core's blocked sparse system
# --------------------------------------------------------------------------------------------
class MultiFactorGLMM:
    """Laplace deviance for crossed / nested factors on the LMM core's blocked Cholesky.

    Each PIRLS iteration is one weighted pass of :func:`skmixed._solvers.lmm.cross_products`
    (working weights ``w mu (1 - mu)``, working response ``Z Lam u + (y - mu) / (mu (1 - mu))``)
    and one blocked factorization by :class:`skmixed._solvers.lmm.LMMProblem`. The
    fixed-effects columns ride along in the factorization: back-substituting with
    ``beta`` set to 0 gives the u-only Newton step (Laplace), solving for all of
    ``[u; beta]`` gives the joint step (nAGQ = 0). ``log|L|^2`` is the Z-part of the factor.

    :meth:`laplace_grad` returns the Laplace deviance with its exact
    gradient (:attr:`exact_gradient`); consecutive calls warm-start PIRLS from the first-order
    change of the modes, and a call at the last point returns it again without work.
    """

    def __init__(self, X, y, w, factors, blocks, family=BINOMIAL, offset=None, z_source=None, layout=None):
        """``layout``: the block layout of the whole data when these rows are one partition of it
        (a distributed fit: the partitions' cross-products then add up)."""
        from .._design.layout import BlockLayout

        self.X, self.y, self.w = X, y, w
        # the matrix the random-effects columns are read from (X, then any random-only columns)
        self.z_source = X if z_source is None else z_source
        self.family = family
        self.off = np.zeros(X.shape[0]) if offset is None else np.asarray(offset, dtype=float)
        self.blocks = blocks
        self.codes = [np.asarray(f.codes, dtype=np.int64) for f in factors]
        self.layout = BlockLayout.build(blocks, self.codes, X.shape[1]) if layout is None else layout
        self.Z = [b.z_rows(self.z_source) for b in blocks]
        self._init_parameters(blocks, X.shape[1])

    def _init_parameters(self, blocks, p):
        """Parameter layout and mode storage (row-independent)."""
        self.theta_map = ThetaMap.for_blocks(blocks)
        self.theta_pos = self.theta_map.positions
        self.n_theta = self.theta_map.n_theta
        self.lower_theta = self.theta_map.lower
        self.p = p
        self.u = [np.zeros((b.n_levels, b.q)) for b in blocks]
        self.n_eval = 0
        self._grad = None
        self._mode_jac = None  # (x, modes, du*/dx) of the last exact-gradient evaluation
        self._last_grad = None  # (x bytes, F, gradient, modes, PIRLS tol) of the last exact-gradient evaluation

    def lambdas(self, theta):
        return self.theta_map.lambdas(theta)

    def _re_eta(self, lams, u):
        eta = np.zeros(self.X.shape[0])
        for blk, Z, lam, uk in zip(self.blocks, self.Z, lams, u):
            eta += np.einsum("ij,ij->i", Z, (uk @ lam.T)[self.codes[blk.factor]])
        return eta

    # -- the two passes over the rows (a distributed problem sums them over its partitions) --
    def working_cross_products(self, lams, beta, u, joint):
        """Cross-products of the PIRLS working model at ``(beta, u)``: one pass over the rows."""
        from .lmm import cross_products

        zb = self._re_eta(lams, u)
        eta = self.X @ beta + zb + self.off
        mu = self.family.linkinv(eta)
        var = np.maximum(self.family.variance(mu), 1e-300)  # = dmu/deta (canonical link)
        W = self.w * var
        # working response; for the u-only step the offset X beta is left out
        yw = zb + (self.y - mu) / var + (self.X @ beta if joint else 0.0)
        return cross_products(self.layout, self.X, yw, W, z_source=None if self.z_source is self.X else self.z_source)

    def deviance(self, lams, beta, u):
        """Sum over the rows of the family's deviance at ``(beta, u)``."""
        eta = self.X @ beta + self._re_eta(lams, u) + self.off
        return float(self.family.kernel_deviance(self.y, eta, self.w).sum())

    def _solve(self, theta, beta, u, joint):
        """One PIRLS step from (beta, u): returns (u_new, beta_new, ldL2, problem)."""
        from .lmm import LMMProblem

        cp = self.working_cross_products(self.lambdas(theta), beta, u, joint)
        prob = LMMProblem(self.layout, cp, reml=False)
        f = prob.factor(np.asarray(theta, dtype=float))
        if f is None:
            return None
        L, ldL2 = f[0], f[1]
        lay = self.layout
        Q2, p, m = lay.Q2, lay.p, lay.m
        c = L[m - 1, :m - 1]
        from scipy.linalg import solve_triangular

        if joint:
            v = solve_triangular(L[:m - 1, :m - 1], c, lower=True, trans="T", check_finite=False)
        else:
            v = np.zeros(m - 1)
            if Q2:
                v[:Q2] = solve_triangular(L[:Q2, :Q2], c[:Q2], lower=True, trans="T", check_finite=False)
        u1 = prob.first_block_modes(v)
        un = [u1]
        for k, blk in enumerate(self.blocks[1:]):
            o = lay.dense_off[k]
            un.append(v[o:o + blk.n_levels * blk.q].reshape(blk.n_levels, blk.q))
        bn = v[Q2:Q2 + p] if joint else beta
        return un, bn, ldL2, (L, prob)

    def _pwrss(self, theta, beta, u):
        return self.deviance(self.lambdas(theta), beta, u) + sum(float((uk * uk).sum()) for uk in u)

    def pirls(self, theta, beta, joint=False, tol=1e-9, maxit=60, refactor=True):
        """PIRLS from the stored modes; returns (pwrss + ldL2, beta, extra) and updates self.u.

        With ``refactor=False`` the last Newton step's factor is returned instead of a new one at
        the modes: ``(pwrss at the new modes, beta, (factor, ldL2, modes it belongs to))``; the
        caller corrects ``ldL2`` to first order (:meth:`laplace_grad`).
        """
        u = [uk.copy() for uk in self.u]
        pw = self._pwrss(theta, beta, u)
        out = None
        for it in range(maxit):
            step = self._solve(theta, beta, u, joint)
            if step is None:
                return np.inf, beta, None
            un, bn, ldL2, fac = step
            pn = self._pwrss(theta, bn, un)
            k = 0
            # Near the mode a Newton step is reliable and its gain (quadratic in the step) is below the
            # rounding noise of pwrss, a sum of n terms; judging it there stalled PIRLS short of the mode
            # (Poisson: u off by ~1e-6, log|L| off to first order, finite-difference SEs 20 % small), so
            # step halving guards only steps that are not small.
            step_size = max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(un, u))
            if joint:
                step_size = max(step_size, float(np.max(np.abs(bn - beta))) if bn.size else 0.0)
            while step_size > 1e-6 and pn > pw + 1e-12 * abs(pw) and k < 30:  # step halving
                un = [0.5 * (a + b) for a, b in zip(un, u)]
                bn = 0.5 * (bn + beta)
                pn = self._pwrss(theta, bn, un)
                k += 1
            delta = max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(un, u))
            if joint:
                delta = max(delta, float(np.max(np.abs(bn - beta))) if bn.size else 0.0)
            u_prev = u
            u, beta, pw = un, bn, pn
            out = fac
            if delta < tol:
                if not refactor and k == 0:
                    self.u = u
                    return pw, beta, (fac, ldL2, u_prev)
                break
        # log|L|^2 at the mode: one more factorization with the final weights (taking it
        # from the last step instead, at weights within tol of the mode, was measured to
        # make the finite-difference gradients noisy enough to cost 50 % more evaluations)
        step = self._solve(theta, beta, u, joint)
        ldL2, out = step[2], step[3]
        self.u = u
        return pw + ldL2, beta, out

    def laplace(self, x):
        self.n_eval += 1
        theta, beta = x[:self.n_theta], x[self.n_theta:]
        F, _, _ = self.pirls(theta, beta, joint=False)
        return F

    @property
    def exact_gradient(self):
        """The exact gradient's evaluator (:mod:`.glmm_multi_grad`), or None.

        Scalar terms get :class:`.glmm_multi_grad.ScalarLaplaceGradient`, vector terms
        :class:`.glmm_multi_grad.BlockLaplaceGradient`. It reads the rows, so a problem without
        local rows (the distributed one, whose row passes are its partitions' sums) has none:
        finite differences there.
        """
        if not hasattr(self, "Z"):
            return None
        if self._grad is None:
            from .glmm_multi_grad import BlockLaplaceGradient, ScalarLaplaceGradient

            self._grad = ScalarLaplaceGradient(self)
            if not self._grad.applies:
                self._grad = BlockLaplaceGradient(self)
        return self._grad if self._grad.applies else None

    def laplace_grad(self, x, tol=1e-7):
        """``F`` and its exact gradient in ``(theta, beta)`` (:mod:`.glmm_multi_grad`).

        ``tol``: PIRLS stops when a Newton step moves the modes by less; the gradient is exact to
        about that (differences of gradients for a Hessian need a tighter one).
        """
        grad = self.exact_gradient
        if grad is None:
            raise ValueError("the exact gradient needs the rows (a distributed problem has none)")
        x = np.asarray(x, dtype=float)
        key = x.tobytes()
        if self._last_grad is not None and self._last_grad[0] == key and self._last_grad[4] <= tol:
            # the optimiser's final check and the Hessian's base point re-evaluate the last point
            _, F, g, u, _ = self._last_grad
            self.u = [uk.copy() for uk in u]
            return F, g.copy()
        self.n_eval += 1
        theta, beta = x[:self.n_theta], x[self.n_theta:]
        if self._mode_jac is not None:
            # first-order prediction of the modes from the last evaluation: PIRLS then starts
            # O(|dx|^2) from the mode and needs a Newton step or two fewer
            x_old, u_old, jac = self._mode_jac
            self.u = [uo + (jk @ (x - x_old)).reshape(uo.shape) for uo, jk in zip(u_old, jac)]
        pw, _, out = self.pirls(theta, beta, joint=False, tol=tol, refactor=False)
        if not np.isfinite(pw) or out is None:
            self._mode_jac = None
            return np.inf, np.zeros_like(x)
        if len(out) == 3:
            # the last Newton step moved the modes by < 1e-7: take log|L|^2 and the gradient from its
            # factor (at the modes before the step) instead of factoring once more; log|L|^2 moves
            # to first order by g_u' du (the error left is O(|du|^2))
            fac, ldL2, u_at = out
            g, jac, gu = grad.gradient(theta, beta, u_at, fac, want_jac=True)
            F = pw + ldL2 + sum(float(a @ (b - c).ravel()) for a, b, c in zip(gu, self.u, u_at))
        else:
            F = pw
            g, jac, gu = grad.gradient(theta, beta, self.u, out, want_jac=True)
        self._mode_jac = (x.copy(), [uk.copy() for uk in self.u], jac)
        self._last_grad = (key, F, g.copy(), [uk.copy() for uk in self.u], tol)
        return F, g


def fit_multi_factor(X, y, w, factors, blocks, nagq=1, tol=1e-5, max_iter=500, family=BINOMIAL, offset=None,
                     z_source=None, problem=None):
    """Laplace (or nAGQ=0) fit with several grouping factors; returns GLMMResult.

    Laplace: a joint PIRLS at lme4's start (and, with scalar terms, one PQL step) gives the
    start and the scales, then :func:`._optim.minimize_bounded` on the exact gradient (its
    final check included), and the Hessian for the standard errors by forward differences of
    that gradient. Without local rows (a distributed problem) glmer's scheme on finite
    differences: an nAGQ=0 stage, then Laplace.

    Every PIRLS step factors the LMM's dense part: up to a few thousand rows that runs
    with one BLAS thread (:func:`skmixed._threads.blas_for_dense`, and below 200 rows
    :func:`skmixed._threads.single_threaded_blas`: the exact gradient's small triangular
    inverses stalled on spinning BLAS threads under load). ``z_source``: the matrix the
    random-effects columns are read from when it is not ``X`` (random-only columns).
    ``problem``: a ready :class:`MultiFactorGLMM` (a distributed one); ``X``, ``y``, ``w``
    then only give the start values (rows whose weighted mean of y is the data's).
    """
    if problem is None:
        problem = MultiFactorGLMM(X, y, w, factors, blocks, family=family, offset=offset, z_source=z_source)
    prob = problem
    m = prob.layout.m
    # small dense parts: one BLAS thread too -- OpenBLAS threads its own LAPACK (trtri, lauum, potrf)
    # even at a few dozen rows, and under load each such call was measured at 0.1-0.4 s against 1e-5 s
    with single_threaded_blas() if m <= 200 else blas_for_dense(m):
        return _fit_multi_factor(prob, X, y, w, nagq, tol, max_iter)


def _fit_multi_factor(prob, X, y, w, nagq, tol, max_iter):
    nt, p = prob.n_theta, prob.p
    theta0 = prob.theta_map.start()
    beta0 = start_beta(X, y, w, prob.family, prob.off)
    # nAGQ=0 stage: beta inside PIRLS, theta by L-BFGS-B on finite differences
    state = {"beta": beta0}

    def f0(theta):
        F, b, _ = prob.pirls(theta, state["beta"], joint=True, tol=1e-7)
        state["beta"] = b
        return F

    bounds_t = prob.theta_map.bounds()
    exact = nagq == 1 and prob.exact_gradient is not None
    pql_scale = S_pql = None
    if exact and not prob.exact_gradient.scalar:
        # vector terms: the joint PIRLS at lme4's start theta gives beta and the curvature in it
        # (the one-step PQL start below needs the scalar terms' Newton LMM)
        theta = theta0
        F0, beta, fac = prob.pirls(theta, beta0, joint=True, tol=1e-3)
    elif exact:
        # the Laplace stage's exact gradient needs no nAGQ=0 search for its start: the joint PIRLS
        # at lme4's start theta (to start-value precision) and one PQL step from its weights
        theta = theta0
        F0, beta, fac = prob.pirls(theta, beta0, joint=True, tol=1e-3)
        if fac is not None:
            # one PQL step: the working LMM's theta (sigma profiled back in) starts the search
            # near the optimum, and its average-information Hessian scales theta
            pql = _pql_start(prob, theta, fac)
            if pql is not None:
                theta, pql_scale, beta, S_pql = pql
    else:
        f0(theta0)

        def f0_and_grad(t):
            F = f0(t)
            # only start values for the Laplace stage (gtol 1e-3): forward differences, half the PIRLS runs
            return F, fd_gradient(f0, t, 1e-4, prob.lower_theta, f0=F, central=nagq == 0)

        r0 = optimize.minimize(f0_and_grad, theta0, jac=True,
                               method="L-BFGS-B", bounds=bounds_t,
                               options={"gtol": 1e-6 if nagq == 0 else 1e-3, "maxiter": max_iter})
        theta = np.asarray(r0.x)
        F0, beta, fac = prob.pirls(theta, state["beta"], joint=True)
    if fac is None:
        raise ValueError("the penalized IRLS failed at the start values (non-finite working weights)")
    L, lp = fac
    lay = prob.layout
    Q2 = lay.Q2
    RX = L[Q2:Q2 + p, Q2:Q2 + p]
    S = RX @ RX.T if S_pql is None else S_pql
    diag = prob.theta_map.is_diagonal
    fit_log = None
    if nagq == 0:
        x = np.concatenate([theta, beta])
        dev, V, vmethod, n_iter, converged, message = F0, np.linalg.inv(S), "conditional", r0.nit, True, "nAGQ=0"
    else:
        x0 = np.concatenate([theta, beta])
        x0[:nt][diag & (x0[:nt] < 1e-3)] = 0.1
        T = np.eye(x0.size)
        T[nt:, nt:] = np.linalg.inv(np.linalg.cholesky(2.0 * S)).T
        T[:nt, :nt] = np.diag(np.maximum(0.1 * np.abs(x0[:nt]), 0.05))
        if pql_scale is not None:
            T[:nt, :nt] = np.diag(pql_scale)
        sc = _Scaled(x0, T, prob.lower_theta)
        lo_xi = np.concatenate([sc.lo, np.full(p, -np.inf)])

        def fxi(xi):
            return prob.laplace(sc.x(xi))

        def fg(xi):
            if exact:
                F, g = prob.laplace_grad(sc.x(xi))
                return F, sc.T.T @ g
            F = fxi(xi)
            u_save = [uk.copy() for uk in prob.u]

            def fr(z):
                prob.u = [uk.copy() for uk in u_save]
                return fxi(z)
            g = fd_gradient(fr, xi, 1e-4, lo_xi)
            prob.u = u_save
            return F, g

        def f_probe(xi):
            u_save = [uk.copy() for uk in prob.u]
            F = fxi(xi)
            prob.u = u_save
            return F
        fit_log = FitLog(started_on_boundary=bool(np.any(diag & (theta < 1e-4))))
        xi_scale = np.concatenate([1.0 / np.diag(T)[:nt], np.ones(p)])
        res, fit_log = minimize_bounded(fg, np.zeros(x0.size), lo_xi, fun=f_probe, scale=xi_scale,
                                        maxiter=max_iter, gtol=tol, log=fit_log,
                                        extra_probe=_covariance_probe(sc, nt, prob.theta_map, f_probe))
        x = sc.x(np.asarray(res.x))
        x[:nt][diag] = np.maximum(x[:nt][diag], 0.0)
        n_iter, message = int(res.nit), str(res.message)
        converged = bool(res.success)
        u_save = [uk.copy() for uk in prob.u]
        if exact:
            # forward differences of the exact gradient: n_theta + p + 1 PIRLS runs, not 2 (n_theta + p)^2;
            # a step of 1e-5 magnifies gradient errors 1e5-fold, so PIRLS runs to a 1e-10 step here
            def gg(z):
                prob.u = [uk.copy() for uk in u_save]
                return prob.laplace_grad(z, tol=1e-10)[1]
            Hdev = hessian_from_gradient(gg, x, gg(x))
        else:
            def ff(z):
                prob.u = [uk.copy() for uk in u_save]
                return prob.laplace(z)
            Hdev = central_hessian(ff, x, 1e-4)
        prob.u = u_save
        V = _vcov_from_hessian(Hdev, nt)
        vmethod = "hessian"
        if V is None:
            V, vmethod = np.linalg.inv(S), "conditional"
    hessian_failed = nagq != 0 and vmethod == "conditional"
    theta, beta = x[:nt], x[nt:]
    lams = prob.lambdas(theta)
    # the modes at the optimum to PIRLS's full precision: the Laplace deviance reported and the factor
    # the conditional variances come from
    F1, _, (L, lp) = prob.pirls(theta, beta, joint=False, tol=1e-7 if exact else 1e-9)
    if nagq != 0:
        dev = F1
    cvu = lp.conditional_u_cov(L)  # diagonal blocks of (L_Z L_Z')^{-1}
    u = [uk.copy() for uk in prob.u]
    b = [uk @ lam.T for uk, lam in zip(u, lams)]
    condvar = [np.einsum("ab,jbc,dc->jad", lam, cu, lam) for lam, cu in zip(lams, cvu)]
    return GLMMResult(theta=theta, beta=beta, vcov_beta=V, u=u, b=b, condvar=condvar, lambdas=lams,
                      deviance=float(dev), loglik=-0.5 * float(dev), n_iter=n_iter, n_eval=prob.n_eval,
                      converged=converged, message=message, vcov_method=vmethod,
                      extra={"lower": prob.lower_theta, "hessian_failed": hessian_failed, "fit_log": fit_log})
