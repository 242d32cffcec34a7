"""Google's Gemini API: ``generateContent``, ``streamGenerateContent?alt=sse`` and ``batchEmbedContents``.

Choices this mapping makes:

- The key travels in the ``x-goog-api-key`` header, never as ``?key=`` in the URL, where proxies
  and access logs would keep it.
- ``system`` messages go to ``systemInstruction``; assistant turns are role ``model``; tool results
  are ``functionResponse`` parts in a user turn (the function name comes from ``Message.name``, else
  from the assistant tool call with the same id). Consecutive same-role turns are merged.
- Images: ``inlineData`` parts for inline bytes, ``fileData`` (``fileUri``, and ``mimeType`` when the URL's
  file name says it) for an image URL, which Gemini fetches itself. A GIF is refused before sending
  (``UnsupportedContentError``): Gemini takes PNG, JPEG, WebP, HEIC and HEIF.
- Schemas go as full JSON Schema (``responseJsonSchema``, ``parametersJsonSchema``) rather than the
  older OpenAPI-subset fields, so a schema that works with OpenAI works here too.
- Usage: ``input_tokens`` = ``promptTokenCount`` (it already counts cached content), ``cached_tokens``
  = ``cachedContentTokenCount``, ``output_tokens`` = candidates + thoughts, ``reasoning_tokens`` =
  ``thoughtsTokenCount``: thinking tokens are billed as output.
- A prompt blocked outright (``promptFeedback.blockReason``, no candidates) raises
  ``ContentFilteredError``; an answer stopped for safety returns ``finish_reason="content_filter"``.
- Options: ``apiVersion`` (default ``v1beta``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
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
from taskmodels.providers.answers import count, items, name, obj, optional_text, text
from taskmodels.providers.base import BaseModelProvider, ErrorBody, HttpRequest, StreamDecoder, tool_arguments_object
from taskmodels.providers.reasoning import shape_gemini_config
from taskmodels.types import (
    CompletionRequest,
    CompletionResult,
    ContentPart,
    EmbeddingResult,
    FinishReason,
    Message,
    StreamEvent,
    TextPart,
    ToolCall,
    Usage,
    describe_url,
)

__all__ = ["GeminiProvider"]

_FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
}

_STATUS_CLASSES: dict[str, type[ProviderError]] = {
    "INVALID_ARGUMENT": BadRequestError,
    "FAILED_PRECONDITION": BadRequestError,
    "NOT_FOUND": BadRequestError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": AuthenticationError,
    "RESOURCE_EXHAUSTED": RateLimitError,
    "UNAVAILABLE": ProviderUnavailableError,
    "INTERNAL": ProviderUnavailableError,
    "DEADLINE_EXCEEDED": ProviderUnavailableError,
}

GEMINI_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
"""The image formats Gemini documents (ai.google.dev/gemini-api/docs/image-understanding): no GIF."""
_EXTENSIONS = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
}

_CONTEXT_RE = re.compile(r"input token count.*exceeds the maximum", re.IGNORECASE | re.DOTALL)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GeminiProvider(BaseModelProvider):
    name: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    api_key_env_var: ClassVar[str | None] = "GEMINI_API_KEY"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-goog-request-id", "x-request-id")

    # --- request ----------------------------------------------------------------------

    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
        system, contents = _contents(request.conversation(), self)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {
            "maxOutputTokens": request.max_tokens or self.model.max_tokens,
            "temperature": request.temperature if request.temperature is not None else self.model.temperature,
        }
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = list(request.stop)
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            config["responseMimeType"] = "application/json"
            if fmt.type == "json_schema" and fmt.schema:
                config["responseJsonSchema"] = dict(fmt.schema)
        shape_gemini_config(config, self.model)
        body["generationConfig"] = config
        if request.tools:
            body["tools"] = [
                {"functionDeclarations": [_declaration(t.name, t.description, t.parameters) for t in request.tools]}
            ]
            tool_config = _tool_config(request.tool_choice)
            if tool_config is not None:
                body["toolConfig"] = tool_config
        body.update(request.extra)
        url = f"{self._model_url()}:streamGenerateContent?alt=sse" if stream else f"{self._model_url()}:generateContent"
        return HttpRequest("POST", url, headers=self._headers(), json=body)

    def build_embedding_request(self, texts: Sequence[str]) -> HttpRequest:
        model = f"models/{self._model_path()}"
        body = {"requests": [{"model": model, "content": {"parts": [{"text": text}]}} for text in texts]}
        return HttpRequest("POST", f"{self._model_url()}:batchEmbedContents", headers=self._headers(), json=body)

    def _model_path(self) -> str:
        name = self.model.model_name
        return name.removeprefix("models/")

    def _model_url(self) -> str:
        version = str(self.options.get("apiVersion", "v1beta"))
        return f"{self.base_url}/{version}/models/{self._model_path()}"

    def _headers(self) -> dict[str, str]:
        return {**self.extra_headers, "x-goog-api-key": self.api_key_value() or "", "content-type": "application/json"}

    # --- response ---------------------------------------------------------------------

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
        if not isinstance(data, dict):
            raise self.error(InvalidResponseError, f"{self.name} answered a body that is not an object")
        self._check_blocked(data)
        candidates = items(data.get("candidates"), "candidates")
        if not candidates:
            raise self.error(InvalidResponseError, f"{self.name} answered no candidates")
        candidate = obj(candidates[0], "candidates[0]")
        texts, calls = _parts(candidate)
        return CompletionResult(
            text="".join(texts),
            model_id=self.model.id,
            provider=self.name,
            model_name=name(data.get("modelVersion"), self.model.model_name, "modelVersion"),
            usage=_usage(data.get("usageMetadata")),
            finish_reason=_finish_reason(candidate.get("finishReason"), has_calls=bool(calls)),
            tool_calls=tuple(calls),
            request_id=self.request_id(headers, data),
        )

    def _check_blocked(self, data: Mapping[str, Any]) -> None:
        reason = optional_text(obj(data.get("promptFeedback"), "promptFeedback").get("blockReason"), "blockReason")
        if reason and not data.get("candidates"):
            raise self.error(
                ContentFilteredError,
                f"{self.name} blocked the prompt: {reason}",
                provider_code=reason,
                provider_message=f"prompt blocked: {reason}",
            )

    def parse_embedding(self, data: Any, headers: Mapping[str, str]) -> EmbeddingResult:
        vectors = [
            answers.vector(obj(item, "embeddings[]")["values"], "embeddings[].values")
            for item in items(data["embeddings"], "embeddings")
        ]
        return EmbeddingResult(
            vectors=vectors, model_id=self.model.id, provider=self.name, model_name=self.model.model_name
        )

    def new_stream_decoder(self) -> StreamDecoder:
        return _GeminiStreamDecoder(self)

    # --- errors -----------------------------------------------------------------------

    def classify_error(self, status: int | None, error: ErrorBody) -> type[ProviderError] | None:
        details = error.fields.get("details") or ()
        reasons = {d.get("reason") for d in details if isinstance(d, Mapping)}
        # A wrong key is a 400 INVALID_ARGUMENT at Gemini; only ErrorInfo's reason tells it apart.
        if "API_KEY_INVALID" in reasons:
            return AuthenticationError
        if error.code == "INVALID_ARGUMENT" and error.message and _CONTEXT_RE.search(error.message):
            return ContextLengthExceededError
        if error.code == "NOT_FOUND" and "not supported for batchembedcontents" in (error.message or "").lower():
            return UnsupportedContentError  # a chat model asked for embeddings: an embedding model may serve
        return _STATUS_CLASSES.get(error.code or "")

    def retry_after_in_body(self, error: ErrorBody) -> float | None:
        """``google.rpc.RetryInfo``'s ``retryDelay``, a protobuf duration such as ``"12s"`` or ``"58.93s"``."""
        for detail in error.fields.get("details") or ():
            if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
                match = _DURATION_RE.match(str(detail.get("retryDelay", "")))
                if match:
                    return float(match.group(1))
        return None

    def request_id(self, headers: Mapping[str, str], data: Mapping[str, Any] | None = None) -> str | None:
        """The body's ``responseId`` first (it names the answer), else the request-id header."""
        if data is not None and data.get("responseId"):
            return text(data["responseId"], "responseId")
        return super().request_id(headers)


