"""Registry files that used to crash the loader (found by fuzzing), and what each now says instead.

Every case ends in a RegistryError naming the file, the path and what is wrong, and `taskmodels validate`
prints it and exits 1, never a traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from taskmodels.cli import main
from taskmodels.errors import Problem, RegistryError
from taskmodels.registry import ModelRegistryService
from taskmodels.registry.service import check_files, load_registry
from tests.registry_entries import model

LONG = "9" * 5000  # past Python's 4,300-digit limit for converting text to an int
# A model entry in YAML flow style and in TOML, with a slot for one value.
YAML_MODEL = (
    "{{id: a, provider: openai, modelName: m, maxTokens: {max_tokens}, temperature: 0.5, contextWindow: 16000, "
    "costPer1kTokens: {cost}}}"
)
TOML_MODEL = (
    'id = "a"\nprovider = "openai"\nmodelName = "m"\nmaxTokens = {max_tokens}\ntemperature = 0.5\n'
    "contextWindow = 16000\ncostPer1kTokens = {cost}\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> dict[str, str]:
    with pytest.raises(RegistryError) as info:
        load_registry([path])
    assert all(p.source == str(path) for p in info.value.problems)
    return {p.path: p.message for p in info.value.problems}


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`taskmodels validate PATH` in-process: it must exit 1 and print, not raise."""
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert code == 1, out
    assert "Traceback" not in out
    return out


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKMODELS_REGISTRY_PATH", "TASKMODELS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


# --- whole numbers past Python's digit limit: ValueError from every reader ------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "long.json",
            '{"defaultModelId": "a",\n "models": [{"maxTokens": ' + LONG + "}]}",
            "invalid JSON: a whole number of 5,000 digits (line 2, column 27); at most 4,300 are read",
        ),
        (
            "long.yaml",
            "defaultModelId: a\nmodels:\n- " + YAML_MODEL.format(max_tokens=LONG, cost=0.1),
            "invalid YAML: a whole number of 5,000 digits; at most 4,300 are read (line 3, column 54)",
        ),
        (
            "long.toml",
            'defaultModelId = "a"\n[[models]]\n' + TOML_MODEL.format(max_tokens=LONG, cost=0.1),
            "invalid TOML: a whole number of 5,000 digits (line 6, column 13); at most 4,300 are read",
        ),
        (
            "underscores.toml",
            'defaultModelId = "a"\nx = 1.5\ny = ' + "_".join(["99"] * 2200),
            "invalid TOML: a whole number of 4,400 digits (line 3, column 5); at most 4,300 are read",
        ),
    ],
)
def test_a_whole_number_longer_than_python_reads_is_located_by_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    assert problems(path) == {"": message}
    assert f"{path}: {message}" in validate(path, capsys)


def test_a_long_float_is_no_long_whole_number_but_an_infinite_one(tmp_path: Path) -> None:
    path = write(tmp_path, "f.json", json.dumps({"models": [model("a")], "defaultModelId": "a"}))
    path.write_text(path.read_text().replace('"costPer1kTokens": 0.001', f'"costPer1kTokens": {LONG}.5'))
    assert problems(path) == {"models[0].costPer1kTokens": "must be a finite number (got inf) (model 'a')"}


def test_whole_numbers_stay_within_jsons_exact_range() -> None:
    # 2**53 - 1 is the largest; a token count past it would overflow a float once multiplied by a price.
    ModelRegistryService.from_dict({"models": [model("a", contextWindow=2**53 - 1)], "defaultModelId": "a"})
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(
            {"models": [model("a", maxTokens=10**400, contextWindow=2**53)], "defaultModelId": "a"}
        )
    assert {p.path: p.message for p in info.value.problems} == {
        "models[0].maxTokens": "must be less than or equal to 9007199254740991 (got a number of 401 digits) "
        "(model 'a')",
        "models[0].contextWindow": "must be less than or equal to 9007199254740991 (got 9007199254740992) (model 'a')",
    }
    with pytest.raises(RegistryError) as info:  # a dict built in code can hold what no file reader returns
        ModelRegistryService.from_dict({"models": [model("a", maxTokens=10**5000)], "defaultModelId": "a"})
    assert [p.message for p in info.value.problems] == [
        "must be less than or equal to 9007199254740991 (got a number of over 4,300 digits) (model 'a')"
    ]


