"""Coefficient tables as lmerTest / lme4 print them, and broom.mixed's ``tidy`` frame."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .._summary import Summary, significance_stars

__all__ = ["format_pvalue", "significance_stars", "format_coef_frame", "InferenceSummary", "SIGNIF_LEGEND"]

SIGNIF_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"
_EPS = np.finfo(float).eps


def format_pvalue(p) -> str:
    """R's ``format.pval``: 3 significant digits, ``<2e-16`` below machine precision."""
    if p is None or not np.isfinite(p):
        return "NA"
    if p < _EPS:
        return "<2e-16"
    return f"{p:.3g}"


def format_coef_frame(df: pd.DataFrame, pcol: str | None) -> str:
    """A coefficient frame printed as ``printCoefmat`` does (5 significant digits, p-values, stars)."""
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        if c == pcol:
            out[c] = [format_pvalue(v) for v in df[c]]
        elif c == "df":
            out[c] = [f"{v:.5g}" if np.isfinite(v) else "NA" for v in df[c]]
        else:
            out[c] = [f"{v:.5g}" if np.isfinite(v) else "NA" for v in df[c]]
    if pcol is not None:
        out[""] = [significance_stars(v) for v in df[pcol]]
    text = out.to_string()
    if pcol is not None:
        text += "\n---\n" + SIGNIF_LEGEND
    return text


class InferenceSummary(Summary):
    """A model summary: prints as R does, ``to_frame()`` gives the coefficient table, HTML in notebooks.

    Attributes
    ----------
    coefficients : pandas.DataFrame
        The fixed-effects table (Estimate, Std. Error, [df,] t/z value, p-value).
    """

    def __new__(cls, text: str, coefficients: pd.DataFrame, tidy: pd.DataFrame | None = None):
        obj = super().__new__(cls, text)
        obj.coefficients = coefficients
        obj.tidy = tidy
        return obj

    def to_frame(self) -> pd.DataFrame:
        """The fixed-effects coefficient table as a DataFrame (a copy)."""
        return self.coefficients.copy()

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"
