"""Exact fit of MixedLogisticRegressor / MixedPoissonRegressor on a Dask DataFrame, one grouping factor.

(Several grouping factors: :mod:`skmixed.dask.glmm_crossed`; :func:`fit_glmm_dask` picks.)

The data are shuffled so that every group lives in one partition. Each
partition becomes a worker-resident problem holding its rows (design, 0/1
response, weights, rows bucketed by group). The driver runs glmer's strategy,
:func:`skmixed._solvers.glmm.fit_single_factor`, unchanged, on a problem object
whose per-group kernels (``laplace_single``, ``joint_stats``, ``agq_single``) are
executed on the workers, each on its own groups: per-group outputs (deviance
pieces, log-determinants, gradient contributions, conditional modes) are
scattered back into the driver's per-group arrays, and per-chunk sums are added.
Every optimiser step therefore sees the same numbers as the in-memory fit (up to
the order of floating-point sums), so the estimates agree to optimiser noise.

Driver memory: O(number of groups); rows never leave the workers.

Differences from the in-memory fit, both within the optimiser's tolerance: rows
within a group may be summed in another order (after the shuffle), and for
100,000 rows or more the in-memory fit takes its nAGQ=0 start values from a
subset of groups, the distributed one from all groups.

The solver problem calls its kernels through its ``kernels`` attribute; the
distributed fit gives its own problem a stand-in with the same signatures that
runs them on the workers, so in-memory fits in other threads are untouched.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._base import NoGroupsWarning, check_params, fit_inputs
from .._design.grouping import GroupingFactor
from .._design.layout import amalgamate
from .._design.scaling import ColumnScaling
from .._kernels import glmm as _real_kg
from .._solvers import glmm as sg
from .._solvers.glmm import _n_chunks
from ..logistic import coded_fit_inputs, finish_distributed_fit, finish_fit, glmm_family
from .._solvers.lmm import drop_aliased
from ._common import Runner, default_client

# the distributed fit has no offset (an empty offset is read as 0 by the kernels)
_NO_OFFSET = np.empty(0)

# ----------------------------------------------------------------- worker side
class _PartitionProblem:
    """One partition's rows, grouped, ready for the GLMM kernels."""

    def __init__(self, X, y, w, labels, family):
        self.fam = int(family.kernel_id)
        self.const = family.loglik_constant(y, w)
        self.Xfull = X
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.w = np.ascontiguousarray(w, dtype=np.float64)
        f = GroupingFactor.from_labels(labels, name="g")
        self.levels = f.levels
        self.codes = f.codes
        self.perm, self.gptr = sg.group_pointer(self.codes, f.n_levels)
        self.X = None

    def meta(self):
        Xw = self.Xfull * self.w[:, None]
        return {"levels": self.levels, "XtWX": Xw.T @ self.Xfull, "n_obs": float(self.w.sum()),
                "wy": float(self.w @ self.y), "ones": np.all(self.Xfull == 1.0, axis=0), "const": self.const}

    def restrict(self, keep, zcols):
        self.X = np.ascontiguousarray(self.Xfull[:, keep])
        self.Xfull = None
        self.zcols = zcols
        self.kw = np.empty(0) if np.all(self.w == 1.0) else self.w
        self.chunks = _n_chunks(self.gptr.size - 1)
        return self

    def call(self, name, beta, Lam, u, extra):
        G, q, p = self.gptr.size - 1, self.zcols.size, self.X.shape[1]
        u = np.ascontiguousarray(u)
        if name == "laplace_single":
            tol, maxit, want_grad, t_rows, t_cols, k = extra
            h, ld, it = np.empty(G), np.empty(G), np.empty(G, dtype=np.int64)
            gb = np.empty((G, p) if want_grad else (1, p))
            gl = np.empty((G, q, q) if want_grad else (1, q, q))
            jac = np.empty((G, q, k) if want_grad else (1, q, k))
            _real_kg.laplace_single(beta, self.X, self.zcols, self.y, self.kw, self.perm, self.gptr, Lam, u,
                                    tol, maxit, want_grad, h, ld, it, gb, gl, t_rows, t_cols, jac, self.fam, _NO_OFFSET)
            return u, (h, ld, it, gb, gl, jac)
        if name == "joint_stats":
            solve_u, tol = extra
            nck = self.chunks.size - 1
            A, B, s, h = np.empty((G, q, q)), np.empty((G, q, p)), np.empty((G, q)), np.empty(G)
            C, xr = np.empty((nck, p, p)), np.empty((nck, p))
            _real_kg.joint_stats(beta, self.X, self.zcols, self.y, self.kw, self.perm, self.gptr, self.chunks,
                                 Lam, u, solve_u, tol, A, B, s, h, C, xr, self.fam, _NO_OFFSET)
            return u, (A, B, s, h, C.sum(axis=0), xr.sum(axis=0))
        if name == "agq_single":
            lam, nodes, weights = extra
            out = np.empty(G)
            _real_kg.agq_single(beta, self.X, self.zcols, self.y, self.kw, self.perm, self.gptr, lam, u,
                                nodes, weights, out, self.fam, _NO_OFFSET)
            return u, (out,)
        raise ValueError(name)


