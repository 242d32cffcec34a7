"""OpenTelemetry spans and metrics of task calls (``taskmodels.telemetry``), read back from the SDK's in-memory
exporters."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from taskmodels import redaction
from taskmodels.containers import build_call_tracer
from taskmodels.errors import AllModelsFailedError
from taskmodels.sections import ResilienceSettings, TelemetrySettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.telemetry import (
    CAPTURE_CONTENT_VARIABLE,
    OpenTelemetryTracer,
    _AttemptHandle,
    _CallHandle,
    provider_name,
)
from taskmodels.testing import (
    FakeBackend,
    FakeProvider,
    ManualClock,
    fake_model,
    fake_registry,
    make_test_service,
    overridden_container,
    reply,
    server_error,
)
from taskmodels.types import CompletionRequest, Message, Usage
from tests.otel_kit import FOLDS, Otel, attrs, by_name, in_memory_otel, outcome_span

SRC = Path(__file__).resolve().parents[2] / "src"
TWO = fake_registry(fake_model("a"), fake_model("b"))
CALL_SPAN_ONLY = pytest.mark.parametrize("otel", [False], indirect=True, ids=["call-span"])


@pytest.fixture(params=FOLDS)
def otel(request: pytest.FixtureRequest) -> Iterator[Otel]:
    """Every test here runs on both traces of a call: a call span over its attempts, and a call that made one
    attempt folded into it (``fold_single_attempt``). A test of what only one of them does says so."""
    yield from in_memory_otel(fold=request.param)


def service(otel: Otel, registry: dict[str, Any] = TWO, *, backend: FakeBackend, **kwargs: Any) -> ModelService:
    clock = ManualClock()
    resilience = kwargs.pop("resilience", ResilienceSettings(max_attempts_per_model=1))
    tracer = kwargs.pop("tracer", None) or otel.tracer()
    return make_test_service(
        registry,
        backend=backend,
        resilience=resilience,
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
        tracer=tracer,
        **kwargs,
    )


# --- spans -------------------------------------------------------------------------------------


@CALL_SPAN_ONLY
async def test_a_fallback_is_one_call_span_with_two_attempt_children_under_the_applications_span(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(503)).script("b", reply("fine", usage=Usage(12, 7)))
    svc = service(otel, backend=backend)
    app_tracer = otel.tracer_provider.get_tracer("app")

    with app_tracer.start_as_current_span("GET /personas") as app_span:
        result = await svc.complete_with_task_model("t", "hello", max_tokens=50)
        assert trace.get_current_span() is app_span  # the call left the application's context as it was
    assert result.model_id == "b"

    spans = otel.finished()
    (app,) = by_name(spans, "GET /personas")
    (call,) = by_name(spans, "taskmodels t")
    first, second = by_name(spans, "chat a-name") + by_name(spans, "chat b-name")
    assert len(spans) == 4
    assert call.parent is not None
    assert call.parent.span_id == app.context.span_id
    assert call.context.trace_id == app.context.trace_id
    for attempt in (first, second):
        assert attempt.parent is not None
        assert attempt.parent.span_id == call.context.span_id
        assert attempt.kind is SpanKind.CLIENT
    assert call.kind is SpanKind.INTERNAL

    assert attrs(call) == {
        "taskmodels.task": "t",
        "taskmodels.operation": "chat",
        "taskmodels.candidates": ("a", "b"),
        "taskmodels.attempts": 2,
        "taskmodels.outcome": "success",
        "taskmodels.model.id": "b",
        "taskmodels.cost": pytest.approx(result.cost),
    }
    assert call.status.status_code is StatusCode.UNSET

    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ProviderUnavailableError (HTTP 503)"
    assert attrs(first) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "a-name",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.2,
        "taskmodels.task": "t",
        "taskmodels.model.id": "a",
        "taskmodels.attempt.number": 1,
        "taskmodels.attempt.retry": 0,
        "taskmodels.attempt.outcome": "error",
        "error.type": "ProviderUnavailableError",
        "http.response.status_code": 503,
    }
    assert second.status.status_code is StatusCode.UNSET
    assert attrs(second) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "b-name",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "b-name",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 7,
        "taskmodels.task": "t",
        "taskmodels.model.id": "b",
        "taskmodels.attempt.number": 1,
        "taskmodels.attempt.retry": 0,
        "taskmodels.attempt.outcome": "success",
        "taskmodels.cost": pytest.approx(result.cost),
    }


FOLDED_ONLY = pytest.mark.parametrize("otel", [True], indirect=True, ids=["folded"])


@FOLDED_ONLY
async def test_folded_a_call_that_made_one_attempt_is_that_attempts_span_carrying_the_calls_attributes(
    otel: Otel,
) -> None:
    backend = FakeBackend().script("a", reply("fine", usage=Usage(12, 7)))
    svc = service(otel, backend=backend)
    app_tracer = otel.tracer_provider.get_tracer("app")
    with app_tracer.start_as_current_span("GET /personas") as app_span:
        result = await svc.complete_with_task_model("t", "hello", max_tokens=50)
        assert trace.get_current_span() is app_span

    app, attempt = sorted(otel.finished(), key=lambda s: s.start_time or 0)
    assert (app.name, attempt.name) == ("GET /personas", "chat a-name")  # and no call span
    assert attempt.parent is not None
    assert attempt.parent.span_id == app.context.span_id
    assert attempt.kind is SpanKind.CLIENT
    assert attempt.status.status_code is StatusCode.UNSET
    assert attrs(attempt) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "a-name",
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "a-name",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 7,
        "taskmodels.task": "t",
        "taskmodels.model.id": "a",
        "taskmodels.attempt.number": 1,
        "taskmodels.attempt.retry": 0,
        "taskmodels.attempt.outcome": "success",
        "taskmodels.cost": pytest.approx(result.cost),
        # what the call span would have said of the call
        "taskmodels.operation": "chat",
        "taskmodels.candidates": ("a", "b"),
        "taskmodels.attempts": 1,
        "taskmodels.outcome": "success",
    }
    durations = otel.points("gen_ai.client.operation.duration")  # the metrics are those of any call
    assert [p.count for p in durations] == [1]


@FOLDED_ONLY
async def test_folded_a_call_with_a_fallback_still_has_its_call_span(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(503)).script("b", reply("fine", usage=Usage(12, 7)))
    svc = service(otel, backend=backend)
    app_tracer = otel.tracer_provider.get_tracer("app")
    with app_tracer.start_as_current_span("GET /personas") as app_span:
        result = await svc.complete_with_task_model("t", "hello")
        assert trace.get_current_span() is app_span

    spans = otel.finished()
    assert len(spans) == 4
    (app,) = by_name(spans, "GET /personas")
    (call,) = by_name(spans, "taskmodels t")
    (first,) = by_name(spans, "chat a-name")
    (second,) = by_name(spans, "chat b-name")
    assert attrs(call) == {
        "taskmodels.task": "t",
        "taskmodels.operation": "chat",
        "taskmodels.candidates": ("a", "b"),
        "taskmodels.attempts": 2,
        "taskmodels.outcome": "success",
        "taskmodels.model.id": "b",
        "taskmodels.cost": pytest.approx(result.cost),
    }
    assert call.kind is SpanKind.INTERNAL
    # Opened when the first attempt failed, it starts when the call did: before that attempt.
    assert call.start_time is not None
    assert first.start_time is not None
    assert call.start_time <= first.start_time
    assert call.end_time is not None
    assert second.end_time is not None
    assert call.end_time >= second.end_time
    # The failed attempt was made before the call span existed: it sits beside it, and the call links to it.
    assert [parent_of(s) for s in (call, first, second)] == [
        app.context.span_id,
        app.context.span_id,
        call.context.span_id,
    ]
    assert [link.context.span_id for link in call.links] == [first.context.span_id]
    assert first.status.status_code is StatusCode.ERROR
    assert attrs(first)["error.type"] == "ProviderUnavailableError"
    assert "taskmodels.outcome" not in attrs(first)
    assert "taskmodels.outcome" not in attrs(second)


@FOLDED_ONLY
async def test_folded_a_call_whose_one_attempt_failed_ends_its_call_span_in_error(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(500))
    svc = service(otel, fake_registry(fake_model("a")), backend=backend)
    with pytest.raises(AllModelsFailedError):
        await svc.complete_with_task_model("t", "hello")

    (call,) = by_name(otel.finished(), "taskmodels t")
    (attempt,) = by_name(otel.finished(), "chat a-name")
    assert (call.status.status_code, call.status.description) == (StatusCode.ERROR, "AllModelsFailedError")
    assert attrs(call)["error.type"] == "AllModelsFailedError"
    assert attrs(call)["taskmodels.attempts"] == 1
    assert (attempt.status.status_code, attrs(attempt)["error.type"]) == (StatusCode.ERROR, "ProviderUnavailableError")
    assert [link.context.span_id for link in call.links] == [attempt.context.span_id]


@FOLDED_ONLY
async def test_folded_a_retry_of_the_same_model_has_its_call_span(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(500), reply("second time"))
    svc = service(otel, backend=backend, resilience=ResilienceSettings())
    await svc.complete_with_task_model("t", "hello")
    (call,) = by_name(otel.finished(), "taskmodels t")
    first, second = by_name(otel.finished(), "chat a-name")
    assert attrs(call)["taskmodels.attempts"] == 2
    assert (parent_of(first), parent_of(second)) == (None, call.context.span_id)


@FOLDED_ONLY
async def test_folded_a_stream_of_one_attempt_is_one_span(otel: Otel) -> None:
    svc = service(otel, backend=FakeBackend().script("a", reply("one two three")))
    texts = [e.text async for e in svc.stream_with_task_model("t", "hello") if e.type == "text"]
    assert texts == ["one ", "two ", "three"]
    (span,) = otel.finished()
    got = attrs(span)
    assert (span.name, got["gen_ai.request.stream"], got["taskmodels.outcome"]) == ("chat a-name", True, "success")
    assert "gen_ai.response.time_to_first_chunk" in got


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_an_answered_call_leaves_nothing_for_the_garbage_collector(otel: Otel, streamed: bool) -> None:
    """The tracer's handles are freed as an answered call ends, by reference counting: a cycle between them would
    keep each call's spans alive until a collection (a folded call's attempt and call handles named each other:
    3.5 objects per call for the collector, and more collections than any other mode). A failed attempt's
    exception keeps its frames, and so its call, in a cycle of Python's own: only answers are checked."""
    svc = service(otel, backend=FakeBackend())

    async def one_call() -> None:
        if streamed:
            assert [e.type async for e in svc.stream_with_task_model("t", "hello")][-1] == "done"
        else:
            await svc.complete_with_task_model("t", "hello")

    await one_call()
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            await one_call()
        left = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (_CallHandle, _AttemptHandle))]
    finally:
        gc.enable()
    assert left == []


