"""Bounded minimisation that does not stop on a boundary it should leave.

Mixed-model criteria depend on a standard-deviation-like parameter (a
diagonal entry of a relative covariance factor) through its square, so a
diagonal at its bound 0 is always a stationary point: L-BFGS-B that lands
there with a long step sees a zero gradient and stops, although the criterion
may fall inside. In a correlated block the same bound also encodes a
correlation of +-1 (the last diagonal of the Cholesky factor at 0), so this
one check covers variances at 0 and correlations at +-1 alike.

:func:`minimize_bounded` wraps L-BFGS-B with

- a boundary escape: parameters that end (numerically) on their bound are
  probed at a few distances inside; a better point restarts the optimiser;
- a final check before convergence is declared: the projected gradient
  (free parameters near 0, parameters on a bound not pulling inwards) and
  one-sided derivative-free probes of every parameter at its bound find no
  improving feasible direction;
- a fit log (:class:`FitLog`) saying whether the fit started on or touched a
  boundary, how often it left one, and which parameters it ended on.

The same probes serve the LMM (:meth:`skmixed._solvers.lmm.LMMProblem._escape_boundary`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from sklearn.exceptions import ConvergenceWarning

from .._design.theta import ThetaMap, scipy_bounds

__all__ = ["FitLog", "MixedConvergenceWarning", "probe_boundary", "minimize_bounded", "boundary_names",
           "warn_not_converged"]

#: probe distances off a bound, in units of the parameter's scale: the usual, a near one (a
#: shallow dip close to the bound), a far one (a dip the criterion reaches only past a ridge)
PROBES = (0.1, 0.01, 0.5, 0.003)


@dataclass
class FitLog:
    """What the optimiser met on the way (for reports and the tests of issue 21).

    Attributes
    ----------
    started_on_boundary : the start had a bounded parameter on its bound.
    touched_boundary : some evaluated point had a bounded parameter on its bound.
    n_escapes : restarts from a better point off a bound.
    final_check : ``"ok"`` when no improving feasible direction was found, else what failed.
    on_boundary : indices of the parameters on their bound at the end.
    events : a short text per notable step.
    optimizer : the optimiser that ran (``"L-BFGS-B"`` for :func:`minimize_bounded`).
    """

    started_on_boundary: bool = False
    touched_boundary: bool = False
    n_escapes: int = 0
    final_check: str = ""
    on_boundary: list = field(default_factory=list)
    events: list = field(default_factory=list)
    optimizer: str = ""

    @property
    def left_boundary(self) -> bool:
        """Escaped from a bound, or started on / touched one and did not end on it."""
        return self.n_escapes > 0 or ((self.started_on_boundary or self.touched_boundary) and not self.on_boundary)

    def summary(self, final_check=True) -> str:
        """The log in one line, for warnings and reports.

        Examples
        --------
        >>> FitLog(started_on_boundary=True, n_escapes=1, final_check="ok", on_boundary=[2]).summary()
        'final check ok; started on a bound; left a bound 1 time(s); ends on the bound of parameters [2]'
        """
        parts = [f"final check {self.final_check or 'not run'}"] if final_check else []
        if self.started_on_boundary:
            parts.append("started on a bound")
        elif self.touched_boundary:
            parts.append("touched a bound")
        if self.n_escapes:
            parts.append(f"left a bound {self.n_escapes} time(s)")
        if self.on_boundary:
            parts.append(f"ends on the bound of parameters {list(self.on_boundary)}")
        return "; ".join(parts)

    def merge(self, other: "FitLog") -> None:
        self.started_on_boundary |= other.started_on_boundary
        self.touched_boundary |= other.touched_boundary
        self.n_escapes += other.n_escapes
        self.events += other.events


class MixedConvergenceWarning(ConvergenceWarning):
    """An optimiser stopped before its convergence test passed; the estimates are its last iterate.

    A :class:`sklearn.exceptions.ConvergenceWarning` (filters on that class catch it) that names
    the optimiser that actually ran and keeps what it reported.

    Attributes
    ----------
    optimizer : str
        ``"L-BFGS-B"``, ``"COBYQA"``, ``"Newton"``, ``"Newton (stochastic trace estimates)"``,
        ``"fREML Newton"``, ...
    n_iter : int
        Its iterations.
    reason : str
        Its own stopping message.
    fit_log : FitLog or None
        What it met on the way (bounds left, the final check), when it keeps a log.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warn_not_converged("COBYQA", 40, "maximum evaluations reached")
    >>> str(w[0].message)
    'COBYQA did not converge after 40 iterations (maximum evaluations reached); estimates are the last iterate'
    >>> w[0].message.optimizer
    'COBYQA'
    """

    def __init__(self, optimizer, n_iter, reason, fit_log=None):
        self.optimizer, self.n_iter, self.reason, self.fit_log = str(optimizer), int(n_iter), str(reason), fit_log
        text = f"{optimizer} did not converge after {n_iter} iterations ({reason}); estimates are the last iterate"
        log = None if fit_log is None else fit_log.summary(final_check="final check" not in self.reason)
        if log:
            text += f"; fit log: {log}"
        super().__init__(text)

    def __reduce__(self):
        return type(self), (self.optimizer, self.n_iter, self.reason, self.fit_log)


def warn_not_converged(optimizer, n_iter, reason, fit_log=None, stacklevel=3):
    """Warn that ``optimizer`` did not converge: every solver path's one convergence warning.

    Raises a :class:`MixedConvergenceWarning`; ``stacklevel`` as for :func:`warnings.warn` called
    where this function is called.
    """
    warnings.warn(MixedConvergenceWarning(optimizer, n_iter, reason, fit_log), stacklevel=stacklevel + 1)


def _at_bound(x, lower, scale, rel=1e-4):
    return np.flatnonzero(np.isfinite(lower) & (x - lower <= rel * scale))


def probe_boundary(fun, x, lower, f0, scale=None, probes=PROBES, rel_tol=1e-9, at=None):
    """A better point off the bound, or None when no probe improves the criterion.

    Parameters on their bound (within ``1e-4 * scale``) are moved inside, all
    together and then one at a time, to ``lower + d * scale`` for ``d`` in
    ``probes``; the first point whose criterion is lower than ``f0`` by more
    than ``rel_tol * max(1, |f0|)`` is returned.

    Examples
    --------
    >>> import numpy as np
    >>> f = lambda t: (t[0] ** 2 - 1.0) ** 2      # even in t: 0 is stationary, not a minimum
    >>> probe_boundary(f, np.array([0.0]), np.array([0.0]), f(np.array([0.0])))
    array([0.1])
    """
    x = np.asarray(x, dtype=float)
    lower = np.asarray(lower, dtype=float)
    scale = np.ones_like(x) if scale is None else np.asarray(scale, dtype=float)
    if at is None:
        at = _at_bound(x, lower, scale)
    if not len(at):
        return None
    thresh = f0 - rel_tol * max(1.0, abs(f0))
    subsets = [np.asarray(at)] + ([np.array([i]) for i in at] if len(at) > 1 else [])
    for d in probes:
        for sub in subsets:
            t = x.copy()
            t[sub] = lower[sub] + d * scale[sub]
            f = fun(t)
            if np.isfinite(f) and f < thresh:
                return t
    return None


def covariance_probes(theta, theta_map, probes=PROBES):
    """Candidate thetas off a boundary saddle of vector random-effect terms, on the covariance scale.

    ``theta_map`` (a :class:`~skmixed._design.theta.ThetaMap`, or the terms' ``(pattern, rows, cols)``
    in theta order) gives each block's Lambda and the mask of its free entries. A term whose Lambda has a zero diagonal can still carry variance below
    it (a perfectly correlated component); moving that diagonal off 0 alone keeps the correlation, so
    an optimiser can stall on a saddle there. Each candidate adds ``d**2`` to the covariance
    ``Lambda Lambda'`` on the zero components (then on all of them) and re-factors it; candidates the
    term's pattern cannot represent are skipped.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._design.theta import ThetaMap
    >>> tmap = ThetaMap([np.tril(np.ones((2, 2), dtype=bool))])
    >>> t = next(covariance_probes(np.array([0.0, -0.2, 0.0]), tmap))
    >>> [float(v) for v in np.round(t, 3)]  # both zero diagonals get d**2 = 0.01: no correlation left
    [0.1, 0.0, 0.224]
    """
    if not isinstance(theta_map, ThetaMap):  # a list of (pattern, rows, cols) per term, in theta order
        theta_map = ThetaMap([pattern for pattern, _, _ in theta_map])
    theta = np.asarray(theta, dtype=float)
    for pattern, (r, c), k, lam in zip(theta_map.patterns, theta_map.positions, theta_map.offsets,
                                       theta_map.lambdas(theta)):
        sl = slice(k, k + len(r))
        q = pattern.shape[0]
        if q < 2:
            continue
        zero = np.abs(np.diag(lam)) < 1e-4
        if not zero.any():
            continue
        outside = np.tril(~pattern)
        S = lam @ lam.T
        for d in probes:
            for add in (np.diag(zero.astype(float)), np.eye(q)):
                try:
                    L = np.linalg.cholesky(S + d * d * add)
                except np.linalg.LinAlgError:
                    continue
                if np.any(np.abs(L[outside]) > 1e-12):
                    continue
                # the sign convention of a Cholesky factor: positive diagonal, as the bounds ask
                t = theta.copy()
                t[sl] = L[r, c]
                yield t


def boundary_names(theta, lower, names, tol=1e-4):
    """Names of the parameters on their (zero) bound: lme4's ``isSingular`` per parameter."""
    theta = np.asarray(theta, dtype=float)
    lower = np.asarray(lower, dtype=float)
    return [str(n) for n, t, lo in zip(names, theta, lower) if lo == 0 and t < tol]


