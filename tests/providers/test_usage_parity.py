"""Usage with cached and reasoning tokens, for every provider: a streamed answer reports the
same usage (and so the same cost) as the same answer unstreamed. Bodies follow each vendor's
documented formats; the numbers are chosen so that every detail field differs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskmodels.types import CompletionRequest, StreamEvent, Usage
from tests.providers.kinds import build

REQUEST = CompletionRequest(prompt="x")
KEY = "sk-usage-test-0123456789abcdef"


def sse(*payloads: Any) -> str:
    return "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)


def named_sse(*events: tuple[str, Any]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def openai_bodies(usage: dict[str, Any], **extra: Any) -> tuple[dict[str, Any], str]:
    complete = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
        "usage": usage,
        **extra,
    }
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    stream = sse(
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": usage, **extra},
        "[DONE]",
    )
    return complete, stream.replace('data: "[DONE]"', "data: [DONE]")


OPENAI_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0},
}
# llama.cpp's server: prompt_tokens is the whole prompt; timings say how much came from its cache.
LLAMACPP_USAGE = {"prompt_tokens": 410, "completion_tokens": 40, "total_tokens": 450}
LLAMACPP_TIMINGS = {"prompt_n": 120, "cache_n": 290, "predicted_n": 40, "prompt_ms": 900.0, "predicted_ms": 2000.0}

ANTHROPIC_USAGE = {"input_tokens": 12, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}


def anthropic_bodies(*, delta_repeats_input: bool) -> tuple[dict[str, Any], str]:
    complete = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**ANTHROPIC_USAGE, "output_tokens": 6},
    }
    start = {
        "type": "message_start",
        "message": {**complete, "content": [], "stop_reason": None, "usage": {**ANTHROPIC_USAGE, "output_tokens": 1}},
    }
    delta_usage = {**ANTHROPIC_USAGE, "output_tokens": 6} if delta_repeats_input else {"output_tokens": 6}
    stream = named_sse(
        ("message_start", start),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": delta_usage}),
        ("message_stop", {"type": "message_stop"}),
    )
    return complete, stream


def gemini_bodies() -> tuple[dict[str, Any], str]:
    final = {
        "promptTokenCount": 40,
        "cachedContentTokenCount": 32,
        "candidatesTokenCount": 8,
        "thoughtsTokenCount": 10,
        "totalTokenCount": 58,
    }
    complete = {
        "candidates": [{"content": {"parts": [{"text": "Hi there"}], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": final,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }
    first = {**final, "candidatesTokenCount": 3, "totalTokenCount": 53}
    stream = sse(
        {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}], "usageMetadata": first},
        {
            "candidates": [{"content": {"parts": [{"text": " there"}], "role": "model"}, "finishReason": "STOP"}],
            "usageMetadata": final,
        },
    )
    return complete, stream


def ollama_bodies() -> tuple[dict[str, Any], str]:
    counts = {"prompt_eval_count": 26, "eval_count": 298, "total_duration": 5191566416}
    complete = {"model": "llama3.2", "message": {"role": "assistant", "content": "Hi there"}, "done": True, **counts}
    lines = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": " there"}, "done": False},
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            **counts,
        },
    ]
    return complete, "".join(json.dumps(line) + "\n" for line in lines)


CASES: list[tuple[str, str, tuple[dict[str, Any], str], Usage]] = [
    ("openai", "openai", openai_bodies(OPENAI_USAGE), Usage(2006, 300, cached_tokens=1920, reasoning_tokens=192)),
    ("azure", "azure-openai", openai_bodies(OPENAI_USAGE), Usage(2006, 300, cached_tokens=1920, reasoning_tokens=192)),
    (
        "llama.cpp timings",
        "openai-compatible",
        openai_bodies(LLAMACPP_USAGE, timings=LLAMACPP_TIMINGS),
        Usage(410, 40, cached_tokens=290),
    ),
    (
        "llama.cpp details",
        "openai-compatible",
        openai_bodies({**LLAMACPP_USAGE, "prompt_tokens_details": {"cached_tokens": 290}}),
        Usage(410, 40, cached_tokens=290),
    ),
    (
        "deepseek",
        "openai-compatible",
        openai_bodies({**LLAMACPP_USAGE, "prompt_cache_hit_tokens": 256, "prompt_cache_miss_tokens": 154}),
        Usage(410, 40, cached_tokens=256),
    ),
    (
        "anthropic",
        "anthropic",
        anthropic_bodies(delta_repeats_input=False),
        Usage(132, 6, cached_tokens=100, cache_write_tokens=20),
    ),
    (
        "anthropic, newer message_delta",
        "anthropic",
        anthropic_bodies(delta_repeats_input=True),
        Usage(132, 6, cached_tokens=100, cache_write_tokens=20),
    ),
    ("gemini", "gemini", gemini_bodies(), Usage(40, 18, cached_tokens=32, reasoning_tokens=10)),
    ("ollama", "ollama", ollama_bodies(), Usage(26, 298)),
]


@pytest.mark.parametrize(("kind", "bodies", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_streamed_usage_equals_unstreamed_usage(
    mock_http: Any, kind: str, bodies: tuple[dict[str, Any], str], expected: Usage
) -> None:
    complete_body, stream_body = bodies
    mock_http.reply(json=complete_body)
    mock_http.reply_stream([stream_body])
    provider = build(kind, mock_http.client, key=KEY)

    result = await provider.complete(REQUEST)
    events: list[StreamEvent] = [event async for event in provider.stream(REQUEST)]

    assert result.usage == expected
    assert events[-1].type == "done"
    assert events[-1].usage == expected
    assert "".join(e.text for e in events if e.type == "text") == result.text == "Hi there"
    model = provider.model
    assert model.cost(events[-1].usage) == model.cost(result.usage)
    # The details are parts of the totals, never more than them.
    assert expected.cached_tokens + expected.cache_write_tokens <= expected.input_tokens
    assert expected.reasoning_tokens <= expected.output_tokens
