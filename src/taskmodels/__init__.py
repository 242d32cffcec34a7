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
    "ImagePart": "taskmodels.types",
    "Message": "taskmodels.types",
    "ResponseFormat": "taskmodels.types",
    "StreamEvent": "taskmodels.types",
    "TextPart": "taskmodels.types",
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
    "ServiceClosedError": "taskmodels.errors",
    "SettingsError": "taskmodels.errors",
    "StreamStalledError": "taskmodels.errors",
    "TaskModelsError": "taskmodels.errors",
    "TruncatedAnswerError": "taskmodels.errors",
    "UnknownTaskError": "taskmodels.errors",
    "UnsupportedContentError": "taskmodels.errors",
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

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - built from the one export list; the block below re-exports for type checkers


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
    from taskmodels.containers import Container as Container
    from taskmodels.errors import (
        AllModelsFailedError as AllModelsFailedError,
    )
    from taskmodels.errors import (
        AuthenticationError as AuthenticationError,
    )
    from taskmodels.errors import (
        BadRequestError as BadRequestError,
    )
    from taskmodels.errors import (
        BudgetExceededError as BudgetExceededError,
    )
    from taskmodels.errors import (
        ConfigurationError as ConfigurationError,
    )
    from taskmodels.errors import (
        ContentFilteredError as ContentFilteredError,
    )
    from taskmodels.errors import (
        ContextLengthExceededError as ContextLengthExceededError,
    )
    from taskmodels.errors import (
        DeadlineExceededError as DeadlineExceededError,
    )
    from taskmodels.errors import (
        FirstTokenTimeoutError as FirstTokenTimeoutError,
    )
    from taskmodels.errors import (
        IncompleteStreamError as IncompleteStreamError,
    )
    from taskmodels.errors import (
        InvalidRequestError as InvalidRequestError,
    )
    from taskmodels.errors import (
        InvalidResponseError as InvalidResponseError,
    )
    from taskmodels.errors import (
        MissingCredentialError as MissingCredentialError,
    )
    from taskmodels.errors import (
        NoEligibleModelError as NoEligibleModelError,
    )
    from taskmodels.errors import (
        OutputValidationError as OutputValidationError,
    )
    from taskmodels.errors import (
        Problem as Problem,
    )
    from taskmodels.errors import (
        ProviderConnectionError as ProviderConnectionError,
    )
    from taskmodels.errors import (
        ProviderError as ProviderError,
    )
    from taskmodels.errors import (
        ProviderTimeoutError as ProviderTimeoutError,
    )
    from taskmodels.errors import (
        ProviderUnavailableError as ProviderUnavailableError,
    )
    from taskmodels.errors import (
        RateLimitError as RateLimitError,
    )
    from taskmodels.errors import (
        RegistryError as RegistryError,
    )
    from taskmodels.errors import (
        SelectionError as SelectionError,
    )
    from taskmodels.errors import (
        ServiceClosedError as ServiceClosedError,
    )
    from taskmodels.errors import (
        SettingsError as SettingsError,
    )
    from taskmodels.errors import (
        StreamStalledError as StreamStalledError,
    )
    from taskmodels.errors import (
        TaskModelsError as TaskModelsError,
    )
    from taskmodels.errors import (
        TruncatedAnswerError as TruncatedAnswerError,
    )
    from taskmodels.errors import (
        UnknownTaskError as UnknownTaskError,
    )
    from taskmodels.errors import (
        UnsupportedContentError as UnsupportedContentError,
    )
    from taskmodels.log import configure_logging as configure_logging
    from taskmodels.log import get_logger as get_logger
    from taskmodels.providers.base import BaseModelProvider as BaseModelProvider
    from taskmodels.providers.factory import ModelProviderFactory as ModelProviderFactory
    from taskmodels.providers.port import ModelPort as ModelPort
    from taskmodels.registry.schema import (
        ModelConfig as ModelConfig,
    )
    from taskmodels.registry.schema import (
        RegistryConfig as RegistryConfig,
    )
    from taskmodels.registry.schema import (
        TaskMapping as TaskMapping,
    )
    from taskmodels.registry.service import ModelRegistryService as ModelRegistryService
    from taskmodels.resilience.state import MemoryStateStore as MemoryStateStore
    from taskmodels.resilience.state import StateStore as StateStore
    from taskmodels.selection import (
        ModelSelectionFactory as ModelSelectionFactory,
    )
    from taskmodels.selection import (
        Selection as Selection,
    )
    from taskmodels.selection import (
        Skip as Skip,
    )
    from taskmodels.service import ModelService as ModelService
    from taskmodels.settings import Settings as Settings
    from taskmodels.tenancy import tenant_scope as tenant_scope
    from taskmodels.types import (
        Attempt as Attempt,
    )
    from taskmodels.types import (
        CompletionRequest as CompletionRequest,
    )
    from taskmodels.types import (
        CompletionResult as CompletionResult,
    )
    from taskmodels.types import (
        EmbeddingResult as EmbeddingResult,
    )
    from taskmodels.types import (
        ImagePart as ImagePart,
    )
    from taskmodels.types import (
        Message as Message,
    )
    from taskmodels.types import (
        ResponseFormat as ResponseFormat,
    )
    from taskmodels.types import (
        StreamEvent as StreamEvent,
    )
    from taskmodels.types import (
        TextPart as TextPart,
    )
    from taskmodels.types import (
        ToolCall as ToolCall,
    )
    from taskmodels.types import (
        ToolSpec as ToolSpec,
    )
    from taskmodels.types import (
        Usage as Usage,
    )
