"""Ollama's native API: ``POST /api/chat`` (NDJSON streaming) and ``POST /api/embed``.

(Ollama's OpenAI-compatible ``/v1`` is served by the ``openai-compatible`` provider instead.)

Choices this mapping makes:

- No key is needed. One given (for an Ollama behind an authenticating proxy, or ollama.com) is sent
  as ``Authorization: Bearer``.
- ``options`` from the registry entry or settings are Ollama runtime options (``num_ctx``, ``seed``,
  ``repeat_penalty`` …) and go into the body's ``options``; ``keep_alive`` and ``think`` go top-level.
  The request's own ``max_tokens``/``temperature``/``top_p``/``stop`` win over them.
  ``request.extra`` is merged into the body last (its ``options`` into ``options``).
- ``num_ctx`` is never set unless configured: Ollama's default applies. Ollama silently truncates
  a prompt longer than its context instead of failing (unless the request sets ``truncate: false``),
  so ``ContextLengthExceededError`` is only raised for the explicit errors newer versions send;
  when they state the sizes (llama.cpp's ``n_prompt_tokens``/``n_ctx``) the error carries them.
- Usage: ``prompt_eval_count`` and ``eval_count`` (which includes any thinking); Ollama reports
  no cache or reasoning counts apart.
- Ollama sends no request id of its own; a proxy's ``x-request-id`` is kept when there is one.
- Images go as the message's ``images`` (base64 text, no ``data:`` prefix) beside its text. Ollama cannot
  take an image URL: one is refused before sending (``UnsupportedContentError``), never fetched.
- ``tool_choice`` has no Ollama equivalent: ``"none"`` leaves the tools out, anything else is ignored.
- Ollama gives no tool-call ids on older versions: one is synthesized so the caller can answer the call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from taskmodels.errors import (
    ContextLengthExceededError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderError,
    ProviderUnavailableError,
    UnsupportedContentError,
)
from taskmodels.providers import answers
from taskmodels.providers.answers import count, items, name, obj, optional_text, text
from taskmodels.providers.base import BaseModelProvider, ErrorBody, HttpRequest, StreamDecoder, tool_arguments_object
from taskmodels.providers.reasoning import shape_ollama_options
from taskmodels.types import (
    CompletionRequest,
    CompletionResult,
    ContentPart,
    EmbeddingResult,
    FinishReason,
    ImagePart,
    Message,
    StreamEvent,
    ToolCall,
    Usage,
    describe_url,
)

__all__ = ["OllamaProvider"]

_TOP_LEVEL_OPTIONS = frozenset({"keep_alive", "think"})
# A model asked for what it cannot do, which another model may: images without a vision projector (a 500,
# "... this model is missing data required for image input"), embeddings from a model on Ollama's own engine
# (a 501, "this model does not support embeddings").
_UNSUPPORTED_MARKERS = ("missing data required for image input", "does not support embeddings")
_CONTEXT_MARKERS = ("context length", "context window", "exceeds the context", "exceeds the available context size")


class OllamaProvider(BaseModelProvider):
    name: ClassVar[str] = "ollama"
    default_base_url: ClassVar[str | None] = "http://localhost:11434"
    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "ndjson"
    requires_api_key: ClassVar[bool] = False

    # --- request ----------------------------------------------------------------------

    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
        body: dict[str, Any] = {
            "model": self.model.model_name,
            "messages": _messages(request.conversation(), self),
            "stream": stream,
        }
        options: dict[str, Any] = {
            "num_predict": self.model.max_tokens,
            "temperature": self.model.temperature,
        }
        for key, value in self.options.items():
            if key in _TOP_LEVEL_OPTIONS:
                body[key] = value
            else:
                options[key] = value
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            body["format"] = dict(fmt.schema) if fmt.type == "json_schema" and fmt.schema else "json"
        if request.tools and request.tool_choice != "none":
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters) or {"type": "object", "properties": {}},
                    },
                }
                for t in request.tools
            ]
        extra = dict(request.extra)
        extra_options = extra.pop("options", None)
        if isinstance(extra_options, Mapping):
            options.update(extra_options)
        shape_ollama_options(options, self.model)
        body["options"] = options
        body.update(extra)
        return HttpRequest("POST", f"{self.base_url}/api/chat", headers=self._headers(), json=body)

    def build_embedding_request(self, texts: Sequence[str]) -> HttpRequest:
        body: dict[str, Any] = {"model": self.model.model_name, "input": list(texts)}
        if "keep_alive" in self.options:
            body["keep_alive"] = self.options["keep_alive"]
        return HttpRequest("POST", f"{self.base_url}/api/embed", headers=self._headers(), json=body)

    def _headers(self) -> dict[str, str]:
        headers = {**self.extra_headers, "content-type": "application/json"}
        key = self.api_key_value()
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    # --- response ---------------------------------------------------------------------

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            if isinstance(data, dict) and data.get("error"):
                raise self.error_in_body(data)
            raise self.error(InvalidResponseError, f"{self.name} answered a body without a message")
        message = data["message"]
        calls = _tool_calls(message)
        return CompletionResult(
            text=optional_text(message.get("content"), "message.content") or "",
            model_id=self.model.id,
            provider=self.name,
            model_name=name(data.get("model"), self.model.model_name, "model"),
            usage=_usage(data),
            finish_reason=_finish_reason(data.get("done_reason"), has_calls=bool(calls)),
            tool_calls=tuple(calls),
            request_id=self.request_id(headers),
        )

    def parse_embedding(self, data: Any, headers: Mapping[str, str]) -> EmbeddingResult:
        vectors = [answers.vector(vector, "embeddings[]") for vector in items(data["embeddings"], "embeddings")]
        return EmbeddingResult(
            vectors=vectors,
            model_id=self.model.id,
            provider=self.name,
            model_name=name(data.get("model"), self.model.model_name, "model"),
            usage=Usage(input_tokens=count(data.get("prompt_eval_count"), "prompt_eval_count")),
        )

    def new_stream_decoder(self) -> StreamDecoder:
        return _OllamaStreamDecoder(self)

    # --- errors -----------------------------------------------------------------------

    def classify_error(self, status: int | None, error: ErrorBody) -> type[ProviderError] | None:
        # Older versions answer {"error": "text"}; newer ones, on the llama.cpp engine, its error object.
        text = (error.message or "").lower()
        if error.code == "exceed_context_size_error" or any(marker in text for marker in _CONTEXT_MARKERS):
            return ContextLengthExceededError
        if any(marker in text for marker in _UNSUPPORTED_MARKERS):
            return UnsupportedContentError
        if status is None:
            return ProviderUnavailableError
        return None  # 404 "model 'x' not found" is a BadRequestError by its status: another call will not fix it


class _OllamaStreamDecoder(StreamDecoder):
    """Each NDJSON line is a partial answer; the one with ``done: true`` is terminal and holds the counts."""

    def __init__(self, provider: OllamaProvider) -> None:
        self.provider = provider
        self.finished = False
        self.has_calls = False
        self.done_reason: str | None = None
        self.usage = Usage()
        self.model_name: str | None = None

    def feed(self, event: str, data: str) -> list[StreamEvent]:
        line = json.loads(data)
        if not isinstance(line, dict):
            raise ValueError("stream line is not an object")  # noqa: TRY004 - a malformed body is an invalid response, not a caller TypeError
        if line.get("error"):
            raise self.provider.error_in_body(line)
        self.model_name = optional_text(line.get("model"), "model") or self.model_name
        out: list[StreamEvent] = []
        message = obj(line.get("message"), "message")
        piece = optional_text(message.get("content"), "message.content")
        if piece:
            out.append(StreamEvent(type="text", text=piece))
        for call in _tool_calls(message):
            self.has_calls = True
            out.append(StreamEvent(type="tool_call", tool_call=call))
        if line.get("done"):
            self.finished = True
            self.done_reason = optional_text(line.get("done_reason"), "done_reason")
            self.usage = _usage(line)
        return out

    def close(self) -> StreamEvent:
        if not self.finished:
            raise self.provider.error(IncompleteStreamError, f"{self.provider.name} stream ended before done: true")
        return StreamEvent(
            type="done",
            finish_reason=_finish_reason(self.done_reason, has_calls=self.has_calls),
            usage=self.usage,
            model_id=self.provider.model.id,
            model_name=self.model_name or self.provider.model.model_name,
        )


# --- mapping helpers -------------------------------------------------------------------


def _messages(conversation: list[Message], provider: BaseModelProvider) -> list[dict[str, Any]]:
    call_names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for msg in conversation:
        content = msg.content
        item: dict[str, Any] = {"role": msg.role, "content": content if isinstance(content, str) else msg.text}
        if content and not isinstance(content, str):
            images = _images(content, provider)
            if images:
                item["images"] = images
        if msg.tool_calls:
            item["tool_calls"] = [
                {"function": {"name": c.name, "arguments": tool_arguments_object(c.arguments)}} for c in msg.tool_calls
            ]
            call_names.update((c.id, c.name) for c in msg.tool_calls)
        if msg.role == "tool":
            name = msg.name or call_names.get(msg.tool_call_id or "")
            if name:
                item["tool_name"] = name
        out.append(item)
    return out


def _images(parts: tuple[ContentPart, ...], provider: BaseModelProvider) -> list[str]:
    """A message's inline images as Ollama's ``images``: base64 text without a ``data:`` prefix. Ollama cannot
    fetch a URL, and the library does not fetch one for it (a caller's URL is never requested from here): an
    image URL is refused before sending, so the chain can move on to a model that takes it."""
    images: list[str] = []
    for part in parts:
        if isinstance(part, ImagePart):
            if part.data is None:
                raise provider.unsupported(
                    f"an image URL ({describe_url(part.url)}): Ollama takes images only inline (ImagePart.from_path, "
                    "from_bytes or a data: URL)"
                )
            images.append(part.data)
    return images


def _tool_calls(message: Mapping[str, Any]) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for raw in items(message.get("tool_calls"), "message.tool_calls"):
        call = obj(raw, "tool_calls[]")
        fn = obj(call["function"], "tool_calls[].function")
        sent = fn.get("arguments")  # Ollama sends an object; absent is no arguments
        arguments = "{}" if sent is None else answers.arguments(sent, "tool_calls[].function.arguments")
        call_id = optional_text(call.get("id"), "tool_calls[].id") or f"call_{uuid.uuid4().hex[:24]}"
        calls.append(ToolCall(id=call_id, name=text(fn.get("name"), "tool_calls[].function.name"), arguments=arguments))
    return calls


def _finish_reason(reason: Any, *, has_calls: bool) -> FinishReason:
    if reason is not None and type(reason) is not str:
        raise answers.AnswerError(f"done_reason is {answers.described(reason)}, not a string")
    if has_calls:
        return "tool_calls"
    if reason in (None, "stop"):
        # Older Ollama versions send no done_reason; done means the model stopped.
        return "stop"
    if reason == "length":
        return "length"
    return "other"  # "load", "unload"


def _usage(data: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=count(data.get("prompt_eval_count"), "prompt_eval_count"),
        output_tokens=count(data.get("eval_count"), "eval_count"),
    )
