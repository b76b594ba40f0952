"""Public inference functions: coefficient tables, summaries, ``confint``, ``anova``.

They accept fitted :class:`~skmixed.MixedLinearRegressor` and
:class:`~skmixed.MixedLogisticRegressor` estimators; the estimators' thin methods
(``summary``, ``confint``, ...) call into here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.utils.validation import check_is_fitted

from ._lmm import LMMInference, MLProfile, blas_for, profile_names
from ._tables import InferenceSummary, format_coef_frame

__all__ = ["coef_table", "confint", "anova", "tidy", "RefitWarning", "lmm_summary", "glmm_summary"]

_DDF = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger", "kr": "Kenward-Roger",
        "kenward_roger": "Kenward-Roger"}


class RefitWarning(UserWarning):
    """``anova`` refitted REML fits by maximum likelihood before comparing them (as lme4 does)."""


def _is_lmm(est) -> bool:
    try:
        return est.mixed_fit_.kind == "lmm"
    except AttributeError:  # not fitted, or not a skmixed estimator
        return False


def _check(est):
    check_is_fitted(est)
    kind = getattr(getattr(est, "mixed_fit_", None), "kind", None)
    if kind not in ("lmm", "glmm"):
        raise TypeError(f"inference needs a fitted MixedLinearRegressor, MixedLogisticRegressor or "
                        f"MixedPoissonRegressor, got {type(est).__name__}")


def _ddf_name(ddf) -> str:
    key = str(ddf).lower()
    if key not in _DDF:
        raise ValueError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger', got {ddf!r}")
    return _DDF[key]


def _inference(est) -> LMMInference:
    st = est.mixed_fit_.state
    if st.problem is None and "vcov" not in st.extra:
        st.extra["vcov"] = est.vcov_.to_numpy()
    st.extra["beta"] = est.fixed_effects_.to_numpy()
    return LMMInference(st, est.sigma_)


def _t_table(est, ddf):
    """(var, df) per fixed effect by ``ddf``."""
    name = _ddf_name(ddf)
    inf = _inference(est)
    p = len(est.fixed_effects_)
    with blas_for(inf.problem):
        if name == "Satterthwaite":
            return inf.satterthwaite(np.eye(p))
        from ._kenward_roger import kenward_roger

        return kenward_roger(est, inf, np.eye(p))


def coef_table(est, ddf="Satterthwaite") -> pd.DataFrame:
    """The fixed-effects table: lmerTest's for LMMs, glmer's z-tests for the logistic model.

    Parameters
    ----------
    est : fitted MixedLinearRegressor or MixedLogisticRegressor
    ddf : {"Satterthwaite", "Kenward-Roger"}
        Denominator degrees of freedom of the LMM's t-tests: lmerTest's Satterthwaite, or
        Kenward-Roger (pbkrtest's adjusted covariance ``vcovAdj`` for the standard errors and
        its ``Lb_ddf`` for the df; REML fits only).

    Returns
    -------
    pandas.DataFrame
        ``Estimate, Std. Error, df, t value, Pr(>|t|)`` (LMM) or
        ``Estimate, Std. Error, z value, Pr(>|z|)`` (GLMM), one row per fixed effect.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor, coef_table
    >>> from skmixed.datasets import load_sleepstudy
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> coef_table(m)["df"].round(2).tolist()
    [17.0, 17.0]
    >>> coef_table(m, ddf="Kenward-Roger")["df"].round(2).tolist()
    [17.0, 17.0]
    """
    _check(est)
    beta = est.fixed_effects_
    if not _is_lmm(est):
        se = est.fixed_effects_se_
        z = beta / se
        return pd.DataFrame({"Estimate": beta, "Std. Error": se, "z value": z,
                             "Pr(>|z|)": 2 * stats.norm.sf(np.abs(z))})
    var, df = _t_table(est, ddf)
    se = np.sqrt(var)
    t = beta.to_numpy() / se
    return pd.DataFrame({"Estimate": beta.to_numpy(), "Std. Error": se, "df": df, "t value": t,
                         "Pr(>|t|)": 2 * stats.t.sf(np.abs(t), df)}, index=beta.index)


# ---------------------------------------------------------------------- variance-parameter names
def _varpar_info(est):
    """Per variance parameter (theta order, then the residual): (group, term, kind)."""
    out = []
    for blk in est.mixed_fit_.blocks:
        g = est.factors_[blk.factor].name
        r, c = blk.theta_index()
        for a, b in zip(r, c):
            if a == b:
                out.append((g, f"sd__{blk.names[a]}", "sd"))
            else:
                out.append((g, f"cor__{blk.names[b]}.{blk.names[a]}", "cor"))
    return out


def _sdcor_values(est):
    vals = []
    for blk in est.mixed_fit_.blocks:
        g = est.factors_[blk.factor].name
        C = est.cov_re_[g].to_numpy()
        sd = np.sqrt(np.clip(np.diag(C), 0, None))
        r, c = blk.theta_index()
        for a, b in zip(r, c):
            vals.append(sd[a] if a == b else (C[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else np.nan))
    return np.array(vals)


def tidy(est, effects=("fixed", "ran_pars"), ddf="Satterthwaite", conf_int=False, conf_level=0.95,
         conf_method="wald") -> pd.DataFrame:
    """broom.mixed's ``tidy``: one row per parameter.

    Columns ``effect, group, term, estimate, std.error, statistic, df, p.value``
    (``df`` for LMMs), plus ``conf.low, conf.high`` with ``conf_int=True``.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor, tidy
    >>> from skmixed.datasets import load_sleepstudy
    >>> m = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", load_sleepstudy())
    >>> tidy(m)["term"].tolist()
    ['(Intercept)', 'Days', 'sd__(Intercept)', 'cor__(Intercept).Days', 'sd__Days', 'sd__Observation']
    """
    _check(est)
    rows = []
    lmm = _is_lmm(est)
    if "fixed" in effects:
        ct = coef_table(est, ddf)
        for term, r in ct.iterrows():
            row = {"effect": "fixed", "group": None, "term": term, "estimate": r["Estimate"],
                   "std.error": r["Std. Error"], "statistic": r.iloc[-2 if not lmm else 3],
                   "p.value": r.iloc[-1]}
            if lmm:
                row["df"] = r["df"]
            rows.append(row)
    if "ran_pars" in effects:
        for (g, term, _), v in zip(_varpar_info(est), _sdcor_values(est)):
            rows.append({"effect": "ran_pars", "group": g, "term": term, "estimate": v})
        if lmm:
            rows.append({"effect": "ran_pars", "group": "Residual", "term": "sd__Observation",
                         "estimate": est.sigma_})
    cols = ["effect", "group", "term", "estimate", "std.error", "statistic"] + (["df"] if lmm else []) + ["p.value"]
    out = pd.DataFrame(rows).reindex(columns=cols)
    if conf_int:
        ci = confint(est, level=conf_level, method=conf_method)
        out["conf.low"] = ci.iloc[:, 0].to_numpy()[_tidy_order(est, out)]
        out["conf.high"] = ci.iloc[:, 1].to_numpy()[_tidy_order(est, out)]
    return out


def _tidy_order(est, frame):
    """Rows of ``confint``'s table (variance parameters first) in ``tidy``'s order."""
    p = len(est.fixed_effects_)
    nv = len(frame) - p
    return np.r_[np.arange(nv, nv + p), np.arange(nv)][: len(frame)]


# ---------------------------------------------------------------------- confint
def confint(est, parm=None, level=0.95, method="wald", n_boot=500, random_state=None, n_jobs=None):
    """Confidence intervals for the fixed effects and the variance components (lme4's ``confint.merMod``).

    Parameters
    ----------
    est : fitted MixedLinearRegressor or MixedLogisticRegressor
    parm : list of str, optional
        Rows to return (names as in the result); default all.
    level : float, default=0.95
    method : {"wald", "profile", "boot"}
        ``"wald"``: estimate +- z SE (NaN for the variance components, as lme4);
        ``"profile"``: likelihood-profile intervals on the standard-deviation scale,
        from the ML fit (REML fits are refitted by ML, as lme4's ``profile``); for GLMMs
        the profile of the fit's Laplace or adaptive Gauss-Hermite deviance, as lme4's for
        ``glmer`` fits;
        ``"boot"``: percentile intervals of a parametric bootstrap (``n_boot`` replicates).

    Returns
    -------
    pandas.DataFrame
        Rows ``.sig01, ..., .sigma`` (LMM) then the fixed effects; columns ``"2.5 %", "97.5 %"``.

    Examples
    --------
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_dyestuff
    >>> m = MixedLinearRegressor.from_formula("Yield ~ 1 + (1 | Batch)", load_dyestuff())
    >>> confint(m, method="profile").round(1).to_numpy().tolist()
    [[12.2, 84.1], [38.2, 67.7], [1486.5, 1568.5]]
    """
    _check(est)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    method = str(method).lower()
    lmm = _is_lmm(est)
    n_theta = len(est.theta_)
    names = profile_names(n_theta, has_sigma=lmm) + list(est.fixed_effects_.index)
    cols = [f"{100 * (1 - level) / 2:.3g} %", f"{100 * (1 + level) / 2:.3g} %"]
    n_var = n_theta + int(lmm)
    out = np.full((len(names), 2), np.nan)
    if method == "wald":
        z = stats.norm.ppf((1 + level) / 2)
        b, se = est.fixed_effects_.to_numpy(), est.fixed_effects_se_.to_numpy()
        out[n_var:, 0], out[n_var:, 1] = b - z * se, b + z * se
    elif method == "profile" and not lmm:
        from ._glmm_profile import GLMMProfile

        prof = GLMMProfile(est)
        want = set(range(len(names))) if parm is None else {names.index(q) for q in parm if q in names}
        for i in range(n_var):
            if i in want:
                out[i] = prof.interval(i, level)
        for j in range(len(est.fixed_effects_)):
            if n_var + j in want:
                out[n_var + j] = prof.interval(("beta", j), level, se=float(est.fixed_effects_se_.iloc[j]))
    elif method == "profile":
        inf = _inference(est)
        with blas_for(inf.problem):
            if inf.problem is None:
                raise ValueError("profile intervals need a model with random effects")
            prof = MLProfile(inf)
            want = set(range(len(names))) if parm is None else {names.index(q) for q in parm if q in names}
            for i in range(n_var):
                if i in want:
                    out[i] = prof.interval(i, level)
            for j in range(len(est.fixed_effects_)):
                if n_var + j in want:
                    out[n_var + j] = prof.interval(("beta", j), level, se=float(est.fixed_effects_se_.iloc[j]))
    elif method == "boot":
        from ._bootstrap import bootstrap

        res = bootstrap(est, n_boot, random_state=random_state, n_jobs=n_jobs)
        ci = res.confint(level)
        out = ci.reindex(names).to_numpy()
    else:
        raise ValueError(f"method must be 'wald', 'profile' or 'boot', got {method!r}")
    frame = pd.DataFrame(out, index=names, columns=cols)
    if parm is not None:
        missing = [q for q in parm if q not in names]
        if missing:
            raise ValueError(f"unknown parameter(s) {missing}; available: {names}")
        frame = frame.loc[list(parm)]
    return frame


# ---------------------------------------------------------------------- anova
def _ml_fit_stats(est):
    """(npar, ML deviance, refitted) of one model, lme4's ``anova`` bookkeeping."""
    if _is_lmm(est):
        npar = len(est.fixed_effects_) + len(est.theta_) + 1
        if not est.reml:
            return npar, float(est.deviance_), False
        inf = _inference(est)
        with blas_for(inf.problem):
            _, _, dev = inf.ml_problem()
        # precision weights: lme4's -2 log L includes -sum(log w) (the fit's criterion does too)
        return npar, dev - float(est.mixed_fit_.state.extra.get("ldw", 0.0)), True
    return len(est.fixed_effects_) + len(est.theta_), float(est.deviance_), False


def anova(*models, ddf="Satterthwaite", names=None, refit=True) -> pd.DataFrame:
    """Model comparison by likelihood-ratio tests, or lmerTest's F tests for one model.

    With two or more models: lme4's ``anova(m0, m1, ...)`` — REML fits are refitted by
    maximum likelihood first (a :class:`RefitWarning` says so, lme4's message), models are
    ordered by their number of parameters and each is tested against the previous one.
    With one LMM: F tests of each fixed-effect term with Satterthwaite (or
    Kenward-Roger) denominator degrees of freedom (lmerTest's ``anova(m)``); for models
    whose terms are numeric covariates or factors without interactions these are its
    Type III tests.

    Parameters
    ----------
    *models : fitted MixedLinearRegressor / MixedLogisticRegressor
    ddf : {"Satterthwaite", "Kenward-Roger"}
        For the one-model F tests. ``"Kenward-Roger"``: pbkrtest's scaled F test
        (``KRmodcomp``) with the adjusted covariance, as lmerTest's ``anova(m, ddf = "Kenward-Roger")``
        (``Sum Sq`` from the unscaled statistic, ``F value`` the scaled one).
    names : list of str, optional
        Row labels (default ``model1, model2, ...``, or the formulas).
    refit : bool, default=True
        Refit REML fits by ML before comparing (lme4's ``refit``).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import skmixed
    >>> from skmixed import MixedLinearRegressor
    >>> from skmixed.datasets import load_sleepstudy
    >>> df = load_sleepstudy()
    >>> m0 = MixedLinearRegressor.from_formula("Reaction ~ Days + (1 | Subject)", df)
    >>> m1 = MixedLinearRegressor.from_formula("Reaction ~ Days + (Days | Subject)", df)
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", skmixed.RefitWarning)
    ...     round(float(skmixed.anova(m0, m1)["Chisq"].iloc[1]), 3)
    42.139
    """
    if not models:
        raise TypeError("anova needs at least one fitted model")
    for m in models:
        _check(m)
    if len(models) == 1:
        return _anova_terms(models[0], ddf)
    kinds = {"gaussian" if _is_lmm(m) else m.mixed_fit_.family.name for m in models}
    if len(kinds) > 1:
        raise ValueError(f"anova compares models of one family: all linear, all logistic or all Poisson, got "
                         f"{sorted(kinds)}")
    agq = {int(getattr(m, "nagq_", 1)) > 1 for m in models if not _is_lmm(m)}
    if len(agq) > 1:
        # glmer's nAGQ > 1 deviance is on the unit-deviance scale, the Laplace one is not
        raise ValueError("anova cannot compare a Laplace fit with an adaptive Gauss-Hermite (nagq > 1) fit: "
                         "their deviances are on different scales; refit them with the same nagq")
    nobs = {float(m.n_obs_) for m in models}
    if len(nobs) > 1:
        raise ValueError(f"models were not all fitted to the same number of observations ({sorted(nobs)})")
    if names is None:
        names = [getattr(m, "formula_", None) or f"model{k + 1}" for k, m in enumerate(models)]
        if len(set(names)) < len(names):
            names = [f"model{k + 1}" for k in range(len(models))]
    if len(names) != len(models):
        raise ValueError("names must have one entry per model")
    rows = []
    refitted = False
    for m in models:
        if _is_lmm(m) and m.reml and not refit:
            npar = len(m.fixed_effects_) + len(m.theta_) + 1
            dev, r = float(m.reml_criterion_), False
        else:
            npar, dev, r = _ml_fit_stats(m)
        refitted |= r
        rows.append((npar, dev))
    if refitted:
        warnings.warn("refitting model(s) with ML (instead of REML)", RefitWarning, stacklevel=2)
    N = float(models[0].n_obs_)
    order = sorted(range(len(models)), key=lambda k: rows[k][0])
    npar = np.array([rows[k][0] for k in order], dtype=float)
    dev = np.array([rows[k][1] for k in order])
    out = pd.DataFrame({"npar": npar.astype(int), "AIC": dev + 2 * npar, "BIC": dev + npar * np.log(N),
                        "logLik": -dev / 2, "deviance": dev}, index=[names[k] for k in order])
    chisq = np.r_[np.nan, dev[:-1] - dev[1:]]
    dfs = np.r_[np.nan, np.diff(npar)]
    with np.errstate(invalid="ignore"):
        p = np.where(dfs > 0, stats.chi2.sf(chisq, np.where(dfs > 0, dfs, 1)), np.nan)
    out["Chisq"] = chisq
    out["Df"] = dfs
    out["Pr(>Chisq)"] = p
    return out


def _fixed_terms(est) -> dict:
    """Fixed-effect terms -> positions in ``fixed_effects_`` (intercept excluded)."""
    names = list(est.fixed_effects_.index)
    spec = est.formula_spec() if hasattr(est, "formula_spec") else None
    if spec is not None:
        keep = list(np.asarray(est.mixed_fit_.keep))
        pos = {full: k for k, full in enumerate(keep)}
        terms = {}
        for term, idx in spec.model_spec.term_indices.items():
            label = str(term)
            if label == "1":
                continue
            cols = [pos[i] for i in idx if i in pos]
            if cols:
                terms[label] = cols
        return terms
    return {n: [k] for k, n in enumerate(names) if n != "(Intercept)"}


def _contains(outer: str, inner: str) -> bool:
    """Whether fixed term ``outer`` (e.g. ``age:Sex``) contains ``inner`` (``age``): its variables
    are a strict superset (lmerTest's containment)."""
    a, b = set(outer.split(":")), set(inner.split(":"))
    return b < a


def _anova_terms(est, ddf):
    if not _is_lmm(est):
        raise ValueError("the one-model anova (F tests) is for MixedLinearRegressor; compare logistic models "
                         "with anova(m0, m1)")
    name = _ddf_name(ddf)
    inf = _inference(est)
    p = len(est.fixed_effects_)
    rows = {}
    terms = _fixed_terms(est)
    marginal = [t for t in terms if any(_contains(u, t) for u in terms)]
    if marginal:
        # lmerTest's Type III tests a term contained in an interaction averaged over the other
        # factors' levels (its contrasts orthogonalised against the interaction's); these rows
        # test the coefficients themselves, i.e. at the reference levels: say so, by name
        warnings.warn(f"the F tests of {marginal} (terms contained in interactions) test their coefficients "
                      "under treatment contrasts, i.e. at the reference level of the other factors; lmerTest's "
                      "Type III tests average over them and differ. Compare nested models with anova(m0, m1) "
                      "instead", UserWarning, stacklevel=3)
    with blas_for(inf.problem):
        for term, cols in terms.items():
            L = np.zeros((len(cols), p))
            L[np.arange(len(cols)), cols] = 1.0
            if name == "Satterthwaite":
                F, q, dendf = inf.satterthwaite_multi(L)
                scale = 1.0
            else:
                from ._kenward_roger import kenward_roger_multi

                F, q, dendf, scale = kenward_roger_multi(est, inf, L)
            rows[term] = (F, q, dendf, scale)
    s2 = est.sigma_**2
    # lmerTest: the sums of squares from the unscaled F, the test from the scaled one (KR)
    out = pd.DataFrame({"Sum Sq": [r[0] * r[1] * s2 for r in rows.values()],
                        "Mean Sq": [r[0] * s2 for r in rows.values()],
                        "NumDF": [r[1] for r in rows.values()], "DenDF": [r[2] for r in rows.values()],
                        "F value": [r[0] * r[3] for r in rows.values()]}, index=list(rows))
    out["Pr(>F)"] = stats.f.sf(out["F value"], out["NumDF"], out["DenDF"])
    return out


# ---------------------------------------------------------------------- summaries
def _correlation_text(V: pd.DataFrame) -> str | None:
    p = V.shape[0]
    if p < 2:
        return None
    sd = np.sqrt(np.diag(V.to_numpy()))
    C = V.to_numpy() / np.outer(sd, sd)
    short = [_abbrev(n) for n in V.index]
    lines = ["Correlation of Fixed Effects:"]
    width = max(len(s) for s in short[:-1] + ["-0.000"])
    head_w = max(len(n) for n in V.index[1:])
    lines.append(" " * head_w + " " + " ".join(s.rjust(width) for s in short[:-1]))
    for i in range(1, p):
        vals = " ".join(f"{C[i, j]:.3f}".rjust(width) for j in range(i))
        lines.append(V.index[i].ljust(head_w) + " " + vals)
    return "\n".join(lines)


def _abbrev(name: str, minlength: int = 6) -> str:
    """R's ``abbreviate(name, minlength = 6)``: lower-case vowels, then lower-case letters, are
    dropped from the end (never the first character) until the name is short enough."""
    chars = list(name)
    for drop in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        k = len(chars) - 1
        while len(chars) > minlength and k > 0:
            if chars[k] in drop:
                del chars[k]
            k -= 1
    return "".join(chars)


def _scaled_residuals_text(est) -> str | None:
    fit = est.mixed_fit_
    rows = fit.state.rows
    if rows is None or rows.X.shape[0] == 0:
        return None
    fitted = rows.X @ est.fixed_effects_.to_numpy() + fit.random_part(rows.z_source, rows.codes)
    r = (rows.y - fitted) / est.sigma_
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1])
    cells = [f"{v:.4f}" for v in q]
    w = max(len(c) for c in cells + ["Median"])
    return ("Scaled residuals:\n" + " ".join(h.rjust(w) for h in ("Min", "1Q", "Median", "3Q", "Max")) + "\n"
            + " ".join(c.rjust(w) for c in cells))


