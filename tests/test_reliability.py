"""The shared bad-input matrix (issue 8): every estimator, every case, a correct result or a clear error.

Never a numba crash, a silent NaN result or a half-updated model. Estimators register in ESTIMATORS
with a factory and a response maker (binary for classifiers).
"""

import inspect
import pickle

import numpy as np
import pandas as pd
import pytest

import skmixed

ESTIMATORS = {
    "linear": (lambda **kw: skmixed.MixedLinearRegressor(**kw), "continuous"),
    "logistic": (lambda **kw: skmixed.MixedLogisticRegressor(**kw), "binary"),
    "logistic-agq": (lambda **kw: skmixed.MixedLogisticRegressor(nagq=5, **kw), "binary"),
    "additive": (lambda **kw: skmixed.AdditiveMixedRegressor(**kw), "continuous"),
    "additive-smooth": (lambda **kw: skmixed.AdditiveMixedRegressor(smooth=[1], n_knots=6, **kw), "continuous"),
    "additive-binomial": (lambda **kw: skmixed.AdditiveMixedRegressor(family="binomial", **kw), "binary"),
    "streaming": (lambda **kw: skmixed.StreamingMixed(**kw), "continuous"),
    "split-linear": (lambda **kw: skmixed.SplitSampleMixed(skmixed.MixedLinearRegressor(**kw), n_subsamples=2,
                                                           random_state=0), "continuous"),
    "split-logistic": (lambda **kw: skmixed.SplitSampleMixed(skmixed.MixedLogisticRegressor(**kw),
                                                             n_subsamples=2, random_state=0), "binary"),
}


def _data(kind, n=400, groups=20, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    x = rng.normal(size=(n, 2))
    lp = 0.5 * x[:, 0] - 0.3 * x[:, 1] + rng.normal(0, 0.7, groups)[g]
    if kind == "binary":
        y = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(float)
    else:
        y = lp + rng.normal(size=n)
    return x, y, g


@pytest.fixture(params=sorted(ESTIMATORS))
def est_case(request):
    """(factory, response kind) of one registered estimator."""
    make, kind = ESTIMATORS[request.param]
    return make, kind


def _state(est):
    """Everything fitted, pickled: equal bytes means nothing changed."""
    return pickle.dumps({k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("__")})


BAD_FIT = {
    "nan in X": lambda X, y, g, w: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), y, g, w),
    "inf in X": lambda X, y, g, w: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), y, g, w),
    "nan in y": lambda X, y, g, w: (X, np.where(np.arange(y.size) == 5, np.nan, y), g, w),
    "inf in y": lambda X, y, g, w: (X, np.where(np.arange(y.size) == 5, -np.inf, y), g, w),
    "nan in weights": lambda X, y, g, w: (X, y, g, np.where(np.arange(y.size) == 5, np.nan, 1.0)),
    "negative weights": lambda X, y, g, w: (X, y, g, np.where(np.arange(y.size) == 5, -1.0, 1.0)),
    "all-zero weights": lambda X, y, g, w: (X, y, g, np.zeros(y.size)),
    "nan group label": lambda X, y, g, w: (X, y, np.where(np.arange(y.size) == 7, np.nan, g.astype(float)), w),
    "None group label": lambda X, y, g, w: (X, y, np.array([None] + list(g[1:]), dtype=object), w),
    "y too short": lambda X, y, g, w: (X, y[:-1], g, w),
    "groups too short": lambda X, y, g, w: (X, y, g[:-1], w),
    "weights too short": lambda X, y, g, w: (X, y, g, np.ones(y.size - 1)),
    "empty": lambda X, y, g, w: (X[:0], y[:0], g[:0], w),
    "one row": lambda X, y, g, w: (X[:1], y[:1], g[:1], w),
    "one group": lambda X, y, g, w: (X, y, np.zeros(y.size, dtype=int), w),
    "string X": lambda X, y, g, w: (np.where(np.arange(X.size).reshape(X.shape) == 0, "a", X.astype(str)), y, g, w),
    "3-D X": lambda X, y, g, w: (X[:, :, None], y, g, w),
}


def _takes_weights(est):
    return "sample_weight" in inspect.signature(est.fit).parameters


# streams start with whatever the first batch brings: one group, or one row, is a valid stream
ONE_GROUP_OK = {"streaming"}


@pytest.mark.parametrize("case", sorted(BAD_FIT))
def test_bad_fit_input_raises_clearly_and_changes_nothing(est_case, case, request):
    make, kind = est_case
    X, y, g = _data(kind)
    est = make().fit(X, y, groups=g)
    before = _state(est)
    Xb, yb, gb, wb = BAD_FIT[case](X, y, g, None)
    kw = {} if wb is None else {"sample_weight": wb}
    if kw and not _takes_weights(est):
        pytest.skip(f"{type(est).__name__} takes no sample_weight")
    if case in ("one group", "one row") and request.node.callspec.params["est_case"] in ONE_GROUP_OK:
        est.fit(Xb, yb, groups=gb)
        assert np.isfinite(est.predict(Xb[:5], groups=gb[:5])).all()
        return
    with pytest.raises((ValueError, TypeError)) as info:
        est.fit(Xb, yb, groups=gb, **kw)
    assert "numba" not in str(info.value).lower()
    assert len(str(info.value)) > 10  # says what is wrong
    assert _state(est) == before


