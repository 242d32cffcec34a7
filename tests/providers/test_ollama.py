"""OllamaProvider (native /api/chat) against httpx2.MockTransport, with bodies as Ollama's API docs show them."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from taskmodels.errors import (
    BadRequestError,
    ContextLengthExceededError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderUnavailableError,
)
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.ollama import OllamaProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, Message, ResponseFormat, StreamEvent, ToolCall, ToolSpec


def make(mock: Any, *, key: str | None = None, **extra: Any) -> OllamaProvider:
    config = ModelConfig.model_validate(
        {
            "id": "local",
            "provider": "ollama",
            "modelName": "llama3.2",
            "maxTokens": 512,
            "temperature": 0.2,
            "contextWindow": 8192,
            "costPer1kTokens": 0,
            **extra,
        }
    )
    return OllamaProvider(config, mock.client, api_key=SecretStr(key) if key else None)


CHAT = {
    "model": "llama3.2",
    "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Hello! How are you today?"},
    "done": True,
    "done_reason": "stop",
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}


def ndjson(*lines: dict[str, Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def part(text: str) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.385406455-07:00",
        "message": {"role": "assistant", "content": text},
        "done": False,
    }


FINAL = {
    "model": "llama3.2",
    "created_at": "2023-08-04T19:22:45.499127Z",
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 4883583458,
    "prompt_eval_count": 26,
    "eval_count": 282,
}


async def collect(provider: OllamaProvider, request: CompletionRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


# --- request -------------------------------------------------------------------------


async def test_request_defaults(mock_http: Any) -> None:
    mock_http.reply(200, json=CHAT)
    provider = make(mock_http)
    assert not provider.requires_api_key
    await provider.complete(CompletionRequest(prompt="Hi", system_prompt="Be brief."))
    sent = mock_http.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "http://localhost:11434/api/chat"
    assert "authorization" not in sent.headers
    assert mock_http.last_json() == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 512, "temperature": 0.2},
    }


async def test_request_options_tools_history_and_passthrough(mock_http: Any) -> None:
    mock_http.reply(200, json=CHAT)
    provider = make(
        mock_http,
        baseUrl="http://127.0.0.1:9",
        options={"num_ctx": 4096, "seed": 7, "keep_alive": "5m", "temperature": 0.9},
        key="proxy-token",
    )
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = CompletionRequest(
        messages=[
            Message(role="user", content="Weather?"),
            Message(role="assistant", tool_calls=(ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}'),)),
            Message(role="tool", tool_call_id="c1", content="11 degrees"),
        ],
        max_tokens=64,
        top_p=0.8,
        stop=["\n\n"],
        response_format=ResponseFormat.json_schema(schema),
        tools=[ToolSpec("weather", "Get weather", {"type": "object", "properties": {"city": {"type": "string"}}})],
        extra={"options": {"seed": 1}, "think": False},
    )
    await provider.complete(request)
    assert str(mock_http.requests[0].url) == "http://127.0.0.1:9/api/chat"
    assert mock_http.requests[0].headers["authorization"] == "Bearer proxy-token"
    body = mock_http.last_json()
    assert body["options"] == {
        "num_predict": 64,
        "temperature": 0.9,  # registry option beats the registry default
        "num_ctx": 4096,
        "seed": 1,  # request.extra beats registry options
        "top_p": 0.8,
        "stop": ["\n\n"],
    }
    assert body["keep_alive"] == "5m"
    assert body["think"] is False
    assert body["format"] == schema
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Get weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    sent_call = {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}
    assert body["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [sent_call]},
        {"role": "tool", "content": "11 degrees", "tool_name": "weather"},
    ]


async def test_json_mode_and_tool_choice_none(mock_http: Any) -> None:
    mock_http.reply(200, json=CHAT)
    request = CompletionRequest(
        prompt="x", response_format=ResponseFormat.json(), tools=[ToolSpec("f")], tool_choice="none", temperature=0
    )
    await make(mock_http).complete(request)
    assert mock_http.last_json()["format"] == "json"
    assert "tools" not in mock_http.last_json()
    assert mock_http.last_json()["options"]["temperature"] == 0


# --- response ------------------------------------------------------------------------


async def test_parse_text_and_usage(mock_http: Any) -> None:
    mock_http.reply(200, json=CHAT)
    result = await make(mock_http).complete(CompletionRequest(prompt="Hi"))
    assert result.text == "Hello! How are you today?"
    assert result.finish_reason == "stop"
    assert result.model_name == "llama3.2"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (26, 298)
    assert (result.model_id, result.provider) == ("local", "ollama")
    assert result.cost == 0  # the engine prices usage; the provider leaves it
    assert result.request_id is None  # Ollama sends none, and no proxy added one


async def test_parse_tool_calls(mock_http: Any) -> None:
    answer = {
        **CHAT,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"format": "celsius"}}}],
        },
    }
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    (call,) = result.tool_calls
    assert call.name == "get_current_weather"
    assert json.loads(call.arguments) == {"format": "celsius"}
    assert call.id.startswith("call_")
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize(("reason", "expected"), [("stop", "stop"), ("length", "length"), ("load", "other")])
async def test_done_reason_normalized(mock_http: Any, reason: str, expected: str) -> None:
    answer = {**CHAT, "done_reason": reason}
    mock_http.reply(200, json=answer)
    result = await make(mock_http).complete(CompletionRequest(prompt="x"))
    assert result.finish_reason == expected


async def test_body_without_message_is_invalid_response(mock_http: Any) -> None:
    mock_http.reply(200, json={"done": True})
    with pytest.raises(InvalidResponseError):
        await make(mock_http).complete(CompletionRequest(prompt="x"))


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (404, "model 'llama9' not found, try pulling it first", BadRequestError),
        (400, "invalid options: foo", BadRequestError),
        (400, "the input length exceeds the context length", ContextLengthExceededError),
        (500, "llama runner process has terminated: signal: killed", ProviderUnavailableError),
    ],
)
async def test_error_bodies(mock_http: Any, status: int, message: str, cls: type[Exception]) -> None:
    mock_http.reply(status, json={"error": message})
    with pytest.raises(cls) as info:
        await make(mock_http).complete(CompletionRequest(prompt="x"))
    err = info.value
    assert type(err) is cls
    assert getattr(err, "status_code", None) == status
    assert getattr(err, "provider_message", None) == message
    assert message in str(err)


async def test_connection_refused_is_connection_error(mock_http: Any) -> None:
    mock_http.fail(httpx2.ConnectError("connection refused"))
    with pytest.raises(ProviderConnectionError, match="could not reach ollama at localhost:11434"):
        await make(mock_http).complete(CompletionRequest(prompt="x"))


async def test_key_never_in_repr_error_or_url(mock_http: Any) -> None:
    mock_http.reply(500, json={"error": "boom"})
    provider = make(mock_http, key="ollama-secret-token-123")
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    assert "ollama-secret-token-123" not in repr(provider)
    assert "ollama-secret-token-123" not in str(info.value)
    assert "ollama-secret-token-123" not in str(mock_http.requests[0].url)


# --- streaming -----------------------------------------------------------------------


async def test_stream_ndjson(mock_http: Any) -> None:
    body = ndjson(part("The"), part(" sky"), part(" is blue."), FINAL)
    mock_http.reply(200, content=body, headers={"content-type": "application/x-ndjson"})
    events = await collect(make(mock_http), CompletionRequest(prompt="Why?"))
    assert mock_http.last_json()["stream"] is True
    assert [e.text for e in events if e.type == "text"] == ["The", " sky", " is blue."]
    done = events[-1]
    assert done.type == "done"
    assert done.finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (26, 282)
    assert done.model_name == "llama3.2"


async def test_stream_tool_call(mock_http: Any) -> None:
    call = {
        **part(""),
        "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
    }
    mock_http.reply(200, content=ndjson(call, FINAL))
    events = await collect(make(mock_http), CompletionRequest(prompt="x"))
    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert len(calls) == 1
    assert calls[0] is not None
    assert (calls[0].name, calls[0].arguments) == ("f", "{}")
    assert events[-1].finish_reason == "tool_calls"


async def test_stream_cut_before_done_is_incomplete(mock_http: Any) -> None:
    body = ndjson(part("The"), part(" sky"))
    received: list[StreamEvent] = []

    async def consume() -> None:
        mock_http.reply(200, content=body)
        async for event in make(mock_http).stream(CompletionRequest(prompt="x")):
            received.append(event)

    with pytest.raises(IncompleteStreamError):
        await consume()
    assert [e.text for e in received] == ["The", " sky"]


async def test_stream_malformed_line_is_invalid_response(mock_http: Any) -> None:
    body = ndjson(part("a")) + b"{not json\n"
    mock_http.reply(200, content=body)
    with pytest.raises(InvalidResponseError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert not isinstance(info.value, IncompleteStreamError)


async def test_stream_error_line(mock_http: Any) -> None:
    body = ndjson(part("a"), {"error": "an error was encountered while running the model"})
    mock_http.reply(200, content=body)
    with pytest.raises(ProviderUnavailableError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert info.value.provider_message == "an error was encountered while running the model"


async def test_stream_http_error(mock_http: Any) -> None:
    mock_http.reply(404, json={"error": "model 'nope' not found"})
    with pytest.raises(BadRequestError) as info:
        await collect(make(mock_http), CompletionRequest(prompt="x"))
    assert info.value.status_code == 404


# --- embeddings ----------------------------------------------------------------------


async def test_embeddings(mock_http: Any) -> None:
    answer = {
        "model": "all-minilm",
        "embeddings": [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]],
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": 8,
    }
    mock_http.reply(200, json=answer)
    provider = make(mock_http, modelName="all-minilm", options={"keep_alive": "1m"})
    assert type(provider).build_embedding_request is not BaseModelProvider.build_embedding_request
    result = await provider.embed(["Why is the sky blue?", "Why is the grass green?"])
    assert str(mock_http.requests[0].url) == "http://localhost:11434/api/embed"
    assert mock_http.last_json() == {
        "model": "all-minilm",
        "input": ["Why is the sky blue?", "Why is the grass green?"],
        "keep_alive": "1m",
    }
    assert result.vectors == answer["embeddings"]
    assert result.usage.input_tokens == 8
    assert result.model_name == "all-minilm"


async def test_embedding_body_without_embeddings_is_invalid(mock_http: Any) -> None:
    mock_http.reply(200, json={"model": "x"})
    with pytest.raises(InvalidResponseError):
        await make(mock_http).embed(["a"])