# --- nesting: RecursionError from the YAML and TOML readers ------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        # PyYAML is stopped at the depth no registry needs (its scanner slows quadratically with nesting)
        (
            "deep.yaml",
            "defaultModelId: a\nmodels: " + "[" * 5000 + "]" * 5000,
            "invalid YAML: nested more than 64 levels deep (line 2, column 73)",  # at the 65th bracket
        ),
        (
            "deep_map.yaml",
            "models: " + "{a: " * 5000 + "1" + "}" * 5000,
            "invalid YAML: nested more than 64 levels deep (line 1, column 262)",  # the 64th mapping's key
        ),
        ("deep.toml", 'defaultModelId = "a"\nmodels = ' + "[" * 5000 + "]" * 5000, "invalid TOML: nested too deeply"),
        ("deep_table.toml", "x = " + "{a = " * 5000 + "1" + "}" * 5000, "invalid TOML: nested too deeply"),
        ("deep.json", '{"models": ' + "[" * 100000 + "]" * 100000 + "}", "invalid JSON: nested too deeply"),
    ],
)
def test_nesting_too_deep_for_the_reader_is_a_problem_not_a_recursion_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, message: str
) -> None:
    path = write(tmp_path, name, text)
    assert problems(path) == {"": message}
    assert message in validate(path, capsys)


NESTED = "[" * 70 + "1" + "]" * 70


@pytest.mark.parametrize(
    ("suffix", "text", "where"),
    [
        (
            ".json",
            '{"models": [{"id": "a", "options": {"x": ' + NESTED + '}}], "defaultModelId": "a"}',
            "models[0].options.x",
        ),
        (
            ".toml",
            'defaultModelId = "a"\n[[models]]\nid = "a"\noptions = {x = ' + NESTED + "}\n",
            "models[0].options.x",
        ),
        # YAML: 61 empty lists under the registry, models, the model and options are 65 levels and no scalar
        # below them, which the reader's own stop lets through (it stops at a 66th level) to this check
        (
            ".yaml",
            "models: [{id: a, options: {x: " + "[" * 61 + "]" * 61 + "}}]\ndefaultModelId: a\n",
            "models[0].options.x",
        ),
    ],
)
def test_nesting_a_reader_survives_is_still_refused_past_64_levels(
    tmp_path: Path, suffix: str, text: str, where: str
) -> None:
    # Anything that walks values recursively later (equality on reload, a request body's JSON) must not meet it.
    path = write(tmp_path, "nested" + suffix, text)
    assert problems(path) == {where: "nested more than 64 levels deep"}


def test_yaml_nesting_is_stopped_while_read(tmp_path: Path) -> None:
    path = write(tmp_path, "nested.yaml", "models:\n- {id: a, options: {x: " + NESTED + "}}\ndefaultModelId: a\n")
    # the 62nd bracket, five levels down: 23 characters of "- {id: a, options: {x: " before the first
    assert problems(path) == {"": "invalid YAML: nested more than 64 levels deep (line 2, column 85)"}


def test_the_depth_limit_leaves_room_for_any_real_options() -> None:
    nested: Any = 1
    for _ in range(58):  # the registry, models, the model and options are four levels: 62 in all
        nested = [nested]
    service = ModelRegistryService.from_dict({"models": [model("a", options={"x": nested})], "defaultModelId": "a"})
    assert service.get_model("a") is not None


# --- YAML keys that are not strings: TypeError in the did-you-mean code -------------------------


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("1: x\nmodels: []\ndefaultModelId: a\n", "1", "key '1' (line 1, column 1) is read as int, not text; quote it"),
        (
            "~: x\nmodels: []\ndefaultModelId: a\n",
            "~",
            "key '~' (line 1, column 1) is read as null, not text; quote it",
        ),
        (
            "models: []\ntrue: x\ndefaultModelId: a\n",
            "true",
            "key 'true' (line 2, column 1) is read as bool, not text; quote it",
        ),
        (
            "models:\n- {id: a, timeouts: {1.5: 2}}\ndefaultModelId: a\n",
            "models[0].timeouts.1.5",
            "key '1.5' (line 2, column 22) is read as float, not text; quote it (model 'a')",
        ),
    ],
)
def test_a_yaml_key_that_is_not_text_is_located_and_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, path: str, message: str
) -> None:
    file = write(tmp_path, "keys.yaml", text)
    found = problems(file)
    assert found[path] == message
    assert f"{file}: {path}: {message}" in validate(file, capsys)


