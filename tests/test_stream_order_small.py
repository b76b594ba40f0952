"""Streams of small data in the order real data arrive: stored grouped, or sorted by a covariate.

Two silent wrong answers came from such streams (issue 17's promise: after any batch the
estimates are the fit of all rows seen, whatever the order):

* a batch ended without a correction when it brought fewer than 4 rows per group seen, so on
  small data whose groups arrive one after another (MASS::bacteria as stored) the logistic
  stream kept the fit of its first batch, and ChickWeight sorted by time kept an earlier
  batch's variance parameters;
* a correction warm-started from a singular fit of fewer rows (a covariate's early range)
  stopped on the boundary at a worse optimum than the interior one.

Data and R fits: tests/data/stream_order_refs.R.  Every comparison is in units of the
reference fit's standard errors.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skmixed.streaming_logistic as streaming_logistic
from skmixed import (MixedLinearRegressor, MixedLogisticRegressor, StreamingMixed, StreamingMixedLogistic,
                     StreamOrderWarning)

DATA = Path(__file__).parent / "data"
REFS = json.loads((DATA / "stream_order_refs.json").read_text())


def _batches(n, k):
    return np.array_split(np.arange(n), k)


def _bacteria():
    b = pd.read_csv(DATA / "bacteria_stream.csv")
    b["ID"] = b["ID"].astype(str)
    return b


def _chick_by_time():
    c = pd.read_csv(DATA / "chickweight_stream.csv")
    c["Chick"] = c["Chick"].astype(str)
    return c.sort_values(["Time", "Chick"], kind="stable").reset_index(drop=True)


def _sim(seed, J, n, logistic):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    x = rng.normal(size=n) + 0.3 * rng.normal(size=J)[g]
    z = rng.normal(size=n)
    eta = 0.5 + x - 0.5 * z + rng.normal(0, 1.0, J)[g] + rng.normal(0, 0.5, J)[g] * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float) if logistic else eta + rng.normal(0, 1, n)
    df = pd.DataFrame({"g": [f"g{k}" for k in g], "x": x, "z": z, "y": y, "gi": g})
    return {"grouped": df.sort_values("gi", kind="stable"), "sorted_by_x": df.sort_values("x", kind="stable"),
            "sorted_by_x_descending": df.sort_values("x", ascending=False, kind="stable")}


def _phi(model):
    return next(iter(model.cov_re_.values())).to_numpy()


def test_chickweight_sorted_by_time_is_the_batch_ml_fit_after_every_batch():
    c = _chick_by_time()
    s = StreamingMixed(random_slopes=["Time"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", StreamOrderWarning)
        for idx in _batches(len(c), 5):
            ch = c.iloc[idx]
            s.partial_fit(ch[["Time"]], ch["weight"], groups=ch["Chick"])
            seen = c.iloc[: idx[-1] + 1]
            b = MixedLinearRegressor(reml=False, random_slopes=["Time"]).fit(seen[["Time"]], seen["weight"],
                                                                           groups=seen["Chick"])
            se = b.fixed_effects_se_.to_numpy()
            assert np.abs(s.fixed_effects_.to_numpy() - b.fixed_effects_.to_numpy()).max() / se.min() < 1e-3
            assert np.abs(_phi(s) - _phi(b)).max() < 1e-3 * np.abs(_phi(b)).max()
            assert s.sigma_ == pytest.approx(b.sigma_, rel=1e-4)
            assert s.loglik_ >= b.loglik_ - 1e-6
    r = REFS["chickweight"]
    assert s.n_corrections_ == 5
    assert np.abs(s.fixed_effects_.to_numpy() - r["fixef"]).max() / min(r["se"]) < 0.01
    np.testing.assert_allclose(_phi(s), r["Phi"], rtol=2e-3)
    assert s.sigma_ == pytest.approx(r["sigma"], rel=1e-4)
    assert s.loglik_ == pytest.approx(r["loglik"], abs=1e-4)


def test_bacteria_in_stored_order_is_glmers_fit():
    b = _bacteria()
    sl = StreamingMixedLogistic()
    for idx in _batches(len(b), 4):
        ch = b.iloc[idx]
        sl.partial_fit(ch[["drug", "late"]], ch["y01"], groups=ch["ID"])
        seen = b.iloc[: idx[-1] + 1]
        if seen["ID"].nunique() < 3:
            continue
        bf = MixedLogisticRegressor().fit(seen[["drug", "late"]], seen["y01"], groups=seen["ID"])
        d = np.abs(sl.fixed_effects_.to_numpy() - bf.fixed_effects_.to_numpy()) / bf.fixed_effects_se_.to_numpy()
        assert d.max() < 0.01
    r = REFS["bacteria"]
    assert np.abs(sl.fixed_effects_.to_numpy() - r["fixef"]).max() / min(r["se"]) < 0.01
    np.testing.assert_allclose(sl.fixed_effects_se_.to_numpy(), r["se"], rtol=0.01)
    assert _phi(sl)[0, 0] == pytest.approx(r["var_ID"], rel=1e-3)
    assert sl.deviance_ == pytest.approx(r["deviance"], abs=1e-3)


def test_logistic_standard_errors_at_stale_estimates_are_nan_and_warn(monkeypatch):
    # the old schedule (a batch ends with a correction only after 4 rows per group) leaves the
    # first batch's estimates, which are no minimum of the deviance of all rows: no zero SEs
    monkeypatch.setattr(streaming_logistic, "end_of_batch_due", lambda since, n_groups, n_rows: since >= 4 * n_groups)
    b = _bacteria()
    sl = StreamingMixedLogistic()
    for idx in _batches(len(b), 4):
        ch = b.iloc[idx]
        sl.partial_fit(ch[["drug", "late"]], ch["y01"], groups=ch["ID"])
    assert sl.n_corrections_ == 1
    with pytest.warns(StreamOrderWarning, match="not positive definite"):
        se = sl.fixed_effects_se_
    assert se.isna().all()


@pytest.mark.parametrize("order", ["grouped", "sorted_by_x_descending"])
def test_simulated_random_slope_stream_is_the_batch_ml_fit_after_every_batch(order):
    d = _sim(1, 8, 200, logistic=False)[order]
    s = StreamingMixed(random_slopes=["x"])
    for idx in _batches(len(d), 8):
        ch = d.iloc[idx]
        s.partial_fit(ch[["x", "z"]], ch["y"], groups=ch["g"])
        seen = d.iloc[: idx[-1] + 1]
        if seen["g"].nunique() < 2:
            continue
        b = MixedLinearRegressor(reml=False, random_slopes=["x"]).fit(seen[["x", "z"]], seen["y"], groups=seen["g"])
        assert s.loglik_ >= b.loglik_ - 1e-6  # never a worse optimum than the batch optimiser's
        d_se = np.abs(s.fixed_effects_.to_numpy() - b.fixed_effects_.to_numpy()) / b.fixed_effects_se_.to_numpy()
        assert d_se.max() < 0.1
        assert np.abs(_phi(s) - _phi(b)).max() < 1e-2 * max(np.abs(_phi(b)).max(), 1e-2)


@pytest.mark.parametrize("seed, order", [(1, "grouped"), (3, "sorted_by_x")])
def test_simulated_logistic_random_slope_stream_is_the_batch_laplace_fit(seed, order):
    d = _sim(seed, 8 if seed == 1 else 5, 200 if seed == 1 else 150, logistic=True)[order]
    sl = StreamingMixedLogistic(random_slopes=["x"])
    for k, idx in enumerate(_batches(len(d), 5)):
        ch = d.iloc[idx]
        sl.partial_fit(ch[["x", "z"]], ch["y"], groups=ch["g"])
        seen = d.iloc[: idx[-1] + 1]
        if k == 0:  # the first batch: too few groups, or (sorted by x) separated
            continue
        b = MixedLogisticRegressor(random_slopes=["x"]).fit(seen[["x", "z"]], seen["y"], groups=seen["g"])
        assert sl.deviance_ <= b.deviance_ + 1e-4
        d_se = np.abs(sl.fixed_effects_.to_numpy() - b.fixed_effects_.to_numpy()) / b.fixed_effects_se_.to_numpy()
        assert d_se.max() < 0.2
        assert np.abs(_phi(sl) - _phi(b)).max() < 0.02 * max(np.abs(_phi(b)).max(), 1e-2)


def test_a_zero_variance_stream_does_not_rerun_the_cold_start_at_every_correction(monkeypatch):
    # the cold restart at a singular correction costs ~100 warm ones: once a cold run confirmed
    # the boundary (the random slope's variance is zero in these data), corrections that start
    # and end on it stay warm
    import skmixed._solvers.sema_exact as sema_exact
    from skmixed.datasets import make_big_grouped_data

    df = make_big_grouped_data(24_000, 60, seed=3)
    X, y, g = df[["x", "b"]].to_numpy(), df["y"].to_numpy(), df["g"].to_numpy()
    calls = []
    optimize = sema_exact.LMMProblem.optimize
    monkeypatch.setattr(sema_exact.LMMProblem, "optimize", lambda self, *a, **k: calls.append(1) or optimize(self, *a, **k))
    m = StreamingMixed(random_slopes=[0], refit_every=2000).fit(X, y, groups=g)
    assert m.n_corrections_ == 12 and m.is_singular_
    assert len(calls) <= 3
    b = MixedLinearRegressor(reml=False, random_slopes=[0]).fit(X, y, groups=g)
    assert (np.abs(m.fixed_effects_ - b.fixed_effects_) / b.fixed_effects_se_).max() < 0.01
