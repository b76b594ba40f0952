"""Likelihood machinery of a fitted LMM for inference: the deviance as a function of the
variance parameters, Satterthwaite degrees of freedom (lmerTest), ML profiles (lme4's
``profile`` / ``confint(method = "profile")``) and the ML refit of a REML fit.

Everything runs on the fit's :class:`~skmixed._solvers.lmm.LMMProblem`: one evaluation
is one blocked Cholesky of the cross-product blocks, whatever the number of rows.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy import optimize, stats

from .._solvers.lmm import LMMProblem
from .._numdiff import gradient_in_box, richardson_hessian, richardson_jacobian

__all__ = ["LMMInference", "MLProfile", "profile_names", "blas_for"]


def blas_for(problem):
    """One BLAS thread unless the dense part is large: inference makes thousands of calls on
    matrices of a few rows, where a threaded BLAS costs milliseconds per call under load."""
    import contextlib

    from .._threads import single_threaded_blas

    if problem is None or problem.layout.m <= 4000:
        return single_threaded_blas()
    return contextlib.nullcontext()

_LOG2PI = np.log(2 * np.pi)


def profile_names(n_theta: int, has_sigma: bool = True) -> list:
    """lme4's ``oldNames``: ``.sig01, .sig02, ...`` (then ``.sigma``)."""
    width = max(2, len(str(n_theta)))
    return [f".sig{k + 1:0{width}d}" for k in range(n_theta)] + ([".sigma"] if has_sigma else [])


