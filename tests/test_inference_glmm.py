"""Inference for MixedLogisticRegressor: LRT against glmer (tests/data/inference_reference_glmm.json, made by
tests/data/inference_reference.R), marginal probabilities for unseen groups, summary, bootstrap."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import skmixed
from skmixed import MixedLogisticRegressor, datasets

REF = json.loads((Path(__file__).parent / "data" / "inference_reference_glmm.json").read_text())


def _make(G, n, seed, sd=1.4):
    r = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = r.normal(size=G * n)
    u = r.normal(scale=sd, size=G)[g]
    y = (r.random(G * n) < 1 / (1 + np.exp(-(-1 + 0.5 * x + u)))).astype(int)
    return pd.DataFrame({"x": x, "g": g, "y": y})


@pytest.fixture(scope="module")
def heldout():
    train, test = _make(2000, 20, 1), _make(800, 20, 2)
    test["g"] += 10_000  # groups never seen in training
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MixedLogisticRegressor().fit(train[["x"]], train["y"], groups=train["g"])
    return m, test


def test_marginal_proba_is_calibrated_on_heldout_groups(heldout):
    """Random-effect SD 1.4: the u = 0 prediction is biased low on new groups, the marginal one is not."""
    m, test = heldout
    observed = test["y"].mean()
    se = test.groupby("g")["y"].mean().std(ddof=1) / np.sqrt(test["g"].nunique())
    marginal = m.predict_proba(test[["x"]], test["g"], marginal=True)[:, 1].mean()
    conditional = m.predict_proba(test[["x"]], test["g"])[:, 1].mean()
    assert abs(marginal - observed) < se
    assert abs(conditional - observed) > 3 * se


def test_marginal_proba_is_the_integral(heldout):
    m, test = heldout
    rows = test.head(3)
    p = m.predict_proba(rows[["x"]], rows["g"], marginal=True)[:, 1]
    b = m.fixed_effects_.to_numpy()
    s = np.sqrt(m.cov_re_["g"].iloc[0, 0])
    for k, x in enumerate(rows["x"]):
        eta = b[0] + b[1] * x
        ref, _ = integrate.quad(lambda u: 1 / (1 + np.exp(-(eta + u))) * np.exp(-0.5 * (u / s) ** 2)
                                / (s * np.sqrt(2 * np.pi)), -12 * s, 12 * s, epsabs=1e-13)
        assert p[k] == pytest.approx(ref, abs=1e-10)
    # known groups: the conditional modes, marginal or not
    train_rows = pd.DataFrame({"x": [0.3], "g": [5]})
    np.testing.assert_allclose(m.predict_proba(train_rows[["x"]], train_rows["g"], marginal=True),
                               m.predict_proba(train_rows[["x"]], train_rows["g"]), rtol=1e-12)


def test_lrt_matches_glmer_anova():
    """The table is lme4's; its numbers carry the GLMM fit's agreement with glmer's Laplace
    log-likelihood (1e-3 absolute, as tests/test_logistic.py: ours is 3e-4 higher on this fit)."""
    ref = REF["cbpp_lrt"]
    df = datasets.load_cbpp_bernoulli()
    g0 = MixedLogisticRegressor.from_formula("y ~ 1 + (1 | herd)", df)
    g1 = MixedLogisticRegressor.from_formula("y ~ C(period) + (1 | herd)", df)
    with warnings.catch_warnings():
        warnings.simplefilter("error", skmixed.RefitWarning)  # nothing to refit: ML already
        a = skmixed.anova(g1, g0)
    assert a["npar"].tolist() == ref["npar"]
    for col in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(a[col], ref[col], atol=2e-3)
    np.testing.assert_allclose(a["Chisq"].iloc[1], ref["Chisq"][1], atol=2e-3)
    np.testing.assert_allclose(a["Pr(>Chisq)"].iloc[1], ref["p"][1], rtol=1e-3)


def test_summary_confint_r2_bootstrap(heldout):
    m, _ = heldout
    s = m.summary()
    assert "Correlation of Fixed Effects:" in str(s) and "<2e-16" in str(s)
    assert list(s.to_frame().columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    ci = m.confint()
    np.testing.assert_allclose(ci.loc["x"], m.fixed_effects_["x"] + np.array([-1, 1]) * 1.959963984540054
                               * m.fixed_effects_se_["x"], rtol=1e-12)
    tau2 = m.cov_re_["g"].iloc[0, 0]
    assert m.icc_ == pytest.approx(tau2 / (tau2 + np.pi**2 / 3), rel=1e-12)
    assert 0 < m.r2_marginal_ < m.r2_conditional_ < 1


def test_glmm_bootstrap_small():
    df = datasets.load_cbpp_bernoulli()
    m = MixedLogisticRegressor.from_formula("y ~ C(period) + (1 | herd)", df)
    b = m.bootstrap(4, random_state=0)
    assert b.replicates.shape[1] == 1 + len(m.fixed_effects_)
    assert len(b.replicates) + b.n_failed == 4
    y = m.simulate(2, random_state=1)
    assert y.shape == (len(df), 2) and set(np.unique(y)) <= {0, 1}


def test_simulation_keeps_offsets_and_trials():
    """A constant offset is the intercept moved: the same seed simulates the same responses, and
    the bootstrap's intercepts move by the offset (before, offsets and trials were refused)."""
    df = datasets.load_cbpp_bernoulli()
    Xb = pd.get_dummies(df["period"], prefix="period", drop_first=True).astype(float)
    base = MixedLogisticRegressor().fit(Xb, df["y"], groups=df["herd"])
    off = MixedLogisticRegressor().fit(Xb, df["y"], groups=df["herd"], offset=np.full(len(df), 0.1))
    np.testing.assert_array_equal(off.simulate(5, random_state=0), base.simulate(5, random_state=0))
    b0, b1 = skmixed.bootstrap(base, 3, random_state=0), skmixed.bootstrap(off, 3, random_state=0)
    d = (b0.replicates - b1.replicates).to_numpy()
    np.testing.assert_allclose(d[:, 1], 0.1, atol=1e-4)  # (Intercept)
    np.testing.assert_allclose(np.delete(d, 1, axis=1), 0.0, atol=1e-4)
    cb = datasets.load_cbpp()
    X = pd.get_dummies(cb["period"], prefix="period", drop_first=True).astype(float)
    trials = MixedLogisticRegressor().fit(X, cb["incidence"] / cb["size"], groups=cb["herd"],
                                          sample_weight=cb["size"])
    k = trials.simulate(2, random_state=0) * cb["size"].to_numpy()[:, None]
    assert np.allclose(k, np.round(k))
