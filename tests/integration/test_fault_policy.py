"""The fallback policy (DESIGN §4) against a real HTTP server that misbehaves on purpose.

Every row of the policy table has a test here: the server (``faultserver.py``)
fails the way the row describes, and the test asserts the outcome (which model
answered, or which error was raised), the attempts the result or error reports,
the requests each model really received, and a generous bound on elapsed time.
The limits are tenths of a second so the whole module stays fast; the time
bounds are there to prove nothing waited on a dead route, not to benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
import pytest
from pydantic import SecretStr

from taskmodels import errors
from taskmodels.errors import (
    AllModelsFailedError,
    BadRequestError,
    ContentFilteredError,
    DeadlineExceededError,
    ProviderError,
    ProviderTimeoutError,
    TaskModelsError,
)
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.policy import RULES
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ProviderSettings, ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.testing import make_test_service
from taskmodels.types import Attempt, CompletionResult, StreamEvent
from tests.integration.faultserver import Behaviour, FaultServer, model_entry

pytestmark = pytest.mark.integration

PRIMARY = "m-primary"
FALLBACK = "m-fallback"
SAME = "m-same-window"
BIG = "m-big-window"
SILENT_CHAIN = ("m-s1", "m-s2", "m-s3")

FAST = ResilienceSettings(
    deadline=3.0,
    attempt_timeout=0.3,
    first_token_timeout=0.2,
    stall_timeout=0.2,
    max_attempts_per_model=2,
    max_attempts_total=6,
    backoff_initial=0.01,
    backoff_max=0.05,
    retry_after_cap=1.0,
    breaker_failure_threshold=3,
    breaker_cooldown_initial=30.0,  # tests of the breaker set their own
)

# Generous: each limit above is ≤ 0.3 s, so a call that honours them ends well within this.
BOUND = 2.0


def _model(model_id: str, base_url: str, *, context_window: int = 4096) -> dict[str, Any]:
    return model_entry(
        model_id,
        base_url,
        contextWindow=context_window,
        inputCostPer1kTokens=0.001,
        outputCostPer1kTokens=0.002,
        capabilities=["chat"],
    )


def registry_data(base_url: str) -> dict[str, Any]:
    models = [
        _model(PRIMARY, base_url),
        _model(FALLBACK, base_url),
        _model(SAME, base_url),
        _model(BIG, base_url, context_window=128_000),
        *(_model(m, base_url) for m in SILENT_CHAIN),
    ]
    return {
        "models": models,
        "taskMappings": [
            {"taskName": "chat", "primaryModelId": PRIMARY, "fallbackModelIds": [FALLBACK]},
            {"taskName": "solo", "primaryModelId": PRIMARY, "fallbackModelIds": []},
            {"taskName": "long", "primaryModelId": PRIMARY, "fallbackModelIds": [SAME, BIG]},
            {
                "taskName": "filter-optin",
                "primaryModelId": PRIMARY,
                "fallbackModelIds": [FALLBACK],
                "fallbackOnContentFilter": True,
            },
            {
                "taskName": "stream-error",
                "primaryModelId": PRIMARY,
                "fallbackModelIds": [FALLBACK],
                "streamPolicy": "error",
            },
            {
                "taskName": "stream-restart",
                "primaryModelId": PRIMARY,
                "fallbackModelIds": [FALLBACK],
                "streamPolicy": "restart",
            },
            {"taskName": "silent-chain", "primaryModelId": SILENT_CHAIN[0], "fallbackModelIds": list(SILENT_CHAIN[1:])},
        ],
        # The default joins the end of every chain, so it is the primary: it adds no extra model to a chain.
        "defaultModelId": PRIMARY,
    }


ServiceFactory = Callable[..., Awaitable[ModelService]]


@pytest.fixture
async def make_service(fault_server: FaultServer) -> AsyncIterator[ServiceFactory]:
    """Builds a ``ModelService`` wired to the fault server, from its real parts; closes the HTTP client."""
    clients: list[httpx2.AsyncClient] = []

    async def build(*, api_key: str | None = None, **resilience: Any) -> ModelService:
        settings = Settings(
            providers={"openai-compatible": ProviderSettings(api_key=SecretStr(api_key))} if api_key else {},
        )
        # Read timeouts far above the policy's limits: the service, not httpx, must end silent routes.
        client = httpx2.AsyncClient(timeout=httpx2.Timeout(10.0, connect=1.0))
        clients.append(client)
        factory = ModelProviderFactory(settings, client)
        registry = ModelRegistryService.from_dict(
            registry_data(fault_server.base_url), provider_names=factory.provider_names()
        )
        return make_test_service(
            registry,
            provider_factory=factory,
            state_store=MemoryStateStore(),
            resilience=FAST.model_copy(update=resilience),
        )

    yield build
    for client in clients:
        await client.aclose()


# --- helpers ---------------------------------------------------------------------------


async def complete(service: ModelService, task: str, **fields: Any) -> tuple[CompletionResult, float]:
    start = time.monotonic()
    async with asyncio.timeout(10):  # a safety net only: the asserted bounds are far tighter
        result = await service.complete_with_task_model(task, prompt="hello", **fields)
    return result, time.monotonic() - start


async def complete_error(service: ModelService, task: str, **fields: Any) -> tuple[TaskModelsError, float]:
    start = time.monotonic()
    with pytest.raises(TaskModelsError) as info:
        async with asyncio.timeout(10):
            await service.complete_with_task_model(task, prompt="hello", **fields)
    return info.value, time.monotonic() - start


async def stream(service: ModelService, task: str, **fields: Any) -> tuple[list[StreamEvent], float]:
    events: list[StreamEvent] = []
    start = time.monotonic()
    async with asyncio.timeout(10):
        async for event in service.stream_with_task_model(task, prompt="hello", **fields):
            events.append(event)
    return events, time.monotonic() - start


async def stream_error(
    service: ModelService, task: str, **fields: Any
) -> tuple[list[StreamEvent], TaskModelsError, float]:
    events: list[StreamEvent] = []
    start = time.monotonic()
    with pytest.raises(TaskModelsError) as info:
        await _collect(service, task, events, fields)
    return events, info.value, time.monotonic() - start


async def _collect(service: ModelService, task: str, into: list[StreamEvent], fields: Mapping[str, Any]) -> None:
    async with asyncio.timeout(10):
        async for event in service.stream_with_task_model(task, prompt="hello", **fields):
            into.append(event)


def summary(attempts: tuple[Attempt, ...]) -> list[tuple[str, str, str | None]]:
    return [(a.model_id, a.outcome, a.error_class) for a in attempts if a.outcome != "skipped"]


def error_class(name: str | None) -> type[BaseException]:
    assert name is not None
    cls = getattr(errors, name)
    assert isinstance(cls, type)
    assert issubclass(cls, BaseException)
    return cls


def attempts_of(exc: TaskModelsError) -> tuple[Attempt, ...]:
    attempts = getattr(exc, "attempts", None)
    assert attempts is not None, f"{type(exc).__name__} carries no attempts"
    return tuple(attempts)


def final_failure(exc: TaskModelsError) -> type[BaseException]:
    """The provider error class behind ``exc``: itself, or its last attempt's when it ended a chain."""
    if isinstance(exc, ProviderError):
        return type(exc)
    failed = [a for a in attempts_of(exc) if a.outcome == "error"]
    assert failed, f"{exc!r} names no failed attempt"
    return error_class(failed[-1].error_class)


