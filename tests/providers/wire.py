"""One documented answer of each kind for every built-in protocol, and where its fields are, for tests that
break answers on purpose (tests/providers/test_bad_answers.py, test_answer_fuzz.py).

Each protocol's answers follow the vendor's documented bodies; every one holds text and a tool call, so that
every field that becomes part of a result is there to break. ``Wire.paths`` names, per field, where it sits:
in a completion body a path of keys and indexes; in a stream a path whose first step is the event's index.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

from taskmodels.providers.base import BaseModelProvider
from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent, ToolCall, Usage
from tests.providers.kinds import KINDS, build

__all__ = ["KEY", "WIRES", "Wire", "body_bytes", "check_completion", "check_embedding", "check_events", "put"]

KEY = "sk-wire-test-0123456789abcdef"
REQUEST = CompletionRequest(prompt="What is the weather in Paris?")
Path = tuple[str | int, ...]

_ARGS = '{"city": "Paris"}'


@dataclass(frozen=True)
class Wire:
    """One protocol's documented answers: a completion, a stream's events (SSE ``(event, payload)`` pairs or
    NDJSON lines) and, where it has embeddings, the answer for ``n`` texts."""

    completion: dict[str, Any]
    events: list[tuple[str, Any]]
    framing: Literal["sse", "ndjson"]
    embedding: Callable[[int], dict[str, Any]] | None
    paths: dict[str, Path] = field(default_factory=dict)  # field name -> path in ``completion``
    stream_paths: dict[str, Path] = field(default_factory=dict)  # field name -> (event index, *path)
    embedding_paths: dict[str, Path] = field(default_factory=dict)  # in ``embedding(2)``


def put(body: Any, path: Path, value: Any) -> Any:
    """A deep copy of ``body`` with ``value`` at ``path``."""
    out = copy.deepcopy(body)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def body_bytes(wire: Wire, events: Sequence[tuple[str, Any]]) -> bytes:
    """A stream's body, framed as the protocol frames it."""
    if wire.framing == "ndjson":
        return b"".join(json.dumps(payload).encode() + b"\n" for _, payload in events)
    parts = []
    for name, payload in events:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        parts.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    return "".join(parts).encode()


# --- OpenAI Chat Completions (platform.openai.com/docs/api-reference/chat) -------------------------

_OPENAI_USAGE = {
    "prompt_tokens": 82,
    "completion_tokens": 17,
    "total_tokens": 99,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
_OPENAI_CALL = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": _ARGS}}
_OPENAI_COMPLETION = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Let me look.", "tool_calls": [_OPENAI_CALL]},
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": _OPENAI_USAGE,
}


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


_OPENAI_EVENTS: list[tuple[str, Any]] = [
    ("", _openai_chunk({"role": "assistant", "content": "Let me"})),
    ("", _openai_chunk({"content": " look."})),
    ("", _openai_chunk({"tool_calls": [{"index": 0, **_OPENAI_CALL, "function": {"name": "get_weather"}}]})),
    ("", _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": _ARGS}}]})),
    ("", _openai_chunk({}, "tool_calls")),
    ("", {**_openai_chunk({}), "choices": [], "usage": _OPENAI_USAGE}),
    ("", "[DONE]"),
]


def _openai_embedding(n: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.0023, -0.0094, 0.0157 * (i + 1)]} for i in range(n)
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


_OPENAI = Wire(
    completion=_OPENAI_COMPLETION,
    events=_OPENAI_EVENTS,
    framing="sse",
    embedding=_openai_embedding,
    paths={
        "usage": ("usage", "prompt_tokens"),
        "model": ("model",),
        "request_id": ("id",),
        "text": ("choices", 0, "message", "content"),
        "finish": ("choices", 0, "finish_reason"),
        "tool_name": ("choices", 0, "message", "tool_calls", 0, "function", "name"),
        "tool_id": ("choices", 0, "message", "tool_calls", 0, "id"),
        "tool_args": ("choices", 0, "message", "tool_calls", 0, "function", "arguments"),
    },
    stream_paths={
        "usage": (5, "usage", "completion_tokens"),
        "model": (0, "model"),
        "request_id": (0, "id"),
        "text": (1, "choices", 0, "delta", "content"),
        "finish": (4, "choices", 0, "finish_reason"),
        "tool_name": (2, "choices", 0, "delta", "tool_calls", 0, "function", "name"),
        "tool_id": (2, "choices", 0, "delta", "tool_calls", 0, "id"),
        "tool_args": (3, "choices", 0, "delta", "tool_calls", 0, "function", "arguments"),
    },
    embedding_paths={"vector": ("data", 1, "embedding"), "vectors": ("data",), "usage": ("usage", "prompt_tokens")},
)

# --- Anthropic Messages (docs.anthropic.com/en/api/messages, .../messages-streaming) ---------------

