"""`taskmodels check`: keys, endpoints and one ping per endpoint, against the packaged fake server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmodels.cli import main
from taskmodels.fake_server import MODEL_LIST, FakeLLMServer
from tests.registry_entries import model

SENTINEL = "sk-check-sentinel-0123456789abcdef"
KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OLLAMA_HOST",
    "MY_TEAM_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TASKMODELS_") or name in KEY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def write_registry(tmp_path: Path, models: list[dict[str, Any]]) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": models, "defaultModelId": models[0]["id"]}))
    return path


def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def point_everything_at(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.setenv(name, SENTINEL)
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI__BASE_URL", server.openai_base_url)
    monkeypatch.setenv("TASKMODELS_PROVIDERS__ANTHROPIC__BASE_URL", server.base_url)
    monkeypatch.setenv("TASKMODELS_PROVIDERS__GEMINI__BASE_URL", server.base_url)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.base_url)
    monkeypatch.setenv("OLLAMA_HOST", server.base_url)


def every_provider(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [
        model("gpt", provider="openai", modelName="gpt-4o-mini"),
        model("gpt-big", provider="openai", modelName="gpt-4o"),  # same endpoint: one ping for both
        model("claude", provider="anthropic", modelName="claude-3-5-haiku-latest"),
        model("gemini", provider="gemini", modelName="gemini-1.5-flash"),
        model("azure", provider="azure-openai", modelName="gpt-4o", options={"deployment": "dep"}),
        model("llama", provider="ollama", modelName="llama3.1"),
        model("local", provider="openai-compatible", modelName="local", baseUrl=server.openai_base_url),
    ]


def test_missing_keys_are_named_by_variable_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = write_registry(
        tmp_path,
        [
            model("gpt", provider="openai"),
            model("claude", provider="anthropic"),
            model("team", provider="openai", apiKeyEnv="MY_TEAM_KEY"),
            model("local", provider="openai-compatible", baseUrl="http://127.0.0.1:9/v1"),
        ],
    )
    code, out = run("check", "--registry", str(registry), capsys=capsys)
    assert code == 1
    assert "3 problems:" in out
    assert "gpt: no API key: set OPENAI_API_KEY or TASKMODELS_PROVIDERS__OPENAI__API_KEY" in out
    assert "claude: no API key: set ANTHROPIC_API_KEY or TASKMODELS_PROVIDERS__ANTHROPIC__API_KEY" in out
    assert "team: no API key: set MY_TEAM_KEY" in out
    assert "local:" not in out.split("problems:")[1]  # a local server needs no key


def test_a_missing_endpoint_is_a_problem_that_names_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SENTINEL)
    registry = write_registry(tmp_path, [model("azure", provider="azure-openai")])
    code, out = run("check", "--registry", str(registry), capsys=capsys)
    assert code == 1
    assert "azure: no endpoint:" in out
    assert "AZURE_OPENAI_ENDPOINT" in out
    assert SENTINEL not in out


def test_everything_in_place_exits_0_without_sending_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer
) -> None:
    point_everything_at(server, monkeypatch)
    registry = write_registry(tmp_path, every_provider(server))
    code, out = run("check", "--registry", str(registry), capsys=capsys)
    assert code == 0, out
    assert "ready: keys and endpoints (add --ping to reach them) in place for 7 models" in out
    assert server.requests == []
    assert SENTINEL not in out


def test_ping_sends_one_cheap_request_per_distinct_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer
) -> None:
    point_everything_at(server, monkeypatch)
    registry = write_registry(tmp_path, every_provider(server))
    code, out = run("check", "--ping", "--json", "--registry", str(registry), capsys=capsys)
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    probes = {p["provider"]: (p["probe"], p["models"]) for p in report["pings"]}
    assert probes == {
        "openai": ("GET /v1/models", ["gpt", "gpt-big"]),
        "anthropic": ("GET /v1/models", ["claude"]),
        "gemini": ("GET /v1beta/models", ["gemini"]),
        "azure-openai": ("POST /openai/deployments/dep/chat/completions (1 token)", ["azure"]),
        "ollama": ("GET /api/tags", ["llama"]),
        "openai-compatible": ("GET /v1/models", ["local"]),
    }
    seen = sorted((r.protocol, r.path) for r in server.requests)
    assert len(seen) == 6  # one per endpoint, not one per model
    assert ("openai", "/openai/deployments/dep/chat/completions") in seen
    azure = next(r for r in server.requests if r.path.startswith("/openai/"))
    assert azure.body["max_completion_tokens"] == 1
    assert sum(r.had_credentials for r in server.requests) == 4  # openai, anthropic, gemini, azure: keyless others
    assert SENTINEL not in out


def test_ping_reports_a_refusing_endpoint_by_host_and_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = write_registry(
        tmp_path, [model("local", provider="openai-compatible", baseUrl=f"http://127.0.0.1:{port}/v1")]
    )
    code, out = run("check", "--ping", "--timeout", "2", "--registry", str(registry), capsys=capsys)
    assert code == 1
    assert f"could not connect to 127.0.0.1:{port} (ConnectError)" in out
    assert "1 problem:" in out


def test_ping_reports_the_status_an_endpoint_answers_without_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer
) -> None:
    point_everything_at(server, monkeypatch)
    server.fail(MODEL_LIST, status=401)
    registry = write_registry(tmp_path, [model("gpt", provider="openai")])
    code, out = run("check", "--ping", "--registry", str(registry), capsys=capsys)
    assert code == 1
    assert "FAILED" in out
    assert "answered 401: scripted failure 401" in out
    assert SENTINEL not in out


def test_check_without_a_registry_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run("check", capsys=capsys)
    assert code == 1
    assert str(tmp_path / "settings" / "modelRegistry.json") in out
    assert "taskmodels init" in out


def test_check_reports_invalid_settings_by_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMODELS_RESILIENCE__DEADLINE", "soon")
    code, out = run("check", "--json", capsys=capsys)
    assert code == 1
    report = json.loads(out)
    assert report["settings"]["ok"] is False
    assert "TASKMODELS_RESILIENCE__DEADLINE" in report["problems"][0]


def test_an_invalid_registry_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": [model("a")], "defaultModelId": "nope"}))
    code, out = run("check", "--registry", str(path), capsys=capsys)
    assert code == 1
    assert "registry:" in out
    assert "unknown model 'nope'" in out


def test_import_taskmodels_loads_neither_the_fake_server_nor_the_check() -> None:
    import subprocess
    import sys

    code = (
        "import sys, taskmodels, taskmodels.cli; print(sorted(m for m in sys.modules if m in {"
        "'taskmodels.fake_server', 'taskmodels.check', 'http.server'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_fake_server_module_runs_and_refuses_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    from taskmodels.fake_server import main as serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert serve(["--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


# --- pooled models: each deployment is a route of its own -------------------------------------------


def pool(*deployments: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return model("pool", provider="openai", deployments=list(deployments), **keys)


def write_chain(tmp_path: Path, models: list[dict[str, Any]]) -> Path:
    """The pool as a task's primary; the last model is the default."""
    path = tmp_path / "registry.json"
    task = {"taskName": "t", "primaryModelId": models[0]["id"]}
    path.write_text(json.dumps({"models": models, "taskMappings": [task], "defaultModelId": models[-1]["id"]}))
    return path


