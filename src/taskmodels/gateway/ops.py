"""What operators ask the gateway: ``GET /metrics``, ``GET /healthz``, ``GET /readyz``; and the watch that reloads
the registry and the keys when their files change.

- ``/healthz``: the process answers (200), nothing more is looked at: a liveness probe.
- ``/readyz``: whether this replica should get traffic, and what it serves, as JSON: the registry's and the keys'
  content hashes (every replica that loaded the same files shows the same ones, so a reload can be seen to have
  reached the whole fleet), and the state store: ``reachable``, or ``degraded`` (Redis lost: limits held per
  process until it is back, knowingly). 200 while ready or degraded; 503 while shutting down, or when the store
  fails outright (a store that is neither memory nor Redis, which fall back by themselves).
- ``/metrics``: ``metrics.py``; breakers and key budgets are read in at each scrape.

None of them asks for a key: load balancers and Prometheus call them. They say nothing a caller could not learn by
calling (task and key names are labels, never keys); bind or firewall the gateway to match.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, Final

from taskmodels.gateway.governor import Governor
from taskmodels.gateway.keysfile import KeysFile
from taskmodels.gateway.metrics import GatewayMetrics
from taskmodels.log import library_logger
from taskmodels.registry.service import Registry
from taskmodels.resilience.state import StateStore
from taskmodels.service import ModelService

__all__ = ["Operations", "registry_hash"]

_log = library_logger("gateway")
_PROBE_SCOPE: Final = "gateway:readyz"
_PROBE_TIMEOUT: Final = 2.0


def registry_hash(registry: Registry) -> str:
    """SHA-256 of the registry as validated (its merged files, in one canonical JSON form)."""
    data = registry.config.model_dump(mode="json", by_alias=True, exclude={"schema_"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Operations:
    """The gateway's operational side over one service; see the module docstring."""

    def __init__(
        self,
        service: ModelService,
        *,
        metrics: GatewayMetrics | None = None,
        keys: KeysFile | None = None,
        governor: Governor | None = None,
        store: StateStore | None = None,
        reload_interval: float = 0.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.keys = keys
        self.governor = governor
        self.store = store
        self.reload_interval = reload_interval
        self.wall_clock = wall_clock
        self.draining = False
        self._hashed: tuple[Registry, str] | None = None
        self._stop = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    # --- reloading ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Watch the registry's and the keys' files (every ``reload_interval`` seconds; 0: never)."""
        if self.reload_interval <= 0 or self._watchers:
            return
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if self.service.registry.paths:
            self._watchers.append(loop.create_task(self.service.registry.watch(self.reload_interval, stop=self._stop)))
        if self.keys is not None:
            self._watchers.append(loop.create_task(self.keys.watch(self.reload_interval, stop=self._stop)))

    async def stop(self) -> None:
        """Stop watching; this replica is shutting down (``/readyz`` says so from now on)."""
        self.draining = True
        self._stop.set()
        for watcher in self._watchers:
            watcher.cancel()
        for watcher in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        self._watchers.clear()
        if self.metrics is not None:
            self.metrics.process_exited()

    # --- the endpoints --------------------------------------------------------------------------------------

    async def metrics_text(self) -> bytes:
        """``/metrics``: breakers and budgets read in now, then every metric."""
        metrics = self.metrics
        assert metrics is not None
        try:
            metrics.health(await self.service.health())
            if self.keys is not None and self.governor is not None:
                budgets = [
                    (key.name, await self.governor.spent(key), key.budget.limit)
                    for key in self.keys.current.keys
                    if key.budget is not None
                ]
                metrics.budgets(budgets)
        except Exception as exc:  # noqa: BLE001 - the counters are still worth a scrape
            _log.warning("taskmodels.gateway.metrics_incomplete", error_class=type(exc).__name__)
        return metrics.render()

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """``/readyz``: the status code and the report."""
        registry = self.service.registry.current
        hashed = self._hashed
        if hashed is None or hashed[0] is not registry:  # once per registry snapshot
            hashed = self._hashed = (registry, registry_hash(registry))
        report: dict[str, Any] = {
            "registry": {
                "hash": hashed[1],
                "sources": list(registry.sources),
                "tasks": len(registry.tasks_by_name),
                "models": len(registry.models_by_id),
            },
            "keys": None,
        }
        degraded = False
        if self.keys is not None:
            ring = self.keys.current
            report["keys"] = {"hash": ring.content_hash, "source": str(self.keys.path), "keys": len(ring.keys)}
            if self.keys.failed:  # the file on disk is invalid: the last good keys serve
                report["keys"]["reload_failed"] = [str(p) for p in self.keys.failed]
                degraded = True
        state, reachable, store_degraded = await self._probe()
        report["state"] = state
        degraded = degraded or store_degraded
        if self.draining:
            status = "draining"
        elif not reachable:
            status = "unready"
        else:
            status = "degraded" if degraded else "ready"
        report = {"status": status, **report}
        return (200 if status in {"ready", "degraded"} else 503), report

    async def _probe(self) -> tuple[dict[str, Any], bool, bool]:
        """The state store: (its report, reachable, degraded)."""
        store = self.store
        if store is None:
            return {"store": None}, True, False
        report: dict[str, Any] = {"store": type(store).__name__}
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                await store.spend(_PROBE_SCOPE, window=60.0, now=self.wall_clock())
        except Exception as exc:  # noqa: BLE001 - an answer about the store, whatever it raised
            report.update(reachable=False, error_class=type(exc).__name__)
            return report, False, False
        on_redis = getattr(store, "on_redis", None)
        if on_redis is None:  # the memory store, or another that holds no fallback of its own
            report.update(shared=False, reachable=True)
            return report, True, False
        report.update(shared=True, reachable=bool(on_redis), location=getattr(store, "location", None))
        if not on_redis:
            report["degraded"] = "Redis lost: breakers, budgets and limits are held per process until it is back"
        return report, True, not on_redis
