"""The blocking facade: calls from plain threads on one background loop; never a nested loop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from taskmodels.service import SyncModelService
from taskmodels.testing import FakeBackend, fake_model, fake_registry, make_test_service, reply, server_error


@pytest.fixture
def facade() -> Iterator[tuple[SyncModelService, FakeBackend]]:
    backend = FakeBackend()
    service = make_test_service(fake_registry(fake_model("a"), fake_model("b")), backend=backend)
    sync = service.sync
    yield sync, backend
    sync.close()


def test_complete_from_a_plain_thread(facade: tuple[SyncModelService, FakeBackend]) -> None:
    sync, backend = facade
    backend.always("a", server_error(503))
    backend.script("b", reply("hello"))
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(sync.complete_with_task_model("t", prompt="hi"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert len(results) == 3
    assert {r.model_id for r in results} == {"b"}
    assert "hello" in {r.text for r in results}


def test_one_background_loop_serves_every_call(facade: tuple[SyncModelService, FakeBackend]) -> None:
    sync, _ = facade
    sync.complete_with_task_model("t", "x")
    first = sync._thread
    sync.complete_with_task_model("t", "y")
    assert sync._thread is first
    assert first is not None
    assert first.name == "taskmodels-sync"


def test_stream_and_embed_and_health(facade: tuple[SyncModelService, FakeBackend]) -> None:
    sync, backend = facade
    backend.script("a", reply("one two"))
    events = list(sync.stream_with_task_model("t", "p"))
    assert [e.type for e in events] == ["text", "text", "done"]
    assert sync.embed_with_task_model("t", ["abc"]).model_id == "a"
    assert sync.health()["models"]["a"]["state"] == "closed"
    assert sync.totals()["tasks"]["t"]["calls"] == 2


def test_errors_reach_the_caller(facade: tuple[SyncModelService, FakeBackend]) -> None:
    sync, backend = facade
    backend.always("a", server_error())
    backend.always("b", server_error())
    from taskmodels.errors import AllModelsFailedError, InvalidRequestError

    with pytest.raises(AllModelsFailedError):
        sync.complete_with_task_model("t", "p")
    with pytest.raises(InvalidRequestError, match=r"^unknown request field\(s\) nope"):
        sync.complete_with_task_model("t", nope=1)


async def test_calling_from_inside_a_running_loop_is_a_clear_error(
    facade: tuple[SyncModelService, FakeBackend],
) -> None:
    sync, backend = facade
    with pytest.raises(RuntimeError, match="inside a running event loop"):
        sync.complete_with_task_model("t", "p")
    assert backend.calls == []


def test_a_sync_application_closes_the_container_on_the_facades_loop(tmp_path: Any) -> None:
    import json

    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.settings import Settings

    path = tmp_path / "modelRegistry.json"
    path.write_text(
        json.dumps(fake_registry(fake_model("a", provider="openai-compatible", baseUrl="http://127.0.0.1:9")))
    )
    container = Container()
    container.settings.override(providers.Object(Settings(registry_path=path)))
    sync = container.model_service().sync
    client = container.http_client()
    assert sync.run(_loop_thread_name()) == "taskmodels-sync"
    sync.run(container.aclose())
    sync.close()
    assert client.is_closed


async def _loop_thread_name() -> str:
    return threading.current_thread().name
