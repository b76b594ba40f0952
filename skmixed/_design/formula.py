"""lme4 formula syntax: ``y ~ x + b + (1 + x | g) + (1 | a/b)``.

The bar terms are split off here; the fixed part is handed to formulaic, which
also materializes the random-term expressions so that their column names match
the fixed design's (``period2``-style names for categorical columns, as R).
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["TermSpec", "ParsedFormula", "parse_formula", "fixed_design", "group_frame"]


@dataclass(frozen=True)
class TermSpec:
    """A random-effects term as written: ``(expr | factor)`` or ``(expr || factor)``."""

    expr: str
    factor: str  # a column name or an interaction "a:b"
    correlated: bool


@dataclass(frozen=True)
class ParsedFormula:
    response: str
    fixed: str
    terms: tuple


def _split_top(s: str, sep: str) -> list:
    """Split on ``sep`` outside parentheses."""
    out, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            out.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _expand_factor(fac: str) -> list:
    """``a/b`` -> ``[a, b:a]`` (lme4's naming); ``a:b`` and ``a`` stay."""
    fac = fac.strip()
    if "/" in fac:
        parts = [p.strip() for p in fac.split("/")]
        out = [parts[0]]
        for k in range(1, len(parts)):
            out.append(":".join(reversed(parts[: k + 1])))
        return out
    return [fac]


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and bar terms.

    Examples
    --------
    >>> p = parse_formula("y ~ x + (1 + x | g) + (1 | a/b)")
    >>> p.response, p.fixed
    ('y', 'x')
    >>> [(t.expr, t.factor, t.correlated) for t in p.terms]
    [('1 + x', 'g', True), ('1', 'a', True), ('1', 'b:a', True)]
    """
    if "~" not in formula:
        raise ValueError(f"formula needs a response and '~': {formula!r}")
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    if not response:
        raise ValueError(f"formula has no response: {formula!r}")
    fixed_parts, terms = [], []
    for part in _split_top(rhs, "+"):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"\((.*)\)", part, flags=re.S)
        if m and "|" in m.group(1):
            inner = m.group(1)
            correlated = "||" not in inner
            expr, fac = inner.split("||" if not correlated else "|", 1)
            expr = expr.strip()
            if not fac.strip():
                raise ValueError(f"random term {part!r} has no grouping factor")
            for f in _expand_factor(fac):
                terms.append(TermSpec(expr, f, correlated))
        else:
            fixed_parts.append(part)
    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    return ParsedFormula(response, fixed, tuple(terms))


def r_style_name(name: str) -> str:
    """formulaic's ``x[T.a]`` / ``C(x)[T.a]`` -> R's ``xa``; ``Intercept`` -> ``(Intercept)``."""
    if name == "Intercept":
        return "(Intercept)"
    m = re.fullmatch(r"(?:C\()?([^\[\)]+?)\)?\[T\.(.*)\]", name)
    if m:
        return f"{m.group(1)}{m.group(2)}"
    return name


_C_CALL = re.compile(r"C\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*[,)]")
_STRICT_LOCK = threading.Lock()


def _unseen_levels(spec, data: pd.DataFrame):
    """Categorical values of ``data`` outside the levels ``spec`` was built with.

    Returns ``({factor: unseen values}, unresolved)``: factors that are a column or
    ``C(column, ...)`` are checked here; ``unresolved`` says some categorical factor
    is another expression (left to formulaic's own check).
    """
    unseen, unresolved = {}, False
    for name, (kind, state) in spec.encoder_state.items():
        if getattr(kind, "value", kind) != "categorical" or "categories" not in state:
            continue
        m = _C_CALL.match(name)
        col = name if name in data.columns else (m.group(1) if m and m.group(1) in data.columns else None)
        if col is None:
            unresolved = True
            continue
        known = set(state["categories"])
        extra = [v for v in pd.unique(data[col].dropna()) if v not in known]
        if extra:
            unseen[name] = sorted(map(str, extra))
    return unseen, unresolved


def _model_matrix(formula_or_spec, data):
    """formulaic's model matrix, refusing missing values (formulaic would drop those rows)."""
    try:
        return formula_or_spec.get_model_matrix(data, na_action="raise")
    except ValueError as err:
        if "null values" not in str(err):
            raise
        raise ValueError(f"the data contain missing values in a column the formula uses ({err}); "
                         "drop or impute those rows first (lme4 drops them silently)") from None


def _model_matrix_strict(spec, data):
    """``spec.get_model_matrix(data)``, formulaic's unseen-level warning raised as a ValueError.

    Only for factors :func:`_unseen_levels` cannot check itself. Warning filters are
    process-wide, so the swap is serialised by a lock.
    """
    from formulaic.errors import DataMismatchWarning

    with _STRICT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", DataMismatchWarning)
        try:
            return _model_matrix(spec, data)
        except DataMismatchWarning as err:
            what = str(err).split(" They are")[0]
            raise ValueError(f"new data have a level the fixed-effect coding has not seen ({what}); declare such "
                             "columns as pandas Categoricals with all their levels before fitting") from None


def fixed_design(spec_or_formula, data: pd.DataFrame):
    """Materialize the fixed part; returns (X DataFrame with R-style names, model spec)."""
    from formulaic import Formula, ModelSpec

    if isinstance(spec_or_formula, ModelSpec):
        # new data under a fitted model's spec: a categorical level the spec has not seen
        # would be coded as the reference level (formulaic only warns); refuse, as lme4 does
        unseen, unresolved = _unseen_levels(spec_or_formula, data)
        if unseen:
            raise ValueError(f"new data have levels the fixed-effect coding has not seen ({unseen}); "
                             "declare such columns as pandas Categoricals with all their levels before fitting")
        if unresolved:
            mm = _model_matrix_strict(spec_or_formula, data)
        else:
            mm = _model_matrix(spec_or_formula, data)
    else:
        mm = _model_matrix(Formula(spec_or_formula), data)
    spec = mm.model_spec
    X = pd.DataFrame(np.asarray(mm, dtype=np.float64), columns=[r_style_name(c) for c in mm.columns],
                     index=data.index)
    return X, spec


def term_columns(expr: str, data: pd.DataFrame) -> tuple:
    """(has_intercept, column names) of a random term's expression, R-style names."""
    from formulaic import Formula

    head = data.iloc[: min(len(data), 50)]
    mm = Formula(expr).get_model_matrix(head)
    names = [r_style_name(c) for c in mm.columns]
    intercept = "(Intercept)" in names
    return intercept, [n for n in names if n != "(Intercept)"]


def group_frame(terms, data: pd.DataFrame) -> pd.DataFrame:
    """Label columns for the grouping factors of ``terms`` (interactions built as ``b:a``)."""
    cols = {}
    for t in terms:
        if t.factor in cols:
            continue
        parts = [p.strip() for p in t.factor.split(":")]
        missing = [p for p in parts if p not in data.columns]
        if missing:
            raise ValueError(f"grouping column(s) {missing} of term ({t.expr} | {t.factor}) not in data")
        if len(parts) == 1:
            cols[t.factor] = data[parts[0]]
        else:
            lab = data[parts[0]].astype(str)
            for p in parts[1:]:
                lab = lab.str.cat(data[p].astype(str), sep=":")
            cols[t.factor] = lab
    return pd.DataFrame(cols, index=data.index)
