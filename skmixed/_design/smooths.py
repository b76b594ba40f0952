"""Penalized smooth bases, each a small object registered by name (as mgcv's constructors).

Every basis answers three questions for a fitted set of covariate values:

* ``basis(x)`` -- the (n, k) basis matrix evaluated at ``x`` (linear extrapolation outside
  the range of the fitting data, as mgcv's ``Predict.matrix``);
* ``penalty`` -- the (k, k) penalty matrix;
* ``centred(weights)`` -- a :class:`CentredSmooth` with the sum-to-zero constraint absorbed
  by the QR decomposition of the weighted column means (mgcv's ``absorb.cons``), the
  penalty transformed accordingly and rescaled like ``smoothCon(scale.penalty=TRUE)`` so that
  smoothing parameters are on mgcv's scale.

Numbers were checked against mgcv 1.8-41 (see ``tests/test_smooths.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline

__all__ = ["CubicRegressionSpline", "PSpline", "CentredSmooth", "make_smooth", "SMOOTHS"]

SMOOTHS: dict[str, type] = {}


def register(name):
    """Class decorator registering a basis under ``name`` (``basis="cr"`` etc.)."""

    def deco(cls):
        SMOOTHS[name] = cls
        cls.name = name
        return cls

    return deco


def make_smooth(name: str, x: np.ndarray, k: int = 10):
    """Build the basis called ``name`` on the covariate values ``x`` with ``k`` coefficients.

    Parameters
    ----------
    name : {"cr", "ps"}
        Registered basis name.
    x : ndarray of shape (n,)
        Covariate values (knot placement uses their unique values, as mgcv).
    k : int, default=10
        Basis dimension (before the centring constraint removes one column).

    Returns
    -------
    smooth : CubicRegressionSpline or PSpline

    Examples
    --------
    >>> import numpy as np
    >>> sm = make_smooth("cr", np.linspace(0, 1, 50), k=5)
    >>> sm.basis(np.array([0.0, 0.5])).shape
    (2, 5)
    """
    try:
        cls = SMOOTHS[name]
    except KeyError:
        raise ValueError(f"unknown basis {name!r}; choose one of {sorted(SMOOTHS)}") from None
    return cls(x, k)


def _check_x(x, k, min_k):
    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("smooth covariate contains NaN or infinite values")
    k = int(k)
    if k < min_k:
        raise ValueError(f"basis dimension k={k} is too small (need at least {min_k})")
    return x, k


@dataclass
class CentredSmooth:
    """A smooth with its sum-to-zero constraint absorbed: f(x) = B(x) Z beta."""

    smooth: object
    Z: np.ndarray  # (k, k-1) null-space basis of the constraint
    S: np.ndarray  # (k-1, k-1) constrained, rescaled penalty
    S_scale: float  # penalty was divided by this (mgcv's S.scale)
    rank: int  # penalty rank
    logdet_S: float  # log pseudo-determinant of S (for the REML score)

    @property
    def n_coef(self) -> int:
        return self.Z.shape[1]

    def basis(self, x) -> np.ndarray:
        """Constrained basis matrix (n, k-1) at ``x``."""
        return self.smooth.basis(x) @ self.Z


class _Smooth:
    name = ""

    def centred(self, X: np.ndarray, weights=None) -> CentredSmooth:
        """Absorb the centring constraint ``weights' X Z beta = 0`` (QR of the column means).

        Parameters
        ----------
        X : ndarray (m, k)
            Basis at the points the constraint (and penalty scale) is computed on.
        weights : ndarray (m,) or None
            Row multiplicities (mean over the data rows); None = plain column means.
        """
        k = X.shape[1]
        w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        C = (w @ X) / w.sum()
        # mgcv: qr(t(C)); Z = qr.Q(complete=TRUE)[, 2:k]
        Q, _ = np.linalg.qr(C.reshape(k, 1), mode="complete")
        Z = Q[:, 1:]
        # mgcv's smoothCon(scale.penalty=TRUE): S / (||S||_1 / ||X||_inf^2), on the
        # unconstrained matrices, so smoothing parameters are comparable with mgcv's.
        # (maXX uses the rows the basis was built on; with multiplicities the max row
        # sum is the same for repeated rows.)
        maXX = np.max(np.abs(X).sum(axis=1)) ** 2
        S0 = self.penalty
        S_scale = np.max(np.abs(S0).sum(axis=0)) / maXX
        S = Z.T @ (S0 / S_scale) @ Z
        S = (S + S.T) / 2
        ev = np.linalg.eigvalsh(S)
        tol = ev.max() * 1e-10
        pos = ev[ev > tol]
        return CentredSmooth(self, Z, S, float(S_scale), int(pos.size), float(np.log(pos).sum()))


@register("cr")
class CubicRegressionSpline(_Smooth):
    """Cubic regression spline (mgcv ``bs="cr"``): cardinal natural cubic spline.

    Knots: ``k`` knots at quantiles of the unique covariate values (mgcv's ``place.knots``).
    Coefficients are the function values at the knots; penalty ``D' B^{-1} D`` is the
    integrated squared second derivative.

    Examples
    --------
    >>> import numpy as np
    >>> sm = CubicRegressionSpline(np.linspace(0, 1, 20), 4)
    >>> np.round(sm.knots, 3).tolist()
    [0.0, 0.333, 0.667, 1.0]
    """

    def __init__(self, x, k=10):
        x, k = _check_x(x, k, 3)
        xu = np.unique(x)
        n = xu.size
        if n < 2:
            raise ValueError("cannot build a smooth on a constant column")
        if k > n:
            raise ValueError(
                f"basis dimension k={k} exceeds the number of unique covariate values ({n}); "
                "lower n_knots"
            )
        # mgcv place.knots
        knots = np.empty(k)
        knots[0], knots[-1] = xu[0], xu[-1]
        if k > 2:
            delta = (n - 1) / (k - 1)
            j = np.arange(1, k - 1)
            lbi = np.floor(delta * j).astype(np.int64)  # 0-based lower index
            frac = delta * j - lbi
            knots[1:-1] = xu[lbi] * (1 - frac) + xu[lbi + 1] * frac
        self.knots = knots
        self.k = k
        h = np.diff(knots)
        D = np.zeros((k - 2, k))
        B = np.zeros((k - 2, k - 2))
        for i in range(k - 2):  # k-sized loop: tiny
            D[i, i] = 1 / h[i]
            D[i, i + 1] = -1 / h[i] - 1 / h[i + 1]
            D[i, i + 2] = 1 / h[i + 1]
            B[i, i] = (h[i] + h[i + 1]) / 3
            if i < k - 3:
                B[i, i + 1] = B[i + 1, i] = h[i + 1] / 6
        BinvD = np.linalg.solve(B, D)
        # second derivatives at the knots given the values (zero at the ends: natural spline)
        self._F = np.vstack([np.zeros(k), BinvD, np.zeros(k)])
        self.penalty = D.T @ BinvD
        self.penalty = (self.penalty + self.penalty.T) / 2

    def basis(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        kn, k, F = self.knots, self.k, self._F
        X = np.zeros((x.size, k))
        j = np.clip(np.searchsorted(kn, x, side="right") - 1, 0, k - 2)
        inside = (x >= kn[0]) & (x <= kn[-1])
        h = kn[j + 1] - kn[j]
        am = (kn[j + 1] - x) / h
        ap = (x - kn[j]) / h
        cm = ((kn[j + 1] - x) ** 3 / h - h * (kn[j + 1] - x)) / 6
        cp = ((x - kn[j]) ** 3 / h - h * (x - kn[j])) / 6
        rows = np.arange(x.size)
        Xi = cm[:, None] * F[j] + cp[:, None] * F[j + 1]
        Xi[rows, j] += am
        Xi[rows, j + 1] += ap
        X[inside] = Xi[inside]
        # linear extrapolation from the end knots (value + first derivative), as mgcv
        for side, idx in ((0, x < kn[0]), (1, x > kn[-1])):
            if not idx.any():
                continue
            if side == 0:
                h0, x0 = kn[1] - kn[0], kn[0]
                val = np.zeros(k)
                val[0] = 1
                # f'(x0) = (b1-b0)/h - h/6 (2 d0 + d1)
                der = -h0 / 6 * (2 * F[0] + F[1])
                der[0] -= 1 / h0
                der[1] += 1 / h0
            else:
                h0, x0 = kn[-1] - kn[-2], kn[-1]
                val = np.zeros(k)
                val[-1] = 1
                # f'(x_k) = (b_k-b_{k-1})/h + h/6 (d_{k-1} + 2 d_k)
                der = h0 / 6 * (F[-2] + 2 * F[-1])
                der[-1] += 1 / h0
                der[-2] -= 1 / h0
            X[idx] = val[None, :] + (x[idx] - x0)[:, None] * der[None, :]
        return X


@register("ps")
class PSpline(_Smooth):
    """P-spline (mgcv ``bs="ps"``): cubic B-splines on equally spaced knots, 2nd-order
    difference penalty (Eilers & Marx 1996).

    Knots as mgcv: range widened by 0.1 %, ``k - 2`` interior intervals, 3 extra knots each side.

    Examples
    --------
    >>> import numpy as np
    >>> sm = PSpline(np.linspace(0, 1, 20), 6)
    >>> float(sm.basis(np.array([0.5])).sum().round(12))
    1.0
    """

    order = 4  # cubic
    m2 = 2  # difference penalty order

    def __init__(self, x, k=10):
        x, k = _check_x(x, k, self.order)
        xu = np.unique(x)
        if xu.size < 2:
            raise ValueError("cannot build a smooth on a constant column")
        if k > xu.size:
            raise ValueError(
                f"basis dimension k={k} exceeds the number of unique covariate values ({xu.size}); "
                "lower n_knots"
            )
        m1 = self.order - 2
        nk = k - m1
        xl, xu_ = xu[0], xu[-1]
        xr = xu_ - xl
        xl, xu_ = xl - xr * 0.001, xu_ + xr * 0.001
        dx = (xu_ - xl) / (nk - 1)
        self.knots = np.linspace(xl - dx * (m1 + 1), xu_ + dx * (m1 + 1), nk + 2 * m1 + 2)
        self.k = k
        self._lo, self._hi = xl, xu_
        Dm = np.diff(np.eye(k), n=self.m2, axis=0)
        self.penalty = Dm.T @ Dm

    def _design(self, x, nu=0):
        # scipy's design matrix (sparse) -> dense; nu>0 via derivative splines
        if nu == 0:
            return BSpline.design_matrix(x, self.knots, self.order - 1, extrapolate=True).toarray()
        out = np.empty((x.size, self.k))
        for i in range(self.k):  # k-sized loop, only for the 2 end points
            c = np.zeros(self.k)
            c[i] = 1
            out[:, i] = BSpline(self.knots, c, self.order - 1).derivative(nu)(x)
        return out

    def basis(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).ravel()
        lo, hi = self._lo, self._hi
        X = np.zeros((x.size, self.k))
        inside = (x >= lo) & (x <= hi)
        if inside.any():
            X[inside] = self._design(x[inside])
        if not inside.all():
            ends = np.array([lo, hi])
            V, Dv = self._design(ends), self._design(ends, 1)
            for i, idx in ((0, x < lo), (1, x > hi)):
                if idx.any():
                    X[idx] = V[i][None, :] + (x[idx] - ends[i])[:, None] * Dv[i][None, :]
        return X
