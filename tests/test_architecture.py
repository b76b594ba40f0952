"""Architecture rules checked over the source's syntax trees (issue #13).

**No module reaches into another object's private members.** In ``skmixed/``, an attribute
``obj._name`` (one leading underscore, not a dunder) read, written, deleted or named in
``getattr``/``hasattr``/``setattr``/``delattr`` is allowed only when

- ``obj`` is ``self`` or ``cls`` (an object's own state, inherited members included), or
- ``_name`` is defined in the same module (a ``def``/``class``, a ``self._name = ...`` or
  ``cls._name = ...`` assignment, a class- or module-level ``_name = ...``): the module that owns a
  private member may use it on any object of its own kind (``other._x`` in ``__eq__``, a friend
  function such as ``_base.fit_inputs(est, ...)``). Writing ``obj._name = ...`` is allowed only there.

Importing a module-level name that starts with an underscore (``from ._design.layout import _x``)
is not checked: inside a package, a leading underscore on a module marks the module as internal,
not a member of another object. Other modules reach a private member only through the seams its
owner offers: a public method or attribute (``est.mixed_fit_``), a documented function of the
owning module (``skmixed._base.fit_inputs``), or a results object (:class:`skmixed._results.MixedFit`).

``ALLOWED`` lists the remaining exceptions, each with its reason; the test also fails when an
entry there no longer matches anything, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "skmixed"

# (module path relative to skmixed/, expression, member): why it is allowed
ALLOWED = {
    # a third-party private: threadpoolctl has no public way to list its controller classes
    ("_threads.py", "threadpoolctl", "_ALL_CONTROLLERS"): "third-party internals (threadpoolctl)",
}


_ATTR_FUNCS = {"getattr", "hasattr", "setattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owned(tree: ast.AST) -> set:
    """Private names a module defines (so may use on any object)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _private(node.name):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id):
            names.add(node.id)  # class- and module-level names (locals too: harmless)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _private(node.target.id):
            names.add(node.target.id)  # dataclass fields
    return names


def _is_self(node) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def violations():
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        owned = _owned(tree)
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.Attribute) and _private(node.attr) and not _is_self(node.value):
                if node.attr not in owned:  # reads, writes and deletes alike
                    hit = (ast.unparse(node.value), node.attr)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ATTR_FUNCS
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and _private(node.args[1].value)
                  and not _is_self(node.args[0]) and node.args[1].value not in owned):
                hit = (ast.unparse(node.args[0]), node.args[1].value)
            if hit is not None:
                out.append((rel, node.lineno) + hit)
    return out


def test_no_cross_module_private_access():
    found = violations()
    bad = [f"skmixed/{rel}:{line}: {obj}.{name}" for rel, line, obj, name in found
           if (rel, obj, name) not in ALLOWED]
    assert not bad, ("modules reach into other objects' private members (use a public seam: see this "
                     "test's docstring):\n" + "\n".join(bad))
    used = {(rel, obj, name) for rel, _, obj, name in found}
    stale = sorted(k for k in ALLOWED if k not in used)
    assert not stale, f"ALLOWED entries that no longer occur (remove them): {stale}"


def test_the_check_catches_private_access(tmp_path, monkeypatch):
    """The rule itself: a foreign private read, write and getattr are caught; own members are not."""
    pkg = tmp_path / "skmixed"
    pkg.mkdir()
    (pkg / "owner.py").write_text(
        "class A:\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "    def _m(self):\n"
        "        return self._x\n"
        "def friend(a):\n"
        "    return a._x + a._m()\n")
    (pkg / "intruder.py").write_text(
        "def f(a):\n"
        "    a._y = 2\n"
        "    return a._x + getattr(a, '_z', 0)\n"
        "class B:\n"
        "    def g(self):\n"
        "        return self._x\n")
    monkeypatch.setitem(globals(), "PKG", pkg)
    found = sorted((rel, obj, name) for rel, _, obj, name in violations())
    assert found == [("intruder.py", "a", "_x"), ("intruder.py", "a", "_y"), ("intruder.py", "a", "_z")]
