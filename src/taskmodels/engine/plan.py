"""The call plan: every limit of one call, resolved once from request, task and settings, then frozen.

A limit is looked up in this order, the first that is set winning: the request,
the task's ``timeouts`` in the registry, the model's ``timeouts`` (for the deadline:
the primary model's), then settings. What depends only on the task
(``TaskPolicy``) is resolved once per registry snapshot and reused by every call of
the task; a call adds its own overrides, if any. Nothing in the loop looks a limit up
again, so a registry reload in the middle of a call cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from taskmodels.errors import NoEligibleModelError
from taskmodels.registry.schema import BudgetConfig, HedgeConfig, ModelConfig, RoutingStrategy, TaskTimeouts
from taskmodels.registry.service import Registry
from taskmodels.sections import ResilienceSettings
from taskmodels.selection import Selection, image_tokens
from taskmodels.types import CompletionRequest

__all__ = ["CallPlan", "LimitName", "Operation", "Planner", "TaskPolicy"]

LimitName = Literal["deadline", "attempt_timeout", "first_token_timeout", "stall_timeout"]
_LIMITS: tuple[LimitName, ...] = ("deadline", "attempt_timeout", "first_token_timeout", "stall_timeout")

Operation = Literal["chat", "embeddings"]
"""Named as the OpenTelemetry GenAI conventions name operations (``gen_ai.operation.name``)."""


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """Limits and policies of one task: settings, overridden by the task's registry entry."""

    deadline: float
    attempt_timeout: float
    first_token_timeout: float
    stall_timeout: float
    budget: BudgetConfig | None
    stream_policy: Literal["restart", "error"]
    fallback_on_content_filter: bool
    max_attempts_per_model: int
    max_attempts_total: int
    fallback_reserve: float  # share of the remaining deadline an attempt leaves to the candidates after it
    fixed: frozenset[str] = frozenset()  # limits the task or the request set: a model's own do not replace them
    routing: RoutingStrategy | None = None  # the task's choice among a model's deployments; None: the model's
    hedge: HedgeConfig | None = None  # the task's hedged requests (engine/hedge.py); None: one attempt at a time

    def limit(self, model: ModelConfig, name: LimitName) -> float:
        """The ``name`` limit for an attempt on ``model``."""
        own = model.timeouts
        if own is not None and name not in self.fixed:
            value: float | None = getattr(own, name)
            if value:
                return value
        limit: float = getattr(self, name)
        return limit

    def with_request(self, request: CompletionRequest) -> TaskPolicy:
        """The policy with the time limits a call sets for itself."""
        return TaskPolicy(
            request.deadline or self.deadline,
            request.attempt_timeout or self.attempt_timeout,
            request.first_token_timeout or self.first_token_timeout,
            request.stall_timeout or self.stall_timeout,
            self.budget,
            self.stream_policy,
            self.fallback_on_content_filter,
            self.max_attempts_per_model,
            self.max_attempts_total,
            self.fallback_reserve,
            self.fixed | {name for name in _LIMITS if getattr(request, name)},
            self.routing,
            self.hedge,
        )


class CallPlan(NamedTuple):
    """What one call may do: its candidates in order, its policy and its deadline. Immutable."""

    task: str
    operation: Operation
    request: CompletionRequest
    models: tuple[ModelConfig, ...]
    skipped: tuple[tuple[str, str], ...]  # (model id, reason) of the models selection left out
    policy: TaskPolicy
    prompt_tokens: int  # the selection's upper-bound estimate of the text, used for budget reservations
    started: float  # on the engine's monotonic clock
    deadline_at: float
    images: int = 0  # image parts of the request, each reserved at its provider's bound

    def remaining(self, now: float) -> float:
        return self.deadline_at - now

    def prompt_bound(self, model: ModelConfig) -> int:
        """The most prompt tokens the request can cost on ``model``: the text's bound, and each image's."""
        if not self.images:
            return self.prompt_tokens
        return self.prompt_tokens + self.images * image_tokens(model.provider)

    @classmethod
    def refused(cls, task: str, operation: Operation, skipped: tuple[tuple[str, str], ...], now: float) -> CallPlan:
        """The plan of a call refused before it could be planned (a bad request, an unknown task, no eligible
        model): nothing to send and no limit to keep, only what a trace of it names."""
        return cls(task, operation, _NO_REQUEST, (), skipped, _NO_POLICY, 0, now, now)


