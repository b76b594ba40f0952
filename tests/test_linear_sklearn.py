"""MixedLinearRegressor inside scikit-learn: estimator checks, routing, pipelines, pickling, threads."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmixed import MixedLinearRegressor, NoGroupsWarning
from skmixed.datasets import load_sleepstudy, make_big_grouped_data


@parametrize_with_checks([MixedLinearRegressor()])
def test_sklearn_compatible(estimator, check):
    # without groups the estimator fits the fixed part and warns: expected here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        check(estimator)


def test_pipeline_gridsearch_groupkfold_routed(routing):
    df = make_big_grouped_data(6000, 60, seed=3)
    X, y, g = df[["x", "b"]], df["y"], df["g"]
    est = MixedLinearRegressor().set_fit_request(groups=True).set_score_request(groups=True)
    pipe = Pipeline([("scale", StandardScaler()), ("lmm", est)])
    grid = GridSearchCV(pipe, {"lmm__reml": [True, False]}, cv=GroupKFold(3))
    grid.fit(X, y, groups=g)
    # the routed groups reached the estimator: it has random effects for the training groups
    best = grid.best_estimator_[-1]
    assert best.cov_re_["g"].iloc[0, 0] == pytest.approx(0.25, rel=0.35)
    assert len(best.random_effects_["g"]) == 60
    # held-out groups are unseen: the conditional score equals the population score there
    res = cross_validate(pipe, X, y, cv=GroupKFold(3), params={"groups": g})
    assert np.all(res["test_score"] > 0.1)


def test_group_column_without_routing():
    df = make_big_grouped_data(4000, 40, seed=4)
    est = MixedLinearRegressor(group_column="g")
    grid = GridSearchCV(est, {"reml": [True, False]}, cv=GroupKFold(4))
    grid.fit(df[["x", "b", "g"]], df["y"], groups=df["g"])
    m = grid.best_estimator_
    assert m.n_features_in_ == 3
    assert list(m.fixed_effects_.index) == ["(Intercept)", "x", "b"]
    direct = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    m.fit(df[["x", "b", "g"]], df["y"])
    np.testing.assert_allclose(m.fixed_effects_, direct.fixed_effects_, rtol=1e-10)


def test_predict_known_unseen_absent_groups():
    df = load_sleepstudy()
    m = MixedLinearRegressor(random_slopes=["Days"]).fit(df[["Days"]], df["Reaction"], groups=df["Subject"])
    X = pd.DataFrame({"Days": [0.0, 5.0]})
    pop = m.predict(X)
    np.testing.assert_allclose(pop, m.intercept_ + m.coef_[0] * X["Days"].to_numpy())
    unseen = m.predict(X, groups=["999", "abc"])
    np.testing.assert_allclose(unseen, pop)
    known = m.predict(X, groups=["308", "308"])
    b = m.random_effects_["Subject"].loc["308"].to_numpy()
    np.testing.assert_allclose(known, pop + b[0] + b[1] * X["Days"].to_numpy())
    # R^2 with groups (conditional) beats the population one
    assert m.score(df[["Days"]], df["Reaction"], groups=df["Subject"]) > m.score(df[["Days"]], df["Reaction"])


def test_pickle_round_trip():
    df = load_sleepstudy()
    m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict(df), m.predict(df))
    np.testing.assert_array_equal(m2.predict(df[["Days"]].assign(Subject="x")), m.predict(df.assign(Subject="x")))


def test_threadpool_limits_makes_kernels_single_threaded():
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    assert any(d["user_api"] == "numba" for d in threadpool_info())
    with threadpool_limits(1):
        assert numba.get_num_threads() == 1
        df = make_big_grouped_data(50_000, 50, seed=0)
        m1 = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    m2 = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    np.testing.assert_allclose(m1.fixed_effects_, m2.fixed_effects_, rtol=1e-9)


def test_single_threaded_blas_overlapping_threads_restore_the_setting():
    # the cap is process-wide: fits in two threads whose windows overlap must leave
    # BLAS as they found it (a plain nested limit restores in the wrong order)
    import threading
    import time

    from threadpoolctl import threadpool_info

    from skmixed._threads import single_threaded_blas

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas()
    seen = []

    def hold(seconds):
        with single_threaded_blas():
            seen.append(blas())
            time.sleep(seconds)

    first = threading.Thread(target=hold, args=(0.3,))
    second = threading.Thread(target=hold, args=(0.6,))
    first.start()
    time.sleep(0.1)
    second.start()
    first.join()
    assert all(n == 1 for n in blas())  # the second fit is still inside
    second.join()
    assert blas() == before
    assert all(n == 1 for s in seen for n in s)


def test_sample_weight_is_frequency_weight():
    df = load_sleepstudy()
    w = np.tile([1.0, 2.0, 3.0], 60)
    rep = df.loc[df.index.repeat(w.astype(int))]
    m_w = MixedLinearRegressor().fit(df[["Days"]], df["Reaction"], groups=df["Subject"], sample_weight=w)
    m_r = MixedLinearRegressor().fit(rep[["Days"]], rep["Reaction"], groups=rep["Subject"])
    np.testing.assert_allclose(m_w.fixed_effects_, m_r.fixed_effects_, rtol=1e-7)
    np.testing.assert_allclose(m_w.theta_, m_r.theta_, rtol=1e-5)
    assert m_w.reml_criterion_ == pytest.approx(m_r.reml_criterion_, abs=1e-6)


def _numba_threads_in_worker():
    import numba

    import skmixed  # noqa: F401  (registers the numba controller in the worker)

    return numba.get_num_threads()


def test_no_oversubscription_in_joblib_workers():
    import os

    from joblib import Parallel, delayed

    n_jobs = 2
    got = Parallel(n_jobs=n_jobs, backend="loky")(delayed(_numba_threads_in_worker)() for _ in range(n_jobs))
    expected = max(1, (os.cpu_count() or 1) // n_jobs)
    assert all(t <= expected for t in got), got
