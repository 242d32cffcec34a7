"""What ``ModelService.health()`` says: each model's breaker, and for a model with deployments its routing and
each deployment's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmodels.registry.service import Registry
from taskmodels.resilience.state import BreakerSnapshot

from .admission import Gate
from .loop import Engine
from .pools import Pool

__all__ = ["health", "pool_health"]


async def health(engine: Engine, registry: Registry) -> dict[str, Any]:
    """Each registry model's breaker: ``state`` (closed, open, half_open), failures, ``retry_at`` and ``cooldown``;
    for a model with deployments, ``pool_health``'s too."""
    gate = engine.gate
    snapshots = await gate.snapshots()
    out: dict[str, Any] = {}
    for model_id, model in registry.models_by_id.items():
        snap = snapshots.get(model_id) or await gate.snapshot(model_id)
        out[model_id] = {
            "state": snap.state,
            "consecutive_failures": snap.consecutive_failures,
            "retry_at": snap.retry_at,
            "cooldown": snap.cooldown,
        }
        if model.deployments:
            out[model_id].update(await pool_health(gate, engine.pools.pool(model), snapshots))
    return {"models": out}


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
