"""mgcv formulas for AdditiveMixedRegressor (issue 19, acceptance 4a) and the term reader.

References: tests/data/gamsim_mgcv_formula.R -> gamsim_mgcv_formula_bam.json (mgcv 1.8-41 bam, fREML).
Acceptance: edf within 0.01 per term, fitted values within 1e-4 of sd(y).
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from conftest import DATA, load_reference
from skmixed import AdditiveMixedRegressor
from skmixed._design.mgcv_formula import parse_smooth, split_mgcv_formula

MAIN = "y ~ s(x0, k = 10, bs = 'cr') + s(x1, bs = 'ps') + te(x2, x3) + s(fac, bs = 're') + z"
MARGINS = "y ~ s(x0, k = 6, bs = 'cr') + s(x1, k = 12, bs = 'ps') + te(x2, x3, k = c(4, 6), bs = c('cr', 'ps')) + z"


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "gamsim_mgcv_formula.csv")


@pytest.fixture(scope="module")
def ref():
    return load_reference("gamsim_mgcv_formula_bam")


BY_FACTOR = "y ~ f + s(x1, by = f, k = 8) + s(x0) + s(fac, bs = 're')"
TI_BY = "y ~ s(x2) + s(x3) + ti(x2, x3, k = 5) + s(x0, by = z) + s(fac, bs = 're')"


def _check(m, r, y):
    # R's factor f is named fF in the reference
    edf = pd.Series(r["edf"]).rename(lambda s: s.replace(":fF", ":f"))
    assert list(m.edf_.index) == list(edf.index)
    np.testing.assert_allclose(m.edf_[edf.index], edf, atol=0.01)
    np.testing.assert_allclose(m.fitted_values_, r["fitted"], atol=1e-4 * np.std(y, ddof=1))
    assert m.scale_ == pytest.approx(r["sig2"], rel=1e-4)
    for k, v in r["coef_parametric"].items():
        if k == "(Intercept)" or k.startswith("fF"):
            continue  # intercept, by-level dummies: depend on where each smooth is centred (bam: its frame)
        assert m.fixed_effects_[k.replace("fF", "f")] == pytest.approx(v, abs=1e-3 * np.std(y, ddof=1))


@pytest.mark.parametrize("key, formula", [("main_discrete", MAIN), ("main_exact", MAIN),
                                          ("margins_discrete", MARGINS), ("by_factor_discrete", BY_FACTOR),
                                          ("ti_numeric_by_discrete", TI_BY)])
def test_formula_against_bam(data, ref, key, formula):
    r = ref[key]
    m = AdditiveMixedRegressor.from_formula(formula, data, discrete=r["discrete"])
    _check(m, r, data["y"])
    assert m.formula_ == formula
    if r["discrete"]:
        # bam's score for discrete=TRUE (the exact fit's is shifted by bam's reparametrization)
        assert m.reml_score_ == pytest.approx(r["fREML"], abs=1e-2)
    if "te(" in formula:
        # tensor product: one smoothing parameter per margin, named as mgcv's
        assert {"te(x2,x3)1", "te(x2,x3)2"} <= set(m.smoothing_params_.index)
    # predict takes the data frame; with the groups it reproduces the in-sample fit
    np.testing.assert_allclose(m.predict(data.head(50)), m.fitted_values_[:50], atol=1e-3 * data["y"].std())


def test_estimator_parameters_equal_the_formula(data):
    """Per-smooth settings as constructor parameters (dicts keyed by column or label)."""
    f = AdditiveMixedRegressor.from_formula(MARGINS, data)
    X = data[["x0", "x1", "x2", "x3", "z"]]
    m = AdditiveMixedRegressor(smooth=["x0", "x1", "te(x2, x3)"], basis={"x1": "ps", "te(x2,x3)": ("cr", "ps")},
                               n_knots={"x0": 6, "x1": 12, "te(x2,x3)": (4, 6)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(X, data["y"])
    np.testing.assert_allclose(m.edf_, f.edf_, atol=1e-8)
    np.testing.assert_allclose(m.predict(X.head(20)), f.predict(data.head(20)), atol=1e-8)
    # clone / pickle keep the settings and the fit
    assert clone(m).get_params()["n_knots"] == m.n_knots
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(m2.predict(X.head(5)), m.predict(X.head(5)))


def test_term_reader():
    sm, f = split_mgcv_formula("y ~ s(x0, k=10, bs='cr') + s(x1, bs='ps') + te(x2, x3) + s(fac, bs='re') "
                               "+ s(x0, by=f) + z + (1 | g) + s(g2, x1, bs='re')")
    assert [s.label for s in sm] == ["s(x0)", "s(x1)", "te(x2,x3)", "s(x0)"]
    assert sm[3].by == "f" and sm[0].k == 10 and sm[1].bs == "ps"
    assert f == "y ~ z + x0 + x1 + x2 + x3 + f + (1 | fac) + (1 | g) + (0 + x1 | g2)"
    assert parse_smooth("te(a, b, k=c(4, 5), bs=c('cr','ps'))").k == (4, 5)
    assert parse_smooth("s(x.a)").columns == ("x.a",)
    for bad, msg in [("s(__import__('os').system('true'))", "column name"), ("s(x, m=2)", "not supported"),
                     ("s(x, k='a')", "integer"), ("s(x, x)", "twice"), ("s(x0, x1)", "te()"),
                     ("te(a, b, k=c(1, 2, 3))", "margin"), ("s(x", "cannot read"), ("s()", "no covariate")]:
        with pytest.raises(ValueError, match=msg):
            parse_smooth(bad)


def test_formula_errors(data):
    with pytest.raises(ValueError, match="not in data"):
        AdditiveMixedRegressor.from_formula("y ~ s(nope)", data)
    with pytest.raises(ValueError, match="numeric"):
        AdditiveMixedRegressor.from_formula("y ~ s(x0, by=f)", data.assign(f=data["f"].astype(str)))
    with pytest.raises(ValueError, match="smooth="):
        AdditiveMixedRegressor.from_formula("y ~ s(x0)", data, smooth=["x0"])
    with pytest.raises(ValueError, match="n_knots"):
        AdditiveMixedRegressor(smooth=["x0"], n_knots={"x0": 2}).fit(data[["x0"]], data["y"], groups=data["fac"])
    with pytest.raises(ValueError, match="basis"):
        AdditiveMixedRegressor(smooth=["x0"], basis={"x0": "tp"}).fit(data[["x0"]], data["y"], groups=data["fac"])
    with pytest.raises(ValueError, match="groups"):
        AdditiveMixedRegressor(smooth=["s(fac, bs='re')"]).fit(data[["x0", "fac"]], data["y"])
