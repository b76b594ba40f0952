"""One convergence warning that names the optimiser that ran (issue #13).

Every estimator's solver paths warn through ``skmixed._solvers._optim.warn_not_converged``: a
:class:`skmixed.MixedConvergenceWarning` (a scikit-learn ``ConvergenceWarning``, so existing filters
catch it) whose message starts with the optimiser actually used and which keeps its iterations,
stopping message and fit log. Each fit below is stopped early (``max_iter``) so it cannot converge.
"""

import pickle
import warnings
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning

import skmixed.additive
from skmixed import (AdditiveMixedRegressor, MixedConvergenceWarning, MixedLinearRegressor, MixedLogisticRegressor,
                     MixedPoissonRegressor, datasets)
from skmixed._solvers._optim import FitLog, warn_not_converged
from skmixed._solvers.freml import fit_freml

DATA = Path(__file__).parent / "data"


def _one_warning(fit):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        est = fit()
    found = [w.message for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert len(found) == 1, [str(m) for m in found]
    assert isinstance(found[0], MixedConvergenceWarning)
    return est, found[0]


def _check(w, optimizer):
    assert w.optimizer == optimizer
    assert str(w).startswith(f"{optimizer} did not converge after {w.n_iter} iterations ({w.reason})")
    assert "estimates are the last iterate" in str(w)


def test_lmm_lbfgsb():
    df = datasets.load_pastes()
    est, w = _one_warning(lambda: MixedLinearRegressor.from_formula("strength ~ 1 + (1 | batch/cask)", df,
                                                                    max_iter=1))
    _check(w, "L-BFGS-B")
    assert not est.converged_ and w.n_iter == est.n_iter_


def test_lmm_newton():
    # crossed factors with hundreds of levels and scalar terms: Newton on the exact gradient
    df = pd.read_csv(DATA / "crossed_weighted.csv")
    est, w = _one_warning(lambda: MixedLinearRegressor.from_formula("y ~ x + (1 | a) + (1 | b) + (0 + x | c)", df,
                                                                    max_iter=1))
    _check(w, "Newton")
    assert not est.converged_


def test_lmm_cobyqa():
    # a vector term in a large dense part: the derivative-free COBYQA
    df = pd.read_csv(DATA / "crossed_large.csv")
    df = df[pd.factorize(df["b"])[0] < 110]
    est, w = _one_warning(lambda: MixedLinearRegressor.from_formula("y ~ x + (1 | a) + (1 + x | b)", df, max_iter=1))
    _check(w, "COBYQA")
    assert not est.converged_


@pytest.mark.parametrize("nagq", [1, 5])
def test_logistic(nagq):
    df = datasets.load_cbpp_bernoulli()
    est, w = _one_warning(lambda: MixedLogisticRegressor.from_formula("y ~ period + (1 | herd)", df, max_iter=1,
                                                                      nagq=nagq))
    _check(w, "L-BFGS-B")
    assert not est.converged_ and w.fit_log is est.fit_log_ and w.fit_log.optimizer == "L-BFGS-B"
    assert "final check" in w.reason  # the bounded optimiser's final check says what failed


def test_poisson():
    ep = pd.read_csv(DATA / "epil.csv")
    X = pd.DataFrame({"lage": ep["lage"], "V4": ep["V4"]})
    est, w = _one_warning(lambda: MixedPoissonRegressor(max_iter=1).fit(X, ep["y"], groups=ep["subject"]))
    _check(w, "L-BFGS-B")
    assert not est.converged_ and w.fit_log is est.fit_log_


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_additive(monkeypatch, family):
    monkeypatch.setattr(skmixed.additive, "fit_freml", partial(fit_freml, max_iter=1))
    gs = datasets.load_gamsim_re()
    y = gs["y"] if family == "gaussian" else gs["yb"]
    est, w = _one_warning(lambda: AdditiveMixedRegressor(smooth=["x0", "x1"], family=family).fit(
        gs[["x0", "x1"]], y, groups=gs["fac"]))
    _check(w, "fREML Newton")
    assert not est.converged_ and w.n_iter == 1


def test_warning_pickles_and_reports_its_log():
    log = FitLog(started_on_boundary=True, n_escapes=2, final_check="ok", on_boundary=[1], optimizer="L-BFGS-B")
    w = MixedConvergenceWarning("L-BFGS-B", 7, "ABNORMAL_TERMINATION_IN_LNSRCH", log)
    assert str(w).endswith("fit log: final check ok; started on a bound; left a bound 2 time(s); "
                           "ends on the bound of parameters [1]")
    w2 = pickle.loads(pickle.dumps(w))
    assert (str(w2), w2.optimizer, w2.n_iter, w2.fit_log) == (str(w), "L-BFGS-B", 7, log)
    with pytest.warns(ConvergenceWarning, match="^COBYQA did not converge after 3 iterations"):
        warn_not_converged("COBYQA", 3, "maximum evaluations reached")
