"""The OpenTelemetry SDK set up to read back what taskmodels records: spans from an in-memory exporter,
metric points from an in-memory reader. Shared by the telemetry tests; ``tests/conftest.py`` makes
``in_memory_otel`` the ``otel`` fixture."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskmodels.telemetry import OpenTelemetryTracer

__all__ = ["FOLDS", "Otel", "attrs", "by_name", "in_memory_otel", "outcome_span"]


@dataclass
class Otel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    fold: bool = False  # the tracers made here fold a single attempt's call into it (``fold_single_attempt``)

    def tracer(self, **kwargs: Any) -> OpenTelemetryTracer:
        kwargs.setdefault("fold_single_attempt", self.fold)
        return OpenTelemetryTracer(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def everything_recorded(self) -> str:
        """Every span name, attribute, event and status text, and every metric point's attributes, as one
        string: what a test searches for text that must not be there."""
        parts: list[str] = []
        for span in self.finished():
            parts += [span.name, json.dumps(attrs(span), default=str), str(span.status.description)]
            for event in span.events:
                parts += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    parts += [json.dumps(dict(p.attributes or {}), default=str) for p in metric.data.data_points]
        return "\n".join(parts)


def in_memory_otel(*, fold: bool = False) -> Iterator[Otel]:
    """SDK providers reading into memory, shut down when the generator closes; ``fold``: see ``Otel.fold``."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(tracer_provider, meter_provider, exporter, reader, fold)
    tracer_provider.shutdown()
    meter_provider.shutdown()


# The two ways a call can be traced, as a fixture's params: a call span over its attempts, and a call that made
# one attempt folded into that attempt's span (``fold_single_attempt``).
FOLDS = (pytest.param(False, id="call-span"), pytest.param(True, id="folded"))


def outcome_span(spans: Sequence[ReadableSpan]) -> ReadableSpan:
    """The one span that says how a call ended: its call span, or the attempt span a folded call is traced as."""
    (span,) = [s for s in spans if "taskmodels.outcome" in attrs(s)]
    return span


def by_name(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
