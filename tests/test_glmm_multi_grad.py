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


def _vector_problem(family, design, weights, offset, seed=5, n=1200):
    """Crossed or nested factors with correlated vector terms, prior weights and an offset as asked."""
    rng = np.random.default_rng(seed)
    x, x2 = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, x2])
    if design == "crossed":
        levels = [50, 20]
        codes = [rng.integers(0, L, n) for L in levels]
        # (1 + x | a) + (1 + x + x2 | b): vector terms on the block-diagonal and the dense factor
        terms = [RandomTerm(0, True, (1,), ["(Intercept)", "x"]), RandomTerm(1, True, (1, 2), ["(Intercept)", "x", "x2"])]
    else:
        # (1 | a) + (1 + x | a:b), b nested in a: the vector term on the (larger) inner factor
        a = rng.integers(0, 25, n)
        ab = a * 4 + rng.integers(0, 4, n)
        levels, codes = [25, 100], [a, ab]
        terms = [RandomTerm(0, True, (), ["(Intercept)"]), RandomTerm(1, True, (1,), ["(Intercept)", "x"])]
    lp = -0.3 + 0.5 * x + sum(rng.normal(0, 0.6, L)[c] * (1 + 0.5 * x) for L, c in zip(levels, codes))
    off = 0.3 * rng.normal(size=n) if offset else None
    if offset:
        lp = lp + off
    if family is BINOMIAL:
        w = rng.integers(1, 4, n).astype(float) if weights else np.ones(n)
        y = rng.binomial(w.astype(int), 1 / (1 + np.exp(-lp))) / w
    else:
        w = rng.uniform(0.5, 2.0, n) if weights else np.ones(n)
        y = rng.poisson(np.exp(lp)).astype(float)
    blocks = amalgamate(terms, levels)
    return MultiFactorGLMM(X, y, w, [_Codes(c) for c in codes], blocks, family=family, offset=off)


def _vector_point(prob, seed=0):
    """A point off the optimum with every Lambda entry nonzero (off-diagonals of both signs)."""
    rng = np.random.default_rng(seed)
    diag = prob.theta_map.is_diagonal
    theta = np.where(diag, rng.uniform(0.3, 0.9, diag.size), rng.uniform(-0.3, 0.3, diag.size))
    return np.concatenate([theta, [-0.1, 0.35, 0.05]])


def _fd_tight(prob, x, h=1e-5):
    """Central differences of the Laplace deviance with PIRLS converged to a 1e-12 step."""
    u0 = [u.copy() for u in prob.u]

    def f(z):
        prob.u = [u.copy() for u in u0]
        return prob.pirls(z[:prob.n_theta], z[prob.n_theta:], tol=1e-12)[0]
    return fd_gradient(f, x, h, np.full(x.size, -np.inf))


@pytest.mark.parametrize("family", [BINOMIAL, POISSON], ids=["binomial", "poisson"])
@pytest.mark.parametrize("design", ["crossed", "nested"])
@pytest.mark.parametrize("weights,offset", [(False, False), (True, True)], ids=["plain", "weights-offset"])
def test_vector_terms_exact_gradient_matches_central_differences(family, design, weights, offset):
    from skmixed._solvers.glmm_multi_grad import BlockLaplaceGradient

    prob = _vector_problem(family, design, weights, offset)
    assert isinstance(prob.exact_gradient, BlockLaplaceGradient)
    x = _vector_point(prob)
    F, g = prob.laplace_grad(x, tol=1e-12)
    gf = _fd_tight(prob, x)
    assert np.isfinite(F) and abs(F - prob.pirls(x[:prob.n_theta], x[prob.n_theta:], tol=1e-12)[0]) < 1e-9 * abs(F)
    # measured: ~1e-10 of the largest component (the differences' own truncation and rounding)
    np.testing.assert_allclose(g, gf, rtol=1e-6, atol=1e-6 * np.max(np.abs(gf)))


def test_vector_terms_exact_gradient_on_the_boundary():
    """A singular Lambda (a zero SD, a correlation of +-1) needs no Lambda^{-1}: the gradient still holds."""
    prob = _vector_problem(BINOMIAL, "crossed", True, False)
    x = _vector_point(prob)
    x[2] = 0.0  # a's slope SD: Lambda_a singular (correlation +-1 with the intercept)
    x[3] = 0.0  # b's intercept SD
    _, g = prob.laplace_grad(x, tol=1e-12)
    gf = _fd_tight(prob, x)
    np.testing.assert_allclose(g, gf, rtol=1e-6, atol=1e-6 * np.max(np.abs(gf)))


def test_block_gradient_equals_the_scalar_one_on_scalar_terms():
    from skmixed._solvers.glmm_multi_grad import BlockLaplaceGradient

    prob = _problem(POISSON, slope=True)
    x = np.array([0.8, 0.5, 0.3, -0.1, 0.35])
    _, _, fac = prob.pirls(x[:3], x[3:], tol=1e-12)
    u = [uk.copy() for uk in prob.u]
    g_s, jac_s, gu_s = prob.exact_gradient.gradient(x[:3], x[3:], u, fac, want_jac=True)
    g_b, jac_b, gu_b = BlockLaplaceGradient(prob).gradient(x[:3], x[3:], u, fac, want_jac=True)
    np.testing.assert_allclose(g_b, g_s, rtol=1e-10, atol=1e-10 * np.max(np.abs(g_s)))
    for a, b in zip(jac_s, jac_b):
        np.testing.assert_allclose(b[:, 0, :], a, rtol=1e-9, atol=1e-12)
    for a, b in zip(gu_s, gu_b):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)


def test_vector_mode_jacobian_matches_finite_differences():
    prob = _vector_problem(POISSON, "nested", True, True)
    x = _vector_point(prob)
    nt = prob.n_theta
    _, _, fac = prob.pirls(x[:nt], x[nt:], tol=1e-12)
    u0 = [u.copy() for u in prob.u]
    _, jac, _ = prob.exact_gradient.gradient(x[:nt], x[nt:], u0, fac, want_jac=True)
    h = 1e-6
    for i in range(x.size):
        x2 = x.copy()
        x2[i] += h
        prob.u = [u.copy() for u in u0]
        prob.pirls(x2[:nt], x2[nt:], tol=1e-12)
        for k in range(len(u0)):
            fd = (prob.u[k] - u0[k]) / h
            np.testing.assert_allclose(jac[k][:, :, i], fd, atol=1e-4 * max(1.0, np.max(np.abs(fd))))


def test_vector_terms_exact_and_finite_difference_fits_agree():
    """The vector-term fit on the exact gradient reaches the finite-difference search's optimum or a better one."""
    from skmixed._solvers import glmm as sg

    prob = _vector_problem(BINOMIAL, "crossed", True, True, n=900)
    res = sg._fit_multi_factor(prob, prob.X, prob.y, prob.w, 1, 1e-5, 500)
    assert res.converged
    prob2 = _vector_problem(BINOMIAL, "crossed", True, True, n=900)
    prob2._grad = type(prob2.exact_gradient)(prob2)
    prob2._grad.applies = False  # force the finite-difference path
    assert prob2.exact_gradient is None
    res2 = sg._fit_multi_factor(prob2, prob2.X, prob2.y, prob2.w, 1, 1e-5, 500)
    assert res.deviance <= res2.deviance + 1e-6
    np.testing.assert_allclose(res.theta, res2.theta, atol=2e-3)
    np.testing.assert_allclose(res.beta, res2.beta, atol=2e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov_beta)), np.sqrt(np.diag(res2.vcov_beta)), rtol=2e-3)


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
