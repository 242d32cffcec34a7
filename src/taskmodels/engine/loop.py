"""The attempt loop and the one driver per operation: completions, embeddings and streams.

``tries`` is the loop. It walks the plan's candidates — then, when every breaker was open
and nothing was tried, the one that closes soonest — and within each model its routes
(``engine/pools.py``: the model itself, or its deployments in the order the pool's strategy
gives, drained before the next model), admits each (breaker, budget, rate limit) and hands
out one ``Try`` at a time. Whoever runs the try reports back with the verdict of
``outcomes.failed`` (``engine/outcome.py``, where ``resilience/policy.py``'s rule table
decides): seconds before the same model is tried again (sent back into the loop), ``None``
to move on; or the error reaches the caller.

How tries run is a lane the engine owns: one at a time (``Sequential``, here), or racing
after a delay when the task sets ``hedge`` (``engine/hedge.py``). A lane's ``next()`` is the
next try that committed: it answered (a completion, an embedding) or sent its first event
(a stream). Every failure before that is judged inside the lane; the drivers below see only
committed tries, and they are written once for both lanes:

- ``complete`` takes the committed answer (an answer cut at ``max_tokens`` with nothing in
  it is a failure before it commits, so it moves on in both lanes);
- ``embed`` the same with vectors;
- ``stream`` relays the committed try's events to the caller. Once an event has reached the
  caller, the task's ``streamPolicy`` decides what a later failure does (``restart`` the
  answer on the next model, or raise); ``complete`` with ``stream_under_the_hood`` reads the
  same relay and keeps only the final answer.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal

from taskmodels.errors import InvalidResponseError, ProviderError, TaskModelsError
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.sections import ResilienceSettings
from taskmodels.types import CompletionResult, EmbeddingResult, StreamEvent, ToolCall

from .admission import Gate
from .attempt import Try
from .call import CallState
from .hedge import Racing
from .lanes import Feed, Lane, Sequential, Shot
from .latencies import Latencies
from .observe import Observation
from .outcome import Outcomes
from .pools import Pools, Route
from .streams import assemble, done_event, guarded_stream, spent

__all__ = ["Engine"]


class Engine:
    """Runs calls: the loop, one driver per operation, and what happens after each attempt."""

    def __init__(
        self,
        *,
        gate: Gate,
        providers: ModelProviderFactory,
        observation: Observation,
        resilience: ResilienceSettings,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
        outcomes: Outcomes | None = None,
        latencies: Latencies | None = None,
    ) -> None:
        self.gate = gate
        self.observation = observation
        self.pools = Pools()
        self.providers = providers
        self.resilience = resilience
        self.clock = clock
        self.sleep = sleep
        self.outcomes = outcomes or Outcomes(gate, observation, resilience, clock, rand)
        self.latencies = latencies or Latencies()  # what ``hedge: {"after": "p95"}`` reads

    # --- the drivers ---------------------------------------------------------------------------

    async def complete(self, call: CallState, *, streamed: bool) -> CompletionResult:
        """The first answer of the chain; ``streamed`` reads it as a stream to watch first-token and stall limits."""
        if streamed:
            async with self.relay(call, folded=True) as events:
                async for event in events:
                    if event.result is not None:
                        return event.result
            raise call.exhausted_error()  # pragma: no cover - the relay raises it when it ends without an answer
        request = call.plan.request

        async def answer(attempt: Try) -> CompletionResult:
            result = await attempt.provider.complete(request)
            if result.finish_reason == "length" and not result.text and not result.tool_calls:
                raise spent(attempt.model)
            return result

        async with self.lane(call, shot=answer) as lane:
            running = await lane.next()
            if running is not None:
                return await self.outcomes.succeeded(call, running.attempt, running.first)
        raise call.exhausted_error()

    async def embed(self, call: CallState, texts: Sequence[str]) -> EmbeddingResult:
        def vectors(attempt: Try) -> Coroutine[Any, Any, EmbeddingResult]:
            return attempt.provider.embed(texts)

        async with self.lane(call, shot=vectors) as lane:
            running = await lane.next()
            if running is not None:
                return await self.outcomes.embedded(call, running.attempt, running.first)
        raise call.exhausted_error()

    def stream(self, call: CallState) -> AsyncGenerator[StreamEvent, None]:
        return _Relay(self, call, folded=False).events()

    def relay(self, call: CallState, *, folded: bool) -> _Relay:
        """The stream's events as the caller gets them (``folded``: nobody sees them but the engine, so a
        failure after the first event always moves on, whatever the task's ``streamPolicy``)."""
        return _Relay(self, call, folded=folded)

    def lane(self, call: CallState, *, shot: Shot | None = None, feed: Feed | None = None) -> Lane:
        """One try at a time, or racing when the task hedges."""
        if call.plan.policy.hedge is None:
            return Sequential(self, call, shot=shot, feed=feed)
        return Racing(self, call, shot=shot, feed=feed)

    def feed_of(self, call: CallState) -> Feed:
        """A stream try's work: its provider's stream within the call's limits."""

        def feed(attempt: Try) -> AsyncGenerator[StreamEvent, None]:
            hook = None if attempt.trace is None else self.observation.first_chunk_hook(attempt.trace)
            return guarded_stream(call, attempt.provider, self.clock, last=attempt.last, first_chunk=hook)

        return feed

    # --- the loop --------------------------------------------------------------------------------

    async def tries(self, call: CallState) -> AsyncGenerator[Try, float | None]:
        """The call's tries in order. Send back each try's verdict: seconds before its model is tried again, or
        ``None`` to move on. The try's claim belongs to whoever runs it from the moment it is handed out."""
        # Routes' tries are inlined rather than a nested generator: each layer costs every call a few µs.
        plan = call.plan
        pools = self.pools
        traced = call.trace is not None and plan.policy.hedge is None  # a hedged try's trace starts as it runs
        for model, forced, last in self._candidates(call):
            routes = pools.pool(model).order(plan.policy.routing)
            final = len(routes) - 1
            for index, route in enumerate(routes):
                provider = await self._admit(call, route, forced=forced)
                if provider is None:
                    continue
                siblings = index < final
                for number in itertools.count(1):
                    now = self.clock()
                    if plan.deadline_at <= now:  # nothing is admitted, reserved or sent after the deadline
                        raise call.deadline_error(now - plan.started)
                    claim = await self.gate.claim(call, route)
                    if claim is None:
                        break
                    call.tries += 1
                    attempt = Try(model, provider, number, last and not siblings, claim, self.clock(), route, siblings)
                    if traced:
                        attempt.trace = self.observation.attempt_started(call, route.config, provider, number)
                    delay = yield attempt
                    if delay is None:
                        break
                    await self.sleep(delay)
                if call.tries >= plan.policy.max_attempts_total:
                    return

    def _candidates(self, call: CallState) -> Iterator[tuple[ModelConfig, bool, bool]]:
        """``(model, forced, last)``: the chain in order; then, when every breaker was open and nothing was tried,
        the model whose breaker closes soonest, tried anyway rather than failing without a call."""
        models = call.plan.models
        final = len(models) - 1
        for index, model in enumerate(models):
            yield model, False, index == final
        if call.open_breakers and not call.attempts_made() and call.plan.remaining(self.clock()) > 0:
            yield min(call.open_breakers, key=lambda entry: (entry[0], entry[1]))[2], True, True

    async def _admit(self, call: CallState, route: Route, *, forced: bool) -> ModelPort | None:
        model = route.model
        if not await self.gate.admits(call, model, forced=forced, route=route):
            return None
        try:
            provider = self.providers.create_provider_for_model(route.config)
        except TaskModelsError as exc:  # configuration, not an outage: no key, no endpoint, no implementation
            call.skip(model, type(exc).__name__, str(exc), exc, deployment_id=route.deployment_id)
            self.observation.model_unusable(route.config, exc)
            return None
        return provider if call.output is None else call.output.port(provider)


