"""Registry entries in the file's format, for tests of the registry, selection and CLI."""

from __future__ import annotations

from typing import Any


def model(id: str, **overrides: Any) -> dict[str, Any]:  # noqa: A002 - the registry key is "id"
    """A valid ``models[]`` entry on the openai provider; ``overrides`` add or replace keys."""
    data: dict[str, Any] = {
        "id": id,
        "provider": "openai",
        "modelName": f"{id}-name",
        "maxTokens": 1000,
        "temperature": 0.5,
        "contextWindow": 16000,
        "costPer1kTokens": 0.001,
        "capabilities": ["chat"],
    }
    data.update(overrides)
    return data