class _GeminiStreamDecoder(StreamDecoder):
    """Each SSE event is a whole GenerateContentResponse; the body's end is the stream's end."""

    def __init__(self, provider: GeminiProvider) -> None:
        self.provider = provider
        self.finished = False  # Gemini sends no terminal event: the reader runs to the body's end
        self.finish_reason: str | None = None
        self.has_calls = False
        self.usage = Usage()
        self.model_name: str | None = None
        self.request_id: str | None = None

    def feed(self, event: str, data: str) -> list[StreamEvent]:
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("stream chunk is not an object")  # noqa: TRY004 - a malformed body is an invalid response, not a caller TypeError
        if isinstance(chunk.get("error"), dict):
            raise self.provider.error_in_body(chunk)
        self.provider._check_blocked(chunk)  # noqa: SLF001 - the decoder shares its provider's check
        self.model_name = optional_text(chunk.get("modelVersion"), "modelVersion") or self.model_name
        self.request_id = optional_text(chunk.get("responseId"), "responseId") or self.request_id
        if "usageMetadata" in chunk:
            self.usage = _usage(chunk["usageMetadata"])
        out: list[StreamEvent] = []
        candidates = items(chunk.get("candidates"), "candidates")
        if candidates:
            candidate = obj(candidates[0], "candidates[0]")
            texts, calls = _parts(candidate)
            out.extend(StreamEvent(type="text", text=t) for t in texts if t)
            out.extend(StreamEvent(type="tool_call", tool_call=c) for c in calls)
            self.has_calls = self.has_calls or bool(calls)
            reason = optional_text(candidate.get("finishReason"), "finishReason")
            self.finish_reason = reason or self.finish_reason
        return out

    def close(self) -> StreamEvent:
        if self.finish_reason is None:
            raise self.provider.error(
                IncompleteStreamError, f"{self.provider.name} stream ended without a finishReason"
            )
        return StreamEvent(
            type="done",
            finish_reason=_finish_reason(self.finish_reason, has_calls=self.has_calls),
            usage=self.usage,
            model_id=self.provider.model.id,
            model_name=self.model_name or self.provider.model.model_name,
            request_id=self.request_id,
        )


