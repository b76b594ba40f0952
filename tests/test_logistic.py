"""MixedLogisticRegressor against lme4 1.1-31's glmer, plus scikit-learn integration and input checks.

Tolerances (issue 3): log-likelihood within 1e-3 absolute, fixed effects and theta within 1e-3
relative. Our Laplace deviance is the exact one at the conditional modes; glmer's evaluates
log|L|^2 with the working weights of the penultimate PIRLS iterate (R: at glmer's optimum on
cbpp_bernoulli, ``m@pp$ldL2()`` is 16.89696, recomputed at the final modes 16.89640), so its
optimum lies ~3e-4 (relative) away from the exact one and our logLik is ~3e-4 higher. The same
lag makes glmer's finite-difference Hessian, hence its Laplace SEs, differ from the exact
Hessian by about 1%: Laplace SEs are checked at 2e-2 relative. With nAGQ = 25 glmer's deviance
is exact and SEs agree to 1e-3.
"""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import load_reference
from skmixed import MixedLogisticRegressor, NoGroupsWarning
from skmixed._solvers import glmm as sg
from skmixed.datasets import (load_cbpp, load_cbpp_bernoulli, load_metacognition,
                              make_big_grouped_data)
from skmixed.logistic import SeparationWarning, SingularFitWarning

FORMULA = "y ~ period + (1 | herd)"


def _cbpp_weighted_rows():
    """Aggregated cbpp as weighted 0/1 rows: weight incidence for y=1, size - incidence for y=0."""
    c = load_cbpp()
    rows = pd.concat([c.assign(y=1, w=c["incidence"]), c.assign(y=0, w=c["size"] - c["incidence"])],
                     ignore_index=True)
    return rows[rows["w"] > 0].reset_index(drop=True)


@pytest.fixture(scope="module")
def cbpp_laplace():
    return MixedLogisticRegressor.from_formula(FORMULA, load_cbpp_bernoulli())


def _ranef(ref, factor):
    return pd.DataFrame(ref["ranef"][factor]).set_index("level")


# ------------------------------------------------------------------------------- reference fits
def test_cbpp_bernoulli_laplace(cbpp_laplace):
    ref = load_reference("cbpp_bernoulli_laplace")
    m = cbpp_laplace
    assert m.loglik_ == pytest.approx(ref["logLik"], abs=1e-3)
    assert m.aic_ == pytest.approx(ref["AIC"], abs=2e-3)
    np.testing.assert_allclose(m.fixed_effects_[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), rtol=1e-3)
    assert list(m.theta_.index) == list(ref["theta"])
    assert m.cov_re_["herd"].iloc[0, 0] == pytest.approx(ref["varcorr"][0]["vcov"], rel=2e-3)
    np.testing.assert_allclose(m.fixed_effects_se_[list(ref["fixef_se"])], list(ref["fixef_se"].values()),
                               rtol=2e-2)
    re = _ranef(ref, "herd")
    ours = m.random_effects_["herd"].loc[re.index, "(Intercept)"].to_numpy()
    np.testing.assert_allclose(ours, re["(Intercept)"].to_numpy(), atol=2e-3 * np.abs(ours).max())
    p = m.predict_proba(load_cbpp_bernoulli().head(20), )[:, 1]
    np.testing.assert_allclose(p, ref["fitted_head"], rtol=2e-3)
    assert m.converged_ and not m.is_singular_
    assert m.vcov_method_ == "hessian"


def test_laplace_objective_equals_glmer_deviance_at_glmer_optimum():
    # glmer's devfun at its optimum is 555.004452 (R: update(m, devFunOnly=TRUE)(c(theta, fixef)));
    # the exact Laplace deviance there is lower by the lagged-log-determinant effect (< 1e-3)
    df = load_cbpp_bernoulli()
    m = MixedLogisticRegressor.from_formula(FORMULA, df)
    ref = load_reference("cbpp_bernoulli_laplace")
    prob = _cbpp_problem(df, m)
    x = np.array([ref["theta"]["herd.(Intercept)"], *ref["fixef"].values()])
    F = prob.laplace(x, want_grad=False)
    assert F == pytest.approx(555.004452143, abs=1e-3)
    assert F <= 555.004452143


