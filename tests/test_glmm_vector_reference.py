"""Crossed and nested GLMMs with vector random terms against glmer (issue 16).

References: ``tests/data/glmm_vector_crossed.R`` (lme4 1.1-31, polished bobyqa fits). These fits search
on the exact Laplace gradient (:class:`skmixed._solvers.glmm_multi_grad.BlockLaplaceGradient`); the
optimum must be at least glmer's. Two of the three glmer optima are singular (a correlation of -1:
the slope's own SD parameter at 0), which the gradient handles without ``Lambda^{-1}``.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skmixed import MixedLogisticRegressor, MixedPoissonRegressor

DATA = Path(__file__).parent / "data"
REFS = json.loads((DATA / "glmm_vector_refs.json").read_text())


def _verbagg():
    return pd.read_csv(DATA / "verbagg_subset.csv", dtype={"id": str, "item": str, "btype": str, "situ": str})


def _sim():
    sim = pd.read_csv(DATA / "glmm_vector_sim.csv", dtype={"subj": str, "item": str})
    sim["p"] = sim["s"] / sim["trials"]
    return sim


def _grouseticks():
    gt = pd.read_csv(DATA / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str, "LOCATION": str})
    gt["cyear"] = gt["YEAR"].astype(float) - 96
    return gt


CASES = {
    # crossed id x item, logistic, a correlated (1 + male | item) on the smaller factor
    "verbagg_item_slope": (MixedLogisticRegressor, "y ~ Anger + male + btype + situ + (1 | id) + (1 + male | item)",
                           _verbagg, None),
    # crossed subj x item, binomial proportions (trials as weights) with an offset, (1 + x | subj) on the larger
    "sim_trials_offset": (MixedLogisticRegressor, "p ~ x + offset(o) + (1 + x | subj) + (1 | item)", _sim, "trials"),
    # nested BROOD in LOCATION, Poisson, (1 + cyear | LOCATION)
    "grouseticks_location_slope": (MixedPoissonRegressor,
                                   "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 + cyear | LOCATION)", _grouseticks, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_vector_terms_reach_glmer(name):
    Est, formula, load, weight = CASES[name]
    df = load()
    kw = {} if weight is None else {"sample_weight": df[weight].to_numpy(float)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the singular fits warn by name (tested elsewhere)
        m = Est.from_formula(formula, df, **kw)
    ref = REFS[name]
    assert m.converged_ and m.fit_log_.final_check == "ok"
    # measured: 1.3e-8, 1.7e-8 and 2.4e-6 above glmer's polished logLik
    assert m.loglik_ >= ref["logLik"] - 1e-6
    se = np.array(list(ref["fixef_se"].values()))
    # estimates within 1e-3 standard errors (measured <= 3e-5)
    assert np.all(np.abs(m.fixed_effects_.to_numpy() - np.array(list(ref["fixef"].values()))) <= 1e-3 * se)
    # glmer's SEs come from its own finite-difference Hessian: agreement to ~1e-4 relative (measured <= 1.5e-4)
    np.testing.assert_allclose(m.fixed_effects_se_.to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(m.theta_.to_numpy(), list(ref["theta"].values()), atol=1e-4)
    assert list(m.theta_.index) == list(ref["theta"])
