"""The taskmodels command, run in-process through main([...])."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskmodels.cli import main
from tests.registry_entries import model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "settings" / "modelRegistry.json"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TASKMODELS_REGISTRY_PATH", "TASKMODELS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env, and the default path is relative to here


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_validate_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "valid: 11 models, 6 tasks, default model 'gpt-4o-mini', 0 warnings" in out


def test_validate_bad_file_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(
        tmp_path / "bad.json",
        {
            "models": [model("a", maxTokens=0), model("a", provider="nope"), model("b", contextWindow=2000)],
            "taskMappings": [{"taskName": "t", "primaryModelId": "gpt-9", "fallbackModelIds": ["a", "a"]}],
            "defaultModelId": "a",
            "defaultModel": "x",
        },
    )
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: 6 errors" in out
    for line in (
        f"{bad}: models[0].maxTokens: must be greater than 0 (got 0)",
        f"{bad}: models[1].id: duplicate model id 'a' (also at models[0])",
        f"{bad}: models[1].provider: no provider implementation named 'nope'",
        f"{bad}: taskMappings[0].primaryModelId: unknown model 'gpt-9'",
        f"{bad}: taskMappings[0].fallbackModelIds[1]: model 'a' appears twice in the chain",
        f"{bad}: defaultModel: unknown key 'defaultModel'; did you mean 'defaultModelId'?",
    ):
        assert line in out


def test_validate_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "w.json",
        {
            "models": [model("a", contextWindow=9000), model("b", contextWindow=2000)],
            "taskMappings": [{"taskName": "t", "primaryModelId": "a", "fallbackModelIds": ["b"]}],
            "defaultModelId": "a",
        },
    )
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {path}: taskMappings[0].fallbackModelIds[0]: fallback 'b' has a smaller context window" in out
    assert "1 warning" in out


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.json", {"models": [model("a", temperature=7)], "defaultModelId": "a"})
    assert main(["validate", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False
    assert data["errors"] == [
        {
            "source": str(bad),
            "path": "models[0].temperature",
            "message": "must be less than or equal to 2 (got 7) (model 'a')",
            "severity": "error",
        }
    ]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.json")]) == 2
    assert "registry file not found" in capsys.readouterr().err


def test_missing_overlay_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--registry", str(EXAMPLE), "--env", "staging", "plan"]) == 2
    err = capsys.readouterr().err
    assert "overlay for environment 'staging' not found" in err
    assert "modelRegistry.staging.json" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main(["explain", "t", "--prompt-tokens", "-3"]) == 2
    assert "must not be negative" in capsys.readouterr().err


def test_registry_path_from_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY_PATH", str(EXAMPLE))
    assert main(["validate"]) == 0
    assert str(EXAMPLE) in capsys.readouterr().out


def test_default_registry_path_is_settings_model_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "settings").mkdir()
    write(tmp_path / "settings" / "modelRegistry.json", {"models": [model("only")], "defaultModelId": "only"})
    assert main(["plan"]) == 0
    assert "default model (any other task): only" in capsys.readouterr().out


def test_plan_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--registry", str(EXAMPLE), "plan"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("TASK"))
    assert header.split() == [
        "TASK",
        "ROLE",
        "MODEL",
        "PROVIDER",
        "MODEL",
        "NAME",
        "CONTEXT",
        "$/1K",
        "IN",
        "$/1K",
        "OUT",
    ]
    row = next(line for line in lines if line.startswith("persona-generation"))
    assert row.split()[:4] == ["persona-generation", "primary", "gpt-4o", "openai"]
    assert "128,000" in row
    assert "0.0025" in row
    assert any("fallback 1" in line and "claude-3-5-sonnet" in line and "anthropic" in line for line in lines)
    assert "default model (any other task): gpt-4o-mini" in out
    # columns line up: every table row starts the MODEL column at the same offset
    col = header.index("MODEL")
    table = [line for line in lines if "primary" in line or "fallback" in line]
    assert all(line[col - 2 : col] == "  " and line[col] != " " for line in table)


def test_plan_with_overlay(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--registry", str(EXAMPLE), "--env", "production", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    classification = next(t for t in data["tasks"] if t["task"] == "classification")
    assert [m["id"] for m in classification["chain"]] == ["azure-gpt-4o-mini", "gpt-4o-mini", "claude-3-5-haiku-batch"]
    assert data["default"]["id"] == "gpt-4o-mini"
    assert len(data["sources"]) == 2


def test_plan_on_invalid_registry_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.json", {"models": [model("a")], "defaultModelId": "b"})
    assert main(["--registry", str(bad), "plan"]) == 1
    assert "defaultModelId: unknown model 'b'" in capsys.readouterr().err


def test_explain_shows_chain_and_skips(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--registry", str(EXAMPLE), "explain", "classification", "--prompt-tokens", "7500", "--require", "tools"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "llama3.1-local  lacks capability tools" in out
    assert "1  llama3.1-ollama" in out
    assert "capabilities json, tools" in out


def test_explain_context_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--registry", str(EXAMPLE), "explain", "classification", "--prompt-tokens", "7500"]) == 0
    assert (
        "context window 8192 < 8524 tokens needed (a prompt of at least 7500 + 1024 output)" in capsys.readouterr().out
    )


def test_explain_json_and_nothing_eligible(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--json", "--registry", str(EXAMPLE), "explain", "embedding", "--require", "audio"])
    assert code == 1
    data = json.loads(capsys.readouterr().out)
    assert data["models"] == []
    assert {s["id"] for s in data["skipped"]} == {"text-embedding-3-small", "nomic-embed-ollama", "gpt-4o-mini"}
    assert data["requiredCapabilities"] == ["audio", "embedding"]


def test_explain_unknown_task_uses_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--registry", str(EXAMPLE), "explain", "poetry", "--max-tokens", "100"]) == 0
    out = capsys.readouterr().out
    assert "not in the registry: the default model serves it" in out
    assert "gpt-4o-mini" in out


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["required"] == ["models", "defaultModelId"]
    assert "taskMappings" in schema["properties"]


def test_output_never_holds_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value-123456")
    for argv in (["validate", str(EXAMPLE)], ["--registry", str(EXAMPLE), "plan", "--json"]):
        main(argv)
        captured = capsys.readouterr()
        assert "sk-test-secret" not in captured.out + captured.err


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`taskmodels plan | head -1` must not end in a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "from taskmodels.cli import main; raise SystemExit(main(['plan']))"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the CLI writes its first line
    _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err
    assert proc.returncode == 0


# --- a new user's first commands -----------------------------------------------------------


def test_init_writes_a_starter_that_plans_and_validates_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'settings' / 'modelRegistry.json'}" in out
    assert f"wrote {tmp_path / '.env.example'}" in out
    assert "OPENAI_API_KEY=" in (tmp_path / ".env.example").read_text()
    assert main(["validate"]) == 0
    assert "3 models, 3 tasks, default model 'gpt-4o-mini', 0 warnings" in capsys.readouterr().out
    assert main(["plan"]) == 0
    assert "clustering" in capsys.readouterr().out


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / ".env.example").write_text("mine")
    assert main(["init", "project"]) == 1
    err = capsys.readouterr().err
    assert "not overwriting" in err
    assert str(tmp_path / "project" / ".env.example") in err
    assert (tmp_path / "project" / ".env.example").read_text() == "mine"
    assert not (tmp_path / "project" / "settings").exists()


def test_init_into_a_directory_says_to_cd_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "new-app"]) == 0
    assert "  cd new-app" in capsys.readouterr().out
    assert (tmp_path / "new-app" / "settings" / "modelRegistry.json").is_file()


@pytest.mark.parametrize("command", [["plan"], ["validate"], ["explain", "t"]])
def test_no_registry_says_where_it_looked_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"registry file not found: {tmp_path / 'settings' / 'modelRegistry.json'}" in err
    assert "--registry PATH" in err
    assert "TASKMODELS_REGISTRY_PATH" in err
    assert "taskmodels init" in err


def test_container_without_a_registry_says_where_it_looked(tmp_path: Path) -> None:
    from taskmodels.containers import Container
    from taskmodels.errors import RegistryError

    with pytest.raises(RegistryError) as caught:
        Container().model_service()
    message = str(caught.value)
    assert str(tmp_path / "settings" / "modelRegistry.json") in message
    assert "TASKMODELS_REGISTRY_PATH" in message
    assert "taskmodels init" in message


def test_help_shows_the_default_registry_path_and_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "TASKMODELS_REGISTRY_PATH" in out
    assert f"settings/modelRegistry.json (here: {tmp_path / 'settings' / 'modelRegistry.json'})" in out
    for command in ("init", "check", "fake-server"):
        assert command in out


def test_validate_a_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "settings").mkdir()
    write(tmp_path / "settings" / "modelRegistry.json", {"models": [model("only")], "defaultModelId": "only"})
    assert main(["validate", "settings"]) == 2
    err = capsys.readouterr().err
    assert "is a directory, not a registry file" in err
    assert f"did you mean {tmp_path / 'settings' / 'modelRegistry.json'}?" in err


def test_counts_are_singular_for_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = {
        "models": [model("only")],
        "taskMappings": [{"taskName": "t", "primaryModelId": "only", "fallbackModelIds": []}],
        "defaultModelId": "only",
    }
    assert main(["validate", str(write(tmp_path / "r.json", registry))]) == 0
    out = capsys.readouterr().out
    assert "1 model, 1 task, default model 'only', 0 warnings" in out


def test_plan_and_explain_agree_on_the_default_at_the_end_of_a_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = write(
        tmp_path / "r.json",
        {
            "models": [
                model("seer", capabilities=["chat", "vision"]),
                model("backup", capabilities=["chat", "vision"]),
                model("plain", capabilities=["chat"]),
            ],
            "taskMappings": [
                {
                    "taskName": "look",
                    "primaryModelId": "seer",
                    "fallbackModelIds": ["backup"],
                    "requiredCapabilities": ["vision"],
                },
                {"taskName": "talk", "primaryModelId": "seer", "fallbackModelIds": []},
            ],
            "defaultModelId": "plain",
        },
    )
    assert main(["--registry", str(registry), "explain", "look", "--json"]) == 0
    explained = [m["id"] for m in json.loads(capsys.readouterr().out)["models"]]
    assert main(["--registry", str(registry), "plan", "--json"]) == 0
    planned = {t["task"]: t for t in json.loads(capsys.readouterr().out)["tasks"]}
    assert [m["id"] for m in planned["look"]["chain"]] == explained == ["seer", "backup"]
    assert planned["look"]["skipped"] == [{"id": "plain", "reason": "lacks capability vision"}]
    assert [(m["id"], m["role"]) for m in planned["talk"]["chain"]] == [("seer", "primary"), ("plain", "default")]

    assert main(["--registry", str(registry), "plan"]) == 0
    table = capsys.readouterr().out
    chain_rows = table.split("\n\n")[1]
    assert "plain" not in chain_rows.split("talk")[0]  # not in look's chain
    assert "look  plain    lacks capability vision" in table


# --- plan: each deployment as a call builds it ------------------------------------------------------


def pooled_registry(tmp_path: Path) -> Path:
    deployments = [
        {"id": "a", "apiKeyEnv": "PLAN_KEY_A"},
        {"id": "b", "apiKeyEnv": "PLAN_KEY_B", "baseUrl": "http://10.0.0.2:8000/v1"},
    ]
    return write(
        tmp_path / "pooled.json",
        {
            "models": [model("pool", deployments=deployments), model("backup")],
            "taskMappings": [{"taskName": "t", "primaryModelId": "pool"}],
            "defaultModelId": "backup",
        },
    )


def test_plan_shows_the_endpoint_the_settings_give_a_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI__BASE_URL", "http://10.0.0.1:8000/v1/")
    monkeypatch.setenv("PLAN_KEY_A", "sk-plan-a")
    monkeypatch.setenv("PLAN_KEY_B", "sk-plan-b")
    path = pooled_registry(tmp_path)
    assert main(["plan", "--registry", str(path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert ["pool", "weighted", "a", "openai", "1", "-", "-", "set", "PLAN_KEY_A", "http://10.0.0.1:8000/v1"] in rows
    assert ["b", "openai", "1", "-", "-", "set", "PLAN_KEY_B", "http://10.0.0.2:8000/v1"] in rows
    assert "(provider default)" not in out
    assert "sk-plan" not in out
    assert main(["plan", "--json", "--registry", str(path)]) == 0
    chain = json.loads(capsys.readouterr().out)["tasks"][0]["chain"]
    first = chain[0]["deployments"][0]
    assert (first["baseUrl"], first["endpoint"], first["keyVariables"]) == (
        None,
        "http://10.0.0.1:8000/v1",
        ["PLAN_KEY_A"],
    )


def test_plan_names_the_deployments_a_call_would_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKMODELS_PROVIDERS__OPENAI__BASE_URL", raising=False)
    monkeypatch.delenv("PLAN_KEY_A", raising=False)
    monkeypatch.setenv("PLAN_KEY_B", "sk-plan-b")
    assert main(["plan", "--registry", str(pooled_registry(tmp_path))]) == 0  # a view; `check` is the readiness test
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert [
        "pool",
        "weighted",
        "a",
        "openai",
        "1",
        "-",
        "-",
        "missing",
        "PLAN_KEY_A",
        "https://api.openai.com/v1",
    ] in rows
    assert "deployments a call skips as configured here (taskmodels check says more):\n" in out
    assert "  pool/a: no API key: set PLAN_KEY_A\n" in out
    assert "pool/b:" not in out


def test_plan_builds_deployments_inside_a_running_event_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook calls main() from inside its loop: building the deployments must not need one of its own.
    import asyncio

    monkeypatch.setenv("PLAN_KEY_A", "sk-plan-a")
    path = pooled_registry(tmp_path)

    async def plan() -> int:
        return main(["plan", "--registry", str(path)])

    assert asyncio.run(plan()) == 0
    assert "PLAN_KEY_A" in capsys.readouterr().out


def test_version_names_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    import taskmodels

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"taskmodels {taskmodels.__version__}\n"


def test_python_dash_m_taskmodels_is_the_command(tmp_path: Path) -> None:
    """Where the venv's scripts are not on PATH, `python -m taskmodels` runs the same command."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "taskmodels", "init"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "settings" / "modelRegistry.json").is_file()
    usage = subprocess.run(
        [sys.executable, "-m", "taskmodels", "no-such-command"], capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: taskmodels")


def test_init_example_writes_the_registry_the_reference_docs_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--example", "app"]) == 0
    out = capsys.readouterr().out
    for name in ("settings/modelRegistry.json", "settings/modelRegistry.production.json", ".env.example"):
        assert f"wrote {tmp_path / 'app' / name}" in out
    assert (tmp_path / "app" / "settings" / "modelRegistry.json").read_text() == EXAMPLE.read_text()
    assert main(["validate", "app/settings/modelRegistry.json", "--env", "production"]) == 0
    assert "11 models, 6 tasks" not in capsys.readouterr().out  # the overlay adds a model
    assert main(["validate", "app/settings/modelRegistry.json"]) == 0
    assert "valid: 11 models, 6 tasks" in capsys.readouterr().out


_WITHOUT_SERVE = """
import builtins, sys
real = builtins.__import__
def without_serve(name, *args, **kwargs):
    if name.split(".")[0] in ("prometheus_client", "uvicorn", "uvloop", "httptools"):
        raise ModuleNotFoundError(f"No module named {name!r}")
    return real(name, *args, **kwargs)
builtins.__import__ = without_serve
from taskmodels.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [["--help"], ["init"], ["keys", "add", "ops", "--file", "keys.json"]])
def test_the_command_works_without_the_serve_extra(tmp_path: Path, args: list[str]) -> None:
    """`pip install taskmodels` has no prometheus-client or uvicorn: every command but `serve` works without them
    (building the parser once imported the gateway's app, and its metrics, for `keys`)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SERVE, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "ModuleNotFoundError" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
