"""The import rules of docs/architecture.md: data flows one way, no two modules import each other (directly or
round a longer loop), and the map names every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "taskmodels"
# The packages whose modules are checked for cycles: the library, and the benchmarks that drive it.
PACKAGE_DIRS = (SRC, ROOT / "benchmarks")

# docs/architecture.md's layers: a module may import its own layer and the layers above (lower numbers).
LAYERS: dict[str, int] = {
    **dict.fromkeys(["types", "errors", "validation", "redaction", "log", "sections", "tenancy"], 0),
    **dict.fromkeys(["registry"], 1),
    **dict.fromkeys(["selection"], 2),
    **dict.fromkeys(["providers", "resilience"], 3),
    **dict.fromkeys(["engine", "output", "telemetry"], 4),
    **dict.fromkeys(["service", "sync"], 5),
    **dict.fromkeys(["settings", "variables", "http_client", "aiohttp_transport", "containers", "gateway"], 6),
    **dict.fromkeys(["cli", "__main__", "check", "starter", "fake_server", "testing"], 7),
}

# Import cycles that exist today, each being taken apart by its own change. The test fails on any other cycle,
# and on one of these once it is gone: delete its line then.
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left: a new cycle is broken, not listed here


def _files() -> dict[str, Path]:
    """Every module and package of PACKAGE_DIRS by dotted name; a package is its ``__init__.py``."""
    found: dict[str, Path] = {}
    for top in PACKAGE_DIRS:
        for path in top.rglob("*.py"):
            parts = path.relative_to(top.parent).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


FILES = _files()
PACKAGES = {name for name, path in FILES.items() if path.name == "__init__.py"}
MODULE_NAMES = sorted(FILES.keys() - PACKAGES)
MODULES = sorted(FILES[name] for name in MODULE_NAMES if name.startswith("taskmodels."))


def _module_name(path: Path) -> str:
    return next(name for name, p in FILES.items() if p == path)


def _unit(module: str) -> str:
    """``taskmodels.engine.loop`` -> ``engine``; ``taskmodels.types`` -> ``types``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }


