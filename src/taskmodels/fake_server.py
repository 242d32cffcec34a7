"""A fake LLM server on 127.0.0.1, for trying taskmodels, its docs and your tests without API keys.

Start it from a shell after ``pip install taskmodels``::

    taskmodels fake-server                      # or: python -m taskmodels.fake_server

It listens on port 8080 (llama.cpp's, which the starter registry's ``local-llama`` names), or on any free port
when that one is taken, prints the variables that point taskmodels at it and the registry's models whose own
``baseUrl`` sends them elsewhere, then serves until interrupted.
It answers the documented request shapes of the wire protocols taskmodels speaks,
with the documented response bodies, so the real providers parse its answers:

- OpenAI and every OpenAI-compatible server: ``POST …/chat/completions`` (JSON, or
  SSE ending in ``data: [DONE]`` when the body says ``"stream": true``),
  ``POST …/embeddings`` and ``GET …/models``;
- Anthropic: ``POST /v1/messages`` (JSON, or its SSE event sequence) and ``GET /v1/models``;
- Gemini: ``POST /v1beta/models/NAME:generateContent``, ``:streamGenerateContent?alt=sse``
  and ``:batchEmbedContents``, and ``GET /v1beta/models``;
- Ollama: ``POST /api/chat`` (JSON, or NDJSON), ``POST /api/embed`` and ``GET /api/tags``.

On every protocol, streamed or not, it plays what an application's code branches on the way
that provider would: a request with tools, whose conversation does not end with a tool's result,
is answered with a call of the forced tool, else of the first (OpenAI ``tool_calls``, Anthropic
``tool_use`` blocks, Gemini ``functionCall`` parts, Ollama ``tool_calls``); a request for JSON
(OpenAI's ``response_format``, Gemini's ``responseMimeType``, Ollama's ``format``; Anthropic's
forced tool) is answered with a JSON object, shaped by the schema when one is given. An answer to a
request with images says what it saw (``saw 2 images: image/png 70 bytes, https://host/…``),
never more of a URL than its host. Embeddings are refused for a model whose name does not say
``embed``, with the error that provider gives.

From Python it runs in a background thread, so it serves synchronous and
asynchronous callers alike::

    with FakeLLMServer() as server:
        print(server.openai_base_url)           # http://127.0.0.1:PORT/v1
        server.fail("gpt-4o-mini", status=503)   # the next request for that model answers 503
        ...
        server.requests                          # what each request asked for

It never listens anywhere but 127.0.0.1, and ``import taskmodels`` does not import it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from taskmodels.types import describe_url, sniff_media_type

__all__ = [
    "DEFAULT_PORT",
    "MODEL_LIST",
    "FakeLLMServer",
    "SeenRequest",
    "banner",
    "default_answer",
    "main",
    "registry_base_urls",
    "start",
]

MODEL_LIST = "(model list)"
"""The model name recorded for a ``GET`` of a model list; ``server.fail(MODEL_LIST, 401)`` scripts its failure."""

Answer = Callable[[str, str], str]


def default_answer(model: str, prompt: str) -> str:
    """The text the server answers: which model answered, and the start of the last user message."""
    return f"[{model}] answer to: {prompt[:60]}"


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the server received. Header values are not kept: they may hold a key."""

    protocol: str  # openai, anthropic, gemini, ollama
    path: str
    model: str
    body: dict[str, Any]
    had_credentials: bool


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeLLMServer:
    """A threaded HTTP server on 127.0.0.1 that answers like OpenAI, Anthropic, Gemini and Ollama."""

    def __init__(self, answer: Answer = default_answer, *, port: int = 0) -> None:
        self.answer = answer
        self.port = port  # 0: any free port
        self.requests: list[SeenRequest] = []
        self._failures: dict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        # A short poll: stop() waits for the loop to notice, and tests stop a server each (0.5 s by default).
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="fake-llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the base URL for Anthropic, Gemini and Ollama."""
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port_in_use(self) -> int:
        """The port the server listens on (the one the system chose, for port 0)."""
        if self._httpd is None:
            raise RuntimeError("the fake server is not running")
        return int(self._httpd.server_address[1])

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the base URL for ``openai`` and ``openai-compatible`` models."""
        return self.base_url + "/v1"

    # --- scripting -----------------------------------------------------------------------

    def fail(self, model: str, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``model`` (its ``modelName``, or ``MODEL_LIST``) with ``status``."""
        with self._lock:
            self._failures[model].extend([status] * times)

    def models_seen(self) -> list[str]:
        """The model name of each request, in order."""
        return [r.model for r in self.requests]

    def _record(self, seen: SeenRequest) -> int | None:
        with self._lock:
            self.requests.append(seen)
            queue = self._failures.get(seen.model)
            return queue.popleft() if queue else None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read results, not access logs  # noqa: A002 - the name http.server gives the parameter
        return

    # --- routing ----------------------------------------------------------------------

    def do_GET(self) -> None:
        # The model lists: what `taskmodels check --ping` asks each endpoint for.
        path = urlsplit(self.path).path.rstrip("/")
        creds = any(self.headers.get(h) for h in ("authorization", "x-api-key", "api-key", "x-goog-api-key"))
        if path == "/api/tags":
            protocol = "ollama"
            body: dict[str, Any] = {"models": [{"name": "fake", "model": "fake", "size": 0, "digest": "fake"}]}
        elif path.endswith("/v1beta/models") or (path.endswith("/models") and self.headers.get("x-goog-api-key")):
            protocol = "gemini"
            body = {"models": [{"name": "models/fake", "displayName": "fake"}]}
        elif path.endswith("/models") and self.headers.get("anthropic-version"):
            protocol = "anthropic"
            entry = {"id": "fake", "type": "model", "display_name": "fake", "created_at": "2025-01-01T00:00:00Z"}
            body = {"data": [entry], "has_more": False, "first_id": "fake", "last_id": "fake"}
        elif path.endswith("/models"):
            protocol = "openai"
            body = {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}]}
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        self._serve(protocol, path=path, body={}, model=MODEL_LIST, creds=creds, handle=lambda _: self._json(200, body))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        if not isinstance(body, dict):
            self._json(400, {"error": {"message": "body is not an object", "type": "invalid_request_error"}})
            return
        path = urlsplit(self.path).path
        creds = any(self.headers.get(h) for h in ("authorization", "x-api-key", "api-key", "x-goog-api-key"))
        model = str(body.get("model", ""))
        route: tuple[str, Callable[[dict[str, Any]], None]] | None = None
        if path.endswith("/chat/completions"):
            route = "openai", self._openai_chat
        elif path.endswith("/embeddings"):
            route = "openai", lambda b: self._openai_embeddings(b, azure="/openai/deployments/" in path)
        elif path.endswith("/v1/messages"):
            route = "anthropic", self._anthropic
        elif "/models/" in path and ":" in path:
            model, _, method = path.rsplit("/", 1)[1].partition(":")
            route = "gemini", lambda b: self._gemini(b, model, method)
        elif path == "/api/chat":
            route = "ollama", self._ollama_chat
        elif path == "/api/embed":
            route = "ollama", self._ollama_embed
        if route is None:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        self._serve(route[0], path=path, body=body, model=model, creds=creds, handle=route[1])

    def _serve(
        self,
        protocol: str,
        *,
        path: str,
        body: dict[str, Any],
        model: str,
        creds: bool,
        handle: Callable[[dict[str, Any]], None],
    ) -> None:
        status = self.fake._record(SeenRequest(protocol, path, model, body, creds))  # noqa: SLF001 - the handler belongs to the server it records for
        if status is not None:
            # The OpenAI error body; the other providers' parsers read its message too.
            kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
            self._json(status, {"error": {"message": f"scripted failure {status}", "type": kind, "code": None}})
            return
        handle(body)

    def _reply(self, model: str, ask: _Ask) -> _Reply:
        return _decide(ask, self.fake.answer(model, ask.prompt))

    # --- OpenAI ------------------------------------------------------------------------

    def _openai_chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        ask = _openai_ask(body)
        reply = self._reply(model, ask)
        usage = {"prompt_tokens": _tokens(ask.prompt), "completion_tokens": _tokens(reply.text or "{}")}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created = int(time.time())
        call: dict[str, Any] | None = None
        if reply.call is not None:
            name, arguments = reply.call
            call = {"id": _CALL_ID, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        finish = "tool_calls" if call is not None else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text if call is None else None}
            if call is not None:
                message["tool_calls"] = [call]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            head = {"id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model}
            self._json(200, head | {"choices": [choice], "usage": usage})
            return

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }

        def events() -> Iterator[str]:
            if call is None:
                yield json.dumps(chunk({"role": "assistant", "content": ""}, None))
                for piece in _chunks(reply.text):
                    yield json.dumps(chunk({"content": piece}, None))
            else:  # the call's name first, then its arguments in two fragments, as OpenAI streams them
                arguments = call["function"]["arguments"]
                start = {
                    "index": 0,
                    "id": _CALL_ID,
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""},
                }
                yield json.dumps(chunk({"role": "assistant", "content": None, "tool_calls": [start]}, None))
                for piece in _halves(arguments):
                    yield json.dumps(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None))
            yield json.dumps(chunk({}, finish))
            # The usage chunk that stream_options.include_usage asks for: no choices, just usage.
            yield json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [], "usage": usage})
            yield "[DONE]"

        self._sse(f"data: {e}\n\n" for e in events())

    def _openai_embeddings(self, body: dict[str, Any], *, azure: bool) -> None:
        model = str(body.get("model", ""))
        if not _embeds(model):
            if azure:  # Azure OpenAI's answer for a chat deployment
                message = (
                    f"The embeddings operation does not work with the specified model, {model}. Please choose "
                    "different model and try again."
                )
                self._json(400, {"error": {"code": "OperationNotSupported", "message": message}})
            else:  # OpenAI's answer for a chat model, a 403 with an invalid_request_error body
                message = "You are not allowed to generate embeddings from this model"
                error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
                self._json(403, {"error": error})
            return
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else list(texts)
        self._json(
            200,
            {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)],
                "model": model,
                "usage": {"prompt_tokens": sum(map(_tokens, texts)), "total_tokens": sum(map(_tokens, texts))},
            },
        )

    # --- Anthropic -------------------------------------------------------------------

    def _anthropic(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        ask = _anthropic_ask(body)
        reply = self._reply(model, ask)
        usage_in, usage_out = _tokens(ask.prompt), _tokens(reply.text or "{}")
        stop = "end_turn" if reply.call is None else "tool_use"
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
        if reply.call is not None:
            blocks = [{"type": "tool_use", "id": "toolu_fake_1", "name": reply.call[0], "input": reply.call[1]}]
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
                },
            )
            return

        def deltas() -> Iterator[dict[str, Any]]:
            if reply.call is None:
                for piece in _chunks(reply.text):
                    yield {"type": "text_delta", "text": piece}
            else:
                for piece in _halves(json.dumps(reply.call[1])):
                    yield {"type": "input_json_delta", "partial_json": piece}

        def events() -> Iterator[tuple[str, dict[str, Any]]]:
            message: dict[str, Any] = {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": 1},
            }
            yield "message_start", {"type": "message_start", "message": message}
            opening = dict(blocks[0], text="") if reply.call is None else dict(blocks[0], input={})
            yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}
            for delta in deltas():
                yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            ending = {"stop_reason": stop, "stop_sequence": None}
            yield "message_delta", {"type": "message_delta", "delta": ending, "usage": {"output_tokens": usage_out}}
            yield "message_stop", {"type": "message_stop"}

        self._sse(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events())

    # --- Gemini ----------------------------------------------------------------------

    def _gemini(self, body: dict[str, Any], model: str, method: str) -> None:
        if method == "batchEmbedContents":
            self._gemini_embed(body, model)
            return
        ask = _gemini_ask(body)
        reply = self._reply(model, ask)
        usage = {
            "promptTokenCount": _tokens(ask.prompt),
            "candidatesTokenCount": _tokens(reply.text or "{}"),
            "totalTokenCount": _tokens(ask.prompt) + _tokens(reply.text or "{}"),
        }

        def response(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake"}

        pieces: list[list[dict[str, Any]]]
        if reply.call is not None:  # Gemini sends a whole functionCall part, streamed or not
            pieces = [[{"functionCall": {"name": reply.call[0], "args": reply.call[1]}}]]
        else:
            pieces = [[{"text": piece}] for piece in _chunks(reply.text)]
        if method == "generateContent":
            self._json(200, response([part for piece in pieces for part in piece], "STOP"))
            return
        self._sse(
            f"data: {json.dumps(response(p, 'STOP' if i == len(pieces) - 1 else None))}\r\n\r\n"
            for i, p in enumerate(pieces)
        )

    def _gemini_embed(self, body: dict[str, Any], model: str) -> None:
        if not _embeds(model):  # Gemini's answer for a model without the embedding methods
            message = (
                f"models/{model} is not found for API version v1beta, or is not supported for batchEmbedContents. "
                "Call ListModels to see the list of available models and their supported methods."
            )
            self._json(404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}})
            return
        texts = [
            "".join(p.get("text", "") for p in r.get("content", {}).get("parts", [])) for r in body.get("requests", [])
        ]
        self._json(200, {"embeddings": [{"values": _vector(t)} for t in texts]})

    # --- Ollama ------------------------------------------------------------------------

    def _ollama_chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        ask = _ollama_ask(body)
        reply = self._reply(model, ask)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.call is not None:
            function = {"index": 0, "name": reply.call[0], "arguments": reply.call[1]}
            message["tool_calls"] = [{"id": _CALL_ID, "function": function}]
        final = {
            "model": model,
            "created_at": "2024-07-22T20:33:28.123648Z",
            "message": message,
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "prompt_eval_count": _tokens(ask.prompt),
            "eval_count": _tokens(reply.text or "{}"),
        }
        if body.get("stream") is False:
            self._json(200, final)
            return
        head = {"model": model, "created_at": final["created_at"], "done": False}
        if reply.call is not None:  # Ollama sends the calls in one line before the last
            lines = [head | {"message": message}]
        else:
            lines = [head | {"message": {"role": "assistant", "content": p}} for p in _chunks(reply.text)]
        lines.append(final | {"message": {"role": "assistant", "content": ""}})
        self._stream("application/x-ndjson", (json.dumps(line) + "\n" for line in lines))

    def _ollama_embed(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if not _embeds(model):  # as a model on Ollama's own engine answers, which embeds nothing
            self._json(501, {"error": "this model does not support embeddings"})
            return
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else list(texts)
        self._json(
            200,
            {"model": model, "embeddings": [_vector(t) for t in texts], "prompt_eval_count": sum(map(_tokens, texts))},
        )

    # --- writing -------------------------------------------------------------------------

    def _json(self, status: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.send_header("x-request-id", "req-fake")
        self.end_headers()
        self.wfile.write(raw)

    def _sse(self, events: Iterator[str]) -> None:
        self._stream("text/event-stream", events)

    def _stream(self, content_type: str, parts: Iterator[str]) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for part in parts:
            raw = part.encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


# --- what a request asks, whatever its protocol ------------------------------------------------------------

_CALL_ID = "call_fake_1"
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


@dataclass(slots=True)
class _Ask:
    """What one request asks for, read from its protocol's shape."""

    prompt: str = ""  # the text of the last user turn
    images: list[str] = field(default_factory=list)  # each image of that turn, described
    tools: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)  # (name, JSON Schema of the arguments)
    forced: str | None = None  # the tool the request makes the model call
    tools_off: bool = False  # tool_choice none
    answered: bool = False  # the conversation ends with a tool's result: answer in words now
    schema: Mapping[str, Any] | None = None  # a JSON answer matching this schema
    any_json: bool = False  # a JSON answer, any object


@dataclass(slots=True, frozen=True)
class _Reply:
    text: str = ""
    call: tuple[str, Any] | None = None  # (tool name, arguments object)


def _decide(ask: _Ask, answer: str) -> _Reply:
    """A call of the forced (else the first) tool while the conversation awaits one; else the answer, as JSON
    when JSON was asked for, with a note of the images the request carried."""
    if ask.images:
        count = len(ask.images)
        answer += f" (saw {count} image{'s' if count != 1 else ''}: {', '.join(ask.images)})"
    if ask.tools and not ask.tools_off and not ask.answered:
        name, schema = next(((n, s) for n, s in ask.tools if n == ask.forced), ask.tools[0])
        # A forced tool carries the answer (Anthropic's JSON mode is one); an offered one gets example values.
        return _Reply(call=(name, _example(schema, answer if name == ask.forced else "example", schema)))
    if ask.schema is not None:
        return _Reply(json.dumps(_example(ask.schema, answer, ask.schema)))
    if ask.any_json:
        return _Reply(json.dumps({"answer": answer}))
    return _Reply(answer)


def _openai_ask(body: Mapping[str, Any]) -> _Ask:
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    ask = _Ask(answered=bool(messages) and messages[-1].get("role") == "tool")
    user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if user is not None:
        content = user.get("content")
        if isinstance(content, list):
            parts = [p for p in content if isinstance(p, Mapping)]
            ask.prompt = "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
            for part in parts:
                if part.get("type") == "image_url":
                    image = part.get("image_url")
                    ask.images.append(_describe_url(str(image.get("url") if isinstance(image, Mapping) else image)))
        else:
            ask.prompt = str(content or "")
    ask.tools = [_function(t.get("function")) for t in body.get("tools") or () if isinstance(t, Mapping)]
    choice = body.get("tool_choice")
    ask.tools_off = choice == "none"
    if isinstance(choice, Mapping):
        ask.forced = str((choice.get("function") or {}).get("name", ""))
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping):
        ask.any_json = fmt.get("type") == "json_object"
        if fmt.get("type") == "json_schema":
            ask.schema = (fmt.get("json_schema") or {}).get("schema") or _ANY_OBJECT
    return ask


