"""lme4 formula syntax: ``y ~ x + b + (1 + x | g) + (1 | a/b)``.

The bar terms are split off here; the fixed part is handed to formulaic, which
also materializes the random-term expressions so that their column names match
the fixed design's (``period2``-style names for categorical columns, as R).

Formulas never run arbitrary code: every expression is parsed with Python's
:mod:`ast` and checked against a small whitelist (:mod:`._safe_formula`) before
formulaic sees it, and formulaic evaluates in a namespace where Python's builtins
are shadowed. :class:`FormulaSpec` is the one frozen object a formula-fitted
estimator keeps: it turns new data into the fixed design and grouping columns.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .safe_formula import ALLOWED_FUNCTIONS, EVAL_CONTEXT, FormulaError, check_expression, formula_error, strip_ansi

__all__ = ["TermSpec", "ParsedFormula", "parse_formula", "fixed_design", "group_frame", "FormulaSpec",
           "RandomSpec"]


@dataclass(frozen=True)
class TermSpec:
    """A random-effects term as written: ``(expr | factor)`` or ``(expr || factor)``."""

    expr: str
    factor: str  # a column name or an interaction "a:b"
    correlated: bool


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula taken apart (nothing evaluated yet).

    ``response`` is a column name, ``response_expr`` an expression of columns
    (``log(y)``), ``cbind`` the (successes, failures) expressions of a binomial
    response, ``offsets`` the expressions of ``offset(...)`` terms.
    """

    response: str | None
    fixed: str
    terms: tuple
    response_expr: str | None = None
    cbind: tuple | None = None
    offsets: tuple = ()


def _split_top(s: str, sep: str, with_pos: bool = False) -> list:
    """Split on ``sep`` outside parentheses (``with_pos``: (part, start) pairs)."""
    out, depth, cur, start = [], 0, [], 0
    i = 0
    while i < len(s):
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if depth == 0 and s.startswith(sep, i):
            out.append(("".join(cur), start))
            cur = []
            i += len(sep)
            start = i
            continue
        cur.append(ch)
        i += 1
    out.append(("".join(cur), start))
    return out if with_pos else [p for p, _ in out]


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


def _check_balanced(formula: str):
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for k, ch in enumerate(formula):
        if ch in "([{":
            stack.append((ch, k))
        elif ch in ")]}":
            if not stack or stack[-1][0] != pairs[ch]:
                raise formula_error(f"unbalanced {ch!r} in the formula", formula, k)
            stack.pop()
    if stack:
        raise formula_error(f"{stack[-1][0]!r} is never closed", formula, stack[-1][1])


def _strip_parens(text: str) -> tuple:
    """``((1 | g))`` -> ``(1 | g)``: redundant outer parentheses removed; returns (text, chars removed left)."""
    lead = 0
    t = text
    while t.startswith("((") and t.endswith("))") and _matching(t, 1) == len(t) - 2:
        k = len(t) - len(t[1:].lstrip())
        t = t[1:-1].strip()
        lead += k
    return t, lead


def _matching(t: str, k: int) -> int:
    """Index of the bracket closing the one at ``k``."""
    depth = 0
    for i in range(k, len(t)):
        if t[i] in "([{":
            depth += 1
        elif t[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)", flags=re.S)


def _check_factor_name(fac: str, formula: str, pos: int):
    for part in re.split(r"[:/]", fac):
        part = part.strip()
        if not part:
            raise formula_error(f"the grouping factor {fac!r} has an empty part", formula, pos)
        if "__" in part or not (_NAME.fullmatch(part) or (part.startswith("`") and part.endswith("`"))):
            raise formula_error(f"the grouping factor {part!r} must be a column name (or a:b, a/b of "
                                "column names)", formula, formula.find(part, pos))


