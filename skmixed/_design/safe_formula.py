"""What a formula may contain: a whitelist checked with :mod:`ast` before formulaic runs.

formulaic evaluates the Python expressions of a formula (``I(x**2)``, ``C(g)``,
``{x + 1}``) with :func:`eval`, which can reach every builtin and module. A model
formula is data, not a program, so skmixed parses each such expression itself and
allows only:

- names of data columns, numbers, strings, and lists/tuples of those;
- arithmetic ``+ - * / // % **`` (``^`` is read as a power, as in R) and
  comparisons, in ``I(...)`` or ``{...}``;
- calls of the transforms in :data:`ALLOWED_FUNCTIONS` (``np.log`` style spellings
  of the numeric ones too) and ``contr.<name>`` contrasts inside ``C()``.

Anything else — attribute access, subscripts, lambdas, comprehensions, f-strings,
``:=``, starred arguments, dunder names, calls of anything not listed — is a
:class:`FormulaError` (a ``ValueError``) naming the problem, with a caret under it.
As a second wall, formulaic evaluates in :data:`EVAL_CONTEXT`, where every builtin
name is shadowed by an inert placeholder.
"""

from __future__ import annotations

import ast
import builtins
import re

import numpy as np

__all__ = ["FormulaError", "ALLOWED_FUNCTIONS", "EVAL_CONTEXT", "check_expression", "strip_ansi",
           "formula_error"]

#: transforms a formula may call (formulaic's implementations, plus sqrt/abs/log1p/expm1/offset)
ALLOWED_FUNCTIONS = frozenset({
    "I", "C", "log", "log10", "log2", "log1p", "exp", "expm1", "sqrt", "abs",
    "scale", "center", "poly", "bs", "cr", "cs", "cc", "offset",
})
_NUMPY_FUNCTIONS = frozenset({"log", "log10", "log2", "log1p", "exp", "expm1", "sqrt", "abs"})
_CONTRASTS = frozenset({"treatment", "sum", "helmert", "diff", "poly"})
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_CMPOPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_MAX_EXPONENT = 1024
_MAX_LENGTH = 20_000


class FormulaError(ValueError):
    """A formula skmixed cannot read or will not evaluate (a ``ValueError``)."""


class _Blocked:
    """Stands in for a builtin inside formula evaluation: not callable, no attributes of use."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name}: not available in formulas>"


def _identity(x):
    return x


#: names formulaic resolves after the data columns: the extra transforms, and every builtin
#: shadowed (formulaic's ``eval`` would otherwise fall through to Python's builtins)
EVAL_CONTEXT = {
    **{name: _Blocked(name) for name in dir(builtins)},
    "sqrt": np.sqrt, "abs": np.abs, "log1p": np.log1p, "expm1": np.expm1, "offset": _identity,
}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (formulaic colours its syntax errors)."""
    return _ANSI.sub("", str(text))


def formula_error(problem: str, formula: str | None = None, pos: int | None = None) -> FormulaError:
    """A FormulaError whose message shows the formula with a caret under position ``pos``."""
    msg = strip_ansi(problem)
    if formula is not None:
        msg += f"\n    {formula}"
        if pos is not None and 0 <= pos <= len(formula):
            msg += "\n    " + " " * pos + "^"
    return FormulaError(msg)


def _position(formula, expr, node):
    """Best position of ``node`` (inside ``expr``) in the formula text, or None."""
    if formula is None:
        return None
    seg = ast.get_source_segment(expr, node) if hasattr(node, "col_offset") else None
    for text in (seg, expr):
        if text:
            k = formula.find(text)
            if k >= 0:
                return k
    return None


def _describe(node) -> str:
    kinds = {
        ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambda",
        ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
        ast.GeneratorExp: "generator expressions", ast.JoinedStr: "f-strings", ast.FormattedValue: "f-strings",
        ast.NamedExpr: "assignment expressions (:=)", ast.Starred: "starred arguments",
        ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.IfExp: "conditional expressions",
        ast.BoolOp: "and/or", ast.Dict: "dict literals", ast.Set: "set literals",
    }
    return kinds.get(type(node), type(node).__name__)