def test_a_pool_whose_deployments_have_no_key_is_not_ready(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model's own key is set, but no call uses it: each call builds a deployment, and both have none.
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    for name in ("POOL_KEY_A", "POOL_KEY_B"):
        monkeypatch.delenv(name, raising=False)
    deployments = [{"id": "a", "apiKeyEnv": "POOL_KEY_A"}, {"id": "b", "apiKeyEnv": "POOL_KEY_B"}]
    registry = write_chain(tmp_path, [pool(*deployments), model("backup")])
    code, out = run("check", "--registry", str(registry), capsys=capsys)
    assert code == 1, out
    assert "3 problems:" in out
    assert "  pool/a: no API key: set POOL_KEY_A" in out
    assert "  pool/b: no API key: set POOL_KEY_B" in out
    assert "  pool: none of its 2 deployments is usable: its calls go to the next model of their chain" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["MODEL", "DEPLOYMENT", "PROVIDER", "KEY", "KEY", "VARIABLE", "ENDPOINT"] in rows
    assert ["pool", "a", "openai", "missing", "POOL_KEY_A", "https://api.openai.com/v1"] in rows
    assert ["b", "openai", "missing", "POOL_KEY_B", "https://api.openai.com/v1"] in rows
    assert ["backup", "-", "openai", "set", "OPENAI_API_KEY", "https://api.openai.com/v1"] in rows
    assert SENTINEL not in out


def test_an_unusable_deployment_beside_a_usable_one_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOL_KEY_A", SENTINEL)
    monkeypatch.delenv("POOL_KEY_B", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    deployments = [{"id": "a", "apiKeyEnv": "POOL_KEY_A"}, {"id": "b", "apiKeyEnv": "POOL_KEY_B"}]
    registry = write_chain(tmp_path, [pool(*deployments), model("backup")])
    code, out = run("check", "--registry", str(registry), capsys=capsys)
    assert code == 0, out
    assert (
        "1 warning: deployments a call skips while another serves the model\n  pool/b: no API key: set POOL_KEY_B"
        in out
    )
    assert "ready: keys and endpoints (add --ping to reach them) in place for 2 models" in out
    code, out = run("check", "--json", "--registry", str(registry), capsys=capsys)
    report = json.loads(out)
    assert report["ok"] is True
    assert report["warnings"] == ["pool/b: no API key: set POOL_KEY_B"]
    assert report["registry"]["models"] == 2


def test_each_deployment_is_built_with_its_own_provider_endpoint_and_key_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOL_KEY_A", SENTINEL)
    monkeypatch.setenv("EU_KEY", SENTINEL)
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI__BASE_URL", "http://127.0.0.1:9/v1")
    deployments = [
        {"id": "a", "apiKeyEnv": "POOL_KEY_A"},  # the settings' endpoint
        {"id": "eu", "provider": "azure-openai", "apiKeyEnv": "EU_KEY", "baseUrl": "https://eu.example.com"},
        {"id": "azure", "provider": "azure-openai", "apiKeyEnv": "EU_KEY"},  # no endpoint: none in settings either
        {"id": "local", "provider": "ollama", "baseUrl": "http://127.0.0.1:11/"},  # needs no key
    ]
    registry = write_chain(tmp_path, [pool(*deployments)])
    code, out = run("check", "--json", "--registry", str(registry), capsys=capsys)
    assert code == 0, out  # three of four serve the pool
    routes = {m["deployment"]: m for m in json.loads(out)["models"]}
    assert {name: (m["provider"], m["key"], m["keyVariables"], m["endpoint"]) for name, m in routes.items()} == {
        "a": ("openai", "set", ["POOL_KEY_A"], "http://127.0.0.1:9/v1"),
        "eu": ("azure-openai", "set", ["EU_KEY"], "https://eu.example.com"),
        "azure": ("azure-openai", "-", [], None),
        "local": ("ollama", "not needed", ["TASKMODELS_PROVIDERS__OLLAMA__API_KEY"], "http://127.0.0.1:11"),
    }
    needs = "needs an endpoint: set AZURE_OPENAI_ENDPOINT or the model's baseUrl (https://<resource>.openai.azure.com)"
    assert routes["azure"]["problems"] == [f"no endpoint: model 'pool': provider 'azure-openai' {needs}"]
    assert SENTINEL not in out


def test_ping_reaches_each_deployment_once_per_endpoint_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer
) -> None:
    point_everything_at(server, monkeypatch)
    monkeypatch.setenv("POOL_KEY_A", SENTINEL)
    monkeypatch.setenv("POOL_KEY_B", SENTINEL)
    deployments: list[dict[str, Any]] = [
        {"id": "a", "apiKeyEnv": "POOL_KEY_A"},
        {"id": "b", "apiKeyEnv": "POOL_KEY_B"},  # the same endpoint with another key: a ping of its own
        {"id": "c", "apiKeyEnv": "POOL_KEY_A", "weight": 2},  # the same endpoint and key as a: shares its ping
        {"id": "gone", "apiKeyEnv": "POOL_KEY_GONE"},  # no key: reported, never pinged
    ]
    monkeypatch.delenv("POOL_KEY_GONE", raising=False)
    registry = write_chain(tmp_path, [pool(*deployments)])
    code, out = run("check", "--ping", "--json", "--registry", str(registry), capsys=capsys)
    assert code == 0, out
    report = json.loads(out)
    assert sorted(tuple(p["models"]) for p in report["pings"]) == [("pool/a", "pool/c"), ("pool/b",)]
    assert all(p["ok"] for p in report["pings"])
    assert len(server.requests) == 2
    assert report["warnings"] == ["pool/gone: no API key: set POOL_KEY_GONE"]


# --- variables that configure nothing ---------------------------------------------------------


def test_a_misspelled_variable_is_a_problem_naming_the_real_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer
) -> None:
    point_everything_at(server, monkeypatch)
    monkeypatch.setenv("TASKMODELS_PROVIDER__OPENAI__API_KEY", SENTINEL)
    monkeypatch.setenv("TASKMODELS_REGISTRY", "elsewhere.json")
    registry = write_registry(tmp_path, [model("gpt", provider="openai")])
    code, out = run("check", "--registry", str(registry), capsys=capsys)
    assert code == 1
    assert out.startswith("settings: 2 variables configuring nothing (see below)\n")
    assert out.endswith(
        "2 problems:\n"
        "  settings: TASKMODELS_PROVIDER__OPENAI__API_KEY configures nothing; "
        "did you mean TASKMODELS_PROVIDERS__OPENAI__API_KEY?\n"
        "  settings: TASKMODELS_REGISTRY configures nothing; did you mean TASKMODELS_REGISTRY_PATH?\n"
    )
    assert SENTINEL not in out
    code, out = run("check", "--json", "--registry", str(registry), capsys=capsys)
    report = json.loads(out)
    assert (code, report["ok"], report["settings"]["ok"]) == (1, False, False)
    assert report["settings"]["unconfigured"] == [
        "TASKMODELS_PROVIDER__OPENAI__API_KEY configures nothing; did you mean TASKMODELS_PROVIDERS__OPENAI__API_KEY?",
        "TASKMODELS_REGISTRY configures nothing; did you mean TASKMODELS_REGISTRY_PATH?",
    ]


