"""The library's results in OpenAI's shapes: ``chat.completion``, ``chat.completion.chunk`` events, embeddings and
the model list.

A stream's chunks share everything but their delta, so ``Chunks`` builds each as two constant byte strings
around the JSON of the one value that changes: one ``json.dumps`` of a short string per text event.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import Any, Final

from taskmodels.types import CompletionResult, EmbeddingResult, FinishReason, ToolCall, Usage

__all__ = [
    "MODELS_CREATED",
    "Chunks",
    "completion_body",
    "embeddings_body",
    "finish_reason",
    "model_object",
    "models_body",
    "new_id",
    "usage_json",
]

MODELS_CREATED: Final = 1_735_689_600
"""``created`` of every task in ``/v1/models`` (2025-01-01): a task has no creation time, and a fixed one keeps
the list the same from request to request and replica to replica."""

_FINISH: Final[Mapping[str, str]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}


def new_id(prefix: str = "chatcmpl-") -> str:
    return prefix + os.urandom(12).hex()


def finish_reason(reason: FinishReason | None) -> str:
    """OpenAI's reasons are ours but ``error`` and ``other``, which an answer that arrived whole ended with: stop."""
    return _FINISH.get(reason or "stop", "stop")


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def completion_body(result: CompletionResult, call_id: str, created: int) -> bytes:
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI's answers carry no text as null, not "", when the model only called tools.
        "content": result.text if result.text or not result.tool_calls else None,
        "refusal": None,
    }
    if result.tool_calls:
        message["tool_calls"] = [_tool_call_json(c) for c in result.tool_calls]
    return json.dumps(
        {
            "id": call_id,
            "object": "chat.completion",
            "created": created,
            "model": result.model_name,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(result.finish_reason)}
            ],
            "usage": usage_json(result.usage),
            "system_fingerprint": None,
        },
        ensure_ascii=False,
    ).encode()


class Chunks:
    """The SSE events (``data: {...}`` and a blank line) of one streamed answer."""

    __slots__ = ("_head", "_include_usage", "_tail", "_tools")

    def __init__(self, call_id: str, created: int, model: str, *, include_usage: bool) -> None:
        model_json = json.dumps(model, ensure_ascii=False)
        self._head = (
            f'data: {{"id":"{call_id}","object":"chat.completion.chunk","created":{created},"model":{model_json},'
            '"system_fingerprint":null,"choices":[{"index":0,"delta":'
        ).encode()
        # With include_usage, OpenAI sends "usage": null on every chunk but the last.
        self._tail = (
            b',"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
            if include_usage
            else b',"logprobs":null,"finish_reason":null}]}\n\n'
        )
        self._include_usage = include_usage
        self._tools = 0

    def first(self, text: str = "") -> bytes:
        """The first chunk: the role, and the first piece of text."""
        return self._head + b'{"role":"assistant","content":' + _text(text) + b"}" + self._tail

    def text(self, text: str) -> bytes:
        return self._head + b'{"content":' + _text(text) + b"}" + self._tail

    def tool_call(self, call: ToolCall) -> bytes:
        """A whole tool call in one delta: its index, id, name and arguments (OpenAI spreads the arguments over
        several chunks; clients join deltas by index, so one that carries them all is the same answer)."""
        index, self._tools = self._tools, self._tools + 1
        delta = {"tool_calls": [{"index": index, **_tool_call_json(call)}]}
        return self._head + json.dumps(delta, ensure_ascii=False).encode() + self._tail

    def end(self, reason: FinishReason | None, usage: Usage | None) -> bytes:
        """The finish chunk, the usage chunk when asked for, and ``[DONE]``: all that ends a complete answer."""
        finish = json.dumps(finish_reason(reason)).encode()
        out = self._head + b"{}" + self._tail.replace(b'"finish_reason":null', b'"finish_reason":' + finish, 1)
        if self._include_usage:
            head = self._head[: self._head.index(b'"choices":')]
            usage_text = json.dumps(usage_json(usage or Usage())).encode()
            out += head + b'"choices":[],"usage":' + usage_text + b"}\n\n"
        return out + b"data: [DONE]\n\n"


def _text(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def embeddings_body(result: EmbeddingResult, *, base64_floats: bool) -> bytes:
    data = [
        {"object": "embedding", "index": i, "embedding": _b64(vector) if base64_floats else vector}
        for i, vector in enumerate(result.vectors)
    ]
    tokens = result.usage.input_tokens
    return json.dumps(
        {
            "object": "list",
            "data": data,
            "model": result.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    ).encode()


def _b64(vector: Iterable[float]) -> str:
    """OpenAI's ``base64`` encoding: the vector as little-endian float32, in base64."""
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode("ascii")


def model_object(task: str) -> dict[str, Any]:
    return {"id": task, "object": "model", "created": MODELS_CREATED, "owned_by": "taskmodels"}


def models_body(tasks: Iterable[str]) -> bytes:
    return json.dumps({"object": "list", "data": [model_object(t) for t in tasks]}, ensure_ascii=False).encode()