def _anthropic_ask(body: Mapping[str, Any]) -> _Ask:
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    ask = _Ask()
    if messages and isinstance(messages[-1].get("content"), list):
        ask.answered = any(_kind(b) == "tool_result" for b in messages[-1]["content"])
    for message in reversed(messages):
        if message.get("role") == "user" and _anthropic_turn(message.get("content"), ask):
            break
    ask.tools = [
        (str(t.get("name", "")), t.get("input_schema") or _ANY_OBJECT)
        for t in body.get("tools") or ()
        if isinstance(t, Mapping)
    ]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        ask.tools_off = choice.get("type") == "none"
        if choice.get("type") == "tool":
            ask.forced = str(choice.get("name", ""))
    return ask


def _anthropic_turn(content: Any, ask: _Ask) -> bool:
    """Read a user turn's text and images into ``ask``; whether it had any (a turn of tool results has not)."""
    if isinstance(content, str):
        ask.prompt = content
        return bool(content)
    blocks = [b for b in content or () if isinstance(b, Mapping)]
    ask.prompt = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    for block in blocks:
        source = block.get("source") if block.get("type") == "image" else None
        if isinstance(source, Mapping):
            if source.get("type") == "base64":
                ask.images.append(_describe_inline(str(source.get("media_type")), str(source.get("data", ""))))
            else:
                ask.images.append(_describe_url(str(source.get("url", ""))))
    return bool(ask.prompt or ask.images)


