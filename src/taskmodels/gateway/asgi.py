"""The few ASGI pieces the gateway speaks, by hand: no framework between the server and the call.

An ASGI server hands the app ``scope`` (the request line and headers), ``receive`` (body messages, then
``http.disconnect``) and ``send`` (``http.response.start``, then ``http.response.body`` messages). These
helpers read a bounded body, answer JSON, and find the path the app routes on when it is mounted under a
prefix (``root_path``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

__all__ = [
    "JSON",
    "ASGIApp",
    "Headers",
    "Receive",
    "Scope",
    "Send",
    "header",
    "read_body",
    "route_path",
    "send_bytes",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON: Final = b"application/json"


class ClientGone(Exception):  # noqa: N818 - an event, not a failure: the client closed the connection
    """The client disconnected before its request body was read."""


class BodyTooLarge(Exception):  # noqa: N818 - the gateway answers it with a 413
    """The body is longer than the limit (``size``: what the client declared or sent so far)."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(size)


def route_path(scope: Scope) -> str:
    """The path below the app's mount point: ``/v1/models`` for ``/llm/v1/models`` under ``root_path`` ``/llm``.

    Servers disagree whether ``path`` includes ``root_path`` (uvicorn's and Starlette's ``Mount`` do today;
    older ones did not), so it is cut off only when it is there, at a segment boundary.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with ``BodyTooLarge`` as soon as it is known to pass ``limit`` bytes: from
    its ``content-length`` before a byte is read, else as it arrives. ``ClientGone`` when the client left."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one message, no copy
        if len(body) > limit:
            raise BodyTooLarge(len(body))
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def send_bytes(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A whole response: ``body`` as JSON with ``headers``."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
