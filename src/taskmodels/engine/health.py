"""What ``ModelService.health()`` says about a model with deployments: its routing and each deployment's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmodels.resilience.state import BreakerSnapshot

from .admission import Gate
from .pools import Pool

__all__ = ["pool_health"]


async def pool_health(gate: Gate, pool: Pool, snapshots: Mapping[str, BreakerSnapshot]) -> dict[str, Any]:
    """``routing`` and, per deployment id: breaker ``state``, failures, ``retry_at``, ``held_until``, the
    requests and tokens of the current rate window against ``rpm``/``tpm``, calls in flight here, and the
    rolling ``latency`` (``None`` until measured)."""
    deployments: dict[str, Any] = {}
    for route in pool.routes:
        snap = snapshots.get(route.key) or await gate.snapshot(route.key)
        rate = await gate.rate(route.key)
        deployments[str(route.deployment_id)] = {
            "state": "held" if snap.state == "closed" and rate.held_until is not None else snap.state,
            "breaker": snap.state,
            "consecutive_failures": snap.consecutive_failures,
            "retry_at": snap.retry_at,
            "held_until": rate.held_until,
            "provider": route.config.provider,
            "weight": route.weight,
            "tags": list(route.tags),
            "rpm": route.rpm,
            "tpm": route.tpm,
            "requests_in_window": rate.requests,
            "tokens_in_window": rate.tokens,
            "in_flight": route.in_flight,
            "latency": route.latency if route.samples else None,
        }
    return {"routing": pool.strategy, "deployments": deployments}
