"""Hedged requests over real HTTP: the suite's fault server delays the primary's answer (or first token), and
the task's ``hedge`` starts the fallback alongside it. Real time, generous bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import pytest

from taskmodels.engine.outcome import HEDGE_CANCELLED
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.testing import make_test_service
from taskmodels.types import Attempt
from tests.integration.faultserver import Behaviour, FaultServer, model_entry

pytestmark = pytest.mark.integration

PRIMARY = "m-primary"
FALLBACK = "m-fallback"
SLOW = 1.5  # the slow primary's delay: far above the hedge's 0.05 s, far below the safety net
BOUND = 1.0  # a hedged call ends well within this; an un-hedged one would take SLOW

RESILIENCE = ResilienceSettings(deadline=5.0, attempt_timeout=3.0, first_token_timeout=3.0, max_attempts_per_model=1)
WINDOW = 3600.0


def registry_data(base_url: str) -> dict[str, Any]:
    chain = {"primaryModelId": PRIMARY, "fallbackModelIds": [FALLBACK]}
    return {
        "models": [model_entry(PRIMARY, base_url), model_entry(FALLBACK, base_url)],
        "taskMappings": [
            {"taskName": "hedged", **chain, "hedge": {"after": 0.05}},
            {
                "taskName": "budgeted",
                **chain,
                "hedge": {"after": 0.05},
                "budget": {"limit": 10.0, "windowSeconds": WINDOW},
            },
        ],
        "defaultModelId": PRIMARY,
    }


@pytest.fixture
async def service(fault_server: FaultServer) -> AsyncIterator[ModelService]:
    client = httpx2.AsyncClient(timeout=httpx2.Timeout(10.0, connect=1.0))
    factory = ModelProviderFactory(Settings(), client)
    registry = ModelRegistryService.from_dict(
        registry_data(fault_server.base_url), provider_names=factory.provider_names()
    )
    yield make_test_service(
        registry,
        provider_factory=factory,
        state_store=MemoryStateStore(),
        resilience=RESILIENCE,
    )
    await client.aclose()


def summary(attempts: tuple[Attempt, ...]) -> list[tuple[str, str, str | None]]:
    return [(a.model_id, a.outcome, a.error_class) for a in attempts]


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    start = time.monotonic()
    async with asyncio.timeout(10):  # a safety net only
        result = await work()
    return result, time.monotonic() - start


async def test_a_slow_primary_is_hedged_and_the_fallback_answers(
    fault_server: FaultServer, service: ModelService
) -> None:
    fault_server.always(PRIMARY, Behaviour.slow_first_token(SLOW))
    result, elapsed = await timed(lambda: service.complete_with_task_model("hedged", prompt="hello"))
    assert result.model_id == FALLBACK
    assert result.text == f"answer from {FALLBACK}"
    assert elapsed < BOUND
    assert summary(result.attempts) == [(PRIMARY, "cancelled", HEDGE_CANCELLED), (FALLBACK, "success", None)]
    assert fault_server.order() == [PRIMARY, FALLBACK]
    gap = fault_server.requests(FALLBACK)[0].at - fault_server.requests(PRIMARY)[0].at
    assert 0.04 <= gap < BOUND  # started by the hedge's timer, not by a timeout of the primary
    totals = service.totals()["tasks"]["hedged"]
    assert (totals["attempts"], totals["cancelled_attempts"], totals["calls"]) == (2, 1, 1)


async def test_a_fast_primary_sends_no_hedge(fault_server: FaultServer, service: ModelService) -> None:
    for _ in range(5):
        result, _ = await timed(lambda: service.complete_with_task_model("hedged", prompt="hello"))
        assert summary(result.attempts) == [(PRIMARY, "success", None)]
    assert fault_server.hits(FALLBACK) == 0
    assert fault_server.hits(PRIMARY) == 5


async def test_a_stream_is_hedged_on_its_first_token(fault_server: FaultServer, service: ModelService) -> None:
    fault_server.always(PRIMARY, Behaviour.slow_first_token(SLOW))

    async def read() -> list[Any]:
        return [e async for e in service.stream_with_task_model("hedged", prompt="hello")]

    events, elapsed = await timed(read)
    assert elapsed < BOUND
    assert [e.type for e in events if e.type != "text"] == ["done"]
    assert "".join(e.text for e in events if e.type == "text") == f"answer from {FALLBACK}"
    result = events[-1].result
    assert result is not None
    assert summary(result.attempts) == [(PRIMARY, "cancelled", HEDGE_CANCELLED), (FALLBACK, "success", None)]
    assert [r.stream for r in fault_server.requests()] == [True, True]


async def test_a_hedge_that_fails_leaves_the_primary_to_answer(
    fault_server: FaultServer, service: ModelService
) -> None:
    fault_server.always(PRIMARY, Behaviour.slow_first_token(0.4))
    fault_server.always(FALLBACK, "503")
    result, elapsed = await timed(lambda: service.complete_with_task_model("hedged", prompt="hello"))
    assert result.model_id == PRIMARY
    assert 0.35 <= elapsed < BOUND + 0.4
    assert summary(result.attempts) == [(FALLBACK, "error", "ProviderUnavailableError"), (PRIMARY, "success", None)]


async def test_both_count_against_the_budget(fault_server: FaultServer, service: ModelService) -> None:
    fault_server.always(PRIMARY, Behaviour.slow_first_token(SLOW))
    result, _ = await timed(lambda: service.complete_with_task_model("budgeted", prompt="hello"))
    assert result.model_id == FALLBACK
    spent = await service.state_store.spend("budget:budgeted", window=WINDOW, now=time.time())
    loser = service.totals()["models"][PRIMARY]["cost"]
    assert loser > 0
    assert spent == pytest.approx(result.cost + loser)