_NO_REQUEST: Final = CompletionRequest()
_NO_POLICY: Final = TaskPolicy(
    deadline=0.0,
    attempt_timeout=0.0,
    first_token_timeout=0.0,
    stall_timeout=0.0,
    budget=None,
    stream_policy="error",
    fallback_on_content_filter=False,
    max_attempts_per_model=0,
    max_attempts_total=0,
    fallback_reserve=0.0,
)


class Planner:
    """Makes call plans; keeps each task's policy for as long as the registry snapshot it came from is current."""

    __slots__ = ("_policies", "_registry", "settings")

    def __init__(self, settings: ResilienceSettings) -> None:
        self.settings = settings
        self._registry: Registry | None = None
        self._policies: dict[str, TaskPolicy] = {}

    def plan(
        self, selection: Selection, request: CompletionRequest, *, now: float, operation: Operation = "chat"
    ) -> CallPlan:
        """The plan of one call; raises ``NoEligibleModelError`` when selection left no model."""
        task = selection.task
        skipped = tuple((s.model_id, s.reason) for s in selection.skipped) if selection.skipped else ()
        if not selection.models:
            raise NoEligibleModelError(task=task, skipped=skipped)
        policy = self._policy(selection.registry, task)
        if request.deadline or request.attempt_timeout or request.first_token_timeout or request.stall_timeout:
            policy = policy.with_request(request)
        return CallPlan(
            task,
            operation,
            request,
            selection.models,
            skipped,
            policy,
            selection.prompt_tokens,
            now,
            now + policy.deadline,
            selection.images,
        )

    def _policy(self, registry: Registry, task: str) -> TaskPolicy:
        if registry is not self._registry:  # a reload: policies are rebuilt from the new snapshot
            self._registry, self._policies = registry, {}
        policy = self._policies.get(task)
        if policy is None:
            policy = self._policies[task] = _resolve(registry, task, self.settings)
        return policy


def _resolve(registry: Registry, task: str, settings: ResilienceSettings) -> TaskPolicy:
    mapping = registry.tasks_by_name.get(task)
    timeouts = mapping.timeouts if mapping is not None else None
    filter_fallback = mapping.fallback_on_content_filter if mapping is not None else None
    return TaskPolicy(
        deadline=_limit(timeouts, "deadline", settings.deadline),
        attempt_timeout=_limit(timeouts, "attempt_timeout", settings.attempt_timeout),
        first_token_timeout=_limit(timeouts, "first_token_timeout", settings.first_token_timeout),
        stall_timeout=_limit(timeouts, "stall_timeout", settings.stall_timeout),
        budget=mapping.budget if mapping is not None else None,
        stream_policy=(mapping.stream_policy if mapping is not None else None) or settings.stream_policy,
        fallback_on_content_filter=settings.fallback_on_content_filter if filter_fallback is None else filter_fallback,
        max_attempts_per_model=settings.max_attempts_per_model,
        max_attempts_total=settings.max_attempts_total,
        fallback_reserve=settings.fallback_reserve,
        fixed=frozenset(name for name in _LIMITS if timeouts is not None and getattr(timeouts, name)),
        routing=mapping.routing if mapping is not None else None,
        hedge=mapping.hedge if mapping is not None else None,
    )


def _limit(timeouts: TaskTimeouts | None, name: LimitName, default: float) -> float:
    value: float | None = getattr(timeouts, name) if timeouts is not None else None
    return value or default
