"""Hedged requests against a long tail: the p99 of a call with and without ``hedge``, and what it cost.

The benchmark server's ``tail-50-2000`` model sends its first token after about 50 ms (log-normal,
sigma 0.25) and after 2 s for 2 % of requests, so 2 s is its p99. A task's primary and its fallback are two
registry models on it (two deployments of one model, as far as the latency goes). Variants, interleaved in
rounds and measured on the same server in one process:

- ``no hedge``          the chain as it is: the slow 2 % wait their 2 s
- ``hedge after 0.1 s`` a fixed delay, about twice the median
- ``hedge after p95``   the task's rolling p95 of time to first token (warmed up before timing)

Each call is a stream read to its end (the race is to the first token); ``--mode complete`` times
``complete_with_task_model`` instead. "Extra requests" are the hedges sent, per call.

    python -m benchmarks.hedge                      # 600 calls per variant at concurrency 20, about 30 s
    python -m benchmarks.hedge --calls 3000 --json benchmarks/results/hedge.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import percentile
from benchmarks.server import TAIL_SLOW_SHARE, BenchServer

__all__ = ["VARIANTS", "Outcome", "main", "run"]

TAIL_MODEL = "tail-50-2000"
VARIANTS: dict[str, dict[str, Any] | None] = {
    "no hedge": None,
    "hedge after 0.1 s": {"after": 0.1},
    "hedge after p95": {"after": "p95"},
}


@dataclass(slots=True)
class Outcome:
    name: str
    walls: list[float] = field(default_factory=list)
    requests: int = 0  # attempts that reached the server (skips excluded)
    cancelled: int = 0

    def row(self) -> dict[str, float]:
        calls = len(self.walls)
        return {
            "calls": calls,
            "p50_ms": percentile(self.walls, 50) * 1000,
            "p95_ms": percentile(self.walls, 95) * 1000,
            "p99_ms": percentile(self.walls, 99) * 1000,
            "max_ms": max(self.walls) * 1000,
            "mean_ms": statistics.fmean(self.walls) * 1000,
            "extra_requests_per_call": (self.requests - calls) / calls,
            "cancelled_per_call": self.cancelled / calls,
        }


def _registry(api_base: str) -> dict[str, Any]:
    def model(model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "provider": "openai-compatible",
            "modelName": TAIL_MODEL,
            "maxTokens": 64,
            "temperature": 0.0,
            "contextWindow": 8192,
            "costPer1kTokens": 0.001,
            "baseUrl": api_base,
        }

    tasks = []
    for name, hedge in VARIANTS.items():
        task: dict[str, Any] = {"taskName": name, "primaryModelId": "primary", "fallbackModelIds": ["sibling"]}
        if hedge is not None:
            task["hedge"] = hedge
        tasks.append(task)
    return {"models": [model("primary"), model("sibling")], "taskMappings": tasks, "defaultModelId": "primary"}


async def _service(api_base: str, stack: AsyncExitStack) -> Any:
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.sections import ResilienceSettings
    from taskmodels.settings import Settings

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="taskmodels-hedge-")))
    path = folder / "modelRegistry.json"
    path.write_text(json.dumps(_registry(api_base)), encoding="utf-8")
    # A breaker that never opens: the slow requests are not failures, and must not move traffic.
    resilience = ResilienceSettings(breaker_failure_threshold=10**9, first_token_timeout=10.0)
    container = Container(settings=providers.Object(Settings(registry_path=path, resilience=resilience)))
    stack.push_async_callback(container.aclose)
    return container.model_service()


def _caller(service: Any, task: str, mode: str, outcome: Outcome) -> Callable[[], Awaitable[None]]:
    async def streamed() -> Any:
        result = None
        async for event in service.stream_with_task_model(task, prompt="Say hello."):
            if event.type == "done":
                result = event.result
        return result

    async def one() -> None:
        start = time.perf_counter()
        if mode == "stream":
            result = await streamed()
        else:
            result = await service.complete_with_task_model(task, prompt="Say hello.")
        outcome.walls.append(time.perf_counter() - start)
        if result is None:
            raise RuntimeError(f"{task}: the stream ended without its result")
        outcome.requests += sum(1 for a in result.attempts if a.outcome != "skipped")
        outcome.cancelled += sum(1 for a in result.attempts if a.outcome == "cancelled")

    return one


async def _burst(call: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def guarded() -> None:
        async with gate:
            await call()

    async with asyncio.TaskGroup() as group:
        for _ in range(calls):
            group.create_task(guarded())


async def run(*, calls: int, concurrency: int, rounds: int, mode: str, warmup: int) -> dict[str, Outcome]:
    outcomes = {name: Outcome(name) for name in VARIANTS}
    with BenchServer(chunks=5, lifetime=600.0) as server:
        async with AsyncExitStack() as stack:
            service = await _service(f"{server.url}/v1", stack)
            for name in VARIANTS:  # warm-up: connections, and the p95's first samples
                await _burst(_caller(service, name, mode, Outcome(name)), warmup, concurrency)
            names = list(VARIANTS)
            per_round = max(1, calls // rounds)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:  # rotated: ABC, BCA, CAB
                    await _burst(_caller(service, name, mode, outcomes[name]), per_round, concurrency)
            p95 = service.engine.latencies.p95("hedge after p95", "primary", first_token=mode == "stream")
    print(f"the task's rolling p95 of the primary's time to {'first token' if mode == 'stream' else 'answer'}: "
          f"{p95 * 1000:.0f} ms" if p95 is not None else "no p95 samples")  # fmt: skip
    return outcomes


def _table(outcomes: dict[str, Outcome]) -> str:
    lines = [
        "| variant | calls | p50 | p95 | p99 | max | extra requests per call |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for outcome in outcomes.values():
        row = outcome.row()
        lines.append(
            f"| {outcome.name} | {row['calls']:.0f} | {row['p50_ms']:.0f} ms | {row['p95_ms']:.0f} ms "
            f"| {row['p99_ms']:.0f} ms | {row['max_ms']:.0f} ms | {row['extra_requests_per_call']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600, help="timed calls per variant")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=60, help="untimed calls per variant first")
    parser.add_argument("--mode", choices=["stream", "complete"], default="stream")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    outcomes = asyncio.run(
        run(calls=args.calls, concurrency=args.concurrency, rounds=args.rounds, mode=args.mode, warmup=args.warmup)
    )
    print(f"server: {TAIL_MODEL} ({TAIL_SLOW_SHARE:.0%} of first tokens after 2 s), mode {args.mode}, "
          f"concurrency {args.concurrency}")  # fmt: skip
    print(_table(outcomes))
    if args.json is not None:
        payload = {"mode": args.mode, "concurrency": args.concurrency, "variants": {}}
        payload["variants"] = {name: o.row() for name, o in outcomes.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
