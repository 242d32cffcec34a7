"""Hedged requests: when an attempt has no answer yet, the next candidate is started alongside it.

A task opts in with ``hedge: {"after": <seconds> or "p95", "max": 1}``. Its calls run on the
``Racing`` lane here instead of ``lanes.Sequential``; everything else — the drivers, the loop,
admission, the rule table of ``outcomes.failed``, ``outcomes.succeeded`` — is the same code. What
racing adds:

- The first try runs in a task of its own. When it has produced nothing by ``after`` (no answer;
  for a stream, or a completion read as one, no first event), the loop is asked for its next
  try, "the next candidate the loop would try" (the next model of the chain; a sibling deployment
  once a model has several). It is admitted and reserved like any try and starts alongside.
  At most ``max`` such extra requests per call, each ``after``
  the one before it; ``max_attempts_total`` counts them like any try.
- The first to commit wins: its answer (or, streaming, its first event). The others are cancelled
  and recorded in the attempts as ``outcome="cancelled"``, ``error_class="HedgeCancelled"``.
- A try that fails before committing goes through ``outcomes.failed`` as always: the rule table decides
  (a bad request raises at once and cancels the other; a 503 just leaves the other running).
  A hedged try is not retried while another runs; when none is left running, the loop goes on
  where it stands in the chain. So a primary that fails fast, before ``after``, simply continues
  the chain, exactly as without hedging.
- Budgets: every try holds its own reservation while it runs, so both count while in flight. The
  winner settles to its cost. A cancelled loser settles to what a provider bills for a request it
  received: its real cost when it had finished (usage known), else its prompt, estimated as budget
  reservations estimate it (input only: it sent no output we saw). The same amount goes to
  ``totals()`` (``cancelled_attempts``, ``cost``). A hedge the budget refuses is not sent.
- The deadline bounds every try as before (each runs within its ``Bound`` or ``guarded_stream``), and
  no hedge is admitted once it has passed.
- ``"p95"``: the rolling 95th percentile of the time to answer (first event, streaming) of this
  task on the try's model, observed in this process (``Latencies``). A loser's time when it was
  cancelled counts as a sample too (a lower bound), so hedging does not hide the tail it cuts.
  Before ``min_samples`` samples it is ``fallback``; it is never below ``floor``.

When the caller stops (a cancelled call, a stream closed early) the tries in flight are cancelled
and their reservations given back, as the un-hedged loop does; nothing is recorded for them.

Traced, each try is an attempt span opened in its own task as its request goes out (a hedge the race
no longer needed by then has none) and current in that task only, so the caller's context is never
left to undo racing tries in the order they end; a loser's span ends ``cancelled``, not in error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskmodels.errors import ProviderError, TaskModelsError

from .attempt import Try
from .call import CallState
from .lanes import Feed, Host, Lane, Running, Shot
from .limits import Bound

__all__ = ["Racing"]

_END = object()  # a stream runner's last queue item


class _Runner:
    """One try in flight, in a task of its own. ``committed``: it answered (streams: sent its first event)."""

    __slots__ = ("attempt", "committed", "committed_at", "events", "race", "sent", "started_at", "task")

    def __init__(self, race: Racing, attempt: Try) -> None:
        self.race = race
        self.attempt = attempt
        self.started_at = asyncio.get_running_loop().time()
        self.committed = False
        self.committed_at = 0.0
        self.events: asyncio.Queue[Any] | None = asyncio.Queue() if race.feed is not None else None
        self.sent = False  # its task ran: a request went out (or was about to)
        self.task: asyncio.Task[Any] = asyncio.create_task(self.run())

    def commit(self) -> None:
        if not self.committed:
            self.committed = True
            self.committed_at = self.race.host.clock()
            self.race.changed.set()

    async def run(self) -> Any:
        race, attempt = self.race, self.attempt
        call = race.call
        self.sent = True
        if call.trace is not None:
            # Traced from here, in this task: the try's span is current in its context only, so what the
            # request does (an HTTP client's span) nests under this try, not under a rival's or the caller's.
            race.host.observation.try_running(call, attempt)
        try:
            # Made here, not when the task is created: a task cancelled before it runs leaves no coroutine behind.
            if race.feed is not None:
                assert self.events is not None
                events = race.feed(attempt)
                try:
                    async for event in events:
                        self.events.put_nowait(event)
                        self.commit()
                finally:
                    await events.aclose()
                return None
            assert race.shot is not None
            with Bound(call, attempt.model, race.host.clock, last=attempt.last):
                result = await race.shot(attempt)
            self.commit()
            return result
        finally:
            if self.events is not None:
                self.events.put_nowait(_END)
            race.changed.set()

    def running(self) -> Running:
        """The committed try as the drivers read it."""
        if self.events is None:
            return Running(self.attempt, self.task.result())
        return Running(self.attempt, self.events.get_nowait(), self._relayed())

    async def _relayed(self) -> Any:
        """The rest of the events the task read, then its error if it failed."""
        assert self.events is not None
        while (item := await self.events.get()) is not _END:
            yield item
        await self.task  # raises what ended the stream early


class Racing(Lane):
    """The tries of one call racing: which commits first, which failed, when the next one starts."""

    __slots__ = (
        "_tries",
        "_verdict",
        "call",
        "changed",
        "current",
        "exhausted",
        "feed",
        "host",
        "left",
        "loop_try",
        "refused",
        "running",
        "shot",
    )

    def __init__(self, host: Host, call: CallState, *, shot: Shot | None = None, feed: Feed | None = None) -> None:
        hedge = call.plan.policy.hedge
        assert hedge is not None
        self.host = host
        self.call = call
        self.shot = shot
        self.feed = feed  # runners pump a stream into a queue; the race is to its first event
        self.left = hedge.max
        self.running: list[_Runner] = []
        self.current: _Runner | None = None  # the last winner
        self.changed = asyncio.Event()
        self.exhausted = False
        self.refused: TaskModelsError | None = None  # the loop's error when asked for a hedge
        self._tries = host.tries(call)
        self.loop_try: Try | None = None  # the try the loop handed out last: only its verdict goes back
        self._verdict: float | None = None

    # --- the lane ------------------------------------------------------------------------------

    async def next(self) -> Running | None:
        """The next try to commit, once the others are cancelled; ``None`` when the chain is spent."""
        if not self.running and not await self._next():
            return None
        while True:
            committed = [r for r in self.running if r.committed]
            if committed:
                return await self._won(min(committed, key=lambda r: r.committed_at))
            for runner in [r for r in self.running if r.task.done()]:
                self.running.remove(runner)
                await self._judge(runner)
            if not self.running:
                if not await self._next():
                    return None
                continue
            self.changed.clear()  # nothing ran since the scan above: no wake-up is lost
            wait = self._until_hedge()
            if wait is None:
                await self.changed.wait()
                continue
            try:
                async with asyncio.timeout(wait):
                    await self.changed.wait()
            except TimeoutError:
                await self._hedge()

    async def failed(self, running: Running, error: ProviderError, *, final: bool = False) -> None:
        """The winner failed after it committed (a stream cut, say): the rule table decides, as always."""
        verdict = await self.host.outcomes.failed(self.call, running.attempt, error, final=final)
        if running.attempt is self.loop_try:
            self._verdict = verdict

    async def close(self) -> None:
        """The call is over (or its caller is gone): stop what still runs and give back what it held. A try
        stopped here is not recorded: nothing waits for its answer any more."""
        runners = [*self.running, *([self.current] if self.current is not None else [])]
        try:
            await _stopped(runners)
        finally:  # even when a second cancellation cuts the wait short, every claim is given back
            self.running, self.current = [], None
            for runner in runners:
                await runner.attempt.claim.release()
            await self._tries.aclose()

    # --- steps -------------------------------------------------------------------------------

    async def _next(self) -> bool:
        """The loop's next try, started; False when there is none."""
        if self.refused is not None:
            raise self.refused
        if self.exhausted:
            return False
        try:
            attempt = await self._tries.asend(self._verdict)
        except StopAsyncIteration:
            self.exhausted = True
            return False
        self._verdict = None
        self._start(attempt)
        return True

    def _start(self, attempt: Try) -> None:
        self.loop_try = attempt
        self.running.append(_Runner(self, attempt))

    def _until_hedge(self) -> float | None:
        """Seconds until the next hedge may start, or ``None`` when no more will."""
        if self.left <= 0 or self.exhausted:
            return None
        host, call = self.host, self.call
        if call.plan.remaining(host.clock()) <= 0:
            return None
        newest = self.running[-1]
        hedge = call.plan.policy.hedge
        assert hedge is not None
        after = host.latencies.delay(hedge, call.task, newest.attempt.model.id, first_token=self.feed is not None)
        return max(0.0, after - (asyncio.get_running_loop().time() - newest.started_at))

    async def _hedge(self) -> None:
        if self.call.plan.remaining(self.host.clock()) <= 0:
            self.left = 0  # the deadline passed while waiting: no hedge is admitted after it
            return
        try:
            attempt = await self._tries.asend(None)  # the running try goes on: the loop moves on beside it
        except StopAsyncIteration:
            self.exhausted = True
            return
        except TaskModelsError as exc:  # the budget refused the hedge, with onExceeded: error
            # The running tries go on; the error is the call's only if they all fail.
            self.refused, self.exhausted = exc, True
            return
        self.left -= 1
        self._start(attempt)

    async def _won(self, winner: _Runner) -> Running:
        self.running.remove(winner)
        self.current = winner
        attempt = winner.attempt
        attempt.first_at = winner.committed_at
        if self._p95():
            self.host.latencies.observe(
                self.call.task,
                attempt.model.id,
                winner.committed_at - attempt.started,
                first_token=self.feed is not None,
            )
        await self._cancel_all(f"{attempt.model.id} answered first")
        return winner.running()

    async def _judge(self, runner: _Runner) -> None:
        """A try that ended before it committed, while others may still run."""
        error = runner.task.exception()
        if error is None:
            return  # pragma: no cover - a runner that ended without error committed: next() takes it first
        try:
            if not isinstance(error, ProviderError):
                raise error  # noqa: TRY301 - the deadline passed, say: the call is over, as below
            verdict = await self.host.outcomes.failed(self.call, runner.attempt, error, alone=not self.running)
        except Exception as exc:  # not a cancellation: close() stops the others then
            await self._cancel_all("the call ended")
            if isinstance(exc, TaskModelsError) and isinstance(getattr(exc, "attempts", None), tuple):
                exc.attempts = tuple(self.call.attempts)  # type: ignore[attr-defined]  # with the cancelled
            raise
        if runner.attempt is self.loop_try:
            self._verdict = verdict

    async def _cancel_all(self, reason: str) -> None:
        losers = list(self.running)  # left in ``running`` until settled: a cancellation meanwhile finds them there
        await _stopped(losers)
        for loser in losers:
            self.running.remove(loser)
            await self._lost(loser, reason)

    async def _lost(self, runner: _Runner, reason: str) -> None:
        attempt = runner.attempt
        if not runner.sent:  # another answered while this one was being admitted: nothing went out
            await attempt.claim.release()
            return
        task = runner.task
        finished = task.done() and not task.cancelled() and task.exception() is None
        await self.host.outcomes.cancelled(self.call, attempt, reason, task.result() if finished else None)
        if self._p95() and not runner.committed:
            latency = self.host.clock() - attempt.started
            self.host.latencies.observe(self.call.task, attempt.model.id, latency, first_token=self.feed is not None)

    def _p95(self) -> bool:
        hedge = self.call.plan.policy.hedge
        return hedge is not None and hedge.after == "p95"


async def _stopped(runners: list[_Runner]) -> None:
    """Cancel those of ``runners`` still running, and wait until each has ended."""
    live = [r.task for r in runners if not r.task.done()]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live)
