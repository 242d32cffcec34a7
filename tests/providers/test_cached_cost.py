"""Cost with cached and reasoning tokens, per provider, streamed and not: the prompt-cache discount and the
cache-write surcharge are applied, reasoning is billed as output, and a stream costs what the same answer costs
unstreamed. The expected figures are worked out by hand from each vendor body in ``test_usage_parity``."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.types import StreamEvent
from tests.providers.kinds import build
from tests.providers.test_usage_parity import CASES, KEY, REQUEST

# USD per 1,000 tokens: plain input, cache reads, cache writes, output (reasoning included).
PRICES = {
    "input_cost_per_1k_tokens": 2.0,
    "cached_input_cost_per_1k_tokens": 0.5,
    "cache_write_cost_per_1k_tokens": 2.5,
    "output_cost_per_1k_tokens": 8.0,
}

# (plain input x 2.0 + cache reads x 0.5 + cache writes x 2.5 + output x 8.0) / 1000, per case of CASES.
EXPECTED_COST = {
    "openai": (86 * 2.0 + 1920 * 0.5 + 300 * 8.0) / 1000,  # 2006 in, 1920 cached; 300 out, 192 of it reasoning
    "azure": (86 * 2.0 + 1920 * 0.5 + 300 * 8.0) / 1000,
    "llama.cpp timings": (120 * 2.0 + 290 * 0.5 + 40 * 8.0) / 1000,
    "llama.cpp details": (120 * 2.0 + 290 * 0.5 + 40 * 8.0) / 1000,
    "deepseek": (154 * 2.0 + 256 * 0.5 + 40 * 8.0) / 1000,
    "anthropic": (12 * 2.0 + 100 * 0.5 + 20 * 2.5 + 6 * 8.0) / 1000,  # input_tokens excludes the cache: 12 + 100 + 20
    "anthropic, newer message_delta": (12 * 2.0 + 100 * 0.5 + 20 * 2.5 + 6 * 8.0) / 1000,
    "gemini": (8 * 2.0 + 32 * 0.5 + (8 + 10) * 8.0) / 1000,  # thoughtsTokenCount billed as output
    "ollama": (26 * 2.0 + 298 * 8.0) / 1000,
}


def test_every_parity_case_has_a_worked_cost() -> None:
    assert set(EXPECTED_COST) == {case[0] for case in CASES}


@pytest.mark.parametrize(("case", "kind", "bodies"), [c[:3] for c in CASES], ids=[c[0] for c in CASES])
async def test_cached_and_reasoning_tokens_are_priced_streamed_and_not(
    mock_http: Any, case: str, kind: str, bodies: tuple[dict[str, Any], str]
) -> None:
    complete_body, stream_body = bodies
    mock_http.reply(json=complete_body)
    mock_http.reply_stream([stream_body])
    provider = build(kind, mock_http.client, key=KEY, **PRICES)
    model = provider.model

    unstreamed = model.cost((await provider.complete(REQUEST)).usage)
    events: list[StreamEvent] = [event async for event in provider.stream(REQUEST)]
    done = events[-1]
    assert done.type == "done"
    assert done.usage is not None
    streamed = model.cost(done.usage)

    assert unstreamed == pytest.approx(EXPECTED_COST[case])
    assert streamed == pytest.approx(EXPECTED_COST[case])
