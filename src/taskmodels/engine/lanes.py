"""How a call's tries run: a lane hands the drivers (``engine/loop.py``) the next try that committed.

A try commits when it answered (a completion, an embedding) or sent its first event (a stream). Every
failure before that is judged inside the lane, through the host's ``outcomes.failed``, whose verdict goes
back into the loop (``Engine.tries``): seconds before the same model is tried again, or ``None`` to move on.
The drivers see only committed tries, so they are written once for every lane:

- ``Sequential`` (here): one try at a time, awaited in the caller's own task;
- ``Racing`` (``engine/hedge.py``): a task sets ``hedge``, and the next try starts beside a silent one.

A lane owns the claims of the tries the loop handed it (``admission.Claim``): whatever ends the call — an
answer, an error, a cancellation, a consumer that stopped reading a stream — leaving the lane gives back
every claim no step settled, exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from taskmodels.errors import ProviderError

from .attempt import Try
from .call import CallState
from .limits import Bound

if TYPE_CHECKING:
    from .latencies import Latencies
    from .observe import Observation
    from .outcome import Outcomes

__all__ = ["Feed", "Host", "Lane", "Running", "Sequential", "Shot"]

Shot = Callable[[Try], Coroutine[Any, Any, Any]]
"""A try's work when its answer comes whole (a completion, an embedding): run within the attempt's ``Bound``."""

Feed = Callable[[Try], AsyncGenerator[Any, None]]
"""A try's work when it streams: its guarded events (``engine/streams.py`` times them)."""


class Host(Protocol):
    """What a lane uses of the engine."""

    outcomes: Outcomes
    observation: Observation
    clock: Callable[[], float]
    latencies: Latencies  # what a racing lane's ``hedge: {"after": "p95"}`` reads

    def tries(self, call: CallState) -> AsyncGenerator[Try, float | None]: ...


@dataclass(slots=True)
class Running:
    """A try that committed: its answer, or its first event and the rest of its events."""

    attempt: Try
    first: Any
    rest: AsyncIterator[Any] | None = None


class Lane:
    """How a call's tries run. ``async with`` it; ``next()`` is the next try that committed (``None``: the chain
    is spent); ``failed`` reports a committed try that failed after all (a stream cut mid-answer)."""

    __slots__ = ()

    async def next(self) -> Running | None:
        raise NotImplementedError

    async def failed(self, running: Running, error: ProviderError, *, final: bool = False) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Sequential(Lane):
    """One try at a time, each awaited in the caller's own task: no task, no timer but the attempt's bound."""

    __slots__ = ("_call", "_current", "_feed", "_host", "_shot", "_tries", "_verdict")

    def __init__(self, host: Host, call: CallState, *, shot: Shot | None = None, feed: Feed | None = None) -> None:
        self._host = host
        self._call = call
        self._shot = shot
        self._feed = feed
        self._tries = host.tries(call)
        self._verdict: float | None = None  # for the try the loop handed out last
        self._current: Try | None = None

    async def next(self) -> Running | None:
        host, call = self._host, self._call
        while True:
            try:
                attempt = await self._tries.asend(self._verdict)
            except StopAsyncIteration:
                return None
            self._current, self._verdict = attempt, None
            feed = self._feed
            try:
                if feed is not None:
                    rest = feed(attempt)
                    try:
                        first = await anext(rest)  # a guarded stream raises rather than end before its first event
                    except BaseException:
                        await rest.aclose()
                        raise
                else:
                    rest = None
                    assert self._shot is not None
                    with Bound(call, attempt.model, host.clock, last=attempt.last):
                        first = await self._shot(attempt)
            except ProviderError as exc:
                self._verdict = await host.outcomes.failed(call, attempt, exc)
                continue
            attempt.first_at = host.clock()
            return Running(attempt, first, rest)

    async def failed(self, running: Running, error: ProviderError, *, final: bool = False) -> None:
        self._verdict = await self._host.outcomes.failed(self._call, running.attempt, error, final=final)

    async def close(self) -> None:
        try:
            if self._current is not None:
                await self._current.claim.release()  # settled already unless the call ended some other way
        finally:
            await self._tries.aclose()
