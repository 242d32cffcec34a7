"""Settings, read from the environment (prefix ``TASKMODELS_``, nested with ``__``) and ``.env``.

    TASKMODELS_REGISTRY_PATH=settings/modelRegistry.json
    TASKMODELS_ENVIRONMENT=production           # also loads settings/modelRegistry.production.json
    TASKMODELS_HTTP__MAX_CONNECTIONS=200
    TASKMODELS_SCOPES__MODEL_SERVICE=thread_local
    TASKMODELS_RESILIENCE__DEADLINE=30
    TASKMODELS_STATE__BACKEND=redis
    TASKMODELS_TELEMETRY__ENABLED=false         # no OpenTelemetry spans or metrics, even with the API installed
    TASKMODELS_GATEWAY__PORT=8080               # taskmodels serve
    OPENAI_API_KEY=...                           # the providers' usual variables are honoured

This module and ``containers.py`` are the only ones that import ``pydantic_settings``.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pydantic_settings
from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskmodels import redaction
from taskmodels.errors import SettingsError
from taskmodels.log import WARNING, library_logger
from taskmodels.sections import (
    GatewaySettings,
    HttpSettings,
    LoggingSettings,
    ProviderSettings,
    ResilienceSettings,
    Scope,
    ScopeSettings,
    SelectionSettings,
    StateSettings,
    TelemetrySettings,
)
from taskmodels.variables import Unconfigured, closest_variable, unconfigured_variables

__all__ = [
    "GatewaySettings",
    "HttpSettings",
    "LoggingSettings",
    "ProviderSettings",
    "ResilienceSettings",
    "Scope",
    "ScopeSettings",
    "SelectionSettings",
    "Settings",
    "StateSettings",
    "TelemetrySettings",
    "Unconfigured",
    "load_settings",
    "unannounced",
]

ENV_PREFIX = "TASKMODELS_"
NESTED_DELIMITER = "__"
SECRETS_DIR_VARIABLE = "TASKMODELS_SECRETS_DIR"

_log = library_logger("settings")
_announced: set[str] = set()  # the unconfigured variables warned about in this process
_announced_lock = threading.Lock()
_announcing: contextvars.ContextVar[bool] = contextvars.ContextVar("taskmodels_announcing", default=True)

# The providers' usual variables, read when the TASKMODELS_ one is not set.
_KEY_FIELDS: dict[str, str] = {
    "openai": "openai_api_key",
    "azure-openai": "azure_openai_api_key",
    "anthropic": "anthropic_api_key",
    "gemini": "gemini_api_key",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        secrets_dir=os.environ.get(SECRETS_DIR_VARIABLE) or None,
    )

    registry_path: Path = Field(default=Path("settings/modelRegistry.json"))
    environment: str | None = Field(
        default=None, description="Chooses the overlay settings/modelRegistry.<environment>.json"
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    scopes: ScopeSettings = Field(default_factory=ScopeSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TASKMODELS_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TASKMODELS_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    )
    gemini_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TASKMODELS_GEMINI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
    )
    azure_openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TASKMODELS_AZURE_OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")
    )
    azure_openai_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("TASKMODELS_AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_ENDPOINT")
    )
    ollama_host: str | None = Field(
        default=None, validation_alias=AliasChoices("TASKMODELS_OLLAMA_HOST", "OLLAMA_HOST")
    )

    def __init__(self, **values: Any) -> None:
        # The class reads TASKMODELS_SECRETS_DIR when it is imported; a process that sets it
        # later (or a test) must still be heard, so it is read again at every load.
        directory = os.environ.get(SECRETS_DIR_VARIABLE)
        if directory and "_secrets_dir" not in values:
            values["_secrets_dir"] = directory
        super().__init__(**values)

    def model_post_init(self, context: Any, /) -> None:
        # From here on every key this process was given is cut out, by value, of anything the
        # library stores or emits, whatever shape it has and wherever a server echoes it.
        redaction.remember(*self.secret_values())
        if _announcing.get():
            _announce(self.unconfigured_variables())

    @classmethod
    def unconfigured_variables(cls, also_known: Iterable[str] = ()) -> list[Unconfigured]:
        """Each ``TASKMODELS_`` variable of the environment and the ``.env`` file that configures nothing, with
        the closest real one (``taskmodels check`` lists them). ``also_known``: variables read elsewhere, as a
        registry's ``apiKeyEnv`` names its own."""
        sources: dict[str, Mapping[str, str | None]] = {"environment": os.environ}
        env_file = cls.model_config.get("env_file")
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            sources[str(env_file)] = dotenv_values(env_file, encoding="utf-8")
        return unconfigured_variables(
            cls,
            sources,
            prefix=ENV_PREFIX,
            delimiter=NESTED_DELIMITER,
            also_known=[SECRETS_DIR_VARIABLE, *also_known],
            dynamic_keys=_PROVIDER_NAMES,
        )

    def secret_values(self) -> Iterator[str]:
        """Every secret these settings hold: provider keys (any spelling, any source), secret-named
        provider headers, and the state store URL's password."""
        for name in ("openai_api_key", "anthropic_api_key", "gemini_api_key", "azure_openai_api_key"):
            key: SecretStr | None = getattr(self, name)
            if key is not None:
                yield key.get_secret_value()
        for section in self.providers.values():
            if section.api_key is not None:
                yield section.api_key.get_secret_value()
            for header, value in section.headers.items():
                if redaction.is_secret_name(header):
                    yield value
                    yield value.partition(" ")[2]  # the credential of "Bearer <token>"
        if self.state.url is not None:
            yield from _url_password(self.state.url.get_secret_value())

    def variable(self, name: str) -> str | None:
        """An environment variable as these settings see it: the process environment, else the ``.env`` file.

        For the variables the registry names itself (a model's ``apiKeyEnv``): pydantic-settings reads
        ``.env`` for its own fields only, and a key a user put there must be found all the same.
        """
        value = os.environ.get(name)
        if value:
            return value
        env_file = self.model_config.get("env_file")
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            found = dotenv_values(env_file, encoding="utf-8").get(name)
            if found:
                redaction.remember(found)
                return found
        return None

    def provider_settings(self, provider: str) -> ProviderSettings:
        """Settings for a provider name, with its usual key and endpoint variables filled in."""
        section = self.providers.get(provider) or self.providers.get(provider.replace("-", "_")) or ProviderSettings()
        updates: dict[str, Any] = {}
        if section.api_key is None and (field := _KEY_FIELDS.get(provider)) is not None:
            key = getattr(self, field)
            if key is not None:
                updates["api_key"] = key
        if section.base_url is None:
            if provider == "azure-openai" and self.azure_openai_endpoint:
                updates["base_url"] = self.azure_openai_endpoint
            elif provider == "ollama" and self.ollama_host:
                host = self.ollama_host
                updates["base_url"] = host if "://" in host else f"http://{host}"
        return section.model_copy(update=updates) if updates else section

    def registry_paths(self) -> list[Path]:
        """The registry file, then its overlay for ``environment`` when one is set."""
        paths = [self.registry_path]
        if self.environment:
            base = self.registry_path
            paths.append(base.with_name(f"{base.stem}.{self.environment}{base.suffix}"))
        return paths


