"""ModelProviderFactory: names to classes (built-ins, registration, entry points), caching, keys and base URLs."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest
from pydantic import SecretStr

from taskmodels.errors import AuthenticationError, ConfigurationError, MissingCredentialError
from taskmodels.providers.azure import AzureOpenAIProvider
from taskmodels.providers.base import BaseModelProvider, HttpRequest, StreamDecoder
from taskmodels.providers.factory import BUILTIN_PROVIDERS, ENTRY_POINT_GROUP, ModelProviderFactory
from taskmodels.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.settings import Settings
from taskmodels.types import CompletionRequest, CompletionResult, StreamEvent

KEY = "sk-factory-secret-0123456789"
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "TASKMODELS_OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "TASKMODELS_AZURE_OPENAI_ENDPOINT",
    "TASKMODELS_AZURE_OPENAI_API_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def client() -> Any:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(500))) as c:
        yield c


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)


class CustomProvider(BaseModelProvider):
    """A user's provider in a few lines: it answers every prompt with its upper-case form."""

    name: ClassVar[str] = "shouty"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:1"
    requires_api_key: ClassVar[bool] = False

    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
        return HttpRequest("POST", f"{self.base_url}/shout", {}, {"text": request.prompt})

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
        return CompletionResult(data["text"].upper(), self.model.id, self.name, self.model.model_name)

    def new_stream_decoder(self) -> StreamDecoder:
        raise NotImplementedError


# --- names to classes --------------------------------------------------------------------


def http_provider(factory: ModelProviderFactory, model: ModelConfig) -> BaseModelProvider:
    """The factory's port for ``model``: an HTTP provider for every provider name these tests use."""
    provider = factory.create_provider_for_model(model)
    assert isinstance(provider, BaseModelProvider)
    return provider


def test_builtin_names_resolve_lazily() -> None:
    factory = ModelProviderFactory(discover_entry_points=False)
    assert {"openai", "openai-compatible", "azure-openai"} <= factory.provider_names()
    assert set(BUILTIN_PROVIDERS) <= factory.provider_names()
    assert factory.get_provider_class("openai") is OpenAIProvider
    assert factory.get_provider_class("openai-compatible") is OpenAICompatibleProvider
    assert factory.get_provider_class("azure-openai") is AzureOpenAIProvider
    for name in ("openai", "openai-compatible", "azure-openai"):
        assert factory.get_provider_class(name).name == name


def test_unknown_provider_is_a_configuration_error(make_model: Any) -> None:
    factory = ModelProviderFactory(discover_entry_points=False)
    with pytest.raises(ConfigurationError, match=r"no provider implementation named 'openia'.*openai"):
        factory.get_provider_class("openia")
    with pytest.raises(ConfigurationError, match="openia"):
        factory.create_provider_for_model(make_model(provider="openia"))


async def test_register_provider_implementation(make_model: Any, mock_http: Any) -> None:
    factory = ModelProviderFactory(http_client=mock_http.client, discover_entry_points=False)
    factory.register_provider_implementation("shouty", CustomProvider)
    assert "shouty" in factory.provider_names()
    provider = factory.create_provider_for_model(make_model(provider="shouty"))
    assert isinstance(provider, CustomProvider)
    mock_http.reply(json={"text": "hello"})
    result = await provider.complete(CompletionRequest(prompt="hello"))
    assert result.text == "HELLO"
    assert str(mock_http.requests[0].url) == "http://127.0.0.1:1/shout"


def test_register_rejects_what_is_not_a_provider() -> None:
    factory = ModelProviderFactory(discover_entry_points=False)
    with pytest.raises(TypeError):
        factory.register_provider_implementation("bad", dict)  # type: ignore[arg-type]
    assert "bad" not in factory.provider_names()


def test_registering_again_replaces_the_class_and_drops_cached_instances(make_model: Any, client: Any) -> None:
    class OtherOpenAI(OpenAICompatibleProvider):
        pass

    factory = ModelProviderFactory(http_client=client, discover_entry_points=False)
    model = make_model(provider="openai-compatible", base_url="http://127.0.0.1:8080/v1")
    before = factory.create_provider_for_model(model)
    factory.register_provider_implementation("openai-compatible", OtherOpenAI)
    after = factory.create_provider_for_model(model)
    assert type(before) is OpenAICompatibleProvider
    assert type(after) is OtherOpenAI