def _parse_response(lhs: str, formula: str) -> dict:
    lhs = lhs.strip()
    if not lhs:
        return {"response": None}
    if lhs.startswith("`") and lhs.endswith("`") and len(lhs) > 2:
        return {"response": lhs[1:-1]}
    if _NAME.fullmatch(lhs):
        if "__" in lhs:
            raise formula_error(f"the response name {lhs!r} is not allowed (no dunder names)", formula, 0)
        return {"response": lhs}
    m = _CALL.fullmatch(lhs)
    if m and m.group(1) == "cbind":
        args = _split_top(m.group(2), ",")
        if len(args) != 2 or not all(a.strip() for a in args):
            raise formula_error("cbind() takes two arguments: cbind(successes, failures)", formula, 0)
        for a in args:
            check_expression(a.strip(), formula)
        return {"response": None, "cbind": tuple(a.strip() for a in args)}
    check_expression(lhs, formula)
    return {"response": None, "response_expr": lhs}


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4 formula into response, fixed part and bar terms.

    Nothing is evaluated; the response's, offsets' and bar factors' syntax is checked
    here, the expressions of the fixed part and bar terms by :func:`check_formula`.

    Examples
    --------
    >>> p = parse_formula("y ~ x + (1 + x | g) + (1 | a/b)")
    >>> p.response, p.fixed
    ('y', 'x')
    >>> [(t.expr, t.factor, t.correlated) for t in p.terms]
    [('1 + x', 'g', True), ('1', 'a', True), ('1', 'b:a', True)]
    >>> parse_formula("cbind(k, n - k) ~ x + offset(log(t)) + (1 | g)").cbind
    ('k', 'n - k')
    """
    if not isinstance(formula, str):
        raise TypeError(f"a formula is a string, got {type(formula).__name__}")
    if len(formula) > 20_000:
        raise formula_error("the formula is longer than 20000 characters")
    _check_balanced(formula)
    tildes = [k for k, ch in enumerate(formula) if ch == "~"]
    if not tildes:
        raise formula_error("a formula needs '~' between the response and the terms (\"y ~ x + (1 | g)\")",
                            formula, len(formula))
    if len(tildes) > 1:
        raise formula_error("a formula has one '~'", formula, tildes[1])
    lhs, rhs = formula.split("~", 1)
    resp = _parse_response(lhs, formula)
    base = len(lhs) + 1
    if not rhs.strip():
        raise formula_error("the formula has no terms after '~' (write 1 for an intercept only)", formula,
                            len(formula))
    # R's power: x^2 inside I() and (a + b)^2 between terms (formulaic reads ** for both)
    rhs = rhs.replace("^", "**")
    fixed_parts, terms, offsets = [], [], []
    for raw, start in _split_top(rhs, "+", with_pos=True):
        pos = base + start + (len(raw) - len(raw.lstrip()))
        part, lead = _strip_parens(raw.strip())
        pos += lead
        if not part:
            raise formula_error("empty term (two '+' in a row, or a '+' at an end)", formula, pos)
        bar_at = [k for k, (piece, k0) in enumerate([(p, s) for p, s in _split_top(part, "|", with_pos=True)])]
        if len(bar_at) > 1:
            raise formula_error("a random-effects term must be in parentheses, e.g. (1 + x | g); "
                                f"{part.strip()!r} has a bare '|'", formula, pos + part.find("|"))
        m = re.fullmatch(r"\((.*)\)", part, flags=re.S)
        inner_bar = m is not None and _matching(part, 0) == len(part) - 1 and len(_split_top(m.group(1), "|")) > 1
        if inner_bar:
            inner = m.group(1)
            correlated = len(_split_top(inner, "||")) == 1
            pieces = _split_top(inner, "|" if correlated else "||")
            if len(pieces) != 2:
                raise formula_error(f"the random-effects term {part!r} has more than one bar", formula, pos)
            expr, fac = pieces[0].strip(), pieces[1].strip()
            if not expr:
                raise formula_error(f"the random-effects term {part!r} has nothing before the bar "
                                    "(write (1 | g) for a random intercept)", formula, pos + 1)
            if not fac:
                raise formula_error(f"the random-effects term {part!r} has no grouping factor", formula,
                                    pos + len(part) - 1)
            _check_factor_name(fac, formula, pos)
            for f in _expand_factor(fac):
                terms.append(TermSpec(expr, f.replace(" ", ""), correlated))
            continue
        if "|" in part:
            raise formula_error("a random-effects term is added on its own, e.g. y ~ x + (1 | g); "
                                f"{part!r} combines one with other terms", formula, pos + part.find("|"))
        mo = _CALL.fullmatch(part)
        if mo and mo.group(1) == "offset":
            expr = mo.group(2).strip()
            if not expr:
                raise formula_error("offset() needs an expression, e.g. offset(log(exposure))", formula, pos)
            check_expression(expr, formula)
            offsets.append(expr)
            continue
        fixed_parts.append(part)
    fixed = " + ".join(fixed_parts) if fixed_parts else "1"
    if not fixed_parts and any(p.strip() in ("0", "-1") for p in _split_top(rhs, "+")):
        fixed = "0"
    return ParsedFormula(resp["response"], fixed, tuple(terms), resp.get("response_expr"), resp.get("cbind"),
                         tuple(offsets))


def check_formula(expr: str, formula: str, columns=None) -> None:
    """Check a formulaic right-hand side (``"x + C(g) + I(x ** 2)"``) against the whitelist.

    formulaic parses it (no evaluation); every factor it would ``eval`` goes through
    :func:`~skmixed._design.safe_formula.check_expression`, every column lookup is checked
    against ``columns`` (when given).
    """
    from formulaic import Formula

    try:
        parsed = Formula(expr)
    except Exception as err:  # formulaic's syntax errors, coloured
        raise formula_error(f"the formula cannot be read at {expr!r}: {strip_ansi(err)}", formula,
                            formula.find(expr) if formula is not None else None) from None
    cols = None if columns is None else set(map(str, columns))
    for term in parsed:
        for factor in term.factors:
            how = factor.eval_method.value
            if how == "python":
                check_expression(factor.expr, formula, cols)
            elif how == "lookup":
                name = factor.expr
                if "__" in name:
                    raise formula_error(f"the name {name!r} is not allowed (no dunder names in formulas)",
                                        formula, formula.find(name))
                if cols is not None and name not in cols:
                    hint = f" ({name} is a transform: call it, e.g. {name}(x))" if name in ALLOWED_FUNCTIONS else ""
                    raise formula_error(f"{name!r} is not a column of the data{hint}", formula, formula.find(name))


def r_style_name(name: str) -> str:
    """formulaic's ``x[T.a]`` / ``C(x)[T.a]`` -> R's ``xa``; ``Intercept`` -> ``(Intercept)``."""
    if name == "Intercept":
        return "(Intercept)"
    # an interaction ``a[T.x]:b[T.y]`` is converted part by part (a ':' inside a level's brackets is kept)
    return ":".join(_r_style_part(part) for part in _split_interaction(name))


def _split_interaction(name: str) -> list:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(name):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == ":" and depth == 0:
            parts.append(name[start:i])
            start = i + 1
    parts.append(name[start:])
    return parts


def _r_style_part(name: str) -> str:
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
    """formulaic's model matrix in the restricted namespace, refusing missing values (formulaic
    would drop those rows); formulaic's errors become ValueErrors without colour codes."""
    from formulaic.errors import FormulaicError

    try:
        return formula_or_spec.get_model_matrix(data, context=EVAL_CONTEXT, na_action="raise")
    except FormulaicError as err:
        msg = strip_ansi(err)
        raise FormulaError(f"the formula cannot be evaluated on these data: {msg}") from None
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


