"""OpenAI and OpenAI-compatible mapping over httpx2.MockTransport: requests, responses, errors, streams."""

from __future__ import annotations

import json
from typing import Any

import httpx2
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
    ProviderConnectionError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from taskmodels.types import CompletionRequest, Message, ResponseFormat, StreamEvent, ToolCall, ToolSpec

KEY = "sk-test-very-secret-0123456789"

# The documented Chat Completions response (platform.openai.com/docs/api-reference/chat/object).
CHAT_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The image shows a wooden boardwalk.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 12,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}

TOOL_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_current_weather", "arguments": '{\n"location": "Boston, MA"\n}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}


def openai(make_model: Any, client: httpx2.AsyncClient, **kw: Any) -> OpenAIProvider:
    model = make_model(**kw.pop("model", {}))
    return OpenAIProvider(model, client, api_key=SecretStr(KEY), **kw)


def compatible(make_model: Any, client: httpx2.AsyncClient, **kw: Any) -> OpenAICompatibleProvider:
    model = make_model(provider="openai-compatible", model_name="local-model", **kw.pop("model", {}))
    return OpenAICompatibleProvider(model, client, base_url="http://127.0.0.1:8080/v1", **kw)


# --- requests ----------------------------------------------------------------------------


async def test_request_has_url_auth_and_registry_defaults(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="hi"))
    sent = mock_http.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(sent.url)
    body = json.loads(sent.content)
    assert body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 256,
        "temperature": 0.3,
    }


