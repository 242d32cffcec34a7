"""The registry's JSON Schema: exported with the file's camelCase keys, and it accepts the example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