_ANTHROPIC_COMPLETION = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 91, "cache_read_input_tokens": 0},
}
_ANTHROPIC_EVENTS: list[tuple[str, Any]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 472, "output_tokens": 2},
            },
        },
    ),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me look."}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": _ARGS}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]
_ANTHROPIC = Wire(
    completion=_ANTHROPIC_COMPLETION,
    events=_ANTHROPIC_EVENTS,
    framing="sse",
    embedding=None,
    paths={
        "usage": ("usage", "input_tokens"),
        "model": ("model",),
        "request_id": ("id",),
        "text": ("content", 0, "text"),
        "finish": ("stop_reason",),
        "tool_name": ("content", 1, "name"),
        "tool_id": ("content", 1, "id"),
        "tool_args": ("content", 1, "input"),
    },
    stream_paths={
        "usage": (8, "usage", "output_tokens"),
        "model": (0, "message", "model"),
        "request_id": (0, "message", "id"),
        "text": (3, "delta", "text"),
        "finish": (8, "delta", "stop_reason"),
        "tool_name": (5, "content_block", "name"),
        "tool_id": (5, "content_block", "id"),
        "tool_args": (6, "delta", "partial_json"),
    },
)

# --- Gemini generateContent (ai.google.dev/api/generate-content) -----------------------------------