class _Checker:
    def __init__(self, expr, formula, columns):
        self.expr, self.formula, self.columns = expr, formula, columns

    def fail(self, problem, node):
        raise formula_error(f"formula expression {self.expr!r}: {problem}", self.formula,
                            _position(self.formula, self.expr, node))

    def name_ok(self, name, node):
        if "__" in name:
            self.fail(f"the name {name!r} is not allowed (no dunder names in formulas)", node)
        if self.columns is not None and name not in self.columns:
            if name in ALLOWED_FUNCTIONS:
                self.fail(f"{name!r} is a transform; call it, e.g. {name}(x)", node)
            self.fail(f"{name!r} is not a column of the data (formulas may use data columns, numbers and "
                      f"the transforms {sorted(ALLOWED_FUNCTIONS)})", node)
        # without the data at hand (predict) a builtin's name can only be a column: formulaic
        # resolves data columns first, and the builtin itself is shadowed by EVAL_CONTEXT

    def func_ok(self, func, node):
        if isinstance(func, ast.Name):
            if func.id in ALLOWED_FUNCTIONS:
                return
            self.fail(f"calling {func.id!r} is not allowed; formulas may call only {sorted(ALLOWED_FUNCTIONS)}",
                      node)
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np"
                and func.attr in _NUMPY_FUNCTIONS):
            return
        what = ast.get_source_segment(self.expr, func) or _describe(func)
        self.fail(f"calling {what!r} is not allowed; formulas may call only {sorted(ALLOWED_FUNCTIONS)}", node)

    def visit(self, node, in_call_args=False):
        if isinstance(node, ast.Expression):
            return self.visit(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or node.value is None:
                return
            if isinstance(node.value, (int, float, str)):
                return
            self.fail(f"the constant {node.value!r} is not allowed", node)
        if isinstance(node, ast.Name):
            return self.name_ok(node.id, node)
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _BINOPS):
                self.fail(f"the operator {type(node.op).__name__} is not allowed "
                          "(use + - * / // % ** and comparisons)", node)
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    self.fail("strings cannot take part in arithmetic", side)
            if isinstance(node.op, ast.Pow):
                e = node.right
                if isinstance(e, ast.UnaryOp) and isinstance(e.op, (ast.USub, ast.UAdd)):
                    e = e.operand
                if not (isinstance(e, ast.Constant) and isinstance(e.value, (int, float))
                        and not isinstance(e.value, bool) and abs(e.value) <= _MAX_EXPONENT):
                    self.fail(f"an exponent must be a number of at most {_MAX_EXPONENT} in size", node.right)
            self.visit(node.left)
            self.visit(node.right)
            return
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                self.fail(f"the operator {type(node.op).__name__} is not allowed", node)
            return self.visit(node.operand)
        if isinstance(node, ast.Compare):
            if not all(isinstance(op, _CMPOPS) for op in node.ops):
                self.fail("only the comparisons < <= > >= == != are allowed", node)
            for v in [node.left, *node.comparators]:
                self.visit(v)
            return
        if isinstance(node, ast.Call):
            self.func_ok(node.func, node)
            for a in node.args:
                self.visit(a, in_call_args=True)
            for kw in node.keywords:
                if kw.arg is None:
                    self.fail("**keyword arguments are not allowed", kw.value)
                if "__" in kw.arg:
                    self.fail(f"the keyword {kw.arg!r} is not allowed", kw.value)
                self.visit(kw.value, in_call_args=True)
            return
        if isinstance(node, (ast.List, ast.Tuple)) and in_call_args:
            for e in node.elts:
                self.visit(e, in_call_args=True)
            return
        if (in_call_args and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "contr" and node.attr in _CONTRASTS):
            return
        self.fail(f"{_describe(node)} are not allowed in formulas", node)


def check_expression(expr: str, formula: str | None = None, columns=None) -> None:
    """Raise :class:`FormulaError` unless ``expr`` is a whitelisted formula expression.

    Parameters
    ----------
    expr : str
        A Python expression formulaic would evaluate (``"I(x ** 2)"``, ``"C(g)"``).
    formula : str, optional
        The whole formula, to show in the message.
    columns : collection of str, optional
        The data's columns: bare names must be among them.

    Examples
    --------
    >>> check_expression("I(x ** 2) + log(z)", columns={"x", "z"})
    >>> try:
    ...     check_expression("__import__('os')")
    ... except ValueError as err:
    ...     print(str(err).split(";")[0])
    formula expression "__import__('os')": calling '__import__' is not allowed
    """
    if len(expr) > _MAX_LENGTH:
        raise formula_error(f"formula expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as err:
        pos = None
        if formula is not None and err.offset is not None:
            k = formula.find(expr.strip())
            pos = k + err.offset - 1 if k >= 0 else None
        raise formula_error(f"formula expression {expr!r} is not valid: {err.msg}", formula, pos) from None
    _Checker(expr.strip(), formula, None if columns is None else set(map(str, columns))).visit(tree)
