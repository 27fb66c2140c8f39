"""The package's imports point down: no cycles, no CLI, no tests, no other module's privates.

The graph is read from the source with :mod:`ast`, every ``import`` at any depth (module level
and inside functions alike, so a function-local import cannot hide a cycle). An edge goes from
the importing module to each ``sdsam_nb`` module it imports: ``from .x import y`` imports
``x.y`` where that is a module, else ``x``; ``from .. import runs`` imports ``sdsam_nb.runs``
(a package's ``__init__``), not ``sdsam_nb``. Importing ``a.b`` also runs ``a/__init__``, so
it is an edge to ``a`` too, unless ``a`` contains the importer (Python has run it already).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sdsam_nb"
CLI = f"{PACKAGE}.__main__"
TESTS = {"tests"} | {p.stem for p in (ROOT / "tests").glob("*.py")}

# (importer, imported) edges left out of the cycle check, each with why it cannot go yet
KNOWN_CYCLES: dict[tuple[str, str], str] = {}
# (importer, imported) pairs whose private names are still shared, each with why
KNOWN_PRIVATE: dict[tuple[str, str], str] = {}


def _name(path: Path) -> str:
    """``sdsam_nb/a/b.py`` -> ``sdsam_nb.a.b``; ``sdsam_nb/a/__init__.py`` -> ``sdsam_nb.a``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
OTHERS = {_name(p): p for p in sorted((ROOT / "benchmarks").rglob("*.py"))}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` reads, with its dots resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    package = package if path.name == "__init__.py" else package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """Each import in ``path``: (the module it names, absolute; the names it takes; line)."""
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def _targets(importer: str, base: str, names: list[str]) -> set[str]:
    """The ``sdsam_nb`` modules an import runs (see the module's docstring)."""
    if base != PACKAGE and not base.startswith(PACKAGE + "."):
        return set()
    modules = {f"{base}.{n}" for n in names if f"{base}.{n}" in FILES}
    if not names or len(modules) < len(names):  # ``import base`` or an attribute of base
        modules.add(base)
    found = set()
    for target in modules:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            ancestor = ".".join(parts[:i])
            inside = importer == ancestor or importer.startswith(ancestor + ".")
            if ancestor == target or not inside:
                found.add(ancestor)
    return found - {importer}


def _edges(module: str) -> set[str]:
    imports = _imports(module, FILES[module])
    return set().union(*(_targets(module, base, names) for base, names, _ in imports))


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, less :data:`KNOWN_CYCLES`."""
    return {m: {t for t in _edges(m) if (m, t) not in KNOWN_CYCLES} for m in FILES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if found := visit(target):
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if found := visit(module):
            return found
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses(module: str, path: Path) -> list[str]:
    """``target: line: name`` for each private name of another ``sdsam_nb`` module that
    ``module`` takes: ``from .x import _name``, or ``x._name`` on a module ``x`` it imported.
    A package's ``__init__`` may take its own submodules' names."""

    def foreign(target: str) -> bool:
        own = target == module or (path.name == "__init__.py" and target.startswith(module + "."))
        return not own and (module, target) not in KNOWN_PRIVATE

    tree = _tree(path)
    bound: dict[str, str] = {}  # a local name -> the module it is
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                bound[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in FILES:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
                elif base in FILES and _private(alias.name) and foreign(base):
                    found.append(f"{base}: {node.lineno}: {alias.name}")

    def dotted(node: ast.expr) -> str | None:  # the module an expression names, if any
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute) and (parent := dotted(node.value)):
            return f"{parent}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            target = dotted(node.value)
            if target in FILES and foreign(target):
                found.append(f"{target}: {node.lineno}: {node.attr}")
    return found


def test_the_graph_reads_relative_imports_and_packages():
    assert _targets("sdsam_nb.steps", "sdsam_nb", ["runs"]) == {"sdsam_nb.runs"}
    assert _targets("sdsam_nb.caching.keys", "sdsam_nb.models.identity", ["model_info"]) == {
        "sdsam_nb.models",
        "sdsam_nb.models.identity",
    }
    assert _targets("sdsam_nb.batch.sweep", "sdsam_nb.batch", ["runner"]) == {
        "sdsam_nb.batch.runner"
    }
    assert _targets("sdsam_nb.batch.item", "sdsam_nb.batch", ["a_name"]) == {"sdsam_nb.batch"}
    assert _targets("sdsam_nb.images", "numpy", ["array"]) == set()
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, "an import cycle: " + " -> ".join(cycle)


def test_the_known_exceptions_are_still_needed():
    for module, target in KNOWN_CYCLES:
        assert target in _edges(module), f"{module} no longer imports {target}: unlist it"
    for module, target in KNOWN_PRIVATE:
        imports = _imports(module, FILES[module])
        assert any(base == target and any(map(_private, names)) for base, names, _ in imports), (
            f"{module} no longer takes private names of {target}: unlist it"
        )


def test_nothing_imports_the_cli():
    found = [
        f"{module}: {line}"
        for module, path in {**FILES, **OTHERS}.items()
        for base, names, line in _imports(module, path)
        if CLI in {base, *(f"{base}.{n}" for n in names)}
    ]
    assert not found, f"these import the command line ({CLI}): {found}"


def test_neither_the_package_nor_the_benchmarks_import_the_tests():
    found = [
        f"{module}: {line}: {base}"
        for module, path in {**FILES, **OTHERS}.items()
        for base, _names, line in _imports(module, path)
        if base.split(".")[0] in TESTS
    ]
    assert not found, f"these import tests/: {found}"


def test_no_module_takes_another_modules_private_names():
    found = {m: uses for m, p in FILES.items() if (uses := _private_uses(m, p))}
    assert not found, f"private names of other modules: {found}"
