"""Kenward-Roger against pbkrtest 0.5.2 / lmerTest 3.1-3 (tests/data/kenward_roger_reference.json, made by
tests/data/kenward_roger_reference.R).

Models: sleepstudy's random-slope model (balanced: pbkrtest's adjustment of the covariance is zero), the
unbalanced sleepstudy (30 rows dropped; correlated and uncorrelated slopes, random intercept, and a
three-level factor whose F test is scaled), and two models with two grouping factors (Penicillin, crossed;
Pastes, nested), which take the dense path. Tolerances: at lme4's estimates the adjusted covariance, df
and F scaling equal pbkrtest's to 1e-6 relative (measured ~1e-11); at our own optimum the public
tables equal lmerTest's to 1e-3 (issue 18's acceptance).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import skmixed
from skmixed import MixedLinearRegressor, datasets
from skmixed.inference import _kenward_roger as kr

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "kenward_roger_reference.json").read_text())


def _unbalanced():
    return pd.read_csv(DATA / "sleepstudy_unbalanced.csv", dtype={"Subject": str})


MODELS = {
    "sleepstudy": (datasets.load_sleepstudy, "Reaction ~ Days + (Days | Subject)"),
    "sleepstudy_unbalanced": (_unbalanced, "Reaction ~ Days + phase + (Days | Subject)"),
    "sleepstudy_unbalanced0": (_unbalanced, "Reaction ~ Days + (1 | Subject)"),
    "sleepstudy_unbalanced_uncorr": (_unbalanced, "Reaction ~ Days + (Days || Subject)"),
    "penicillin": (datasets.load_penicillin, "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    "pastes": (datasets.load_pastes, "strength ~ 1 + (1 | batch) + (1 | sample)"),
}
_CACHE = {}


def fitted(name):
    if name not in _CACHE:
        loader, formula = MODELS[name]
        _CACHE[name] = MixedLinearRegressor.from_formula(formula, loader())
    return _CACHE[name]


@pytest.mark.parametrize("name", list(MODELS))
def test_adjusted_covariance_and_df_at_lme4s_estimates_equal_pbkrtest(name):
    ref = REF[name]
    st = fitted(name)._lmm_state
    pc = kr.KRPieces(st.problem, np.array(ref["theta"]), ref["sigma"][0])
    T = st.T
    Phi, PhiA = T @ pc.Phi @ T.T, T @ pc.PhiA @ T.T
    rPhi, rPhiA = np.array(ref["Phi"]), np.array(ref["PhiA"])
    np.testing.assert_allclose(Phi, rPhi, rtol=1e-8)
    np.testing.assert_allclose(PhiA, rPhiA, rtol=1e-8)
    adj, radj = PhiA - Phi, rPhiA - rPhi
    scale = np.abs(rPhi).max()
    if np.abs(radj).max() > 1e-8 * scale:  # the unbalanced models: the adjustment itself to 1e-6
        np.testing.assert_allclose(adj, radj, rtol=1e-6, atol=1e-6 * np.abs(radj).max())
    else:
        assert np.abs(adj).max() < 1e-8 * scale
    df = [kr.kr_adjust(pc, row @ T)[1] for row in np.eye(len(ref["df"]))]
    np.testing.assert_allclose(df, ref["df"], rtol=1e-6)
    for term, k in ref["krmodcomp"].items():
        cols = [i for i, t in enumerate(fitted(name).fixed_effects_.index) if t.startswith(term)]
        L = np.eye(len(ref["df"]))[cols]
        q, ddf, scale_f = kr.kr_adjust(pc, L @ T)
        assert q == k["ndf"][0]
        np.testing.assert_allclose([ddf, scale_f], [k["ddf"][0], k["F_scaling"][0]], rtol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_kenward_roger_table_matches_lmertest(name):
    """Issue 18's acceptance: adjusted SEs, df, t and p equal lmerTest's ddf="Kenward-Roger" to 1e-3."""
    ref = REF[name]
    ct = skmixed.coef_table(fitted(name), ddf="Kenward-Roger")
    assert list(ct.index) == ref["term"]
    for col, key in [("Estimate", "estimate"), ("Std. Error", "se"), ("df", "df"), ("t value", "t"),
                     ("Pr(>|t|)", "p")]:
        np.testing.assert_allclose(ct[col], ref[key], rtol=1e-3, err_msg=col)


@pytest.mark.parametrize("name", ["sleepstudy", "sleepstudy_unbalanced", "sleepstudy_unbalanced_uncorr"])
def test_kenward_roger_anova_matches_lmertest(name):
    ref = REF[name]["anova"]
    a = skmixed.anova(fitted(name), ddf="Kenward-Roger")
    assert list(a.index) == ref["term"]
    for col, key in [("NumDF", "numdf"), ("DenDF", "dendf"), ("F value", "F"), ("Pr(>F)", "p"),
                     ("Sum Sq", "sumsq"), ("Mean Sq", "meansq")]:
        np.testing.assert_allclose(a[col], ref[key], rtol=1e-3, err_msg=col)


def test_summary_says_kenward_roger():
    s = fitted("sleepstudy_unbalanced").summary(ddf="Kenward-Roger")
    assert "Kenward-Roger's method" in str(s)
    np.testing.assert_allclose(s.to_frame()["Std. Error"], REF["sleepstudy_unbalanced"]["se"], rtol=1e-3)


def _brute_force_phi_a(X, Zs, covs, s2):
    """pbkrtest's vcovAdj on the n x n V (Zs: per term the (n, J*q) design, covs its q x q covariance)."""
    n = X.shape[0]
    G = []
    V = s2 * np.eye(n)
    for Z, D in zip(Zs, covs):
        q = D.shape[0]
        J = Z.shape[1] // q
        V += Z @ np.kron(np.eye(J), D) @ Z.T
        for a in range(q):
            for b in range(a + 1):
                E = np.zeros((q, q))
                E[a, b] = E[b, a] = 1.0
                G.append(Z @ np.kron(np.eye(J), E) @ Z.T)
    G.append(np.eye(n))
    Vi = np.linalg.inv(V)
    Phi = np.linalg.inv(X.T @ Vi @ X)
    P = [-X.T @ Vi @ g @ Vi @ X for g in G]
    Q = [[X.T @ Vi @ g @ Vi @ h @ Vi @ X for h in G] for g in G]
    ng = len(G)
    IE2 = np.array([[np.trace(Vi @ G[i] @ Vi @ G[j]) - 2 * np.sum(Phi * Q[i][j])
                     + np.trace(Phi @ P[i] @ Phi @ P[j]) for j in range(ng)] for i in range(ng)])
    W = 2 * np.linalg.inv(IE2)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j]) for i in range(ng) for j in range(ng))
    return Phi, Phi + 2 * Phi @ U @ Phi


