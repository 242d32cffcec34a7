"""OpenTelemetry at the edges of a call: hedged tries racing, calls that fail before any attempt, embeddings.

Read back from the SDK's in-memory span exporter and metric reader. The hedging tests run on the event loop's
own clock (a hedge's timer), so they take tens of milliseconds; their bounds are generous.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from taskmodels.engine.observe import Observation
from taskmodels.errors import BudgetExceededError, InvalidRequestError, NoEligibleModelError, UnknownTaskError
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.service import ModelService
from taskmodels.testing import (
    FakeBackend,
    FakeProvider,
    fake_model,
    fake_registry,
    hang,
    make_test_service,
    reply,
    server_error,
)
from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent
from tests.otel_kit import FOLDS, Otel, attrs, by_name, in_memory_otel, outcome_span
from tests.stores import SlowSecondReservation


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def context_errors() -> Iterator[list[str]]:
    """What OpenTelemetry's context module logs: "Failed to detach context" when attach/detach are not paired
    in one context."""
    logger = logging.getLogger("opentelemetry.context")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(params=FOLDS)
def otel(request: pytest.FixtureRequest) -> Iterator[Otel]:
    """Every test here runs on both traces of a call: a call span over its attempts, and a call that made one
    attempt folded into it (``fold_single_attempt``)."""
    yield from in_memory_otel(fold=request.param)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


# --- hedged requests ---------------------------------------------------------------------------------


def hedged_service(
    otel: Otel, backend: FakeBackend, *models: str, slow_failure: dict[str, float] | None = None, **kwargs: Any
) -> ModelService:
    """A service whose task hedges after 0.05 s, on providers that open a span per request the way an HTTP
    client instrumentation does (under whatever span is current), so the tests see where requests nest.
    ``slow_failure``: seconds a model waits before playing its step, to fail after the hedge started."""
    registry = fake_registry(*(fake_model(m, price=0.01) for m in models or ("a", "b")), hedge={"after": 0.05})
    svc = make_test_service(
        registry,
        backend=backend,
        resilience=kwargs.pop("resilience", ResilienceSettings(max_attempts_per_model=1)),
        tracer=otel.tracer(),
        **kwargs,
    )
    http = otel.tracer_provider.get_tracer("http-client")
    waits = slow_failure or {}

    class Instrumented(FakeProvider):
        bound_backend = backend

        async def complete(self, request: CompletionRequest) -> CompletionResult:
            with http.start_as_current_span(f"POST {self.model.id}"):
                await asyncio.sleep(waits.get(self.model.id, 0.0))
                return await super().complete(request)

        async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
            with http.start_as_current_span(f"POST {self.model.id}"):
                return await super().embed(texts)

        async def stream(
            self,
            request: CompletionRequest,
            *,
            first_token_timeout: float | None = None,
            stall_timeout: float | None = None,
        ) -> AsyncIterator[StreamEvent]:
            with http.start_as_current_span(f"POST {self.model.id}"):
                events = super().stream(request, first_token_timeout=first_token_timeout, stall_timeout=stall_timeout)
                async for event in events:
                    yield event

    svc.provider_factory.register_provider_implementation("fake", Instrumented)
    return svc


def assert_requests_nest_under_their_own_attempt(spans: Sequence[ReadableSpan], operation: str = "chat") -> None:
    for model in {s.name.removeprefix("POST ") for s in spans if s.name.startswith("POST ")}:
        (request,) = by_name(spans, f"POST {model}")
        (attempt,) = by_name(spans, f"{operation} {model}-name")
        assert parent_of(request) == attempt.context.span_id, f"POST {model} is not under its own attempt"


async def test_a_hedged_call_ends_its_loser_cancelled_not_failed(otel: Otel, context_errors: list[str]) -> None:
    backend = FakeBackend().always("a", hang()).always("b", reply("from b"))
    svc = hedged_service(otel, backend)
    app = otel.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /hedged") as app_span:
        result = await svc.complete_with_task_model("t", "hello")
        assert trace.get_current_span() is app_span
    assert result.model_id == "b"

    spans = otel.finished()
    (call,) = by_name(spans, "taskmodels t")
    (loser,) = by_name(spans, "chat a-name")
    (winner,) = by_name(spans, "chat b-name")
    assert len([s for s in spans if s.name.startswith("chat ")]) == len(backend.calls) == 2  # one per request
    assert parent_of(loser) == parent_of(winner) == call.context.span_id
    assert attrs(call)["taskmodels.outcome"] == "success"
    assert attrs(call)["taskmodels.attempts"] == 2

    assert attrs(loser)["taskmodels.attempt.outcome"] == "cancelled"
    assert loser.status.status_code is StatusCode.UNSET  # losing a race is not a failure
    assert "error.type" not in attrs(loser)
    assert loser.end_time is not None
    assert winner.end_time is not None
    assert loser.end_time <= winner.end_time  # ended when it lost, not when the call closed its leftovers
    assert attrs(winner)["taskmodels.attempt.outcome"] == "success"
    assert_requests_nest_under_their_own_attempt(spans)
    assert context_errors == []

    # A cancelled try measured no operation: one duration, the winner's, and no error among them.
    durations = otel.points("gen_ai.client.operation.duration")
    assert [dict(p.attributes)["gen_ai.request.model"] for p in durations] == ["b-name"]
    assert all("error.type" not in dict(p.attributes) for p in durations)


async def test_what_a_losing_hedge_was_charged_is_counted_like_totals_count_it(otel: Otel) -> None:
    # The primary's prompt went out and is charged when the hedge wins: the cost counter must say what
    # totals() says, and the loser's span carries its share.
    backend = FakeBackend().always("a", hang()).always("b", reply("from b"))
    svc = hedged_service(otel, backend)
    result = await svc.complete_with_task_model("t", "a prompt long enough to cost something")
    charged = svc.totals()["tasks"]["t"]["cost"]
    assert charged > result.cost > 0  # the loser was charged for its prompt
    (loser,) = by_name(otel.finished(), "chat a-name")
    assert attrs(loser)["taskmodels.cost"] == pytest.approx(charged - result.cost)
    assert sum(p.value for p in otel.points("taskmodels.client.cost")) == pytest.approx(charged)


async def test_the_primary_winning_ends_the_hedge_cancelled(otel: Otel, context_errors: list[str]) -> None:
    backend = FakeBackend().always("a", reply("from a", delay=0.15)).always("b", reply("from b", delay=5.0))
    svc = hedged_service(otel, backend)
    result = await svc.complete_with_task_model("t", "hello")
    assert result.model_id == "a"

    spans = otel.finished()
    (primary,) = by_name(spans, "chat a-name")
    (hedge,) = by_name(spans, "chat b-name")
    assert attrs(primary)["taskmodels.attempt.outcome"] == "success"
    assert attrs(hedge)["taskmodels.attempt.outcome"] == "cancelled"
    assert hedge.status.status_code is StatusCode.UNSET
    assert_requests_nest_under_their_own_attempt(spans)
    assert context_errors == []


async def test_a_hedge_is_no_fallback_but_a_move_after_a_failure_is(otel: Otel) -> None:
    # First call: a hangs, so b starts beside it as a hedge and answers: a race, not a move down the chain.
    # Second call: a fails at once, and b is tried after it: a fallback.
    backend = FakeBackend().script("a", hang(), server_error(503)).always("b", reply("from b"))
    svc = hedged_service(otel, backend)
    assert (await svc.complete_with_task_model("t", "hello")).model_id == "b"
    assert otel.points("taskmodels.client.fallbacks") == []
    assert (await svc.complete_with_task_model("t", "hello")).model_id == "b"
    (fallback,) = otel.points("taskmodels.client.fallbacks")
    assert fallback.value == 1
    assert dict(fallback.attributes) == {
        "taskmodels.task": "t",
        "taskmodels.model.id": "b",
        "taskmodels.fallback.from": "a",
    }


async def test_racing_tries_ending_out_of_order_leave_the_applications_context_as_it_was(
    otel: Otel, context_errors: list[str]
) -> None:
    # a is started first and ends first (it fails once b runs); b, started after it, answers later. Attached in
    # the caller's context, the two spans would be detached out of order and leave a's span current.
    backend = FakeBackend().always("a", server_error(503)).always("b", reply("from b", delay=0.2))
    svc = hedged_service(otel, backend, slow_failure={"a": 0.1})
    app = otel.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /hedged") as app_span:
        result = await svc.complete_with_task_model("t", "hello")
        assert trace.get_current_span() is app_span
        with app.start_as_current_span("after the call") as after:
            pass
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert result.model_id == "b"
    assert [a.outcome for a in result.attempts] == ["error", "success"]

    spans = otel.finished()
    (failed,) = by_name(spans, "chat a-name")
    (answered,) = by_name(spans, "chat b-name")
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs(failed)["taskmodels.attempt.outcome"] == "error"
    assert attrs(answered)["taskmodels.attempt.outcome"] == "success"
    (after_span,) = by_name(spans, "after the call")
    assert after_span.context.span_id == after.get_span_context().span_id
    assert parent_of(after_span) == app_span.get_span_context().span_id  # not a finished attempt of the call
    assert_requests_nest_under_their_own_attempt(spans)
    assert context_errors == []


async def test_a_hedged_stream_ends_its_loser_cancelled_and_times_the_winners_first_chunk(
    otel: Otel, context_errors: list[str]
) -> None:
    backend = FakeBackend().always("a", hang()).always("b", reply("the hedge streams this"))
    svc = hedged_service(otel, backend)
    events = [e async for e in svc.stream_with_task_model("t", "hello")]
    assert events[-1].result is not None
    assert events[-1].result.model_id == "b"

    spans = otel.finished()
    (call,) = by_name(spans, "taskmodels t")
    (loser,) = by_name(spans, "chat a-name")
    (winner,) = by_name(spans, "chat b-name")
    assert len(spans) == 5  # the call, two attempts, two requests
    assert parent_of(loser) == parent_of(winner) == call.context.span_id
    assert attrs(loser)["taskmodels.attempt.outcome"] == "cancelled"
    assert loser.status.status_code is StatusCode.UNSET
    assert "gen_ai.response.time_to_first_chunk" not in attrs(loser)
    assert attrs(winner)["taskmodels.attempt.outcome"] == "success"
    first_chunk = attrs(winner)["gen_ai.response.time_to_first_chunk"]
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.sum == pytest.approx(first_chunk)
    assert dict(point.attributes)["gen_ai.request.model"] == "b-name"
    assert attrs(call)["taskmodels.outcome"] == "success"
    assert_requests_nest_under_their_own_attempt(spans)  # a hedged stream runs in a task of its own
    assert context_errors == []


async def test_a_hedged_complete_read_as_a_stream_times_its_first_chunk(otel: Otel, context_errors: list[str]) -> None:
    backend = FakeBackend().always("a", reply("slow a", delay=0.3)).always("b", reply("from b"))
    svc = hedged_service(otel, backend, resilience=ResilienceSettings(stream_under_the_hood=True))
    result = await svc.complete_with_task_model("t", "hello")
    assert result.model_id == "b"

    spans = otel.finished()
    (loser,) = by_name(spans, "chat a-name")
    (winner,) = by_name(spans, "chat b-name")
    assert attrs(loser)["taskmodels.attempt.outcome"] == "cancelled"
    assert "gen_ai.response.time_to_first_chunk" in attrs(winner)
    assert attrs(loser)["gen_ai.request.stream"] is attrs(winner)["gen_ai.request.stream"] is True  # both streamed
    assert_requests_nest_under_their_own_attempt(spans)
    assert context_errors == []


async def test_a_hedged_embedding_ends_its_loser_cancelled(otel: Otel, context_errors: list[str]) -> None:
    backend = FakeBackend().always("a", hang()).always("b", reply())
    svc = hedged_service(otel, backend)
    result = await svc.embed_with_task_model("t", ["one", "two"])
    assert result.model_id == "b"

    spans = otel.finished()
    (loser,) = by_name(spans, "embeddings a-name")
    (winner,) = by_name(spans, "embeddings b-name")
    assert attrs(loser)["taskmodels.attempt.outcome"] == "cancelled"
    assert attrs(winner)["taskmodels.attempt.outcome"] == "success"
    assert_requests_nest_under_their_own_attempt(spans, "embeddings")
    assert context_errors == []


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_a_hedge_never_sent_has_no_span(otel: Otel, context_errors: list[str], streamed: bool) -> None:
    backend = FakeBackend().always("a", reply("from a one two three", delay=0.1))
    registry = fake_registry(fake_model("a"), fake_model("b"), budget={"limit": 100.0, "windowSeconds": 3600.0})
    registry["taskMappings"][0]["hedge"] = {"after": 0.05}
    store = SlowSecondReservation()
    svc = make_test_service(registry, backend=backend, state_store=store, tracer=otel.tracer())
    if streamed:
        events = [e async for e in svc.stream_with_task_model("t", "hello")]
        result = events[-1].result
        assert result is not None
    else:
        result = await svc.complete_with_task_model("t", "hello")
    assert result.model_id == "a"
    assert store.reservations == 2  # the hedge was admitted ...
    assert backend.models_called() == ["a"]  # ... but never sent

    spans = otel.finished()
    assert sorted(s.name for s in spans) == ["chat a-name", "taskmodels t"]  # one attempt span per request sent
    assert otel.points("taskmodels.client.fallbacks") == []
    assert context_errors == []


async def test_a_hedged_call_cancelled_by_its_caller_ends_every_span(otel: Otel, context_errors: list[str]) -> None:
    backend = FakeBackend().always("a", hang()).always("b", hang())
    svc = hedged_service(otel, backend)
    call = asyncio.create_task(svc.complete_with_task_model("t", "hello"))
    for _ in range(500):  # bounded: until the hedge is in flight
        if len(backend.calls) == 2:
            break
        await asyncio.sleep(0.01)
    assert backend.models_called() == ["a", "b"]
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    spans = otel.finished()
    (call_span,) = by_name(spans, "taskmodels t")
    assert attrs(call_span)["taskmodels.outcome"] == "abandoned"
    attempts = by_name(spans, "chat a-name") + by_name(spans, "chat b-name")
    assert [attrs(s)["taskmodels.attempt.outcome"] for s in attempts] == ["abandoned", "abandoned"]
    assert_requests_nest_under_their_own_attempt(spans)
    assert context_errors == []
    assert trace.get_current_span() is trace.INVALID_SPAN


# --- calls that fail before any attempt ---------------------------------------------------------------

ATTEMPT_METRICS = (
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.time_to_first_chunk",
    "taskmodels.client.cost",
    "taskmodels.client.fallbacks",
)


def plain_service(otel: Otel | None, registry: dict[str, Any] | None = None, **kwargs: Any) -> ModelService:
    return make_test_service(
        registry or fake_registry(fake_model("a"), fake_model("b")),
        backend=kwargs.pop("backend", FakeBackend()),
        resilience=ResilienceSettings(max_attempts_per_model=1),
        tracer=otel.tracer(**kwargs) if otel is not None else None,
    )


def refused_call_span(otel: Otel, task: str, error: type[BaseException]) -> ReadableSpan:
    """The one span of a call that failed before its first attempt: in error, with no attempt under it."""
    spans = otel.finished()
    (call,) = spans
    assert call.name == f"taskmodels {task}"
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == error.__name__
    got = attrs(call)
    assert got["taskmodels.task"] == task
    assert got["taskmodels.outcome"] == "error"
    assert got["error.type"] == error.__name__
    assert got["taskmodels.attempts"] == 0
    assert "taskmodels.model.id" not in got
    for metric in ATTEMPT_METRICS:
        assert otel.points(metric) == [], metric
    return call


async def test_an_unknown_task_is_a_call_span_in_error_under_the_applications_span(otel: Otel) -> None:
    svc = plain_service(otel)
    svc.selector = ModelSelectionFactory(svc.registry, unknown_task="error")
    app = otel.tracer_provider.get_tracer("app")
    with app.start_as_current_span("GET /typo") as app_span, pytest.raises(UnknownTaskError):
        await svc.complete_with_task_model("tpyo", "hello")

    (call,) = [s for s in otel.finished() if s.name != "GET /typo"]
    assert parent_of(call) == app_span.get_span_context().span_id
    otel.spans.clear()
    otel.spans.export([call])
    got = attrs(refused_call_span(otel, "tpyo", UnknownTaskError))
    assert got["taskmodels.operation"] == "chat"
    assert "taskmodels.skipped" not in got


async def test_no_model_with_the_capabilities_names_every_skip(otel: Otel) -> None:
    svc = plain_service(otel)
    with pytest.raises(NoEligibleModelError):
        await svc.complete_with_task_model("t", "look", required_capabilities={"vision"})
    skipped = attrs(refused_call_span(otel, "t", NoEligibleModelError))["taskmodels.skipped"]
    assert [s.split(":")[0] for s in skipped] == ["a", "b"]
    assert all("vision" in s for s in skipped)


async def test_a_cost_cap_no_model_fits_names_every_skip(otel: Otel) -> None:
    svc = plain_service(otel)
    with pytest.raises(NoEligibleModelError):
        await svc.complete_with_task_model("t", "hello", max_cost=1e-12)
    skipped = attrs(refused_call_span(otel, "t", NoEligibleModelError))["taskmodels.skipped"]
    assert [s.split(":")[0] for s in skipped] == ["a", "b"]


async def test_an_invalid_request_is_a_call_span_in_error(otel: Otel) -> None:
    svc = plain_service(otel)
    with pytest.raises(InvalidRequestError):
        await svc.complete_with_task_model("t", "hello", temperature=7.0)
    refused_call_span(otel, "t", InvalidRequestError)


async def test_a_refused_stream_and_a_refused_embedding_are_call_spans_in_error(otel: Otel) -> None:
    svc = plain_service(otel)
    svc.selector = ModelSelectionFactory(svc.registry, unknown_task="error")
    with pytest.raises(UnknownTaskError):
        async for _ in svc.stream_with_task_model("nope", "hello"):
            pass
    refused_call_span(otel, "nope", UnknownTaskError)
    otel.spans.clear()
    with pytest.raises(UnknownTaskError):
        await svc.embed_with_task_model("nope", ["one"])
    assert attrs(refused_call_span(otel, "nope", UnknownTaskError))["taskmodels.operation"] == "embeddings"


async def test_a_refused_calls_message_is_recorded_only_with_capture_on(otel: Otel) -> None:
    svc = plain_service(otel)
    with pytest.raises(InvalidRequestError):
        await svc.complete_with_task_model("t", "hello", max_tokens=-3)
    assert "max_tokens" not in otel.everything_recorded()
    otel.spans.clear()
    svc = plain_service(otel, capture_content=True)
    with pytest.raises(InvalidRequestError):
        await svc.complete_with_task_model("t", "hello", max_tokens=-3)
    assert (
        "max_tokens must be a positive integer"
        in attrs(refused_call_span(otel, "t", InvalidRequestError))["taskmodels.error.message"]
    )


async def test_a_budget_refused_before_sending_is_a_call_span_with_no_attempt(otel: Otel) -> None:
    registry = fake_registry(fake_model("a", price=1.0), budget={"limit": 1.0, "windowSeconds": 3600.0})
    store = MemoryStateStore()
    backend = FakeBackend()
    svc = make_test_service(registry, backend=backend, state_store=store, tracer=otel.tracer())
    await store.add_spend("budget:t", 0.99, window=3600.0, now=time.time())
    with pytest.raises(BudgetExceededError):
        await svc.complete_with_task_model("t", "hello")
    assert backend.calls == []
    refused_call_span(otel, "t", BudgetExceededError)


async def test_without_a_tracer_a_refused_call_does_no_telemetry_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def traced(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("telemetry work without a tracer")

    monkeypatch.setattr(Observation, "call_refused", traced)
    svc = plain_service(None)
    with pytest.raises(NoEligibleModelError):
        await svc.complete_with_task_model("t", "look", required_capabilities={"vision"})
    with pytest.raises(InvalidRequestError):
        await svc.complete_with_task_model("t", "hello", temperature=7.0)


# --- calls ended by an exception that is no taskmodels error --------------------------------------------


class EngineBug(RuntimeError):
    """What a defect in the engine would raise: no ``TaskModelsError``, so ``call_failed`` never sees it."""


async def call_through(svc: ModelService, operation: str) -> None:
    if operation == "complete":
        await svc.complete_with_task_model("t", "hello")
    elif operation == "stream":
        async for _ in svc.stream_with_task_model("t", "hello"):
            pass
    else:
        await svc.embed_with_task_model("t", ["one"])


@pytest.mark.parametrize("operation", ["complete", "stream", "embed"])
async def test_a_call_ended_by_an_exception_that_is_no_taskmodels_error_is_a_call_span_in_error(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    # error.type is conditionally required "if the operation ended in an error": an exception escaping the engine
    # ends the call as surely as a TaskModelsError does, and must not read as a call its caller walked away from.
    svc = plain_service(otel)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise EngineBug("the engine broke")

    async def broken_stream(*args: Any, **kwargs: Any) -> AsyncIterator[StreamEvent]:
        raise EngineBug("the engine broke")
        yield StreamEvent(type="text", text="never")  # an async generator, as Engine.stream is

    monkeypatch.setattr(svc.engine, "complete", broken)
    monkeypatch.setattr(svc.engine, "embed", broken)
    monkeypatch.setattr(svc.engine, "stream", broken_stream)
    with pytest.raises(EngineBug):
        await call_through(svc, operation)

    (call,) = otel.finished()
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == "EngineBug"
    assert attrs(call)["taskmodels.outcome"] == "error"
    assert attrs(call)["error.type"] == "EngineBug"


async def test_a_call_cancelled_while_its_caller_handles_an_exception_is_still_abandoned(otel: Otel) -> None:
    # The exception a call ends with is the one on its way out of the service, not one its caller is handling.
    backend = FakeBackend().always("a", hang())
    svc = plain_service(otel, backend=backend)
    try:
        raise KeyError("the caller's own, handled")
    except KeyError:
        call = asyncio.create_task(svc.complete_with_task_model("t", "hello"))
        for _ in range(500):  # bounded: until the request is in flight
            if backend.calls:
                break
            await asyncio.sleep(0.001)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    call_span = outcome_span(otel.finished())
    assert attrs(call_span)["taskmodels.outcome"] == "abandoned"
    assert call_span.status.status_code is StatusCode.UNSET


def test_a_request_the_blocking_facade_refuses_is_a_call_span_in_error(otel: Otel) -> None:
    svc = plain_service(otel)
    try:
        with pytest.raises(InvalidRequestError):
            svc.sync.complete_with_task_model("t", "hello", temperature=7.0)
    finally:
        svc.sync.close()
    refused_call_span(otel, "t", InvalidRequestError)


# --- embeddings and content capture -------------------------------------------------------------------

TEXTS = ["the patient's name is Ada Quill", "her account number is 4417-2231"]
FRAGMENTS = ("Ada Quill", "4417-2231", "patient", "account number")


@pytest.mark.parametrize("hedged", [False, True], ids=["chain", "hedged"])
async def test_with_capture_off_no_embedding_input_is_recorded(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, hedged: bool
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    # Chained, the first model fails quoting the input back, as a provider's error may; hedged, it loses the race.
    backend = FakeBackend()
    if hedged:
        backend.always("a", hang())
    else:
        backend.script("a", server_error(500, message=f"cannot embed {TEXTS[0]!r}"))
    mapping: dict[str, Any] = {"hedge": {"after": 0.05}} if hedged else {}
    registry = fake_registry(fake_model("a"), fake_model("b"), **mapping)
    svc = make_test_service(
        registry, backend=backend, resilience=ResilienceSettings(max_attempts_per_model=1), tracer=otel.tracer()
    )
    result = await svc.embed_with_task_model("t", TEXTS)
    assert result.model_id == "b"

    recorded = otel.everything_recorded()
    assert "embeddings a-name" in recorded  # the spans are there, the failed attempt's too ...
    assert "embeddings b-name" in recorded
    for fragment in FRAGMENTS:
        assert fragment not in recorded  # ... and nothing of what was embedded
