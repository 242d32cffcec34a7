"""``ModelService``: what an application calls — completions, streams and embeddings, by task.

A facade over the call engine (``taskmodels.engine``), which it receives already built (the
container wires every part: ``containers.py``): it turns the caller's arguments into a checked
request, asks selection for the task's candidates, freezes the call's plan, and hands the call
to the engine. What happens in a call — retries, fallbacks, the one deadline, breakers,
budgets — is described in ``engine/loop.py`` and in docs/fallbacks.md.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

from taskmodels.engine.call import CallState
from taskmodels.engine.health import health
from taskmodels.engine.loop import Engine
from taskmodels.engine.observe import Observation
from taskmodels.engine.plan import Operation, Planner
from taskmodels.errors import CURRENT_TASK, InvalidRequestError, ServiceClosedError, TaskModelsError
from taskmodels.output import output_run_for, output_schema
from taskmodels.registry.service import ModelRegistryService
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

if TYPE_CHECKING:
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.resilience.breaker import CircuitBreaker
    from taskmodels.resilience.state import StateStore
    from taskmodels.sections import ResilienceSettings

__all__ = ["ModelService", "SyncModelService"]

_T = TypeVar("_T")


class Lifetime(Protocol):
    """What the service's resources were opened by (the container's ``ResourcePool``): closed or not."""

    @property
    def closed(self) -> bool: ...


_CLOSED = (
    "this service's container was closed (await container.aclose()): its HTTP client and state store are gone. "
    "Ask the container for the service again (container.model_service(): it opens new ones, to close the same "
    "way), or close the container only after the last call"
)


class ModelService:
    """Completions, streams and embeddings for tasks, with retries, fallbacks, one deadline, breakers and budgets.

    Built by the container (``Container().model_service()``) from its parts, each a node a test or an
    application may override: the clock, the breaker, the engine itself (docs/testing.md).
    """

    def __init__(
        self,
        *,
        registry: ModelRegistryService,
        selector: ModelSelectionFactory,
        engine: Engine,
        planner: Planner,
        resources: Lifetime | None = None,
    ) -> None:
        """``resources``: what opened the HTTP client and state store the engine uses; once it is closed, every
        call raises ``ServiceClosedError`` before anything is sent (the container passes its resource pool)."""
        self.registry = registry
        self.selector = selector
        self.engine = engine
        self._planner = planner
        self._resources = resources
        self._sync: SyncModelService | None = None
        self._sync_lock = threading.Lock()

    # What the engine is made of, for inspection (each part is a node of the container).
    @property
    def observation(self) -> Observation:
        return self.engine.observation

    @property
    def resilience(self) -> ResilienceSettings:
        return self.engine.resilience

    @property
    def breaker(self) -> CircuitBreaker:
        return self.engine.gate.breaker

    @property
    def state_store(self) -> StateStore:
        return self.engine.gate.store

    @property
    def provider_factory(self) -> ModelProviderFactory:
        return self.engine.providers

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
        with _Calling(self.engine.observation, call):
            result = await self.engine.complete(call, streamed=self.engine.resilience.stream_under_the_hood)
            if call.output is not None:
                result.output = call.output.value  # a streamed read assembles a new result
            return result

    async def embed_with_task_model(
        self, task: str, texts: Sequence[str], *, tenant: str | None = None
    ) -> EmbeddingResult:
        """Embeddings of ``texts`` from the task's chain, with the same fallback policy as completions."""
        try:
            batch = coerce_texts(texts)  # a bare string is one text, never its characters
        except TaskModelsError as exc:
            if self.engine.observation.tracer is not None:
                self.engine.observation.call_refused(str(task), "embeddings", exc, streaming=False)
            raise
        call = self._start(task, "embeddings", tenant)
        self.engine.observation.embedding_inputs(call, batch)
        with _Calling(self.engine.observation, call):
            return await self.engine.embed(call, batch)

    async def stream_with_task_model(
        self,
        task: str,
        request: CompletionRequest | str | None = None,
        /,
        *,
        tenant: str | None = None,
        stream_policy: Literal["restart", "error"] | None = None,
        **fields: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The answer as events: ``text`` and ``tool_call`` events, then one ``done`` event with the ``result``.

        Before the first event reaches the caller the service falls back freely.
        After that, the task's ``stream_policy`` decides: ``restart`` sends a
        ``restart`` event (discard what you got; ``model_id`` names the next model)
        and streams the next answer from its start; ``error`` raises. A stream that
        is cut, stalls or sends a malformed event never ends in ``done``.
        With ``output_type`` the ``done`` event's ``result.output`` is the validated answer;
        an answer that fails validation is an attempt failure, as for ``complete``.
        ``stream_policy`` replaces the task's for this call: a relay whose own client cannot
        take a ``restart`` (the gateway's OpenAI clients) asks for ``error``.
        """
        if stream_policy is not None and stream_policy not in ("restart", "error"):
            raise InvalidRequestError(
                f"stream_policy must be 'restart' or 'error', not {stream_policy!r}", param="stream_policy"
            )
        call = self._start(task, "chat", tenant, request, fields, streaming=True)
        if stream_policy is not None and stream_policy != call.plan.policy.stream_policy:
            call.plan = call.plan._replace(policy=replace(call.plan.policy, stream_policy=stream_policy))
        with _Calling(self.engine.observation, call):
            async for event in self.engine.stream(call):
                if event.result is not None and call.output is not None:
                    event.result.output = call.output.value
                yield event

    def totals(self) -> dict[str, dict[str, dict[str, int | float]]]:
        """Calls, attempts, tokens and cost so far, per task (``tasks``), per model (``models``) and per tenant
        (``tenants``: calls made for one), in this process."""
        return self.engine.observation.accounting.snapshot()

    async def health(self) -> dict[str, Any]:
        """Each registry model's breaker: ``state`` (closed, open, half_open), failures and ``retry_at``; for a
        model with deployments, its ``routing`` and each deployment's breaker, hold and rate state
        (see ``engine/health.py``)."""
        return await health(self.engine, self.registry.current)

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
        if self._resources is not None and self._resources.closed:
            # A closed client would fail each attempt as if the provider had (retried, counted by breakers).
            raise ServiceClosedError(_CLOSED)
        # A call that fails here (a bad request, an unknown task, no eligible model) is traced too, as a call
        # span in error: the ``try`` costs the calls that do not fail nothing.
        try:
            task, tenant = check_task(task), check_tenant(tenant)
            asked = CompletionRequest() if fields is None else coerce_request(request, fields)
            # A typed answer's schema goes with the prompt: selection and budgets count it.
            schema = None if asked.output_type is None else output_schema(asked.output_type).schema
            selection = self.selector.candidates(task, asked, operation=operation, schema=schema)
            plan = self._planner.plan(selection, asked, now=self.engine.clock(), operation=operation)
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
            if self.engine.observation.tracer is not None:
                self.engine.observation.call_refused(str(task), operation, exc, streaming=streaming)
            raise
        if self.engine.observation.tracer is not None:
            self.engine.observation.call_started(call, streaming=streaming)
        return call


class _Calling:
    """The one context of every call, whatever its operation: the task it serves set for the errors built
    meanwhile, a failure reported, and its trace ended however it ends (``with _Calling(observation, call):``)."""

    __slots__ = ("call", "observation", "token")

    def __init__(self, observation: Observation, call: CallState) -> None:
        self.observation = observation
        self.call = call
        self.token = CURRENT_TASK.set(call.task)

    def __enter__(self) -> CallState:
        return self.call

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        call = self.call
        if isinstance(exc, TaskModelsError):
            self.observation.call_failed(call, exc)
        # A stream closed from another context (the collection of an unfinished one): the reset is not ours to make.
        with contextlib.suppress(ValueError):
            CURRENT_TASK.reset(self.token)
        if call.trace is not None:  # a call nothing ended (a stream its consumer left, a cancellation) still ends
            self.observation.call_closed(call, exc)
