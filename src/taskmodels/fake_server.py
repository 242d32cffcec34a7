"""A fake LLM server on 127.0.0.1, for trying taskmodels, its docs and your tests without API keys.

Start it from a shell after ``pip install taskmodels``::

    taskmodels fake-server --port 8080          # or: python -m taskmodels.fake_server --port 8080

It prints the variables that point taskmodels at it, then serves until interrupted.
It answers the documented request shapes of the wire protocols taskmodels speaks,
with the documented response bodies, so the real providers parse its answers:

- OpenAI and every OpenAI-compatible server: ``POST …/chat/completions`` (JSON, or
  SSE ending in ``data: [DONE]`` when the body says ``"stream": true``),
  ``POST …/embeddings`` and ``GET …/models``;
- Anthropic: ``POST /v1/messages`` (JSON, or its SSE event sequence) and ``GET /v1/models``;
- Gemini: ``POST /v1beta/models/NAME:generateContent``, ``:streamGenerateContent?alt=sse``
  and ``:batchEmbedContents``, and ``GET /v1beta/models``;
- Ollama: ``POST /api/chat`` (JSON, or NDJSON), ``POST /api/embed`` and ``GET /api/tags``.

On the OpenAI protocol (non-streamed) it also plays the two request features an
application's code branches on: a request with ``tools`` (whose last message is not
a tool result) is answered with a call of the first tool, and a request with a JSON
``response_format`` is answered with a JSON object (shaped by the schema, when one
is given).

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
import contextlib
import json
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["MODEL_LIST", "FakeLLMServer", "SeenRequest", "default_answer", "main"]

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
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-llm-server", daemon=True)
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
        path = urlsplit(self.path).path
        creds = any(self.headers.get(h) for h in ("authorization", "x-api-key", "api-key", "x-goog-api-key"))
        if path.endswith("/chat/completions"):
            self._serve(
                "openai", path=path, body=body, model=str(body.get("model", "")), creds=creds, handle=self._openai_chat
            )
        elif path.endswith("/embeddings"):
            self._serve(
                "openai",
                path=path,
                body=body,
                model=str(body.get("model", "")),
                creds=creds,
                handle=self._openai_embeddings,
            )
        elif path.endswith("/v1/messages"):
            self._serve(
                "anthropic", path=path, body=body, model=str(body.get("model", "")), creds=creds, handle=self._anthropic
            )
        elif "/models/" in path and ":" in path:
            model, _, method = path.rsplit("/", 1)[1].partition(":")
            self._serve(
                "gemini",
                path=path,
                body=body,
                model=model,
                creds=creds,
                handle=lambda b: self._gemini(b, model, method),
            )
        elif path == "/api/chat":
            self._serve(
                "ollama", path=path, body=body, model=str(body.get("model", "")), creds=creds, handle=self._ollama_chat
            )
        elif path == "/api/embed":
            self._serve(
                "ollama", path=path, body=body, model=str(body.get("model", "")), creds=creds, handle=self._ollama_embed
            )
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

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

    # --- OpenAI ------------------------------------------------------------------------

    def _openai_chat(self, body: dict[str, Any]) -> None:
        # Long on purpose: one branch per answer the OpenAI protocol can give (a tool call, JSON, a stream, text).
        model = str(body.get("model", ""))
        prompt = _last_user_text(body.get("messages") or [])
        text = self.fake.answer(model, prompt)
        text = _as_json(body.get("response_format"), text) or text
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created = int(time.time())
        call = _tool_call(body)
        if call is not None and not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}
            self._json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                },
            )
            return
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
            return

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        def events() -> Iterator[str]:
            yield json.dumps(chunk({"role": "assistant", "content": ""}, None))
            for piece in _chunks(text):
                yield json.dumps(chunk({"content": piece}, None))
            yield json.dumps(chunk({}, "stop"))
            # The usage chunk that stream_options.include_usage asks for: no choices, just usage.
            yield json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [], "usage": usage})
            yield "[DONE]"

        self._sse(f"data: {e}\n\n" for e in events())

    def _openai_embeddings(self, body: dict[str, Any]) -> None:
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else list(texts)
        self._json(
            200,
            {
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)],
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": sum(map(_tokens, texts)), "total_tokens": sum(map(_tokens, texts))},
            },
        )

    # --- Anthropic -------------------------------------------------------------------

    def _anthropic(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        prompt = _last_user_text(body.get("messages") or [])
        text = self.fake.answer(model, prompt)
        usage_in, usage_out = _tokens(prompt), _tokens(text)
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
                },
            )
            return

        def events() -> Iterator[tuple[str, dict[str, Any]]]:
            yield (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": usage_in, "output_tokens": 1},
                    },
                },
            )
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for piece in _chunks(text):
                yield (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            yield (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": usage_out},
                },
            )
            yield "message_stop", {"type": "message_stop"}

        self._sse(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events())

    # --- Gemini ----------------------------------------------------------------------

    def _gemini(self, body: dict[str, Any], model: str, method: str) -> None:
        if method == "batchEmbedContents":
            texts = [
                "".join(p.get("text", "") for p in r.get("content", {}).get("parts", []))
                for r in body.get("requests", [])
            ]
            self._json(200, {"embeddings": [{"values": _vector(t)} for t in texts]})
            return
        prompt = ""
        for content in body.get("contents") or []:
            if content.get("role", "user") == "user":
                prompt = "".join(p.get("text", "") for p in content.get("parts", []))
        text = self.fake.answer(model, prompt)
        usage = {
            "promptTokenCount": _tokens(prompt),
            "candidatesTokenCount": _tokens(text),
            "totalTokenCount": _tokens(prompt) + _tokens(text),
        }

        def response(piece: str, finish: str | None) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake"}

        if method == "generateContent":
            self._json(200, response(text, "STOP"))
            return
        pieces = _chunks(text)
        self._sse(
            f"data: {json.dumps(response(p, 'STOP' if i == len(pieces) - 1 else None))}\r\n\r\n"
            for i, p in enumerate(pieces)
        )

    # --- Ollama ------------------------------------------------------------------------

    def _ollama_chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        prompt = _last_user_text(body.get("messages") or [])
        text = self.fake.answer(model, prompt)
        final = {
            "model": model,
            "created_at": "2024-07-22T20:33:28.123648Z",
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "prompt_eval_count": _tokens(prompt),
            "eval_count": _tokens(text),
        }
        if body.get("stream") is False:
            self._json(200, final)
            return
        lines = [
            json.dumps(
                {"model": model, "created_at": final["created_at"], "message": {"role": "assistant", "content": p}}
                | {"done": False}
            )
            for p in _chunks(text)
        ]
        lines.append(json.dumps(final | {"message": {"role": "assistant", "content": ""}}))
        self._stream("application/x-ndjson", (line + "\n" for line in lines))

    def _ollama_embed(self, body: dict[str, Any]) -> None:
        texts = body.get("input") or []
        texts = [texts] if isinstance(texts, str) else list(texts)
        self._json(
            200,
            {
                "model": body.get("model", ""),
                "embeddings": [_vector(t) for t in texts],
                "prompt_eval_count": sum(map(_tokens, texts)),
            },
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


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


def _tool_call(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """A call of the request's first tool, unless the conversation already holds its result."""
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    if not tools or body.get("tool_choice") == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    function = tools[0].get("function") or {}
    arguments = _example(function.get("parameters") or {"type": "object"})
    return {
        "id": "call_fake_1",
        "type": "function",
        "function": {"name": function.get("name", ""), "arguments": json.dumps(arguments)},
    }


