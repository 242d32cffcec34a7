r"""The SSE framing, line by line; NDJSON needs none (each non-empty line is one event).

``SseParser`` turns the lines of ``httpx2.Response.aiter_lines()`` (already split on
``\\n``, ``\\r\\n`` and ``\\r``) into events. It knows nothing of any provider's payloads.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseEvent", "SseParser"]


@dataclass(slots=True, frozen=True)
class SseEvent:
    event: str  # "message" when the server named none
    data: str
    id: str | None = None


class SseParser:
    r"""Server-sent events as the HTML spec frames them, one line at a time.

    Comments (``:`` lines, used as keep-alives) are skipped; several ``data:``
    lines join with ``\\n``; a blank line dispatches. An event still open when
    the stream ends is dropped, as the spec says: the caller's decoder decides
    whether what came before was complete. Synchronous, so the hot streaming
    loop pays no generator hop per line.
    """

    __slots__ = ("_data", "_event", "_id")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        """The event a blank line completes, else ``None``."""
        if not line:
            data = self._data
            if not data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", data[0] if len(data) == 1 else "\n".join(data), self._id)
            self._data = []
            self._event = ""
            return event
        if line[:6] == "data: ":  # nearly every line of a model's stream: no partition needed
            self._data.append(line[6:])
            return None
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored, as the spec says.
        return None