def _cbpp_problem(df, m):
    X = np.column_stack([np.ones(len(df))] + [(df["period"] == k).to_numpy(float) for k in "234"])
    codes = m.factors_[0].encode(df["herd"])
    return sg.SingleFactorGLMM(X, df["y"].to_numpy(float), np.ones(len(df)), codes, 15,
                               np.array([-1]), np.ones((1, 1), bool))


def test_aggregated_binomial_as_frequency_weights(cbpp_laplace):
    rows = _cbpp_weighted_rows()
    m = MixedLogisticRegressor.from_formula(FORMULA, rows, sample_weight=rows["w"].to_numpy(float))
    np.testing.assert_allclose(m.fixed_effects_, cbpp_laplace.fixed_effects_, rtol=1e-6)
    np.testing.assert_allclose(m.theta_, cbpp_laplace.theta_, rtol=1e-6)
    np.testing.assert_allclose(m.fixed_effects_se_, cbpp_laplace.fixed_effects_se_, rtol=1e-4)
    assert m.loglik_ == pytest.approx(cbpp_laplace.loglik_, abs=1e-7)
    assert m.n_obs_ == 842
    # and the same estimates as glmer's cbind(incidence, size - incidence) fit
    ref = load_reference("cbpp_laplace")
    np.testing.assert_allclose(m.fixed_effects_[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), rtol=1e-3)


def test_cbpp_agq25():
    ref = load_reference("cbpp_agq25")
    rows = _cbpp_weighted_rows()
    m = MixedLogisticRegressor.from_formula(FORMULA, rows, sample_weight=rows["w"].to_numpy(float), nagq=25)
    np.testing.assert_allclose(m.fixed_effects_[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), rtol=1e-3)
    np.testing.assert_allclose(m.fixed_effects_se_[list(ref["fixef_se"])], list(ref["fixef_se"].values()),
                               rtol=1e-3)
    # the reference logLik is for the aggregated binomial rows; on 0/1 rows glmer gives
    # logLik -277.459028724 (R: glmer(y ~ period + (1 | herd), cbpp_bernoulli, binomial, nAGQ = 25))
    assert m.loglik_ == pytest.approx(-277.459028724, abs=1e-4)
    assert "nAGQ = 25" in m.summary()


