"""What `taskmodels validate` used to let through: each case, and the located message it now gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskmodels.errors import Problem, RegistryError
from taskmodels.providers.factory import BUILTIN_PROVIDERS
from taskmodels.registry import ModelRegistryService
from taskmodels.registry.service import check_files
from tests.registry_entries import model

PROVIDERS = frozenset(BUILTIN_PROVIDERS)
EXAMPLE = Path(__file__).resolve().parents[2] / "settings" / "modelRegistry.json"


def task(name: str, primary: str, *fallbacks: str, **extra: Any) -> dict[str, Any]:
    return {"taskName": name, "primaryModelId": primary, "fallbackModelIds": list(fallbacks), **extra}


def registry(models: list[Any], tasks: list[Any] | None = None, default: str = "a") -> dict[str, Any]:
    return {"models": models, "taskMappings": tasks or [], "defaultModelId": default}


def errors_of(data: Any, **kw: Any) -> dict[str, str]:
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(data, provider_names=PROVIDERS, source="reg.json", **kw)
    return {p.path: p.message for p in info.value.problems}


def file_problems(path: Path) -> list[Problem]:
    return list(check_files([path]).errors)


# --- keys given twice ------------------------------------------------------------------------


def test_a_key_given_twice_in_one_json_object_is_an_error_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text(
        '{"models": [{"id": "a", "provider": "openai", "modelName": "x", "maxTokens": 10, "maxTokens": 20,\n'
        '  "temperature": 0, "contextWindow": 1000, "costPer1kTokens": 0}],\n'
        ' "taskMappings": [{"taskName": "t", "primaryModelId": "a",\n'
        '   "budget": {"limit": 1, "limit": 2}}],\n'
        ' "defaultModelId": "a", "defaultModelId": "a"}'
    )
    got = {p.path: p.message for p in file_problems(path)}
    assert got == {
        "models[0].maxTokens": "duplicate key 'maxTokens': only its last value would count, so give it once "
        "(model 'a')",
        "taskMappings[0].budget.limit": "duplicate key 'limit': only its last value would count, so give it once "
        "(task 't')",
        "defaultModelId": "duplicate key 'defaultModelId': only its last value would count, so give it once",
    }
    assert all(p.source == str(path) for p in file_problems(path))


def test_a_key_twice_in_a_dropped_object_is_not_pinned_on_another(tmp_path: Path) -> None:
    # The first "options" object is replaced by the second; its own repeated key must not be reported
    # against whatever object the parser builds next.
    entry = '{"id": "a", "provider": "openai", "modelName": "x", "maxTokens": 10, "temperature": 0,'
    entry += ' "contextWindow": 1000, "costPer1kTokens": 0, "options": {"k": 1, "k": 2}, "options": {}}'
    path = tmp_path / "r.json"
    path.write_text(f'{{"models": [{entry}], "defaultModelId": "a"}}')
    assert [(p.path, p.message.split(":")[0]) for p in file_problems(path)] == [
        ("models[0].options", "duplicate key 'options'")
    ]


def test_two_spellings_of_one_key_are_an_error() -> None:
    got = errors_of(registry([model("a", max_tokens=20)]))
    assert got == {"models[0].max_tokens": "'maxTokens' and 'max_tokens' are two spellings of one key; give it once "
                   "(model 'a')"}  # fmt: skip


def test_a_key_given_twice_in_yaml_is_an_error_with_its_line(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "r.yaml"
    path.write_text(
        "defaultModelId: a\n"
        "base: &base {provider: openai, temperature: 0}\n"
        "models:\n"
        "  - id: a\n"
        "    <<: *base\n"
        "    provider: openai\n"  # overriding a merged key is what merge keys are for: not a duplicate
        "    modelName: x\n"
        "    maxTokens: 5\n"
        "    maxTokens: 6\n"
        "    contextWindow: 100\n"
        "    costPer1kTokens: 0\n"
    )
    got = {p.path: p.message for p in file_problems(path)}
    assert got["models[0].maxTokens"] == (
        "duplicate key 'maxTokens' (line 9, column 5): only its last value would count, so give it once (model 'a')"
    )
    assert "base" in got  # the anchor's holder is not a registry key: reported as unknown, not as a duplicate
    assert len(got) == 2


def test_yaml_numbers_with_an_exponent_are_numbers(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "r.yaml"
    path.write_text(
        "defaultModelId: a\nmodels:\n  - {id: a, provider: openai, modelName: x, maxTokens: 5, temperature: 0,\n"
        "     contextWindow: 100, costPer1kTokens: 2e-05, inputCostPer1kTokens: 1.5E-6, description: 1e3x}\n"
    )
    model = ModelRegistryService.from_path(path).current.default_model
    assert (model.cost_per_1k_tokens, model.input_cost_per_1k_tokens, model.description) == (2e-05, 1.5e-06, "1e3x")


def test_toml_refuses_a_key_given_twice(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('defaultModelId = "a"\ndefaultModelId = "b"\n')
    (problem,) = file_problems(path)
    assert problem.message.startswith("invalid TOML: ")


# --- types as the schema says ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "path", "message"),
    [
        ({"maxTokens": "1000"}, "models[0].maxTokens", "must be a valid integer (got '1000') (model 'a')"),
        ({"maxTokens": True}, "models[0].maxTokens", "must be a valid integer (got True) (model 'a')"),
        ({"maxTokens": 10.5}, "models[0].maxTokens", "must be a valid integer (got 10.5) (model 'a')"),
        ({"contextWindow": "8k"}, "models[0].contextWindow", "must be a valid integer (got '8k') (model 'a')"),
        ({"temperature": "0.5"}, "models[0].temperature", "must be a valid number (got '0.5') (model 'a')"),
        ({"costPer1kTokens": "0"}, "models[0].costPer1kTokens", "must be a valid number (got '0') (model 'a')"),
        ({"timeouts": {"stallTimeout": "5"}}, "models[0].timeouts.stallTimeout", ("must be a valid number (got '5') "
         "(model 'a')")),
    ],
)  # fmt: skip
def test_model_values_are_not_coerced(keys: dict[str, Any], path: str, message: str) -> None:
    assert errors_of(registry([model("a", **keys)])) == {path: message}


def test_task_values_are_not_coerced() -> None:
    data = registry(
        [model("a")], [task("t", "a", fallbackOnContentFilter="yes", maxCostPerCall="1", budget={"limit": "2"})]
    )
    assert errors_of(data) == {
        "taskMappings[0].fallbackOnContentFilter": "must be a valid boolean (got 'yes') (task 't')",
        "taskMappings[0].maxCostPerCall": "must be a valid number (got '1') (task 't')",
        "taskMappings[0].budget.limit": "must be a valid number (got '2') (task 't')",
    }


def test_what_json_schema_calls_a_number_is_accepted() -> None:
    data = registry([model("a", maxTokens=1000.0, contextWindow=16000, temperature=1, costPer1kTokens=0)])
    loaded = ModelRegistryService.from_dict(data).current.default_model
    assert (loaded.max_tokens, type(loaded.max_tokens)) == (1000, int)
    assert loaded.temperature == 1.0


# --- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8080/v1", "must be an http:// or https:// URL with a host (got 'localhost:8080/v1')"),
        ("ftp://models.internal/v1", "must be an http:// or https:// URL with a host (got 'ftp://models.internal/v1')"),
        ("http:///v1", "must be an http:// or https:// URL with a host (got 'http:///v1')"),
        ("http://host:99999/v1", "has an invalid port (got 'http://host:99999/v1')"),
    ],
)
def test_base_url_must_be_an_http_url(url: str, message: str) -> None:
    assert errors_of(registry([model("a", baseUrl=url)])) == {"models[0].baseUrl": f"{message} (model 'a')"}


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "https://api.groq.com/openai/v1", "HTTP://[::1]:80"])
def test_http_urls_pass(url: str) -> None:
    if url.startswith("HTTP"):
        # The schema's pattern is case-sensitive; the loader agrees with it.
        assert "models[0].baseUrl" in errors_of(registry([model("a", baseUrl=url)]))
    else:
        assert ModelRegistryService.from_dict(registry([model("a", baseUrl=url)])).current.default_model.base_url


def compat(**keys: Any) -> dict[str, Any]:
    return registry([model("a"), model("local", provider="openai-compatible", **keys)])


def test_an_openai_compatible_model_without_base_url() -> None:
    variable = "TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL"
    # Settings unknown: the endpoint may come from them, so the file loads with a warning.
    (warning,) = ModelRegistryService.from_dict(compat(), source="reg.json").current.warnings
    assert (warning.path, warning.severity) == ("models[1].baseUrl", "warning")
    assert warning.message == (
        f"this openai-compatible model needs an endpoint: set baseUrl, or {variable}, or its calls fail (model 'local')"
    )
    # Settings known and without an endpoint for the provider: an error.
    assert errors_of(compat(), providers_with_base_url={"openai"}) == {
        "models[1].baseUrl": "this openai-compatible model needs an endpoint: set baseUrl "
        f"(e.g. http://127.0.0.1:8080/v1) or {variable} (model 'local')"
    }
    # Settings give one, or the model has its own: nothing to say.
    for data, known in ((compat(), {"openai-compatible"}), (compat(baseUrl="http://127.0.0.1:8080/v1"), set())):
        assert ModelRegistryService.from_dict(data, providers_with_base_url=known).current.warnings == ()


# --- keys that contradict each other ---------------------------------------------------------


@pytest.mark.parametrize("window", [999, 1000])
def test_a_context_window_with_no_room_for_a_prompt(window: int) -> None:
    assert errors_of(registry([model("a", maxTokens=1000, contextWindow=window)])) == {
        "models[0].contextWindow": f"contextWindow ({window}) must be larger than maxTokens (1000): the prompt and "
        "the answer share the window, so this model could never be selected (model 'a')"
    }


def test_a_task_no_model_of_its_chain_can_serve() -> None:
    models = [model("a", capabilities=["chat"]), model("b", capabilities=["chat", "json"]), model("c")]
    data = registry(models, [task("describe-image", "b", "c", requiredCapabilities=["vision", "json"])])
    assert errors_of(data) == {
        "taskMappings[0].requiredCapabilities": "no model of the chain (primary, fallbacks, default) has every "
        "required capability: 'b' lacks vision; 'c' lacks json, vision; 'a' lacks json, vision "
        "(task 'describe-image')"
    }
    # One capable model anywhere in the chain, the default included, is enough.
    models[0]["capabilities"] = ["chat", "json", "vision"]
    assert ModelRegistryService.from_dict(data).get_task("describe-image") is not None


# --- reading the file --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r.json", "r.yaml", "r.toml"])
@pytest.mark.parametrize("content", [b"", b"  \n\t\n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_called_empty(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert [(p.path, p.message) for p in file_problems(path)] == [("", "the file is empty")]


def test_invalid_utf8_is_located_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b'{\n  "models": [],\n  "d\xc3\xa9faultModelId": "\xff"\n}')
    assert [p.message for p in file_problems(path)] == [
        "not valid UTF-8 at line 3, column 22 (byte 0xff); save the file as UTF-8"
    ]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(tmp_path: Path, constant: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(EXAMPLE.read_text().replace('"costPer1kTokens": 0.005', f'"costPer1kTokens": {constant}'))
    assert [p.message for p in file_problems(path)] == [f"invalid JSON: {constant} is not a JSON value; write a number"]


def test_a_utf16_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(EXAMPLE.read_text().encode("utf-16"))
    assert [p.message for p in file_problems(path)] == ["the file is UTF-16 encoded; save it as UTF-8"]


@pytest.mark.parametrize("name", ["r.json", "r.yaml", "r.toml"])
def test_a_byte_order_mark_is_accepted(tmp_path: Path, name: str) -> None:
    if name.endswith("yaml"):
        pytest.importorskip("yaml")
    data = json.loads(EXAMPLE.read_text())
    if name.endswith("toml"):
        text = 'defaultModelId = "a"\n[[models]]\nid = "a"\nprovider = "openai"\nmodelName = "x"\nmaxTokens = 5\n'
        text += "temperature = 0.1\ncontextWindow = 100\ncostPer1kTokens = 0.0\n"
    else:
        text = json.dumps(data)  # JSON is YAML too
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert ModelRegistryService.from_path(path).current.default_model.id in {"a", "gpt-4o-mini"}


def test_the_example_registry_passes_every_new_check() -> None:
    result = check_files([EXAMPLE], provider_names=PROVIDERS, providers_with_base_url=set())
    assert (result.errors, result.warnings) == ((), ())


# --- time limits per model ---------------------------------------------------------------------


def test_a_model_may_have_its_own_time_limits() -> None:
    data = registry([model("a", timeouts={"firstTokenTimeout": 60, "stall_timeout": 20})])
    timeouts = ModelRegistryService.from_dict(data).current.default_model.timeouts
    assert timeouts is not None
    assert (timeouts.first_token_timeout, timeouts.stall_timeout, timeouts.deadline) == (60, 20, None)
    assert ModelRegistryService.from_dict(registry([model("a")])).current.default_model.timeouts is None


def test_a_models_time_limits_are_validated() -> None:
    data = registry([model("a", timeouts={"firstTokenTimeout": 0, "firstToken": 5})])
    assert errors_of(data) == {
        "models[0].timeouts.firstTokenTimeout": "must be greater than 0 (got 0) (model 'a')",
        "models[0].timeouts.firstToken": "unknown key 'firstToken'; did you mean 'firstTokenTimeout'? (model 'a')",
    }


def test_a_silent_model_is_left_after_ten_seconds_by_default() -> None:
    from taskmodels.sections import ResilienceSettings

    assert ResilienceSettings().first_token_timeout == 10.0


# --- a misspelling is one problem, with its suggestion ------------------------------------------------


def test_a_misspelled_required_key_is_one_problem_not_two() -> None:
    entry = model("a")
    entry["modelNam"] = entry.pop("modelName")
    assert errors_of(registry([entry])) == {
        "models[0].modelNam": "unknown key 'modelNam'; did you mean 'modelName'? (model 'a')"
    }


def test_a_misspelled_required_key_of_a_deployment_is_one_problem() -> None:
    entry = model("a", deployments=[{"idd": "east"}])
    assert errors_of(registry([entry])) == {
        "models[0].deployments[0].idd": "unknown key 'idd'; did you mean 'id'? (model 'a')"
    }


def test_a_missing_key_beside_an_unrelated_unknown_key_is_still_missing() -> None:
    entry = model("a", colour="red")
    del entry["contextWindow"]
    assert errors_of(registry([entry])) == {
        "models[0].colour": "unknown key 'colour' (model 'a')",
        "models[0].contextWindow": "missing required key 'contextWindow' (model 'a')",
    }


@pytest.mark.parametrize(
    ("provider", "meant"),
    [("OpenAI", "openai"), ("openai_compatible", "openai-compatible"), ("antropic", "anthropic")],
)
def test_a_misspelled_provider_name_gets_a_suggestion(provider: str, meant: str) -> None:
    known = "anthropic, azure-openai, gemini, ollama, openai, openai-compatible"
    expected = f"no provider implementation named {provider!r}; did you mean {meant!r}? (known: {known}) (model 'a')"
    assert errors_of(registry([model("a", provider=provider, baseUrl="http://h/v1")])) == {
        "models[0].provider": expected
    }
    pooled = model("a", deployments=[{"id": "d", "provider": provider, "baseUrl": "http://h/v1"}])
    assert errors_of(registry([pooled])) == {"models[0].deployments[0].provider": expected}


def test_a_provider_name_like_none_gets_no_suggestion() -> None:
    [message] = errors_of(registry([model("a", provider="zzz")])).values()
    assert message.startswith("no provider implementation named 'zzz' (known: anthropic,")


def test_a_short_name_merely_sharing_letters_gets_no_suggestion() -> None:
    [message] = errors_of(registry([model("a", provider="nope")])).values()
    assert message.startswith("no provider implementation named 'nope' (known: anthropic,")
