"""Per-key limits: each virtual key's budget, ``rpm`` and ``tpm``, held across every replica sharing a state store.

Nothing new is counted here: a key is one more scope in the ``StateStore`` the engine keeps task budgets and
deployment rate limits in, with the same atomic reserve-then-settle (``reserve_spend``/``add_spend``,
``reserve_rate``/``settle_rate``), so the memory store holds them for one process and the Redis store for a fleet
(each check-and-take one Lua script: replicas cannot both take the last request or the last cent).

A request is admitted with ``Governor.admit(key, bound)``: ``bound`` is the most the request can cost and the most
tokens it can use (``estimate.py`` computes both from the request and the task's models). The bound is reserved
against the key's budget first, then one request and its tokens are logged against the key's ``rpm``/``tpm`` (a
budget reservation is given back exactly; a logged request is not, so the check that can be undone goes first).
After the call ``Governor.settle`` replaces the reservation with what the call really cost and used.

Overshoot. A reservation is taken only when the window's spend plus it stays within the limit, so the spend of a
window never passes the limit by more than what the calls in flight cost beyond their reservations: zero when the
bound holds (it counts the prompt's UTF-8 bytes as tokens and the whole ``max_tokens`` of the dearest model). A
replica that lost Redis enforces each limit alone, from its own memory, until Redis is back: N replicas may then
let N limits through (the Redis store logs ``taskmodels.state.redis_lost``).

A store that fails (one that is neither memory nor Redis, which falls back by itself) never fails a request: the
request is admitted unlimited, and one warning is logged until the store answers again, as in the engine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from taskmodels.gateway.keys import VirtualKey
from taskmodels.log import library_logger
from taskmodels.resilience.ratelimit import RATE_WINDOW, RateSnapshot, RateTicket, new_ident
from taskmodels.resilience.state import Reservation, StateStore, StoreGuard, window_start

__all__ = ["Bound", "Governor", "LimitExceeded", "Permit", "budget_scope", "duration", "rate_key"]

_log = library_logger("gateway")

LimitKind = Literal["budget", "requests", "tokens"]
Headers = list[tuple[bytes, bytes]]

_NO_HEADERS: Final[Headers] = []


def budget_scope(name: str) -> str:
    """The store's spend scope of key ``name``; apart from every task budget's (``budget:<task>...``)."""
    return f"gateway:key:{name}"


def rate_key(name: str) -> str:
    """The store's rate-log key of key ``name``; apart from every deployment's (``<model>/<deployment>``)."""
    return f"gateway:key:{name}"


@dataclass(frozen=True, slots=True)
class Bound:
    """The most one request can use: ``tokens`` (prompt and answer) and ``cost`` in USD."""

    tokens: int
    cost: float


class LimitExceeded(Exception):  # noqa: N818 - a refusal the gateway answers with a 429, not a failure
    """A key's ``budget`` or rate limit (``requests``: its rpm; ``tokens``: its tpm) refused a request.

    ``retry_after``: seconds until the limit can admit it (the budget's next window; the rate window's oldest
    request leaving it). ``headers``: the key's rate-limit headers as they stand."""

    def __init__(self, kind: LimitKind, key: str, retry_after: float, message: str, headers: Headers) -> None:
        self.kind: LimitKind = kind
        self.key = key
        self.retry_after = retry_after
        self.headers = headers
        super().__init__(message)


class Permit:
    """One admitted request: what it holds against its key's limits, settled once by ``Governor.settle``.

    ``headers`` are OpenAI's rate-limit headers for the key as they stood once the request was admitted."""

    __slots__ = ("headers", "key", "reservation", "settled", "ticket")

    def __init__(
        self, key: VirtualKey, reservation: Reservation | None, ticket: RateTicket | None, headers: Headers
    ) -> None:
        self.key = key
        self.reservation = reservation
        self.ticket = ticket
        self.headers = headers
        self.settled = False


