"""Finite differences: all of skmixed's in one place.

- :func:`gradient`: central differences, forward where a lower bound (or the caller) says so; the
  optimisers' gradients of profiled criteria, whose evaluations are cheap and independent of the rows;
- :func:`gradient_in_box`: central differences with each step clipped to a box and divided by the
  span actually taken (the inference re-optimisations on bounded variance parameters);
- :func:`richardson_gradient`, :func:`richardson_jacobian`: Richardson-extrapolated central
  differences (the LMM's Newton polish; numDeriv's ``jacobian``, which lmerTest uses);
- :func:`central_hessian`: central second differences (lme4's ``deriv12`` scheme);
- :func:`richardson_hessian`: numDeriv's ``genD`` Hessian (lmerTest's);
- :func:`hessian_from_gradient`: differences of an analytic gradient, symmetrised;
  :func:`gradient_curvatures`: its diagonal alone (scales for an optimiser's coordinates);
- :func:`stencil_offsets`, :func:`stencil_derivatives`: the central-difference gradient and Hessian
  of many points at once, from one batched evaluation of a stencil (the grouped bootstrap).

Every function evaluates its points in a fixed, documented order: some criteria keep warm-start
state between calls (the streaming logistic's modes), so the order is part of the result.

The Richardson derivatives of a mixed model's deviance with respect to its variance
parameters are smooth but the deviance carries rounding noise of ~1e-12
relative, so a first step of a tenth of the parameter (``d = 0.1``), halved four
times (``v = 2``, ``r = 4``) and extrapolated, gives derivatives accurate to
~1e-8 — what numDeriv's ``hessian`` and ``jacobian`` do by default.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gradient", "gradient_in_box", "richardson_gradient", "richardson_jacobian", "second_difference",
           "central_hessian", "richardson_hessian", "hessian_from_gradient", "gradient_curvatures", "stencil_offsets",
           "stencil_derivatives"]

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


def gradient(fun, x, h=1e-5, lower=None, f0=None, central=True, *, absolute=False, forward=None, restore=None,
             full_output=False):
    """Finite-difference gradient of a scalar function.

    Per coordinate ``i`` (in order): ``fun(x + s_i e_i)``, then, for a central difference,
    ``fun(x - s_i e_i)``; ``restore()`` (if given) after each coordinate.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float``.
    x : ndarray of shape (k,)
        The point.
    h : float or ndarray
        The step: relative, ``s_i = h * max(1, |x_i|)``, or with ``absolute=True`` the steps
        themselves (a scalar or one per coordinate).
    lower : ndarray of shape (k,), optional
        Lower bounds: a forward difference where ``x_i - s_i`` would fall below ``lower[i]``.
    f0 : float, optional
        ``fun(x)``, for forward differences (evaluated when needed and not given).
    central : bool, default=True
        False: forward differences everywhere (half the evaluations, O(h) error).
    absolute : bool, default=False
        ``h`` holds the steps themselves.
    forward : ndarray of bool, optional
        Where to take forward differences (overrides ``lower`` and ``central``).
    restore : callable, optional
        Called with no argument after each coordinate's evaluations (to reset warm-start state).
    full_output : bool, default=False
        Also return ``fun(x + s_i e_i)`` and ``fun(x - s_i e_i)`` (NaN where not evaluated), which
        :func:`central_hessian` reuses for its diagonal.

    Returns
    -------
    g : ndarray of shape (k,)
        The gradient; with ``full_output`` the tuple ``(g, fp, fm)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import gradient
    >>> g = gradient(lambda t: t[0] ** 2 + 3 * t[1], np.array([1.0, 0.0]), lower=np.array([0.0, 0.0]))
    >>> np.round(g, 4)
    array([2., 3.])
    """
    k = x.size
    g = np.empty_like(x)
    if full_output:
        fps, fms = np.empty(k), np.full(k, np.nan)
    hs_all = np.broadcast_to(np.asarray(h, dtype=float), (k,)) if absolute else None
    for i in range(k):
        hs = hs_all[i] if absolute else h * max(1.0, abs(x[i]))
        xp = x.copy()
        xp[i] += hs
        fp = fun(xp)
        if forward is None:
            two_sided = central and (lower is None or x[i] - hs >= lower[i])
        else:
            two_sided = not forward[i]
        if two_sided:
            xm = x.copy()
            xm[i] -= hs
            fm = fun(xm)
            g[i] = (fp - fm) / (2 * hs)
            if full_output:
                fms[i] = fm
        else:
            if f0 is None:
                f0 = fun(x)
            g[i] = (fp - f0) / hs
        if full_output:
            fps[i] = fp
        if restore is not None:
            restore()
    return (g, fps, fms) if full_output else g


def gradient_in_box(fun, x, lower, upper, h=1e-6):
    """Central-difference gradient with each step clipped to the box ``[lower, upper]``.

    Per coordinate: ``up = x + s_i e_i`` unless that leaves the box (then ``x``), ``dn = x - s_i e_i``
    likewise, ``s_i = h * max(1, |x_i|)``; the derivative is ``(fun(up) - fun(dn)) / (up_i - dn_i)``,
    the span actually taken (both evaluated, in that order).

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import gradient_in_box
    >>> g = gradient_in_box(lambda t: (t[0] - 2.0) ** 2, np.array([0.0]), np.array([0.0]), np.array([np.inf]))
    >>> round(float(g[0]), 4)  # forward at the bound
    -4.0
    """
    g = np.empty_like(x)
    for i in range(x.size):
        hs = h * max(1.0, abs(x[i]))
        e = np.zeros_like(x)
        e[i] = hs
        up = x + e if x[i] + hs <= upper[i] else x
        dn = x - e if x[i] - hs >= lower[i] else x
        g[i] = (fun(up) - fun(dn)) / ((up[i] - dn[i]) or 1.0)
    return g


def _richardson_column(fun, x, i, h, r):
    """Extrapolated central difference of ``fun`` (scalar or vector) along ``e_i`` from steps
    ``h / 2^m``, ``m < r``: ``fun(x + s e_i)`` then ``fun(x - s e_i)`` per step."""
    rows = []
    for m in range(r):
        s = h / _V**m
        e = np.zeros_like(x)
        e[i] = s
        rows.append((np.asarray(fun(x + e), float).ravel() - np.asarray(fun(x - e), float).ravel()) / (2 * s))
    return _extrapolate(rows)


def richardson_gradient(fun, x, h, idx=None, r=2):
    """Richardson-extrapolated central-difference gradient over the coordinates ``idx``.

    Central differences on steps ``h_i`` and ``h_i / 2`` (``r = 2``; ``r`` halvings in all) are
    combined to cancel the O(h^2) error: with ``r = 2``, ``(4 d(h/2) - d(h)) / 3``, truncation
    O(h^4), so the steps can stay large against the criterion's rounding noise.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float``.
    x : ndarray of shape (k,)
    h : ndarray
        The first step per coordinate of ``idx``.
    idx : ndarray of int, optional
        The coordinates (default: all).
    r : int, default=2
        Number of steps (halved each time).

    Returns
    -------
    ndarray of shape (len(idx),)

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import richardson_gradient
    >>> g = richardson_gradient(np.exp, np.array([0.0]), np.array([0.1]))
    >>> abs(float(g[0]) - 1.0) < 1e-6
    True
    """
    x = np.asarray(x, dtype=float)
    idx = np.arange(x.size) if idx is None else np.asarray(idx)
    h = np.broadcast_to(np.asarray(h, dtype=float), (idx.size,))
    with np.errstate(invalid="ignore"):  # an infinite criterion (not positive definite): a NaN, as on floats
        return np.array([_richardson_column(fun, x, idx[i], h[i], r)[0] for i in range(idx.size)])


def richardson_jacobian(fun, x, d=1e-4):
    """Jacobian of a vector function, ``(len(fun(x)), len(x))`` (numDeriv's ``jacobian``: ``d = 1e-4``).

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import richardson_jacobian
    >>> np.round(richardson_jacobian(lambda t: np.array([t[0] * t[1], t[1]]), np.array([2.0, 3.0])), 8)
    array([[3., 2.],
           [0., 1.]])
    """
    x = np.asarray(x, dtype=float)
    h0 = _steps(x, d)
    return np.column_stack([_richardson_column(fun, x, i, h0[i], _R) for i in range(x.size)])


def richardson_hessian(fun, x, f0=None):
    """Hessian of a scalar function, numDeriv's ``genD`` (``d = 0.1``): extrapolated second
    differences on the diagonal, and off it the mixed differences along ``e_i + e_j`` less the
    diagonal terms.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import richardson_hessian
    >>> np.round(richardson_hessian(lambda t: t[0] ** 2 * t[1], np.array([1.0, 2.0])), 6)
    array([[4., 2.],
           [2., 0.]])
    """
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
            rows.append(second_difference(fun(x + e), f0, fun(x - e), h))
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


def second_difference(fp, f0, fm, h):
    """``(fp - 2 f0 + fm) / h^2``: the central second difference from ``f(x + h)``, ``f(x)``, ``f(x - h)``
    (elementwise on arrays).

    Examples
    --------
    >>> from skmixed._numdiff import second_difference
    >>> round(second_difference(1.01, 1.0, 1.01, 0.1), 10)  # x^2 + 1 at 0
    2.0
    """
    return (fp - 2 * f0 + fm) / h**2


def central_hessian(fun, x, h, f0=None, idx=None, fp=None, fm=None):
    """Central-difference Hessian of ``fun`` at ``x`` over the parameters ``idx`` (lme4's ``deriv12``).

    Second differences on the diagonal, the four-point mixed differences
    ``(f(x+e_i+e_j) - f(x+e_i-e_j) - f(x-e_i+e_j) + f(x-e_i-e_j)) / (4 h_i h_j)`` off it, evaluated
    per ``i`` in that order (``f(x)`` first when ``f0`` is not given): functions with warm-start
    state see the same sequence of points as lme4's ``deriv12``.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float``.
    x : ndarray of shape (k,)
    h : float or ndarray
        The step, or one per parameter of ``idx``.
    f0 : float, optional
        ``fun(x)``.
    idx : ndarray of int, optional
        The parameters (default: all).
    fp, fm : ndarray of shape (k,), optional
        ``fun(x + h_i e_i)`` and ``fun(x - h_i e_i)`` per coordinate of ``x`` (from
        :func:`gradient` with ``full_output=True``): the diagonal then costs no evaluation.

    Returns
    -------
    ndarray of shape (len(idx), len(idx))

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import central_hessian
    >>> np.round(central_hessian(lambda t: t[0] ** 2 * t[1], np.array([1.0, 2.0]), 1e-4), 6)
    array([[4., 2.],
           [2., 0.]])
    """
    x = np.asarray(x, dtype=float)
    idx = np.arange(x.size) if idx is None else np.asarray(idx)
    k = idx.size
    h = np.broadcast_to(np.asarray(h, dtype=float), (k,))
    f0 = fun(x) if f0 is None else f0
    H = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(x.size)
        ei[idx[i]] = h[i]
        if fp is None:
            H[i, i] = second_difference(fun(x + ei), f0, fun(x - ei), h[i])
        else:
            H[i, i] = second_difference(fp[idx[i]], f0, fm[idx[i]], h[i])
        for j in range(i):
            ej = np.zeros(x.size)
            ej[idx[j]] = h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej)
                                 + fun(x - ei - ej)) / (4 * h[i] * h[j])
    return H


def hessian_from_gradient(grad_fun, x, g0=None):
    """Finite-difference Hessian of an analytic gradient (symmetrised).

    Forward differences from ``g0`` (the gradient at ``x``) when given, on steps
    ``1e-5 max(1, |x_i|)``, else central on ``1e-4 max(1, |x_i|)``: with an analytic gradient
    the O(h) error of forward differences is ~1e-5 relative, far below what standard errors
    need, at half the evaluations.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import hessian_from_gradient
    >>> grad = lambda t: np.array([2 * t[0] * t[1], t[0] ** 2])
    >>> np.round(hessian_from_gradient(grad, np.array([1.0, 2.0])), 6)
    array([[4., 2.],
           [2., 0.]])
    """
    k = x.size
    Hs = np.empty((k, k))
    for i in range(k):
        if g0 is not None:
            Hs[i] = _forward_gradient_row(grad_fun, x, i, 1e-5, g0)
        else:
            hstep = 1e-4 * max(1.0, abs(x[i]))
            xp = x.copy()
            xp[i] += hstep
            xm = x.copy()
            xm[i] -= hstep
            Hs[i] = (grad_fun(xp) - grad_fun(xm)) / (2 * hstep)
    return 0.5 * (Hs + Hs.T)


def _forward_gradient_row(grad_fun, x, i, h, g0):
    """``(grad_fun(x + s e_i) - g0) / s``, ``s = h max(1, |x_i|)``: row ``i`` of the Hessian."""
    s = h * max(1.0, abs(x[i]))
    xp = x.copy()
    xp[i] += s
    return (grad_fun(xp) - g0) / s


def gradient_curvatures(grad_fun, x, g0, h, idx):
    """The Hessian's diagonal entries ``idx`` from forward differences of an analytic gradient.

    Per ``i`` of ``idx`` (in order): ``(grad_fun(x + s_i e_i)[i] - g0[i]) / s_i``,
    ``s_i = h max(1, |x_i|)``; ``g0`` the gradient at ``x``. One gradient per entry: the
    curvatures that scale an optimiser's coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import gradient_curvatures
    >>> grad = lambda t: np.array([2 * t[0] * t[1], t[0] ** 2])
    >>> x = np.array([1.0, 2.0])
    >>> np.round(gradient_curvatures(grad, x, grad(x), 1e-6, [0, 1]), 4)
    array([4., 0.])
    """
    return np.array([_forward_gradient_row(grad_fun, x, i, h, g0)[i] for i in idx])


def stencil_offsets(k):
    """The central-difference stencil in ``k`` dimensions, in units of the steps.

    Rows: the centre, ``+e_i`` and ``-e_i`` per ``i``, then per pair ``j < i`` (``i`` ascending)
    ``+e_i+e_j``, ``+e_i-e_j``, ``-e_i+e_j``, ``-e_i-e_j``: ``1 + 2k + 2k(k-1)`` rows, the order
    :func:`stencil_derivatives` reads.

    Examples
    --------
    >>> from skmixed._numdiff import stencil_offsets
    >>> stencil_offsets(2).shape
    (9, 2)
    """
    E = np.eye(k)
    offs = [np.zeros(k)] + [s * E[i] for i in range(k) for s in (1, -1)]
    offs += [si * E[i] + sj * E[j] for (i, j) in _pairs(k) for si in (1, -1) for sj in (1, -1)]
    return np.array(offs)


def _pairs(k):
    return [(i, j) for i in range(k) for j in range(i)]


def stencil_derivatives(vals, h):
    """Gradients and Hessians of many points from their stencils' values.

    Parameters
    ----------
    vals : ndarray of shape (n, len(stencil_offsets(k)))
        The function at each point's stencil (point ``a`` + ``stencil_offsets(k) * h[a]``).
    h : ndarray of shape (n, k)
        Each point's steps.

    Returns
    -------
    g : ndarray of shape (n, k)
    H : ndarray of shape (n, k, k)

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed._numdiff import stencil_derivatives, stencil_offsets
    >>> x, h = np.array([[1.0, 2.0]]), np.full((1, 2), 1e-4)
    >>> pts = x[:, None, :] + stencil_offsets(2)[None] * h[:, None, :]
    >>> g, H = stencil_derivatives((pts[..., 0] ** 2 * pts[..., 1]), h)
    >>> np.round(g, 6), np.round(H, 4)
    (array([[4., 1.]]), array([[[4., 2.],
            [2., 0.]]]))
    """
    n, k = h.shape
    f0 = vals[:, 0]
    g = np.empty((n, k))
    H = np.empty((n, k, k))
    for i in range(k):
        fp, fm = vals[:, 1 + 2 * i], vals[:, 2 + 2 * i]
        g[:, i] = (fp - fm) / (2 * h[:, i])
        H[:, i, i] = second_difference(fp, f0, fm, h[:, i])
    base = 1 + 2 * k
    for n_, (i, j) in enumerate(_pairs(k)):
        fpp, fpm, fmp, fmm = (vals[:, base + 4 * n_ + t] for t in range(4))
        H[:, i, j] = H[:, j, i] = (fpp - fpm - fmp + fmm) / (4 * h[:, i] * h[:, j])
    return g, H
