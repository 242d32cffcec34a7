"""Anthropic's Messages API (``POST /v1/messages``) and its SSE stream.

Choices this mapping makes, because the API differs from the normalized request:

- **System prompt**: every ``system`` message is joined into the top-level ``system``.
- **max_tokens** is required by Anthropic: the request's, else the registry's ``maxTokens``.
- **temperature** is 0..1 at Anthropic (the registry allows up to 2): values above 1 are clamped to 1.
- **JSON mode**: Anthropic has no JSON mode, so ``response_format`` becomes one forced tool named
  ``JSON_TOOL_NAME`` whose input schema is the wanted schema (any object for ``json_object``). Its
  input comes back as the result's ``text`` (and as ``text`` stream events), with ``finish_reason``
  ``stop``: callers see JSON text, as from any other provider. It overrides ``tool_choice``.
- **Images**: ``image`` blocks beside the text blocks of a user turn, in the caller's order: inline bytes as a
  ``base64`` source, a URL as a ``url`` source (Anthropic fetches it). An image whose base64 text is over
  Anthropic's 5 MB is refused before sending (``UnsupportedContentError``), so the chain moves on.
- **Usage**: Anthropic's ``input_tokens`` leaves out prompt-cache reads and writes. We report
  ``input_tokens = input + cache_read + cache_creation`` (everything the prompt held),
  ``cached_tokens = cache_read`` and ``cache_write_tokens = cache_creation``, which is what the
  other providers mean by those fields. A stream's ``message_start`` holds the input counts and
  ``message_delta`` the cumulative output (and, on newer versions, the input counts again).
- **Options** (``options`` in the registry or settings): ``anthropicVersion`` (default
  ``2023-06-01``) and ``anthropicBeta`` (sent as the ``anthropic-beta`` header).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitError,
)
from taskmodels.providers.answers import AnswerError, count, described, name, obj, optional_text, text
from taskmodels.providers.base import BaseModelProvider, ErrorBody, HttpRequest, StreamDecoder, tool_arguments_object
from taskmodels.providers.reasoning import shape_anthropic
from taskmodels.types import (
    CompletionRequest,
    CompletionResult,
    ContentPart,
    FinishReason,
    ImagePart,
    Message,
    StreamEvent,
    TextPart,
    ToolCall,
    Usage,
)

__all__ = ["JSON_TOOL_NAME", "AnthropicProvider"]

API_VERSION = "2023-06-01"
MAX_IMAGE_BASE64 = 5 * 1024 * 1024
"""Anthropic's limit on one image, which it applies to the base64 text (about 3.75 MB of image)."""
JSON_TOOL_NAME = "taskmodels_json_response"
"""The forced tool that carries JSON mode; a caller's own tool must not use this name."""

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "invalid_request_error": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "not_found_error": BadRequestError,
    "request_too_large": ContextLengthExceededError,
    "rate_limit_error": RateLimitError,
    "api_error": ProviderUnavailableError,
    "overloaded_error": ProviderUnavailableError,
    "timeout_error": ProviderUnavailableError,
}

# Anthropic words a prompt that does not fit in a few ways, all invalid_request_error.
_CONTEXT_MARKERS = ("prompt is too long", "exceed context limit", "context window")


