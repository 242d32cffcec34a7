"""Deployments behind one model against real HTTP servers that misbehave on purpose.

Each deployment is its own ``FaultServer`` (its own port), so each server's request
log is exactly that deployment's traffic. The state store is the memory one; the
cross-process limits are in ``test_redis_rate_multiprocess.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import pytest

from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.testing import ManualClock, make_test_service
from tests.integration.faultserver import Behaviour, FaultServer, model_entry

pytestmark = pytest.mark.integration

NAME = "m-pooled"  # every deployment serves the same model name, as real deployments of one model do
FAST = ResilienceSettings(
    deadline=5.0,
    attempt_timeout=1.0,
    max_attempts_per_model=2,
    backoff_initial=0.01,
    backoff_max=0.05,
    retry_after_cap=1.0,
    breaker_failure_threshold=3,
)


def entry(model_id: str, url: str, **keys: Any) -> dict[str, Any]:
    return model_entry(model_id, url, **{"modelName": NAME, **keys})


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, FaultServer]]:
    started = {name: await FaultServer().start() for name in ("a", "b", "c", "next")}
    yield started
    for server in started.values():
        await server.stop()


Build = Callable[..., Awaitable[ModelService]]


@pytest.fixture
async def build(servers: dict[str, FaultServer]) -> AsyncIterator[Build]:
    clients: list[httpx2.AsyncClient] = []

    async def make(deployments: list[dict[str, Any]], **service: Any) -> ModelService:
        for d in deployments:
            d.setdefault("baseUrl", servers[d["id"]].base_url)
        registry_data = {
            "models": [
                entry("pooled", servers["a"].base_url, deployments=deployments),
                entry("next", servers["next"].base_url),
            ],
            "taskMappings": [{"taskName": "t", "primaryModelId": "pooled", "fallbackModelIds": ["next"]}],
            "defaultModelId": "next",
        }
        client = httpx2.AsyncClient(timeout=httpx2.Timeout(10.0, connect=1.0))
        clients.append(client)
        factory = ModelProviderFactory(Settings(), client)
        registry = ModelRegistryService.from_dict(registry_data, provider_names=factory.provider_names())
        return make_test_service(
            registry,
            provider_factory=factory,
            state_store=MemoryStateStore(),
            resilience=FAST,
            **service,
        )

    yield make
    for client in clients:
        await client.aclose()


async def calls(service: ModelService, n: int, *, lanes: int = 1) -> Counter[str]:
    served: Counter[str] = Counter()

    async def lane(count: int) -> None:
        for _ in range(count):
            result = await service.complete_with_task_model("t", "hi")
            served[result.deployment_id or result.model_id] += 1

    await asyncio.gather(*(lane(n // lanes) for _ in range(lanes)))
    return served


async def test_over_a_thousand_calls_each_deployment_gets_its_weight(
    build: Build, servers: dict[str, FaultServer]
) -> None:
    weights = {"a": 5.0, "b": 3.0, "c": 2.0}
    service = await build([{"id": d, "weight": w} for d, w in weights.items()])
    served = await calls(service, 1000, lanes=10)
    total = sum(weights.values())
    for d, w in weights.items():
        share = servers[d].hits(NAME) / 1000
        assert abs(share - w / total) <= 0.05, (d, share)
        assert served[d] == servers[d].hits(NAME)  # what the results say is what the servers saw
    assert servers["next"].hits(NAME) == 0


async def test_a_deployment_answering_429_gets_no_traffic_until_its_retry_after(
    build: Build, servers: dict[str, FaultServer]
) -> None:
    wall = ManualClock(1_700_000_000.0)
    service = await build([{"id": "a"}, {"id": "b"}], wall_clock=wall)
    servers["a"].script(NAME, [Behaviour.rate_limited("20")])
    first = await service.complete_with_task_model("t", "hi")
    assert first.deployment_id == "b"  # the sibling served the call at once
    assert [(a.deployment_id, a.status_code) for a in first.attempts] == [("a", 429), ("b", None)]
    served = await calls(service, 20)
    assert served == {"b": 20}
    assert servers["a"].hits(NAME) == 1
    health = (await service.health())["models"]["pooled"]["deployments"]
    assert health["a"]["held_until"] == wall() + 20
    wall.advance(20)
    served = await calls(service, 20)
    assert served == {"a": 10, "b": 10}


async def test_headers_showing_nothing_left_move_traffic_off_a_deployment_before_any_429(
    build: Build, servers: dict[str, FaultServer]
) -> None:
    wall = ManualClock(1_700_000_000.0)
    service = await build([{"id": "a"}, {"id": "b"}], wall_clock=wall)
    exhausted = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    servers["a"].always(NAME, Behaviour.ok(headers=exhausted))
    served = await calls(service, 20)
    assert servers["a"].hits(NAME) == 1  # it answered once, said it was spent, and was left alone
    assert served == {"a": 1, "b": 19}
    assert all(r.behaviour.status == 200 for r in servers["a"].requests())  # no 429 was needed
    wall.advance(360)
    servers["a"].always(NAME, Behaviour.ok(headers={"x-ratelimit-remaining-requests": "99"}))
    served = await calls(service, 4)
    assert served == {"a": 2, "b": 2}


async def test_few_tokens_left_in_anthropic_style_headers_hold_the_deployment_too(
    build: Build, servers: dict[str, FaultServer]
) -> None:
    service = await build([{"id": "a"}, {"id": "b"}])
    servers["a"].always(
        NAME,
        Behaviour.ok(
            headers={
                "anthropic-ratelimit-tokens-remaining": "3",
                "anthropic-ratelimit-tokens-reset": "2099-01-01T00:00:00Z",
            }
        ),
    )
    await calls(service, 10)
    assert servers["a"].hits(NAME) == 1
    assert servers["b"].hits(NAME) == 9


async def test_a_pool_whose_deployments_all_fail_hands_over_to_the_next_model(
    build: Build, servers: dict[str, FaultServer]
) -> None:
    service = await build([{"id": "a"}, {"id": "b"}])
    servers["a"].always(NAME, "503")
    servers["b"].always(NAME, "reset")
    result = await service.complete_with_task_model("t", "hi")
    assert (result.model_id, result.deployment_id) == ("next", None)
    tried = [(a.model_id, a.deployment_id, a.outcome) for a in result.attempts]
    assert tried[-1] == ("next", None, "success")
    assert {("pooled", "a", "error"), ("pooled", "b", "error")} <= set(tried)
    # The last deployment of the pool is retried as a single model would be; the first moved on at once.
    assert servers["a"].hits(NAME) + servers["b"].hits(NAME) >= 2