PLUGIN_SOURCE = """
from typing import Any, ClassVar
from taskmodels.providers.openai import OpenAICompatibleProvider

class PluginProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "plugin-llm"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:7777/v1"

NOT_A_PROVIDER = object
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution installed into a directory on sys.path, declaring two entry points in our group."""
    module = "taskmodels_test_plugin_pkg"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    dist_info = tmp_path / "taskmodels_test_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: taskmodels-test-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nplugin-llm = {module}:PluginProvider\nbroken-llm = {module}:NOT_A_PROVIDER\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


def test_entry_point_discovery(installed_plugin: str, make_model: Any, client: Any) -> None:
    factory = ModelProviderFactory(http_client=client)
    assert {"plugin-llm", "broken-llm"} <= factory.provider_names()
    provider = http_provider(factory, make_model(provider="plugin-llm"))
    assert type(provider).__module__ == installed_plugin
    assert type(provider).__name__ == "PluginProvider"
    assert provider.base_url == "http://127.0.0.1:7777/v1"
    with pytest.raises(ConfigurationError, match="not a BaseModelProvider"):
        factory.get_provider_class("broken-llm")


def test_entry_points_can_be_turned_off(installed_plugin: str) -> None:
    assert "plugin-llm" not in ModelProviderFactory(discover_entry_points=False).provider_names()


def test_registration_wins_over_an_entry_point(installed_plugin: str) -> None:
    factory = ModelProviderFactory()
    factory.register_provider_implementation("plugin-llm", CustomProvider)
    assert factory.get_provider_class("plugin-llm") is CustomProvider


# --- instances ---------------------------------------------------------------------------


def test_instances_are_cached_per_model(make_model: Any, client: Any) -> None:
    factory = ModelProviderFactory(settings(openai_api_key=KEY), client, discover_entry_points=False)
    a = make_model(id="a")
    b = make_model(id="b")
    first = http_provider(factory, a)
    assert factory.create_provider_for_model(a) is first
    assert factory.create_provider_for_model(make_model(id="a")) is first  # an equal entry, e.g. after a reload
    assert factory.create_provider_for_model(b) is not first
    changed = factory.create_provider_for_model(make_model(id="a", model_name="gpt-other"))
    assert changed is not first
    assert changed.model.model_name == "gpt-other"
    assert first.client is client


