"""AnthropicProvider against httpx2.MockTransport: bodies follow Anthropic's documented Messages API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    IncompleteStreamError,
    InvalidResponseError,
    MissingCredentialError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)
from taskmodels.providers.anthropic import JSON_TOOL_NAME, AnthropicProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, Message, ResponseFormat, StreamEvent, ToolCall, ToolSpec

KEY = "sk-ant-test-secret-0123456789"


def model_config(**extra: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": "claude",
            "provider": "anthropic",
            "modelName": "claude-sonnet-4-5",
            "maxTokens": 1024,
            "temperature": 1.5,
            "contextWindow": 200000,
            "costPer1kTokens": 0.01,
            **extra,
        }
    )


def make(mock: Any, *, key: str | None = KEY, **extra: Any) -> AnthropicProvider:
    return AnthropicProvider(model_config(**extra), mock.client, api_key=SecretStr(key) if key else None)


MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "output_tokens": 6,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    },
}


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "text_delta", "text": text}
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def json_delta(index: int, partial: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def message_end(stop_reason: str, output_tokens: int) -> list[tuple[str, dict[str, Any]]]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    ]


async def collect(provider: AnthropicProvider, request: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


# --- request -------------------------------------------------------------------------


async def test_request_fields_defaults_from_registry(mock_http: Any) -> None:
    mock_http.reply(200, json=MESSAGE, headers={"request-id": "req_1"})
    provider = make(mock_http)
    await provider.complete(CompletionRequest(prompt="Hi", system_prompt="Be brief."))
    sent = mock_http.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert mock_http.last_json() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 1.0,  # registry's 1.5 clamped to Anthropic's range
    }


async def test_request_options_tools_and_extra(mock_http: Any) -> None:
    mock_http.reply(200, json=MESSAGE)
    provider = make(mock_http, baseUrl="http://127.0.0.1:9/proxy/", options={"anthropicBeta": ["a-1", "b-2"]})
    request = CompletionRequest(
        messages=[
            Message(role="system", content="One."),
            Message(role="system", content="Two."),
            Message(role="user", content="Weather?"),
            Message(
                role="assistant",
                content="Checking.",
                tool_calls=(ToolCall(id="toolu_1", name="weather", arguments='{"city": "Paris"}'),),
            ),
            Message(role="tool", tool_call_id="toolu_1", content="sunny"),
            Message(role="user", content="Thanks"),
        ],
        max_tokens=50,
        temperature=0.3,
        top_p=0.9,
        stop=["END"],
        tools=[ToolSpec("weather", "Get weather", {"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice="required",
        extra={"metadata": {"user_id": "u1"}, "temperature": 0.1},
    )
    await provider.complete(request)
    assert str(mock_http.requests[0].url) == "http://127.0.0.1:9/proxy/v1/messages"
    assert mock_http.requests[0].headers["anthropic-beta"] == "a-1,b-2"
    body = mock_http.last_json()
    assert body["system"] == "One.\n\nTwo."
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.1  # extra merged last
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u1"}
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Get weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"name": "weather"}, {"type": "tool", "name": "weather"}),
        ({"type": "function", "function": {"name": "weather"}}, {"type": "tool", "name": "weather"}),
    ],
)
async def test_tool_choice_mapping(mock_http: Any, choice: Any, expected: dict[str, Any]) -> None:
    mock_http.reply(200, json=MESSAGE)
    await make(mock_http).complete(CompletionRequest(prompt="x", tools=[ToolSpec("weather")], tool_choice=choice))
    assert mock_http.last_json()["tool_choice"] == expected
    assert mock_http.last_json()["tools"][0]["input_schema"] == {"type": "object"}


async def test_json_schema_uses_forced_tool_and_returns_text(mock_http: Any) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    answer = dict(MESSAGE)
    answer["content"] = [{"type": "tool_use", "id": "toolu_9", "name": JSON_TOOL_NAME, "input": {"a": 1}}]
    answer["stop_reason"] = "tool_use"
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(
        CompletionRequest(prompt="x", response_format=ResponseFormat.json_schema(schema))
    )
    assert mock_http.last_json()["tools"] == [
        {"name": JSON_TOOL_NAME, "description": "Give the answer as this tool's input.", "input_schema": schema}
    ]
    assert mock_http.last_json()["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    assert json.loads(result.text) == {"a": 1}
    assert result.tool_calls == ()
    assert result.finish_reason == "stop"


async def test_missing_key_is_configuration_naming_the_variables(mock_http: Any) -> None:
    mock_http.reply(200, json=MESSAGE)
    with pytest.raises(MissingCredentialError, match="ANTHROPIC_API_KEY") as info:
        make(mock_http, key=None)
    assert not isinstance(info.value, AuthenticationError)
    assert info.value.variables == ("ANTHROPIC_API_KEY", "TASKMODELS_PROVIDERS__ANTHROPIC__API_KEY")
    assert mock_http.requests == []


async def test_missing_key_names_model_key_variable(mock_http: Any) -> None:
    with pytest.raises(MissingCredentialError, match="MY_CLAUDE_KEY") as info:
        make(mock_http, key=None, apiKeyEnv="MY_CLAUDE_KEY")
    assert info.value.variables == ("MY_CLAUDE_KEY",)


# --- response ------------------------------------------------------------------------


async def test_parse_text_usage_and_ids(mock_http: Any) -> None:
    mock_http.reply(200, json=MESSAGE, headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    result = await make(mock_http).complete(CompletionRequest(prompt="Hi"))
    assert result.text == "Hello!"
    assert result.finish_reason == "stop"
    assert result.model_name == "claude-sonnet-4-5-20250929"
    assert result.model_id == "claude"
    assert result.provider == "anthropic"
    assert result.request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
    assert result.usage.input_tokens == 132  # 12 fresh + 100 cache read + 20 cache write
    assert result.usage.cached_tokens == 100
    assert result.usage.cache_write_tokens == 20
    assert result.usage.output_tokens == 6
    assert result.cost == 0.0  # the engine prices usage; the provider leaves it
    assert model_config().cost(result.usage) == pytest.approx(138 * 0.01 / 1000)


async def test_parse_tool_use(mock_http: Any) -> None:
    answer = dict(MESSAGE)
    answer["content"] = [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01A", "name": "weather", "input": {"city": "Paris"}},
    ]
    answer["stop_reason"] = "tool_use"
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    assert result.text == "Let me check."
    assert result.tool_calls == (ToolCall(id="toolu_01A", name="weather", arguments='{"city": "Paris"}'),)
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "other"),
    ],
)
async def test_stop_reason_normalized(mock_http: Any, stop_reason: str, expected: str) -> None:
    answer = {**MESSAGE, "stop_reason": stop_reason}
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    assert result.finish_reason == expected


async def test_body_without_content_is_invalid_response(mock_http: Any) -> None:
    mock_http.reply(200, json={"type": "message"})
    provider = make(mock_http)
    with pytest.raises(InvalidResponseError):
        await provider.complete(CompletionRequest(prompt="x"))


# --- errors --------------------------------------------------------------------------


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_e"}


@pytest.mark.parametrize(
    ("status", "kind", "message", "cls"),
    [
        (400, "invalid_request_error", "max_tokens: Field required", BadRequestError),
        (
            400,
            "invalid_request_error",
            "prompt is too long: 208310 tokens > 200000 maximum",
            ContextLengthExceededError,
        ),
        (401, "authentication_error", "invalid x-api-key", AuthenticationError),
        (403, "permission_error", "Your API key does not have permission", AuthenticationError),
        (404, "not_found_error", "model: claude-nope", BadRequestError),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", ContextLengthExceededError),
        (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", RateLimitError),
        (500, "api_error", "Internal server error", ProviderUnavailableError),
        (529, "overloaded_error", "Overloaded", ProviderUnavailableError),
    ],
)
async def test_error_bodies(mock_http: Any, status: int, kind: str, message: str, cls: type[ProviderError]) -> None:
    headers = {"request-id": "req_e", "retry-after": "7"} if status == 429 else {"request-id": "req_e"}
    mock_http.reply(status, json=error_body(kind, message), headers=headers)
    provider = make(mock_http)
    with pytest.raises(cls) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.provider_code == kind
    assert err.provider_message == message
    assert err.provider == "anthropic"
    assert err.model_id == "claude"
    assert err.request_id == "req_e"
    assert err.retry_after == (7.0 if status == 429 else None)
    assert KEY not in str(err)


async def test_non_json_error_body_keeps_text(mock_http: Any) -> None:
    mock_http.reply(502, content="<html>Bad Gateway</html>")
    provider = make(mock_http)
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    assert info.value.provider_message == "<html>Bad Gateway</html>"


async def test_key_never_in_repr_or_url(mock_http: Any) -> None:
    mock_http.reply(401, json=error_body("authentication_error", "invalid x-api-key"))
    provider = make(mock_http)
    with pytest.raises(AuthenticationError) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    assert KEY not in repr(provider)
    assert KEY not in str(info.value)
    assert KEY not in str(mock_http.requests[0].url)
    assert KEY not in repr(provider.build_completion_request(CompletionRequest(prompt="x"), stream=False))


# --- streaming -----------------------------------------------------------------------

STREAM_START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5-20250929",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5},
        },
    },
)


def tool_use_stream() -> bytes:
    tool = {"type": "tool_use", "id": "toolu_01T1x", "name": "get_weather", "input": {}}
    return sse(
        STREAM_START,
        block_start(0, {"type": "text", "text": ""}),
        ("ping", {"type": "ping"}),
        text_delta(0, "Hello"),
        text_delta(0, "!"),
        block_stop(0),
        block_start(1, tool),
        json_delta(1, ""),
        json_delta(1, '{"location": "San Fra'),
        json_delta(1, 'ncisco, CA"}'),
        block_stop(1),
        *message_end("tool_use", 89),
    )


async def test_stream_text_and_tool_use_with_ping(mock_http: Any) -> None:
    mock_http.reply(200, content=tool_use_stream(), headers={"content-type": "text/event-stream"})
    events = await collect(make(mock_http), CompletionRequest(prompt="Weather?"))
    assert mock_http.last_json()["stream"] is True
    assert [e.text for e in events if e.type == "text"] == ["Hello", "!"]
    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert calls == [ToolCall(id="toolu_01T1x", name="get_weather", arguments='{"location": "San Francisco, CA"}')]
    done = events[-1]
    assert done.type == "done"
    assert done.finish_reason == "tool_calls"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_tokens) == (30, 89, 5)
    assert done.model_name == "claude-sonnet-4-5-20250929"
    assert done.request_id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"


async def test_stream_json_mode_streams_tool_input_as_text(mock_http: Any) -> None:
    tool = {"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME, "input": {}}
    body = sse(
        STREAM_START,
        block_start(0, tool),
        json_delta(0, '{"a":'),
        json_delta(0, " 1}"),
        block_stop(0),
        *message_end("tool_use", 4),
    )
    mock_http.reply(200, content=body)
    events = await collect(
        make(mock_http),
        CompletionRequest(prompt="x", response_format=ResponseFormat.json()),
    )
    assert json.loads("".join(e.text for e in events if e.type == "text")) == {"a": 1}
    assert not [e for e in events if e.type == "tool_call"]
    assert events[-1].finish_reason == "stop"


async def test_stream_cut_before_message_stop_is_incomplete(mock_http: Any) -> None:
    body = sse(STREAM_START, block_start(0, {"type": "text", "text": ""}), text_delta(0, "Hel"))
    received: list[StreamEvent] = []

    async def consume() -> None:
        mock_http.reply(200, content=body)
        async for event in make(mock_http).stream(CompletionRequest(prompt="x")):
            received.append(event)

    with pytest.raises(IncompleteStreamError):
        await consume()
    assert [e.text for e in received] == ["Hel"]


async def test_stream_malformed_event_is_invalid_response(mock_http: Any) -> None:
    body = sse(STREAM_START) + b"event: content_block_delta\ndata: {not json\n\n"
    mock_http.reply(200, content=body)
    with pytest.raises(InvalidResponseError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert not isinstance(info.value, IncompleteStreamError)


async def test_stream_error_event_mid_stream(mock_http: Any) -> None:
    body = sse(
        STREAM_START,
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
    mock_http.reply(200, content=body)
    with pytest.raises(ProviderUnavailableError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert info.value.provider_code == "overloaded_error"
    assert info.value.provider_message == "Overloaded"


async def test_stream_http_error_status_is_mapped(mock_http: Any) -> None:
    mock_http.reply(429, json=error_body("rate_limit_error", "slow down"), headers={"retry-after": "3"})
    with pytest.raises(RateLimitError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert info.value.retry_after == 3.0
    assert info.value.status_code == 429