def parent_of(span: Any) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_retry_of_the_same_model_is_numbered_and_is_no_fallback(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(500), reply("second time"))
    svc = service(otel, backend=backend, resilience=ResilienceSettings())
    await svc.complete_with_task_model("t", "hello")

    attempts = by_name(otel.finished(), "chat a-name")
    assert [(attrs(s)["taskmodels.attempt.number"], attrs(s)["taskmodels.attempt.retry"]) for s in attempts] == [
        (1, 0),
        (2, 1),
    ]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    assert otel.points("taskmodels.client.fallbacks") == []


async def test_a_failed_call_ends_its_span_in_error_with_every_attempt_and_skip(otel: Otel) -> None:
    registry = fake_registry(fake_model("a", capabilities=["chat", "vision"]), fake_model("b", capabilities=["chat"]))
    backend = FakeBackend().always("a", server_error(500))
    svc = service(otel, registry, backend=backend)
    with pytest.raises(AllModelsFailedError):
        await svc.complete_with_task_model("t", "look", required_capabilities={"vision"})

    (call,) = by_name(otel.finished(), "taskmodels t")
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == "AllModelsFailedError"
    assert attrs(call)["taskmodels.outcome"] == "error"
    assert attrs(call)["error.type"] == "AllModelsFailedError"
    (skip,) = attrs(call)["taskmodels.skipped"]
    assert skip.startswith("b: ")
    assert "taskmodels.model.id" not in attrs(call)