class _Relay:
    """The stream driver: the committed try's events relayed to the caller, the commit point, the done event.

    ``async with relay as events`` (or ``relay.events()``): on exit the lane gives back every claim still held.
    """

    __slots__ = ("_call", "_engine", "_folded", "_gen")

    def __init__(self, engine: Engine, call: CallState, *, folded: bool) -> None:
        self._engine = engine
        self._call = call
        self._folded = folded
        self._gen: AsyncGenerator[StreamEvent, None] | None = None

    async def __aenter__(self) -> AsyncGenerator[StreamEvent, None]:
        self._gen = self.events()
        return self._gen

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        engine, call = self._engine, self._call
        policy: Literal["restart", "error"] = "restart" if self._folded else call.plan.policy.stream_policy
        restart_owed = False  # events of an answer that failed reached the caller
        async with engine.lane(call, feed=engine.feed_of(call)) as lane:
            while (running := await lane.next()) is not None:
                attempt = running.attempt
                model = attempt.model
                if restart_owed:
                    yield StreamEvent(type="restart", model_id=model.id, model_name=model.model_name)
                    restart_owed = False
                texts: list[str] = []
                tools: list[ToolCall] = []
                event: StreamEvent = _named(running.first, attempt)
                rest = running.rest
                assert rest is not None
                try:
                    while True:
                        if event.type == "done":
                            if event.finish_reason == "length" and not texts and not tools:
                                raise spent(model)
                            done = await engine.outcomes.succeeded(call, attempt, assemble(model, event, texts, tools))
                            yield done_event(done)
                            return
                        if event.type == "text":
                            texts.append(event.text)
                        elif event.type == "tool_call" and event.tool_call is not None:
                            tools.append(event.tool_call)
                        restart_owed = True
                        yield event
                        try:
                            event = await anext(rest)
                        except StopAsyncIteration:
                            raise InvalidResponseError(
                                "the stream ended without its done event", provider=model.provider, model_id=model.id
                            ) from None
                except ProviderError as exc:
                    committed = bool(texts or tools) and policy == "error"
                    await lane.failed(running, exc, final=committed)
                finally:
                    await rest.aclose()  # type: ignore[attr-defined]  # a generator, as every feed's rest is
        raise call.exhausted_error()


def _named(event: StreamEvent, attempt: Try) -> StreamEvent:
    """The first event of an answer, naming the model that gives it: a relay can say who answers before the end."""
    if event.model_id is None:
        event.model_id, event.model_name = attempt.model.id, attempt.route.config.model_name
    return event
