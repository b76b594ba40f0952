"""Selected inverse and solves for the exact gradient of the multi-factor Laplace deviance.

They work on the blocked factor of ``H = Lambda' Z' W Z Lambda + I`` that
:meth:`skmixed._solvers.lmm.LMMProblem.factor` leaves behind when every random
term is scalar: ``L11`` (one scalar per level of the first factor), the
coupling rows ``L21`` (CSR by first-factor level, dense-part columns ``cols``)
and ``Minv``, the inverse of the dense random-effect factor ``L22`` (lower,
``Q2 x Q2``, Fortran-ordered so its columns are contiguous).

With ``F = [[L11, 0], [L21', L22]]`` and ``H = F F'``, column ``j`` of ``F^{-1}``
(a first-factor level) is ``[e_j / L11_j; -Minv l_j / L11_j]``, ``l_j`` level ``j``'s
coupling row, and a dense column ``c`` is ``[0; Minv[:, c]]``. So with
``w_j = Minv l_j``:

* ``(H^{-1})_jj = (1 + ||w_j||^2) / L11_j^2``,
* ``(H^{-1})_jc = -(w_j . Minv[:, c]) / L11_j``,
* ``(H^{-1})_cd = Minv[:, c] . Minv[:, d] = (Minv' Minv)_cd``.

With the dense part's inverse ``Sinv = Minv' Minv`` formed once (LAPACK ``lauum``, as
dense as the factor already is) every entry the rows touch (the "selected inverse")
is a short gather: ``w_j . Minv[:, c] = Sinv[c, C_j] l_j`` over level ``j``'s coupled
columns ``C_j``. Nothing grows as the square of the first factor's levels.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def coupling_inverse(L11, L21, ptr, cols, Sinv, Q2, d1, sel):
    """``d1[j] = (H^{-1})_jj`` and ``sel[s] = (H^{-1})_{j, cols[s]}`` for every coupling slot with ``cols[s] < Q2``.

    ``Sinv = Minv' Minv`` is the dense part's inverse (lower triangle read). With ``C`` level
    ``j``'s dense columns and ``l`` its coupling row, ``w_j . Minv[:, c] = (Sinv[c, C] l)``, so
    a level costs ``|C|^2``. Slots at the fixed-effects and response columns are left as they are.
    """
    J1 = L11.shape[0]
    for j in range(J1):
        d = L11[j, 0, 0]
        acc = 1.0
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            if c >= Q2:
                continue
            t = 0.0
            for s2 in range(ptr[j], ptr[j + 1]):
                c2 = cols[s2]
                if c2 >= Q2:
                    continue
                t += (Sinv[c, c2] if c >= c2 else Sinv[c2, c]) * L21[s2, 0]
            sel[s] = -t / d
            acc += L21[s, 0] * t
        d1[j] = acc / (d * d)


@njit(cache=True)
def lower_gather(Sinv, ca, cb, out):
    """``out[t] = Sinv[ca[t], cb[t]]`` from the lower triangle of a symmetric matrix."""
    for t in range(ca.shape[0]):
        a, b = ca[t], cb[t]
        out[t] = Sinv[a, b] if a >= b else Sinv[b, a]


@njit(cache=True)
def back_first_block(L11, L21, ptr, cols, z1, y2, Q2):
    """Back substitution of the first factor's levels: ``y1[j] = (z1[j] - sum_s L21[s] y2[cols[s]]) / L11_j``.

    With :func:`skmixed._kernels.lmm_grad.forward_first_block` and the dense solves this
    completes ``H^{-1} g`` (columns ``>= Q2`` are the fixed effects and response: skipped).
    """
    J1 = L11.shape[0]
    y1 = np.empty(J1)
    for j in range(J1):
        acc = z1[j]
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            if c < Q2:
                acc -= L21[s, 0] * y2[c]
        y1[j] = acc / L11[j, 0, 0]
    return y1