class AnthropicProvider(BaseModelProvider):
    name: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"
    api_key_env_var: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    request_id_headers: ClassVar[tuple[str, ...]] = ("request-id", "x-request-id")

    # --- request ----------------------------------------------------------------------

    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
        body: dict[str, Any] = {
            "model": self.model.model_name,
            "max_tokens": request.max_tokens or self.model.max_tokens,
        }
        system, messages = _split_conversation(request.conversation(), self)
        if system:
            body["system"] = system
        body["messages"] = messages
        temperature = request.temperature if request.temperature is not None else self.model.temperature
        body["temperature"] = min(temperature, 1.0)
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        tools = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters) or {"type": "object"}}
            for t in request.tools
        ]
        tool_choice = _tool_choice(request.tool_choice)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            schema = dict(fmt.schema) if fmt.type == "json_schema" and fmt.schema else {"type": "object"}
            tools.append(
                {"name": JSON_TOOL_NAME, "description": "Give the answer as this tool's input.", "input_schema": schema}
            )
            tool_choice = {"type": "tool", "name": JSON_TOOL_NAME}
        if tools:
            body["tools"] = tools
        if tools and tool_choice is not None:
            body["tool_choice"] = tool_choice
        if stream:
            body["stream"] = True
        shape_anthropic(body, self.model)
        body.update(request.extra)
        return HttpRequest("POST", f"{self.base_url}/v1/messages", headers=self._headers(), json=body)

    def _headers(self) -> dict[str, str]:
        headers = {
            **self.extra_headers,
            "x-api-key": self.api_key_value() or "",
            "anthropic-version": str(self.options.get("anthropicVersion", API_VERSION)),
            "content-type": "application/json",
        }
        beta = self.options.get("anthropicBeta")
        if beta:
            headers["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(beta)
        return headers

    # --- response ---------------------------------------------------------------------

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise self.error(InvalidResponseError, f"{self.name} answered a body without content")
        texts: list[str] = []
        calls: list[ToolCall] = []
        json_answer = False
        for raw in data["content"]:
            block = obj(raw, "content[]")
            kind = block.get("type")
            if kind == "text":
                texts.append(text(block.get("text"), "content[].text"))
            elif kind == "tool_use":
                arguments = json.dumps(obj(block.get("input"), "content[].input"))
                tool = text(block.get("name"), "content[].name")
                if tool == JSON_TOOL_NAME:
                    texts.append(arguments)
                    json_answer = True
                else:
                    calls.append(ToolCall(id=text(block.get("id"), "content[].id"), name=tool, arguments=arguments))
        finish = _finish_reason(data.get("stop_reason"), json_answer=json_answer and not calls)
        return CompletionResult(
            text="".join(texts),
            model_id=self.model.id,
            provider=self.name,
            model_name=name(data.get("model"), self.model.model_name, "model"),
            usage=_usage(data.get("usage")),
            finish_reason=finish,
            tool_calls=tuple(calls),
            request_id=self.request_id(headers, data),
        )

    def new_stream_decoder(self) -> StreamDecoder:
        return _AnthropicStreamDecoder(self)

    # --- errors -----------------------------------------------------------------------

    def classify_error(self, status: int | None, error: ErrorBody) -> type[ProviderError] | None:
        if status == 529:
            return ProviderUnavailableError  # "overloaded", whatever the body's type says
        kind, message = error.code, (error.message or "").lower()
        if kind == "invalid_request_error" and any(marker in message for marker in _CONTEXT_MARKERS):
            return ContextLengthExceededError
        return _ERROR_TYPES.get(kind or "")


class _AnthropicStreamDecoder(StreamDecoder):
    """Assembles text and tool calls from content blocks; ``message_stop`` is terminal."""

    def __init__(self, provider: AnthropicProvider) -> None:
        self.provider = provider
        self.finished = False
        self.started = False
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.model_name: str | None = None
        self.request_id: str | None = None
        # index -> (id, name, partial json) of tool_use blocks still open
        self.tools: dict[int, tuple[str, str, list[str]]] = {}
        self.tool_calls = 0
        self.json_answer = False

    def feed(self, event: str, data: str) -> list[StreamEvent]:  # noqa: PLR0911 - one return per Anthropic error type
        payload = json.loads(data)
        kind = payload.get("type") or event
        if kind == "ping":
            return []
        if kind == "error":
            raise self.provider.error_in_body(payload)
        if kind == "message_start":
            message = obj(payload["message"], "message")
            self.started = True
            self.model_name = optional_text(message.get("model"), "message.model")
            self.request_id = optional_text(message.get("id"), "message.id")
            self.usage = _usage(message.get("usage"))
            return []
        if kind == "content_block_start":
            return self._block_start(payload["index"], obj(payload["content_block"], "content_block"))
        if kind == "content_block_delta":
            return self._block_delta(payload["index"], obj(payload["delta"], "delta"))
        if kind == "content_block_stop":
            return self._block_stop(payload["index"])
        if kind == "message_delta":
            reason = optional_text(obj(payload.get("delta"), "delta").get("stop_reason"), "delta.stop_reason")
            self.stop_reason = reason or self.stop_reason
            self._update_usage(obj(payload.get("usage"), "usage"))
            return []
        if kind == "message_stop":
            self.finished = True
            return []
        # Unknown event types are allowed by Anthropic's versioning policy: skip them.
        return []

    def _block_start(self, index: Any, block: Mapping[str, Any]) -> list[StreamEvent]:
        if block.get("type") == "tool_use":
            tool = text(block.get("name"), "content_block.name")
            self.tools[count(index, "index")] = (text(block.get("id"), "content_block.id"), tool, [])
            if tool == JSON_TOOL_NAME:
                self.json_answer = True
            return []
        start = optional_text(block.get("text"), "content_block.text") if block.get("type") == "text" else None
        return [StreamEvent(type="text", text=start)] if start else []

    def _block_delta(self, index: Any, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            piece = text(delta.get("text"), "delta.text")
            return [StreamEvent(type="text", text=piece)] if piece else []
        if kind == "input_json_delta":
            _, tool, parts = self.tools[count(index, "index")]
            piece = text(delta.get("partial_json"), "delta.partial_json")
            if tool == JSON_TOOL_NAME:
                # JSON mode: the forced tool's input is the answer, so it streams as text.
                return [StreamEvent(type="text", text=piece)] if piece else []
            parts.append(piece)
        return []  # thinking and signature deltas are not part of the answer

    def _block_stop(self, index: Any) -> list[StreamEvent]:
        tool = self.tools.pop(count(index, "index"), None)
        if tool is None or tool[1] == JSON_TOOL_NAME:
            return []
        tool_id, name, parts = tool
        raw = "".join(parts) or "{}"
        json.loads(raw)  # a tool call whose arguments do not parse is an invalid response
        self.tool_calls += 1
        return [StreamEvent(type="tool_call", tool_call=ToolCall(id=tool_id, name=name, arguments=raw))]

    def _update_usage(self, raw: Mapping[str, Any]) -> None:
        # message_delta's usage is cumulative; input fields appear there only on newer API versions.
        if "output_tokens" in raw:
            self.usage.output_tokens = count(raw["output_tokens"], "usage.output_tokens")
        if any(k in raw for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")):
            fresh = _usage({**raw, "output_tokens": self.usage.output_tokens})
            if fresh.input_tokens:
                self.usage = fresh

    def close(self) -> StreamEvent:
        if not self.finished:
            raise self.provider.error(IncompleteStreamError, f"{self.provider.name} stream ended before message_stop")
        return StreamEvent(
            type="done",
            finish_reason=_finish_reason(self.stop_reason, json_answer=self.json_answer and not self.tool_calls),
            usage=self.usage,
            model_id=self.provider.model.id,
            model_name=self.model_name or self.provider.model.model_name,
            request_id=self.request_id,
        )


# --- mapping helpers -------------------------------------------------------------------


def _split_conversation(conversation: list[Message], provider: BaseModelProvider) -> tuple[str, list[dict[str, Any]]]:
    """The joined system prompt, and user/assistant turns with consecutive same-role turns merged.

    Merging matters: every tool_result answering one assistant turn must sit in the
    single user message that follows it.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for msg in conversation:
        if msg.role == "system":
            if msg.content:
                system.append(msg.text)
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _content_blocks(msg, provider)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _content_blocks(msg: Message, provider: BaseModelProvider) -> list[dict[str, Any]]:
    if msg.role == "tool":
        return [{"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": msg.text}]
    blocks: list[dict[str, Any]] = []
    content = msg.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content:
        blocks.extend(_part_blocks(content, provider))
    for call in msg.tool_calls:
        arguments = tool_arguments_object(call.arguments)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def _part_blocks(parts: tuple[ContentPart, ...], provider: BaseModelProvider) -> list[dict[str, Any]]:
    """Text and ``image`` blocks in the caller's order: an inline image as a ``base64`` source, a URL as a
    ``url`` source (Anthropic fetches it). Anthropic refuses empty text blocks, and images whose base64 text
    is over 5 MB: such an image is refused here, before sending, so the chain can move on to a model that
    takes it."""
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if type(part) is TextPart:
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif type(part) is ImagePart:
            if part.data is None:
                blocks.append({"type": "image", "source": {"type": "url", "url": part.url}})
                continue
            if len(part.data) > MAX_IMAGE_BASE64:
                raise provider.unsupported(
                    f"a {part.media_type} image of {part.size:,} bytes: its base64 text is over Anthropic's "
                    f"limit of {MAX_IMAGE_BASE64:,} characters an image"
                )
            source = {"type": "base64", "media_type": part.media_type, "data": part.data}
            blocks.append({"type": "image", "source": source})
    return blocks


def _tool_choice(choice: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mapped = {"auto": "auto", "required": "any", "any": "any", "none": "none"}.get(choice)
        return {"type": mapped} if mapped else {"type": "tool", "name": choice}
    name = choice.get("name") or (choice.get("function") or {}).get("name")
    if name:
        return {"type": "tool", "name": name}
    return dict(choice)  # already Anthropic's shape


def _finish_reason(stop_reason: Any, *, json_answer: bool) -> FinishReason:
    if stop_reason is None:
        return "other"
    if type(stop_reason) is not str:
        raise AnswerError(f"stop_reason is {described(stop_reason)}, not a string")
    if json_answer and stop_reason == "tool_use":
        return "stop"
    return _STOP_REASONS.get(stop_reason, "other")


def _usage(raw: Any) -> Usage:
    usage = obj(raw, "usage")
    cache_read = count(usage.get("cache_read_input_tokens"), "usage.cache_read_input_tokens")
    cache_write = count(usage.get("cache_creation_input_tokens"), "usage.cache_creation_input_tokens")
    return Usage(
        input_tokens=count(
            count(usage.get("input_tokens"), "usage.input_tokens") + cache_read + cache_write,
            "usage.input_tokens with the cache's",
        ),
        output_tokens=count(usage.get("output_tokens"), "usage.output_tokens"),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
