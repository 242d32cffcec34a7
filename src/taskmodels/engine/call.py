"""The state of one call in progress and of each of its attempts (``Try``): what was tried, what was skipped,
why; and the errors that end the call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from taskmodels.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ContextLengthExceededError,
    DeadlineExceededError,
    ProviderError,
    TaskModelsError,
)
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import Attempt

from .plan import CallPlan

if TYPE_CHECKING:
    from taskmodels.output import OutputRun


__all__ = ["CallState", "Cut", "describe_attempts"]

Cut = Literal["deadline", "share"] | None


class CallState:
    """Mutable companion of a frozen ``CallPlan``: the loop writes here, nowhere else."""

    __slots__ = (
        "attempts",
        "budget_refused",
        "errors",
        "last_error",
        "min_context",
        "open_breakers",
        "output",
        "plan",
        "reported_tokens",
        "skipped",
        "tenant",
        "trace",
        "tries",
    )

    def __init__(self, plan: CallPlan, tenant: str | None = None) -> None:
        self.plan = plan
        self.tenant = tenant  # whom the call is for: tenant-scoped budgets and totals
        self.attempts: list[Attempt] = []
        self.errors: list[TaskModelsError] = []  # what the attempts and skips raised, in order
        self.skipped: list[tuple[str, str]] = list(plan.skipped)
        self.tries = 0  # attempts started, across models
        self.min_context = 0  # after a context-length error: only models whose window is larger than this
        self.reported_tokens = 0  # the prompt's size in tokens, as the provider that refused it reported
        self.open_breakers: list[tuple[float, int, ModelConfig]] = []  # (retry_at, order, model)
        self.budget_refused: tuple[float, float] | None = None  # (spent, limit) of the last refusal
        self.last_error: ProviderError | None = None
        self.trace: object | None = None  # the tracer's handle (engine/observe.py), when one is attached
        self.output: OutputRun | None = None  # a typed answer (or a response_format) asked per model, validated

    @property
    def task(self) -> str:
        return self.plan.task

    def attempts_made(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "skipped")

    def skip(
        self,
        model: ModelConfig,
        kind: str,
        reason: str,
        error: TaskModelsError | None = None,
        *,
        deployment_id: str | None = None,
    ) -> None:
        self.skipped.append((model.id, reason))
        self.attempts.append(Attempt(model.id, model.provider, "skipped", 0.0, kind, reason, None, 0, deployment_id))
        if error is not None:
            self.errors.append(error)

    def needs_larger_context(self, model: ModelConfig, error: ProviderError) -> None:
        """After a context-length error: from now on only models that can hold the request.

        The size the provider reported, plus the output the request asks for, when it said one;
        otherwise any window larger than the refusing model's. Either way, never the same model again.
        """
        self.min_context = max(self.min_context, model.context_window)
        if isinstance(error, ContextLengthExceededError) and error.requested_tokens:
            self.reported_tokens = max(self.reported_tokens, error.requested_tokens)

    def context_too_small(self, model: ModelConfig) -> str | None:
        """Why ``model`` cannot hold this call's request after a context-length error, or ``None`` if it can."""
        if self.reported_tokens:
            needed = self.reported_tokens + (self.plan.request.max_tokens or model.max_tokens)
            if model.context_window < needed:
                return f"context window {model.context_window} < {needed} tokens the provider reported needed"
            return None
        if model.context_window <= self.min_context:
            return f"context window {model.context_window} is not larger than {self.min_context}"
        return None

    def deadline_error(self, elapsed: float) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"task {self.task!r}: the call's deadline passed after {elapsed:.3g}s and "
            f"{self.attempts_made()} attempt(s){describe_attempts(self.attempts)}",
            task=self.task,
            attempts=self.attempts,
        )

    def budget_error(self, model: ModelConfig, spent: float, estimate: float) -> BudgetExceededError:
        """The budget refused the next attempt, and the task asks for an error then (``onExceeded: error``)."""
        budget = self.plan.policy.budget
        limit = budget.limit if budget is not None else 0.0
        window = budget.window_seconds if budget is not None else 0.0
        whose = f" for tenant {self.tenant!r}" if budget is not None and budget.scope == "tenant" else ""
        return BudgetExceededError(
            f"task {self.task!r} reached its budget{whose}: {spent:.6g} of {limit:.6g} spent "
            f"in this {window:g}s window; {model.id!r} would cost about {estimate:.6g}",
            task=self.task,
            spent=spent,
            limit=limit,
        )

    def exhausted_error(self) -> TaskModelsError:
        """The error that ends a call whose every candidate failed or was skipped."""
        if not self.attempts_made() and self.budget_refused is not None:
            spent, limit = self.budget_refused
            return BudgetExceededError(
                f"task {self.task!r} reached its budget ({spent:.6g} of {limit:.6g}) and no cheaper candidate fits",
                task=self.task,
                spent=spent,
                limit=limit,
            )
        error = AllModelsFailedError(
            f"task {self.task!r}: every model failed{describe_attempts(self.attempts)}",
            task=self.task,
            attempts=self.attempts,
            skipped=self.skipped,
            errors=self.errors,
        )
        error.__cause__ = self.last_error
        return error


def describe_attempts(attempts: Sequence[Attempt]) -> str:
    """One line per attempt, for error messages."""
    if not attempts:
        return ""
    lines = []
    for a in attempts:
        status = f" status={a.status_code}" if a.status_code is not None else ""
        what = "ok" if a.outcome == "success" else f"{a.error_class}{status}: {a.error_message}"
        tag = "skipped" if a.outcome == "skipped" else f"try {a.number}"
        name = f"{a.model_id}/{a.deployment_id}" if a.deployment_id else a.model_id
        lines.append(f"\n  {name} ({a.provider}, {tag}): {what}")
    return ":" + "".join(lines)