def _gemini_ask(body: Mapping[str, Any]) -> _Ask:
    contents = [c for c in body.get("contents") or () if isinstance(c, Mapping)]
    ask = _Ask()
    if contents:
        ask.answered = any("functionResponse" in p for p in _parts_of(contents[-1]))
    for content in reversed(contents):
        if content.get("role", "user") == "user" and _gemini_turn(_parts_of(content), ask):
            break
    for tool in body.get("tools") or ():
        for declaration in (tool.get("functionDeclarations") or ()) if isinstance(tool, Mapping) else ():
            schema = declaration.get("parametersJsonSchema") or declaration.get("parameters") or _ANY_OBJECT
            ask.tools.append((str(declaration.get("name", "")), _lower_types(schema)))
    calling = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
    ask.tools_off = calling.get("mode") == "NONE"
    allowed = calling.get("allowedFunctionNames") or ()
    ask.forced = str(allowed[0]) if allowed else None
    config = body.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if schema:
            ask.schema = _lower_types(schema)
        else:
            ask.any_json = True
    return ask


def _gemini_turn(parts: list[Mapping[str, Any]], ask: _Ask) -> bool:
    """Read a user turn's text and images into ``ask``; whether it had any."""
    ask.prompt = "".join(str(p.get("text", "")) for p in parts)
    for part in parts:
        inline, linked = part.get("inlineData"), part.get("fileData")
        if isinstance(inline, Mapping):
            ask.images.append(_describe_inline(str(inline.get("mimeType")), str(inline.get("data", ""))))
        elif isinstance(linked, Mapping):
            ask.images.append(_describe_url(str(linked.get("fileUri", ""))))
    return bool(ask.prompt or ask.images)