async def test_the_attempt_span_is_current_while_the_provider_answers(otel: Otel) -> None:
    backend = FakeBackend()
    svc = service(otel, backend=backend)
    seen: list[trace.Span] = []

    class Watching(FakeProvider):
        bound_backend = backend

        async def complete(self, request: CompletionRequest) -> Any:
            seen.append(trace.get_current_span())
            return await super().complete(request)

    svc.provider_factory.register_provider_implementation("fake", Watching)
    await svc.complete_with_task_model("t", "hello")

    (attempt,) = by_name(otel.finished(), "chat a-name")
    assert [s.get_span_context().span_id for s in seen] == [attempt.context.span_id]
    assert trace.get_current_span() is trace.INVALID_SPAN


# --- streams and embeddings ---------------------------------------------------------------------


async def test_a_stream_records_its_time_to_first_chunk(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(500)).script("b", reply("one two three"))
    svc = service(otel, backend=backend)
    texts = [e.text async for e in svc.stream_with_task_model("t", "hello") if e.type == "text"]
    assert texts == ["one ", "two ", "three"]

    spans = otel.finished()
    (failed,) = by_name(spans, "chat a-name")
    (answered,) = by_name(spans, "chat b-name")
    assert "gen_ai.response.time_to_first_chunk" not in attrs(failed)
    first_chunk = attrs(answered)["gen_ai.response.time_to_first_chunk"]
    assert 0 <= first_chunk < 5
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 1
    assert point.sum == pytest.approx(first_chunk)
    assert dict(point.attributes)["gen_ai.request.model"] == "b-name"
    (call,) = by_name(spans, "taskmodels t")
    assert attrs(call)["taskmodels.outcome"] == "success"


