"""The provider interface: one subclass per wire protocol.

A provider is two halves kept apart on purpose:

- the **mapping** (pure, no I/O): ``build_completion_request`` turns a
  ``CompletionRequest`` into an ``HttpRequest``; ``parse_completion`` turns the
  decoded JSON body into a ``CompletionResult``; ``new_stream_decoder`` turns
  stream events into ``StreamEvent``s; ``parse_error`` turns an error response
  into a typed ``ProviderError``. Each is testable without a network.
- the **sending** (shared, here): ``complete``, ``stream`` and ``embed`` send
  what the mapping built over the container's pooled ``httpx2.AsyncClient`` and
  map every transport failure onto the error tree.

Providers know nothing of tasks, retries or fallbacks: the service owns those.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn

import httpx2
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamStalledError,
)
from taskmodels.log import REDACTED
from taskmodels.providers.streams import SseEvent, SseParser
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent

__all__ = [
    "BaseModelProvider",
    "HttpRequest",
    "StreamDecoder",
    "parse_retry_after",
    "tool_arguments_object",
]


@dataclass(slots=True, frozen=True)
class HttpRequest:
    """What a provider's mapping wants sent. Headers may hold the key: never log them."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None

    def __repr__(self) -> str:  # headers hold credentials
        return f"HttpRequest(method={self.method!r}, url={self.url!r})"


class StreamDecoder(ABC):
    """Turns one stream's framed events into ``StreamEvent``s; one instance per stream.

    ``feed`` gets each SSE event's name and data (for NDJSON: ``""`` and the line).
    ``finished`` turns true once the provider's terminal event arrived, so the
    reader stops at once. ``close`` is called when the body ends (or after the
    terminal event) and returns the ``done`` event, or raises
    ``IncompleteStreamError`` when the stream ended before the answer did.
    """

    finished: bool = False

    @abstractmethod
    def feed(self, event: str, data: str) -> list[StreamEvent]: ...

    @abstractmethod
    def close(self) -> StreamEvent: ...


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


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    408: ProviderTimeoutError,
    413: ContextLengthExceededError,
    429: RateLimitError,
}