def _ollama_ask(body: Mapping[str, Any]) -> _Ask:
    messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
    ask = _Ask(answered=bool(messages) and messages[-1].get("role") == "tool")
    user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if user is not None:
        ask.prompt = str(user.get("content") or "")
        ask.images = [_describe_inline(None, str(data)) for data in user.get("images") or ()]
    ask.tools = [_function(t.get("function")) for t in body.get("tools") or () if isinstance(t, Mapping)]
    fmt = body.get("format")
    ask.any_json = fmt == "json"
    if isinstance(fmt, Mapping):
        ask.schema = fmt
    return ask


def _function(function: Any) -> tuple[str, Mapping[str, Any]]:
    function = function if isinstance(function, Mapping) else {}
    return str(function.get("name", "")), function.get("parameters") or _ANY_OBJECT


def _kind(block: Any) -> Any:
    return block.get("type") if isinstance(block, Mapping) else None


def _parts_of(content: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in content.get("parts") or () if isinstance(p, Mapping)]


def _describe_inline(media_type: str | None, data: str) -> str:
    """An inline image as the server saw it: its media type (read from its bytes when not said) and size."""
    padding = len(data) - len(data.rstrip("="))
    size = max(0, len(data) * 3 // 4 - padding)
    if media_type is None:
        try:
            media_type = sniff_media_type(base64.b64decode(data[:16])) or "image/unknown"
        except ValueError:
            media_type = "image/unknown"
    return f"{media_type} {size} bytes"


def _describe_url(url: str) -> str:
    if url[:5].lower() == "data:":
        header, _, data = url.partition(",")
        return _describe_inline(header[5:].partition(";")[0] or None, data)
    return describe_url(url)  # host only: a signed URL's query is a credential, even in a fake's answer


def _lower_types(schema: Any) -> Any:
    """Gemini's older ``responseSchema`` writes types in capitals (``OBJECT``); JSON Schema's are lower case."""
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {key: _lower_types(value) for key, value in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    return out


def _embeds(model: str) -> bool:
    """Whether a model name is an embedding model's (text-embedding-3-small, nomic-embed-text,
    gemini-embedding-001 ...): the fake refuses embeddings from any other, as the providers do."""
    return "embed" in model.lower()


def _halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [text[:middle], text[middle:]] if middle else [text]


_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _example(schema: Mapping[str, Any], text: str = "example", root: Mapping[str, Any] | None = None) -> Any:  # noqa: C901, PLR0911 - one return per kind of schema
    """A value matching a JSON Schema, the smallest of each type, with every listed property filled in and
    strings set to ``text``; ``$ref``s into the root's ``$defs`` (pydantic's nested models) are followed."""
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, Mapping) else {}
        return _example(target, text, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or () if isinstance(o, Mapping) and o.get("type") != "null"]
        if options:
            return _example(options[0], text, root)
    kind = schema.get("type", "object" if "properties" in schema or not schema else "string")
    if isinstance(kind, Sequence) and not isinstance(kind, str):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _example(sub, text, root) for name, sub in properties.items() if isinstance(sub, Mapping)}
    if kind == "array":
        items = schema.get("items")
        return (
            [_example(items, text, root)] * max(1, int(schema.get("minItems") or 1))
            if isinstance(items, Mapping)
            else []
        )
    if kind in {"integer", "number"}:
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = max(1, int(low) + (1 if "exclusiveMinimum" in schema else 0))
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _FORMATS.get(str(schema.get("format")), text)


