"""OllamaProvider (native /api/chat) against httpx2.MockTransport, with bodies as Ollama's API docs show them."""

from __future__ import annotations

import json
from collections.abc import Callable
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
from taskmodels.providers.ollama import OllamaProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, Message, ResponseFormat, StreamEvent, ToolCall, ToolSpec

Handler = Callable[[httpx2.Request], httpx2.Response]


def make(handler: Handler, *, key: str | None = None, **extra: Any) -> OllamaProvider:
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
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return OllamaProvider(config, client, api_key=SecretStr(key) if key else None)


class Recorder:
    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.response

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


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


async def test_request_defaults() -> None:
    rec = Recorder(httpx2.Response(200, json=CHAT))
    provider = make(rec)
    assert not provider.requires_api_key
    await provider.complete(CompletionRequest(prompt="Hi", system_prompt="Be brief."))
    sent = rec.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "http://localhost:11434/api/chat"
    assert "authorization" not in sent.headers
    assert rec.body == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": False,
        "options": {"num_predict": 512, "temperature": 0.2},
    }


async def test_request_options_tools_history_and_passthrough() -> None:
    rec = Recorder(httpx2.Response(200, json=CHAT))
    provider = make(
        rec,
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
    assert str(rec.requests[0].url) == "http://127.0.0.1:9/api/chat"
    assert rec.requests[0].headers["authorization"] == "Bearer proxy-token"
    body = rec.body
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


async def test_json_mode_and_tool_choice_none() -> None:
    rec = Recorder(httpx2.Response(200, json=CHAT))
    request = CompletionRequest(
        prompt="x", response_format=ResponseFormat.json(), tools=[ToolSpec("f")], tool_choice="none", temperature=0
    )
    await make(rec).complete(request)
    assert rec.body["format"] == "json"
    assert "tools" not in rec.body
    assert rec.body["options"]["temperature"] == 0


# --- response ------------------------------------------------------------------------


async def test_parse_text_and_usage() -> None:
    result = await make(Recorder(httpx2.Response(200, json=CHAT))).complete(CompletionRequest(prompt="Hi"))
    assert result.text == "Hello! How are you today?"
    assert result.finish_reason == "stop"
    assert result.model_name == "llama3.2"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (26, 298)
    assert (result.model_id, result.provider) == ("local", "ollama")
    assert result.cost == 0


async def test_parse_tool_calls() -> None:
    answer = {
        **CHAT,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"format": "celsius"}}}],
        },
    }
    result = await make(Recorder(httpx2.Response(200, json=answer))).complete(CompletionRequest(prompt="x"))
    (call,) = result.tool_calls
    assert call.name == "get_current_weather"
    assert json.loads(call.arguments) == {"format": "celsius"}
    assert call.id.startswith("call_")
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize(("reason", "expected"), [("stop", "stop"), ("length", "length"), ("load", "other")])
async def test_done_reason_normalized(reason: str, expected: str) -> None:
    answer = {**CHAT, "done_reason": reason}
    result = await make(Recorder(httpx2.Response(200, json=answer))).complete(CompletionRequest(prompt="x"))
    assert result.finish_reason == expected


async def test_body_without_message_is_invalid_response() -> None:
    with pytest.raises(InvalidResponseError):
        await make(Recorder(httpx2.Response(200, json={"done": True}))).complete(CompletionRequest(prompt="x"))


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
async def test_error_bodies(status: int, message: str, cls: type[Exception]) -> None:
    with pytest.raises(cls) as info:
        await make(Recorder(httpx2.Response(status, json={"error": message}))).complete(CompletionRequest(prompt="x"))
    err = info.value
    assert type(err) is cls
    assert getattr(err, "status_code", None) == status
    assert getattr(err, "provider_message", None) == message
    assert message in str(err)


async def test_connection_refused_is_connection_error() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderConnectionError):
        await make(refuse).complete(CompletionRequest(prompt="x"))


