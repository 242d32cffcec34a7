"""OpenAI's Chat Completions protocol, and every server that speaks it.

``OpenAIProvider`` talks to api.openai.com; ``OpenAICompatibleProvider`` is the
same mapping at any ``baseUrl`` (vLLM, llama.cpp's server, Ollama's /v1, LM
Studio, Groq, Together, Mistral, DeepSeek, OpenRouter), with the key optional.

Model options (registry ``options`` or ``TASKMODELS_PROVIDERS__<NAME>__OPTIONS``):

- ``maxTokensField``: ``"max_completion_tokens"`` or ``"max_tokens"``. OpenAI's
  newer models refuse ``max_tokens``; most compatible servers know only it.
- ``streamUsage``: ``false`` for servers that reject ``stream_options``.
- ``sendTemperature``: ``false`` for reasoning models that accept only their default temperature.
- ``dimensions``: the embedding size to ask for (models that can shorten their vectors).
- ``organization`` / ``project``: OpenAI's ``OpenAI-Organization`` / ``OpenAI-Project`` headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
    UnsupportedContentError,
)
from taskmodels.providers import answers
from taskmodels.providers.answers import count, items, name, obj, text
from taskmodels.providers.base import BaseModelProvider, ErrorBody, HttpRequest, StreamDecoder
from taskmodels.providers.reasoning import shape_openai
from taskmodels.types import (
    CompletionRequest,
    CompletionResult,
    EmbeddingResult,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = ["OpenAICompatibleProvider", "OpenAIProvider", "OpenAIStreamDecoder"]

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}

_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
# Servers that give no code still say so in words; these phrases are specific enough not to misfire.
_CONTEXT_PHRASES = (
    "maximum context length",
    "context_length_exceeded",
    "exceeds the available context size",
    "exceed_context_size",
)
_CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
# A model asked for what it cannot do says so in words; another model may do it, so this is neither the
# server failing nor a wrong request. No images: OpenAI and Azure with a 400 ("Invalid content type. image_url
# is only supported by certain models."), llama.cpp's server without a projector with a 500 ("image input is
# not supported - hint: ... mmproj"). No embeddings: OpenAI with a 403 ("You are not allowed to generate
# embeddings from this model"), which is not a key's failure; Azure with the code OperationNotSupported.
_UNSUPPORTED_PHRASES = (
    "image_url is only supported by certain models",
    "image input is not supported",
    "not allowed to generate embeddings",
)
_UNSUPPORTED_CODES = frozenset({"OperationNotSupported"})
_TOOL_CHOICE_KEYWORDS = frozenset({"auto", "none", "required"})


def normalize_finish_reason(raw: Any) -> FinishReason:
    if raw is None:
        return "other"
    if type(raw) is not str:
        raise answers.AnswerError(f"finish_reason is {answers.described(raw)}, not a string")
    return _FINISH_REASONS.get(raw, "other")


def parse_usage(raw: Any, timings: Any = None) -> Usage:
    """OpenAI's usage object, with what compatible servers add.

    ``prompt_tokens`` is the whole prompt, cache reads included; ``completion_tokens`` the whole
    output, reasoning included. DeepSeek reports cache reads as ``prompt_cache_hit_tokens``;
    llama.cpp's server as ``timings.cache_n`` beside ``prompt_n`` (the part it computed), on
    versions without ``prompt_tokens_details``.
    """
    usage = obj(raw, "usage")
    times = obj(timings, "timings")
    prompt_details = obj(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details")
    completion_details = obj(usage.get("completion_tokens_details"), "usage.completion_tokens_details")
    cached = (
        count(prompt_details.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens")
        or count(usage.get("prompt_cache_hit_tokens"), "usage.prompt_cache_hit_tokens")
        or count(times.get("cache_n"), "timings.cache_n")
    )
    input_tokens = usage.get("prompt_tokens")
    if input_tokens is None and times:
        input_tokens = count(count(times.get("prompt_n"), "timings.prompt_n") + cached, "timings.prompt_n + cache_n")
    output_tokens = usage.get("completion_tokens")
    if output_tokens is None:
        output_tokens = times.get("predicted_n")
    return Usage(
        input_tokens=count(input_tokens, "usage.prompt_tokens"),
        output_tokens=count(output_tokens, "usage.completion_tokens"),
        cached_tokens=cached,
        reasoning_tokens=count(
            completion_details.get("reasoning_tokens"), "usage.completion_tokens_details.reasoning_tokens"
        ),
    )


def _content_text(content: Any, where: str) -> str:
    """Message content is a string, null with tool calls, or (Mistral and others) a list of parts."""
    if type(content) is str:
        return content
    if content is None:
        return ""
    if type(content) is list:
        return "".join(
            answers.optional_text(part.get("text"), f"{where}[].text") or ""
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    raise answers.AnswerError(f"{where} is {answers.described(content)}, neither text nor a list of parts")


def _tool_call(raw: Any, where: str) -> ToolCall:
    call = obj(raw, where)
    function = obj(call.get("function"), f"{where}.function")
    return ToolCall(
        id=name(call.get("id"), "", f"{where}.id"),
        name=text(function.get("name"), f"{where}.function.name"),
        arguments=answers.arguments(function.get("arguments"), f"{where}.function.arguments"),
    )


def _parse_tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    listed = items(message.get("tool_calls"), "message.tool_calls")
    calls = [_tool_call(call, "message.tool_calls[]") for call in listed]
    legacy = message.get("function_call")
    if not calls and legacy is not None:
        calls.append(_tool_call({"function": legacy}, "message"))
    return tuple(calls)


def _message_json(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    content = message.content
    calls = message.tool_calls if message.role == "assistant" else ()
    if type(content) is str:  # the common case first: text costs nothing more than it did
        out["content"] = content
    elif calls:
        out["content"] = content if content is None else message.text
    else:
        out["content"] = _content_json(message)
    if calls:
        out["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    if message.name and message.role != "tool":
        out["name"] = message.name
    return out


def _content_json(message: Message) -> str | list[dict[str, Any]]:
    """A message's parts as OpenAI's content parts when it has images: ``text`` parts and ``image_url`` parts
    (an https URL, or the bytes as a ``data:`` URL), in the caller's order. Without images, its text: every
    compatible server takes a string, not all take a list."""
    content = message.content
    if not content or type(content) is str or not any(type(part) is ImagePart for part in content):
        return message.text
    parts: list[dict[str, Any]] = []
    for part in content:
        if type(part) is ImagePart:
            image: dict[str, Any] = {"url": part.data_url}
            if part.detail is not None:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        elif type(part) is TextPart:
            parts.append({"type": "text", "text": part.text})
    return parts


def _tool_json(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters) or {"type": "object"}}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice_json(choice: str | Mapping[str, Any]) -> Any:
    if isinstance(choice, str):
        if choice in _TOOL_CHOICE_KEYWORDS:
            return choice
        # Any other string names the one tool the model must call.
        return {"type": "function", "function": {"name": choice}}
    return dict(choice)


def _response_format_json(fmt: ResponseFormat) -> dict[str, Any] | None:
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.type == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": fmt.name, "schema": dict(fmt.schema or {}), "strict": fmt.strict},
        }
    return None  # plain text is every server's default; some reject an explicit {"type": "text"}


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class OpenAIProvider(BaseModelProvider):
    """OpenAI Chat Completions and embeddings at api.openai.com."""

    name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    requires_api_key: ClassVar[bool] = True
    default_max_tokens_field: ClassVar[str] = "max_completion_tokens"
    api_key_env_var: ClassVar[str | None] = "OPENAI_API_KEY"

    # --- request -----------------------------------------------------------------------

    def completion_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def embedding_url(self) -> str:
        return f"{self.base_url}/embeddings"

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def request_headers(self) -> dict[str, str]:
        """Auth, account and configured headers (a required key was checked when the provider was built)."""
        headers = dict(self.extra_headers)
        key = self.api_key_value()
        if key:
            headers.update(self.auth_headers(key))
        if self.options.get("organization"):
            headers["OpenAI-Organization"] = str(self.options["organization"])
        if self.options.get("project"):
            headers["OpenAI-Project"] = str(self.options["project"])
        return headers

    def completion_body(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model.model_name,
            "messages": [_message_json(m) for m in request.conversation()],
        }
        max_tokens = request.max_tokens if request.max_tokens is not None else self.model.max_tokens
        body[str(self.options.get("maxTokensField") or self.default_max_tokens_field)] = max_tokens
        if self.options.get("sendTemperature", True):
            body["temperature"] = request.temperature if request.temperature is not None else self.model.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.response_format is not None:
            fmt = _response_format_json(request.response_format)
            if fmt is not None:
                body["response_format"] = fmt
        if request.tools:
            body["tools"] = [_tool_json(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice_json(request.tool_choice)
        if stream:
            body["stream"] = True
            if self.options.get("streamUsage", True):
                body["stream_options"] = {"include_usage": True}
        shape_openai(body, self.model)
        body.update(request.extra)
        return body

    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
        return HttpRequest(
            "POST", self.completion_url(), self.request_headers(), self.completion_body(request, stream=stream)
        )

    def build_embedding_request(self, texts: Sequence[str]) -> HttpRequest:
        body: dict[str, Any] = {"model": self.model.model_name, "input": list(texts)}
        if self.options.get("dimensions") is not None:
            body["dimensions"] = int(self.options["dimensions"])
        return HttpRequest("POST", self.embedding_url(), self.request_headers(), body)

    # --- response ----------------------------------------------------------------------

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
        if not isinstance(data, Mapping):
            raise TypeError("completion body is not an object")
        if data.get("error"):
            # Some compatible servers answer 200 with an error object.
            raise self.error_in_body(data["error"])
        choice = obj(items(data["choices"], "choices")[0], "choices[0]")
        message = obj(choice.get("message"), "choices[0].message")
        usage = parse_usage(data.get("usage"), data.get("timings"))
        tool_calls = _parse_tool_calls(message)
        finish = normalize_finish_reason(choice.get("finish_reason"))
        if finish == "other" and choice.get("finish_reason") is None:
            finish = "tool_calls" if tool_calls else "stop"
        return CompletionResult(
            text=_content_text(message.get("content"), "message.content"),
            model_id=self.model.id,
            provider=self.name,
            model_name=name(data.get("model"), self.model.model_name, "model"),
            usage=usage,
            finish_reason=finish,
            tool_calls=tool_calls,
            request_id=self.request_id(headers, data),
        )

    def parse_embedding(self, data: Any, headers: Mapping[str, str]) -> EmbeddingResult:
        if not isinstance(data, Mapping):
            raise TypeError("embedding body is not an object")
        listed = items(data["data"], "data")
        slots: list[list[float] | None] = [None] * len(listed)
        for position, raw in enumerate(listed):
            item = obj(raw, "data[]")
            # Each item names the text it embeds; one that names none is taken to be in order.
            index = item.get("index", position)
            if type(index) is not int or not 0 <= index < len(slots) or slots[index] is not None:
                raise answers.AnswerError(f"data[].index is {answers.described(index)}, not the index of a text")
            slots[index] = answers.vector(item["embedding"], "data[].embedding")
        vectors = [vector for vector in slots if vector is not None]  # every slot: n items named n indexes
        raw_usage = obj(data.get("usage"), "usage")
        return EmbeddingResult(
            vectors=vectors,
            model_id=self.model.id,
            provider=self.name,
            model_name=name(data.get("model"), self.model.model_name, "model"),
            usage=Usage(input_tokens=count(raw_usage.get("prompt_tokens"), "usage.prompt_tokens")),
        )

    def new_stream_decoder(self) -> StreamDecoder:
        return OpenAIStreamDecoder(self)

    # --- errors ------------------------------------------------------------------------

    def classify_error(self, status: int | None, error: ErrorBody) -> type[ProviderError] | None:  # noqa: PLR0911 - one return per finish reason
        code = error.code
        text = (error.message or "").lower()
        if code in _CONTEXT_CODES or any(phrase in text for phrase in _CONTEXT_PHRASES):
            return ContextLengthExceededError
        if code in _CONTENT_FILTER_CODES:
            return ContentFilteredError
        if code in _UNSUPPORTED_CODES or any(phrase in text for phrase in _UNSUPPORTED_PHRASES):
            return UnsupportedContentError
        if status == 429 or code in {"rate_limit_exceeded", "insufficient_quota"}:
            return RateLimitError
        if status is None:
            # A stream's error object has no status; what it names decides, and an unnamed one is the server's.
            if code == "invalid_request_error":
                return BadRequestError
            if code in {"invalid_api_key", "authentication_error"}:
                return AuthenticationError
            return ProviderUnavailableError
        return None


class OpenAICompatibleProvider(OpenAIProvider):
    """The OpenAI protocol at any ``baseUrl``; the key is optional (no ``Authorization`` header without one)."""

    name: ClassVar[str] = "openai-compatible"
    default_base_url: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = False
    default_max_tokens_field: ClassVar[str] = "max_tokens"
    api_key_env_var: ClassVar[str | None] = None  # only TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__API_KEY


class OpenAIStreamDecoder(StreamDecoder):
    """Chat Completions chunks: text deltas, tool-call fragments by index, finish reason, usage chunk, ``[DONE]``."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider
        self.finished = False
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.model_name: str | None = None
        self.request_id: str | None = None
        self._tools: dict[int, _ToolCallParts] = {}
        self._tools_sent = False

    def feed(self, event: str, data: str) -> list[StreamEvent]:  # noqa: C901, PLR0912 - one branch per kind of delta the protocol sends
        if data[:1] != "{":  # not a chunk: "[DONE]", a keep-alive (an empty "data:" line some proxies send), or junk
            stripped = data.strip()
            if not stripped:
                return []
            if stripped == "[DONE]":
                self.finished = True
                return self._flush_tools()
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self.provider.error(
                InvalidResponseError, f"{self.provider.name} sent a stream event that is not JSON"
            ) from None
        if type(chunk) is not dict and not isinstance(chunk, Mapping):
            raise self.provider.error(
                InvalidResponseError, f"{self.provider.name} sent a stream event that is not an object"
            )
        if chunk.get("error"):
            raise self.provider.error_in_body(chunk["error"])
        if chunk.get("model"):
            self.model_name = text(chunk["model"], "model")
        if chunk.get("id") and self.request_id is None:
            self.request_id = text(chunk["id"], "id")
        if chunk.get("usage"):
            # llama.cpp sends its timings (with cache_n) in the same last chunk as the usage.
            self.usage = parse_usage(chunk["usage"], chunk.get("timings"))
        events: list[StreamEvent] = []
        for raw in items(chunk.get("choices"), "choices"):
            choice = obj(raw, "choices[]")
            if count(choice.get("index"), "choices[].index") != 0:
                continue  # n > 1 is not part of the normalized request
            delta = obj(choice.get("delta"), "choices[].delta")
            piece = _content_text(delta.get("content"), "delta.content")
            if piece:
                events.append(StreamEvent(type="text", text=piece))
            for fragment in items(delta.get("tool_calls"), "delta.tool_calls"):
                self._add_tool_fragment(obj(fragment, "delta.tool_calls[]"))
            if choice.get("finish_reason") is not None:
                self.finish_reason = normalize_finish_reason(choice["finish_reason"])
                events.extend(self._flush_tools())
        return events

    def _add_tool_fragment(self, fragment: Mapping[str, Any]) -> None:
        parts = self._tools.setdefault(count(fragment.get("index"), "tool_calls[].index"), _ToolCallParts())
        if fragment.get("id"):
            parts.id = text(fragment["id"], "tool_calls[].id")
        function = obj(fragment.get("function"), "tool_calls[].function")
        if function.get("name"):
            parts.name += text(function["name"], "tool_calls[].function.name")
        if function.get("arguments") is not None:
            parts.arguments.append(answers.arguments(function["arguments"], "tool_calls[].function.arguments"))

    def _flush_tools(self) -> list[StreamEvent]:
        if self._tools_sent or not self._tools:
            return []
        self._tools_sent = True
        return [
            StreamEvent(type="tool_call", tool_call=ToolCall(id=p.id, name=p.name, arguments="".join(p.arguments)))
            for _, p in sorted(self._tools.items())
        ]

    def close(self) -> StreamEvent:
        if self.finish_reason is None:
            raise self.provider.error(
                IncompleteStreamError, f"{self.provider.name} stream ended before the answer finished"
            )
        return StreamEvent(
            type="done",
            finish_reason=self.finish_reason,
            usage=self.usage,
            model_id=self.provider.model.id,
            model_name=self.model_name or self.provider.model.model_name,
            request_id=self.request_id,
        )
