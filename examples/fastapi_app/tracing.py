"""Traces to the console when ``PERSONAS_TRACE_CONSOLE=1``: each request is a span, and taskmodels' call and
attempt spans nest under it (docs/tracing.md). Needs the OpenTelemetry SDK: ``pip install opentelemetry-sdk``.

The provider is handed to taskmodels' container (its ``tracer_provider`` and ``meter_provider`` nodes) rather
than installed globally, so a test that builds several apps never shares one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from dependency_injector import providers
from fastapi import FastAPI, Request, Response

__all__ = ["TRACE_VARIABLE", "console_tracing"]

TRACE_VARIABLE = "PERSONAS_TRACE_CONSOLE"


def console_tracing(app: FastAPI, models: Any) -> bool:
    """When ``PERSONAS_TRACE_CONSOLE`` is set: a span per request, printed with taskmodels' spans when it ends."""
    if os.environ.get(TRACE_VARIABLE, "").lower() not in {"1", "true", "yes"}:
        return False
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    models.tracer_provider.override(providers.Object(tracer_provider))
    tracer = tracer_provider.get_tracer("fastapi_app")

    @app.middleware("http")
    async def request_span(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        with tracer.start_as_current_span(f"{request.method} {request.url.path}", kind=SpanKind.SERVER) as span:
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    return True
