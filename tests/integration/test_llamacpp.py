"""The ``openai-compatible`` provider against llama.cpp's real HTTP server.

The model has random weights, so answers are gibberish: these tests check the
protocol (text arrives, usage is counted, finish reasons, grammar-forced JSON,
embeddings, errors), never the content. The server's sampling seed is fixed,
so every answer is the same from run to run. Generation can never pick a
control or byte token (see ``write_tiny_llama``), so each output token is one
printable character and an answer only ends at ``max_tokens``, a stop string or
the end of a JSON grammar.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import AsyncIterator
from enum import StrEnum

import httpx2
import pytest
from pydantic import BaseModel, SecretStr

from taskmodels.errors import (
    AllModelsFailedError,
    AuthenticationError,
    ContextLengthExceededError,
    UnsupportedContentError,
)
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.providers.openai import OpenAICompatibleProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.service import ModelService
from taskmodels.testing import make_test_service
from taskmodels.types import CompletionRequest, ImagePart, Message, ResponseFormat, StreamEvent, TextPart
from tests.integration.llamacpp import LlamaCppServer, TinyModel

pytestmark = pytest.mark.integration

MODEL_NAME = "tiny-llama"  # the server's alias, which it reports as the answering model


def model_config(server: LlamaCppServer, **extra: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "id": "local-tiny",
            "provider": "openai-compatible",
            "modelName": MODEL_NAME,
            "maxTokens": 16,
            "temperature": 0.8,
            "contextWindow": 256,
            "costPer1kTokens": 0.0,
            "baseUrl": server.v1_url,
            **extra,
        }
    )


@pytest.fixture
async def http_client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0)) as client:
        yield client


@pytest.fixture
def provider(llamacpp_server: LlamaCppServer, http_client: httpx2.AsyncClient) -> BaseModelProvider:
    """Built the way the service builds it: the registry entry through the factory."""
    factory = ModelProviderFactory(http_client=http_client, discover_entry_points=False)
    provider = factory.create_provider_for_model(model_config(llamacpp_server))
    assert isinstance(provider, BaseModelProvider)
    return provider


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


# --- completions -----------------------------------------------------------------------


async def test_complete_returns_text_usage_and_the_serving_model(provider: BaseModelProvider) -> None:
    result = await provider.complete(CompletionRequest(prompt="Tell me something.", max_tokens=8))

    assert result.text
    assert result.provider == "openai-compatible"
    assert result.model_id == "local-tiny"
    assert result.model_name == MODEL_NAME
    assert result.usage.input_tokens > 0
    assert 0 < result.usage.output_tokens <= 8
    assert len(result.text) <= result.usage.output_tokens  # one printable character per token
    assert result.finish_reason == "length"
    assert result.request_id


async def test_system_prompt_counts_as_input(provider: BaseModelProvider) -> None:
    bare = await provider.complete(CompletionRequest(prompt="Hi.", max_tokens=2))
    with_system = await provider.complete(
        CompletionRequest(prompt="Hi.", system_prompt="You are a terse assistant.", max_tokens=2)
    )

    assert with_system.usage.input_tokens > bare.usage.input_tokens


async def test_max_tokens_is_honored(provider: BaseModelProvider) -> None:
    result = await provider.complete(CompletionRequest(prompt="Write a long story.", max_tokens=3))

    assert result.finish_reason == "length"
    assert result.usage.output_tokens == 3


async def test_registry_max_tokens_is_the_default(
    llamacpp_server: LlamaCppServer, http_client: httpx2.AsyncClient
) -> None:
    factory = ModelProviderFactory(http_client=http_client, discover_entry_points=False)
    provider = factory.create_provider_for_model(model_config(llamacpp_server, maxTokens=5))

    result = await provider.complete(CompletionRequest(prompt="Write a long story."))

    assert result.finish_reason == "length"
    assert result.usage.output_tokens == 5


async def test_stop_sequences_end_the_answer(provider: BaseModelProvider) -> None:
    # Any letter or digit stops it: a random model writes one within a few tokens.
    stops = list(string.ascii_lowercase + string.digits)

    result = await provider.complete(CompletionRequest(prompt="Count to ten.", max_tokens=32, stop=stops))

    assert result.finish_reason == "stop"
    assert result.usage.output_tokens < 32
    assert not any(stop in result.text for stop in stops)


async def test_json_schema_response_format_yields_matching_json(provider: BaseModelProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    # The server turns the schema into a grammar: even random weights must write valid, complete JSON.
    request = CompletionRequest(
        prompt="Give me a number.", max_tokens=96, response_format=ResponseFormat.json_schema(schema, name="number")
    )

    result = await provider.complete(request)

    assert result.finish_reason == "stop"
    value = json.loads(result.text)
    assert set(value) == {"a"}
    assert isinstance(value["a"], int)


# --- streaming -------------------------------------------------------------------------


async def test_stream_sends_text_then_done_with_usage(provider: BaseModelProvider) -> None:
    events = await collect(provider.stream(CompletionRequest(prompt="Tell me something.", max_tokens=6)))

    *texts, done = events
    assert texts
    assert all(event.type == "text" and event.text for event in texts)
    assert done.type == "done"
    assert done.finish_reason == "length"
    assert done.model_name == MODEL_NAME
    assert done.usage is not None
    assert done.usage.input_tokens > 0
    assert done.usage.output_tokens == 6
    assert 0 < len("".join(event.text for event in texts)) <= 6


async def test_stream_and_complete_agree(provider: BaseModelProvider) -> None:
    # With the server's fixed seed the same request gives the same answer either way.
    request = CompletionRequest(prompt="Say it twice.", max_tokens=10)

    completed = await provider.complete(request)
    events = await collect(provider.stream(request))

    assert "".join(event.text for event in events if event.type == "text") == completed.text
    usage = events[-1].usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (completed.usage.input_tokens, completed.usage.output_tokens)


# --- embeddings ------------------------------------------------------------------------


async def test_embeddings_return_one_vector_per_input(provider: BaseModelProvider, llamacpp_model: TinyModel) -> None:
    texts = ["hello", "a somewhat longer sentence to embed"]

    result = await provider.embed(texts)

    assert len(result.vectors) == len(texts)
    assert all(len(vector) == llamacpp_model.n_embd for vector in result.vectors)
    assert all(math.isfinite(x) for vector in result.vectors for x in vector)
    assert result.vectors[0] != result.vectors[1]
    assert result.usage.input_tokens > 0
    assert result.provider == "openai-compatible"


# --- errors ----------------------------------------------------------------------------


async def test_prompt_beyond_the_context_window_is_context_length_exceeded(provider: BaseModelProvider) -> None:
    with pytest.raises(ContextLengthExceededError) as caught:
        await provider.complete(CompletionRequest(prompt="word " * 400, max_tokens=4))

    assert caught.value.status_code == 400
    assert caught.value.provider_code == "exceed_context_size_error"
    assert caught.value.model_id == "local-tiny"
    assert caught.value.provider_message


async def test_streamed_prompt_beyond_the_context_window_is_context_length_exceeded(
    provider: BaseModelProvider,
) -> None:
    with pytest.raises(ContextLengthExceededError) as caught:
        await collect(provider.stream(CompletionRequest(prompt="word " * 400, max_tokens=4)))

    assert caught.value.status_code == 400


async def test_wrong_api_key_is_authentication_error_without_the_key(
    llamacpp_secured_server: LlamaCppServer, http_client: httpx2.AsyncClient
) -> None:
    wrong = "sk-wrong-" + "7" * 24
    provider = OpenAICompatibleProvider(model_config(llamacpp_secured_server), http_client, api_key=SecretStr(wrong))

    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(CompletionRequest(prompt="Hi.", max_tokens=2))

    error = caught.value
    assert error.status_code == 401
    shown = " ".join([str(error), repr(error), repr(error.args), str(error.provider_message), repr(provider)])
    assert wrong not in shown


async def test_missing_api_key_is_authentication_error(
    llamacpp_secured_server: LlamaCppServer, http_client: httpx2.AsyncClient
) -> None:
    provider = OpenAICompatibleProvider(model_config(llamacpp_secured_server), http_client)

    with pytest.raises(AuthenticationError) as caught:
        await collect(provider.stream(CompletionRequest(prompt="Hi.", max_tokens=2)))

    assert caught.value.status_code == 401


async def test_right_api_key_from_the_models_key_variable_is_accepted(
    llamacpp_secured_server: LlamaCppServer, http_client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert llamacpp_secured_server.api_key
    monkeypatch.setenv("TASKMODELS_TEST_LLAMACPP_KEY", llamacpp_secured_server.api_key)
    factory = ModelProviderFactory(http_client=http_client, discover_entry_points=False)
    provider = factory.create_provider_for_model(
        model_config(llamacpp_secured_server, apiKeyEnv="TASKMODELS_TEST_LLAMACPP_KEY")
    )

    result = await provider.complete(CompletionRequest(prompt="Hi.", max_tokens=2))

    assert result.usage.output_tokens == 2
    assert llamacpp_secured_server.api_key not in repr(provider)


# --- through the service ---------------------------------------------------------------


@pytest.fixture
def service(
    llamacpp_server: LlamaCppServer, llamacpp_secured_server: LlamaCppServer, http_client: httpx2.AsyncClient
) -> ModelService:
    """The whole call path from a registry document: task -> chain -> provider -> real server.

    ``locked`` is the secured server reached without its key, so it always answers 401.
    """
    open_entry = model_config(llamacpp_server).model_dump(by_alias=True, exclude_none=True)
    locked_entry = model_config(llamacpp_secured_server, id="locked").model_dump(by_alias=True, exclude_none=True)
    factory = ModelProviderFactory(http_client=http_client, discover_entry_points=False)
    registry = ModelRegistryService.from_dict(
        {
            "models": [open_entry, locked_entry],
            "taskMappings": [
                {"taskName": "chat", "primaryModelId": "local-tiny"},
                {"taskName": "guarded", "primaryModelId": "locked", "fallbackModelIds": ["local-tiny"]},
            ],
            "defaultModelId": "local-tiny",
        },
        provider_names=factory.provider_names(),
    )
    return make_test_service(
        registry,
        provider_factory=factory,
        state_store=MemoryStateStore(),
    )


async def test_service_completes_a_task_on_llamacpp(service: ModelService) -> None:
    result = await service.complete_with_task_model("chat", prompt="Tell me something.", max_tokens=4)

    assert result.text
    assert (result.model_id, result.provider, result.model_name) == ("local-tiny", "openai-compatible", MODEL_NAME)
    assert result.usage.output_tokens == 4
    assert [attempt.outcome for attempt in result.attempts] == ["success"]


async def test_service_streams_a_task_on_llamacpp(service: ModelService) -> None:
    events = await collect(service.stream_with_task_model("chat", prompt="Tell me something.", max_tokens=4))

    done = events[-1]
    assert done.type == "done"
    assert done.result is not None
    assert done.result.text == "".join(event.text for event in events if event.type == "text")
    assert done.result.usage.output_tokens == 4


async def test_service_embeds_for_a_task_on_llamacpp(service: ModelService, llamacpp_model: TinyModel) -> None:
    result = await service.embed_with_task_model("chat", ["one", "two", "three"])

    assert [len(vector) for vector in result.vectors] == [llamacpp_model.n_embd] * 3
    assert result.model_id == "local-tiny"


async def test_service_falls_back_past_a_server_that_refuses_the_key(service: ModelService) -> None:
    result = await service.complete_with_task_model("guarded", prompt="Hi.", max_tokens=2)

    assert result.model_id == "local-tiny"
    failed, served = result.attempts
    assert (failed.model_id, failed.error_class, failed.status_code) == ("locked", "AuthenticationError", 401)
    assert served.outcome == "success"


# --- images --------------------------------------------------------------------------
# The tiny model has no vision projector (mmproj), and one cannot be generated as cheaply as the model: the
# server refuses every image with a 500. That refusal is what these tests check: it must read as content
# this model cannot take (the chain moves on), not as the server failing (retried, counted on the breaker).

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da6364f8cf500f0003"
    "8601805a347d6b0000000049454e44ae426082"
)


def looking_at_an_image() -> list[Message]:
    return [Message(role="user", content=(TextPart("What is in this picture?"), ImagePart.from_bytes(PNG)))]


async def test_an_image_on_a_model_without_a_projector_is_unsupported_content(provider: BaseModelProvider) -> None:
    with pytest.raises(UnsupportedContentError) as caught:
        await provider.complete(CompletionRequest(messages=looking_at_an_image(), max_tokens=2))

    assert caught.value.status_code == 500
    assert "image input is not supported" in (caught.value.provider_message or "")


async def test_the_service_tries_such_a_model_once_and_keeps_its_breaker_closed(service: ModelService) -> None:
    with pytest.raises(AllModelsFailedError) as caught:
        await service.complete_with_task_model("chat", messages=looking_at_an_image(), max_tokens=2)

    assert [(a.model_id, a.error_class) for a in caught.value.attempts] == [("local-tiny", "UnsupportedContentError")]
    health = await service.health()
    assert health["models"]["local-tiny"]["consecutive_failures"] == 0


# --- typed answers ---------------------------------------------------------------------


class Verdict(StrEnum):
    yes = "yes"
    no = "no"


class Judgement(BaseModel):
    verdict: Verdict
    sure: bool


async def test_output_type_returns_a_validated_instance(
    llamacpp_server: LlamaCppServer, http_client: httpx2.AsyncClient
) -> None:
    """``json_schema`` in the capabilities: the schema goes as ``response_format`` and the server's grammar
    makes even random weights write a valid, closed answer within ``max_tokens``."""
    factory = ModelProviderFactory(http_client=http_client, discover_entry_points=False)
    entry = model_config(llamacpp_server).model_dump(by_alias=True, exclude_none=True)
    # Selection's prompt estimate is a bound with room for the schema and the tool-use overhead providers add;
    # the server's own 256-token window holds the real prompt, which carries no schema when it is sent natively.
    entry.update(capabilities=["chat", "json_schema"], contextWindow=4096, maxTokens=128)
    registry = ModelRegistryService.from_dict(
        {
            "models": [entry],
            "taskMappings": [{"taskName": "judge", "primaryModelId": entry["id"], "outputRetries": 0}],
            "defaultModelId": entry["id"],
        },
        provider_names=factory.provider_names(),
    )
    service = make_test_service(
        registry,
        provider_factory=factory,
        state_store=MemoryStateStore(),
    )

    result = await service.complete_with_task_model("judge", "Is the sky blue?", output_type=Judgement)

    assert isinstance(result.output, Judgement)
    assert isinstance(result.output.verdict, Verdict)
    assert isinstance(result.output.sure, bool)
    assert Judgement.model_validate_json(result.text) == result.output
    assert [a.outcome for a in result.attempts] == ["success"]