class BaseModelProvider(ABC):
    """Base of every provider. Subclasses set ``name`` and implement the mapping."""

    name: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "sse"
    supports_embeddings: ClassVar[bool] = False
    requires_api_key: ClassVar[bool] = True

    def __init__(
        self,
        model: ModelConfig,
        client: httpx2.AsyncClient,
        *,
        api_key: SecretStr | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.client = client
        self._api_key = api_key
        url = model.base_url or base_url or self.default_base_url
        if url is None:
            raise ValueError(f"model {model.id!r}: provider {self.name!r} needs a baseUrl")
        self.base_url = url.rstrip("/")
        self.extra_headers: dict[str, str] = dict(headers or {})
        # Registry options win over settings options: they are the more specific.
        self.options: dict[str, Any] = {**(options or {}), **model.options}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model.id!r}, base_url={self.base_url!r})"

    # --- mapping: implemented by each provider ---------------------------------------

    @abstractmethod
    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest: ...

    @abstractmethod
    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult: ...

    @abstractmethod
    def new_stream_decoder(self) -> StreamDecoder: ...

    def build_embedding_request(self, texts: Sequence[str]) -> HttpRequest:
        raise BadRequestError(f"provider {self.name!r} has no embeddings", provider=self.name, model_id=self.model.id)

    def parse_embedding(self, data: Any, headers: Mapping[str, str]) -> EmbeddingResult:
        raise BadRequestError(f"provider {self.name!r} has no embeddings", provider=self.name, model_id=self.model.id)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Map an error response. The default reads ``{"error": {"message", "type", "code"}}``."""
        message, code = _generic_error_fields(body)
        return self.error_for_status(status, headers, message, code)

    # --- helpers for the mapping ----------------------------------------------------

    def api_key_value(self) -> str | None:
        return self._api_key.get_secret_value() if self._api_key is not None else None

    def error_for_status(
        self,
        status: int,
        headers: Mapping[str, str],
        message: str | None,
        code: str | None,
        *,
        cls: type[ProviderError] | None = None,
    ) -> ProviderError:
        """A typed error for an HTTP status, unless ``cls`` says which."""
        if cls is None:
            cls = _STATUS_ERRORS.get(status)
            if cls is None:
                cls = ProviderUnavailableError if status >= 500 else BadRequestError
        text = message or f"HTTP {status}"
        return self.error(
            cls,
            f"{self.name} returned {status}: {text}",
            status_code=status,
            provider_message=message,
            provider_code=code,
            retry_after=parse_retry_after(headers),
            request_id=_request_id(headers),
        )

    def error(self, cls: type[ProviderError], message: str, **fields: Any) -> ProviderError:
        """Every error a provider builds passes here. Some servers quote the key they rejected in
        their error text: it is cut out before it can travel on in our message or fields."""
        key = self.api_key_value()
        if key:
            message = message.replace(key, REDACTED)
            quoted = fields.get("provider_message")
            if isinstance(quoted, str):
                fields["provider_message"] = quoted.replace(key, REDACTED)
        return cls(message, provider=self.name, model_id=self.model.id, **fields)

    def cost(self, result: CompletionResult) -> float:
        return self.model.cost(result.usage)

    # --- sending: shared ---------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        http = self.build_completion_request(request, stream=False)
        response = await self._send(http)
        data = self._json_body(response)
        try:
            result = self.parse_completion(data, response.headers)
        except ProviderError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered a body we could not read: {type(exc).__name__}",
                status_code=response.status_code,
                request_id=_request_id(response.headers),
            ) from None
        return result

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        http = self.build_embedding_request(texts)
        response = await self._send(http)
        data = self._json_body(response)
        try:
            return self.parse_embedding(data, response.headers)
        except ProviderError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered an embedding body we could not read: {type(exc).__name__}",
                status_code=response.status_code,
            ) from None

    async def stream(
        self,
        request: CompletionRequest,
        *,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream the answer; the last event is ``done``.

        ``first_token_timeout`` bounds the wait from sending to the first event,
        ``stall_timeout`` the wait between two events. A stream that ends before
        its answer did raises ``IncompleteStreamError``, never a short success.
        """
        http = self.build_completion_request(request, stream=True)
        decoder = self.new_stream_decoder()
        loop = asyncio.get_running_loop()
        # Only reads are timed, never our own yields: a timeout scope left open
        # across a yield would cancel the consumer's code instead of ours.
        first_deadline = loop.time() + first_token_timeout if first_token_timeout is not None else None
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self.client.send(
                    self.client.build_request(http.method, http.url, headers=http.headers, json=http.json),
                    stream=True,
                )
        except TimeoutError:
            raise self.error(FirstTokenTimeoutError, f"{self.name} sent no first token in time") from None
        except httpx2.HTTPError as exc:
            self._raise_transport(exc)
        try:
            if response.status_code >= 400:
                body = await self._read_error_body(response)
                raise self.parse_error(response.status_code, response.headers, body)
            lines = response.aiter_lines()
            parse = SseParser().feed if self.stream_framing == "sse" else None
            task = asyncio.current_task()
            assert task is not None  # an async generator always runs inside a task
            watchdog = _ReadWatchdog(loop, task)
            limit = first_deadline
            try:
                while not decoder.finished:
                    watchdog.arm(limit)
                    frame = await self._next_frame(lines, parse, watchdog)
                    if frame is None:
                        break
                    limit = loop.time() + stall_timeout if stall_timeout is not None else None
                    for item in self._feed(decoder, frame[0], frame[1]):
                        yield item
                if decoder.finished:
                    await self._drain(lines, watchdog, loop.time() + _DRAIN_LIMIT)
            except _ReadTimedOut:
                if limit is first_deadline:
                    raise self.error(FirstTokenTimeoutError, f"{self.name} sent no first token in time") from None
                raise self.error(StreamStalledError, f"{self.name} stream stalled") from None
            finally:
                watchdog.close()
        except httpx2.HTTPError as exc:
            self._raise_transport(exc)
        finally:
            await response.aclose()
        yield decoder.close()

    @staticmethod
    async def _next_frame(
        lines: AsyncIterator[str], parse: Callable[[str], SseEvent | None] | None, watchdog: _ReadWatchdog
    ) -> tuple[str, str] | None:
        """The next SSE event or NDJSON line as ``(event, data)``; ``None`` at the end of the body."""
        while True:
            watchdog.reading = True
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                return None
            except asyncio.CancelledError:
                if watchdog.fired:
                    watchdog.task.uncancel()
                    raise _ReadTimedOut from None
                raise
            finally:
                watchdog.reading = False
            if parse is None:
                if line.strip():
                    return "", line
            else:
                event = parse(line)
                if event is not None:
                    return event.event, event.data

    @staticmethod
    async def _drain(lines: AsyncIterator[str], watchdog: _ReadWatchdog, limit: float) -> None:
        """Read what follows the terminal event (normally nothing but the body's end), so the
        connection goes back to the pool instead of being closed: a reconnect per stream would
        cost more than the whole stream's parsing. A server that goes on sending is cut off."""
        watchdog.arm(limit)
        for _ in range(_DRAIN_LINES):
            watchdog.reading = True
            try:
                await anext(lines)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if watchdog.fired:
                    watchdog.task.uncancel()
                    return
                raise
            finally:
                watchdog.reading = False

    async def _read_error_body(self, response: httpx2.Response) -> bytes:
        try:
            return await response.aread()
        except httpx2.HTTPError:
            return b""

    def _feed(self, decoder: StreamDecoder, event: str, data: str) -> list[StreamEvent]:
        try:
            return decoder.feed(event, data)
        except ProviderError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise self.error(
                InvalidResponseError, f"{self.name} sent a stream event we could not read: {type(exc).__name__}"
            ) from None

    async def _send(self, http: HttpRequest) -> httpx2.Response:
        try:
            response = await self.client.request(http.method, http.url, headers=http.headers, json=http.json)
        except httpx2.HTTPError as exc:
            self._raise_transport(exc)
        if response.status_code >= 400:
            raise self.parse_error(response.status_code, response.headers, response.content)
        return response

    def _json_body(self, response: httpx2.Response) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
                request_id=_request_id(response.headers),
            ) from None

    def _raise_transport(self, exc: httpx2.HTTPError) -> NoReturn:
        # The httpx message can name the URL; ours never hold the key (it travels in headers).
        kind = type(exc).__name__
        if isinstance(exc, httpx2.TimeoutException):
            raise self.error(ProviderTimeoutError, f"{self.name} timed out ({kind})") from None
        if isinstance(exc, httpx2.DecodingError):
            raise self.error(InvalidResponseError, f"{self.name} sent a body we could not decode ({kind})") from None
        if isinstance(exc, httpx2.RemoteProtocolError):
            raise self.error(
                IncompleteStreamError, f"{self.name} closed the connection mid-response ({kind})"
            ) from None
        raise self.error(ProviderConnectionError, f"could not reach {self.name} ({kind})") from None


