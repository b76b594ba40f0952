"""Safe persistence: every estimator round-trips through skops with only skmixed's types trusted."""

import copy
import io
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import skmixed
from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor,
                     SplitSampleMixed, StreamingMixed)
from skmixed.persist import VersionWarning, load, save, trusted_types

skops_io = pytest.importorskip("skops.io")


def _data(n_groups=30, per=12, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"s{k:02d}" for k in range(n_groups)], per)
    X = rng.normal(size=(g.size, 2))
    eta = X @ [0.5, -0.3] + np.repeat(rng.normal(size=n_groups), per)
    return X, eta + rng.normal(size=g.size), g, eta


def _fitted():
    X, y, g, eta = _data()
    rng = np.random.default_rng(1)
    yb = (rng.random(y.size) < 1 / (1 + np.exp(-eta))).astype(float)
    yc = rng.poisson(np.exp(0.3 * eta)).astype(float)
    Xdf = pd.DataFrame(X, columns=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "linear": (MixedLinearRegressor(random_slopes=["b"]).fit(Xdf, y, groups=pd.Series(g, name="subj")),
                       Xdf, g),
            "linear-array": (MixedLinearRegressor().fit(X, y, groups=g), X, g),
            "linear-pending": (MixedLinearRegressor().partial_fit(X[:200], y[:200], groups=g[:200])
                               .partial_fit(X[200:], y[200:], groups=g[200:], refit=False), X, g),
            "logistic": (MixedLogisticRegressor().fit(X, yb, groups=g), X, g),
            "logistic-agq": (MixedLogisticRegressor(nagq=5).fit(X, yb, groups=g), X, g),
            "poisson": (MixedPoissonRegressor().fit(X, yc, groups=g), X, g),
            "streaming": (StreamingMixed().partial_fit(X, y, groups=g), X, g),
            "split": (SplitSampleMixed(MixedLinearRegressor(), random_state=0).fit(X, y, groups=g),
                      X, g),
            "additive": (AdditiveMixedRegressor().fit(X, y, groups=g), X, g),
        }


@pytest.fixture(scope="module")
def fitted():
    return _fitted()


@pytest.mark.parametrize("name", ["linear", "linear-array", "linear-pending", "logistic", "logistic-agq", "poisson",
                                  "streaming", "split", "additive"])
def test_round_trip_predictions_identical(fitted, name, tmp_path):
    est, X, g = fitted[name]
    path = tmp_path / "m.skops"
    save(est, path)
    # the file needs no trust beyond skmixed's own types (skops' defaults aside)
    untrusted = set(skops_io.get_untrusted_types(file=path))
    assert untrusted <= set(trusted_types())
    back = load(path)
    assert type(back) is type(est)
    np.testing.assert_array_equal(back.predict(X, groups=g), est.predict(X, groups=g))
    if hasattr(est, "predict_proba"):
        np.testing.assert_array_equal(back.predict_proba(X, groups=g), est.predict_proba(X, groups=g))
    # a new-level / population prediction reads the stored labels and estimates too
    np.testing.assert_array_equal(back.predict(X[:5]), est.predict(X[:5]))


def test_streaming_state_continues_after_load(fitted):
    est, X, g = fitted["streaming"]
    buf = io.BytesIO()
    save(est, buf)
    buf.seek(0)
    back = load(buf)
    X2, y2, g2, _ = _data(seed=5)
    a = copy.deepcopy(est).partial_fit(X2, y2, groups=g2)  # (the fixture is not changed)
    b = back.partial_fit(X2, y2, groups=g2)
    np.testing.assert_array_equal(b.fixed_effects_, a.fixed_effects_)


def test_refuses_foreign_types(tmp_path):
    path = tmp_path / "evil.skops"
    skops_io.dump({"format": "skmixed-skops-1", "skmixed_version": skmixed.__version__, "object": os.system},
                  path)
    with pytest.raises(ValueError, match="not skmixed's.*system"):
        load(path)


def test_other_version_warns_or_refuses(fitted, tmp_path, monkeypatch):
    est, X, g = fitted["linear-array"]
    path = tmp_path / "old.skops"
    monkeypatch.setattr(skmixed, "__version__", "0.0.1")
    save(est, path)
    monkeypatch.undo()
    with pytest.warns(VersionWarning, match="written by skmixed 0.0.1"):
        back = load(path)
    np.testing.assert_array_equal(back.predict(X, groups=g), est.predict(X, groups=g))
    with pytest.raises(ValueError, match="written by skmixed 0.0.1"):
        load(path, version_mismatch="raise")


def test_not_a_skmixed_file(tmp_path):
    path = tmp_path / "other.skops"
    skops_io.dump({"a": 1}, path)
    with pytest.raises(ValueError, match="not a file written by skmixed"):
        load(path)


FORMULAS = [
    ("linear", "Reaction ~ Days + cat + c2 + scale(Days) + poly(Days, 2) + (Days | Subject)"),
    ("logistic", "yb ~ Days + c2 + (1 | Subject)"),
    ("streaming", "Reaction ~ Days + (1 | Subject)"),
    ("additive", "Reaction ~ s(Days, k=5) + cat + (1 | Subject)"),
]


def _sleep():
    from skmixed.datasets import load_sleepstudy

    df = load_sleepstudy()
    df["cat"] = pd.Categorical(np.where(df.Days > 4, "hi", "lo"))
    df["c2"] = np.where(df.Days % 3 == 0, "a", np.where(df.Days % 3 == 1, "b", "c"))
    df["yb"] = (df.Reaction > df.Reaction.mean()).astype(float)
    return df


@pytest.mark.parametrize("kind,formula", FORMULAS)
def test_formula_models_round_trip(kind, formula, tmp_path):
    cls = {"linear": MixedLinearRegressor, "logistic": MixedLogisticRegressor, "streaming": StreamingMixed,
           "additive": AdditiveMixedRegressor}[kind]
    df = _sleep()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cls.from_formula(formula, df)
    path = tmp_path / "f.skops"
    save(m, path)
    assert set(skops_io.get_untrusted_types(file=path)) <= set(trusted_types())
    back = load(path)
    # new data are read by the same spec: categorical levels, scale()/poly() state kept
    new = df.iloc[::7]
    np.testing.assert_array_equal(back.predict(df), m.predict(df))
    np.testing.assert_array_equal(back.predict(new), m.predict(new))


def test_tampered_formula_is_refused(tmp_path):
    from skmixed._design.safe_formula import FormulaError

    df = _sleep()
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (1 | Subject)", df)
    path = tmp_path / "f.skops"
    save(m, path)
    payload = skops_io.load(path, trusted=skops_io.get_untrusted_types(file=path))
    payload["object"]._formula.model_spec.formula = "__import__('os').getcwd()"
    skops_io.dump(payload, path)
    with pytest.raises(FormulaError):
        load(path)
