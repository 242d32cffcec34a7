"""TASKMODELS_ variables that configure nothing are named, with the real variable each was probably meant to be."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from taskmodels import settings as settings_module
from taskmodels.errors import SettingsError
from taskmodels.settings import Settings, load_settings, unannounced


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TASKMODELS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    monkeypatch.setattr(settings_module, "_announced", set())  # this process has warned about nothing yet


def found() -> list[tuple[str, str, str | None]]:
    return [(v.name, v.source, v.did_you_mean) for v in Settings.unconfigured_variables()]


def events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "taskmodels.settings.unconfigured"]


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("TASKMODELS_PROVIDERS_OPENAI_API_KEY", "TASKMODELS_PROVIDERS__OPENAI__API_KEY"),
        ("TASKMODELS_PROVIDER__OPENAI__API_KEY", "TASKMODELS_PROVIDERS__OPENAI__API_KEY"),
        ("TASKMODELS_REGISTRY", "TASKMODELS_REGISTRY_PATH"),
        ("TASKMODELS_PROVIDER__GROQ__BASE_URL", "TASKMODELS_PROVIDERS__GROQ__BASE_URL"),  # a provider of its own
        ("TASKMODELS_OPENAI_KEY", "TASKMODELS_OPENAI_API_KEY"),
        ("TASKMODELS_RESILIENCE_DEADLINE", "TASKMODELS_RESILIENCE__DEADLINE"),
        ("TASKMODELS_REGISTRY_PATH__BASE", "TASKMODELS_REGISTRY_PATH"),  # a plain setting has nothing below it
    ],
)
def test_a_misspelled_variable_is_named_with_the_real_one(
    variable: str, meant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "x")
    assert found() == [(variable, "environment", meant)]


def test_a_variable_like_no_setting_is_named_without_a_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_ZZZ", "1")
    assert found() == [("TASKMODELS_ZZZ", "environment", None)]
    assert str(Settings.unconfigured_variables()[0]) == "TASKMODELS_ZZZ configures nothing"


@pytest.mark.parametrize(
    "variable",
    [
        "TASKMODELS_REGISTRY_PATH",
        "taskmodels_registry_path",  # pydantic-settings reads names case-insensitively
        "TASKMODELS_HTTP",  # a whole section as JSON
        "TASKMODELS_HTTP__MAX_CONNECTIONS",
        "TASKMODELS_RESILIENCE__BREAKER_COOLDOWN",  # a field's second name
        "TASKMODELS_PROVIDERS__GROQ__API_KEY",  # any provider name
        "TASKMODELS_PROVIDERS__MY_LOCAL_SERVER__HEADERS__X_TEAM",
        "TASKMODELS_PROVIDERS",
        "TASKMODELS_OPENAI_API_KEY",  # read under its aliases
        "TASKMODELS_AZURE_OPENAI_ENDPOINT",
        "TASKMODELS_SECRETS_DIR",  # read by settings.py itself
    ],
)
def test_real_variables_are_not_named(variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    value = str(tmp_path) if variable == "TASKMODELS_SECRETS_DIR" else "1"
    if variable.endswith(("HTTP", "PROVIDERS")):
        value = "{}"
    monkeypatch.setenv(variable, value)
    assert found() == []


def test_the_env_file_is_read_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TASKMODELS_REGISTRY=conf.json\nTASKMODELS_ENVIRONMENT=production\nOTHER=1\n")
    monkeypatch.setenv("TASKMODELS_ENVIROMENT", "staging")
    assert found() == [
        ("TASKMODELS_ENVIROMENT", "environment", "TASKMODELS_ENVIRONMENT"),
        ("TASKMODELS_REGISTRY", ".env", "TASKMODELS_REGISTRY_PATH"),
    ]
    assert str(Settings.unconfigured_variables()[1]) == (
        "TASKMODELS_REGISTRY (in .env) configures nothing; did you mean TASKMODELS_REGISTRY_PATH?"
    )


def test_variables_read_elsewhere_are_not_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_TEAM_KEY", "k")  # a registry's apiKeyEnv may name it
    assert [v.name for v in Settings.unconfigured_variables(also_known=["TASKMODELS_TEAM_KEY"])] == []


def test_loading_warns_once_per_variable_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY", "conf.json")
    with capture_logs() as logs:
        first = load_settings()
        Settings()
    assert first.registry_path == Path("settings/modelRegistry.json")  # ignored, as before: now said
    [warning] = events(logs)
    assert warning["log_level"] == "warning"
    assert (warning["variable"], warning["source"], warning["did_you_mean"]) == (
        "TASKMODELS_REGISTRY",
        "environment",
        "TASKMODELS_REGISTRY_PATH",
    )
    monkeypatch.setenv("TASKMODELS_REGISTY_PATH", "x")
    with capture_logs() as logs:
        load_settings()
    assert [e["variable"] for e in events(logs)] == ["TASKMODELS_REGISTY_PATH"]


def test_nothing_is_logged_inside_unannounced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY", "conf.json")
    with capture_logs() as logs, unannounced():
        load_settings()
    assert events(logs) == []
    with capture_logs() as logs:
        load_settings()  # the CLI's silence did not use up the warning
    assert len(events(logs)) == 1


def test_a_key_a_section_lacks_is_refused_with_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_HTTP__MAX_CONECTIONS", "3")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid settings:\n"
        "  TASKMODELS_HTTP__MAX_CONECTIONS: configures nothing; did you mean TASKMODELS_HTTP__MAX_CONNECTIONS?"
    )


_PART = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=12)


@settings(max_examples=150)
@given(parts=st.lists(_PART, min_size=1, max_size=4), lower=st.booleans())
def test_any_name_is_classified_without_error(parts: list[str], lower: bool) -> None:
    """Whatever follows the prefix, the check answers (a list, maybe empty) and never raises."""
    name = "TASKMODELS_" + "__".join(parts)
    name = name.lower() if lower else name
    os.environ[name] = "1"
    try:
        result = Settings.unconfigured_variables()
    finally:
        del os.environ[name]
    assert all(v.did_you_mean is None or v.did_you_mean.startswith("TASKMODELS_") for v in result)


_PROVIDER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda s: "__" not in s and not s.startswith("_") and not s.endswith("_")
)


@settings(max_examples=100)
@given(provider=_PROVIDER, field=st.sampled_from(["API_KEY", "BASE_URL", "HEADERS__X_TEAM", "OPTIONS__NUM_CTX"]))
def test_every_provider_name_is_a_real_section(provider: str, field: str) -> None:
    name = f"TASKMODELS_PROVIDERS__{provider.upper()}__{field}"
    os.environ[name] = "1"
    try:
        assert Settings.unconfigured_variables() == []
    finally:
        del os.environ[name]
