"""ModelRegistryService: loads, validates and indexes the registry, and swaps in a new one on reload.

A :class:`Registry` is an immutable snapshot. A caller that takes ``service.current``
once keeps using that snapshot for the whole call, so a reload never changes a call
half way through; the swap itself is one attribute assignment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from taskmodels.errors import ConfigurationError, Problem, RegistryError
from taskmodels.log import library_logger
from taskmodels.registry.loader import LoadResult, load_layers, read_layer
from taskmodels.registry.schema import ModelConfig, RegistryConfig, TaskMapping

if TYPE_CHECKING:
    from taskmodels.settings import Settings

__all__ = [
    "ModelRegistryService",
    "Registry",
    "build_registry",
    "check_files",
    "load_registry",
    "registry_not_found",
]

_log = library_logger("registry")

_Stamp = tuple[tuple[int, int] | None, ...]


@dataclass(frozen=True, slots=True)
class Registry:
    """One validated, indexed, immutable registry. Reload builds a new one and swaps it in."""

    config: RegistryConfig
    sources: tuple[str, ...]
    models_by_id: Mapping[str, ModelConfig]
    tasks_by_name: Mapping[str, TaskMapping]
    default_model: ModelConfig
    chains: Mapping[str, tuple[ModelConfig, ...]]  # task -> primary, fallbacks, default (de-duplicated)
    default_chain: tuple[ModelConfig, ...]  # for tasks the registry does not name
    warnings: tuple[Problem, ...] = ()
    # model id -> its capabilities as a set, so selection tests membership without building one per call
    capabilities_by_id: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))


def build_registry(config: RegistryConfig, sources: Sequence[str], warnings: Sequence[Problem] = ()) -> Registry:
    """Index a validated config. Assumes validation passed: every reference resolves."""
    models = {m.id: m for m in config.models}
    default = models[config.default_model_id]
    tasks: dict[str, TaskMapping] = {}
    chains: dict[str, tuple[ModelConfig, ...]] = {}
    for task in config.task_mappings:
        tasks[task.task_name] = task
        ids = dict.fromkeys((task.primary_model_id, *task.fallback_model_ids, config.default_model_id))
        chains[task.task_name] = tuple(models[i] for i in ids)
    return Registry(
        config=config,
        sources=tuple(sources),
        models_by_id=MappingProxyType(models),
        tasks_by_name=MappingProxyType(tasks),
        default_model=default,
        chains=MappingProxyType(chains),
        default_chain=(default,),
        warnings=tuple(warnings),
        capabilities_by_id=MappingProxyType({m.id: frozenset(m.capabilities) for m in config.models}),
    )


def _registry_from(result: LoadResult) -> Registry:
    if result.config is None or result.errors:
        raise RegistryError(result.errors, source=result.sources[0] if result.sources else None)
    return build_registry(result.config, result.sources, result.warnings)


def endpoint_providers(settings: Settings, provider_names: Collection[str] | None) -> frozenset[str]:
    """The providers whose settings give an endpoint, so a model of theirs needs no ``baseUrl`` of its own."""
    return frozenset(name for name in provider_names or () if settings.provider_settings(name).base_url)


def check_files(
    paths: Sequence[Path],
    *,
    provider_names: Collection[str] | None = None,
    providers_with_base_url: Collection[str] | None = None,
) -> LoadResult:
    """Read, merge (base then overlays) and validate registry files; errors and warnings, without raising.

    ``providers_with_base_url``: the providers whose settings give an endpoint (see
    :func:`taskmodels.registry.loader.validate_merged`); None when not known.
    """
    layers: list[tuple[str, Any]] = []
    problems: list[Problem] = []
    for path in paths:
        data, found = read_layer(path)
        layers.append((str(path), data))
        problems.extend(found)
    return load_layers(
        layers, provider_names=provider_names, providers_with_base_url=providers_with_base_url, problems=problems
    )


def load_registry(
    paths: Sequence[Path],
    *,
    provider_names: Collection[str] | None = None,
    providers_with_base_url: Collection[str] | None = None,
) -> Registry:
    """Read, merge (base then overlays) and validate registry files; raise every problem at once."""
    return _registry_from(
        check_files(paths, provider_names=provider_names, providers_with_base_url=providers_with_base_url)
    )


def registry_not_found(path: Path) -> str:
    """What to say when the registry file is missing: where we looked, how to point elsewhere, how to make one."""
    where = path.absolute()
    what = "registry file not found"
    if where.is_dir():
        what = "is a directory, not a registry file"
        inside = where / "modelRegistry.json"
        if inside.is_file():
            what += f" (did you mean {inside}?)"
    return (
        f"{what}: {where}\n"
        "  point to your registry with --registry PATH (the CLI) or TASKMODELS_REGISTRY_PATH=PATH,\n"
        "  or create a starter one here with: taskmodels init"
    )


def _stamp(paths: Sequence[Path]) -> _Stamp:
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


class ModelRegistryService:
    """Holds the current :class:`Registry`; O(1) lookups by model id and task name; reloads atomically."""

    def __init__(
        self,
        registry: Registry,
        *,
        paths: Sequence[Path] = (),
        provider_names: Collection[str] | None = None,
        providers_with_base_url: Collection[str] | None = None,
    ) -> None:
        self._current = registry
        self._paths = tuple(paths)
        self._provider_names = provider_names
        self._providers_with_base_url = providers_with_base_url
        self._reload_lock = threading.Lock()
        self._stamp: _Stamp = _stamp(self._paths)

    @classmethod
    def from_path(
        cls,
        path: Path | str | Sequence[Path | str],
        *,
        provider_names: Collection[str] | None = None,
        providers_with_base_url: Collection[str] | None = None,
    ) -> ModelRegistryService:
        """Load one file, or a base file followed by overlays.

        ``provider_names``: the registered implementations (None: not checked).
        ``providers_with_base_url``: the providers whose settings give an endpoint; with it, an
        ``openai-compatible`` model that has no ``baseUrl`` and no endpoint from settings is an
        error (without it, a warning).
        """
        raw = [path] if isinstance(path, (str, Path)) else list(path)
        paths = [Path(p) for p in raw]
        if not paths:
            raise ConfigurationError("no registry file given")
        stamp = _stamp(paths)  # before reading, so a write during the read is seen as a change later
        registry = load_registry(paths, provider_names=provider_names, providers_with_base_url=providers_with_base_url)
        service = cls(
            registry, paths=paths, provider_names=provider_names, providers_with_base_url=providers_with_base_url
        )
        service._stamp = stamp
        return service

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        provider_names: Collection[str] | None = None,
        providers_with_base_url: Collection[str] | None = None,
        source: str = "<dict>",
    ) -> ModelRegistryService:
        """Validate an in-memory registry document (same format as the file)."""
        result = load_layers(
            [(source, data)], provider_names=provider_names, providers_with_base_url=providers_with_base_url
        )
        return cls(
            _registry_from(result), provider_names=provider_names, providers_with_base_url=providers_with_base_url
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, provider_names: Collection[str] | None = None
    ) -> ModelRegistryService:
        """The registry file and its environment overlay that ``settings`` name."""
        paths = settings.registry_paths()
        if not paths[0].is_file():
            # The first thing a new user meets: say where we looked and what to do, not just "file not found".
            raise RegistryError([Problem(str(paths[0].absolute()), "", registry_not_found(paths[0]))])
        return cls.from_path(
            paths, provider_names=provider_names, providers_with_base_url=endpoint_providers(settings, provider_names)
        )

    @property
    def current(self) -> Registry:
        return self._current

    @property
    def paths(self) -> tuple[Path, ...]:
        return self._paths

    @property
    def default_model(self) -> ModelConfig:
        return self._current.default_model

    def get_model(self, model_id: str) -> ModelConfig | None:
        return self._current.models_by_id.get(model_id)

    def get_task(self, task: str) -> TaskMapping | None:
        return self._current.tasks_by_name.get(task)

    def list_models(self) -> tuple[ModelConfig, ...]:
        """Models in file order (base first, then those overlays added)."""
        return self._current.config.models

    def list_tasks(self) -> tuple[TaskMapping, ...]:
        return self._current.config.task_mappings

    def reload(self) -> Registry:
        """Re-read the same files; swap in the new registry only if it is valid.

        Raises ``RegistryError`` with every problem and keeps the old registry when the
        files are invalid. A registry built from a dict has no files to re-read.
        """
        if not self._paths:
            raise ConfigurationError("this registry was not loaded from a file; there is nothing to reload")
        with self._reload_lock:
            stamp = _stamp(self._paths)
            try:
                registry = load_registry(
                    self._paths,
                    provider_names=self._provider_names,
                    providers_with_base_url=self._providers_with_base_url,
                )
            finally:
                # Remember this version even when invalid, so watch() reports it once, not every tick.
                self._stamp = stamp
            self._current = registry
            return registry

    def changed(self) -> bool:
        """Whether any registry file's modification time or size differs from the last load."""
        return bool(self._paths) and _stamp(self._paths) != self._stamp

    def reload_if_changed(self) -> bool:
        """Reload when a file changed; log problems instead of raising. True when a new registry was swapped in."""
        if not self.changed():
            return False
        try:
            registry = self.reload()
        except RegistryError as exc:
            _log.error(
                "taskmodels.registry.reload_failed",
                sources=[str(p) for p in self._paths],
                problems=[str(p) for p in exc.problems],
                kept="previous registry",
            )
            return False
        _log.info(
            "taskmodels.registry.reloaded",
            sources=list(registry.sources),
            models=len(registry.models_by_id),
            tasks=len(registry.tasks_by_name),
            warnings=[str(w) for w in registry.warnings],
        )
        return True

    async def watch(self, interval: float = 2.0, *, stop: asyncio.Event | None = None) -> None:
        """Poll the files every ``interval`` seconds and reload on change, until ``stop`` is set or cancelled."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            # The stat calls and the parse are blocking I/O; keep them off the event loop.
            await asyncio.to_thread(self.reload_if_changed)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                continue
