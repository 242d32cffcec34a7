"""The persona service's endpoints, with taskmodels' providers replaced by fakes: no network, no keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from dependency_injector import providers
from fastapi.testclient import TestClient

from fastapi_app.app import create_app
from fastapi_app.containers import DEFAULT_REGISTRY, ApplicationContainer
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.testing import FakeBackend, make_test_service, reply, server_error

ANSWERS = ["I export reports every Monday", "Too many clicks to share a chart", "I mostly use the mobile app"]


@pytest.fixture
def container(monkeypatch: pytest.MonkeyPatch) -> ApplicationContainer:
    for name in ("TASKMODELS_REGISTRY_PATH", "TASKMODELS_ENVIRONMENT", "PERSONAS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    container = ApplicationContainer()
    container.config.from_dict({"registry_path": str(DEFAULT_REGISTRY), "environment": None, "openai_base_url": None})
    return container


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(container: ApplicationContainer, backend: FakeBackend) -> Iterator[TestClient]:
    """The app with only taskmodels' provider factory overridden: every provider name answers from ``backend``."""
    factory = ModelProviderFactory(discover_entry_points=False)
    for name in factory.provider_names():
        factory.register_provider_implementation(name, backend.provider_class(name))
    with container.models.provider_factory.override(providers.Object(factory)), TestClient(create_app(container)) as c:
        yield c


def test_persona_generation_is_served_by_the_tasks_primary(client: TestClient, backend: FakeBackend) -> None:
    backend.script("gpt-4o", reply('{"name": "Maya, the Monday reporter"}'))
    response = client.post("/personas", json={"answers": ANSWERS, "segment": "analysts"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == '{"name": "Maya, the Monday reporter"}'
    assert body["model_id"] == "gpt-4o"
    assert body["provider"] == "openai"
    (call,) = backend.calls
    assert call.request is not None
    assert "analysts" in (call.request.prompt or "")
    assert "realistic user personas" in (call.request.system_prompt or "")


def test_clustering_and_summaries_use_their_own_tasks(client: TestClient, backend: FakeBackend) -> None:
    assert client.post("/personas/cluster", json={"answers": ANSWERS}).json()["model_id"] == "gpt-4o-mini"
    assert client.post("/summaries", json={"text": "A long interview ..."}).json()["model_id"] == "gemini-1.5-flash"
    assert backend.models_called() == ["gpt-4o-mini", "gemini-1.5-flash"]


def test_a_failing_primary_falls_back_and_the_response_says_so(client: TestClient, backend: FakeBackend) -> None:
    backend.always("gpt-4o", server_error(503))
    body = client.post("/personas", json={"answers": ANSWERS}).json()
    assert body["model_id"] == "claude-3-5-sonnet"
    assert [(a["model_id"], a["outcome"]) for a in body["attempts"]] == [
        ("gpt-4o", "error"),
        ("gpt-4o", "error"),
        ("claude-3-5-sonnet", "success"),
    ]


def test_when_every_model_fails_the_app_answers_503(client: TestClient, backend: FakeBackend) -> None:
    for model in ("gemini-1.5-flash", "gemini-1.5-pro", "gpt-4o-mini"):
        backend.always(model, server_error(500))
    response = client.post("/summaries", json={"text": "..."})
    assert response.status_code == 503
    assert response.json()["error"] == "AllModelsFailedError"
    assert "gemini-1.5-flash" in response.json()["message"]


def test_health_reports_breakers_and_totals(client: TestClient, backend: FakeBackend) -> None:
    client.post("/personas/cluster", json={"answers": ANSWERS})
    health = client.get("/health/models").json()
    assert health["breakers"]["gpt-4o-mini"]["state"] == "closed"
    assert health["totals"]["tasks"]["clustering"]["calls"] == 1


TINY_REGISTRY: dict[str, Any] = {
    "models": [
        {
            "id": "writer",
            "provider": "openai",
            "modelName": "gpt-4o",
            "maxTokens": 512,
            "temperature": 0.7,
            "contextWindow": 128000,
            "costPer1kTokens": 0.005,
            "capabilities": ["chat", "json"],
        }
    ],
    "taskMappings": [{"taskName": "persona-generation", "primaryModelId": "writer"}],
    "defaultModelId": "writer",
}


def test_the_whole_model_service_can_be_replaced(container: ApplicationContainer) -> None:
    backend = FakeBackend().always("writer", reply("a persona from the test service"))
    service = make_test_service(TINY_REGISTRY, backend=backend)
    with container.models.model_service.override(providers.Object(service)), TestClient(create_app(container)) as c:
        body = c.post("/personas", json={"answers": ANSWERS}).json()
    assert body == {
        "text": "a persona from the test service",
        "model_id": "writer",
        "provider": "openai",
        "cost": pytest.approx(15 * 0.005 / 1000),  # the fake's usage: 10 in, 5 out, at 0.005 per 1K
        "attempts": [{"model_id": "writer", "outcome": "success", "error_class": None}],
    }


def test_an_invalid_request_is_rejected_before_any_model_is_called(client: TestClient, backend: FakeBackend) -> None:
    assert client.post("/personas", json={"answers": []}).status_code == 422
    assert backend.calls == []


def test_shutdown_closes_the_taskmodels_http_client(container: ApplicationContainer) -> None:
    with TestClient(create_app(container)):
        http_client: httpx2.AsyncClient = container.models.http_client()
        assert not http_client.is_closed
    assert http_client.is_closed


def test_traces_go_to_the_console_when_asked(
    container: ApplicationContainer,
    backend: FakeBackend,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    monkeypatch.setenv("PERSONAS_TRACE_CONSOLE", "1")
    factory = ModelProviderFactory(discover_entry_points=False)
    for name in factory.provider_names():
        factory.register_provider_implementation(name, backend.provider_class(name))
    backend.script("gpt-4o", server_error(503))
    with container.models.provider_factory.override(providers.Object(factory)), TestClient(create_app(container)) as c:
        assert c.post("/personas", json={"answers": ANSWERS}).status_code == 200
    printed = capsys.readouterr().out
    for name in (
        '"name": "POST /personas"',
        '"name": "taskmodels persona-generation"',
        '"name": "chat gpt-4o-2024-08-06"',
    ):
        assert name in printed
    assert '"error.type": "ProviderUnavailableError"' in printed
    assert "Maya" not in printed
    assert ANSWERS[0] not in printed
