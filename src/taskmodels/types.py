"""The values that flow through a call: requests in, results and stream events out.

Plain slotted dataclasses rather than pydantic models: they are built on every
call, and validation already happened where the data came from (the registry at
load time, the provider's response in its parser).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Generic, Literal

from typing_extensions import TypeVar

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "CompletionRequest",
    "CompletionResult",
    "ContentPart",
    "EmbeddingResult",
    "FinishReason",
    "ImageDetail",
    "ImagePart",
    "Message",
    "OutputT",
    "RateLimitInfo",
    "ResponseFormat",
    "Role",
    "StreamEvent",
    "StreamEventType",
    "TextPart",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "describe_url",
    "sniff_media_type",
]

Role = Literal["system", "user", "assistant", "tool"]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "other"]
"""Normalized across providers: OpenAI ``stop``, Anthropic ``end_turn`` and Gemini ``STOP`` are all ``stop``."""

AttemptOutcome = Literal["success", "error", "skipped", "cancelled"]  # cancelled: a hedge lost its race

StreamEventType = Literal["text", "tool_call", "restart", "done"]

OutputT = TypeVar("OutputT", default=Any)
"""What ``CompletionResult.output`` holds: the ``output_type`` a call asked for (``Any`` when it asked none)."""


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A tool call the model asked for. ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True, frozen=True)
class ToolSpec:
    """A tool the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class TextPart:
    """A piece of a message's text, beside its images."""

    text: str


ImageDetail = Literal["auto", "low", "high"]


@dataclass(slots=True, frozen=True, repr=False)
class ImagePart:
    """An image in a message: at ``url`` (``https://…``), or inline as ``data`` (base64 text) of ``media_type``.

    Build one with ``ImagePart.from_path``, ``from_bytes`` or ``from_url`` (which takes ``data:`` URLs too).
    Nothing is checked here: the request is, when a call is made (``taskmodels.validation``), so a bad image is
    an ``InvalidRequestError`` naming its message and part (an unsupported media type, an empty image, one over
    the size limit). ``size`` is the image's size in bytes when it is inline (0 for a URL). ``detail`` is OpenAI's
    resolution hint; other providers ignore it. The bytes never appear in a repr, a log line, an error or a
    span: they are large and may be private.
    """

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: ImageDetail | None = None
    size: int = 0

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str | None = None, *, detail: ImageDetail | None = None) -> ImagePart:
        """An inline image; ``media_type`` is read from the bytes when not given (PNG, JPEG, GIF, WebP)."""
        encoded = base64.b64encode(data).decode("ascii")
        return cls(data=encoded, media_type=media_type or sniff_media_type(data), detail=detail, size=len(data))

    @classmethod
    def from_path(cls, path: str | PathLike[str], *, detail: ImageDetail | None = None) -> ImagePart:
        """The image in a file, inline; its media type is read from its first bytes."""
        return cls.from_bytes(Path(path).read_bytes(), detail=detail)

    @classmethod
    def from_url(cls, url: str, *, detail: ImageDetail | None = None) -> ImagePart:
        """An image the provider fetches itself (``https://…``), or a ``data:<media type>;base64,<data>`` URL,
        taken inline."""
        if url[:5].lower() == "data:":
            header, comma, payload = url.partition(",")
            media_type, _, encoding = header[5:].partition(";")
            if comma and encoding.lower() == "base64" and media_type:
                padding = len(payload) - len(payload.rstrip("="))
                size = max(0, len(payload) * 3 // 4 - padding)
                return cls(data=payload, media_type=media_type.lower(), detail=detail, size=size)
        return cls(url=url, detail=detail)  # a malformed data: URL is refused when the request is checked

    @property
    def data_url(self) -> str:
        """The image as OpenAI's ``image_url`` takes it: its URL, or a ``data:`` URL of its bytes."""
        if self.data is None:
            return self.url or ""
        return f"data:{self.media_type};base64,{self.data}"

    def __repr__(self) -> str:
        # Never the bytes, and of a URL only its host: a signed URL's query is a credential.
        if self.data is not None:
            return f"ImagePart(media_type={self.media_type!r}, size={self.size})"
        return f"ImagePart(url={describe_url(self.url)!r})"


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_media_type(head: bytes) -> str | None:
    """The media type an image's first bytes say (PNG, JPEG, GIF, WebP), or ``None``."""
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


ContentPart = TextPart | ImagePart


def describe_url(url: str | None) -> str:
    """What may be said of a URL the caller gave: scheme and host, never its path or query."""
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split("?", 1)[0]
    return f"{scheme}://{host}/…" if rest else url[:16]


@dataclass(slots=True, frozen=True)
class Message:
    """One turn of a conversation. ``content`` is text (the common case), or a tuple of ``TextPart`` and
    ``ImagePart`` for a turn with images. A ``dict`` in OpenAI's shape is accepted wherever a ``Message`` is
    (``{"role": "user", "content": [{"type": "text", ...}, {"type": "image_url", ...}]}``)."""

    role: Role
    content: str | tuple[ContentPart, ...] | None = None
    name: str | None = None
    tool_call_id: str | None = None  # for role="tool": which call this answers
    tool_calls: tuple[ToolCall, ...] = ()  # for role="assistant": calls it made

    @property
    def text(self) -> str:
        """The message's text: its content, or its text parts joined."""
        content = self.content
        if content is None or type(content) is str:
            return content or ""
        return "".join(part.text for part in content if isinstance(part, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        content = self.content
        if content is None or type(content) is str:
            return ()
        return tuple(part for part in content if isinstance(part, ImagePart))


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """Ask for JSON: any JSON object (``json_object``) or one matching ``schema`` (``json_schema``)."""

    type: Literal["text", "json_object", "json_schema"] = "json_object"
    schema: Mapping[str, Any] | None = None
    name: str = "response"
    strict: bool = True

    @classmethod
    def json(cls) -> ResponseFormat:
        return cls(type="json_object")

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any], *, name: str = "response", strict: bool = True) -> ResponseFormat:
        return cls(type="json_schema", schema=schema, name=name, strict=strict)


@dataclass(slots=True, kw_only=True)
class CompletionRequest:
    """What the caller wants, independent of provider.

    ``prompt`` and ``system_prompt`` are the seed's shorthand; ``messages`` holds a
    whole conversation. ``max_tokens`` and ``temperature`` default to the model's
    registry entry. ``extra`` is merged into the provider's request body as is.
    ``required_capabilities``, ``max_cost`` and the time limits steer selection
    and the fallback loop; they are never sent to a provider. ``output_type``
    (a pydantic model, dataclass, TypedDict or a list of one) asks for a typed
    answer: each model gets the schema the way it supports (docs/typed-answers.md).
    """

    prompt: str | None = None
    system_prompt: str | None = None
    messages: Sequence[Message] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] = ()
    response_format: ResponseFormat | None = None
    tools: Sequence[ToolSpec] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    output_type: Any = None  # a type for TypeAdapter; the result's ``output`` is a validated instance of it
    # selection and policy, per call
    required_capabilities: frozenset[str] = frozenset()
    max_cost: float | None = None
    deadline: float | None = None  # seconds for the whole call, retries and fallbacks included
    attempt_timeout: float | None = None
    first_token_timeout: float | None = None
    stall_timeout: float | None = None

    def conversation(self) -> list[Message]:
        """System prompt, then ``messages``, then ``prompt`` as the last user turn."""
        out: list[Message] = []
        if self.system_prompt:
            out.append(Message(role="system", content=self.system_prompt))
        out.extend(self.messages)
        if self.prompt is not None:
            out.append(Message(role="user", content=self.prompt))
        return out


