"""The example scripts run for real, as a user would start them, against a fake server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmodels.fake_server import FakeLLMServer

EXAMPLES = Path(__file__).resolve().parent

REGISTRY: dict[str, Any] = {
    "models": [
        {
            "id": "local-small",
            "provider": "openai-compatible",
            "modelName": "llama-3.2-1b",
            "maxTokens": 256,
            "temperature": 0.2,
            "contextWindow": 8192,
            "costPer1kTokens": 0.0,
            "capabilities": ["chat"],
        },
        {
            "id": "gpt-4o-mini",
            "provider": "openai",
            "modelName": "gpt-4o-mini",
            "maxTokens": 512,
            "temperature": 0.3,
            "contextWindow": 128000,
            "costPer1kTokens": 0.0006,
            "capabilities": ["chat", "json"],
        },
    ],
    "taskMappings": [
        {
            "taskName": "clustering",
            "primaryModelId": "local-small",
            "fallbackModelIds": ["gpt-4o-mini"],
            "description": "Group personas by similarity",
        }
    ],
    "defaultModelId": "gpt-4o-mini",
}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "modelRegistry.json"
    path.write_text(json.dumps(REGISTRY))
    return path


def run_example(script: str, registry: Path, server: FakeLLMServer, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMODELS_")}
    env["OPENAI_API_KEY"] = "sk-example-test-not-a-real-key"
    command = [sys.executable, str(EXAMPLES / script), "--registry", str(registry)]
    return subprocess.run(
        [*command, "--base-url", server.openai_base_url, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=registry.parent,  # no .env or settings/ of the repo leaks in
        check=False,
    )


def test_basic_usage_answers_through_the_tasks_primary(registry: Path, server: FakeLLMServer) -> None:
    done = run_example("basic_usage.py", registry, server)
    assert done.returncode == 0, done.stderr
    assert "[llama-3.2-1b] answer to: Cluster these personas" in done.stdout
    assert "served by local-small (openai-compatible" in done.stdout
    (seen,) = server.requests
    roles = [m["role"] for m in seen.body["messages"]]
    assert roles == ["system", "user"]
    assert seen.body["max_tokens"] == 256  # the registry entry's default


def test_basic_usage_falls_back_when_the_primary_fails(registry: Path, server: FakeLLMServer) -> None:
    server.fail("llama-3.2-1b", status=503, times=5)
    done = run_example("basic_usage.py", registry, server)
    assert done.returncode == 0, done.stderr
    assert "served by gpt-4o-mini (openai" in done.stdout
    assert "local-small try 1: error ProviderUnavailableError" in done.stdout
    assert server.models_seen()[-1] == "gpt-4o-mini"
    assert server.requests[-1].had_credentials  # the OpenAI key travelled, in a header


def test_advanced_usage_calls_the_selected_models_provider_directly(registry: Path, server: FakeLLMServer) -> None:
    done = run_example("advanced_usage.py", registry, server)
    assert done.returncode == 0, done.stderr
    assert "[llama-3.2-1b] answer to: Cluster these personas" in done.stdout
    assert "model local-small via OpenAICompatibleProvider" in done.stdout
    assert server.models_seen() == ["llama-3.2-1b"]


def test_advanced_usage_has_no_fallback(registry: Path, server: FakeLLMServer) -> None:
    server.fail("llama-3.2-1b", status=503)
    done = run_example("advanced_usage.py", registry, server)
    assert done.returncode != 0
    assert "ProviderUnavailableError" in done.stderr
    assert server.models_seen() == ["llama-3.2-1b"]


def test_an_unmapped_task_is_served_by_the_default_model(registry: Path, server: FakeLLMServer) -> None:
    done = run_example("basic_usage.py", registry, server, "--task", "persona-critique")
    assert done.returncode == 0, done.stderr
    assert "served by gpt-4o-mini" in done.stdout
