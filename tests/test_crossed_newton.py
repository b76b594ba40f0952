"""The Newton path for LMMs with several scalar terms and a large dense part (skmixed._solvers.lmm_newton).

Checks the analytic gradient against central differences, the optimum against the derivative-free
path and against lme4 (tests/data/crossed_weighted_lmer.R: three crossed scalar terms, one a random
slope, integer frequency weights; lme4 fitted on the rows replicated by their weights).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmixed import MixedLinearRegressor
from skmixed._design.layout import BlockLayout, amalgamate
from skmixed._design.terms import RandomTerm
from skmixed._solvers import lmm as slmm
from skmixed._solvers.lmm_newton import ScalarNewton
from skmixed._threads import blas_for_dense

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def weighted():
    d = pd.read_csv(DATA / "crossed_weighted.csv")
    return d, json.loads((DATA / "crossed_weighted_lmer.json").read_text())


def _problem(d, reml, weights=True, slope=True, nested=False):
    """LMMProblem for y ~ x + (1|a) + (1|b) + (0 + x|c) on the stored data."""
    codes = [pd.factorize(d[k], sort=True)[0].astype(np.int64) for k in ("a", "b", "c")]
    if nested:  # b within a: a's level fixes b's
        codes[1] = codes[0] * 3 + codes[1] % 3
        codes[1] = pd.factorize(codes[1], sort=True)[0].astype(np.int64)
    J = [int(c.max()) + 1 for c in codes]
    last = RandomTerm(2, False, (1,), ("x",)) if slope else RandomTerm(2, True, (), ("(Intercept)",))
    terms = [RandomTerm(0, True, (), ("(Intercept)",)), RandomTerm(1, True, (), ("(Intercept)",)), last]
    blocks = amalgamate(terms, J)
    X = np.column_stack([np.ones(len(d)), d["x"].to_numpy()])
    lay = BlockLayout.build(blocks, codes, 2)
    w = d["w"].to_numpy(float) if weights else None
    return slmm.LMMProblem(lay, slmm.cross_products(lay, X, d["y"].to_numpy(), w), reml=reml)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("weights,slope,nested", [(True, True, False), (False, False, False), (True, False, True)])
def test_gradient_matches_central_differences(weighted, reml, weights, slope, nested):
    with blas_for_dense(243):  # the optimiser's thread setting: these loops are too small to thread
        _check_gradient(_problem(weighted[0], reml, weights, slope, nested))


def _check_gradient(prob):
    newton = ScalarNewton(prob)
    theta = np.array([0.7, 0.45, 0.3])
    f, fac = newton.evaluate(theta)
    g, H = newton.derivatives(theta, fac)
    h = 1e-5
    fd = np.array([(prob.objective(theta + e) - prob.objective(theta - e)) / (2 * h) for e in np.eye(3) * h])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)
    # the average-information Hessian is symmetric positive definite (the observed one need not be here)
    assert np.allclose(H, H.T) and np.all(np.linalg.eigvalsh(H) > 0)


@pytest.mark.parametrize("reml", [False, True])
def test_newton_reaches_the_derivative_free_optimum(weighted, reml, monkeypatch):
    prob = _problem(weighted[0], reml)
    assert prob.layout.m > 200
    theta, n_iter, converged, _ = prob.optimize()
    assert converged and n_iter <= 8
    f_newton = prob.objective(theta)
    # the derivative-free path (COBYQA, what such designs took before) lands on the same point, not lower
    monkeypatch.setattr(slmm, "scalar_terms", lambda layout: False)
    theta_dfo, *_ = prob.optimize()
    assert f_newton <= prob.objective(theta_dfo) + 1e-10
    assert prob.objective(theta_dfo) - f_newton < 1e-6
    np.testing.assert_allclose(theta, theta_dfo, atol=2e-4)
    # and the gradient vanishes there
    with blas_for_dense(prob.layout.m):
        _check_stationary(prob, theta)


def _check_stationary(prob, theta):
    newton = ScalarNewton(prob)
    g, H = newton.derivatives(theta, newton.evaluate(theta)[1])
    assert g @ np.linalg.solve(H, g) < 1e-8
    # where the average information is close to the observed Hessian (what makes the steps Newton's)
    h = 1e-5
    Hfd = np.array([(newton.derivatives(theta + e, newton.evaluate(theta + e)[1])[0]
                     - newton.derivatives(theta - e, newton.evaluate(theta - e)[1])[0]) / (2 * h)
                    for e in np.eye(3) * h])
    np.testing.assert_allclose(H, (Hfd + Hfd.T) / 2, rtol=0.25, atol=0.1 * np.abs(Hfd).max())


@pytest.mark.parametrize("key", ["reml", "ml"])
def test_weighted_crossed_against_lmer(weighted, key, monkeypatch):
    d, refs = weighted
    ref = refs[key]
    problems = []
    init = slmm.LMMProblem.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        problems.append(self)

    monkeypatch.setattr(slmm.LMMProblem, "__init__", keep)
    est = MixedLinearRegressor.from_formula(ref["call"], d, sample_weight=d["w"].to_numpy(float), reml=ref["REML"])
    assert problems[-1].layout.m > 200  # the Newton path
    assert est.converged_
    crit = est.reml_criterion_ if est.reml else est.deviance_
    # lme4's optimum (tight tolerances) and ours agree; ours is not worse
    assert ref["deviance_or_REMLcrit"] - 1e-5 < crit <= ref["deviance_or_REMLcrit"] + 1e-7
    th = pd.Series(ref["theta"])
    np.testing.assert_allclose(est.theta_[th.index], th, atol=2e-5)
    fe = pd.Series(ref["fixef"])
    np.testing.assert_allclose(est.fixed_effects_[fe.index], fe, rtol=1e-5)
    np.testing.assert_allclose(est.fixed_effects_se_[fe.index], pd.Series(ref["fixef_se"]), rtol=1e-4)
    assert est.sigma_ == pytest.approx(ref["sigma"], rel=1e-5)
    np.testing.assert_allclose(est.random_effects_["a"].iloc[:5, 0], ref["ranef_a"], atol=2e-5)
    np.testing.assert_allclose(est.random_effects_["c"].iloc[:5, 0], ref["ranef_c"], atol=2e-5)


def test_results_reuse_the_factor_at_the_optimum(weighted):
    """Conditional variances from the Newton path's inverse equal the general computation's."""
    for reml in (False, True):
        prob = _problem(weighted[0], reml)
        theta, *_ = prob.optimize()
        fast = prob.result(theta)
        prob._at_optimum = None  # the general path: a fresh factorisation and triangular inverse
        slow = prob.result(theta)
        assert fast.objective == pytest.approx(slow.objective, rel=1e-13)
        for a, b in zip(fast.condvar, slow.condvar):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)
        for a, b in zip(fast.b, slow.b):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast.vcov_beta, slow.vcov_beta, rtol=1e-10)


def test_zero_variance_lands_on_the_bound(monkeypatch):
    """A crossed factor without variance: the Newton path holds it at zero, as low as the derivative-free path."""
    rng = np.random.default_rng(0)
    n = 1500
    a, b = rng.integers(0, 300, n), rng.integers(0, 220, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.3, 300)[a] + rng.normal(0, 0.05, 220)[b] + rng.normal(size=n)
    df = pd.DataFrame(dict(y=y, x=x, a=a, b=b))
    m = MixedLinearRegressor(reml=False).fit(df[["x"]], df["y"], groups=df[["a", "b"]])
    assert m.converged_ and m.is_singular_ and m.theta_.iloc[1] == 0.0 and m.theta_.iloc[0] > 0.2
    monkeypatch.setattr(slmm, "scalar_terms", lambda layout: False)
    m2 = MixedLinearRegressor(reml=False).fit(df[["x"]], df["y"], groups=df[["a", "b"]])
    assert m.deviance_ <= m2.deviance_ + 1e-9
    np.testing.assert_allclose(m.theta_, m2.theta_, atol=1e-4)
