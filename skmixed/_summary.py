"""Text summaries that a user of ``summary(lmer(...))`` / ``summary(glmer(...))`` recognises."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["Summary", "varcorr_table", "format_varcorr", "format_coef_table", "significance_stars"]


class Summary(str):
    """A summary: a string that displays as itself in the REPL and notebooks."""

    def __repr__(self):
        return str(self)


def _sub_blocks(pattern: np.ndarray) -> list:
    """Index lists of the correlated sub-blocks of a (lower-triangular) Lambda pattern."""
    q = pattern.shape[0]
    blocks, start = [], 0
    for a in range(1, q + 1):
        if a == q or not pattern[a:, :a].any():
            blocks.append(list(range(start, a)))
            start = a
    return blocks


def varcorr_table(cov_re: dict, sigma: float | None, patterns: dict | None = None) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(fit))``: grp, var1, var2, vcov, sdcor.

    Uncorrelated sub-blocks of one factor (``(x || g)``) are listed as lme4
    does, as groups ``g``, ``g.1``, ``g.2``, ...
    """
    rows = []
    for grp, cov in cov_re.items():
        names = list(cov.index)
        C = cov.to_numpy()
        sd = np.sqrt(np.clip(np.diag(C), 0, None))
        pat = patterns.get(grp) if patterns else None
        subs = _sub_blocks(pat) if pat is not None else [list(range(len(names)))]
        for k, idx in enumerate(subs):
            label = grp if k == 0 else f"{grp}.{k}"
            for a in idx:
                rows.append((label, names[a], "", C[a, a], sd[a]))
            for ib, b in enumerate(idx):
                for a in idx[ib + 1:]:
                    corr = C[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else np.nan
                    rows.append((label, names[b], names[a], C[a, b], corr))
    if sigma is not None:
        rows.append(("Residual", "", "", sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


def format_varcorr(cov_re: dict, sigma: float | None) -> str:
    lines = ["Random effects:"]
    table = []
    for grp, cov in cov_re.items():
        names = list(cov.index)
        C = cov.to_numpy()
        sd = np.sqrt(np.clip(np.diag(C), 0, None))
        for a, na in enumerate(names):
            corr = []
            for b in range(a):
                if C[a, b] == 0 and sd[a] > 0 and sd[b] > 0:
                    corr.append("    ")  # uncorrelated (||) pair: not a parameter
                else:
                    corr.append(f"{C[a, b] / (sd[a] * sd[b]):.2f}" if sd[a] > 0 and sd[b] > 0 else "  NaN")
            table.append((grp if a == 0 else "", na, f"{C[a, a]:.4g}", f"{sd[a]:.4g}", " ".join(corr)))
    if sigma is not None:
        table.append(("Residual", "", f"{sigma**2:.4g}", f"{sigma:.4g}", ""))
    head = ("Groups", "Name", "Variance", "Std.Dev.", "Corr")
    has_corr = any(r[4] for r in table)
    cols = head if has_corr else head[:4]
    width = [max(len(str(r[k])) for r in [cols] + table) for k in range(len(cols))]
    fmt = lambda r: " " + " ".join(str(r[k]).ljust(width[k]) if k < 2 else str(r[k]).rjust(width[k])  # noqa: E731
                                   for k in range(len(cols)))
    lines.append(fmt(cols))
    lines.extend(fmt(r) for r in table)
    return "\n".join(line.rstrip() for line in lines)


def format_coef_table(est: pd.Series, se: pd.Series, stat: str = "t value", p_values=None) -> str:
    df = pd.DataFrame({"Estimate": est, "Std. Error": se, stat: est / se})
    if p_values is not None:
        df["Pr(>|z|)"] = p_values
    with pd.option_context("display.float_format", "{:.5g}".format, "display.width", 120):
        return "Fixed effects:\n" + df.to_string()


def format_groups_and_flags(est, nobs) -> tuple:
    """The "Number of obs / groups" line and the singular / convergence notes of a summary."""
    groups = ", ".join(f"{k}, {v}" for k, v in est.n_groups_.items())
    head = f"Number of obs: {nobs}" + (f", groups:  {groups}" if groups else "")
    flags = []
    if est.is_singular_:
        flags += ["", "boundary (singular) fit: see is_singular_"]
    if not est.converged_:
        flags += ["", "optimizer did not converge: see converged_"]
    return head, flags


def significance_stars(p) -> str:
    """R's significance codes (``***`` below 0.001, ``**``, ``*``, ``.`` below 0.1)."""
    if p is None or not np.isfinite(p):
        return ""
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p < cut:
            return s
    return ""
