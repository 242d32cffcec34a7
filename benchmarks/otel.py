"""OpenTelemetry as an application would run it, minus the network: the SDK's providers with a span exporter
that drops every batch and a metric reader that aggregates every measurement and is never read.

What the telemetry rows measure is then what taskmodels' spans and metrics cost the calling process: spans
built, attributes set, ended and handed to a batch processor; histogram and counter measurements aggregated.

The service-layer rows (``benchmarks/layer.py``: a CPU-bound loop over a provider that answers at once, no I/O)
hand spans to a simple processor instead. There the batch processor's thread, woken every 512 spans, waits
for a GIL the loop never releases, and until it drains, every span's end signals it again: the loop's CPU per
call then swung by 25-45 µs from one process to the next (single runs of the same code read 113 or 145 µs),
which would bury the 10-15 µs being measured. With I/O between calls, as end to end, the thread drains at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal

__all__ = ["TELEMETRY_LABELS", "Telemetry", "sdk_missing", "sdk_providers"]

Telemetry = Literal["default", "off", "sdk", "floor"]

TELEMETRY_LABELS: dict[Telemetry, str] = {
    "default": "taskmodels",
    "off": "taskmodels (telemetry off)",
    "sdk": "taskmodels (OTel SDK, no-op exporter)",
    "floor": "taskmodels (OTel SDK, the floor's spans and records only)",
}


def sdk_missing() -> str | None:
    """Why the SDK rows cannot run here, or ``None``."""
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return "opentelemetry-sdk not installed"
    return None


def sdk_providers(stack: AsyncExitStack, *, batch: bool = True) -> tuple[Any, Any]:
    """A tracer provider and a meter provider of the SDK, shut down when ``stack`` closes; ``batch`` False: the
    spans go to the exporter as each ends (see the module's docstring)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DroppingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    tracer_provider = TracerProvider()
    processor = BatchSpanProcessor if batch else SimpleSpanProcessor
    tracer_provider.add_span_processor(processor(DroppingExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    stack.callback(tracer_provider.shutdown)
    stack.callback(meter_provider.shutdown)
    return tracer_provider, meter_provider


def apply(container: Any, telemetry: Telemetry, stack: AsyncExitStack, *, batch: bool = True) -> Callable[[], object]:
    """Point ``container``'s telemetry nodes at what ``telemetry`` names (``off`` is a setting, not a node;
    ``floor`` replaces taskmodels' tracer with ``benchmarks.otel_floor.FloorTracer`` on the same SDK).

    Returns what exports the spans still queued: the batch processor's thread exports them whenever it wakes,
    so a timed block that ends with this call pays for its own spans' export, not a later block's."""
    if telemetry not in ("sdk", "floor"):
        return _nothing_queued
    from dependency_injector import providers

    tracer_provider, meter_provider = sdk_providers(stack, batch=batch)
    if telemetry == "floor":
        from benchmarks.otel_floor import FloorTracer

        container.tracer.override(providers.Object(FloorTracer(tracer_provider, meter_provider)))
    else:
        container.tracer_provider.override(providers.Object(tracer_provider))
        container.meter_provider.override(providers.Object(meter_provider))
    return tracer_provider.force_flush  # type: ignore[no-any-return]


def _nothing_queued() -> bool:
    return True
