"""Exact simulation of an LMM's per-level sufficient statistics, without simulating rows.

A parametric-bootstrap refit of a one-factor LMM needs only the cross-products of the simulated
response ``y* = X beta + Z b* + e*`` with the design (``Z_j' W y*`` per level, ``X' W y*``) and
``y*' W y*``. Write ``H`` for the fixed columns (centred as the fit centred them; a column of ones
added when a random intercept has none to use), so that every column of ``Z`` and ``X beta`` lie in
its span, and per level ``G_j = H_j' W H_j``. With ``e*_i ~ N(0, sigma^2 / w_i)`` (unit or precision
weights) and ``e~ = W^(1/2) e* / sigma ~ N(0, I)``:

* ``H_j' W e* = sigma H~_j' e~ ~ N(0, sigma^2 G_j)``: drawn as ``sigma Q_j Lambda_j^(1/2) eps_j``
  from the eigen-decomposition ``G_j = Q_j Lambda_j Q_j'`` (``eps_j ~ N(0, I)``; a level whose
  columns are collinear, e.g. a level-constant covariate, has zero eigenvalues);
* ``e*' W e* = sigma^2 (||P e~||^2 + ||(I - P) e~||^2)`` with ``P`` the projection on the span of
  ``H~_j`` (rank ``r_j``): the first term is ``||eps_j||^2`` over the non-zero eigenvalues, the second
  an independent ``chi^2(n_j - r_j)``;
* the mean part ``mu_j = H_j c_j`` (``c_j`` from ``beta`` and the level's ``b*_j``) enters as
  ``G_j c_j`` and ``c_j' G_j c_j + 2 sigma c_j' Q_j Lambda_j^(1/2) eps_j``.

So the joint distribution of everything a refit reads is reproduced exactly, at a cost of
``O(levels x p^2)`` per replicate instead of ``O(rows)``: the 2,000,000-row, 2,000-level seed
study's replicates cost what 2,000 small matrix products cost. The per-level Grams ``G_j`` are formed
once, in one pass over the rows. (Frequency weights are not rows with a residual variance of
``sigma^2 / w``, so they keep the row simulation.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["GroupedSimulator"]


class GroupedSimulator:
    """Per-level sufficient statistics of simulated responses of a one-factor LMM fit.

    Parameters
    ----------
    est : fitted MixedLinearRegressor
        With one grouping factor, fitted with ``fit`` (the rows are read once, here).
    rep : _LMMReplicator
        The bootstrap's replicator (its centring and weights).

    Examples
    --------
    >>> import numpy as np
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> from skmixed.inference._bootstrap import _LMMReplicator
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> sim = GroupedSimulator(m, _LMMReplicator(m))
    >>> zy, xy, yy, ysh = sim.y_parts(np.random.default_rng(0), 5)
    >>> zy.shape, xy.shape, yy.shape
    ((36, 5), (2, 5), (5,))
    """

    def __init__(self, est, rep):
        from ._bootstrap import training_rows

        rows = training_rows(est)
        st = est.mixed_fit_.state
        lay = st.problem.layout
        if len(lay.blocks) != 1:
            raise ValueError("the grouped simulation is for models with one grouping factor")
        self.est, self.rep, self.st = est, rep, st
        blk = lay.blocks[0]
        X = rows.X
        n, p = X.shape
        self.p, self.J, self.q = p, lay.J1, lay.q1
        shift = np.asarray(rep.x_shift, dtype=float)
        icol = 0 if p and np.all(X[:, 0] == 1.0) else None
        extra = icol is None and (-1 in blk.intercept_slopes or rep.centred)
        if extra:
            icol = p
        self.icol = icol
        pp = p + int(extra)
        self.pp = pp
        # the random-effect columns in the basis H: X[:, c] = Xc[:, c] + shift[c] (times the ones column)
        Az = np.zeros((pp, blk.q))
        for a, c in enumerate(blk.intercept_slopes):
            if c < 0:
                Az[icol, a] = 1.0
            else:
                Az[c, a] = 1.0
                if shift[c] != 0:
                    Az[icol, a] += shift[c]
        self.Az = Az
        codes = np.asarray(rows.codes[blk.factor], dtype=np.int64)
        w = rep.w
        J = self.J
        # per-level Grams G_j = H_j' W H_j: one bincount per pair of columns (one pass over the rows each)
        G = np.empty((J, pp, pp))
        cols = [X[:, k] - shift[k] for k in range(p)] + ([np.ones(n)] if extra else [])
        for a in range(pp):
            wa = w * cols[a]
            for b in range(a + 1):
                G[:, a, b] = G[:, b, a] = np.bincount(codes, weights=wa * cols[b], minlength=J)
        n_j = np.bincount(codes, minlength=J).astype(float)
        lam, Q = np.linalg.eigh(G)
        tol = 1e-10 * np.maximum(lam.max(axis=1, initial=0.0), 1e-300)
        keep = lam > tol[:, None]
        self.G = G
        self.F = Q * np.sqrt(np.where(keep, lam, 0.0))[:, None, :]  # G_j = F_j F_j'
        self.keep = keep
        self.resid_df = n_j - keep.sum(axis=1)
        self.N = float(w.sum())
        self.centred = rep.centred
        self.c0 = float(st.y_shift) if self.centred else 0.0
        beta = est.fixed_effects_.to_numpy()
        c_base = np.zeros(pp)
        c_base[:p] = beta
        if icol is not None:
            c_base[icol] += float(shift[:p] @ beta) - self.c0
        self.c_base = c_base
        self.sigma = float(est.sigma_)

    def draw(self, rng, n_sim):
        """The random parts of ``n_sim`` replicates: random effects ``(q, J, n_sim)``, the standard
        normals ``eps`` ``(J, n_sim, pp)`` and the chi-squares ``(J, n_sim)``."""
        from ._bootstrap import _random_draws

        b = _random_draws(self.est, rng, n_sim)[0]
        eps = rng.standard_normal((self.J, n_sim, self.pp))
        chi2 = rng.gamma(self.resid_df[:, None] / 2.0, 2.0, size=(self.J, n_sim))
        return b, eps, chi2

    def parts(self, b, eps, chi2):
        """``(zy, xy, yy, ysh)`` as :meth:`_LMMReplicator.y_parts` returns them for the rows."""
        s = self.sigma
        c = self.c_base[None, None, :] + np.einsum("aq,qjs->jsa", self.Az, b)  # (J, B, pp)
        Gc = np.einsum("jab,jsb->jsa", self.G, c)
        v = np.einsum("jab,jsb->jsa", self.F, eps)  # H_j' W e* / sigma
        h = Gc + s * v  # H_j' W y~
        e2 = np.einsum("jsa,ja->js", eps**2, self.keep.astype(float)) + chi2
        yy_j = np.einsum("jsa,jsa->js", c, Gc) + 2 * s * np.einsum("jsa,jsa->js", c, v) + s**2 * e2
        Hy = h.sum(axis=0)  # (B, pp)
        YY = yy_j.sum(axis=0)
        B = Hy.shape[0]
        if self.centred:
            one_y = Hy[:, self.icol]
            a = one_y / self.N
            h = h - a[None, :, None] * self.G[:, None, :, self.icol]
            YY = YY - 2 * a * one_y + a**2 * self.N
            ysh = a + self.c0
        else:
            ysh = np.zeros(B)
        zy = np.einsum("aq,jsa->jqs", self.Az, h).reshape(self.J * self.q, B)
        xy = h.sum(axis=0)[:, :self.p].T
        return zy, np.ascontiguousarray(xy), YY, ysh

    def y_parts(self, rng, n_sim):
        """Sufficient statistics of ``n_sim`` new replicates (see :meth:`parts`)."""
        return self.parts(*self.draw(rng, n_sim))
