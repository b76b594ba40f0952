"""Per-theta work of the profiled LMM deviance, on the precomputed blocks.

Nothing here touches the rows: cost depends on the number of levels and the
sparsity of the coupling block only (MixedModels.jl's ``updateL!``).
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _small_chol(A, L):
    """Cholesky of a small SPD matrix into L (lower); False if not positive definite."""
    q = A.shape[0]
    for i in range(q):
        for j in range(i + 1):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if s <= 0.0:
                    return False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
        for j in range(i + 1, q):
            L[i, j] = 0.0
    return True


@njit(cache=True)
def _term_of(col, doff, dq, Q2):
    if col >= Q2:
        return -1
    k = doff.shape[0] - 1
    while doff[k] > col:
        k -= 1
    return k


@njit(cache=True, inline="always")
def _level_block(j, A11, lam1, L11):
    """``L11[j] = chol(lam1' A11[j] lam1 + I)``; returns ``log|L11[j]|^2`` (inf if not PD)."""
    q1 = A11.shape[1]
    B = np.empty((q1, q1))
    T = np.empty((q1, q1))
    for a in range(q1):
        for b in range(q1):
            s = 0.0
            for c in range(q1):
                s += A11[j, a, c] * lam1[c, b]
            T[a, b] = s
    for a in range(q1):
        for b in range(q1):
            s = 0.0
            for c in range(q1):
                s += lam1[c, a] * T[c, b]
            B[a, b] = s
        B[a, a] += 1.0
    if not _small_chol(B, L11[j]):
        return np.inf
    ld = 0.0
    for a in range(q1):
        ld += 2.0 * np.log(L11[j, a, a])
    return ld


@njit(cache=True, inline="always")
def _solve_rows(src, s0, s1, lam1, Lj, L21):
    """``L21[s] = Lj^-1 lam1' src[s]`` for the stored rows ``s0..s1`` (``src`` may be ``L21``)."""
    q1 = lam1.shape[0]
    row = np.empty(q1)
    for s in range(s0, s1):
        for b in range(q1):
            acc = 0.0
            for c in range(q1):
                acc += src[s, c] * lam1[c, b]
            row[b] = acc
        for a in range(q1):
            acc = row[a]
            for c in range(a):
                acc -= Lj[a, c] * L21[s, c]
            L21[s, a] = acc / Lj[a, a]


@njit(cache=True)
def _level_factor(j, A11, A21, ptr, cols, lam1, lam_d, lam_off, dq, doff, Q2, L11, L21):
    """``L11[j]`` and level ``j``'s rows of ``L21``; returns ``log|L11[j]|^2`` (inf if not PD)."""
    q1 = A11.shape[1]
    tmp = np.empty(max(q1, 8))
    ld = _level_block(j, A11, lam1, L11)
    if not np.isfinite(ld):
        return np.inf
    s0 = ptr[j]
    s1 = ptr[j + 1]
    # copy and apply the dense-term Lambda' to the stored rows
    s = s0
    while s < s1:
        col = cols[s]
        k = _term_of(col, doff, dq, Q2)
        if k < 0:
            for a in range(q1):
                L21[s, a] = A21[s, a]
            s += 1
            continue
        q = dq[k]
        lam = lam_d[lam_off[k]:lam_off[k] + q * q].reshape((q, q))
        if tmp.shape[0] < q:
            tmp = np.empty(q)
        for a in range(q1):
            for r in range(q):
                acc = 0.0
                for b in range(r, q):
                    acc += lam[b, r] * A21[s + b, a]
                tmp[r] = acc
            for r in range(q):
                L21[s + r, a] = tmp[r]
        s += q
    # right-multiply by lam1, then solve against L11[j]' (forward substitution)
    _solve_rows(L21, s0, s1, lam1, L11[j], L21)
    return ld


@njit(cache=True)
def level_factors(A11, A21, ptr, cols, lam1, lam_d, lam_off, dq, doff, Q2, L11, L21):
    """Fill ``L11[j] = chol(lam1' A11[j] lam1 + I)`` and ``L21`` for every first-block level.

    ``L21`` holds the coupling rows scaled by the Lambdas and solved against
    ``L11[j]'``. Returns ``log|L11|^2`` (``inf`` when a block is not positive definite).
    """
    ld = 0.0
    for j in range(A11.shape[0]):
        ld += _level_factor(j, A11, A21, ptr, cols, lam1, lam_d, lam_off, dq, doff, Q2, L11, L21)
        if not np.isfinite(ld):
            return np.inf
    return ld


@njit(cache=True)
def level_factors_one(A11, A21, ptr, lam1, L11, L21):
    """:func:`level_factors` for one grouping factor (no other random-effect terms).

    Each level's stored rows are then its ``X`` and ``y`` columns, which no other
    Lambda touches: the kernel a one-factor fit compiles, without the dense terms'
    bookkeeping.
    """
    ld = 0.0
    for j in range(A11.shape[0]):
        ld += _level_block(j, A11, lam1, L11)
        if not np.isfinite(ld):
            return np.inf
        _solve_rows(A21, ptr[j], ptr[j + 1], lam1, L11[j], L21)
    return ld


@njit(cache=True)
def level_factors_scalar(a11, a21, ptr, cols, lam1, col_scale, L11, L21):
    """:func:`level_factors` when every term is a scalar (random intercept) term.

    ``L11[j] = sqrt(lam1^2 a11[j] + 1)`` and ``L21[s] = a21[s] col_scale[cols[s]] lam1 / L11[j]``,
    ``col_scale`` holding each dense column's Lambda (1 for the X and y columns).
    """
    ld = 0.0
    for j in range(a11.shape[0]):
        d = np.sqrt(lam1 * lam1 * a11[j] + 1.0)
        L11[j, 0, 0] = d
        ld += 2.0 * np.log(d)
        f = lam1 / d
        for s in range(ptr[j], ptr[j + 1]):
            L21[s, 0] = a21[s] * col_scale[cols[s]] * f
    return ld


@njit(cache=True)
def scaled_lower(A22, s, Q2, M):
    """``M = diag(s) A22 diag(s) + [I_Q2 0; 0 0]`` on the lower triangle only.

    The dense part with scalar terms only: one pass writing the triangle the
    LAPACK Cholesky (``uplo="L"``) reads, instead of three full-matrix passes.
    """
    m = A22.shape[0]
    for i in range(m):
        si = s[i]
        for j in range(i + 1):
            M[i, j] = A22[i, j] * si * s[j]
        if i < Q2:
            M[i, i] += 1.0


@njit(cache=True, inline="always")
def _downdate_entry(M, L21, cols, r, e, s0):
    """Row ``r`` of ``M`` minus entry ``e``'s products with its level's earlier entries ``s0..e``."""
    q1 = L21.shape[1]
    if q1 == 1:
        le = L21[e, 0]
        for f in range(s0, e + 1):
            M[r, cols[f]] -= le * L21[f, 0]
    else:
        for f in range(s0, e + 1):
            acc = 0.0
            for a in range(q1):
                acc += L21[e, a] * L21[f, a]
            M[r, cols[f]] -= acc


@njit(cache=True)
def downdate_rows(M, L21, ptr, cols, tptr, tpos, tlev):
    """Subtract every level's ``L21_j L21_j'`` from the lower triangle of ``M``, row by row.

    ``(tptr, tpos, tlev)`` is the coupling pattern transposed: for dense row
    ``r``, the positions ``e`` in ``L21`` with ``cols[e] == r`` and their level.
    Working target row by target row keeps the row being written in L1 cache
    while the level segments are read in order; scattering level by level
    instead touched a new cache line for nearly every update (4x slower at
    1,100 crossed levels). Columns increase along a segment, so ``f <= e`` is
    the lower triangle.
    """
    for r in range(M.shape[0]):
        for t in range(tptr[r], tptr[r + 1]):
            _downdate_entry(M, L21, cols, r, tpos[t], ptr[tlev[t]])


@njit(cache=True)
def downdate_levels(M, L21, ptr, cols):
    """:func:`downdate_rows` level by level, for a dense part small enough to stay in cache.

    With one grouping factor (or crossed factors with a few levels) ``M`` is a
    few rows: every level's update then hits cached memory, and walking the
    segments in storage order reads ``L21`` once, sequentially, with no
    transposed pattern to build (at 10^6 levels :func:`downdate_rows`'s
    indirections cost 4x more).
    """
    for j in range(ptr.shape[0] - 1):
        s0 = ptr[j]
        for e in range(s0, ptr[j + 1]):
            _downdate_entry(M, L21, cols, cols[e], e, s0)


@njit(cache=True)
def size_class_grams(a21, cls, n_cls, m):
    """``S[u] = sum over levels j of class u of a21_j a21_j'`` (segments of ``m`` entries each)."""
    S = np.zeros((n_cls, m, m))
    for j in range(cls.shape[0]):
        u = cls[j]
        o = j * m
        for a in range(m):
            va = a21[o + a]
            for b in range(m):
                S[u, a, b] += va * a21[o + b]
    return S


@njit(cache=True)
def solve_first_block(L11, L21, ptr, cols, v, yslot_last):
    """Back-substitute the first block's conditional modes ``u1`` given the dense solution ``v``.

    ``v`` holds the dense part's solution (other terms' ``u`` then ``beta``);
    the ``y`` row of each level's segment is its right-hand side. Once per fit
    and linear in the stored entries: serial (a parallel kernel's compile
    would cost more than it ever saves).
    """
    J1, q1 = L11.shape[0], L11.shape[1]
    u = np.empty((J1, q1))
    rhs = np.empty(q1)
    for j in range(J1):
        ys = ptr[j + 1] - 1
        for a in range(q1):
            rhs[a] = L21[ys, a]
        for s in range(ptr[j], ys):
            vc = v[cols[s]]
            for a in range(q1):
                rhs[a] -= L21[s, a] * vc
        Lj = L11[j]
        for a in range(q1 - 1, -1, -1):
            acc = rhs[a]
            for c in range(a + 1, q1):
                acc -= Lj[c, a] * u[j, c]
            u[j, a] = acc / Lj[a, a]
    return u


@njit(cache=True)
def first_block_condvar(L11, L21, ptr, cols, Minv, Q2):
    """Diagonal blocks of ``(L_Z L_Z')^{-1}`` for the first term's levels.

    ``Minv`` is the inverse of the dense random-effect factor (``Q2 x Q2``,
    lower); the fill-in through the other terms adds ``W_j' W_j`` with
    ``W_j = Minv L21z_j L11_j^{-1}``.

    Called once per fit, so serial and written as plain loops: no ``prange``,
    ``@`` or array expressions, whose compiles (parallel lowering, BLAS
    bindings, broadcast-error messages) cost seconds on a cold cache.
    """
    J1, q1 = L11.shape[0], L11.shape[1]
    out = np.zeros((J1, q1, q1))
    Linv = np.zeros((q1, q1))
    W = np.zeros((Q2, q1))
    WL = np.zeros((Q2, q1))
    for j in range(J1):
        Lj = L11[j]
        # Linv = L11_j^{-1}
        for c in range(q1):
            for a in range(c):
                Linv[a, c] = 0.0
            Linv[c, c] = 1.0 / Lj[c, c]
            for a in range(c + 1, q1):
                acc = 0.0
                for b in range(c, a):
                    acc -= Lj[a, b] * Linv[b, c]
                Linv[a, c] = acc / Lj[a, a]
        # V = Linv' Linv
        for a in range(q1):
            for b in range(q1):
                acc = 0.0
                for c in range(q1):
                    acc += Linv[c, a] * Linv[c, b]
                out[j, a, b] = acc
        if Q2 > 0:
            for r in range(Q2):
                for a in range(q1):
                    W[r, a] = 0.0
            for s in range(ptr[j], ptr[j + 1]):
                col = cols[s]
                if col >= Q2:
                    continue
                for a in range(q1):
                    lv = L21[s, a]
                    if lv != 0.0:
                        for r in range(col, Q2):
                            W[r, a] += Minv[r, col] * lv
            # WL = W Linv (Linv lower), then V += WL' WL
            for r in range(Q2):
                for a in range(q1):
                    acc = 0.0
                    for c in range(a, q1):
                        acc += W[r, c] * Linv[c, a]
                    WL[r, a] = acc
            for a in range(q1):
                for b in range(q1):
                    acc = 0.0
                    for r in range(Q2):
                        acc += WL[r, a] * WL[r, b]
                    out[j, a, b] += acc
    return out