async def test_request_maps_every_option(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    request = CompletionRequest(
        system_prompt="be brief",
        messages=[
            Message(role="user", content="weather?", name="ann"),
            Message(role="assistant", tool_calls=(ToolCall(id="call_1", name="weather", arguments='{"c":"X"}'),)),
            Message(role="tool", content='{"t": 20}', tool_call_id="call_1"),
        ],
        prompt="and tomorrow?",
        max_tokens=50,
        temperature=0.0,
        top_p=0.9,
        stop=["\n\n", "END"],
        response_format=ResponseFormat.json_schema(schema, name="answer", strict=True),
        tools=[ToolSpec(name="weather", description="Weather for a city", parameters={"type": "object"})],
        tool_choice="required",
        extra={"seed": 7, "temperature": 0.5},
    )
    await openai(make_model, mock_http.client).complete(request)
    body = mock_http.last_json()
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"c":"X"}'}}
            ],
        },
        {"role": "tool", "content": '{"t": 20}', "tool_call_id": "call_1"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n\n", "END"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "weather", "description": "Weather for a city", "parameters": {"type": "object"}},
        }
    ]
    assert body["tool_choice"] == "required"
    assert body["seed"] == 7
    assert body["temperature"] == 0.5  # extra is merged last
    assert "stream" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("weather", {"type": "function", "function": {"name": "weather"}}),
        ({"type": "function", "function": {"name": "x"}}, {"type": "function", "function": {"name": "x"}}),
    ],
)
async def test_tool_choice(mock_http: Any, make_model: Any, choice: Any, expected: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x", tool_choice=choice))
    assert mock_http.last_json()["tool_choice"] == expected


async def test_json_mode_and_plain_text_format(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    provider = openai(make_model, mock_http.client)
    await provider.complete(CompletionRequest(prompt="x", response_format=ResponseFormat.json()))
    assert mock_http.last_json()["response_format"] == {"type": "json_object"}
    await provider.complete(CompletionRequest(prompt="x", response_format=ResponseFormat(type="text")))
    assert "response_format" not in mock_http.last_json()


async def test_stream_request_asks_for_usage(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    mock_http.reply_stream([sse_body({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})])
    events = [e async for e in openai(make_model, mock_http.client).stream(CompletionRequest(prompt="x"))]
    body = mock_http.last_json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert events[-1].type == "done"


async def test_options_choose_max_tokens_field_stream_usage_and_account_headers(
    mock_http: Any, make_model: Any, sse_body: Any
) -> None:
    mock_http.reply_stream([sse_body({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})])
    provider = openai(
        make_model,
        mock_http.client,
        options={"maxTokensField": "max_tokens", "streamUsage": False, "organization": "org-1", "project": "p-1"},
        headers={"X-Title": "demo"},
    )
    _ = [e async for e in provider.stream(CompletionRequest(prompt="x"))]
    body = mock_http.last_json()
    assert body["max_tokens"] == 256
    assert "max_completion_tokens" not in body
    assert "stream_options" not in body
    sent = mock_http.requests[0]
    assert sent.headers["openai-organization"] == "org-1"
    assert sent.headers["openai-project"] == "p-1"
    assert sent.headers["x-title"] == "demo"


async def test_send_temperature_option(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    provider = openai(make_model, mock_http.client, model={"options": {"sendTemperature": False}})
    await provider.complete(CompletionRequest(prompt="x", temperature=0.2))
    assert "temperature" not in mock_http.last_json()


async def test_missing_key_fails_before_sending_and_names_the_variable(mock_http: Any, make_model: Any) -> None:
    with pytest.raises(MissingCredentialError, match="OPENAI_API_KEY") as info:
        OpenAIProvider(make_model(), mock_http.client)
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.provider == "openai"
    assert info.value.model_id == "test-model"
    assert mock_http.requests == []


async def test_missing_key_names_the_models_own_variable(mock_http: Any, make_model: Any) -> None:
    with pytest.raises(MissingCredentialError, match="MY_TEAM_OPENAI_KEY"):
        OpenAIProvider(make_model(api_key_env="MY_TEAM_OPENAI_KEY"), mock_http.client)


async def test_compatible_without_key_sends_no_authorization(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    await compatible(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    sent = mock_http.requests[0]
    assert str(sent.url) == "http://127.0.0.1:8080/v1/chat/completions"
    assert "authorization" not in sent.headers
    body = json.loads(sent.content)
    assert body["max_tokens"] == 256
    assert "max_completion_tokens" not in body
    assert body["model"] == "local-model"


async def test_compatible_with_key_and_model_base_url(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE)
    provider = compatible(
        make_model, mock_http.client, model={"base_url": "https://api.groq.com/openai/v1/"}, api_key=SecretStr(KEY)
    )
    await provider.complete(CompletionRequest(prompt="x"))
    assert str(mock_http.requests[0].url) == "https://api.groq.com/openai/v1/chat/completions"
    assert mock_http.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_compatible_requires_a_base_url(make_model: Any) -> None:
    with pytest.raises(ValueError, match="baseUrl"):
        OpenAICompatibleProvider(make_model(provider="openai-compatible"), httpx2.AsyncClient())


def test_key_is_not_in_repr(make_model: Any) -> None:
    provider = openai(make_model, httpx2.AsyncClient())
    assert KEY not in repr(provider)
    assert KEY not in repr(provider.build_completion_request(CompletionRequest(prompt="x"), stream=False))


# --- responses ---------------------------------------------------------------------------


async def test_parses_documented_response(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=CHAT_RESPONSE, headers={"x-request-id": "req_123"})
    result = await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert result.text == "The image shows a wooden boardwalk."
    assert result.finish_reason == "stop"
    assert result.model_name == "gpt-4o-2024-08-06"
    assert result.model_id == "test-model"
    assert result.provider == "openai"
    assert result.request_id == "req_123"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1117, 46)
    assert result.usage.cached_tokens == 1024
    assert result.usage.reasoning_tokens == 12
    assert result.cost == 0.0  # the engine prices usage; the provider leaves it
    assert make_model().cost(result.usage) == pytest.approx((1117 + 46) * 0.002 / 1000)
    assert result.tool_calls == ()


async def test_parses_tool_calls_with_null_content(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json=TOOL_RESPONSE)
    result = await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (
        ToolCall(id="call_abc123", name="get_current_weather", arguments='{\n"location": "Boston, MA"\n}'),
    )
    assert result.request_id == "chatcmpl-abc123"  # no header: the body's id


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("something_new", "other"),
    ],
)
async def test_finish_reasons_are_normalized(mock_http: Any, make_model: Any, raw: str, normalized: str) -> None:
    body = json.loads(json.dumps(CHAT_RESPONSE))
    body["choices"][0]["finish_reason"] = raw
    mock_http.reply(json=body)
    result = await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert result.finish_reason == normalized


async def test_content_as_list_of_parts(mock_http: Any, make_model: Any) -> None:
    body = json.loads(json.dumps(CHAT_RESPONSE))
    body["choices"][0]["message"]["content"] = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    mock_http.reply(json=body)
    result = await compatible(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert result.text == "ab"


async def test_body_without_choices_is_invalid_response(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json={"id": "x", "object": "chat.completion"})
    with pytest.raises(InvalidResponseError) as info:
        await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert info.value.status_code == 200


async def test_error_object_in_a_200_body_is_mapped(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json={"error": {"message": "model overloaded", "type": "server_error", "code": None}})
    with pytest.raises(ProviderUnavailableError, match="model overloaded"):
        await compatible(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))


# --- errors ------------------------------------------------------------------------------


def err(message: str, type_: str | None, code: Any = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@pytest.mark.parametrize(
    "case",
    [
        (
            401,
            err(
                "Incorrect API key provided: sk-abc***. You can find your API key at ...",
                "invalid_request_error",
                "invalid_api_key",
            ),
            {},
            AuthenticationError,
            "invalid_api_key",
        ),
        (
            403,
            err("You are not allowed to sample from this model", "invalid_request_error"),
            {},
            AuthenticationError,
            "invalid_request_error",
        ),
        (
            429,
            err(
                "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM).",
                "tokens",
                "rate_limit_exceeded",
            ),
            {"retry-after": "7"},
            RateLimitError,
            "rate_limit_exceeded",
        ),
        (
            429,
            err(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
            {},
            RateLimitError,
            "insufficient_quota",
        ),
        (
            500,
            err("The server had an error while processing your request. Sorry about that!", "server_error"),
            {},
            ProviderUnavailableError,
            "server_error",
        ),
        (
            503,
            err("The engine is currently overloaded, please try again later", "server_error"),
            {},
            ProviderUnavailableError,
            "server_error",
        ),
        (
            400,
            err(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 "
                "tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
            {},
            ContextLengthExceededError,
            "context_length_exceeded",
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "request (4476 tokens) exceeds the available context size (4096 tokens)",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 4476,
                    "n_ctx": 4096,
                }
            },
            {},
            ContextLengthExceededError,
            "exceed_context_size_error",
        ),
        (
            400,
            {
                "object": "error",
                "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            {},
            ContextLengthExceededError,
            "BadRequestError",
        ),
        (
            400,
            err(
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            ),
            {},
            ContentFilteredError,
            "content_policy_violation",
        ),
        (
            400,
            err(
                "Invalid value for 'temperature': expected a number <= 2.", "invalid_request_error", None, "temperature"
            ),
            {},
            BadRequestError,
            "invalid_request_error",
        ),
        (
            404,
            err(
                "The model `gpt-9` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
            {},
            BadRequestError,
            "model_not_found",
        ),
    ],
)
async def test_documented_error_bodies(mock_http: Any, make_model: Any, case: tuple[Any, ...]) -> None:
    status, body, headers, cls, code = case
    mock_http.reply(status, json=body, headers={"x-request-id": "req_err", **headers})
    with pytest.raises(cls) as info:
        await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.provider_code == code
    assert error.provider == "openai"
    assert error.model_id == "test-model"
    assert error.request_id == "req_err"
    message = body["error"]["message"] if "error" in body else body["message"]
    assert error.provider_message == message
    assert KEY not in str(error)


async def test_rate_limit_retry_after_headers(mock_http: Any, make_model: Any) -> None:
    body = err("Rate limit reached", "requests", "rate_limit_exceeded")
    mock_http.reply(429, json=body, headers={"retry-after": "20"})
    mock_http.reply(429, json=body, headers={"retry-after-ms": "1500", "retry-after": "2"})
    mock_http.reply(429, json=body)
    provider = openai(make_model, mock_http.client)
    retry_afters = []
    for _ in range(3):
        with pytest.raises(RateLimitError) as info:
            await provider.complete(CompletionRequest(prompt="x"))
        retry_afters.append(info.value.retry_after)
    assert retry_afters == [20.0, 1.5, None]


async def test_error_body_that_is_not_json(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(502, content=b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(ProviderUnavailableError) as info:
        await openai(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert info.value.status_code == 502
    assert "502 Bad Gateway" in (info.value.provider_message or "")


async def test_fastapi_detail_error_body(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(422, json={"detail": "messages: field required"})
    with pytest.raises(BadRequestError) as info:
        await compatible(make_model, mock_http.client).complete(CompletionRequest(prompt="x"))
    assert info.value.provider_message == "messages: field required"
    assert info.value.status_code == 422


async def test_key_never_in_error_text(mock_http: Any, make_model: Any) -> None:
    mock_http.fail(httpx2.ConnectError("connection refused"))
    provider = openai(make_model, mock_http.client)
    with pytest.raises(ProviderConnectionError) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


# --- streams -----------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


USAGE_CHUNK: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion.chunk",
    "created": 1694268190,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 2,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 1},
    },
}


async def collect_into(events: Any, into: list[StreamEvent]) -> None:
    async for event in events:
        into.append(event)


async def collect(provider: Any, request: CompletionRequest | None = None) -> list[StreamEvent]:
    return [e async for e in provider.stream(request or CompletionRequest(prompt="x"))]


async def test_full_stream_with_keepalives_and_usage(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    body = (
        ": keep-alive\n\n"
        + sse_body(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello"}),
            done=False,
        )
        + ": OPENROUTER PROCESSING\n\n"
        + sse_body(chunk({"content": " world"}), chunk({}, "stop"), USAGE_CHUNK)
    )
    # Split mid-line and mid-event: the reader must reassemble.
    mock_http.reply_stream([body[:37], body[37:120], body[120:]])
    events = await collect(openai(make_model, mock_http.client))
    assert [(e.type, e.text) for e in events[:-1]] == [("text", "Hello"), ("text", " world")]
    done = events[-1]
    assert done.type == "done"
    assert done.finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (9, 2)
    assert (done.usage.cached_tokens, done.usage.reasoning_tokens) == (4, 1)
    assert done.model_name == "gpt-4o-mini-2024-07-18"
    assert done.model_id == "test-model"
    assert done.request_id == "chatcmpl-123"


async def test_multiline_data_event_is_joined(mock_http: Any, make_model: Any) -> None:
    # A server may split one JSON payload over several data: lines; they join with newlines.
    payload = json.dumps(chunk({"content": "hi"}), indent=1).split("\n")
    body = "".join(f"data: {line}\n" for line in payload) + "\n" + "data: " + json.dumps(chunk({}, "length")) + "\n\n"
    body += "data: [DONE]\n\n"
    mock_http.reply_stream([body])
    events = await collect(compatible(make_model, mock_http.client))
    assert [e.text for e in events if e.type == "text"] == ["hi"]
    assert events[-1].finish_reason == "length"
    assert events[-1].usage is None  # the server sent none


async def test_stream_tool_calls_assembled_by_index(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    fragments = [
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    mock_http.reply_stream([sse_body(*fragments)])
    events = await collect(openai(make_model, mock_http.client))
    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert calls == [
        ToolCall(id="call_a", name="weather", arguments='{"city": "Paris"}'),
        ToolCall(id="call_b", name="time", arguments="{}"),
    ]
    assert events[-1].type == "done"
    assert events[-1].finish_reason == "tool_calls"


async def test_stream_without_done_after_finish_is_finalized(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    mock_http.reply_stream([sse_body(chunk({"content": "ok"}), chunk({}, "stop"), USAGE_CHUNK, done=False)])
    events = await collect(compatible(make_model, mock_http.client))
    assert events[-1].type == "done"
    assert events[-1].finish_reason == "stop"
    assert events[-1].usage is not None
    assert events[-1].usage.output_tokens == 2


async def test_stream_cut_before_finish_is_incomplete(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    mock_http.reply_stream([sse_body(chunk({"content": "The answer is"}), done=False)])
    received: list[StreamEvent] = []
    with pytest.raises(IncompleteStreamError) as info:
        await collect_into(openai(make_model, mock_http.client).stream(CompletionRequest(prompt="x")), received)
    assert [e.text for e in received] == ["The answer is"]
    assert info.value.model_id == "test-model"


async def test_stream_malformed_event_is_invalid_response(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    mock_http.reply_stream([sse_body(chunk({"content": "a"}), done=False) + 'data: {"choices": [\n\n'])
    with pytest.raises(InvalidResponseError) as info:
        await collect(openai(make_model, mock_http.client))
    assert not isinstance(info.value, IncompleteStreamError)


async def test_stream_event_that_is_not_an_object(mock_http: Any, make_model: Any) -> None:
    mock_http.reply_stream(["data: [1, 2]\n\n"])
    with pytest.raises(InvalidResponseError):
        await collect(openai(make_model, mock_http.client))


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (
            {"message": "The server had an error processing your request.", "type": "server_error"},
            ProviderUnavailableError,
        ),
        ({"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}, RateLimitError),
        ({"code": 500, "message": "llama_decode failed", "type": "server_error"}, ProviderUnavailableError),
        ({"message": "bad", "type": "invalid_request_error"}, BadRequestError),
    ],
)
async def test_stream_error_chunk_is_mapped(
    mock_http: Any, make_model: Any, sse_body: Any, error: dict[str, Any], cls: type[ProviderError]
) -> None:
    mock_http.reply_stream([sse_body(chunk({"content": "a"}), {"error": error}, done=False)])
    with pytest.raises(cls) as info:
        await collect(openai(make_model, mock_http.client))
    assert info.value.provider_message == error["message"]


async def test_stream_http_error_is_mapped(mock_http: Any, make_model: Any) -> None:
    body = json.dumps(err("Rate limit reached", "requests", "rate_limit_exceeded"))
    mock_http.reply_stream([body], status=429, headers={"content-type": "application/json", "retry-after": "3"})
    with pytest.raises(RateLimitError) as info:
        await collect(openai(make_model, mock_http.client))
    assert info.value.retry_after == 3.0
    assert info.value.status_code == 429


async def test_stream_content_filter_finish(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    mock_http.reply_stream([sse_body(chunk({"content": "partial"}), chunk({}, "content_filter"))])
    events = await collect(openai(make_model, mock_http.client))
    assert events[-1].finish_reason == "content_filter"


# --- embeddings --------------------------------------------------------------------------


async def test_embeddings_request_and_order(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(
        json={
            "object": "list",
            "data": [
                {"object": "embedding", "embedding": [0.3, 0.4], "index": 1},
                {"object": "embedding", "embedding": [0.1, 0.2], "index": 0},
            ],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }
    )
    provider = openai(make_model, mock_http.client, model={"model_name": "text-embedding-3-small"})
    result = await provider.embed(["first", "second"])
    sent = mock_http.requests[0]
    assert str(sent.url) == "https://api.openai.com/v1/embeddings"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.content) == {"model": "text-embedding-3-small", "input": ["first", "second"]}
    assert result.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert result.usage.input_tokens == 8
    assert result.model_name == "text-embedding-3-small"
    assert result.cost == 0.0  # the engine prices usage; the provider leaves it
    assert make_model().cost(result.usage) == pytest.approx(8 * 0.002 / 1000)


async def test_embeddings_dimensions_option_and_compatible_url(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(json={"data": [{"embedding": [1.0], "index": 0}], "model": "nomic"})
    provider = compatible(make_model, mock_http.client, options={"dimensions": 256})
    result = await provider.embed(["a"])
    assert str(mock_http.requests[0].url) == "http://127.0.0.1:8080/v1/embeddings"
    assert mock_http.last_json()["dimensions"] == 256
    assert result.vectors == [[1.0]]
    assert result.usage.input_tokens == 0


async def test_embeddings_error_is_mapped(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(
        400,
        json=err(
            "This model's maximum context length is 8192 tokens, however you requested 9000 tokens",
            "invalid_request_error",
        ),
    )
    with pytest.raises(ContextLengthExceededError) as info:
        await openai(make_model, mock_http.client).embed(["x" * 10])
    assert (info.value.requested_tokens, info.value.limit_tokens) == (9000, 8192)


def test_supports_embeddings() -> None:
    assert OpenAIProvider.build_embedding_request is not BaseModelProvider.build_embedding_request
    assert OpenAICompatibleProvider.parse_embedding is not BaseModelProvider.parse_embedding
    assert OpenAIProvider.requires_api_key
    assert not OpenAICompatibleProvider.requires_api_key