def tool_arguments_object(raw: str) -> dict[str, Any]:
    """A tool call's JSON argument text as the object Anthropic, Gemini and Ollama want.

    Models sometimes write arguments that are not a JSON object; they are wrapped
    rather than dropped, so the caller's tool still sees what the model wrote.
    """
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"arguments": raw}
    return value if isinstance(value, dict) else {"value": value}


def _request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id") or headers.get("x-goog-request-id")


def _generic_error_fields(body: bytes) -> tuple[str | None, str | None]:
    """``message`` and ``code`` from the common ``{"error": {...}}`` body, or the raw text."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return (text[:500] or None), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = err.get("message")
        code = err.get("code") or err.get("type") or err.get("status")
        return (str(message) if message is not None else None), (str(code) if code is not None else None)
    if isinstance(err, str):
        return err, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None
    return None, None


_DRAIN_LINES = 8
_DRAIN_LIMIT = 0.5  # seconds


class _ReadTimedOut(Exception):
    """The watchdog cut a read short."""


class _ReadWatchdog:
    """Bounds each wait for the server, without a new timer for every chunk.

    ``arm(limit)`` sets the time by which the next frame must arrive. One timer
    handle serves many chunks: limits only move later, so when it fires early it
    re-arms itself for the current limit. It cancels the task only while a read
    is in progress (``reading``): the consumer's time between chunks is never
    counted, and a cancellation never lands in the consumer's code.
    """

    __slots__ = ("_handle", "_limit", "_loop", "fired", "reading", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self._loop = loop
        self.task = task
        self._handle: asyncio.TimerHandle | None = None
        self._limit: float | None = None
        self.reading = False
        self.fired = False

    def arm(self, limit: float | None) -> None:
        self._limit = limit
        if limit is None:
            return
        handle = self._handle
        if handle is None or handle.when() > limit:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(limit, self._fire)

    def _fire(self) -> None:
        self._handle = None
        limit = self._limit
        if limit is None:
            return
        if self._loop.time() < limit:
            self._handle = self._loop.call_at(limit, self._fire)
        elif self.reading:
            self.fired = True
            self.task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