def test_a_key_that_is_not_text_is_no_duplicate_of_the_text_key(tmp_path: Path) -> None:
    path = write(tmp_path, "k.yaml", '1: x\n"1": y\nmodels: []\ndefaultModelId: a\n')
    with pytest.raises(RegistryError) as info:
        load_registry([path])
    assert [(p.path, p.message) for p in info.value.problems if p.path == "1"] == [
        ("1", "key '1' (line 1, column 1) is read as int, not text; quote it"),
        ("1", "unknown key '1'"),  # the quoted one: text, so an unknown key, and no duplicate of the other
    ]


def test_a_dict_built_in_code_with_a_key_that_is_not_text() -> None:
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict({1: "x", "models": [model("a")], "defaultModelId": "a"})  # type: ignore[dict-item]
    assert [(p.path, p.message) for p in info.value.problems] == [("1", "key 1 is not a string")]


# --- YAML explicit tags PyYAML cannot build: ValueError, KeyError, AttributeError -----------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!int abc", "invalid YAML: 'abc' is not a valid int (line 1, column 17)"),
        ("!!float abc", "invalid YAML: 'abc' is not a valid float (line 1, column 17)"),
        ("!!bool maybe", "invalid YAML: 'maybe' is not a valid bool (line 1, column 17)"),
        ("!!timestamp abc", "invalid YAML: 'abc' is not a valid timestamp (line 1, column 17)"),
        ("!!timestamp 2024-02-30", "invalid YAML: '2024-02-30' is not a valid timestamp (line 1, column 17)"),
        ("!!map abc", "invalid YAML: expected a mapping (line 1, column 17)"),
    ],
)
def test_a_yaml_tag_its_value_does_not_fit_is_located(tmp_path: Path, value: str, message: str) -> None:
    path = write(tmp_path, "tag.yaml", f"defaultModelId: {value}\nmodels: []\n")
    assert problems(path) == {"": message}


def test_yaml_aliases_that_contain_themselves_or_multiply_the_file_are_refused(tmp_path: Path) -> None:
    loop = write(tmp_path, "loop.yaml", "models:\n- &m {id: a, options: {self: *m}}\ndefaultModelId: a\n")
    assert problems(loop) == {"models[0].options.self": "this value contains itself (a YAML alias inside its anchor)"}
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    bomb = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\nmodels: []\ndefaultModelId: a\n")
    assert problems(bomb) == {
        # written: 9 objects and lists, 11 scalars; expanded: 1 + (11 + 111 + ... + 11,111,111) + 1 + 1
        "": "aliases expand 20 values to 12,345,680 (more than 1,000,000): "
        "write the repeated parts out, or alias fewer of them"
    }


def test_shared_yaml_anchors_within_reason_still_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "anchors.yaml",
        "base: &base {provider: openai, maxTokens: 100, temperature: 0.5, contextWindow: 8000, costPer1kTokens: 0}\n"
        "models:\n- {<<: *base, id: a, modelName: a}\n- {<<: *base, id: b, modelName: b}\n"
        "defaultModelId: a\n",
    )
    assert problems(path) == {"base": "unknown key 'base'"}  # the anchor's own key is not a registry key


def test_a_json_string_that_is_not_text_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "\ud800" is valid JSON and a Python str, but not UTF-8: printing the model id would fail later.
    path = write(tmp_path, "s.json", json.dumps({"models": [model("\ud800")], "defaultModelId": "a"}))
    assert problems(path) == {"models[0].id": r"'\ud800' is not text: an unpaired \u escape"}
    validate(path, capsys)


