"""Exact gradient of the multi-factor (crossed / nested) Laplace deviance against central differences."""

import numpy as np
import pytest

from skmixed._design.layout import amalgamate
from skmixed._design.terms import RandomTerm
from skmixed._families import BINOMIAL, POISSON
from skmixed._numdiff import gradient as fd_gradient
from skmixed._solvers.glmm import MultiFactorGLMM


class _Codes:
    def __init__(self, codes):
        self.codes = codes


def _problem(family, slope=True, seed=3, n=1500, levels=(60, 25, 6)):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, L, n) for L in levels]
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    lp = -0.2 + 0.4 * x + sum(rng.normal(0, s, L)[c] for L, s, c in zip(levels, (1.0, 0.6, 0.4), codes))
    if family is BINOMIAL:
        # proportions with the trials as weights exercise the prior weights
        w = rng.integers(1, 4, n).astype(float)
        y = rng.binomial(w.astype(int), 1 / (1 + np.exp(-lp))) / w
    else:
        w = np.ones(n)
        y = rng.poisson(np.exp(lp)).astype(float)
    terms = [RandomTerm(0, True, (), ["(Intercept)"]), RandomTerm(1, True, (), ["(Intercept)"]),
             RandomTerm(2, False, (1,), ["x"]) if slope else RandomTerm(2, True, (), ["(Intercept)"])]
    blocks = amalgamate(terms, list(levels))
    return MultiFactorGLMM(X, y, w, [_Codes(c) for c in codes], blocks, family=family)


def _fd(prob, x, h=1e-5):
    u0 = [u.copy() for u in prob.u]

    def f(z):
        prob.u = [u.copy() for u in u0]
        return prob.laplace(z)
    return fd_gradient(f, x, h, np.full(x.size, -np.inf))


@pytest.mark.parametrize("family", [BINOMIAL, POISSON], ids=["binomial", "poisson"])
@pytest.mark.parametrize("slope", [False, True], ids=["intercepts", "slope"])
def test_exact_gradient_matches_central_differences(family, slope):
    prob = _problem(family, slope)
    assert prob.exact_gradient is not None
    x = np.array([0.8, 0.5, 0.3, -0.1, 0.35])
    F, g = prob.laplace_grad(x)
    gf = _fd(prob, x)
    assert np.isfinite(F)
    np.testing.assert_allclose(g, gf, rtol=1e-5, atol=1e-5 * np.max(np.abs(gf)))
    # the Laplace deviance itself is the one the finite differences see (PIRLS to full precision)
    assert abs(F - prob.laplace(x)) < 1e-8 * abs(F)


def test_exact_gradient_with_a_variance_at_zero():
    prob = _problem(BINOMIAL, slope=False)
    x = np.array([0.7, 0.0, 0.4, -0.2, 0.3])
    _, g = prob.laplace_grad(x)
    gf = _fd(prob, x)
    # F is even in a standard deviation: its derivative at 0 vanishes exactly
    assert g[1] == 0.0
    keep = [0, 2, 3, 4]
    np.testing.assert_allclose(g[keep], gf[keep], rtol=1e-5, atol=1e-5 * np.max(np.abs(gf)))


def test_mode_jacobian_matches_finite_differences():
    prob = _problem(POISSON, slope=True)
    x = np.array([0.8, 0.5, 0.3, -0.1, 0.35])
    _, _, fac = prob.pirls(x[:3], x[3:], tol=1e-12)
    u0 = [u.copy() for u in prob.u]
    _, jac, _ = prob.exact_gradient.gradient(x[:3], x[3:], u0, fac, want_jac=True)
    h = 1e-6
    for i in range(x.size):
        x2 = x.copy()
        x2[i] += h
        prob.u = [u.copy() for u in u0]
        prob.pirls(x2[:3], x2[3:], tol=1e-12)
        for k in range(3):
            fd = (prob.u[k] - u0[k])[:, 0] / h
            np.testing.assert_allclose(jac[k][:, i], fd, atol=1e-4 * max(1.0, np.max(np.abs(fd))))


def test_vector_terms_have_no_exact_gradient():
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.integers(0, 12, n), rng.integers(0, 5, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = (rng.random(n) < 0.5).astype(float)
    blocks = amalgamate([RandomTerm(0, True, (1,), ["(Intercept)", "x"]), RandomTerm(1, True, (), ["(Intercept)"])],
                        [12, 5])
    prob = MultiFactorGLMM(X, y, np.ones(n), [_Codes(a), _Codes(b)], blocks)
    assert prob.exact_gradient is None
    with pytest.raises(ValueError, match="scalar"):
        prob.laplace_grad(np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]))


def test_exact_and_finite_difference_fits_agree():
    """The exact-gradient fit reaches the optimum the finite-difference search finds (or a better one)."""
    from skmixed._solvers import glmm as sg

    prob = _problem(BINOMIAL, slope=False, n=1200, levels=(50, 20, 5))
    res = sg._fit_multi_factor(prob, prob.X, prob.y, prob.w, 1, 1e-5, 500)
    assert res.converged
    prob2 = _problem(BINOMIAL, slope=False, n=1200, levels=(50, 20, 5))
    prob2._grad = type(prob2.exact_gradient)(prob2)
    prob2._grad.applies = False  # force the finite-difference path
    res2 = sg._fit_multi_factor(prob2, prob2.X, prob2.y, prob2.w, 1, 1e-5, 500)
    assert res.deviance <= res2.deviance + 1e-6
    np.testing.assert_allclose(res.theta, res2.theta, atol=2e-3)
    np.testing.assert_allclose(res.beta, res2.beta, atol=2e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov_beta)), np.sqrt(np.diag(res2.vcov_beta)), rtol=2e-3)
