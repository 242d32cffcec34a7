"""The telemetry a benchmark row runs with, and pointing a container at it.

Every SDK row runs on ``benchmarks.otel_sdk``'s providers (the SDK as an application would run it, minus the
network; that module says why the service-layer rows use a simple span processor). ``otel_floor`` takes them from
there too, so that this module may import its ``FloorTracer`` without the two importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Literal

from benchmarks.otel_sdk import sdk_missing, sdk_providers

__all__ = ["TELEMETRY_LABELS", "Telemetry", "sdk_missing", "sdk_providers"]  # the last two re-exported from otel_sdk

Telemetry = Literal["default", "off", "sdk", "floor"]

TELEMETRY_LABELS: dict[Telemetry, str] = {
    "default": "taskmodels",
    "off": "taskmodels (telemetry off)",
    "sdk": "taskmodels (OTel SDK, no-op exporter)",
    "floor": "taskmodels (OTel SDK, the floor's spans and records only)",
}


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
