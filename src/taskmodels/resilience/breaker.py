"""A circuit breaker per model over a ``StateStore``.

The store keeps the state (so a shared store shares it between processes); this
class adds the policy's numbers, the wall clock, and one rule: the store must
never fail a call. When it raises, the breaker answers "allowed", logs one
warning when the store is lost and one when it comes back, and the call goes on.

The cooldown adapts, as outlier ejection does in service meshes: a fixed one is
either too long for a blip (a 6 s outage keeps traffic off a healthy model for
30 s) or too short for an outage (a probe, and a failed call, every few seconds
for an hour). It starts at ``cooldown``, doubles after each failed probe up to
``cooldown_max``, and starts over when a call succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from taskmodels.log import library_logger
from taskmodels.resilience.state import Admission, BreakerSnapshot, StateStore
from taskmodels.sections import ResilienceSettings

__all__ = ["DEFAULT_COOLDOWN_INITIAL", "DEFAULT_COOLDOWN_MAX", "CircuitBreaker"]

_ALLOWED = Admission(True, False, None)
_log = library_logger("state")

_FIELDS = ResilienceSettings.model_fields
DEFAULT_COOLDOWN_INITIAL: float = _FIELDS["breaker_cooldown_initial"].default
DEFAULT_COOLDOWN_MAX: float = _FIELDS["breaker_cooldown_max"].default


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; after the cooldown let one probe through; close on
    its success. A failed probe doubles the cooldown, from ``cooldown`` up to ``cooldown_max`` (a cap
    below ``cooldown`` keeps it fixed); a success starts it over."""

    __slots__ = ("_store_ok", "clock", "cooldown", "cooldown_max", "store", "threshold")

    def __init__(
        self,
        store: StateStore,
        *,
        threshold: int,
        cooldown: float = DEFAULT_COOLDOWN_INITIAL,
        cooldown_max: float = DEFAULT_COOLDOWN_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.cooldown = cooldown
        self.cooldown_max = max(cooldown_max, cooldown)
        self.clock = clock
        self._store_ok = True

    @classmethod
    def from_settings(
        cls, store: StateStore, settings: ResilienceSettings, *, clock: Callable[[], float] = time.time
    ) -> CircuitBreaker:
        return cls(
            store,
            threshold=settings.breaker_failure_threshold,
            cooldown=settings.breaker_cooldown_initial,
            cooldown_max=settings.breaker_cooldown_max,
            clock=clock,
        )

    async def admit(self, key: str, *, probe_lease: float) -> Admission:
        try:
            admission = await self.store.admit(key, now=self.clock(), probe_lease=probe_lease)
        except Exception as exc:
            self._lost(exc, "admit")
            return _ALLOWED
        self._back()
        return admission

    async def record_success(self, key: str) -> None:
        try:
            await self.store.record_success(key, now=self.clock())
        except Exception as exc:
            self._lost(exc, "record_success")
            return
        self._back()

    async def record_failure(self, key: str, *, trip: bool = False) -> BreakerSnapshot | None:
        """Count a failure; ``trip`` opens the breaker at once (a route that cannot authenticate)."""
        try:
            snapshot = await self.store.record_failure(
                key,
                now=self.clock(),
                threshold=1 if trip else self.threshold,
                cooldown=self.cooldown,
                cooldown_max=self.cooldown_max,
            )
        except Exception as exc:
            self._lost(exc, "record_failure")
            return None
        self._back()
        return snapshot

    async def snapshot(self, key: str) -> BreakerSnapshot:
        try:
            return await self.store.breaker(key, now=self.clock())
        except Exception as exc:
            self._lost(exc, "breaker")
            return BreakerSnapshot(key, "closed")

    async def snapshots(self) -> Mapping[str, BreakerSnapshot]:
        try:
            return await self.store.breakers(now=self.clock())
        except Exception as exc:
            self._lost(exc, "breakers")
            return {}

    def _lost(self, exc: Exception, operation: str) -> None:
        if self._store_ok:
            self._store_ok = False
            _log.warning(
                "taskmodels.state.lost",
                operation=operation,
                error_class=type(exc).__name__,
                store=type(self.store).__name__,
            )

    def _back(self) -> None:
        if not self._store_ok:
            self._store_ok = True
            _log.warning("taskmodels.state.recovered", store=type(self.store).__name__)
