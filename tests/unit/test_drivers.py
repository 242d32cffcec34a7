"""One driver per operation: every case runs through both lanes (one try at a time, and racing) and must end the
same way; and no claim leaks, whatever await point of an attempt a call is cancelled at.

The racing lane runs with a hedge delay no case reaches (1,000 s): each case's tries then run one after the
other exactly as without hedging, through the racing lane's own code (a task per try, the queue of a streamed
try, the race's judging of failures). What each case must give is written out by hand, once, for both lanes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from taskmodels.errors import BadRequestError, ContentFilteredError, TaskModelsError
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    Step,
    bad_request,
    content_filtered,
    context_length,
    cut,
    fake_model,
    fake_registry,
    hang,
    make_test_service,
    rate_limited,
    reply,
    server_error,
)
from taskmodels.types import Usage

LANES = ["plain", "hedged"]
WINDOW = 3600.0


def _service(
    lane: str, backend: FakeBackend, *, store: MemoryStateStore | None = None, streamed: bool = False, **mapping: Any
) -> ModelService:
    models = [fake_model("a", price=0.01), fake_model("b", price=0.01, context=64_000), fake_model("c", price=0.01)]
    registry = fake_registry(*models, **mapping)
    if lane == "hedged":
        registry["taskMappings"][0]["hedge"] = {"after": 1000}
    clock = ManualClock()
    return make_test_service(
        registry,
        backend=backend,
        state_store=store,
        resilience=ResilienceSettings(max_attempts_per_model=2, backoff_initial=0.1, stream_under_the_hood=streamed),
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )


@dataclass(frozen=True)
class Case:
    name: str
    scripts: dict[str, list[Step]]
    attempts: Sequence[tuple[str, str, str | None]]  # (model, outcome, error class), in order
    served_by: str | None = None  # None: the call raises `raises`
    raises: type[TaskModelsError] | None = None
    restarts: int = 0  # streams: restart events the caller saw
    mapping: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("answer", {"a": [reply("hi")]}, [("a", "success", None)], "a"),
    Case(
        "a 500 is retried, then the chain moves on",
        {"a": [server_error(), server_error()], "b": [reply("from b")]},
        [
            ("a", "error", "ProviderUnavailableError"),
            ("a", "error", "ProviderUnavailableError"),
            ("b", "success", None),
        ],
        "b",
    ),
    Case(
        "a 429 is retried on the same model",
        {"a": [rate_limited(retry_after=1.0), reply("later")]},
        [("a", "error", "RateLimitError"), ("a", "success", None)],
        "a",
    ),
    Case(
        "a bad request reaches the caller at once",
        {"a": [bad_request()]},
        [("a", "error", "BadRequestError")],
        raises=BadRequestError,
    ),
    Case(
        "a content filter reaches the caller",
        {"a": [content_filtered()]},
        [("a", "error", "ContentFilteredError")],
        raises=ContentFilteredError,
    ),
    Case(
        "an empty answer cut at max_tokens moves on",
        {"a": [reply("", finish_reason="length")], "b": [reply("from b")]},
        [("a", "error", "TruncatedAnswerError"), ("b", "success", None)],
        "b",
    ),
    Case(
        "a context-length error moves to a larger window",
        {"a": [context_length()], "b": [reply("big")]},
        [("a", "error", "ContextLengthExceededError"), ("b", "success", None)],
        "b",
    ),
    Case(
        "every model failing ends in AllModelsFailedError",
        {"a": [server_error(), server_error()], "b": [server_error(), server_error()], "c": [server_error()] * 2},
        [("a", "error", "ProviderUnavailableError")] * 2
        + [("b", "error", "ProviderUnavailableError")] * 2
        + [("c", "error", "ProviderUnavailableError")] * 2,
        raises=TaskModelsError,
    ),
]


def _summary(attempts: Any) -> list[tuple[str, str, str | None]]:
    return [(a.model_id, a.outcome, a.error_class) for a in attempts]


def _backend(case: Case) -> FakeBackend:
    backend = FakeBackend()
    for model_id, steps in case.scripts.items():
        backend.script(model_id, *steps)
    return backend


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("how", ["complete", "complete read as a stream", "stream"])
async def test_both_lanes_end_every_case_the_same_way(lane: str, case: Case, how: str) -> None:
    service = _service(lane, _backend(case), streamed=how == "complete read as a stream", **case.mapping)
    if case.raises is not None:
        with pytest.raises(case.raises) as info:
            await _call(service, how)
        attempts = getattr(info.value, "attempts", None)
        if attempts is not None:  # a provider error reaching the caller carries none of its own
            assert _summary(attempts) == case.attempts
        return
    result = await _call(service, how)
    assert result.model_id == case.served_by
    assert _summary(result.attempts) == case.attempts


async def _call(service: ModelService, how: str) -> Any:
    if how != "stream":
        return await service.complete_with_task_model("t", "p")
    done = None
    async for event in service.stream_with_task_model("t", "p"):
        if event.type == "done":
            done = event.result
    assert done is not None
    return done


STREAM_CASES = [
    # A cut stream is an invalid answer: retried once on the same model, then the chain moves on; each new answer
    # after events reached the caller starts with a restart event.
    ("restart", [("a", "error", "IncompleteStreamError")] * 2 + [("b", "success", None)], 2),
    ("error", [("a", "error", "IncompleteStreamError")], 0),
]


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize(("policy", "attempts", "restarts"), STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
async def test_both_lanes_keep_the_commit_point_of_a_stream(
    lane: str, policy: str, attempts: list[tuple[str, str, str | None]], restarts: int
) -> None:
    backend = FakeBackend()
    backend.always("a", cut(after_chunks=2))
    backend.script("b", reply("from b"))
    service = _service(lane, backend, streamPolicy=policy)
    seen: list[str] = []
    done = None
    failure: TaskModelsError | None = None
    try:
        async for event in service.stream_with_task_model("t", "p"):
            seen.append(event.type)
            if event.type == "done":
                done = event.result
    except TaskModelsError as exc:
        failure = exc
    if policy == "error":  # the answer had reached the caller: the stream ends in the error, never in done
        assert type(failure).__name__ == "IncompleteStreamError"
        assert "done" not in seen
        return
    assert done is not None
    assert seen.count("restart") == restarts
    assert _summary(done.attempts) == attempts


@pytest.mark.parametrize("lane", LANES)
async def test_both_lanes_embed_the_same_way(lane: str) -> None:
    backend = FakeBackend()
    backend.script("a", server_error(), server_error())
    backend.script("b", reply("vectors"))
    result = await _service(lane, backend).embed_with_task_model("t", ["x", "y"])
    assert result.model_id == "b"
    assert _summary(result.attempts) == [
        ("a", "error", "ProviderUnavailableError"),
        ("a", "error", "ProviderUnavailableError"),
        ("b", "success", None),
    ]


# --- no claim leaks, whatever await point a call is cancelled at ---------------------------------------------


class _YieldingStore(MemoryStateStore):
    """Every store operation yields to the loop first, as a network store's would: more await points to cancel
    at, inside admission and settling."""

    async def reserve_spend(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().reserve_spend(*args, **kwargs)

    async def add_spend(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().add_spend(*args, **kwargs)

    async def admit(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return await super().admit(*args, **kwargs)


def _budgeted(lane: str, backend: FakeBackend, store: MemoryStateStore) -> ModelService:
    registry = fake_registry(
        fake_model("a", price=1.0), fake_model("b", price=1.0), budget={"limit": 1000.0, "windowSeconds": WINDOW}
    )
    if lane == "hedged":
        registry["taskMappings"][0]["hedge"] = {"after": 1e-9}  # the hedge starts at the first chance
    return make_test_service(registry, backend=backend, state_store=store)


async def _settled_spend(store: MemoryStateStore) -> float:
    """The spend once settling that a cancellation left running (it is shielded) has finished: a bounded poll."""
    spent = 0.0
    for _ in range(50):
        spent = await store.spend("budget:t", window=WINDOW, now=time.time())
        if spent == 0.0:
            break
        await asyncio.sleep(0)
    return spent


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("how", ["complete", "stream"])
async def test_a_call_cancelled_at_any_await_point_gives_every_claim_back(lane: str, how: str) -> None:
    ticks_seen = 0
    for ticks in range(60):
        store = _YieldingStore()
        backend = FakeBackend()
        # Nothing commits: every cancellation lands mid-race (a loser cancelled because another answered is
        # charged what the provider bills, which the hedging tests check).
        backend.always("a", hang())
        backend.always("b", hang())
        service = _budgeted(lane, backend, store)

        async def call(service: ModelService = service) -> None:
            if how == "complete":
                await service.complete_with_task_model("t", "p")
            else:
                async for _ in service.stream_with_task_model("t", "p"):
                    pass

        task = asyncio.create_task(call())
        for _ in range(ticks):
            await asyncio.sleep(0)
        done_before = task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if not done_before:
            ticks_seen += 1
        spent = await _settled_spend(store)
        assert spent == pytest.approx(0.0, abs=1e-9), (ticks, spent)
        pools = service.engine.pools.known()
        assert all(route.in_flight == 0 for pool in pools for route in pool.routes), ticks
    assert ticks_seen == 60  # every cancellation landed in a call still running


@pytest.mark.parametrize("lane", LANES)
async def test_a_stream_closed_early_gives_every_claim_back(lane: str) -> None:
    store = MemoryStateStore()
    backend = FakeBackend()
    backend.always("a", reply("one two three four", usage=Usage(10, 5)))
    backend.always("b", reply("b answers", usage=Usage(10, 5)))
    service = _budgeted(lane, backend, store)
    stream = service.stream_with_task_model("t", "p")
    first = await anext(stream)
    assert first.type == "text"
    await stream.aclose()
    assert await _settled_spend(store) == pytest.approx(0.0)
    assert all(route.in_flight == 0 for pool in service.engine.pools.known() for route in pool.routes)
