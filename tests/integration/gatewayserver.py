"""A real ``taskmodels serve`` process for integration tests: uvicorn on a free port on 127.0.0.1, a registry file
the test wrote, and the environment it gives; ready once ``GET /healthz`` answers.

::

    with GatewayProcess.start(registry_path, env={"TASKMODELS_STATE__BACKEND": "redis", ...}) as gateway:
        gateway.base_url       # http://127.0.0.1:<port>/v1, for openai.OpenAI(base_url=...)
        gateway.terminate()    # SIGTERM: a graceful shutdown; gateway.wait() for its exit code

Started as ``python -m taskmodels.cli serve`` (the command users run); its output goes to a log file that a
failing test shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx2

from tests.integration.redisserver import free_port

if TYPE_CHECKING:
    from tests.integration.faultserver import FaultServer

__all__ = ["GatewayProcess", "ThreadedFaultServer"]

_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_OPENAI_API_KEY")


class GatewayProcess:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        registry: Path,
        *,
        env: Mapping[str, str] | None = None,
        workers: int = 1,
        timeout: float = 30.0,
        log_path: Path | None = None,
        launcher: str = "taskmodels.cli",
        args: Sequence[str] = (),
    ) -> Self:
        """``launcher``: the module run as ``python -m`` with ``serve``'s arguments (a test's own, wrapping the
        command); ``args``: more of them (``--unauthenticated``)."""
        port = free_port()
        log_path = log_path or registry.with_name(f"gateway-{port}.log")
        # Nothing of the test process's own taskmodels settings or provider keys: only what the test gives, and the
        # transport CI chose for this run (.ci/run runs the integration suite on both).
        base = {k: v for k, v in os.environ.items() if not k.startswith("TASKMODELS_") and k not in _KEYS}
        if "TASKMODELS_HTTP__TRANSPORT" in os.environ:
            base["TASKMODELS_HTTP__TRANSPORT"] = os.environ["TASKMODELS_HTTP__TRANSPORT"]
        base["NO_PROXY"] = "127.0.0.1,localhost"
        command = [sys.executable, "-m", launcher, "serve", "--registry", str(registry), "--port", str(port)]
        command += ["--workers", str(workers), *args]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**base, **(env or {})}
            )
        gateway = cls(process, port, log_path)
        try:
            gateway._wait_ready(timeout)
        except BaseException:
            gateway.stop()
            raise
        return gateway

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx2.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"taskmodels serve exited with {self.process.returncode}:\n{self.log()}")
                with contextlib.suppress(httpx2.TransportError):
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                time.sleep(0.05)  # poll interval, bounded by the deadline
        raise RuntimeError(f"taskmodels serve was not ready in {timeout}s:\n{self.log()}")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ThreadedFaultServer:
    """The suite's fault server (``faultserver.py``) on an event loop of its own thread, so that synchronous tests
    (and a gateway fixture shared by a module) can use it: script it as usual, it answers meanwhile."""

    def __init__(self) -> None:
        from tests.integration.faultserver import FaultServer

        self.server = FaultServer(hold_limit=20.0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-server", daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
