"""Fuzz suite: every input class on every estimator, and interrupts inside ``partial_fit``.

Each case starts from a fitted estimator (unpickled from bytes, so every case sees the
same state), makes one call with a generated input and checks:

(a) the call is accepted, or refused with a clear ``ValueError`` / ``TypeError`` (warnings
    are allowed) — never ``IndexError``, ``KeyError``, ``LinAlgError``, ``ZeroDivisionError``,
    numba errors or anything else;
(b) a refused call leaves the estimator pickle-identical (transactions), and ``predict``
    never changes it;
(c) a ``KeyboardInterrupt`` raised at a random point inside ``partial_fit`` (an internal
    function made to raise after ``k`` calls) leaves the estimator pickle-identical, and
    the retried batch is counted exactly once.

The counts are collected per estimator and asserted to be zero (the failing cases are
listed in the assertion message). Data are tiny: ~1,800 cases run in about three minutes (idle).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from skmixed import (AdditiveMixedRegressor, MixedLinearRegressor, MixedLogisticRegressor, MixedPoissonRegressor,
                     SplitSampleMixed, StreamingMixed, StreamingMixedLogistic)

ALLOWED = (ValueError, TypeError)
N, J = 48, 8


def _data(seed, binary=False):
    """``binary``: False (Gaussian), True (0/1) or "count" (Poisson)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), N // J)
    X = rng.normal(size=(N, 2))
    eta = X @ [0.8, -0.5] + rng.normal(size=J)[g]
    if binary == "count":
        y = rng.poisson(np.exp(0.5 * eta)).astype(float)
    elif binary:
        y = (eta + rng.normal(size=N) > 0).astype(float)
    else:
        y = eta + 0.5 * rng.normal(size=N)
    return X, y, g


ESTIMATORS = {
    "linear": (lambda: MixedLinearRegressor(), False),
    "linear_slope": (lambda: MixedLinearRegressor(random_slopes=[0]), False),
    "logistic": (lambda: MixedLogisticRegressor(), True),
    "additive": (lambda: AdditiveMixedRegressor(), False),
    "streaming": (lambda: StreamingMixed(), False),
    "split": (lambda: SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, random_state=0), False),
    # the estimators added after the suite was written
    "poisson": (lambda: MixedPoissonRegressor(), "count"),
    "stream_logistic": (lambda: StreamingMixedLogistic(max_rows_per_group=4), True),
    "additive_binomial": (lambda: AdditiveMixedRegressor(family="binomial"), True),
    "additive_poisson": (lambda: AdditiveMixedRegressor(family="poisson"), "count"),
}


