"""Budgets per task: reserve the estimate before an attempt, settle the actual cost after, give back on failure."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.errors import BudgetExceededError
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    fake_model,
    fake_registry,
    make_test_service,
    reply,
    server_error,
)
from taskmodels.types import Usage

WINDOW = 3600.0


def make(budget: dict[str, Any], *models: dict[str, Any]) -> tuple[Any, FakeBackend, MemoryStateStore, ManualClock]:
    backend = FakeBackend()
    store = MemoryStateStore()
    clock = ManualClock()
    models = models or (fake_model("a", price=1.0), fake_model("b", price=0.01))
    service = make_test_service(
        fake_registry(*models, budget=budget),
        backend=backend,
        state_store=store,
        resilience=ResilienceSettings(max_attempts_per_model=1),
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
    )
    return service, backend, store, clock


async def spent(store: MemoryStateStore, clock: ManualClock) -> float:
    return await store.spend("budget:t", window=WINDOW, now=clock())


async def test_spend_settles_to_the_actual_cost() -> None:
    service, backend, store, clock = make({"limit": 10.0, "windowSeconds": WINDOW})
    backend.script("a", reply(usage=Usage(1000, 1000)))
    result = await service.complete_with_task_model("t", "p", max_tokens=50)
    assert result.cost == pytest.approx(2.0)
    assert await spent(store, clock) == pytest.approx(2.0)


async def test_a_failed_attempt_gives_its_reservation_back() -> None:
    service, backend, store, clock = make({"limit": 10.0, "windowSeconds": WINDOW})
    backend.script("a", server_error())
    backend.script("b", reply(usage=Usage(1000, 0)))
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert await spent(store, clock) == pytest.approx(0.01)


async def test_a_refused_reservation_raises_budget_exceeded_before_any_call() -> None:
    service, backend, store, clock = make({"limit": 1.0, "windowSeconds": WINDOW})
    await store.add_spend("budget:t", 0.99, window=WINDOW, now=clock())
    with pytest.raises(BudgetExceededError) as info:
        await service.complete_with_task_model("t", "p")
    assert backend.calls == []
    assert info.value.task == "t"
    assert info.value.limit == 1.0
    assert info.value.spent == pytest.approx(0.99)


async def test_cheaper_mode_moves_to_candidates_whose_estimate_fits() -> None:
    service, backend, store, clock = make({"limit": 1.0, "windowSeconds": WINDOW, "onExceeded": "cheaper"})
    await store.add_spend("budget:t", 0.9, window=WINDOW, now=clock())
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert backend.models_called() == ["b"]
    assert (result.attempts[0].model_id, result.attempts[0].outcome) == ("a", "skipped")


async def test_cheaper_mode_with_nothing_cheap_enough_raises_budget_exceeded() -> None:
    service, backend, store, clock = make({"limit": 1.0, "windowSeconds": WINDOW, "onExceeded": "cheaper"})
    await store.add_spend("budget:t", 1.0, window=WINDOW, now=clock())
    with pytest.raises(BudgetExceededError):
        await service.complete_with_task_model("t", "p")
    assert backend.calls == []


async def test_a_new_window_starts_with_nothing_spent() -> None:
    service, _, store, clock = make({"limit": 1.0, "windowSeconds": WINDOW})
    await store.add_spend("budget:t", 1.0, window=WINDOW, now=clock())
    clock.advance(WINDOW)
    assert (await service.complete_with_task_model("t", "p")).model_id == "a"
