"""Errors survive pickling (process pools, multiprocessing) with their fields."""

from __future__ import annotations

import pickle

from taskmodels.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    DeadlineExceededError,
    NoEligibleModelError,
    Problem,
    RateLimitError,
    RegistryError,
)
from taskmodels.types import Attempt


def test_provider_error_round_trips_through_pickle() -> None:
    error = RateLimitError("slow down", provider="openai", model_id="m", task="t", status_code=429, retry_after=2.5)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RateLimitError
    assert (copy.task, copy.model_id, copy.status_code, copy.retry_after) == ("t", "m", 429, 2.5)
    assert str(copy) == str(error)


def test_call_level_errors_round_trip_through_pickle() -> None:
    attempt = Attempt(model_id="m", provider="openai", outcome="error", latency=0.1, error_class="RateLimitError")
    for error in (
        AllModelsFailedError("all failed", task="t", attempts=[attempt], skipped=[("x", "open circuit")]),
        DeadlineExceededError("too late", task="t", attempts=[attempt]),
        BudgetExceededError("spent", task="t", spent=1.0, limit=0.5),
        NoEligibleModelError(task="t", skipped=[("m", "context window too small")]),
        RegistryError([Problem("f.json", "models[0].id", "duplicate model id 'a'")]),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


def test_registry_error_lists_every_problem_with_its_path() -> None:
    error = RegistryError(
        [
            Problem("reg.json", "taskMappings[2].fallbackModelIds[0]", "unknown model 'gpt-9'"),
            Problem("reg.json", "defaultModelId", "unknown model 'x'"),
        ]
    )
    text = str(error)
    assert "reg.json: 2 problems" in text
    assert "taskMappings[2].fallbackModelIds[0]: unknown model 'gpt-9'" in text
    assert "defaultModelId: unknown model 'x'" in text