_GEMINI_USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 12, "totalTokenCount": 21}
_GEMINI_COMPLETION = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "Let me look."},
                    {"functionCall": {"id": "fc-1", "name": "get_weather", "args": {"city": "Paris"}}},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": _GEMINI_USAGE,
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mCLXaOqxKMbPz7IPx7nZ4QU",
}
_GEMINI_EVENTS: list[tuple[str, Any]] = [
    (
        "",
        {
            "candidates": [{"content": {"parts": [{"text": "Let me"}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mCLXaOqxKMbPz7IPx7nZ4QU",
        },
    ),
    (
        "",
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"text": " look."},
                            {"functionCall": {"id": "fc-1", "name": "get_weather", "args": {"city": "Paris"}}},
                        ],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": _GEMINI_USAGE,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mCLXaOqxKMbPz7IPx7nZ4QU",
        },
    ),
]


def _gemini_embedding(n: int) -> dict[str, Any]:
    return {"embeddings": [{"values": [0.0123, -0.0456, 0.0789 * (i + 1)]} for i in range(n)]}


_GEMINI = Wire(
    completion=_GEMINI_COMPLETION,
    events=_GEMINI_EVENTS,
    framing="sse",
    embedding=_gemini_embedding,
    paths={
        "usage": ("usageMetadata", "promptTokenCount"),
        "model": ("modelVersion",),
        "request_id": ("responseId",),
        "text": ("candidates", 0, "content", "parts", 0, "text"),
        "finish": ("candidates", 0, "finishReason"),
        "tool_name": ("candidates", 0, "content", "parts", 1, "functionCall", "name"),
        "tool_id": ("candidates", 0, "content", "parts", 1, "functionCall", "id"),
        "tool_args": ("candidates", 0, "content", "parts", 1, "functionCall", "args"),
    },
    stream_paths={
        "usage": (1, "usageMetadata", "candidatesTokenCount"),
        "model": (0, "modelVersion"),
        "request_id": (0, "responseId"),
        "text": (1, "candidates", 0, "content", "parts", 0, "text"),
        "finish": (1, "candidates", 0, "finishReason"),
        "tool_name": (1, "candidates", 0, "content", "parts", 1, "functionCall", "name"),
        "tool_id": (1, "candidates", 0, "content", "parts", 1, "functionCall", "id"),
        "tool_args": (1, "candidates", 0, "content", "parts", 1, "functionCall", "args"),
    },
    embedding_paths={"vector": ("embeddings", 1, "values"), "vectors": ("embeddings",)},
)

# --- Ollama /api/chat and /api/embed (github.com/ollama/ollama/blob/main/docs/api.md) --------------

_OLLAMA_CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
_OLLAMA_COMPLETION = {
    "model": "llama3.2",
    "created_at": "2023-12-12T14:13:43.416799Z",
    "message": {"role": "assistant", "content": "Let me look.", "tool_calls": [_OLLAMA_CALL]},
    "done": True,
    "done_reason": "stop",
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}


def _ollama_line(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00", "message": message, **extra}


_OLLAMA_EVENTS: list[tuple[str, Any]] = [
    ("", _ollama_line({"role": "assistant", "content": "Let me"}, done=False)),
    ("", _ollama_line({"role": "assistant", "content": " look."}, done=False)),
    ("", _ollama_line({"role": "assistant", "content": "", "tool_calls": [_OLLAMA_CALL]}, done=False)),
    (
        "",
        _ollama_line(
            {"role": "assistant", "content": ""},
            done=True,
            done_reason="stop",
            total_duration=4883583458,
            prompt_eval_count=26,
            eval_count=282,
        ),
    ),
]


def _ollama_embedding(n: int) -> dict[str, Any]:
    return {
        "model": "all-minilm",
        "embeddings": [[0.010071029, -0.0017594862, 0.05007221 * (i + 1)] for i in range(n)],
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": 8,
    }


_OLLAMA = Wire(
    completion=_OLLAMA_COMPLETION,
    events=_OLLAMA_EVENTS,
    framing="ndjson",
    embedding=_ollama_embedding,
    paths={
        "usage": ("prompt_eval_count",),
        "model": ("model",),
        "text": ("message", "content"),
        "finish": ("done_reason",),
        "tool_name": ("message", "tool_calls", 0, "function", "name"),
        "tool_id": ("message", "tool_calls", 0, "id"),
        "tool_args": ("message", "tool_calls", 0, "function", "arguments"),
    },
    stream_paths={
        "usage": (3, "eval_count"),
        "model": (0, "model"),
        "text": (1, "message", "content"),
        "finish": (3, "done_reason"),
        "tool_name": (2, "message", "tool_calls", 0, "function", "name"),
        "tool_id": (2, "message", "tool_calls", 0, "id"),
        "tool_args": (2, "message", "tool_calls", 0, "function", "arguments"),
    },
    embedding_paths={"vector": ("embeddings", 1), "vectors": ("embeddings",), "usage": ("prompt_eval_count",)},
)

WIRES: dict[str, Wire] = {
    "openai": _OPENAI,
    "openai-compatible": _OPENAI,
    "azure-openai": _OPENAI,
    "anthropic": _ANTHROPIC,
    "gemini": _GEMINI,
    "ollama": _OLLAMA,
}
assert WIRES.keys() == KINDS.keys()


def provider(kind: str, client: httpx2.AsyncClient) -> BaseModelProvider:
    return build(kind, client, key=KEY)


def mock_client(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """A client whose every request is answered ``status`` with ``body``."""
    merged = {"content-type": "application/json", **(headers or {})}
    return httpx2.AsyncClient(
        transport=httpx2.MockTransport(lambda _: httpx2.Response(status, content=body, headers=merged))
    )


async def complete(
    kind: str, body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> CompletionResult:
    async with mock_client(status, json.dumps(body).encode(), headers) as client:
        return await provider(kind, client).complete(REQUEST)


async def stream(
    kind: str, events: Sequence[tuple[str, Any]], into: list[StreamEvent] | None = None, *, status: int = 200
) -> list[StreamEvent]:
    """The stream's events; each is appended to ``into`` as it is yielded, so a test sees what came before a raise."""
    seen = [] if into is None else into
    wire = WIRES[kind]
    headers = {"content-type": "application/x-ndjson" if wire.framing == "ndjson" else "text/event-stream"}
    async with mock_client(status, body_bytes(wire, events), headers) as client:
        async for event in provider(kind, client).stream(REQUEST):
            seen.append(event)
    return seen


async def embed(kind: str, body: Any, texts: int = 2, *, status: int = 200) -> EmbeddingResult:
    async with mock_client(status, json.dumps(body).encode()) as client:
        return await provider(kind, client).embed([f"text {i}" for i in range(texts)])


# --- the property: every field of the declared type ------------------------------------------------

_FINISH = {"stop", "length", "tool_calls", "content_filter", "error", "other"}


def _check_usage(usage: Any) -> None:
    assert type(usage) is Usage
    for name in ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens"):
        value = getattr(usage, name)
        assert type(value) is int, (name, value)
        assert 0 <= value < 2**53, (name, value)


def _check_call(call: Any) -> None:
    assert type(call) is ToolCall
    assert (type(call.id), type(call.name), type(call.arguments)) == (str, str, str), call


def check_completion(result: Any) -> None:
    assert type(result) is CompletionResult
    assert type(result.text) is str
    assert type(result.model_name) is str
    assert result.request_id is None or type(result.request_id) is str
    assert result.finish_reason in _FINISH
    _check_usage(result.usage)
    assert type(result.tool_calls) is tuple
    for call in result.tool_calls:
        _check_call(call)


def check_events(events: Sequence[Any]) -> None:
    for event in events:
        assert type(event) is StreamEvent
        assert type(event.text) is str
        if event.type == "tool_call":
            _check_call(event.tool_call)
    if events and events[-1].type == "done":
        done = events[-1]
        assert done.finish_reason in _FINISH
        assert done.model_name is None or type(done.model_name) is str
        assert done.request_id is None or type(done.request_id) is str
        if done.usage is not None:
            _check_usage(done.usage)


def check_embedding(result: Any, texts: int) -> None:
    assert type(result) is EmbeddingResult
    assert type(result.model_name) is str
    _check_usage(result.usage)
    assert type(result.vectors) is list
    assert len(result.vectors) == texts
    for vector in result.vectors:
        assert type(vector) is list
        assert all(type(x) is float for x in vector), vector
