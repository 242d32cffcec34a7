"""The OpenTelemetry SDK's own floor: the spans and records of one GenAI call, written out by hand.

The work is written against the SDK providers of ``benchmarks.otel_sdk`` (a batch span processor with a dropping
exporter, an in-memory metric reader) with nothing of taskmodels, in two attribute sets (``Shape``):

- ``CONVENTIONS``: what the GenAI conventions ask of one call with one attempt, as any instrumentation must record
  it. A parent span for the call (3 attributes), a child CLIENT span named ``chat {model}`` with the conventions'
  12 attributes (7 known at the request, 5 from the answer), both ended; ``gen_ai.client.operation.duration``
  recorded once (6 attributes) and ``gen_ai.client.token.usage`` twice (the same 6 plus ``gen_ai.token.type``), on
  histograms with the conventions' advised buckets.
- ``TASKMODELS``: the same spans and records with every attribute taskmodels' tracer gives them (docs/tracing.md:
  the task, the model's registry id, the attempt's number, retry and outcome, the cost; the call span's candidates,
  attempts, outcome), as the benchmark's calls record them. ``FloorTracer`` makes these at the engine's hooks: the
  hand-written floor the telemetry target judges taskmodels' tracer against, spans, records and attributes alike.

The tight loop (``measure_otel_floor``) times each case as CPU per call, best of ``repeats``. The attribute dicts
of the records are built per call (their values come from each answer) and the duration takes two clock readings:
both are part of any instrumentation's work, and both are small.

    python -m benchmarks.otel_floor --calls 5000 --repeats 3     # alone, with a short bare httpx2 run for the %
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

from benchmarks.otel_sdk import sdk_missing, sdk_providers

__all__ = ["CONVENTIONS", "FLOOR_CASES", "TASKMODELS", "FloorTracer", "Shape", "measure_otel_floor"]

FLOOR_CASES: Final[dict[str, str]] = {
    "genai_call": "GenAI call: call span + CLIENT span (3 + 12 attributes), 3 histogram records",
    "genai_attempt": "GenAI attempt alone: CLIENT span (12 attributes), 3 histogram records",
    "taskmodels_call": "the same with taskmodels' attributes: call span + CLIENT span (7 + 18), 3 records (7 + 8 + 8)",
    "taskmodels_attempt": "taskmodels' attributes, folded: CLIENT span (22 attributes), 3 records (7 + 8 + 8)",
    "genai_spans": "the GenAI call's 2 spans only",
    "genai_metrics": "the GenAI call's 3 histogram records only",
    "attach_detach": "making a span current (context attach + detach)",
    "empty_span": "one span, no attributes",
    "empty_record": "one histogram record, no attributes",
}

# The conventions' advised bucket boundaries (gen_ai.client.operation.duration, gen_ai.client.token.usage).
_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS: Final = tuple(float(4**n) for n in range(14))

_MODEL = "bench-model"


@dataclass(frozen=True, slots=True)
class Shape:
    """The attributes of one call's spans and records: the call span's at its start and end, the attempt span's
    at the request and from the answer, what a folded attempt adds for its call, and the records' labels."""

    call_start: Mapping[str, Any]
    call_end: Mapping[str, Any]
    request: Mapping[str, Any]
    answer: Mapping[str, Any]
    folded_end: Mapping[str, Any]
    labels: Mapping[str, Any]


_REQUEST: Final[dict[str, Any]] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": _MODEL,
    "gen_ai.request.max_tokens": 64,
    "gen_ai.request.temperature": 0.0,
    "server.address": "127.0.0.1",
    "server.port": 8000,
}
_ANSWER: Final[dict[str, Any]] = {
    "gen_ai.response.model": _MODEL,
    "gen_ai.response.id": "chatcmpl-bench",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 9,
}
_LABELS: Final[dict[str, Any]] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": _MODEL,
    "gen_ai.response.model": _MODEL,
    "server.address": "127.0.0.1",
    "server.port": 8000,
}
_CALL_SUMMARY: Final[dict[str, Any]] = {"taskmodels.attempts": 1, "taskmodels.outcome": "success"}

CONVENTIONS: Final = Shape(
    call_start={"taskmodels.task": "bench"},
    call_end={"taskmodels.outcome": "success", "taskmodels.model.id": "bench"},
    request=_REQUEST,
    answer=_ANSWER,
    folded_end={},
    labels=_LABELS,
)
TASKMODELS: Final = Shape(
    call_start={"taskmodels.task": "bench", "taskmodels.operation": "chat", "taskmodels.candidates": ["bench"]},
    call_end={**_CALL_SUMMARY, "taskmodels.model.id": "bench", "taskmodels.cost": 2.1e-05},
    request={
        **_REQUEST,
        "taskmodels.task": "bench",
        "taskmodels.model.id": "bench",
        "taskmodels.attempt.number": 1,
        "taskmodels.attempt.retry": 0,
    },
    answer={**_ANSWER, "taskmodels.attempt.outcome": "success", "taskmodels.cost": 2.1e-05},
    folded_end={**_CALL_SUMMARY, "taskmodels.operation": "chat", "taskmodels.candidates": ["bench"]},
    labels={**_LABELS, "taskmodels.task": "bench"},
)


