"""Where circuit-breaker and spend state lives.

``StateStore`` is the interface; ``MemoryStateStore`` keeps state in this
process (the default); a Redis store shares it between processes. Every
operation that must not race (a failure crossing the threshold, a probe being
let through, a spend reserved against a limit) is one call here, so a shared
store can make it atomic on its server rather than read-modify-write in Python.

Times are seconds on the caller's clock (``now``), so tests inject the clock;
a store shared between processes needs a clock they share, such as ``time.time``.

The cooldown of an open breaker adapts: it opens for the first cooldown, each
failed probe doubles it up to a cap, and a success forgets it, so a blip costs
seconds and a long outage a handful of probes (``next_cooldown`` is the rule).
A failed probe's cooldown counts from when the probe was let through, not from
when its failure came back: counted from the failure, traffic on a regular beat
found the next probe due a few milliseconds after the request that should have
been it, and every probe slipped a whole beat.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from taskmodels.log import LibraryLogger, library_logger
from taskmodels.resilience.ratelimit import MemoryRates, RateDecision, RateSnapshot

__all__ = [
    "Admission",
    "BreakerSnapshot",
    "BreakerStateName",
    "MemoryStateStore",
    "Reservation",
    "SpendDecision",
    "StateStore",
    "StoreGuard",
    "next_cooldown",
    "window_start",
]

BreakerStateName = Literal["closed", "open", "half_open"]


@dataclass(slots=True, frozen=True)
class BreakerSnapshot:
    """A model's breaker. ``retry_at``: when an open breaker lets a probe through; ``cooldown``: the
    seconds it was opened for (the next failed probe doubles it), ``None`` while closed."""

    key: str
    state: BreakerStateName
    consecutive_failures: int = 0
    retry_at: float | None = None
    cooldown: float | None = None


@dataclass(slots=True, frozen=True)
class Admission:
    """May a call go to this model now? ``probe`` is true for the one call let through a cooled-down breaker."""

    allowed: bool
    probe: bool = False
    retry_at: float | None = None  # when refused: when a probe will be let through


@dataclass(slots=True, frozen=True)
class SpendDecision:
    accepted: bool
    total: float  # spend in the window after the decision


@dataclass(frozen=True, slots=True)
class Reservation:
    """Spend held against a budget's ``scope`` for one attempt (``reserve_spend``), settled to the real cost
    afterwards (``add_spend`` of the difference, in the same ``window``)."""

    scope: str
    amount: float
    window: float


def next_cooldown(current: float, *, failed_probe: bool, initial: float, cap: float | None) -> float:
    """The cooldown an open breaker takes after a failure.

    ``current`` is the cooldown it is open for (0 when it was closed). A failed probe doubles it;
    any other failure keeps it (a closed breaker starts at ``initial``). The result stays within
    ``initial`` and ``cap``; a cap below ``initial`` (or ``None``) makes the cooldown fixed.
    Both stores compute exactly this, the Redis one in Lua, with the same float operations.
    """
    ceiling = initial if cap is None else max(cap, initial)
    return min(max(current * 2 if failed_probe else current, initial), ceiling)


def window_start(now: float, window: float) -> float:
    """Spend windows are fixed and aligned to the epoch, so every process agrees on them."""
    return math.floor(now / window) * window


class StateStore(ABC):
    """Shared state of the fallback loop. All methods are safe to call concurrently."""

    @abstractmethod
    async def admit(self, key: str, *, now: float, probe_lease: float) -> Admission:
        """Closed: allowed. Open and cooled down with no probe out: allowed as the probe, which
        holds the half-open slot for ``probe_lease`` seconds. Otherwise refused with ``retry_at``."""

    @abstractmethod
    async def record_success(self, key: str, *, now: float) -> BreakerSnapshot:
        """Close the breaker and clear its failures."""

    @abstractmethod
    async def record_failure(
        self, key: str, *, now: float, threshold: int, cooldown: float, cooldown_max: float | None = None
    ) -> BreakerSnapshot:
        """Count a failure; (re)open the breaker when the count reaches ``threshold`` or when the
        failure was a half-open probe's, for the cooldown ``next_cooldown`` gives, from ``cooldown``
        (the first) up to ``cooldown_max`` (``None``: fixed at ``cooldown``). ``retry_at`` is that
        cooldown after the ``now`` the probe was admitted at, for a probe's failure; after this
        ``now`` for any other."""

    @abstractmethod
    async def breaker(self, key: str, *, now: float) -> BreakerSnapshot:
        """The breaker as it stands; a key never seen is closed."""

    @abstractmethod
    async def breakers(self, *, now: float) -> Mapping[str, BreakerSnapshot]:
        """Every breaker the store knows."""

    @abstractmethod
    async def reserve_spend(
        self, scope: str, amount: float, *, limit: float, window: float, now: float
    ) -> SpendDecision:
        """Add ``amount`` to the scope's spend in the current window if the total stays within
        ``limit``; refuse otherwise. Settle the difference later with ``add_spend``."""

    @abstractmethod
    async def add_spend(self, scope: str, amount: float, *, window: float, now: float) -> float:
        """Add ``amount`` (negative to give back a reservation) and return the window's total."""

    @abstractmethod
    async def spend(self, scope: str, *, window: float, now: float) -> float:
        """The scope's spend in the current window."""

    # Rate limits per deployment (see resilience/ratelimit.py). Not abstract, so a store written before them
    # still loads; the call engine's admission absorbs the NotImplementedError as it does any store failure.

    async def reserve_rate(
        self, key: str, ident: str, *, tokens: int, rpm: int | None, tpm: int | None, window: float, now: float
    ) -> RateDecision:
        """Refuse while ``key`` is held; else log request ``ident`` of ``tokens`` when at most ``rpm`` requests
        and ``tpm`` tokens stay within any ``window`` seconds (no limits: only the hold is checked)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no rate limits")

    async def settle_rate(self, key: str, ident: str, *, tokens: int, window: float, now: float) -> None:
        """Replace the tokens logged for request ``ident`` by ``tokens``, what it really used."""
        raise NotImplementedError(f"{type(self).__name__} keeps no rate limits")

    async def hold(self, key: str, until: float, *, now: float) -> float:
        """Send ``key`` no traffic before ``until`` (a later hold in force is kept); returns the hold in force."""
        raise NotImplementedError(f"{type(self).__name__} keeps no rate limits")

    async def rate(self, key: str, *, window: float, now: float) -> RateSnapshot:
        """Requests and tokens logged for ``key`` in the current window, and its hold."""
        raise NotImplementedError(f"{type(self).__name__} keeps no rate limits")

    async def aclose(self) -> None:
        """Release connections; the memory store has none."""
        return


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open: bool = False
    retry_at: float = 0.0
    probe_until: float | None = None
    probe_at: float = 0.0  # when the probe out was admitted: its failure's cooldown counts from then
    cooldown: float = 0.0


class MemoryStateStore(StateStore):
    """State in this process. Single-threaded per event loop, so no locks are needed."""

    def __init__(self) -> None:
        self._breakers: dict[str, _Breaker] = {}
        self._spend: dict[tuple[str, float], float] = {}
        self._rates = MemoryRates()

    def _snapshot(self, key: str, b: _Breaker | None, now: float) -> BreakerSnapshot:
        if b is None or not b.open:
            return BreakerSnapshot(key, "closed", b.failures if b else 0, None)
        state: BreakerStateName = "half_open" if now >= b.retry_at else "open"
        return BreakerSnapshot(key, state, b.failures, b.retry_at, b.cooldown)

    async def admit(self, key: str, *, now: float, probe_lease: float) -> Admission:
        b = self._breakers.get(key)
        if b is None or not b.open:
            return _ALLOWED
        if now < b.retry_at:
            return Admission(False, False, b.retry_at)
        if b.probe_until is not None and now < b.probe_until:
            return Admission(False, False, b.probe_until)
        b.probe_until = now + probe_lease
        b.probe_at = now
        return Admission(True, True, None)

    async def record_success(self, key: str, *, now: float) -> BreakerSnapshot:
        b = self._breakers.get(key)
        if b is not None:
            if b.failures or b.open:
                del self._breakers[key]
            else:
                b.probe_until = None
        return BreakerSnapshot(key, "closed")

    async def record_failure(
        self, key: str, *, now: float, threshold: int, cooldown: float, cooldown_max: float | None = None
    ) -> BreakerSnapshot:
        b = self._breakers.get(key)
        if b is None:
            b = self._breakers[key] = _Breaker()
        b.failures += 1
        was_probe = b.open and b.probe_until is not None
        if was_probe or b.failures >= threshold:
            current = b.cooldown if b.open else 0.0
            b.cooldown = next_cooldown(current, failed_probe=was_probe, initial=cooldown, cap=cooldown_max)
            b.open = True
            b.retry_at = (b.probe_at if was_probe else now) + b.cooldown
            b.probe_until = None
        return self._snapshot(key, b, now)

    async def breaker(self, key: str, *, now: float) -> BreakerSnapshot:
        return self._snapshot(key, self._breakers.get(key), now)

    async def breakers(self, *, now: float) -> Mapping[str, BreakerSnapshot]:
        return {k: self._snapshot(k, b, now) for k, b in self._breakers.items()}

    async def reserve_spend(
        self, scope: str, amount: float, *, limit: float, window: float, now: float
    ) -> SpendDecision:
        slot = (scope, window_start(now, window))
        total = self._spend.get(slot, 0.0)
        if total + amount > limit:
            return SpendDecision(False, total)
        self._spend[slot] = total = total + amount
        self._expire(now, window)
        return SpendDecision(True, total)

    async def add_spend(self, scope: str, amount: float, *, window: float, now: float) -> float:
        slot = (scope, window_start(now, window))
        total = self._spend[slot] = self._spend.get(slot, 0.0) + amount
        return total

    async def spend(self, scope: str, *, window: float, now: float) -> float:
        return self._spend.get((scope, window_start(now, window)), 0.0)

    async def reserve_rate(
        self, key: str, ident: str, *, tokens: int, rpm: int | None, tpm: int | None, window: float, now: float
    ) -> RateDecision:
        return self._rates.reserve(key, ident, tokens=tokens, rpm=rpm, tpm=tpm, window=window, now=now)

    async def settle_rate(self, key: str, ident: str, *, tokens: int, window: float, now: float) -> None:
        self._rates.settle(key, ident, tokens=tokens)

    async def hold(self, key: str, until: float, *, now: float) -> float:
        return self._rates.hold(key, until)

    async def rate(self, key: str, *, window: float, now: float) -> RateSnapshot:
        return self._rates.snapshot(key, window=window, now=now)

    def _expire(self, now: float, window: float) -> None:
        # Old windows are dropped lazily so a long-running process does not grow.
        if len(self._spend) > 1024:
            oldest = window_start(now, window) - window
            for slot in [s for s in self._spend if s[1] < oldest]:
                del self._spend[slot]


_ALLOWED = Admission(True, False, None)


_T = TypeVar("_T")


class StoreGuard:
    """The rule that a failing state store never fails a call, kept in one place for every user of a store (the
    engine's admission, the gateway's per-key limits): ``guarded`` answers as if the store had said yes (its
    ``fallback``), logs one warning when the store is lost (``lost_event``) and one when it answers again
    (``back_event``). Hot paths that absorb inline call ``lost`` and, while ``ok`` is false, ``back``."""

    __slots__ = ("_log", "back_event", "lost_event", "ok", "store")

    def __init__(
        self,
        store: StateStore,
        *,
        lost_event: str = "taskmodels.state.lost",
        back_event: str = "taskmodels.state.recovered",
        log: LibraryLogger | None = None,
    ) -> None:
        self.store = store
        self.lost_event = lost_event
        self.back_event = back_event
        self._log = log or library_logger("state")
        self.ok = True

    async def guarded(self, operation: str, work: Awaitable[_T], fallback: _T) -> _T:
        try:
            result = await work
        except Exception as exc:  # noqa: BLE001 - a failing state store never fails a call, whatever it raises
            self.lost(operation, exc)
            return fallback
        if not self.ok:
            self.back()
        return result

    def lost(self, operation: str, exc: Exception) -> None:
        # No call may fail because the state store did: the caller goes on as if it had said yes.
        if self.ok:
            self.ok = False
            self._log.warning(
                self.lost_event, operation=operation, error_class=type(exc).__name__, store=type(self.store).__name__
            )

    def back(self) -> None:
        self.ok = True
        self._log.warning(self.back_event, store=type(self.store).__name__)