def test_metacognition_random_slope_singular():
    ref = load_reference("metacognition_glmm_laplace")
    with pytest.warns(SingularFitWarning):
        m = MixedLogisticRegressor.from_formula("correct ~ contrast + (1 + contrast | id)", load_metacognition())
    assert m.loglik_ == pytest.approx(ref["logLik"], abs=1e-3)
    np.testing.assert_allclose(m.fixed_effects_[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-3)
    # theta is not identified on this boundary (only theta_21^2 + theta_22^2 is): compare covariances
    vc = {(r["var1"], r["var2"]): r["vcov"] for r in ref["varcorr"]}
    cov = m.cov_re_["id"]
    assert cov.loc["contrast", "contrast"] == pytest.approx(vc[("contrast", "")], rel=1e-2)
    # glmer stops on the boundary (intercept variance 2e-19); on internally scaled columns the optimiser
    # finds a point just inside with a higher log-likelihood (measured -3270.05504 vs glmer's -3270.05521)
    assert m.loglik_ >= ref["logLik"] - 1e-6
    assert cov.loc["(Intercept)", "(Intercept)"] < 1e-5
    assert m.is_singular_
    # SEs: glmer's Hessian-based; ours fall back to the conditional vcov on the boundary
    np.testing.assert_allclose(m.fixed_effects_se_[list(ref["fixef_se"])], list(ref["fixef_se"].values()),
                               rtol=1e-2)


def _crossed_data():
    """Subjects x items (about 80% of the cells), written to CSV to fit glmer in R."""
    rng = np.random.default_rng(20240611)
    ns, ni = 60, 40
    s = np.repeat(np.arange(ns), ni)
    it = np.tile(np.arange(ni), ns)
    keep = rng.random(ns * ni) < 0.8
    s, it = s[keep], it[keep]
    x = rng.normal(size=s.size)
    us = rng.normal(0, 0.8, ns)
    ui = rng.normal(0, 0.5, ni)
    eta = -0.5 + 0.8 * x + us[s] + ui[it]
    y = (rng.random(s.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{k:02d}" for k in s], "item": [f"i{k:02d}" for k in it]})


# R 4.2.2, lme4 1.1-31, on _crossed_data().to_csv("crossed.csv", index=False):
#   d <- read.csv("crossed.csv", colClasses = c("integer", "numeric", "factor", "factor"))
#   m <- glmer(y ~ x + (1 | subj) + (1 | item), d, family = binomial)
#   m0 <- update(m, nAGQ = 0)
CROSSED_R = {"logLik": -1113.13415436, "theta": [0.7918404854, 0.4104812868],
             "fixef": [-0.6250805637, 0.7564652348], "se": [0.13297649030, 0.06009393698],
             "ranef_subj": [1.3338788801, -0.6408266963, -0.1311614078],
             "ranef_item": [-0.13104065844, -0.60303080602, -0.09478390994]}
CROSSED_R_NAGQ0 = {"logLik": -1113.26127013, "theta": [0.7911568015, 0.4095847559],
                   "fixef": [-0.6000114857, 0.7282855721]}


def test_crossed_random_intercepts_reach_glmer():
    df = _crossed_data()
    assert df.shape == (1918, 4) and df["y"].sum() == 718
    m = MixedLogisticRegressor.from_formula("y ~ x + (1 | subj) + (1 | item)", df)
    assert m.loglik_ == pytest.approx(CROSSED_R["logLik"], abs=1e-3)
    assert m.loglik_ >= CROSSED_R["logLik"] - 1e-6  # the exact Laplace optimum is not worse
    np.testing.assert_allclose(m.theta_.to_numpy(), CROSSED_R["theta"], rtol=1e-3)
    assert list(m.theta_.index) == ["subj.(Intercept)", "item.(Intercept)"]
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), CROSSED_R["fixef"], rtol=1e-3)
    np.testing.assert_allclose(m.fixed_effects_se_.to_numpy(), CROSSED_R["se"], rtol=2e-2)
    np.testing.assert_allclose(m.random_effects_["subj"].iloc[:3, 0], CROSSED_R["ranef_subj"], atol=2e-3)
    np.testing.assert_allclose(m.random_effects_["item"].iloc[:3, 0], CROSSED_R["ranef_item"], atol=2e-3)
    m0 = MixedLogisticRegressor.from_formula("y ~ x + (1 | subj) + (1 | item)", df, nagq=0)
    np.testing.assert_allclose(m0.fixed_effects_.to_numpy(), CROSSED_R_NAGQ0["fixef"], rtol=1e-4)
    np.testing.assert_allclose(m0.theta_.to_numpy(), CROSSED_R_NAGQ0["theta"], rtol=1e-3)


def test_nagq_above_one_needs_single_scalar_term():
    df = _crossed_data()
    with pytest.raises(ValueError, match="single, scalar random-effects term"):
        MixedLogisticRegressor.from_formula("y ~ x + (1 | subj) + (1 | item)", df, nagq=5)
    with pytest.raises(ValueError, match="single, scalar random-effects term"):
        MixedLogisticRegressor.from_formula("y ~ x + (1 + x | subj)", df, nagq=5)


# ------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("slope,weighted", [(False, False), (True, False), (True, True)])
def test_analytic_gradient_matches_finite_differences(slope, weighted):
    df = make_big_grouped_data(3000, 30, seed=5)
    X = np.column_stack([np.ones(len(df)), df["x"], df["b"]])
    w = np.random.default_rng(0).integers(1, 4, len(df)).astype(float) if weighted else np.ones(len(df))
    zcols = np.array([-1, 1]) if slope else np.array([-1])
    q = zcols.size
    # unsorted rows exercise the group pointer / permutation path
    order = np.random.default_rng(1).permutation(len(df))
    prob = sg.SingleFactorGLMM(np.ascontiguousarray(X[order]), df["y_bin"].to_numpy(float)[order], w[order],
                               df["g"].to_numpy(np.int64)[order], 30, zcols, np.tril(np.ones((q, q), bool)))
    x = np.array([0.6, 0.2, 0.3] if slope else [0.6])
    x = np.concatenate([x, [0.1, 0.4, 0.3]])
    F, g = prob.laplace(x)
    u0 = prob.u.copy()
    fd = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = 1e-5
        prob.u[:] = u0
        fp = prob.laplace(x + e, want_grad=False)
        prob.u[:] = u0
        fm = prob.laplace(x - e, want_grad=False)
        fd[i] = (fp - fm) / 2e-5
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------- estimator behaviour
def test_string_labels_predict_proba_decision_function():
    df = load_cbpp_bernoulli()
    lab = np.where(df["y"] == 1, "sick", "healthy")
    X = pd.get_dummies(df["period"], prefix="period", drop_first=True, dtype=float)
    m = MixedLogisticRegressor().fit(X, lab, groups=df["herd"])
    assert list(m.classes_) == ["healthy", "sick"]
    m01 = MixedLogisticRegressor().fit(X, df["y"], groups=df["herd"])
    np.testing.assert_allclose(m.fixed_effects_, m01.fixed_effects_, rtol=1e-10)
    proba = m.predict_proba(X, groups=df["herd"])
    eta = m.decision_function(X, groups=df["herd"])
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-eta)))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(m.predict(X, groups=df["herd"])) <= {"healthy", "sick"}
    np.testing.assert_array_equal(m.predict(X, groups=df["herd"]), np.array(["healthy", "sick"])[(eta > 0) * 1])
    assert m.coef_.shape == (1, 3) and m.intercept_.shape == (1,)
    assert 0.5 < m.score(X, lab, groups=df["herd"]) <= 1


