"""Kernels for the analytic gradient and average-information Hessian of the profiled LMM criterion.

They work on the blocked factor that :meth:`skmixed._solvers.lmm.LMMProblem.factor`
leaves behind — ``L11`` (one scalar per first-block level, all terms scalar here),
the coupling rows ``L21`` (CSR by first-block level) and the dense part's lower
factor — and on the cross-product blocks ``A11``/``A21``/``A22``. Nothing touches
the rows; cost is that of the coupling pattern plus dense triangular work.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def first_block_inv_diag(L11, L21, ptr, cols, Minv, ncut):
    """Diagonal of ``K^{-1}`` at the first block's levels (scalar first term).

    The factor is ``F = [[L11, 0], [L21', L22]]``; column ``j`` of ``F^{-1}`` is
    ``[e_j / L11_j ; -L22^{-1} l_j / L11_j]`` with ``l_j`` level ``j``'s coupling
    row, so ``(K^{-1})_jj = (1 + ||L22^{-1} l_j||^2) / L11_j^2``. ``Minv`` is
    ``L22^{-1}`` restricted to its leading ``ncut`` rows/columns (the random-effect
    columns for ML, plus the fixed-effects columns for REML), Fortran-ordered so
    that its columns are contiguous; coupling entries at columns ``>= ncut`` drop out.
    """
    J1 = L11.shape[0]
    out = np.empty(J1)
    for j in prange(J1):
        w = np.zeros(ncut)
        lo = ncut
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            if c >= ncut:
                continue
            if c < lo:
                lo = c
            lv = L21[s, 0]
            if lv != 0.0:
                for r in range(c, ncut):
                    w[r] += Minv[r, c] * lv
        acc = 1.0
        for r in range(lo, ncut):
            acc += w[r] * w[r]
        d = L11[j, 0, 0]
        out[j] = acc / (d * d)
    return out


@njit(cache=True)
def coupling_matvec(a21, ptr, cols, x1, x2, y1, y2):
    """``y1 += A21' x2`` and ``y2 += A21 x1`` for the scalar first block's coupling block.

    ``a21[s]`` couples first-block level ``j`` (``ptr[j] <= s < ptr[j + 1]``) with dense column ``cols[s]``.
    """
    for j in range(ptr.shape[0] - 1):
        xj = x1[j]
        acc = 0.0
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            acc += a21[s] * x2[c]
            y2[c] += a21[s] * xj
        y1[j] += acc


@njit(cache=True)
def forward_first_block(L11, L21, ptr, cols, c1, c2, ncut):
    """First half of a forward solve with ``F``: ``z1 = c1 / L11`` and ``c2 -= L21' z1`` (columns < ncut).

    Returns ``z1``; ``c2`` is updated in place (what the dense triangular solve then takes).
    """
    J1 = L11.shape[0]
    z1 = np.empty(J1)
    for j in range(J1):
        z = c1[j] / L11[j, 0, 0]
        z1[j] = z
        if z != 0.0:
            for s in range(ptr[j], ptr[j + 1]):
                c = cols[s]
                if c < ncut:
                    c2[c] -= L21[s, 0] * z
    return z1
