"""Environment overlays (merge rules, located problems) and hot reload."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from taskmodels.errors import ConfigurationError, RegistryError
from taskmodels.registry import ModelRegistryService
from taskmodels.settings import Settings
from tests.registry_entries import model

BASE: dict[str, Any] = {
    "models": [model("a"), model("b", capabilities=["chat", "json"]), model("c")],
    "taskMappings": [
        {"taskName": "t1", "primaryModelId": "a", "fallbackModelIds": ["b"], "description": "first"},
        {"taskName": "t2", "primaryModelId": "b", "fallbackModelIds": ["c"]},
    ],
    "defaultModelId": "a",
}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write(tmp_path / "modelRegistry.json", BASE)


def bump(path: Path) -> None:
    """Make sure the change is seen even on a coarse-mtime filesystem."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_overlay_replaces_listed_keys_of_a_model_and_keeps_the_rest(base: Path, tmp_path: Path) -> None:
    overlay = write(tmp_path / "modelRegistry.prod.json", {"models": [{"id": "b", "maxTokens": 50}]})
    reg = ModelRegistryService.from_path([base, overlay]).current
    b = reg.models_by_id["b"]
    assert b.max_tokens == 50
    assert b.capabilities == ("chat", "json")  # untouched key kept
    assert [m.id for m in reg.config.models] == ["a", "b", "c"]
    assert reg.sources == (str(base), str(overlay))


def test_overlay_list_values_replace_not_merge(base: Path, tmp_path: Path) -> None:
    overlay = write(tmp_path / "o.json", {"models": [{"id": "b", "capabilities": ["embedding"]}]})
    assert ModelRegistryService.from_path([base, overlay]).current.models_by_id["b"].capabilities == ("embedding",)


def test_overlay_appends_new_models_and_tasks(base: Path, tmp_path: Path) -> None:
    overlay = write(
        tmp_path / "o.json",
        {
            "models": [model("d")],
            "taskMappings": [{"taskName": "t3", "primaryModelId": "d", "fallbackModelIds": ["a"]}],
        },
    )
    reg = ModelRegistryService.from_path([base, overlay]).current
    assert [m.id for m in reg.config.models] == ["a", "b", "c", "d"]
    assert [m.id for m in reg.chains["t3"]] == ["d", "a"]


def test_overlay_merges_tasks_by_name(base: Path, tmp_path: Path) -> None:
    overlay = write(tmp_path / "o.json", {"taskMappings": [{"taskName": "t1", "fallbackModelIds": ["c"]}]})
    reg = ModelRegistryService.from_path([base, overlay]).current
    t1 = reg.tasks_by_name["t1"]
    assert t1.fallback_model_ids == ("c",)
    assert t1.primary_model_id == "a"
    assert t1.description == "first"
    assert [m.id for m in reg.chains["t1"]] == ["a", "c"]


def test_overlay_replaces_default_model(base: Path, tmp_path: Path) -> None:
    overlay = write(tmp_path / "o.json", {"defaultModelId": "c"})
    reg = ModelRegistryService.from_path([base, overlay]).current
    assert reg.default_model.id == "c"
    assert [m.id for m in reg.chains["t2"]] == ["b", "c"]


def test_overlay_key_spelling_may_differ_from_base(base: Path, tmp_path: Path) -> None:
    overlay = write(tmp_path / "o.json", {"models": [{"id": "a", "max_tokens": 7}], "default_model_id": "b"})
    reg = ModelRegistryService.from_path([base, overlay]).current
    assert reg.models_by_id["a"].max_tokens == 7
    assert reg.default_model.id == "b"


def test_problems_name_the_file_and_index_each_value_came_from(base: Path, tmp_path: Path) -> None:
    overlay = write(
        tmp_path / "o.json",
        {
            "models": [{"id": "zz-new", "provider": "openai"}, {"id": "c", "maxTokens": -1}],
            "taskMappings": [{"taskName": "t2", "fallbackModelIds": ["ghost"]}],
            "defaultModelId": "nope",
        },
    )
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path([base, overlay])
    got = {(p.source, p.path): p.message for p in info.value.problems}
    o = str(overlay)
    assert got[(o, "models[1].maxTokens")] == "must be greater than 0 (got -1) (model 'c')"
    assert got[(o, "models[0].modelName")] == "missing required key 'modelName' (model 'zz-new')"
    assert got[(o, "taskMappings[0].fallbackModelIds[0]")] == "unknown model 'ghost' (task 't2')"
    assert got[(o, "defaultModelId")] == "unknown model 'nope'"
    assert all(p.source == o for p in info.value.problems)


def test_base_problems_keep_the_base_file_name(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(BASE))
    broken["models"][2]["temperature"] = 5
    base = write(tmp_path / "base.json", broken)
    overlay = write(tmp_path / "o.json", {"models": [{"id": "c", "maxTokens": 10}]})
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path([base, overlay])
    assert [(p.source, p.path) for p in info.value.problems] == [(str(base), "models[2].temperature")]


