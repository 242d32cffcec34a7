"""The container wires, scopes and overrides; it holds no logic."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest
from dependency_injector import containers, providers

from taskmodels.containers import Container
from taskmodels.errors import SettingsError
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

# Every node that takes a scope. The two that hold open resources take singleton or thread_local only.
RESOURCES = ("http_client", "state_store")
NODES = (
    *RESOURCES,
    "provider_factory",
    "registry",
    "selector",
    "tracer",
    "breaker",
    "gate",
    "observation",
    "outcomes",
    "engine",
    "planner",
    "model_service",
)
PLAIN = NODES[len(RESOURCES) :]
SCOPES = ("singleton", "thread_local", "context_local", "factory")


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


@pytest.mark.parametrize("node", PLAIN)
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


@pytest.mark.parametrize("node", PLAIN)
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
    # Every node between the store and the service built anew each time: the override reaches the next service.
    container = make_container(
        registry_file, model_service="factory", engine="factory", gate="factory", breaker="factory", outcomes="factory"
    )
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


async def test_a_service_called_after_its_container_closed_says_so_and_sends_nothing(tmp_path: Path) -> None:
    from taskmodels.errors import ServiceClosedError
    from taskmodels.fake_server import FakeLLMServer

    with FakeLLMServer() as server:
        path = tmp_path / "registry.json"
        path.write_text(
            json.dumps({**REGISTRY, "models": [{**REGISTRY["models"][0], "baseUrl": server.openai_base_url}]})
        )
        container = make_container(path)
        service = container.model_service()
        assert (await service.complete_with_task_model("clustering", prompt="hi")).model_id == "local"
        await container.aclose()
        closed = r"^this service's container was closed \(await container"
        with pytest.raises(ServiceClosedError, match=closed):
            await service.complete_with_task_model("clustering", prompt="again")
        with pytest.raises(ServiceClosedError, match=closed):
            await service.embed_with_task_model("clustering", ["again"])
        with pytest.raises(RuntimeError):  # what a closed client raises elsewhere
            await service.stream_with_task_model("clustering", prompt="again").__anext__()
        assert server.models_seen() == ["tiny"]  # nothing was sent after the close
        assert (await service.health())["models"]["local"]["state"] == "closed"  # and no breaker counted it

        # The container itself starts afresh when asked again (a new client, to close the same way).
        again = container.model_service()
        assert again is not service
        assert (await again.complete_with_task_model("clustering", prompt="hi")).model_id == "local"
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


# --- every scope of every node, without leaks ------------------------------------------------------------


@pytest.mark.parametrize("node", RESOURCES)
@pytest.mark.parametrize("scope", ["factory", "context_local"])
def test_a_scope_a_resource_cannot_take_is_refused_naming_the_node(
    registry_file: Path, monkeypatch: pytest.MonkeyPatch, node: str, scope: str
) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY_PATH", str(registry_file))
    monkeypatch.setenv(f"TASKMODELS_SCOPES__{node.upper()}", scope)
    with pytest.raises(SettingsError) as info:
        Container().model_service()
    message = str(info.value)
    assert f"TASKMODELS_SCOPES__{node.upper()}" in message
    assert f"{node} holds open connections: it takes singleton or thread_local, not '{scope}'" in message


@pytest.mark.parametrize("scope", SCOPES)
async def test_200_services_built_and_dropped_leave_one_client_and_one_store(
    registry_file: Path, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    """Every node in ``scope`` (the resources in the nearest scope they take): 200 services built, each in a
    context of its own, and dropped, leave O(1) clients and stores open; ``aclose`` closes every client."""
    import taskmodels.http_client as http_client_module

    opened: list[httpx2.AsyncClient] = []
    build = http_client_module.build_http_client

    def recording(*args: Any, **kwargs: Any) -> httpx2.AsyncClient:
        client = build(*args, **kwargs)
        opened.append(client)
        return client

    monkeypatch.setattr(http_client_module, "build_http_client", recording)
    resource_scope = scope if scope in ("singleton", "thread_local") else "singleton"
    scopes = dict.fromkeys(PLAIN, scope) | dict.fromkeys(RESOURCES, resource_scope)
    container = make_container(registry_file, **scopes)
    seen = set()
    for _ in range(200):
        service = contextvars.Context().run(container.model_service)  # a fresh asyncio context each time
        seen.add(id(service))
        del service
    assert len(seen) >= (1 if scope in ("singleton", "thread_local") else 2)
    assert len(container.resources()) <= len(RESOURCES)  # one client and one store, whatever the scope
    assert len(opened) == 1
    await container.aclose()
    assert all(client.is_closed for client in opened)
    assert len(container.resources()) == 0