def fixed_design(spec_or_formula, data: pd.DataFrame, checked=False):
    """Materialize the fixed part; returns (X DataFrame with R-style names, model spec).

    ``checked``: the caller has checked the expressions against the whitelist
    (:func:`check_formula`); otherwise a formula string is checked here.
    """
    from formulaic import Formula, ModelSpec

    if not checked and isinstance(spec_or_formula, str):
        check_formula(spec_or_formula, spec_or_formula)

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
    mm = _model_matrix(Formula(expr), head)
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


# ------------------------------------------------------------------------------------------------
# the formula state a fitted estimator keeps
def as_pandas(data, what="data") -> pd.DataFrame:
    """A pandas DataFrame from any dataframe narwhals reads (pandas, polars, pyarrow, ...)."""
    if isinstance(data, pd.DataFrame):
        return data
    import narwhals as nw

    try:
        frame = nw.from_native(data, eager_only=True)
    except TypeError:
        raise TypeError(f"a formula model needs {what} as a DataFrame (pandas, polars, pyarrow, ...), "
                        f"got {type(data).__name__}") from None
    if not isinstance(frame, nw.DataFrame):
        raise TypeError(f"a formula model needs {what} as a DataFrame, got a {type(data).__name__}")
    return frame.to_pandas()


@dataclass(frozen=True)
class RandomSpec:
    """One random-effects term read against the data: factor, intercept, slope columns."""

    factor: str
    intercept: bool
    columns: tuple
    correlated: bool


