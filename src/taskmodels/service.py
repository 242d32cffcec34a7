"""``ModelService``: get an answer for a task from the first model that can give one.

The loop, for one call::

    selection = selector.candidates(task, request)         one registry snapshot, ordered chain
    for model in selection.models:
        breaker closed (or cooled down)? budget reserved?   else skip to the next model
        try the model, bounded by the attempt timeout and the call's deadline
        on error, policy.rule_for(error) decides: retry the same model after a
        delay, move to the next model (only a larger context window after a
        context-length error), or raise at once

Decisions worth knowing (the README repeats them):

- One deadline (request, else the task's ``timeouts.deadline``, else settings)
  covers every attempt, backoff sleep and fallback; when it passes the call
  raises ``DeadlineExceededError`` with the attempts made so far. A backoff that
  would outlast it is not slept: the loop moves on instead.
- An exception from a provider that is not a ``ProviderError`` is a bug in that
  provider; it is treated as an ``InvalidResponseError`` attempt failure (the
  original is kept as ``__cause__``) so that the chain goes on and nothing raw
  reaches the caller.
- When the chain ends, ``AllModelsFailedError`` lists each attempt; its
  ``__cause__`` is the last provider error.
- When every candidate's breaker is open, the one whose ``retry_at`` is soonest
  is tried anyway rather than failing without a call.
- A ``StateStore`` that fails never fails a call: the breaker allows, the budget
  accepts, and one warning is logged when the store is lost.
- The sync facade (``service.sync``) runs calls on one background event-loop
  thread; calling it from a thread that runs an event loop raises
  ``RuntimeError`` (it would block that loop), so use the async API there.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, TypeVar, cast

import structlog

from taskmodels.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    DeadlineExceededError,
    FirstTokenTimeoutError,
    InvalidResponseError,
    NoEligibleModelError,
    ProviderError,
    ProviderTimeoutError,
    TaskModelsError,
)
from taskmodels.log import REDACTED
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.schema import BudgetConfig, ModelConfig, TaskMapping
from taskmodels.registry.service import ModelRegistryService, Registry
from taskmodels.resilience.accounting import Accounting
from taskmodels.resilience.breaker import CircuitBreaker
from taskmodels.resilience.policy import Next, retry_delay, rule_for
from taskmodels.resilience.state import StateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.types import (
    Attempt,
    CompletionRequest,
    CompletionResult,
    EmbeddingResult,
    StreamEvent,
    ToolCall,
    Usage,
)

__all__ = ["ModelService", "SyncModelService"]

_T = TypeVar("_T")
_REQUEST_FIELDS = frozenset(f.name for f in fields(CompletionRequest))
_DEBUG, _INFO, _WARNING = 10, 20, 30


class _Skip(Protocol):
    model_id: str
    reason: str


class _Selection(Protocol):
    @property
    def models(self) -> Sequence[ModelConfig]: ...
    @property
    def skipped(self) -> Sequence[_Skip]: ...
    @property
    def registry(self) -> Registry: ...


class _Selector(Protocol):
    def candidates(self, task: str, request: CompletionRequest | None = None) -> _Selection: ...


def coerce_request(request: CompletionRequest | str | None, fields_: dict[str, Any]) -> CompletionRequest:
    """A ``CompletionRequest`` from one, from a prompt string, or from its fields."""
    if fields_:
        unknown = fields_.keys() - _REQUEST_FIELDS
        if unknown:
            names = ", ".join(sorted(unknown))
            raise TypeError(
                f"unknown CompletionRequest field(s): {names}; known fields: {', '.join(sorted(_REQUEST_FIELDS))}"
            )
    if request is None:
        return CompletionRequest(**fields_)
    if isinstance(request, str):
        return CompletionRequest(prompt=request, **fields_)
    if not isinstance(request, CompletionRequest):
        raise TypeError(f"request must be a CompletionRequest, a prompt string or None, not {type(request).__name__}")
    return replace(request, **fields_) if fields_ else request


class _Log:
    """structlog, looked up cheaply: the bound logger is rebuilt only when structlog's configuration changes."""

    __slots__ = ("_check", "_key", "_logger")

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._logger: Any = None
        self._check: Callable[[int], bool] | None = None

    def enabled(self, level: int) -> Any:
        """The logger when ``level`` is enabled, else ``None``; no other logging work happens when it is off."""
        if level < _WARNING and not structlog.is_configured():
            # An application that never configured structlog would get every call printed
            # to stdout; like stdlib logging's default, only warnings are shown then.
            return None
        cfg = structlog.get_config()
        key = (cfg["wrapper_class"], cfg["logger_factory"], cfg["processors"])
        if key != self._key:
            self._logger = logger = structlog.get_logger("taskmodels").bind()
            self._check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
            self._key = key
        check = self._check
        if check is not None and not check(level):
            return None
        return self._logger

    def also(self, level: int) -> bool:
        """Whether ``level`` is enabled too, right after ``enabled`` (no new configuration lookup)."""
        check = self._check
        return check is None or check(level)