def _vector(text: str) -> list[float]:
    # Deterministic and cheap: equal texts give equal vectors, which is all an example needs.
    return [round((sum(map(ord, text)) % (97 + i)) / (97 + i), 6) for i in range(8)]


def _exports(server: FakeLLMServer) -> list[str]:
    """The variables that send every built-in provider to ``server``, with dummy keys it accepts."""
    base, openai = server.base_url, server.openai_base_url
    return [
        "OPENAI_API_KEY=sk-fake-key-for-the-fake-server",
        f"TASKMODELS_PROVIDERS__OPENAI__BASE_URL={openai}",
        f"TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL={openai}",
        "ANTHROPIC_API_KEY=sk-ant-fake-key-for-the-fake-server",
        f"TASKMODELS_PROVIDERS__ANTHROPIC__BASE_URL={base}",
        "GEMINI_API_KEY=fake-key-for-the-fake-server",
        f"TASKMODELS_PROVIDERS__GEMINI__BASE_URL={base}",
        "AZURE_OPENAI_API_KEY=fake-key-for-the-fake-server",
        f"AZURE_OPENAI_ENDPOINT={base}",
        f"OLLAMA_HOST={base}",
    ]


DEFAULT_PORT = 8080
"""Where ``taskmodels fake-server`` listens unless told: llama.cpp's default port, which the starter registry's
``local-llama`` names in its ``baseUrl`` (a model's ``baseUrl`` wins over every variable), so the documented
sequence (init, fake-server, check --ping) reaches this server for every model of the starter."""

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def start(port: int | None = None) -> tuple[FakeLLMServer, str | None]:
    """A running server on ``port``; with ``None``, on ``DEFAULT_PORT``, or any free port when that one is taken
    (then with a line saying so). ``OSError`` when a given port cannot be listened on."""
    if port is not None:
        return FakeLLMServer(port=port).start(), None
    try:
        return FakeLLMServer(port=DEFAULT_PORT).start(), None
    except OSError as exc:
        server = FakeLLMServer().start()
        why = exc.strerror or "unavailable"
        return server, f"port {DEFAULT_PORT} is taken ({why}), so this server is on port {server.port_in_use}"