def test_a_variable_the_registry_names_as_a_key_is_not_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer
) -> None:
    monkeypatch.setenv("TASKMODELS_TEAM_KEY", SENTINEL)
    monkeypatch.setenv("TASKMODELS_POOL_KEY", SENTINEL)
    entries = [
        model("team", provider="openai-compatible", baseUrl=server.openai_base_url, apiKeyEnv="TASKMODELS_TEAM_KEY"),
        model(
            "pool",
            provider="openai-compatible",
            baseUrl=server.openai_base_url,
            deployments=[{"id": "a", "apiKeyEnv": "TASKMODELS_POOL_KEY"}],
        ),
    ]
    code, out = run("check", "--registry", str(write_registry(tmp_path, entries)), capsys=capsys)
    assert code == 0, out
    assert out.startswith("settings: ok\n")


def test_other_commands_name_them_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMODELS_REGISTRY", "elsewhere.json")
    registry = write_registry(tmp_path, [model("gpt", provider="openai")])
    assert main(["plan", "--json", "--registry", str(registry)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["default"]["id"] == "gpt"  # stdout stays the JSON alone
    assert captured.err == (
        "taskmodels: warning: TASKMODELS_REGISTRY configures nothing; did you mean TASKMODELS_REGISTRY_PATH?\n"
    )
