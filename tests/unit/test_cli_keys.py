"""``taskmodels keys``: a key printed once and only its hash written, listed without it, disabled and enabled."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskmodels.cli import main
from taskmodels.gateway.keys import KeyBudget, key_digest
from taskmodels.gateway.keys_command import KEYS_FILE_VARIABLE, parse_budget, parse_expiry
from taskmodels.gateway.keysfile import load_keys
from taskmodels.testing import fake_model, fake_registry


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_prints_the_key_once_and_writes_only_its_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    code, out, err = run(
        capsys, "keys", "add", "search", "--file", str(path), "--tasks", "t, u", "--rpm", "60", "--tpm", "9000",
        "--budget", "5/day", "--expires", "2099-01-31", "--description", "the search app",
    )  # fmt: skip
    assert code == 0
    key = out.strip()
    assert out == key + "\n"  # alone on stdout: KEY=$(taskmodels keys add ...) works
    assert key.startswith("tm-")
    assert "shown above this once" in err
    assert key not in err
    assert key not in path.read_text()
    (entry,) = json.loads(path.read_text())["keys"]
    assert entry["sha256"] == key_digest(key)
    assert (entry["name"], entry["tasks"], entry["rpm"], entry["tpm"]) == ("search", ["t", "u"], 60, 9000)
    assert entry["budget"] == {"limit": 5, "windowSeconds": 86400}
    assert entry["expires"] == "2099-01-31T00:00:00Z"
    assert entry["description"] == "the search app"
    assert load_keys(path).authenticate(key, 0.0).name == "search"

    code, out, err = run(capsys, "keys", "list", "--file", str(path))
    assert code == 0
    assert key not in out + err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "TASKS", "RPM", "TPM", "BUDGET", "EXPIRES", "SHA-256"]
    assert lines[1].split() == [
        "search", "active", "t,u", "60", "9000", "$5/day", "2099-01-31T00:00:00Z", key_digest(key)[:12],
    ]  # fmt: skip


def test_add_with_json_and_the_file_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.json"
    monkeypatch.setenv(KEYS_FILE_VARIABLE, str(path))
    code, out, _ = run(capsys, "keys", "add", "a", "--json")
    assert code == 0
    made = json.loads(out)
    assert made["name"] == "a"
    assert made["file"] == str(path)
    assert load_keys(path).authenticate(made["key"], 0.0).name == "a"
    code, out, _ = run(capsys, "keys", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert made["key"] not in out
    assert [(k["name"], k["state"], k["tasks"]) for k in listed["keys"]] == [("a", "active", "*")]


def test_a_task_the_registry_does_not_map_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "modelRegistry.json"
    registry.write_text(json.dumps(fake_registry(fake_model("m"), task="summarize")))
    code, _, err = run(
        capsys, "keys", "add", "a", "--registry", str(registry), "--file", str(tmp_path / "k.json"),
        "--tasks", "summarise",
    )  # fmt: skip
    assert code == 0
    assert "warning: the registry maps no task 'summarise': the key cannot call it; did you mean 'summarize'?" in err


def test_disable_and_enable_change_only_that_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "keys.json")
    run(capsys, "keys", "add", "a", "--file", path)
    run(capsys, "keys", "add", "b", "--file", path)
    code, out, _ = run(capsys, "keys", "disable", "a", "--file", path)
    assert (code, out) == (0, f"disabled key 'a' in {path}\n")
    assert [(k.name, k.disabled) for k in load_keys(path).keys] == [("a", True), ("b", False)]
    assert run(capsys, "keys", "list", "--file", path)[1].splitlines()[1].split()[:2] == ["a", "disabled"]
    code, out, _ = run(capsys, "keys", "enable", "a", "--file", path)
    assert code == 0
    assert [(k.name, k.disabled) for k in load_keys(path).keys] == [("a", False), ("b", False)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "list"], f"no keys file: pass --file PATH or set {KEYS_FILE_VARIABLE}=PATH"),
        (["keys", "add", "b", "--file", "{f}", "--tasks", "x,,y"], "an empty task name"),
        (["keys", "list", "--file", "{f}.missing"], "keys file not found"),
    ],
)
def test_usage_problems_exit_2_naming_what_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.delenv(KEYS_FILE_VARIABLE, raising=False)
    path = str(tmp_path / "keys.json")
    run(capsys, "keys", "add", "a", "--file", path)
    before = Path(path).read_bytes()
    code, _, err = run(capsys, *(a.replace("{f}", path) for a in argv))
    assert code == 2
    assert message.replace("{f}", path) in err
    assert Path(path).read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "add", "a b", "--file", "{f}"], "keys[1].name: a key's name is 1 to 64 letters, digits"),
        (["keys", "add", "a", "--file", "{f}"], "keys[1].name: a key named 'a' exists already (at keys[0])"),
        (["keys", "disable", "aa", "--file", "{f}"], "keys: no key named 'aa'; did you mean 'a'?"),
    ],
)
def test_a_change_the_file_would_refuse_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    path = str(tmp_path / "keys.json")
    run(capsys, "keys", "add", "a", "--file", path)
    before = Path(path).read_bytes()
    code, _, err = run(capsys, *(a.replace("{f}", path) for a in argv))
    assert code == 1
    assert message in err
    assert Path(path).read_bytes() == before


def test_an_invalid_keys_file_exits_1_with_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [{"name": "a", "sha256": "nope", "rpm": -1}]}))
    for argv in (["list"], ["add", "b"], ["disable", "a"]):
        code, _, err = run(capsys, "keys", *argv, "--file", str(path))
        assert code == 1
        assert "keys[0].sha256:" in err
        assert "keys[0].rpm: must be greater than 0" in err


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("5/day", 5.0, 86400.0),
        ("$0.50/1h", 0.5, 3600.0),
        ("100/30d", 100.0, 2_592_000.0),
        ("2/3600", 2.0, 3600.0),
        ("1.5/90 minutes", 1.5, 5400.0),
        ("7/week", 7.0, 604800.0),
        ("5", 5.0, 86400.0),
    ],
)
def test_a_budget_is_usd_per_window(text: str, limit: float, window: float) -> None:
    assert parse_budget(text) == KeyBudget.model_validate({"limit": limit, "windowSeconds": window})


@pytest.mark.parametrize("text", ["five/day", "0/day", "-1/day", "inf/day", "5/fortnight", "5/0s", "5/ms", "nan"])
def test_a_budget_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_budget(text)


NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", datetime(2030, 8, 30, 12, 0, 0, tzinfo=UTC)),
        ("12h", datetime(2030, 6, 2, 0, 0, 0, tzinfo=UTC)),
        ("2031-01-31", datetime(2031, 1, 31, tzinfo=UTC)),
        ("2031-01-31T12:00:00Z", datetime(2031, 1, 31, 12, tzinfo=UTC)),
        ("2031-01-31T14:00:00+02:00", datetime(2031, 1, 31, 12, tzinfo=UTC)),
    ],
)
def test_an_expiry_is_a_date_a_time_or_a_span_from_now(text: str, expected: datetime) -> None:
    assert parse_expiry(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["2029-01-01", "tomorrow", "2031-13-01", "90x"])
def test_an_expiry_in_the_past_or_unreadable_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_expiry(text, now=NOW)


def test_schema_prints_the_keys_file_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keys", "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "taskmodels gateway keys"
    assert schema["$defs"]["VirtualKey"]["required"] == ["name", "sha256"]
