"""The registry's JSON Schema: exported with the file's camelCase keys, and it accepts the example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskmodels.errors import RegistryError
from taskmodels.registry import ModelRegistryService
from taskmodels.registry.jsonschema import registry_json_schema

EXAMPLE = Path(__file__).resolve().parents[2] / "settings" / "modelRegistry.json"


def test_schema_uses_camel_case_and_forbids_unknown_keys() -> None:
    schema = registry_json_schema()
    assert schema["required"] == ["models", "defaultModelId"]
    assert schema["additionalProperties"] is False
    model = schema["$defs"]["ModelConfig"]
    assert {"id", "provider", "modelName", "maxTokens", "temperature", "contextWindow", "costPer1kTokens"} <= set(
        model["required"]
    )
    assert model["additionalProperties"] is False
    assert model["properties"]["maxTokens"]["exclusiveMinimum"] == 0
    assert model["properties"]["temperature"]["maximum"] == 2.0
    task = schema["$defs"]["TaskMapping"]
    assert "fallbackModelIds" in task["properties"]
    json.dumps(schema)  # serialisable as is


def test_example_registry_matches_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(EXAMPLE.read_text())
    jsonschema.validate(data, registry_json_schema())
    data["models"][0]["maxToken"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, registry_json_schema())


def _loader_accepts(data: dict[str, Any]) -> bool:
    try:
        ModelRegistryService.from_dict(data)
    except RegistryError:
        return False
    return True


def _schema_accepts(jsonschema: Any, data: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(data, registry_json_schema())
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("model", "maxTokens", "1000"),
        ("model", "maxTokens", 1000.0),
        ("model", "maxTokens", True),
        ("model", "maxTokens", 10.5),
        ("model", "contextWindow", "200000"),
        ("model", "temperature", "0.5"),
        ("model", "temperature", 1),
        ("model", "costPer1kTokens", "0.001"),
        ("model", "costPer1kTokens", False),
        ("model", "cachedInputCostPer1kTokens", "0"),
        ("model", "cacheWriteCostPer1kTokens", 0.00375),
        ("model", "capabilities", "chat"),
        ("model", "baseUrl", "ftp://host/v1"),
        ("model", "baseUrl", "localhost:8080"),
        ("model", "baseUrl", "http://127.0.0.1:8080/v1"),
        ("model", "timeouts", {"firstTokenTimeout": "30"}),
        ("model", "timeouts", {"firstTokenTimeout": 30}),
        ("task", "maxCostPerCall", "0.5"),
        ("task", "fallbackOnContentFilter", "true"),
        ("task", "fallbackOnContentFilter", 1),
        ("task", "streamPolicy", "Restart"),
        ("task", "budget", {"limit": "1"}),
        ("task", "budget", {"limit": 1, "windowSeconds": 3600.0}),
        ("task", "timeouts", {"deadline": "10"}),
    ],
)
def test_the_loader_and_its_schema_agree(where: str, key: str, value: Any) -> None:
    """A value the exported schema refuses, the loader refuses too, and the other way round."""
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(EXAMPLE.read_text())
    (data["models"][0] if where == "model" else data["taskMappings"][0])[key] = value
    assert _loader_accepts(data) == _schema_accepts(jsonschema, data)
