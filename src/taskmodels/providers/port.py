"""The provider port: the narrow interface the call engine uses to reach one model.

The engine needs only three calls and the model they serve. Everything about HTTP
(building requests, parsing answers, mapping errors) lives behind it, in
``BaseModelProvider``; a test double such as ``taskmodels.testing.FakeProvider``
implements this port directly, with no wire methods at all.

``ProviderClass`` is what ``ModelProviderFactory`` builds ports from: a class taking
the model, the pooled HTTP client and the settings' key, base URL, headers and options.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx2
    from pydantic import SecretStr

    from taskmodels.registry.schema import ModelConfig
    from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent

__all__ = ["PORT_METHODS", "ModelPort", "ProviderClass", "is_provider_class"]

PORT_METHODS = ("complete", "stream", "embed")


class ModelPort(Protocol):
    """One model, reachable. Every failure is raised as a ``taskmodels.errors.ProviderError``."""

    @property
    def model(self) -> ModelConfig:
        """The registry entry this port serves."""
        ...

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        """The whole answer. ``cost`` is left at 0.0: the engine prices ``usage``."""
        ...

    def stream(
        self,
        request: CompletionRequest,
        *,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The answer as events; the last one is ``done`` (with ``usage``), else an error is raised.

        ``first_token_timeout`` bounds the wait for the first event, ``stall_timeout`` the wait
        between two events.
        """
        ...

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """One vector per text, in order."""
        ...


class ProviderClass(Protocol):
    """A class ``ModelProviderFactory`` can build a ``ModelPort`` from."""

    name: str

    def __call__(
        self,
        model: ModelConfig,
        client: httpx2.AsyncClient,
        *,
        api_key: SecretStr | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ModelPort: ...


def is_provider_class(obj: object) -> bool:
    """Whether ``obj`` is a class whose instances have the port's methods (a structural check)."""
    return isinstance(obj, type) and all(callable(getattr(obj, name, None)) for name in PORT_METHODS)