def _validated(df, est, how, classes):
    """FitData of one partition's rows; a logistic response as 0/1 codes of the global ``classes``."""
    from sklearn.base import clone

    est = clone(est)
    y = df[how["y"]]
    if classes is not None:
        # y arrives as 0/1 codes of the global classes; a partition may hold one class only
        codes = pd.Index(classes).get_indexer(pd.Series(y).to_numpy())
        if (codes < 0).any():
            raise ValueError("y has labels outside the two classes")
        y = codes.astype(np.float64)
    g = df[how["groups"]]
    w = df[how["weights"]] if how["weights"] is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGroupsWarning)
        if classes is not None:
            return coded_fit_inputs(est, df[how["X"]], y, g, w, chunk=True, reset=True)
        return fit_inputs(est, df[how["X"]], y, g, w, chunk=True, reset=True)


def _build(df, est, how, classes):
    if len(df) == 0:
        return None
    fd = _validated(df, est, how, classes)
    ww = np.ones(fd.X.shape[0]) if fd.weights is None else fd.weights
    g = df[how["groups"][0]]
    return (_PartitionProblem(fd.X, fd.y, ww, pd.Series(g).reset_index(drop=True), glmm_family(est)), fd.terms,
            fd.feature_names)


# ----------------------------------------------------------------- driver side
def _design_info(b):
    return None if b is None else (b[1], b[2])


def _problem(b):
    return b[0]


def _meta(p):
    return p.meta()


def _restrict(p, keep, zcols):
    return p.restrict(keep, zcols)


def _call(p, name, beta, Lam, u, extra):
    return p.call(name, beta, Lam, u, extra)


class _RemoteKernels:
    """Stands in for :mod:`skmixed._kernels.glmm` inside the solver: same signatures, rows on the workers."""

    def __init__(self, runner, gidx):
        self.runner, self.gidx = runner, gidx

    def _run(self, name, beta, Lam, u, extra):
        beta = np.ascontiguousarray(beta, dtype=np.float64)
        us = [u[i] for i in self.gidx]
        n = len(self.gidx)
        out = self.runner.map(_call, [name] * n, [beta] * n, [Lam] * n, us, [extra] * n)
        for i, (u_p, _) in zip(self.gidx, out):
            u[i] = u_p
        return [o[1] for o in out]

    def laplace_single(self, beta, X, zcols, y, w, perm, gptr, Lam, u, tol, maxit, want_grad,
                       h_out, ld_out, it_out, gbeta_out, glam_out, t_rows, t_cols, jac_out, fam=0, off=None):
        res = self._run("laplace_single", beta, Lam, u, (tol, maxit, want_grad, t_rows, t_cols, jac_out.shape[2]))
        for i, (h, ld, it, gb, gl, jac) in zip(self.gidx, res):
            h_out[i], ld_out[i], it_out[i] = h, ld, it
            if want_grad:
                gbeta_out[i], glam_out[i], jac_out[i] = gb, gl, jac

    def joint_stats(self, beta, X, zcols, y, w, perm, gptr, chunks, Lam, u, solve_u, tol,
                    A_out, B_out, s_out, h_out, C_out, xr_out, fam=0, off=None):
        res = self._run("joint_stats", beta, Lam, u, (solve_u, tol))
        C_out[:] = 0.0
        xr_out[:] = 0.0
        for i, (A, B, s, h, C, xr) in zip(self.gidx, res):
            A_out[i], B_out[i], s_out[i], h_out[i] = A, B, s, h
            C_out[0] += C
            xr_out[0] += xr

    def agq_single(self, beta, X, zcols, y, w, perm, gptr, lam, u, nodes, weights, out, fam=0, off=None):
        res = self._run("agq_single", beta, None, u, (lam, nodes, weights))
        for i, (o,) in zip(self.gidx, res):
            out[i] = o


