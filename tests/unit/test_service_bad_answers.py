"""The engine's view of a bad answer: an InvalidResponseError like any other, so the call moves on to the next
model instead of failing with a raw error after the attempt (tests/providers/test_bad_answers.py has the
protocols' side)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.testing import FakeBackend, ManualClock, fake_model, fake_registry, make_test_service, reply


def answer(text: str, prompt_tokens: Any) -> dict[str, Any]:
    """A Chat Completions answer (platform.openai.com/docs/api-reference/chat/object) with this prompt count."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 4, "total_tokens": 4},
    }


def entry(model_id: str, host: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": "openai-compatible",
        "modelName": model_id,
        "maxTokens": 32,
        "temperature": 0.0,
        "contextWindow": 4096,
        "costPer1kTokens": 0.002,
        "baseUrl": f"http://{host}/v1",
    }


@pytest.fixture
async def http() -> AsyncIterator[tuple[httpx2.AsyncClient, list[str]]]:
    """A client on which ``primary.test`` answers a 401-digit prompt count and ``fallback.test`` a sane one."""
    hosts: list[str] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        hosts.append(request.url.host)
        count = 10**400 if request.url.host == "primary.test" else 12
        return httpx2.Response(200, content=json.dumps(answer(f"from {request.url.host}", count)).encode())

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle)) as client:
        yield client, hosts


async def test_a_bad_usage_count_moves_the_call_to_the_next_model(http: tuple[httpx2.AsyncClient, list[str]]) -> None:
    client, hosts = http
    factory = ModelProviderFactory(http_client=client, discover_entry_points=False)
    document = {
        "models": [entry("primary", "primary.test"), entry("fallback", "fallback.test")],
        "taskMappings": [{"taskName": "t", "primaryModelId": "primary", "fallbackModelIds": ["fallback"]}],
        "defaultModelId": "fallback",
    }
    registry = ModelRegistryService.from_dict(document, provider_names=factory.provider_names())
    clock = ManualClock()
    service = make_test_service(
        registry,
        provider_factory=factory,
        state_store=MemoryStateStore(),
        resilience=ResilienceSettings(max_attempts_per_model=2),
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )

    result = await service.complete_with_task_model("t", prompt="hi")

    assert (result.model_id, result.text) == ("fallback", "from fallback.test")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 4)
    assert result.cost == pytest.approx((12 + 4) * 0.002 / 1000)
    # The primary's bad answer is an invalid response: retried once, as the rule table says, then passed by.
    assert [(a.model_id, a.outcome, a.error_class) for a in result.attempts] == [
        ("primary", "error", "InvalidResponseError"),
        ("primary", "error", "InvalidResponseError"),
        ("fallback", "success", None),
    ]
    assert hosts == ["primary.test", "primary.test", "fallback.test"]


async def test_a_port_streaming_text_that_is_not_a_string_is_passed_by() -> None:
    """A port that is not one of the built-in providers (a plugin's) is not checked event by event: its answer
    fails where the stream's texts are joined, as an invalid response, and the call moves on."""
    backend = FakeBackend()
    backend.always("a", reply("five", chunks=[5]))  # an int where a text belongs: what such a port might send
    backend.always("b", reply("fine"))
    clock = ManualClock()
    service = make_test_service(
        fake_registry(fake_model("a"), fake_model("b")),
        backend=backend,
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )

    streamed = [event async for event in service.stream_with_task_model("t", prompt="hi")]

    done = streamed[-1]
    assert done.result is not None
    assert (done.result.model_id, done.result.text) == ("b", "fine")
    assert [(a.model_id, a.error_class) for a in done.result.attempts] == [
        ("a", "InvalidResponseError"),
        ("a", "InvalidResponseError"),
        ("b", None),
    ]
