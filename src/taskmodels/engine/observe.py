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

import threading
from collections.abc import Callable
from typing import Any, Protocol

from taskmodels.errors import ProviderError, TaskModelsError
from taskmodels.log import DEBUG, INFO, WARNING, library_logger
from taskmodels.registry.schema import ModelConfig
from taskmodels.resilience.accounting import Accounting
from taskmodels.types import Attempt, CompletionResult

from .call import CallState

__all__ = ["CallTracer", "Observation"]


class CallTracer(Protocol):
    """Where tracing attaches (OpenTelemetry, say). Handles are whatever the tracer returns: spans, usually."""

    def call_started(self, call: CallState) -> Any: ...

    def attempt_started(self, call: CallState, call_handle: Any, model: ModelConfig, number: int) -> Any: ...

    def attempt_ended(
        self, handle: Any, attempt: Attempt, result: CompletionResult | None, error: ProviderError | None
    ) -> None: ...

    def call_ended(
        self, call: CallState, handle: Any, result: CompletionResult | None, error: TaskModelsError | None
    ) -> None: ...


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

    def succeeded(self, call: CallState, attempt: Attempt, result: CompletionResult) -> None:
        usage = result.usage
        self.accounting.answered(call.task, attempt.model_id, usage, result.cost)
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

    def attempt_failed(self, call: CallState, attempt: Attempt, *, breaker_opened: bool) -> None:
        self.accounting.failed_attempt(call.task, attempt.model_id)
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

    def attempt_cancelled(self, call: CallState, attempt: Attempt, cost: float) -> None:
        """A hedged request cancelled because another answered first (or the call ended): ``cost`` is what it
        was charged."""
        self.accounting.cancelled_attempt(call.task, attempt.model_id, cost)
        if (logger := self._log.enabled(INFO)) is not None:
            self._attempt_event(logger.info, call, attempt, None)

    def call_failed(self, call: CallState, error: TaskModelsError) -> None:
        self.accounting.failed_call(call.task)
        if (logger := self._log.enabled(WARNING)) is not None:
            logger.warning(
                "taskmodels.call.finished",
                task=call.task,
                outcome="error",
                error_class=type(error).__name__,
                attempts=len(call.attempts),
                latency=self._clock() - call.plan.started,
            )

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
