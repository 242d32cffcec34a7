"""Azure OpenAI: deployment URLs, api-version, the api-key header and Azure's content-filter errors."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentFilteredError,
    MissingCredentialError,
    RateLimitError,
)
from taskmodels.providers.azure import DEFAULT_AZURE_API_VERSION, AzureOpenAIProvider
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.settings import Settings
from taskmodels.types import CompletionRequest

KEY = "azure-key-0123456789abcdef"
ENDPOINT = "https://my-resource.openai.azure.com"

# Azure's documented chat completion, with its content-filter annotations.
AZURE_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn",
    "object": "chat.completion",
    "created": 1686676106,
    "model": "gpt-4o-2024-05-13",
    "prompt_filter_results": [
        {
            "prompt_index": 0,
            "content_filter_results": {
                "hate": {"filtered": False, "severity": "safe"},
                "self_harm": {"filtered": False, "severity": "safe"},
            },
        }
    ],
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Yes, Azure OpenAI supports customer managed keys."},
            "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
        }
    ],
    "usage": {"completion_tokens": 557, "prompt_tokens": 33, "total_tokens": 590},
}

# Azure's documented answer when the prompt trips the content filter.
CONTENT_FILTER_ERROR: dict[str, Any] = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
        "Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": True, "severity": "high"},
                "jailbreak": {"filtered": False, "detected": False},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": False, "severity": "safe"},
            },
        },
    }
}


def azure(make_model: Any, client: httpx2.AsyncClient, **kw: Any) -> AzureOpenAIProvider:
    model = make_model(provider="azure-openai", model_name="gpt-4o", **kw.pop("model", {}))
    kw.setdefault("base_url", ENDPOINT)
    return AzureOpenAIProvider(model, client, api_key=SecretStr(KEY), **kw)


async def test_chat_url_header_and_body(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=AZURE_RESPONSE, headers={"apim-request-id": "apim-1"})
    result = await azure(make_model, mock_http.client).complete(CompletionRequest(prompt="hi", max_tokens=10))
    sent = mock_http.requests[0]
    assert (
        str(sent.url)
        == f"{ENDPOINT}/openai/deployments/gpt-4o/chat/completions?api-version={DEFAULT_AZURE_API_VERSION}"
    )
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert KEY not in str(sent.url)
    body = json.loads(sent.content)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_completion_tokens"] == 10
    assert result.text == "Yes, Azure OpenAI supports customer managed keys."
    assert result.provider == "azure-openai"
    assert result.model_name == "gpt-4o-2024-05-13"
    assert result.request_id == "apim-1"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (33, 557)


async def test_deployment_and_api_version_from_options(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=AZURE_RESPONSE)
    provider = azure(
        make_model,
        mock_http.client,
        model={"options": {"deployment": "prod chat", "apiVersion": "2025-01-01-preview"}},
        base_url=ENDPOINT + "/",
    )
    await provider.complete(CompletionRequest(prompt="hi"))
    url = mock_http.requests[0].url
    assert url.raw_path.startswith(b"/openai/deployments/prod%20chat/chat/completions?")
    assert url.params["api-version"] == "2025-01-01-preview"


async def test_embeddings_url(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(
        json={
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
    )
    provider = azure(make_model, mock_http.client, model={"options": {"deployment": "embed"}})
    result = await provider.embed(["hello"])
    sent = mock_http.requests[0]
    assert str(sent.url) == f"{ENDPOINT}/openai/deployments/embed/embeddings?api-version={DEFAULT_AZURE_API_VERSION}"
    assert sent.headers["api-key"] == KEY
    assert result.vectors == [[0.5, -0.5]]
    assert result.usage.input_tokens == 3


async def test_content_filter_error(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(400, json=CONTENT_FILTER_ERROR)
    with pytest.raises(ContentFilteredError) as info:
        await azure(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert info.value.status_code == 400
    assert info.value.provider_code == "content_filter"
    assert "content management policy" in (info.value.provider_message or "")
    assert info.value.provider == "azure-openai"


async def test_rate_limit_with_retry_after_ms(mock_http: Any, make_model: Any) -> None:
    body = {
        "error": {
            "code": "429",
            "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 "
            "have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds.",
        }
    }
    mock_http.reply(429, json=body, headers={"retry-after": "6", "retry-after-ms": "5400"})
    with pytest.raises(RateLimitError) as info:
        await azure(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert info.value.retry_after == 5.4


async def test_wrong_key(mock_http: Any, make_model: Any) -> None:
    body = {
        "error": {
            "code": "401",
            "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
            "valid key for an active subscription and use a correct regional API endpoint for your resource.",
        }
    }
    mock_http.reply(401, json=body)
    with pytest.raises(AuthenticationError) as info:
        await azure(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert KEY not in str(info.value)


async def test_stream_content_filter_finish(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    # Azure sends a first chunk with only prompt_filter_results and no choices.
    mock_http.reply_stream(
        [
            sse_body(
                {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": []},
                {"choices": [{"index": 0, "delta": {"content": "Once"}, "finish_reason": None}], "model": "gpt-4o"},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}], "model": "gpt-4o"},
            )
        ]
    )
    events = [e async for e in azure(make_model, mock_http.client).stream(CompletionRequest(prompt="x"))]
    assert [e.text for e in events if e.type == "text"] == ["Once"]
    assert events[-1].finish_reason == "content_filter"
    assert events[-1].model_name == "gpt-4o"


async def test_missing_key_names_the_azure_variable(mock_http: Any, make_model: Any) -> None:
    with pytest.raises(MissingCredentialError, match="AZURE_OPENAI_API_KEY"):
        AzureOpenAIProvider(make_model(provider="azure-openai"), mock_http.client, base_url=ENDPOINT)
    assert mock_http.requests == []


def test_missing_endpoint_names_the_variable(make_model: Any) -> None:
    with pytest.raises(ValueError, match="AZURE_OPENAI_ENDPOINT"):
        AzureOpenAIProvider(make_model(provider="azure-openai"), httpx2.AsyncClient(), api_key=SecretStr(KEY))


def test_factory_reads_endpoint_and_key_from_settings(make_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    factory = ModelProviderFactory(Settings(_env_file=None), httpx2.AsyncClient(), discover_entry_points=False)
    provider = factory.create_provider_for_model(make_model(provider="azure-openai"))
    assert isinstance(provider, AzureOpenAIProvider)
    assert provider.base_url == ENDPOINT
    assert provider.request_headers()["api-key"] == KEY
    assert KEY not in repr(provider)


def test_factory_without_endpoint_is_a_configuration_error(make_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    monkeypatch.delenv("TASKMODELS_AZURE_OPENAI_ENDPOINT", raising=False)
    factory = ModelProviderFactory(Settings(_env_file=None), httpx2.AsyncClient(), discover_entry_points=False)
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        factory.create_provider_for_model(make_model(provider="azure-openai"))
