"""What choosing within a pool and rate-limit admission cost, as a share of a bare call.

Three services over a provider that answers at once (``layer.py``'s), on the memory store:
a model without deployments (today's path), a pool of three weighted deployments, and the
same pool with ``rpm``/``tpm`` on every deployment (a rate reservation and settle per call).
The extra CPU per call of the two pools over the plain model is divided by the CPU of a
bare ``httpx2`` call to the benchmark server, measured in the same run; the target is
under 2 %. Best of ``repeats`` rounds each, rounds interleaved so load spreads evenly::

    python -m benchmarks.pools              # short run, a few seconds
    python -m benchmarks.pools --calls 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from benchmarks.clients import PROMPT
from benchmarks.layer import INSTANT_MODEL, _instant_provider_class
from benchmarks.server import BenchServer

__all__ = ["measure_pools"]

TARGET = 0.02


def _registry(deployments: list[dict[str, Any]] | None) -> dict[str, Any]:
    model: dict[str, Any] = dict(INSTANT_MODEL)
    if deployments is not None:
        model["deployments"] = deployments
    return {
        "models": [model],
        "taskMappings": [{"taskName": "t", "primaryModelId": "instant"}],
        "defaultModelId": "instant",
    }


def _service(deployments: list[dict[str, Any]] | None) -> Callable[[], Awaitable[Any]]:
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.registry.service import ModelRegistryService
    from taskmodels.resilience.state import MemoryStateStore
    from taskmodels.testing import make_test_service

    factory = ModelProviderFactory(discover_entry_points=False)
    factory.register_provider_implementation("instant", _instant_provider_class())
    registry = ModelRegistryService.from_dict(_registry(deployments), provider_names=factory.provider_names())
    service = make_test_service(
        registry,
        provider_factory=factory,
        state_store=MemoryStateStore(),
    )
    return lambda: service.complete_with_task_model("t", prompt=PROMPT)


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    t0 = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - t0) / calls


async def measure_pools(calls: int = 5000, *, repeats: int = 5, bare_calls: int = 1000) -> dict[str, Any]:
    """CPU seconds per call of each variant (best of ``repeats``) and the pools' extra as a share of a bare call."""
    three: list[dict[str, Any]] = [{"id": "a", "weight": 3}, {"id": "b", "weight": 2}, {"id": "c"}]
    limited = [{**d, "rpm": 10**9, "tpm": 10**12} for d in three]
    variants = {"single": _service(None), "pool": _service(three), "pool+limits": _service(limited)}
    best = dict.fromkeys(variants, float("inf"))
    with BenchServer(chunks=5, lifetime=300.0) as server:
        async with httpx2.AsyncClient() as client:
            url = f"{server.url}/v1/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}

            async def bare() -> None:
                (await client.post(url, json=body)).raise_for_status()

            for _ in range(200):
                await bare()
            bare_cpu = min([await _cpu_per_call(bare, bare_calls) for _ in range(repeats)])
    for call in variants.values():
        await _cpu_per_call(call, min(calls, 2000))  # warm-up
    for _ in range(repeats):
        for name, call in variants.items():
            best[name] = min(best[name], await _cpu_per_call(call, calls))
    extra = {name: (best[name] - best["single"]) / bare_cpu for name in ("pool", "pool+limits")}
    return {
        "calls": calls,
        "repeats": repeats,
        "bare_httpx2_cpu_per_call_s": bare_cpu,
        "cpu_per_call_s": best,
        "extra_share_of_bare_call": extra,
        "target": TARGET,
        "within_target": all(v < TARGET for v in extra.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pools", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = asyncio.run(measure_pools(args.calls, repeats=args.repeats))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
