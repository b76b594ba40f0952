"""MixedLinearRegressor(weights="precision") against lme4 1.1-31 ``lmer(..., weights = w)``.

Reference: tests/data/sleepstudy_precision_weights.R (data with its weights: sleepstudy_weights.csv).
Tolerance 1e-6 (acceptance 3 of issue 19): logLik absolute, fixed effects / sigma relative, theta absolute.
"""

import numpy as np
import pandas as pd
import pytest

from conftest import DATA, load_reference
from skmixed import MixedLinearRegressor

CASES = {
    "reml": ("Reaction ~ Days + (Days | Subject)", True),
    "ml": ("Reaction ~ Days + (Days | Subject)", False),
    "intercept_ml": ("Reaction ~ Days + (1 | Subject)", False),
}


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "sleepstudy_weights.csv")


@pytest.mark.parametrize("key", sorted(CASES))
def test_against_lmer_weights(data, key):
    formula, reml = CASES[key]
    ref = load_reference("sleepstudy_precision_weights")[key]
    m = MixedLinearRegressor.from_formula(formula, data, sample_weight=data["w"], weights="precision", reml=reml)
    assert m.loglik_ == pytest.approx(ref["logLik"], abs=1e-6)
    crit = m.reml_criterion_ if reml else m.deviance_
    assert crit == pytest.approx(ref["deviance_or_REMLcrit"], abs=2e-6)
    np.testing.assert_allclose(m.fixed_effects_[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(m.fixed_effects_se_[list(ref["fixef_se"])], list(ref["fixef_se"].values()),
                               rtol=1e-5)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), atol=1e-6)
    assert m.sigma_ == pytest.approx(ref["sigma"], rel=1e-6)
    assert m.n_obs_ == ref["nobs"]


def test_frequency_weights_stay_the_default(data):
    X, y, g, w = data[["Days"]], data["Reaction"], data["Subject"], data["w"]
    freq = MixedLinearRegressor().fit(X, y, groups=g, sample_weight=w)
    prec = MixedLinearRegressor(weights="precision").fit(X, y, groups=g, sample_weight=w)
    assert freq.n_obs_ == pytest.approx(w.sum()) and prec.n_obs_ == len(data)
    assert abs(freq.loglik_ - prec.loglik_) > 1.0  # different models
    # a frequency weight of 2 is a duplicated row
    w2 = np.where(np.arange(len(data)) % 5 == 0, 2.0, 1.0)
    dup = data.loc[np.repeat(np.arange(len(data)), w2.astype(int))]
    fdup = MixedLinearRegressor().fit(dup[["Days"]], dup["Reaction"], groups=dup["Subject"])
    fw = MixedLinearRegressor().fit(X, y, groups=g, sample_weight=w2)
    assert fw.loglik_ == pytest.approx(fdup.loglik_, abs=1e-6)


def test_unit_and_rescaled_precision_weights(data):
    X, y, g, w = data[["Days"]], data["Reaction"], data["Subject"], data["w"].to_numpy()
    plain = MixedLinearRegressor().fit(X, y, groups=g)
    ones = MixedLinearRegressor(weights="precision").fit(X, y, groups=g, sample_weight=np.ones(len(y)))
    assert ones.loglik_ == pytest.approx(plain.loglik_, abs=1e-8)
    a = MixedLinearRegressor(weights="precision").fit(X, y, groups=g, sample_weight=w)
    b = MixedLinearRegressor(weights="precision").fit(X, y, groups=g, sample_weight=w / 1000)
    # sigma^2 / w_i is what the model fixes: scaling all weights rescales sigma (and theta = sd / sigma),
    # the random-effect covariance, the fixed effects and the likelihood stay
    assert b.loglik_ == pytest.approx(a.loglik_, abs=1e-6)
    assert b.sigma_ == pytest.approx(a.sigma_ / np.sqrt(1000), rel=1e-6)
    np.testing.assert_allclose(b.cov_re_["Subject"], a.cov_re_["Subject"], rtol=1e-5)
    np.testing.assert_allclose(b.fixed_effects_, a.fixed_effects_, rtol=1e-7)


def test_precision_weights_fixed_only_and_errors(data):
    X, y, g, w = data[["Days"]], data["Reaction"], data["Subject"], data["w"].to_numpy()
    # weighted least squares: logLik of lm(Reaction ~ Days, weights = w) includes 0.5 sum(log w)
    with pytest.warns(UserWarning, match="no groups"):
        m = MixedLinearRegressor(weights="precision", reml=False).fit(X, y, sample_weight=w)
    Xd = np.column_stack([np.ones(len(y)), X["Days"]])
    beta = np.linalg.solve(Xd.T @ (w[:, None] * Xd), Xd.T @ (w * y))
    rss = np.sum(w * (y - Xd @ beta) ** 2)
    n = len(y)
    ll = 0.5 * (np.log(w).sum() - n * (np.log(2 * np.pi * rss / n) + 1))
    assert m.loglik_ == pytest.approx(ll, abs=1e-8)
    with pytest.raises(ValueError, match="sample_weight > 0"):
        MixedLinearRegressor(weights="precision").fit(X, y, groups=g, sample_weight=np.where(w > 1, w, 0.0))
    with pytest.raises(ValueError, match="'frequency' or 'precision'"):
        MixedLinearRegressor(weights="inverse").fit(X, y, groups=g)
    est = MixedLinearRegressor(weights="precision")
    with pytest.raises(ValueError, match="partial_fit"):
        est.partial_fit(X, y, groups=g, sample_weight=w)
    assert not hasattr(est, "n_features_in_")
