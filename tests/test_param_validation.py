"""Declarative parameter validation (scikit-learn's ``_parameter_constraints``) on every estimator (issue #13).

scikit-learn's own ``check_param_validation`` (run by ``parametrize_with_checks`` in each estimator's test
module) checks every parameter against its constraint; here: the named cases fail with a clear error that
names the parameter, before any data are read.
"""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor,
                     SplitSampleMixed, StreamingMixed)

ESTIMATORS = [MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor, AdditiveMixedRegressor,
              StreamingMixed]


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    g = np.repeat(np.arange(6), 10)
    return X, (rng.random(60) < 0.5).astype(float), g


@pytest.mark.parametrize("params, name", [
    (dict(reml="yes"), "reml"),
    (dict(max_iter=-1), "max_iter"),
    (dict(max_iter=0), "max_iter"),
    (dict(fit_intercept="no"), "fit_intercept"),
    (dict(verbose="loud"), "verbose"),
    (dict(weights=3), "weights"),
])
def test_linear_bad_params(params, name):
    X, y, g = _data()
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of MixedLinearRegressor must be"):
        MixedLinearRegressor(**params).fit(X, y, groups=g)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        MixedLinearRegressor(**params).partial_fit(X, y, groups=g)
    assert issubclass(InvalidParameterError, ValueError)  # what callers catch


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_intercept_no(cls):
    X, y, g = _data()
    with pytest.raises(ValueError, match=f"The 'fit_intercept' parameter of {cls.__name__} must be an instance of"):
        cls(fit_intercept="no").fit(X, y, groups=g)


@pytest.mark.parametrize("cls", [MixedLogisticRegressor, MixedPoissonRegressor])
@pytest.mark.parametrize("params, name", [(dict(max_iter=-1), "max_iter"), (dict(nagq=-1), "nagq"),
                                          (dict(tol=0), "tol"), (dict(nagq=1.5), "nagq")])
def test_glmm_bad_params(cls, params, name):
    X, y, g = _data()
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of {cls.__name__} must be"):
        cls(**params).fit(X, y, groups=g)


@pytest.mark.parametrize("cls, params, name", [
    (AdditiveMixedRegressor, dict(discrete="yes"), "discrete"),
    (AdditiveMixedRegressor, dict(family="gamma"), "family"),
    (AdditiveMixedRegressor, dict(n_knots=2), "n_knots"),
    (StreamingMixed, dict(forgetting=1), "forgetting"),
    (StreamingMixed, dict(refit_every="never"), "refit_every"),
    (SplitSampleMixed, dict(estimator=MixedLinearRegressor(), n_subsamples=1), "n_subsamples"),
    (SplitSampleMixed, dict(estimator=MixedLinearRegressor(), strategy="rows"), "strategy"),
    (SplitSampleMixed, dict(estimator=MixedLinearRegressor(), combine="median"), "combine"),
])
def test_other_bad_params(cls, params, name):
    X, y, g = _data()
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of {cls.__name__} must be"):
        cls(**params).fit(X, y, groups=g)


def test_every_parameter_has_a_constraint():
    for cls in ESTIMATORS + [SplitSampleMixed]:
        est = cls(MixedLinearRegressor()) if cls is SplitSampleMixed else cls()
        assert set(cls._parameter_constraints) == set(est.get_params(deep=False)), cls.__name__


@pytest.mark.parametrize("est", [cls() for cls in ESTIMATORS] + [SplitSampleMixed(MixedLinearRegressor())],
                         ids=lambda e: type(e).__name__)
def test_sklearn_check_param_validation(est):
    """scikit-learn's own check: a constraint per parameter; a bad type or value of each raises
    InvalidParameterError naming it, from fit and partial_fit."""
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation(type(est).__name__, est)


def test_validation_is_skipped_only_while_no_parameter_changes():
    """The check is memoised per estimator (partial_fit's per-call cost) but set_params re-triggers it."""
    from sklearn.utils._param_validation import InvalidParameterError
    from skmixed import MixedLinearRegressor

    rng = np.random.default_rng(0)
    X, y, g = rng.normal(size=(60, 2)), rng.normal(size=60), np.repeat(np.arange(6), 10)
    m = MixedLinearRegressor()
    m.partial_fit(X, y, groups=g)
    m.set_params(max_iter=-1)
    with pytest.raises(InvalidParameterError, match="max_iter"):
        m.partial_fit(X, y, groups=g)
    m.set_params(max_iter=500)
    m.partial_fit(X, y, groups=g)