async def test_a_stream_its_consumer_abandons_still_ends_its_spans(otel: Otel) -> None:
    backend = FakeBackend().script("a", reply("one two three four"))
    svc = service(otel, backend=backend)
    stream = svc.stream_with_task_model("t", "hello")
    assert isinstance(stream, AsyncGenerator)  # aclosing needs aclose(); the service annotates only AsyncIterator
    async with aclosing(stream) as events:
        async for event in events:
            assert event.type == "text"
            break

    spans = otel.finished()
    call = outcome_span(spans)
    (attempt,) = by_name(spans, "chat a-name")
    assert len(spans) == (1 if otel.fold else 2)
    assert attrs(call)["taskmodels.outcome"] == "abandoned"
    assert attrs(attempt)["taskmodels.attempt.outcome"] == "abandoned"
    assert call.status.status_code is StatusCode.UNSET
    assert otel.points("gen_ai.client.operation.duration") == []  # an abandoned attempt measured nothing


async def test_a_stream_left_to_the_garbage_collector_ends_its_spans(otel: Otel) -> None:
    backend = FakeBackend().script("a", reply("one two three four"))
    svc = service(otel, backend=backend)
    stream = svc.stream_with_task_model("t", "hello")
    assert (await anext(stream)).type == "text"
    del stream  # never closed: asyncio's finalizer closes it in a task of its own
    gc.collect()
    for _ in range(100):  # bounded: the finalizer's task runs within a few loop turns
        if any("taskmodels.outcome" in attrs(s) for s in otel.finished()):
            break
        await asyncio.sleep(0)
    assert attrs(outcome_span(otel.finished()))["taskmodels.outcome"] == "abandoned"
    assert by_name(otel.finished(), "chat a-name")


async def test_stream_under_the_hood_records_the_first_chunk_too(otel: Otel) -> None:
    backend = FakeBackend()
    svc = service(otel, backend=backend, resilience=ResilienceSettings(stream_under_the_hood=True))
    await svc.complete_with_task_model("t", "hello")
    (attempt,) = by_name(otel.finished(), "chat a-name")
    assert "gen_ai.response.time_to_first_chunk" in attrs(attempt)


