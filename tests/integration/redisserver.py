"""A real ``redis-server`` for integration tests: 127.0.0.1, a free port, no persistence, a temp dir.

::

    with RedisServer.launch() as server:      # waits for PING, bounded
        server.url                            # redis://127.0.0.1:<port>/0
        server.kill()                         # SIGKILL: an outage, as a crashed server looks
        server.start()                        # again, on the same port, empty (nothing is saved)

The readiness check speaks RESP over a plain socket, so this module needs
nothing but the standard library and the ``redis-server`` binary.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["RedisServer", "free_port", "redis_server_available", "require_redis_server"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def redis_server_available() -> bool:
    return shutil.which("redis-server") is not None


def require_redis_server() -> None:
    """Skip without ``redis-server`` locally; fail in CI (the root conftest's ``require_or_skip``)."""
    _require_or_skip()(redis_server_available(), "redis-server is not installed (apt-get install redis-server)")


def _require_or_skip() -> Callable[[bool, str], None]:
    # tests/ is not a package and pytest's import mode decides what is importable, so the root
    # conftest is loaded by path when ``tests.conftest`` cannot be imported.
    try:
        import tests.conftest as root
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "conftest.py"
        spec = importlib.util.spec_from_file_location("_taskmodels_root_conftest", path)
        assert spec is not None
        assert spec.loader is not None
        root = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(root)
    require_or_skip: Callable[[bool, str], None] = root.require_or_skip
    return require_or_skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``start`` after ``stop``/``kill`` reuses the port."""

    def __init__(self, port: int | None = None, *, executable: str = "redis-server") -> None:
        self.port = port if port is not None else free_port()
        self.executable = executable
        self._dir = Path(tempfile.mkdtemp(prefix="taskmodels-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def launch(cls) -> Self:
        server = cls()
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        if self.running:
            raise RuntimeError("redis-server is already running")
        self._log = (self._dir / "redis.log").open("ab")
        args = [
            self.executable,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING within {timeout}s: {self.log_tail()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM and wait; a server that does not exit in time is killed."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        path = self._dir / "redis.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_STOP_TIMEOUT)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
