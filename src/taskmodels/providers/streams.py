"""Line-level readers for the two streaming framings providers use: SSE and NDJSON.

They turn an async iterator of lines (``httpx.Response.aiter_lines()``, which
already splits on ``\\n``, ``\\r\\n`` and ``\\r``) into events. They know nothing
of any provider's payloads.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["SseEvent", "iter_ndjson", "iter_sse"]


@dataclass(slots=True, frozen=True)
class SseEvent:
    event: str  # "message" when the server named none
    data: str
    id: str | None = None


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """Server-sent events as the HTML spec frames them.

    Comments (``:`` lines, used as keep-alives) are skipped; several ``data:``
    lines join with ``\\n``; a blank line dispatches. An event still open when
    the stream ends is dropped, as the spec says: the caller's decoder decides
    whether what came before was complete.
    """
    data: list[str] = []
    event = ""
    last_id: str | None = None
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            data = []
            event = ""
            continue
        if line[0] == ":":
            continue
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        # "retry" and unknown fields are ignored, as the spec says.


async def iter_ndjson(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """Non-empty lines of a newline-delimited JSON stream (Ollama's native API)."""
    async for line in lines:
        if line.strip():
            yield line