async def test_key_never_in_repr_error_or_url() -> None:
    rec = Recorder(httpx2.Response(500, json={"error": "boom"}))
    provider = make(rec, key="ollama-secret-token-123")
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.complete(CompletionRequest(prompt="x"))
    assert "ollama-secret-token-123" not in repr(provider)
    assert "ollama-secret-token-123" not in str(info.value)
    assert "ollama-secret-token-123" not in str(rec.requests[0].url)


# --- streaming -----------------------------------------------------------------------


async def test_stream_ndjson() -> None:
    body = ndjson(part("The"), part(" sky"), part(" is blue."), FINAL)
    rec = Recorder(httpx2.Response(200, content=body, headers={"content-type": "application/x-ndjson"}))
    events = await collect(make(rec), CompletionRequest(prompt="Why?"))
    assert rec.body["stream"] is True
    assert [e.text for e in events if e.type == "text"] == ["The", " sky", " is blue."]
    done = events[-1]
    assert done.type == "done"
    assert done.finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens) == (26, 282)
    assert done.model_name == "llama3.2"


async def test_stream_tool_call() -> None:
    call = {
        **part(""),
        "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
    }
    events = await collect(
        make(Recorder(httpx2.Response(200, content=ndjson(call, FINAL)))), CompletionRequest(prompt="x")
    )
    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert len(calls) == 1
    assert calls[0] is not None
    assert (calls[0].name, calls[0].arguments) == ("f", "{}")
    assert events[-1].finish_reason == "tool_calls"


async def test_stream_cut_before_done_is_incomplete() -> None:
    body = ndjson(part("The"), part(" sky"))
    received: list[StreamEvent] = []

    async def consume() -> None:
        async for event in make(Recorder(httpx2.Response(200, content=body))).stream(CompletionRequest(prompt="x")):
            received.append(event)

    with pytest.raises(IncompleteStreamError):
        await consume()
    assert [e.text for e in received] == ["The", " sky"]


async def test_stream_malformed_line_is_invalid_response() -> None:
    body = ndjson(part("a")) + b"{not json\n"
    with pytest.raises(InvalidResponseError) as info:
        await collect(make(Recorder(httpx2.Response(200, content=body))), CompletionRequest(prompt="x"))
    assert not isinstance(info.value, IncompleteStreamError)


async def test_stream_error_line() -> None:
    body = ndjson(part("a"), {"error": "an error was encountered while running the model"})
    with pytest.raises(ProviderUnavailableError) as info:
        await collect(make(Recorder(httpx2.Response(200, content=body))), CompletionRequest(prompt="x"))
    assert info.value.provider_message == "an error was encountered while running the model"


async def test_stream_http_error() -> None:
    rec = Recorder(httpx2.Response(404, json={"error": "model 'nope' not found"}))
    with pytest.raises(BadRequestError) as info:
        await collect(make(rec), CompletionRequest(prompt="x"))
    assert info.value.status_code == 404


# --- embeddings ----------------------------------------------------------------------


async def test_embeddings() -> None:
    answer = {
        "model": "all-minilm",
        "embeddings": [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]],
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": 8,
    }
    rec = Recorder(httpx2.Response(200, json=answer))
    provider = make(rec, modelName="all-minilm", options={"keep_alive": "1m"})
    assert provider.supports_embeddings
    result = await provider.embed(["Why is the sky blue?", "Why is the grass green?"])
    assert str(rec.requests[0].url) == "http://localhost:11434/api/embed"
    assert rec.body == {
        "model": "all-minilm",
        "input": ["Why is the sky blue?", "Why is the grass green?"],
        "keep_alive": "1m",
    }
    assert result.vectors == answer["embeddings"]
    assert result.usage.input_tokens == 8
    assert result.model_name == "all-minilm"


async def test_embedding_body_without_embeddings_is_invalid() -> None:
    with pytest.raises(InvalidResponseError):
        await make(Recorder(httpx2.Response(200, json={"model": "x"}))).embed(["a"])