def text_after_last_restart(events: list[StreamEvent]) -> str:
    restarts = [i for i, e in enumerate(events) if e.type == "restart"]
    start = restarts[-1] + 1 if restarts else 0
    return "".join(e.text for e in events[start:] if e.type == "text")


def done_result(events: list[StreamEvent]) -> CompletionResult:
    assert events, "the stream sent nothing"
    assert events[-1].type == "done", f"the stream did not end with done: {[e.type for e in events]}"
    assert [e.type for e in events].count("done") == 1
    result = events[-1].result
    assert result is not None
    return result


def request_gap(server: FaultServer, model: str) -> float:
    seen = server.requests(model)
    assert len(seen) >= 2
    return seen[1].at - seen[0].at


# --- the fault server itself -----------------------------------------------------------


class TestFaultServerWire:
    """The server misbehaves exactly as named, so the policy tests below test the library, not the fixture."""

    async def test_scripts_behaviours_per_model_in_order(self, fault_server: FaultServer) -> None:
        fault_server.script(PRIMARY, ["500", "ok"])
        url = fault_server.base_url + "/chat/completions"
        async with httpx2.AsyncClient(timeout=2.0) as client:
            first = await client.post(url, json={"model": PRIMARY, "messages": []})
            second = await client.post(url, json={"model": PRIMARY, "messages": []})
            other = await client.post(url, json={"model": FALLBACK, "messages": []})
        assert (first.status_code, second.status_code, other.status_code) == (500, 200, 200)
        assert second.json()["choices"][0]["message"]["content"] == f"answer from {PRIMARY}"
        assert fault_server.order() == [PRIMARY, PRIMARY, FALLBACK]

    async def test_reset_is_a_tcp_reset_before_any_header(self, fault_server: FaultServer) -> None:
        fault_server.always(PRIMARY, "reset")
        async with httpx2.AsyncClient(timeout=2.0) as client:
            with pytest.raises(httpx2.ReadError):
                await client.post(fault_server.base_url + "/chat/completions", json={"model": PRIMARY})
        assert fault_server.hits(PRIMARY) == 1

    async def test_cut_stream_has_no_terminator(self, fault_server: FaultServer) -> None:
        fault_server.always(PRIMARY, Behaviour.cut(after_chunks=1))
        lines: list[str] = []
        async with httpx2.AsyncClient(timeout=2.0) as client:
            with pytest.raises(httpx2.RemoteProtocolError):
                await _read_stream(client, fault_server.base_url, {"model": PRIMARY, "stream": True}, lines)
        assert all("[DONE]" not in line for line in lines)

    async def test_stream_ends_with_done_and_usage(self, fault_server: FaultServer) -> None:
        async with httpx2.AsyncClient(timeout=2.0) as client:
            body = {"model": PRIMARY, "stream": True}
            async with client.stream("POST", fault_server.base_url + "/chat/completions", json=body) as response:
                lines = [line async for line in response.aiter_lines() if line]
        assert response.headers["content-type"] == "text/event-stream"
        assert lines[-1] == "data: [DONE]"
        assert '"usage"' in lines[-2]


