"""skmixed._numdiff: the one finite-difference module (issue #13).

Accuracy on functions with known derivatives, the bound rules, the evaluation order (part of the
result for criteria with warm-start state) and the identities the callers rely on (the diagonal
reused from a gradient's evaluations, the batched stencil equal to the pointwise Hessian).
"""

import numpy as np
import pytest

from skmixed._numdiff import (central_hessian, gradient, gradient_curvatures, gradient_in_box, hessian_from_gradient,
                              richardson_gradient, richardson_hessian, richardson_jacobian, second_difference,
                              stencil_derivatives, stencil_offsets)


def f(t):
    return float(np.exp(t[0]) * t[1] ** 2 + np.sin(t[1] * t[2]) + t[0] * t[2] ** 3)


def grad_f(t):
    a, b, c = t
    return np.array([np.exp(a) * b**2 + c**3, 2 * np.exp(a) * b + c * np.cos(b * c),
                     b * np.cos(b * c) + 3 * a * c**2])


def hess_f(t):
    a, b, c = t
    s, co = np.sin(b * c), np.cos(b * c)
    return np.array([[np.exp(a) * b**2, 2 * np.exp(a) * b, 3 * c**2],
                     [2 * np.exp(a) * b, 2 * np.exp(a) - c**2 * s, co - b * c * s],
                     [3 * c**2, co - b * c * s, -b**2 * s + 6 * a * c]])


X = np.array([0.3, -0.7, 1.2])


class Recorder:
    """A function that records the points it is evaluated at."""

    def __init__(self, fun):
        self.fun, self.points = fun, []

    def __call__(self, t):
        self.points.append(np.array(t, dtype=float))
        return self.fun(t)


def test_gradient_central_and_forward_at_bound():
    np.testing.assert_allclose(gradient(f, X, 1e-6), grad_f(X), rtol=1e-8)
    # a bound closer than the step: forward there (error O(h)), central elsewhere
    rec = Recorder(f)
    lower = np.array([X[0] - 1e-9, -np.inf, -np.inf])
    g = gradient(rec, X, 1e-6, lower)
    np.testing.assert_allclose(g, grad_f(X), rtol=1e-5)
    assert np.all(rec.points[1] == X)  # f(x) evaluated once, when first needed
    assert len(rec.points) == 1 + 1 + 2 + 2
    assert all(p[0] >= lower[0] for p in rec.points)


def test_gradient_order_steps_and_full_output():
    rec = Recorder(f)
    h = np.array([1e-4, 2e-4, 3e-4])
    restored = []
    g, fp, fm = gradient(rec, X, h, f0=f(X), absolute=True, forward=np.array([False, True, False]),
                         restore=lambda: restored.append(len(rec.points)), full_output=True)
    steps = [p - X for p in rec.points]
    expect = [(0, 1e-4), (0, -1e-4), (1, 2e-4), (2, 3e-4), (2, -3e-4)]
    assert len(steps) == len(expect)
    for d, (i, s) in zip(steps, expect):
        assert np.flatnonzero(d).tolist() == [i] and d[i] == pytest.approx(s, rel=1e-9)
    assert restored == [2, 3, 5]  # after each coordinate's evaluations
    assert np.isnan(fm[1]) and fm[0] == f(X - np.array([1e-4, 0, 0]))
    assert g[1] == (fp[1] - f(X)) / 2e-4
    assert g[0] == (fp[0] - fm[0]) / (2 * 1e-4)


def test_gradient_in_box_clips_to_the_box():
    lo, hi = np.array([0.3, -np.inf, -np.inf]), np.array([np.inf, np.inf, 1.2])
    rec = Recorder(f)
    g = gradient_in_box(rec, X, lo, hi, 1e-7)
    np.testing.assert_allclose(g, grad_f(X), rtol=1e-5)
    assert all(np.all(p >= lo) and np.all(p <= hi) for p in rec.points)
    assert len(rec.points) == 6  # both ends evaluated, the point itself where a side is clipped