def _eval_column(expr: str, data: pd.DataFrame, what: str) -> np.ndarray:
    """A checked expression of the columns (``log(t)``, ``n - k``) as a float vector."""
    from formulaic import Formula

    if expr in data.columns:
        v = data[expr]
    else:
        mm = _model_matrix(Formula("0 + {" + expr + "}"), data)
        if mm.shape[1] != 1:
            raise FormulaError(f"{what} {expr!r} must give one numeric column, got {mm.shape[1]}")
        v = mm.iloc[:, 0]
    try:
        out = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormulaError(f"{what} {expr!r} is not numeric") from None
    return out


@dataclass(frozen=True, eq=False)
class FormulaSpec:
    """A formula read against its training data: everything needed to read new data the same way.

    Built by :meth:`build`; frozen (new data never change it). ``rows(data)`` gives
    the fixed design (without its intercept column) and the grouping columns,
    ``target(data)`` the response (and binomial trials for ``cbind``), ``offset(data)``
    the summed ``offset()`` terms. Every expression is re-checked against the
    whitelist before each evaluation, so a spec read from a file cannot run code either.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0], "x": [0.0, 1.0, 2.0, 3.0], "g": list("abab")})
    >>> spec, X, groups = FormulaSpec.build("y ~ I(x^2) + (1 | g)", df)
    >>> list(X.columns), spec.factor_names, spec.intercept
    (['I(x ** 2)'], ('g',), True)
    >>> spec.target(df)[0].tolist()
    [1.0, 2.0, 4.0, 3.0]
    """

    formula: str
    parsed: ParsedFormula
    model_spec: object
    random: tuple
    factor_names: tuple
    intercept: bool
    columns: tuple
    # random-only columns (named in a bar term, not in the fixed part): (term expression, its
    # formulaic ModelSpec, the column names taken from it) per term that has some
    extra: tuple = ()

    # ---------------------------------------------------------------- construction
    @classmethod
    def build(cls, formula: str, data):
        """Read ``formula`` against ``data``; returns ``(spec, X, groups)`` for the fit.

        ``X`` is the fixed design without the intercept column (R-style names),
        ``groups`` the grouping columns (None without bar terms).
        """
        data = as_pandas(data)
        parsed = parse_formula(formula)
        cols = set(map(str, data.columns))
        check_formula(parsed.fixed, formula, cols)
        for t in parsed.terms:
            check_formula(t.expr, formula, cols)
        for e in parsed.offsets + (parsed.cbind or ()) + ((parsed.response_expr,) if parsed.response_expr else ()):
            check_expression(e, formula, cols)
        Xf, mspec = fixed_design(parsed.fixed, data, checked=True)
        icpt = "(Intercept)" in Xf.columns
        Xf = Xf.drop(columns=["(Intercept)"]) if icpt else Xf
        gframe = group_frame(parsed.terms, data) if parsed.terms else None
        random, extra, extra_names = [], [], []
        for t in parsed.terms:
            has_i, tcols = term_columns(t.expr, data)
            if not has_i and not tcols:
                raise formula_error(f"the random-effects term ({t.expr} | {t.factor}) has no columns", formula,
                                    formula.find(t.expr))
            random.append(RandomSpec(t.factor, has_i, tuple(tcols), t.correlated))
            # lme4 reads a bar term's columns from its own model matrix: columns that are not
            # fixed effects ((0 + x | g) with no fixed x) are materialised from the term
            missing = [c for c in tcols if c not in Xf.columns and c not in extra_names]
            if missing:
                from formulaic import Formula

                mm = _model_matrix(Formula(t.expr), data)
                extra.append((t.expr, mm.model_spec, tuple(missing)))
                extra_names.extend(missing)
        spec = cls(formula, parsed, mspec, tuple(random),
                   tuple(gframe.columns) if gframe is not None else (), icpt, tuple(Xf.columns), tuple(extra))
        return spec, Xf, gframe

    def _recheck(self):
        # a spec may come from a pickle / skops file: never evaluate an unchecked expression
        p = self.parsed
        check_formula(p.fixed, self.formula)
        for t in p.terms:
            check_formula(t.expr, self.formula)
        for e in p.offsets + (p.cbind or ()) + ((p.response_expr,) if p.response_expr else ()):
            check_expression(e, self.formula)

    # ---------------------------------------------------------------- new data
    def rows(self, data, need_groups=False):
        """``data`` under the formula: (fixed design without intercept, grouping columns or None).

        Grouping columns absent from ``data`` give ``None`` (the population prediction),
        unless ``need_groups`` (a fit): then their absence is an error naming them.
        """
        data = as_pandas(data)
        self._recheck()
        Xf, _ = fixed_design(self.model_spec, data, checked=True)
        if "(Intercept)" in Xf.columns:
            Xf = Xf.drop(columns=["(Intercept)"])
        groups = None
        if self.parsed.terms:
            try:
                groups = group_frame(self.parsed.terms, data)
            except ValueError:
                if need_groups:
                    raise
        return Xf, groups

    @property
    def random_only_names(self) -> tuple:
        """Names of the random-only columns (bar-term columns that are not fixed effects)."""
        return tuple(c for _, _, names in self.extra for c in names)

    def random_only(self, data):
        """The random-only columns of ``data`` (a DataFrame, R-style names), None without any."""
        if not self.extra:
            return None
        data = as_pandas(data)
        self._recheck()
        parts = []
        for expr, mspec, names in self.extra:
            # the stored ModelSpec is what gets evaluated: its own formula is checked too (a spec
            # read from a file may carry an edited one)
            check_formula(expr, self.formula)
            check_formula(str(mspec.formula), self.formula)
            Z, _ = fixed_design(mspec, data, checked=True)
            parts.append(Z[list(names)])
        return pd.concat(parts, axis=1)

    def group_columns(self) -> list:
        """The data columns the grouping factors are made of (``a/b`` -> ``a``, ``b``)."""
        out = []
        for t in self.parsed.terms:
            for c in t.factor.split(":"):
                if c.strip() not in out:
                    out.append(c.strip())
        return out

    @property
    def response(self):
        """The response column's name (None for an expression or ``cbind``)."""
        return self.parsed.response

    @property
    def has_response(self) -> bool:
        p = self.parsed
        return p.response is not None or p.response_expr is not None or p.cbind is not None

    def target(self, data):
        """``(y, trials)``: the response of ``data``; for ``cbind(k, f)`` the proportion
        ``k / (k + f)`` and the trials ``k + f``, else ``trials`` is None."""
        data = as_pandas(data)
        p = self.parsed
        if p.response is not None:
            if p.response not in data.columns:
                raise ValueError(f"response {p.response!r} not in data")
            return data[p.response], None
        if p.response_expr is not None:
            self._recheck()
            return pd.Series(_eval_column(p.response_expr, data, "the response"), index=data.index), None
        if p.cbind is not None:
            self._recheck()
            k = _eval_column(p.cbind[0], data, "cbind's successes")
            f = _eval_column(p.cbind[1], data, "cbind's failures")
            if (k < 0).any() or (f < 0).any() or not (np.isfinite(k).all() and np.isfinite(f).all()):
                raise ValueError("cbind(successes, failures) needs finite, non-negative counts")
            n = k + f
            if (n <= 0).any():
                raise ValueError("cbind(successes, failures): a row has no trials (successes + failures = 0)")
            return pd.Series(k / n, index=data.index), n
        raise ValueError(f"the formula {self.formula!r} has no response: pass y")

    def offset(self, data):
        """The sum of the formula's ``offset()`` terms on ``data`` (None without any)."""
        p = self.parsed
        if not p.offsets:
            return None
        data = as_pandas(data)
        self._recheck()
        total = np.zeros(len(data))
        for e in p.offsets:
            total += _eval_column(e, data, "offset")
        if not np.isfinite(total).all():
            raise ValueError("the formula's offset has non-finite values")
        return total

    def __repr__(self):
        return f"FormulaSpec({self.formula!r})"