def test_conditional_and_population_predictions(cbpp_laplace):
    m = cbpp_laplace
    d = pd.DataFrame({"period": ["1", "2"], "herd": ["1", "1"]})
    eta_c = m.decision_function(d)
    b = m.random_effects_["herd"].loc["1", "(Intercept)"]
    fe = m.fixed_effects_
    np.testing.assert_allclose(eta_c, [fe["(Intercept)"] + b, fe["(Intercept)"] + fe["period2"] + b])
    unseen = m.decision_function(d.assign(herd=["99", "zz"]))
    np.testing.assert_allclose(unseen, eta_c - b)
    # conditional SDs of the modes are positive and smaller than the random-effect SD
    sd = m.random_effects_sd_["herd"]["(Intercept)"]
    assert np.all(sd > 0) and np.all(sd < np.sqrt(m.cov_re_["herd"].iloc[0, 0]))


def test_summary_like_glmer(cbpp_laplace):
    s = cbpp_laplace.summary()
    for piece in ["Laplace Approximation", "Family: binomial", "z value", "Pr(>|z|)", "herd", "(Intercept)",
                  "Number of obs: 842, groups:  herd, 15", "565.0", "-277.5"]:
        assert piece in s
    assert cbpp_laplace.fixed_effects_z_["period2"] == pytest.approx(
        cbpp_laplace.fixed_effects_["period2"] / cbpp_laplace.fixed_effects_se_["period2"])


# R: glmer(y ~ period + (1 | herd), cbpp_bernoulli, family = binomial, nAGQ = 0)
CBPP_NAGQ0_R = {"theta": 0.641838682, "logLik": -277.5300062,
                "fixef": [-1.3604757491, -0.9761732132, -1.1110727615, -1.5596756577]}


