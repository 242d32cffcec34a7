"""Registry loading and validation: every rule has a test that fails without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskmodels.errors import Problem, RegistryError
from taskmodels.providers.factory import BUILTIN_PROVIDERS
from taskmodels.registry import ModelRegistryService
from tests.registry_entries import model

PROVIDERS = frozenset(BUILTIN_PROVIDERS)
EXAMPLE = Path(__file__).resolve().parents[2] / "settings" / "modelRegistry.json"


def task(name: str, primary: str, *fallbacks: str, **extra: Any) -> dict[str, Any]:
    return {"taskName": name, "primaryModelId": primary, "fallbackModelIds": list(fallbacks), **extra}


def registry(models: list[Any], tasks: list[Any] | None = None, default: str | None = "a") -> dict[str, Any]:
    data: dict[str, Any] = {"models": models, "taskMappings": tasks or []}
    if default is not None:
        data["defaultModelId"] = default
    return data


def problems_of(data: Any, *, providers: frozenset[str] | None = PROVIDERS) -> list[Problem]:
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(data, provider_names=providers, source="reg.json")
    return list(info.value.problems)


def paths_and_messages(data: Any, **kw: Any) -> dict[str, str]:
    return {p.path: p.message for p in problems_of(data, **kw)}


def test_example_registry_is_valid_with_real_provider_names() -> None:
    service = ModelRegistryService.from_path(EXAMPLE, provider_names=PROVIDERS)
    reg = service.current
    assert {"persona-generation", "clustering", "summarisation", "classification", "embedding"} <= set(
        reg.tasks_by_name
    )
    assert {m.provider for m in service.list_models()} == set(BUILTIN_PROVIDERS)
    assert reg.warnings == ()


def test_valid_registry_indexes_models_tasks_and_chains() -> None:
    data = registry([model("a"), model("b"), model("c")], [task("t", "b", "c")])
    service = ModelRegistryService.from_dict(data, provider_names=PROVIDERS)
    reg = service.current
    assert reg.models_by_id["b"].model_name == "b-name"
    assert [m.id for m in reg.chains["t"]] == ["b", "c", "a"]
    assert [m.id for m in reg.default_chain] == ["a"]
    assert service.get_model("c") is reg.models_by_id["c"]
    assert service.get_model("zzz") is None
    assert service.get_task("t") is not None
    assert service.get_task("nope") is None
    assert [m.id for m in service.list_models()] == ["a", "b", "c"]
    assert [t.task_name for t in service.list_tasks()] == ["t"]
    assert service.default_model.id == "a"


def test_chain_deduplicates_default_already_in_chain() -> None:
    data = registry([model("a"), model("b")], [task("t", "b", "a")])
    reg = ModelRegistryService.from_dict(data).current
    assert [m.id for m in reg.chains["t"]] == ["b", "a"]


def test_snake_case_keys_are_accepted() -> None:
    data = {
        "models": [
            {
                "id": "a",
                "provider": "openai",
                "model_name": "x",
                "max_tokens": 10,
                "temperature": 0,
                "context_window": 100,
                "cost_per_1k_tokens": 0,
            }
        ],
        "task_mappings": [{"task_name": "t", "primary_model_id": "a", "fallback_model_ids": []}],
        "default_model_id": "a",
    }
    reg = ModelRegistryService.from_dict(data).current
    assert reg.chains["t"][0].model_name == "x"


def test_multi_mistake_file_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    bad = {
        "models": [
            model("a", maxTokens=-5, temperature=3, maxToken=3),
            model("a", provider="nope", contextWindow=0),
            model("b", contextWindow=500, capabilities=["chat", "x"]),
            model("c", contextWindow=2000, capabilities=["chat", "x", "vision"]),
        ],
        "taskMappings": [
            task("t", "gpt-9", "a"),
            task("t", "a", "a", "b", "b", timeouts={"deadlin": 3}),
            task("u", "c", "b", "ghost"),
        ],
        "defaultModel": "a",
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path(path, provider_names=PROVIDERS)
    got = {p.path: p.message for p in info.value.problems}
    assert all(p.source == str(path) for p in info.value.problems)
    expected = {
        "": "missing required key 'defaultModelId'",
        "defaultModel": "unknown key 'defaultModel'; did you mean 'defaultModelId'?",
        "models[0].maxTokens": "must be greater than 0 (got -5) (model 'a')",
        "models[0].temperature": "must be less than or equal to 2 (got 3) (model 'a')",
        "models[0].maxToken": "unknown key 'maxToken'; did you mean 'maxTokens'? (model 'a')",
        "models[1].contextWindow": "must be greater than 0 (got 0) (model 'a')",
        "models[1].id": "duplicate model id 'a' (also at models[0])",
        "models[2].contextWindow": "contextWindow (500) must be larger than maxTokens (1000): the prompt and the "
        "answer share the window, so this model could never be selected (model 'b')",
        "taskMappings[0].primaryModelId": "unknown model 'gpt-9' (task 't')",
        "taskMappings[1].taskName": "duplicate task name 't' (also at taskMappings[0])",
        "taskMappings[1].fallbackModelIds[0]": "model 'a' is already this task's primary model (task 't')",
        "taskMappings[1].fallbackModelIds[2]": "model 'b' appears twice in the chain (also at fallbackModelIds[1])"
        " (task 't')",
        "taskMappings[1].timeouts.deadlin": "unknown key 'deadlin'; did you mean 'deadline'? (task 't')",
        "taskMappings[2].fallbackModelIds[1]": "unknown model 'ghost' (task 'u')",
    }
    for where, message in expected.items():
        assert got.get(where) == message, where
    assert got["models[1].provider"].startswith("no provider implementation named 'nope' (known: anthropic,")
    assert got["models[1].provider"].endswith("(model 'a')")
    assert len(got) == len(expected) + 1
    # the whole list is in the exception's message too
    text = str(info.value)
    assert "15 problems" in text
    assert "taskMappings[2].fallbackModelIds[1]: unknown model 'ghost'" in text


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{\n  "models": [\n    {"id": "a",}\n  ]\n}\n')
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path(path)
    (problem,) = info.value.problems
    assert problem.source == str(path)
    assert problem.message.startswith("invalid JSON: ")
    assert "(line 3, column 16)" in problem.message


def test_missing_file_is_a_located_problem(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path(tmp_path / "absent.json")
    assert [(p.source, p.message) for p in info.value.problems] == [(str(tmp_path / "absent.json"), "file not found")]


def test_top_level_must_be_an_object() -> None:
    assert paths_and_messages([1, 2]) == {"": "the registry must be an object with 'models'"}


def test_models_must_be_a_list_and_elements_objects() -> None:
    assert paths_and_messages(registry("nope"))["models"] == "must be a list, not a string"  # type: ignore[arg-type]
    got = paths_and_messages(registry([model("a"), 5]))
    assert got["models[1]"] == "must be an object, not int"


def test_missing_models_key() -> None:
    assert paths_and_messages({"defaultModelId": "a"}) == {"": "missing required key 'models'"}


def test_missing_required_model_field_uses_camel_case_name() -> None:
    entry = model("a")
    del entry["contextWindow"]
    assert paths_and_messages(registry([entry])) == {
        "models[0].contextWindow": "missing required key 'contextWindow' (model 'a')"
    }


def test_error_path_uses_the_users_spelling() -> None:
    entry = model("a")
    del entry["maxTokens"]
    entry["max_tokens"] = 0
    assert paths_and_messages(registry([entry])) == {
        "models[0].max_tokens": "must be greater than 0 (got 0) (model 'a')"
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("maxTokens", 0, "must be greater than 0 (got 0)"),
        ("contextWindow", -1, "must be greater than 0 (got -1)"),
        ("costPer1kTokens", -0.5, "must be greater than or equal to 0 (got -0.5)"),
        ("temperature", -0.1, "must be greater than or equal to 0 (got -0.1)"),
        ("temperature", 2.5, "must be less than or equal to 2 (got 2.5)"),
    ],
)
def test_limits_and_temperature_range(field: str, value: float, message: str) -> None:
    assert paths_and_messages(registry([model("a", **{field: value})])) == {
        f"models[0].{field}": f"{message} (model 'a')"
    }


def test_non_positive_task_limits() -> None:
    data = registry([model("a")], [task("t", "a", maxCostPerCall=0, budget={"limit": -1})])
    got = paths_and_messages(data)
    assert got["taskMappings[0].maxCostPerCall"] == "must be greater than 0 (got 0) (task 't')"
    assert got["taskMappings[0].budget.limit"] == "must be greater than 0 (got -1) (task 't')"


def test_unknown_key_without_a_close_match_has_no_suggestion() -> None:
    assert paths_and_messages(registry([model("a", flavour="x")])) == {
        "models[0].flavour": "unknown key 'flavour' (model 'a')"
    }


def test_unknown_key_suggests_across_spelling_styles() -> None:
    got = paths_and_messages(registry([model("a", context_windw=5)]))
    assert got["models[0].context_windw"] == "unknown key 'context_windw'; did you mean 'contextWindow'? (model 'a')"


def test_one_bad_model_does_not_hide_problems_in_others() -> None:
    data = registry([model("a", maxTokens=0), model("b", temperature=9), model("c", contextWindow=0)])
    assert set(paths_and_messages(data)) == {
        "models[0].maxTokens",
        "models[1].temperature",
        "models[2].contextWindow",
    }


def test_invalid_model_still_counts_as_known_for_references() -> None:
    data = registry([model("a"), model("b", maxTokens=0)], [task("t", "b")])
    assert set(paths_and_messages(data)) == {"models[1].maxTokens"}


def test_unknown_default_model_with_suggestion() -> None:
    got = paths_and_messages(registry([model("gpt-4o")], default="gpt-4"))
    assert got == {"defaultModelId": "unknown model 'gpt-4'; did you mean 'gpt-4o'?"}


def test_empty_default_model_id() -> None:
    assert paths_and_messages(registry([model("a")], default="  ")) == {
        "defaultModelId": "must be a non-empty string (got '  ')"
    }


def test_missing_default_model_id() -> None:
    assert paths_and_messages(registry([model("a")], default=None)) == {"": "missing required key 'defaultModelId'"}


def test_unknown_fallback_reference() -> None:
    got = paths_and_messages(registry([model("a")], [task("t", "a", "gpt-9")]))
    assert got == {"taskMappings[0].fallbackModelIds[0]": "unknown model 'gpt-9' (task 't')"}


def test_provider_check_only_when_names_given() -> None:
    data = registry([model("a", provider="mystery")])
    assert ModelRegistryService.from_dict(data, provider_names=None).current.default_model.provider == "mystery"
    got = paths_and_messages(data, providers=frozenset({"openai", "anthropic"}))
    assert got == {
        "models[0].provider": "no provider implementation named 'mystery' (known: anthropic, openai) (model 'a')"
    }


def test_warnings_for_smaller_context_and_missing_capabilities() -> None:
    data = registry(
        [
            model("a", contextWindow=100000, capabilities=["chat", "vision", "tools"]),
            model("b", contextWindow=8000, capabilities=["chat"]),
            model("c", contextWindow=200000, capabilities=["chat", "vision", "tools", "json"]),
        ],
        [task("t", "a", "c", "b")],
    )
    reg = ModelRegistryService.from_dict(data, source="w.json").current
    assert [(w.path, w.severity) for w in reg.warnings] == [
        ("taskMappings[0].fallbackModelIds[1]", "warning"),
        ("taskMappings[0].fallbackModelIds[1]", "warning"),
    ]
    messages = [w.message for w in reg.warnings]
    assert "fallback 'b' has a smaller context window (8000) than the primary 'a' (100000) (task 't')" in messages
    assert "fallback 'b' lacks capabilities the primary 'a' has: vision, tools (task 't')" in messages
    assert all(w.source == "w.json" for w in reg.warnings)


def test_toml_registry(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        'defaultModelId = "a"\n[[models]]\nid = "a"\nprovider = "openai"\nmodelName = "x"\nmaxTokens = 5\n'
        "temperature = 0.1\ncontextWindow = 100\ncostPer1kTokens = 0.0\n"
    )
    assert ModelRegistryService.from_path(path).current.default_model.model_name == "x"
    path.write_text("defaultModelId = \n")
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path(path)
    assert info.value.problems[0].message.startswith("invalid TOML:")


def test_yaml_registry(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "r.yaml"
    path.write_text(
        "defaultModelId: a\nmodels:\n  - id: a\n    provider: openai\n    modelName: x\n    maxTokens: 5\n"
        "    temperature: 0.1\n    contextWindow: 100\n    costPer1kTokens: 0\n"
    )
    assert ModelRegistryService.from_path(path).current.default_model.model_name == "x"
    path.write_text("models: [a\n")
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_path(path)
    assert info.value.problems[0].message.startswith("invalid YAML:")
    assert "line" in info.value.problems[0].message


def test_registry_snapshot_is_immutable() -> None:
    reg = ModelRegistryService.from_dict(registry([model("a")])).current
    with pytest.raises(TypeError):
        reg.models_by_id["b"] = reg.default_model  # type: ignore[index]
    with pytest.raises(AttributeError):
        reg.default_model = reg.default_model  # type: ignore[misc]