def test_one_group_with_random_slopes_raises(est_case, request):
    make, kind = est_case
    X, y, _ = _data(kind)
    if request.node.callspec.params["est_case"] in ONE_GROUP_OK:
        m = make(random_slopes=[0]).fit(X, y, groups=np.ones(y.size))
        assert np.isfinite(m.fixed_effects_.to_numpy()).all()
        return
    with pytest.raises(ValueError, match="one level"):
        make(random_slopes=[0]).fit(X, y, groups=np.ones(y.size))


@pytest.mark.parametrize("layout", ["float32", "read-only", "non-contiguous", "fortran", "dataframe"])
def test_array_layouts_give_the_same_fit(est_case, layout):
    make, kind = est_case
    X, y, g = _data(kind)
    ref = make().fit(X, y, groups=g)
    if layout == "float32":
        X2 = X.astype(np.float32).astype(np.float64).astype(np.float32)
        ref = make().fit(X2.astype(np.float64), y, groups=g)
    elif layout == "read-only":
        X2 = X.copy()
        X2.setflags(write=False)
        y = y.copy()
        y.setflags(write=False)
    elif layout == "non-contiguous":
        X2 = np.repeat(X, 2, axis=1)[:, ::2]
        assert not X2.flags.c_contiguous
    elif layout == "fortran":
        X2 = np.asfortranarray(X)
    else:
        X2 = pd.DataFrame(X, columns=["a", "b"])
    got = make().fit(X2, y, groups=g)
    np.testing.assert_allclose(got.fixed_effects_.to_numpy(), ref.fixed_effects_.to_numpy(), rtol=1e-6)


def test_predict_unseen_levels_and_absent_groups(est_case):
    make, kind = est_case
    X, y, g = _data(kind)
    est = make().fit(X, y, groups=g)
    pop = est.predict(X[:5])
    assert np.isfinite(pop).all()
    np.testing.assert_allclose(est.predict(X[:5], groups=[1000, 1001, 1002, 1003, 1004]), pop)
    with pytest.raises(ValueError, match="features"):
        est.predict(np.column_stack([X[:5], X[:5, :1]]), groups=g[:5])


def test_mixed_dtype_and_categorical_labels(est_case):
    make, kind = est_case
    X, y, g = _data(kind)
    lab = np.array([f"s{v}" if v % 2 else v for v in g], dtype=object)  # ints and strings mixed
    a = make().fit(X, y, groups=lab)
    b = make().fit(X, y, groups=pd.Categorical(g))
    # split-sample estimators partition the levels at random, so other labels give other subsamples
    randomized = isinstance(a, skmixed.SplitSampleMixed)
    np.testing.assert_allclose(a.fixed_effects_.to_numpy(), b.fixed_effects_.to_numpy(),
                               rtol=0.05 if randomized else 1e-8, atol=0.05 if randomized else 0)
    assert np.isfinite(a.predict(X[:3], groups=lab[:3])).all()


def test_million_distinct_groups_linear():
    rng = np.random.default_rng(1)
    n, J = 2_000_000, 1_000_000
    g = rng.permutation(np.repeat(np.arange(J), 2))
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 0.5, J)[g] + rng.normal(size=n)
    m = skmixed.MixedLinearRegressor().fit(x[:, None], y, groups=g)
    assert m.fixed_effects_["x0"] == pytest.approx(0.5, abs=0.01)
    assert np.sqrt(m.cov_re_["group"].iloc[0, 0]) == pytest.approx(0.5, rel=0.1)
    assert m.random_effects_["group"].shape == (J, 1)


def test_logistic_rejects_non_binary_and_single_class():
    X, y, g = _data("binary")
    m = skmixed.MixedLogisticRegressor().fit(X, y, groups=g)
    before = _state(m)
    with pytest.raises(ValueError):
        m.fit(X, np.arange(len(y)) % 3, groups=g)
    with pytest.raises(ValueError):
        m.fit(X, np.ones(len(y)), groups=g)
    assert _state(m) == before


def test_linear_rejects_one_observation_per_level_and_constant_y():
    X, y, g = _data("continuous", n=60, groups=3)
    with pytest.raises(ValueError, match="not identifiable"):
        skmixed.MixedLinearRegressor().fit(X, y, groups=np.arange(60))
    with pytest.raises(ValueError, match="constant"):
        skmixed.MixedLinearRegressor().fit(X, np.full(60, 3.0), groups=g)
