"""lme4 syntax of issue 14: random-only columns and offset() in formulas, against lme4.

References: ``tests/data/random_only_offset.R`` (lme4 1.1-31; bobyqa with rhoend 1e-12 and, for
glmer, tolPwrss 1e-13) wrote ``random_only_offset.json`` and the simulated binary set
``random_only_glmm.csv``. Tolerances (relative unless said): LMM log-likelihood 1e-10, fixed
effects / theta / sigma / BLUPs / fitted values 1e-6; GLMM log-likelihood 1e-9, fixed effects and
theta 1e-5, standard errors 1e-4.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmixed import (
    AdditiveMixedRegressor,
    MixedLinearRegressor,
    MixedLogisticRegressor,
    MixedPoissonRegressor,
    SplitSampleMixed,
    StreamingMixed,
)
from skmixed.datasets import load_sleepstudy

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "random_only_offset.json").read_text())


@pytest.fixture(scope="module")
def sleep():
    df = load_sleepstudy()
    # the R script's offset column: 3 Days + 7 (as.integer(Subject) %% 3), factor codes from 1 in sorted order
    df["off"] = 3.0 * df["Days"] + 7.0 * ((pd.Categorical(df["Subject"]).codes + 1) % 3)
    return df


@pytest.fixture(scope="module")
def binary():
    return pd.read_csv(DATA / "random_only_glmm.csv")


def _check_lmm(m, ref):
    np.testing.assert_allclose(m.loglik_, ref["logLik"], rtol=1e-10)
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(m.fixed_effects_se_.to_numpy(), list(ref["fixef_se"].values()), rtol=1e-6)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m.sigma_, ref["sigma"], rtol=1e-6)
    re = next(iter(m.random_effects_.values()))
    for col, vals in ref["ranef"].items():
        np.testing.assert_allclose(re[col].to_numpy(), vals, rtol=1e-6, atol=1e-6 * np.max(np.abs(vals)))


LMM_CASES = [
    ("slope_only_reml", "Reaction ~ 1 + (0 + Days | Subject)", True),
    ("slope_only_ml", "Reaction ~ 1 + (0 + Days | Subject)", False),
    ("corr_slope_reml", "Reaction ~ 1 + (Days | Subject)", True),
    ("corr_slope_ml", "Reaction ~ 1 + (Days | Subject)", False),
]


@pytest.mark.parametrize("key,formula,reml", LMM_CASES)
def test_lmer_random_only_columns(sleep, key, formula, reml):
    ref = REF[key]
    m = MixedLinearRegressor(formula=formula, reml=reml).fit(sleep)
    _check_lmm(m, ref)
    assert list(m.fixed_effects_.index) == ["(Intercept)"]
    # fitted values (the Days slope comes from each subject's BLUP only)
    np.testing.assert_allclose(m.predict(sleep.head(5)), ref["fitted_head"], rtol=1e-7)


@pytest.mark.parametrize("key,formula,reml", LMM_CASES[2:])  # the array API's terms have a random intercept
def test_array_random_only_equals_formula(sleep, key, formula, reml):
    arr = MixedLinearRegressor(reml=reml, random_slopes=["Days"], random_only=["Days"])
    arr.fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    _check_lmm(arr, REF[key])
    assert arr.coef_.shape == (0,)
    # by position too, and predictions with groups
    pos = MixedLinearRegressor(reml=reml, random_slopes=[0], random_only=[0]).fit(
        sleep[["Days"]].to_numpy(), sleep["Reaction"], groups=sleep["Subject"])
    np.testing.assert_allclose(pos.loglik_, arr.loglik_, rtol=1e-12)
    np.testing.assert_allclose(arr.predict(sleep[["Days"]].head(5), groups=sleep["Subject"].head(5)),
                               REF[key]["fitted_head"], rtol=1e-7)


def test_array_random_only_with_a_fixed_column_and_positions(sleep):
    df = sleep.assign(z=np.sin(np.arange(len(sleep))))
    f = MixedLinearRegressor(formula="Reaction ~ z + (Days | Subject)").fit(df)
    # Days listed by position in X = [Days, z]: positions refer to X as given
    a = MixedLinearRegressor(random_slopes=[0], random_only=[0]).fit(df[["Days", "z"]], df["Reaction"],
                                                                       groups=df["Subject"])
    np.testing.assert_allclose(a.loglik_, f.loglik_, rtol=1e-10)
    np.testing.assert_allclose(a.fixed_effects_.to_numpy(), f.fixed_effects_.to_numpy(), rtol=1e-7)
    assert list(a.fixed_effects_.index) == ["(Intercept)", "z"]
    np.testing.assert_allclose(a.predict(df[["Days", "z"]], groups=df["Subject"]), f.predict(df), rtol=1e-8)
    with pytest.raises(ValueError, match="no random slope"):
        MixedLinearRegressor(random_only=["z"]).fit(df[["Days", "z"]], df["Reaction"], groups=df["Subject"])
    with pytest.raises(ValueError, match="formula and random_only"):
        MixedLinearRegressor(formula="Reaction ~ z + (Days | Subject)", random_only=["Days"]).fit(df)
    with pytest.raises(ValueError, match="not a column name"):
        MixedLinearRegressor(random_slopes=["Days"], random_only=["w"]).fit(df[["Days", "z"]], df["Reaction"],
                                                                           groups=df["Subject"])


def test_random_only_predict_new_data_and_inference(sleep):
    m = MixedLinearRegressor(formula="Reaction ~ 1 + (Days | Subject)").fit(sleep)
    new = sleep.head(4).assign(Days=[0.5, 1.5, 2.5, 11.0])
    re = m.random_effects_["Subject"].loc[str(sleep["Subject"].iloc[0])]
    expect = m.intercept_ + re["(Intercept)"] + re["Days"] * new["Days"].to_numpy()
    np.testing.assert_allclose(m.predict(new), expect, rtol=1e-12)
    # an unseen level: the population prediction (the intercept: there is no fixed slope)
    np.testing.assert_allclose(m.predict(new.assign(Subject="new")), m.intercept_, rtol=1e-12)
    iv = m.predict_interval(new)
    assert (iv["lower"] < iv["fit"]).all() and (iv["fit"] < iv["upper"]).all()
    assert m.r2_marginal_ == 0 < m.r2_conditional_ < 1  # no fixed slope: all explained variance is random
    assert "Scaled residuals" in str(m.summary())
    assert m.simulate(2, random_state=0).shape == (len(sleep), 2)
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.predict(new), m.predict(new))
    with pytest.raises(ValueError, match="Days"):
        m.predict(new.drop(columns="Days"))


@pytest.mark.parametrize("key,formula", [("glmm_slope_only", "y ~ 1 + (0 + x | g)"),
                                         ("glmm_corr_slope", "y ~ 1 + (x | g)")])
def test_glmer_random_only_columns(binary, key, formula):
    ref = REF[key]
    m = MixedLogisticRegressor(formula=formula).fit(binary)
    np.testing.assert_allclose(m.loglik_, ref["logLik"], rtol=1e-9)
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), list(ref["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.fixed_effects_se_.to_numpy(), list(ref["fixef_se"].values()), rtol=1e-4)
    if key == "glmm_corr_slope":
        a = MixedLogisticRegressor(random_slopes=["x"], random_only=["x"]).fit(binary[["x"]], binary["y"],
                                                                               groups=binary["g"])
        np.testing.assert_allclose(a.loglik_, m.loglik_, rtol=1e-10)
        np.testing.assert_allclose(a.predict_proba(binary[["x"]], groups=binary["g"]), m.predict_proba(binary),
                                   rtol=1e-6)
    p = m.predict_proba(binary.head(3), marginal=True)
    assert p.shape == (3, 2) and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(ValueError, match="nAGQ > 1"):
        MixedLogisticRegressor(formula="y ~ 1 + (0 + x | g)", nagq=5).fit(binary)


def test_poisson_random_only_column():
    rng = np.random.default_rng(3)
    J, n = 30, 600
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(0.5 + rng.normal(0, 0.4, J)[g] * x))
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    m = MixedPoissonRegressor(formula="y ~ 1 + (0 + x | g)").fit(df)
    both = MixedPoissonRegressor(formula="y ~ 1 + x + (0 + x | g)").fit(df)
    assert m.loglik_ <= both.loglik_ + 1e-8  # nested in the model with a fixed slope
    assert list(m.fixed_effects_.index) == ["(Intercept)"]
    assert np.isfinite(m.predict(df)).all()


# ----------------------------------------------------------------- offset()
@pytest.mark.parametrize("key,formula,reml", [
    ("offset_reml", "Reaction ~ Days + offset(off) + (1 | Subject)", True),
    ("offset_slope_ml", "Reaction ~ Days + offset(off) + (Days | Subject)", False),
])
def test_lmer_offset(sleep, key, formula, reml):
    ref = REF[key]
    m = MixedLinearRegressor(formula=formula, reml=reml).fit(sleep)
    _check_lmm(m, ref)
    # lmer's fitted values include the offset; predict adds the new data's offset
    np.testing.assert_allclose(m.predict(sleep.head(5)), ref["fitted_head"], rtol=1e-7)
    shifted = sleep.head(5).assign(off=sleep["off"].head(5) + 10.0)
    np.testing.assert_allclose(m.predict(shifted), np.asarray(ref["fitted_head"]) + 10.0, rtol=1e-7)
    # simulate draws around the fitted mean with its offset; the bootstrap refits on y - offset,
    # so it equals the bootstrap of the same model fitted to y - offset without one
    base = MixedLinearRegressor(formula=formula.replace(" + offset(off)", "").replace("Reaction", "r"),
                                reml=reml).fit(sleep.assign(r=sleep["Reaction"] - sleep["off"]))
    np.testing.assert_allclose(m.simulate(3, random_state=0),
                               base.simulate(3, random_state=0) + sleep["off"].to_numpy()[:, None], rtol=1e-9)
    np.testing.assert_allclose(m.bootstrap(4, random_state=0).replicates,
                               base.bootstrap(4, random_state=0).replicates, rtol=1e-6, atol=1e-8)


def _offset_frame():
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 20, n).astype(str),
                       "o": 2.0 * rng.normal(size=n)})
    df["y"] = 1 + 0.5 * df["x"] + np.sin(df["x"]) + df["o"] + rng.normal(size=20)[df["g"].astype(int)] \
        + rng.normal(size=n)
    return df


@pytest.mark.parametrize("make", [
    lambda f: MixedLinearRegressor(formula=f),
    lambda f: StreamingMixed(formula=f),
    lambda f: AdditiveMixedRegressor(formula=f.replace(" ~ x", " ~ s(x)")),
], ids=["linear", "streaming", "additive"])
def test_offset_is_fitted_as_y_minus_offset(make):
    df = _offset_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = make("y ~ x + offset(o) + (1 | g)").fit(df)
        ref = make("yo ~ x + (1 | g)").fit(df.assign(yo=df["y"] - df["o"]))
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), ref.fixed_effects_.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(m.predict(df), ref.predict(df) + df["o"].to_numpy(), rtol=1e-10, atol=1e-10)


def test_offset_partial_fit_equals_fit():
    df = _offset_frame()
    full = MixedLinearRegressor(formula="y ~ x + offset(o) + (1 | g)").fit(df)
    m = MixedLinearRegressor(formula="y ~ x + offset(o) + (1 | g)")
    for rows in np.array_split(np.arange(len(df)), 3):
        m.partial_fit(df.iloc[rows])
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), full.fixed_effects_.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(m.predict(df), full.predict(df), rtol=1e-8)


def test_offset_and_random_only_refusals_are_clear(binary):
    df = _offset_frame()
    with pytest.raises(ValueError, match="gaussian family only"):
        AdditiveMixedRegressor(formula="y ~ s(x) + offset(o) + (1 | g)", family="poisson").fit(
            df.assign(y=np.arange(len(df)) % 4))
    d = binary.assign(z=np.cos(np.arange(len(binary))))
    lin = "z ~ 1 + (0 + x | g)"
    with pytest.raises(ValueError, match="random slope"):
        StreamingMixed(formula="z ~ 1 + (1 + x | g)").fit(d)
    with pytest.raises(ValueError, match="random-only"):
        AdditiveMixedRegressor(formula=lin).fit(d)
    with pytest.raises(ValueError, match="random-only"):
        SplitSampleMixed(MixedLinearRegressor(formula=lin), n_subsamples=2, random_state=0).fit(d)
    with pytest.raises(ValueError, match="offset"):
        SplitSampleMixed(MixedLinearRegressor(formula="y ~ x + offset(o) + (1 | g)"), n_subsamples=2,
                         random_state=0).fit(df)
    # partial_fit refuses before touching the estimator (pickle-identical afterwards)
    m = MixedLinearRegressor(formula="z ~ 1 + (1 + x | g)")
    with pytest.raises(ValueError, match="in chunks"):
        m.partial_fit(d)
    assert pickle.dumps(m) == pickle.dumps(MixedLinearRegressor(formula="z ~ 1 + (1 + x | g)"))


def test_dask_fit_applies_the_formula_offset():
    dd = pytest.importorskip("dask.dataframe")
    from skmixed.dask import fit_lmm

    df = _offset_frame()
    full = MixedLinearRegressor(formula="y ~ x + offset(o) + (1 | g)").fit(df)
    m = fit_lmm(dd.from_pandas(df, npartitions=3), "y ~ x + offset(o) + (1 | g)")
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), full.fixed_effects_.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(m.predict(df), full.predict(df), rtol=1e-8)
    with pytest.raises(ValueError, match="random-only"):
        fit_lmm(dd.from_pandas(df, npartitions=3), "y ~ 1 + (0 + x | g)")


def test_a_tampered_random_only_spec_runs_nothing(tmp_path):
    import dataclasses

    from formulaic import Formula

    sentinel = tmp_path / "PWNED"
    df = _offset_frame()
    m = MixedLinearRegressor(formula="y ~ 1 + (0 + x | g)").fit(df)
    spec = m.formula_spec()
    expr, mspec, names = spec.extra[0]
    evil_mspec = mspec.update(formula=Formula(f"0 + I(open('{sentinel.as_posix()}', 'w'))"))
    m._formula = dataclasses.replace(spec, extra=((expr, evil_mspec, names),))  # what an edited pickle carries
    with pytest.raises(ValueError, match="not allowed"):
        m.predict(df)
    assert not sentinel.exists()
