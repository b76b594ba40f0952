"""The one pass over the rows: per-level cross-product blocks of ``[Z X y]``.

Every estimator that needs ``Z'WZ``, ``Z'WX``, ``Z'Wy``, ``X'WX``, ``X'Wy`` and
``y'Wy`` calls :func:`accumulate` — the LMM once per fit, PIRLS once per
iteration with working weights. Rows are split into one contiguous chunk per
thread, each thread accumulating into its own buffers, then the buffers are
summed: no atomics, and the result does not depend on the thread count beyond
floating-point summation order.

The chunk kernels are serial and release the GIL (``nogil``); the chunks run in
a small Python thread pool. That parallelises the pass as a ``prange`` loop
would, but a first fit compiles only the one serial kernel its layout needs
(about a second) instead of a parallel kernel holding both layouts (several
seconds on an empty numba cache).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _accumulate_rows(lo, hi, codes1, Z1, dense_codes, row_slot, Zd, zoff, dq, doff, Q2,
                     X, xshift, y, yshift, w, ptr, A11, A21, A22):
    q1 = Z1.shape[1]
    p = X.shape[1]
    nd = dq.shape[0]
    nv = Zd.shape[1] + p + 1
    vcol = np.empty(nv, dtype=np.int64)
    vslot = np.empty(nv, dtype=np.int64)
    vval = np.empty(nv)
    unit = w.shape[0] == 0
    for i in range(lo, hi):
        wi = 1.0 if unit else w[i]
        if wi == 0.0:
            continue
        j = codes1[i]
        for a in range(q1):
            za = wi * Z1[i, a]
            for b in range(q1):
                A11[j, a, b] += za * Z1[i, b]
        t = 0
        for k in range(nd):
            base = doff[k] + dense_codes[i, k] * dq[k]
            for r in range(dq[k]):
                vcol[t] = base + r
                vslot[t] = row_slot[i, k] + r
                vval[t] = Zd[i, zoff[k] + r]
                t += 1
        xy0 = ptr[j + 1] - (p + 1)
        for c in range(p):
            vcol[t] = Q2 + c
            vslot[t] = xy0 + c
            vval[t] = X[i, c] - xshift[c]
            t += 1
        vcol[t] = Q2 + p
        vslot[t] = xy0 + p
        vval[t] = y[i] - yshift
        t += 1
        for e in range(t):
            wv = wi * vval[e]
            s = vslot[e]
            for a in range(q1):
                A21[s, a] += wv * Z1[i, a]
            ca = vcol[e]
            for f in range(e + 1):
                A22[ca, vcol[f]] += wv * vval[f]


@njit(cache=True, nogil=True)
def _accumulate_rows_one_factor(lo, hi, codes1, Z1, X, xshift, y, yshift, w, ptr, Q2, A11, A21, A22):
    """``_accumulate_rows`` for the common case of one grouping factor (no dense terms):
    the row's dense vector is just ``[x - xshift, y - yshift]``, so no index bookkeeping."""
    q1 = Z1.shape[1]
    p = X.shape[1]
    unit = w.shape[0] == 0
    v = np.empty(p + 1)
    for i in range(lo, hi):
        wi = 1.0 if unit else w[i]
        if wi == 0.0:
            continue
        j = codes1[i]
        for a in range(q1):
            za = wi * Z1[i, a]
            for b in range(q1):
                A11[j, a, b] += za * Z1[i, b]
        for c in range(p):
            v[c] = X[i, c] - xshift[c]
        v[p] = y[i] - yshift
        s0 = ptr[j + 1] - (p + 1)
        for e in range(p + 1):
            wv = wi * v[e]
            for a in range(q1):
                A21[s0 + e, a] += wv * Z1[i, a]
            for f in range(e + 1):
                A22[Q2 + e, Q2 + f] += wv * v[f]


