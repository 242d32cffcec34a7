"""Running totals per task and per model, kept in this process.

Only answers are billed: a failed attempt adds to ``failures`` but never to
tokens or cost. A hedged request that lost its race (``cancelled_attempts``) adds
what it was charged to the budget: a provider bills a request it received.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taskmodels.types import Usage

__all__ = ["Accounting", "Totals"]


@dataclass(slots=True)
class Totals:
    calls: int = 0  # calls that ended in an answer served by this task/model
    failed_calls: int = 0  # calls of a task that ended in an error (per task only)
    attempts: int = 0
    failed_attempts: int = 0
    cancelled_attempts: int = 0  # hedged requests that lost their race
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "cancelled_attempts": self.cancelled_attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        }


@dataclass(slots=True)
class Accounting:
    tasks: dict[str, Totals] = field(default_factory=dict)
    models: dict[str, Totals] = field(default_factory=dict)
    tenants: dict[str, Totals] = field(default_factory=dict)  # calls made for a tenant (tenant_scope, tenant=)

    def _task(self, task: str) -> Totals:
        t = self.tasks.get(task)
        if t is None:
            t = self.tasks[task] = Totals()
        return t

    def _model(self, model_id: str) -> Totals:
        t = self.models.get(model_id)
        if t is None:
            t = self.models[model_id] = Totals()
        return t

    def failed_attempt(self, task: str, model_id: str) -> None:
        t = self._task(task)
        t.attempts += 1
        t.failed_attempts += 1
        m = self._model(model_id)
        m.attempts += 1
        m.failed_attempts += 1

    def _tenant(self, tenant: str) -> Totals:
        t = self.tenants.get(tenant)
        if t is None:
            t = self.tenants[tenant] = Totals()
        return t

    def cancelled_attempt(self, task: str, model_id: str, cost: float) -> None:
        for t in (self._task(task), self._model(model_id)):
            t.attempts += 1
            t.cancelled_attempts += 1
            t.cost += cost

    def answered(self, task: str, model_id: str, usage: Usage, cost: float, tenant: str | None = None) -> None:
        totals: tuple[Totals, ...] = (self._task(task), self._model(model_id))
        if tenant is not None:
            totals += (self._tenant(tenant),)
        for t in totals:
            t.calls += 1
            t.attempts += 1
            t.input_tokens += usage.input_tokens
            t.output_tokens += usage.output_tokens
            t.cost += cost

    def failed_call(self, task: str, tenant: str | None = None) -> None:
        self._task(task).failed_calls += 1
        if tenant is not None:
            self._tenant(tenant).failed_calls += 1

    def snapshot(self) -> dict[str, dict[str, dict[str, int | float]]]:
        return {
            "tasks": {name: t.as_dict() for name, t in self.tasks.items()},
            "models": {name: t.as_dict() for name, t in self.models.items()},
            "tenants": {name: t.as_dict() for name, t in self.tenants.items()},
        }
