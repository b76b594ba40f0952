"""Bad input gives a clear error and changes nothing; rank deficiency drops columns with a warning."""

import numpy as np
import pandas as pd
import pytest

from skmixed import MixedLinearRegressor
from skmixed.datasets import load_sleepstudy


@pytest.fixture
def data():
    df = load_sleepstudy()
    return df[["Days"]].to_numpy(float), df["Reaction"].to_numpy(float), df["Subject"].to_numpy()


@pytest.mark.parametrize("where", ["X", "y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_rejected(data, where, bad):
    X, y, g = (a.copy() for a in data)
    (X[3, 0] if where == "X" else None)
    if where == "X":
        X[3, 0] = bad
    else:
        y[3] = bad
    with pytest.raises(ValueError, match=where):
        MixedLinearRegressor().fit(X, y, groups=g)


def test_missing_group_label(data):
    X, y, g = data
    g = g.astype(object)
    g[5] = None
    with pytest.raises(ValueError, match="missing labels"):
        MixedLinearRegressor().fit(X, y, groups=g)


def test_length_mismatch(data):
    X, y, g = data
    with pytest.raises(ValueError, match="rows"):
        MixedLinearRegressor().fit(X, y[:-1], groups=g)
    with pytest.raises(ValueError, match="groups"):
        MixedLinearRegressor().fit(X, y, groups=g[:-1])


def test_single_level(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="only one level"):
        MixedLinearRegressor().fit(X, y, groups=np.zeros(len(y)))


def test_too_few_rows():
    X = np.array([[0.0], [1.0], [2.0]])
    with pytest.raises(ValueError, match="too few"):
        MixedLinearRegressor(random_slopes=[0]).fit(X, [1.0, 2.0, 4.0], groups=["a", "b", "b"])


def test_failed_fit_leaves_model_unchanged(data):
    X, y, g = data
    m = MixedLinearRegressor().fit(X, y, groups=g)
    before = m.fixed_effects_.copy(), m.theta_.copy()
    y2 = y.copy()
    y2[0] = np.nan
    with pytest.raises(ValueError):
        m.fit(X, y2, groups=g)
    pd.testing.assert_series_equal(m.fixed_effects_, before[0])
    pd.testing.assert_series_equal(m.theta_, before[1])


def test_rank_deficient_drops_aliased_column(data):
    X, y, g = data
    X2 = np.column_stack([X, 2 * X[:, 0] + 1])  # aliased with intercept and Days
    with pytest.warns(UserWarning, match="rank deficient"):
        m = MixedLinearRegressor().fit(X2, y, groups=g)
    ref = MixedLinearRegressor().fit(X, y, groups=g)
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x0"]
    np.testing.assert_allclose(m.fixed_effects_.to_numpy(), ref.fixed_effects_.to_numpy(), rtol=1e-9)
    assert m.coef_[1] == 0.0
    np.testing.assert_allclose(m.predict(X2, groups=g), ref.predict(X, groups=g), rtol=1e-9)


def test_string_int_and_categorical_labels_agree(data):
    X, y, g = data
    fits = [MixedLinearRegressor().fit(X, y, groups=lab) for lab in
            (g, pd.Series(g).astype(int).to_numpy(), pd.Categorical(g))]
    for f in fits[1:]:
        np.testing.assert_allclose(f.fixed_effects_, fits[0].fixed_effects_, rtol=1e-10)


def test_formula_predict_refuses_unseen_fixed_effect_levels_from_any_thread():
    # lme4 refuses new levels of a fixed-effect factor; formulaic would code them as the
    # reference level with a warning. The check must not depend on (process-wide) warning
    # filters, so concurrent predictions in threads all refuse.
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n), "k": rng.choice(["a", "b"], n), "m": rng.integers(1, 3, n),
                       "g": rng.integers(0, 20, n)})
    df["y"] = df["x"] + (df["k"] == "b") + rng.normal(size=20)[df["g"]] + rng.normal(size=n)
    est = MixedLinearRegressor.from_formula("y ~ x + k + C(m) + (1 | g)", df)
    ok = df.iloc[:5]
    np.testing.assert_allclose(est.predict(ok), est.predict(ok.copy()))
    filters = list(warnings.filters)
    for bad in (ok.assign(k=["a", "z", "a", "b", "a"]), ok.assign(m=[1, 2, 7, 1, 1])):
        with pytest.raises(ValueError, match="the fixed-effect coding has not seen"):
            est.predict(bad)

        def attempt(_):
            try:
                est.predict(bad)
            except ValueError:
                return True
            return False

        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(attempt, range(40)))
    assert list(warnings.filters) == filters


def test_formula_with_missing_values_is_a_clear_error():
    df = load_sleepstudy()
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
    bad = df.copy()
    bad.loc[3, "Days"] = np.nan
    with pytest.raises(ValueError, match="missing values in a column the formula uses"):
        MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", bad)
    with pytest.raises(ValueError, match="missing values in a column the formula uses"):
        m.predict(bad)
