"""``taskmodels init``: a starter registry and ``.env.example``, so a new project has something to run.

The templates ship as package data (``taskmodels/templates/``); nothing here ever
overwrites a file that exists. ``init --example`` writes the repository's example registry
instead (``settings/`` of the repository, eleven models on every provider, six tasks, and a
production overlay): the one the reference pages of the docs use, which say so at their top.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from taskmodels.errors import ConfigurationError

__all__ = ["EXAMPLE_FILES", "STARTER_FILES", "StarterFile", "starter_text", "write_starter"]


@dataclass(frozen=True, slots=True)
class StarterFile:
    template: str  # name under taskmodels/templates/
    target: str  # path relative to the project directory


STARTER_FILES: tuple[StarterFile, ...] = (
    StarterFile("modelRegistry.json", "settings/modelRegistry.json"),
    StarterFile("env.example", ".env.example"),
)

EXAMPLE_FILES: tuple[StarterFile, ...] = (
    StarterFile("example/modelRegistry.json", "settings/modelRegistry.json"),
    StarterFile("example/modelRegistry.production.json", "settings/modelRegistry.production.json"),
    StarterFile("env.example", ".env.example"),
)


def starter_text(template: str) -> str:
    """The text of one template, as ``taskmodels init`` writes it."""
    resource = files("taskmodels") / "templates"
    for part in template.split("/"):
        resource = resource / part
    return resource.read_text(encoding="utf-8")


def write_starter(directory: Path, *, example: bool = False) -> list[Path]:
    """Write the starter files (``example``: the example registry's) under ``directory``; refuse, writing
    nothing, if any of them exists."""
    targets = [(directory / f.target, f) for f in (EXAMPLE_FILES if example else STARTER_FILES)]
    existing = [path for path, _ in targets if path.exists()]
    if existing:
        names = ", ".join(str(p.absolute()) for p in existing)
        raise ConfigurationError(f"not overwriting what is there: {names} (move it away, or run init elsewhere)")
    written: list[Path] = []
    for path, starter in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "x": never clobber a file created between the check above and this write.
        with path.open("x", encoding="utf-8") as handle:
            handle.write(starter_text(starter.template))
        written.append(path)
    return written
