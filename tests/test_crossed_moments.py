"""Henderson's method-1 start for crossed random intercepts (skmixed._solvers.crossed_moments)."""

import numpy as np
import pytest

from skmixed._design.layout import BlockLayout, amalgamate
from skmixed._design.terms import RandomTerm
from skmixed._solvers.crossed_moments import henderson_start
from skmixed._solvers.lmm import LMMProblem, cross_products
from skmixed._solvers.lmm_iterative import CrossedIterative, CrossedStats
from skmixed._solvers.lmm_newton import ScalarNewton


def _data(levels, sds, n=12000, seed=3, weights=False):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, J, n) for J in levels]
    x = rng.normal(size=n) + 1.0
    y = 2.0 + 0.5 * x + rng.normal(size=n)
    for c, J, s in zip(codes, levels, sds):
        y += s * rng.normal(size=J)[c]
    w = rng.integers(1, 4, n).astype(float) if weights else None
    return codes, np.column_stack([np.ones(n), x]), y, w


def _problem(codes, X, y, w, reml=False):
    levels = [int(c.max()) + 1 for c in codes]
    blocks = amalgamate([RandomTerm(k, True, (), ["(Intercept)"]) for k in range(len(codes))], levels)
    lay = BlockLayout.build(blocks, codes, X.shape[1])
    return LMMProblem(lay, cross_products(lay, X, y, w, x_shift=np.array([0.0, X[:, 1].mean()]),
                                          y_shift=y.mean()), reml=reml), blocks


@pytest.mark.parametrize("levels,sds,weights", [((400, 250), (1.0, 0.6), False),
                                                ((300, 120, 9), (0.8, 0.5, 0.3), True)])
def test_start_is_near_the_optimum_and_both_paths_agree(levels, sds, weights):
    codes, X, y, w = _data(levels, sds, weights=weights)
    prob, blocks = _problem(codes, X, y, w)
    start = prob.moment_start()
    theta, _, converged = ScalarNewton(prob).minimize(start)
    assert converged
    # unbiased moment estimates on all factors together: a few percent from the ML optimum
    # (the per-factor ANOVA start counted the other factors' variance as its own: ~8 % off here)
    np.testing.assert_allclose(start, theta, rtol=0.06)
    # the iterative path's statistics give the same start (factors in the solver's order)
    order = [b.factor for b in blocks]
    st = CrossedStats.from_rows([codes[k] for k in order], [levels[k] for k in order], X, y, w,
                                x_shift=np.array([0.0, X[:, 1].mean()]), y_shift=y.mean())
    np.testing.assert_allclose(CrossedIterative(st, reml=False).moment_start(), start, rtol=1e-10)


def test_newton_from_the_start_needs_few_steps():
    codes, X, y, w = _data((400, 250), (1.0, 0.6), n=20000)
    prob, _ = _problem(codes, X, y, w)
    newton = ScalarNewton(prob)
    _, n_iter, converged = newton.minimize(prob.moment_start())
    assert converged and n_iter <= 3


def test_degenerate_inputs_give_none_or_the_bounds():
    # no residual variation left: no start
    assert henderson_start(10.0, np.eye(1) * 10, np.zeros(1), 0.0, [np.full(2, 5.0)], [np.full((2, 1), 5.0)],
                           [np.zeros(2)], {}) is None
    # no between-level variation: the lower clip (a zero start could not leave its bound)
    th = henderson_start(4.0, np.eye(1) * 4, np.zeros(1), 4.0, [np.full(2, 2.0)], [np.full((2, 1), 2.0)],
                         [np.zeros(2)], {})
    assert th.tolist() == [0.05]