class _Work:
    """Each case as a method over instruments made once, as an instrumentation library makes them."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, shape: Shape = CONVENTIONS) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind

        self.shape = shape
        self.tracer = tracer_provider.get_tracer("benchmarks.otel_floor")
        meter = meter_provider.get_meter("benchmarks.otel_floor")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=_DURATION_BUCKETS
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS
        )
        self.bare_histogram = meter.create_histogram("bench.empty")
        self.set_in_context = trace.set_span_in_context
        self.context = otel_context
        self.client = SpanKind.CLIENT
        self.link = Link
        # Made current and back again by attach_detach, never ended: only the context work is timed.
        self.held = self.tracer.start_span("held")

    def cases(self, other: _Work) -> dict[str, Callable[[], None]]:
        """The tight loop's cases; ``other``: the same work in the other attribute set (``taskmodels_*``)."""
        cases: dict[str, Callable[[], None]] = {
            "genai_call": self.genai_call,
            "genai_attempt": self.genai_attempt,
            "taskmodels_call": other.genai_call,
            "taskmodels_attempt": other.genai_attempt,
            "genai_spans": self.genai_spans,
            "genai_metrics": self.genai_metrics,
            "attach_detach": self.attach_detach,
            "empty_span": self.empty_span,
            "empty_record": self.empty_record,
        }
        assert list(cases) == list(FLOOR_CASES)
        return cases

    def attempt_span(self, context: Any, *, folded: bool = False) -> Any:
        span = self.start_attempt(context)
        span.set_attributes({**self.shape.answer, **self.shape.folded_end} if folded else self.shape.answer)
        return span

    def start_attempt(self, context: Any) -> Any:
        request = self.shape.request
        return self.tracer.start_span(f"chat {_MODEL}", context=context, kind=self.client, attributes=request)

    def records(self, started: float) -> None:
        labels = dict(self.shape.labels)
        self.duration.record(time.perf_counter() - started, labels)
        self.tokens.record(12, {**labels, "gen_ai.token.type": "input"})
        self.tokens.record(9, {**labels, "gen_ai.token.type": "output"})

    def call_span(self, start_time: int | None = None, links: Any = None) -> Any:
        return self.tracer.start_span(
            "taskmodels bench", attributes=self.shape.call_start, start_time=start_time, links=links
        )

    def end_call(self, span: Any) -> None:
        span.set_attributes(self.shape.call_end)
        span.end()

    def genai_call(self) -> None:
        started = time.perf_counter()
        parent = self.call_span()
        child = self.attempt_span(self.set_in_context(parent))
        self.records(started)
        child.end()
        self.end_call(parent)

    def genai_attempt(self) -> None:
        started = time.perf_counter()
        span = self.attempt_span(None, folded=True)
        self.records(started)
        span.end()

    def genai_spans(self) -> None:
        parent = self.call_span()
        self.attempt_span(self.set_in_context(parent)).end()
        self.end_call(parent)

    def genai_metrics(self) -> None:
        self.records(time.perf_counter())

    def attach_detach(self) -> None:
        self.context.detach(self.context.attach(self.set_in_context(self.held)))

    def empty_span(self) -> None:
        self.tracer.start_span("empty").end()

    def empty_record(self) -> None:
        self.bare_histogram.record(1.0)