def _imported(tree: ast.Module, package: str, *, type_checking: bool) -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` for each name an import binds: ``name`` is ``None`` for ``import a.b``; relative
    imports are resolved against ``package``. ``type_checking`` False: skip what only type checkers see."""
    skip = set() if type_checking else _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                yield source, alias.name


@cache
def _reexports(package: str) -> Mapping[str, tuple[str, str]]:
    """What a package's ``__init__.py`` imports, name -> (module, name), to follow a name imported from the
    package to the module that defines it (``taskmodels``' lazy exports are imported there for type checkers)."""
    tree = ast.parse(FILES[package].read_text(encoding="utf-8"))
    found: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module, alias.name)
    return found


def _resolve(source: str, name: str | None) -> str | None:
    """The module of ours an import reaches, or ``None`` (another project's, or a package's own attribute).

    ``from package import module`` reaches the module; ``from package import Name`` the module the package
    took ``Name`` from. A package's ``__init__`` is no node of its own: Python runs it before any of its modules.
    """
    if name is not None and f"{source}.{name}" in FILES:
        source, name = f"{source}.{name}", None
    if source in PACKAGES:
        origin = _reexports(source).get(name) if name is not None else None
        return _resolve(*origin) if origin is not None and origin[0] != source else None
    return source if source in FILES else None


def imports_of(text: str, module: str, *, type_checking: bool) -> set[str]:
    """The modules of PACKAGE_DIRS that ``module``'s source ``text`` imports, wherever in the file."""
    package = module if module in PACKAGES else module.rpartition(".")[0]
    tree = ast.parse(text)
    found = {_resolve(source, name) for source, name in _imported(tree, package, type_checking=type_checking)}
    return {m for m in found if m is not None and m != module}


@cache
def _imports(module: str, *, type_checking: bool) -> frozenset[str]:
    return frozenset(imports_of(FILES[module].read_text(encoding="utf-8"), module, type_checking=type_checking))


# --- the resolver itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "module", "expected"),
    [
        ("from taskmodels import service", "taskmodels.engine.loop", {"taskmodels.service"}),
        (
            "from taskmodels.engine import loop, call",
            "taskmodels.types",
            {"taskmodels.engine.loop", "taskmodels.engine.call"},
        ),
        ("from . import hedge", "taskmodels.engine.loop", {"taskmodels.engine.hedge"}),
        ("from .. import service", "taskmodels.engine.loop", {"taskmodels.service"}),
        ("from ..resilience.state import StateStore", "taskmodels.engine.loop", {"taskmodels.resilience.state"}),
        ("import taskmodels.service as s", "taskmodels.types", {"taskmodels.service"}),
        ("from taskmodels import ModelService", "taskmodels.types", {"taskmodels.service"}),  # a lazy export
        ("from taskmodels.resilience import StateStore", "taskmodels.types", {"taskmodels.resilience.state"}),
        ("from taskmodels import __version__", "taskmodels.telemetry", set()),  # the package's own attribute
        ("import json\nfrom httpx2 import Client", "taskmodels.types", set()),
        ("def f():\n    from benchmarks import otel_floor", "benchmarks.otel", {"benchmarks.otel_floor"}),
    ],
)
def test_every_form_of_import_is_resolved_to_its_module(line: str, module: str, expected: set[str]) -> None:
    assert imports_of(line, module, type_checking=True) == expected


def test_imports_only_type_checkers_see_count_only_when_asked() -> None:
    text = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from taskmodels import service\n"
    assert imports_of(text, "taskmodels.types", type_checking=False) == set()
    assert imports_of(text, "taskmodels.types", type_checking=True) == {"taskmodels.service"}


# --- the rules --------------------------------------------------------------------------------


def test_the_map_places_every_module() -> None:
    units = {_unit(name) for name in MODULE_NAMES if name.startswith("taskmodels.")}
    assert units <= LAYERS.keys(), f"not on the map in docs/architecture.md: {sorted(units - LAYERS.keys())}"


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(SRC)) for p in MODULES])
def test_imports_flow_one_way(path: Path) -> None:
    module = _module_name(path)
    layer = LAYERS[_unit(module)]
    # Imports under `if TYPE_CHECKING:` are annotations only: no import at run time, so no layer is crossed.
    upward = {m for m in _imports(module, type_checking=False) if LAYERS.get(_unit(m), -1) > layer}
    assert not upward, f"{path.relative_to(SRC)} (layer {layer}) imports from a lower layer: {sorted(upward)}"


def _reachable(graph: Mapping[str, frozenset[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), frozenset()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _cycles(graph: Mapping[str, frozenset[str]]) -> set[frozenset[str]]:
    """Each set of modules that import one another, directly or round a longer loop: a module that reaches
    itself, with every module it reaches that reaches it back. A few hundred modules: no cleverness needed."""
    reach = {module: _reachable(graph, module) for module in graph}
    return {
        frozenset({module, *(other for other in reach[module] if module in reach[other])})
        for module in graph
        if module in reach[module]
    }


def _import_cycles() -> set[frozenset[str]]:
    # Every import counts here, those only type checkers see included: a cycle of them still ties two modules
    # into one, which neither can be read, tested or moved without.
    return _cycles({m: _imports(m, type_checking=True) for m in MODULE_NAMES})


def test_the_cycle_finder_finds_loops_of_any_length() -> None:
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"a"}),
        "c": frozenset({"d"}),
        "d": frozenset({"e"}),
        "e": frozenset({"c", "a"}),
        "f": frozenset({"a"}),
    }
    assert _cycles(graph) == {frozenset("ab"), frozenset("cde")}
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == set()


def test_no_module_imports_one_that_imports_it_back() -> None:
    unexpected = {tuple(sorted(cycle)) for cycle in _import_cycles() - KNOWN_CYCLES}
    assert not unexpected, f"import cycles (break them: move what both need where both can import it): {unexpected}"


def test_the_known_cycles_are_still_real() -> None:
    gone = {tuple(sorted(cycle)) for cycle in KNOWN_CYCLES - _import_cycles()}
    assert not gone, f"no longer cycles, delete them from KNOWN_CYCLES: {gone}"


def test_only_settings_and_containers_import_pydantic_settings_or_dependency_injector() -> None:
    # testing.py's container helpers override container nodes, which takes dependency-injector's providers.
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        if path.name in {"settings.py", "containers.py", "testing.py"}:
            continue
        for name in ("pydantic_settings", "dependency_injector"):
            assert f"import {name}" not in text, f"{path.name} imports {name}"
            assert f"from {name}" not in text, f"{path.name} imports from {name}"
