"""Azure OpenAI: the OpenAI mapping at deployment URLs, with ``api-version`` and an ``api-key`` header.

The endpoint is the model's ``baseUrl`` or ``AZURE_OPENAI_ENDPOINT``
(``https://<resource>.openai.azure.com``). Options: ``deployment`` (defaults to
``modelName``) and ``apiVersion``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx2
from pydantic import SecretStr

from taskmodels.providers.openai import OpenAIProvider
from taskmodels.registry.schema import ModelConfig

__all__ = ["DEFAULT_AZURE_API_VERSION", "AzureOpenAIProvider"]

DEFAULT_AZURE_API_VERSION = "2024-10-21"
"""The latest GA data-plane version when this was written; it knows ``stream_options`` and ``max_completion_tokens``."""


class AzureOpenAIProvider(OpenAIProvider):
    """Chat Completions and embeddings on an Azure OpenAI resource."""

    name: ClassVar[str] = "azure-openai"
    default_base_url: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = True
    api_key_env_var: ClassVar[str | None] = "AZURE_OPENAI_API_KEY"
    request_id_headers: ClassVar[tuple[str, ...]] = ("apim-request-id", "x-request-id")

    def __init__(
        self,
        model: ModelConfig,
        client: httpx2.AsyncClient,
        *,
        api_key: SecretStr | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not (model.base_url or base_url):
            # Name the variable to set: the base class's message only says a baseUrl is missing.
            raise ValueError(
                f"model {model.id!r}: provider 'azure-openai' needs an endpoint: set AZURE_OPENAI_ENDPOINT "
                "or the model's baseUrl (https://<resource>.openai.azure.com)"
            )
        super().__init__(model, client, api_key=api_key, base_url=base_url, headers=headers, options=options)

    @property
    def deployment(self) -> str:
        return str(self.options.get("deployment") or self.model.model_name)

    @property
    def api_version(self) -> str:
        return str(self.options.get("apiVersion") or DEFAULT_AZURE_API_VERSION)

    def _deployment_url(self, operation: str) -> str:
        query = urlencode({"api-version": self.api_version})
        return f"{self.base_url}/openai/deployments/{quote(self.deployment, safe='')}/{operation}?{query}"

    def completion_url(self) -> str:
        return self._deployment_url("chat/completions")

    def embedding_url(self) -> str:
        return self._deployment_url("embeddings")

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}
