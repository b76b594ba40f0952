"""StreamingMixed with several grouping factors (nested or crossed): exact corrections, per-row updates.

:class:`~skmixed.streaming.StreamingMixed` takes this path when the model has more than one
random-effects term (``groups`` with several columns, or a formula such as
``"y ~ x + (1 | a) + (1 | b)"`` or ``"y ~ x + (1 | a/b)"``).  The single-factor SEMA summaries
are not sufficient statistics then, so the stream accumulates the chunked LMM's grouped
cross-product statistics in a maximum-likelihood :class:`~skmixed.MixedLinearRegressor`
(``partial_fit``: per level, per co-occurring pair of levels, ``[X y]'[X y]``; their size
grows with the levels and level pairs met, not with the rows) and every correction is the
exact ML fit of all rows seen, solved from them.  Between corrections each row updates its
levels' random effects (:mod:`skmixed._solvers.stream_multi`) so predictions stay current;
the fixed effects and variance parameters are the last correction's.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd

from ._base import _frame_as_pandas, checked_sample_weight
from ._design.formula import FormulaSpec, parse_formula
from ._design.level_index import LevelIndex
from ._solvers.stream_multi import MultiStreamState

__all__ = ["SeveralFactorsStream"]

#: the warning of MixedLinearRegressor.partial_fit when the totals cannot be fitted yet
_NOT_REFITTED = "statistics accumulated but the model was not refitted"


def _take(obj, rows):
    """Rows ``rows`` (a slice or an index array) of X / y / groups / weights in any accepted form."""
    if obj is None:
        return None
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return obj.iloc[rows]
    arr = obj if isinstance(obj, np.ndarray) else np.asarray(obj, dtype=object if not np.ndim(obj) else None)
    return arr[rows]


class SeveralFactorsStream:
    """Mixin of :class:`~skmixed.streaming.StreamingMixed`: the several-factor path (see module doc)."""

    # ------------------------------------------------------------------ which path
    def _several_factors(self, X, groups) -> bool:
        """Whether a first batch (or a ``fit``) describes more than one random-effects term."""
        f = self.formula
        if f is not None:
            try:
                terms = f.parsed.terms if isinstance(f, FormulaSpec) else parse_formula(f).terms
            except Exception:  # the single-factor path reports the formula's error
                return False
            return len(terms) > 1
        if self.group_column is not None:
            return isinstance(self.group_column, (list, tuple)) and len(self.group_column) > 1
        if groups is None:
            return False
        shape = groups.shape if hasattr(groups, "shape") else np.shape(np.asarray(groups, dtype=object))
        return len(shape) == 2 and shape[1] > 1

    def _is_multi(self) -> bool:
        return self.__dict__.get("_multi") is not None

    def _check_multi_params(self):
        bad = [(self.forgetting is not None, "forgetting= (a window needs statistics that can be "
                "down-weighted; the grouped cross-products of several factors are plain sums)"),
               (self.refit_every is None, "refit_every=None (plain SEMA: with several factors the per-group "
                "summaries are not sufficient, only the exact corrections are right)"),
               (self.n_train != 0, "n_train (the corrections replace the training phase)"),
               (self.update_every is not None, "update_every (SEMA-Update sweeps are single-factor; the "
                "corrections are exact)")]
        for is_bad, what in bad:
            if is_bad:
                raise ValueError(f"StreamingMixed with several grouping factors does not support {what}")

    # ------------------------------------------------------------------ one batch
    def _consume_multi(self, X, y, groups, reset, sample_weight=None):
        """Validate the batch, feed it to the per-row state and the exact statistics, commit once."""
        from .linear import MixedLinearRegressor

        if reset:
            self._check_params()
            self._check_multi_params()
        raw = (X, y, groups)
        X = _frame_as_pandas(X)
        Xpost, Xv, yv, factors, _ = self._read_batch(X, y, groups, reset, several=True)
        if factors is None:
            raise ValueError("groups are required: the stream has several grouping factors")
        Xd = np.ascontiguousarray(self._design(Xv, shift=0.0))
        w = None
        keep = None
        if sample_weight is not None:
            w = checked_sample_weight(sample_weight, Xd)
            if not (w > 0).all():
                keep = np.flatnonzero(w > 0)  # a row of weight 0 is a row not seen
        for v in (Xd, yv) + (() if w is None else (w,)):
            if v.size and float(np.abs(v).max()) >= 1e154:
                raise ValueError("the batch makes the stream's statistics non-finite (values too large to "
                                 "square, |X| or |y| above ~1e154?): rescale the data; the model is unchanged")
        if reset:
            new = {k: v for k, v in self.__dict__.items()
                   if k not in self._FITTED_ATTRS or k in ("n_features_in_", "feature_names_in_")}
            new.update(self._multi_setup(Xpost, Xv, factors))
            new["_multi_reg"] = MixedLinearRegressor(reml=False, fit_intercept=self.fit_intercept,
                                                     random_slopes=self.random_slopes,
                                                     group_column=self.group_column, formula=self.formula)
        else:
            new = dict(self.__dict__)
            if len(factors) != len(new["_levels"]) or [f.name for f in factors] != [ix.name for ix in new["_levels"]]:
                raise ValueError(f"the batch's grouping factors {[f.name for f in factors]} are not the stream's "
                                 f"{[ix.name for ix in new['_levels']]}")
        if keep is not None:
            Xd, yv, w = Xd[keep], yv[keep], w[keep]
            factors = [type(f)(f.name, f.codes[keep], f.levels) for f in factors]
            raw = tuple(_take(a, keep) for a in raw)
            sample_weight = w
        n = Xd.shape[0]
        st = new["_multi"].copy()  # the batch works on a copy: the model changes only at the commit
        index = new["_levels"]
        sizes = [len(ix) for ix in index]
        try:
            codes = np.empty((n, len(factors)), dtype=np.int64)
            for k, (f, ix) in enumerate(zip(factors, index)):
                local = ix.code(f.levels)[f.codes]
                st.add_levels(k, len(ix))
                codes[:, k] = st.gmap[k][local]
            reg = copy.copy(new["_multi_reg"])  # its partial_fit replaces (never mutates) its statistics
            traces = self._run_multi(new, st, reg, Xd, yv, w, codes, raw, sample_weight)
            if not st.finite():
                raise ValueError("the batch makes the stream's statistics non-finite: rescale the data; the "
                                 "model is unchanged")
        except BaseException:
            for ix, m in zip(index, sizes):
                ix.truncate(m)
            raise
        if traces:
            new["_trace_rows"] = list(new["_trace_rows"]) + traces
        new.update(_multi=st, _multi_reg=reg, n_seen_=st.n_rows, n_groups_=int(st.n_levels),
                   n_iter_=st.n_corrections)
        self.__dict__ = new  # the commit: one assignment
        return self

    def _multi_setup(self, X, Xv, factors):
        """Names, random-effect columns per factor and the empty state of a new several-factor stream."""
        names_in = self._input_names_after_groups(Xv.shape[1])
        icpt = int(self._has_intercept())
        feature_names = (["(Intercept)"] if icpt else []) + names_in
        spec = self._formula
        per = {}
        if spec is not None:
            for t in spec.random:
                names = per.setdefault(t.factor, [])
                if t.intercept and "(Intercept)" not in names:
                    names.insert(0, "(Intercept)")
                for c in t.columns:
                    if c not in spec.columns:
                        raise ValueError(f"random slope {c!r} must also be a fixed-effect column of the formula")
                    if c not in names:
                        names.append(c)
        else:
            slopes, slope_names = self._slope_indices(names_in, icpt, self.random_slopes)
            for f in factors:
                per[f.name] = ["(Intercept)"] + list(slope_names)
        fnames = [f.name for f in factors]
        if set(per) != set(fnames):
            raise ValueError(f"random-effects terms {list(per)} do not match the grouping factors {fnames}")
        qk = np.array([len(per[f]) for f in fnames], dtype=np.int64)
        zidx = np.full((len(fnames), int(qk.max())), -1, dtype=np.int64)
        for k, f in enumerate(fnames):
            for a, nm in enumerate(per[f]):
                zidx[k, a] = -1 if nm == "(Intercept)" else feature_names.index(nm)
        setup = dict(_multi=MultiStreamState.new(len(feature_names), zidx, qk), _levels=[LevelIndex(f) for f in fnames],
                     _multi_re_names={f: per[f] for f in fnames}, _multi_fit=None, _trace_rows=[],
                     _no_groups=False, _shift=None, _keep=np.arange(len(feature_names)),
                     feature_names_=feature_names, re_names_=per[fnames[0]])
        if spec is not None:
            setup["formula_"] = spec.formula
        return setup

    # ------------------------------------------------------------------ corrections
    def _run_multi(self, new, st, reg, Xd, yv, w, codes, raw, sample_weight):
        """Feed the rows segment by segment, with a correction at the end of each scheduled one."""
        from .streaming import _PROGRESS_STEP

        n = Xd.shape[0]
        pos, traces = 0, []
        te = self.trace_every
        show = bool(self.verbose) or self.callback is not None
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="rows", desc="StreamingMixed", leave=False)
        try:
            while pos < n:
                start, left = st.n_rows, n - pos
                due = max(self._next_correction(st.last_correction, st.n_levels) - start, 1)
                if due <= left:
                    length, scheduled = due, True
                else:
                    length = left
                    # "auto": every batch ends with a correction (its statistics' merge already
                    # costs O(levels + pairs), and between corrections the fixed effects and
                    # variance parameters are held: a batch of new levels would leave them stale)
                    scheduled = self.refit_every == "auto"
                if show and length > _PROGRESS_STEP:
                    length, scheduled = _PROGRESS_STEP, False
                stop = pos + length
                seg = slice(pos, stop)
                st.feed(Xd[seg], yv[seg], None if w is None else w[seg], codes[seg])
                rows = self._trace_multi(new, st, te, start, st.n_rows, exclude_end=scheduled)
                X_, y_, g_ = (_take(a, seg) for a in raw)
                corrected = self._reg_step(new, st, reg, X_, y_, g_, _take(sample_weight, seg), scheduled)
                if scheduled and te and st.n_rows % te == 0:
                    rows.append(self._trace_row_multi(new, st))
                if rows:
                    traces.append(np.array(rows))
                pos = stop
                if bar is not None:
                    bar.update(stop - seg.start)
                if self.callback is not None and (corrected or pos == n):
                    self.callback(self._progress_multi(new, st, corrected))
        finally:
            if bar is not None:
                bar.close()
        return traces

    def _reg_step(self, new, st, reg, X, y, groups, sample_weight, refit):
        """Add the segment's rows to the exact statistics; with ``refit`` adopt the ML fit of all rows."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reg.partial_fit(X, y, groups=groups, sample_weight=sample_weight, refit=refit)
        failed = any(_NOT_REFITTED in str(c.message) for c in caught)
        for c in caught:
            if _NOT_REFITTED not in str(c.message) and refit:
                warnings.warn_explicit(c.message, c.category, c.filename, c.lineno)
        if not refit:
            return False
        st.last_correction = st.n_rows
        if failed:
            return False
        names = new["feature_names_"]
        fe = reg.fixed_effects_
        se = reg.fixed_effects_se_
        beta = fe.reindex(names).fillna(0.0).to_numpy()
        cov, blups = {}, []
        Phis = []
        re = reg.random_effects_
        for k, ix in enumerate(new["_levels"]):
            rn = new["_multi_re_names"][ix.name]
            C = reg.cov_re_[ix.name].loc[rn, rn]
            cov[ix.name] = C.copy()
            Phis.append(C.to_numpy())
            df = re[ix.name]
            local = ix.lookup(df.index)
            if (local < 0).any():
                raise ValueError(f"the exact fit has levels of {ix.name!r} the stream has not seen")
            blups.append((local, df[rn].to_numpy()))
        st.set_fit(beta, reg.sigma_ ** 2, Phis, blups)
        new["_multi_fit"] = dict(fixed_effects=pd.Series(beta, index=names, name="fixed_effects"),
                                 se=se.reindex(names).rename("std_error"), cov_re=cov, sigma=float(reg.sigma_),
                                 theta=np.asarray(reg.theta_, dtype=float).copy(), loglik=float(reg.loglik_),
                                 is_singular=bool(reg.is_singular_), n_rows=st.n_rows,
                                 n_params=len(names) + sum(q * (q + 1) // 2 for q in st.qk.tolist()) + 1)
        return True

    # ------------------------------------------------------------------ traces and progress
    def _trace_row_multi(self, new, st):
        vals = [st.n_rows] + list(st.beta)
        for k, ix in enumerate(new["_levels"]):
            q = int(st.qk[k])
            vals += list(st.Phi[k, :q, :q].ravel())
        return vals + [st.s2]

    def _trace_multi(self, new, st, te, start, stop, exclude_end):
        """Trace rows at the multiples of ``te`` in ``(start, stop]`` (estimates held between corrections)."""
        if not te:
            return []
        last = stop - 1 if exclude_end else stop
        first = (start // te + 1) * te
        row = self._trace_row_multi(new, st)
        return [[m] + row[1:] for m in range(first, last + 1, te)]

    def _trace_columns_multi(self):
        cols = ["n_rows"] + [f"beta[{nm}]" for nm in self.feature_names_]
        for ix in self._levels:
            rn = self._multi_re_names[ix.name]
            cols += [f"Phi[{ix.name}:{a},{b}]" for a in rn for b in rn]
        return cols + ["sigma2"]

    def _progress_multi(self, new, st, corrected):
        fit = new.get("_multi_fit")
        names = new["feature_names_"]
        return {"n_rows": st.n_rows,
                "fixed_effects": pd.Series(st.beta.copy(), index=names, name="fixed_effects"),
                "cov_re": None if fit is None else {k: v.copy() for k, v in fit["cov_re"].items()},
                "sigma2": st.s2, "corrected": bool(corrected)}

    # ------------------------------------------------------------------ results
    def _multi_result(self, key, default=np.nan):
        fit = self._multi_fit
        return default if fit is None else fit[key]

    def _summary_multi(self):
        from ._summary import Summary, format_coef_table, format_varcorr

        fit = self._multi_fit
        levels = ", ".join(f"{ix.name} {len(ix):,}" for ix in self._levels)
        lines = ["Linear mixed model fit online with exact corrections (maximum likelihood) [StreamingMixed]",
                 f"rows seen: {self.n_seen_:,}, levels: {levels}, corrections: {self.n_corrections_}"]
        if fit is None:
            lines += ["", "no correction has succeeded yet: the estimates are start values"]
        else:
            if fit["n_rows"] != self.n_seen_:
                lines.append(f"estimates of the last correction, at row {fit['n_rows']:,}")
            lines += ["", "     AIC      BIC   logLik deviance",
                      f"{self.aic_:8.1f} {self.bic_:8.1f} {self.loglik_:8.1f} {-2 * self.loglik_:8.1f}"]
        lines += ["", format_varcorr(self.cov_re_, self.sigma_), "",
                  format_coef_table(self.fixed_effects_, self.fixed_effects_se_, "t value")]
        return Summary("\n".join(lines))

    def _predict_multi(self, pdata):
        st = self._multi
        out = pdata.X @ st.beta + st.random_part(pdata.X, pdata.codes)
        return out
