"""Reasoning models: the request parameters a model refuses are left out, and ``reasoningEffort`` is mapped
onto each provider's own setting.

A model's ``unsupportedParameters`` (registry) names what it refuses, as ``CompletionRequest`` names it
(``temperature``, ``top_p``, ``stop``): it is never sent, whether the request or the registry entry set it.
``reasoningEffort`` becomes:

- ``openai``, ``azure-openai``, ``openai-compatible``: ``reasoning_effort``, as is.
- ``anthropic``: ``thinking.budget_tokens`` of ``ANTHROPIC_THINKING_BUDGETS`` (``none``: no thinking).
- ``gemini``: ``generationConfig.thinkingConfig.thinkingBudget`` of ``GEMINI_THINKING_BUDGETS``.

Anthropic counts thinking inside ``max_tokens``, so the budget is added to it: the registry's ``maxTokens``
keeps meaning the answer's own room. Thinking there also refuses a changed ``temperature``, so it is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskmodels.registry.schema import ModelConfig, ReasoningEffort

__all__ = [
    "ANTHROPIC_THINKING_BUDGETS",
    "GEMINI_THINKING_BUDGETS",
    "MAPPED_PROVIDERS",
    "shape_anthropic",
    "shape_gemini_config",
    "shape_ollama_options",
    "shape_openai",
]

ANTHROPIC_THINKING_BUDGETS: Mapping[ReasoningEffort, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
}
GEMINI_THINKING_BUDGETS: Mapping[ReasoningEffort, int] = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
}
MAPPED_PROVIDERS = frozenset({"openai", "azure-openai", "openai-compatible", "anthropic", "gemini"})
"""Providers ``reasoningEffort`` is mapped for; on another, the registry check warns that it is not sent."""

# The request's names, and the wire names the OpenAI-protocol body uses for them.
_OPENAI_FIELDS = {"temperature": "temperature", "top_p": "top_p", "stop": "stop"}
_ANTHROPIC_FIELDS = {"temperature": "temperature", "top_p": "top_p", "stop": "stop_sequences"}
_GEMINI_FIELDS = {"temperature": "temperature", "top_p": "topP", "stop": "stopSequences"}


def _drop(target: dict[str, Any], model: ModelConfig, fields: Mapping[str, str]) -> None:
    for name in model.unsupported_parameters:
        target.pop(fields[name], None)


def shape_openai(body: dict[str, Any], model: ModelConfig) -> None:
    """OpenAI's protocol: refused parameters out, ``reasoning_effort`` in."""
    if model.unsupported_parameters:
        _drop(body, model, _OPENAI_FIELDS)
    if model.reasoning_effort is not None:
        body["reasoning_effort"] = model.reasoning_effort


def shape_anthropic(body: dict[str, Any], model: ModelConfig) -> None:
    """Anthropic's Messages API: refused parameters out, extended thinking on with its budget."""
    if model.unsupported_parameters:
        _drop(body, model, _ANTHROPIC_FIELDS)
    budget = ANTHROPIC_THINKING_BUDGETS.get(model.reasoning_effort) if model.reasoning_effort else None
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        body["max_tokens"] = int(body["max_tokens"]) + budget
        body.pop("temperature", None)


def shape_gemini_config(config: dict[str, Any], model: ModelConfig) -> None:
    """Gemini's ``generationConfig``: refused parameters out, ``thinkingConfig`` in."""
    if model.unsupported_parameters:
        _drop(config, model, _GEMINI_FIELDS)
    if model.reasoning_effort is not None:
        config["thinkingConfig"] = {"thinkingBudget": GEMINI_THINKING_BUDGETS[model.reasoning_effort]}


def shape_ollama_options(options: dict[str, Any], model: ModelConfig) -> None:
    """Ollama's ``options``: refused parameters out (its ``think`` is an option of its own)."""
    if model.unsupported_parameters:
        _drop(options, model, _OPENAI_FIELDS)