def lmm_summary(est, ddf="Satterthwaite") -> InferenceSummary:
    """``summary(lmer(...))`` with lmerTest's t-tests (see :meth:`MixedLinearRegressor.summary`)."""
    from .._summary import format_groups_and_flags, format_varcorr

    name = _ddf_name(ddf)
    ct = coef_table(est, name)
    method = "REML" if est.reml else "maximum likelihood"
    lines = [f"Linear mixed model fit by {method}. t-tests use {name}'s method [MixedLinearRegressor]"]
    if getattr(est, "formula_", None):
        lines.append(f"Formula: {est.formula_}")
    lines.append(f"REML criterion at convergence: {est.reml_criterion_:.1f}" if est.reml else
                 f"     AIC      BIC   logLik deviance\n{est.aic_:8.1f} {est.bic_:8.1f} {est.loglik_:8.1f} "
                 f"{est.deviance_:8.1f}")
    res = _scaled_residuals_text(est)
    if res:
        lines += ["", res]
    lines += ["", format_varcorr(est.cov_re_, est.sigma_)]
    nobs = int(est.n_obs_) if float(est.n_obs_).is_integer() else est.n_obs_
    head, flags = format_groups_and_flags(est, nobs)
    lines += [head, "", "Fixed effects:", format_coef_frame(ct, "Pr(>|t|)")]
    corr = _correlation_text(est.vcov_)
    if corr:
        lines += ["", corr]
    lines += flags
    return InferenceSummary("\n".join(lines), ct)


def glmm_summary(est, base_text: str) -> InferenceSummary:
    """The logistic model's summary with R's p-value formatting and the correlation of fixed effects."""
    ct = coef_table(est)
    head, _, tail = base_text.partition("Fixed effects:\n")
    # the old table ends where the flags (blank line + note) begin
    table_lines = tail.split("\n")
    k = next((i for i, ln in enumerate(table_lines) if ln == ""), len(table_lines))
    flags = "\n".join(table_lines[k:])
    text = head + "Fixed effects:\n" + format_coef_frame(ct, "Pr(>|z|)")
    corr = _correlation_text(est.vcov_)
    if corr:
        text += "\n\n" + corr
    if flags:
        text += "\n" + flags
    return InferenceSummary(text, ct)
