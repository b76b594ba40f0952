"""fREML reaches the global optimum over the smoothing parameters (issue 19, acceptance 4b).

tests/data/freml_two_minima.R: 400 rows, a covariate with 7 distinct values and a near-linear signal.  Along
the smoothing parameter of s(x, k=7, bs="cr") the fREML profile (bam's own, stored) has two minima: a wiggly
fit (sp ~ 100, edf 4.7) and a near-linear one (sp ~ 1.36e4, edf 1.60) with the lower score.  bam's Newton
from its start stops at the first; the second was located on bam's criterion by a 1-D search.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import DATA, load_reference
from skmixed import AdditiveMixedRegressor, NoGroupsWarning
from skmixed._solvers import freml


@pytest.fixture(scope="module")
def data():
    return pd.read_csv(DATA / "freml_two_minima.csv")


def _fit(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        return AdditiveMixedRegressor(smooth=["x"], n_knots=7, **kw).fit(data[["x"]], data["y"])


def test_reference_profile_has_two_minima():
    ref = load_reference("freml_two_minima_bam")
    prof = np.asarray(ref["profile_fREML"])
    interior = [i for i in range(1, len(prof) - 1) if prof[i] < prof[i - 1] and prof[i] < prof[i + 1]]
    assert len(interior) == 2
    assert prof[interior[1]] < prof[interior[0]] - 0.05
    assert ref["global"]["fREML"] < ref["fREML"] - 0.05  # bam's default answer is the worse minimum


def test_lands_on_the_better_minimum(data):
    ref = load_reference("freml_two_minima_bam")["global"]
    m = _fit(data)
    assert m.converged_
    # a flat optimum (bam's score moves by 3e-6 between sp 13576 and 13687): sp to 2 %
    assert m.smoothing_params_["s(x)"] == pytest.approx(ref["sp"], rel=0.02)
    assert m.edf_["s(x)"] == pytest.approx(ref["edf"], abs=0.01)
    assert m.scale_ == pytest.approx(ref["sig2"], rel=1e-4)
    np.testing.assert_allclose(m.fitted_values_, ref["fitted"], atol=5e-4 * data["y"].std())


def test_local_fit_is_bams_path_and_worse(data, monkeypatch):
    ref = load_reference("freml_two_minima_bam")
    m = _fit(data)
    local = freml.fit_freml
    import skmixed.additive as additive

    monkeypatch.setattr(additive, "fit_freml", lambda *a, **k: local(*a, global_search=False, **k))
    ml = _fit(data)
    # without the search the Newton iteration stops where bam's does
    assert ml.smoothing_params_["s(x)"] == pytest.approx(ref["sp"], rel=1e-4)
    assert ml.edf_["s(x)"] == pytest.approx(ref["edf"], abs=1e-3)
    # the reported score lets a user compare: the search's fit is the better one
    assert m.reml_score_ < ml.reml_score_ - 0.05