async def test_an_embedding_call_is_an_embeddings_span(otel: Otel) -> None:
    svc = service(otel, backend=FakeBackend())
    result = await svc.embed_with_task_model("t", ["one text", "another"])

    spans = otel.finished()
    call = outcome_span(spans)
    (attempt,) = by_name(spans, "embeddings a-name")
    assert attrs(call)["taskmodels.operation"] == "embeddings"
    got = attrs(attempt)
    assert got["gen_ai.operation.name"] == "embeddings"
    assert got["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    for chat_only in ("gen_ai.request.max_tokens", "gen_ai.request.temperature", "gen_ai.response.finish_reasons"):
        assert chat_only not in got
    kinds = {dict(p.attributes)["gen_ai.token.type"] for p in otel.points("gen_ai.client.token.usage")}
    assert kinds == {"input"}


# --- metrics -----------------------------------------------------------------------------------------


async def test_metrics_follow_the_conventions(otel: Otel) -> None:
    backend = FakeBackend().script("a", server_error(503)).script("b", reply("fine", usage=Usage(12, 7)))
    svc = service(otel, backend=backend)
    result = await svc.complete_with_task_model("t", "hello")

    durations = {dict(p.attributes).get("error.type"): p for p in otel.points("gen_ai.client.operation.duration")}
    assert set(durations) == {"ProviderUnavailableError", None}
    ok = dict(durations[None].attributes)
    assert ok == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fake",
        "gen_ai.request.model": "b-name",
        "gen_ai.response.model": "b-name",
        "taskmodels.task": "t",
    }
    assert list(durations[None].explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    tokens = {dict(p.attributes)["gen_ai.token.type"]: p.sum for p in otel.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 12, "output": 7}
    (cost,) = otel.points("taskmodels.client.cost")
    assert cost.value == pytest.approx(result.cost)
    assert dict(cost.attributes) == {
        "taskmodels.task": "t",
        "taskmodels.model.id": "b",
        "gen_ai.provider.name": "fake",
        "gen_ai.operation.name": "chat",
    }
    (fallback,) = otel.points("taskmodels.client.fallbacks")
    assert fallback.value == 1
    assert dict(fallback.attributes) == {
        "taskmodels.task": "t",
        "taskmodels.model.id": "b",
        "taskmodels.fallback.from": "a",
    }


async def test_cost_is_summed_over_every_service_on_one_meter_provider(otel: Otel) -> None:
    # The cost counter is observable: the SDK keeps the callback of the first registration of a name, so a
    # second service (a second container, say) on the same provider must add to the same totals.
    first = service(otel, backend=FakeBackend().script("a", reply("one", usage=Usage(10, 5))))
    second = service(otel, backend=FakeBackend().script("a", reply("two", usage=Usage(30, 5))))
    paid = [(await svc.complete_with_task_model("t", "hello")).cost for svc in (first, second, first)]
    (cost,) = otel.points("taskmodels.client.cost")
    assert cost.value == pytest.approx(sum(paid))
    assert sum(paid) > 0


async def test_each_response_model_keeps_its_own_metric_attributes(otel: Otel) -> None:
    # Label sets are built once per model and reused: a provider that answers under another model name
    # must still get its own series, and the first series must not be rewritten.
    backend = FakeBackend().script("a", reply("one", model_name="a-2024"), reply("two", model_name="a-2025"))
    svc = service(otel, backend=backend)
    for _ in range(2):
        await svc.complete_with_task_model("t", "hello")
    durations = otel.points("gen_ai.client.operation.duration")
    assert sorted(dict(p.attributes)["gen_ai.response.model"] for p in durations) == ["a-2024", "a-2025"]
    assert all(p.count == 1 for p in durations)


async def test_cached_and_reasoning_tokens_are_on_the_attempt_span(otel: Otel) -> None:
    usage = Usage(100, 40, cached_tokens=60, cache_write_tokens=10, reasoning_tokens=25)
    svc = service(otel, backend=FakeBackend().script("a", reply("fine", usage=usage)))
    await svc.complete_with_task_model("t", "hello")
    (attempt,) = by_name(otel.finished(), "chat a-name")
    got = attrs(attempt)
    assert got["gen_ai.usage.cache_read.input_tokens"] == 60
    assert got["gen_ai.usage.cache_creation.input_tokens"] == 10
    assert got["gen_ai.usage.reasoning.output_tokens"] == 25


# --- content and keys -------------------------------------------------------------------------------

PROMPT = "what is the capital of Atlantis, in a sentence"
SYSTEM = "you answer questions about fictional places"
ANSWER = "the capital of Atlantis is Poseidonia, under the sea"
KEY = "sk-telemetry-test-0123456789abcdef"


@pytest.fixture
def remembered_key() -> Iterator[str]:
    redaction.remember(KEY)
    yield KEY
    redaction.forget_all()


async def _ask_with_a_key_everywhere(svc: ModelService) -> None:
    request = CompletionRequest(
        system_prompt=SYSTEM,
        messages=[Message(role="user", content=f"my key is {KEY}")],
        prompt=PROMPT,
    )
    await svc.complete_with_task_model("t", request)


async def test_by_default_no_prompt_no_answer_and_no_key_is_recorded(
    otel: Otel, remembered_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_VARIABLE, raising=False)
    backend = FakeBackend().script("a", server_error(500, message=f"echoed {KEY} {PROMPT}")).script("b", reply(ANSWER))
    svc = service(otel, backend=backend)
    await _ask_with_a_key_everywhere(svc)

    recorded = otel.everything_recorded()
    assert "chat b-name" in recorded  # the spans are there ...
    for secret in (PROMPT, SYSTEM, ANSWER, remembered_key, remembered_key[:12], "Poseidonia", "Atlantis"):
        assert secret not in recorded  # ... but nothing of what was said, or of the key


async def test_content_is_recorded_when_the_application_opts_in_and_keys_are_scrubbed(
    otel: Otel, remembered_key: str
) -> None:
    backend = FakeBackend().script("a", reply(ANSWER))
    svc = service(otel, backend=backend, tracer=otel.tracer(capture_content=True))
    await _ask_with_a_key_everywhere(svc)

    (attempt,) = by_name(otel.finished(), "chat a-name")
    got = attrs(attempt)
    assert json.loads(got["gen_ai.system_instructions"]) == [{"type": "text", "content": SYSTEM}]
    messages = json.loads(got["gen_ai.input.messages"])
    assert messages == [
        {"role": "user", "parts": [{"type": "text", "content": "my key is [REDACTED]"}]},
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]},
    ]
    assert json.loads(got["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}
    ]
    assert remembered_key[:12] not in otel.everything_recorded()


@pytest.mark.parametrize(("value", "captured"), [("true", True), ("SPAN_ONLY", True), ("false", False), ("", False)])
def test_the_conventions_variable_opts_in(
    otel: Otel, monkeypatch: pytest.MonkeyPatch, value: str, captured: bool
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_VARIABLE, value)
    assert otel.tracer().capture_content is captured
    assert otel.tracer(capture_content=False).capture_content is False  # an explicit choice wins


# --- switching on and off ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "host", "expected"),
    [
        ("openai", "api.openai.com", "openai"),
        ("azure-openai", "x.openai.azure.com", "azure.ai.openai"),
        ("anthropic", None, "anthropic"),
        ("gemini", None, "gcp.gemini"),
        ("ollama", "127.0.0.1", "ollama"),
        ("openai-compatible", "api.groq.com", "groq"),
        ("openai-compatible", "127.0.0.1", "openai-compatible"),
        ("openai-compatible", "generativelanguage.googleapis.com", "gcp.gemini"),
        ("openai-compatible", "aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("openai-compatible", "europe-west4-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("openai-compatible", "res-1.openai.azure.com", "azure.ai.openai"),
        ("openai-compatible", "api.moonshot.ai", "moonshot_ai"),
        ("openai-compatible", "API.GROQ.COM", "groq"),
        ("openai-compatible", "notaiplatform.googleapis.com", "openai-compatible"),
        ("openai", "api.deepseek.com", "deepseek"),
        ("openai", None, "openai"),
        ("anthropic", "api.groq.com", "anthropic"),
        ("my-plugin", None, "my-plugin"),
    ],
)
def test_provider_names_follow_the_conventions(provider: str, host: str | None, expected: str) -> None:
    assert provider_name(provider, host) == expected


def test_the_setting_turns_telemetry_off() -> None:
    assert build_call_tracer(TelemetrySettings(enabled=False), None, None) is None
    assert isinstance(build_call_tracer(TelemetrySettings(), None, None), OpenTelemetryTracer)


@pytest.mark.parametrize(("value", "folded"), [("true", True), ("false", False), (None, False)])
def test_the_setting_folds_single_attempts(monkeypatch: pytest.MonkeyPatch, value: str | None, folded: bool) -> None:
    if value is None:
        monkeypatch.delenv("TASKMODELS_TELEMETRY__FOLD_SINGLE_ATTEMPT", raising=False)
    else:
        monkeypatch.setenv("TASKMODELS_TELEMETRY__FOLD_SINGLE_ATTEMPT", value)
    tracer = build_call_tracer(Settings(_env_file=None).telemetry, None, None)
    assert isinstance(tracer, OpenTelemetryTracer)
    assert tracer.fold_single_attempt is folded


def test_without_the_api_there_is_no_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)  # makes `import opentelemetry.trace` fail
    assert build_call_tracer(TelemetrySettings(), None, None) is None


