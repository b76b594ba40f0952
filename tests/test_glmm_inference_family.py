"""Inference on GLMMs with an offset, frequency weights or the Poisson family (profile intervals,
likelihood-ratio tables, simulate, bootstrap) against lme4 1.1-31.

References: tests/data/glmm_inference_refs.json, made by tests/data/glmm_inference_refs.R on MASS's
epil. Profile intervals to 1e-3 relative (lme4 reads them off a spline through the profile, we
root-find on the profile itself; measured 2e-4 here); the anova table to 1e-6 (logLik 1e-4 absolute,
as the fits themselves are tested in test_poisson.py).
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from skmixed import MixedLogisticRegressor, MixedPoissonRegressor, anova

REF = json.loads((DATA / "glmm_inference_refs.json").read_text())


def _epil():
    ep = pd.read_csv(DATA / "epil.csv")
    ep["trtprogabide"] = (ep["trt"] == "progabide").astype(float)
    ep["any"] = (ep["y"] > 2).astype(float)
    return ep


def _poisson(ep, cols):
    m = MixedPoissonRegressor().fit(ep[cols], ep["y"], groups=ep["subject"], offset=np.log(ep["rate_base"]))
    return m


def _assert_profile(ci, ref):
    assert list(ci.index) == ref["rows"]
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=1e-3, atol=1e-4)


def test_poisson_offset_profile_intervals_match_glmer():
    ep = _epil()
    m = _poisson(ep, ["trtprogabide", "lage", "V4"])
    ref = REF["epil_offset_profile"]
    assert m.loglik_ == pytest.approx(ref["logLik"], abs=1e-4)
    _assert_profile(m.confint(method="profile"), ref)


def test_logistic_offset_profile_intervals_match_glmer():
    # before, a fit with an offset refused profiles (the offset was not kept with the fit)
    ep = _epil()
    m = MixedLogisticRegressor().fit(ep[["lage", "V4"]], ep["any"], groups=ep["subject"],
                                     offset=0.3 * np.log(ep["rate_base"]))
    ref = REF["epil_logistic_offset_profile"]
    assert m.loglik_ == pytest.approx(ref["logLik"], abs=1e-4)
    _assert_profile(m.confint(method="profile"), ref)


def test_poisson_anova_matches_glmer():
    ep = _epil()
    m0, m1 = _poisson(ep, ["lage", "V4"]), _poisson(ep, ["trtprogabide", "lage", "V4"])
    tab = anova(m0, m1)
    ref = REF["epil_anova"]
    np.testing.assert_array_equal(tab["npar"], ref["npar"])
    for col, key in [("AIC", "AIC"), ("BIC", "BIC"), ("logLik", "logLik"), ("deviance", "deviance")]:
        np.testing.assert_allclose(tab[col], ref[key], rtol=1e-6)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], rel=1e-4)
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"][1], rel=1e-4)
    with pytest.raises(ValueError, match="one family"):
        lo = MixedLogisticRegressor().fit(ep[["lage"]], ep["any"], groups=ep["subject"])
        anova(lo, m1)


def test_poisson_simulate_keeps_the_offset():
    ep = _epil()
    off = np.log(ep["rate_base"].to_numpy())
    m = _poisson(ep, ["trtprogabide", "lage", "V4"])
    y = m.simulate(4000, random_state=0)
    assert y.shape == (len(ep), 4000) and np.all(y == np.round(y)) and y.min() >= 0
    # E[y] = exp(offset + X beta + sd^2 / 2) over new random effects
    X = np.c_[np.ones(len(ep)), ep[["trtprogabide", "lage", "V4"]].to_numpy()]
    sd = float(np.sqrt(m.cov_re_["subject"].to_numpy()[0, 0]))
    expect = np.exp(off + X @ m.fixed_effects_.to_numpy() + sd**2 / 2)
    total = y.sum(axis=0)
    assert abs(total.mean() - expect.sum()) < 4 * total.std() / np.sqrt(total.size)


def test_weighted_rows_are_simulated_as_their_sums():
    # a frequency weight w is w identical rows: its simulated response is the mean of w draws
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 8)
    x = rng.normal(size=g.size)
    w = rng.integers(1, 5, g.size).astype(float)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(scale=0.3, size=30)[g])
    y = rng.poisson(w * mu) / w
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = MixedPoissonRegressor().fit(x[:, None], y, groups=g, sample_weight=w)
    s = m.simulate(2000, random_state=2)
    # sum over a row's w copies is Poisson: var(w y) = E(w y) given the random effects; overall
    # var(w y) >= E(w y), and with no weights honoured it would be w times larger
    ws = w[:, None] * s
    assert np.allclose(ws, np.round(ws))
    big = w == 4
    ratio = ws[big].var(axis=1).mean() / ws[big].mean(axis=1).mean()
    assert 1.0 < ratio < 2.5


def test_poisson_bootstrap_covers_the_estimates():
    ep = _epil()
    m = _poisson(ep, ["trtprogabide", "lage", "V4"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = m.bootstrap(60, random_state=0)
    assert b.n_failed == 0 and len(b.replicates) == 60
    assert list(b.replicates.columns) == [".sig01", "(Intercept)", "trtprogabide", "lage", "V4"]
    # bootstrap SEs of the fixed effects agree with the Wald SEs to sampling error (60 replicates: ~20 %)
    se_boot = b.replicates.iloc[:, 1:].std(ddof=1).to_numpy()
    np.testing.assert_allclose(se_boot, m.fixed_effects_se_.to_numpy(), rtol=0.35)
    ci = m.confint(method="boot", n_boot=40, random_state=1)
    assert np.all(np.isfinite(ci.to_numpy()))


def test_poisson_r2_is_refused_by_name():
    ep = _epil()
    m = _poisson(ep, ["lage"])
    with pytest.raises(ValueError, match="Poisson"):
        m.r2_marginal_