def _as_json(response_format: Any, text: str) -> str | None:
    if not isinstance(response_format, Mapping):
        return None
    if response_format.get("type") == "json_object":
        return json.dumps({"answer": text})
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(_example(schema, text))
    return None


def _example(schema: Mapping[str, Any], text: str = "example") -> Any:
    """The smallest value of a JSON Schema's type, with every listed property filled in."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, Sequence) and not isinstance(kind, str):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _example(sub, text) for name, sub in properties.items() if isinstance(sub, Mapping)}
    if kind == "array":
        items = schema.get("items")
        return [_example(items, text)] if isinstance(items, Mapping) else []
    return {"string": text, "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(str(kind), text)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on 127.0.0.1 until interrupted; print the address and the variables that point taskmodels here."""
    parser = argparse.ArgumentParser(
        prog="taskmodels fake-server",
        description="A fake LLM server on 127.0.0.1 that speaks the OpenAI, Anthropic, Gemini and Ollama protocols.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    args = parser.parse_args(argv)
    try:
        server = FakeLLMServer(port=args.port).start()
    except OSError as exc:
        print(f"taskmodels fake-server: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        print(f"fake LLM server on {server.base_url} (OpenAI base URL {server.openai_base_url}); Ctrl-C stops it")
        print("point taskmodels at it (a model's baseUrl in the registry wins over these):")
        for line in _exports(server):
            print(f"  export {line}")
        print(flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