class FloorTracer:
    """The floor where taskmodels' telemetry runs: an engine ``CallTracer`` making the SDK calls taskmodels' tracer
    makes, with the same attributes (``TASKMODELS``, fixed values) and none of taskmodels' own work: a call span;
    per attempt a CLIENT span made current while it runs, its answer's attributes and three histogram records (a
    failed attempt: its error's attributes and a duration record). ``call_span=False`` is the folded trace: an
    answered first attempt's span carries the call's attributes, and a call span is opened, started when the call
    started, only when that attempt fails.

    taskmodels' tracer minus this one, in the same service and the same process, is taskmodels' own share of
    telemetry. Measured in place: the tight loop of ``measure_otel_floor`` runs cache-hot and reads lower than
    the same SDK calls do between a real call's other work.
    """

    def __init__(
        self, tracer_provider: Any, meter_provider: Any, *, call_span: bool = True, shape: Shape = TASKMODELS
    ) -> None:
        self._work = _Work(tracer_provider, meter_provider, shape)
        self._call_span = call_span

    def call_started(self, call: Any, *, streaming: bool) -> list[Any]:
        """The handle: [call span or None, the attempts' parent context, when a folded call started]."""
        work = self._work
        if not self._call_span:
            return [None, work.context.get_current(), time.time_ns()]
        span = work.call_span()
        return [span, work.set_in_context(span), 0]

    def attempt_started(self, call: Any, model: Any, provider: Any, number: int) -> tuple[Any, Any, float]:
        work = self._work
        started = time.perf_counter()
        context = call.trace[1]
        span = work.start_attempt(context)
        return span, work.context.attach(work.set_in_context(span, context)), started

    def attempt_running(self, attempt: Any) -> None:
        return None

    def first_chunk(self, attempt: Any) -> None:
        return None

    def attempt_ended(self, call: Any, attempt: Any, record: Any, result: Any) -> None:
        span, token, started = attempt
        work = self._work
        work.context.detach(token)
        handle = call.trace
        if result is None:
            span.set_attributes({"error.type": "ProviderError", "taskmodels.attempt.outcome": "error"})
            work.duration.record(time.perf_counter() - started, {**work.shape.labels, "error.type": "ProviderError"})
            if handle[0] is None:  # folded: the call goes on, or fails, under a call span after all
                call_span = work.call_span(handle[2], [work.link(span.get_span_context())])
                handle[0], handle[1] = call_span, work.set_in_context(call_span)
        elif handle[0] is None:
            span.set_attributes({**work.shape.answer, **work.shape.folded_end})
            work.records(started)
        else:
            span.set_attributes(work.shape.answer)
            work.records(started)
        span.end()

    def attempt_cancelled(self, call: Any, attempt: Any, record: Any, cost: float) -> None:
        span, token, _ = attempt
        self._work.context.detach(token)
        span.end()

    def call_ended(self, call: Any, result: Any, error: Any) -> None:
        handle = call.trace
        if handle[0] is not None:  # the engine may end a call twice (its last word comes from a finally)
            self._work.end_call(handle[0])
            handle[0] = None


class _Counter(logging.Handler):
    """Counts the batch processor's warnings: a full queue drops spans, which would make the floor look cheaper."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _timed(fn: Callable[[], None], calls: int) -> float:
    gc.collect()
    t0 = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - t0) / calls


async def measure_otel_floor(calls: int, *, repeats: int = 5) -> dict[str, Any]:
    """Best-of-``repeats`` CPU seconds per call of each case of ``FLOOR_CASES``; the cases alternate within a
    repeat, in an order rotated by one each time, as the harness does with variants."""
    if (why := sdk_missing()) is not None:
        return {"skipped": why}
    counter = _Counter()
    sdk_logger = logging.getLogger("opentelemetry.sdk")
    sdk_logger.addHandler(counter)
    try:
        async with AsyncExitStack() as stack:
            tracer_provider, meter_provider = sdk_providers(stack)
            work = _Work(tracer_provider, meter_provider, CONVENTIONS)
            cases = work.cases(_Work(tracer_provider, meter_provider, TASKMODELS))
            names = list(cases)
            for fn in cases.values():
                _timed(fn, min(calls, 2000))
            best = dict.fromkeys(names, float("inf"))
            for r in range(repeats):
                k = r % len(names)
                for name in [*names[k:], *names[:k]]:
                    best[name] = min(best[name], _timed(cases[name], calls))
    finally:
        sdk_logger.removeHandler(counter)
    return {
        "calls": calls,
        "repeats": repeats,
        "cpu_per_call_s": best,
        "labels": dict(FLOOR_CASES),
        "sdk_warnings": counter.count,
    }


async def _bare_median(rounds: int, calls: int) -> float:
    import httpx2

    from benchmarks.clients import Endpoints, bare_httpx_variants
    from benchmarks.harness import run_sequential
    from benchmarks.server import BenchServer

    with BenchServer() as server:
        async with httpx2.AsyncClient() as client:
            variant = bare_httpx_variants(Endpoints(server.url, server.chunks), client)["complete"]
            result = await run_sequential([variant], calls_per_round=calls, rounds=rounds, warmup=calls)
    res = result[variant.name]
    if res.error is not None:
        raise RuntimeError(res.error)
    return res.median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otel_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per case per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bare-rounds", type=int, default=10, help="rounds of 50 bare httpx2 calls (0: no %%)")
    args = parser.parse_args(argv)
    floor = asyncio.run(measure_otel_floor(args.calls, repeats=args.repeats))
    if floor.get("skipped"):
        print(f"skipped: {floor['skipped']}")
        return 0
    bare = asyncio.run(_bare_median(args.bare_rounds, 50)) if args.bare_rounds > 0 else None
    if bare is not None:
        print(f"bare httpx2 call, median of {args.bare_rounds * 50} calls: {bare * 1e6:,.1f} µs")
    for name, label in FLOOR_CASES.items():
        cpu = floor["cpu_per_call_s"][name]
        share = f"  {cpu / bare * 100:5.2f} % of a bare call" if bare else ""
        print(f"{label:<80} {cpu * 1e6:7.2f} µs{share}")
    print(f"(CPU per call, best of {args.repeats} × {args.calls:,}; SDK warnings: {floor['sdk_warnings']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
