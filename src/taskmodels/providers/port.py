"""The provider port: what the call engine needs from a model's provider, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent

__all__ = ["ModelPort"]


class ModelPort(Protocol):
    """One model behind one endpoint: complete, stream (ending in ``done``) and embed, raising ``ProviderError``s."""

    model: ModelConfig

    async def complete(self, request: CompletionRequest) -> CompletionResult: ...

    def stream(
        self,
        request: CompletionRequest,
        *,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
    ) -> AsyncIterator[StreamEvent]: ...

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult: ...
