"""Settings from the environment: prefix, nesting, provider variables, errors naming the variable, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskmodels import redaction
from taskmodels.errors import SettingsError
from taskmodels.settings import load_settings

KEY_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OLLAMA_HOST",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TASKMODELS_") or name in KEY_VARS:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout


def test_defaults() -> None:
    s = load_settings()
    assert s.registry_path == Path("settings/modelRegistry.json")
    assert s.environment is None
    assert s.registry_paths() == [Path("settings/modelRegistry.json")]
    assert s.http.max_connections == 100


def test_prefixed_and_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY_PATH", "conf/reg.json")
    monkeypatch.setenv("TASKMODELS_ENVIRONMENT", "production")
    monkeypatch.setenv("TASKMODELS_HTTP__MAX_CONNECTIONS", "250")
    monkeypatch.setenv("TASKMODELS_SCOPES__MODEL_SERVICE", "thread_local")
    monkeypatch.setenv("TASKMODELS_RESILIENCE__DEADLINE", "12.5")
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL", "http://127.0.0.1:8080/v1")
    s = load_settings()
    assert s.http.max_connections == 250
    assert s.scopes.model_service == "thread_local"
    assert s.resilience.deadline == 12.5
    assert s.registry_paths() == [Path("conf/reg.json"), Path("conf/reg.production.json")]
    assert s.provider_settings("openai-compatible").base_url == "http://127.0.0.1:8080/v1"


def test_provider_key_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-env")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:11434")
    s = load_settings()
    key = s.provider_settings("openai").api_key
    assert key is not None
    assert key.get_secret_value() == "sk-openai-from-env"
    gemini = s.provider_settings("gemini").api_key
    assert gemini is not None
    assert gemini.get_secret_value() == "AIza-google"
    assert s.provider_settings("ollama").base_url == "http://127.0.0.1:11434"


def test_prefixed_key_wins_over_the_usual_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-usual")
    monkeypatch.setenv("TASKMODELS_OPENAI_API_KEY", "sk-prefixed")
    key = load_settings().openai_api_key
    assert key is not None
    assert key.get_secret_value() == "sk-prefixed"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_HTTP__MAX_CONNECTIONS", "lots")
    monkeypatch.setenv("TASKMODELS_SCOPES__REGISTRY", "forever")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "TASKMODELS_HTTP__MAX_CONNECTIONS: Input should be a valid integer" in text
    assert "TASKMODELS_SCOPES__REGISTRY:" in text
    assert "lots" not in text  # values are not echoed: they could be secrets


def test_out_of_range_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_HTTP__MAX_CONNECTIONS", "0")
    with pytest.raises(SettingsError, match="TASKMODELS_HTTP__MAX_CONNECTIONS"):
        load_settings()


def test_invalid_json_for_a_whole_section_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_HTTP", "{not json")
    with pytest.raises(SettingsError, match="TASKMODELS_HTTP: not valid JSON"):
        load_settings()


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TASKMODELS_ENVIRONMENT=staging\nANTHROPIC_API_KEY=sk-ant-dotenv\n")
    s = load_settings()
    assert s.environment == "staging"
    key = s.provider_settings("anthropic").api_key
    assert key is not None
    assert key.get_secret_value() == "sk-ant-dotenv"


def test_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("TASKMODELS_PROVIDERS__ANTHROPIC__API_KEY", "sk-ant-another-secret")
    s = load_settings()
    for text in (repr(s), str(s), repr(s.provider_settings("anthropic")), s.model_dump_json()):
        assert "sk-very-secret-value" not in text
        assert "sk-ant-another-secret" not in text


def test_example_env_file_lists_every_key_variable() -> None:
    example = Path(__file__).resolve().parents[2] / "settings" / ".env.example"
    text = example.read_text()
    for name in (*KEY_VARS[:3], *KEY_VARS[4:], "TASKMODELS_REGISTRY_PATH", "TASKMODELS_ENVIRONMENT"):
        assert name in text


# --- every key the settings hold is remembered for redaction by value ---------------------


@pytest.fixture
def forget() -> Iterator[None]:
    redaction.forget_all()
    yield
    redaction.forget_all()


def _redacted(value: str) -> bool:
    return redaction.scrub(f"<{value}>") == f"<{redaction.REDACTED}>"


@pytest.mark.usefixtures("forget")
def test_loading_remembers_keys_from_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {
        "OPENAI_API_KEY": "openai-key-0123456789",
        "ANTHROPIC_API_KEY": "anthropic-key-0123456789",
        "GOOGLE_API_KEY": "google-key-0123456789",
        "AZURE_OPENAI_API_KEY": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "TASKMODELS_PROVIDERS__OLLAMA__API_KEY": "ollama-key-0123456789",
        "TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__API_KEY": "compat-key-0123456789",
    }
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TASKMODELS_ENVIRONMENT", "production-environment")
    load_settings()
    for name, value in keys.items():
        assert _redacted(value), name
    assert not _redacted("production-environment")  # settings that are not secrets stay readable


@pytest.mark.usefixtures("forget")
def test_loading_remembers_keys_from_dotenv_and_the_secrets_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("GEMINI_API_KEY=gemini-dotenv-0123456789\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "AZURE_OPENAI_API_KEY").write_text("azure-secretfile-0123456789")
    (secrets / "TASKMODELS_PROVIDERS").write_text('{"anthropic": {"api_key": "anthropic-secretfile-012345"}}')
    monkeypatch.setenv("TASKMODELS_SECRETS_DIR", str(secrets))  # set after import: still read
    settings = load_settings()
    assert settings.azure_openai_api_key is not None
    assert settings.azure_openai_api_key.get_secret_value() == "azure-secretfile-0123456789"
    for value in ("gemini-dotenv-0123456789", "azure-secretfile-0123456789", "anthropic-secretfile-012345"):
        assert _redacted(value), value


@pytest.mark.usefixtures("forget")
def test_loading_remembers_secret_headers_and_the_redis_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__HEADERS", '{"Authorization": "Bearer tok-0123456789"}')
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL", "http://gateway.internal:8080/v1")
    monkeypatch.setenv("TASKMODELS_STATE__URL", "redis://user:p%40ss-word-0123@redis.internal:6379/0")
    load_settings()
    assert _redacted("tok-0123456789")
    assert _redacted("p%40ss-word-0123")  # as it stands in the URL
    assert _redacted("p@ss-word-0123")  # as the server may echo it
    assert not _redacted("http://gateway.internal:8080/v1")
    assert "redis.internal:6379" in redaction.scrub("redis://user:p%40ss-word-0123@redis.internal:6379/0")


def test_a_models_own_key_variable_is_found_in_dot_env_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings reads .env for its own fields only; a model's apiKeyEnv must be found there as well."""
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.registry.schema import ModelConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MY_TEAM_KEY", raising=False)
    (tmp_path / ".env").write_text("MY_TEAM_KEY=team-key-from-dot-env-0123\n")
    settings = load_settings()
    assert settings.variable("MY_TEAM_KEY") == "team-key-from-dot-env-0123"
    model = ModelConfig.model_validate(
        {
            "id": "team",
            "provider": "openai",
            "modelName": "gpt-4o-mini",
            "maxTokens": 10,
            "temperature": 0,
            "contextWindow": 1000,
            "costPer1kTokens": 0,
            "apiKeyEnv": "MY_TEAM_KEY",
        }
    )
    provider = ModelProviderFactory(settings).create_provider_for_model(model)  # no MissingCredentialError
    assert provider.model.id == "team"
