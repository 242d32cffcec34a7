"""The import rules of docs/architecture.md: data flows one way, and the map names every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "taskmodels"

# docs/architecture.md's layers: a module may import its own layer and the layers above (lower numbers).
LAYERS: dict[str, int] = {
    **dict.fromkeys(["types", "errors", "validation", "redaction", "log", "sections", "tenancy"], 0),
    **dict.fromkeys(["registry"], 1),
    **dict.fromkeys(["selection"], 2),
    **dict.fromkeys(["providers", "resilience"], 3),
    **dict.fromkeys(["engine", "output", "telemetry"], 4),
    **dict.fromkeys(["service", "sync"], 5),
    **dict.fromkeys(["settings", "http_client", "aiohttp_transport", "containers"], 6),
    **dict.fromkeys(["cli", "check", "starter", "fake_server", "testing"], 7),
}
# Where the map allows a module what its layer alone would not, and why.
EXCEPTIONS: dict[str, set[str]] = {
    # The sync facade is the service's twin; the service hands it out through `service.sync`.
    "service": {"sync"},
    "sync": {"service"},
}


def _unit(module: str) -> str:
    """``taskmodels.engine.loop`` -> ``engine``; ``taskmodels.types`` -> ``types``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = "taskmodels." + ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    found: set[str] = set()
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:  # annotations only: no import at run time
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("taskmodels."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module and node.module.startswith("taskmodels."):
                found.add(node.module)
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py")


def test_the_map_places_every_module() -> None:
    units = {_unit("taskmodels." + ".".join(p.relative_to(SRC).with_suffix("").parts)) for p in MODULES}
    assert units <= LAYERS.keys(), f"not on the map in docs/architecture.md: {sorted(units - LAYERS.keys())}"


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(SRC)) for p in MODULES])
def test_imports_flow_one_way(path: Path) -> None:
    unit = _unit("taskmodels." + ".".join(path.relative_to(SRC).with_suffix("").parts))
    layer = LAYERS[unit]
    upward = {
        module
        for module in _imports(path)
        if LAYERS.get(_unit(module), -1) > layer and _unit(module) not in EXCEPTIONS.get(unit, set())
    }
    assert not upward, f"{path.relative_to(SRC)} (layer {layer}) imports from a lower layer: {sorted(upward)}"


def test_only_settings_and_containers_import_pydantic_settings_or_dependency_injector() -> None:
    # testing.py's container helpers override container nodes, which takes dependency-injector's providers.
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        if path.name in {"settings.py", "containers.py", "testing.py"}:
            continue
        for name in ("pydantic_settings", "dependency_injector"):
            assert f"import {name}" not in text, f"{path.name} imports {name}"
            assert f"from {name}" not in text, f"{path.name} imports from {name}"
