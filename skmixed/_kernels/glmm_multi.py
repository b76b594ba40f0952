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
from numba import njit, prange


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


# -- vector random terms: the same selected inverse and solves with q x q level blocks --------------
#
# With a first factor of ``q1`` columns, ``L11[j]`` is level ``j``'s lower ``q1 x q1`` factor and
# ``L21[s]`` (a ``q1``-vector) couples its columns with dense column ``cols[s]``; the formulas above
# hold blockwise: with ``Linv = L11_j^{-1}`` and ``t_s = sum_{s2} Sinv[cols[s], cols[s2]] L21[s2]``,
#
# * ``(H^{-1})_{jj} = Linv' (I + sum_s L21[s] t_s') Linv``,
# * ``(H^{-1})_{cols[s], j} = -t_s' Linv``.


@njit(cache=True)
def _lower_inverse(Lj, Linv):
    q = Lj.shape[0]
    for c in range(q):
        for a in range(c):
            Linv[a, c] = 0.0
        Linv[c, c] = 1.0 / Lj[c, c]
        for a in range(c + 1, q):
            acc = 0.0
            for b in range(c, a):
                acc -= Lj[a, b] * Linv[b, c]
            Linv[a, c] = acc / Lj[a, a]


@njit(cache=True, parallel=True)
def coupling_inverse_blocks(L11, L21, ptr, cols, Sinv, Q2, D1, SEL):
    """:func:`coupling_inverse` for a first factor with ``q1 >= 1`` columns.

    ``D1[j]`` (``q1 x q1``) is the diagonal block of ``H^{-1}`` at level ``j``; ``SEL[s]``
    (a ``q1``-vector) the row of ``H^{-1}`` at dense column ``cols[s]`` over level ``j``'s
    columns, for every coupling slot with ``cols[s] < Q2`` (others are left as they are).
    A level costs ``q1 |C|^2``, ``C`` its coupled dense columns.
    """
    J1, q1 = L11.shape[0], L11.shape[1]
    for j in prange(J1):
        Linv = np.empty((q1, q1))
        _lower_inverse(L11[j], Linv)
        K = np.eye(q1)
        t = np.empty(q1)
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            if c >= Q2:
                continue
            for a in range(q1):
                t[a] = 0.0
            for s2 in range(ptr[j], ptr[j + 1]):
                c2 = cols[s2]
                if c2 >= Q2:
                    continue
                sv = Sinv[c, c2] if c >= c2 else Sinv[c2, c]
                for a in range(q1):
                    t[a] += sv * L21[s2, a]
            for b in range(q1):
                acc = 0.0
                for a in range(b, q1):
                    acc += t[a] * Linv[a, b]
                SEL[s, b] = -acc
            for a in range(q1):
                la = L21[s, a]
                for b in range(q1):
                    K[a, b] += la * t[b]
        # D1[j] = Linv' K Linv (K symmetrised: it is in exact arithmetic)
        for a in range(q1):
            for b in range(q1):
                acc = 0.0
                for c in range(a, q1):
                    for d in range(b, q1):
                        acc += Linv[c, a] * 0.5 * (K[c, d] + K[d, c]) * Linv[d, b]
                D1[j, a, b] = acc


@njit(cache=True, parallel=True)
def row_inverse_products(ZT, zoff, codes1, dcols, row_slot, D1, SEL, Sinv, G, lev):
    """Per row ``i``: ``G[i]`` = the entries of ``H^{-1} zt_i`` at the row's own levels, ``lev[i] = zt_i' G[i]``.

    ``ZT[i]`` stacks ``zt_i`` (row ``i`` of ``Z Lambda``) over the blocks at the row's levels
    (block ``k`` at ``zoff[k]:zoff[k + 1]``); ``dcols[i, k - 1]`` is the dense column of the row's
    level of dense block ``k`` (its first column) and ``row_slot[i, k - 1]`` the coupling slot
    of that column in the first factor's row. Only the selected inverse is read: ``D1``, ``SEL``
    and the dense part's inverse ``Sinv`` (lower triangle).
    """
    n = ZT.shape[0]
    K = zoff.shape[0] - 1
    q1 = zoff[1]
    for i in prange(n):
        j = codes1[i]
        for a in range(q1):
            acc = 0.0
            for b in range(q1):
                acc += D1[j, a, b] * ZT[i, b]
            G[i, a] = acc
        for k in range(1, K):
            o = zoff[k]
            qk = zoff[k + 1] - o
            s0 = row_slot[i, k - 1]
            c0 = dcols[i, k - 1]
            for r in range(qk):
                # the coupling rows: first factor <-> dense column c0 + r
                zr = ZT[i, o + r]
                acc = 0.0
                for b in range(q1):
                    sv = SEL[s0 + r, b]
                    G[i, b] += sv * zr
                    acc += sv * ZT[i, b]
                # dense <-> dense
                c = c0 + r
                for m in range(1, K):
                    om = zoff[m]
                    cm0 = dcols[i, m - 1]
                    for r2 in range(zoff[m + 1] - om):
                        c2 = cm0 + r2
                        acc += (Sinv[c, c2] if c >= c2 else Sinv[c2, c]) * ZT[i, om + r2]
                G[i, o + r] = acc
        acc = 0.0
        for a in range(zoff[K]):
            acc += ZT[i, a] * G[i, a]
        lev[i] = acc


@njit(cache=True)
def forward_blocks(L11, L21, ptr, cols, c1, c2, ncut):
    """``z1[j] = L11_j^{-1} c1[j]`` and ``c2[cols[s]] -= L21[s] . z1[j]`` (columns ``< ncut``); returns ``z1``."""
    J1, q1 = L11.shape[0], L11.shape[1]
    z1 = np.empty((J1, q1))
    for j in range(J1):
        Lj = L11[j]
        for a in range(q1):
            acc = c1[j, a]
            for b in range(a):
                acc -= Lj[a, b] * z1[j, b]
            z1[j, a] = acc / Lj[a, a]
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            if c < ncut:
                acc = 0.0
                for a in range(q1):
                    acc += L21[s, a] * z1[j, a]
                c2[c] -= acc
    return z1


@njit(cache=True)
def back_blocks(L11, L21, ptr, cols, z1, y2, Q2):
    """``y1[j] = L11_j^{-T} (z1[j] - sum_s L21[s] y2[cols[s]])``: completes ``H^{-1} g`` (q1 columns)."""
    J1, q1 = L11.shape[0], L11.shape[1]
    y1 = np.empty((J1, q1))
    rhs = np.empty(q1)
    for j in range(J1):
        for a in range(q1):
            rhs[a] = z1[j, a]
        for s in range(ptr[j], ptr[j + 1]):
            c = cols[s]
            if c < Q2:
                yc = y2[c]
                for a in range(q1):
                    rhs[a] -= L21[s, a] * yc
        Lj = L11[j]
        for a in range(q1 - 1, -1, -1):
            acc = rhs[a]
            for c in range(a + 1, q1):
                acc -= Lj[c, a] * y1[j, c]
            y1[j, a] = acc / Lj[a, a]
    return y1
