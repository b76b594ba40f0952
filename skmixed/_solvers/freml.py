"""fREML for additive mixed models (mgcv ``bam(method="fREML")``), random effects kept sparse.

Model: g(mu) = sum_t X_t beta_t, with penalties lambda_j beta_j' S_j beta_j per smooth and
lambda_r ||u_r||^2 per random-effect term (mgcv's ``s(g, bs="re")``, ``s(g, x, bs="re")``).

Every PIRLS iteration is one pass over the rows (:func:`skmixed._kernels.binned.binned_pass`)
followed by n-independent work: assemble X'WX + S_lambda, factorize it, take **one** Newton step
on the log smoothing parameters (and log scale for the Gaussian family) of the working REML
criterion (Wood et al. 2015; mgcv's ``Sl.fitChol``: eigenvalues made positive and floored,
step length capped at 4).

The coefficient vector is split into the random effects u of the *primary* grouping factor
(G groups x q terms) and a dense part d (parametric, smooth, other factors' random effects;
tens to hundreds of columns).  A_uu is block diagonal with G blocks of q x q, so

    A = [[A_uu, A_ud], [A_du, A_dd]],  H = A_dd - A_du A_uu^-1 A_ud   (Schur complement)

costs O(G q^2 p_d^2) and the dense Cholesky is p_d x p_d; mgcv factorizes (G q + p_d)^2 densely,
which is what makes ``bam`` slow with thousands of groups.  All REML derivative traces are
evaluated in the same blocked form (see ``_Factor``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from sklearn.exceptions import ConvergenceWarning

from .._kernels.binned import (
    BINOMIAL, CACC, DIAG, GAUSSIAN, OUTER, PA, PB, PMODE, POFF, POISSON, TBOFF, TROFF, TVOFF, WBAR,
    binned_pass, linear_predictor,
)
from .._threads import effective_n_threads
from ._optim import warn_not_converged

FAMILIES = {"gaussian": GAUSSIAN, "binomial": BINOMIAL, "poisson": POISSON}
_LOG2PI = np.log(2 * np.pi)


@dataclass
class BinnedTerm:
    """One model term in binned form: X_t[i, :] = z[i] * Xbar[index[i], :].

    ``Xbar=None`` marks a random-effect term of the primary grouping factor (identity basis,
    identity penalty); all such terms must share the same ``index`` (the group codes).
    """

    name: str
    index: np.ndarray
    Xbar: np.ndarray | None
    m: int
    z: np.ndarray | None = None
    S: np.ndarray | None = None  # penalty (p, p); None = unpenalized
    rank: int = 0
    logdet_S: float = 0.0
    kind: str = "parametric"  # "parametric", "smooth", "re"
    # several penalties, each with its own smoothing parameter (tensor products: mgcv's te);
    # ``S`` is then their sum and ``rank`` the rank of the sum (lambda-independent)
    S_list: tuple | None = None

    @property
    def p(self) -> int:
        return self.m if self.Xbar is None else self.Xbar.shape[1]

    @property
    def penalized(self) -> bool:
        return self.Xbar is None or self.S is not None


class BinnedLayout:
    """Column layout, pair accumulation plan and buffers for the binned pass."""

    def __init__(self, terms: list[BinnedTerm], n: int, rowwise=None, plan_n=None):
        """``rowwise`` (one flag per term) and ``plan_n`` (the row count the pair plan is sized for)
        fix the accumulation plan independently of this layout's own rows: a distributed fit gives
        every partition's layout the plan of the whole data, so their accumulators add up."""
        self.terms = terms
        self.n = n
        self.dense = [i for i, t in enumerate(terms) if t.Xbar is not None]
        self.sparse = [i for i, t in enumerate(terms) if t.Xbar is None]
        if self.sparse:
            idx0 = terms[self.sparse[0]].index
            if any(terms[i].index is not idx0 for i in self.sparse):
                raise ValueError("all sparse random-effect terms must share one grouping factor")
            self.G = terms[self.sparse[0]].m
        else:
            self.G = 0
        self.q = len(self.sparse)
        self.cols = {}
        off = 0
        for i in self.dense:
            self.cols[i] = slice(off, off + terms[i].p)
            off += terms[i].p
        self.pd = off
        self.slot = {i: r for r, i in enumerate(self.sparse)}
        # penalties in term order (a multi-penalty term contributes one per S_list entry): pen[j] is
        # the term of penalty j, pen_S[j] its matrix (None: identity of a sparse re term)
        self.pen, self.pen_S = [], []
        for i, t in enumerate(terms):
            if not t.penalized:
                continue
            for S in (t.S_list if t.S_list is not None else (t.S,)):
                self.pen.append(i)
                self.pen_S.append(S)
        single = [j for j, i in enumerate(self.pen) if terms[i].S_list is None]
        self._single = np.array(single, dtype=np.int64)
        self.rank = np.array([terms[self.pen[j]].rank if terms[self.pen[j]].Xbar is not None
                              else terms[self.pen[j]].m for j in single], dtype=float)
        self._logdet_single = float(sum(terms[self.pen[j]].logdet_S for j in single))
        # multi-penalty terms: log|sum_j lambda_j S_j|+ on the (fixed) range space of the sum
        self._groups = []
        for i, t in enumerate(terms):
            if t.penalized and t.S_list is not None:
                js = [j for j, ii in enumerate(self.pen) if ii == i]
                ev, U = np.linalg.eigh(t.S)
                keep = ev > ev.max() * 1e-10
                Ur = U[:, keep]
                self._groups.append((js, [Ur.T @ S @ Ur for S in t.S_list]))
        total_rank = int(self.rank.sum()) + sum(B[0].shape[0] for _, B in self._groups)
        self.Mp = self.pd + self.G * self.q - total_rank
        self.total_rank = total_rank

        T = len(terms)
        self.K = np.empty((T, n), dtype=np.int64)
        for i, t in enumerate(terms):
            self.K[i] = t.index
        zs = [t.z for t in terms if t.z is not None]
        self.Zm = np.ascontiguousarray(np.vstack(zs)) if zs else np.zeros((1, 1))
        # row-wise terms: about as many distinct rows as data rows -> evaluated per row in the pass
        n_plan = n if plan_n is None else int(plan_n)
        if rowwise is None:
            rowwise = [t.Xbar is not None and t.m > max(n_plan // 4, 1000) for t in terms]
        self.rowwise = [bool(r) for r in rowwise]
        tinfo = np.zeros((T, 7), dtype=np.int64)
        zc = voff = roff = xoff = boff_b = 0
        xs = []
        for i, t in enumerate(terms):
            rw = self.rowwise[i]
            tinfo[i] = (zc if t.z is not None else -1, voff, xoff, roff, t.p, int(rw), boff_b)
            zc += t.z is not None
            voff += 0 if rw else t.m
            roff += t.p if rw else t.m
            boff_b += t.p if rw else 0
            if t.Xbar is not None:
                xs.append(np.ascontiguousarray(t.Xbar).ravel())
                xoff += t.Xbar.size
        self.tinfo = tinfo
        self.vtot, self.rtot, self.btot_beta = voff, roff, boff_b
        self.Xflat = np.concatenate(xs) if xs else np.zeros(0)

        pinfo, sizes = [], []
        limit = min(n_plan, 4_000_000)
        rowwise = self.rowwise
        for a in range(T):
            for b in range(a, T):
                ta, tb = terms[a], terms[b]
                if ta.Xbar is None and tb.Xbar is None and a != b and ta.index is not tb.index:
                    raise ValueError("sparse terms on different factors")
                if rowwise[a] and rowwise[b]:
                    A, B, md, size = a, b, OUTER, ta.p * tb.p
                elif a == b or ta.index is tb.index:
                    A, B, md, size = a, b, DIAG, ta.m
                elif rowwise[a] or rowwise[b]:
                    # C on the side with the distinct rows, its columns from the row-wise term's own row
                    A, B = (b, a) if rowwise[a] else (a, b)
                    md, size = CACC, terms[A].m * terms[B].p
                elif ta.m * tb.m <= min(limit, 4 * min(ta.m * tb.p, tb.m * ta.p)):
                    # Wbar when its buffer is not much bigger than C's (Li & Wood choose by flops;
                    # here per-thread buffers and cache matter more)
                    A, B, md, size = a, b, WBAR, ta.m * tb.m
                else:
                    # C accumulates on the side with fewer distinct rows, its columns from a real Xbar
                    A, B = (a, b) if (ta.m <= tb.m and tb.Xbar is not None) or ta.Xbar is None else (b, a)
                    md, size = CACC, terms[A].m * terms[B].p
                pinfo.append((A, B, md, terms[B].m, 0))
                sizes.append(size)
        self.pinfo = np.array(pinfo, dtype=np.int64).reshape(-1, 5)
        offs = np.cumsum([0] + sizes).astype(np.int64)
        self.pinfo[:, POFF] = offs[:-1]
        self.boff = offs
        self.btot = int(offs[-1])

    def log_det_S(self, rho):
        """log|S_lambda|+ with its gradient and Hessian in rho = log lambda."""
        npen = len(self.pen)
        g = np.zeros(npen)
        H = np.zeros((npen, npen))
        val = self._logdet_single
        if self._single.size:
            val += float(np.sum(self.rank * rho[self._single]))
            g[self._single] = self.rank
        for js, Bs in self._groups:
            lam = np.exp(rho[js])
            A = sum(l * B for l, B in zip(lam, Bs))
            cho = linalg.cho_factor(A, lower=True)
            val += 2 * float(np.log(np.diag(cho[0])).sum())
            AiB = [linalg.cho_solve(cho, B) for B in Bs]
            for a, ja in enumerate(js):
                ga = lam[a] * np.trace(AiB[a])
                g[ja] = ga
                H[ja, ja] += ga
                for b, jb in enumerate(js):
                    H[ja, jb] -= lam[a] * lam[b] * np.sum(AiB[a] * AiB[b].T)
        return val, g, H

    # -- one pass ---------------------------------------------------------------------------
    def pass_(self, y, pw, fam, beta_d=None, u=None):
        init = beta_d is None
        if init:
            V, beta = np.zeros(self.vtot), np.zeros(self.btot_beta)
        else:
            V, beta = self.fitted_values(beta_d, u)
        nchunks = max(1, effective_n_threads())
        return binned_pass(self.K, self.Zm, y, pw, fam, init, V, beta, self.Xflat, self.tinfo, self.pinfo,
                           self.btot, self.rtot, nchunks)

    def fitted_values(self, beta_d, u):
        """Per-term fitted values at the distinct rows (V) and row-wise terms' coefficients."""
        V = np.empty(self.vtot)
        beta = np.empty(self.btot_beta)
        for i, t in enumerate(self.terms):
            ti = self.tinfo[i]
            if self.rowwise[i]:
                beta[ti[TBOFF]:ti[TBOFF] + t.p] = beta_d[self.cols[i]]
                continue
            sl = slice(ti[TVOFF], ti[TVOFF] + t.m)
            V[sl] = u[:, self.slot[i]] if t.Xbar is None else t.Xbar @ beta_d[self.cols[i]]
        return V, beta

    def linear_predictor(self, beta_d, u):
        V, beta = self.fitted_values(beta_d, u)
        return linear_predictor(self.K, self.Zm, V, beta, self.Xflat, self.tinfo, self.n)

    # -- what the solver reads of the rows besides the pass (a distributed layout answers from its
    #    partitions instead) ----------------------------------------------------------------------
    def response_variance(self, y):
        """Variance of y (the Gaussian scale's start)."""
        return float(np.var(y))

    def fit_deviance(self, y, pw, beta_d, u):
        """Linear predictor at the rows and the weighted residual sum of squares there."""
        eta = self.linear_predictor(beta_d, u)
        return eta, float(np.sum(pw * (y - eta) ** 2))

    # -- assemble X'WX, X'Wz -----------------------------------------------------------------
    def assemble(self, buf, r):
        terms, G, q, pd = self.terms, self.G, self.q, self.pd
        Add = np.zeros((pd, pd))
        Aud = np.zeros((G, q, pd))
        Auu = np.zeros((G, q, q))
        for p in range(self.pinfo.shape[0]):
            a, b, md = self.pinfo[p, PA], self.pinfo[p, PB], self.pinfo[p, PMODE]
            ta, tb = terms[a], terms[b]
            raw = buf[self.boff[p]:self.boff[p + 1]]
            if md == OUTER:
                blk = raw.reshape(ta.p, tb.p)
            elif md == DIAG:
                if ta.Xbar is None:  # both sparse on the same factor
                    Auu[:, self.slot[a], self.slot[b]] = raw
                    Auu[:, self.slot[b], self.slot[a]] = raw
                    continue
                if tb.Xbar is None:
                    a, b, ta, tb = b, a, tb, ta
                if ta.Xbar is None:
                    Aud[:, self.slot[a], self.cols[b]] = raw[:, None] * tb.Xbar
                    continue
                blk = ta.Xbar.T @ (raw[:, None] * tb.Xbar)
            elif md == WBAR:
                W = raw.reshape(ta.m, tb.m)
                if ta.Xbar is None:
                    Aud[:, self.slot[a], self.cols[b]] = W @ tb.Xbar
                    continue
                if tb.Xbar is None:
                    Aud[:, self.slot[b], self.cols[a]] = W.T @ ta.Xbar
                    continue
                blk = ta.Xbar.T @ W @ tb.Xbar
            else:
                C = raw.reshape(ta.m, tb.p)
                if ta.Xbar is None:
                    Aud[:, self.slot[a], self.cols[b]] = C
                    continue
                blk = ta.Xbar.T @ C
            ca, cb = self.cols[a], self.cols[b]
            Add[ca, cb] = blk
            Add[cb, ca] = blk.T  # a == b: blk symmetric, same block
        fd = np.zeros(pd)
        fu = np.zeros((G, q))
        for i, t in enumerate(terms):
            ro = self.tinfo[i, TROFF]
            if self.rowwise[i]:
                fd[self.cols[i]] = r[ro:ro + t.p]
            elif t.Xbar is None:
                fu[:, self.slot[i]] = r[ro:ro + t.m]
            else:
                fd[self.cols[i]] = t.Xbar.T @ r[ro:ro + t.m]
        return Add, Aud, Auu, fd, fu


class _Factor:
    """Blocked factorization of A = X'WX + S_lambda (sparse u block by Schur complement)."""

    def __init__(self, lay: BinnedLayout, Add, Aud, Auu, lam):
        self.lay = lay
        Sd = np.zeros_like(Add)
        lam_u = np.zeros(lay.q)
        for j, i in enumerate(lay.pen):
            t = lay.terms[i]
            if t.Xbar is None:
                lam_u[lay.slot[i]] = lam[j]
            else:
                c = lay.cols[i]
                Sd[c, c] += lam[j] * lay.pen_S[j]
        self.Sd = Sd
        U = Auu + lam_u[None, :] * np.eye(lay.q)[None] if lay.q else Auu
        if lay.q == 1:
            self.Uinv = 1.0 / U  # (G,1,1)
            self.logdetU = float(np.log(U[:, 0, 0]).sum())
        elif lay.q:
            self.Uinv = np.linalg.inv(U)
            self.logdetU = float(np.linalg.slogdet(U)[1].sum())
        else:
            self.Uinv = U
            self.logdetU = 0.0
        self.M = np.einsum("gqr,grp->gqp", self.Uinv, Aud)  # U^-1 A_ud
        H = Add + Sd - np.einsum("gqi,gqj->ij", Aud, self.M)
        H = (H + H.T) / 2
        d = np.sqrt(np.maximum(np.diag(H), 1e-300))
        Hs = H / d[:, None] / d[None, :]  # diagonal preconditioning, as Sl.fitChol
        try:
            self.cho = linalg.cho_factor(Hs, lower=False, check_finite=False)
        except linalg.LinAlgError:
            Hs = Hs + np.eye(Hs.shape[0]) * 1e-9
            self.cho = linalg.cho_factor(Hs, lower=False, check_finite=False)
        self.d = d
        self.logdetH = 2 * float(np.log(np.diag(self.cho[0])).sum() + np.log(d).sum())
        self.Hinv = linalg.cho_solve(self.cho, np.eye(Hs.shape[0])) / d[:, None] / d[None, :]

    @property
    def logdet(self):
        return self.logdetU + self.logdetH

    def solve(self, rd, ru):
        """A^-1 [ru; rd] -> (xd, xu)."""
        rhs = rd - np.einsum("gqp,gq->p", self.M, ru)
        xd = self.Hinv @ rhs
        xu = np.einsum("gqr,gr->gq", self.Uinv, ru) - np.einsum("gqp,p->gq", self.M, xd)
        return xd, xu


@dataclass
class FremlResult:
    beta_d: np.ndarray
    u: np.ndarray
    rho: np.ndarray
    phi: float
    edf: np.ndarray  # per penalty-free/penalized term, term order
    reml: float
    n_iter: int
    converged: bool
    deviance: float
    factor: _Factor
    layout: BinnedLayout
    eta: np.ndarray
    scale_estimated: bool
    n_starts: int = 1
    xtwx_dd: np.ndarray | None = None
    lam_u: np.ndarray | None = None


def _derivs(lay: BinnedLayout, F: _Factor, lam, beta_d, u, phi):
    """Traces and quadratic forms for the REML gradient/Hessian in rho = log lambda."""
    pen = lay.pen
    npen = len(pen)
    Hinv = F.Hinv
    tr = np.zeros(npen)
    T = np.zeros((npen, npen))
    bSb = np.zeros(npen)
    PSb_d, PSb_u = [], []
    Kr = {}
    # diagonal of P_uu per slot and helper products
    for j, i in enumerate(pen):
        t = lay.terms[i]
        if t.Xbar is None:
            s = lay.slot[i]
            Ms = F.M[:, s, :]  # (G, pd)
            MH = Ms @ Hinv
            tr[j] = F.Uinv[:, s, s].sum() + np.einsum("gp,gp->", MH, Ms)
            Kr[j] = Ms.T @ Ms
            v_u = np.zeros_like(u)
            v_u[:, s] = u[:, s]
            bSb[j] = u[:, s] @ u[:, s]
            xd, xu = F.solve(np.zeros(lay.pd), v_u)
        else:
            c = lay.cols[i]
            tr[j] = np.sum(Hinv[c, c] * lay.pen_S[j])
            v_d = np.zeros(lay.pd)
            v_d[c] = lay.pen_S[j] @ beta_d[c]
            bSb[j] = beta_d[c] @ v_d[c]
            xd, xu = F.solve(v_d, np.zeros_like(u))
        PSb_d.append(xd)
        PSb_u.append(xu)
    for j, i in enumerate(pen):
        ti = lay.terms[i]
        for k in range(j, npen):
            tk = lay.terms[pen[k]]
            if ti.Xbar is not None and tk.Xbar is not None:
                cj, ck = lay.cols[i], lay.cols[pen[k]]
                Fjk = Hinv[cj, ck]
                T[j, k] = np.sum((lay.pen_S[j] @ Fjk) * (Fjk @ lay.pen_S[k]))
            elif ti.Xbar is None and tk.Xbar is None:
                r, s = lay.slot[i], lay.slot[pen[k]]
                D = F.Uinv[:, r, s]
                Mr, Ms = F.M[:, r, :], F.M[:, s, :]
                T[j, k] = (D @ D + 2 * np.einsum("g,gp,gp->", D, Mr @ Hinv, Ms)
                           + np.sum((Hinv @ Kr[j]) * (Kr[k] @ Hinv).T))
            else:
                jd, ks = (j, k) if ti.Xbar is not None else (k, j)
                c = lay.cols[pen[jd]]
                HK = Hinv[c, :] @ Kr[ks] @ Hinv[:, c]
                T[j, k] = np.sum(lay.pen_S[jd] * HK)
            T[k, j] = T[j, k]
    # b' S_j P S_k b
    bSPSb = np.zeros((npen, npen))
    for j, i in enumerate(pen):
        t = lay.terms[i]
        if t.Xbar is None:
            s = lay.slot[i]
            vj_u = u[:, s]
            for k in range(npen):
                bSPSb[j, k] = vj_u @ PSb_u[k][:, s]
        else:
            c = lay.cols[i]
            vj = lay.pen_S[j] @ beta_d[c]
            for k in range(npen):
                bSPSb[j, k] = vj @ PSb_d[k][c]
    bSPSb = (bSPSb + bSPSb.T) / 2
    return tr, T, bSb, bSPSb


def _reml_parts(lay, F, lam, rho, beta_d, u, fd, fu, zWz, phi, n, scale_known):
    tr, T, bSb, bSPSb = _derivs(lay, F, lam, beta_d, u, phi)
    D = zWz - beta_d @ fd - np.sum(u * fu)  # ||z - Xb||_W^2 + b'Sb at the minimizer
    D = max(D, 1e-300)
    ldS, gS, HS = lay.log_det_S(rho)
    t = lam * tr
    bS = lam * bSb
    g = 0.5 * (bS / phi + t - gS)
    Hh = 0.5 * (np.diag(bS) / phi - 2 * np.outer(lam, lam) * bSPSb / phi + np.diag(t) - np.outer(lam, lam) * T
                - HS)
    nMp = n - lay.Mp
    reml = 0.5 * (D / phi + nMp * (_LOG2PI + np.log(phi)) + F.logdet - ldS)
    if not scale_known:
        g = np.append(g, 0.5 * (-D / phi + nMp))
        col = -0.5 * bS / phi
        Hh = np.block([[Hh, col[:, None]], [col[None, :], np.array([[0.5 * D / phi]])]])
    return reml, g, Hh, tr, D, float(np.sum(bS))


def _newton_step(g, Hh):
    ev, V = np.linalg.eigh(Hh)
    ev = np.abs(ev)
    me = ev.max() * np.sqrt(np.finfo(float).eps) if ev.size else 0.0
    ev = np.maximum(ev, me)
    step = -V @ ((V.T @ g) / ev)
    ms = np.max(np.abs(step)) if step.size else 0.0
    if ms > 4:
        step *= 4 / ms
    return step


# log smoothing parameters probed, one coordinate at a time, for a better basin than the Newton
# iteration's (fREML can have two minima along one smoothing parameter: a wiggly fit and a
# near-linear one); mgcv's default start sits between, so a local method lands on either
_SCAN = np.linspace(-8.0, 22.0, 11)


def _profile_reml(lay, Add, Aud, Auu, fd, fu, zWz, rho, n, scale_known):
    """Working fREML at ``rho`` with the scale profiled out (Gaussian) or 1; inf if singular."""
    try:
        F = _Factor(lay, Add, Aud, Auu, np.exp(rho))
    except (linalg.LinAlgError, ValueError, FloatingPointError):
        return np.inf
    bd, u = F.solve(fd, fu)
    D = max(zWz - bd @ fd - np.sum(u * fu), 1e-300)
    nMp = n - lay.Mp
    phi = D / nMp if not scale_known else 1.0
    ldS = lay.log_det_S(rho)[0]
    v = 0.5 * (D / phi + nMp * (_LOG2PI + np.log(phi)) + F.logdet - ldS)
    return v if np.isfinite(v) else np.inf


def _better_start(res, y, pw, fam, n, tol=1e-3):
    """A log-sp vector whose working fREML beats ``res``'s by more than ``tol``, or None.

    Scans each smooth's smoothing parameter over ``_SCAN`` with the others at the optimum found,
    on the working model of the converged fit (exact for the Gaussian family).  Random-effect
    variances (identity penalties) are not scanned.
    """
    lay = res.layout
    scan = [j for j, i in enumerate(lay.pen) if lay.terms[i].kind == "smooth"]
    if not scan:
        return None
    scale_known = fam != GAUSSIAN
    buf, r, _, _, zWz = lay.pass_(y, pw, fam, res.beta_d, res.u)
    Add, Aud, Auu, fd, fu = lay.assemble(buf, r)
    base = _profile_reml(lay, Add, Aud, Auu, fd, fu, zWz, res.rho, n, scale_known)
    best, best_rho = base, None
    for j in scan:
        for v in _SCAN:
            if abs(v - res.rho[j]) < 1.0:
                continue
            rho = res.rho.copy()
            rho[j] = v
            val = _profile_reml(lay, Add, Aud, Auu, fd, fu, zWz, rho, n, scale_known)
            if val < best - tol:
                best, best_rho = val, rho
    return best_rho


def fit_freml(lay: BinnedLayout, y, pw, family="gaussian", max_iter=200, tol=1e-7, rho0=None, global_search=True):
    """Fit by fREML; with ``global_search`` restart from any better basin a scan finds.

    The local fit (:func:`fit_freml_local`) is followed by a scan of each smoothing parameter
    over a wide grid on the converged working model; if some point has a lower fREML score,
    the fit is restarted there and the better of the fits is kept (at most 3 restarts).

    Parameters
    ----------
    lay, y, pw, family, max_iter, tol, rho0
        As :func:`fit_freml_local`.
    global_search : bool, default=True

    Returns
    -------
    FremlResult
        ``n_starts`` says how many local fits were run.
    """
    fam = FAMILIES[family]
    n = lay.n
    res = fit_freml_local(lay, y, pw, family, max_iter, tol, rho0)
    starts = 1
    if global_search:
        for _ in range(3):
            rho1 = _better_start(res, y, pw, fam, n)
            if rho1 is None:
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                alt = fit_freml_local(lay, y, pw, family, max_iter, tol, rho1)
            starts += 1
            if alt.reml < res.reml - 1e-8 * max(1.0, abs(res.reml)) and (alt.converged or not res.converged):
                res = alt
            else:
                break
    res.n_starts = starts
    return res


def fit_freml_local(lay: BinnedLayout, y, pw, family="gaussian", max_iter=200, tol=1e-7, rho0=None):
    """Fit by PIRLS with one fREML Newton step per iteration (mgcv ``bgam.fitd``).

    Parameters
    ----------
    lay : BinnedLayout
    y, pw : ndarray (n,)
        Response and prior weights.
    family : {"gaussian", "binomial", "poisson"}
    max_iter : int
    tol : float
        Convergence tolerance on the REML gradient (relative) and deviance change.

    Returns
    -------
    FremlResult
    """
    fam = FAMILIES[family]
    n = lay.n
    scale_known = fam != GAUSSIAN
    npen = len(lay.pen)
    rho = np.zeros(npen) if rho0 is None else np.asarray(rho0, float).copy()
    log_phi = 0.0
    beta_d = np.zeros(lay.pd)
    u = np.zeros((lay.G, lay.q))
    have_fit = False
    dev_old = np.inf
    converged = False
    it = 0
    assembled = None
    for it in range(1, max_iter + 1):
        if fam != GAUSSIAN or assembled is None:
            buf, r, eta, dev, zWz = lay.pass_(y, pw, fam, *((beta_d, u) if have_fit else ()))
            Add, Aud, Auu, fd, fu = lay.assemble(buf, r)
            assembled = (Add, Aud, Auu, fd, fu, zWz)
            if fam == GAUSSIAN and it == 1:
                # start the scale at the variance of y (mgcv initialises phi similarly)
                log_phi = np.log(max(lay.response_variance(y), 1e-12))
        Add, Aud, Auu, fd, fu, zWz = assembled
        lam = np.exp(rho)
        F = _Factor(lay, Add, Aud, Auu, lam)
        beta_d, u = F.solve(fd, fu)
        phi = 1.0 if scale_known else np.exp(log_phi)
        reml, g, Hh, tr, D, bSb = _reml_parts(lay, F, lam, rho, beta_d, u, fd, fu, zWz, phi, n, scale_known)
        step = _newton_step(g, Hh)
        if fam == GAUSSIAN:
            # exact working model: halve the step while the REML score does not decrease
            for _ in range(25):
                rho_t = rho + step[:npen]
                lp_t = log_phi + step[npen]
                F_t = _Factor(lay, Add, Aud, Auu, np.exp(rho_t))
                bd_t, u_t = F_t.solve(fd, fu)
                D_t = max(zWz - bd_t @ fd - np.sum(u_t * fu), 1e-300)
                ldS = lay.log_det_S(rho_t)[0]
                reml_t = 0.5 * (D_t / np.exp(lp_t) + (n - lay.Mp) * (_LOG2PI + lp_t) + F_t.logdet - ldS)
                if reml_t <= reml + 1e-10 * abs(reml):
                    break
                step = step / 2
        grad_ok = np.max(np.abs(g)) < tol * max(1.0, abs(reml)) if g.size else True
        small_step = np.max(np.abs(step)) < 1e-6 if step.size else True
        if fam != GAUSSIAN:
            dev_ok = abs(dev - dev_old) < tol * (abs(dev) + 0.1)
            dev_old = dev
        else:
            dev_ok = True
        if (grad_ok or small_step) and dev_ok and it > 1:
            converged = True
            break
        rho = np.clip(rho + step[:npen], -25.0, 30.0)
        if not scale_known:
            log_phi = log_phi + step[npen]
        have_fit = True
    if not converged:
        warn_not_converged("fREML Newton", max_iter, f"max |REML gradient| {np.max(np.abs(g)):.3g}", stacklevel=3)
    # final state at the accepted rho (beta_d, u, F from the last factorization)
    lam = np.exp(rho)
    phi = 1.0 if scale_known else float(np.exp(log_phi))
    if fam == GAUSSIAN:
        eta, dev = lay.fit_deviance(y, pw, beta_d, u)
    else:
        eta = lay.linear_predictor(beta_d, u)
        # the score as bam reports it for a known scale: the penalized deviance in place of the
        # working model's penalized residual sum of squares (their difference is Pearson's X^2
        # minus the deviance at the fit, not a constant)
        reml = reml + 0.5 * (dev + bSb - D)
    # edf per term: p_t - lambda_t tr(P S_t) (unpenalized terms: p_t)
    edf = [float(t.p) for t in lay.terms]
    for j, i in enumerate(lay.pen):
        edf[i] -= lam[j] * tr[j]
    res = FremlResult(beta_d, u, rho, phi, np.array(edf), float(reml), it, converged, float(dev), F,
                      lay, eta, not scale_known)
    res.xtwx_dd = Add  # X'WX of the dense part (the smooth tests' R factors)
    res.lam_u = np.array([lam[j] for j, i in enumerate(lay.pen) if lay.terms[i].Xbar is None])
    return res
