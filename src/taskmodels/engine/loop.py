"""The attempt loop: one loop tries a task's models for completions, embeddings and streams.

``_tries`` is the loop. It walks the plan's candidates — then, when every breaker
was open and nothing was tried, the one that closes soonest — and within each model
its routes (``engine/pools.py``: the model itself, or its deployments in the order the
pool's strategy gives, drained before the next model), admits each (breaker, budget,
rate limit), and hands the driver one ``Try`` at a time. The driver makes the call and
reports back with ``outcomes.failed`` or ``outcomes.succeeded`` (``engine/outcome.py``), where
``resilience/policy.py``'s rule table decides whether the same model is tried again, the next one is, or the
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

from taskmodels.errors import ProviderError, TaskModelsError
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.resilience.ratelimit import RateTicket
from taskmodels.sections import ResilienceSettings
from taskmodels.types import CompletionResult, EmbeddingResult, StreamEvent, ToolCall

from . import hedge
from .admission import Gate, Reservation
from .call import CallState, Try
from .limits import Bound
from .observe import Observation
from .outcome import Outcomes
from .pools import Pools, Route
from .streams import assemble, collect, done_event, guarded_stream, spent

__all__ = ["Engine"]


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
        self.pools = Pools()
        self._provider_for = provider_for
        self._resilience = resilience
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self.outcomes = Outcomes(gate, observation, resilience, clock, rand)
        self.latencies = hedge.Latencies()  # what ``hedge: {"after": "p95"}`` reads
        self._hedging = hedge.EngineSteps(
            self._tries,
            self.outcomes.succeeded,
            self.outcomes.failed,
            self.outcomes.embedded,
            gate,
            observation,
            clock,
            self.latencies,
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
                    with Bound(call, attempt.model, self._clock, last=attempt.last):
                        if streamed:
                            hook = None if attempt.trace is None else self.observation.first_chunk_hook(attempt.trace)
                            result = await collect(call, provider, self._clock, last=attempt.last, first_chunk=hook)
                        else:
                            result = await provider.complete(call.plan.request)
                    if result.finish_reason == "length" and not result.text and not result.tool_calls:
                        raise spent(attempt.model)
                except ProviderError as exc:
                    await self.outcomes.failed(call, attempt, exc)
                    continue
                return await self.outcomes.succeeded(call, attempt, result)
        raise call.exhausted_error()

    async def embed(self, call: CallState, texts: Sequence[str]) -> EmbeddingResult:
        if call.plan.policy.hedge is not None:
            return await hedge.embed(self._hedging, call, texts)
        async with aclosing(self._tries(call)) as tries:
            async for attempt in tries:
                try:
                    with Bound(call, attempt.model, self._clock, last=attempt.last):
                        embedded = await attempt.provider.embed(texts)
                except ProviderError as exc:
                    await self.outcomes.failed(call, attempt, exc)
                    continue
                return await self.outcomes.embedded(call, attempt, embedded)
        raise call.exhausted_error()

    async def stream(self, call: CallState) -> AsyncIterator[StreamEvent]:  # noqa: C901 - the commit point: restart, done, truncation
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
                hook = None if attempt.trace is None else self.observation.first_chunk_hook(attempt.trace)
                try:
                    events = guarded_stream(call, attempt.provider, self._clock, last=attempt.last, first_chunk=hook)
                    async with aclosing(events) as s:
                        async for event in s:
                            if event.type == "done":
                                if event.finish_reason == "length" and not texts and not tools:
                                    raise spent(model)
                                done = await self.outcomes.succeeded(
                                    call, attempt, assemble(model, event, texts, tools)
                                )
                                yield done_event(done)
                                return
                            if attempt.first_at is None:
                                attempt.first_at = self._clock()
                            if event.type == "text":
                                texts.append(event.text)
                            elif event.type == "tool_call" and event.tool_call is not None:
                                tools.append(event.tool_call)
                            restart_owed = True
                            yield event
                except ProviderError as exc:
                    committed = bool(texts or tools) and call.plan.policy.stream_policy == "error"
                    await self.outcomes.failed(call, attempt, exc, final=committed)
        raise call.exhausted_error()

    # --- the loop --------------------------------------------------------------------------------

    async def _tries(self, call: CallState) -> AsyncGenerator[Try, None]:  # noqa: C901 - the loop: models, their deployments, retries
        # Routes' tries are inlined rather than a nested generator: each layer costs every call a few µs.
        plan = call.plan
        pools = self.pools
        for model, forced, last in self._candidates(call):
            routes = pools.pool(model).order(plan.policy.routing)
            final = len(routes) - 1
            for index, route in enumerate(routes):
                provider = await self._admit(call, route, forced=forced)
                if provider is None:
                    continue
                siblings = index < final
                for number in itertools.count(1):
                    held = await self._reserve(call, route)
                    if held is None:
                        break
                    reservation, ticket = held
                    call.tries += 1
                    call.cut_by = None
                    attempt = Try(
                        model, provider, number, last and not siblings, reservation, self._clock(), route=route
                    )
                    if ticket is not None or siblings:
                        attempt.ticket, attempt.siblings = ticket, siblings
                    if call.trace is not None and plan.policy.hedge is None:  # a hedged try's starts as it runs
                        attempt.trace = self.observation.attempt_started(call, route.config, provider, number)
                    route.in_flight += 1
                    try:
                        yield attempt
                    finally:
                        route.in_flight -= 1
                        if not attempt.settled and not attempt.hedged:  # the driver left early: cancelled, or raised
                            await self._release(reservation, ticket)
                    if attempt.retry_in is None:
                        break
                    await self._sleep(attempt.retry_in)
                if call.tries >= plan.policy.max_attempts_total:
                    return

    async def _reserve(self, call: CallState, route: Route) -> tuple[Reservation, RateTicket | None] | None:
        """The attempt's budget reservation and, for a route with rate state, its rate ticket; ``None`` (a skip
        recorded) when either refuses."""
        reservation = await self.gate.reserve_for(call, route.model)
        if reservation is None or not route.limited:
            return None if reservation is None else (reservation, None)
        ticket = await self.gate.take_rate(call, route)
        if ticket is None:
            await self._release(reservation, None)
            return None
        return reservation, ticket

    async def _release(self, reservation: Reservation, ticket: RateTicket | None) -> None:
        """Give back what an attempt that never reported held: its whole reservation, its tokens."""
        if reservation.scope:
            await self.gate.settle(reservation, 0.0)
        if ticket is not None:
            await self.gate.settle_rate(ticket, 0)

    def _candidates(self, call: CallState) -> Iterator[tuple[ModelConfig, bool, bool]]:
        """``(model, forced, last)``: the chain in order; then, when every breaker was open and nothing was tried,
        the model whose breaker closes soonest, tried anyway rather than failing without a call."""
        models = call.plan.models
        final = len(models) - 1
        for index, model in enumerate(models):
            yield model, False, index == final
        if call.open_breakers and not call.attempts_made() and call.plan.remaining(self._clock()) > 0:
            yield min(call.open_breakers, key=lambda entry: (entry[0], entry[1]))[2], True, True

    async def _admit(self, call: CallState, route: Route, *, forced: bool) -> ModelPort | None:
        model = route.model
        if not await self.gate.admits(call, model, forced=forced, route=route):
            return None
        try:
            provider = self._provider_for(route.config)
        except TaskModelsError as exc:  # configuration, not an outage: no key, no endpoint, no implementation
            call.skip(model, type(exc).__name__, str(exc), exc, deployment_id=route.deployment_id)
            self.observation.model_unusable(route.config, exc)
            return None
        return provider if call.output is None else call.output.port(provider)
