"""A fault-injection server speaking the OpenAI Chat Completions protocol, for integration tests.

Raw asyncio on 127.0.0.1 (no framework), because several faults live below HTTP:
a TCP reset before any header, a connection that is accepted and never answered,
a chunked body cut without its terminator, a stream that stops sending but keeps
the socket open. It serves ``POST /v1/chat/completions`` as JSON or, when the body
says ``"stream": true``, as SSE chunks ending in ``data: [DONE]``.

What it does is chosen per model name (the body's ``model``, i.e. the registry's
``modelName``) and scripted from the test::

    server.script("m-primary", ["500", "ok"])        # one behaviour per request, in order
    server.always("m-fallback", "503")               # after the script runs out
    server.always("m-primary", Behaviour.slow_first_token(0.5))
    server.down("m-primary", "reset"); ...; server.up("m-primary")   # an outage, then recovery

Every request is recorded per model (``server.requests("m-primary")``) so a test
can assert what each model saw. The server runs in the test's own event loop
(``async with FaultServer() as server`` in an async fixture), and every wait it
makes is bounded by ``hold_limit`` and ended at shutdown, so a test can never
hang on it.

Besides OpenAI's route it accepts the routes of the other built-in providers
(Azure OpenAI's deployment URL, Anthropic's ``/v1/messages``, Gemini's
``models/<model>:generateContent``, Ollama's ``/api/chat``) and every built-in
provider's embeddings route, taking the model from the body or the path. Those
protocols (and embeddings) are not spoken: there, ``Behaviour.raw``
answers with whatever bytes and headers a test wrote (an error body in that
provider's shape, an HTML page, a success that echoes something in its headers),
and ``Behaviour.error`` with an OpenAI-shaped error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

__all__ = ["Behaviour", "FaultServer", "SeenRequest", "model_entry"]

Kind = Literal[
    "ok",
    "status",
    "reset",
    "silent",
    "slow_first_token",
    "cut",
    "stall",
    "malformed",
    "no_done",
    "reject_prefill",
    "reject_response_format",
    "raw",
]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 4 * 1024 * 1024


def model_entry(model_id: str, base_url: str, **keys: Any) -> dict[str, Any]:
    """A registry entry for an OpenAI-compatible model served at ``base_url`` (the fault server's, say); ``keys``
    add or replace registry keys. ``modelName`` is the id, so the server's per-model bookkeeping reads in
    registry ids."""
    return {
        "id": model_id,
        "provider": "openai-compatible",
        "modelName": model_id,
        "maxTokens": 32,
        "temperature": 0.0,
        "contextWindow": 4096,
        "costPer1kTokens": 0.001,
        "baseUrl": base_url,
        **keys,
    }


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What the server does with one request. Build with the class methods or ``Behaviour.parse``."""

    kind: Kind = "ok"
    status: int = 200
    error_code: str | None = None
    error_type: str | None = None
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    after_chunks: int = 1
    text: str | None = None
    body: bytes | None = None  # the whole body of a ``raw`` answer
    content_type: str = "application/json"

    @classmethod
    def ok(cls, text: str | None = None, *, headers: Mapping[str, str] | None = None) -> Behaviour:
        """A normal answer; ``headers`` are added to it (a JSON answer's), e.g. a provider's rate-limit headers."""
        return cls("ok", text=text, headers=tuple((headers or {}).items()))

    @classmethod
    def error(
        cls,
        status: int,
        *,
        code: str | None = None,
        type_: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Behaviour:
        return cls(
            "status",
            status=status,
            error_code=code,
            error_type=type_,
            message=message,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def raw(
        cls,
        status: int,
        body: str | bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Behaviour:
        """Answer ``status`` with exactly this body and these headers (an echo of anything, any shape)."""
        data = body.encode() if isinstance(body, str) else body
        return cls("raw", status=status, body=data, content_type=content_type, headers=tuple((headers or {}).items()))

    @classmethod
    def rate_limited(cls, retry_after: str | None = None) -> Behaviour:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls.error(
            429, code="rate_limit_exceeded", type_="requests", message="Rate limit reached", headers=headers
        )

    @classmethod
    def context_length_exceeded(cls) -> Behaviour:
        return cls.error(
            400,
            code="context_length_exceeded",
            type_="invalid_request_error",
            message=(
                "This model's maximum context length is 4096 tokens. However, your messages resulted in 5120 tokens."
            ),
        )

    @classmethod
    def content_policy_violation(cls, reason: str = "Your request was rejected by the safety system") -> Behaviour:
        return cls.error(400, code="content_policy_violation", type_="invalid_request_error", message=reason)

    @classmethod
    def images_unsupported(cls) -> Behaviour:
        """llama.cpp's server without a vision projector, sent an image: a 500 that no retry will change."""
        message = "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
        return cls.error(500, type_="server_error", message=message)

    @classmethod
    def rejecting_response_format(cls, text: str | None = None) -> Behaviour:
        """A server without structured output: 400 for a body with ``response_format``, else ``ok(text)``."""
        return cls("reject_response_format", text=text)

    @classmethod
    def slow_first_token(cls, delay: float) -> Behaviour:
        return cls("slow_first_token", delay=delay)

    @classmethod
    def cut(cls, after_chunks: int = 2) -> Behaviour:
        return cls("cut", after_chunks=after_chunks)

    @classmethod
    def stall(cls, after_chunks: int = 2) -> Behaviour:
        return cls("stall", after_chunks=after_chunks)

    @classmethod
    def malformed(cls, after_chunks: int = 1) -> Behaviour:
        return cls("malformed", after_chunks=after_chunks)

    @classmethod
    def parse(cls, spec: str | Behaviour) -> Behaviour:  # noqa: PLR0911 - one return per named behaviour
        """``"ok"``, ``"500"``, ``"429"``, ``"429:2"`` (with ``Retry-After: 2``), or a fault's name."""
        if isinstance(spec, Behaviour):
            return spec
        name, _, arg = spec.partition(":")
        if name.isdigit():
            status = int(name)
            if status == 429:
                return cls.rate_limited(arg or None)
            if status == 401:
                return cls.error(401, code="invalid_api_key", type_="invalid_request_error", message="Invalid key")
            if status == 403:
                return cls.error(403, code="forbidden", type_="invalid_request_error", message="Not allowed")
            if status >= 500:
                return cls.error(status, type_="server_error", message=f"upstream failure {status}")
            return cls.error(status, code="invalid_value", type_="invalid_request_error", message="Bad parameter")
        simple: dict[str, Behaviour] = {
            "ok": cls.ok(),
            "reset": cls("reset"),
            "silent": cls("silent"),
            "cut": cls.cut(),
            "stall": cls.stall(),
            "malformed": cls.malformed(),
            "no_done": cls("no_done"),
            "reject_prefill": cls("reject_prefill"),
            "context_length_exceeded": cls.context_length_exceeded(),
            "content_policy_violation": cls.content_policy_violation(),
            "images_unsupported": cls.images_unsupported(),
        }
        if name == "slow_first_token":
            return cls.slow_first_token(float(arg or "1"))
        if name in {"cut", "stall", "malformed"} and arg:
            return cls(name, after_chunks=int(arg))  # type: ignore[arg-type]
        try:
            return simple[name]
        except KeyError:
            raise ValueError(f"unknown fault-server behaviour {spec!r}") from None


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the server received it. Headers are lower-cased."""

    model: str
    path: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]
    stream: bool
    at: float  # time.monotonic() when it arrived
    behaviour: Behaviour

    @property
    def last_role(self) -> str | None:
        messages = self.body.get("messages") or []
        return messages[-1].get("role") if messages else None


@dataclass(slots=True)
class _Model:
    queue: deque[Behaviour] = field(default_factory=deque)
    default: Behaviour = field(default_factory=Behaviour.ok)


class FaultServer:
    """The server. ``await start()``, point models' ``baseUrl`` at ``base_url``, ``await stop()``."""

    def __init__(self, *, hold_limit: float = 10.0, chunk_count: int = 4) -> None:
        self.hold_limit = hold_limit  # the longest any fault holds a connection open
        self.chunk_count = chunk_count
        self.port = 0
        self._server: asyncio.Server | None = None
        self._models: defaultdict[str, _Model] = defaultdict(_Model)
        self._seen: list[SeenRequest] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = asyncio.Event()
        self._left: list[tuple[str, float]] = []  # (model, time.monotonic()) of streams the client closed mid-stall

    # --- scripting -------------------------------------------------------------------

    def script(self, model: str, behaviours: Iterable[str | Behaviour]) -> None:
        """Answer the next requests for ``model`` with these behaviours, one each, in order."""
        self._models[model].queue.extend(Behaviour.parse(b) for b in behaviours)

    def always(self, model: str, behaviour: str | Behaviour) -> None:
        """What ``model`` does once its script is used up (``ok`` until set). Flip it to end an outage."""
        self._models[model].default = Behaviour.parse(behaviour)

    def down(self, model: str, how: str | Behaviour = "503") -> None:
        """Start an outage: every request for ``model`` fails ``how`` (``503``, ``reset``, ``silent``) until ``up``."""
        self._models[model].queue.clear()
        self.always(model, how)

    def up(self, model: str) -> None:
        """End the outage: ``model`` answers again from its next request on."""
        self.always(model, "ok")

    def reset_scripts(self) -> None:
        """Forget every script and default: each model answers ``ok`` again."""
        self._models.clear()

    def _next_behaviour(self, model: str) -> Behaviour:
        state = self._models[model]
        return state.queue.popleft() if state.queue else state.default

    # --- what was seen ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self, model: str | None = None) -> list[SeenRequest]:
        return [r for r in self._seen if model is None or r.model == model]

    def hits(self, model: str) -> int:
        return len(self.requests(model))

    def order(self) -> list[str]:
        """The models requested, in arrival order."""
        return [r.model for r in self._seen]

    def clear(self) -> None:
        self._seen.clear()

    def closed_by_client(self, model: str | None = None) -> list[float]:
        """When the client closed the connection of a ``stall`` stream (for ``model``), in arrival order: a client
        that gives up on a stream shows here at once, one that holds it on shows nothing until ``hold_limit``."""
        return [at for m, at in self._left if model is None or m == model]

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=_MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- connection handling ---------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent garbage: nothing to answer
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # One request per connection (every answer says Connection: close), so a fault
        # on one request can never leak into a pooled connection the next one reuses.
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY_BYTES:
            await self._send_json(writer, 413, {"error": {"message": "too large"}})
            return
        raw = await reader.readexactly(length) if length else b""
        route = _route(path) if method == "POST" else None
        if route is None:
            await self._send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            await self._send_json(writer, 400, {"error": {"message": "body is not JSON"}})
            return
        path_model, path_stream = route
        model = path_model or str(body.get("model", ""))
        behaviour = self._next_behaviour(model)
        stream = path_stream or bool(body.get("stream"))
        seen = SeenRequest(model, path, headers, body, stream, time.monotonic(), behaviour)
        self._seen.append(seen)
        await self._behave(writer, seen, behaviour, reader)

    async def _behave(
        self,
        writer: asyncio.StreamWriter,
        seen: SeenRequest,
        b: Behaviour,
        reader: asyncio.StreamReader | None = None,
    ) -> None:
        kind = b.kind
        if kind == "reject_prefill":
            if seen.last_role == "assistant":
                await self._send_error(writer, Behaviour.error(400, code="prefill_not_supported", message="no prefill"))
                return
            kind = "ok"
        if kind == "reject_response_format":
            if "response_format" in seen.body:
                await self._send_error(
                    writer, Behaviour.error(400, code="invalid_request_error", message="response_format unsupported")
                )
                return
            kind = "ok"
        if kind == "status":
            await self._send_error(writer, b)
        elif kind == "raw":
            data = b.body or b""
            headers = {"Content-Type": b.content_type, "Content-Length": str(len(data)), **dict(b.headers)}
            await _write(writer, _head(b.status, headers) + data)
        elif kind == "reset":
            _reset(writer)
        elif kind == "silent":
            await self._hold()
        elif seen.stream:
            await self._stream(writer, seen, b, kind, reader)
        else:
            await self._json_answer(writer, seen, b, kind)

    async def _hold(self, seconds: float | None = None) -> None:
        """Wait, bounded by ``hold_limit``, ending early at shutdown."""
        limit = self.hold_limit if seconds is None else min(seconds, self.hold_limit)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=limit)

    async def _hold_open(self, seen: SeenRequest, reader: asyncio.StreamReader | None) -> None:
        """Hold a stalled stream open until the client closes it (noted in ``closed_by_client``) or ``_hold`` ends."""
        if reader is None:
            await self._hold()
            return
        eof = asyncio.ensure_future(reader.read(1))  # the request was read whole: only the client's close comes
        held = asyncio.ensure_future(self._hold())
        try:
            await asyncio.wait({eof, held}, return_when=asyncio.FIRST_COMPLETED)
            if eof.done() and not eof.cancelled() and (eof.exception() is not None or eof.result() == b""):
                self._left.append((seen.model, time.monotonic()))
        finally:
            for future in (eof, held):
                future.cancel()

    # --- answers ---------------------------------------------------------------------

    def _text_for(self, seen: SeenRequest, b: Behaviour) -> str:
        return b.text if b.text is not None else f"answer from {seen.model}"

    def _pieces(self, text: str) -> list[str]:
        n = max(1, self.chunk_count)
        size = max(1, -(-len(text) // n))
        return [text[i : i + size] for i in range(0, len(text), size)]

    async def _json_answer(self, writer: asyncio.StreamWriter, seen: SeenRequest, b: Behaviour, kind: str) -> None:
        text = self._text_for(seen, b)
        body = json.dumps(_completion(seen.model, text)).encode()
        if kind == "slow_first_token":
            await self._hold(b.delay)
        elif kind == "malformed":
            body = body[: len(body) // 2]
        elif kind in {"cut", "stall"}:
            # Promise the whole body, send half, then close (cut) or go quiet (stall).
            await _write(writer, _head(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}))
            await _write(writer, body[: len(body) // 2])
            if kind == "stall":
                await self._hold()
            return
        head = {"Content-Type": "application/json", "Content-Length": str(len(body)), **dict(b.headers)}
        await _write(writer, _head(200, head) + body)

    async def _stream(  # noqa: C901 - one branch per way a stream misbehaves
        self,
        writer: asyncio.StreamWriter,
        seen: SeenRequest,
        b: Behaviour,
        kind: str,
        reader: asyncio.StreamReader | None = None,
    ) -> None:
        await _write(
            writer,
            _head(
                200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Transfer-Encoding": "chunked"}
            ),
        )
        if kind == "slow_first_token":
            await self._hold(b.delay)
        created = int(time.time())
        pieces = self._pieces(self._text_for(seen, b))
        events = [_chunk(seen.model, created, {"role": "assistant", "content": ""}, None)]
        events += [_chunk(seen.model, created, {"content": p}, None) for p in pieces]
        tail = [
            _chunk(seen.model, created, {}, "stop"),
            {**_chunk(seen.model, created, {}, None), "choices": [], "usage": _usage(len(pieces))},
        ]
        sent_content = 0
        for event in events:
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                if kind in {"cut", "stall", "malformed"} and sent_content >= b.after_chunks:
                    break
                sent_content += 1
            await _write(writer, _sse(json.dumps(event)))
        if kind == "cut":
            return  # closing now leaves the chunked body without its terminator
        if kind == "stall":
            await self._hold_open(seen, reader)
            return
        if kind == "malformed":
            await _write(writer, _sse('{"id": "broken", "choices": [{"delta": {"content": "x"'))
            # The rest of a normal stream follows, so only the bad event can make the call fail.
            for event in events[1 + sent_content :] + tail:
                await _write(writer, _sse(json.dumps(event)))
            await _write(writer, _sse("[DONE]") + b"0\r\n\r\n")
            return
        for event in tail:
            await _write(writer, _sse(json.dumps(event)))
        if kind != "no_done":
            await _write(writer, _sse("[DONE]"))
        await _write(writer, b"0\r\n\r\n")

    async def _send_error(self, writer: asyncio.StreamWriter, b: Behaviour) -> None:
        error = {"message": b.message or f"HTTP {b.status}", "type": b.error_type, "param": None, "code": b.error_code}
        await self._send_json(writer, b.status, {"error": error}, dict(b.headers))

    async def _send_json(
        self, writer: asyncio.StreamWriter, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        await _write(writer, _head(status, all_headers) + body)


# A route served: its path (a "model" group when the path names the model), and whether it is a stream by itself.
_ROUTES: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"/v1/chat/completions/?"), False),  # OpenAI and compatible servers
    (re.compile(r".*/openai/deployments/(?P<model>[^/]+)/chat/completions"), False),  # Azure OpenAI
    (re.compile(r"(?:/v1)?/v1/messages"), False),  # Anthropic
    (re.compile(r".*/models/(?P<model>[^/:]+):generateContent"), False),  # Gemini
    (re.compile(r".*/models/(?P<model>[^/:]+):streamGenerateContent"), True),
    (re.compile(r"/api/chat"), False),  # Ollama
    # Embeddings, answered only by ``Behaviour.raw`` (what the test wrote):
    (re.compile(r"/v1/embeddings"), False),  # OpenAI and compatible servers
    (re.compile(r".*/openai/deployments/(?P<model>[^/]+)/embeddings"), False),  # Azure OpenAI
    (re.compile(r".*/models/(?P<model>[^/:]+):batchEmbedContents"), False),  # Gemini
    (re.compile(r"/api/embed"), False),  # Ollama
)


def _route(target: str) -> tuple[str, bool] | None:
    """``(model named by the path or "", stream)`` for a path the server serves, else ``None``."""
    path = target.partition("?")[0]
    for pattern, stream in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return (match.groupdict().get("model") or "", stream)
    return None


def _head(status: int, headers: Mapping[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _sse(data: str) -> bytes:
    """One SSE event, framed as one HTTP chunk."""
    payload = f"data: {data}\n\n".encode()
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the kernel sends RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _usage(pieces: int) -> dict[str, int]:
    return {"prompt_tokens": 11, "completion_tokens": pieces, "total_tokens": 11 + pieces}


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": _usage(4),
    }


def _chunk(model: str, created: int, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
    }
