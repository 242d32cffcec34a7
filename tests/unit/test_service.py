"""ModelService's fallback loop: every row of the DESIGN §4 policy table, bounds, errors and accounting."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.errors import (
    AllModelsFailedError,
    BadRequestError,
    ContentFilteredError,
    DeadlineExceededError,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    TaskModelsError,
)
from taskmodels.log import REDACTED
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import (
    FakeBackend,
    FakeProvider,
    ManualClock,
    auth_error,
    bad_request,
    connection_error,
    content_filtered,
    context_length,
    fake_model,
    fake_registry,
    hang,
    make_test_service,
    malformed,
    rate_limited,
    reply,
    server_error,
    timeout,
)
from taskmodels.types import CompletionRequest, CompletionResult, Usage


def model(mid: str, **keys: Any) -> dict[str, Any]:
    return fake_model(mid, **keys)


def registry(*models: dict[str, Any], task: dict[str, Any] | None = None) -> dict[str, Any]:
    return fake_registry(*models, **(task or {}))


THREE = registry(model("a"), model("b"), model("c"))


class Env:
    def __init__(self, reg: dict[str, Any] = THREE, **settings: Any) -> None:
        self.backend = FakeBackend()
        self.clock = ManualClock()
        self.resilience = ResilienceSettings(**settings)
        self.service: ModelService = make_test_service(
            reg,
            backend=self.backend,
            resilience=self.resilience,
            clock=self.clock,
            wall_clock=self.clock,
            sleep=self.clock.sleep,
            rand=lambda: 0.5,
        )

    def called(self) -> list[str]:
        return self.backend.models_called()


async def test_happy_path_names_the_model_usage_cost_and_one_attempt() -> None:
    env = Env()
    env.backend.script("a", reply("hello", usage=Usage(1000, 500)))
    result = await env.service.complete_with_task_model("t", prompt="hi")
    assert result.text == "hello"
    assert (result.model_id, result.provider, result.model_name) == ("a", "fake", "a-name")
    assert result.cost == pytest.approx(1.5 * 0.001)
    assert [(a.model_id, a.outcome, a.number) for a in result.attempts] == [("a", "success", 1)]
    assert env.backend.calls[0].request is not None
    assert env.backend.calls[0].request.prompt == "hi"


async def test_accepts_a_request_a_prompt_string_or_fields() -> None:
    env = Env()
    await env.service.complete_with_task_model("t", CompletionRequest(prompt="x"), max_tokens=7)
    await env.service.complete_with_task_model("t", "y")
    seen = [c.request for c in env.backend.calls]
    assert seen[0] is not None
    assert (seen[0].prompt, seen[0].max_tokens) == ("x", 7)
    assert seen[1] is not None
    assert seen[1].prompt == "y"


async def test_unknown_field_is_a_clear_error_with_a_suggestion() -> None:
    env = Env()
    with pytest.raises(
        InvalidRequestError, match=r"^unknown request field\(s\) promt; did you mean 'prompt'\?"
    ) as info:
        await env.service.complete_with_task_model("t", promt="typo")
    assert info.value.param == "promt"
    assert env.called() == []


# --- 429 --------------------------------------------------------------------------------------


async def test_429_with_retry_after_retries_the_same_model_after_it() -> None:
    env = Env()
    env.backend.script("a", rate_limited(retry_after=1.5), reply("ok"))
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "a"]
    assert env.clock.sleeps == [1.5]
    assert [(a.outcome, a.error_class, a.status_code, a.number) for a in result.attempts] == [
        ("error", "RateLimitError", 429, 1),
        ("success", None, None, 2),
    ]


async def test_429_without_retry_after_backs_off_with_jitter() -> None:
    env = Env(backoff_initial=0.4, backoff_multiplier=2.0, backoff_max=10, max_attempts_per_model=3)
    env.backend.script("a", rate_limited(), rate_limited(), reply())
    await env.service.complete_with_task_model("t", "p")
    # rand=0.5: half the base fixed plus a quarter: 0.75 * 0.4, then 0.75 * 0.8
    assert env.clock.sleeps == pytest.approx([0.3, 0.6])


async def test_429_retry_after_beyond_the_cap_moves_on_without_waiting() -> None:
    env = Env(retry_after_cap=5)
    env.backend.script("a", rate_limited(retry_after=30))
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "b"]
    assert env.clock.sleeps == []
    assert result.model_id == "b"


async def test_429_moves_to_the_next_model_when_retries_are_spent() -> None:
    env = Env(max_attempts_per_model=2)
    env.backend.script("a", rate_limited(retry_after=0.1), rate_limited(retry_after=0.1))
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "a", "b"]
    assert result.model_id == "b"


# --- 5xx, connection, invalid response -------------------------------------------------------------


@pytest.mark.parametrize("failure", [server_error(500), server_error(503), connection_error(), malformed()])
async def test_transient_errors_retry_the_same_model_then_fall_back(failure: Any) -> None:
    env = Env(max_attempts_per_model=2)
    env.backend.always("a", failure)
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "a", "b"]
    assert len(env.clock.sleeps) == 1
    assert result.model_id == "b"
    assert [a.error_class for a in result.attempts[:2]] == [failure.error.__name__] * 2


async def test_500_once_then_healthy_stays_on_the_primary() -> None:
    env = Env()
    env.backend.script("a", server_error(500), reply("fine"))
    result = await env.service.complete_with_task_model("t", "p")
    assert (result.model_id, result.text) == ("a", "fine")


# --- silent routes --------------------------------------------------------------------------


async def test_a_provider_timeout_is_not_retried_on_the_same_model() -> None:
    env = Env(max_attempts_per_model=3)
    env.backend.script("a", timeout())
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "b"]
    assert env.clock.sleeps == []
    assert result.attempts[0].error_class == "ProviderTimeoutError"


async def test_a_hanging_model_is_cut_at_the_attempt_timeout_and_not_retried() -> None:
    env = Env(attempt_timeout=0.05, max_attempts_per_model=3)
    env.backend.script("a", hang())
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "b"]
    assert result.attempts[0].error_class == "ProviderTimeoutError"
    assert "attempt timeout" in (result.attempts[0].error_message or "")


# --- 401/403 --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_move_on_and_open_the_breaker_at_once(status: int) -> None:
    env = Env(breaker_failure_threshold=5)
    env.backend.script("a", auth_error(status))
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "b"]
    health = await env.service.health()
    assert health["models"]["a"]["state"] == "open"
    # the next call does not try the unhealthy route
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "b", "b"]
    assert result.attempts[0].outcome == "skipped"


# --- context length -----------------------------------------------------------------------------


async def test_context_length_goes_only_to_a_larger_context_window() -> None:
    reg = registry(
        model("big", context=8000),
        model("small", context=4000),
        model("same", context=8000),
        model("bigger", context=32000),
    )
    env = Env(reg)
    env.backend.script("big", context_length())
    result = await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["big", "bigger"]
    assert result.model_id == "bigger"
    assert [(a.model_id, a.outcome) for a in result.attempts] == [
        ("big", "error"),
        ("small", "skipped"),
        ("same", "skipped"),
        ("bigger", "success"),
    ]
    assert (await env.service.health())["models"]["big"]["consecutive_failures"] == 0


async def test_context_length_with_no_larger_model_fails_naming_it() -> None:
    env = Env(registry(model("a", context=8000), model("b", context=4000)))
    env.backend.script("a", context_length())
    with pytest.raises(AllModelsFailedError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a"]
    assert "ContextLengthExceededError" in str(info.value)
    assert info.value.skipped
    assert info.value.skipped[0][0] == "b"


# --- content filter -------------------------------------------------------------------------------


async def test_content_filter_raises_with_the_providers_reason_by_default() -> None:
    env = Env()
    env.backend.script("a", content_filtered("violence"))
    with pytest.raises(ContentFilteredError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a"]
    assert info.value.task == "t"
    assert info.value.provider_message == "violence"


async def test_content_filter_falls_back_when_the_task_opts_in() -> None:
    env = Env(registry(model("a"), model("b"), task={"fallbackOnContentFilter": True}))
    env.backend.script("a", content_filtered())
    result = await env.service.complete_with_task_model("t", "p")
    assert result.model_id == "b"


async def test_content_filter_falls_back_when_settings_opt_in_and_the_task_does_not_override() -> None:
    env = Env(fallback_on_content_filter=True)
    env.backend.script("a", content_filtered())
    assert (await env.service.complete_with_task_model("t", "p")).model_id == "b"
    env2 = Env(
        registry(model("a"), model("b"), task={"fallbackOnContentFilter": False}), fallback_on_content_filter=True
    )
    env2.backend.script("a", content_filtered())
    with pytest.raises(ContentFilteredError):
        await env2.service.complete_with_task_model("t", "p")


# --- other 4xx -----------------------------------------------------------------------------------


async def test_bad_request_is_raised_at_once_with_the_task() -> None:
    env = Env()
    env.backend.script("a", bad_request("messages must not be empty"))
    with pytest.raises(BadRequestError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a"]
    assert info.value.task == "t"
    assert "task='t'" in str(info.value)
    assert (await env.service.health())["models"]["a"]["consecutive_failures"] == 0


# --- bounds and the end of the chain ----------------------------------------------------------------


async def test_max_attempts_total_bounds_the_whole_call() -> None:
    env = Env(max_attempts_per_model=2, max_attempts_total=3)
    for m in "abc":
        env.backend.always(m, server_error())
    with pytest.raises(AllModelsFailedError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert env.called() == ["a", "a", "b"]
    assert len(info.value.attempts) == 3


async def test_exhausted_chain_lists_every_attempt() -> None:
    env = Env(max_attempts_per_model=1)
    env.backend.script("a", server_error(503))
    env.backend.script("b", rate_limited())
    env.backend.script("c", timeout())
    with pytest.raises(AllModelsFailedError) as info:
        await env.service.complete_with_task_model("t", "p")
    err = info.value
    assert err.task == "t"
    assert [(a.model_id, a.error_class, a.status_code) for a in err.attempts] == [
        ("a", "ProviderUnavailableError", 503),
        ("b", "RateLimitError", 429),
        ("c", "ProviderTimeoutError", None),
    ]
    text = str(err)
    for piece in ("a (fake", "ProviderUnavailableError status=503", "RateLimitError status=429", "c (fake"):
        assert piece in text
    assert isinstance(err.__cause__, ProviderError)


@pytest.mark.parametrize("exc", [KeyError("choices"), ValueError("x"), RuntimeError("bug")])
async def test_unexpected_provider_exceptions_never_escape_raw(exc: Exception) -> None:
    env = Env(max_attempts_per_model=1)

    class Broken(FakeProvider):
        async def complete(self, request: CompletionRequest) -> CompletionResult:
            raise exc

    factory = env.service.provider_factory
    real = factory.create_provider_for_model

    def create(m: ModelConfig) -> ModelPort:
        return Broken(m) if m.id == "a" else real(m)

    factory.create_provider_for_model = create  # type: ignore[method-assign,assignment]
    result = await env.service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert result.attempts[0].error_class == "InvalidResponseError"

    factory.create_provider_for_model = Broken  # type: ignore[method-assign]
    with pytest.raises(AllModelsFailedError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert not isinstance(info.value, KeyError)
    assert all(a.error_class == "InvalidResponseError" for a in info.value.attempts)
    assert isinstance(info.value.__cause__, InvalidResponseError)


# --- the deadline ---------------------------------------------------------------------------------


async def test_a_backoff_longer_than_the_remaining_deadline_is_not_slept() -> None:
    env = Env(deadline=2.0, retry_after_cap=10)
    env.backend.script("a", rate_limited(retry_after=5))
    result = await env.service.complete_with_task_model("t", "p")
    assert env.clock.sleeps == []
    assert result.model_id == "b"


async def test_deadline_passing_between_attempts_raises_deadline_exceeded() -> None:
    env = Env(deadline=1.0, max_attempts_per_model=5, backoff_initial=0.2, backoff_max=0.2)

    async def late_sleep(seconds: float) -> None:  # the loop wakes up later than asked
        env.clock.sleeps.append(seconds)
        env.clock.advance(seconds + 0.5)

    env.service.engine.sleep = late_sleep
    env.backend.always("a", server_error())
    with pytest.raises(DeadlineExceededError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert info.value.task == "t"
    assert env.called() == ["a", "a"]
    assert [a.model_id for a in info.value.attempts] == ["a", "a"]
    assert "deadline" in str(info.value)


async def test_backoffs_that_do_not_fit_end_the_chain_without_oversleeping() -> None:
    env = Env(deadline=1.0, max_attempts_per_model=5, backoff_initial=0.4, backoff_max=0.4)
    for m in "abc":
        env.backend.always(m, server_error())
    with pytest.raises(AllModelsFailedError):
        await env.service.complete_with_task_model("t", "p")
    assert sum(env.clock.sleeps) <= 1.0


async def test_a_hanging_primary_leaves_its_fallbacks_their_share_of_the_deadline() -> None:
    backend = FakeBackend()
    service = make_test_service(
        THREE, backend=backend, resilience=ResilienceSettings(deadline=0.2, attempt_timeout=10, fallback_reserve=0.5)
    )
    backend.script("a", hang())
    result = await service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert [(a.model_id, a.error_class) for a in result.attempts] == [("a", "ProviderTimeoutError"), ("b", None)]
    assert result.attempts[0].latency == pytest.approx(0.1, abs=0.08)  # half of the deadline, not all of it


async def test_the_deadline_cuts_a_hanging_attempt_in_real_time() -> None:
    backend = FakeBackend()
    service = make_test_service(
        THREE, backend=backend, resilience=ResilienceSettings(deadline=0.05, attempt_timeout=10, fallback_reserve=0)
    )
    backend.script("a", hang())
    with pytest.raises(DeadlineExceededError) as info:
        await service.complete_with_task_model("t", "p")
    assert backend.models_called() == ["a"]
    assert [a.error_class for a in info.value.attempts] == ["ProviderTimeoutError"]
    # a deadline cut says nothing about the model's health
    assert (await service.health())["models"]["a"]["consecutive_failures"] == 0


async def test_per_call_and_per_task_deadlines_win_over_settings() -> None:
    env = Env(
        registry(model("a"), model("b"), task={"timeouts": {"deadline": 0.5}}),
        deadline=60,
        max_attempts_per_model=5,
        backoff_initial=0.4,
        backoff_max=0.4,
    )
    env.backend.always("a", server_error())
    env.backend.always("b", server_error())
    with pytest.raises(AllModelsFailedError):
        await env.service.complete_with_task_model("t", "p")
    assert 0 < sum(env.clock.sleeps) <= 0.5
    env.clock.sleeps.clear()
    with pytest.raises(AllModelsFailedError):
        await env.service.complete_with_task_model("t", "p", deadline=0.1)
    assert env.clock.sleeps == []


async def test_errors_out_of_the_service_are_taskmodels_errors() -> None:
    env = Env(max_attempts_per_model=1)
    for m in "abc":
        env.backend.always(m, connection_error())
    with pytest.raises(TaskModelsError):
        await env.service.complete_with_task_model("t", "p")


# --- accounting ---------------------------------------------------------------------------------


async def test_a_fallback_reports_the_fallbacks_model_and_failed_attempts_are_not_billed() -> None:
    env = Env(registry(model("a", price=1.0), model("b", price=2.0)), max_attempts_per_model=1)
    env.backend.script("a", server_error())
    env.backend.script("b", reply("from b", usage=Usage(100, 50)))
    result = await env.service.complete_with_task_model("t", "p")
    assert result.model_id == "b"
    assert result.cost == pytest.approx(0.3)
    totals = env.service.totals()
    assert totals["tasks"]["t"]["calls"] == 1
    assert totals["tasks"]["t"]["cost"] == pytest.approx(0.3)
    assert totals["tasks"]["t"]["failed_attempts"] == 1
    assert totals["models"]["a"]["cost"] == 0.0
    assert totals["models"]["a"]["failed_attempts"] == 1
    assert totals["models"]["b"]["input_tokens"] == 100


async def test_separate_input_and_output_prices() -> None:
    reg = registry(model("a", inputCostPer1kTokens=1.0, outputCostPer1kTokens=3.0))
    env = Env(reg)
    env.backend.script("a", reply(usage=Usage(1000, 1000)))
    assert (await env.service.complete_with_task_model("t", "p")).cost == pytest.approx(4.0)


async def test_stream_under_the_hood_completes_from_a_stream() -> None:
    env = Env(stream_under_the_hood=True, max_attempts_per_model=1)
    env.backend.script("a", malformed(after_chunks=1))
    env.backend.script("b", reply("one two three", usage=Usage(3, 3)))
    result = await env.service.complete_with_task_model("t", "p")
    assert result.text == "one two three"
    assert result.model_id == "b"
    assert [c.kind for c in env.backend.calls] == ["stream", "stream"]
    assert env.backend.calls[0].first_token_timeout == env.resilience.first_token_timeout


async def test_embeddings_use_the_same_fallbacks() -> None:
    env = Env(max_attempts_per_model=1)
    env.backend.script("a", server_error())
    result = await env.service.embed_with_task_model("t", ["x", "yy"])
    assert result.model_id == "b"
    assert len(result.vectors) == 2
    assert [a.outcome for a in result.attempts] == ["error", "success"]


async def test_a_key_echoed_in_a_providers_error_text_is_cut_out(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-SENTINEL-0123456789"
    monkeypatch.setenv("TASKMODELS_TEST_FAKE_KEY", key)
    env = Env(registry(model("a", apiKeyEnv="TASKMODELS_TEST_FAKE_KEY")), max_attempts_per_model=1)
    env.backend.script("a", auth_error(message=f"Incorrect API key provided: {key}"))
    with pytest.raises(AllModelsFailedError) as info:
        await env.service.complete_with_task_model("t", "p")
    assert key not in str(info.value)
    assert key not in repr(info.value.attempts)
    cause = info.value.__cause__
    assert isinstance(cause, ProviderError)
    assert key not in str(cause)
    assert key not in (cause.provider_message or "")
    assert REDACTED in str(cause)