def test_nagq0_mode(cbpp_laplace):
    m0 = MixedLogisticRegressor.from_formula(FORMULA, load_cbpp_bernoulli(), nagq=0)
    np.testing.assert_allclose(m0.fixed_effects_.to_numpy(), CBPP_NAGQ0_R["fixef"], rtol=1e-3)
    assert m0.theta_.iloc[0] == pytest.approx(CBPP_NAGQ0_R["theta"], rel=1e-3)
    assert m0.loglik_ == pytest.approx(CBPP_NAGQ0_R["logLik"], abs=1e-3)
    # close to, but less accurate than, the Laplace fit (glmer's nAGQ=0 behaves the same way)
    np.testing.assert_allclose(m0.fixed_effects_, cbpp_laplace.fixed_effects_, rtol=5e-2)
    assert m0.loglik_ < cbpp_laplace.loglik_ + 1e-6 or m0.loglik_ == pytest.approx(cbpp_laplace.loglik_, abs=0.1)
    assert m0.vcov_method_ == "conditional"


@pytest.mark.parametrize("bad_y,msg", [
    (lambda y: np.where(y == 1, 2, np.arange(y.size) % 3), "Only binary"),
    (lambda y: np.zeros(y.size), "only one class"),
    (lambda y: np.where(np.arange(y.size) == 3, np.nan, y), "NaN"),
    (lambda y: np.where(y == 1, np.inf, 0.0), "infinity"),
    (lambda y: y + 0.5, "binary"),  # two values, but not labels: continuous to sklearn
    (lambda y: 1e20 * (y + 1), "binary"),  # integral floats beyond int64: continuous to sklearn too
])
def test_bad_y_errors(bad_y, msg):
    df = load_cbpp_bernoulli()
    m = MixedLogisticRegressor()
    with pytest.raises(ValueError, match=msg):
        m.fit(df[["period"]].astype(float), bad_y(df["y"].to_numpy(float)), groups=df["herd"])
    assert not hasattr(m, "classes_") and not hasattr(m, "fixed_effects_")


@pytest.mark.parametrize("y", [np.array([0, 1, 1, 0]), np.array([0.0, 1.0, 1.0]), np.array([True, False, True]),
                               np.array([2, 5, 5], dtype=np.int8), np.array([-1.0, 1.0, -1.0])])
def test_binary_label_fast_path_equals_unique(y):
    # the two-pass encoding used for numeric labels must give what np.unique gives
    from skmixed.logistic import _binary_numeric

    classes, codes = _binary_numeric(y)
    ref_classes, ref_codes = np.unique(y, return_inverse=True)
    assert classes.dtype == ref_classes.dtype
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(codes, ref_codes)


def test_bad_inputs_errors():
    df = load_cbpp_bernoulli()
    X = df[["period"]].astype(float).to_numpy().copy()
    X[5, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MixedLogisticRegressor().fit(X, df["y"], groups=df["herd"])
    with pytest.raises(ValueError, match="nagq"):
        MixedLogisticRegressor(nagq=-1).fit(df[["period"]].astype(float), df["y"], groups=df["herd"])
    with pytest.raises(ValueError, match="rows"):
        MixedLogisticRegressor().fit(df[["period"]].astype(float), df["y"], groups=df["herd"][:-1])


def test_separation_warns_and_gives_usable_model():
    rng = np.random.default_rng(3)
    n = 400
    g = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    y = (x > 0).astype(int)  # x separates the classes completely
    with pytest.warns(SeparationWarning):
        m = MixedLogisticRegressor().fit(x[:, None], y, groups=g)
    assert np.isfinite(m.loglik_) and m.loglik_ > -1.0
    assert m.score(x[:, None], y, groups=g) == 1.0


def test_boundary_fit_warns_and_is_usable():
    rng = np.random.default_rng(6)  # (seed 4 gives glmer's and our theta = 0.0548, not 0)
    n = 2000
    g = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + x)))).astype(int)  # no group effect at all
    with pytest.warns(SingularFitWarning):
        m = MixedLogisticRegressor().fit(x[:, None], y, groups=g)
    assert m.is_singular_ and m.theta_.iloc[0] == 0.0
    np.testing.assert_allclose(m.random_effects_["group"].to_numpy(), 0.0, atol=1e-12)
    # with the variance at zero the fit is the plain GLM
    with pytest.warns(NoGroupsWarning):
        glm = MixedLogisticRegressor().fit(x[:, None], y)
    np.testing.assert_allclose(m.fixed_effects_, glm.fixed_effects_, rtol=1e-5)
    assert m.loglik_ == pytest.approx(glm.loglik_, abs=1e-6)


