"""Exponential families of the GLMMs: link, inverse link, variance, unit deviance, numba kernel id.

The numba kernels (:mod:`skmixed._kernels.glmm`) evaluate a row's mean, deviance and working
weight by the family's ``kernel_id`` (both families here use their canonical link, so penalized
IRLS is Newton's method and half the Hessian of the penalized deviance is ``Lam' Z' W Z Lam + I``).
The objects here hold what Python code needs: the same functions on arrays (the multi-factor path,
start values, prediction) and the normalising constant of the log-likelihood, which the kernels
leave out (it does not depend on the parameters) and the fit adds back so ``loglik_`` equals
glmer's ``logLik``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

__all__ = ["Family", "Binomial", "Poisson", "BINOMIAL", "POISSON", "get_family", "check_offset"]


class Family:
    """A GLM family with its canonical link.

    Attributes
    ----------
    name, link : str
        As R prints them (``binomial``/``logit``, ``poisson``/``log``).
    kernel_id : int
        The family's id in the numba kernels.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._families import POISSON
    >>> POISSON.linkinv(np.log(np.array([2.0, 3.0])))
    array([2., 3.])
    >>> float(POISSON.unit_deviance(np.array([2.0]), np.array([2.0]))[0])
    0.0
    """

    name = ""
    link = ""
    kernel_id = -1

    def linkfun(self, mu):
        raise NotImplementedError

    def simulate(self, mu, w, rng):
        """Responses drawn at means ``mu`` (``(n,)`` or ``(n, n_sim)``) for rows of weights ``w``
        (None: unit weights), on the scale the fit takes them (proportions for weighted binomial rows)."""
        raise NotImplementedError

    def linkinv(self, eta):
        raise NotImplementedError

    def variance(self, mu):
        raise NotImplementedError

    def unit_deviance(self, y, mu):
        """``d(y, mu)``: twice the log-likelihood ratio of the saturated model, per unit weight."""
        raise NotImplementedError

    def kernel_deviance(self, y, eta, w):
        """What the kernels sum per row: ``-2 w (y eta - b(eta))`` (the log-likelihood without its constant)."""
        raise NotImplementedError

    def loglik_constant(self, y, w):
        """``-2`` times the parameter-free part of the log-likelihood: ``-2 loglik = kernel sum + this``."""
        raise NotImplementedError

    def saturated_constant(self, y, w):
        """``2 sum w (y theta_sat - b(theta_sat))``: kernel sum + this = sum of the unit deviances.

        glmer reports the adaptive Gauss-Hermite (nAGQ > 1) logLik on that scale (its AGQ
        deviance sums deviance residuals where the Laplace one uses ``aic()``); both are 0
        for 0/1 binomial rows.
        """
        raise NotImplementedError

    def check_y(self, y):
        """Raise ValueError when y is outside the family's support."""

    def start_mean(self, y, w, offset=None):
        """The weighted mean response an intercept-only start should reproduce (link scale)."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(link={self.link!r})"


class Binomial(Family):
    """Binomial with logit link; y a 0/1 outcome or a proportion with the trials as weights (glmer's ``weights=``)."""

    name, link, kernel_id = "binomial", "logit", 0

    def linkfun(self, mu):
        return special.logit(mu)

    def linkinv(self, eta):
        return special.expit(eta)

    def variance(self, mu):
        return mu * (1.0 - mu)

    def unit_deviance(self, y, mu):
        return 2.0 * (special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))

    def kernel_deviance(self, y, eta, w):
        return 2.0 * w * (np.logaddexp(0.0, eta) - y * eta)

    def loglik_constant(self, y, w):
        # -2 log choose(n, k) with n = w trials and k = w y successes; 0 for 0/1 rows
        # (frequency weights and trials agree there), as glmer's binomial()$aic
        n = np.round(w)
        k = np.round(w * y)
        return float(-2.0 * np.sum(special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)))

    def saturated_constant(self, y, w):
        return float(2.0 * np.sum(w * (special.xlogy(y, y) + special.xlogy(1.0 - y, 1.0 - y))))

    def simulate(self, mu, w, rng):
        # glmer's simulate: a weighted row is w trials (a proportion of w successes); frequency
        # weights are the same thing, w identical rows whose likelihood is that of their sum
        if w is None:
            return (rng.random(mu.shape) < mu).astype(float)
        n = np.round(np.asarray(w, dtype=float))[:, None] if mu.ndim == 2 else np.round(w)
        return rng.binomial(n.astype(np.int64), mu) / n

    def check_y(self, y):
        if np.any((y < 0) | (y > 1)):
            raise ValueError("a binomial response must be 0/1 or a proportion in [0, 1]")

    def start_mean(self, y, w, offset=None):
        return float(np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6))


