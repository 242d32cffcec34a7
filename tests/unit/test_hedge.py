"""Hedged requests (``hedge`` on a task): a second candidate started alongside a slow first one.

The fakes answer from scripts; the hedge's timer runs on the event loop's own clock, so these tests take real
time in tens of milliseconds. Timing bounds are generous: they tell "hedged at 0.05 s" from "waited for a
timeout of 0.4 s", never one millisecond from the next.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from taskmodels.engine.latencies import Latencies
from taskmodels.engine.outcome import HEDGE_CANCELLED
from taskmodels.errors import BadRequestError, DeadlineExceededError, RegistryError
from taskmodels.registry import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    bad_request,
    cut,
    fake_model,
    fake_registry,
    hang,
    make_test_service,
    reply,
    server_error,
)
from taskmodels.types import StreamEvent, Usage
from tests.stores import SlowSecondReservation

WINDOW = 3600.0
PROMPT_TOKENS_OF = "p"  # one short prompt for every call


def service_for(
    hedge: dict[str, Any] | None,
    *models: str,
    backend: FakeBackend,
    store: MemoryStateStore | None = None,
    **mapping: Any,
) -> ModelService:
    registry = fake_registry(*(fake_model(m, price=0.01) for m in models or ("a", "b")), **mapping)
    if hedge is not None:
        registry["taskMappings"][0]["hedge"] = hedge
    return make_test_service(
        registry,
        backend=backend,
        state_store=store,
        resilience=ResilienceSettings(max_attempts_per_model=1),
    )


def outcomes(attempts: Any) -> list[tuple[str, str, str | None]]:
    return [(a.model_id, a.outcome, a.error_class) for a in attempts]


# --- the registry key ----------------------------------------------------------------------------


def test_hedge_is_validated_like_every_key() -> None:
    def problems(hedge: Any) -> dict[str, str]:
        try:
            ModelRegistryService.from_dict(fake_registry(fake_model("a"), fake_model("b"), hedge=hedge))
        except RegistryError as exc:
            return {p.path: p.message for p in exc.problems}
        return {}

    assert problems({"after": 0.05}) == {}
    assert problems({"after": "p95", "max": 2}) == {}
    assert problems({"after": "p99"}) == {
        "taskMappings[0].hedge.after": "must be a number of seconds > 0 or \"p95\" (got 'p99') (task 't')"
    }
    assert problems({"after": 0}) == {
        "taskMappings[0].hedge.after": "must be a number of seconds > 0 or \"p95\" (got 0) (task 't')"
    }
    assert problems({"max": 1}) == {"taskMappings[0].hedge.after": "missing required key 'after' (task 't')"}
    assert problems({"after": 1, "max": 0}) == {
        "taskMappings[0].hedge.max": "must be greater than or equal to 1 (got 0) (task 't')"
    }
    assert problems({"after": 1, "maxx": 2}) == {
        "taskMappings[0].hedge.maxx": "unknown key 'maxx'; did you mean 'max'? (task 't')"
    }


# --- completions ---------------------------------------------------------------------------------


async def test_a_slow_primary_is_hedged_and_the_fallback_answers() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", reply("from b", usage=Usage(100, 50)))
    service = service_for({"after": 0.05}, backend=backend)

    started = time.monotonic()
    result = await service.complete_with_task_model("t", PROMPT_TOKENS_OF)
    elapsed = time.monotonic() - started

    assert (result.text, result.model_id) == ("from b", "b")
    assert 0.04 <= elapsed < 2.0  # hedged after 0.05 s, not after the 30 s attempt timeout
    assert outcomes(result.attempts) == [("a", "cancelled", HEDGE_CANCELLED), ("b", "success", None)]
    assert result.attempts[0].error_message == "b answered first"
    assert backend.models_called() == ["a", "b"]
    totals = service.totals()
    assert totals["tasks"]["t"]["attempts"] == 2
    assert totals["tasks"]["t"]["cancelled_attempts"] == 1
    assert totals["tasks"]["t"]["failed_attempts"] == 0
    assert totals["models"]["a"]["cancelled_attempts"] == 1
    assert totals["models"]["a"]["cost"] > 0  # charged its prompt: a provider bills a request it received
    assert totals["models"]["b"]["cost"] == pytest.approx(result.cost)


async def test_a_fast_primary_sends_no_hedge() -> None:
    backend = FakeBackend()
    service = service_for({"after": 0.5}, backend=backend)
    for _ in range(3):
        result = await service.complete_with_task_model("t", "p")
        assert outcomes(result.attempts) == [("a", "success", None)]
    assert backend.models_called() == ["a", "a", "a"]
    assert service.totals()["tasks"]["t"]["cancelled_attempts"] == 0


async def test_the_first_to_answer_wins_even_the_primary() -> None:
    backend = FakeBackend()
    backend.always("a", reply("from a", delay=0.15))
    backend.always("b", reply("from b", delay=5.0))
    service = service_for({"after": 0.05}, backend=backend)
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "a"
    assert outcomes(result.attempts) == [("b", "cancelled", HEDGE_CANCELLED), ("a", "success", None)]
    assert backend.models_called() == ["a", "b"]


async def test_a_primary_that_fails_fast_continues_the_chain_without_a_hedge() -> None:
    backend = FakeBackend()
    backend.script("a", server_error(503), reply("second try"))
    clock = ManualClock()
    service = make_test_service(
        fake_registry(fake_model("a"), fake_model("b"), hedge={"after": 0.2}),
        backend=backend,
        clock=clock,
        sleep=clock.sleep,
    )
    result = await service.complete_with_task_model("t", "p")
    assert result.text == "second try"
    assert outcomes(result.attempts) == [("a", "error", "ProviderUnavailableError"), ("a", "success", None)]
    assert backend.models_called() == ["a", "a"]  # the retry the rule table asked for, and no hedge


async def test_at_most_max_extra_requests() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", hang())
    backend.always("c", reply("from c"))
    service = service_for({"after": 0.05, "max": 1}, "a", "b", "c", backend=backend)

    started = time.monotonic()
    result = await service.complete_with_task_model("t", "p", attempt_timeout=0.4)
    elapsed = time.monotonic() - started

    # a, then b alongside it; c only once both timed out (a second hedge would have answered at 0.1 s).
    assert result.model_id == "c"
    assert elapsed >= 0.35
    assert backend.models_called() == ["a", "b", "c"]
    assert outcomes(result.attempts) == [
        ("a", "error", "ProviderTimeoutError"),
        ("b", "error", "ProviderTimeoutError"),
        ("c", "success", None),
    ]


async def test_max_two_starts_a_second_hedge_after_the_first() -> None:
    backend = FakeBackend()
    for model in ("a", "b"):
        backend.always(model, hang())
    backend.always("c", reply("from c"))
    service = service_for({"after": 0.05, "max": 2}, "a", "b", "c", backend=backend)
    started = time.monotonic()
    result = await service.complete_with_task_model("t", "p")
    assert time.monotonic() - started < 2.0
    assert result.model_id == "c"
    assert outcomes(result.attempts) == [
        ("a", "cancelled", HEDGE_CANCELLED),
        ("b", "cancelled", HEDGE_CANCELLED),
        ("c", "success", None),
    ]


async def test_the_deadline_bounds_every_try() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", hang())
    service = service_for({"after": 0.05}, backend=backend)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as caught:
        await service.complete_with_task_model("t", "p", deadline=0.3)
    assert time.monotonic() - started < 1.5
    assert backend.models_called() == ["a", "b"]
    assert {a.model_id for a in caught.value.attempts} == {"a", "b"}


async def test_a_hedge_due_after_the_deadline_changes_nothing() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    service = service_for({"after": 5.0}, backend=backend)
    result = await service.complete_with_task_model("t", "p", deadline=0.4)
    # The primary used its share of the deadline and the chain moved on, as it does without a hedge.
    assert outcomes(result.attempts) == [("a", "error", "ProviderTimeoutError"), ("b", "success", None)]


async def test_the_rule_table_decides_a_hedges_error() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", bad_request("'temperature' must be <= 2"))
    service = service_for({"after": 0.05}, backend=backend)
    with pytest.raises(BadRequestError):
        await service.complete_with_task_model("t", "p")
    totals = service.totals()["models"]
    assert totals["a"]["cancelled_attempts"] == 1  # the call ended: the primary was cancelled and recorded
    assert totals["b"]["failed_attempts"] == 1


async def test_a_hedge_that_fails_leaves_the_primary_running() -> None:
    backend = FakeBackend()
    backend.always("a", reply("from a", delay=0.2))
    backend.always("b", server_error(503))
    service = service_for({"after": 0.05}, backend=backend)
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "a"
    assert outcomes(result.attempts) == [("b", "error", "ProviderUnavailableError"), ("a", "success", None)]
    assert backend.models_called() == ["a", "b"]  # the failed hedge is not retried while the primary runs


async def test_embeddings_are_hedged_too() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    service = service_for({"after": 0.05}, backend=backend)
    result = await service.embed_with_task_model("t", ["one", "two"])
    assert result.model_id == "b"
    assert len(result.vectors) == 2
    assert outcomes(result.attempts) == [("a", "cancelled", HEDGE_CANCELLED), ("b", "success", None)]


# --- budgets -------------------------------------------------------------------------------------


async def test_both_count_against_the_budget() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", reply(usage=Usage(1000, 1000)))
    store, clock = MemoryStateStore(), ManualClock()
    registry = fake_registry(
        fake_model("a", price=1.0), fake_model("b", price=0.5), budget={"limit": 100.0, "windowSeconds": WINDOW}
    )
    registry["taskMappings"][0]["hedge"] = {"after": 0.05}
    service = make_test_service(registry, backend=backend, state_store=store, wall_clock=clock)

    result = await service.complete_with_task_model("t", "p")

    assert result.model_id == "b"
    assert result.cost == pytest.approx(1.0)
    primary = service.registry.current.models_by_id["a"]
    plan_tokens = _prompt_tokens(service, "p")
    loser = primary.estimate_cost(plan_tokens, 0)
    assert loser > 0
    spent = await store.spend("budget:t", window=WINDOW, now=clock())
    assert spent == pytest.approx(result.cost + loser)  # the winner's cost and the loser's prompt
    assert service.totals()["tasks"]["t"]["cost"] == pytest.approx(spent)


async def test_a_hedge_the_budget_refuses_is_not_sent() -> None:
    backend = FakeBackend()
    backend.always("a", reply("from a", delay=0.2))
    store, clock = MemoryStateStore(), ManualClock()
    # Room for one reservation of either model, not two: the hedge does not fit while the primary holds its own.
    estimate = fake_model("a")["maxTokens"] * 1.0 / 1000
    registry = fake_registry(
        fake_model("a", price=1.0),
        fake_model("b", price=1.0),
        budget={"limit": estimate * 1.5, "windowSeconds": WINDOW, "onExceeded": "cheaper"},
    )
    registry["taskMappings"][0]["hedge"] = {"after": 0.05}
    service = make_test_service(registry, backend=backend, state_store=store, wall_clock=clock)
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "a"
    assert backend.models_called() == ["a"]
    assert ("b", "skipped", "BudgetExceededError") in outcomes(result.attempts)


async def test_a_hedge_admitted_after_the_primary_answered_is_never_sent() -> None:
    backend = FakeBackend()
    backend.always("a", reply("from a", delay=0.1, usage=Usage(1000, 0)))
    store, clock = SlowSecondReservation(), ManualClock()
    registry = fake_registry(
        fake_model("a", price=1.0), fake_model("b"), budget={"limit": 100.0, "windowSeconds": WINDOW}
    )
    registry["taskMappings"][0]["hedge"] = {"after": 0.05}
    service = make_test_service(registry, backend=backend, state_store=store, wall_clock=clock)
    result = await service.complete_with_task_model("t", "p")
    assert outcomes(result.attempts) == [("a", "success", None)]
    assert store.reservations == 2
    assert backend.models_called() == ["a"]
    assert await store.spend("budget:t", window=WINDOW, now=clock()) == pytest.approx(result.cost)


def _prompt_tokens(service: ModelService, prompt: str) -> int:
    selection = service.selector.candidates("t", _request(prompt))
    return selection.prompt_tokens


def _request(prompt: str) -> Any:
    from taskmodels.types import CompletionRequest

    return CompletionRequest(prompt=prompt)


# --- streams -------------------------------------------------------------------------------------


async def test_a_stream_is_hedged_on_its_first_token() -> None:
    backend = FakeBackend()
    backend.always("a", hang())  # streaming: no first event until the first-token limit
    backend.always("b", reply("the hedge streams this"))
    service = service_for({"after": 0.05}, backend=backend)

    started = time.monotonic()
    events = [e async for e in service.stream_with_task_model("t", "p")]
    assert time.monotonic() - started < 2.0

    assert [e.type for e in events if e.type != "text"] == ["done"]  # no restart: nothing was sent before
    assert "".join(e.text for e in events if e.type == "text") == "the hedge streams this"
    done = events[-1].result
    assert done is not None
    assert done.model_id == "b"
    assert outcomes(done.attempts) == [("a", "cancelled", HEDGE_CANCELLED), ("b", "success", None)]


async def test_a_winner_cut_after_its_first_token_restarts_on_the_next_candidate() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", cut(after_chunks=2))
    backend.always("c", reply("from c"))
    service = service_for({"after": 0.05}, "a", "b", "c", backend=backend)
    events = [e async for e in service.stream_with_task_model("t", "p")]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["text", "text"]  # b won the race and sent two chunks
    assert kinds[2] == "restart"
    assert events[2].model_id == "c"
    done = events[-1].result
    assert done is not None
    assert done.text == "from c"
    assert outcomes(done.attempts) == [
        ("a", "cancelled", HEDGE_CANCELLED),
        ("b", "error", "IncompleteStreamError"),
        ("c", "success", None),
    ]


async def test_complete_read_as_a_stream_is_hedged_on_its_first_token() -> None:
    backend = FakeBackend()
    backend.always("a", reply("slow a", delay=0.3))
    backend.always("b", reply("from b"))
    registry = fake_registry(fake_model("a"), fake_model("b"), hedge={"after": 0.05})
    service = make_test_service(registry, backend=backend, resilience=ResilienceSettings(stream_under_the_hood=True))
    result = await service.complete_with_task_model("t", "p")
    assert (result.text, result.model_id) == ("from b", "b")
    assert [c.kind for c in backend.calls] == ["stream", "stream"]


async def test_a_stream_closed_early_gives_the_reservations_back() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", reply("one two three four"))
    store, clock = MemoryStateStore(), ManualClock()
    registry = fake_registry(fake_model("a"), fake_model("b"), budget={"limit": 100.0, "windowSeconds": WINDOW})
    registry["taskMappings"][0]["hedge"] = {"after": 0.05}
    service = make_test_service(registry, backend=backend, state_store=store, wall_clock=clock)

    stream = service.stream_with_task_model("t", "p")
    first: StreamEvent = await anext(stream)
    assert first.type == "text"
    await stream.aclose()

    loser = service.registry.current.models_by_id["a"].estimate_cost(_prompt_tokens(service, "p"), 0)
    # The engine's stream is closed by the event loop's async-generator finalizer, a moment later.
    for _ in range(200):
        spent = await store.spend("budget:t", window=WINDOW, now=clock())
        if spent == pytest.approx(loser):
            break
        await asyncio.sleep(0.01)
    assert spent == pytest.approx(loser)  # the cancelled primary's prompt; the unfinished answer is given back


async def test_a_cancelled_call_cancels_every_try() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", hang())
    service = service_for({"after": 0.01}, backend=backend)
    before = asyncio.all_tasks()
    call = asyncio.create_task(service.complete_with_task_model("t", "p"))
    for _ in range(200):  # until the hedge is in flight
        if len(backend.calls) == 2:
            break
        await asyncio.sleep(0.01)
    assert backend.models_called() == ["a", "b"]
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    leftover = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
    assert leftover == []


# --- p95 -----------------------------------------------------------------------------------------


def test_latencies_fall_back_then_follow_the_p95_with_a_floor() -> None:
    from taskmodels.registry.schema import HedgeConfig

    hedge = HedgeConfig(after="p95")
    latencies = Latencies(min_samples=20, floor=0.05, fallback=1.0)
    assert latencies.delay(hedge, "t", "a", first_token=True) == 1.0
    for i in range(1, 21):
        latencies.observe("t", "a", i / 10, first_token=True)  # 0.1 ... 2.0
    assert latencies.delay(hedge, "t", "a", first_token=True) == pytest.approx(1.9)
    assert latencies.delay(hedge, "t", "a", first_token=False) == 1.0  # a whole answer is another distribution
    assert latencies.delay(hedge, "t", "b", first_token=True) == 1.0
    quick = Latencies(min_samples=3, floor=0.05)
    for _ in range(3):
        quick.observe("t", "a", 0.001, first_token=False)
    assert quick.delay(hedge, "t", "a", first_token=False) == 0.05
    assert latencies.delay(HedgeConfig(after=0.3), "t", "a", first_token=True) == 0.3


async def test_p95_hedges_once_enough_latencies_were_seen() -> None:
    backend = FakeBackend()
    service = service_for({"after": "p95"}, backend=backend)
    latencies = service.engine.latencies
    latencies.min_samples, latencies.fallback, latencies.floor = 5, 30.0, 0.05

    # Before enough samples: the fallback (30 s) means no hedge; the primary's own timeout moves on.
    backend.script("a", hang())
    result = await service.complete_with_task_model("t", "p", attempt_timeout=0.3)
    assert outcomes(result.attempts) == [("a", "error", "ProviderTimeoutError"), ("b", "success", None)]

    for _ in range(5):  # fast answers: the p95 is about 0, the floor (0.05 s) decides
        await service.complete_with_task_model("t", "p")
    p95 = latencies.p95("t", "a", first_token=False)
    assert p95 is not None
    assert p95 < 0.05

    backend.script("a", hang())
    started = time.monotonic()
    result = await service.complete_with_task_model("t", "p", attempt_timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert outcomes(result.attempts) == [("a", "cancelled", HEDGE_CANCELLED), ("b", "success", None)]


async def test_a_hedged_stream_whose_winner_spent_its_budget_moves_on() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    backend.always("b", reply("", finish_reason="length", chunks=[]))  # reasoning used every token: no text
    backend.always("c", reply("from c"))
    service = service_for({"after": 0.05}, "a", "b", "c", backend=backend)
    events = [e async for e in service.stream_with_task_model("t", "p")]
    done = events[-1].result
    assert done is not None
    assert done.model_id == "c"
    assert ("b", "error", "TruncatedAnswerError") in outcomes(done.attempts)


# --- the plain and hedged drivers agree (they are one driver now; these pin what had diverged) ----------------


async def test_a_hedged_answer_cut_at_max_tokens_with_nothing_in_it_moves_on() -> None:
    backend = FakeBackend()
    backend.always("a", reply("", finish_reason="length"))
    backend.always("b", reply("from b"))
    service = service_for({"after": 5.0}, backend=backend)
    result = await service.complete_with_task_model("t", "p")
    assert result.text == "from b"
    assert outcomes(result.attempts) == [("a", "error", "TruncatedAnswerError"), ("b", "success", None)]


def _pooled_service(backend: FakeBackend, hedge: dict[str, Any]) -> ModelService:
    deployments = [{"id": "eu", "provider": "fake-eu"}, {"id": "us"}]
    registry = fake_registry(fake_model("a", deployments=deployments, routing="latency"), fake_model("z"))
    registry["taskMappings"][0]["hedge"] = hedge
    return make_test_service(registry, backend=backend, resilience=ResilienceSettings(max_attempts_per_model=1))


async def test_a_cancelled_hedge_names_its_deployment_and_the_deployments_provider() -> None:
    backend = FakeBackend()
    backend.always("a/eu", hang())
    backend.always("a/us", reply("from us"))
    service = _pooled_service(backend, {"after": 0.05})
    result = await service.complete_with_task_model("t", "p")
    assert (result.model_id, result.deployment_id) == ("a", "us")
    cancelled, won = result.attempts
    assert (cancelled.outcome, cancelled.deployment_id, cancelled.provider) == ("cancelled", "eu", "fake-eu")
    assert (won.outcome, won.deployment_id, won.provider) == ("success", "us", "fake")


async def test_a_hedged_stream_teaches_latency_routing_its_time_to_first_event() -> None:
    backend = FakeBackend()
    # Its first word at once, the rest 0.3 s later: the route's latency is the time to the first event.
    backend.always("a/eu", reply("one two", chunks=["one ", "two"], delay=0.0))
    slow_rest = _SlowAfterFirst(backend, "a/eu", 0.3)
    service = _pooled_service(backend, {"after": 5.0})
    async for _event in service.stream_with_task_model("t", "p"):
        pass
    route = next(r for pool in service.engine.pools.known() for r in pool.routes if r.deployment_id == "eu")
    assert route.samples == 1
    assert route.latency < 0.2, route.latency  # not the whole answer's 0.3 s and more
    assert slow_rest.waited


class _SlowAfterFirst:
    """Delays every stream event of one deployment after its first."""

    def __init__(self, backend: FakeBackend, ident: str, seconds: float) -> None:
        self.waited = False
        original = backend.provider_class

        def provider_class(name: str = "fake") -> Any:
            cls = original(name)
            outer = self

            class Slow(cls):  # type: ignore[misc,valid-type]  # a FakeProvider subclass made at run time
                async def stream(self, request: Any, **limits: Any) -> Any:
                    first = True
                    async for event in super().stream(request, **limits):
                        if not first and self._called == ident:
                            await asyncio.sleep(seconds)
                            outer.waited = True
                        first = False
                        yield event

            return Slow

        backend.provider_class = provider_class  # type: ignore[method-assign]  # before the service builds providers


class _CountingStore(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.reservations = 0

    async def reserve_spend(self, scope: str, amount: float, *, limit: float, window: float, now: float) -> Any:
        self.reservations += 1
        return await super().reserve_spend(scope, amount, limit=limit, window=window, now=now)


async def test_no_try_is_admitted_once_the_deadline_passed() -> None:
    backend = FakeBackend()
    backend.always("a", hang())
    store = _CountingStore()
    clock = ManualClock()
    registry = fake_registry(
        fake_model("a"), fake_model("b"), hedge={"after": 0.05}, budget={"limit": 100.0, "windowSeconds": WINDOW}
    )
    service = make_test_service(registry, backend=backend, state_store=store, clock=clock, wall_clock=clock)

    async def deadline_passes() -> None:  # on the engine's clock, before the hedge is due on the loop's
        await asyncio.sleep(0.02)
        clock.advance(100)

    passing = asyncio.create_task(deadline_passes())
    with pytest.raises(DeadlineExceededError):
        await service.complete_with_task_model("t", "p", deadline=1.0)
    await passing
    # Neither the hedge due after the deadline nor the fallback after the primary's share was reserved or sent.
    assert store.reservations == 1
    assert backend.models_called() == ["a"]
