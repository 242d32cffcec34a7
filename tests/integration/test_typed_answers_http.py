"""Typed answers against a real HTTP server: validation retries across the chain, and each model sent the
schema only the way it accepts it (``faultserver.py`` speaks OpenAI's protocol)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from taskmodels.errors import OutputValidationError
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import make_test_service
from tests.integration.faultserver import Behaviour, FaultServer, model_entry

pytestmark = pytest.mark.integration

NATIVE = "m-native"  # declares json_schema: the schema goes as response_format
PROMPTED = "m-prompted"  # declares neither json tag: the schema goes in the prompt


class Ticket(BaseModel):
    title: str
    priority: int


VALID = json.dumps({"title": "Printer on fire", "priority": 1})


def _model(model_id: str, base_url: str, capabilities: list[str]) -> dict[str, Any]:
    return model_entry(model_id, base_url, maxTokens=64, contextWindow=8192, capabilities=capabilities)


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as fault_server:
        yield fault_server


@pytest.fixture
async def service(server: FaultServer) -> AsyncIterator[ModelService]:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5.0, connect=1.0)) as client:
        factory = ModelProviderFactory(http_client=client, discover_entry_points=False)
        registry = ModelRegistryService.from_dict(
            {
                "models": [
                    _model(NATIVE, server.base_url, ["chat", "json_schema"]),
                    _model(PROMPTED, server.base_url, ["chat"]),
                ],
                "taskMappings": [{"taskName": "triage", "primaryModelId": NATIVE, "fallbackModelIds": [PROMPTED]}],
                "defaultModelId": PROMPTED,
            },
            provider_names=factory.provider_names(),
        )
        yield make_test_service(
            registry,
            provider_factory=factory,
            state_store=MemoryStateStore(),
            resilience=ResilienceSettings(deadline=5.0, attempt_timeout=2.0, backoff_initial=0.01, backoff_max=0.02),
        )


async def test_invalid_json_twice_then_a_valid_fallback(server: FaultServer, service: ModelService) -> None:
    server.script(NATIVE, [Behaviour.ok("{not json"), Behaviour.ok('{"title": "Printer on fire"}')])
    server.always(PROMPTED, Behaviour.ok(VALID))

    async with asyncio.timeout(10):
        result = await service.complete_with_task_model("triage", "The printer is on fire.", output_type=Ticket)

    assert result.output == Ticket(title="Printer on fire", priority=1)
    assert result.text == VALID
    assert result.model_id == PROMPTED
    assert [(a.model_id, a.number, a.outcome, a.error_class) for a in result.attempts] == [
        (NATIVE, 1, "error", "OutputValidationError"),
        (NATIVE, 2, "error", "OutputValidationError"),
        (PROMPTED, 1, "success", None),
    ]
    assert "not JSON" in (result.attempts[0].error_message or "")
    assert "priority: Field required" in (result.attempts[1].error_message or "")
    # the retry was the same model, told what was wrong with its first answer
    first, second = server.requests(NATIVE)
    assert first.body["response_format"]["type"] == "json_schema"
    assert second.body["messages"][-2] == {"role": "assistant", "content": "{not json"}
    assert "not JSON" in second.body["messages"][-1]["content"]


async def test_a_prompted_fallback_never_receives_response_format(server: FaultServer, service: ModelService) -> None:
    server.always(NATIVE, Behaviour.error(503, message="overloaded"))
    # This fallback's server refuses response_format with a 400, which would end the whole chain.
    server.always(PROMPTED, Behaviour.rejecting_response_format(f"Here you go:\n```json\n{VALID}\n```"))

    async with asyncio.timeout(10):
        result = await service.complete_with_task_model("triage", "The printer is on fire.", output_type=Ticket)

    assert result.output == Ticket(title="Printer on fire", priority=1)
    assert result.model_id == PROMPTED
    assert all("response_format" in r.body for r in server.requests(NATIVE))
    [fallback_request] = server.requests(PROMPTED)
    assert "response_format" not in fallback_request.body
    system = fallback_request.body["messages"][0]
    assert system["role"] == "system"
    assert json.loads(system["content"].split("\n", 1)[1])["required"] == ["title", "priority"]


async def test_a_stream_gets_its_output_on_the_done_event(server: FaultServer, service: ModelService) -> None:
    server.always(NATIVE, Behaviour.ok(VALID))
    async with asyncio.timeout(10):
        events = [e async for e in service.stream_with_task_model("triage", "fire!", output_type=Ticket)]
    assert events[-1].result is not None
    assert events[-1].result.output == Ticket(title="Printer on fire", priority=1)
    assert server.requests(NATIVE)[0].stream


async def test_every_answer_invalid_raises_with_the_validation_errors(
    server: FaultServer, service: ModelService
) -> None:
    server.always(NATIVE, Behaviour.ok("[]"))
    server.always(PROMPTED, Behaviour.ok("[]"))
    with pytest.raises(ExceptionGroup) as info:
        async with asyncio.timeout(10):
            await service.complete_with_task_model("triage", "fire!", output_type=Ticket)
    matched, _ = info.value.split(OutputValidationError)
    assert matched is not None
    assert len(matched.exceptions) == 4
    assert server.hits(NATIVE) == 2
    assert server.hits(PROMPTED) == 2
