"""Circuit breakers: open after repeated failures, probe after the cooldown, close on success; a failing store
never fails a call; when every breaker is open the soonest to close is tried."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from taskmodels.engine.admission import Gate
from taskmodels.errors import AllModelsFailedError, TaskModelsError
from taskmodels.resilience.breaker import CircuitBreaker
from taskmodels.resilience.state import (
    Admission,
    BreakerSnapshot,
    MemoryStateStore,
    SpendDecision,
    StateStore,
)
from taskmodels.sections import ResilienceSettings
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    bad_request,
    context_length,
    fake_model,
    fake_registry,
    make_test_service,
    server_error,
)

THREE = fake_registry(fake_model("a"), fake_model("b"), fake_model("c"))


def make(store: StateStore | None = None, **settings: Any) -> tuple[Any, FakeBackend, ManualClock]:
    backend = FakeBackend()
    clock = ManualClock()
    settings.setdefault("max_attempts_per_model", 1)
    service = make_test_service(
        THREE,
        backend=backend,
        state_store=store,
        resilience=ResilienceSettings(**settings),
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )
    return service, backend, clock


async def test_opens_after_the_threshold_and_calls_go_straight_to_the_next_model() -> None:
    service, backend, _ = make(breaker_failure_threshold=2, breaker_cooldown=30)
    backend.always("a", server_error())
    for _ in range(2):
        assert (await service.complete_with_task_model("t", "p")).model_id == "b"
    assert (await service.health())["models"]["a"]["state"] == "open"
    calls_before = len(backend.calls_for("a"))
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert len(backend.calls_for("a")) == calls_before  # the open route was not called
    assert (result.attempts[0].model_id, result.attempts[0].outcome) == ("a", "skipped")


async def test_after_the_cooldown_one_probe_goes_through_and_success_closes() -> None:
    service, backend, clock = make(breaker_failure_threshold=1, breaker_cooldown=30)
    backend.script("a", server_error())
    await service.complete_with_task_model("t", "p")
    assert (await service.health())["models"]["a"]["state"] == "open"
    clock.advance(31)
    assert (await service.health())["models"]["a"]["state"] == "half_open"
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "a"
    assert (await service.health())["models"]["a"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "retry_at": None,
        "cooldown": None,
    }


async def test_a_failed_probe_opens_the_breaker_for_twice_the_cooldown() -> None:
    service, backend, clock = make(breaker_failure_threshold=1, breaker_cooldown_initial=30)
    backend.script("a", server_error(), server_error())
    await service.complete_with_task_model("t", "p")
    clock.advance(31)
    await service.complete_with_task_model("t", "p")  # the probe fails
    health = (await service.health())["models"]["a"]
    assert health["state"] == "open"
    assert health["retry_at"] == pytest.approx(clock.now + 60)
    assert (await service.breaker.snapshot("a")).cooldown == 60
    assert len(backend.calls_for("a")) == 2


async def test_the_cooldown_doubles_per_failed_probe_up_to_the_cap_and_a_success_starts_it_over() -> None:
    clock = ManualClock(100.0)
    breaker = CircuitBreaker(MemoryStateStore(), threshold=2, cooldown=1, cooldown_max=5, clock=clock)
    await breaker.record_failure("m")
    snap = await breaker.record_failure("m")
    assert snap is not None
    assert (snap.state, snap.retry_at, snap.cooldown) == ("open", 101.0, 1.0)
    seen: list[float] = []
    for _ in range(5):
        assert snap.retry_at is not None
        clock.now = snap.retry_at
        assert (await breaker.admit("m", probe_lease=1)).probe
        snap = await breaker.record_failure("m")
        assert snap is not None
        assert snap.cooldown is not None
        seen.append(snap.cooldown)
        assert snap.retry_at == clock.now + snap.cooldown
    assert seen == [2, 4, 5, 5, 5]
    assert snap.retry_at is not None
    clock.now = snap.retry_at
    assert (await breaker.admit("m", probe_lease=1)).probe
    await breaker.record_success("m")
    assert (await breaker.snapshot("m")).cooldown is None
    for _ in range(2):
        snap = await breaker.record_failure("m")
    assert snap is not None
    assert (snap.state, snap.cooldown) == ("open", 1.0)


def test_a_cap_below_the_first_cooldown_keeps_it_fixed() -> None:
    breaker = CircuitBreaker(MemoryStateStore(), threshold=1, cooldown=30, cooldown_max=10)
    assert (breaker.cooldown, breaker.cooldown_max) == (30, 30)


def test_from_settings_takes_the_breaker_fields() -> None:
    settings = ResilienceSettings(breaker_failure_threshold=4, breaker_cooldown_initial=2, breaker_cooldown_max=64)
    breaker = CircuitBreaker.from_settings(MemoryStateStore(), settings, clock=lambda: 5.0)
    assert (breaker.threshold, breaker.cooldown, breaker.cooldown_max, breaker.clock()) == (4, 2, 64, 5.0)


async def test_when_every_breaker_is_open_the_soonest_to_close_is_tried() -> None:
    service, backend, clock = make(breaker_failure_threshold=1, breaker_cooldown=30)
    # open b first, then a and c later: b's retry_at is the soonest
    await _open(service, "b")
    clock.advance(5)
    await _open(service, "a", "c")
    health = (await service.health())["models"]
    assert {m: health[m]["state"] for m in "abc"} == {"a": "open", "b": "open", "c": "open"}
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert [a.outcome for a in result.attempts] == ["skipped", "skipped", "skipped", "success"]
    assert backend.models_called() == ["b"]


async def _open(service: Any, *models: str) -> None:
    for m in models:
        await service.breaker.record_failure(m)


async def test_when_every_breaker_is_open_and_the_soonest_fails_the_call_fails_cleanly() -> None:
    service, backend, _ = make(breaker_failure_threshold=1)
    for m in "abc":
        backend.always(m, server_error())
    with pytest.raises(AllModelsFailedError):
        await service.complete_with_task_model("t", "p")
    with pytest.raises(AllModelsFailedError) as info:
        await service.complete_with_task_model("t", "p")
    tried = [a for a in info.value.attempts if a.outcome == "error"]
    assert len(tried) == 1


@pytest.mark.parametrize("failure", [context_length(), bad_request()])
async def test_failures_caused_by_the_request_do_not_count(failure: Any) -> None:
    service, backend, _ = make(breaker_failure_threshold=1)
    backend.always("a", failure)
    for _ in range(3):
        with pytest.raises(TaskModelsError):
            await service.complete_with_task_model("t", "p")
    assert (await service.health())["models"]["a"]["state"] == "closed"
    assert len(backend.calls_for("a")) == 3


class BrokenStore(StateStore):
    """A store whose server is gone: every operation raises."""

    def __init__(self) -> None:
        self.calls = 0

    def _boom(self) -> ConnectionError:
        self.calls += 1
        return ConnectionError("redis is down")

    async def admit(self, key: str, *, now: float, probe_lease: float) -> Admission:
        raise self._boom()

    async def record_success(self, key: str, *, now: float) -> BreakerSnapshot:
        raise self._boom()

    async def record_failure(
        self, key: str, *, now: float, threshold: int, cooldown: float, cooldown_max: float | None = None
    ) -> BreakerSnapshot:
        raise self._boom()

    async def breaker(self, key: str, *, now: float) -> BreakerSnapshot:
        raise self._boom()

    async def breakers(self, *, now: float) -> Mapping[str, BreakerSnapshot]:
        raise self._boom()

    async def reserve_spend(
        self, scope: str, amount: float, *, limit: float, window: float, now: float
    ) -> SpendDecision:
        raise self._boom()

    async def add_spend(self, scope: str, amount: float, *, window: float, now: float) -> float:
        raise self._boom()

    async def spend(self, scope: str, *, window: float, now: float) -> float:
        raise self._boom()


async def test_a_failing_store_never_fails_a_call_and_warns_once() -> None:
    store = BrokenStore()
    service, backend, _ = make(store)
    backend.script("a", server_error())
    with capture_logs() as logs:
        first = await service.complete_with_task_model("t", "p")
        second = await service.complete_with_task_model("t", "p")
        health = await service.health()
    assert (first.model_id, second.model_id) == ("b", "a")
    assert store.calls > 3
    lost = [e for e in logs if e["event"] == "taskmodels.state.lost"]
    assert len(lost) == 1
    assert lost[0]["error_class"] == "ConnectionError"
    assert health["models"]["a"]["state"] == "closed"


async def test_admission_warns_again_when_the_store_comes_back() -> None:
    store = MemoryStateStore()
    gate = Gate(store, CircuitBreaker(store, threshold=1, cooldown=10, clock=lambda: 100.0))
    real_admit = store.admit

    async def down(key: str, *, now: float, probe_lease: float) -> Admission:
        raise OSError("down")

    store.admit = down  # type: ignore[method-assign]
    with capture_logs() as logs:
        assert (await gate.admit("m", probe_lease=1)).allowed
        store.admit = real_admit  # type: ignore[method-assign]
        assert (await gate.admit("m", probe_lease=1)).allowed
    assert [e["event"] for e in logs] == ["taskmodels.state.lost", "taskmodels.state.recovered"]


async def test_the_breaker_itself_lets_a_store_failure_through_to_admission() -> None:
    breaker = CircuitBreaker(BrokenStore(), threshold=1, cooldown=10, clock=lambda: 100.0)
    with pytest.raises(ConnectionError):
        await breaker.admit("m", probe_lease=1)


async def test_trip_opens_at_once_whatever_the_threshold() -> None:
    breaker = CircuitBreaker(MemoryStateStore(), threshold=5, cooldown=10, clock=lambda: 100.0)
    snap = await breaker.record_failure("m", trip=True)
    assert snap is not None
    assert (snap.state, snap.retry_at) == ("open", 110.0)
    admission = await breaker.admit("m", probe_lease=1)
    assert (admission.allowed, admission.retry_at) == (False, 110.0)


async def test_a_failed_probe_is_not_retried_within_the_same_call() -> None:
    service, backend, clock = make(breaker_failure_threshold=1, breaker_cooldown=30, max_attempts_per_model=3)
    backend.script("a", server_error(), server_error(), server_error())
    await service.complete_with_task_model("t", "p")
    assert len(backend.calls_for("a")) == 1  # the failure opened the breaker: no retry on a
    clock.advance(31)
    result = await service.complete_with_task_model("t", "p")
    assert len(backend.calls_for("a")) == 2  # one probe, not retried after it reopened the breaker
    assert result.model_id == "b"


# --- settings --------------------------------------------------------------------------------


def test_the_cooldown_settings_default_to_one_second_doubling_up_to_two_minutes() -> None:
    settings = ResilienceSettings()
    assert (settings.breaker_cooldown_initial, settings.breaker_cooldown_max) == (1.0, 120.0)
    breaker = CircuitBreaker(MemoryStateStore(), threshold=3)
    assert (breaker.cooldown, breaker.cooldown_max) == (1.0, 120.0)


def test_breaker_cooldown_is_the_former_name_of_the_first_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmodels.settings import load_settings

    # Validated from data, as a settings file or the environment gives it: the alias is invisible to the signature.
    assert ResilienceSettings.model_validate({"breaker_cooldown": 7}).breaker_cooldown_initial == 7
    assert ResilienceSettings(breaker_cooldown_initial=3).breaker_cooldown == 3
    monkeypatch.setenv("TASKMODELS_RESILIENCE__BREAKER_COOLDOWN", "4")
    assert load_settings().resilience.breaker_cooldown_initial == 4


def test_a_cap_below_the_first_cooldown_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmodels.errors import SettingsError
    from taskmodels.settings import load_settings

    monkeypatch.setenv("TASKMODELS_RESILIENCE__BREAKER_COOLDOWN_INITIAL", "300")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "TASKMODELS_RESILIENCE__BREAKER_COOLDOWN_MAX" in str(info.value)
    assert "at least breaker_cooldown_initial (300 s)" in str(info.value)
    monkeypatch.setenv("TASKMODELS_RESILIENCE__BREAKER_COOLDOWN_MAX", "300")
    assert load_settings().resilience.breaker_cooldown_max == 300