def _chol_psd(C):
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots give zero columns);
    None when ``C`` is not positive semi-definite."""
    q = C.shape[0]
    L = np.zeros_like(C)
    for j in range(q):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-12 * max(1.0, abs(C[j, j])):
            return None
        if d <= 0:
            if np.any(np.abs(C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) > 1e-10 * max(1.0, np.abs(C).max())):
                return None
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


class LMMInference:
    """Inference on one fitted LMM (``state``: the fit's :class:`~skmixed.inference._state.LMMState`).

    Parameters
    ----------
    state : LMMState
    sigma : float
        The fit's residual SD.
    """

    def __init__(self, state, sigma: float):
        self.state = state
        self.sigma = float(sigma)
        self.problem = state.problem
        self.T = state.T
        self.p = state.T.shape[0]

    # ------------------------------------------------------------------ the factor at theta
    def _factor(self, theta):
        f = self.problem.factor(np.asarray(theta, dtype=float))
        if f is None or not f[3] > 0:
            return None
        return f

    def _rx(self, L):
        lay = self.problem.layout
        return L[lay.Q2:lay.Q2 + lay.p, lay.Q2:lay.Q2 + lay.p]

    def _beta_c(self, L):
        lay = self.problem.layout
        RX = self._rx(L)
        c = L[lay.m - 1, lay.Q2:lay.Q2 + lay.p]
        return sla.solve_triangular(RX, c, lower=True, trans="T", check_finite=False)

    def _unscaled_vcov(self, L):
        """``(X'V^{-1}X)^{-1} / sigma^2`` in the user's coordinates."""
        RXinv = sla.solve_triangular(self._rx(L), np.eye(self.p), lower=True, check_finite=False)
        return self.T @ (RXinv.T @ RXinv) @ self.T.T

    # ------------------------------------------------------------------ lmerTest's devfun_vp
    def varpar(self) -> np.ndarray:
        return np.r_[self.state.theta, self.sigma]

    def deviance_vp(self, vp) -> float:
        """-2 log-likelihood (REML: restricted) at ``(theta, sigma)``, beta at its conditional estimate."""
        vp = np.asarray(vp, dtype=float)
        theta, sigma = vp[:-1], vp[-1]
        f = self._factor(theta)
        if f is None or sigma == 0:
            return np.inf
        _, ldL2, ldRX2, r2 = f
        s2 = sigma**2
        N = self.state.n_obs
        dev = ldL2 + r2 / s2 + N * (_LOG2PI + np.log(s2))
        if self.state.reml:
            dev += ldRX2 - self.p * (_LOG2PI + np.log(s2))
        return float(dev)

    def vcov_vp(self, vp) -> np.ndarray:
        vp = np.asarray(vp, dtype=float)
        f = self._factor(vp[:-1])
        if f is None:
            return np.full((self.p, self.p), np.nan)
        return vp[-1] ** 2 * self._unscaled_vcov(f[0])

    def _satterthwaite_parts(self):
        cache = self.state.extra.get("satterthwaite")
        if cache is not None and np.isclose(cache[0], self.sigma, rtol=0, atol=0):
            return cache[1:]
        vp = self.varpar()
        with np.errstate(all="ignore"):
            H = richardson_hessian(self.deviance_vp, vp)
            J = richardson_jacobian(self.vcov_vp, vp)
        try:
            ev = np.linalg.eigvalsh(H)
            if not np.all(np.isfinite(H)) or ev.min() <= 0:
                raise np.linalg.LinAlgError
            A = 2.0 * np.linalg.inv(H)
        except np.linalg.LinAlgError:
            A = 2.0 * np.linalg.pinv(H)
            import warnings
            warnings.warn("the Hessian of the deviance in the variance parameters is not positive definite "
                          "(a variance at the boundary?): Satterthwaite degrees of freedom are unreliable",
                          UserWarning, stacklevel=4)
        V = self.vcov_vp(vp)
        jac = [J[:, i].reshape(self.p, self.p) for i in range(J.shape[1])]
        self.state.extra["satterthwaite"] = (self.sigma, V, A, jac)
        return V, A, jac

    def satterthwaite(self, L) -> tuple:
        """Satterthwaite ``(estimate variance, df)`` of each row of the contrast matrix ``L`` (k x p)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if self.problem is None:  # a linear model: exact t with N - p df
            V = self._fixed_only_vcov()
            var = np.einsum("ij,jk,ik->i", L, V, L)
            return var, np.full(L.shape[0], self.state.n_obs - self.p)
        V, A, jac = self._satterthwaite_parts()
        var = np.einsum("ij,jk,ik->i", L, V, L)
        g = np.column_stack([np.einsum("ij,jk,ik->i", L, Ji, L) for Ji in jac])
        denom = np.einsum("ij,jk,ik->i", g, A, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = 2.0 * var**2 / denom
        return var, df

    def _fixed_only_vcov(self):
        return self.state.extra["vcov"]

    def satterthwaite_multi(self, L):
        """lmerTest's multi-df F test of ``L beta = 0``: ``(F, numdf, dendf)`` (contestMD)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        beta = self.state.extra["beta"]
        if self.problem is None:
            V = self._fixed_only_vcov()
        else:
            V = self._satterthwaite_parts()[0]
        VLL = L @ V @ L.T
        ev, P = np.linalg.eigh(VLL)
        tol = max(1e-8 * ev.max(), 0) if ev.size else 0
        pos = ev > tol
        q = int(pos.sum())
        P, ev = P[:, pos], ev[pos]
        PtL = P.T @ L
        t2 = (PtL @ beta) ** 2 / ev
        F = float(t2.sum() / q)
        _, nu = self.satterthwaite(PtL)
        if q == 1:
            return F, 1, float(nu[0])
        ok = nu > 2
        E = float(np.sum(nu[ok] / (nu[ok] - 2)))
        dendf = 2 * E / (E - q) if E > q else np.nan
        return F, q, float(dendf)

    # ------------------------------------------------------------------ ML refit and profiles
    def ml_problem(self):
        """The ML problem, its theta and its deviance (the REML fit refitted by ML, as lme4)."""
        cache = self.state.extra.get("ml")
        if cache is not None:
            return cache
        if self.problem is None:
            N, rss = self.state.n_obs, self.state.extra["rss"]
            out = (None, np.empty(0), float(N * (1 + _LOG2PI + np.log(rss / N))))
        elif not self.state.reml:
            prob = self.problem
            theta = np.asarray(self.state.theta, float)
            out = (prob, theta, float(prob.objective(theta)))
        else:
            prob = LMMProblem(self.problem.layout, self.problem.cp, reml=False)
            theta, _, _, _ = prob.optimize(theta0=np.asarray(self.state.theta, float))
            out = (prob, theta, float(prob.objective(theta)))
        self.state.extra["ml"] = out
        return out


class MLProfile:
    """lme4's profile of the ML deviance on the standard-deviation scale.

    Parameters are ``.sig01, ...`` (per random-effects block, in theta's order:
    standard deviations on the diagonal positions, correlations off it), ``.sigma``,
    then the fixed effects. ``zeta(x) = sign(x - x_hat) sqrt(dev_profiled(x) - dev_min)``;
    a ``level`` interval is where ``|zeta| <= z_{(1 + level) / 2}``, found by root finding
    on the exact profile (lme4 interpolates a spline through a grid of it).
    """

    def __init__(self, inf: LMMInference):
        self.inf = inf
        prob, theta, dev = inf.ml_problem()
        self.prob, self.theta, self.dev_min = prob, theta, dev
        self.N = inf.state.n_obs
        f = prob.factor(theta)
        self.sigma = float(np.sqrt(f[3] / self.N))
        self.blocks = prob.layout.blocks
        self.pos = self.prob.theta_map.positions
        self.x_hat = self.to_sdcor(theta, self.sigma)
        self.kind = []  # "sd" / "cor" per sdcor parameter
        for r, c in self.pos:
            self.kind.extend(np.where(r == c, "sd", "cor"))
        self.kind.append("sigma")

    # theta <-> sd/cor scale
    def to_sdcor(self, theta, sigma):
        out = []
        for lam, (r, c) in zip(self.prob.lambdas(theta), self.pos):
            C = sigma**2 * lam @ lam.T
            sd = np.sqrt(np.clip(np.diag(C), 0, None))
            for a, b in zip(r, c):
                if a == b:
                    out.append(sd[a])
                else:
                    out.append(C[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else 0.0)
        return np.array(out + [sigma])

    def to_theta(self, x):
        sigma = x[-1]
        theta, k = [], 0
        for blk, (r, c) in zip(self.blocks, self.pos):
            q = blk.q
            nk = len(r)
            vals = x[k:k + nk]
            k += nk
            sd = np.zeros(q)
            R = np.eye(q)
            for v, a, b in zip(vals, r, c):
                if a == b:
                    sd[a] = v
                else:
                    R[a, b] = R[b, a] = v
            Lc = _chol_psd(R * np.outer(sd, sd))
            if Lc is None:
                return None
            theta.extend(Lc[r, c] / sigma)
        return np.array(theta)

    def deviance_sdcor(self, x):
        x = np.asarray(x, dtype=float)
        if x[-1] <= 0:
            return np.inf
        theta = self.to_theta(x)
        if theta is None:
            return np.inf
        f = self.prob.factor(theta)
        if f is None or not f[3] > 0:
            return np.inf
        s2 = x[-1] ** 2
        return float(f[1] + f[3] / s2 + self.N * (_LOG2PI + np.log(s2)))

    def _bounds(self, idx):
        out = []
        for i in idx:
            k = self.kind[i]
            out.append((0.0, None) if k == "sd" else (-1.0, 1.0) if k == "cor" else (1e-12 * self.sigma, None))
        return out

    def _minimize(self, fun, x0, bounds):
        x0 = np.asarray(x0, dtype=float)
        if x0.size == 0:
            return x0, fun(x0)
        lo = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
        hi = np.array([b[1] if b[1] is not None else np.inf for b in bounds])
        x0 = np.clip(x0, lo, hi)

        def fg(x):
            f = fun(x)
            if not np.isfinite(f):
                return 1e300, np.zeros_like(x)
            return f, gradient_in_box(fun, x, lo, hi, 1e-6)

        best = None
        start = x0
        for _ in range(3):
            res = optimize.minimize(fg, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000, "maxls": 50})
            if best is not None and res.fun >= best.fun - 1e-11:
                best = best if best.fun <= res.fun else res
                break
            best = res
            start = res.x
        return np.asarray(best.x, dtype=float), float(best.fun)

    # zeta for the variance parameters
    def _zeta_var(self, i, value, warm):
        free = [k for k in range(self.x_hat.size) if k != i]

        def fun(z):
            x = np.empty(self.x_hat.size)
            x[free] = z
            x[i] = value
            return self.deviance_sdcor(x)

        z, dev = None, np.inf
        for z0 in self._var_starts(free, warm.get(i)):
            zc, dc = self._minimize(fun, z0, self._bounds(free))
            if z is None or dc < dev - 1e-10 * max(1.0, abs(dev)):
                z, dev = zc, dc
        warm[i] = z
        d = max(dev - self.dev_min, 0.0)
        return np.sign(value - self.x_hat[i]) * np.sqrt(d)

    def _var_starts(self, free, last):
        """Where the re-optimisation at a profile point starts: the previous point's optimum
        (following the profile along), the fit's optimum, and, in models with correlations,
        each free correlation near its two bounds and each free SD at 0. The profile is a minimum over the other parameters,
        and with a correlation free it can jump between branches (one slope SD at 0 with an
        interior correlation, or a correlation at +-1): one start would follow a local branch
        and make the interval too narrow."""
        hat = self.x_hat[free]
        starts = [] if last is None else [np.asarray(last, dtype=float)]
        starts.append(hat)
        if "cor" not in self.kind or sum(k == "cor" for k in self.kind) > 3:
            return starts  # scalar terms: one branch; many correlations: too many starts
        for n, k in enumerate(free):
            # a correlation near either bound; an SD at 0 (where a correlation stops mattering)
            for v in ((-0.9, 0.9) if self.kind[k] == "cor" else (0.0,) if self.kind[k] == "sd" else ()):
                z = hat.copy()
                z[n] = v
                starts.append(z)
        return starts

    # zeta for the fixed effects: beta_j held at b, theta re-optimised (ML)
    def _dev_beta(self, j, b, theta):
        f = self.prob.factor(np.asarray(theta, dtype=float))
        if f is None or not f[3] > 0:
            return np.inf
        L, ldL2, _, r2 = f
        inf = self.inf
        beta = inf.T @ inf._beta_c(L)
        beta[0] += inf.state.y_shift
        w = inf._unscaled_vcov(L)[j, j]
        r2b = r2 + (beta[j] - b) ** 2 / w
        return float(ldL2 + self.N * (1 + _LOG2PI + np.log(r2b / self.N)))

    def _zeta_beta(self, j, b, warm):
        key = ("beta", j)
        bounds = self.prob.theta_map.bounds()
        th, dev = self._minimize(lambda t: self._dev_beta(j, b, t), warm.get(key, self.theta), bounds)
        warm[key] = th
        return np.sign(b - self.beta_hat[j]) * np.sqrt(max(dev - self.dev_min, 0.0))

    @property
    def beta_hat(self):
        f = self.prob.factor(self.theta)
        b = self.inf.T @ self.inf._beta_c(f[0])
        b[0] += self.inf.state.y_shift
        return b

    def interval(self, which, level=0.95, se=None):
        """``(lower, upper)`` of parameter ``which`` (index into sdcor + sigma, or ``("beta", j)``)."""
        zc = stats.norm.ppf((1 + level) / 2)
        warm = {}
        if isinstance(which, tuple):
            j = which[1]
            x0 = self.beta_hat[j]
            zfun = lambda v: self._zeta_beta(j, v, warm)  # noqa: E731
            step0 = (se if se else max(abs(x0), 1.0) * 0.1) * 1.0
            lo_b, hi_b = -np.inf, np.inf
        else:
            x0 = self.x_hat[which]
            zfun = lambda v: self._zeta_var(which, v, warm)  # noqa: E731
            k = self.kind[which]
            step0 = max(abs(x0), 1e-3 * self.sigma) * 0.25 if k != "cor" else 0.25
            lo_b, hi_b = (0.0, np.inf) if k in ("sd", "sigma") else (-1.0, 1.0)
        out = []
        for sgn in (-1, 1):
            warm.clear()
            target = sgn * zc
            prev, step = x0, step0
            found = None
            for _ in range(60):
                cand = prev + sgn * step
                if cand <= lo_b or cand >= hi_b:
                    edge = lo_b if sgn < 0 else hi_b
                    if np.isfinite(edge):
                        # profile to the boundary (an SD of 0, a correlation of +-1)
                        e = edge + (1e-10 if sgn < 0 else -1e-10) * max(1.0, abs(edge))
                        zb = zfun(e)
                        if sgn * zb < zc:
                            found = edge
                        else:
                            found = _crossing(zfun, target, sgn, prev, e)
                        break
                    step *= 2
                    continue
                z = zfun(cand)
                if sgn * z >= zc:
                    found = _crossing(zfun, target, sgn, prev, cand)
                    break
                prev, step = cand, step * 1.6
            out.append(np.nan if found is None else float(found))
        return tuple(out)


def _crossing(zfun, target, sgn, inside, outside):
    """Where the profile ``zfun`` crosses ``target`` between a point ``inside`` the interval
    and one ``outside`` it (``sgn``: the side). Brent's method; where the profile's
    re-optimisations landed on different branches at the two ends (the values at the ends
    then disagree with the bracketing ones), bisection on fresh evaluations, which needs no
    consistent end values, keeps the outermost point found inside."""
    a, b = sorted((inside, outside))
    try:
        return optimize.brentq(lambda v: zfun(v) - target, a, b, xtol=1e-12, rtol=1e-10)
    except ValueError:
        pass
    lo, hi = inside, outside
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if sgn * zfun(mid) >= sgn * target:
            hi = mid
        else:
            lo = mid
        if abs(hi - lo) <= 1e-10 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)
