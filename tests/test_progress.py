"""verbose= progress bars (skmixed._progress) and the cold-start machinery (lazy import, warmup)."""

import subprocess
import sys

import numpy as np
import pytest

from skmixed import MixedLinearRegressor, SplitSampleMixed
from skmixed._progress import dask_progress, progress_bar, track
from skmixed.datasets import make_big_grouped_data


def test_quiet_helpers_do_nothing():
    items = [1, 2, 3]
    assert track(items, False) is items
    with progress_bar(0, total=3) as bar:
        bar.update(1)
        bar.set_postfix(criterion="1")
    assert bar.n == 0
    with dask_progress(False):
        pass


def test_track_shows_a_bar(capsys):
    assert list(track(range(4), True, desc="steps")) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "steps" in err and "4/4" in err


class _Recorder:
    """Stands in for a tqdm bar and records what the optimiser reports."""

    def __init__(self):
        self.n = 0
        self.postfix = []

    def update(self, n=1):
        self.n += n

    def set_postfix(self, refresh=True, **kw):
        self.postfix.append(kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_lmm_optimiser_reports_evaluations_and_criterion(monkeypatch):
    import skmixed.linear as linear

    bars = []

    def fake_bar(verbose, **kw):
        bars.append((verbose, kw, _Recorder()))
        return bars[-1][2]

    monkeypatch.setattr(linear, "progress_bar", fake_bar)
    df = make_big_grouped_data(2_000, 40, seed=0)
    m = MixedLinearRegressor(verbose=True).fit(df[["x", "b"]], df["y"], groups=df["g"])
    (verbose, kw, bar), = bars
    assert verbose and kw["desc"] == "REML" and kw["delay"] > 0  # short fits print nothing
    assert bar.n >= m.n_iter_ > 0 if hasattr(m, "n_iter_") else bar.n > 0
    # one criterion per evaluation (on the optimiser's internal, unit-scaled problem: a
    # constant away from the reported REML criterion), decreasing to its minimum
    crit = np.array([float(d["criterion"]) for d in bar.postfix])
    assert len(crit) == bar.n and np.all(np.isfinite(crit)) and crit.min() < crit[0]
    # the bar does not change the fit
    m0 = MixedLinearRegressor().fit(df[["x", "b"]], df["y"], groups=df["g"])
    np.testing.assert_array_equal(m.fixed_effects_, m0.fixed_effects_)


def test_split_sample_verbose_prints_a_bar(capsys):
    df = make_big_grouped_data(4_000, 40, seed=0)
    SplitSampleMixed(MixedLinearRegressor(), n_subsamples=2, n_jobs=1, random_state=0,
                     verbose=True).fit(df[["x", "b"]], df["y"], groups=df["g"])
    err = capsys.readouterr().err
    assert "SplitSampleMixed" in err and "2/2" in err


def test_fit_dask_verbose_prints_a_bar(capsys):
    dd = pytest.importorskip("dask.dataframe")
    from skmixed.dask import fit_lmm

    df = make_big_grouped_data(4_000, 40, seed=0)
    m = fit_lmm(dd.from_pandas(df, npartitions=4), y="y", X=["x", "b"], groups="g", verbose=True)
    assert "fit_dask" in capsys.readouterr().err
    assert m.verbose is True


def test_import_is_lazy():
    code = ("import sys, skmixed; heavy = [m for m in ('sklearn', 'pandas', 'numba', 'scipy', 'dask', 'matplotlib')"
            " if m in sys.modules]; print(heavy); from skmixed import MixedLinearRegressor, tidy; "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "True"]


def test_compile_notice_once_and_only_for_skmixed(capsys):
    from numba.core import event

    from skmixed import _kernels

    notice = _kernels._CompileNotice()

    class Disp:
        def __init__(self, module):
            self.py_func = type("F", (), {"__module__": module})

    for module in ("numba.np.arraymath", "skmixed._kernels.lmm", "skmixed._kernels.glmm"):
        notice.on_start(event.Event("numba:compile", event.EventStatus.START, data={"dispatcher": Disp(module)}))
    err = capsys.readouterr().err
    assert err.count("compiling numba kernels") == 1 and "python -m skmixed warmup" in err


def test_warmup_command_runs():
    proc = subprocess.run([sys.executable, "-m", "skmixed", "warmup"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "skmixed kernels ready" in proc.stdout