async def _read_stream(client: httpx2.AsyncClient, base_url: str, body: Any, into: list[str]) -> None:
    async with client.stream("POST", base_url + "/chat/completions", json=body) as response:
        into.extend([line async for line in response.aiter_lines()])


# --- the rule table, row by row -------------------------------------------------------------
# Each fault the server can produce, the error class it must become, and what must happen then on the
# "chat" task (the primary, then one fallback with the same context window, no opt-ins), written out by
# hand from DESIGN §4's table and resilience/policy.py's docstring. Nothing here is read from RULES: a
# wrong rule row fails the fault that reaches it.

Breaker = Literal["counts", "opens", "not counted"]


@dataclass(frozen=True)
class Row:
    fault: str
    error: type[ProviderError]
    retried: bool  # the same model is tried again (up to max_attempts_per_model)
    next_model: bool  # the fallback is tried
    raises: bool  # the call ends in an error rather than an answer
    breaker: Breaker  # each failed try counts against the primary's breaker; opens it at once; or neither
    status: int | None = None
    message: str | None = None  # the provider's own message, kept on the error


ROWS = [
    #   fault, the error it becomes, retried, next_model, raises, breaker, status (, message)
    # 429 and transient failures: retried with backoff, then the next model; the model's health counts.
    Row("429", errors.RateLimitError, True, True, False, "counts", 429),
    Row("500", errors.ProviderUnavailableError, True, True, False, "counts", 500),
    Row("503", errors.ProviderUnavailableError, True, True, False, "counts", 503),
    Row("reset", errors.ProviderConnectionError, True, True, False, "counts"),
    Row("malformed", errors.InvalidResponseError, True, True, False, "counts", 200),
    Row("cut", errors.InvalidResponseError, True, True, False, "counts"),
    # A silent route is not retried.
    Row("silent", errors.ProviderTimeoutError, False, True, False, "counts"),
    # A route that cannot authenticate: the next model, and the route is marked unhealthy at once.
    Row("401", errors.AuthenticationError, False, True, False, "opens", 401),
    Row("403", errors.AuthenticationError, False, True, False, "opens", 403),
    # The request's fault, not the model's: never counted. "chat"'s fallback has no larger window and the task
    # does not opt into falling back on a refusal, and other 4xx are raised at once.
    Row("context_length_exceeded", errors.ContextLengthExceededError, False, False, True, "not counted", 400),
    Row("content_policy_violation", errors.ContentFilteredError, False, False, True, "not counted", 400),
    # Content the model cannot take (an image on a model without a projector): the next model, never counted.
    Row("images_unsupported", errors.UnsupportedContentError, False, True, False, "not counted", 500),
    Row("400", errors.BadRequestError, False, False, True, "not counted", 400, "Bad parameter"),
]


# Rules a plain call cannot reach: they answer a typed call's bad answer. The wire tests of
# tests/integration/test_typed_answers_http.py and tests/unit/test_typed_answers.py drive them.
TYPED_ONLY = {errors.OutputValidationError, errors.TruncatedAnswerError}


def test_every_error_class_of_the_rule_table_has_a_fault_and_its_expectations() -> None:
    # A new row in RULES needs a fault here, and what must happen then written out above.
    assert set(RULES) - TYPED_ONLY <= {row.error for row in ROWS}


