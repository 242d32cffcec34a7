"""STUB — to be implemented (issue 2). Signatures are fixed; keep them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskmodels.errors import Problem
from taskmodels.registry.schema import ModelConfig, RegistryConfig, TaskMapping

if TYPE_CHECKING:
    from taskmodels.settings import Settings

__all__ = ["ModelRegistryService", "Registry"]


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


class ModelRegistryService:
    def __init__(
        self, registry: Registry, *, paths: Sequence[Path] = (), provider_names: Collection[str] | None = None
    ) -> None:
        self._current = registry
        self._paths = tuple(paths)
        self._provider_names = provider_names

    @classmethod
    def from_path(
        cls, path: Path | str | Sequence[Path | str], *, provider_names: Collection[str] | None = None
    ) -> ModelRegistryService:
        raise NotImplementedError

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, provider_names: Collection[str] | None = None, source: str = "<dict>"
    ) -> ModelRegistryService:
        raise NotImplementedError

    @classmethod
    def from_settings(
        cls, settings: Settings, *, provider_names: Collection[str] | None = None
    ) -> ModelRegistryService:
        raise NotImplementedError

    @property
    def current(self) -> Registry:
        return self._current
