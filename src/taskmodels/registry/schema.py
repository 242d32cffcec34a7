"""The registry file's shape, as pydantic models.

The seed format is kept exactly: camelCase keys, ``models``, ``taskMappings`` and
``defaultModelId``. snake_case keys are accepted too. Every extension key is
optional, so a seed file loads unchanged, and unknown keys are errors so a typo
cannot pass silently.

Scalars are validated strictly: ``"maxTokens": "1000"`` is an error, not a number,
so a file the loader accepts is one the exported JSON Schema accepts too. The one
conversion kept is the one JSON Schema itself makes: ``1000.0`` is an integer.
Every number is finite (``1e999`` reads as infinity, YAML has ``.inf`` and ``.nan``),
in ``options`` too, and whole numbers stay within JSON's exact range (2**53 - 1), so
no token count times a price overflows a float.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

from taskmodels.types import Usage

__all__ = [
    "MAX_INTEGER",
    "REQUEST_PARAMETERS",
    "BudgetConfig",
    "DeploymentConfig",
    "HedgeConfig",
    "ModelConfig",
    "ReasoningEffort",
    "RegistryConfig",
    "RequestParameter",
    "RoutingStrategy",
    "TaskMapping",
    "TaskTimeouts",
]

RequestParameter = Literal["temperature", "top_p", "stop"]
"""Request parameters a model may refuse (``unsupportedParameters``); named as ``CompletionRequest`` names them."""
REQUEST_PARAMETERS: tuple[RequestParameter, ...] = ("temperature", "top_p", "stop")

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
"""How hard a reasoning model thinks; each provider's mapping is in ``providers/reasoning.py``."""


def _integral(value: Any) -> Any:
    # JSON Schema counts 1000.0 as an integer; so does the loader, so that the two agree.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


MAX_INTEGER = 2**53 - 1
"""The largest whole number a registry holds: JSON's exact integer range (RFC 7493), far past any token count."""

_Int = Annotated[int, BeforeValidator(_integral), Field(strict=True, le=MAX_INTEGER)]
# strict still takes an int: JSON's numbers are one type; infinity and NaN are no price, limit or time
_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


_Flag = Annotated[bool, Field(strict=True)]


def _finite_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options reach a provider's request body as JSON, which has no infinity or NaN: refuse them here, located,
    rather than send them. Visited without recursion, each object once (a dict built in code may share one)."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", options)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{path.removeprefix('.')} must be a finite number (got {value!r})")
        if id(value) in seen:
            continue
        if isinstance(value, dict):
            seen.add(id(value))
            stack.extend((f"{path}.{k}", v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            seen.add(id(value))
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return options


# The exported schema's pattern; the validator below also requires a host and a valid port.
HTTP_URL_PATTERN = r"^https?://[^\s/?#]+"
_HTTP_URL = re.compile(HTTP_URL_PATTERN)


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=True,
    )


class TaskTimeouts(_Strict):
    """Time limits in seconds, for a task or a model; unset ones come from the next level (request > task >
    model > settings)."""

    deadline: _Number | None = Field(default=None, gt=0)
    attempt_timeout: _Number | None = Field(default=None, alias="attemptTimeout", gt=0)
    first_token_timeout: _Number | None = Field(default=None, alias="firstTokenTimeout", gt=0)
    stall_timeout: _Number | None = Field(default=None, alias="stallTimeout", gt=0)


RoutingStrategy = Literal["weighted", "least-busy", "latency"]
"""How a call chooses among a model's deployments: smooth weighted round robin, fewest calls in flight, or the
lowest rolling latency (time to first token for streams)."""


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return value
    problem = f"must be an http:// or https:// URL with a host (got {value!r})"
    if not _HTTP_URL.match(value):
        raise ValueError(problem)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"has an invalid port (got {value!r})") from None
    if not parts.hostname:
        raise ValueError(problem)
    return value


class DeploymentConfig(_Strict):
    """One endpoint serving a model: its own provider, URL, key and options over the model's, its share of the
    traffic and the rate limits the provider gave it."""

    id: str = Field(min_length=1, description="Unique within the model; breakers and limits are kept per deployment")
    provider: str | None = Field(default=None, min_length=1, description="Provider implementation; unset: the model's")
    base_url: str | None = Field(
        default=None,
        alias="baseUrl",
        description="This deployment's endpoint; an http:// or https:// URL; unset: the model's",
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
    )
    api_key_env: str | None = Field(
        default=None, alias="apiKeyEnv", description="Environment variable holding this deployment's API key"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific settings, merged over the model's options"
    )
    weight: _Number = Field(default=1.0, gt=0, description="Share of the model's traffic under the weighted strategy")
    rpm: _Int | None = Field(default=None, gt=0, description="Requests per minute this deployment may receive")
    tpm: _Int | None = Field(default=None, gt=0, description="Tokens per minute (input and output) it may receive")
    tags: tuple[str, ...] = Field(default=(), description="Free labels, e.g. a region; shown by plan and health")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @field_validator("options")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _finite_options(value)


