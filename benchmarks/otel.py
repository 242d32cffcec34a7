"""OpenTelemetry as an application would run it, minus the network: the SDK's providers with a span exporter
that drops every batch and a metric reader that aggregates every measurement and is never read.

What the telemetry rows measure is then what taskmodels' spans and metrics cost the calling process: spans
built, attributes set, ended and handed to a batch processor; histogram and counter measurements aggregated.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def sdk_providers(stack: AsyncExitStack) -> tuple[Any, Any]:
    """A tracer provider and a meter provider of the SDK, shut down when ``stack`` closes."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DroppingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    stack.callback(tracer_provider.shutdown)
    stack.callback(meter_provider.shutdown)
    return tracer_provider, meter_provider


def apply(container: Any, telemetry: Telemetry, stack: AsyncExitStack) -> None:
    """Point ``container``'s telemetry nodes at what ``telemetry`` names (``off`` is a setting, not a node;
    ``floor`` replaces taskmodels' tracer with ``benchmarks.otel_floor.FloorTracer`` on the same SDK)."""
    if telemetry not in ("sdk", "floor"):
        return
    from dependency_injector import providers

    tracer_provider, meter_provider = sdk_providers(stack)
    if telemetry == "floor":
        from benchmarks.otel_floor import FloorTracer

        container.tracer.override(providers.Object(FloorTracer(tracer_provider, meter_provider)))
        return
    container.tracer_provider.override(providers.Object(tracer_provider))
    container.meter_provider.override(providers.Object(meter_provider))