class Governor:
    """Budgets and rate limits per key over one ``StateStore``; see the module docstring.

    ``wall_clock``: seconds since the epoch, shared by every replica (the store's windows are aligned to it).
    ``window``: the seconds ``rpm`` and ``tpm`` count in: a minute, and a margin for the time between a request's
    admission and its arrival upstream (``TASKMODELS_GATEWAY__RATE_MARGIN``). Without it, a request admitted just as
    its minute's oldest left the window, and delivered a little faster than that one was, would reach the upstream
    within the same minute of arrivals: an upstream counting as requests arrive would see one too many.
    """

    __slots__ = ("_guarded", "store", "wall_clock", "window")

    def __init__(
        self, store: StateStore, *, wall_clock: Callable[[], float] = time.time, window: float = RATE_WINDOW
    ) -> None:
        self.store = store
        self.wall_clock = wall_clock
        self.window = window
        # A failing store never fails a request (the engine's rule, the same guard), with the gateway's own events.
        self._guarded = StoreGuard(
            store,
            lost_event="taskmodels.gateway.limits_unenforced",
            back_event="taskmodels.gateway.limits_enforced",
            log=_log,
        ).guarded

    async def admit(self, key: VirtualKey, bound: Bound) -> Permit:
        """Reserve ``bound`` against ``key``'s budget and log one request of ``bound.tokens`` against its rpm and
        tpm; ``LimitExceeded`` (nothing held) when either has no room."""
        reservation = None
        budget = key.budget
        if budget is not None:
            scope = budget_scope(key.name)
            now = self.wall_clock()
            work = self.store.reserve_spend(
                scope, bound.cost, limit=budget.limit, window=budget.window_seconds, now=now
            )
            decision = await self._guarded("reserve_spend", work, None)
            if decision is not None and not decision.accepted:
                wait = window_start(now, budget.window_seconds) + budget.window_seconds - now
                message = (
                    f"key {key.name!r} has spent its budget of ${budget.limit:g} for this window "
                    f"({_window_text(budget.window_seconds)}): it opens again in {math.ceil(wait)} s"
                )
                raise LimitExceeded("budget", key.name, wait, message, await self._headers(key))
            if decision is not None:
                reservation = Reservation(scope, bound.cost, budget.window_seconds)
        if not key.rpm and not key.tpm:
            return Permit(key, reservation, None, _NO_HEADERS)
        ident = new_ident()
        now = self.wall_clock()
        work_rate = self.store.reserve_rate(
            rate_key(key.name), ident, tokens=bound.tokens, rpm=key.rpm, tpm=key.tpm, window=self.window, now=now
        )
        taken = await self._guarded("reserve_rate", work_rate, None)
        if taken is not None and not taken.accepted:
            if reservation is not None:
                await self._give_back(reservation)
            snapshot = await self._snapshot(key)
            at = taken.retry_at if taken.retry_at is not None else now + self.window
            kind: LimitKind = "requests" if key.rpm and snapshot.requests >= key.rpm else "tokens"
            limit = f"{key.rpm} requests" if kind == "requests" else f"{key.tpm} tokens"
            wait = max(0.0, at - now)
            message = f"key {key.name!r} is over its limit of {limit} per minute: room again in {math.ceil(wait)} s"
            raise LimitExceeded(kind, key.name, wait, message, _rate_headers(key, snapshot, now, self.window))
        if taken is None:  # the store failed: admitted unlimited, headers from an empty window
            return Permit(key, reservation, None, _rate_headers(key, RateSnapshot(), now, self.window))
        ticket = RateTicket(rate_key(key.name), ident, bound.tokens)
        if taken.requests is not None:  # the window as the reservation left it: no second round trip
            window = RateSnapshot(taken.requests, taken.tokens or 0, None, taken.oldest)
            return Permit(key, reservation, ticket, _rate_headers(key, window, now, self.window))
        return Permit(key, reservation, ticket, await self._headers(key))

    async def settle(self, permit: Permit, *, tokens: int, cost: float) -> None:
        """Replace what ``permit`` reserved by what the request really used (``cost`` USD, ``tokens``); once."""
        if permit.settled:
            return
        permit.settled = True
        now = self.wall_clock()
        reservation = permit.reservation
        if reservation is not None and cost != reservation.amount:
            work = self.store.add_spend(
                reservation.scope, cost - reservation.amount, window=reservation.window, now=now
            )
            await self._guarded("add_spend", work, None)
        ticket = permit.ticket
        if ticket is not None and permit.key.tpm and tokens != ticket.tokens:  # tokens count only under a tpm
            work_rate = self.store.settle_rate(ticket.key, ticket.ident, tokens=tokens, window=self.window, now=now)
            await self._guarded("settle_rate", work_rate, None)

    async def spent(self, key: VirtualKey) -> float | None:
        """What ``key`` has spent in its budget's current window (reservations in flight included); ``None``
        without a budget, or when the store does not answer."""
        budget = key.budget
        if budget is None:
            return None
        work = self.store.spend(budget_scope(key.name), window=budget.window_seconds, now=self.wall_clock())
        return await self._guarded("spend", work, None)

    # --- headers ---------------------------------------------------------------------------------------------

    async def _headers(self, key: VirtualKey) -> Headers:
        if not key.rpm and not key.tpm:
            return _NO_HEADERS
        return _rate_headers(key, await self._snapshot(key), self.wall_clock(), self.window)

    async def _snapshot(self, key: VirtualKey) -> RateSnapshot:
        work = self.store.rate(rate_key(key.name), window=self.window, now=self.wall_clock())
        return await self._guarded("rate", work, RateSnapshot())

    async def _give_back(self, reservation: Reservation) -> None:
        work = self.store.add_spend(
            reservation.scope, -reservation.amount, window=reservation.window, now=self.wall_clock()
        )
        await self._guarded("add_spend", work, None)


def _rate_headers(key: VirtualKey, snapshot: RateSnapshot, now: float, window: float) -> Headers:
    """OpenAI's ``x-ratelimit-*`` headers for ``key``: its limits, what is left of them in the window, and when
    the oldest request in the window leaves it (room grows again then; ``0s`` with an empty window)."""
    reset = duration(max(0.0, snapshot.oldest + window - now) if snapshot.oldest is not None else 0.0).encode()
    headers: Headers = []
    if key.rpm:
        headers += [
            (b"x-ratelimit-limit-requests", str(key.rpm).encode()),
            (b"x-ratelimit-remaining-requests", str(max(0, key.rpm - snapshot.requests)).encode()),
            (b"x-ratelimit-reset-requests", reset),
        ]
    if key.tpm:
        headers += [
            (b"x-ratelimit-limit-tokens", str(key.tpm).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(0, key.tpm - snapshot.tokens)).encode()),
            (b"x-ratelimit-reset-tokens", reset),
        ]
    return headers


def duration(seconds: float) -> str:
    """A wait as OpenAI writes it in ``x-ratelimit-reset-*``: ``250ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1.0:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60.0:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def _window_text(seconds: float) -> str:
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} s"
