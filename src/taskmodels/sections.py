"""The settings sections as plain pydantic models.

They live apart from ``settings.py`` so that the core (service, providers,
registry) can take them without importing ``pydantic_settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

__all__ = [
    "GatewaySettings",
    "HttpSettings",
    "LoggingSettings",
    "ProviderSettings",
    "ResilienceSettings",
    "ResourceScope",
    "Scope",
    "ScopeSettings",
    "SelectionSettings",
    "StateSettings",
    "TelemetrySettings",
]

Scope = Literal["singleton", "thread_local", "context_local", "factory"]
"""How long a container node's instance lives: one per container, per thread, per asyncio context, or per call."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    """The pooled ``httpx2.AsyncClient`` every provider shares."""

    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(
        default=120.0, gt=0, description="Between two reads of a response; streams use the stall limit too"
    )
    write_timeout: float = Field(default=30.0, gt=0)
    pool_timeout: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=100, gt=0)
    max_keepalive_connections: int = Field(default=20, ge=0)
    keepalive_expiry: float = Field(default=30.0, ge=0)
    http2: bool = Field(default=False, description="Needs the h2 package; 'auto' then picks httpx2's transport")
    transport: Literal["auto", "httpx2", "aiohttp"] = Field(
        default="auto",
        description="'auto': aiohttp when it is installed (pip install 'taskmodels[fast]'), else httpx2's own",
    )
    verify: bool = Field(default=True, description="Verify TLS certificates; off only for a test server")
    ca_bundle: Path | None = Field(
        default=None,
        description="PEM file (or OpenSSL hashed directory) of the CAs to trust instead of the system's",
    )

    @field_validator("transport", mode="before")
    @classmethod
    def _old_transport_name(cls, value: object) -> object:
        # 'httpx' named the default transport before the move to httpx2; configurations keep working.
        return "httpx2" if value == "httpx" else value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"no CA bundle at {value}")
        return value


ResourceScope = Literal["singleton", "thread_local"]
"""The scopes a node holding open resources takes: one per container, or one per thread (closed by ``aclose``)."""


class ScopeSettings(_Section):
    """The scope of each container node (docs/scopes.md).

    A node left unset lives no longer than what it holds: it takes the narrowest ``thread_local`` or
    ``context_local`` scope among the nodes it keeps a reference to, else ``singleton`` (so setting ``http_client``
    to ``thread_local`` gives each thread its own providers, engine and service too). ``http_client`` and
    ``state_store`` hold open resources (a connection pool, a store connection): they take ``singleton`` or
    ``thread_local`` only, since one opened per call or per asyncio context would be opened without end.
    """

    http_client: ResourceScope = Field(
        default="singleton", description="singleton or thread_local: a connection pool is shared, never per call"
    )
    state_store: ResourceScope = Field(
        default="singleton", description="singleton or thread_local: a store connection is shared, never per call"
    )
    registry: Scope | None = None
    selector: Scope | None = None
    provider_factory: Scope | None = None
    tracer: Scope | None = None
    breaker: Scope | None = None
    gate: Scope | None = None
    observation: Scope | None = None
    outcomes: Scope | None = None
    engine: Scope | None = None
    planner: Scope | None = None
    model_service: Scope | None = None

    @field_validator("http_client", "state_store", mode="before")
    @classmethod
    def _resources_are_shared(cls, value: object, info: ValidationInfo) -> object:
        if value in ("factory", "context_local"):
            raise ValueError(
                f"{info.field_name} holds open connections: it takes singleton or thread_local, not {value!r} "
                "(one opened per call or per asyncio context would be opened without end)"
            )
        return value


