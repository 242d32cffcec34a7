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
    assert "taskmodels.attempt" not in before + after  # failed attempts are info
    assert "taskmodels.call" in after  # a failed call is a warning, shown by default
    assert "raised AllModelsFailedError" in after