def _mutations(X, y, g, rng, binary):
    """(name, X, y, groups, sample_weight): one generated input per input class."""
    n = X.shape[0]
    i = int(rng.integers(n))
    c = int(rng.integers(X.shape[1]))
    out = []

    def put(a, val):
        a = np.array(a, dtype=float)
        if a.ndim == 2:
            a[i, c] = val
        else:
            a[i] = val
        return a

    out += [("nan_X", put(X, np.nan), y, g, None), ("inf_X", put(X, np.inf), y, g, None),
            ("neg_inf_X", put(X, -np.inf), y, g, None),
            ("nan_y", X, put(y, np.nan), g, None), ("inf_y", X, put(y, np.inf), g, None)]
    out += [("X_1d", X[:, 0], y, g, None), ("X_3d", X[:, :, None], y, g, None),
            ("X_extra_col", np.c_[X, rng.normal(size=n)], y, g, None),
            ("X_fewer_cols", X[:, :1], y, g, None),
            ("y_short", X, y[:-1], g, None), ("y_2d", X, np.c_[y, y], g, None),
            ("groups_short", X, y, g[:-1], None), ("groups_scalar", X, y, 3, None),
            ("groups_nan", X, y, np.where(np.arange(n) == i, np.nan, g.astype(float)), None),
            ("groups_one_level", X, y, np.zeros(n, dtype=int), None),
            ("groups_per_row", X, y, np.arange(n), None),
            ("groups_2d_mismatch", X, y, np.c_[g, g][:-1], None),
            ("groups_strings", X, y, np.array([f"s{v}" for v in g], dtype=object), None)]
    out += [("constant_y", X, np.full(n, 1.0), g, None),
            ("y_three_classes", X, np.arange(n) % 3, g, None),
            ("y_strings", X, np.array(["a", "b"] * (n // 2), dtype=object), g, None),
            ("y_huge", X, y * 1e155, g, None), ("y_tiny", X, y * 1e-300, g, None),
            ("X_huge", X * 10.0 ** rng.integers(150, 300), y, g, None),
            ("X_tiny", X * 1e-300, y, g, None),
            ("X_scaled_col", np.c_[X[:, :1] * 10.0 ** rng.integers(-8, 9), X[:, 1:]], y, g, None),
            ("X_shifted", X + 10.0 ** rng.integers(2, 9), y, g, None),
            ("X_duplicate_col", np.c_[X, X[:, :1]], y, g, None),
            ("X_aliased_sum", np.c_[X, X[:, 0] + X[:, 1]], y, g, None),
            ("X_constant_col", np.c_[X, np.full(n, 3.0)], y, g, None),
            ("X_zero_col", np.c_[X, np.zeros(n)], y, g, None),
            ("X_object", X.astype(object).astype(str), y, g, None),
            ("X_strings", np.full(X.shape, "a", dtype=object), y, g, None),
            ("empty", X[:0], y[:0], g[:0], None), ("one_row", X[:1], y[:1], g[:1], None),
            ("two_rows", X[:2], y[:2], g[:2], None)]
    out += [("sw_negative", X, y, g, put(np.ones(n), -1.0)), ("sw_nan", X, y, g, put(np.ones(n), np.nan)),
            ("sw_zero", X, y, g, np.zeros(n)), ("sw_scalar", X, y, g, 2.0),
            ("sw_short", X, y, g, np.ones(n - 1)), ("sw_huge", X, y, g, np.full(n, 1e300)),
            ("sw_e100", X, y, g, np.full(n, 1e100)),
            ("sw_random", X, y, g, rng.exponential(size=n))]
    if binary == "count":
        out += [("y_negative", X, put(y, -1.0), g, None), ("y_fractional", X, put(y, 0.5), g, None),
                ("y_all_zero", X, np.zeros(n), g, None), ("y_huge_counts", X, y * 1e6, g, None)]
    elif binary:
        yb = np.where(X[:, 0] > 0, 1.0, 0.0)  # separated by a column
        ygrp = (g % 2).astype(float)  # separated by the groups
        out += [("separated_col", X, yb, g, None), ("separated_groups", X, ygrp, g, None),
                ("labels_pm1", X, 2 * y - 1, g, None)]
    return out


def _call(est, method, X, y, g, w):
    if method == "predict":
        return est.predict(X, groups=g)
    kw = {} if w is None else {"sample_weight": w}
    return getattr(est, method)(X, y, groups=g, **kw)


def _methods(est):
    m = ["fit", "predict"]
    if hasattr(est, "partial_fit") and not isinstance(est, SplitSampleMixed):
        m.append("partial_fit")
    return m


@pytest.fixture(scope="module")
def fitted():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (make, binary) in ESTIMATORS.items():
            X, y, g = _data(0, binary)
            est = make()
            if isinstance(est, (MixedLinearRegressor, StreamingMixed, StreamingMixedLogistic)):
                est.partial_fit(X, y, groups=g)  # accumulating state, so that fit's rejection is tested too
            else:
                est.fit(X, y, groups=g)
            out[name] = pickle.dumps(est)
    return out


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fuzz_inputs(fitted, name):
    _, binary = ESTIMATORS[name]
    rng = np.random.default_rng(hash(name) % 2**32)
    n_cases, bad_exc, changed, failures = 0, 0, 0, []
    for seed in range(2 if name == "streaming" else 1):
        X, y, g = _data(seed + 1, binary)
        for mname, Xm, ym, gm, wm in _mutations(X, y, g, rng, binary):
            for method in _methods(pickle.loads(fitted[name])):
                est = pickle.loads(fitted[name])
                before = pickle.dumps(est)
                n_cases += 1
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        _call(est, method, Xm, ym, gm, wm)
                except ALLOWED:
                    if pickle.dumps(est) != before:
                        changed += 1
                        failures.append(f"{mname}/{method}: refused but state changed")
                    continue
                except Exception as e:  # noqa: BLE001 - the point of the test
                    bad_exc += 1
                    failures.append(f"{mname}/{method}: {type(e).__name__}: {str(e)[:120]}")
                    continue
                if method == "predict" and pickle.dumps(est) != before:
                    changed += 1
                    failures.append(f"{mname}/predict changed the state")
    print(f"\n{name}: {n_cases} cases, {bad_exc} bare internal exceptions, {changed} state changes")
    assert n_cases >= 80
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------ interrupts inside partial_fit
def _interrupt_points():
    import skmixed._solvers.lmm as slmm
    import skmixed._solvers.lmm_stats as sstats
    import skmixed._solvers.sema as ssema
    import skmixed._solvers.sema_exact as sexact
    import skmixed._kernels.stream_glmm as ksg
    import skmixed.linear as lin
    import skmixed.streaming as stream
    import skmixed.streaming_logistic as slog

    return {
        "linear": [(sstats.GroupedStats, "from_rows"), (sstats.GroupedStats, "merge"),
                   (sstats.GroupedStats, "to_problem"), (slmm.LMMProblem, "objective"),
                   (slmm.LMMProblem, "result"), (lin.MixedLinearRegressor, "_finish"),
                   (lin.MixedLinearRegressor, "_store_random_effects"), (lin, "_require_finite")],
        "streaming": [(ssema, "consume"), (stream, "_check_finite_state"), (ssema.SemaState, "copy"),
                      (ssema.SemaState, "ensure_capacity"), (stream.StreamingMixed, "_prepare"),
                      (ssema.Staging, "privatize"), (sexact, "apply_fit"), (sexact, "record_order")],
        "stream_logistic": [(ksg, "add_rows"), (slog.StreamingMixedLogistic, "_correct"),
                            (slog.LaplaceStreamState, "deviance"), (slog.LaplaceStreamState, "ensure_capacity"),
                            (ssema.Staging, "privatize"), (slog.StreamingMixedLogistic, "_prepare"),
                            (slog, "_warn_separation"), (slog, "_newton")],
    }


def _rows_counted(est):
    return est.n_seen_ if isinstance(est, (StreamingMixed, StreamingMixedLogistic)) else est._stats.n_rows


@pytest.mark.parametrize("name", ["linear", "streaming", "stream_logistic"])
def test_fuzz_interrupts(fitted, name, monkeypatch):
    points = _interrupt_points()[name]
    rng = np.random.default_rng(7)
    n_cases, changed, double, lost, failures = 0, 0, 0, 0, []
    binary = ESTIMATORS[name][1]
    for case in range({"linear": 40, "streaming": 400}.get(name, 120)):
        owner, attr = points[case % len(points)]
        k = int(rng.integers(0, 4))
        est = pickle.loads(fitted[name])
        X, y, g = _data(100 + case, binary)
        rows = rng.integers(1, N + 1)
        Xb, yb, gb = X[:rows], y[:rows], g[:rows]
        before, n0 = pickle.dumps(est), _rows_counted(est)
        orig = getattr(owner, attr)
        calls = {"n": 0}
        is_static = isinstance(owner.__dict__.get(attr), (staticmethod, classmethod))

        def boom(*a, _orig=orig, **kw):
            calls["n"] += 1
            if calls["n"] > k:
                raise KeyboardInterrupt
            return _orig(*a, **kw)

        monkeypatch.setattr(owner, attr, staticmethod(boom) if is_static else boom)
        n_cases += 1
        interrupted = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.partial_fit(Xb, yb, groups=gb)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            monkeypatch.undo()
        if interrupted:
            if pickle.dumps(est) != before:
                changed += 1
                failures.append(f"{attr} after {k} calls: interrupted call changed the state")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.partial_fit(Xb, yb, groups=gb)  # the natural retry
        got = _rows_counted(est) - n0
        if got > rows:
            double += 1
            failures.append(f"{attr} after {k} calls: batch of {rows} counted as {got}")
        elif got < rows:
            lost += 1
            failures.append(f"{attr} after {k} calls: batch of {rows} counted as {got}")
    print(f"\n{name} interrupts: {n_cases} cases, {changed} state changes, {double} double counts, {lost} lost")
    assert not failures, "\n".join(failures)