@dataclass(slots=True)
class Usage:
    """Tokens of one answer. The details are parts of the two totals, priced apart where the registry says how."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # part of input_tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # part of input_tokens written to the provider's prompt cache
    reasoning_tokens: int = 0  # part of output_tokens spent on hidden reasoning

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True, frozen=True)
class Attempt:
    """One try of one model within a call."""

    model_id: str
    provider: str
    outcome: AttemptOutcome
    latency: float  # seconds
    error_class: str | None = None
    error_message: str | None = None
    status_code: int | None = None
    number: int = 1  # 1-based try of this model within the call
    deployment_id: str | None = None  # which of the model's deployments, when it has several


@dataclass(slots=True, frozen=True)
class RateLimitInfo:
    """What a provider's rate-limit headers said with an answer or an error: what is left in its current
    windows and in how many seconds each resets (``None``: not said)."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None


@dataclass(slots=True)
class CompletionResult(Generic[OutputT]):
    """What served the call and what it answered.

    ``model_id``/``provider``/``model_name`` name the model that really answered (a
    fallback's, after a fallback); ``usage`` and ``cost`` are that answer's only.
    ``output`` is the validated instance of the call's ``output_type`` (``None`` when it
    asked none); ``text`` stays the raw answer.
    """

    text: str
    model_id: str
    provider: str
    model_name: str
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    request_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    output: OutputT = None  # type: ignore[assignment]  # None unless the call gave an output_type
    deployment_id: str | None = None  # the deployment that answered, when the model has several
    rate_limit: RateLimitInfo | None = None  # the provider's rate-limit headers on this answer, if it sent any


@dataclass(slots=True)
class StreamEvent:
    """One event of a stream.

    - ``text``: ``text`` holds the next piece of the answer.
    - ``tool_call``: ``tool_call`` holds a complete tool call.
    - ``restart``: the service moved to another model after text was sent; discard
      what you received so far (``model_id`` names the new model).
    - ``done``: the last event; ``finish_reason``, ``usage`` and, from the service,
      ``result`` (the whole answer with its attempts) are set.

    From the service, the first event of each answer (and a ``restart``) names the model giving it in
    ``model_id`` and ``model_name``, so a relay can say who answers before the answer is done.
    """

    type: StreamEventType
    text: str = ""
    tool_call: ToolCall | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model_id: str | None = None
    model_name: str | None = None
    request_id: str | None = None
    result: CompletionResult | None = None


@dataclass(slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    model_id: str
    provider: str
    model_name: str
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    attempts: tuple[Attempt, ...] = ()
