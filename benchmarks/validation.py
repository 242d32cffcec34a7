"""What the edge check of a call's arguments (``taskmodels.validation``) costs, as a share of a bare call.

Every call's arguments are checked once, before selection: a ``CompletionRequest`` built from the caller's
fields, each field's type and range, OpenAI-shaped dicts turned into the library's values. This times
``coerce_request`` on three shapes of request — the common one (a prompt and a system prompt), a conversation
of four messages with a tool, and the same conversation given as OpenAI-shaped dicts (what the gateway passes
on) — beside building the bare ``CompletionRequest`` from the same fields without any check, and divides the
difference by the CPU of a bare ``httpx2`` call to the benchmark server, measured in the same run. The target
is under 2 % of a bare call. Best of ``repeats`` rounds each, rounds interleaved so load spreads evenly::

    python -m benchmarks.validation                 # a few seconds
    python -m benchmarks.validation --calls 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx2

from benchmarks.clients import PROMPT
from benchmarks.server import BenchServer

__all__ = ["measure_validation"]

TARGET = 0.02


def _shapes() -> dict[str, dict[str, Any]]:
    from taskmodels.types import Message, ToolSpec

    weather = {"type": "object", "properties": {"city": {"type": "string"}}}
    conversation = [
        Message(role="system", content="You are concise."),
        Message(role="user", content=PROMPT),
        Message(role="assistant", content="Which city?"),
        Message(role="user", content="Oslo."),
    ]
    as_dicts = [{"role": m.role, "content": m.content} for m in conversation]
    return {
        "prompt + system prompt": {"prompt": PROMPT, "system_prompt": "You are concise."},
        "4 messages + a tool": {"messages": conversation, "tools": [ToolSpec("weather", "today's", weather)]},
        "4 OpenAI-shaped messages + a tool": {
            "messages": as_dicts,
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": weather}}],
        },
    }


def _cpu(work: Callable[[], Any], calls: int) -> float:
    t0 = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - t0) / calls


async def _bare_cpu(calls: int, repeats: int) -> float:
    with BenchServer(chunks=5, lifetime=300.0) as server:
        async with httpx2.AsyncClient() as client:
            url = f"{server.url}/v1/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
            for _ in range(200):
                (await client.post(url, json=body)).raise_for_status()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.process_time()
                for _ in range(calls):
                    (await client.post(url, json=body)).raise_for_status()
                best = min(best, (time.process_time() - t0) / calls)
            return best


def measure_validation(calls: int = 20000, *, repeats: int = 7, bare_calls: int = 1000) -> dict[str, Any]:
    """CPU seconds per check of each shape, over building the request unchecked, as a share of a bare call."""
    from taskmodels.types import CompletionRequest
    from taskmodels.validation import coerce_request

    bare = asyncio.run(_bare_cpu(bare_calls, repeats))
    added: dict[str, float] = {}
    for name, fields in _shapes().items():
        checked, unchecked = float("inf"), float("inf")
        for _ in range(repeats):
            unchecked = min(unchecked, _cpu(lambda f=fields: CompletionRequest(**f), calls))  # type: ignore[misc]
            checked = min(checked, _cpu(lambda f=fields: coerce_request(None, f), calls))  # type: ignore[misc]
        added[name] = checked - unchecked
    share = {name: seconds / bare for name, seconds in added.items()}
    return {
        "calls": calls,
        "repeats": repeats,
        "bare_httpx2_cpu_per_call_s": bare,
        "added_cpu_per_call_s": added,
        "share_of_bare_call": share,
        "target": TARGET,
        "within_target": all(v < TARGET for v in share.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.validation", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    result = measure_validation(args.calls, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