@pytest.mark.parametrize("row", ROWS, ids=[row.fault for row in ROWS])
async def test_each_fault_follows_its_rule(fault_server: FaultServer, make_service: ServiceFactory, row: Row) -> None:
    fault_server.always(PRIMARY, row.fault)
    service = await make_service()
    tries = FAST.max_attempts_per_model if row.retried else 1
    start = time.monotonic()
    if row.raises:
        exc, _ = await complete_error(service, "chat")
        assert issubclass(final_failure(exc), row.error)
        failed = [a for a in attempts_of(exc) if a.outcome == "error"] if not isinstance(exc, ProviderError) else []
        if isinstance(exc, ProviderError):
            assert exc.task == "chat"
            assert exc.model_id == PRIMARY
            assert exc.status_code == row.status
            if row.message is not None:
                assert exc.provider_message == row.message
    else:
        result, _ = await complete(service, "chat")
        assert result.model_id == FALLBACK
        failed = [a for a in result.attempts if a.outcome == "error"]
        assert summary(result.attempts)[-1] == (FALLBACK, "success", None)
        assert len(failed) == tries
    elapsed = time.monotonic() - start
    assert fault_server.hits(PRIMARY) == tries
    assert fault_server.hits(FALLBACK) == (1 if row.next_model else 0)
    assert all(a.model_id == PRIMARY and issubclass(error_class(a.error_class), row.error) for a in failed)
    assert all(a.status_code == row.status for a in failed)
    if row.fault == "silent":  # it did wait for its limit, once
        assert failed[0].latency >= FAST.attempt_timeout - 0.01
    health = await service.health()
    counted = health["models"][PRIMARY]["consecutive_failures"]
    if row.breaker == "opens":
        assert _breaker_state(health, PRIMARY) == "open"
        again, _ = await complete(service, "chat")  # the next call skips the unhealthy route without sending to it
        assert again.model_id == FALLBACK
        assert fault_server.hits(PRIMARY) == tries
    elif row.breaker == "counts":
        assert counted == tries
        assert _breaker_state(health, PRIMARY) == "closed"  # below breaker_failure_threshold (3)
    else:
        assert counted == 0  # the request's fault, not the model's
        assert _breaker_state(health, PRIMARY) == "closed"
    assert elapsed < BOUND


# --- 429 -----------------------------------------------------------------------------


async def test_429_with_retry_after_waits_then_retries_the_same_model(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.script(PRIMARY, ["429:0.3", "ok"])
    service = await make_service()
    result, elapsed = await complete(service, "chat")
    assert result.model_id == PRIMARY
    assert result.text == f"answer from {PRIMARY}"
    assert summary(result.attempts) == [(PRIMARY, "error", "RateLimitError"), (PRIMARY, "success", None)]
    assert result.attempts[0].status_code == 429
    assert [a.number for a in result.attempts] == [1, 2]
    assert fault_server.hits(PRIMARY) == 2
    assert fault_server.hits(FALLBACK) == 0
    assert request_gap(fault_server, PRIMARY) >= 0.3 - 0.01  # Retry-After honoured (clock granularity aside)
    assert elapsed < BOUND


async def test_429_retry_after_beyond_the_cap_moves_to_the_next_model(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, "429:30")  # far above retry_after_cap=1.0
    service = await make_service()
    result, elapsed = await complete(service, "chat")
    assert result.model_id == FALLBACK
    assert fault_server.hits(PRIMARY) == 1
    assert summary(result.attempts) == [(PRIMARY, "error", "RateLimitError"), (FALLBACK, "success", None)]
    assert elapsed < BOUND  # it did not sit out the 30 s


async def test_429_without_retry_after_backs_off_and_retries_the_same_model(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.script(PRIMARY, ["429", "ok"])
    service = await make_service()
    result, elapsed = await complete(service, "chat")
    assert result.model_id == PRIMARY
    assert summary(result.attempts) == [(PRIMARY, "error", "RateLimitError"), (PRIMARY, "success", None)]
    assert fault_server.hits(PRIMARY) == 2
    assert fault_server.hits(FALLBACK) == 0
    assert request_gap(fault_server, PRIMARY) < 1.0  # backoff is capped at backoff_max=0.05 s, plus jitter
    assert elapsed < BOUND


# --- 5xx, reset, invalid response ------------------------------------------------------------


async def test_500_once_then_healthy_succeeds_on_the_same_model(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.script(PRIMARY, ["500"])  # then "ok", the default
    service = await make_service()
    result, elapsed = await complete(service, "chat")
    assert result.model_id == PRIMARY
    assert summary(result.attempts) == [(PRIMARY, "error", "ProviderUnavailableError"), (PRIMARY, "success", None)]
    assert result.attempts[0].status_code == 500
    assert fault_server.hits(PRIMARY) == 2
    assert fault_server.hits(FALLBACK) == 0
    assert elapsed < BOUND


# --- silent routes: no retry on the same model -------------------------------------------


async def test_slow_first_token_in_complete_moves_to_the_next_model(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, Behaviour.slow_first_token(5.0))
    service = await make_service(stream_under_the_hood=True)
    result, elapsed = await complete(service, "chat")
    assert result.model_id == FALLBACK
    assert fault_server.hits(PRIMARY) == 1
    assert fault_server.requests(PRIMARY)[0].stream  # it streamed under the hood to see the first token
    assert summary(result.attempts) == [(PRIMARY, "error", "FirstTokenTimeoutError"), (FALLBACK, "success", None)]
    assert elapsed < BOUND


async def test_slow_first_token_in_a_stream_falls_back_before_anything_reached_the_caller(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, Behaviour.slow_first_token(5.0))
    service = await make_service()
    events, elapsed = await stream(service, "chat")
    assert "restart" not in [e.type for e in events]  # nothing had reached the caller: a free fallback
    result = done_result(events)
    assert result.model_id == FALLBACK
    assert text_after_last_restart(events) == f"answer from {FALLBACK}"
    assert summary(result.attempts) == [(PRIMARY, "error", "FirstTokenTimeoutError"), (FALLBACK, "success", None)]
    assert fault_server.hits(PRIMARY) == 1
    assert elapsed < BOUND


async def test_a_stall_before_any_text_falls_back_without_restart(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    # The role-only first chunk carries no text: the caller has seen nothing yet.
    fault_server.always(PRIMARY, Behaviour.stall(after_chunks=0))
    service = await make_service()
    events, elapsed = await stream(service, "stream-error")  # even the strict policy may fall back here
    assert "restart" not in [e.type for e in events]
    result = done_result(events)
    assert result.model_id == FALLBACK
    assert fault_server.hits(PRIMARY) == 1
    assert summary(result.attempts) == [(PRIMARY, "error", "StreamStalledError"), (FALLBACK, "success", None)]
    assert elapsed < BOUND


async def test_a_stall_after_text_restarts_on_the_next_model(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, Behaviour.stall(after_chunks=2))
    service = await make_service()
    events, elapsed = await stream(service, "stream-restart")
    types = [e.type for e in events]
    assert types.count("restart") == 1
    assert types.index("restart") > types.index("text")  # partial text came first, then the restart
    restart = events[types.index("restart")]
    assert restart.model_id == FALLBACK
    assert text_after_last_restart(events) == f"answer from {FALLBACK}"  # the fallback's whole answer
    result = done_result(events)
    assert result.model_id == FALLBACK
    assert result.text == f"answer from {FALLBACK}"
    assert summary(result.attempts) == [(PRIMARY, "error", "StreamStalledError"), (FALLBACK, "success", None)]
    assert fault_server.hits(PRIMARY) == 1  # a stalled route is not retried
    assert elapsed < BOUND


async def test_a_stall_after_text_with_policy_error_raises(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, Behaviour.stall(after_chunks=2))
    service = await make_service()
    events, exc, elapsed = await stream_error(service, "stream-error")
    assert [e.type for e in events] == ["text", "text"]  # the partial text reached the caller, then the error
    assert issubclass(final_failure(exc), errors.StreamStalledError)
    assert fault_server.hits(FALLBACK) == 0  # the policy forbids moving on once text was sent
    assert elapsed < BOUND


@pytest.mark.parametrize("under_the_hood", [False, True], ids=["json-body", "streamed"])
async def test_a_stall_inside_complete_is_not_retried_and_moves_on(
    fault_server: FaultServer, make_service: ServiceFactory, under_the_hood: bool
) -> None:
    # JSON: headers and half the body, then silence. Streamed: two chunks, then silence.
    fault_server.always(PRIMARY, Behaviour.stall(after_chunks=2))
    service = await make_service(stream_under_the_hood=under_the_hood)
    result, elapsed = await complete(service, "chat")
    assert result.model_id == FALLBACK
    assert result.text == f"answer from {FALLBACK}"  # nothing of the primary's partial text
    assert fault_server.hits(PRIMARY) == 1
    assert [a.model_id for a in result.attempts if a.outcome != "skipped"] == [PRIMARY, FALLBACK]
    expected = errors.StreamStalledError if under_the_hood else ProviderTimeoutError
    assert issubclass(error_class(result.attempts[0].error_class), expected)
    assert elapsed < BOUND


# --- broken streams never end as a success ---------------------------------------------------


@pytest.mark.parametrize("fault", [Behaviour.cut(after_chunks=2), Behaviour.malformed(after_chunks=2)])
async def test_a_broken_stream_with_nowhere_to_go_ends_in_an_error(
    fault_server: FaultServer, make_service: ServiceFactory, fault: Behaviour
) -> None:
    fault_server.always(PRIMARY, fault)
    service = await make_service()
    events, exc, elapsed = await stream_error(service, "solo")
    assert "done" not in [e.type for e in events]  # never a truncated answer reported as complete
    assert issubclass(final_failure(exc), errors.InvalidResponseError)
    assert 1 <= fault_server.hits(PRIMARY) <= FAST.max_attempts_per_model
    assert elapsed < BOUND


@pytest.mark.parametrize("fault", [Behaviour.cut(after_chunks=2), Behaviour.malformed(after_chunks=2)])
async def test_a_broken_stream_restarts_on_the_fallback(
    fault_server: FaultServer, make_service: ServiceFactory, fault: Behaviour
) -> None:
    fault_server.always(PRIMARY, fault)
    service = await make_service()
    events, elapsed = await stream(service, "stream-restart")
    assert "restart" in [e.type for e in events]
    result = done_result(events)
    assert result.model_id == FALLBACK
    assert text_after_last_restart(events) == f"answer from {FALLBACK}"
    assert all(a.outcome == "error" for a in result.attempts[:-1])
    assert result.attempts[-1].model_id == FALLBACK
    assert elapsed < BOUND


@pytest.mark.parametrize("fault", [Behaviour.cut(after_chunks=2), Behaviour.malformed(after_chunks=2)])
async def test_a_broken_stream_with_policy_error_raises(
    fault_server: FaultServer, make_service: ServiceFactory, fault: Behaviour
) -> None:
    fault_server.always(PRIMARY, fault)
    service = await make_service()
    events, exc, elapsed = await stream_error(service, "stream-error")
    assert [e.type for e in events] == ["text", "text"]  # no restart, no done: the partial text is all there is
    assert issubclass(final_failure(exc), errors.InvalidResponseError)
    assert fault_server.hits(FALLBACK) == 0
    assert elapsed < BOUND


async def test_a_restarted_stream_sends_no_assistant_prefill(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, Behaviour.cut(after_chunks=2))
    fault_server.always(FALLBACK, "reject_prefill")  # 400 if the last message is the assistant's partial text
    service = await make_service()
    events, elapsed = await stream(service, "stream-restart")
    result = done_result(events)
    assert result.model_id == FALLBACK
    assert text_after_last_restart(events) == f"answer from {FALLBACK}"
    seen = fault_server.requests(FALLBACK)
    assert len(seen) == 1
    assert seen[0].last_role == "user"
    assert seen[0].body["messages"] == fault_server.requests(PRIMARY)[0].body["messages"]  # the same conversation
    assert elapsed < BOUND


async def test_a_stream_without_done_is_finalized_with_its_usage(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, "no_done")
    service = await make_service()
    events, elapsed = await stream(service, "solo")
    result = done_result(events)
    assert result.model_id == PRIMARY
    assert result.text == f"answer from {PRIMARY}"
    assert result.finish_reason == "stop"
    assert result.usage.input_tokens == 11
    assert result.usage.output_tokens == fault_server.chunk_count
    assert events[-1].usage is not None
    assert events[-1].usage.input_tokens == 11
    assert result.cost > 0
    assert summary(result.attempts) == [(PRIMARY, "success", None)]
    assert fault_server.hits(PRIMARY) == 1
    assert elapsed < BOUND


async def test_complete_under_the_hood_accepts_a_stream_without_done(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, "no_done")
    service = await make_service(stream_under_the_hood=True)
    result, elapsed = await complete(service, "solo")
    assert result.model_id == PRIMARY
    assert result.text == f"answer from {PRIMARY}"
    assert result.usage.input_tokens == 11
    assert elapsed < BOUND


# --- 401 / 403 -------------------------------------------------------------------------


def _breaker_state(health: Mapping[str, Any], model_id: str) -> str:
    """``service.health()`` is ``{"models": {model_id: {"state": ..., ...}}}``."""
    return str(health["models"][model_id]["state"])


# --- request-caused failures ----------------------------------------------------------------


async def test_context_length_exceeded_goes_only_to_a_larger_context_window(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, "context_length_exceeded")
    service = await make_service()
    result, elapsed = await complete(service, "long")
    assert result.model_id == BIG
    assert fault_server.hits(PRIMARY) == 1
    assert fault_server.hits(SAME) == 0  # its 4096 window cannot hold the 5120 tokens the primary reported
    assert fault_server.hits(BIG) == 1
    assert summary(result.attempts) == [(PRIMARY, "error", "ContextLengthExceededError"), (BIG, "success", None)]
    assert _breaker_state(await service.health(), PRIMARY) == "closed"  # the request's fault, not the model's
    assert elapsed < BOUND


async def test_without_a_reported_size_context_length_goes_to_a_larger_declared_window(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, Behaviour.error(400, code="context_length_exceeded", message="too long"))
    service = await make_service()
    result, _ = await complete(service, "long")
    assert result.model_id == BIG
    assert fault_server.hits(SAME) == 0  # no larger than the primary's declared window: would fail the same way
    assert summary(result.attempts)[0] == (PRIMARY, "error", "ContextLengthExceededError")


async def test_content_filter_is_raised_with_the_providers_reason(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    reason = "Rejected: the prompt touches a restricted topic (policy 7)"
    fault_server.always(PRIMARY, Behaviour.content_policy_violation(reason))
    service = await make_service()
    for _ in range(FAST.breaker_failure_threshold + 1):
        exc, elapsed = await complete_error(service, "chat")
        assert isinstance(exc, ContentFilteredError)
        assert exc.provider_message == reason
        assert exc.provider_code == "content_policy_violation"
        assert exc.model_id == PRIMARY
        assert exc.task == "chat"
        assert elapsed < BOUND
    assert fault_server.hits(FALLBACK) == 0
    # Each call reached the primary: a refusal is about the request, so it never opened the breaker.
    assert fault_server.hits(PRIMARY) == FAST.breaker_failure_threshold + 1
    assert _breaker_state(await service.health(), PRIMARY) == "closed"


async def test_content_filter_falls_back_when_the_task_opts_in(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, "content_policy_violation")
    service = await make_service()
    result, elapsed = await complete(service, "filter-optin")
    assert result.model_id == FALLBACK
    assert summary(result.attempts) == [(PRIMARY, "error", "ContentFilteredError"), (FALLBACK, "success", None)]
    assert result.attempts[0].error_message is not None
    assert "safety system" in result.attempts[0].error_message  # the provider's reason is kept
    assert fault_server.hits(PRIMARY) == 1
    assert elapsed < BOUND


async def test_other_4xx_in_a_stream_is_raised_at_once(fault_server: FaultServer, make_service: ServiceFactory) -> None:
    fault_server.always(PRIMARY, "400")
    service = await make_service()
    events, exc, elapsed = await stream_error(service, "chat")
    assert events == []
    assert isinstance(exc, BadRequestError)
    assert fault_server.hits(FALLBACK) == 0
    assert elapsed < 1.0


# --- outage and recovery: the circuit breaker ------------------------------------------------


@pytest.mark.parametrize("down", ["503", "reset"])
async def test_outage_is_served_by_the_fallback_without_calling_the_primary_then_recovers(
    fault_server: FaultServer, make_service: ServiceFactory, down: str
) -> None:
    cooldown = 0.2
    fault_server.down(PRIMARY, down)
    service = await make_service(breaker_failure_threshold=2, breaker_cooldown_initial=cooldown)

    first, _ = await complete(service, "chat")
    assert first.model_id == FALLBACK
    hits_when_open = fault_server.hits(PRIMARY)
    assert hits_when_open == 2  # the threshold's worth of failures opened the breaker
    assert _breaker_state(await service.health(), PRIMARY) == "open"

    # During the outage: every call is served by the fallback and the primary is not called.
    for _ in range(5):
        result, elapsed = await complete(service, "chat")
        assert result.model_id == FALLBACK
        assert PRIMARY not in [a.model_id for a in result.attempts if a.outcome != "skipped"]
        assert elapsed < 0.5
    assert fault_server.hits(PRIMARY) == hits_when_open

    # The primary recovers; after the cooldown one probe reaches it and calls return to it.
    fault_server.up(PRIMARY)
    limit = time.monotonic() + cooldown + 2.0
    served_by = FALLBACK
    while served_by != PRIMARY:
        assert time.monotonic() < limit, "calls never returned to the primary after its cooldown"
        await asyncio.sleep(cooldown / 4)  # polling interval, bounded by `limit`
        result, _ = await complete(service, "chat")
        served_by = result.model_id
    assert fault_server.hits(PRIMARY) == hits_when_open + 1  # exactly one probe
    assert _breaker_state(await service.health(), PRIMARY) == "closed"
    after, _ = await complete(service, "chat")
    assert after.model_id == PRIMARY
    assert fault_server.hits(PRIMARY) == hits_when_open + 2


async def test_a_failed_probe_reopens_the_breaker(fault_server: FaultServer, make_service: ServiceFactory) -> None:
    cooldown = 0.2
    fault_server.always(PRIMARY, "503")
    service = await make_service(breaker_failure_threshold=2, breaker_cooldown_initial=cooldown)
    await complete(service, "chat")
    opened_at_hits = fault_server.hits(PRIMARY)
    limit = time.monotonic() + cooldown + 2.0
    while fault_server.hits(PRIMARY) == opened_at_hits:
        assert time.monotonic() < limit, "no probe was let through after the cooldown"
        await asyncio.sleep(cooldown / 4)
        result, _ = await complete(service, "chat")
        assert result.model_id == FALLBACK
    assert fault_server.hits(PRIMARY) == opened_at_hits + 1  # one probe, not the retries of a closed route
    assert _breaker_state(await service.health(), PRIMARY) == "open"
    result, _ = await complete(service, "chat")
    assert result.model_id == FALLBACK
    assert fault_server.hits(PRIMARY) == opened_at_hits + 1


async def test_when_every_breaker_is_open_the_soonest_is_tried(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    cooldown = 0.2
    fault_server.always(PRIMARY, "503")
    fault_server.always(FALLBACK, "503")
    service = await make_service(breaker_failure_threshold=2, breaker_cooldown_initial=cooldown, max_attempts_total=10)
    exc, _ = await complete_error(service, "chat")
    assert isinstance(exc, AllModelsFailedError)
    assert {a.model_id for a in exc.attempts if a.outcome == "error"} == {PRIMARY, FALLBACK}
    fault_server.always(PRIMARY, "ok")
    fault_server.always(FALLBACK, "ok")
    # Both are open now: rather than failing instantly the service waits for the sooner probe, within the deadline.
    result, elapsed = await complete(service, "chat")
    assert result.model_id in {PRIMARY, FALLBACK}
    assert elapsed < cooldown + 1.0


# --- one deadline --------------------------------------------------------------------------


async def test_silent_candidates_leave_the_model_after_them_a_share_of_the_deadline(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    for model in SILENT_CHAIN:
        fault_server.always(model, "silent")
    service = await make_service(attempt_timeout=0.3, first_token_timeout=0.3, fallback_reserve=0.25)
    start = time.monotonic()
    result = await service.complete_with_task_model("silent-chain", prompt="hello", deadline=0.6)
    elapsed = time.monotonic() - start
    assert result.model_id == PRIMARY  # the default model ends the chain, and it had time left to answer
    assert elapsed < 0.6 + 0.2
    assert [a.model_id for a in result.attempts] == [*SILENT_CHAIN, PRIMARY]
    assert all(fault_server.hits(m) == 1 for m in SILENT_CHAIN)  # silent routes are never retried


async def test_one_deadline_bounds_a_chain_of_silent_servers(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    for model in SILENT_CHAIN:
        fault_server.always(model, "silent")
    # No share kept back for later candidates: the first two silent routes use up the whole deadline.
    service = await make_service(attempt_timeout=0.3, first_token_timeout=0.3, fallback_reserve=0)
    exc, elapsed = await complete_error(service, "silent-chain", deadline=0.5)
    assert isinstance(exc, DeadlineExceededError)
    assert exc.task == "silent-chain"
    assert 0.45 <= elapsed < 1.0
    tried = [a.model_id for a in exc.attempts if a.outcome != "skipped"]
    assert tried[:1] == [SILENT_CHAIN[0]]
    assert fault_server.hits(SILENT_CHAIN[2]) == 0  # 0.3 s + 0.2 s: the deadline ended the second try
    assert all(fault_server.hits(m) <= 1 for m in SILENT_CHAIN)  # silent routes are never retried


async def test_one_deadline_bounds_a_stream(fault_server: FaultServer, make_service: ServiceFactory) -> None:
    for model in SILENT_CHAIN:
        fault_server.always(model, "silent")
    service = await make_service(attempt_timeout=0.3, first_token_timeout=0.3, fallback_reserve=0)
    events, exc, elapsed = await stream_error(service, "silent-chain", deadline=0.5)
    assert events == []
    assert isinstance(exc, DeadlineExceededError)
    assert elapsed < 1.0


async def test_the_deadline_cuts_short_a_retry_after_wait(
    fault_server: FaultServer, make_service: ServiceFactory
) -> None:
    fault_server.always(PRIMARY, "429:0.9")  # within the cap, but longer than what is left of the deadline
    fault_server.always(FALLBACK, "silent")
    service = await make_service()
    exc, elapsed = await complete_error(service, "chat", deadline=0.4)
    assert isinstance(exc, DeadlineExceededError | AllModelsFailedError)
    assert elapsed < 1.0