# --- numbers must be finite -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "path", "message"),
    [
        (
            "cost.json",
            json.dumps({"models": [model("a")], "defaultModelId": "a"}).replace("0.001", "1e999"),
            "models[0].costPer1kTokens",
            "must be a finite number (got inf) (model 'a')",
        ),
        (
            "cost.yaml",
            "models:\n- " + YAML_MODEL.format(max_tokens=10, cost=".inf") + "\ndefaultModelId: a\n",
            "models[0].costPer1kTokens",
            "must be a finite number (got inf) (model 'a')",
        ),
        (
            "cost.toml",
            'defaultModelId = "a"\n[[models]]\n' + TOML_MODEL.format(max_tokens=10, cost="nan"),
            "models[0].costPer1kTokens",
            "must be a finite number (got nan) (model 'a')",
        ),
        (
            "deadline.json",
            json.dumps(
                {
                    "models": [model("a")],
                    "taskMappings": [{"taskName": "t", "primaryModelId": "a", "timeouts": {"deadline": 1}}],
                    "defaultModelId": "a",
                }
            ).replace('"deadline": 1', '"deadline": 1e999'),
            "taskMappings[0].timeouts.deadline",
            "must be a finite number (got inf) (task 't')",
        ),
        (
            "deadline.yaml",
            "models:\n- " + YAML_MODEL.format(max_tokens=10, cost=0) + "\n"
            "taskMappings:\n- {taskName: t, primaryModelId: a, timeouts: {deadline: .nan}}\ndefaultModelId: a\n",
            "taskMappings[0].timeouts.deadline",
            "must be a finite number (got nan) (task 't')",
        ),
        (
            "hedge.yaml",
            "models:\n- " + YAML_MODEL.format(max_tokens=10, cost=0) + "\n"
            "taskMappings:\n- {taskName: t, primaryModelId: a, hedge: {after: .inf}}\ndefaultModelId: a\n",
            "taskMappings[0].hedge.after",
            "must be a finite number of seconds > 0 or \"p95\" (got inf) (task 't')",
        ),
        (
            "options.yaml",
            (
                "models:\n- {id: a, provider: ollama, modelName: m, maxTokens: 10, temperature: 0.5, "
                "contextWindow: 16000, costPer1kTokens: 0, options: {num_ctx: [1, -.inf]}}\ndefaultModelId: a\n"
            ),
            "models[0].options",
            "num_ctx[1] must be a finite number (got -inf) (model 'a')",
        ),
    ],
)
def test_every_number_must_be_finite(  # noqa: PLR0917 - the fixtures and one parametrized case
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, path: str, message: str
) -> None:
    file = write(tmp_path, name, text)
    assert problems(file) == {path: message}
    assert f"{file}: {path}: {message}" in validate(file, capsys)


@pytest.mark.parametrize(
    ("where", "entry", "path"),
    [
        ("budget", {"budget": {"limit": float("inf")}}, "taskMappings[0].budget.limit"),
        (
            "budget window",
            {"budget": {"limit": 1, "windowSeconds": float("nan")}},
            "taskMappings[0].budget.windowSeconds",
        ),
        ("max cost", {"maxCostPerCall": float("inf")}, "taskMappings[0].maxCostPerCall"),
    ],
)
def test_task_numbers_must_be_finite(where: str, entry: dict[str, Any], path: str) -> None:
    data = {"models": [model("a")], "taskMappings": [{"taskName": "t", "primaryModelId": "a", **entry}]}
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict({**data, "defaultModelId": "a"})
    assert [p.path for p in info.value.problems] == [path], where
    assert "must be a finite number" in info.value.problems[0].message


def test_a_deployments_numbers_and_options_must_be_finite() -> None:
    deployments = [{"id": "one", "weight": float("inf")}, {"id": "two", "options": {"x": {"y": float("nan")}}}]
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict({"models": [model("a", deployments=deployments)], "defaultModelId": "a"})
    assert {p.path: p.message for p in info.value.problems} == {
        "models[0].deployments[0].weight": "must be a finite number (got inf) (model 'a')",
        "models[0].deployments[1].options": "x.y must be a finite number (got nan) (model 'a')",
    }


# --- did-you-mean at any size ---------------------------------------------------------------------


def many_typos(models: int, unknown: int) -> dict[str, Any]:
    """``models`` models and tasks whose fallbacks name ``unknown`` ids, each a typo of a real one."""
    entries = [model(f"model-{i:05d}") for i in range(models)]
    refs = [f"modle-{i:05d}" for i in range(unknown)]
    tasks = [
        {"taskName": f"task-{t}", "primaryModelId": "model-00000", "fallbackModelIds": refs[t : t + 30]}
        for t in range(0, unknown, 30)
    ]
    return {"models": entries, "taskMappings": tasks, "defaultModelId": "model-00000"}


