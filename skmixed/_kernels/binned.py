"""Discretized covariates and binned cross-products (Li & Wood 2020, mgcv ``discrete=TRUE``).

A model term t is stored as a small matrix ``Xbar_t`` (m_t x p_t, the basis evaluated at the
m_t distinct covariate values), an index ``k_t`` (n,) saying which row of ``Xbar_t`` row i uses,
and optionally a per-row multiplier ``z_t`` (random slopes, ``by`` variables):
X_t[i, :] = z_t[i] * Xbar_t[k_t[i], :].  Random-effect terms use the group codes as index and the
identity as ``Xbar``.  Nothing n x p is ever formed.

:func:`binned_pass` does one pass over the rows per PIRLS iteration: it evaluates the linear
predictor from the per-term fitted values, the working weights and response of the family, and
accumulates for every pair of terms the n-independent summary from which X'WX is finished by
small matrix products:

* DIAG (same index): d[k] += w z_a z_b                -> Xbar_a' diag(d) Xbar_b
* WBAR (m_a m_b small): W[k_a, k_b] += w z_a z_b        -> Xbar_a' W Xbar_b
* CACC:  C[k_a, :] += w z_a z_b Xbar_b[k_b, :]         -> Xbar_a' C
* OUTER (both terms row-wise): B += w z_a z_b Xbar_a[k_a]' Xbar_b[k_b]  (p_a x p_b, no finishing)

and for every term the binned working response r[k_t] += w z_t z (-> X_t'Wz = Xbar_t' r).
"Row-wise" terms are those whose distinct rows are about as many as the data rows (a
continuous parametric column kept exact, an exact-mode smooth of a continuous covariate): they
are evaluated from their own row in the pass, so no n-sized accumulator or n-sized finishing
product is ever needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

GAUSSIAN, BINOMIAL, POISSON = 0, 1, 2
_EPS = 1e-10


@njit(cache=True)
def count_unique_upto(x, m):
    """Number of distinct values in ``x``, or ``m + 1`` as soon as more than ``m`` are seen.

    Keeps a sorted buffer of at most m+1 values (binary-search insertion), so continuous data
    stop after about m rows and few-valued data cost O(n log m).
    """
    buf = np.empty(m + 1)
    cnt = 0
    for i in range(x.shape[0]):
        v = x[i]
        lo, hi = 0, cnt
        while lo < hi:
            mid = (lo + hi) // 2
            if buf[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        if lo < cnt and buf[lo] == v:
            continue
        if cnt == m + 1:
            return m + 1
        for j in range(cnt, lo, -1):
            buf[j] = buf[j - 1]
        buf[lo] = v
        cnt += 1
    return cnt


@njit(cache=True)
def index_few_values(x, m):
    """Sorted distinct values of ``x`` and the int64 index into them, when there are at most ``m``.

    O(n log m) by binary search in the small sorted value table (np.unique would sort all n).
    Returns an empty table if there are more than ``m`` values.
    """
    buf = np.empty(m)
    cnt = 0
    for i in range(x.shape[0]):  # collect the table (stops early when too many)
        v = x[i]
        lo, hi = 0, cnt
        while lo < hi:
            mid = (lo + hi) // 2
            if buf[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        if lo < cnt and buf[lo] == v:
            continue
        if cnt == m:
            return np.empty(0), np.empty(0, dtype=np.int64)
        for j in range(cnt, lo, -1):
            buf[j] = buf[j - 1]
        buf[lo] = v
        cnt += 1
    vals = buf[:cnt].copy()
    k = np.empty(x.shape[0], dtype=np.int64)
    for i in range(x.shape[0]):
        lo, hi = 0, cnt
        v = x[i]
        while lo < hi:
            mid = (lo + hi) // 2
            if vals[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        k[i] = lo
    return vals, k


@njit(cache=True)
def _round_to_grid(x, lo, dx, m):
    k = np.empty(x.shape[0], dtype=np.int64)
    for i in range(x.shape[0]):
        j = np.int64(np.floor((x[i] - lo) / dx + 0.5))
        if j < 0:
            j = 0
        elif j >= m:
            j = m - 1
        k[i] = j
    return k


def remap_codes(k, m):
    """Compress int64 codes in 0..m-1 to the ones that occur: (new codes, kept old codes)."""
    return _remap(np.ascontiguousarray(k, dtype=np.int64), int(m))


@njit(cache=True)
def _remap(k, m):
    # keep only the grid points that occur; returns new index and the kept old indices
    used = np.zeros(m, dtype=np.int64)
    for i in range(k.shape[0]):
        used[k[i]] = 1
    newid = np.empty(m, dtype=np.int64)
    c = 0
    for j in range(m):
        newid[j] = c
        c += used[j]
    kept = np.empty(c, dtype=np.int64)
    for j in range(m):
        if used[j]:
            kept[newid[j]] = j
    out = np.empty(k.shape[0], dtype=np.int64)
    for i in range(k.shape[0]):
        out[i] = newid[k[i]]
    return out, kept


def discretize(x, m=1000, exact=False):
    """Distinct values of ``x`` and an int64 index into them (mgcv's ``compress.df``, 1-D).

    With at most ``m`` distinct values (or ``exact=True``) the values are exact; otherwise ``x`` is
    rounded to the nearest of ``m`` equally spaced points over its range and only the points that
    occur are kept.

    Parameters
    ----------
    x : ndarray (n,)
    m : int, default=1000
    exact : bool, default=False
        Never round (``discrete=False``).

    Returns
    -------
    values : ndarray (m_u,), sorted
    index : ndarray (n,) int64, ``values[index]`` is the (rounded) x

    Examples
    --------
    >>> import numpy as np
    >>> v, k = discretize(np.array([0.3, 0.1, 0.3]))
    >>> v.tolist(), k.tolist()
    ([0.1, 0.3], [1, 0, 1])
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    values, index = index_few_values(x, m)
    if values.size:
        return values, index
    if exact:
        values, index = np.unique(x, return_inverse=True)
        return values, index.astype(np.int64).ravel()
    lo, hi = float(x.min()), float(x.max())
    dx = (hi - lo) / (m - 1)
    k = _round_to_grid(x, lo, dx, m)
    index, kept = _remap(k, m)
    return lo + kept * dx, index


@njit(cache=True)
def _family_wz(fam, yi, eta, pw):
    """Working weight, working response and deviance contribution of one row."""
    if fam == GAUSSIAN:
        r = yi - eta
        return pw, yi, pw * r * r
    if fam == BINOMIAL:
        mu = 1.0 / (1.0 + np.exp(-eta))
        if mu < _EPS:
            mu = _EPS
        elif mu > 1.0 - _EPS:
            mu = 1.0 - _EPS
        v = mu * (1.0 - mu)
        d = 0.0
        if yi > 0:
            d += yi * np.log(yi / mu)
        if yi < 1:
            d += (1.0 - yi) * np.log((1.0 - yi) / (1.0 - mu))
        return pw * v, eta + (yi - mu) / v, 2.0 * pw * d
    # poisson, log link
    mu = np.exp(eta)
    if mu < _EPS:
        mu = _EPS
    d = -(yi - mu)
    if yi > 0:
        d += yi * np.log(yi / mu)
    return pw * mu, eta + (yi - mu) / mu, 2.0 * pw * d


@njit(cache=True)
def _init_eta(fam, yi):
    # mgcv's family$initialize / mustart
    if fam == BINOMIAL:
        mu = (yi + 0.5) / 2.0
        return np.log(mu / (1.0 - mu))
    if fam == POISSON:
        return np.log(yi + 0.1)
    return yi


# per-term and per-pair integer tables passed to the kernels
TZID, TVOFF, TXOFF, TROFF, TP, TROW, TBOFF = range(7)  # tinfo columns
PA, PB, PMODE, PMB, POFF = range(5)  # pinfo columns
DIAG, WBAR, CACC, OUTER = 0, 1, 2, 3  # pair accumulation modes


@njit(cache=True)
def _term_value(t, i, tinfo, K, V, Xflat, beta):
    # contribution Xbar_t[k_t[i]] . beta_t: precomputed per distinct row (V), or from the row
    # itself for row-wise terms (distinct rows ~ n, e.g. a continuous parametric block)
    if tinfo[t, TROW]:
        q = tinfo[t, TP]
        src = tinfo[t, TXOFF] + K[t, i] * q
        bo = tinfo[t, TBOFF]
        s = 0.0
        for j in range(q):
            s += Xflat[src + j] * beta[bo + j]
        return s
    return V[tinfo[t, TVOFF] + K[t, i]]


@njit(cache=True)
def _pass_rows(lo, hi, K, Zm, y, pw, fam, init, V, beta, Xflat, tinfo, pinfo, buf, r, eta):
    """Rows lo..hi of :func:`binned_pass` into the accumulators ``buf`` and ``r``."""
    T = K.shape[0]
    P = pinfo.shape[0]
    zt = np.empty(T)
    dv = 0.0
    zz = 0.0
    for i in range(lo, hi):
        for t in range(T):
            zt[t] = Zm[tinfo[t, TZID], i] if tinfo[t, TZID] >= 0 else 1.0
        if init:
            e = _init_eta(fam, y[i])
        else:
            e = 0.0
            for t in range(T):
                e += zt[t] * _term_value(t, i, tinfo, K, V, Xflat, beta)
        eta[i] = e
        w, zw, d = _family_wz(fam, y[i], e, pw[i])
        dv += d
        zz += w * zw * zw
        for t in range(T):
            wz = w * zt[t] * zw
            if tinfo[t, TROW]:  # X_t'Wz directly
                q = tinfo[t, TP]
                src = tinfo[t, TXOFF] + K[t, i] * q
                for j in range(q):
                    r[tinfo[t, TROFF] + j] += wz * Xflat[src + j]
            else:
                r[tinfo[t, TROFF] + K[t, i]] += wz
        for p in range(P):
            a = pinfo[p, PA]
            b = pinfo[p, PB]
            wab = w * zt[a] * zt[b]
            md = pinfo[p, PMODE]
            off = pinfo[p, POFF]
            if md == DIAG:
                buf[off + K[a, i]] += wab
            elif md == WBAR:
                buf[off + K[a, i] * pinfo[p, PMB] + K[b, i]] += wab
            elif md == CACC:
                q = tinfo[b, TP]
                dst = off + K[a, i] * q
                src = tinfo[b, TXOFF] + K[b, i] * q
                for j in range(q):
                    buf[dst + j] += wab * Xflat[src + j]
            else:  # OUTER: X_a[i]' X_b[i] w straight into the p_a x p_b block
                qa = tinfo[a, TP]
                qb = tinfo[b, TP]
                sa = tinfo[a, TXOFF] + K[a, i] * qa
                sb = tinfo[b, TXOFF] + K[b, i] * qb
                for j in range(qa):
                    xa = wab * Xflat[sa + j]
                    dst = off + j * qb
                    for l in range(qb):
                        buf[dst + l] += xa * Xflat[sb + l]
    return dv, zz


@njit(cache=True)
def _pass_serial(K, Zm, y, pw, fam, init, V, beta, Xflat, tinfo, pinfo, btot, rtot):
    n = y.shape[0]
    buf = np.zeros(btot)
    r = np.zeros(rtot)
    eta = np.empty(n)
    dv, zz = _pass_rows(0, n, K, Zm, y, pw, fam, init, V, beta, Xflat, tinfo, pinfo, buf, r, eta)
    return buf, r, eta, dv, zz


@njit(parallel=True, cache=True)
def _pass_parallel(K, Zm, y, pw, fam, init, V, beta, Xflat, tinfo, pinfo, btot, rtot, nchunks):
    # one accumulator per chunk (thread), summed by the caller: no atomics, no false sharing
    n = y.shape[0]
    bufs = np.zeros((nchunks, btot))
    rs = np.zeros((nchunks, rtot))
    out = np.zeros((nchunks, 2))
    eta = np.empty(n)
    step = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        dv, zz = _pass_rows(c * step, min(n, (c + 1) * step), K, Zm, y, pw, fam, init, V, beta, Xflat,
                            tinfo, pinfo, bufs[c], rs[c], eta)
        out[c, 0] = dv
        out[c, 1] = zz
    return bufs, rs, eta, out


# Below this many rows a parallel region costs more (thread wake-up, per-thread accumulators)
# than it saves; measured on 2 shared cores, the serial pass does ~30-50 M rows/s.
PARALLEL_MIN_ROWS = 1_000_000


def binned_pass(K, Zm, y, pw, fam, init, V, beta, Xflat, tinfo, pinfo, btot, rtot, nchunks):
    """One pass over the rows: linear predictor, working weights, binned cross-products.

    Parameters
    ----------
    K : int64 (T, n)       per-term index into the term's distinct rows
    Zm : float64 (nz, n)   row multipliers (random slopes, by-variables)
    y, pw : float64 (n,)   response, prior weights
    fam : int              GAUSSIAN / BINOMIAL / POISSON
    init : bool            start from the family's mustart instead of the current fit
    V : float64            per-term fitted values Xbar_t beta_t at the distinct rows (flattened)
    beta : float64         coefficients of the row-wise terms (flattened)
    Xflat : float64        all Xbar_t, row-major, flattened
    tinfo : int64 (T, 7)   per term: z row (-1 none), V offset, Xbar offset, r offset, p,
                           row-wise flag, beta offset
    pinfo : int64 (P, 5)   per pair: a, b, mode (DIAG/WBAR/CACC/OUTER), m_b, buffer offset
    btot, rtot : sizes of the pair and X'Wz accumulators
    nchunks : number of threads to split the rows over

    Returns
    -------
    buf : (btot,) pair accumulators, r : (rtot,) binned X'Wz pieces, eta : (n,), deviance, z'Wz of
    the working response
    """
    n = y.shape[0]
    args = (K, Zm, y, pw, fam, init, V, beta, Xflat, tinfo, pinfo, btot, rtot)
    # per-thread accumulators must stay small next to n, or zeroing/summing them eats the gain
    if nchunks <= 1 or n < PARALLEL_MIN_ROWS or (btot + rtot) * nchunks > n // 4:
        buf, r, eta, dv, zz = _pass_serial(*args)
        return buf, r, eta, dv, zz
    bufs, rs, eta, out = _pass_parallel(*args, nchunks)
    s = out.sum(axis=0)
    return bufs.sum(axis=0), rs.sum(axis=0), eta, float(s[0]), float(s[1])


@njit(cache=True)
def linear_predictor(K, Zm, V, beta, Xflat, tinfo, n):
    """eta_i = sum_t z_t[i] * Xbar_t[k_t[i]] beta_t (fitted values with binned terms; serial)."""
    T = K.shape[0]
    eta = np.zeros(n)
    for i in range(n):
        e = 0.0
        for t in range(T):
            z = Zm[tinfo[t, TZID], i] if tinfo[t, TZID] >= 0 else 1.0
            e += z * _term_value(t, i, tinfo, K, V, Xflat, beta)
        eta[i] = e
    return eta
