"""Separation is warned about (by name) on every logistic path (issue: Trust II).

Complete separation by a fixed-effect column (``y = x0 > 0``) and by groups (every group of
one class) on the batch estimators' paths the older tests do not cover: the binomial additive
model, the streaming logistic GLMM, several grouping factors (in memory and distributed) and
the distributed one-factor fit.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

from skmixed import AdditiveMixedRegressor, MixedLogisticRegressor, StreamingMixedLogistic
from skmixed.logistic import SeparationWarning


def _data():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 20)
    X = rng.normal(size=(g.size, 2))
    return X, g, (X[:, 0] > 0).astype(float), (g % 2).astype(float)


def _sep_messages(fit):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fit()
    return [str(x.message) for x in w if issubclass(x.category, SeparationWarning)]


@pytest.mark.parametrize("make", [lambda: AdditiveMixedRegressor(family="binomial"),
                                  lambda: StreamingMixedLogistic()], ids=["additive", "streaming"])
def test_fixed_and_group_separation_named(make):
    X, g, y_fixed, y_group = _data()
    msgs = _sep_messages(lambda: make().fit(X, y_fixed, groups=g))
    assert any("diverge" in m and "'x0'" in m for m in msgs), msgs
    msgs = _sep_messages(lambda: make().fit(X, y_group, groups=g))
    assert any("'group'" in m and ("single class" in m or "one class" in m) for m in msgs), msgs
    # and a well-posed fit says nothing
    rng = np.random.default_rng(1)
    y_ok = (rng.random(g.size) < 1 / (1 + np.exp(-(0.5 * X[:, 0] + rng.normal(size=20)[g])))).astype(float)
    assert not _sep_messages(lambda: make().fit(X, y_ok, groups=g))


def test_stream_group_separation_names_groups():
    X, g, _, y_group = _data()
    msgs = _sep_messages(lambda: StreamingMixedLogistic().fit(X, y_group, groups=g))
    assert any("20 of 20 groups" in m and "e.g. ['0', '1', '2', '3', '4'] and 15 more" in m for m in msgs), msgs


def test_crossed_fixed_separation_is_a_clear_error_and_groups_warn():
    X, g, y_fixed, y_group = _data()
    h = np.random.default_rng(2).integers(0, 4, g.size)
    with pytest.raises(ValueError, match="complete separation"):
        MixedLogisticRegressor().fit(X, y_fixed, groups=np.c_[g, h])
    msgs = _sep_messages(lambda: MixedLogisticRegressor().fit(X, y_group, groups=np.c_[g, h]))
    assert any("'group0'" in m and "single class" in m for m in msgs), msgs


@pytest.mark.parametrize("groups", ["g", ["g", "h"]], ids=["one_factor", "crossed"])
def test_dask_group_separation_named(groups):
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    from skmixed.dask import fit_dask

    X, g, _, y_group = _data()
    df = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "y": y_group, "g": g,
                       "h": np.random.default_rng(2).integers(0, 4, g.size)})
    with dask.config.set(scheduler="threads"):
        msgs = _sep_messages(lambda: fit_dask(MixedLogisticRegressor(), dd.from_pandas(df, npartitions=2), y="y",
                                              X=["x0", "x1"], groups=groups))
    assert any("'g'" in m and "single class" in m for m in msgs), msgs
