"""The registry file's shape, as pydantic models.

The seed format is kept exactly: camelCase keys, ``models``, ``taskMappings`` and
``defaultModelId``. snake_case keys are accepted too. Every extension key is
optional, so a seed file loads unchanged, and unknown keys are errors so a typo
cannot pass silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskmodels.types import Usage

__all__ = ["BudgetConfig", "ModelConfig", "RegistryConfig", "TaskMapping", "TaskTimeouts"]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        str_strip_whitespace=True,
    )


class ModelConfig(_Strict):
    """One model a task can run on."""

    id: str = Field(min_length=1)
    provider: str = Field(
        min_length=1, description="Provider implementation, e.g. openai, anthropic, gemini, ollama, openai-compatible"
    )
    model_name: str = Field(alias="modelName", min_length=1, description="The provider's own name for the model")
    max_tokens: int = Field(alias="maxTokens", gt=0, description="Default and upper bound for output tokens")
    temperature: float = Field(ge=0.0, le=2.0)
    context_window: int = Field(alias="contextWindow", gt=0, description="Input plus output tokens the model accepts")
    cost_per_1k_tokens: float = Field(
        alias="costPer1kTokens", ge=0.0, description="USD per 1,000 tokens, input and output alike"
    )
    capabilities: tuple[str, ...] = ()
    # extensions
    input_cost_per_1k_tokens: float | None = Field(default=None, alias="inputCostPer1kTokens", ge=0.0)
    output_cost_per_1k_tokens: float | None = Field(default=None, alias="outputCostPer1kTokens", ge=0.0)
    base_url: str | None = Field(default=None, alias="baseUrl", description="Overrides the provider's default endpoint")
    api_key_env: str | None = Field(
        default=None, alias="apiKeyEnv", description="Environment variable holding this model's API key"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-specific settings, e.g. Azure's apiVersion and deployment"
    )
    description: str | None = None

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

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input_price + usage.output_tokens * self.output_price) / 1000.0

    def estimate_cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1000.0


class TaskTimeouts(_Strict):
    """Per-task time limits in seconds; unset ones come from settings."""

    deadline: float | None = Field(default=None, gt=0)
    attempt_timeout: float | None = Field(default=None, alias="attemptTimeout", gt=0)
    first_token_timeout: float | None = Field(default=None, alias="firstTokenTimeout", gt=0)
    stall_timeout: float | None = Field(default=None, alias="stallTimeout", gt=0)


class BudgetConfig(_Strict):
    """A spend limit for one task over a rolling fixed window."""

    limit: float = Field(gt=0, description="USD per window")
    window_seconds: float = Field(default=86400.0, alias="windowSeconds", gt=0)
    on_exceeded: Literal["error", "cheaper"] = Field(default="error", alias="onExceeded")


class TaskMapping(_Strict):
    """A task, the model that serves it and the ordered fallbacks."""

    task_name: str = Field(alias="taskName", min_length=1)
    primary_model_id: str = Field(alias="primaryModelId", min_length=1)
    fallback_model_ids: tuple[str, ...] = Field(default=(), alias="fallbackModelIds")
    description: str | None = None
    # extensions
    required_capabilities: tuple[str, ...] = Field(default=(), alias="requiredCapabilities")
    max_cost_per_call: float | None = Field(default=None, alias="maxCostPerCall", gt=0)
    stream_policy: Literal["restart", "error"] | None = Field(default=None, alias="streamPolicy")
    fallback_on_content_filter: bool | None = Field(default=None, alias="fallbackOnContentFilter")
    timeouts: TaskTimeouts | None = None
    budget: BudgetConfig | None = None


class RegistryConfig(_Strict):
    """The whole registry file."""

    models: tuple[ModelConfig, ...]
    task_mappings: tuple[TaskMapping, ...] = Field(default=(), alias="taskMappings")
    default_model_id: str = Field(alias="defaultModelId", min_length=1)
    schema_: str | None = Field(default=None, alias="$schema", description="Optional JSON Schema reference for editors")
