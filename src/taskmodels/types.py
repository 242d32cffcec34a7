"""The values that flow through a call: requests in, results and stream events out.

Plain slotted dataclasses rather than pydantic models: they are built on every
call, and validation already happened where the data came from (the registry at
load time, the provider's response in its parser).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, Literal

from typing_extensions import TypeVar

from taskmodels.errors import InvalidRequestError

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "CompletionRequest",
    "CompletionResult",
    "EmbeddingResult",
    "FinishReason",
    "Message",
    "OutputT",
    "RateLimitInfo",
    "ResponseFormat",
    "Role",
    "StreamEvent",
    "StreamEventType",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "coerce_request",
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
class Message:
    role: Role
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None  # for role="tool": which call this answers
    tool_calls: tuple[ToolCall, ...] = ()  # for role="assistant": calls it made


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

    def check(self) -> CompletionRequest:  # noqa: C901 - one check per field, as the registry checks them
        """``self`` when every value is usable, else ``InvalidRequestError`` naming the field, as registry values are.

        ``required_capabilities`` may be given as any iterable of names; it is normalised to a frozenset.
        """
        if (
            self.max_tokens is None
            and self.temperature is None
            and self.top_p is None
            and self.max_cost is None
            and self.deadline is None
            and self.attempt_timeout is None
            and self.first_token_timeout is None
            and self.stall_timeout is None
            and isinstance(self.required_capabilities, frozenset)
            and self.output_type is None
        ):
            return self  # the common call sets none of them
        problems = []
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens <= 0):
            problems.append(f"max_tokens must be a positive integer, not {self.max_tokens!r}")
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            problems.append(f"temperature must be between 0 and 2, not {self.temperature!r}")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            problems.append(f"top_p must be between 0 and 1, not {self.top_p!r}")
        if self.max_cost is not None and self.max_cost < 0:
            problems.append(f"max_cost must not be negative, not {self.max_cost!r}")
        for name in ("deadline", "attempt_timeout", "first_token_timeout", "stall_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name} must be a positive number of seconds, not {value!r}")
        if self.output_type is not None and self.response_format is not None:
            problems.append("give output_type or response_format, not both: output_type sends its own schema")
        if problems:
            raise InvalidRequestError("invalid request: " + "; ".join(problems))
        caps = self.required_capabilities
        if not isinstance(caps, frozenset):
            if isinstance(caps, str) or not isinstance(caps, Iterable):
                raise InvalidRequestError(
                    f"required_capabilities must be a collection of capability names, not {caps!r}"
                )
            return replace(self, required_capabilities=frozenset(caps))
        return self

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


_REQUEST_FIELDS = frozenset(f.name for f in fields(CompletionRequest))


def coerce_request(request: CompletionRequest | str | None, fields_: Mapping[str, Any]) -> CompletionRequest:
    """A checked ``CompletionRequest`` from one, from a prompt string, or from its fields (which override)."""
    if fields_:
        unknown = fields_.keys() - _REQUEST_FIELDS
        if unknown:
            names = ", ".join(sorted(unknown))
            raise TypeError(
                f"unknown CompletionRequest field(s): {names}; known fields: {', '.join(sorted(_REQUEST_FIELDS))}"
            )
    if request is None:
        built = CompletionRequest(**fields_)
    elif isinstance(request, str):
        built = CompletionRequest(prompt=request, **fields_)
    elif isinstance(request, CompletionRequest):
        built = replace(request, **fields_) if fields_ else request
    else:
        raise TypeError(f"request must be a CompletionRequest, a prompt string or None, not {type(request).__name__}")
    return built.check()
