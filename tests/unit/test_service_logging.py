"""One structlog event per attempt and per call, without request contents, and no work when the level is off."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs
from structlog.typing import EventDict, WrappedLogger

from taskmodels.errors import AllModelsFailedError
from taskmodels.sections import ResilienceSettings
from taskmodels.testing import FakeBackend, fake_model, fake_registry, make_test_service, reply, server_error
from taskmodels.types import Usage

SECRET_PROMPT = "my very private prompt"


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def make() -> tuple[Any, FakeBackend]:
    backend = FakeBackend()
    service = make_test_service(
        fake_registry(fake_model("a"), fake_model("b")),
        backend=backend,
        resilience=ResilienceSettings(max_attempts_per_model=1),
        sleep=lambda s: _no_sleep(),
    )
    return service, backend


async def _no_sleep() -> None:
    return None


async def test_an_event_per_attempt_and_one_per_call() -> None:
    service, backend = make()
    backend.script("a", server_error(503))
    backend.script("b", reply("x", usage=Usage(7, 3)))
    with capture_logs() as logs:
        await service.complete_with_task_model("t", SECRET_PROMPT)
    attempts = [e for e in logs if e["event"] == "taskmodels.call.attempt"]
    calls = [e for e in logs if e["event"] == "taskmodels.call.finished"]
    assert [(e["model_id"], e["outcome"], e["error_class"]) for e in attempts] == [
        ("a", "error", "ProviderUnavailableError"),
        ("b", "success", None),
    ]
    assert attempts[1]["input_tokens"] == 7
    assert attempts[1]["output_tokens"] == 3
    assert len(calls) == 1
    assert (calls[0]["task"], calls[0]["model_id"], calls[0]["provider"], calls[0]["outcome"]) == (
        "t",
        "b",
        "fake",
        "success",
    )
    assert {"latency", "cost", "attempts"} <= calls[0].keys()
    assert SECRET_PROMPT not in repr(logs)


async def test_a_failed_call_logs_its_error_class() -> None:
    service, backend = make()
    backend.always("a", server_error())
    backend.always("b", server_error())
    with capture_logs() as logs, pytest.raises(Exception, match="every model failed"):
        await service.complete_with_task_model("t", "p")
    call = [e for e in logs if e["event"] == "taskmodels.call.finished"]
    assert len(call) == 1
    assert (call[0]["outcome"], call[0]["error_class"]) == ("error", "AllModelsFailedError")


@pytest.mark.usefixtures("restore_structlog")
async def test_levels_that_are_off_cost_no_events() -> None:
    service, backend = make()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    seen: list[EventDict] = []

    def keep(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        seen.append(event)
        raise structlog.DropEvent

    structlog.configure(processors=[keep])
    await service.complete_with_task_model("t", "p")
    assert seen == []  # success is debug (attempt) and info (call): both off
    backend.script("a", server_error())
    await service.complete_with_task_model("t", "p")
    assert seen == []  # a failed attempt the chain recovered from is info: off too


async def test_levels_a_failed_attempt_is_info_a_failed_call_and_an_open_circuit_are_warnings() -> None:
    backend = FakeBackend()
    backend.always("a", server_error(503))
    service = make_test_service(
        fake_registry(fake_model("a")),
        backend=backend,
        resilience=ResilienceSettings(max_attempts_per_model=1, breaker_failure_threshold=1),
    )
    with capture_logs() as logs, pytest.raises(AllModelsFailedError):
        await service.complete_with_task_model("t", "p")
    levels = {(e["event"], e.get("outcome")): e["log_level"] for e in logs}
    assert levels[("taskmodels.call.attempt", "error")] == "info"
    assert levels[("taskmodels.breaker.opened", None)] == "warning"
    assert levels[("taskmodels.call.finished", "error")] == "warning"
    opened = next(e for e in logs if e["event"] == "taskmodels.breaker.opened")
    assert (opened["model_id"], opened["error_class"], opened["status_code"]) == ("a", "ProviderUnavailableError", 503)
