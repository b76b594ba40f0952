"""Richardson-extrapolated finite differences (numDeriv's scheme, which lmerTest uses).

The derivatives of a mixed model's deviance with respect to its variance
parameters are smooth but the deviance carries rounding noise of ~1e-12
relative, so a first step of a tenth of the parameter (``d = 0.1``), halved four
times (``v = 2``, ``r = 4``) and extrapolated, gives derivatives accurate to
~1e-8 — what numDeriv's ``hessian`` and ``jacobian`` do by default.
"""

from __future__ import annotations

import numpy as np

__all__ = ["richardson_hessian", "richardson_jacobian"]

_D, _EPS, _ZERO_TOL, _R, _V = 0.1, 1e-4, np.sqrt(np.finfo(float).eps / 7e-7), 4, 2.0


def _steps(x, d=_D):
    return d * np.abs(x) + _EPS * (np.abs(x) < _ZERO_TOL)


def _extrapolate(a):
    """Richardson on rows computed with steps h / v^k (second-order errors)."""
    a = np.array(a, dtype=float)
    for m in range(1, a.shape[0]):
        four = 4.0**m
        a = (four * a[1:] - a[:-1]) / (four - 1.0)
    return a[0]


def richardson_jacobian(fun, x, d=1e-4):
    """Jacobian of a vector function, ``(len(fun(x)), len(x))`` (numDeriv's ``jacobian``: ``d = 1e-4``)."""
    x = np.asarray(x, dtype=float)
    h0 = _steps(x, d)
    cols = []
    for i in range(x.size):
        rows = []
        for k in range(_R):
            h = h0[i] / _V**k
            e = np.zeros_like(x)
            e[i] = h
            rows.append((np.asarray(fun(x + e), float).ravel() - np.asarray(fun(x - e), float).ravel()) / (2 * h))
        cols.append(_extrapolate(rows))
    return np.column_stack(cols)


def richardson_hessian(fun, x, f0=None):
    """Hessian of a scalar function, numDeriv's ``genD`` (``d = 0.1``): extrapolated second
    differences on the diagonal, and off it the mixed differences along ``e_i + e_j`` less the
    diagonal terms."""
    x = np.asarray(x, dtype=float)
    k = x.size
    f0 = fun(x) if f0 is None else f0
    h0 = _steps(x)
    H = np.empty((k, k))
    for i in range(k):
        rows = []
        for m in range(_R):
            h = h0[i] / _V**m
            e = np.zeros_like(x)
            e[i] = h
            rows.append((fun(x + e) - 2 * f0 + fun(x - e)) / h**2)
        H[i, i] = _extrapolate(rows)
    for i in range(k):
        for j in range(i):
            rows = []
            for m in range(_R):
                h = h0 / _V**m
                e = np.zeros_like(x)
                e[i], e[j] = h[i], h[j]
                rows.append((fun(x + e) - 2 * f0 + fun(x - e) - H[i, i] * h[i] ** 2 - H[j, j] * h[j] ** 2)
                            / (2 * h[i] * h[j]))
            H[i, j] = H[j, i] = _extrapolate(rows)
    return H