@dataclass(slots=True)
class _Call:
    """The state of one call: its limits, what was tried and what was skipped."""

    task: str
    request: CompletionRequest
    mapping: TaskMapping | None
    started: float
    deadline_at: float
    attempt_timeout: float
    first_token_timeout: float
    stall_timeout: float
    prompt_tokens: int
    budget: BudgetConfig | None
    attempts: list[Attempt]
    skipped: list[tuple[str, str]]
    total: int = 0
    min_context: int = 0  # after a context-length error: only larger windows
    open_models: list[tuple[float, int, ModelConfig]] | None = None  # (retry_at, order, model) of open breakers
    budget_refused: tuple[float, float] | None = None  # (spent, limit) of the last refusal
    last_error: ProviderError | None = None
    deadline_hit: bool = False  # the last timeout was the deadline's, not the model's
    models: Sequence[ModelConfig] = ()

    def remaining(self, now: float) -> float:
        return self.deadline_at - now

    def attempts_made(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "skipped")


class ModelService:
    """Completions, streams and embeddings for tasks, with retries, fallbacks, one deadline, breakers and budgets."""

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
    ) -> None:
        self.registry = registry
        self.selector = selector
        self.provider_factory = provider_factory
        self.state_store = state_store
        self.resilience = settings = resilience or ResilienceSettings()
        self.breaker = CircuitBreaker(
            state_store,
            threshold=settings.breaker_failure_threshold,
            cooldown=settings.breaker_cooldown,
            clock=wall_clock,
        )
        self.accounting = Accounting()
        self._candidates = cast(_Selector, selector).candidates
        self._provider_for = provider_factory.create_provider_for_model
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rand = rand
        self._log = _Log()
        self._sync: SyncModelService | None = None
        self._sync_lock = threading.Lock()

    # --- public API ---------------------------------------------------------------------

    async def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, **fields: Any
    ) -> CompletionResult:
        """The answer of the first model of the task's chain that gives one.

        ``request`` is a ``CompletionRequest``, a prompt string, or omitted; keyword
        ``fields`` set (or override) ``CompletionRequest`` fields. Raises
        ``AllModelsFailedError``, ``DeadlineExceededError``, ``BudgetExceededError``,
        a ``SelectionError``, or a ``ProviderError`` that no other model can fix
        (a bad request, a content filter the task does not fall back on).
        """
        call = self._start(task, coerce_request(request, fields))
        result = await self._run_chain(call, self.resilience.stream_under_the_hood, None)
        return cast(CompletionResult, result)

    async def embed_with_task_model(self, task: str, texts: Sequence[str]) -> EmbeddingResult:
        """Embeddings of ``texts`` from the task's chain, with the same fallback policy as completions."""
        call = self._start(task, CompletionRequest())
        result = await self._run_chain(call, False, list(texts))
        return cast(EmbeddingResult, result)

    async def _run_chain(
        self, call: _Call, streamed: bool, embed: list[str] | None
    ) -> CompletionResult | EmbeddingResult:
        """Each candidate in turn, then the open breaker that closes soonest, until one answers."""
        try:
            for model in call.models:
                result = await self._serve_model(call, model, streamed, embed=embed)
                if result is not None:
                    return result
                if call.total >= self.resilience.max_attempts_total:
                    break
            forced = self._soonest_open(call)
            if forced is not None:
                result = await self._serve_model(call, forced, streamed, embed=embed, force=True)
                if result is not None:
                    return result
            raise self._exhausted(call)
        except TaskModelsError as exc:
            self._failed_call(call, exc)
            raise

    async def stream_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, **fields: Any
    ) -> AsyncIterator[StreamEvent]:
        """The answer as events: ``text`` and ``tool_call`` events, then one ``done`` event with the ``result``.

        Before the first event reaches the caller the service falls back freely.
        After that, the task's ``stream_policy`` decides: ``restart`` sends a
        ``restart`` event (discard what you got; ``model_id`` names the next model)
        and streams the next answer from its start; ``error`` raises. A stream that
        is cut, stalls or sends a malformed event never ends in ``done``.
        """
        req = coerce_request(request, fields)
        call = self._start(task, req)
        policy = (call.mapping.stream_policy if call.mapping is not None else None) or self.resilience.stream_policy
        sent = False
        try:
            queue = list(call.models)
            index = 0
            forced_done = False
            while True:
                if index < len(queue):
                    model = queue[index]
                    index += 1
                    force = False
                else:
                    if forced_done:
                        break
                    forced_done = True
                    soonest = self._soonest_open(call)
                    if soonest is None:
                        break
                    model, force = soonest, True
                if not await self._admit(call, model, force):
                    continue
                provider = self._provider(call, model)
                if provider is None:
                    continue
                number = 0
                while True:
                    number += 1
                    call.total += 1
                    if sent:
                        yield StreamEvent(type="restart", model_id=model.id, model_name=model.model_name)
                        sent = False
                    estimate = await self._reserve(call, model)
                    if estimate is None:
                        break
                    started = self._clock()
                    sent_now = False
                    texts: list[str] = []
                    tools: list[ToolCall] = []
                    try:
                        async with aclosing(self._open_stream(call, provider)) as events:
                            async for event in events:
                                kind = event.type
                                if kind == "done":
                                    result = self._assemble(model, event, texts, tools)
                                    final = await self._succeeded(
                                        call, model, result, number=number, started=started, estimate=estimate
                                    )
                                    yield StreamEvent(
                                        type="done",
                                        finish_reason=final.finish_reason,
                                        usage=final.usage,
                                        model_id=model.id,
                                        model_name=model.model_name,
                                        request_id=final.request_id,
                                        result=final,
                                    )
                                    return
                                if kind == "text":
                                    texts.append(event.text)
                                elif kind == "tool_call" and event.tool_call is not None:
                                    tools.append(event.tool_call)
                                sent = sent_now = True
                                yield event
                    except ProviderError as exc:
                        if sent_now and policy == "error":
                            await self._record_failure(
                                call, model, exc, number=number, started=started, estimate=estimate
                            )
                            exc.task = task
                            raise
                        delay = await self._failed(call, model, exc, number=number, started=started, estimate=estimate)
                        if delay is None:
                            break
                        await self._sleep(delay)
                        continue
                    except BaseException:
                        await self._give_back(call, estimate)
                        raise
                if call.total >= self.resilience.max_attempts_total:
                    break
            raise self._exhausted(call)
        except TaskModelsError as exc:
            self._failed_call(call, exc)
            raise

    def totals(self) -> dict[str, dict[str, dict[str, int | float]]]:
        """Calls, attempts, tokens and cost so far, per task (``tasks``) and per model (``models``), in this process."""
        return self.accounting.snapshot()

    async def health(self) -> dict[str, Any]:
        """Each registry model's breaker: ``state`` (closed, open, half_open), failures and ``retry_at``."""
        snapshots = await self.breaker.snapshots()
        out: dict[str, Any] = {}
        for model_id in self.registry.current.models_by_id:
            snap = snapshots.get(model_id) or await self.breaker.snapshot(model_id)
            out[model_id] = {
                "state": snap.state,
                "consecutive_failures": snap.consecutive_failures,
                "retry_at": snap.retry_at,
            }
        return {"models": out}

    @property
    def sync(self) -> SyncModelService:
        """A blocking facade over this service, running on its own background event-loop thread."""
        if self._sync is None:
            with self._sync_lock:
                if self._sync is None:
                    self._sync = SyncModelService(self)
        return self._sync

    # --- one call -------------------------------------------------------------------------

    def _start(self, task: str, request: CompletionRequest) -> _Call:
        selection = self._candidates(task, request)
        registry = selection.registry
        mapping = registry.tasks_by_name.get(task)
        settings = self.resilience
        timeouts = mapping.timeouts if mapping is not None else None
        deadline = request.deadline or (timeouts.deadline if timeouts else None) or settings.deadline
        now = self._clock()
        call = _Call(
            task=task,
            request=request,
            mapping=mapping,
            started=now,
            deadline_at=now + deadline,
            attempt_timeout=request.attempt_timeout
            or (timeouts.attempt_timeout if timeouts else None)
            or settings.attempt_timeout,
            first_token_timeout=request.first_token_timeout
            or (timeouts.first_token_timeout if timeouts else None)
            or settings.first_token_timeout,
            stall_timeout=request.stall_timeout
            or (timeouts.stall_timeout if timeouts else None)
            or settings.stall_timeout,
            prompt_tokens=getattr(selection, "prompt_tokens", 0),
            budget=mapping.budget if mapping is not None else None,
            attempts=[],
            skipped=[(s.model_id, s.reason) for s in selection.skipped] if selection.skipped else [],
        )
        if not selection.models:
            raise NoEligibleModelError(task=task, skipped=call.skipped)
        call.models = selection.models
        return call

    async def _serve_model(
        self,
        call: _Call,
        model: ModelConfig,
        streamed: bool,
        *,
        embed: list[str] | None = None,
        force: bool = False,
    ) -> CompletionResult | EmbeddingResult | None:
        """Try one model until it answers (the result) or the policy moves on (``None``)."""
        if not await self._admit(call, model, force):
            return None
        provider = self._provider(call, model)
        if provider is None:
            return None
        number = 0
        while True:
            number += 1
            call.total += 1
            estimate = await self._reserve(call, model)
            if estimate is None:
                return None
            started = self._clock()
            try:
                if embed is not None:
                    emb = await self._bounded(call, provider.embed(embed))
                    return await self._embedded(call, model, emb, number=number, started=started, estimate=estimate)
                if streamed:
                    result = await self._bounded(call, self._collect(call, model, provider))
                else:
                    result = await self._bounded(call, provider.complete(call.request))
            except ProviderError as exc:
                delay = await self._failed(call, model, exc, number=number, started=started, estimate=estimate)
                if delay is None:
                    return None
                await self._sleep(delay)
                continue
            except BaseException:
                await self._give_back(call, estimate)
                raise
            return await self._succeeded(call, model, result, number=number, started=started, estimate=estimate)

    async def _bounded(self, call: _Call, work: Coroutine[Any, Any, _T]) -> _T:
        """Run one attempt within the attempt timeout and what is left of the deadline."""
        remaining = call.remaining(self._clock())
        if remaining <= 0:
            work.close()
            raise self._deadline(call)
        limit = call.attempt_timeout
        by_deadline = remaining < limit
        if by_deadline:
            limit = remaining
        try:
            async with asyncio.timeout(limit) as scope:
                return await work
        except ProviderError:
            raise
        except TimeoutError:
            if not scope.expired():
                raise _wrap_unexpected(call, TimeoutError()) from None
            call.deadline_hit = by_deadline
            raise ProviderTimeoutError(
                f"no answer within {'the deadline' if by_deadline else 'the attempt timeout'} ({limit:.3g}s)",
                provider="",
                model_id="",
            ) from None
        except Exception as exc:  # a provider bug: see the module docstring
            raise _wrap_unexpected(call, exc) from exc

    async def _collect(self, call: _Call, model: ModelConfig, provider: BaseModelProvider) -> CompletionResult:
        texts: list[str] = []
        tools: list[ToolCall] = []
        async with aclosing(self._open_stream(call, provider)) as events:
            async for event in events:
                if event.type == "text":
                    texts.append(event.text)
                elif event.type == "tool_call" and event.tool_call is not None:
                    tools.append(event.tool_call)
                elif event.type == "done":
                    return self._assemble(model, event, texts, tools)
        raise InvalidResponseError(
            "the stream ended without its done event", provider=model.provider, model_id=model.id
        )

    async def _open_stream(self, call: _Call, provider: BaseModelProvider) -> AsyncGenerator[StreamEvent, None]:
        """The provider's stream within the call's limits: the first event within the first-token limit, the
        attempt timeout and the deadline; each later one within the stall limit; none after the deadline.

        Later events are not wrapped in a timeout of our own (that would cost a timer per chunk): the provider
        enforces the stall limit, clamped here to the deadline, and the deadline is checked between events.
        """
        remaining = call.remaining(self._clock())
        if remaining <= 0:
            raise self._deadline(call)
        first = min(call.first_token_timeout, call.attempt_timeout)
        first_by_deadline = remaining < first
        if first_by_deadline:
            first = remaining
        stall = call.stall_timeout
        stall_by_deadline = remaining < stall
        if stall_by_deadline:
            stall = remaining
        model = provider.model
        stream = provider.stream(call.request, first_token_timeout=first, stall_timeout=stall)
        try:
            try:
                # A provider that ignores its limits is still cut off: the first read is bounded here too.
                async with asyncio.timeout(first * 1.5 + 0.05):
                    event = await anext(stream)
            except StopAsyncIteration:
                raise InvalidResponseError(
                    "the stream ended before any event", provider=model.provider, model_id=model.id
                ) from None
            except TimeoutError:
                call.deadline_hit = first_by_deadline
                raise FirstTokenTimeoutError(
                    "no first token in time", provider=model.provider, model_id=model.id
                ) from None
            except ProviderError as exc:
                if first_by_deadline and isinstance(exc, ProviderTimeoutError):
                    call.deadline_hit = True
                raise
            except Exception as exc:
                raise _wrap_unexpected(call, exc) from exc
            yield event
            deadline_at = call.deadline_at
            clock = self._clock
            while True:
                try:
                    event = await anext(stream)
                except StopAsyncIteration:
                    return
                except ProviderError as exc:
                    if stall_by_deadline and isinstance(exc, ProviderTimeoutError):
                        call.deadline_hit = True
                    raise
                except Exception as exc:
                    raise _wrap_unexpected(call, exc) from exc
                if clock() > deadline_at:
                    raise self._deadline(call)
                yield event
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def _assemble(
        self, model: ModelConfig, done: StreamEvent, texts: list[str], tools: list[ToolCall]
    ) -> CompletionResult:
        return CompletionResult(
            text="".join(texts),
            model_id=model.id,
            provider=model.provider,
            model_name=done.model_name or model.model_name,
            usage=done.usage or Usage(),
            finish_reason=done.finish_reason or "stop",
            tool_calls=tuple(tools),
            request_id=done.request_id,
        )

    # --- admission: breaker, budget, provider ------------------------------------------

    async def _admit(self, call: _Call, model: ModelConfig, force: bool) -> bool:
        if model.context_window <= call.min_context:
            reason = f"context window {model.context_window} is not larger than {call.min_context}"
            self._skip(call, model, "ContextLengthExceededError", reason)
            return False
        if force:
            return True
        admission = await self.breaker.admit(model.id, probe_lease=call.attempt_timeout)
        if admission.allowed:
            return True
        retry_at = admission.retry_at if admission.retry_at is not None else 0.0
        if call.open_models is None:
            call.open_models = []
        call.open_models.append((retry_at, len(call.open_models), model))
        self._skip(call, model, "CircuitOpen", f"circuit open until {retry_at:.3f}")
        return False

    def _soonest_open(self, call: _Call) -> ModelConfig | None:
        """When every candidate's breaker was open (and nothing was tried), the one to close soonest."""
        if call.open_models is None or call.attempts_made():
            return None
        if call.remaining(self._clock()) <= 0:
            return None
        return min(call.open_models, key=lambda entry: (entry[0], entry[1]))[2]

    def _skip(self, call: _Call, model: ModelConfig, kind: str, reason: str) -> None:
        call.skipped.append((model.id, reason))
        call.attempts.append(Attempt(model.id, model.provider, "skipped", 0.0, kind, reason, None, 0))

    def _provider(self, call: _Call, model: ModelConfig) -> BaseModelProvider | None:
        try:
            return self._provider_for(model)
        except TaskModelsError as exc:
            # A model the registry names but this process cannot build (no base URL, missing module).
            self._skip(call, model, type(exc).__name__, str(exc))
            return None

    async def _reserve(self, call: _Call, model: ModelConfig) -> float | None:
        """Reserve the attempt's estimated cost against the task's budget: the estimate (0.0 without a
        budget), or ``None`` when the budget refuses and the task moves to cheaper candidates."""
        budget = call.budget
        if budget is None:
            return 0.0
        estimate = model.estimate_cost(call.prompt_tokens, call.request.max_tokens or model.max_tokens)
        try:
            decision = await self.state_store.reserve_spend(
                f"budget:{call.task}",
                estimate,
                limit=budget.limit,
                window=budget.window_seconds,
                now=self._wall_clock(),
            )
        except Exception as exc:
            self._store_error(exc, "reserve_spend")
            return 0.0  # nothing reserved, so nothing to settle
        if decision.accepted:
            return estimate
        call.total -= 1  # a refused reservation is not an attempt
        call.budget_refused = (decision.total, budget.limit)
        if budget.on_exceeded == "error":
            raise BudgetExceededError(
                f"task {call.task!r} reached its budget: {decision.total:.6g} of {budget.limit:.6g} spent "
                f"in this {budget.window_seconds:g}s window; {model.id!r} would cost about {estimate:.6g}",
                task=call.task,
                spent=decision.total,
                limit=budget.limit,
            )
        self._skip(call, model, "BudgetExceededError", f"estimated cost {estimate:.6g} does not fit the budget")
        return None

    async def _settle(self, call: _Call, amount: float) -> None:
        budget = call.budget
        if budget is None or amount == 0.0:
            return
        try:
            await self.state_store.add_spend(
                f"budget:{call.task}", amount, window=budget.window_seconds, now=self._wall_clock()
            )
        except Exception as exc:
            self._store_error(exc, "add_spend")

    async def _give_back(self, call: _Call, estimate: float | None) -> None:
        if estimate:
            await self._settle(call, -estimate)

    def _store_error(self, exc: Exception, operation: str) -> None:
        self.breaker._lost(exc, operation)

    # --- outcomes --------------------------------------------------------------------------

    async def _succeeded(
        self, call: _Call, model: ModelConfig, result: CompletionResult, *, number: int, started: float, estimate: float
    ) -> CompletionResult:
        latency = self._clock() - started
        cost = model.cost(result.usage)
        result.model_id = model.id
        result.provider = model.provider
        result.cost = cost
        attempt = Attempt(model.id, model.provider, "success", latency, None, None, None, number)
        if call.attempts:
            call.attempts.append(attempt)
            result.attempts = tuple(call.attempts)
        else:
            result.attempts = (attempt,)
        await self.breaker.record_success(model.id)
        if call.budget is not None:
            await self._settle(call, cost - estimate)
        self.accounting.answered(call.task, model.id, result.usage, cost)
        if (log := self._log.enabled(_INFO)) is not None:
            if self._log.also(_DEBUG):
                self._log_attempt(log, call, attempt, result.usage, cost)
            log.info(
                "taskmodels.call",
                task=call.task,
                model_id=model.id,
                provider=model.provider,
                outcome="success",
                attempts=len(result.attempts),
                latency=self._clock() - call.started,
                input_tokens=result.usage.input_tokens,
                output_tokens=result.usage.output_tokens,
                cost=cost,
            )
        return result

    async def _embedded(
        self, call: _Call, model: ModelConfig, result: EmbeddingResult, *, number: int, started: float, estimate: float
    ) -> EmbeddingResult:
        completion = CompletionResult("", model.id, model.provider, result.model_name, result.usage)
        done = await self._succeeded(call, model, completion, number=number, started=started, estimate=estimate)
        result.model_id = model.id
        result.provider = model.provider
        result.cost = done.cost
        result.attempts = done.attempts
        return result

    async def _record_failure(
        self,
        call: _Call,
        model: ModelConfig,
        error: ProviderError,
        *,
        number: int,
        started: float,
        estimate: float | None,
    ) -> bool:
        """Note a failed attempt: attempts list, breaker, budget give-back, totals, log.
        True when the failure left the model's breaker open (a failed probe, or the threshold reached)."""
        if not error.model_id:
            error.model_id = model.id
        if not error.provider:
            error.provider = model.provider
        error.task = call.task
        self._scrub(error, model)
        call.last_error = error
        attempt = Attempt(
            model.id,
            model.provider,
            "error",
            self._clock() - started,
            type(error).__name__,
            error.message,
            error.status_code,
            number,
        )
        call.attempts.append(attempt)
        rule = rule_for(error)
        if rule.counts_against_model and not call.deadline_hit:
            snapshot = await self.breaker.record_failure(model.id, trip=rule.trips_breaker)
            opened = snapshot is not None and snapshot.state != "closed"
        else:
            opened = False
        await self._give_back(call, estimate)
        self.accounting.failed_attempt(call.task, model.id)
        # A failed attempt is routine in a fallback chain (INFO); what needs a person is a call
        # that fails (the WARNING call event) or a model whose circuit opens (WARNING below).
        if (log := self._log.enabled(_INFO)) is not None:
            self._log_attempt(log, call, attempt, None, 0.0)
        if opened and (log := self._log.enabled(_WARNING)) is not None:
            log.warning(
                "taskmodels.circuit_open",
                task=call.task,
                model_id=model.id,
                provider=model.provider,
                error_class=attempt.error_class,
                status_code=attempt.status_code,
            )
        return opened

    async def _failed(
        self,
        call: _Call,
        model: ModelConfig,
        error: ProviderError,
        *,
        number: int,
        started: float,
        estimate: float | None,
    ) -> float | None:
        """Apply the policy after a failed attempt: seconds to wait before retrying the same model,
        ``None`` to move to the next one; raises when the error must reach the caller."""
        opened = await self._record_failure(call, model, error, number=number, started=started, estimate=estimate)
        if call.deadline_hit:
            raise self._deadline(call)
        rule = rule_for(error)
        if rule.next is Next.RAISE:
            raise error
        if rule.next is Next.IF_OPTED_IN and not self._falls_back_on_content_filter(call):
            raise error
        if rule.next is Next.LARGER_CONTEXT:
            call.min_context = max(call.min_context, model.context_window)
            return None
        settings = self.resilience
        if opened or number >= settings.max_attempts_per_model or call.total >= settings.max_attempts_total:
            return None  # an open breaker (a failed probe, say) is not retried within the call either
        delay = retry_delay(error, number, settings, self._rand)
        if delay is None or delay >= call.remaining(self._clock()):
            return None
        return delay

    def _scrub(self, error: ProviderError, model: ModelConfig) -> None:
        """Some servers quote the key they rejected in their error text: cut it out before the text
        reaches attempts, messages or logs."""
        try:
            key = self._provider_for(model).api_key_value()
        except Exception:
            return
        if not key or len(key) < 8:
            return
        if key in error.message:
            error.message = error.message.replace(key, REDACTED)
            error.args = (error.message,)
        if error.provider_message and key in error.provider_message:
            error.provider_message = error.provider_message.replace(key, REDACTED)

    def _falls_back_on_content_filter(self, call: _Call) -> bool:
        opt = call.mapping.fallback_on_content_filter if call.mapping is not None else None
        return self.resilience.fallback_on_content_filter if opt is None else opt

    def _deadline(self, call: _Call) -> DeadlineExceededError:
        elapsed = self._clock() - call.started
        return DeadlineExceededError(
            f"task {call.task!r}: the call's deadline passed after {elapsed:.3g}s and "
            f"{call.attempts_made()} attempt(s){_describe(call.attempts)}",
            task=call.task,
            attempts=call.attempts,
        )

    def _exhausted(self, call: _Call) -> TaskModelsError:
        if not call.attempts_made() and call.budget_refused is not None:
            spent, limit = call.budget_refused
            return BudgetExceededError(
                f"task {call.task!r} reached its budget ({spent:.6g} of {limit:.6g}) and no cheaper candidate fits",
                task=call.task,
                spent=spent,
                limit=limit,
            )
        error = AllModelsFailedError(
            f"task {call.task!r}: every model failed{_describe(call.attempts)}",
            task=call.task,
            attempts=call.attempts,
            skipped=call.skipped,
        )
        error.__cause__ = call.last_error
        return error

    def _failed_call(self, call: _Call, error: TaskModelsError) -> None:
        self.accounting.failed_call(call.task)
        if (log := self._log.enabled(_WARNING)) is not None:
            log.warning(
                "taskmodels.call",
                task=call.task,
                outcome="error",
                error_class=type(error).__name__,
                attempts=len(call.attempts),
                latency=self._clock() - call.started,
            )

    def _log_attempt(self, log: Any, call: _Call, attempt: Attempt, usage: Usage | None, cost: float) -> None:
        method = log.debug if attempt.outcome == "success" else log.info
        method(
            "taskmodels.attempt",
            task=call.task,
            model_id=attempt.model_id,
            provider=attempt.provider,
            attempt=attempt.number,
            outcome=attempt.outcome,
            error_class=attempt.error_class,
            status_code=attempt.status_code,
            latency=attempt.latency,
            input_tokens=usage.input_tokens if usage is not None else 0,
            output_tokens=usage.output_tokens if usage is not None else 0,
            cost=cost,
        )


