"""Hedged requests: when an attempt has no answer yet, the next candidate is started alongside it.

A task opts in with ``hedge: {"after": <seconds> or "p95", "max": 1}``. Its calls run on the
drivers here instead of those of ``loop.py``; everything else — the loop ``_tries``, admission,
the rule table in ``_failed``, ``_succeeded`` — is shared. What differs:

- The first try runs in a task of its own. When it has produced nothing by ``after`` (no answer;
  for a stream, or a completion read as one, no first event), the running try is marked ``hedged``
  and the loop is asked for its next try, "the next candidate the loop would try" (the next model
  of the chain; a sibling deployment once a model has several). It is admitted and reserved
  like any try and starts alongside. At most ``max`` such extra requests per call, each ``after``
  the one before it; ``max_attempts_total`` counts them like any try.
- The first to commit wins: its answer (or, streaming, its first event). The others are cancelled
  and recorded in the attempts as ``outcome="cancelled"``, ``error_class="HedgeCancelled"``.
- A try that fails before committing goes through ``_failed`` as always: the rule table decides
  (a bad request raises at once and cancels the other; a 503 just leaves the other running).
  A hedged try is not retried while another runs; when none is left running, the loop goes on
  where it stands in the chain. So a primary that fails fast, before ``after``, simply continues
  the chain, exactly as without hedging.
- Budgets: every try holds its own reservation while it runs, so both count while in flight. The
  winner settles to its cost. A cancelled loser settles to what a provider bills for a request it
  received: its real cost when it had finished (usage known), else its prompt, estimated as budget
  reservations estimate it (input only: it sent no output we saw). The same amount goes to
  ``totals()`` (``cancelled_attempts``, ``cost``). A hedge the budget refuses is not sent.
- The deadline bounds every try as before (each runs within ``bounded``/``guarded_stream``), and no
  hedge starts once it has passed.
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
import math
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from contextlib import aclosing
from typing import Any, NamedTuple, Protocol

from taskmodels.errors import InvalidResponseError, ProviderError, TaskModelsError
from taskmodels.registry.schema import HedgeConfig
from taskmodels.types import Attempt, CompletionResult, EmbeddingResult, StreamEvent, ToolCall

from .admission import Gate
from .call import CallState, Cut, Try
from .limits import bounded
from .observe import Observation
from .streams import assemble, done_event, fold, guarded_stream, spent

__all__ = ["HEDGE_CANCELLED", "EngineSteps", "Latencies", "complete", "embed", "stream"]

HEDGE_CANCELLED = "HedgeCancelled"
"""``Attempt.error_class`` of a try cancelled because another answered first, or because the call ended."""

_END = object()  # a stream runner's last queue item


class Latencies:
    """Rolling windows of observed latency, per (task, model, first event or whole answer), for ``"p95"``."""

    __slots__ = ("_windows", "fallback", "floor", "min_samples", "size")

    def __init__(self, *, size: int = 200, min_samples: int = 20, floor: float = 0.05, fallback: float = 1.0) -> None:
        self.size = size
        self.min_samples = min_samples
        self.floor = floor  # never hedge sooner: below this, jitter alone would double the traffic
        self.fallback = fallback  # seconds, until min_samples were seen
        self._windows: dict[tuple[str, str, bool], _Window] = {}

    def delay(self, hedge: HedgeConfig, task: str, model_id: str, *, first_token: bool) -> float:
        """Seconds a try on ``model_id`` runs alone before the next one starts."""
        after = hedge.after
        if not isinstance(after, str):
            return after
        window = self._windows.get((task, model_id, first_token))
        if window is None or len(window.samples) < self.min_samples:
            return self.fallback
        return max(self.floor, window.quantile(0.95))

    def observe(self, task: str, model_id: str, seconds: float, *, first_token: bool) -> None:
        key = (task, model_id, first_token)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self.size)
        window.add(seconds)

    def p95(self, task: str, model_id: str, *, first_token: bool) -> float | None:
        """The current estimate (``None`` before any sample), for tests and for people."""
        window = self._windows.get((task, model_id, first_token))
        return window.quantile(0.95) if window is not None and window.samples else None


class _Window:
    __slots__ = ("_sorted", "samples")

    def __init__(self, size: int) -> None:
        self.samples: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = None

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self._sorted = None

    def quantile(self, q: float) -> float:
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank


class _Failed(Protocol):
    def __call__(
        self, call: CallState, attempt: Try, error: ProviderError, *, final: bool = False
    ) -> Awaitable[None]: ...


class EngineSteps(NamedTuple):
    """What the hedged drivers use of the ``Engine``: its loop, its steps after an attempt, its parts."""

    tries: Callable[[CallState], AsyncGenerator[Try, None]]
    succeeded: Callable[[CallState, Try, CompletionResult], Awaitable[CompletionResult]]
    failed: _Failed
    embedded: Callable[[CallState, Try, EmbeddingResult], Awaitable[EmbeddingResult]]
    gate: Gate
    observation: Observation
    clock: Callable[[], float]
    latencies: Latencies


class _Runner:
    """One try in flight, in a task of its own. ``committed``: it answered (streams: sent its first event)."""

    __slots__ = (
        "attempt",
        "committed",
        "committed_at",
        "cut_by",
        "events",
        "race",
        "sent",
        "started_at",
        "task",
    )

    def __init__(self, race: _Race, attempt: Try, *, streamed: bool) -> None:
        self.race = race
        self.attempt = attempt
        self.started_at = asyncio.get_running_loop().time()
        self.committed = False
        self.committed_at = 0.0
        self.cut_by: Cut = None
        self.events: asyncio.Queue[Any] | None = asyncio.Queue() if streamed else None
        self.sent = False  # its task ran: a request went out (or was about to)
        self.task: asyncio.Task[Any]

    def commit(self) -> None:
        if not self.committed:
            self.committed = True
            self.committed_at = self.race.engine.clock()
            self.race.changed.set()

    async def run(self, *, commit_at_end: bool) -> Any:
        call = self.race.call
        self.sent = True
        if call.trace is not None:
            # Traced from here, in this task: the try's span is current in its context only, so what the
            # request does (an HTTP client's span) nests under this try, not under a rival's or the caller's.
            self.race.engine.observation.try_running(call, self.attempt)
        try:
            # Made here, not when the task is created: a task cancelled before it runs leaves no coroutine behind.
            result = await self.race.work(self)
        except ProviderError:
            # ``cut_by`` is the call's, and other tries run too: keep this try's own, then clear it.
            self.cut_by, call.cut_by = call.cut_by, None
            raise
        finally:
            if self.events is not None:
                self.events.put_nowait(_END)
            self.race.changed.set()
        if commit_at_end:
            self.commit()
        return result

    async def pump(self) -> None:
        """A stream read into ``events`` (the stream's limits are timed by the task that reads it)."""
        assert self.events is not None
        attempt, engine = self.attempt, self.race.engine
        hook = None if attempt.trace is None else engine.observation.first_chunk_hook(attempt.trace)
        stream = guarded_stream(self.race.call, attempt.provider, engine.clock, last=attempt.last, first_chunk=hook)
        async with aclosing(stream) as events:
            async for event in events:
                self.events.put_nowait(event)
                self.commit()

    async def relayed(self) -> AsyncGenerator[StreamEvent, None]:
        """The events the pump read, then its error if it failed; an error too if it ended without ``done``."""
        assert self.events is not None
        while (item := await self.events.get()) is not _END:
            yield item
        await self.task  # raises what ended the stream early
        model = self.attempt.model
        raise InvalidResponseError(
            "the stream ended without its done event", provider=model.provider, model_id=model.id
        )

    async def collected(self) -> CompletionResult:
        """The answer the relayed events make up."""
        async with aclosing(self.relayed()) as events:
            answer = await fold(events, self.attempt.model)
        if answer is None:  # pragma: no cover - relayed() raises when the stream ends without done
            raise AssertionError("unreachable: relayed() raises when the stream ends without done")
        return answer


Work = Callable[[_Runner], Coroutine[Any, Any, Any]]


class _Race:
    """The tries of one call in flight: which commits first, which failed, when the next one starts."""

    __slots__ = (
        "call",
        "changed",
        "current",
        "engine",
        "exhausted",
        "first_token",
        "left",
        "refused",
        "running",
        "streamed",
        "tries",
        "work",
    )

    def __init__(
        self,
        engine: EngineSteps,
        call: CallState,
        tries: AsyncGenerator[Try, None],
        work: Work,
        *,
        streamed: bool,
        first_token: bool,
    ) -> None:
        hedge = call.plan.policy.hedge
        assert hedge is not None
        self.engine = engine
        self.call = call
        self.tries = tries
        self.work = work
        self.streamed = streamed  # runners pump a stream into a queue
        self.first_token = first_token  # what "answered" means for the race and for the p95
        self.left = hedge.max
        self.running: list[_Runner] = []
        self.current: _Runner | None = None  # the last winner, read after the race
        self.changed = asyncio.Event()
        self.exhausted = False
        self.refused: TaskModelsError | None = None  # the loop's error when asked for a hedge

    # --- the race ----------------------------------------------------------------------------

    async def winner(self) -> _Runner | None:
        """The next try to commit, once the others are cancelled; ``None`` when the chain is spent."""
        if not self.running and not await self._next():
            return None
        while True:
            committed = [r for r in self.running if r.committed]
            if committed:
                return await self._won(min(committed, key=lambda r: r.committed_at))
            for runner in [r for r in self.running if r.task.done()]:
                self.running.remove(runner)
                await self._fail_racing(runner)
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

    async def failed(self, runner: _Runner, error: ProviderError, *, final: bool = False) -> None:
        """The winner failed after it committed (a stream cut, say): the rule table decides, as always."""
        self.call.cut_by = runner.cut_by
        await self.engine.failed(self.call, runner.attempt, error, final=final)

    async def abandon(self) -> None:
        """The caller is gone (or the call is over): stop what still runs and give its reservations back."""
        runners = [*self.running, *([self.current] if self.current is not None else [])]
        self.running, self.current = [], None
        live = [r.task for r in runners if not r.task.done()]
        for task in live:
            task.cancel()
        if live:
            await asyncio.wait(live)
        for runner in runners:
            attempt = runner.attempt
            # An un-hedged try is still the loop's: its own ``finally`` gives that reservation back.
            if attempt.hedged and not attempt.settled:
                attempt.settled = True
                if attempt.reservation.scope:
                    await self.engine.gate.settle(attempt.reservation, 0.0)

    # --- steps -------------------------------------------------------------------------------

    def _start(self, attempt: Try) -> None:
        runner = _Runner(self, attempt, streamed=self.streamed)
        runner.task = asyncio.create_task(runner.run(commit_at_end=not self.streamed))
        self.running.append(runner)

    async def _next(self) -> bool:
        """The loop's next try, started; False when there is none."""
        if self.refused is not None:
            raise self.refused
        if self.exhausted:
            return False
        try:
            attempt = await anext(self.tries)
        except StopAsyncIteration:
            self.exhausted = True
            return False
        self._start(attempt)
        return True

    def _until_hedge(self) -> float | None:
        """Seconds until the next hedge may start, or ``None`` when no more will."""
        if self.left <= 0 or self.exhausted:
            return None
        engine, call = self.engine, self.call
        if call.plan.remaining(engine.clock()) <= 0:
            return None
        newest = self.running[-1]
        hedge = call.plan.policy.hedge
        assert hedge is not None
        after = engine.latencies.delay(hedge, call.task, newest.attempt.model.id, first_token=self.first_token)
        return max(0.0, after - (asyncio.get_running_loop().time() - newest.started_at))

    async def _hedge(self) -> None:
        for runner in self.running:
            runner.attempt.hedged = True  # the loop moves on without giving these reservations back
        try:
            attempt = await anext(self.tries)
        except StopAsyncIteration:
            self.exhausted = True
            return
        except TaskModelsError as exc:  # the budget refused the hedge, with onExceeded: error
            # The running tries go on; the error is the call's only if they all fail.
            self.refused, self.exhausted = exc, True
            return
        self.left -= 1
        self._start(attempt)

    async def _won(self, winner: _Runner) -> _Runner:
        self.running.remove(winner)
        self.current = winner
        attempt = winner.attempt
        if self._p95():
            self.engine.latencies.observe(
                self.call.task, attempt.model.id, winner.committed_at - attempt.started, first_token=self.first_token
            )
        await self._cancel_all(f"{attempt.model.id} answered first")
        return winner

    async def _fail_racing(self, runner: _Runner) -> None:
        """A try that failed before it committed, while others may still run."""
        try:
            await self._judge(runner)
        except Exception as exc:  # not a cancellation: ``abandon`` stops the others then
            await self._cancel_all("the call ended")
            if isinstance(exc, TaskModelsError) and isinstance(getattr(exc, "attempts", None), tuple):
                exc.attempts = tuple(self.call.attempts)  # type: ignore[attr-defined]  # with the cancelled
            raise
        if self.running:
            runner.attempt.retry_in = None  # not retried while another try runs: the chain moves on

    async def _judge(self, runner: _Runner) -> None:
        error = runner.task.exception()
        if isinstance(error, ProviderError):
            await self.failed(runner, error)
        elif error is not None:
            raise error  # the deadline passed, say: the call is over

    async def _cancel_all(self, reason: str) -> None:
        losers, self.running = self.running, []
        live = [r.task for r in losers if not r.task.done()]
        for task in live:
            task.cancel()
        if live:
            await asyncio.wait(live)
        for loser in losers:
            await self._lost(loser, reason)

    async def _lost(self, runner: _Runner, reason: str) -> None:
        engine, call, attempt = self.engine, self.call, runner.attempt
        model = attempt.model
        attempt.settled = True
        if not runner.sent:  # another answered while this one was being admitted: nothing went out
            if attempt.reservation.scope:
                await engine.gate.settle(attempt.reservation, 0.0)
            return
        latency = engine.clock() - attempt.started
        finished = runner.task.done() and not runner.task.cancelled() and runner.task.exception() is None
        answer = runner.task.result() if finished else None
        if isinstance(answer, (CompletionResult, EmbeddingResult)):
            cost = model.cost(answer.usage)  # it answered at the same moment: its usage is known
        else:
            cost = model.estimate_cost(call.plan.prompt_bound(model), 0)
        record = Attempt(model.id, model.provider, "cancelled", latency, HEDGE_CANCELLED, reason, None, attempt.number)
        call.attempts.append(record)
        if attempt.reservation.scope:
            await engine.gate.settle(attempt.reservation, cost)
        engine.observation.attempt_cancelled(call, record, cost, attempt.trace)
        if self._p95() and not runner.committed:
            engine.latencies.observe(call.task, model.id, latency, first_token=self.first_token)

    def _p95(self) -> bool:
        hedge = self.call.plan.policy.hedge
        return hedge is not None and hedge.after == "p95"


# --- the drivers --------------------------------------------------------------------------------


async def complete(engine: EngineSteps, call: CallState, *, streamed: bool) -> CompletionResult:
    """``Engine.complete`` for a hedged task."""
    request, clock = call.plan.request, engine.clock

    def work(runner: _Runner) -> Coroutine[Any, Any, Any]:
        attempt = runner.attempt
        answer = runner.pump() if streamed else attempt.provider.complete(request)
        return bounded(call, attempt.model, answer, clock, last=attempt.last)

    async with aclosing(engine.tries(call)) as tries:
        race = _Race(engine, call, tries, work, streamed=streamed, first_token=streamed)
        try:
            while (winner := await race.winner()) is not None:
                try:
                    result = await (winner.collected() if streamed else winner.task)
                except ProviderError as exc:
                    await race.failed(winner, exc)
                    continue
                return await engine.succeeded(call, winner.attempt, result)
        finally:
            await race.abandon()
    raise call.exhausted_error()


async def embed(engine: EngineSteps, call: CallState, texts: Sequence[str]) -> EmbeddingResult:
    """``Engine.embed`` for a hedged task."""
    clock = engine.clock

    def work(runner: _Runner) -> Coroutine[Any, Any, Any]:
        attempt = runner.attempt
        return bounded(call, attempt.model, attempt.provider.embed(texts), clock, last=attempt.last)

    async with aclosing(engine.tries(call)) as tries:
        race = _Race(engine, call, tries, work, streamed=False, first_token=False)
        try:
            winner = await race.winner()
            if winner is not None:
                return await engine.embedded(call, winner.attempt, winner.task.result())
        finally:
            await race.abandon()
    raise call.exhausted_error()


async def stream(engine: EngineSteps, call: CallState) -> AsyncGenerator[StreamEvent, None]:
    """``Engine.stream`` for a hedged task: the race is to the first event; the commit point is unchanged."""
    restart_owed = False  # events of an answer that failed reached the caller

    def work(runner: _Runner) -> Coroutine[Any, Any, Any]:
        return runner.pump()

    async with aclosing(engine.tries(call)) as tries:
        race = _Race(engine, call, tries, work, streamed=True, first_token=True)
        try:
            while (winner := await race.winner()) is not None:
                model = winner.attempt.model
                if restart_owed:
                    yield StreamEvent(type="restart", model_id=model.id, model_name=model.model_name)
                    restart_owed = False
                texts: list[str] = []
                tools: list[ToolCall] = []
                try:
                    async with aclosing(winner.relayed()) as events:
                        async for event in events:
                            if event.type == "done":
                                if event.finish_reason == "length" and not texts and not tools:
                                    raise spent(model)
                                done = await engine.succeeded(
                                    call, winner.attempt, assemble(model, event, texts, tools)
                                )
                                yield done_event(done)
                                return
                            if event.type == "text":
                                texts.append(event.text)
                            elif event.type == "tool_call" and event.tool_call is not None:
                                tools.append(event.tool_call)
                            restart_owed = True
                            yield event
                except ProviderError as exc:
                    committed = bool(texts or tools) and call.plan.policy.stream_policy == "error"
                    await race.failed(winner, exc, final=committed)
        finally:
            await race.abandon()
    raise call.exhausted_error()
