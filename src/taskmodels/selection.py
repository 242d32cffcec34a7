"""STUB — to be implemented (issue 2). Signatures are fixed; keep them."""

from __future__ import annotations

from taskmodels.registry.schema import ModelConfig
from taskmodels.registry.service import ModelRegistryService

__all__ = ["ModelSelectionFactory"]


class ModelSelectionFactory:
    def __init__(self, registry: ModelRegistryService) -> None:
        self._registry = registry

    def select_model_for_task(self, task: str) -> ModelConfig:
        raise NotImplementedError