def accumulate(codes1, Z1, dense_codes, row_slot, Zd, zoff, dq, doff, Q2, X, xshift, y, yshift, w, ptr, J1,
               n_chunks):
    """Cross-product blocks of ``[Z X y]`` in one pass over the rows.

    ``w`` holds frequency weights, or is empty for unit weights. The rows are
    cut into ``n_chunks`` contiguous chunks, accumulated in parallel threads.

    The fixed-effects columns and ``y`` enter shifted by ``xshift`` / ``yshift``
    (their means, when the model has an intercept): the products then hold
    centred sums, so ``r^2`` and ``R_X`` do not lose digits to cancellation
    when a column's mean is large against its spread.

    Returns
    -------
    A11 : (J1, q1, q1) per-level blocks of the first (block-diagonal) term.
    A21 : (nnz, q1) stored entries of the coupling block, CSR over ``ptr``.
    A22 : (m, m) dense part (other terms, X, y), symmetric.
    """
    n = codes1.shape[0]
    q1 = Z1.shape[1]
    m = Q2 + X.shape[1] + 1
    nnz = int(ptr[J1])
    n_chunks = max(1, min(int(n_chunks), n))
    A11s = np.zeros((n_chunks, J1, q1, q1))
    A21s = np.zeros((n_chunks, nnz, q1))
    A22s = np.zeros((n_chunks, m, m))
    step = (n + n_chunks - 1) // n_chunks

    def chunk(c):
        lo, hi = c * step, min(n, (c + 1) * step)
        if dq.shape[0] == 0:
            _accumulate_rows_one_factor(lo, hi, codes1, Z1, X, xshift, y, yshift, w, ptr, Q2,
                                        A11s[c], A21s[c], A22s[c])
        else:
            _accumulate_rows(lo, hi, codes1, Z1, dense_codes, row_slot, Zd, zoff, dq, doff, Q2,
                             X, xshift, y, yshift, w, ptr, A11s[c], A21s[c], A22s[c])

    if n_chunks == 1:
        chunk(0)
        A11, A21, A22 = A11s[0], A21s[0], A22s[0]
    else:
        with ThreadPoolExecutor(n_chunks) as pool:
            list(pool.map(chunk, range(n_chunks)))  # list(): re-raise any error here
        A11, A21, A22 = A11s.sum(axis=0), A21s.sum(axis=0), A22s.sum(axis=0)
    # rows were accumulated into the lower triangle (or diagonal) of A22 when
    # column indices are increasing; mirror whatever landed on either side
    off = np.tril(A22, -1) + np.triu(A22, 1).T
    return A11, A21, off + off.T + np.diag(np.diag(A22))


def accumulate_serial(codes1, Z1, dense_codes, row_slot, Zd, zoff, dq, doff, Q2, X, xshift, y, yshift, w, ptr,
                      J1):
    """:func:`accumulate` in the calling thread, for small inputs (chunks of ``partial_fit``).

    A parallel region costs a thread wake-up and a barrier even with one chunk
    (milliseconds to hundreds of milliseconds on a loaded machine); a few thousand
    rows are summed faster than the threads start. Plain Python around the one row
    kernel the layout needs -- the one :func:`accumulate`'s chunks call, with the
    same argument types -- so a first fit compiles nothing else.
    """
    q1 = Z1.shape[1]
    m = Q2 + X.shape[1] + 1
    A11 = np.zeros((J1, q1, q1))
    A21 = np.zeros((int(ptr[J1]), q1))
    A22 = np.zeros((m, m))
    n = codes1.shape[0]
    if dq.shape[0] == 0:
        _accumulate_rows_one_factor(0, n, codes1, Z1, X, xshift, y, yshift, w, ptr, Q2, A11, A21, A22)
    else:
        _accumulate_rows(0, n, codes1, Z1, dense_codes, row_slot, Zd, zoff, dq, doff, Q2,
                         X, xshift, y, yshift, w, ptr, A11, A21, A22)
    # rows were accumulated on either side of the diagonal: A22[a, b] + A22[b, a] on both sides
    S = A22 + A22.T
    np.fill_diagonal(S, np.diagonal(A22))
    return A11, A21, S
