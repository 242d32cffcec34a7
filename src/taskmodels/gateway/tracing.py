"""An incoming W3C ``traceparent`` (and ``tracestate``) continues into the library's OpenTelemetry spans.

When a client sends the trace context of its own span, the gateway makes it current while it serves the request,
so the call span the library starts (``telemetry.py``, when the application installed an SDK) is that span's
child, in the client's trace. Propagation goes through the propagator the application configured
(``opentelemetry.propagate``; W3C trace context and baggage by default). A request without the header, a
process without ``opentelemetry-api``, or telemetry turned off pay one scan of the headers and nothing else; a
malformed header is ignored (a new trace starts), as the W3C recommendation says.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["continued_trace"]

_HEADERS = (b"traceparent", b"tracestate", b"baggage")


@functools.cache
def _api() -> tuple[Any, Any] | None:
    """The OpenTelemetry API's ``context`` and ``propagate`` modules, or ``None`` when the API is not installed."""
    try:
        from opentelemetry import context, propagate
    except ImportError:
        return None
    return context, propagate


@contextlib.contextmanager
def continued_trace(headers: Iterable[tuple[bytes, bytes]], *, enabled: bool = True) -> Iterator[None]:
    """Within the block, the trace context ``headers`` (ASGI's, lower-case names) carry is the current one."""
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in _HEADERS}
    api = _api() if enabled and "traceparent" in carrier else None
    if api is None:
        yield
        return
    context, propagate = api
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
