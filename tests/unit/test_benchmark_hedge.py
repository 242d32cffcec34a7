"""The hedging benchmark runs: its server's tail model answers late, and every variant's calls are counted.

No timing is asserted beyond what the tail model guarantees; the figures come from ``python -m benchmarks.hedge``.
"""

from __future__ import annotations

import time

import httpx2

from benchmarks.hedge import VARIANTS, run
from benchmarks.server import BenchServer


async def test_a_tail_model_sends_its_stream_headers_then_waits() -> None:
    with BenchServer(chunks=2, lifetime=60.0) as server:
        async with httpx2.AsyncClient() as client:
            start = time.monotonic()
            body = {"model": "tail-200-200", "stream": True, "messages": []}
            async with client.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
                headers_at = time.monotonic() - start
                lines = [line async for line in response.aiter_lines() if line.startswith("data:")]
            done_at = time.monotonic() - start
    assert response.status_code == 200
    assert lines[-1] == "data: [DONE]"
    assert done_at - headers_at > 0.05  # about 200 ms (log-normal, sigma 0.25) between the headers and the events


async def test_the_hedge_benchmark_runs_every_variant() -> None:
    outcomes = await run(calls=20, concurrency=10, rounds=1, mode="stream", warmup=5)
    assert set(outcomes) == set(VARIANTS)
    for outcome in outcomes.values():
        row = outcome.row()
        assert row["calls"] == 20
        assert row["extra_requests_per_call"] >= 0
    assert outcomes["no hedge"].row()["extra_requests_per_call"] == 0
