"""A library must not print on every call when the application never configured logging."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio
from taskmodels.testing import FakeBackend, fake_model, fake_registry, make_test_service, server_error

async def main():
    backend = FakeBackend()
    backend.always("b", server_error(503))
    service = make_test_service(fake_registry(fake_model("a"), fake_model("b")), backend=backend)
    await service.complete_with_task_model("t", prompt="hi")          # succeeds: nothing printed
    print("--- failures below")
    failing = make_test_service(fake_registry(fake_model("b")), backend=backend)
    try:
        await failing.complete_with_task_model("t", prompt="x")
    except Exception as exc:
        print("raised", type(exc).__name__)

asyncio.run(main())
"""


def test_successful_calls_print_nothing_and_failures_warn_when_structlog_is_unconfigured() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    before, _, after = out.stdout.partition("--- failures below")
    assert before.strip() == ""
    assert "taskmodels.call.attempt" not in before + after  # failed attempts are info
    assert "taskmodels.call.finished" in after  # a failed call is a warning, shown by default
    assert "raised AllModelsFailedError" in after


RELOAD_SCRIPT = """
import json, os, sys, tempfile
from taskmodels.registry.service import ModelRegistryService

def registry(model_name):
    model = {"id": "m", "provider": "openai", "modelName": model_name, "maxTokens": 10, "temperature": 0,
             "contextWindow": 100, "costPer1kTokens": 0, "capabilities": ["chat"]}
    return {"models": [model], "taskMappings": [], "defaultModelId": "m"}

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "modelRegistry.json")
    with open(path, "w") as f:
        json.dump(registry("a"), f)
    service = ModelRegistryService.from_path(path, provider_names=frozenset({"openai"}))
    with open(path, "w") as f:
        json.dump(registry("a-longer-name"), f)
    print("reloaded", service.reload_if_changed())
"""


def test_a_registry_reload_prints_nothing_when_structlog_is_unconfigured() -> None:
    out = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "reloaded True"
    assert out.stderr == ""
