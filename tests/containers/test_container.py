"""The container wires, scopes and overrides; it holds no logic."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest
from dependency_injector import containers, providers

from taskmodels.containers import Container
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ScopeSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings

REGISTRY: dict[str, Any] = {
    "models": [
        {
            "id": "local",
            "provider": "openai-compatible",
            "modelName": "tiny",
            "maxTokens": 64,
            "temperature": 0.2,
            "contextWindow": 2048,
            "costPer1kTokens": 0.0,
            "capabilities": ["chat"],
            "baseUrl": "http://127.0.0.1:9/v1",
        }
    ],
    "taskMappings": [{"taskName": "clustering", "primaryModelId": "local", "fallbackModelIds": []}],
    "defaultModelId": "local",
}

NODES = ("http_client", "state_store", "provider_factory", "registry", "selector", "model_service")


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "modelRegistry.json"
    path.write_text(json.dumps(REGISTRY))
    return path


def make_container(registry_file: Path, **scopes: str) -> Container:
    settings = Settings(registry_path=registry_file, scopes=ScopeSettings(**scopes))  # type: ignore[arg-type]
    container = Container()
    container.settings.override(providers.Object(settings))
    return container


def test_service_is_built_without_await(registry_file: Path) -> None:
    container = make_container(registry_file)
    service = container.model_service()
    assert isinstance(service, ModelService)
    assert container.model_service() is service


@pytest.mark.parametrize("node", NODES)
def test_singleton_scope_gives_one_instance_across_threads(registry_file: Path, node: str) -> None:
    container = make_container(registry_file, **{node: "singleton"})
    first = getattr(container, node)()
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(getattr(container, node)()))
    thread.start()
    thread.join(5)
    assert seen == [first]


@pytest.mark.parametrize("node", NODES)
def test_factory_scope_gives_a_new_instance_per_call(registry_file: Path, node: str) -> None:
    container = make_container(registry_file, **{node: "factory"})
    assert getattr(container, node)() is not getattr(container, node)()


@pytest.mark.parametrize("node", NODES)
def test_thread_local_scope_gives_one_instance_per_thread(registry_file: Path, node: str) -> None:
    container = make_container(registry_file, **{node: "thread_local"})
    here = getattr(container, node)()
    assert getattr(container, node)() is here
    seen: list[Any] = []

    def other_thread() -> None:
        seen.append(getattr(container, node)())
        seen.append(getattr(container, node)())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(5)
    assert seen[0] is seen[1]
    assert seen[0] is not here


@pytest.mark.parametrize("node", NODES)
async def test_context_local_scope_gives_one_instance_per_asyncio_task(registry_file: Path, node: str) -> None:
    container = make_container(registry_file, **{node: "context_local"})

    async def get_twice() -> tuple[Any, Any]:
        return getattr(container, node)(), getattr(container, node)()

    (a1, a2), (b1, b2) = await asyncio.gather(asyncio.create_task(get_twice()), asyncio.create_task(get_twice()))
    assert a1 is a2
    assert b1 is b2
    assert a1 is not b1


@pytest.mark.parametrize("node", NODES)
def test_every_node_can_be_overridden_and_the_override_does_not_leak(registry_file: Path, node: str) -> None:
    container = make_container(registry_file)
    original_type = type(getattr(container, node)())
    sentinel = object()
    with getattr(container, node).override(providers.Object(sentinel)):
        assert getattr(container, node)() is sentinel
    assert type(getattr(container, node)()) is original_type


def test_overriding_a_dependency_reaches_the_service(registry_file: Path) -> None:
    container = make_container(registry_file, model_service="factory")
    store = MemoryStateStore()
    with container.state_store.override(providers.Object(store)):
        assert container.model_service().state_store is store
    assert container.model_service().state_store is not store


def test_a_fresh_container_does_not_see_another_containers_override(registry_file: Path) -> None:
    first = make_container(registry_file)
    first.state_store.override(providers.Object("overridden"))
    second = make_container(registry_file)
    assert isinstance(second.state_store(), MemoryStateStore)
    first.state_store.reset_override()


async def test_aclose_closes_every_http_client_it_opened(registry_file: Path) -> None:
    container = make_container(registry_file, http_client="thread_local")
    here: httpx2.AsyncClient = container.http_client()
    there: list[httpx2.AsyncClient] = []
    thread = threading.Thread(target=lambda: there.append(container.http_client()))
    thread.start()
    thread.join(5)
    assert not here.is_closed
    await container.aclose()
    assert here.is_closed
    assert there[0].is_closed
    # After shutdown the container builds fresh, open resources again.
    again = container.http_client()
    assert again is not here
    assert not again.is_closed
    await container.aclose()


def test_scopes_come_from_the_environment(registry_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY_PATH", str(registry_file))
    monkeypatch.setenv("TASKMODELS_SCOPES__MODEL_SERVICE", "factory")
    container = Container()
    assert container.settings().scopes.model_service == "factory"
    assert container.model_service() is not container.model_service()


class Application(containers.DeclarativeContainer):
    """How an application embeds taskmodels: as a sub-container with its own settings."""

    config = providers.Configuration()
    taskmodels_settings = providers.Singleton(Settings, registry_path=config.registry_path)
    models = providers.Container(Container, settings=taskmodels_settings)
    handler = providers.Factory(lambda service: ("handler", service), service=models.model_service)


def test_embedding_in_a_parent_container(registry_file: Path) -> None:
    app = Application()
    app.config.registry_path.from_value(str(registry_file))
    name, service = app.handler()
    assert name == "handler"
    assert isinstance(service, ModelService)
    assert app.models.settings().registry_path == registry_file
    # The application can override a node of the embedded container.
    with app.models.model_service.override(providers.Object("fake-service")):
        assert app.handler()[1] == "fake-service"


def test_the_container_wires_the_unknown_task_setting_and_provider_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskmodels.errors import UnknownTaskError
    from taskmodels.settings import Settings

    model = {
        "id": "local",
        "provider": "openai-compatible",
        "modelName": "m",
        "maxTokens": 16,
        "temperature": 0,
        "contextWindow": 1024,
        "costPer1kTokens": 0,
    }
    path = tmp_path / "modelRegistry.json"
    path.write_text(json.dumps({"models": [model], "taskMappings": [], "defaultModelId": "local"}))
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL", "http://127.0.0.1:9/v1")
    settings = Settings(registry_path=path, environment=None, selection={"unknown_task": "error"})
    container = Container(settings=providers.Object(settings))
    # The endpoint comes from settings, so the model without a baseUrl loads with no warning about it.
    assert not container.registry().current.warnings
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'"):
        container.selector().candidates("nope")
