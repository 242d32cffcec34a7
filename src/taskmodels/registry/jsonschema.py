"""The JSON Schema of the registry file, for editors (``"$schema"``) and the ``taskmodels schema`` command."""

from __future__ import annotations

from typing import Any

from taskmodels.registry.schema import RegistryConfig

__all__ = ["registry_json_schema"]


def registry_json_schema() -> dict[str, Any]:
    """The schema with camelCase keys, as files are written; snake_case spellings are accepted too at load."""
    schema = RegistryConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "taskmodels model registry"
    return schema
