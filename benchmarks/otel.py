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

# sdk_missing and sdk_providers are re-exported from otel_sdk.
__all__ = ["TELEMETRY_LABELS", "Telemetry", "sdk_missing", "sdk_providers", "telemetry_settings"]

Telemetry = Literal[
    "default", "off", "sdk", "folded", "floor", "floor_folded", "conventions_floor", "conventions_floor_folded"
]

TELEMETRY_LABELS: dict[Telemetry, str] = {
    "default": "taskmodels",
    "off": "taskmodels (telemetry off)",
    "sdk": "taskmodels (OTel SDK, no-op exporter)",
    "folded": "taskmodels (OTel SDK, fold_single_attempt)",
    "floor": "taskmodels (OTel SDK, its spans and records by hand)",
    "floor_folded": "taskmodels (OTel SDK, folded, its spans and records by hand)",
    "conventions_floor": "taskmodels (OTel SDK, the conventions' attributes only, by hand)",
    "conventions_floor_folded": "taskmodels (OTel SDK, folded, the conventions' attributes only, by hand)",
}


def telemetry_settings(telemetry: Telemetry) -> Any:
    """The ``TelemetrySettings`` a container runs ``telemetry`` with (the SDK itself is ``apply``'s)."""
    from taskmodels.sections import TelemetrySettings

    return TelemetrySettings(enabled=telemetry != "off", fold_single_attempt=telemetry == "folded")


def apply(container: Any, telemetry: Telemetry, stack: AsyncExitStack, *, batch: bool = True) -> Callable[[], object]:
    """Point ``container``'s telemetry nodes at what ``telemetry`` names (``off`` is a setting, not a node;
    ``floor`` replaces taskmodels' tracer with ``benchmarks.otel_floor.FloorTracer`` on the same SDK).

    Returns what exports the spans still queued: the batch processor's thread exports them whenever it wakes,
    so a timed block that ends with this call pays for its own spans' export, not a later block's."""
    if telemetry in ("default", "off"):
        return _nothing_queued
    from dependency_injector import providers

    tracer_provider, meter_provider = sdk_providers(stack, batch=batch)
    if "floor" in telemetry:
        from benchmarks.otel_floor import CONVENTIONS, TASKMODELS, FloorTracer

        shape = CONVENTIONS if telemetry.startswith("conventions") else TASKMODELS
        floor = FloorTracer(tracer_provider, meter_provider, call_span=not telemetry.endswith("folded"), shape=shape)
        container.tracer.override(providers.Object(floor))
    else:
        container.tracer_provider.override(providers.Object(tracer_provider))
        container.meter_provider.override(providers.Object(meter_provider))
    return tracer_provider.force_flush  # type: ignore[no-any-return]


def _nothing_queued() -> bool:
    return True