def test_key_from_the_providers_usual_variable(make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    provider = http_provider(factory, make_model())
    assert provider.api_key_value() == KEY
    assert provider.build_completion_request(CompletionRequest(prompt="x"), stream=False).headers["Authorization"] == (
        f"Bearer {KEY}"
    )


def test_key_from_the_provider_section_wins(make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-usual-one")
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI__API_KEY", KEY)
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    assert http_provider(factory, make_model()).api_key_value() == KEY


def test_api_key_env_per_model(make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-shared-one")
    monkeypatch.setenv("TEAM_B_OPENAI_KEY", KEY)
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    own = http_provider(factory, make_model(id="b", api_key_env="TEAM_B_OPENAI_KEY"))
    shared = http_provider(factory, make_model(id="a"))
    assert own.api_key_value() == KEY
    assert shared.api_key_value() == "sk-the-shared-one"


async def test_api_key_env_unset_is_a_configuration_error_naming_the_variable(
    make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-shared-one")  # not used: the model names its own variable
    monkeypatch.delenv("TEAM_C_OPENAI_KEY", raising=False)
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    with pytest.raises(MissingCredentialError, match="TEAM_C_OPENAI_KEY") as info:
        factory.create_provider_for_model(make_model(api_key_env="TEAM_C_OPENAI_KEY"))
    assert isinstance(info.value, ConfigurationError)
    assert not isinstance(info.value, AuthenticationError)  # never an outage: nothing was sent


@pytest.mark.parametrize(
    ("provider_name", "variables"),
    [
        ("openai", ("OPENAI_API_KEY", "TASKMODELS_PROVIDERS__OPENAI__API_KEY")),
        ("azure-openai", ("AZURE_OPENAI_API_KEY", "TASKMODELS_PROVIDERS__AZURE_OPENAI__API_KEY")),
        ("anthropic", ("ANTHROPIC_API_KEY", "TASKMODELS_PROVIDERS__ANTHROPIC__API_KEY")),
        ("gemini", ("GEMINI_API_KEY", "TASKMODELS_PROVIDERS__GEMINI__API_KEY")),
    ],
)
def test_every_vendor_without_its_key_names_its_variables(
    make_model: Any, client: Any, provider_name: str, variables: tuple[str, ...]
) -> None:
    factory = ModelProviderFactory(None, client, discover_entry_points=False)
    model = make_model(id="m", provider=provider_name, base_url="https://example.invalid")
    with pytest.raises(MissingCredentialError) as info:
        factory.create_provider_for_model(model)
    assert info.value.variables == variables
    assert (info.value.provider, info.value.model_id) == (provider_name, "m")
    assert all(variable in str(info.value) for variable in variables)


@pytest.mark.parametrize("provider_name", ["openai-compatible", "ollama"])
def test_vendors_whose_key_is_optional_build_without_one(make_model: Any, client: Any, provider_name: str) -> None:
    factory = ModelProviderFactory(None, client, discover_entry_points=False)
    model = make_model(id="m", provider=provider_name, base_url="http://127.0.0.1:9")
    assert factory.create_provider_for_model(model).model is model


def test_base_url_headers_and_options_from_settings(
    make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL", "http://127.0.0.1:8080/v1")
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__HEADERS", '{"X-Title": "demo"}')
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__OPTIONS", '{"streamUsage": false}')
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    provider = http_provider(factory, make_model(provider="openai-compatible"))
    assert provider.base_url == "http://127.0.0.1:8080/v1"
    http = provider.build_completion_request(CompletionRequest(prompt="x"), stream=True)
    assert http.url == "http://127.0.0.1:8080/v1/chat/completions"
    assert http.headers["X-Title"] == "demo"
    assert "stream_options" not in http.json


def test_model_base_url_wins_over_settings(make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL", "http://127.0.0.1:8080/v1")
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    model = make_model(provider="openai-compatible", base_url="http://127.0.0.1:11434/v1")
    assert http_provider(factory, model).base_url == "http://127.0.0.1:11434/v1"


def test_compatible_without_base_url_is_a_configuration_error(make_model: Any, client: Any) -> None:
    factory = ModelProviderFactory(settings(), client, discover_entry_points=False)
    with pytest.raises(ConfigurationError, match="baseUrl"):
        factory.create_provider_for_model(make_model(id="local", provider="openai-compatible"))


def test_keys_never_in_reprs(make_model: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com")
    s = settings()
    factory = ModelProviderFactory(s, client, discover_entry_points=False)
    texts = [repr(s), str(s), repr(factory), repr(s.provider_settings("openai"))]
    for provider_name in ("openai", "azure-openai"):
        provider = http_provider(factory, make_model(id=provider_name, provider=provider_name))
        http = provider.build_completion_request(CompletionRequest(prompt="x"), stream=False)
        assert any(KEY in value for value in http.headers.values())  # it is sent, in a header
        texts += [repr(provider), str(provider), repr(http), http.url]
    for text in texts:
        assert KEY not in text


def test_keys_are_secret_values(make_model: Any, client: Any) -> None:
    factory = ModelProviderFactory(settings(openai_api_key=SecretStr(KEY)), client, discover_entry_points=False)
    provider = http_provider(factory, make_model())
    assert provider.api_key_value() == KEY
    assert isinstance(provider._api_key, SecretStr)


async def test_stream_decoder_is_fresh_per_stream(make_model: Any, client: Any) -> None:
    factory = ModelProviderFactory(settings(openai_api_key=KEY), client, discover_entry_points=False)
    provider = http_provider(factory, make_model())
    first, second = provider.new_stream_decoder(), provider.new_stream_decoder()
    assert first is not second
    first.feed("message", '{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}')
    assert isinstance(first.close(), StreamEvent)
    assert not second.finished
