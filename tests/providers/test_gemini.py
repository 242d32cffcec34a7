"""GeminiProvider against httpx2.MockTransport: bodies follow the Gemini API's documented formats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    IncompleteStreamError,
    InvalidResponseError,
    MissingCredentialError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.gemini import GeminiProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, Message, ResponseFormat, StreamEvent, ToolCall, ToolSpec

KEY = "AIzaSy-test-secret-0123456789"
BASE = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"


def make(mock: Any, *, key: str | None = KEY, **extra: Any) -> GeminiProvider:
    config = ModelConfig.model_validate(
        {
            "id": "flash",
            "provider": "gemini",
            "modelName": "gemini-2.5-flash",
            "maxTokens": 2048,
            "temperature": 0.7,
            "contextWindow": 1048576,
            "costPer1kTokens": 0.001,
            **extra,
        }
    )
    return GeminiProvider(config, mock.client, api_key=SecretStr(key) if key else None)


RESPONSE = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Hello"}, {"text": " there"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 40,
        "candidatesTokenCount": 8,
        "totalTokenCount": 58,
        "cachedContentTokenCount": 32,
        "thoughtsTokenCount": 10,
    },
    "modelVersion": "gemini-2.5-flash-001",
    "responseId": "mCLXaOqxKMbPz7IPx7nZ4QU",
}


async def collect(provider: GeminiProvider, request: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


def sse(*chunks: dict[str, Any]) -> bytes:
    return "".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks).encode()


# --- request -------------------------------------------------------------------------


async def test_request_defaults_and_key_in_header_only(mock_http: Any) -> None:
    mock_http.reply(200, json=RESPONSE)
    await make(mock_http).complete(CompletionRequest(prompt="Hi", system_prompt="Be brief."))
    sent = mock_http.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE}:generateContent"
    assert sent.url.query == b""
    assert KEY not in str(sent.url)
    assert sent.headers["x-goog-api-key"] == KEY
    assert mock_http.last_json() == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 2048, "temperature": 0.7},
    }


async def test_request_options_tools_history_and_extra(mock_http: Any) -> None:
    mock_http.reply(200, json=RESPONSE)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    request = CompletionRequest(
        messages=[
            Message(role="user", content="Weather?"),
            Message(role="assistant", tool_calls=(ToolCall(id="c1", name="weather", arguments='{"city": "Paris"}'),)),
            Message(role="tool", tool_call_id="c1", content='{"temp": 21}'),
            Message(role="tool", tool_call_id="c2", name="clock", content="noon"),
        ],
        max_tokens=100,
        temperature=1.7,
        top_p=0.5,
        stop=["END"],
        response_format=ResponseFormat.json_schema(schema),
        tools=[ToolSpec("weather", "Get weather", schema)],
        tool_choice={"name": "weather"},
        extra={"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]},
    )
    await make(mock_http, options={"apiVersion": "v1alpha"}).complete(request)
    assert str(mock_http.requests[0].url).endswith("/v1alpha/models/gemini-2.5-flash:generateContent")
    body = mock_http.last_json()
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 1.7,
        "topP": 0.5,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "weather", "description": "Get weather", "parametersJsonSchema": schema}]}
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]},
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 21}, "id": "c1"}},
                {"functionResponse": {"name": "clock", "response": {"result": "noon"}, "id": "c2"}},
            ],
        },
    ]
    assert "systemInstruction" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
async def test_tool_choice_mapping(mock_http: Any, choice: Any, expected: dict[str, Any]) -> None:
    mock_http.reply(200, json=RESPONSE)
    await make(mock_http).complete(CompletionRequest(prompt="x", tools=[ToolSpec("f")], tool_choice=choice))
    assert mock_http.last_json()["toolConfig"] == {"functionCallingConfig": expected}
    assert mock_http.last_json()["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


async def test_json_object_mode_sets_mime_type_only(mock_http: Any) -> None:
    mock_http.reply(200, json=RESPONSE)
    await make(mock_http).complete(CompletionRequest(prompt="x", response_format=ResponseFormat.json()))
    assert mock_http.last_json()["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in mock_http.last_json()["generationConfig"]


async def test_missing_key_is_configuration_naming_the_variables(mock_http: Any) -> None:
    mock_http.reply(200, json=RESPONSE)
    with pytest.raises(MissingCredentialError, match="GEMINI_API_KEY") as info:
        make(mock_http, key=None)
    assert not isinstance(info.value, AuthenticationError)
    assert mock_http.requests == []


async def test_missing_key_names_the_models_own_variable(mock_http: Any) -> None:
    with pytest.raises(MissingCredentialError, match="MY_GEMINI_KEY") as info:
        make(mock_http, key=None, apiKeyEnv="MY_GEMINI_KEY")
    assert info.value.variables == ("MY_GEMINI_KEY",)


async def test_models_prefix_in_model_name_is_not_doubled(mock_http: Any) -> None:
    mock_http.reply(200, json=RESPONSE)
    await make(mock_http, modelName="models/gemini-2.5-flash").complete(CompletionRequest(prompt="x"))
    assert str(mock_http.requests[0].url) == f"{BASE}:generateContent"


# --- response ------------------------------------------------------------------------


async def test_parse_text_usage_and_ids(mock_http: Any) -> None:
    mock_http.reply(200, json=RESPONSE)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    assert result.text == "Hello there"
    assert result.finish_reason == "stop"
    assert result.model_name == "gemini-2.5-flash-001"
    assert result.request_id == "mCLXaOqxKMbPz7IPx7nZ4QU"
    assert result.usage.input_tokens == 40
    assert result.usage.cached_tokens == 32
    assert result.usage.output_tokens == 18  # 8 candidates + 10 thoughts
    assert result.usage.reasoning_tokens == 10
    assert result.cost == 0.0  # the engine prices usage; the provider leaves it
    assert make(mock_http).model.cost(result.usage) == pytest.approx(58 * 0.001 / 1000)


async def test_parse_function_call_with_and_without_id(mock_http: Any) -> None:
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"id": "fc-7", "name": "clock", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    first, second = result.tool_calls
    assert (first.name, json.loads(first.arguments)) == ("weather", {"city": "Paris"})
    assert first.id.startswith("call_")
    assert second == ToolCall(id="fc-7", name="clock", arguments="{}")
    assert result.finish_reason == "tool_calls"
    assert result.text == ""


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "other"),
    ],
)
async def test_finish_reason_normalized(mock_http: Any, reason: str, expected: str) -> None:
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]}
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    assert result.finish_reason == expected


async def test_blocked_prompt_raises_content_filtered(mock_http: Any) -> None:
    answer = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {}}
    mock_http.reply(200, json=answer)
    with pytest.raises(ContentFilteredError) as info:
        await make(mock_http).complete(CompletionRequest(prompt="x"))
    assert info.value.provider_code == "SAFETY"


async def test_no_candidates_is_invalid_response(mock_http: Any) -> None:
    mock_http.reply(200, json={"usageMetadata": {}})
    with pytest.raises(InvalidResponseError):
        await make(mock_http).complete(CompletionRequest(prompt="x"))


# --- errors --------------------------------------------------------------------------


def error_body(code: int, status: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return {"error": err}


RETRY_DETAILS = [
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "58.5s"},
]

KEY_INVALID_DETAILS = [
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
]


@pytest.mark.parametrize(
    ("status", "body", "cls", "retry_after"),
    [
        (400, error_body(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), BadRequestError, None),
        (
            400,
            error_body(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
            ContextLengthExceededError,
            None,
        ),
        (
            400,
            error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", KEY_INVALID_DETAILS),
            AuthenticationError,
            None,
        ),
        (403, error_body(403, "PERMISSION_DENIED", "Permission denied."), AuthenticationError, None),
        (404, error_body(404, "NOT_FOUND", "models/gemini-nope is not found"), BadRequestError, None),
        (429, error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your quota", RETRY_DETAILS), RateLimitError, 58.5),
        (500, error_body(500, "INTERNAL", "An internal error has occurred."), ProviderUnavailableError, None),
        (503, error_body(503, "UNAVAILABLE", "The model is overloaded."), ProviderUnavailableError, None),
    ],
)
async def test_error_bodies(
    mock_http: Any, status: int, body: dict[str, Any], cls: type[ProviderError], retry_after: float | None
) -> None:
    mock_http.reply(status, json=body)
    provider = make(mock_http)
    with pytest.raises(cls) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.provider_code == body["error"]["status"]
    assert err.provider_message == body["error"]["message"]
    assert err.retry_after == retry_after
    assert (err.provider, err.model_id) == ("gemini", "flash")
    assert KEY not in str(err)


async def test_retry_after_header_wins_over_body_delay(mock_http: Any) -> None:
    body = error_body(429, "RESOURCE_EXHAUSTED", "quota", RETRY_DETAILS)
    mock_http.reply(429, json=body, headers={"retry-after": "4"})
    provider = make(mock_http)
    with pytest.raises(RateLimitError) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    assert info.value.retry_after == 4.0


async def test_error_wrapped_in_list_is_read(mock_http: Any) -> None:
    body = [error_body(503, "UNAVAILABLE", "overloaded")]
    mock_http.reply(503, json=body)
    with pytest.raises(ProviderUnavailableError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert info.value.provider_message == "overloaded"


async def test_key_never_in_repr_error_or_url(mock_http: Any) -> None:
    mock_http.reply(401, json=error_body(401, "UNAUTHENTICATED", "Request had invalid credentials."))
    provider = make(mock_http)
    with pytest.raises(AuthenticationError) as info:
        await collect(provider, CompletionRequest(prompt="x"))
    assert KEY not in repr(provider)
    assert KEY not in str(info.value)
    assert KEY not in str(mock_http.requests[0].url)
    assert KEY not in repr(provider.build_embedding_request(["a"]))


# --- streaming -----------------------------------------------------------------------


def chunk(text: str, finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r-1"}
    if usage:
        out["usageMetadata"] = usage
    return out


async def test_stream_full(mock_http: Any) -> None:
    body = sse(
        chunk("The ", usage={"promptTokenCount": 5}),
        chunk("sky "),
        chunk(
            "is blue.",
            finish="STOP",
            usage={"promptTokenCount": 5, "candidatesTokenCount": 4, "thoughtsTokenCount": 2},
        ),
    )
    mock_http.reply(200, content=body, headers={"content-type": "text/event-stream"})
    events = await collect(make(mock_http), CompletionRequest(prompt="Why?"))
    assert str(mock_http.requests[0].url) == f"{BASE}:streamGenerateContent?alt=sse"
    assert KEY not in str(mock_http.requests[0].url)
    assert [e.text for e in events if e.type == "text"] == ["The ", "sky ", "is blue."]
    done = events[-1]
    assert done.type == "done"
    assert done.finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.reasoning_tokens) == (5, 6, 2)
    assert (done.model_name, done.request_id) == ("gemini-2.5-flash", "r-1")


async def test_stream_function_call(mock_http: Any) -> None:
    call_chunk = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}],
                },
                "finishReason": "STOP",
            }
        ]
    }
    mock_http.reply(200, content=sse(call_chunk))
    events = await collect(make(mock_http), CompletionRequest(prompt="x"))
    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert len(calls) == 1
    assert calls[0] is not None
    assert (calls[0].name, calls[0].arguments) == ("weather", '{"city": "Oslo"}')
    assert events[-1].finish_reason == "tool_calls"


async def test_stream_cut_without_finish_reason_is_incomplete(mock_http: Any) -> None:
    body = sse(chunk("The "), chunk("sky "))
    received: list[StreamEvent] = []

    async def consume() -> None:
        mock_http.reply(200, content=body)
        async for event in make(mock_http).stream(CompletionRequest(prompt="x")):
            received.append(event)

    with pytest.raises(IncompleteStreamError):
        await consume()
    assert [e.text for e in received] == ["The ", "sky "]


async def test_stream_malformed_event_is_invalid_response(mock_http: Any) -> None:
    body = sse(chunk("a")) + b"data: {broken\r\n\r\n"
    mock_http.reply(200, content=body)
    with pytest.raises(InvalidResponseError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert not isinstance(info.value, IncompleteStreamError)


async def test_stream_error_chunk_is_mapped(mock_http: Any) -> None:
    body = sse(chunk("a"), error_body(503, "UNAVAILABLE", "The model is overloaded."))
    mock_http.reply(200, content=body)
    with pytest.raises(ProviderUnavailableError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert info.value.provider_code == "UNAVAILABLE"
    assert info.value.status_code == 503


async def test_stream_blocked_prompt_raises_content_filtered(mock_http: Any) -> None:
    body = sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    mock_http.reply(200, content=body)
    with pytest.raises(ContentFilteredError):
        await collect(make(mock_http), CompletionRequest(prompt="x"))


# --- embeddings ----------------------------------------------------------------------


async def test_embeddings(mock_http: Any) -> None:
    mock_http.reply(200, json={"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]})
    provider = make(mock_http, modelName="gemini-embedding-001")
    assert type(provider).build_embedding_request is not BaseModelProvider.build_embedding_request
    result = await provider.embed(["a", "b"])
    assert str(mock_http.requests[0].url) == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
    )
    assert mock_http.requests[0].headers["x-goog-api-key"] == KEY
    assert mock_http.last_json() == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    assert result.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert (result.model_id, result.provider) == ("flash", "gemini")


async def test_embedding_body_without_embeddings_is_invalid(mock_http: Any) -> None:
    mock_http.reply(200, json={"oops": 1})
    with pytest.raises(InvalidResponseError):
        await make(mock_http).embed(["a"])
