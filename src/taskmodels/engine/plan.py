"""The call plan: every limit of one call, resolved once from request, task and settings, then frozen.

A limit is looked up in this order, the first that is set winning: the request,
the task's ``timeouts`` in the registry, then settings. Nothing in the loop looks
a limit up again, so a registry reload in the middle of a call cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from taskmodels.errors import NoEligibleModelError
from taskmodels.registry.schema import BudgetConfig, ModelConfig, TaskTimeouts
from taskmodels.sections import ResilienceSettings
from taskmodels.selection import Selection
from taskmodels.types import CompletionRequest

__all__ = ["CallPlan", "Operation", "make_plan"]

Operation = Literal["chat", "embeddings"]
"""Named as the OpenTelemetry GenAI conventions name operations (``gen_ai.operation.name``)."""


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What one call may do: its candidates in order, its time limits, its budget and its policies."""

    task: str
    operation: Operation
    request: CompletionRequest
    models: tuple[ModelConfig, ...]
    skipped: tuple[tuple[str, str], ...]  # (model id, reason) of the models selection left out
    started: float  # on the engine's monotonic clock
    deadline_at: float
    attempt_timeout: float
    first_token_timeout: float
    stall_timeout: float
    prompt_tokens: int  # the selection's upper-bound estimate, used for budget reservations
    budget: BudgetConfig | None
    stream_policy: Literal["restart", "error"]
    fallback_on_content_filter: bool
    max_attempts_per_model: int
    max_attempts_total: int
    fallback_reserve: float  # share of the remaining deadline an attempt leaves to the candidates after it

    def remaining(self, now: float) -> float:
        return self.deadline_at - now


def make_plan(
    selection: Selection,
    request: CompletionRequest,
    settings: ResilienceSettings,
    *,
    now: float,
    operation: Operation = "chat",
) -> CallPlan:
    """Resolve the plan of one call; raises ``NoEligibleModelError`` when selection left no model."""
    task = selection.task
    skipped = tuple((s.model_id, s.reason) for s in selection.skipped)
    if not selection.models:
        raise NoEligibleModelError(task=task, skipped=skipped)
    mapping = selection.registry.tasks_by_name.get(task)
    timeouts = mapping.timeouts if mapping is not None else None
    stream_policy = mapping.stream_policy if mapping is not None else None
    filter_fallback = mapping.fallback_on_content_filter if mapping is not None else None
    return CallPlan(
        task=task,
        operation=operation,
        request=request,
        models=selection.models,
        skipped=skipped,
        started=now,
        deadline_at=now + _first(request.deadline, timeouts, "deadline", settings.deadline),
        attempt_timeout=_first(request.attempt_timeout, timeouts, "attempt_timeout", settings.attempt_timeout),
        first_token_timeout=_first(
            request.first_token_timeout, timeouts, "first_token_timeout", settings.first_token_timeout
        ),
        stall_timeout=_first(request.stall_timeout, timeouts, "stall_timeout", settings.stall_timeout),
        prompt_tokens=selection.prompt_tokens,
        budget=mapping.budget if mapping is not None else None,
        stream_policy=stream_policy or settings.stream_policy,
        fallback_on_content_filter=(
            settings.fallback_on_content_filter if filter_fallback is None else filter_fallback
        ),
        max_attempts_per_model=settings.max_attempts_per_model,
        max_attempts_total=settings.max_attempts_total,
        fallback_reserve=settings.fallback_reserve,
    )


def _first(
    requested: float | None,
    timeouts: TaskTimeouts | None,
    name: Literal["deadline", "attempt_timeout", "first_token_timeout", "stall_timeout"],
    default: float,
) -> float:
    if requested:
        return requested
    if timeouts is not None:
        value: float | None = getattr(timeouts, name)
        if value:
            return value
    return default
