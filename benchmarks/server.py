"""A fast OpenAI-compatible server for the benchmarks, run in its own process.

Raw asyncio with a minimal HTTP/1.1 keep-alive parser: the server must cost as
little CPU as possible, because on a small machine it shares the cores with the
client being measured. Every answer is precomputed bytes.

    POST /v1/chat/completions  {"model": "...", "stream": false}  -> a fixed completion with usage
    POST /v1/chat/completions  {"model": "...", "stream": true}   -> N SSE chunks, a usage chunk, [DONE]
    model "seq", streamed                                         -> the pieces numbered: "0 ", "1 ", ...
    model "fail-<status>" (e.g. "fail-500")                       -> that status with an OpenAI error body
    model "tail-<median ms>-<slow ms>" (e.g. "tail-50-2000")      -> the same answers, after a first-token delay:
        2 % of requests wait <slow ms> (so it is the p99), the rest a log-normal delay around <median ms>
        (sigma 0.25); streams send their headers at once and their events after the delay. Seeded (--seed).

Run by ``BenchServer`` (a context manager) as ``python -m benchmarks.server``; it
prints ``PORT <n>`` once listening, and exits when its stdin closes (the parent
went away) or after ``--lifetime`` seconds, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["COMPLETION_TEXT", "STREAM_PIECE", "BenchServer"]

COMPLETION_TEXT = "Hello! This is a short benchmark answer."
STREAM_PIECE = "tok "
_FAIL_MODEL = re.compile(rb'"model"\s*:\s*"fail-(\d{3})"')
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')
_TAIL_MODEL = re.compile(rb'"model"\s*:\s*"tail-(\d+)-(\d+)"')
TAIL_SLOW_SHARE = 0.02  # of a tail model's requests wait the slow delay: it is their p99 (and p98)
_TAIL_SIGMA = 0.25


def _response(status: int, reason: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n".encode()
        + b"content-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nx-request-id: req-bench\r\n\r\n"
    )
    return head + body


def _completion_body(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
        },
        separators=(",", ":"),
    ).encode()


def _stream_body(model: str, chunks: int) -> bytes:
    """The SSE events, sent with chunked transfer encoding as real servers do."""

    def event(delta: dict[str, object], finish: str | None, usage: object = None, with_choice: bool = True) -> bytes:
        payload: dict[str, object] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if with_choice else [],
        }
        if usage is not None:
            payload["usage"] = usage
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    events = [event({"role": "assistant", "content": ""}, None)]
    # Model "seq" numbers its pieces ("0 ", "1 ", ...), so a relay that drops or reorders one is seen.
    events += [event({"content": f"{i} " if model == "seq" else STREAM_PIECE}, None) for i in range(chunks)]
    events.append(event({}, "stop"))
    events.append(
        event(
            {},
            None,
            usage={"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
            with_choice=False,
        )
    )
    events.append(b"data: [DONE]\n\n")
    out = bytearray()
    for e in events:
        out += f"{len(e):x}\r\n".encode() + e + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class _Answers:
    """Precomputed responses, keyed by model name, built on first sight of a model."""

    def __init__(self, chunks: int, seed: int = 0) -> None:
        self._chunks = chunks
        self._random = random.Random(seed)  # latencies to simulate, not secrets
        self._plain: dict[bytes, bytes] = {}
        self._stream: dict[bytes, bytes] = {}
        self._fail: dict[int, bytes] = {}

    def for_body(self, body: bytes) -> bytes:
        fail = _FAIL_MODEL.search(body)
        if fail is not None:
            return self.failure(int(fail.group(1)))
        m = _MODEL.search(body)
        model = m.group(1) if m is not None else b"unknown"
        if _STREAM_TRUE.search(body) is not None:
            cached = self._stream.get(model)
            if cached is None:
                head = (
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                    b"transfer-encoding: chunked\r\nx-request-id: req-bench\r\n\r\n"
                )
                cached = self._stream[model] = head + _stream_body(model.decode(), self._chunks)
            return cached
        cached = self._plain.get(model)
        if cached is None:
            cached = self._plain[model] = _response(200, "OK", _completion_body(model.decode()))
        return cached

    def delay(self, body: bytes) -> float:
        """Seconds before a tail model's first token (0 for every other model)."""
        tail = _TAIL_MODEL.search(body)
        if tail is None:
            return 0.0
        if self._random.random() < TAIL_SLOW_SHARE:
            return int(tail.group(2)) / 1000.0
        return int(tail.group(1)) / 1000.0 * self._random.lognormvariate(0.0, _TAIL_SIGMA)

    def failure(self, status: int) -> bytes:
        cached = self._fail.get(status)
        if cached is None:
            body = json.dumps(
                {"error": {"message": f"benchmark failure {status}", "type": "server_error", "code": None}}
            ).encode()
            cached = self._fail[status] = _response(status, "Error", body)
        return cached


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: _Answers) -> None:
    not_found = _response(404, "Not Found", b'{"error":{"message":"not found"}}')
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value.strip())
                elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            body = await _read_chunked(reader) if chunked else (await reader.readexactly(length) if length else b"")
            if head.startswith(b"POST ") and b"/chat/completions" in head.split(b"\r\n", 1)[0]:
                answer = answers.for_body(body)
                delay = answers.delay(body)
                if delay:
                    await _late(writer, answer, delay, stream=_STREAM_TRUE.search(body) is not None)
                    continue
                writer.write(answer)
            else:
                writer.write(not_found)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    except asyncio.CancelledError:
        return  # the server is shutting down with a tail model's answer still waiting: nothing to report
    finally:
        writer.close()


async def _late(writer: asyncio.StreamWriter, answer: bytes, delay: float, *, stream: bool) -> None:
    """An answer whose first token takes ``delay``: a stream's headers go at once, as real servers send them."""
    if stream:
        split = answer.index(b"\r\n\r\n") + 4
        writer.write(answer[:split])
        await writer.drain()
        answer = answer[split:]
    await asyncio.sleep(delay)
    writer.write(answer)
    await writer.drain()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def _serve(port: int, chunks: int, lifetime: float, seed: int = 0) -> None:
    answers = _Answers(chunks, seed)
    server = await asyncio.start_server(lambda r, w: _handle(r, w, answers), host="127.0.0.1", port=port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def on_stdin() -> None:
        # The parent holds our stdin open; EOF means it is gone and we must not linger.
        if not os.read(sys.stdin.fileno(), 4096) and not stdin_closed.done():
            stdin_closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    async with server:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin_closed, timeout=lifetime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per streamed answer")
    parser.add_argument("--lifetime", type=float, default=1800.0, help="seconds before the server exits on its own")
    parser.add_argument("--seed", type=int, default=0, help="of the tail models' delays")
    args = parser.parse_args(argv)
    serve = _serve(args.port, args.chunks, args.lifetime, args.seed)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve)
    else:
        uvloop.run(serve)


class BenchServer:
    """Starts the server in a child process; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, *, chunks: int = 20, lifetime: float = 1800.0, startup_timeout: float = 15.0) -> None:
        self.chunks = chunks
        self._lifetime = lifetime
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.server",
                "--chunks",
                str(self.chunks),
                "--lifetime",
                str(self._lifetime),
            ],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        # readline blocks, but the child prints its port as its first act or dies (EOF).
        line = self._proc.stdout.readline()
        if not line.startswith("PORT ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"benchmark server did not start (got {line!r})")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    main()