def test_dense_path_with_a_vector_term_equals_the_n_by_n_computation():
    """Crossed factors with a random slope on the smaller one (a vector term in the dense part), and
    unbalanced rows: the cross-product algebra equals pbkrtest's formulas on the n x n V."""
    rng = np.random.default_rng(18)
    n = 150
    g1 = rng.integers(0, 12, n)
    g2 = rng.integers(0, 5, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=12)[g1] + (rng.normal(size=5) * 0.7)[g2] * x \
        + rng.normal(size=5)[g2] + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "g1": g1.astype(str), "g2": g2.astype(str)})
    m = MixedLinearRegressor.from_formula("y ~ x + (1 | g1) + (x | g2)", df)
    X = np.c_[np.ones(n), x]
    Z1 = (g1[:, None] == np.arange(12)).astype(float)
    Z2 = np.zeros((n, 10))
    Z2[np.arange(n), 2 * g2] = 1.0
    Z2[np.arange(n), 2 * g2 + 1] = x
    cov = m.cov_re_
    Phi, PhiA = _brute_force_phi_a(X, [Z1, Z2], [cov["g1"].to_numpy(), cov["g2"].to_numpy()], m.sigma_**2)
    assert np.abs(PhiA - Phi).max() > 1e-6 * np.abs(Phi).max()  # a real adjustment
    var = skmixed.coef_table(m, ddf="Kenward-Roger")["Std. Error"].to_numpy() ** 2
    np.testing.assert_allclose(var, np.diag(PhiA), rtol=1e-8)


def test_refusals_name_the_reason(monkeypatch):
    m_ml = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", datasets.load_sleepstudy(),
                                             reml=False)
    with pytest.raises(ValueError, match="REML"):
        m_ml.summary(ddf="Kenward-Roger")
    monkeypatch.setattr(kr, "MAX_DENSE_Q", 20)
    m = MixedLinearRegressor.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load_penicillin())
    with pytest.raises(ValueError, match="random-effect columns"):
        skmixed.coef_table(m, ddf="Kenward-Roger")
    # the estimator is left as it was: Satterthwaite still works
    assert np.isfinite(skmixed.coef_table(m)["df"]).all()


def test_one_factor_path_does_not_grow_with_rows():
    """Many groups, one factor: per-level blocks only (no n x n or q x q matrix); the p-values are
    close to Satterthwaite's at this size."""
    rng = np.random.default_rng(3)
    J, per = 3000, 8
    g = np.repeat(np.arange(J), per)
    x = rng.normal(size=J * per)
    y = 2 + x + rng.normal(size=J)[g] + rng.normal(size=J)[g] * 0.3 * x + rng.normal(size=J * per)
    m = MixedLinearRegressor.from_formula("y ~ x + (x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    ct = skmixed.coef_table(m, ddf="Kenward-Roger")
    cs = skmixed.coef_table(m)
    np.testing.assert_allclose(ct["Std. Error"], cs["Std. Error"], rtol=1e-3)
    np.testing.assert_allclose(ct["df"], cs["df"], rtol=0.05)
    assert stats.t.sf(2, ct["df"].iloc[0]) > 0