def registry_base_urls(path: Path) -> list[tuple[str, str]]:
    """``(model, baseUrl)`` for each model (``model/deployment`` for a deployment) of the registry file at
    ``path`` that sets its own endpoint; empty when the file is missing or unreadable (nothing wins then)."""
    from taskmodels.registry.loader import read_layer

    if not path.is_file():
        return []
    data, _ = read_layer(path)
    models = data.get("models") if isinstance(data, Mapping) else None
    found: list[tuple[str, str]] = []
    for entry in models if isinstance(models, list) else []:
        if not isinstance(entry, Mapping):
            continue
        name = str(entry.get("id", "?"))
        url = entry.get("baseUrl", entry.get("base_url"))
        if isinstance(url, str):
            found.append((name, url))
        deployments = entry.get("deployments")
        for deployment in deployments if isinstance(deployments, list) else []:
            if isinstance(deployment, Mapping):
                url = deployment.get("baseUrl", deployment.get("base_url"))
                if isinstance(url, str):
                    found.append((f"{name}/{deployment.get('id', '?')}", url))
    return found


def banner(
    server: FakeLLMServer, *, moved: str | None = None, registry: tuple[str, list[tuple[str, str]]] | None = None
) -> list[str]:
    """What ``taskmodels fake-server`` prints before it serves: the address, the variables that point taskmodels
    here, and which models of the registry (``(its path, registry_base_urls(...))``) go elsewhere because their
    own ``baseUrl`` wins over those variables. It ends with an empty line."""
    lines = [f"fake LLM server on {server.base_url} (OpenAI base URL {server.openai_base_url}); Ctrl-C stops it"]
    if moved:
        lines.append(moved)
    lines.append("point taskmodels at it (a model's baseUrl in the registry wins over these):")
    lines.extend(f"  export {line}" for line in _exports(server))
    if registry is not None:
        source, urls = registry
        for model, url in urls:
            if _is_here(url, server):
                lines.append(f"{source}: {model}'s baseUrl {url} is this server")
            else:
                lines.append(
                    f"{source}: {model}'s baseUrl {url} wins over these: its calls go there, not here "
                    f"(set it to {server.openai_base_url} to use this server)"
                )
    lines.append("")
    return lines


def _is_here(url: str, server: FakeLLMServer) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.hostname or "") in _LOCAL_HOSTS and port == server.port_in_use


def _registry(path: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """The registry the commands run in this directory would read, and its models' own endpoints."""
    from taskmodels.errors import SettingsError
    from taskmodels.settings import load_settings, unannounced

    try:
        with unannounced():
            settings = load_settings(**({"registry_path": Path(path)} if path else {}))
    except SettingsError:
        return None
    target = settings.registry_path
    return str(target), registry_base_urls(target)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on 127.0.0.1 until interrupted; print the address and the variables that point taskmodels here."""
    parser = argparse.ArgumentParser(
        prog="taskmodels fake-server",
        description="A fake LLM server on 127.0.0.1 that speaks the OpenAI, Anthropic, Gemini and Ollama protocols.",
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"port to listen on (default: {DEFAULT_PORT}, else any free port)"
    )
    parser.add_argument("--registry", metavar="PATH", help="the registry whose models' baseUrl to compare with")
    args = parser.parse_args(argv)
    try:
        server, moved = start(args.port)
    except OSError as exc:
        print(f"taskmodels fake-server: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        print("\n".join(banner(server, moved=moved, registry=_registry(args.registry))), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
