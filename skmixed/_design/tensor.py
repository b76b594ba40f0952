"""Tensor-product smooths (mgcv ``te()`` and ``ti()``) built from the 1-D bases of :mod:`.smooths`.

A tensor product of marginal bases B_1 (n x d_1), ..., B_m has the row-wise Kronecker product
as basis (row i: B_1[i] (x) B_2[i] (x) ...; the last margin varies fastest, as mgcv's
``tensor.prod.model.matrix``) and one penalty per margin, ``I (x) .. (x) S_j (x) .. (x) I``, each
with its own smoothing parameter (mgcv's ``tensor.prod.penalties``).  As mgcv 1.8:

* margins other than ``cr`` (already interpolating: coefficients are values at the knots) are
  re-parametrized so that their coefficients are function values at ``d_j`` equally spaced points
  (``te(..., np=TRUE)``);
* each marginal penalty is divided by its largest eigenvalue;
* ``te`` gets the usual sum-to-zero constraint on the whole product, ``ti`` (a pure interaction)
  instead constrains each margin to sum to zero over the data first and takes no further
  constraint;
* penalties are then rescaled like ``smoothCon(scale.penalty=TRUE)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .smooths import make_smooth

__all__ = ["TensorSmooth", "CentredTensor", "row_kron"]


def row_kron(mats):
    """Row-wise Kronecker product of matrices with the same number of rows (last fastest).

    Examples
    --------
    >>> import numpy as np
    >>> row_kron([np.array([[1.0, 2.0]]), np.array([[1.0, 10.0]])]).tolist()
    [[1.0, 10.0, 2.0, 20.0]]
    """
    out = mats[0]
    for M in mats[1:]:
        out = (out[:, :, None] * M[:, None, :]).reshape(out.shape[0], -1)
    return out


@dataclass
class _Margin:
    smooth: object
    P: np.ndarray  # re-parametrization (and constraint null space for ti): basis = smooth.basis(x) @ P
    S: np.ndarray  # normalized penalty in the re-parametrized coefficients
    rank: int

    def basis(self, x):
        return self.smooth.basis(x) @ self.P


class TensorSmooth:
    """Tensor product of 1-D bases on ``len(xs)`` covariates.

    Parameters
    ----------
    xs : list of ndarray
        Values of each covariate the margins are built on (knots from their unique values).
    ks : list of int
        Marginal basis dimensions (mgcv's default 5 each).
    bss : list of str
        Marginal basis names (``"cr"``, ``"ps"``).
    interaction : bool, default=False
        ``ti()``: margins centred (with ``weights`` over ``xs``' rows) before the product.
    weights : ndarray, optional
        Row multiplicities of ``xs`` for the ``ti`` marginal constraints.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = TensorSmooth([rng.random(50), rng.random(50)], [4, 5], ["cr", "cr"])
    >>> t.basis([np.array([0.5]), np.array([0.5])]).shape, len(t.penalties)
    ((1, 20), 2)
    """

    def __init__(self, xs, ks, bss, interaction=False, weights=None):
        self.interaction = bool(interaction)
        self.margins = []
        for x, k, bs in zip(xs, ks, bss):
            x = np.asarray(x, dtype=np.float64)
            sm = make_smooth(bs, x, k)
            P = np.eye(k)
            S = sm.penalty
            if self.interaction:  # ti: sum-to-zero margin (smoothCon(absorb.cons=TRUE) on the margin)
                B = sm.basis(x)
                w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=np.float64)
                C = (w @ B) / w.sum()
                Q, _ = np.linalg.qr(C.reshape(-1, 1), mode="complete")
                P = Q[:, 1:]
                S = P.T @ S @ P
            if bs != "cr":
                # coefficients = values at d equally spaced points (mgcv np=TRUE; cr already is)
                d = P.shape[1]
                pts = np.linspace(x.min(), x.max(), d)
                Xp = sm.basis(pts) @ P
                U, sv, Vt = np.linalg.svd(Xp)
                if sv[-1] / sv[0] >= np.finfo(float).eps ** 0.66:
                    XP = Vt.T @ (U.T / sv[:, None])
                    P = P @ XP
                    S = XP.T @ S @ XP
            S = (S + S.T) / 2
            ev = np.linalg.eigvalsh(S)
            S = S / ev.max()
            rank = int(np.sum(ev > ev.max() * 1e-10))
            self.margins.append(_Margin(sm, P, S, rank))
        dims = [m.P.shape[1] for m in self.margins]
        self.dims = dims
        self.penalties = []
        for j in range(len(dims)):
            M = np.ones((1, 1))
            for i, d in enumerate(dims):
                M = np.kron(M, self.margins[i].S if i == j else np.eye(d))
            self.penalties.append((M + M.T) / 2)

    @property
    def n_basis(self) -> int:
        return int(np.prod(self.dims))

    def basis(self, xs) -> np.ndarray:
        """Tensor basis (n, prod d_j) at the covariate columns ``xs``."""
        return row_kron([m.basis(np.asarray(x, dtype=np.float64)) for m, x in zip(self.margins, xs)])

    def centred(self, X: np.ndarray, weights=None) -> "CentredTensor":
        """Constraint absorbed (te: sum to zero over ``X``'s rows with ``weights``; ti: none) and
        penalties rescaled as ``smoothCon(scale.penalty=TRUE)``.

        Parameters
        ----------
        X : ndarray (m, prod d_j)
            Tensor basis at the rows the constraint and penalty scale are computed on.
        weights : ndarray (m,), optional
            Row multiplicities.
        """
        p = X.shape[1]
        if self.interaction:
            Z = np.eye(p)
        else:
            w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
            C = (w @ X) / w.sum()
            Q, _ = np.linalg.qr(C.reshape(p, 1), mode="complete")
            Z = Q[:, 1:]
        maXX = np.max(np.abs(X).sum(axis=1)) ** 2
        Ss, scales = [], []
        for S0 in self.penalties:
            sc = np.max(np.abs(S0).sum(axis=0)) / maXX
            S = Z.T @ (S0 / sc) @ Z
            Ss.append((S + S.T) / 2)
            scales.append(float(sc))
        Ssum = sum(Ss)
        ev = np.linalg.eigvalsh(Ssum)
        rank = int(np.sum(ev > ev.max() * 1e-10))
        return CentredTensor(self, Z, tuple(Ss), tuple(scales), rank)


@dataclass
class CentredTensor:
    """A tensor smooth with its constraint absorbed: f(x_1, .., x_m) = B(x) Z beta."""

    smooth: TensorSmooth
    Z: np.ndarray
    S_list: tuple
    S_scale: tuple
    rank: int  # rank of the sum of the penalties

    @property
    def n_coef(self) -> int:
        return self.Z.shape[1]

    def basis(self, xs) -> np.ndarray:
        return self.smooth.basis(xs) @ self.Z
