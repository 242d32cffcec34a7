"""taskmodels: pick the right LLM for each task of an application, and call it reliably.

Names are imported on first use (PEP 562), so ``import taskmodels`` stays cheap and
an application that never builds a container never loads dependency-injector.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # types
    "Attempt": "taskmodels.types",
    "CompletionRequest": "taskmodels.types",
    "CompletionResult": "taskmodels.types",
    "EmbeddingResult": "taskmodels.types",
    "Message": "taskmodels.types",
    "ResponseFormat": "taskmodels.types",
    "StreamEvent": "taskmodels.types",
    "ToolCall": "taskmodels.types",
    "ToolSpec": "taskmodels.types",
    "Usage": "taskmodels.types",
    # errors
    "AllModelsFailedError": "taskmodels.errors",
    "AuthenticationError": "taskmodels.errors",
    "BadRequestError": "taskmodels.errors",
    "BudgetExceededError": "taskmodels.errors",
    "ConfigurationError": "taskmodels.errors",
    "ContentFilteredError": "taskmodels.errors",
    "ContextLengthExceededError": "taskmodels.errors",
    "DeadlineExceededError": "taskmodels.errors",
    "FirstTokenTimeoutError": "taskmodels.errors",
    "IncompleteStreamError": "taskmodels.errors",
    "InvalidRequestError": "taskmodels.errors",
    "InvalidResponseError": "taskmodels.errors",
    "MissingCredentialError": "taskmodels.errors",
    "NoEligibleModelError": "taskmodels.errors",
    "OutputValidationError": "taskmodels.errors",
    "Problem": "taskmodels.errors",
    "ProviderConnectionError": "taskmodels.errors",
    "ProviderError": "taskmodels.errors",
    "ProviderTimeoutError": "taskmodels.errors",
    "ProviderUnavailableError": "taskmodels.errors",
    "RateLimitError": "taskmodels.errors",
    "RegistryError": "taskmodels.errors",
    "SelectionError": "taskmodels.errors",
    "SettingsError": "taskmodels.errors",
    "StreamStalledError": "taskmodels.errors",
    "TaskModelsError": "taskmodels.errors",
    "TruncatedAnswerError": "taskmodels.errors",
    "UnknownTaskError": "taskmodels.errors",
    # parts
    "BaseModelProvider": "taskmodels.providers.base",
    "ModelPort": "taskmodels.providers.port",
    "Container": "taskmodels.containers",
    "MemoryStateStore": "taskmodels.resilience.state",
    "ModelConfig": "taskmodels.registry.schema",
    "ModelProviderFactory": "taskmodels.providers.factory",
    "ModelRegistryService": "taskmodels.registry.service",
    "tenant_scope": "taskmodels.tenancy",
    "ModelSelectionFactory": "taskmodels.selection",
    "Selection": "taskmodels.selection",
    "Skip": "taskmodels.selection",
    "ModelService": "taskmodels.service",
    "RegistryConfig": "taskmodels.registry.schema",
    "Settings": "taskmodels.settings",
    "StateStore": "taskmodels.resilience.state",
    "TaskMapping": "taskmodels.registry.schema",
    "configure_logging": "taskmodels.log",
    "get_logger": "taskmodels.log",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - built from the one export list; tests check it resolves


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskmodels' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from taskmodels.containers import Container
    from taskmodels.errors import (
        AllModelsFailedError,
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        ConfigurationError,
        ContentFilteredError,
        ContextLengthExceededError,
        DeadlineExceededError,
        FirstTokenTimeoutError,
        IncompleteStreamError,
        InvalidRequestError,
        InvalidResponseError,
        MissingCredentialError,
        NoEligibleModelError,
        OutputValidationError,
        Problem,
        ProviderConnectionError,
        ProviderError,
        ProviderTimeoutError,
        ProviderUnavailableError,
        RateLimitError,
        RegistryError,
        SelectionError,
        SettingsError,
        StreamStalledError,
        TaskModelsError,
        TruncatedAnswerError,
        UnknownTaskError,
    )
    from taskmodels.log import configure_logging, get_logger
    from taskmodels.providers.base import BaseModelProvider
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.providers.port import ModelPort
    from taskmodels.registry.schema import ModelConfig, RegistryConfig, TaskMapping
    from taskmodels.registry.service import ModelRegistryService
    from taskmodels.resilience.state import MemoryStateStore, StateStore
    from taskmodels.selection import ModelSelectionFactory, Selection, Skip
    from taskmodels.service import ModelService
    from taskmodels.settings import Settings
    from taskmodels.tenancy import tenant_scope
    from taskmodels.types import (
        Attempt,
        CompletionRequest,
        CompletionResult,
        EmbeddingResult,
        Message,
        ResponseFormat,
        StreamEvent,
        ToolCall,
        ToolSpec,
        Usage,
    )
