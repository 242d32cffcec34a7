"""Worker processes the multi-process tests drive: a script run with arguments, answering one JSON line on its
stdout for each JSON line on its stdin, until stdin closes."""

from __future__ import annotations

import json
import select
import subprocess
from typing import Any

__all__ = ["LineWorker"]


class LineWorker:
    """One worker process; ``receive`` waits at most ``reply_timeout`` seconds for its answer (a hung worker fails
    the test instead of hanging it)."""

    def __init__(self, argv: list[str], *, reply_timeout: float) -> None:
        self.reply_timeout = reply_timeout
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def send_json(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        timeout = self.reply_timeout if timeout is None else timeout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"worker {self.proc.pid} did not answer within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"worker {self.proc.pid} exited with {self.proc.wait(5)}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        """Close its stdin (the worker's signal to exit) and wait for it; kill it after 10 s."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