def minimize_bounded(fg, x0, lower, *, fun=None, scale=None, maxiter=500, gtol=1e-5, ftol=1e-15, maxls=50,
                     max_escapes=4, grad_ok=None, log=None, extra_probe=None):
    """L-BFGS-B with boundary escape and a final check; returns (OptimizeResult, FitLog).

    Parameters
    ----------
    fg : callable ``x -> (f, gradient)``.
    x0 : start.
    lower : lower bounds (``-inf`` where free); there are no upper bounds.
    fun : callable ``x -> f`` for the probes (default: ``fg(x)[0]``).
    scale : typical size of each parameter (probe distances are multiples of it).
    gtol, ftol, maxls, maxiter : L-BFGS-B's options.
    max_escapes : restarts from probes off a bound at most.
    grad_ok : the projected-gradient size accepted by the final check (default ``100 * gtol``).
    extra_probe : callable ``(x, f) -> better x or None``, tried when the per-parameter probes
        find nothing (e.g. :func:`covariance_probes` mapped to ``x``).

    The result's ``success`` is True only when the final check passed: the
    projected gradient is below ``grad_ok`` and no probe off a bound improves.

    Examples
    --------
    >>> import numpy as np
    >>> def fg(t):  # minimum at t = 1, stationary point on the bound t = 0
    ...     return (t[0] ** 2 - 1.0) ** 2, np.array([4 * t[0] * (t[0] ** 2 - 1.0)])
    >>> res, log = minimize_bounded(fg, np.array([0.0]), np.array([0.0]))
    >>> round(float(res.x[0]), 6), log.started_on_boundary, log.n_escapes, log.final_check
    (1.0, True, 1, 'ok')
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    scale = np.ones_like(x0) if scale is None else np.asarray(scale, dtype=float)
    log = FitLog() if log is None else log
    log.optimizer = "L-BFGS-B"
    grad_ok = 100 * gtol if grad_ok is None else grad_ok
    bounded = np.isfinite(lower)
    if len(_at_bound(x0, lower, scale)):
        log.started_on_boundary = True
    seen = {"touch": False}

    def fg_logged(x):
        if not seen["touch"] and np.any(bounded & (x - lower <= 1e-8 * scale)):
            seen["touch"] = True
        f, g = fg(x)
        if not np.isfinite(f):
            return 1e300, np.zeros_like(x)
        return f, g

    def f_only(x):
        return fg(x)[0] if fun is None else fun(x)

    bounds = scipy_bounds(lower)

    def projected_gradient(x):
        _, g = fg(x)
        pg = np.asarray(g, dtype=float).copy()
        at = _at_bound(x, lower, scale)
        if len(at):
            pg[at] = np.minimum(pg[at], 0.0)  # a parameter on its bound may only push outwards
        return pg, (float(np.max(np.abs(pg))) if pg.size else 0.0)

    start = x0
    n_iter = 0
    n_restarts = 0
    probed = False
    res = None
    for attempt in range(max_escapes + 3):
        res = optimize.minimize(fg_logged, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxls": maxls})
        n_iter += int(res.nit)
        x = np.asarray(res.x, dtype=float)
        f = float(res.fun)
        if n_iter < maxiter and n_restarts < 2 and projected_gradient(x)[1] > grad_ok:
            # L-BFGS-B gave up (a line search on a rough stretch, a stale curvature memory)
            # far from stationarity: restart it from where it stopped with a fresh memory
            n_restarts += 1
            log.events.append(f"restarted L-BFGS-B ({res.message})")
            start = x
            continue
        better = probe_boundary(f_only, x, lower, f, scale) if log.n_escapes < max_escapes else None
        if better is None and extra_probe is not None and log.n_escapes < max_escapes \
                and len(_at_bound(x, lower, scale)):
            better = extra_probe(x, f)
        if better is None:
            probed = log.n_escapes < max_escapes  # the end point's probes found nothing
            break
        log.n_escapes += 1
        log.events.append(f"left the bound of parameters {_at_bound(x, lower, scale).tolist()} (attempt {attempt})")
        start = better
    log.touched_boundary |= seen["touch"]
    x = np.asarray(res.x, dtype=float)
    # final check: projected gradient at the end point and probes off every bound
    pg, gmax = projected_gradient(x)
    at = _at_bound(x, lower, scale)
    if not np.all(np.isfinite(pg)):
        log.final_check = "gradient not finite"
    elif gmax > grad_ok:
        log.final_check = f"projected gradient {gmax:.3g} > {grad_ok:.3g}"
    elif len(at) and not probed and (probe_boundary(f_only, x, lower, float(res.fun), scale) is not None
                                     or (extra_probe is not None and extra_probe(x, float(res.fun)) is not None)):
        log.final_check = "a probe off the bound improves (escape budget used up)"
    else:
        log.final_check = "ok"
    log.on_boundary = at.tolist()
    res.nit = n_iter
    res.success = log.final_check == "ok"
    if not res.success:
        res.message = f"{res.message}; final check: {log.final_check}"
    return res, log
