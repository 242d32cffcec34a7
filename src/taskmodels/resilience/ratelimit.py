"""Rate limits per deployment: declared ``rpm``/``tpm`` and holds learnt from the provider.

Each deployment with rate state keeps, in the ``StateStore``, a log of the requests
it was sent in the last ``RATE_WINDOW`` seconds (when each was sent and how many
tokens it holds) and a *hold*: a time before which it gets no traffic at all.

- ``reserve_rate`` admits one request when the hold is over and the log leaves room
  for it in any ``RATE_WINDOW`` seconds (a sliding window: a fixed one would let twice
  the limit through around its edge). The request's tokens are the call's upper-bound
  estimate; ``settle_rate`` replaces them with what the provider reported. On Redis
  the check and the write are one Lua script, so processes cannot both take the last
  slot — the same reserve/settle pattern as budgets.
- ``hold`` keeps traffic off a deployment until a time: a 429's ``Retry-After``, or the
  reset the provider's headers announced once they showed nothing left. A hold only
  ever moves later, so a short cooldown cannot cut a longer one short.

``MemoryRates`` is the one-process implementation the memory store delegates to; the
Redis store has the same operations as scripts. ``hold_until`` turns a provider's
rate-limit headers into a hold.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass, field

from taskmodels.types import RateLimitInfo

__all__ = [
    "DEFAULT_HOLD",
    "RATE_WINDOW",
    "MemoryRates",
    "RateDecision",
    "RateSnapshot",
    "RateTicket",
    "hold_until",
    "new_ident",
]

RATE_WINDOW = 60.0
"""Seconds of the window ``rpm`` and ``tpm`` count in: a minute, on the store's clock."""

DEFAULT_HOLD = 1.0
"""Seconds a deployment is held after a 429 or an exhausted header that said no time."""


@dataclass(slots=True, frozen=True)
class RateDecision:
    """``accepted``; else ``retry_at``, when room may be back, and whether a ``hold`` (not the log) refused.

    An accepted request that was logged says the time it was logged at (``at``: the log's clock never goes back)
    and the window as it left it: ``requests`` and ``tokens`` in it, this one counted, and when the oldest of them
    was logged (``oldest``), so a caller can say what room is left without asking again."""

    accepted: bool
    retry_at: float | None = None
    held: bool = False
    at: float | None = None
    requests: int | None = None
    tokens: int | None = None
    oldest: float | None = None


ACCEPTED = RateDecision(accepted=True)


@dataclass(slots=True, frozen=True)
class RateSnapshot:
    """A deployment's rate state: requests and tokens in the current window, its hold (``None``: none), and when
    the oldest request in the window was logged (``None``: none is), so its room grows again ``window`` after."""

    requests: int = 0
    tokens: int = 0
    held_until: float | None = None
    oldest: float | None = None


@dataclass(slots=True, frozen=True)
class RateTicket:
    """One admitted request, to settle to its real tokens afterwards."""

    key: str
    ident: str
    tokens: int


_PREFIX = f"{os.getpid():x}.{id(object()):x}."
_COUNTER = itertools.count()


def new_ident() -> str:
    """A request id unique across processes sharing a store (pid and an address make the prefix)."""
    return f"{_PREFIX}{next(_COUNTER)}"


def hold_until(info: RateLimitInfo, now: float, tokens_needed: int) -> float | None:
    """When a deployment whose answer carried ``info`` has room again for a request of ``tokens_needed``;
    ``None`` when it has room now. A reset the headers do not give is taken as ``DEFAULT_HOLD``."""
    until: float | None = None
    if info.remaining_requests is not None and info.remaining_requests <= 0:
        until = now + (info.reset_requests if info.reset_requests is not None else DEFAULT_HOLD)
    if info.remaining_tokens is not None and info.remaining_tokens < max(tokens_needed, 1):
        tokens_at = now + (info.reset_tokens if info.reset_tokens is not None else DEFAULT_HOLD)
        until = tokens_at if until is None else max(until, tokens_at)
    return until


@dataclass(slots=True)
class _Log:
    entries: deque[list[float | str | int]] = field(default_factory=deque)  # [sent at, ident, tokens], oldest first
    by_ident: dict[str, list[float | str | int]] = field(default_factory=dict)
    tokens: int = 0
    hold: float = 0.0
    seen: float = 0.0  # the latest time a request was logged at: the log's clock never goes back


class MemoryRates:
    """Rate state in this process. Single-threaded per event loop, so no locks are needed."""

    __slots__ = ("_logs",)

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}

    def _log(self, key: str) -> _Log:
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _Log()
        return log

    @staticmethod
    def _expire(log: _Log, before: float) -> None:
        entries = log.entries
        while entries and float(entries[0][0]) <= before:
            _, ident, tokens = entries.popleft()
            del log.by_ident[str(ident)]
            log.tokens -= int(tokens)

    def reserve(
        self, key: str, ident: str, *, tokens: int, rpm: int | None, tpm: int | None, window: float, now: float
    ) -> RateDecision:
        log = self._log(key)
        if now < log.hold:
            return RateDecision(accepted=False, retry_at=log.hold, held=True)
        if not rpm and not tpm:
            return ACCEPTED
        # The log's clock never goes back: a reading taken before a later one but logged after it counts at the
        # later time, so no window of the log's times ever holds more than the limits allow.
        now = log.seen = max(log.seen, now)
        self._expire(log, now - window)
        entries = log.entries
        if rpm and len(entries) >= rpm:
            return RateDecision(accepted=False, retry_at=float(entries[0][0]) + window)
        # A request larger than the whole limit goes alone into an empty window, or it could never be served.
        if tpm and log.tokens and log.tokens + tokens > tpm:
            return RateDecision(accepted=False, retry_at=float(entries[0][0]) + window)
        entry: list[float | str | int] = [now, ident, tokens]
        entries.append(entry)
        log.by_ident[ident] = entry
        log.tokens += tokens
        return RateDecision(
            accepted=True, at=now, requests=len(entries), tokens=log.tokens, oldest=float(entries[0][0])
        )

    def settle(self, key: str, ident: str, *, tokens: int) -> None:
        log = self._logs.get(key)
        entry = log.by_ident.get(ident) if log is not None else None
        if log is None or entry is None:
            return  # expired already: nothing to correct
        log.tokens += tokens - int(entry[2])
        entry[2] = tokens

    def hold(self, key: str, until: float) -> float:
        log = self._log(key)
        log.hold = max(log.hold, until)
        return log.hold

    def snapshot(self, key: str, *, window: float, now: float) -> RateSnapshot:
        log = self._logs.get(key)
        if log is None:
            return RateSnapshot()
        self._expire(log, now - window)
        oldest = float(log.entries[0][0]) if log.entries else None
        return RateSnapshot(len(log.entries), log.tokens, log.hold if log.hold > now else None, oldest)