def test_pickle_round_trip(cbpp_laplace):
    df = load_cbpp_bernoulli()
    m2 = pickle.loads(pickle.dumps(cbpp_laplace))
    np.testing.assert_array_equal(m2.predict_proba(df), cbpp_laplace.predict_proba(df))


# ------------------------------------------------------------------------------- scikit-learn
def _expected_failed_checks(estimator):
    return {
        "check_sample_weight_equivalence_on_dense_data":
            "the check's data are linearly separable: the logistic MLE does not exist (coefficients diverge, "
            "SeparationWarning), so weighted and repeated fits stop at different points on a flat ridge",
    }


@parametrize_with_checks([MixedLogisticRegressor()], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    # without groups the estimator fits the fixed part (a GLM) and warns: expected here;
    # the generic checks' toy data are often separable, hence the separation warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        warnings.simplefilter("ignore", SeparationWarning)
        check(estimator)


def test_pipeline_gridsearch_cross_validate_groupkfold_routed(routing):
    df = make_big_grouped_data(6000, 60, seed=3)
    X, y, g = df[["x", "b"]], df["y_bin"], df["g"]
    est = MixedLogisticRegressor().set_fit_request(groups=True).set_score_request(groups=True)
    pipe = Pipeline([("scale", StandardScaler()), ("glmm", est)])
    grid = GridSearchCV(pipe, {"glmm__nagq": [0, 1]}, cv=GroupKFold(3))
    grid.fit(X, y, groups=g)
    best = grid.best_estimator_[-1]
    # the routed groups reached the estimator: it estimated the group SD (0.5 in the simulation)
    assert best.theta_.iloc[0] == pytest.approx(0.5, rel=0.35)
    assert len(best.random_effects_["g"]) == 60
    res = cross_validate(pipe, X, y, cv=GroupKFold(3), params={"groups": g}, scoring="roc_auc")
    assert np.all(res["test_score"] > 0.6)


def test_group_column_without_routing():
    df = make_big_grouped_data(4000, 40, seed=4)
    est = MixedLogisticRegressor(group_column="g")
    grid = GridSearchCV(est, {"nagq": [0, 1]}, cv=GroupKFold(4))
    grid.fit(df[["x", "b", "g"]], df["y_bin"], groups=df["g"])
    m = grid.best_estimator_
    assert m.n_features_in_ == 3
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x", "b"]
    direct = MixedLogisticRegressor(nagq=m.nagq).fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    m.fit(df[["x", "b", "g"]], df["y_bin"])
    np.testing.assert_allclose(m.fixed_effects_, direct.fixed_effects_, rtol=1e-10)


def test_threads_do_not_change_results():
    from threadpoolctl import threadpool_limits

    df = make_big_grouped_data(120_000, 300, seed=7)  # above the serial cut-off: parallel kernels
    m2 = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    with threadpool_limits(1):
        m1 = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    np.testing.assert_allclose(m1.fixed_effects_, m2.fixed_effects_, rtol=1e-9)
    np.testing.assert_allclose(m1.theta_, m2.theta_, rtol=1e-9)


def test_subsampled_start_values_reach_the_same_optimum(monkeypatch):
    # big data take their start values from every k-th group; the optimum must not depend on it
    df = make_big_grouped_data(150_000, 1000, seed=11)
    m_sub = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    monkeypatch.setattr(sg, "_start_subset", lambda prob: None)
    m_all = MixedLogisticRegressor().fit(df[["x", "b"]], df["y_bin"], groups=df["g"])
    np.testing.assert_allclose(m_sub.fixed_effects_, m_all.fixed_effects_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m_sub.theta_, m_all.theta_, rtol=1e-5)
    assert m_sub.loglik_ == pytest.approx(m_all.loglik_, abs=1e-6)
    np.testing.assert_allclose(m_sub.fixed_effects_se_, m_all.fixed_effects_se_, rtol=1e-4)
