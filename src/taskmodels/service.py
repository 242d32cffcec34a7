"""``ModelService``: what an application calls — completions, streams and embeddings, by task.

A thin facade over the call engine (``taskmodels.engine``): it turns the caller's
arguments into a ``CompletionRequest``, asks selection for the task's candidates,
freezes the call's plan, and hands the call to the engine. What happens in a call —
retries, fallbacks, the one deadline, breakers, budgets — is described in
``engine/loop.py`` and in docs/fallbacks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

from taskmodels.engine.admission import Gate
from taskmodels.engine.call import CallState
from taskmodels.engine.health import pool_health
from taskmodels.engine.loop import Engine
from taskmodels.engine.observe import CallTracer, Observation
from taskmodels.engine.plan import Operation, Planner
from taskmodels.errors import CURRENT_TASK, TaskModelsError
from taskmodels.output import output_run_for, output_schema
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.breaker import CircuitBreaker
from taskmodels.resilience.state import StateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.sync import SyncModelService
from taskmodels.tenancy import CURRENT_TENANT
from taskmodels.types import (
    Attempt,
    CompletionRequest,
    CompletionResult,
    EmbeddingResult,
    StreamEvent,
)
from taskmodels.validation import check_task, check_tenant, coerce_request, coerce_texts

__all__ = ["ModelService", "SyncModelService"]

_T = TypeVar("_T")


class ModelService:
    """Completions, streams and embeddings for tasks, with retries, fallbacks, one deadline, breakers and budgets.

    ``clock`` (monotonic), ``wall_clock``, ``sleep`` and ``rand`` are injectable for tests; ``tracer`` is where
    tracing attaches (see ``engine/observe.py``).
    """

    def __init__(
        self,
        *,
        registry: ModelRegistryService,
        selector: ModelSelectionFactory,
        provider_factory: ModelProviderFactory,
        state_store: StateStore,
        resilience: ResilienceSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        tracer: CallTracer | None = None,
    ) -> None:
        self.registry = registry
        self.selector = selector
        self.provider_factory = provider_factory
        self.state_store = state_store
        self.resilience = settings = resilience or ResilienceSettings()
        self.breaker = CircuitBreaker.from_settings(state_store, settings, clock=wall_clock)
        self.observation = Observation(clock, tracer)
        self.engine = Engine(
            gate=Gate(state_store, self.breaker, wall_clock=wall_clock),
            provider_for=provider_factory.create_provider_for_model,
            observation=self.observation,
            resilience=settings,
            clock=clock,
            sleep=sleep,
            rand=rand,
        )
        self._planner = Planner(settings)
        self._clock = clock
        self._sync: SyncModelService | None = None
        self._sync_lock = threading.Lock()

    @overload
    async def complete_with_task_model(
        self,
        task: str,
        request: CompletionRequest | str | None = None,
        /,
        *,
        output_type: type[_T],
        tenant: str | None = None,
        **fields: Any,
    ) -> CompletionResult[_T]: ...

    @overload
    async def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> CompletionResult: ...

    async def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> CompletionResult:
        """The answer of the first model of the task's chain that gives one.

        ``request`` is a ``CompletionRequest``, a prompt string, or omitted; keyword
        ``fields`` set (or override) ``CompletionRequest`` fields. With ``output_type``
        (a pydantic model, dataclass, TypedDict or a list of one) ``result.output`` is the
        validated answer, typed as that class; an answer that fails validation is an
        attempt failure (``OutputValidationError``, see docs/typed-answers.md). Raises
        ``AllModelsFailedError``, ``DeadlineExceededError``, ``BudgetExceededError``,
        a ``SelectionError``, ``InvalidRequestError``, or a ``ProviderError`` that no
        other model can fix (a bad request, a content filter the task does not fall back on).
        ``tenant`` names whom the call is for (default: ``taskmodels.tenant_scope``'s).
        """
        call = self._start(task, "chat", tenant, request, fields)
        token = CURRENT_TASK.set(task)
        try:
            result = await self.engine.complete(call, streamed=self.resilience.stream_under_the_hood)
        except TaskModelsError as exc:
            self.observation.call_failed(call, exc)
            raise
        else:
            if call.output is not None:
                result.output = call.output.value  # a streamed read assembles a new result
            return result
        finally:
            CURRENT_TASK.reset(token)
            if call.trace is not None:
                self.observation.call_closed(call)

    async def embed_with_task_model(
        self, task: str, texts: Sequence[str], *, tenant: str | None = None
    ) -> EmbeddingResult:
        """Embeddings of ``texts`` from the task's chain, with the same fallback policy as completions."""
        try:
            batch = coerce_texts(texts)  # a bare string is one text, never its characters
        except TaskModelsError as exc:
            if self.observation.tracer is not None:
                self.observation.call_refused(str(task), "embeddings", exc, streaming=False)
            raise
        call = self._start(task, "embeddings", tenant)
        self.observation.embedding_inputs(call, batch)
        token = CURRENT_TASK.set(task)
        try:
            return await self.engine.embed(call, batch)
        except TaskModelsError as exc:
            self.observation.call_failed(call, exc)
            raise
        finally:
            CURRENT_TASK.reset(token)
            if call.trace is not None:
                self.observation.call_closed(call)

    async def stream_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> AsyncGenerator[StreamEvent, None]:
        """The answer as events: ``text`` and ``tool_call`` events, then one ``done`` event with the ``result``.

        Before the first event reaches the caller the service falls back freely.
        After that, the task's ``stream_policy`` decides: ``restart`` sends a
        ``restart`` event (discard what you got; ``model_id`` names the next model)
        and streams the next answer from its start; ``error`` raises. A stream that
        is cut, stalls or sends a malformed event never ends in ``done``.
        With ``output_type`` the ``done`` event's ``result.output`` is the validated answer;
        an answer that fails validation is an attempt failure, as for ``complete``.
        """
        call = self._start(task, "chat", tenant, request, fields, streaming=True)
        token = CURRENT_TASK.set(task)
        try:
            async for event in self.engine.stream(call):
                if event.result is not None and call.output is not None:
                    event.result.output = call.output.value
                yield event
        except TaskModelsError as exc:
            self.observation.call_failed(call, exc)
            raise
        finally:
            # Closed from another context (the collection of an unfinished stream) the reset is not ours to make.
            with contextlib.suppress(ValueError):
                CURRENT_TASK.reset(token)
            if call.trace is not None:  # a stream its consumer left unfinished still ends its spans
                self.observation.call_closed(call)

    def totals(self) -> dict[str, dict[str, dict[str, int | float]]]:
        """Calls, attempts, tokens and cost so far, per task (``tasks``), per model (``models``) and per tenant
        (``tenants``: calls made for one), in this process."""
        return self.observation.accounting.snapshot()

    async def health(self) -> dict[str, Any]:
        """Each registry model's breaker: ``state`` (closed, open, half_open), failures and ``retry_at``; for a
        model with deployments, its ``routing`` and each deployment's breaker, hold and rate state
        (see ``engine/health.py``)."""
        gate = self.engine.gate
        snapshots = await gate.snapshots()
        out: dict[str, Any] = {}
        for model_id, model in self.registry.current.models_by_id.items():
            snap = snapshots.get(model_id) or await gate.snapshot(model_id)
            out[model_id] = {
                "state": snap.state,
                "consecutive_failures": snap.consecutive_failures,
                "retry_at": snap.retry_at,
                "cooldown": snap.cooldown,
            }
            if model.deployments:
                out[model_id].update(await pool_health(gate, self.engine.pools.pool(model), snapshots))
        return {"models": out}

    @property
    def sync(self) -> SyncModelService:
        """A blocking facade over this service, running on its own background event-loop thread."""
        if self._sync is None:
            with self._sync_lock:
                if self._sync is None:
                    self._sync = SyncModelService(self)
        return self._sync

    def _start(
        self,
        task: str,
        operation: Operation,
        tenant: str | None,
        request: CompletionRequest | str | None = None,
        fields: Mapping[str, Any] | None = None,
        *,
        streaming: bool = False,
    ) -> CallState:
        """The call's state, planned; ``fields`` ``None`` (embeddings) means no request to check."""
        # A call that fails here (a bad request, an unknown task, no eligible model) is traced too, as a call
        # span in error: the ``try`` costs the calls that do not fail nothing.
        try:
            task, tenant = check_task(task), check_tenant(tenant)
            asked = CompletionRequest() if fields is None else coerce_request(request, fields)
            # A typed answer's schema goes with the prompt: selection and budgets count it.
            schema = None if asked.output_type is None else output_schema(asked.output_type).schema
            selection = self.selector.candidates(task, asked, operation=operation, schema=schema)
            plan = self._planner.plan(selection, asked, now=self._clock(), operation=operation)
            call = CallState(plan, tenant if tenant is not None else CURRENT_TENANT.get())
            if selection.skipped:  # the attempts say why a model of the chain was not tried, selection's skips too
                models = selection.registry.models_by_id
                call.attempts.extend(
                    Attempt(s.model_id, models[s.model_id].provider, "skipped", 0.0, "NotSelected", s.reason, None, 0)
                    for s in selection.skipped
                )
            if asked.output_type is not None or asked.response_format is not None:
                call.output = output_run_for(selection, asked)
        except Exception as exc:
            if self.observation.tracer is not None:
                self.observation.call_refused(str(task), operation, exc, streaming=streaming)
            raise
        if self.observation.tracer is not None:
            self.observation.call_started(call, streaming=streaming)
        return call