# Suggested as the NAME of TASKMODELS_PROVIDERS__<NAME>__...: the built-in providers (any name is valid).
_PROVIDER_NAMES = ("openai", "openai_compatible", "azure_openai", "anthropic", "gemini", "ollama")


def _announce(found: list[Unconfigured]) -> None:
    """One WARNING per unconfigured variable per process, through the library's quiet logger."""
    for variable in found:
        with _announced_lock:
            if variable.name in _announced:
                continue
            _announced.add(variable.name)
        if (logger := _log.enabled(WARNING)) is not None:
            logger.warning(
                "taskmodels.settings.unconfigured",
                variable=variable.name,
                source=variable.source,
                did_you_mean=variable.did_you_mean,
                note="this variable configures nothing and is ignored",
            )


@contextmanager
def unannounced() -> Iterator[None]:
    """Settings loaded inside this block log no ``taskmodels.settings.unconfigured`` warning: for a caller that
    reports ``Settings.unconfigured_variables()`` itself, as the CLI does."""
    token = _announcing.set(False)
    try:
        yield
    finally:
        _announcing.reset(token)


def _url_password(url: str) -> Iterator[str]:
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL the store could use either; the store reports it
        return
    if password:
        yield password
        yield unquote(password)


def _env_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if not parts:
        return ENV_PREFIX.rstrip("_")
    return ENV_PREFIX + NESTED_DELIMITER.join(parts).upper()


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` from the environment; an invalid value raises ``SettingsError`` naming its variable."""
    try:
        return Settings(**overrides)
    except pydantic_settings.SettingsError as exc:
        # A nested section given as a whole (e.g. TASKMODELS_HTTP='{...}') that is not valid JSON:
        # pydantic-settings names only the field, so turn it back into the variable's name.
        match = re.search(r'field "([^"]+)"', str(exc))
        name = _env_name((match.group(1),)) if match else ENV_PREFIX + "*"
        raise SettingsError(f"invalid settings:\n  {name}: not valid JSON for a nested section") from None
    except ValidationError as exc:
        lines = [_invalid(err) for err in exc.errors(include_url=False, include_input=False)]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def _invalid(err: Any) -> str:
    """One line of a ``SettingsError``: the variable, and what is wrong with it (with the closest real variable
    when it names a key its section does not have)."""
    name = _env_name(err["loc"])
    if err["type"] != "extra_forbidden":
        return f"{name}: {err['msg']}"
    close = closest_variable(Settings, name, prefix=ENV_PREFIX, delimiter=NESTED_DELIMITER, keys=_PROVIDER_NAMES)
    return f"{name}: configures nothing" + (f"; did you mean {close}?" if close else "")