class Poisson(Family):
    """Poisson with log link; an ``offset`` (e.g. ``log(exposure)``) enters the linear predictor."""

    name, link, kernel_id = "poisson", "log", 1

    def linkfun(self, mu):
        return np.log(mu)

    def linkinv(self, eta):
        return np.exp(eta)

    def variance(self, mu):
        return mu

    def unit_deviance(self, y, mu):
        return 2.0 * (special.xlogy(y, y / mu) - (y - mu))

    def kernel_deviance(self, y, eta, w):
        return 2.0 * w * (np.exp(eta) - y * eta)

    def loglik_constant(self, y, w):
        return float(2.0 * np.sum(w * special.gammaln(y + 1.0)))

    def saturated_constant(self, y, w):
        return float(2.0 * np.sum(w * (special.xlogy(y, y) - y)))

    def simulate(self, mu, w, rng):
        # frequency weights: w identical rows, whose likelihood is that of their sum ~ Poisson(w mu)
        if w is None:
            return rng.poisson(mu).astype(float)
        w = np.asarray(w, dtype=float)[:, None] if mu.ndim == 2 else np.asarray(w, dtype=float)
        return rng.poisson(w * mu) / w

    def check_y(self, y):
        if np.any(y < 0):
            raise ValueError("a Poisson response must be non-negative counts")
        if np.any(np.abs(y - np.round(y)) > 1e-8 * np.maximum(1.0, np.abs(y))):
            # glmer's poisson()$aic warns alike: the likelihood of non-integer counts is not a Poisson one
            warnings.warn("non-integer counts in a Poisson model: the log-likelihood (and AIC/BIC) is not a "
                          "Poisson likelihood", UserWarning, stacklevel=4)

    def start_mean(self, y, w, offset=None):
        # the intercept reproducing the total: sum w y = exp(b0) sum w exp(offset)
        expo = np.average(np.exp(offset), weights=w) if offset is not None and offset.size else 1.0
        return float(max(np.average(y, weights=w), 1e-6) / expo)


BINOMIAL = Binomial()
POISSON = Poisson()


def get_family(family) -> Family:
    """A :class:`Family` from an instance or a name (``"binomial"``, ``"poisson"``)."""
    if isinstance(family, Family):
        return family
    names = {"binomial": BINOMIAL, "poisson": POISSON}
    if isinstance(family, str) and family.lower() in names:
        return names[family.lower()]
    raise ValueError(f"family must be one of {sorted(names)}, got {family!r}")


def check_offset(offset, n):
    """``offset`` as a finite float64 n-vector (None stays None); ValueError naming the problem."""
    if offset is None:
        return None
    off = np.asarray(offset)
    if off.ndim == 0:
        off = np.full(n, float(off))
    if off.ndim != 1 or off.shape[0] != n:
        raise ValueError(f"offset must be a 1-D array of {n} values (one per row), got shape {off.shape}")
    try:
        off = off.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"offset must be numeric: {e}") from None
    if not np.all(np.isfinite(off)):
        raise ValueError("offset contains NaN or infinite values")
    return off
