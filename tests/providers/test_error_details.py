"""Errors built complete: the sizes a context-length error states, where a connection failed,
and no key in any field, header or cut error page. Bodies are the vendors' documented ones."""

from __future__ import annotations

import json
import pickle
from typing import Any

import httpx2
import pytest

from taskmodels.errors import (
    ContextLengthExceededError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from taskmodels.providers.error_body import TEXT_LIMIT
from taskmodels.types import CompletionRequest, StreamEvent
from tests.providers.kinds import ENDPOINTS, KINDS, build

REQUEST = CompletionRequest(prompt="x")
KEY = "sk-detail-SENTINEL-7f3a9c1e5b2d8f4a6c0e"


def everything_kept(error: BaseException) -> str:
    """Every way an error's text can travel on: str, repr, args, attributes, pickle."""
    return " ".join([str(error), repr(error), repr(error.args), repr(vars(error)), repr(pickle.dumps(error))])


# --- context length: the sizes the provider states ----------------------------------------

OPENAI_BODY = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9631 "
        "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
VLLM_BODY = {
    "object": "error",
    "message": "This model's maximum context length is 16384 tokens. However, you requested 122946 tokens "
    "(112946 in the messages, 10000 in the completion). Please reduce the length of the messages or completion.",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
LLAMACPP_BODY = {
    "error": {
        "code": 400,
        "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 4476,
        "n_ctx": 4096,
    }
}
ANTHROPIC_BODY = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "prompt is too long: 209353 tokens > 199999 maximum"},
    "request_id": "req_011CWAgPbMohjStFaYrkLZCm",
}
ANTHROPIC_WITH_OUTPUT_BODY = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, "
        "decrease input length or `max_tokens` and try again",
    },
}
GEMINI_BODY = {
    "error": {
        "code": 400,
        "message": "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
        "status": "INVALID_ARGUMENT",
    }
}


@pytest.mark.parametrize(
    ("kind", "body", "requested", "limit"),
    [
        ("openai", OPENAI_BODY, 9631, 8192),
        ("azure-openai", OPENAI_BODY, 9631, 8192),
        ("openai-compatible", VLLM_BODY, 122946, 16384),
        ("openai-compatible", LLAMACPP_BODY, 4476, 4096),
        ("openai-compatible", {"error": {**LLAMACPP_BODY["error"], "n_prompt_tokens": None}}, 4476, 4096),
        ("anthropic", ANTHROPIC_BODY, 209353, 199999),
        ("anthropic", ANTHROPIC_WITH_OUTPUT_BODY, 188240 + 21333, 200000),
        ("gemini", GEMINI_BODY, 1200293, 1048576),
        ("gemini", [GEMINI_BODY], 1200293, 1048576),  # streaming endpoints wrap it in a list
        ("ollama", LLAMACPP_BODY, 4476, 4096),  # Ollama on its llama.cpp engine
    ],
)
async def test_context_length_carries_the_stated_sizes(
    mock_http: Any, kind: str, body: Any, requested: int, limit: int
) -> None:
    mock_http.reply(400, json=body)
    provider = build(kind, mock_http.client, key=KEY)
    with pytest.raises(ContextLengthExceededError) as info:
        await provider.complete(REQUEST)
    assert (info.value.requested_tokens, info.value.limit_tokens) == (requested, limit)
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("openai", {"error": {"message": "Too long.", "code": "context_length_exceeded"}}),
        ("ollama", {"error": "input length exceeds the context length"}),
    ],
)
async def test_context_length_without_sizes_leaves_them_unknown(mock_http: Any, kind: str, body: Any) -> None:
    mock_http.reply(400, json=body)
    with pytest.raises(ContextLengthExceededError) as info:
        await build(kind, mock_http.client, key=KEY).complete(REQUEST)
    assert (info.value.requested_tokens, info.value.limit_tokens) == (None, None)


async def test_context_length_inside_a_stream_carries_the_sizes(mock_http: Any) -> None:
    mock_http.reply_stream([f"data: {json.dumps(LLAMACPP_BODY)}\n\n"])
    provider = build("openai-compatible", mock_http.client, key=None)
    with pytest.raises(ContextLengthExceededError) as info:
        _ = [event async for event in provider.stream(REQUEST)]
    assert (info.value.requested_tokens, info.value.limit_tokens) == (4476, 4096)
    assert info.value.status_code == 400  # the status the error object itself carries


# --- connection failures say where -------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize(
    ("exc", "cls", "wording"),
    [
        (httpx2.ConnectError("refused"), ProviderConnectionError, "could not reach {kind} at {where} (ConnectError)"),
        (httpx2.ReadTimeout("slow"), ProviderTimeoutError, "{kind} at {where} timed out (ReadTimeout)"),
    ],
)
async def test_transport_failures_name_host_and_port_never_the_path(
    mock_http: Any, kind: str, exc: Exception, cls: type[ProviderError], wording: str
) -> None:
    mock_http.fail(exc)
    provider = build(kind, mock_http.client, key=KEY)
    for attempt in (provider.complete(REQUEST), _drain(provider.stream(REQUEST))):
        with pytest.raises(cls) as info:
            await attempt
        assert info.value.message == wording.format(kind=kind, where=ENDPOINTS[kind])
        sent = mock_http.requests[-1].url
        assert sent.path not in info.value.message
        assert "?" not in info.value.message


async def _drain(events: Any) -> list[StreamEvent]:
    return [event async for event in events]


# --- no key in anything an error keeps ----------------------------------------------------

AZURE_HEX_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_key_echoed_in_code_message_and_request_id_header_is_redacted(mock_http: Any, kind: str) -> None:
    key = AZURE_HEX_KEY if kind == "azure-openai" else KEY
    body = {"error": {"message": f"Incorrect API key provided: {key}", "type": f"Bearer {key}", "code": f"k={key}"}}
    mock_http.reply(401, json=body, headers={"x-request-id": f"rid-{key}", "request-id": f"rid-{key}"})
    with pytest.raises(ProviderError) as info:
        await build(kind, mock_http.client, key=key).complete(REQUEST)
    kept = everything_kept(info.value)
    assert key not in kept
    assert key[:12] not in kept
    assert info.value.provider_message is not None
    assert "Incorrect API key provided" in info.value.provider_message  # the rest of the text stays


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("offset", [TEXT_LIMIT - 30, TEXT_LIMIT - 20, TEXT_LIMIT - 9, TEXT_LIMIT - 4, TEXT_LIMIT])
async def test_a_key_straddling_the_cut_of_an_html_error_page_leaves_no_fragment(
    mock_http: Any, kind: str, offset: int
) -> None:
    key = AZURE_HEX_KEY if kind == "azure-openai" else KEY
    page = "<html>" + "x" * (offset - 6) + key + "</html>" + "y" * 600
    assert page.index(key) == offset
    mock_http.reply(502, content=page)
    with pytest.raises(ProviderUnavailableError) as info:
        await build(kind, mock_http.client, key=key).complete(REQUEST)
    kept = everything_kept(info.value)
    for start in range(len(key) - 8 + 1):
        assert key[start : start + 8] not in kept, f"an 8-character fragment of the key survived at {start}"
    assert info.value.provider_message is not None
    assert len(info.value.provider_message) <= TEXT_LIMIT