def fit_glmm_dask(estimator, ddf, *, y, X, groups, sample_weight=None, shuffle=True):
    """Exact fit of a MixedLogisticRegressor / MixedPoissonRegressor on a Dask DataFrame.

    One grouping factor: the rows are shuffled by group and the per-group kernels run on the
    workers (Laplace or AGQ). Several factors: :mod:`skmixed.dask.glmm_crossed` (Laplace / nAGQ=0,
    partition cross-products summed; no shuffle).
    """
    from sklearn.base import clone

    from ..poisson import MixedPoissonRegressor
    from .glmm_crossed import fit_crossed_glmm_dask

    est = clone(estimator)
    check_params(est)
    if getattr(est, "random_only", None):
        raise ValueError("the distributed GLMM fit does not take random_only columns (random slopes without "
                         "a fixed effect): fit in memory")
    gc = [groups] if isinstance(groups, str) else list(groups)
    Xc = [X] if isinstance(X, str) else list(X)
    missing = [c for c in [y] + Xc + gc + ([sample_weight] if sample_weight else []) if c not in ddf.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the dask DataFrame")
    poisson = isinstance(est, MixedPoissonRegressor)
    classes = None
    if not poisson:
        classes = np.sort(pd.unique(ddf[y].dropna().compute().to_numpy()))
        if classes.size != 2:
            raise ValueError(f"y must have exactly two classes, got {classes.size}")
    if len(gc) > 1:
        est, res = fit_crossed_glmm_dask(est, ddf, X=Xc, y=y, groups=gc, sample_weight=sample_weight,
                                         classes=classes, validate=_validated)
    else:
        est, res = _fit_one_factor(est, ddf, Xc, y, gc, sample_weight, classes, shuffle)
    est.feature_names_in_ = np.asarray(Xc, dtype=object)
    est.n_features_in_ = len(Xc)
    finish_distributed_fit(est, res, classes)
    return est


def _fit_one_factor(est, ddf, Xc, y, gc, sample_weight, classes, shuffle):
    import dask
    from dask import delayed

    client = default_client()
    if shuffle:
        ddf = ddf.shuffle(on=gc[0])
    how = {"X": Xc, "y": y, "groups": gc, "weights": sample_weight}
    built = [delayed(_build)(p, est, how, classes) for p in ddf.to_delayed()]
    if client is not None:
        # the partition problems stay on the workers, as futures
        futs = client.compute(built)
        info = client.gather([client.submit(_design_info, f) for f in futs])
        parts = [client.submit(_problem, f) for f, i in zip(futs, info) if i is not None]
        info = [i for i in info if i is not None]
    else:
        res = [b for b in dask.compute(*built) if b is not None]
        parts = [b[0] for b in res]
        info = [(b[1], b[2]) for b in res]
    if not parts:
        raise ValueError("the dask DataFrame has no rows")
    terms, names = info[0]
    runner = Runner(parts, client)
    metas = runner.map(_meta)
    # every group in exactly one partition
    all_levels = [m["levels"] for m in metas]
    union = all_levels[0].append(all_levels[1:]) if len(all_levels) > 1 else all_levels[0]
    if union.has_duplicates:
        raise ValueError("a group spans several partitions: shuffle the data by the group column first")
    factor = GroupingFactor.from_labels(pd.Series(union), name=gc[0])
    canon = factor.codes  # position in the concatenation -> canonical code
    offs = np.cumsum([0] + [len(lv) for lv in all_levels])
    gidx = [canon[offs[k]:offs[k + 1]] for k in range(len(all_levels))]
    if factor.n_levels < 2:
        raise ValueError(f"grouping factor {gc[0]!r} has only one level; a random effect needs at least 2")
    XtWX = sum(m["XtWX"] for m in metas)
    n_obs = sum(m["n_obs"] for m in metas)
    wy = sum(m["wy"] for m in metas)
    keep = drop_aliased(XtWX)
    p_full = XtWX.shape[0]
    if keep.size < p_full:
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {p_full - keep.size} column(s): "
                      f"{[names[k] for k in range(p_full) if k not in set(keep.tolist())]}", UserWarning,
                      stacklevel=2)
    from .._design.terms import RandomTerm

    remap = {int(o): n for n, o in enumerate(keep)}
    terms = [RandomTerm(t.factor, t.intercept, tuple(remap[s] for s in t.slopes), t.names) for t in terms]
    blocks = amalgamate(terms, [factor.n_levels])
    blk = blocks[0]
    zcols = np.asarray(blk.intercept_slopes, dtype=np.int64)
    runner.update(_restrict, [keep] * len(gidx), [zcols] * len(gidx))
    ones = np.logical_and.reduce([m["ones"] for m in metas])[keep]
    # a row-free stand-in: _start_beta sees which columns are constant 1 and the weighted mean of y
    X_stub = ones.astype(np.float64)[None, :]
    prob = sg.SingleFactorGLMM(X_stub, np.array([wy / n_obs]), np.ones(1), np.zeros(1, dtype=np.int64),
                               factor.n_levels, zcols, blk.pattern, family=glmm_family(est))
    prob.n_obs = float(n_obs)
    prob.kernels = _RemoteKernels(runner, gidx)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = sg.fit_single_factor(prob, nagq=int(est.nagq), tol=float(est.tol), max_iter=int(est.max_iter))
    res.extra["lower"] = prob.lower_theta

    from .._base import FitData

    fd = FitData(np.empty((0, keep.size)), np.empty(0), None, [names[k] for k in keep],
                 [GroupingFactor(gc[0], np.empty(0, dtype=np.int64), factor.levels)], terms, keep, p_full,
                 n_obs_total=float(n_obs))
    # the kernels ran on the user's columns (no internal scaling); the log-likelihood's constant
    # (0 for 0/1 rows, sum log y! for counts) is summed over the partitions
    const = float(sum(m["const"] for m in metas))
    finish_fit(est, fd, blocks, res, ColumnScaling(np.zeros(keep.size), np.ones(keep.size)), const)
    return est, res
