"""MixedLinearRegressor against lme4 1.1-31 (tests/data/*.json, copied from the shared reference fits).

Tolerances (issue 2): criterion within 1e-4 absolute; fixed effects within 1e-5 relative; their SEs,
variance components (vcov and sdcor) and sigma within 1e-4 relative; BLUPs within 1e-4 relative to the
largest BLUP of the same column (element-wise relative error is meaningless for BLUPs near zero).
"""

import numpy as np
from pathlib import Path

import pandas as pd
import pytest

from conftest import load_reference
from skmixed import MixedLinearRegressor
from skmixed import datasets

CASES = {
    "sleepstudy_reml": (datasets.load_sleepstudy, "Reaction ~ Days + (Days | Subject)", True),
    "sleepstudy_ml": (datasets.load_sleepstudy, "Reaction ~ Days + (Days | Subject)", False),
    "sleepstudy_uncorr": (datasets.load_sleepstudy, "Reaction ~ Days + (Days || Subject)", True),
    "dyestuff_reml": (datasets.load_dyestuff, "Yield ~ 1 + (1 | Batch)", True),
    "dyestuff2_reml": (datasets.load_dyestuff2, "Yield ~ 1 + (1 | Batch)", True),
    "penicillin_reml": (datasets.load_penicillin, "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
    "pastes_reml": (datasets.load_pastes, "strength ~ 1 + (1 | batch/cask)", True),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    loader, formula, reml = CASES[request.param]
    ref = load_reference(request.param)
    est = MixedLinearRegressor.from_formula(formula, loader(), reml=reml)
    return est, ref


def test_criterion(case):
    est, ref = case
    crit = est.reml_criterion_ if est.reml else est.deviance_
    assert crit == pytest.approx(ref["deviance_or_REMLcrit"], abs=1e-4)
    assert est.loglik_ == pytest.approx(ref["logLik"], abs=1e-4)
    if "AIC" in ref:
        assert est.aic_ == pytest.approx(ref["AIC"], abs=1e-4)
        assert est.bic_ == pytest.approx(ref["BIC"], abs=1e-4)


def test_fixed_effects(case):
    est, ref = case
    fe = pd.Series(ref["fixef"])
    np.testing.assert_allclose(est.fixed_effects_[fe.index], fe, rtol=1e-5)
    se = pd.Series(ref["fixef_se"])
    np.testing.assert_allclose(est.fixed_effects_se_[se.index], se, rtol=1e-4)


def test_variance_components(case):
    est, ref = case
    assert est.sigma_ == pytest.approx(ref["sigma"], rel=1e-4)
    ours = est.varcorr_.set_index(["grp", "var1", "var2"])
    for row in ref["varcorr"]:
        got = ours.loc[(row["grp"], row["var1"], row["var2"])]
        for key in ("vcov", "sdcor"):
            if row[key] == 0:
                assert abs(got[key]) < 1e-6
            else:
                assert got[key] == pytest.approx(row[key], rel=1e-4), (row, key)


def test_blups(case):
    est, ref = case
    for grp, rows in ref["ranef"].items():
        r = pd.DataFrame(rows).set_index("level").drop(columns=["_row"], errors="ignore")
        ours = est.random_effects_[grp].loc[r.index, r.columns]
        scale = np.abs(r.to_numpy()).max(axis=0)
        if np.all(scale == 0):
            assert np.abs(ours.to_numpy()).max() < 1e-6
            continue
        err = np.abs(ours.to_numpy() - r.to_numpy()).max(axis=0) / scale
        assert np.all(err < 1e-4), (grp, err)


def test_fitted_values(case):
    est, ref = case
    loader = CASES[[k for k in CASES if load_reference(k)["name"] == ref["name"]][0]][0]
    fitted = est.predict(loader().head(20))
    np.testing.assert_allclose(fitted, ref["fitted_head"], rtol=1e-5)


def test_theta(case):
    est, ref = case
    th = pd.Series(ref["theta"])
    got = est.theta_[th.index]
    np.testing.assert_allclose(got, th, rtol=2e-4, atol=1e-6)


def test_singular_flag(case):
    est, ref = case
    assert est.is_singular_ == (ref["name"].startswith("dyestuff2"))
    assert est.converged_


def test_conditional_sds_match_lme4_condvar():
    # lme4 1.1-31: attr(ranef(m, condVar = TRUE)$g, "postVar"), first levels:
    #   lmer(Reaction ~ Days + (Days | Subject), sleepstudy): sd 12.07086 (Intercept), 2.304839 (Days),
    #     cov -21.4445
    #   lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin): plate 0.2713593, sample 0.2021707
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", datasets.load_sleepstudy())
    sd = m.random_effects_sd_["Subject"].iloc[0]
    np.testing.assert_allclose(sd.to_numpy(), [12.07086, 2.304839], rtol=1e-5)
    m = MixedLinearRegressor.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load_penicillin())
    assert m.random_effects_sd_["plate"].iloc[0, 0] == pytest.approx(0.2713593, rel=1e-5)
    assert m.random_effects_sd_["sample"].iloc[0, 0] == pytest.approx(0.2021707, rel=1e-5)


def test_metacognition_reaches_lme4_criterion_or_better():
    # lme4 warned (max|grad| = 0.0037) on this fit; a correct optimum is at or below its criterion
    ref = load_reference("metacognition_lmm_reml")
    m = MixedLinearRegressor.from_formula("confidence ~ contrast + correct + (1 + contrast | id)",
                                          datasets.load_metacognition())
    assert m.reml_criterion_ <= ref["deviance_or_REMLcrit"] + 1e-6
    np.testing.assert_allclose(m.fixed_effects_[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-3)
    assert m.converged_


# ---------------------------------------------------------------------------------------------------
# Large crossed designs: dense parts of 311 and 603 rows take the derivative-free path (COBYQA) and the
# row-wise downdate of the dense block. Data generated once (8,000 rows, 600 x 300 x 8 levels) and
# fitted by tests/data/crossed_large_lmer.R (lme4 1.1-31, tight optimiser tolerances).
LARGE = ["crossed3", "slopes", "crossed3_ml"]


@pytest.fixture(scope="module")
def crossed_large():
    import json
    from pathlib import Path

    here = Path(__file__).parent / "data"
    return pd.read_csv(here / "crossed_large.csv"), json.loads((here / "crossed_large_lmer.json").read_text())


@pytest.mark.parametrize("key", LARGE)
def test_large_crossed_against_lmer(crossed_large, key, monkeypatch):
    from skmixed._solvers import lmm as slmm

    data, refs = crossed_large
    ref = refs[key]
    problems = []
    init = slmm.LMMProblem.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        problems.append(self)

    monkeypatch.setattr(slmm.LMMProblem, "__init__", keep)
    est = MixedLinearRegressor.from_formula(ref["call"], data, reml=ref["REML"])
    prob = problems[-1]  # the fitted problem on the user's columns (the optimiser's is scaled internally)
    assert prob.layout.m > 200  # the large-dense-part path is the one under test
    theta_ref = pd.Series(ref["theta"])
    # the factorisation itself: our criterion at lme4's theta is lme4's criterion
    assert prob.objective(theta_ref[est.theta_.index].to_numpy()) == pytest.approx(
        ref["deviance_or_REMLcrit"], rel=1e-12)
    # the optimum: as low as lme4's (measured 5e-9 to 1.4e-7 below), the same estimates
    crit = est.reml_criterion_ if est.reml else est.deviance_
    assert ref["deviance_or_REMLcrit"] - 1e-4 < crit < ref["deviance_or_REMLcrit"] + 1e-6
    np.testing.assert_allclose(est.theta_, theta_ref[est.theta_.index], rtol=0, atol=5e-5)
    fe = pd.Series(ref["fixef"])
    np.testing.assert_allclose(est.fixed_effects_[fe.index], fe, rtol=1e-5)
    np.testing.assert_allclose(est.fixed_effects_se_[fe.index], pd.Series(ref["fixef_se"]), rtol=1e-4)
    assert est.sigma_ == pytest.approx(ref["sigma"], rel=1e-5)


@pytest.mark.parametrize("start", [[0.0, -0.2, 0.0], [0.0, -0.5, 0.0], [0.0, 0.3, 0.0]])
def test_optimiser_leaves_a_correlated_saddle_on_the_boundary(start):
    """From Lambda = [[0, 0], [l21, 0]] (both diagonals 0: the slope's variance perfectly correlated
    with a zero-variance intercept) probing each zero diagonal alone keeps that correlation and
    L-BFGS-B stopped 22.9 above the optimum; the covariance-scale probes leave it. Bootstrap refits
    and warm starts can begin there."""
    df = datasets.load_sleepstudy()
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    prob = m._lmm_state.problem
    f_opt = prob.objective(np.asarray(m._lmm_state.theta))
    theta, _, _, _ = prob.optimize(theta0=np.array(start))
    assert prob.objective(theta) <= f_opt + 1e-8
    np.testing.assert_allclose(theta, m._lmm_state.theta, atol=1e-4)


def test_shared_optimiser_wrapper_takes_the_covariance_probes():
    """The GLMMs' wrapper (_optim.minimize_bounded) gets the same covariance-scale probes as an
    ``extra_probe``: on the sleepstudy criterion from the saddle it stalls without them."""
    from skmixed._solvers._optim import covariance_probes, minimize_bounded

    df = datasets.load_sleepstudy()
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    prob = m._lmm_state.problem
    f_opt = prob.objective(np.asarray(m._lmm_state.theta))
    lower = np.array([0.0, -np.inf, 0.0])

    def fg(t):
        f = prob.objective(t)
        g = np.array([(prob.objective(t + e) - prob.objective(t - e)) / 2e-6 for e in 1e-6 * np.eye(3)])
        return f, g

    terms = [(np.tril(np.ones((2, 2), dtype=bool)), np.array([0, 1, 1]), np.array([0, 0, 1]))]

    def extra(x, f0):
        return next((t for t in covariance_probes(x, terms) if prob.objective(t) < f0 - 1e-9 * abs(f0)), None)

    start = np.array([0.0, -0.2, 0.0])
    stalled, _ = minimize_bounded(fg, start, lower, fun=prob.objective)
    assert prob.objective(stalled.x) > f_opt + 1.0
    res, log = minimize_bounded(fg, start, lower, fun=prob.objective, extra_probe=extra)
    assert prob.objective(res.x) <= f_opt + 1e-6 and log.n_escapes >= 1 and res.success


def test_crossed_small_sd_reaches_lme4():
    """L-BFGS-B stopping on its relative-reduction test with the gradient still large is restarted.

    Two crossed intercepts, the second SD near 0 (tests/data/crossed_small_sd.R, ML). From
    the default start L-BFGS-B stopped at theta = (0.9566, 0.0114) with gradient 0.46 in the
    first component, 2.4e-4 above lme4's deviance, and reported convergence.
    """
    from pathlib import Path

    d = pd.read_csv(Path(__file__).parent / "data" / "crossed_small_sd.csv")
    m = MixedLinearRegressor(reml=False).fit(d[["x"]], d["y"], groups=d[["g0", "g1"]])
    assert m.converged_
    assert m.deviance_ <= 6142.36368636 + 1e-7  # lme4 1.1-31, bobyqa polished to rhoend 1e-12
    assert m.theta_.to_numpy() == pytest.approx([0.95755821156, 0.01299327761], rel=1e-4)


@pytest.mark.parametrize("which", ["a", "b"])
def test_small_fit_ending_on_a_boundary_finds_lmers_face(which):
    """19 rows, 5 groups, ``(x | g)``, ML: L-BFGS-B stopped on one face of the boundary (the
    intercept SD at 0, or a point inside where lmer's optimum has every variance at 0), 0.14 and
    0.18 log-likelihood units below lmer. A fit ending with an SD at 0 now also restarts from the
    flipped point and the usual start and compares theta = 0 (tests/data/small_boundary_lmm.R)."""
    import json

    ref = json.loads((Path(__file__).parent / "data" / "small_boundary_lmm.json").read_text())[which]
    d = pd.read_csv(Path(__file__).parent / "data" / "small_boundary_lmm.csv")
    d = d[d["set"] == which]
    m = MixedLinearRegressor(reml=False, random_slopes=["x"]).fit(d[["x", "z"]], d["y"], groups=d["g"])
    assert m.loglik_ >= ref["logLik"] - 1e-7
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), ref["fixef"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.theta_.to_numpy(), ref["theta"], atol=1e-4)