class ModelConfig(_Strict):
    """One model a task can run on."""

    id: str = Field(min_length=1)
    provider: str = Field(
        min_length=1, description="Provider implementation, e.g. openai, anthropic, gemini, ollama, openai-compatible"
    )
    model_name: str = Field(alias="modelName", min_length=1, description="The provider's own name for the model")
    max_tokens: _Int = Field(alias="maxTokens", gt=0, description="Default and upper bound for output tokens")
    temperature: _Number = Field(ge=0.0, le=2.0)
    context_window: _Int = Field(alias="contextWindow", gt=0, description="Input plus output tokens the model accepts")
    cost_per_1k_tokens: _Number = Field(
        alias="costPer1kTokens", ge=0.0, description="USD per 1,000 tokens, input and output alike"
    )
    capabilities: tuple[str, ...] = ()
    # extensions
    input_cost_per_1k_tokens: _Number | None = Field(default=None, alias="inputCostPer1kTokens", ge=0.0)
    output_cost_per_1k_tokens: _Number | None = Field(default=None, alias="outputCostPer1kTokens", ge=0.0)
    cached_input_cost_per_1k_tokens: _Number | None = Field(
        default=None,
        alias="cachedInputCostPer1kTokens",
        ge=0.0,
        description="USD per 1,000 input tokens read from the provider's prompt cache; unset: the input price",
    )
    cache_write_cost_per_1k_tokens: _Number | None = Field(
        default=None,
        alias="cacheWriteCostPer1kTokens",
        ge=0.0,
        description="USD per 1,000 input tokens written to the provider's prompt cache; unset: the input price",
    )
    base_url: str | None = Field(
        default=None,
        alias="baseUrl",
        description="Overrides the provider's default endpoint; an http:// or https:// URL",
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
    )
    api_key_env: str | None = Field(
        default=None, alias="apiKeyEnv", description="Environment variable holding this model's API key"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific settings, e.g. Azure's apiVersion and deployment"
    )
    description: str | None = None
    timeouts: TaskTimeouts | None = Field(
        default=None, description="This model's time limits; a task's and a request's win over them"
    )
    unsupported_parameters: tuple[RequestParameter, ...] = Field(
        default=(),
        alias="unsupportedParameters",
        description="Request parameters this model refuses (reasoning models: temperature); never sent to it",
    )
    reasoning_effort: ReasoningEffort | None = Field(
        default=None,
        alias="reasoningEffort",
        description="How hard a reasoning model thinks: OpenAI reasoning_effort, Anthropic thinking budget, "
        "Gemini thinkingConfig",
    )

    deployments: tuple[DeploymentConfig, ...] = Field(
        default=(), description="Several endpoints behind this model; unset: the model's own endpoint, a pool of one"
    )
    routing: RoutingStrategy | None = Field(
        default=None, description="How calls choose among the deployments (a task's routing wins); unset: weighted"
    )

    # Set on the copy a deployment's provider is built from (see ``for_deployment``); never read from a file.
    _deployment_id: str | None = PrivateAttr(default=None)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @field_validator("options")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _finite_options(value)

    @property
    def deployment_id(self) -> str | None:
        """The deployment this copy of the model stands for; ``None`` on the registry's own entry."""
        return self._deployment_id

    def for_deployment(self, deployment: DeploymentConfig) -> ModelConfig:
        """The model as ``deployment`` serves it: the deployment's provider, URL, key variable and options
        over the model's own. Providers are built from it; prices, limits and the id stay the model's."""
        update: dict[str, Any] = {"deployments": (), "options": {**self.options, **deployment.options}}
        if deployment.provider is not None:
            update["provider"] = deployment.provider
        if deployment.base_url is not None:
            update["base_url"] = deployment.base_url
        if deployment.api_key_env is not None:
            update["api_key_env"] = deployment.api_key_env
        copy = self.model_copy(update=update)
        private = copy.__pydantic_private__  # our own attribute, set on a fresh copy
        if private is not None:
            private["_deployment_id"] = deployment.id
        return copy

    @property
    def input_price(self) -> float:
        """USD per 1,000 input tokens."""
        p = self.input_cost_per_1k_tokens
        return self.cost_per_1k_tokens if p is None else p

    @property
    def output_price(self) -> float:
        """USD per 1,000 output tokens."""
        p = self.output_cost_per_1k_tokens
        return self.cost_per_1k_tokens if p is None else p

    @property
    def cached_input_price(self) -> float:
        """USD per 1,000 input tokens read from the prompt cache."""
        p = self.cached_input_cost_per_1k_tokens
        return self.input_price if p is None else p

    @property
    def cache_write_price(self) -> float:
        """USD per 1,000 input tokens written to the prompt cache."""
        p = self.cache_write_cost_per_1k_tokens
        return self.input_price if p is None else p

    def cost(self, usage: Usage) -> float:
        """USD for one answer: cache reads and writes at their prices, the rest of the prompt at the input
        price, output (reasoning included) at the output price.

        Counts are taken within 0..2**53: the providers' parsers reject any count outside it, and one from
        elsewhere (a plugin's port) must not raise ``OverflowError`` here, after the attempt succeeded.
        """
        top = 1 << 53
        inputs, outputs = usage.input_tokens, usage.output_tokens
        cached, written = usage.cached_tokens, usage.cache_write_tokens
        if not 0 <= inputs <= top or not 0 <= outputs <= top:
            inputs, outputs = min(max(inputs, 0), top), min(max(outputs, 0), top)
        if not cached and not written:  # the common answer: no prompt cache involved
            return (inputs * self.input_price + outputs * self.output_price) / 1000.0
        cached, written = min(max(cached, 0), top), min(max(written, 0), top)
        # A provider that reports more cache tokens than prompt tokens must not make the rest negative.
        plain = max(inputs - cached - written, 0)
        return (
            plain * self.input_price
            + cached * self.cached_input_price
            + written * self.cache_write_price
            + outputs * self.output_price
        ) / 1000.0

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float:
        """An upper bound for budgets: the whole prompt at the dearer of the input and cache-write prices
        (a provider may write all of it to its cache), the output at the output price. Counts are taken within
        0..2**53, as ``cost`` takes them: a caller's huge ``max_tokens`` must not raise ``OverflowError``."""
        top = 1 << 53
        input_tokens, output_tokens = min(max(input_tokens, 0), top), min(max(output_tokens, 0), top)
        input_price = max(self.input_price, self.cache_write_price)
        return (input_tokens * input_price + output_tokens * self.output_price) / 1000.0


