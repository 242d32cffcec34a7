"""STUB — to be implemented (issue 4). Signatures are fixed; keep them."""

from __future__ import annotations

import time
from collections.abc import Callable

from taskmodels.config import ResilienceSettings
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import StateStore
from taskmodels.selection import ModelSelectionFactory

__all__ = ["ModelService"]


class ModelService:
    def __init__(
        self,
        *,
        registry: ModelRegistryService,
        selector: ModelSelectionFactory,
        provider_factory: ModelProviderFactory,
        state_store: StateStore,
        resilience: ResilienceSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.selector = selector
        self.provider_factory = provider_factory
        self.state_store = state_store
        self.resilience = resilience or ResilienceSettings()
        self._clock = clock
        self._wall_clock = wall_clock
