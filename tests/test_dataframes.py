"""Any dataframe (pandas, polars, pyarrow through narwhals) and the group_column rules."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmixed import MixedLinearRegressor, MixedLogisticRegressor, StreamingMixed
from skmixed.datasets import load_sleepstudy

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")


def _frames(df):
    return {"pandas": df, "polars": pl.from_pandas(df), "pyarrow": pa.Table.from_pandas(df, preserve_index=False)}


@pytest.fixture(scope="module")
def data():
    df = load_sleepstudy()
    rng = np.random.default_rng(0)
    df["site"] = np.where(rng.random(len(df)) < 0.5, "north", "south")
    df["Subject"] = "s" + df["Subject"].astype(str)
    return df


def test_same_formula_model_from_pandas_polars_pyarrow(data):
    # acceptance 4: identical estimates and predictions whatever the frame library
    fits = {}
    for lib, frame in _frames(data).items():
        m = MixedLinearRegressor(formula="Reaction ~ Days + site + (Days | Subject)").fit(frame)
        fits[lib] = (m.fixed_effects_.to_numpy(), m.theta_.to_numpy(), m.predict(frame),
                     list(m.fixed_effects_.index))
    for lib in ("polars", "pyarrow"):
        for a, b in zip(fits[lib], fits["pandas"]):
            np.testing.assert_array_equal(a, b)
    assert fits["pandas"][3] == ["(Intercept)", "Days", "sitesouth"]
    # and the pandas-fitted model predicts from the other libraries' frames
    m = MixedLinearRegressor(formula="Reaction ~ Days + site + (Days | Subject)").fit(data)
    for frame in _frames(data).values():
        np.testing.assert_array_equal(m.predict(frame), fits["pandas"][2])


def test_same_array_model_with_group_column_name_from_any_frame(data):
    X = data[["Days", "Subject"]]
    preds, coefs = [], []
    for frame in _frames(X).values():
        m = MixedLinearRegressor(group_column="Subject", random_slopes=["Days"]).fit(frame, data["Reaction"])
        preds.append(m.predict(frame))
        coefs.append(m.fixed_effects_.to_numpy())
        assert list(m.feature_names_in_) == ["Days", "Subject"]
    for p, c in zip(preds[1:], coefs[1:]):
        np.testing.assert_array_equal(p, preds[0])
        np.testing.assert_array_equal(c, coefs[0])
    # groups as a polars Series
    m = MixedLinearRegressor().fit(pl.from_pandas(data[["Days"]]), data["Reaction"],
                                   groups=pl.Series(data["Subject"].to_numpy()))
    np.testing.assert_allclose(m.fixed_effects_, MixedLinearRegressor().fit(
        data[["Days"]], data["Reaction"], groups=data["Subject"]).fixed_effects_, rtol=0, atol=0)


def test_partial_fit_from_polars_batches(data):
    frame = pl.from_pandas(data)
    s = StreamingMixed(formula="Reaction ~ Days + (1 + Days | Subject)")
    ref = StreamingMixed(formula="Reaction ~ Days + (1 + Days | Subject)")
    for k in range(0, len(data), 45):
        s.partial_fit(frame.slice(k, 45))
        ref.partial_fit(data.iloc[k:k + 45])
    np.testing.assert_array_equal(s.fixed_effects_, ref.fixed_effects_)
    lin = MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)")
    for k in range(0, len(data), 60):
        lin.partial_fit(frame.slice(k, 60))
    full = MixedLinearRegressor(formula="Reaction ~ Days + (1 | Subject)").fit(data)
    np.testing.assert_allclose(lin.fixed_effects_, full.fixed_effects_, rtol=1e-8)


def test_set_output_pandas_pipeline_keeps_names(data):
    pipe = Pipeline([("scale", StandardScaler().set_output(transform="pandas")),
                     ("model", MixedLinearRegressor(random_slopes=["Days"]))])
    pipe.fit(data[["Days"]], data["Reaction"], model__groups=data["Subject"])
    assert list(pipe[-1].fixed_effects_.index) == ["(Intercept)", "Days"]
    assert list(pipe[-1].cov_re_["Subject"].index) == ["(Intercept)", "Days"]


# ----------------------------------------------------------------- group_column (step 5)
def test_negative_group_column_on_arrays_is_not_a_fixed_effect(data):
    X = np.column_stack([data["Days"], data["Subject"].str[1:].astype(int)])
    a = MixedLinearRegressor(group_column=-1).fit(X, data["Reaction"])
    b = MixedLinearRegressor(group_column=1).fit(X, data["Reaction"])
    assert list(a.fixed_effects_.index) == ["(Intercept)", "x0"]
    np.testing.assert_array_equal(a.fixed_effects_, b.fixed_effects_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    with pytest.raises(ValueError, match="out of range"):
        MixedLinearRegressor(group_column=-3).fit(X, data["Reaction"])


def test_column_transformer_remainder_prefix(data):
    ct = ColumnTransformer([("num", StandardScaler(), ["Days"])], remainder="passthrough")
    ct.set_output(transform="pandas")
    pipe = Pipeline([("ct", ct), ("model", MixedLinearRegressor(group_column="Subject"))])
    pipe.fit(data[["Days", "Subject"]], data["Reaction"])
    assert list(pipe[-1].fixed_effects_.index) == ["(Intercept)", "num__Days"]
    assert pipe[-1].factors_[0].name == "remainder__Subject"
    pred = pipe.predict(data[["Days", "Subject"]])
    ref = MixedLinearRegressor().fit(pipe[0].transform(data[["Days", "Subject"]])[["num__Days"]], data["Reaction"],
                                     groups=data["Subject"])
    np.testing.assert_allclose(pred, ref.predict(pipe[0].transform(data[["Days", "Subject"]])[["num__Days"]],
                                                 groups=data["Subject"]), rtol=1e-10)
    two = data[["Days", "Subject"]].rename(columns={"Days": "a__Subject", "Subject": "b__Subject"})
    with pytest.raises(ValueError, match="several prefixed columns"):
        MixedLinearRegressor(group_column="Subject").fit(two, data["Reaction"])


@pytest.mark.parametrize("bad", [3, "s308", np.array(3)])
def test_scalar_groups_is_a_clear_error(data, bad):
    m = MixedLinearRegressor().fit(data[["Days"]], data["Reaction"], groups=data["Subject"])
    with pytest.raises(ValueError, match="one label per row"):
        m.predict(data[["Days"]], groups=bad)
    with pytest.raises(ValueError, match="one label per row"):
        MixedLogisticRegressor().fit(data[["Days"]], data["Reaction"] > 300, groups=bad)


def test_groups_and_group_column_together_is_an_error(data):
    X = data[["Days", "Subject"]]
    with pytest.raises(ValueError, match="group_column is set"):
        MixedLinearRegressor(group_column="Subject").fit(X, data["Reaction"], groups=data["Subject"])
    m = MixedLinearRegressor(group_column="Subject").fit(X, data["Reaction"])
    with pytest.raises(ValueError, match="group_column is set"):
        m.predict(X, groups=data["Subject"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="group_column is set"):
            StreamingMixed(group_column="Subject").fit(X, data["Reaction"], groups=data["Subject"])