async def test_the_container_passes_the_applications_providers(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    from dependency_injector import providers

    overrides = {
        "tracer_provider": providers.Object(otel.tracer_provider),
        "meter_provider": providers.Object(otel.meter_provider),
    }
    with overridden_container(TWO, overrides=overrides) as container:
        await container.model_service().complete_with_task_model("t", "hello")
    assert [s.name for s in otel.finished()] == ["chat a-name", "taskmodels t"]
    otel.spans.clear()

    monkeypatch.setenv("TASKMODELS_TELEMETRY__FOLD_SINGLE_ATTEMPT", "true")
    with overridden_container(TWO, settings=Settings(), overrides=overrides) as container:
        await container.model_service().complete_with_task_model("t", "hello")
    assert [s.name for s in otel.finished()] == ["chat a-name"]
    otel.spans.clear()
    monkeypatch.delenv("TASKMODELS_TELEMETRY__FOLD_SINGLE_ATTEMPT")

    monkeypatch.setenv("TASKMODELS_TELEMETRY__ENABLED", "false")
    with overridden_container(TWO, settings=Settings(), overrides=overrides) as container:
        assert container.tracer() is None
        svc = container.model_service()
        assert svc.observation.tracer is None
        await svc.complete_with_task_model("t", "hello")
    assert otel.finished() == []  # nothing more


def test_importing_taskmodels_does_not_import_opentelemetry() -> None:
    # The container module is not checked for opentelemetry itself: dependency-injector imports FastAPI when
    # it is installed, and FastAPI imports the API. Our telemetry module must wait for a container to need it.
    code = (
        "import sys, taskmodels, taskmodels.service\n"
        "taskmodels.ModelService, taskmodels.CompletionResult\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
        "import taskmodels.containers\n"
        "assert 'taskmodels.telemetry' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


async def test_on_the_global_providers_without_an_sdk_a_call_opens_no_trace() -> None:
    """The API alone (FastAPI brings it along) records nothing: the call skips telemetry after one check."""
    from opentelemetry import metrics, trace

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # no SDK set globally in this suite
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    tracer = build_call_tracer(TelemetrySettings(), None, None)
    assert isinstance(tracer, OpenTelemetryTracer)

    def no_span(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a span was started with no SDK installed")

    tracer._tracer.start_span = no_span  # type: ignore[method-assign]  # proves no span work is done
    backend = FakeBackend()
    svc = make_test_service(TWO, backend=backend, tracer=tracer)
    stream = svc.stream_with_task_model("t", prompt="hi")
    first = await anext(stream)
    assert first.type == "text"
    await stream.aclose()
    result = await svc.complete_with_task_model("t", prompt="hi")
    assert result.text
