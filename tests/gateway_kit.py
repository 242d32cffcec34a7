"""Driving the gateway's ASGI app in the test's own event loop, without a server: requests in, the raw messages
the app sends out, and a client that can leave in the middle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from taskmodels.gateway.asgi import ASGIApp

__all__ = ["Answer", "Client", "sse_events"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    pieces: list[bytes] = field(default_factory=list)  # each body message's bytes, in order
    complete: bool = False  # the app sent its last body message (more_body false)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


def sse_events(body: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order (comments left out)."""
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[len("data: ") :])
    return out


class Client:
    """Requests to ``app`` as an ASGI server would make them."""

    def __init__(self, app: ASGIApp, *, root_path: str = "") -> None:
        self.app = app
        self.root_path = root_path

    def scope(self, method: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": self.root_path + path,
            "raw_path": (self.root_path + path).encode(),
            "root_path": self.root_path,
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | Mapping[str, Any] | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        chunks: int = 1,
        leave_after: int | None = None,
        on_piece: Any = None,
    ) -> Answer:
        """One request. ``chunks``: the body in that many messages. ``leave_after``: the client disconnects once
        that many body messages of the answer arrived. ``on_piece(answer)`` is called after each one."""
        raw = json.dumps(body).encode() if isinstance(body, Mapping) else (body or b"")
        size = max(1, len(raw) // max(chunks, 1) + 1)
        parts = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for index, part in enumerate(parts):
            incoming.put_nowait({"type": "http.request", "body": part, "more_body": index < len(parts) - 1})
        answer = Answer(0, {}, b"")
        left = asyncio.Event()

        async def receive() -> MutableMapping[str, Any]:
            if not incoming.empty():
                return incoming.get_nowait()
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if left.is_set():
                return  # as uvicorn does: writes to a closed connection go nowhere
            if message["type"] == "http.response.start":
                assert answer.status == 0, "the response started twice"
                answer.status = message["status"]
                answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
                return
            assert message["type"] == "http.response.body"
            assert answer.status, "a body before the response started"
            assert not answer.complete, "a body after the response completed"
            piece = message.get("body", b"")
            answer.pieces.append(piece)
            answer.body += piece
            if not message.get("more_body", False):
                answer.complete = True
                left.set()  # after the response, receive() says the connection is done, as uvicorn's does
            if on_piece is not None:
                on_piece(answer)
            if leave_after is not None and len(answer.pieces) >= leave_after:
                left.set()

        scope = self.scope(method, path, [("content-type", "application/json"), *headers])
        await self.app(scope, receive, send)
        return answer

    async def post(self, path: str, body: bytes | Mapping[str, Any], **kw: Any) -> Answer:
        return await self.request("POST", path, body, **kw)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.request("GET", path, **kw)
