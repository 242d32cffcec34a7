"""Reading the error a provider sent: one parser for every vendor's error body.

Vendors wrap the same few facts differently: OpenAI and llama.cpp send
``{"error": {"message", "type", "code"}}``, Anthropic ``{"type": "error", "error":
{"type", "message"}}``, Gemini ``{"error": {"code": 400, "message", "status", "details"}}``
(in a one-element list on streaming endpoints), Ollama ``{"error": "text"}``, vLLM's
older servers the error object at the top level, FastAPI proxies ``{"detail": "text"}``.
``error_fields`` reads all of them into one ``ErrorBody``; providers only decide what
class an ``ErrorBody`` is (``BaseModelProvider.classify_error``).

``context_sizes`` reads the sizes a context-length error states, in every wording
found in the vendors' bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskmodels.redaction import scrub

__all__ = ["TEXT_LIMIT", "ErrorBody", "context_sizes", "error_fields", "parse_error_body", "parse_retry_after"]

TEXT_LIMIT = 500
"""Characters kept of an error body that is not JSON (an HTML error page, say)."""

_EMPTY: Mapping[str, Any] = {}


@dataclass(slots=True, frozen=True)
class ErrorBody:
    """What an error body says.

    ``message``: the provider's own text (a non-JSON body: its text, scrubbed, then cut).
    ``code``: the provider's name for the error (``code`` when it is a name, else ``type``,
    else ``status``). ``status``: an HTTP status the body itself carries (llama.cpp and
    Gemini repeat it; a stream's error has no other). ``fields``: the error object as sent.
    """

    message: str | None = None
    code: str | None = None
    status: int | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


def parse_error_body(body: bytes) -> ErrorBody:
    """The ``ErrorBody`` of an HTTP error response's body."""
    try:
        data = json.loads(body)
    except ValueError:
        # Scrub before cutting: a key straddling the cut would leave a fragment too short to find.
        text = scrub(body.decode("utf-8", "replace").strip())[:TEXT_LIMIT]
        return ErrorBody(message=text or None)
    return error_fields(data)


def error_fields(data: Any) -> ErrorBody:
    """The ``ErrorBody`` of a decoded error: a whole body, or the error object found inside one."""
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, str):
        return ErrorBody(message=data)
    if not isinstance(data, Mapping):
        return ErrorBody()
    inner = data.get("error")
    if isinstance(inner, Mapping):
        fields: Mapping[str, Any] = inner
    elif isinstance(inner, str):
        fields = {"message": inner}
    elif isinstance(data.get("message"), str):
        fields = data  # the error object itself, or vLLM's {"object": "error", "message", "type", "code"}
    elif isinstance(data.get("detail"), str):
        fields = {"message": data["detail"]}
    else:
        return ErrorBody()
    message = fields.get("message")
    return ErrorBody(
        message=str(message) if message is not None else None,
        code=_first_name(fields, "code", "type", "status"),
        status=_first_int(fields, "code", "status"),
        fields=fields,
    )


def _first_name(fields: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _first_int(fields: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds; an HTTP date is ignored)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            return None
    return None


# --- context length ----------------------------------------------------------------------

# Each: a pattern, and which groups are (requested parts...) and the limit. Requested sizes
# are summed when a wording gives the prompt and the output apart.
_N = r"(\d[\d,]*)"
_CONTEXT_WORDINGS: tuple[tuple[re.Pattern[str], tuple[int, ...], int], ...] = (
    # Each wording as the vendor writes it (the numbers vary):
    # - OpenAI, Azure, vLLM: the maximum context length is 8192 tokens, however your messages resulted in
    #   9631 tokens; or however you requested 4268 tokens (4012 in the messages, 256 in the completion).
    (
        re.compile(
            rf"maximum context length is {_N} tokens.*?(?:resulted in|requested) {_N} tokens", re.IGNORECASE | re.DOTALL
        ),
        (2,),
        1,
    ),
    # - vLLM, newer: the maximum context length is 16384 tokens and your request has 12946 input tokens.
    (
        re.compile(
            rf"maximum context length is {_N} tokens.*?request has {_N} input tokens", re.IGNORECASE | re.DOTALL
        ),
        (2,),
        1,
    ),
    # - Anthropic: the prompt is too long, 209353 tokens over a 199999 maximum.
    (re.compile(rf"prompt is too long: {_N} tokens > {_N} maximum", re.IGNORECASE), (1,), 2),
    # - Anthropic: input length and max_tokens exceed the context limit, 188240 plus 21333 over 200000.
    (re.compile(rf"exceed context limit: {_N} \+ {_N} > {_N}", re.IGNORECASE), (1, 2), 3),
    # - llama.cpp, and Ollama on its engine: the request (4476 tokens) exceeds the context size (4096 tokens).
    (re.compile(rf"\({_N} tokens\) exceeds the available context size \({_N} tokens\)", re.IGNORECASE), (1,), 2),
    # - Gemini: the input token count (1200293) exceeds the maximum number of tokens allowed (1048576).
    (
        re.compile(rf"input token count \({_N}\) exceeds the maximum number of tokens allowed \({_N}\)", re.IGNORECASE),
        (1,),
        2,
    ),
)


def context_sizes(error: ErrorBody) -> tuple[int | None, int | None]:
    """``(requested_tokens, limit_tokens)`` as the error states them; ``None`` for what it does not say."""
    prompt = _first_int(error.fields, "n_prompt_tokens")
    limit = _first_int(error.fields, "n_ctx")
    if prompt is not None and limit is not None:
        return prompt, limit  # llama.cpp's exceed_context_size_error names both as fields
    text = error.message or ""
    for pattern, requested_groups, limit_group in _CONTEXT_WORDINGS:
        match = pattern.search(text)
        if match is not None:
            requested = sum(_count(match.group(g)) for g in requested_groups)
            return requested, _count(match.group(limit_group))
    return None, None


def _count(text: str) -> int:
    return int(text.replace(",", ""))
