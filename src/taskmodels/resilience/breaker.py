"""A circuit breaker per model over a ``StateStore``.

The store keeps the state (so a shared store shares it between processes); this
class adds the policy's numbers and the wall clock. A store that raises raises
through it: the call engine's admission (``engine/admission.py``) is the one place
that turns a failing store into "allowed" so that no call fails because of it.

The cooldown adapts, as outlier ejection does in service meshes: a fixed one is
either too long for a blip (a 6 s outage keeps traffic off a healthy model for
30 s) or too short for an outage (a probe, and a failed call, every few seconds
for an hour). It starts at ``cooldown``, doubles after each failed probe up to
``cooldown_max``, and starts over when a call succeeds. A failed probe's cooldown
counts from when the probe was let through (``StateStore.record_failure``), so
requests on a steady beat meet each probe when it falls due.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from taskmodels.resilience.state import Admission, BreakerSnapshot, StateStore
from taskmodels.sections import ResilienceSettings

__all__ = ["DEFAULT_COOLDOWN_INITIAL", "DEFAULT_COOLDOWN_MAX", "CircuitBreaker"]


_FIELDS = ResilienceSettings.model_fields
DEFAULT_COOLDOWN_INITIAL: float = _FIELDS["breaker_cooldown_initial"].default
DEFAULT_COOLDOWN_MAX: float = _FIELDS["breaker_cooldown_max"].default


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; after the cooldown let one probe through; close on
    its success. A failed probe doubles the cooldown, from ``cooldown`` up to ``cooldown_max`` (a cap
    below ``cooldown`` keeps it fixed); a success starts it over."""

    __slots__ = ("clock", "cooldown", "cooldown_max", "store", "threshold")

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

    # Plain functions that return the store's coroutine: no frame of their own on every call's path.

    def admit(self, key: str, *, probe_lease: float) -> Awaitable[Admission]:
        return self.store.admit(key, now=self.clock(), probe_lease=probe_lease)

    def record_success(self, key: str) -> Awaitable[BreakerSnapshot]:
        return self.store.record_success(key, now=self.clock())

    def record_failure(self, key: str, *, trip: bool = False) -> Awaitable[BreakerSnapshot]:
        """Count a failure; ``trip`` opens the breaker at once (a route that cannot authenticate)."""
        return self.store.record_failure(
            key,
            now=self.clock(),
            threshold=1 if trip else self.threshold,
            cooldown=self.cooldown,
            cooldown_max=self.cooldown_max,
        )

    def snapshot(self, key: str) -> Awaitable[BreakerSnapshot]:
        return self.store.breaker(key, now=self.clock())

    def snapshots(self) -> Awaitable[Mapping[str, BreakerSnapshot]]:
        return self.store.breakers(now=self.clock())