def _wrap_unexpected(call: _Call, exc: BaseException) -> InvalidResponseError:
    return InvalidResponseError(
        f"the provider raised an unexpected {type(exc).__name__}", provider="", model_id="", task=call.task
    )


def _describe(attempts: Sequence[Attempt]) -> str:
    if not attempts:
        return ""
    lines = []
    for a in attempts:
        status = f" status={a.status_code}" if a.status_code is not None else ""
        what = "ok" if a.outcome == "success" else f"{a.error_class}{status}: {a.error_message}"
        tag = "skipped" if a.outcome == "skipped" else f"try {a.number}"
        lines.append(f"\n  {a.model_id} ({a.provider}, {tag}): {what}")
    return ":" + "".join(lines)


class SyncModelService:
    """A blocking facade: each call runs on one dedicated background event-loop thread.

    Never a nested loop: the service's coroutines run on the facade's own loop,
    so the HTTP client and the state store should be used through this facade
    only (an ``httpx2.AsyncClient`` belongs to the loop that first used it).
    Calling from a thread that already runs an event loop raises ``RuntimeError``:
    blocking there would freeze that loop; use the async API instead.
    """

    def __init__(self, service: ModelService) -> None:
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "the taskmodels sync facade was called from inside a running event loop; "
                "await the ModelService methods instead"
            )
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="taskmodels-sync", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            loop = self._ensure_loop()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, **fields: Any
    ) -> CompletionResult:
        req = coerce_request(request, fields)
        return self._run(self.service.complete_with_task_model(task, req))

    def embed_with_task_model(self, task: str, texts: Sequence[str]) -> EmbeddingResult:
        return self._run(self.service.embed_with_task_model(task, texts))

    def stream_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, **fields: Any
    ) -> Iterator[StreamEvent]:
        """The stream's events, one blocking step at a time on the background loop."""
        req = coerce_request(request, fields)
        stream = cast(AsyncGenerator[StreamEvent, None], self.service.stream_with_task_model(task, req))
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            if self._loop is not None and not self._loop.is_closed():
                asyncio.run_coroutine_threadsafe(stream.aclose(), self._loop).result()

    def health(self) -> dict[str, Any]:
        return self._run(self.service.health())

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run any coroutine on the facade's loop, where the service's HTTP client lives.

        A synchronous application shuts down with ``sync.run(container.aclose())``
        and then ``sync.close()``.
        """
        return self._run(coro)

    def totals(self) -> dict[str, dict[str, dict[str, int | float]]]:
        return self.service.totals()

    def close(self) -> None:
        """Stop the background loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


async def _next(stream: AsyncGenerator[StreamEvent, None]) -> StreamEvent:
    return await anext(stream)
