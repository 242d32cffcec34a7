"""Hot reload while calls are in flight: every call runs on one whole registry, and an
invalid file never replaces a valid one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from taskmodels.errors import RegistryError
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.service import ModelService
from taskmodels.testing import FakeBackend, fake_model, make_test_service, offline_client, reply


def version(n: int) -> dict[str, Any]:
    """Version n: both models' names carry n, and the task's primary alternates between them."""
    models = [fake_model("a", modelName=f"a-v{n}"), fake_model("b", modelName=f"b-v{n}")]
    primary, fallback = ("a", "b") if n % 2 else ("b", "a")
    return {
        "models": models,
        "taskMappings": [{"taskName": "t", "primaryModelId": primary, "fallbackModelIds": [fallback]}],
        "defaultModelId": primary,
    }


INVALID = '{"models": [], "taskMappings": [{"taskName": "t", "primaryModelId": "gone"}], "defaultModelId": "gone"}'


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, ModelRegistryService, ModelService]:
    path = tmp_path / "modelRegistry.json"
    path.write_text(json.dumps(version(1)))
    backend = FakeBackend(default=reply("answer", delay=0.001))
    factory = ModelProviderFactory(http_client=offline_client(), discover_entry_points=False)
    factory.register_provider_implementation("fake", backend.provider_class("fake"))
    registry = ModelRegistryService.from_path(path, provider_names=factory.provider_names())
    service = make_test_service(
        registry,
        provider_factory=factory,
        state_store=MemoryStateStore(),
    )
    return path, registry, service


async def test_calls_during_reloads_each_see_one_whole_registry(
    setup: tuple[Path, ModelRegistryService, ModelService],
) -> None:
    path, registry, service = setup
    stop = asyncio.Event()
    reloads = {"ok": 0, "refused": 0}

    async def reloader() -> None:
        n = 1
        while not stop.is_set():
            n += 1
            if n % 3 == 0:
                path.write_text(INVALID)
                with pytest.raises(RegistryError):
                    registry.reload()
                reloads["refused"] += 1
            else:
                path.write_text(json.dumps(version(n)))
                registry.reload()
                reloads["ok"] += 1
            await asyncio.sleep(0)

    async def caller() -> list[tuple[str, str]]:
        seen = []
        for _ in range(40):
            result = await service.complete_with_task_model("t", prompt="hi")
            seen.append((result.model_id, result.model_name))
        return seen

    reload_task = asyncio.create_task(reloader())
    results = await asyncio.gather(*(caller() for _ in range(10)))
    stop.set()
    await reload_task

    pairs = [pair for seen in results for pair in seen]
    assert len(pairs) == 400
    assert reloads["ok"] > 5
    assert reloads["refused"] > 2
    for model_id, model_name in pairs:
        n = int(model_name.split("-v")[1])
        # Odd versions route to "a", even ones to "b": the model that served must be the
        # primary of the very version its name came from, or the call mixed two registries.
        assert model_id == ("a" if n % 2 else "b"), (model_id, model_name)
        assert model_name.startswith(model_id)
    # Calls really ran across several versions.
    assert len({name for _, name in pairs}) > 2


def test_an_invalid_file_never_replaces_a_valid_registry(
    setup: tuple[Path, ModelRegistryService, ModelService],
) -> None:
    path, registry, _ = setup
    before = registry.current
    path.write_text(INVALID)
    with pytest.raises(RegistryError) as info:
        registry.reload()
    assert registry.current is before
    assert str(path) in str(info.value)
    path.write_text(json.dumps(version(2)))
    after = registry.reload()
    assert registry.current is after
    assert after.tasks_by_name["t"].primary_model_id == "b"
