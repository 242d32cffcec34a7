"""How each model is asked for JSON matching a schema: the strategy, chosen from its declared capabilities.

Three ways, best first; every model of a chain gets the one it accepts:

- ``native``: the schema goes as the provider's own structured-output field. The provider mappings turn
  ``ResponseFormat.json_schema`` into OpenAI's and Azure's ``response_format`` ``json_schema``, Gemini's
  ``responseMimeType`` + ``responseJsonSchema``, Anthropic's forced tool (the schema as the tool's
  ``input_schema`` and ``tool_choice`` naming it), Ollama's ``format`` and, for ``openai-compatible``
  servers (llama.cpp, vLLM), ``response_format`` ``json_schema``, which llama.cpp turns into a grammar.
- ``json_mode``: JSON mode (``response_format`` ``json_object``, Gemini's ``responseMimeType`` alone) and
  the schema in the system prompt.
- ``prompted``: no structured-output field at all, the schema in the system prompt.

Which tags mean what:

- ``json_schema`` in a model's ``capabilities``: the model takes a schema natively → ``native``.
- ``json`` (without ``json_schema``): JSON mode → ``json_mode``.
- neither → ``prompted``: nothing is sent that the model could reject.

A tag decides only in a registry that uses it (some model declares it): there, a model without it has said
it lacks it. A tag no model declares says nothing, so the provider's default fills in: ``native`` for the
hosted APIs that all take a schema (OpenAI, Azure OpenAI, Gemini, Anthropic) and Ollama, none for
``openai-compatible`` and unknown providers, whose servers differ. So in a registry that never says
``json_schema`` but tags its OpenAI models ``json`` (as many do), those models still get the schema
natively; a model there without ``json`` is ``prompted``; and a registry that uses neither tag (the seed's
example tags ``text-generation`` and ``chat``) gets each provider's default, ``prompted`` for
``openai-compatible``.

One provider rule on top: Anthropic refuses a forced tool while extended thinking is on, so an Anthropic
model with a ``reasoningEffort`` is asked ``prompted``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from taskmodels.registry.schema import ModelConfig

__all__ = [
    "PROVIDER_DEFAULTS",
    "STRUCTURED_TAGS",
    "WRAP_KEY",
    "Strategy",
    "object_rooted",
    "openai_strict",
    "strategy_for",
]

Strategy = Literal["native", "json_mode", "prompted"]

STRUCTURED_TAGS = frozenset({"json", "json_schema"})
"""The capability tags that say how a model takes JSON; once any model declares one, they decide."""

PROVIDER_DEFAULTS: Mapping[str, Strategy] = {
    "openai": "native",
    "azure-openai": "native",
    "gemini": "native",
    "anthropic": "native",
    "ollama": "native",
}
"""The strategy of a model in a registry that uses neither tag; a provider not named here is ``prompted``."""

WRAP_KEY = "result"
"""Every structured-output API wants an object at the root: a list (or any other root) is wrapped in one."""


def strategy_for(model: ModelConfig, *, declared: frozenset[str]) -> Strategy:
    """How ``model`` is asked for JSON; ``declared``: every capability tag some model of the registry declares."""
    caps = model.capabilities
    has_json = "json" in caps
    if "json_schema" in caps:
        chosen: Strategy = "native"
    elif (
        "json_schema" not in declared
        and (has_json or "json" not in declared)
        and PROVIDER_DEFAULTS.get(model.provider) == "native"
    ):
        chosen = "native"  # the registry does not use the tag: the provider's default says
    elif has_json:
        chosen = "json_mode"
    else:
        chosen = "prompted"
    if chosen == "native" and model.provider == "anthropic" and model.reasoning_effort not in (None, "none"):
        return "prompted"  # extended thinking refuses tool_choice naming a tool
    return chosen


def object_rooted(schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema with an object at its root, and whether it had to be wrapped under ``WRAP_KEY``.

    ``$defs`` stay at the root so that their ``#/$defs/...`` references still resolve.
    """
    if schema.get("type") == "object":
        return dict(schema), False
    inner = {k: v for k, v in schema.items() if k != "$defs"}
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {WRAP_KEY: inner},
        "required": [WRAP_KEY],
        "additionalProperties": False,
    }
    if "$defs" in schema:
        wrapped["$defs"] = schema["$defs"]
    return wrapped, True


def openai_strict(schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema as OpenAI's strict mode wants it, and whether strict mode can take it at all.

    Strict mode wants ``additionalProperties: false`` on every object (added here: the model writing no
    extra keys changes nothing for validation) and every property required; a schema with an optional
    property or a default stays non-strict rather than being refused with a 400.
    """
    ok = True

    def walk(node: Any) -> Any:
        nonlocal ok
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        out = {key: walk(value) for key, value in node.items()}
        if "default" in out:
            ok = False
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
            if set(out.get("required", ())) != set(out["properties"]):
                ok = False
        return out

    strict_schema: dict[str, Any] = walk(schema)
    return strict_schema, ok
