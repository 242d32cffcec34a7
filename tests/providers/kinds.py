"""Every built-in provider, built the same way, for tests that run across all of them."""

from __future__ import annotations

from typing import Any

import httpx2
from pydantic import SecretStr

from taskmodels.providers.anthropic import AnthropicProvider
from taskmodels.providers.azure import AzureOpenAIProvider
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.gemini import GeminiProvider
from taskmodels.providers.ollama import OllamaProvider
from taskmodels.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from taskmodels.registry.schema import ModelConfig

# name -> (class, base URL given in settings, or None for the vendor's default)
KINDS: dict[str, tuple[type[BaseModelProvider], str | None]] = {
    "openai": (OpenAIProvider, None),
    "openai-compatible": (OpenAICompatibleProvider, "http://127.0.0.1:8080/v1"),
    "azure-openai": (AzureOpenAIProvider, "https://res-1.openai.azure.com"),
    "anthropic": (AnthropicProvider, None),
    "gemini": (GeminiProvider, None),
    "ollama": (OllamaProvider, None),
}

# Where each one connects, as its errors must name it: host and port only.
ENDPOINTS = {
    "openai": "api.openai.com:443",
    "openai-compatible": "127.0.0.1:8080",
    "azure-openai": "res-1.openai.azure.com:443",
    "anthropic": "api.anthropic.com:443",
    "gemini": "generativelanguage.googleapis.com:443",
    "ollama": "localhost:11434",
}


def model_for(name: str, **fields: Any) -> ModelConfig:
    base: dict[str, Any] = {
        "id": f"{name}-model",
        "provider": name,
        "model_name": "some-model",
        "max_tokens": 256,
        "temperature": 0.3,
        "context_window": 8192,
        "cost_per_1k_tokens": 0.002,
    }
    base.update(fields)
    return ModelConfig(**base)


def build(name: str, client: Any, *, key: str | None, **fields: Any) -> BaseModelProvider:
    """A provider of kind ``name`` over ``client`` (an ``httpx2`` or a legacy ``httpx`` client)."""
    cls, base_url = KINDS[name]
    client_: httpx2.AsyncClient = client
    return cls(model_for(name, **fields), client_, api_key=SecretStr(key) if key else None, base_url=base_url)
