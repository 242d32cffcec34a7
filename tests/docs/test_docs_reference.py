"""The reference pages list exactly what the code has: registry keys against the JSON Schema, settings against
``Settings``. A key added to the code and not to the docs (or the other way round) fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from taskmodels.registry.schema import RegistryConfig
from taskmodels.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"

_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")


def table_rows(page: str) -> dict[str, list[str]]:
    """First-column code spans of every table row, mapped to the row's other cells."""
    rows: dict[str, list[str]] = {}
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line.strip())
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


# --- registry.md ------------------------------------------------------------------------------


def schema_keys() -> dict[str, dict[str, Any]]:
    """Every key path of the registry file (``models[].id``, ``taskMappings[].budget.limit`` ...) with its
    schema and whether it is required."""
    schema = RegistryConfig.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    out: dict[str, dict[str, Any]] = {}

    def ref_of(prop: dict[str, Any]) -> tuple[str | None, bool]:
        if "$ref" in prop:
            return prop["$ref"], False
        if prop.get("type") == "array" and "$ref" in prop.get("items", {}):
            return prop["items"]["$ref"], True
        for alt in prop.get("anyOf", []):
            if "$ref" in alt:
                return alt["$ref"], False
        return None, False

    def walk(node: dict[str, Any], prefix: str) -> None:
        required = set(node.get("required", []))
        for key, prop in node.get("properties", {}).items():
            path = prefix + key
            out[path] = {"schema": prop, "required": key in required}
            ref, is_list = ref_of(prop)
            if ref is not None:
                walk(defs[ref.rsplit("/", 1)[-1]], path + ("[]." if is_list else "."))

    walk(schema, "")
    return out


def test_registry_reference_documents_exactly_the_schemas_keys() -> None:
    documented = set(table_rows("registry.md"))
    expected = set(schema_keys())
    assert documented == expected, {
        "in the schema, not documented": sorted(expected - documented),
        "documented, not in the schema": sorted(documented - expected),
    }


def test_registry_reference_says_what_is_required_and_the_defaults() -> None:
    rows = table_rows("registry.md")
    for path, info in schema_keys().items():
        cell = rows[path][1]
        if info["required"]:
            assert cell == "required", path
        elif "default" in info["schema"]:
            assert cell == f"`{json.dumps(info['schema']['default'])}`", (path, cell)
        else:
            assert cell != "required", path


# --- settings.md ------------------------------------------------------------------------------


def _render_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def settings_variables() -> dict[str, str]:
    """``TASKMODELS_...`` variable of every settings field, with its default as settings.md writes it."""
    out: dict[str, str] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            default = field.get_default(call_default_factory=True)
            out[f"{prefix}{name.upper()}"] = _render_default(default)

    walk(Settings, "TASKMODELS_")
    # providers is a dict of sections, one per provider name: documented through a placeholder.
    del out["TASKMODELS_PROVIDERS"]
    from taskmodels.sections import ProviderSettings

    walk(ProviderSettings, "TASKMODELS_PROVIDERS__<NAME>__")
    return out


def test_settings_reference_documents_every_variable_with_its_default() -> None:
    rows = table_rows("settings.md")
    expected = settings_variables()
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"settings.md does not document {missing}"
    for name, default in expected.items():
        assert rows[name][0] == f"`{default}`", (name, rows[name][0], default)


def test_settings_reference_names_only_real_variables() -> None:
    expected = set(settings_variables())
    aliases = {
        str(choice)
        for field in Settings.model_fields.values()
        if field.validation_alias is not None
        for choice in getattr(field.validation_alias, "choices", [])
    }
    documented = {name for name in table_rows("settings.md") if name.isupper() or name.startswith("TASKMODELS_")}
    unknown = sorted(documented - expected - aliases - {"TASKMODELS_SECRETS_DIR"})
    assert not unknown, f"settings.md documents variables that do not exist: {unknown}"


def test_every_key_alias_variable_is_documented() -> None:
    rows = table_rows("settings.md")
    for field in Settings.model_fields.values():
        for choice in getattr(field.validation_alias, "choices", []) if field.validation_alias else []:
            assert str(choice) in rows or str(choice).startswith("TASKMODELS_"), choice
