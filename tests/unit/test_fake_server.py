"""The fake server answers every protocol it speaks the way that provider would, through the real service.

Each test runs ``taskmodels.fake_server.FakeLLMServer`` (a real HTTP server on 127.0.0.1, in a thread) behind
a real ``ModelService`` whose registry has one model on each protocol: tools come back as tool calls, JSON
mode and schemas as JSON, images are seen, and embeddings from a chat model are refused as the providers do.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from taskmodels.errors import AllModelsFailedError
from taskmodels.fake_server import FakeLLMServer
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import make_test_service
from taskmodels.types import ImagePart, Message, ResponseFormat, TextPart, ToolSpec

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG = base64.b64decode(PNG_B64)  # a 1x1 PNG of 70 bytes
KEY_VARIABLE = "FAKE_SERVER_TEST_KEY"

# model id -> (provider, modelName)
PROTOCOLS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "gpt-4o-mini"),
    "azure": ("azure-openai", "gpt-4o"),
    "compatible": ("openai-compatible", "qwen2.5-vl"),
    "anthropic": ("anthropic", "claude-sonnet-4-5"),
    "gemini": ("gemini", "gemini-2.5-flash"),
    "ollama": ("ollama", "llava"),
}
EMBEDDER = {"embedder": ("openai", "text-embedding-3-small")}

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
NOTE = ToolSpec(name="take_note", parameters={"type": "object", "properties": {"text": {"type": "string"}}})


class Ticket(BaseModel):
    title: str
    priority: int
    tags: list[str]


def entry(model_id: str, provider: str, name: str, server: FakeLLMServer) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": model_id,
        "provider": provider,
        "modelName": name,
        "maxTokens": 64,
        "temperature": 0.0,
        "contextWindow": 32000,
        "costPer1kTokens": 0.001,
        # No model says "embedding": selection then leaves chat models in an embedding call's chain, as in a
        # registry that does not use the tag, and the server's refusal is what moves the call on.
        "capabilities": ["text"] if model_id == "embedder" else ["chat", "json", "json_schema", "tools", "vision"],
        "apiKeyEnv": KEY_VARIABLE,
        "baseUrl": server.openai_base_url if provider in {"openai", "openai-compatible"} else server.base_url,
    }
    if provider == "azure-openai":
        data["options"] = {"deployment": "chat-deployment"}
    return data


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
async def service(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelService]:
    monkeypatch.setenv(KEY_VARIABLE, "fake-key-0123456789")
    models = {**PROTOCOLS, **EMBEDDER}
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10.0)) as client:
        factory = ModelProviderFactory(http_client=client, discover_entry_points=False)
        tasks: list[dict[str, Any]] = [{"taskName": model_id, "primaryModelId": model_id} for model_id in PROTOCOLS]
        # Embeddings asked of a chat model first: its refusal moves the call on to the embedding model.
        tasks.append({"taskName": "embed-via-chat", "primaryModelId": "openai", "fallbackModelIds": ["embedder"]})
        registry = ModelRegistryService.from_dict(
            {
                "models": [entry(model_id, p, n, server) for model_id, (p, n) in models.items()],
                "taskMappings": tasks,
                "defaultModelId": "openai",
            },
            provider_names=factory.provider_names(),
        )
        yield make_test_service(
            registry,
            provider_factory=factory,
            state_store=MemoryStateStore(),
            resilience=ResilienceSettings(deadline=10.0, attempt_timeout=5.0, max_attempts_per_model=1),
        )


each_protocol = pytest.mark.parametrize("task", list(PROTOCOLS))


@each_protocol
async def test_tools_come_back_as_a_tool_call_then_the_answer_after_its_result(
    service: ModelService, task: str
) -> None:
    conversation = [Message(role="user", content="Should I take an umbrella in Lyon?")]
    first = await service.complete_with_task_model(task, messages=conversation, tools=[WEATHER, NOTE])

    assert first.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in first.tool_calls] == [("get_weather", {"city": "example"})]
    assert [a.outcome for a in first.attempts] == ["success"]

    conversation += [
        Message(role="assistant", tool_calls=first.tool_calls),
        Message(role="tool", tool_call_id=first.tool_calls[0].id, name="get_weather", content='{"celsius": 21}'),
    ]
    final = await service.complete_with_task_model(task, messages=conversation, tools=[WEATHER, NOTE])
    assert final.finish_reason == "stop"
    assert not final.tool_calls
    assert "answer to: Should I take an umbrella in Lyon?" in final.text


@pytest.mark.parametrize("task", ["openai", "anthropic", "gemini"])
async def test_a_forced_tool_is_the_one_called(service: ModelService, task: str) -> None:
    result = await service.complete_with_task_model(
        task, prompt="Remember this.", tools=[WEATHER, NOTE], tool_choice="take_note"
    )
    assert [c.name for c in result.tool_calls] == ["take_note"]


@pytest.mark.parametrize("task", ["openai", "anthropic", "gemini"])
async def test_tool_choice_none_answers_in_words(service: ModelService, task: str) -> None:
    result = await service.complete_with_task_model(task, prompt="Hello.", tools=[WEATHER], tool_choice="none")
    assert (result.finish_reason, result.tool_calls) == ("stop", ())


@each_protocol
async def test_a_streamed_tool_call_arrives_whole(service: ModelService, task: str) -> None:
    events = [e async for e in service.stream_with_task_model(task, prompt="Weather in Lyon?", tools=[WEATHER])]

    calls = [e.tool_call for e in events if e.type == "tool_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls if c is not None] == [("get_weather", {"city": "example"})]
    assert events[-1].type == "done"
    assert events[-1].finish_reason == "tool_calls"


@each_protocol
async def test_json_mode_answers_a_json_object(service: ModelService, task: str) -> None:
    result = await service.complete_with_task_model(
        task, prompt="Group: a baker", response_format=ResponseFormat.json()
    )
    assert isinstance(json.loads(result.text), dict)
    assert result.finish_reason == "stop"


@each_protocol
async def test_a_json_schema_is_answered_in_its_shape(service: ModelService, task: str) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "size": {"type": "integer", "minimum": 3}},
        "required": ["label", "size"],
        "additionalProperties": False,
    }
    result = await service.complete_with_task_model(
        task, prompt="Group: a baker", response_format=ResponseFormat.json_schema(schema, name="group")
    )
    answer = json.loads(result.text)
    assert set(answer) == {"label", "size"}
    assert answer["size"] == 3
    assert isinstance(answer["label"], str)


@each_protocol
async def test_a_typed_answer_validates_on_the_first_try(service: ModelService, task: str) -> None:
    result = await service.complete_with_task_model(task, prompt="The printer is on fire.", output_type=Ticket)

    assert isinstance(result.output, Ticket)
    assert result.output.priority == 1
    assert [(a.model_id, a.outcome) for a in result.attempts] == [(task, "success")]


@each_protocol
async def test_images_are_seen_and_named_by_type_size_or_host(
    service: ModelService, server: FakeLLMServer, task: str
) -> None:
    parts: list[TextPart | ImagePart] = [TextPart("What is in these pictures?"), ImagePart.from_bytes(PNG)]
    if task != "ollama":  # Ollama takes images only inline
        parts.append(ImagePart.from_url("https://images.example.com/cat.png?sig=SIGNED"))
    messages = [Message(role="user", content=tuple(parts))]

    result = await service.complete_with_task_model(task, messages=messages)
    streamed = [e async for e in service.stream_with_task_model(task, messages=messages)]

    seen = "image/png 70 bytes" if task == "ollama" else "image/png 70 bytes, https://images.example.com/…"
    count = "1 image" if task == "ollama" else "2 images"
    assert result.text.endswith(f"answer to: What is in these pictures? (saw {count}: {seen})")
    assert "".join(e.text for e in streamed if e.type == "text") == result.text
    assert "SIGNED" not in result.text
    assert len(server.requests) == 2


async def test_embeddings_from_a_chat_model_are_refused_and_the_chain_moves_on(
    service: ModelService, server: FakeLLMServer
) -> None:
    result = await service.embed_with_task_model("embed-via-chat", ["a baker", "a pilot"])

    assert result.model_id == "embedder"
    assert len(result.vectors) == 2
    assert [(a.model_id, a.error_class, a.status_code) for a in result.attempts] == [
        ("openai", "UnsupportedContentError", 403),
        ("embedder", None, None),
    ]
    health = await service.health()
    assert health["models"]["openai"]["consecutive_failures"] == 0  # not a key's failure: the route is healthy
    assert server.models_seen() == ["gpt-4o-mini", "text-embedding-3-small"]


@pytest.mark.parametrize(("task", "status"), [("azure", 400), ("gemini", 404), ("ollama", 501)])
async def test_each_provider_refuses_embeddings_from_a_chat_model_in_its_own_way(
    service: ModelService, task: str, status: int
) -> None:
    with pytest.raises(AllModelsFailedError) as caught:
        await service.embed_with_task_model(task, ["a baker"])
    first = caught.value.attempts[0]  # then the default model, which joins every chain, refuses as well
    assert (first.model_id, first.error_class, first.status_code) == (task, "UnsupportedContentError", status)
