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

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

__all__ = ["sdk_missing", "sdk_providers"]


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
