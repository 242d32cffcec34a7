"""Images through the whole service, against the fake server: one request, a chain of providers, each model
sent the image in its own wire shape; a model without ``vision`` never sent it; a model that cannot take it
refused without a request, and the chain moved on."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from taskmodels.errors import AllModelsFailedError
from taskmodels.fake_server import FakeLLMServer
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import make_test_service
from taskmodels.types import ImagePart, Message, TextPart

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
CAT_URL = "https://images.example.com/pets/cat.png?sig=SIGNED"
KEY_VARIABLE = "IMAGES_TEST_KEY"

GPT, TEXT_ONLY, CLAUDE, GEMINI, LLAVA = "gpt-4o", "qwen-text", "claude-sonnet-4-5", "gemini-2.5-flash", "llava"


def entry(model_id: str, provider: str, name: str, server: FakeLLMServer, *, vision: bool = True) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": provider,
        "modelName": name,
        "maxTokens": 64,
        "temperature": 0.0,
        "contextWindow": 32000,
        "costPer1kTokens": 0.001,
        "capabilities": ["chat", "vision"] if vision else ["chat"],
        "apiKeyEnv": KEY_VARIABLE,
        "baseUrl": server.openai_base_url if provider.startswith("openai") else server.base_url,
    }


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
async def service(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelService]:
    monkeypatch.setenv(KEY_VARIABLE, "fake-key-0123456789")
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10.0)) as client:
        factory = ModelProviderFactory(http_client=client, discover_entry_points=False)
        registry = ModelRegistryService.from_dict(
            {
                "models": [
                    entry("gpt", "openai", GPT, server),
                    entry("text-only", "openai-compatible", TEXT_ONLY, server, vision=False),
                    entry("claude", "anthropic", CLAUDE, server),
                    entry("gemini", "gemini", GEMINI, server),
                    entry("llava", "ollama", LLAVA, server),
                ],
                "taskMappings": [
                    {
                        "taskName": "describe",
                        "primaryModelId": "gpt",
                        "fallbackModelIds": ["text-only", "claude", "gemini"],
                    },
                    {"taskName": "local-first", "primaryModelId": "llava", "fallbackModelIds": ["claude"]},
                    {"taskName": "local-only", "primaryModelId": "llava"},
                ],
                "defaultModelId": "llava",
            },
            provider_names=factory.provider_names(),
        )
        yield make_test_service(
            registry,
            provider_factory=factory,
            state_store=MemoryStateStore(),
            resilience=ResilienceSettings(deadline=10.0, max_attempts_per_model=1, backoff_initial=0.01),
        )


def picture(*, url: bool = True) -> list[Message]:
    parts: list[TextPart | ImagePart] = [
        TextPart("What is in these pictures?"),
        ImagePart.from_bytes(base64.b64decode(PNG_B64)),
    ]
    if url:
        parts.append(ImagePart.from_url(CAT_URL))
    return [Message(role="user", content=tuple(parts))]


def body_for(server: FakeLLMServer, model: str) -> dict[str, Any]:
    (seen,) = [r for r in server.requests if r.model == model]
    return seen.body


async def test_one_request_down_a_chain_sends_each_provider_its_own_shape(
    service: ModelService, server: FakeLLMServer
) -> None:
    server.fail(GPT, status=503)
    server.fail(CLAUDE, status=503)

    result = await service.complete_with_task_model("describe", messages=picture())

    assert result.model_id == "gemini"
    assert result.text.endswith("(saw 2 images: image/png 70 bytes, https://images.example.com/…)")
    assert server.models_seen() == [GPT, CLAUDE, GEMINI]  # the model without vision was never sent the image
    # https://platform.openai.com/docs/guides/images-vision
    assert body_for(server, GPT)["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}},
        {"type": "image_url", "image_url": {"url": CAT_URL}},
    ]
    # https://docs.claude.com/en/docs/build-with-claude/vision
    assert body_for(server, CLAUDE)["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": CAT_URL}},
    ]
    # https://ai.google.dev/gemini-api/docs/image-understanding and .../file-input-methods
    assert body_for(server, GEMINI)["contents"][0]["parts"] == [
        {"text": "What is in these pictures?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
        {"fileData": {"mimeType": "image/png", "fileUri": CAT_URL}},
    ]


async def test_ollama_gets_inline_images_as_its_images_list(service: ModelService, server: FakeLLMServer) -> None:
    result = await service.complete_with_task_model("local-only", messages=picture(url=False))

    assert result.text.endswith("(saw 1 image: image/png 70 bytes)")
    assert body_for(server, LLAVA)["messages"] == [
        {"role": "user", "content": "What is in these pictures?", "images": [PNG_B64]}
    ]


async def test_an_image_url_on_ollama_moves_on_without_a_request_or_a_fetch(
    service: ModelService, server: FakeLLMServer
) -> None:
    result = await service.complete_with_task_model("local-first", messages=picture())

    assert result.model_id == "claude"
    assert server.models_seen() == [CLAUDE]  # Ollama was asked nothing, and nothing fetched the URL
    refused, answered = result.attempts
    assert (refused.model_id, refused.error_class, refused.status_code) == ("llava", "UnsupportedContentError", None)
    assert answered.outcome == "success"
    health = await service.health()
    assert health["models"]["llava"]["consecutive_failures"] == 0

    events = [e async for e in service.stream_with_task_model("local-first", messages=picture())]
    assert events[-1].type == "done"
    assert events[-1].result is not None
    assert events[-1].result.model_id == "claude"


async def test_when_no_model_can_take_the_image_the_error_says_why(
    service: ModelService, server: FakeLLMServer
) -> None:
    with pytest.raises(AllModelsFailedError) as caught:
        await service.complete_with_task_model("local-only", messages=picture())

    message = str(caught.value)
    assert "UnsupportedContentError" in message
    assert "ollama cannot take an image URL (https://images.example.com/…)" in message
    assert "pets/cat" not in message
    assert "SIGNED" not in message
    assert server.requests == []
