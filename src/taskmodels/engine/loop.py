"""The attempt loop: one loop tries a task's models for completions, embeddings and streams.

``_tries`` is the loop. It walks the plan's candidates — then, when every breaker
was open and nothing was tried, the one that closes soonest — admits each (breaker,
budget), and hands the driver one ``Try`` at a time. The driver makes the call and
reports back with ``_failed`` or ``_succeeded``; ``resilience/policy.py``'s rule table
decides, in ``_failed``, whether the same model is tried again, the next one is, or the
error reaches the caller. The three drivers differ only in what they call and, for a
stream, in the commit point: once an event has reached the caller, the task's
``streamPolicy`` decides (``restart`` the answer on the next model, or raise).

A task with ``hedge`` set runs on the drivers of ``engine/hedge.py`` instead, which
keep more than one ``Try`` in flight; the drivers here never start a task or a timer.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from taskmodels.errors import ProviderError, TaskModelsError
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.resilience.policy import Next, retry_delay, rule_for
from taskmodels.sections import ResilienceSettings
from taskmodels.types import Attempt, CompletionResult, EmbeddingResult, StreamEvent, ToolCall

from . import hedge
from .admission import Gate, Reservation
from .call import CallState
from .limits import bounded
from .observe import Observation
from .streams import assemble, collect, guarded_stream

__all__ = ["Engine", "Try"]


@dataclass(slots=True)
class Try:
    """One attempt at one model, handed to a driver. ``retry_in`` is set by ``_failed``: seconds before the same
    model is tried again, or ``None`` to move on. ``hedged``: the driver asked for the next try while this one
    still runs; the loop moves on without giving its reservation back, and the driver settles it."""

    model: ModelConfig
    provider: ModelPort
    number: int  # 1-based try of this model within the call
    last: bool  # no candidate after this one: it may use the whole deadline
    reservation: Reservation
    started: float
    settled: bool = False
    retry_in: float | None = None
    hedged: bool = False


class Engine:
    """Runs calls: the loop, its three drivers, and what happens after each attempt."""

    def __init__(
        self,
        *,
        gate: Gate,
        provider_for: Callable[[ModelConfig], ModelPort],
        observation: Observation,
        resilience: ResilienceSettings,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
    ) -> None:
        self.gate = gate
        self.observation = observation
        self._provider_for = provider_for
        self._resilience = resilience
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self.latencies = hedge.Latencies()  # what ``hedge: {"after": "p95"}`` reads
        self._hedging = hedge.EngineSteps(
            self._tries, self._succeeded, self._failed, self._embedded, gate, observation, clock, self.latencies
        )

    # --- the drivers ---------------------------------------------------------------------------

    async def complete(self, call: CallState, *, streamed: bool) -> CompletionResult:
        """The first answer of the chain; ``streamed`` reads it as a stream to watch first-token and stall limits."""
        if call.plan.policy.hedge is not None:
            return await hedge.complete(self._hedging, call, streamed=streamed)
        async with aclosing(self._tries(call)) as tries:
            async for attempt in tries:
                try:
                    provider = attempt.provider
                    if streamed:
                        work = collect(call, provider, self._clock, last=attempt.last)
                    else:
                        work = provider.complete(call.plan.request)
                    result = await bounded(call, attempt.model, work, self._clock, last=attempt.last)
                except ProviderError as exc:
                    await self._failed(call, attempt, exc)
                    continue
                return await self._succeeded(call, attempt, result)
        raise call.exhausted_error()

    async def embed(self, call: CallState, texts: Sequence[str]) -> EmbeddingResult:
        if call.plan.policy.hedge is not None:
            return await hedge.embed(self._hedging, call, texts)
        async with aclosing(self._tries(call)) as tries:
            async for attempt in tries:
                try:
                    work = attempt.provider.embed(texts)
                    embedded = await bounded(call, attempt.model, work, self._clock, last=attempt.last)
                except ProviderError as exc:
                    await self._failed(call, attempt, exc)
                    continue
                return await self._embedded(call, attempt, embedded)
        raise call.exhausted_error()

    async def stream(self, call: CallState) -> AsyncIterator[StreamEvent]:
        if call.plan.policy.hedge is not None:
            async with aclosing(hedge.stream(self._hedging, call)) as hedged:
                async for event in hedged:
                    yield event
            return
        restart_owed = False  # events of an answer that failed reached the caller
        async with aclosing(self._tries(call)) as tries:
            async for attempt in tries:
                model = attempt.model
                if restart_owed:
                    yield StreamEvent(type="restart", model_id=model.id, model_name=model.model_name)
                    restart_owed = False
                texts: list[str] = []
                tools: list[ToolCall] = []
                try:
                    async with aclosing(guarded_stream(call, attempt.provider, self._clock, last=attempt.last)) as s:
                        async for event in s:
                            if event.type == "done":
                                done = await self._succeeded(call, attempt, assemble(model, event, texts, tools))
                                yield StreamEvent(
                                    type="done",
                                    finish_reason=done.finish_reason,
                                    usage=done.usage,
                                    model_id=model.id,
                                    model_name=done.model_name,
                                    request_id=done.request_id,
                                    result=done,
                                )
                                return
                            if event.type == "text":
                                texts.append(event.text)
                            elif event.type == "tool_call" and event.tool_call is not None:
                                tools.append(event.tool_call)
                            restart_owed = True
                            yield event
                except ProviderError as exc:
                    committed = bool(texts or tools) and call.plan.policy.stream_policy == "error"
                    await self._failed(call, attempt, exc, final=committed)
        raise call.exhausted_error()

    # --- the loop --------------------------------------------------------------------------------

    async def _tries(self, call: CallState) -> AsyncGenerator[Try, None]:
        plan = call.plan
        for model, forced, last in self._candidates(call):
            provider = await self._admit(call, model, forced=forced)
            if provider is None:
                continue
            for number in itertools.count(1):
                reservation = await self.gate.reserve_for(call, model)
                if reservation is None:
                    break
                call.tries += 1
                call.cut_by = None
                attempt = Try(model, provider, number, last, reservation, self._clock())
                try:
                    yield attempt
                finally:
                    if not attempt.settled and not attempt.hedged and reservation.scope:  # cancelled, or raised
                        await self.gate.settle(reservation, 0.0)
                if attempt.retry_in is None:
                    break
                await self._sleep(attempt.retry_in)
            if call.tries >= plan.policy.max_attempts_total:
                return

    def _candidates(self, call: CallState) -> Iterator[tuple[ModelConfig, bool, bool]]:
        """``(model, forced, last)``: the chain in order; then, when every breaker was open and nothing was tried,
        the model whose breaker closes soonest, tried anyway rather than failing without a call."""
        models = call.plan.models
        final = len(models) - 1
        for index, model in enumerate(models):
            yield model, False, index == final
        if call.open_breakers and not call.attempts_made() and call.plan.remaining(self._clock()) > 0:
            yield min(call.open_breakers, key=lambda entry: (entry[0], entry[1]))[2], True, True

    async def _admit(self, call: CallState, model: ModelConfig, *, forced: bool) -> ModelPort | None:
        if not await self.gate.admits(call, model, forced=forced):
            return None
        try:
            return self._provider_for(model)
        except TaskModelsError as exc:  # configuration, not an outage: no key, no endpoint, no implementation
            call.skip(model, type(exc).__name__, str(exc), exc)
            self.observation.model_unusable(model, exc)
            return None

    # --- after an attempt ------------------------------------------------------------------------

    async def _succeeded(self, call: CallState, attempt: Try, result: CompletionResult) -> CompletionResult:
        model = attempt.model
        attempt.settled = True
        result.model_id, result.provider = model.id, model.provider
        result.cost = cost = model.cost(result.usage)
        record = Attempt(
            model.id, model.provider, "success", self._clock() - attempt.started, None, None, None, attempt.number
        )
        call.attempts.append(record)
        result.attempts = tuple(call.attempts)
        await self.gate.record_success(model.id)
        if attempt.reservation.scope:
            await self.gate.settle(attempt.reservation, cost)
        self.observation.succeeded(call, record, result)
        return result

    async def _embedded(self, call: CallState, attempt: Try, embedded: EmbeddingResult) -> EmbeddingResult:
        model = attempt.model
        as_answer = CompletionResult("", model.id, model.provider, embedded.model_name, embedded.usage)
        done = await self._succeeded(call, attempt, as_answer)
        embedded.model_id, embedded.provider = model.id, model.provider
        embedded.cost, embedded.attempts = done.cost, done.attempts
        return embedded

    async def _failed(self, call: CallState, attempt: Try, error: ProviderError, *, final: bool = False) -> None:
        """Record a failed attempt, then apply the policy: set ``attempt.retry_in`` (or leave it ``None`` to move
        on), or raise when the error must reach the caller (``final``: a stream already committed to this model)."""
        cut_by = call.cut_by  # read once: with hedged tries in flight another may set it while this one awaits
        model = attempt.model
        attempt.settled = True
        call.last_error = error
        call.errors.append(error)
        latency = self._clock() - attempt.started
        record = Attempt(
            model.id,
            model.provider,
            "error",
            latency,
            type(error).__name__,
            error.message,
            error.status_code,
            attempt.number,
        )
        call.attempts.append(record)
        rule = rule_for(error)
        opened = False
        if rule.counts_against_model and cut_by is None:
            opened = await self.gate.record_failure(model.id, trip=rule.trips_breaker)
        if attempt.reservation.scope:
            await self.gate.settle(attempt.reservation, 0.0)
        self.observation.attempt_failed(call, record, breaker_opened=opened)
        if cut_by == "deadline":
            raise call.deadline_error(self._clock() - call.plan.started)
        if (
            final
            or rule.next is Next.RAISE
            or (rule.next is Next.IF_OPTED_IN and not call.plan.policy.fallback_on_content_filter)
        ):
            raise error
        if rule.next is Next.LARGER_CONTEXT:
            call.needs_larger_context(model, error)
            return
        plan = call.plan
        if (
            opened
            or attempt.number >= plan.policy.max_attempts_per_model
            or call.tries >= plan.policy.max_attempts_total
        ):
            return  # an open breaker (a failed probe, say) is not retried within the call either
        delay = retry_delay(error, attempt.number, self._resilience, self._rand)
        if delay is not None and delay < plan.remaining(self._clock()):
            attempt.retry_in = delay