def test_central_hessian_and_its_diagonal_reuse():
    H = central_hessian(f, X, 1e-4)
    np.testing.assert_allclose(H, hess_f(X), rtol=1e-6, atol=1e-6)
    idx = np.array([0, 2])
    h = 1e-4 * np.maximum(1.0, np.abs(X))
    Hs = central_hessian(f, X, h[idx], idx=idx)
    np.testing.assert_allclose(Hs, hess_f(X)[np.ix_(idx, idx)], rtol=1e-6, atol=1e-6)
    # the diagonal from a gradient's evaluations: bit for bit the same matrix, fewer evaluations
    _, fp, fm = gradient(f, X, h, absolute=True, full_output=True)
    rec = Recorder(f)
    H2 = central_hessian(rec, X, h[idx], f0=f(X), idx=idx, fp=fp, fm=fm)
    assert np.array_equal(H2, Hs)
    assert len(rec.points) == 4  # one mixed difference


def test_central_hessian_order_is_lme4s():
    rec = Recorder(f)
    central_hessian(rec, X, 0.5, idx=np.array([0, 1]))
    got = [tuple(np.round((p - X) / 0.5).astype(int)) for p in rec.points]
    assert got == [(0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0),
                   (1, 1, 0), (-1, 1, 0), (1, -1, 0), (-1, -1, 0)]


def test_richardson_derivatives():
    np.testing.assert_allclose(richardson_gradient(f, X, 5e-3 * np.ones(3)), grad_f(X), rtol=1e-8)
    # r = 2 is (4 d(h/2) - d(h)) / 3, bit for bit
    h, i = 5e-3, 1
    e = np.zeros(3)
    e[i] = h
    d1 = (f(X + e) - f(X - e)) / (2 * h)
    d2 = (f(X + e / 2) - f(X - e / 2)) / h
    assert richardson_gradient(f, X, np.array([h]), idx=np.array([i]))[0] == (4 * d2 - d1) / 3
    J = richardson_jacobian(lambda t: np.array([f(t), t[0] * t[1]]), X)
    np.testing.assert_allclose(J[0], grad_f(X), rtol=1e-8)
    np.testing.assert_allclose(J[1], [X[1], X[0], 0.0], atol=1e-10)
    np.testing.assert_allclose(richardson_hessian(f, X), hess_f(X), rtol=1e-7, atol=1e-7)


def test_hessian_from_gradient():
    np.testing.assert_allclose(hessian_from_gradient(grad_f, X), hess_f(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hessian_from_gradient(grad_f, X, grad_f(X)), hess_f(X), rtol=1e-4, atol=1e-4)


def test_batched_stencil_equals_pointwise_derivatives():
    pts = np.array([X, X[::-1] + 0.1])
    h = 1e-4 * np.maximum(1.0, np.abs(pts))
    offs = stencil_offsets(3)
    assert offs.shape == (1 + 6 + 12, 3)
    vals = np.array([[f(p + o * hp) for o in offs] for p, hp in zip(pts, h)])
    g, H = stencil_derivatives(vals, h)
    for a in range(2):
        # the same differences (points rounded differently: x + o h against x + e_i + e_j)
        np.testing.assert_allclose(H[a], central_hessian(f, pts[a], h[a]), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(H[a], hess_f(pts[a]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g[a], grad_f(pts[a]), rtol=1e-6)


def test_second_difference_elementwise():
    assert second_difference(np.array([1.01, 4.0]), np.array([1.0, 1.0]), np.array([1.01, 0.0]),
                             np.array([0.1, 1.0])) == pytest.approx([2.0, 2.0])


def test_gradient_curvatures_are_the_forward_hessians_diagonal():
    g0 = grad_f(X)
    c = gradient_curvatures(grad_f, X, g0, 1e-5, range(3))
    assert np.array_equal(c, np.diag(hessian_from_gradient(grad_f, X, g0)))
    np.testing.assert_allclose(gradient_curvatures(grad_f, X, g0, 1e-6, [2]), [hess_f(X)[2, 2]], rtol=1e-5)
