"""A key a server quotes back never travels on in an error a provider builds, on any path."""

from __future__ import annotations

import httpx2
from pydantic import SecretStr

from taskmodels.errors import AuthenticationError, ProviderUnavailableError
from taskmodels.log import REDACTED
from taskmodels.providers.openai import OpenAIProvider
from taskmodels.registry.schema import ModelConfig

KEY = "sk-echoed-0123456789abcdef"


def provider() -> OpenAIProvider:
    model = ModelConfig.model_validate(
        {
            "id": "m",
            "provider": "openai",
            "modelName": "gpt-4o-mini",
            "maxTokens": 16,
            "temperature": 0,
            "contextWindow": 1024,
            "costPer1kTokens": 0,
        }
    )
    return OpenAIProvider(model, httpx2.AsyncClient(), api_key=SecretStr(KEY))


def test_an_http_error_body_quoting_the_key_is_redacted() -> None:
    body = b'{"error": {"message": "Incorrect API key provided: ' + KEY.encode() + b'", "code": "invalid_api_key"}}'
    error = provider().parse_error(401, httpx2.Headers(), body)
    assert isinstance(error, AuthenticationError)
    assert KEY not in str(error)
    assert KEY not in (error.provider_message or "")
    assert REDACTED in error.provider_message  # type: ignore[operator]


def test_an_error_built_without_a_status_is_redacted_too() -> None:
    # Mid-stream error events have no HTTP status; they are built through the same path.
    error = provider().error(ProviderUnavailableError, f"stream failed: {KEY}", provider_message=f"bad key {KEY}")
    assert KEY not in str(error)
    assert error.provider_message == f"bad key {REDACTED}"
