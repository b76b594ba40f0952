"""mgcv formula terms: ``s()``, ``te()``, ``ti()`` read with :mod:`ast` (never evaluated).

``y ~ s(x0, k=10, bs='cr') + s(x1, bs='ps') + te(x2, x3) + s(fac, bs='re') + z + (1 | g)`` is split
into its smooth terms (:class:`SmoothSpec`) and an lme4 formula for the rest, which the shared
formula reader handles: ``s(fac, bs='re')`` becomes ``(1 | fac)``, ``s(fac, x, bs='re')`` becomes
``(0 + x | fac)``, and every smooth covariate (and numeric ``by`` variable) is added as a plain
term so that it appears, under its own name, among the columns the estimator receives (the
estimator's ``smooth`` parameter then takes those columns out of the parametric part).

Accepted arguments: covariate names (positional), ``k`` (int, or ``c(5, 5)`` / a tuple for
tensor margins), ``bs`` (``'cr'``, ``'ps'``, ``'re'``; ``c('cr', 'ps')`` for margins), ``by``
(a column name).  Anything else is refused with a ValueError naming the term.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

__all__ = ["SmoothSpec", "parse_smooth", "split_mgcv_formula", "is_smooth_term"]

_SMOOTH_CALL = re.compile(r"^\s*(s|te|ti)\s*\(")


@dataclass(frozen=True)
class SmoothSpec:
    """One smooth term as written: kind (``s``, ``te``, ``ti``), covariates and options.

    ``k`` and ``bs`` are None when not given (the estimator's defaults apply), an int/str for
    ``s()``, or one per margin for ``te()``/``ti()`` (a single value is repeated).
    """

    kind: str
    columns: tuple
    k: object = None
    bs: object = None
    by: str | None = None

    @property
    def label(self) -> str:
        """mgcv's term label, e.g. ``s(x0)``, ``te(x2,x3)``."""
        return f"{self.kind}({','.join(self.columns)})"


def is_smooth_term(text: str) -> bool:
    """Whether ``text`` is an ``s()``/``te()``/``ti()`` call."""
    return bool(_SMOOTH_CALL.match(text))


def _name(node, term):
    """A column name: an identifier, a dotted R name (``x.1``) or a string constant."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value, term)}.{node.attr}"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ValueError(f"smooth term {term!r}: expected a column name, got {ast.unparse(node)!r}")


def _values(node, term, kind):
    """A constant, or R's ``c(a, b)`` / a tuple or list of constants."""
    if isinstance(node, ast.Constant) and isinstance(node.value, kind) and not isinstance(node.value, bool):
        return node.value
    elts = None
    if isinstance(node, (ast.Tuple, ast.List)):
        elts = node.elts
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "c" and not node.keywords:
        elts = node.args
    if elts:
        out = tuple(_values(e, term, kind) for e in elts)
        if all(not isinstance(v, tuple) for v in out):
            return out
    want = "an integer" if kind is int else "a string"
    raise ValueError(f"smooth term {term!r}: expected {want} (or c(...) of them), got {ast.unparse(node)!r}")


def parse_smooth(term: str) -> SmoothSpec:
    """Read one ``s()``/``te()``/``ti()`` term.

    Examples
    --------
    >>> parse_smooth("s(x0, k=10, bs='cr')")
    SmoothSpec(kind='s', columns=('x0',), k=10, bs='cr', by=None)
    >>> parse_smooth("te(x2, x3, k=c(5, 6))").label
    'te(x2,x3)'
    """
    text = term.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot read smooth term {term!r}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in ("s", "te", "ti")):
        raise ValueError(f"{term!r} is not an s(), te() or ti() term")
    kind = call.func.id
    cols = tuple(_name(a, term) for a in call.args)
    if not cols:
        raise ValueError(f"smooth term {term!r} names no covariate")
    if len(set(cols)) != len(cols):
        raise ValueError(f"smooth term {term!r} names a covariate twice")
    opts = {}
    for kw in call.keywords:
        if kw.arg is None or kw.arg in opts:
            raise ValueError(f"smooth term {term!r}: bad or repeated argument")
        if kw.arg == "k":
            opts["k"] = _values(kw.value, term, int)
        elif kw.arg == "bs":
            opts["bs"] = _values(kw.value, term, str)
        elif kw.arg == "by":
            opts["by"] = _name(kw.value, term)
        else:
            raise ValueError(f"smooth term {term!r}: argument {kw.arg!r} is not supported (k, bs, by are)")
    spec = SmoothSpec(kind, cols, opts.get("k"), opts.get("bs"), opts.get("by"))
    nm = len(cols) if kind != "s" else 1
    for key in ("k", "bs"):
        v = getattr(spec, key)
        if isinstance(v, tuple) and (kind == "s" or len(v) not in (1, nm)):
            raise ValueError(f"smooth term {term!r}: {key} has {len(v)} values for {nm} margin(s)")
    if kind == "s" and len(cols) > 1 and spec.bs != "re":
        raise ValueError(f"smooth term {term!r}: s() of several covariates (thin-plate) is not supported; "
                         "use te() for a tensor product")
    if spec.bs == "re" and spec.by is not None:
        raise ValueError(f"smooth term {term!r}: by= is not supported for bs='re'")
    return spec


def _split_top(s: str) -> list:
    """Split on '+' outside brackets."""
    out, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "+" and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def split_mgcv_formula(formula: str):
    """Split an mgcv formula into its smooth terms and an lme4 formula for everything else.

    Returns
    -------
    smooths : list of SmoothSpec
        The ``s()``/``te()``/``ti()`` terms other than ``bs='re'``.
    lme4_formula : str
        Response, parametric terms, bar terms (``bs='re'`` terms as bars) and the smooth
        covariates as plain terms.

    Examples
    --------
    >>> sm, f = split_mgcv_formula("y ~ s(x0, k=5) + te(x2, x3) + z + s(g, bs='re')")
    >>> [s.label for s in sm], f
    (['s(x0)', 'te(x2,x3)'], 'y ~ z + x0 + x2 + x3 + (1 | g)')
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula needs a response and '~': {formula!r}")
    lhs, rhs = formula.split("~", 1)
    parts = [p.strip() for p in _split_top(rhs)]
    smooths, plain, bars, covs = [], [], [], []
    for part in parts:
        if not part:
            continue
        if not is_smooth_term(part):
            (bars if "|" in part else plain).append(part)
            continue
        spec = parse_smooth(part)
        if spec.bs == "re":
            if spec.kind != "s":
                raise ValueError(f"{part!r}: bs='re' is an s() term")
            fac, slopes = spec.columns[0], spec.columns[1:]
            if len(slopes) > 1:
                raise ValueError(f"{part!r}: s(g, x, bs='re') takes one slope covariate")
            bars.append(f"({'0 + ' + slopes[0] if slopes else '1'} | {fac})")
            continue
        smooths.append(spec)
        for c in spec.columns + ((spec.by,) if spec.by else ()):
            if c not in covs:
                covs.append(c)
    if not smooths and not bars and not plain:
        raise ValueError(f"formula {formula!r} has no terms")
    rest = [p for p in plain if p not in covs] + covs
    rhs_out = " + ".join(rest + bars) if rest or bars else "1"
    return smooths, f"{lhs.strip()} ~ {rhs_out}"
