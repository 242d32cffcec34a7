"""OpenTelemetry spans and metrics of calls over real HTTP: the container's telemetry wiring against the fault
server, so ``server.address``/``server.port``, response ids and durations come from a real exchange."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dependency_injector import providers
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from taskmodels.containers import Container
from taskmodels.sections import HttpSettings, ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from tests.integration.faultserver import Behaviour, FaultServer, model_entry
from tests.otel_kit import Otel, attrs, by_name

pytestmark = pytest.mark.integration

PRIMARY = "m-primary"
FALLBACK = "m-fallback"


@pytest.fixture
async def service(
    fault_server: FaultServer,
    otel: Otel,
    tmp_path: Path,
) -> AsyncIterator[ModelService]:
    registry = {
        "models": [model_entry(PRIMARY, fault_server.base_url), model_entry(FALLBACK, fault_server.base_url)],
        "taskMappings": [{"taskName": "chat", "primaryModelId": PRIMARY, "fallbackModelIds": [FALLBACK]}],
        "defaultModelId": FALLBACK,
    }
    path = tmp_path / "modelRegistry.json"
    path.write_text(json.dumps(registry), encoding="utf-8")
    settings = Settings(
        registry_path=path,
        environment=None,
        http=HttpSettings(read_timeout=10.0),
        resilience=ResilienceSettings(max_attempts_per_model=1, deadline=5.0, first_token_timeout=2.0),
    )
    container = Container(settings=providers.Object(settings))
    container.tracer_provider.override(providers.Object(otel.tracer_provider))
    container.meter_provider.override(providers.Object(otel.meter_provider))
    try:
        yield container.model_service()
    finally:
        await container.aclose()


async def test_a_real_fallback_names_the_server_and_the_answer(
    service: ModelService,
    fault_server: FaultServer,
    otel: Otel,
) -> None:
    fault_server.script(PRIMARY, ["500"])
    result = await service.complete_with_task_model("chat", "hello there")
    assert result.model_id == FALLBACK

    spans = {s.name: s for s in otel.finished()}
    assert set(spans) == {"taskmodels chat", f"chat {PRIMARY}", f"chat {FALLBACK}"}
    failed, answered = spans[f"chat {PRIMARY}"], spans[f"chat {FALLBACK}"]
    for span in (failed, answered):
        got = attrs(span)
        assert got["server.address"] == "127.0.0.1"
        assert got["server.port"] == fault_server.port
        assert got["gen_ai.provider.name"] == "openai-compatible"
        assert span.end_time is not None
        assert span.start_time is not None
        assert span.end_time >= span.start_time
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs(failed)["http.response.status_code"] == 500
    answer = attrs(answered)
    assert answer["gen_ai.response.model"] == result.model_name
    assert answer["gen_ai.usage.input_tokens"] == result.usage.input_tokens > 0
    assert answer["gen_ai.usage.output_tokens"] == result.usage.output_tokens > 0
    if result.request_id:
        assert answer["gen_ai.response.id"] == result.request_id

    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage", "taskmodels.client.fallbacks"):
        assert otel.points(name), name


async def test_a_real_stream_measures_its_first_chunk(
    service: ModelService,
    fault_server: FaultServer,
    otel: Otel,
) -> None:
    fault_server.script(PRIMARY, [Behaviour.slow_first_token(0.2)])
    texts = [e.text async for e in service.stream_with_task_model("chat", "hello") if e.type == "text"]
    assert texts

    (attempt,) = by_name(otel.finished(), f"chat {PRIMARY}")
    first_chunk = attrs(attempt)["gen_ai.response.time_to_first_chunk"]
    assert 0.2 <= first_chunk < 3.0  # the server held the first chunk for 0.2 s; the bound is generous
    assert attrs(attempt)["server.port"] == fault_server.port
    assert attrs(attempt)["gen_ai.request.stream"] is True
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.sum == pytest.approx(first_chunk)
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert dict(point.attributes) == dict(duration.attributes)  # the response's model and the server's address too
    assert dict(point.attributes)["gen_ai.response.model"]


class City(BaseModel):
    name: str


async def test_a_real_typed_answer_names_the_server_and_the_output_type(
    service: ModelService,
    fault_server: FaultServer,
    otel: Otel,
) -> None:
    fault_server.script(PRIMARY, [Behaviour.ok('{"name": "Poseidonia"}')])
    result = await service.complete_with_task_model("chat", "the capital of Atlantis", output_type=City)
    assert result.output == City(name="Poseidonia")

    (attempt,) = by_name(otel.finished(), f"chat {PRIMARY}")
    got = attrs(attempt)
    assert (got["server.address"], got["server.port"]) == ("127.0.0.1", fault_server.port)
    assert got["gen_ai.output.type"] == "json"
    assert "gen_ai.request.stream" not in got
