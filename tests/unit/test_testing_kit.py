"""taskmodels.testing: FakeProvider scripts, records, and plugs into the real factory and container."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamStalledError,
)
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.providers.port import PORT_METHODS, ModelPort, is_provider_class
from taskmodels.registry.schema import ModelConfig
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.service import ModelService
from taskmodels.testing import (
    Fail,
    FakeBackend,
    FakeProvider,
    auth_error,
    bad_request,
    connection_error,
    content_filtered,
    context_length,
    cut,
    fake_model,
    fake_registry,
    hang,
    make_test_container,
    malformed,
    overridden_container,
    rate_limited,
    reply,
    server_error,
    stall,
    timeout,
)
from taskmodels.types import CompletionRequest, StreamEvent, Usage

MODEL = ModelConfig.model_validate(fake_model("m"))
REQ = CompletionRequest(prompt="hi")


async def drain(stream: AsyncIterator[StreamEvent], into: list[StreamEvent]) -> None:
    async for event in stream:
        into.append(event)


async def test_direct_use_answers_from_its_script_and_records_requests() -> None:
    provider = FakeProvider(MODEL)
    provider.backend.script("m", reply("first", usage=Usage(3, 2)), server_error(502))
    result = await provider.complete(REQ)
    assert (result.text, result.usage, result.model_id) == ("first", Usage(3, 2), "m")
    with pytest.raises(ProviderUnavailableError) as info:
        await provider.complete(REQ)
    assert info.value.status_code == 502
    assert (await provider.complete(REQ)).text == "answer from m"  # script spent: the default
    assert [c.request for c in provider.backend.calls] == [REQ, REQ, REQ]


@pytest.mark.parametrize(
    ("step", "cls", "status"),
    [
        (rate_limited(retry_after=2), RateLimitError, 429),
        (server_error(503), ProviderUnavailableError, 503),
        (connection_error(), ProviderConnectionError, None),
        (timeout(), ProviderTimeoutError, None),
        (auth_error(403), AuthenticationError, 403),
        (context_length(), ContextLengthExceededError, 400),
        (content_filtered("hate"), ContentFilteredError, 400),
        (bad_request(), BadRequestError, 400),
        (malformed(), InvalidResponseError, None),
    ],
)
async def test_every_scripted_failure_raises_its_typed_error(step: Fail, cls: type[Exception], status: int) -> None:
    provider = FakeProvider(MODEL, backend=FakeBackend().script("m", step))
    with pytest.raises(cls) as info:
        await provider.complete(REQ)
    assert getattr(info.value, "status_code", None) == status


async def test_rate_limit_carries_retry_after_and_content_filter_its_reason() -> None:
    backend = FakeBackend().script("m", rate_limited(retry_after=2.5), content_filtered("self-harm"))
    provider = FakeProvider(MODEL, backend=backend)
    with pytest.raises(RateLimitError) as rl:
        await provider.complete(REQ)
    assert rl.value.retry_after == 2.5
    with pytest.raises(ContentFilteredError) as cf:
        await provider.complete(REQ)
    assert cf.value.provider_message == "self-harm"


async def test_stream_cut_after_n_chunks() -> None:
    provider = FakeProvider(MODEL, backend=FakeBackend().script("m", cut(after_chunks=2)))
    got: list[StreamEvent] = []
    with pytest.raises(IncompleteStreamError):
        await drain(provider.stream(REQ), got)
    assert [e.type for e in got] == ["text", "text"]


async def test_stall_and_hang_honour_the_stream_limits() -> None:
    backend = FakeBackend().script("m", stall(after_chunks=1), hang())
    provider = FakeProvider(MODEL, backend=backend)
    got: list[StreamEvent] = []
    with pytest.raises(StreamStalledError):
        await drain(provider.stream(REQ, stall_timeout=0.02), got)
    assert len(got) == 1
    with pytest.raises(FirstTokenTimeoutError):
        await drain(provider.stream(REQ, first_token_timeout=0.02), [])


async def test_through_the_real_factory() -> None:
    backend = FakeBackend().script("m", reply("via factory"))
    factory = ModelProviderFactory(discover_entry_points=False)
    factory.register_provider_implementation("openai", backend.provider_class("openai"))
    model = ModelConfig.model_validate(fake_model("m", provider="openai"))
    provider = factory.create_provider_for_model(model)
    assert isinstance(provider, FakeProvider)
    assert provider.name == "openai"
    assert factory.create_provider_for_model(model) is provider
    assert (await provider.complete(REQ)).text == "via factory"
    assert backend.models_called() == ["m"]


async def test_a_container_with_fakes_behind_every_provider_name() -> None:
    backend = FakeBackend().script("b", reply("from b"))
    reg = fake_registry(fake_model("a", provider="openai"), fake_model("b", provider="anthropic"))
    backend.script("a", bad_request())
    container = make_test_container(reg, backend=backend)
    try:
        service = container.model_service()
        assert isinstance(service, ModelService)
        with pytest.raises(BadRequestError):
            await service.complete_with_task_model("t", "p")
        backend.script("a", server_error(), server_error())
        assert (await service.complete_with_task_model("t", "p")).text == "from b"
    finally:
        container.reset_override()
        container.reset_singletons()


async def test_overridden_container_overrides_any_node_and_resets_afterwards() -> None:
    store = MemoryStateStore()
    reg = fake_registry(fake_model("a"))
    with overridden_container(reg, overrides={"state_store": store}) as container:
        assert container.state_store() is store
        assert container.model_service().state_store is store
    assert not container.state_store.overridden
    assert not container.registry.overridden
    with pytest.raises(ValueError, match="no node named"):
        make_test_container(reg, overrides={"nope": 1})


def test_the_fake_implements_the_port_directly_with_no_wire_methods() -> None:
    port: ModelPort = FakeProvider(MODEL)  # mypy checks the structure; the asserts check the runtime
    assert port.model is MODEL
    assert is_provider_class(FakeProvider)
    assert all(callable(getattr(port, name)) for name in PORT_METHODS)
    assert not issubclass(FakeProvider, BaseModelProvider)
    for wire in ("build_completion_request", "parse_completion", "new_stream_decoder", "parse_error", "client"):
        assert not hasattr(port, wire), wire


async def test_the_fake_redacts_a_key_it_was_given_as_a_real_provider_does() -> None:
    key = "sk-fake-kit-SENTINEL-0123456789"
    backend = FakeBackend().script("m", auth_error(message=f"Incorrect API key provided: {key}"))
    provider = FakeProvider(MODEL, backend=backend, api_key=SecretStr(key))
    with pytest.raises(AuthenticationError) as info:
        await provider.complete(REQ)
    assert key not in " ".join([str(info.value), repr(vars(info.value))])
    assert "Incorrect API key provided" in str(info.value)
