"""The OpenTelemetry SDK's own floor: what the GenAI conventions ask of one call, with nothing of taskmodels.

The work is written out by hand against the SDK providers of ``benchmarks.otel_sdk`` (a batch span processor with a
dropping exporter, an in-memory metric reader), and timed as CPU per call, best of ``repeats``, in a tight loop.
One GenAI call with one attempt is: a parent span for the call (3 attributes), a child CLIENT span named
``chat {model}`` with the conventions' 12 attributes (7 known at the request, 5 from the answer), both ended;
``gen_ai.client.operation.duration`` recorded once (6 attributes) and ``gen_ai.client.token.usage`` twice (the
same 6 plus ``gen_ai.token.type``), on histograms with the conventions' advised buckets, as any instrumentation
must. Whatever taskmodels' telemetry costs above this figure is its own; this much no instrumentation on this SDK
can avoid. The attribute dicts are built per call (their values come from each answer) and the duration takes
two clock readings: both are part of any instrumentation's work, and both are small.

    python -m benchmarks.otel_floor --calls 5000 --repeats 3     # alone, with a short bare httpx2 run for the %
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Final

from benchmarks.otel_sdk import sdk_missing, sdk_providers

__all__ = ["FLOOR_CASES", "FloorTracer", "measure_otel_floor"]

FLOOR_CASES: Final[dict[str, str]] = {
    "genai_call": "GenAI call: call span + CLIENT span (3 + 12 attributes), 3 histogram records",
    "genai_attempt": "GenAI attempt alone: CLIENT span (12 attributes), 3 histogram records",
    "genai_spans": "its 2 spans only",
    "genai_metrics": "its 3 histogram records only",
    "attach_detach": "making a span current (context attach + detach)",
    "empty_span": "one span, no attributes",
    "empty_record": "one histogram record, no attributes",
}

# The conventions' advised bucket boundaries (gen_ai.client.operation.duration, gen_ai.client.token.usage).
_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS: Final = tuple(float(4**n) for n in range(14))

_MODEL = "bench-model"
# The conventions' attributes of an attempt span: known at the request, then from the answer.
_REQUEST_ATTRIBUTES: Final[dict[str, Any]] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": _MODEL,
    "gen_ai.request.max_tokens": 64,
    "gen_ai.request.temperature": 0.0,
    "server.address": "127.0.0.1",
    "server.port": 8000,
}
_ANSWER_ATTRIBUTES: Final[dict[str, Any]] = {
    "gen_ai.response.model": _MODEL,
    "gen_ai.response.id": "chatcmpl-bench",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 9,
}


class _Work:
    """Each case as a method over instruments made once, as an instrumentation library makes them."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

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
        # Made current and back again by attach_detach, never ended: only the context work is timed.
        self.held = self.tracer.start_span("held")

    def cases(self) -> dict[str, Callable[[], None]]:
        cases: dict[str, Callable[[], None]] = {
            "genai_call": self.genai_call,
            "genai_attempt": self.genai_attempt,
            "genai_spans": self.genai_spans,
            "genai_metrics": self.genai_metrics,
            "attach_detach": self.attach_detach,
            "empty_span": self.empty_span,
            "empty_record": self.empty_record,
        }
        assert list(cases) == list(FLOOR_CASES)
        return cases

    def attempt_span(self, context: Any) -> Any:
        span = self.tracer.start_span(
            f"chat {_MODEL}", context=context, kind=self.client, attributes=_REQUEST_ATTRIBUTES
        )
        span.set_attributes(_ANSWER_ATTRIBUTES)
        return span

    def records(self, started: float) -> None:
        labels = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": _MODEL,
            "gen_ai.response.model": _MODEL,
            "server.address": "127.0.0.1",
            "server.port": 8000,
        }
        self.duration.record(time.perf_counter() - started, labels)
        self.tokens.record(12, {**labels, "gen_ai.token.type": "input"})
        self.tokens.record(9, {**labels, "gen_ai.token.type": "output"})

    def call_span(self) -> Any:
        return self.tracer.start_span("taskmodels bench", attributes={"taskmodels.task": "bench"})

    @staticmethod
    def end_call(span: Any) -> None:
        span.set_attributes({"taskmodels.outcome": "success", "taskmodels.model_id": "bench"})
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
        span = self.attempt_span(None)
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
    """The floor where taskmodels' telemetry runs: an engine ``CallTracer`` that makes exactly the SDK calls of
    the ``genai_call`` case (a call span; per attempt a CLIENT span made current while it runs, its answer's
    attributes, three histogram records) with fixed attributes and none of taskmodels' own work.

    taskmodels' tracer minus this one, in the same service and the same process, is taskmodels' own share of
    telemetry. Measured in place: the tight loop of ``measure_otel_floor`` runs cache-hot and reads lower than
    the same SDK calls do between a real call's other work.
    """

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        self._work = _Work(tracer_provider, meter_provider)

    def call_started(self, call: Any, *, streaming: bool) -> list[Any]:
        span = self._work.call_span()
        return [span, self._work.set_in_context(span)]

    def attempt_started(self, call: Any, model: Any, provider: Any, number: int) -> tuple[Any, Any, float]:
        work = self._work
        started = time.perf_counter()
        span = work.tracer.start_span(
            f"chat {_MODEL}", context=call.trace[1], kind=work.client, attributes=_REQUEST_ATTRIBUTES
        )
        return span, work.context.attach(work.set_in_context(span, call.trace[1])), started

    def attempt_running(self, attempt: Any) -> None:
        return None

    def first_chunk(self, attempt: Any) -> None:
        return None

    def attempt_ended(self, call: Any, attempt: Any, record: Any, result: Any) -> None:
        span, token, started = attempt
        self._work.context.detach(token)
        span.set_attributes(_ANSWER_ATTRIBUTES)
        self._work.records(started)
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
            cases = _Work(tracer_provider, meter_provider).cases()
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