def test_duplicate_id_inside_one_overlay_is_an_error(base: Path, tmp_path: Path) -> None:
    overlay = write(tmp_path / "o.json", {"models": [{"id": "a", "maxTokens": 5}, {"id": "a", "maxTokens": 6}]})
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path([base, overlay])
    (problem,) = info.value.problems
    assert (problem.source, problem.path) == (str(overlay), "models[1]")
    assert problem.message == "duplicate model id 'a' in this overlay (also at models[0])"


def test_settings_choose_the_overlay(base: Path, tmp_path: Path) -> None:
    write(tmp_path / "modelRegistry.staging.json", {"defaultModelId": "b"})
    settings = Settings(registry_path=base, environment="staging")
    assert settings.registry_paths() == [base, tmp_path / "modelRegistry.staging.json"]
    assert ModelRegistryService.from_settings(settings).current.default_model.id == "b"


def test_missing_overlay_for_a_set_environment_is_an_error_naming_it(base: Path, tmp_path: Path) -> None:
    settings = Settings(registry_path=base, environment="qa")
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_settings(settings)
    assert [(p.source, p.message) for p in info.value.problems] == [
        (str(tmp_path / "modelRegistry.qa.json"), "file not found")
    ]


def test_example_production_overlay_is_valid() -> None:
    from taskmodels.providers.factory import BUILTIN_PROVIDERS

    root = Path(__file__).resolve().parents[2] / "settings"
    service = ModelRegistryService.from_path(
        [root / "modelRegistry.json", root / "modelRegistry.production.json"], provider_names=BUILTIN_PROVIDERS
    )
    assert service.current.chains["classification"][0].id == "azure-gpt-4o-mini"


# --- reload --------------------------------------------------------------------------


def test_reload_swaps_in_the_new_registry(base: Path) -> None:
    service = ModelRegistryService.from_path(base)
    old = service.current
    data = json.loads(json.dumps(BASE))
    data["defaultModelId"] = "c"
    write(base, data)
    new = service.reload()
    assert service.current is new
    assert new.default_model.id == "c"
    assert old.default_model.id == "a"  # a caller holding the old snapshot still sees it whole


def test_reload_keeps_the_old_registry_when_the_file_is_invalid(base: Path) -> None:
    service = ModelRegistryService.from_path(base)
    old = service.current
    base.write_text('{"models": [], "defaultModelId": "gone"}')
    with pytest.raises(RegistryError) as info:
        service.reload()
    assert info.value.problems[0].message == "unknown model 'gone'"
    assert service.current is old
    base.write_text("{ not json")
    with pytest.raises(RegistryError):
        service.reload()
    assert service.current is old


def test_reload_without_files_is_a_configuration_error() -> None:
    service = ModelRegistryService.from_dict(BASE)
    with pytest.raises(ConfigurationError):
        service.reload()


def test_reload_if_changed_logs_problems_instead_of_raising(base: Path) -> None:
    service = ModelRegistryService.from_path(base)
    old = service.current
    assert service.reload_if_changed() is False  # nothing changed
    base.write_text('{"models": [], "defaultModelId": "gone"}')
    bump(base)
    with capture_logs() as logs:
        assert service.reload_if_changed() is False
        assert service.reload_if_changed() is False  # the same bad version is reported once
    assert service.current is old
    failures = [e for e in logs if e["event"] == "taskmodels.registry.reload_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert any("unknown model 'gone'" in p for p in failures[0]["problems"])

    data = json.loads(json.dumps(BASE))
    data["defaultModelId"] = "b"
    write(base, data)
    bump(base)
    with capture_logs() as logs:
        assert service.reload_if_changed() is True
    assert service.current.default_model.id == "b"
    assert [e["event"] for e in logs] == ["taskmodels.registry.reloaded"]


async def test_watch_reloads_a_changed_file_until_stopped(base: Path) -> None:
    service = ModelRegistryService.from_path(base)
    stop = asyncio.Event()
    watcher = asyncio.create_task(service.watch(interval=0.01, stop=stop))
    data = json.loads(json.dumps(BASE))
    data["defaultModelId"] = "c"
    write(base, data)
    bump(base)
    for _ in range(500):  # bounded poll, not a fixed sleep
        if service.current.default_model.id == "c":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(watcher, timeout=5)
    assert service.current.default_model.id == "c"


def test_concurrent_readers_never_see_a_half_loaded_registry(base: Path) -> None:
    service = ModelRegistryService.from_path(base)
    variants = []
    for default in ("a", "b", "c"):
        data = json.loads(json.dumps(BASE))
        data["defaultModelId"] = default
        variants.append(data)
    bad: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            reg = service.current
            # every snapshot is internally consistent: its chains end in its own default model
            if reg.chains["t1"][-1] is not reg.models_by_id[reg.config.default_model_id] and (
                reg.config.default_model_id not in {m.id for m in reg.chains["t1"]}
            ):
                bad.append("inconsistent")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(30):
            write(base, variants[i % 3])
            service.reload()
    finally:
        done.set()
        for t in threads:
            t.join()
    assert bad == []
