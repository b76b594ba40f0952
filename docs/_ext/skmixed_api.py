"""Sphinx glue that documents only what ``skmixed`` exports at build time.

The estimators are developed on separate branches and merged one by one, so the
API reference cannot be a fixed list: a page for a class that does not import yet
would be an autodoc warning (fatal under ``sphinx-build -W``), and a missing
page for a class that does exist would be a gap.  This extension therefore

* writes one reference page per public object that imports (``generated/``, removed
  and rewritten on every build, so no stale page survives a branch switch);
* provides the ``skmixed-api`` directive, which lists those pages (an autosummary
  table plus a hidden toctree) under a rubric per kind;
* provides the ``:api:`` role, which links to an object when it is documented and
  falls back to a plain literal when it is not importable in this build, so the
  user guide can name every estimator without unresolved references.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

# Public classes in the order the reference lists them; anything else in
# ``skmixed.__all__`` is appended (estimators first, then warnings).
ESTIMATORS = [
    "MixedLinearRegressor",
    "MixedLogisticRegressor",
    "MixedPoissonRegressor",
    "AdditiveMixedRegressor",
    "StreamingMixed",
    "SplitSampleMixed",
]
MODULES = ["skmixed.datasets", "skmixed.plot", "skmixed.dask"]

# sklearn machinery that every estimator inherits: documented by scikit-learn, not here
_SKIP_MEMBERS = {"get_params", "set_params", "get_metadata_routing", "fit_transform", "fit_predict"}


def resolve(path: str):
    """The object at dotted ``path`` (``skmixed.X.fit``), or None if it does not import."""
    parts = path.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        except Exception:  # a module that fails to import is "not available" here
            return None
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def public_classes() -> tuple[list[str], list[str]]:
    """(estimators, other classes) exported by ``skmixed.__all__``, estimators in ESTIMATORS order."""
    skmixed = importlib.import_module("skmixed")
    exported = list(getattr(skmixed, "__all__", []))
    est = [n for n in ESTIMATORS if n in exported and resolve(f"skmixed.{n}") is not None]
    others = []
    for n in exported:
        obj = getattr(skmixed, n, None)
        if n in est or not inspect.isclass(obj):
            continue
        if issubclass(obj, Warning) or issubclass(obj, Exception):
            others.append(n)
        else:
            est.append(n)
    return est, others


def public_modules() -> list[str]:
    out = []
    for m in MODULES:
        try:
            importlib.import_module(m)
        except Exception:
            continue
        out.append(m)
    return out


def class_members(cls) -> list[str]:
    """Public methods and properties of ``cls`` that skmixed defines (not sklearn's)."""
    names = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("skmixed"):
            continue
        for name, val in vars(klass).items():
            if name.startswith("_") or name in _SKIP_MEMBERS or name in names:
                continue
            # set_fit_request & co. are generated per class by sklearn's metadata routing
            if name.startswith("set_") and name.endswith("_request"):
                continue
            # (sklearn's available_if wraps methods such as predict_proba in a descriptor)
            if (isinstance(val, (property, classmethod, staticmethod)) or inspect.isfunction(val)
                    or type(val).__name__ == "_AvailableIfDescriptor"):
                if isinstance(val, property):
                    doc = val.fget.__doc__
                else:
                    doc = getattr(getattr(val, "fn", val), "__doc__", None)
                if doc:
                    names.append(name)
    return sorted(names)


def _class_page(name: str) -> str:
    cls = resolve(f"skmixed.{name}")
    title = f"skmixed.{name}"
    members = class_members(cls)
    lines = [title, "=" * len(title), "", ".. currentmodule:: skmixed", "", f".. autoclass:: {name}"]
    if members:
        lines.append(f"   :members: {', '.join(members)}")
    lines.append("")
    return "\n".join(lines)


def _module_page(mod: str) -> str:
    return "\n".join([mod, "=" * len(mod), "", f".. automodule:: {mod}", "   :members:", ""])


def generate(app) -> None:
    """Write ``generated/<object>.rst`` for every public object that imports now."""
    out = Path(app.srcdir) / "generated"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    est, others = public_classes()
    for name in est + others:
        (out / f"skmixed.{name}.rst").write_text(_class_page(name), encoding="utf-8")
    for mod in public_modules():
        (out / f"{mod}.rst").write_text(_module_page(mod), encoding="utf-8")


class ApiListing(Directive):
    """``.. skmixed-api::`` -- tables of the generated reference pages."""

    has_content = False
    option_spec = {"kind": directives.unchanged}

    def run(self):
        est, others = public_classes()
        mods = public_modules()
        groups = [("Estimators", [f"skmixed.{n}" for n in est]),
                  ("Warnings", [f"skmixed.{n}" for n in others]),
                  ("Modules", mods)]
        text = []
        for title, names in groups:
            if not names:
                continue
            text += [f".. rubric:: {title}", "", ".. autosummary::", "", *[f"   {n}" for n in names], ""]
        pages = [f"generated/{n}" for _, names in groups for n in names]
        text += [".. toctree::", "   :hidden:", "", *[f"   {p}" for p in pages], ""]
        node = nodes.container()
        self.state.nested_parse(StringList(text, source="<skmixed-api>"), self.content_offset, node)
        return node.children


def api_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``:api:`MixedLogisticRegressor``` -- a link when documented, else a literal.

    Names without a dot are looked up in ``skmixed``; a leading ``~`` shows only the
    last component (as Sphinx's own roles do).
    """
    short = text.startswith("~")
    target = text.lstrip("~")
    full = target if target.startswith("skmixed") else f"skmixed.{target}"
    obj = resolve(full)
    if obj is not None and _documented(full):
        env = inliner.document.settings.env
        role = env.get_domain("py").role("obj")
        return role("py:obj", rawtext, ("~" if short else "") + full, lineno, inliner, options or {}, content or [])
    shown = target.split(".")[-1] if short else target
    return [nodes.literal(rawtext, shown)], []


def _documented(full: str) -> bool:
    """Is ``full`` (or the class/module it belongs to) on a generated page?"""
    est, others = public_classes()
    pages = {f"skmixed.{n}" for n in est + others} | set(public_modules())
    parts = full.split(".")
    for k in range(len(parts), 1, -1):
        head = ".".join(parts[:k])
        if head in pages:
            if k == len(parts):
                return True
            # a member: documented when the page lists it
            owner = resolve(head)
            if inspect.isclass(owner):
                return parts[k] in class_members(owner)
            return True
    return False


def setup(app):
    app.connect("builder-inited", generate)
    app.add_directive("skmixed-api", ApiListing)
    app.add_role("api", api_role)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