# --- mapping helpers -------------------------------------------------------------------


def _contents(conversation: list[Message], provider: BaseModelProvider) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for msg in conversation:
        if msg.role == "system":
            if msg.content:
                system.append(msg.text)
            continue
        parts: list[dict[str, Any]] = []
        if msg.role == "tool":
            name = msg.name or call_names.get(msg.tool_call_id or "", "")
            response: dict[str, Any] = {"name": name, "response": _tool_response(msg.text)}
            if msg.tool_call_id:
                response["id"] = msg.tool_call_id
            parts.append({"functionResponse": response})
        else:
            parts.extend(_content_parts(msg, provider))
            for call in msg.tool_calls:
                call_names[call.id] = call.name
                parts.append({"functionCall": {"name": call.name, "args": tool_arguments_object(call.arguments)}})
        if not parts:
            continue
        role = "model" if msg.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _content_parts(msg: Message, provider: BaseModelProvider) -> list[dict[str, Any]]:
    content = msg.content
    if not content:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    return [_part_json(part, provider) for part in content if not (isinstance(part, TextPart) and not part.text)]


def _part_json(part: ContentPart, provider: BaseModelProvider) -> dict[str, Any]:
    """A text part, an inline image as ``inlineData``, an image URL as ``fileData`` (Gemini fetches public and
    signed https URLs itself; the media type is said when the URL's name says it). Gemini takes PNG, JPEG,
    WebP, HEIC and HEIF, not GIF: a GIF is refused before sending, so the chain can move on."""
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.data is not None:
        if part.media_type not in GEMINI_IMAGE_TYPES:
            raise provider.unsupported(f"a {part.media_type} image: Gemini takes PNG, JPEG, WebP, HEIC and HEIF")
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    url = part.url or ""
    media_type = _media_type_of_url(url)
    if media_type is not None and media_type not in GEMINI_IMAGE_TYPES:
        raise provider.unsupported(
            f"a {media_type} image at {describe_url(url)}: Gemini takes PNG, JPEG, WebP, HEIC and HEIF"
        )
    file_data = {"fileUri": url} if media_type is None else {"mimeType": media_type, "fileUri": url}
    return {"fileData": file_data}


