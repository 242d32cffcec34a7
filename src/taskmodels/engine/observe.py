"""Observation: what the engine reports about calls and attempts — logs, running totals, and traces.

The loop calls these hooks at fixed points and never looks at what they do. Logging
costs nothing when its level is off (``LibraryLogger.enabled``); a tracer is called
only when one is attached (``Observation.tracer``), so without one the call path does
no tracing work at all.

Events, all named ``taskmodels.<area>.<event>``:

- ``taskmodels.call.attempt``   one per attempt: INFO when it failed (routine in a chain) or lost a hedge's race,
                                DEBUG when it answered
- ``taskmodels.call.finished``  one per call: INFO when it answered, WARNING when it failed
- ``taskmodels.breaker.opened`` WARNING: a model's circuit opened
- ``taskmodels.model.unusable`` WARNING, once per model per process: a model cannot be built (no key, no endpoint)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from taskmodels.errors import NoEligibleModelError, TaskModelsError
from taskmodels.log import DEBUG, INFO, WARNING, library_logger
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.resilience.accounting import Accounting
from taskmodels.types import Attempt, CompletionResult

from .attempt import Try
from .call import CallState
from .plan import CallPlan, Operation

__all__ = ["CallTracer", "Observation"]


class CallTracer(Protocol):
    """Where tracing attaches (``taskmodels.telemetry.OpenTelemetryTracer``, say).

    The engine calls these only when a tracer is attached. ``call_started`` returns the call's handle, which
    the engine keeps in ``CallState.trace``; ``attempt_started`` returns the attempt's handle, kept on the
    attempt and passed back to ``first_chunk`` and ``attempt_ended``. ``call_ended`` may come more than once
    for one call (the last time from the service's ``finally``, for a stream its consumer abandoned or a
    cancelled call) and ends whatever attempt is still open. A hedged call's attempts race in tasks of their
    own: each is started in its task as its request goes out (``attempt_started``, then ``attempt_running``),
    and one that lost the race ends through ``attempt_cancelled``, with what it was charged.

    Optional: ``attempt_streams(attempt)``, called as an attempt's request goes out as a stream (a stream's, or a
    completion read as one), before its first chunk; ``embedding_inputs(call, texts)``, an embedding call's texts,
    before its first attempt.
    """

    def call_started(self, call: CallState, *, streaming: bool) -> Any: ...

    def attempt_started(self, call: CallState, model: ModelConfig, provider: ModelPort, number: int) -> Any: ...

    def attempt_running(self, attempt: Any) -> None:
        """A hedged attempt's request starts, in a task of its own that races others: the tracer may make the
        attempt current here, in that task's context, never in the caller's (which would be left to undo racing
        tries' changes in whatever order they end). Called in that task, right after ``attempt_started``."""
        ...

    def first_chunk(self, attempt: Any) -> None: ...

    def attempt_ended(
        self, call: CallState, attempt: Any, record: Attempt, result: CompletionResult | None
    ) -> None: ...

    def attempt_cancelled(self, call: CallState, attempt: Any, record: Attempt, cost: float) -> None: ...

    def call_ended(self, call: CallState, result: CompletionResult | None, error: BaseException | None) -> None: ...


class Observation:
    """Logs and running totals for every call; a ``CallTracer`` when one is attached."""

    __slots__ = ("_clock", "_log", "_unusable", "_unusable_lock", "accounting", "tracer")

    def __init__(self, clock: Callable[[], float], tracer: CallTracer | None = None) -> None:
        self.accounting = Accounting()
        self.tracer = tracer
        self._clock = clock
        self._log = library_logger("call")
        self._unusable: set[str] = set()
        self._unusable_lock = threading.Lock()

    def succeeded(self, call: CallState, attempt: Attempt, result: CompletionResult, trace: Any = None) -> None:
        usage = result.usage
        self.accounting.answered(call.task, attempt.model_id, usage, result.cost, call.tenant)
        if call.trace is not None and (tracer := self.tracer) is not None:
            tracer.attempt_ended(call, trace, attempt, result)
            tracer.call_ended(call, result, None)
        log = self._log
        if (logger := log.enabled(INFO)) is None:
            return
        if log.also(DEBUG):
            self._attempt_event(logger.debug, call, attempt, result)
        logger.info(
            "taskmodels.call.finished",
            task=call.task,
            model_id=attempt.model_id,
            provider=attempt.provider,
            outcome="success",
            attempts=len(result.attempts),
            latency=self._clock() - call.plan.started,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=result.cost,
        )

    def attempt_failed(self, call: CallState, attempt: Attempt, *, breaker_opened: bool, trace: Any = None) -> None:
        self.accounting.failed_attempt(call.task, attempt.model_id)
        if trace is not None and (tracer := self.tracer) is not None:
            tracer.attempt_ended(call, trace, attempt, None)
        if (logger := self._log.enabled(INFO)) is not None:
            self._attempt_event(logger.info, call, attempt, None)
        if breaker_opened and (logger := self._log.enabled(WARNING)) is not None:
            logger.warning(
                "taskmodels.breaker.opened",
                task=call.task,
                model_id=attempt.model_id,
                provider=attempt.provider,
                error_class=attempt.error_class,
                status_code=attempt.status_code,
            )

    def attempt_cancelled(self, call: CallState, attempt: Attempt, cost: float, trace: Any = None) -> None:
        """A hedged request cancelled because another answered first (or the call ended): ``cost`` is what it
        was charged."""
        self.accounting.cancelled_attempt(call.task, attempt.model_id, cost)
        if trace is not None and (tracer := self.tracer) is not None:
            tracer.attempt_cancelled(call, trace, attempt, cost)
        if (logger := self._log.enabled(INFO)) is not None:
            self._attempt_event(logger.info, call, attempt, None)

    def call_failed(self, call: CallState, error: TaskModelsError) -> None:
        self.accounting.failed_call(call.task, call.tenant)
        if call.trace is not None and (tracer := self.tracer) is not None:
            tracer.call_ended(call, None, error)
        if (logger := self._log.enabled(WARNING)) is not None:
            logger.warning(
                "taskmodels.call.finished",
                task=call.task,
                outcome="error",
                error_class=type(error).__name__,
                attempts=len(call.attempts),
                latency=self._clock() - call.plan.started,
            )

    def call_started(self, call: CallState, *, streaming: bool) -> None:
        """Open the call's trace; the service calls this only when a tracer is attached."""
        if (tracer := self.tracer) is not None:
            call.trace = tracer.call_started(call, streaming=streaming)

    def call_refused(self, task: str, operation: Operation, error: BaseException, *, streaming: bool) -> None:
        """A call that failed before it could be planned (a bad request, an unknown task, no eligible model):
        traced as a call span in error, with no attempt and the skips the error names. The service calls this only
        when a tracer is attached; nothing is counted, as no call was made."""
        tracer = self.tracer
        if tracer is None:
            return
        now = self._clock()
        skipped = error.skipped if isinstance(error, NoEligibleModelError) else ()
        call = CallState(CallPlan.refused(task, operation, skipped, now))
        call.trace = tracer.call_started(call, streaming=streaming)
        if call.trace is not None:
            tracer.call_ended(call, None, error)

    def embedding_inputs(self, call: CallState, texts: Sequence[str]) -> None:
        """An embedding call's texts, given once its call is planned and before its first attempt, for a tracer
        that records them (``embedding_inputs``: the texts are not in the call's plan)."""
        if call.trace is None or (tracer := self.tracer) is None:
            return
        given = getattr(tracer, "embedding_inputs", None)  # optional, as attempt_streams
        if given is not None:
            given(call, texts)

    def attempt_started(self, call: CallState, model: ModelConfig, provider: ModelPort, number: int) -> Any:
        """The attempt's trace handle; the loop calls this only for a call with a trace."""
        tracer = self.tracer
        return None if tracer is None else tracer.attempt_started(call, model, provider, number)

    def try_running(self, call: CallState, attempt: Try) -> None:
        """A hedged try's request goes out, in the task of its own it runs in: its attempt is traced from here, so
        a try cancelled before it ran (it sent nothing) has no span. Called only for a call with a trace."""
        if (tracer := self.tracer) is None:
            return
        attempt.trace = handle = tracer.attempt_started(call, attempt.config, attempt.provider, attempt.number)
        tracer.attempt_running(handle)

    def first_chunk_hook(self, trace: Any) -> Callable[[], None] | None:
        """What a stream attempt calls when its first event arrives: ``None`` without a trace. Asked for as the
        attempt's request goes out as a stream, so a tracer with ``attempt_streams`` is told it streams."""
        tracer = self.tracer
        if trace is None or tracer is None:
            return None
        streams = getattr(tracer, "attempt_streams", None)  # optional: a tracer may not record it
        if streams is not None:
            streams(trace)
        return functools.partial(tracer.first_chunk, trace)

    def call_closed(self, call: CallState, leaving: BaseException | None = None) -> None:
        """The service's last word on a traced call: ends its trace if nothing did. The service calls this only
        when ``call.trace`` is set, with the exception the call is leaving with, if any.

        A call nothing ended is leaving with an exception that is no ``TaskModelsError`` (those end it through
        ``call_failed``, an answer through ``succeeded``): an ``Exception`` ends it in error; a cancellation or a
        stream its consumer closed (``CancelledError``, ``GeneratorExit``: no ``Exception``) leaves it abandoned."""
        if (tracer := self.tracer) is not None:
            tracer.call_ended(call, None, leaving if isinstance(leaving, Exception) else None)

    def model_unusable(self, model: ModelConfig, error: TaskModelsError) -> None:
        """A model this process cannot build: said once, since every call would say it again."""
        with self._unusable_lock:
            if model.id in self._unusable:
                return
            self._unusable.add(model.id)
        if (logger := self._log.enabled(WARNING)) is not None:
            logger.warning(
                "taskmodels.model.unusable",
                model_id=model.id,
                provider=model.provider,
                error_class=type(error).__name__,
                reason=str(error),
            )

    @staticmethod
    def _attempt_event(
        method: Callable[..., Any], call: CallState, attempt: Attempt, result: CompletionResult | None
    ) -> None:
        usage = result.usage if result is not None else None
        method(
            "taskmodels.call.attempt",
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
            cost=result.cost if result is not None else 0.0,
        )