def test_thousands_of_unknown_ids_among_thousands_of_models_validate_fast(tmp_path: Path) -> None:
    # Before: difflib over all 5,000 ids for each of 3,000 unknown references, minutes; now well under a second.
    path = write(tmp_path, "big.json", json.dumps(many_typos(5000, 3000)))
    started = time.perf_counter()
    errors = check_files([path]).errors
    assert time.perf_counter() - started < 5
    assert len(errors) == 3000
    assert errors[0] == Problem(
        str(path),
        "taskMappings[0].fallbackModelIds[0]",
        "unknown model 'modle-00000'; did you mean 'model-00000'? (task 'task-0')",
    )
    assert errors[19].message == "unknown model 'modle-00019'; did you mean 'model-00019'? (task 'task-0')"
    assert errors[20].message == (
        "unknown model 'modle-00020' (task 'task-0') "
        "(did-you-mean stops after 20 unknown ids: 2,980 unknown ids without one)"
    )
    assert errors[21].message == "unknown model 'modle-00021' (task 'task-0')"


def test_a_large_registry_still_suggests_by_either_end_of_the_id() -> None:
    data = many_typos(3000, 0)
    data["defaultModelId"] = "model-01234x"  # the first characters shared
    data["taskMappings"] = [{"taskName": "t", "primaryModelId": "xodel-02345"}]  # the last ones shared
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(data)
    assert {p.path: p.message for p in info.value.problems} == {
        "defaultModelId": "unknown model 'model-01234x'; did you mean 'model-01234'?",
        "taskMappings[0].primaryModelId": "unknown model 'xodel-02345'; did you mean 'model-02345'? (task 't')",
    }


def test_an_id_differing_only_in_case_or_separators_is_found_at_any_count() -> None:
    data = many_typos(30, 0)
    data["defaultModelId"] = "MODEL_00007"
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(data)
    assert [p.message for p in info.value.problems] == ["unknown model 'MODEL_00007'; did you mean 'model-00007'?"]


def test_the_same_unknown_id_twice_is_suggested_for_twice_and_counted_once() -> None:
    data = many_typos(30, 0)
    data["taskMappings"] = [
        {"taskName": f"t{i}", "primaryModelId": "model-00000", "fallbackModelIds": [f"modle-{i % 21:05d}"]}
        for i in range(42)
    ]
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(data)
    messages = [p.message for p in info.value.problems]
    assert sum("did you mean" in m for m in messages) == 40  # ids 0-19, each twice
    assert sum("without one" in m for m in messages) == 1
    assert "(did-you-mean stops after 20 unknown ids: 1 unknown id without one)" in messages[20]


def test_comparing_long_capability_lists_is_not_quadratic() -> None:
    caps = [f"cap-{i}" for i in range(60000)]  # compared pairwise: ~16 s; by set: milliseconds
    data = {
        "models": [model("a", capabilities=caps), model("b", capabilities=caps[::-1])],
        "taskMappings": [{"taskName": "t", "primaryModelId": "a", "fallbackModelIds": ["b"]}],
        "defaultModelId": "a",
    }
    started = time.perf_counter()
    ModelRegistryService.from_dict(data)
    assert time.perf_counter() - started < 5


# --- found by tests/unit/test_registry_fuzz.py ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"), [("comments.yaml", "# only a comment\n"), ("null.yaml", "~\n"), ("null.json", "null")]
)
def test_a_file_holding_null_is_no_registry(tmp_path: Path, name: str, text: str) -> None:
    assert problems(write(tmp_path, name, text)) == {"": "the registry must be an object with 'models'"}


def test_a_character_yaml_refuses_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "esc.yaml", "models: []\n\x1b")
    assert problems(path) == {
        "": "invalid YAML: unacceptable character #x001b: special characters are not allowed (line 2, column 1)"
    }


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_fallback_id_is_a_located_problem_not_a_key_error(blank: str) -> None:
    task = {"taskName": "t", "primaryModelId": "a", "fallbackModelIds": ["b", blank]}
    with pytest.raises(RegistryError) as info:
        ModelRegistryService.from_dict(
            {"models": [model("a"), model("b")], "taskMappings": [task], "defaultModelId": "a"}
        )
    assert {p.path: p.message for p in info.value.problems} == {
        "taskMappings[0].fallbackModelIds[1]": f"must have at least 1 character (got {blank!r}) (task 't')"
    }
