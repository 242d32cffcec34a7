"""The model registry: its file format, validation, and the service that indexes it."""

from taskmodels.registry.schema import BudgetConfig, ModelConfig, RegistryConfig, TaskMapping, TaskTimeouts
from taskmodels.registry.service import ModelRegistryService, Registry

__all__ = [
    "BudgetConfig",
    "ModelConfig",
    "ModelRegistryService",
    "Registry",
    "RegistryConfig",
    "TaskMapping",
    "TaskTimeouts",
]
