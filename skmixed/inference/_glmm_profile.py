"""Likelihood-profile confidence intervals for GLMMs (lme4's ``profile`` / ``confint.merMod`` for
``glmer`` fits).

lme4 profiles the fit's deviance (Laplace, or adaptive Gauss-Hermite with ``nAGQ > 1``) as a
function of ``(theta, beta)`` jointly: for a random-effects parameter on the standard-deviation /
correlation scale (``.sig01, ...``; no residual scale) or a fixed effect held at a value, every
other parameter is re-optimised, and ``zeta = sign(x - x_hat) sqrt(dev_profiled(x) - dev_min)``.
A ``level`` interval is where ``|zeta| <= z_{(1 + level) / 2}``: :class:`~._lmm.MLProfile`'s root
search, on the exact profile (lme4 interpolates a spline through a grid of it).

The deviance is evaluated by the same objects the fit optimised
(:class:`~skmixed._solvers.glmm.SingleFactorGLMM` / ``MultiFactorGLMM``), on the training rows
in the user's coordinates; with one grouping factor and the Laplace approximation the
re-optimisations use its exact gradient, otherwise central differences.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .._design.theta import ThetaMap
from ._lmm import MLProfile

__all__ = ["GLMMProfile"]


class GLMMProfile(MLProfile):
    """The profiled GLMM deviance of a fitted :class:`~skmixed.MixedLogisticRegressor` (or Poisson).

    Parameters
    ----------
    est : fitted MixedLogisticRegressor or MixedPoissonRegressor
        Fitted with ``fit`` (the rows are needed), with random effects; an offset is kept in the
        linear predictor.

    Examples
    --------
    >>> from skmixed import MixedLogisticRegressor
    >>> from skmixed.datasets import load_cbpp_bernoulli
    >>> m = MixedLogisticRegressor.from_formula("y ~ 1 + (1 | herd)", load_cbpp_bernoulli())
    >>> lo, hi = GLMMProfile(m).interval(0)
    >>> round(lo, 2), round(hi, 2)
    (0.5, 1.32)
    """

    def __init__(self, est):
        from .._solvers import glmm as sg
        from ._bootstrap import training_rows

        fit = est.mixed_fit_
        st = fit.state
        if st.rows is None:
            training_rows(est)  # the clear error about missing rows
        blocks = st.blocks
        if not blocks:
            raise ValueError("profile intervals need a model with random effects")
        rows = st.rows
        fd = rows.fit_data
        X = np.ascontiguousarray(rows.X, dtype=float)
        w = np.ones(X.shape[0]) if rows.weights is None else np.asarray(rows.weights, dtype=float)
        family = fit.family
        self.blocks = blocks
        self.theta_map = ThetaMap.for_blocks(blocks)
        self.pos = self.theta_map.positions
        self.nagq = int(getattr(est, "nagq_", 1))
        if self.nagq == 0:
            raise ValueError("profile intervals need a fit of the Laplace (nagq=1) or adaptive Gauss-Hermite "
                             "likelihood; nagq=0 maximises a penalised quasi-likelihood, not a likelihood")
        self._grad = False
        if len(blocks) == 1 and fd.Z_extra is None:  # as the fit: random-only columns go the general way
            blk = blocks[0]
            prob = sg.SingleFactorGLMM(X, np.asarray(rows.y, dtype=float), w, np.asarray(rows.codes[blk.factor]),
                                       blk.n_levels, np.asarray(blk.intercept_slopes, dtype=np.int64),
                                       blk.pattern, family=family, offset=fd.offset)
            if self.nagq > 1:
                nodes, weights = sg.gauss_hermite(self.nagq)
                self._dev = lambda x: prob.agq(x, nodes, weights)  # noqa: E731
            else:
                self._dev = lambda x: prob.laplace(x, want_grad=False)  # noqa: E731
                self._dev_grad = lambda x: prob.laplace(x, want_grad=True)  # noqa: E731
                self._grad = True
        else:
            prob = sg.MultiFactorGLMM(X, np.asarray(rows.y, dtype=float), w, fd.factors, blocks, family=family,
                                      offset=fd.offset, z_source=None if fd.Z_extra is None else fd.z_source)
            self._dev = prob.laplace
        self.lower_theta = self.theta_map.lower
        self.n_theta = self.lower_theta.size
        self.sigma = 1.0
        theta = np.asarray(est.theta_, dtype=float)
        beta = np.asarray(est.fixed_effects_, dtype=float)
        # polish the fit's optimum on this criterion (the fit stops at a gradient tolerance)
        x0 = np.r_[theta, beta]
        bounds = self.theta_map.bounds() + [(None, None)] * beta.size
        x1, f1 = self._minimize_x(lambda x: x, x0, bounds)
        f0 = self.deviance(x0)
        if not f1 < f0:
            x1, f1 = x0, f0
        self.theta, self._beta_hat, self.dev_min = x1[:self.n_theta], x1[self.n_theta:], float(f1)
        self.x_hat = self.to_sdcor(self.theta, 1.0)[:-1]
        self.kind = []
        for r, c in self.pos:
            self.kind.extend(np.where(r == c, "sd", "cor"))

    # -- the criterion -----------------------------------------------------------------------
    def lambdas(self, theta):
        return self.theta_map.lambdas(theta)

    def to_sdcor(self, theta, sigma):
        out = []
        for lam, (r, c) in zip(self.lambdas(theta), self.pos):
            C = lam @ lam.T
            sd = np.sqrt(np.clip(np.diag(C), 0, None))
            for a, b in zip(r, c):
                out.append(sd[a] if a == b else (C[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else 0.0))
        return np.array(out + [sigma])

    def deviance(self, x):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            f = self._dev(np.asarray(x, dtype=float))
        return float(f) if np.isfinite(f) else np.inf

    def _fun_grad(self, x):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            f, g = self._dev_grad(np.asarray(x, dtype=float))
        if not np.isfinite(f) or not np.all(np.isfinite(g)):
            return np.inf, None
        return float(f), np.asarray(g, dtype=float)

    def _minimize_x(self, to_x, z0, bounds, fixed=None):
        """Minimise the deviance over ``z`` (``x = to_x(z)``; ``fixed``: the positions of ``x`` that ``z``
        leaves out, for the exact gradient)."""
        z0 = np.asarray(z0, dtype=float)
        if z0.size == 0:
            return z0, self.deviance(to_x(z0))
        if not self._grad or to_x is None:
            return self._minimize(lambda z: self.deviance(to_x(z)), z0, bounds)
        keep = np.ones(self.n_theta + self._beta_size(z0, fixed), dtype=bool)
        if fixed is not None:
            keep[fixed] = False

        def fg(z):
            f, g = self._fun_grad(to_x(z))
            if g is None:
                return 1e300, np.zeros_like(z)
            return f, g[keep]

        lo = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
        hi = np.array([b[1] if b[1] is not None else np.inf for b in bounds])
        best, start = None, np.clip(z0, lo, hi)
        for _ in range(3):
            res = optimize.minimize(fg, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"ftol": 1e-15, "gtol": 1e-8, "maxiter": 2000, "maxls": 50})
            if best is not None and res.fun >= best.fun - 1e-11:
                best = best if best.fun <= res.fun else res
                break
            best, start = res, res.x
        return np.asarray(best.x, dtype=float), float(best.fun)

    def _beta_size(self, z, fixed):
        return z.size - self.n_theta + (0 if fixed is None else len(fixed))

    # -- zeta ---------------------------------------------------------------------------------
    def _zeta_var(self, i, value, warm):
        nv = self.x_hat.size
        scalar = all(len(r) == 1 for r, _ in self.pos)
        p = self._beta_hat.size
        if scalar:
            # theta is the standard deviation itself: profile in (theta, beta) with the exact gradient
            free = [k for k in range(self.n_theta + p) if k != i]

            def to_x(z):
                x = np.empty(self.n_theta + p)
                x[free] = z
                x[i] = value
                return x

            z0 = warm.get(i, np.r_[self.theta, self._beta_hat][free])
            bounds = [(0.0, None) if k < self.n_theta else (None, None) for k in free]
            z, dev = self._minimize_x(to_x, z0, bounds, fixed=[i])
        else:
            free_v = [k for k in range(nv) if k != i]

            def to_x(z):
                s = np.empty(nv + 1)
                s[free_v] = z[:nv - 1]
                s[i] = value
                s[-1] = 1.0
                th = self.to_theta(s)
                return np.r_[np.full(self.n_theta, np.nan) if th is None else th, z[nv - 1:]]

            z0 = warm.get(i, np.r_[self.x_hat[free_v], self._beta_hat])
            bounds = self._bounds(free_v) + [(None, None)] * p
            z, dev = self._minimize(lambda z: self._dev_or_inf(to_x(z)), z0, bounds)
        warm[i] = z
        return np.sign(value - self.x_hat[i]) * np.sqrt(max(dev - self.dev_min, 0.0))

    def _dev_or_inf(self, x):
        return np.inf if not np.all(np.isfinite(x)) else self.deviance(x)

    def _zeta_beta(self, j, b, warm):
        key = ("beta", j)
        p = self._beta_hat.size
        k = self.n_theta + j
        free = [m for m in range(self.n_theta + p) if m != k]

        def to_x(z):
            x = np.empty(self.n_theta + p)
            x[free] = z
            x[k] = b
            return x

        z0 = warm.get(key, np.r_[self.theta, self._beta_hat][free])
        bounds = self.theta_map.bounds() + [(None, None)] * (p - 1)
        z, dev = self._minimize_x(to_x, z0, bounds, fixed=[k])
        warm[key] = z
        return np.sign(b - self._beta_hat[j]) * np.sqrt(max(dev - self.dev_min, 0.0))

    @property
    def beta_hat(self):
        return self._beta_hat