class BudgetConfig(_Strict):
    """A spend limit for one task over a rolling fixed window."""

    limit: _Number = Field(gt=0, description="USD per window")
    window_seconds: _Number = Field(default=86400.0, alias="windowSeconds", gt=0)
    on_exceeded: Literal["error", "cheaper"] = Field(default="error", alias="onExceeded")
    scope: Literal["task", "tenant"] = Field(
        default="task", description="task: one limit for all callers; tenant: the limit for each tenant apart"
    )


class HedgeConfig(_Strict):
    """Hedged requests: an attempt with no answer (streaming: no first token) after ``after`` seconds gets the
    next candidate started alongside it; the first to answer wins, the other is cancelled."""

    after: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | Literal["p95"] = Field(
        description='Seconds, or "p95": the rolling 95th percentile of the task\'s latency on that model'
    )
    max: _Int = Field(default=1, ge=1, description="Extra requests one call may start")

    @field_validator("after", mode="before")
    @classmethod
    def _seconds_or_p95(cls, value: Any) -> Any:
        # One message for both shapes, rather than pydantic's one error per member of the union.
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value == "p95" or (number and value > 0 and math.isfinite(value)):
            return value
        finite = "finite " if number and not math.isfinite(value) else ""
        raise ValueError(f'must be a {finite}number of seconds > 0 or "p95" (got {value!r})')


class TaskMapping(_Strict):
    """A task, the model that serves it and the ordered fallbacks."""

    task_name: str = Field(alias="taskName", min_length=1)
    primary_model_id: str = Field(alias="primaryModelId", min_length=1)
    # An empty id would pass the reference check (which skips it as this check's) and fail indexing the chain.
    fallback_model_ids: tuple[Annotated[str, Field(min_length=1)], ...] = Field(default=(), alias="fallbackModelIds")
    description: str | None = None
    # extensions
    required_capabilities: tuple[str, ...] = Field(default=(), alias="requiredCapabilities")
    max_cost_per_call: _Number | None = Field(default=None, alias="maxCostPerCall", gt=0)
    stream_policy: Literal["restart", "error"] | None = Field(default=None, alias="streamPolicy")
    fallback_on_content_filter: _Flag | None = Field(default=None, alias="fallbackOnContentFilter")
    timeouts: TaskTimeouts | None = None
    budget: BudgetConfig | None = None
    output_retries: _Int = Field(
        default=1,
        alias="outputRetries",
        ge=0,
        le=10,
        description="Times a model whose answer fails the output_type's validation is asked again, "
        "with the error, before the chain moves on",
    )
    routing: RoutingStrategy | None = Field(
        default=None, description="How this task's calls choose among a model's deployments; unset: the model's"
    )
    hedge: HedgeConfig | None = None


class RegistryConfig(_Strict):
    """The whole registry file."""

    models: tuple[ModelConfig, ...]
    task_mappings: tuple[TaskMapping, ...] = Field(default=(), alias="taskMappings")
    default_model_id: str = Field(alias="defaultModelId", min_length=1)
    schema_: str | None = Field(default=None, alias="$schema", description="Optional JSON Schema reference for editors")