def _media_type_of_url(url: str) -> str | None:
    """The image type a URL's file name says (``.png`` …), without fetching it; ``None`` when it says none."""
    path = url.split("?", 1)[0].split("#", 1)[0]
    name = path.rsplit("/", 1)[-1]
    _, dot, extension = name.rpartition(".")
    return _EXTENSIONS.get(extension.lower()) if dot else None


def _declaration(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if description:
        out["description"] = description
    if parameters:
        out["parametersJsonSchema"] = dict(parameters)
    return out


def _tool_response(content: str | None) -> dict[str, Any]:
    # functionResponse.response must be an object: wrap anything that is not one.
    try:
        value = json.loads(content) if content else None
    except ValueError:
        value = content
    return value if isinstance(value, dict) else {"result": value}


def _tool_config(choice: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mode = {"auto": "AUTO", "required": "ANY", "any": "ANY", "none": "NONE"}.get(choice)
        if mode is not None:
            return {"functionCallingConfig": {"mode": mode}}
        name: Any = choice
    else:
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if not name:
            return dict(choice)  # already Gemini's toolConfig shape
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _parts(candidate: Mapping[str, Any]) -> tuple[list[str], list[ToolCall]]:
    texts: list[str] = []
    calls: list[ToolCall] = []
    content = obj(candidate.get("content"), "candidates[0].content")
    for raw in items(content.get("parts"), "content.parts"):
        part = obj(raw, "parts[]")
        if part.get("thought"):
            continue  # thought summaries are not the answer
        if "text" in part:
            texts.append(text(part["text"], "parts[].text"))
        elif "functionCall" in part:
            fc = obj(part["functionCall"], "parts[].functionCall")
            # Older models send no id; the caller needs one to answer the call.
            call_id = optional_text(fc.get("id"), "functionCall.id") or f"call_{uuid.uuid4().hex[:24]}"
            arguments = json.dumps(obj(fc.get("args"), "functionCall.args"))
            calls.append(ToolCall(id=call_id, name=text(fc.get("name"), "functionCall.name"), arguments=arguments))
    return texts, calls


def _finish_reason(reason: Any, *, has_calls: bool) -> FinishReason:
    if reason is None:
        return "other"
    if type(reason) is not str:
        raise answers.AnswerError(f"finishReason is {answers.described(reason)}, not a string")
    if has_calls and reason == "STOP":
        return "tool_calls"
    return _FINISH_REASONS.get(reason, "other")


def _usage(raw: Any) -> Usage:
    usage = obj(raw, "usageMetadata")
    thoughts = count(usage.get("thoughtsTokenCount"), "usageMetadata.thoughtsTokenCount")
    candidates = count(usage.get("candidatesTokenCount"), "usageMetadata.candidatesTokenCount")
    return Usage(
        input_tokens=count(usage.get("promptTokenCount"), "usageMetadata.promptTokenCount"),
        output_tokens=count(candidates + thoughts, "usageMetadata.candidatesTokenCount with thoughts"),
        cached_tokens=count(usage.get("cachedContentTokenCount"), "usageMetadata.cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )
