"""stream_with_task_model: free fallback before the first chunk, restart/error after it, never a truncated success."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.errors import (
    AllModelsFailedError,
    IncompleteStreamError,
    InvalidRequestError,
    InvalidResponseError,
    StreamStalledError,
)
from taskmodels.sections import ResilienceSettings
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    cut,
    fake_model,
    fake_registry,
    hang,
    make_test_service,
    malformed,
    reply,
    server_error,
    stall,
)
from taskmodels.types import StreamEvent, Usage

THREE = fake_registry(fake_model("a"), fake_model("b"), fake_model("c"))


def make(reg: dict[str, Any] = THREE, **settings: Any) -> tuple[Any, FakeBackend]:
    backend = FakeBackend()
    clock = ManualClock()
    service = make_test_service(
        reg,
        backend=backend,
        resilience=ResilienceSettings(**settings),
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )
    return service, backend


async def collect(service: Any, **fields: Any) -> list[StreamEvent]:
    return [event async for event in service.stream_with_task_model("t", "p", **fields)]


async def drain(service: Any, into: list[StreamEvent]) -> None:
    async for event in service.stream_with_task_model("t", "p"):
        into.append(event)


def kinds(events: list[StreamEvent]) -> list[str]:
    return [e.type for e in events]


async def test_a_stream_ends_in_done_carrying_the_whole_result() -> None:
    service, backend = make()
    backend.script("a", reply("one two three", usage=Usage(4, 3)))
    events = await collect(service)
    assert kinds(events) == ["text", "text", "text", "done"]
    done = events[-1]
    assert done.result is not None
    assert done.result.text == "one two three" == "".join(e.text for e in events[:-1])
    assert done.result.model_id == "a"
    assert done.usage == Usage(4, 3)
    assert [a.outcome for a in done.result.attempts] == ["success"]
    assert backend.calls[0].kind == "stream"


async def test_failures_before_the_first_chunk_fall_back_without_a_restart_event() -> None:
    service, backend = make(max_attempts_per_model=1)
    backend.script("a", server_error(503))
    events = await collect(service)
    assert "restart" not in kinds(events)
    assert events[-1].result is not None
    assert events[-1].result.model_id == "b"
    assert [a.error_class for a in events[-1].result.attempts] == ["ProviderUnavailableError", None]


async def test_first_token_too_late_moves_to_the_next_model_without_retrying() -> None:
    service, backend = make(first_token_timeout=0.05, max_attempts_per_model=3)
    backend.script("a", hang())
    events = await collect(service)
    assert backend.models_called() == ["a", "b"]
    assert events[-1].result is not None
    assert events[-1].result.attempts[0].error_class == "FirstTokenTimeoutError"
    assert "restart" not in kinds(events)


async def test_a_cut_stream_with_restart_policy_tells_the_caller_to_discard_and_restarts() -> None:
    service, backend = make(max_attempts_per_model=1, stream_policy="restart")
    backend.script("a", cut(after_chunks=2))
    backend.script("b", reply("fresh answer"))
    events = await collect(service)
    assert kinds(events) == ["text", "text", "restart", "text", "text", "done"]
    restart = events[2]
    assert restart.model_id == "b"
    assert events[-1].result is not None
    assert events[-1].result.text == "fresh answer"
    assert [(a.model_id, a.error_class) for a in events[-1].result.attempts] == [
        ("a", "IncompleteStreamError"),
        ("b", None),
    ]
    # no assistant prefill: the fallback gets the caller's request as it was
    assert backend.calls[1].request is backend.calls[0].request


async def test_a_retry_of_the_same_model_after_partial_text_also_restarts() -> None:
    service, backend = make(max_attempts_per_model=2)
    backend.script("a", cut(after_chunks=1), reply("again"))
    events = await collect(service)
    assert kinds(events) == ["text", "restart", "text", "done"]
    assert events[1].model_id == "a"


async def test_error_policy_raises_after_the_first_chunk() -> None:
    service, backend = make(stream_policy="error")
    backend.script("a", cut(after_chunks=2))
    events: list[StreamEvent] = []
    with pytest.raises(IncompleteStreamError) as info:
        await drain(service, events)
    assert kinds(events) == ["text", "text"]
    assert info.value.task == "t"
    assert backend.models_called() == ["a"]


async def test_the_tasks_stream_policy_wins_over_settings() -> None:
    service, backend = make(
        fake_registry(fake_model("a"), fake_model("b"), streamPolicy="error"), stream_policy="restart"
    )
    backend.script("a", malformed(after_chunks=1))
    with pytest.raises(InvalidResponseError):
        await collect(service)


async def test_a_stall_mid_stream_is_not_retried_and_restarts_on_the_next_model() -> None:
    service, backend = make(stall_timeout=0.05, max_attempts_per_model=3)
    backend.script("a", stall(after_chunks=1))
    events = await collect(service)
    assert backend.models_called() == ["a", "b"]
    assert kinds(events)[:2] == ["text", "restart"]
    assert events[-1].result is not None
    assert events[-1].result.attempts[0].error_class == StreamStalledError.__name__


async def test_a_broken_stream_never_ends_as_a_success() -> None:
    service, backend = make(max_attempts_per_model=1)
    for m in "abc":
        backend.always(m, cut(after_chunks=1))
    events: list[StreamEvent] = []
    with pytest.raises(AllModelsFailedError) as info:
        await drain(service, events)
    assert "done" not in kinds(events)
    assert [a.error_class for a in info.value.attempts] == ["IncompleteStreamError"] * 3


async def test_the_stream_gets_first_token_and_stall_limits_clamped_to_the_deadline() -> None:
    service, backend = make(first_token_timeout=5, stall_timeout=7, deadline=60)
    await collect(service)
    call = backend.calls[0]
    assert (call.first_token_timeout, call.stall_timeout) == (5, 7)
    await collect(service, deadline=2, stall_timeout=3)
    call = backend.calls[1]
    # not the last candidate: it leaves fallback_reserve (a quarter by default) of the deadline to the others
    assert call.first_token_timeout == pytest.approx(1.5)
    assert call.stall_timeout == pytest.approx(1.5)


async def test_the_last_candidate_may_use_the_whole_remaining_deadline() -> None:
    service, backend = make(fake_registry(fake_model("a")), first_token_timeout=5, stall_timeout=7)
    await collect(service, deadline=2, stall_timeout=3)
    call = backend.calls[0]
    assert call.first_token_timeout == pytest.approx(2)
    assert call.stall_timeout == pytest.approx(2)


async def test_leaving_a_stream_early_closes_it() -> None:
    service, backend = make()
    backend.script("a", reply("a b c d"))
    stream = service.stream_with_task_model("t", "p")
    first = await anext(stream)
    await stream.aclose()
    assert first.type == "text"
    assert service.totals()["tasks"] == {}


async def test_a_models_own_timeouts_apply_where_neither_task_nor_request_set_one() -> None:
    slow = fake_model(
        "a", timeouts={"firstTokenTimeout": 40, "attemptTimeout": 120, "stallTimeout": 9, "deadline": 300}
    )
    service, backend = make(fake_registry(slow, fake_model("b")), first_token_timeout=5, stall_timeout=7)
    await collect(service)
    first = backend.calls[0]
    assert (first.first_token_timeout, first.stall_timeout) == (40, 9)  # the reasoning model starts slowly
    await collect(service, stall_timeout=3)  # the request's own limit wins over the model's
    assert backend.calls[1].stall_timeout == 3
    assert backend.calls[1].first_token_timeout == 40


async def test_a_tasks_timeouts_win_over_the_models() -> None:
    slow = fake_model("a", timeouts={"firstTokenTimeout": 40})
    reg = fake_registry(slow, fake_model("b"), timeouts={"firstTokenTimeout": 2})
    service, backend = make(reg, first_token_timeout=5)
    await collect(service)
    assert backend.calls[0].first_token_timeout == 2


async def test_a_call_may_ask_for_the_error_policy_over_the_tasks_restart() -> None:
    service, backend = make(stream_policy="restart")
    backend.script("a", cut(after_chunks=1))
    got: list[StreamEvent] = []

    async def read() -> None:
        async for event in service.stream_with_task_model("t", "p", stream_policy="error"):
            got.append(event)

    with pytest.raises(IncompleteStreamError):
        await read()
    assert kinds(got) == ["text"]
    assert backend.models_called() == ["a"]  # no second model started for an answer nobody can take


async def test_an_unknown_stream_policy_is_an_invalid_request() -> None:
    service, _ = make()
    with pytest.raises(InvalidRequestError) as caught:
        await collect(service, stream_policy="retry")
    assert caught.value.param == "stream_policy"


async def test_the_first_event_of_each_answer_names_the_model_giving_it() -> None:
    service, backend = make(stream_policy="restart", max_attempts_per_model=1)
    backend.script("a", cut(after_chunks=1))
    backend.script("b", reply("two", chunks=["tw", "o"]))
    events = await collect(service)
    assert kinds(events) == ["text", "restart", "text", "text", "done"]
    assert [(e.model_id, e.model_name) for e in events[:4]] == [
        ("a", "a-name"),
        ("b", "b-name"),
        ("b", "b-name"),
        (None, None),  # later events name nobody: the first said it
    ]
