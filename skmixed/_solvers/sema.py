"""SEMA solver: the streaming state and the batch operations on it.

The state is a plain dataclass of numpy arrays (so it pickles, copies and compares trivially);
the per-row work is done by the numba kernels in :mod:`skmixed._kernels.sema`.  Per-group arrays
have a capacity that doubles when new groups arrive, so memory is ``O(J (p^2 + q^2))`` and a
batch never reallocates per group.

Forgetting (``alpha``)
----------------------
The SEMA paper (Ippel, Kaptein & Vermunt 2019, section 7.1) suggests replacing the learn rate
``1/n`` of an online mean, ``xbar <- xbar + (x_t - xbar) / n``, by ``1 / min(n, alpha)`` — a
"smooth sliding window" in which older data are smoothly discarded without being revisited —
and says that for the fixed effects "the influence of the existing (X'X)^-1 could be decreased
such that the new data points get more weight".  Our reading: a running mean with learn rate
``1/min(n, alpha)`` is exactly the weighted mean in which, from row ``alpha`` on, each new row
multiplies the weight of all earlier rows by ``lam = (alpha - 1) / alpha`` (the total weight
then stays at ``alpha``).  We apply that weighting to every row-level sufficient statistic
(``X'X`` — so ``P = (X'X)^-1`` is updated as ``(lam X'X + x x')^-1`` by Sherman-Morrison —
``X'y``, ``N`` and each group's ``A_j, a_j, s_j, B_j, D_j, c_j, n_j``), and give each group the
weight ``lam ** (rows since its last row)`` in ``T2`` and ``J``, so individuals who stop
arriving fade out of ``Phi`` the way they would leave a sliding window.  With ``alpha=None``
all weights are 1 and the algorithm is plain SEMA.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .._kernels import sema as _k

__all__ = ["SemaState", "Staging", "consume", "trace_row", "run_sweeps", "beta_covariance", "loglik", "TRACE_COLUMNS"]

_GROUP_FIELDS = ("gA", "ga", "gs", "gB", "gD", "gc", "gn", "gb", "gCinv", "gt1", "gT2w",
                 "gt3", "gJw", "gtime", "glast")
_GLOBAL_FIELDS = ("XtX", "Xy", "P", "t1", "T2", "beta", "Phi", "Lphi", "Phiinv", "sc", "ic")
# every array with one row per group (capacity rows)
_ROW_FIELDS = _GROUP_FIELDS + ("gord", "ginfo", "grhs")


@dataclass
class SemaState:
    """Everything SEMA keeps between rows.

    Per group ``g`` (first axis, ``capacity`` rows, unused rows have ``glast == -1``):
    summaries ``gA = X'X``, ``ga = X'y``, ``gs = y'y``, ``gB = Z'Z``, ``gD = X'Z``, ``gc = Z'y``,
    ``gn`` (row count); the current BLUP ``gb`` and ``gCinv = (B + s2 Phi^-1)^-1``; the group's
    contributions to the complete-data statistics ``gt1, gT2w, gt3, gJw`` (``T2`` and ``J``
    contributions include the group weight); ``gtime`` (row number the stored summaries refer
    to) and ``glast`` (row number of the group's last row, -1 = never seen).

    Global: ``XtX, Xy``, ``P = (X'X)^-1``, ``t1, T2`` and the parameters ``beta, Phi`` (with
    ``Lphi = chol(Phi)`` and, when ``Phi`` is well conditioned, ``Phiinv``); scalars in
    ``sc = [N, J, s2, t3, Phiinv valid]`` and
    ``ic = [n_rows, has_P, trained, n_sweeps, n_train_iter]``.
    """

    gA: np.ndarray
    ga: np.ndarray
    gs: np.ndarray
    gB: np.ndarray
    gD: np.ndarray
    gc: np.ndarray
    gn: np.ndarray
    gb: np.ndarray
    gCinv: np.ndarray
    gt1: np.ndarray
    gT2w: np.ndarray
    gt3: np.ndarray
    gJw: np.ndarray
    gtime: np.ndarray
    glast: np.ndarray
    XtX: np.ndarray
    Xy: np.ndarray
    P: np.ndarray
    t1: np.ndarray
    T2: np.ndarray
    beta: np.ndarray
    Phi: np.ndarray
    Lphi: np.ndarray
    Phiinv: np.ndarray
    sc: np.ndarray
    ic: np.ndarray
    # exact corrections (skmixed._solvers.sema_exact): theta and the criterion's Hessian at the
    # last one (the next one's warm start; empty before the first) and
    # xc = [row of the last correction attempted, corrections run, row where order statistics start]
    xtheta: np.ndarray = field(default_factory=lambda: np.empty(0))
    xhess: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    # the boundary pattern of theta a cold restart confirmed at the last correction (empty: none)
    xtrust: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    xc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))
    # ECME fixed effects between corrections (see _kernels.sema.process_rows): per-group GLS
    # contributions, their sums and the preconditioner K = Info^-1 at the last correction
    ginfo: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    grhs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    Info: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    Rhs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    K: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # order statistics of the stream (rows counted, sum and sum of squares of the row number,
    # per group; and per fixed column sum x, sum x^2, sum t x) to tell a grouped or sorted
    # stream from a shuffled one; kept while corrections are off
    gord: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    xord: np.ndarray = field(default_factory=lambda: np.zeros((3, 0)))
    # [1]: ECME rows have left SEMA's complete-data contributions (t1, T2, t3, J) and
    # P = (X'X)^-1 stale (see _kernels.sema.process_rows); rebuilt before plain SEMA rows
    stale: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))

    def __setstate__(self, d):
        # streams pickled before the corrections existed
        self.__dict__.update(d)
        for f in fields(self):
            if f.name not in d:
                setattr(self, f.name, f.default_factory())
        G, p = self.gA.shape[0], self.beta.shape[0]
        if "gord" not in d:
            # order statistics start now
            self.gord = np.zeros((G, 3))
            self.xord = np.zeros((3, p))
            self.xc[2] = self.n_rows
        if "ginfo" not in d:
            self.ginfo, self.grhs = np.zeros((G, p, p)), np.zeros((G, p))
            self.Info, self.Rhs, self.K = np.zeros((p, p)), np.zeros(p), np.zeros((p, p))

    @classmethod
    def new(cls, p: int, q: int, *, n_train: int = 0, capacity: int = 16) -> "SemaState":
        """Empty state for ``p`` fixed and ``q`` random effects.

        Start values are those of the reference implementation: ``Phi = I``, ``s2 = 1``
        (``beta = 0``); with ``n_train > 0`` the training EM replaces them.
        """
        G = max(int(capacity), 1)
        st = cls(
            gA=np.zeros((G, p, p)), ga=np.zeros((G, p)), gs=np.zeros(G),
            gB=np.zeros((G, q, q)), gD=np.zeros((G, p, q)), gc=np.zeros((G, q)),
            gn=np.zeros(G), gb=np.zeros((G, q)), gCinv=np.zeros((G, q, q)),
            gt1=np.zeros((G, p)), gT2w=np.zeros((G, q, q)), gt3=np.zeros(G), gJw=np.zeros(G),
            gtime=np.full(G, -1, dtype=np.int64), glast=np.full(G, -1, dtype=np.int64),
            XtX=np.zeros((p, p)), Xy=np.zeros(p), P=np.zeros((p, p)), t1=np.zeros(p),
            T2=np.zeros((q, q)), beta=np.zeros(p), Phi=np.eye(q), Lphi=np.eye(q), Phiinv=np.eye(q),
            sc=np.zeros(_k.N_SC), ic=np.zeros(_k.N_IC, dtype=np.int64),
        )
        st.sc[_k.SC_S2] = 1.0
        st.sc[_k.SC_PHIOK] = 1.0
        st.gord = np.zeros((G, 3))
        st.xord = np.zeros((3, p))
        st.ginfo, st.grhs = np.zeros((G, p, p)), np.zeros((G, p))
        st.Info, st.Rhs, st.K = np.zeros((p, p)), np.zeros(p), np.zeros((p, p))
        st.ic[_k.IC_TRAINED] = 0 if n_train > 0 else 1
        return st

    # ------------------------------------------------------------------ sizes
    @property
    def p(self) -> int:
        return self.beta.shape[0]

    @property
    def q(self) -> int:
        return self.Phi.shape[0]

    @property
    def capacity(self) -> int:
        return self.gA.shape[0]

    def ensure_capacity(self, n_groups: int) -> None:
        """Grow the per-group arrays (doubling) so codes ``0 .. n_groups-1`` fit."""
        G = self.capacity
        if n_groups <= G:
            return
        new = max(2 * G, n_groups)
        for name in _GROUP_FIELDS + ("gord", "ginfo", "grhs"):
            old = getattr(self, name)
            fill = -1 if name in ("gtime", "glast") else 0
            arr = np.full((new,) + old.shape[1:], fill, dtype=old.dtype)
            arr[:G] = old
            setattr(self, name, arr)

    def copy(self) -> "SemaState":
        return SemaState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def shares_rows_with(self, other: "SemaState") -> bool:
        """Whether any per-group array is the same object as ``other``'s (a staged state)."""
        return any(getattr(self, n) is getattr(other, n) for n in _ROW_FIELDS)

    # ------------------------------------------------------------------ readers
    @property
    def ecme(self) -> bool:
        """Fixed effects follow their GLS estimate between corrections (after the first one)."""
        return int(self.xc[1]) > 0 and self.K.shape == (self.p, self.p)

    @property
    def n_rows(self) -> int:
        return int(self.ic[_k.IC_NROWS])

    @property
    def s2(self) -> float:
        return float(self.sc[_k.SC_S2])

    @property
    def n_eff(self) -> float:
        return float(self.sc[_k.SC_N])

    @property
    def has_P(self) -> bool:
        return bool(self.ic[_k.IC_HASP])

    @property
    def trained(self) -> bool:
        return bool(self.ic[_k.IC_TRAINED])

    @property
    def n_sweeps(self) -> int:
        return int(self.ic[_k.IC_NSWEEPS])

    @property
    def n_train_iter(self) -> int:
        return int(self.ic[_k.IC_NTRAINIT])

    def seen(self) -> np.ndarray:
        """Boolean mask of the group codes that have had rows."""
        return self.glast >= 0

    def _args(self):
        return tuple(getattr(self, n) for n in _GROUP_FIELDS + _GLOBAL_FIELDS)


class Staging:
    """A batch's working state that costs ``O(groups touched)``, with an undo log.

    Works for any dataclass state with ``capacity``, ``ensure_capacity`` and (optionally) a
    ``ROW_FIELDS`` class attribute naming its per-group arrays (default: SEMA's).

    ``state`` is a new :class:`SemaState` whose global arrays are copies of ``base``'s and
    whose per-group arrays are ``base``'s own: the rows of a batch update them in place.
    Before that, the rows of the groups the batch touches are saved (the undo log), so
    :meth:`rollback` puts ``base`` back exactly as it was, and committing is just keeping
    ``state``.  An operation on every group (an exact correction, a sweep, the training EM)
    first calls :meth:`privatize`, which gives ``state`` its own copies of the per-group
    arrays and restores ``base`` -- an ``O(groups)`` copy, paid only together with an
    ``O(groups)`` operation.

    Parameters
    ----------
    base : SemaState
        The committed state (left untouched on rollback).
    codes : ndarray of int64
        Group codes of the batch's rows (stream codes; codes beyond ``base``'s capacity are
        new groups whose rows ``base`` does not hold).
    fresh : bool
        ``base`` is a new state no committed model holds: work on it directly.
    """

    def __init__(self, base: SemaState, codes: np.ndarray, fresh: bool = False):
        self.base = base
        self.rows = getattr(type(base), "ROW_FIELDS", _ROW_FIELDS)
        if fresh:
            # a new stream: the state is nobody else's
            self.state, self.idx, self.saved = base, np.empty(0, dtype=np.int64), []
            return
        self.state = type(base)(**{f.name: (getattr(base, f.name) if f.name in self.rows
                                            else getattr(base, f.name).copy()) for f in fields(base)})
        idx = np.unique(codes)
        self.idx = idx[idx < base.capacity]
        self.saved = [(n, getattr(base, n)[self.idx].copy()) for n in self.rows]

    @property
    def private(self) -> bool:
        return not self.saved

    def ensure_capacity(self, n_groups: int) -> None:
        """Grow the staged state; grown arrays are new (private) and ``base`` is not touched."""
        G = self.state.capacity
        self.state.ensure_capacity(n_groups)
        if self.state.capacity != G:
            self.saved = []  # every per-group array is now the staged state's own

    def privatize(self) -> None:
        """Give the staged state its own per-group arrays (with the batch's changes) and restore ``base``."""
        if self.private:
            return
        for n in self.rows:
            arr = getattr(self.state, n)
            if arr is getattr(self.base, n):
                setattr(self.state, n, arr.copy())
        self.rollback()

    def rollback(self) -> None:
        """Restore ``base``'s rows of the touched groups (idempotent; a second interrupt waits)."""
        while self.saved:
            try:
                while self.saved:
                    n, rows = self.saved[-1]
                    getattr(self.base, n)[self.idx] = rows
                    self.saved.pop()
            except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during the restore
                continue


def TRACE_COLUMNS(feature_names, re_names):
    """Column names of a trace: rows, fixed effects, vec(Phi), s2."""
    cols = ["n_rows"] + [f"beta[{n}]" for n in feature_names]
    cols += [f"Phi[{a},{b}]" for a in re_names for b in re_names]
    return cols + ["sigma2"]


def trace_row(state: SemaState) -> np.ndarray:
    """The current estimates as a trace row ``[n_rows, beta, vec(Phi), s2]``."""
    return np.concatenate([[state.n_rows], state.beta, state.Phi.ravel(), [state.s2]])


def consume(state: SemaState, X, y, codes, zidx, *, n_train=0, alpha=None, update_every=None,
            trace_every=None, train_tol=1e-4, train_maxit=800, ecme=False, weights=None):
    """Feed rows to the state in order (mutates ``state``); returns the trace rows recorded.

    Parameters
    ----------
    state : SemaState
        Capacity must already cover ``codes.max() + 1``.
    X : ndarray (n, p), C-contiguous float64
    y : ndarray (n,) float64
    codes : ndarray (n,) int64
    zidx : ndarray (q,) int64
        Column of ``X`` for each random-effect covariate, -1 for the constant 1.
    n_train : int
        Rows accumulated before the training-phase EM runs (0: no training phase).
    alpha : float or None
        Forgetting window (learn rate ``1/min(n, alpha)``); None: no forgetting.
    update_every : int or None
        Run one SEMA-Update sweep every ``update_every`` rows.
    trace_every : int or None
        Record ``[n_rows, beta, vec(Phi), s2]`` every ``trace_every`` rows.
    train_tol, train_maxit : float, int
        Convergence tolerance (largest absolute parameter change) and iteration cap of the
        training EM (the paper's 1e-4 and 800).
    weights : ndarray (n,) or None
        Frequency weights (positive); None: all 1.
    ecme : bool
        After an exact correction, move the fixed effects towards their GLS estimate at the
        current variance parameters on every row (see :func:`skmixed._kernels.sema.process_rows`)
        instead of SEMA's EM update.

    Returns
    -------
    ndarray
        The trace rows recorded.
    """
    ecme = bool(ecme and state.ecme)
    if not ecme and state.stale[0] and X.shape[0]:
        refresh_contributions(state, alpha)
    te = int(trace_every or 0)
    n_trace_max = (state.n_rows + X.shape[0]) // te - state.n_rows // te if te else 0
    trace = np.empty((n_trace_max, 2 + state.p + state.q * state.q))
    wts = np.ones(X.shape[0]) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    a = float(alpha or 0.0)
    i, stage, k = 0, 0, 0
    while True:
        i, stage, k = _k.process_rows(X, y, codes, zidx, int(n_train), a, int(update_every or 0), te, i, stage, k,
                                      wts, *state._args(), trace, ecme, state.ginfo, state.grhs,
                                      state.Info, state.Rhs, state.K)
        if stage == _k.STAGE_TRAIN:  # the training phase's EM, from OLS start values
            _k.start_values(state.XtX, state.Xy, state.P, state.gs, state.glast, state.beta, state.Phi,
                             state.Lphi, state.Phiinv, state.sc)
            it = _k.sweep(int(train_maxit), float(train_tol), False, a, *state._args())
            state.ic[_k.IC_NTRAINIT] = it
            state.ic[_k.IC_TRAINED] = 1
        elif stage == _k.STAGE_SWEEP:  # one SEMA-Update sweep
            _k.sweep(1, -1.0, False, a, *state._args())
        else:
            break
    if ecme and X.shape[0]:
        state.stale[0] = 1
    return trace[:k]


def refresh_contributions(state, alpha=None) -> None:
    """Rebuild ``X'X``, ``P`` and SEMA's complete-data contributions at the current parameters.

    After ECME rows (which leave them stale) and before plain SEMA rows or a sweep use them:
    an E-step of every group, no parameter changes.
    """
    a = float(alpha or 0.0)
    if _k.rebuild_sums(a, state.gA, state.ga, state.gs, state.gB, state.gD, state.gc, state.gn,
                       state.gtime, state.glast, state.XtX, state.Xy, state.P, state.sc, state.ic):
        _k.estep_all(a, state.beta, state.Lphi, state.Phiinv, state.gA, state.ga, state.gs, state.gB,
                     state.gD, state.gc, state.gb, state.gCinv, state.gt1, state.gT2w, state.gt3,
                     state.gJw, state.glast, state.t1, state.T2, state.sc, state.ic)
    state.stale[0] = 0


def run_sweeps(state: SemaState, n: int = 1, *, tol: float | None = None, alpha=None,
               method: str = "em") -> int:
    """Run ``n`` SEMA-Update sweeps (offline EM iterations on the stored summaries).

    ``method="ecme"``: each sweep takes ``beta`` by GLS at the current variance parameters
    before the E-step (ECME), which converges much faster for ``beta``; same fixed point.

    Returns the number run (fewer when the parameter change fell below ``tol``), or -1 when
    ``X'X`` is not invertible yet.
    """
    if method not in ("em", "ecme"):
        raise ValueError(f"method must be 'em' or 'ecme', got {method!r}")
    # a sweep rebuilds the sums and every contribution before its M-step
    state.stale[0] = 0
    return int(_k.sweep(int(n), float(tol) if tol else -1.0, method == "ecme", float(alpha or 0.0),
                        *state._args()))


def beta_covariance(state: SemaState, alpha=None) -> np.ndarray:
    """``Var(beta) ~ [sum_j (A_j - D_j Cinv_j D_j') / s2]^-1`` at the current parameters."""
    info = _k.beta_information(state.beta, state.Lphi, state.Phiinv, bool(state.sc[_k.SC_PHIOK] > 0.5),
                               state.s2, float(alpha or 0.0),
                               state.n_rows, state.gA, state.gB, state.gD, state.gtime,
                               state.glast)
    try:
        return np.linalg.inv(info / state.s2)
    except np.linalg.LinAlgError:
        return np.full_like(info, np.nan)


def loglik(state: SemaState, alpha=None) -> float:
    """ML log-likelihood of the rows seen at the current parameters (from the summaries)."""
    return float(_k.loglik(state.beta, state.Lphi, state.s2, float(alpha or 0.0), state.n_rows,
                           state.gA, state.ga, state.gs, state.gB, state.gD, state.gc, state.gn,
                           state.gtime, state.glast))