class ResilienceSettings(_Section):
    """The fallback policy's limits. Tasks override the time limits in the registry, calls per request."""

    deadline: float = Field(default=60.0, gt=0, description="Seconds for a whole call, retries and fallbacks included")
    attempt_timeout: float = Field(default=30.0, gt=0)
    first_token_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds until a stream's first event; a silent model is left for the next one after this",
    )
    stall_timeout: float = Field(default=15.0, gt=0)
    max_attempts_per_model: int = Field(default=2, ge=1)
    max_attempts_total: int = Field(default=6, ge=1)
    backoff_initial: float = Field(default=0.25, ge=0)
    backoff_max: float = Field(default=4.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    retry_after_cap: float = Field(
        default=10.0, ge=0, description="Longest Retry-After honoured; a longer one moves to the next model"
    )
    fallback_reserve: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="Share of the remaining deadline an attempt leaves to the candidates after it",
    )
    breaker_failure_threshold: int = Field(default=3, ge=1)
    # 1 s then doubling: a probe lands soon after a short outage ends (6 s down: probes at 1, 3, 7 s),
    # and the 2-minute cap bounds the wait after a long one while a 10-minute outage costs ~10 probes.
    breaker_cooldown_initial: float = Field(
        default=1.0,
        gt=0,
        validation_alias=AliasChoices("breaker_cooldown_initial", "breaker_cooldown"),
        description="Seconds an open circuit waits before its first probe; each failed probe doubles the wait",
    )
    breaker_cooldown_max: float = Field(
        default=120.0,
        gt=0,
        validate_default=True,  # checked against a first cooldown set above it
        description="Longest wait between probes of an open circuit; a success resets it",
    )
    stream_policy: Literal["restart", "error"] = "restart"
    fallback_on_content_filter: bool = False
    stream_under_the_hood: bool = Field(
        default=False,
        description="complete_with_task_model streams from the provider to watch first-token and stall limits",
    )

    @field_validator("breaker_cooldown_max")
    @classmethod
    def _cap_not_below_the_first_cooldown(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("breaker_cooldown_initial")
        if initial is not None and value < initial:
            raise ValueError(f"must be at least breaker_cooldown_initial ({initial:g} s)")
        return value

    @property
    def breaker_cooldown(self) -> float:
        """The first cooldown, under its former name (also accepted as input)."""
        return self.breaker_cooldown_initial


class SelectionSettings(_Section):
    """How a task becomes a chain of models."""

    unknown_task: Literal["default", "error"] = Field(
        default="default",
        description="A task the registry does not map: served by the default model, or an UnknownTaskError",
    )


class StateSettings(_Section):
    """Where circuit-breaker and spend state lives."""

    backend: Literal["memory", "redis"] = "memory"
    url: SecretStr | None = Field(
        default=None, description="redis://host:port/db; may hold a password, so it is kept secret"
    )
    namespace: str = "taskmodels"
    operation_timeout: float = Field(
        default=0.05, gt=0, description="Longest wait on the store before a call goes on with local state"
    )
    retry_interval: float = Field(default=5.0, gt=0, description="How often to try a lost store again")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "console", "json"] = "auto"


class TelemetrySettings(_Section):
    """OpenTelemetry spans and metrics of every call (docs/tracing.md)."""

    enabled: bool = Field(
        default=True,
        description="Spans and metrics through the OpenTelemetry API when opentelemetry-api is installed; "
        "a no-op until the application installs the SDK",
    )
    capture_content: bool = Field(
        default=False,
        description="Record prompts and answers in spans; OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true "
        "also turns it on",
    )
    fold_single_attempt: bool = Field(
        default=False,
        description="Trace a call whose first attempt answers as that attempt's span alone, carrying the call's "
        "attributes (one span per call instead of two); a call with a failed attempt keeps its call span",
    )


class GatewaySettings(_Section):
    """``taskmodels serve``: the OpenAI-compatible HTTP endpoint (docs/gateway.md)."""

    host: str = Field(default="127.0.0.1", description="Address to bind; 0.0.0.0 exposes it to the network")
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="Processes; more than one share state through Redis only")
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Largest request body; a larger one is a 413 (images count)"
    )
    max_streams: int = Field(
        default=1024, gt=0, description="Streams in flight per process; one more is a 503 with Retry-After"
    )
    keepalive_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between ': keep-alive' comments while a stream waits for its first token",
    )
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds in-flight requests get to finish on shutdown before they are cut"
    )
    access_log: bool = Field(default=False, description="One log line per request (uvicorn's access log)")
    keys_file: Path | None = Field(
        default=None,
        description="The virtual keys file (taskmodels keys add); unset: no keys, and serve binds only loopback",
    )
    rate_margin: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a key's rpm/tpm window is held past its minute, so an upstream counting requests as "
        "they arrive never sees more than rpm in any minute: at least the time from admission to arrival",
    )
    reload_interval: float = Field(
        default=2.0, ge=0, description="Seconds between looks at the registry and keys files for changes; 0: never"
    )
    metrics: bool = Field(default=True, description="Serve GET /metrics (Prometheus' text format)")


class ProviderSettings(_Section):
    """Settings for one provider name, e.g. ``TASKMODELS_PROVIDERS__OPENAI__BASE_URL``."""

    api_key: SecretStr | None = None
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
