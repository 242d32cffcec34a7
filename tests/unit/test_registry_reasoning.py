"""The registry keys of typed answers and reasoning models: validated, with warnings for settings never sent."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.errors import RegistryError
from taskmodels.providers.factory import BUILTIN_PROVIDERS
from taskmodels.registry import ModelRegistryService
from taskmodels.registry.jsonschema import registry_json_schema
from tests.registry_entries import model

PROVIDERS = frozenset(BUILTIN_PROVIDERS)


def registry(*models: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {
        "models": list(models),
        "taskMappings": [{"taskName": "t", "primaryModelId": models[0]["id"], **task}],
        "defaultModelId": models[0]["id"],
    }


def load(data: dict[str, Any]) -> ModelRegistryService:
    return ModelRegistryService.from_dict(data, provider_names=PROVIDERS, source="reg.json")


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(RegistryError) as info:
        load(data)
    return {p.path: p.message for p in info.value.problems}


def test_the_keys_load_into_the_models() -> None:
    reg = load(
        registry(
            model("o", unsupportedParameters=["temperature", "top_p"], reasoningEffort="high", temperature=1.0),
            outputRetries=3,
        )
    ).current
    o = reg.models_by_id["o"]
    assert (o.unsupported_parameters, o.reasoning_effort) == (("temperature", "top_p"), "high")
    assert reg.tasks_by_name["t"].output_retries == 3
    assert reg.warnings == ()


def test_defaults() -> None:
    reg = load(registry(model("a"))).current
    assert reg.tasks_by_name["t"].output_retries == 1
    assert reg.models_by_id["a"].unsupported_parameters == ()
    assert reg.models_by_id["a"].reasoning_effort is None


@pytest.mark.parametrize(
    ("keys", "task", "path"),
    [
        ({"unsupportedParameters": ["temprature"]}, {}, "models[0].unsupportedParameters[0]"),
        ({"reasoningEffort": "extreme"}, {}, "models[0].reasoningEffort"),
        ({}, {"outputRetries": -1}, "taskMappings[0].outputRetries"),
        ({}, {"outputRetries": 11}, "taskMappings[0].outputRetries"),
        ({}, {"outputRetries": "2"}, "taskMappings[0].outputRetries"),
    ],
)
def test_bad_values_are_located_errors(keys: dict[str, Any], task: dict[str, Any], path: str) -> None:
    assert path in problems(registry(model("a", **keys), **task))


def test_a_temperature_that_is_never_sent_is_a_warning() -> None:
    reg = load(registry(model("o", unsupportedParameters=["temperature"], temperature=0.2))).current
    (warning,) = reg.warnings
    assert warning.path == "models[0].temperature"
    assert "never sent" in warning.message


def test_reasoning_effort_on_a_provider_without_a_mapping_is_a_warning() -> None:
    reg = load(registry(model("local", provider="ollama", reasoningEffort="low"))).current
    (warning,) = reg.warnings
    assert warning.path == "models[0].reasoningEffort"
    assert "not mapped for provider 'ollama'" in warning.message


def test_the_exported_schema_has_the_keys() -> None:
    schema = registry_json_schema()
    model_props = schema["$defs"]["ModelConfig"]["properties"]
    assert model_props["unsupportedParameters"]["items"]["enum"] == ["temperature", "top_p", "stop"]
    assert "high" in str(model_props["reasoningEffort"])
    task_props = schema["$defs"]["TaskMapping"]["properties"]
    assert (task_props["outputRetries"]["default"], task_props["outputRetries"]["maximum"]) == (1, 10)
