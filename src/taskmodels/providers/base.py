"""The HTTP mapping base: one subclass per wire protocol, each implementing ``ModelPort``.

A provider is two halves kept apart on purpose:

- the **mapping** (pure, no I/O): ``build_completion_request`` turns a
  ``CompletionRequest`` into an ``HttpRequest``; ``parse_completion`` turns the
  decoded JSON body into a ``CompletionResult``; ``new_stream_decoder`` turns
  stream events into ``StreamEvent``s; ``classify_error`` says which error class
  an error body is. Each is testable without a network.
- the **sending** (shared, here): ``complete``, ``stream`` and ``embed`` send
  what the mapping built over the container's pooled ``httpx2.AsyncClient`` and
  map every transport failure onto the error tree.

Errors are built complete, once, in ``error``: every string a provider error keeps
is scrubbed of every key the process knows. Providers know nothing of tasks,
retries, fallbacks or cost: the call engine owns those.
"""

from __future__ import annotations

import asyncio
import json
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn
from urllib.parse import urlsplit

import httpx2
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    FirstTokenTimeoutError,
    InvalidResponseError,
    MissingCredentialError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamStalledError,
    UnsupportedContentError,
)
from taskmodels.providers.answers import AnswerError, described
from taskmodels.providers.error_body import (
    ErrorBody,
    context_sizes,
    error_fields,
    parse_error_body,
    parse_retry_after,
)
from taskmodels.providers.ratelimits import rate_limit_info
from taskmodels.providers.streams import SseEvent, SseParser
from taskmodels.providers.transport import describe_failure, transport_error_class
from taskmodels.redaction import remember, scrub
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent

__all__ = [
    "BaseModelProvider",
    "ErrorBody",
    "HttpRequest",
    "StreamDecoder",
    "kept_text",
    "parse_retry_after",
    "status_error_class",
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


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    408: ProviderTimeoutError,
    413: ContextLengthExceededError,
    429: RateLimitError,
}

_NO_HEADERS: Mapping[str, str] = {}


def status_error_class(status: int) -> type[ProviderError]:
    """The error class an HTTP status means when the body says nothing more specific."""
    cls = _STATUS_ERRORS.get(status)
    if cls is not None:
        return cls
    return ProviderUnavailableError if status >= 500 else BadRequestError


class BaseModelProvider(ABC):
    """Base of every HTTP provider. Subclasses set ``name`` and implement the mapping.

    Class settings: ``default_base_url``; ``stream_framing`` (``"sse"`` or ``"ndjson"``);
    ``requires_api_key`` and ``api_key_env_var`` (the vendor's usual variable, named when
    the key is missing); ``request_id_headers`` (where the vendor puts its request id).
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "sse"
    requires_api_key: ClassVar[bool] = True
    api_key_env_var: ClassVar[str | None] = None
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "request-id")

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
        """Raises ``ValueError`` without a base URL, ``MissingCredentialError`` without a required key."""
        self.model = model
        # Only a deployment keeps rate-limit state (engine/pools.py): reading the headers costs every other call.
        self.reads_rate_limits = model.deployment_id is not None
        self.client = client
        url = model.base_url or base_url or self.default_base_url
        if url is None:
            raise ValueError(f"model {model.id!r}: provider {self.name!r} needs a baseUrl")
        self.base_url = url.rstrip("/")
        key = api_key.get_secret_value() if api_key is not None else ""
        if key:
            # Every key actually used is known to redaction, wherever it would be echoed.
            remember(key)
        elif self.requires_api_key:
            variables = self.api_key_variables()
            raise MissingCredentialError(
                f"model {model.id!r} ({self.name}) has no API key: set {' or '.join(variables)}",
                provider=self.name,
                model_id=model.id,
                variables=variables,
            )
        self._api_key = api_key if key else None
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

    def classify_error(self, status: int | None, error: ErrorBody) -> type[ProviderError] | None:
        """The error class ``error`` asks for, or ``None`` to go by the HTTP status alone.

        ``status`` is ``None`` for an error inside a stream that carried no status.
        """
        return None

    # --- errors ---------------------------------------------------------------------

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The typed error for an HTTP error response."""
        return self.error_from_body(parse_error_body(body), status=status, headers=headers)

    def error_in_body(self, err: Any) -> ProviderError:
        """The typed error for an error that arrived inside a 200 body or a stream event.

        ``err`` is the error as found: an error object, a whole body holding one, or a string.
        A status the object carries (llama.cpp, Gemini) is used as the HTTP status would be.
        """
        parsed = error_fields(err)
        return self.error_from_body(parsed, status=parsed.status)

    def error_from_body(
        self, error: ErrorBody, *, status: int | None, headers: Mapping[str, str] = _NO_HEADERS
    ) -> ProviderError:
        """The typed error for a parsed error body: classified, sized, timed and identified."""
        cls = self.classify_error(status, error)
        if status is None:
            cls = cls or ProviderUnavailableError  # an unnamed error mid-stream is the server's
            message = f"{self.name} reported an error: {error.message or error.code or 'no message'}"
        else:
            cls = cls or status_error_class(status)
            message = f"{self.name} returned {status}: {error.message or f'HTTP {status}'}"
        sizes: dict[str, Any] = {}
        if issubclass(cls, ContextLengthExceededError):
            sizes["requested_tokens"], sizes["limit_tokens"] = context_sizes(error)
        retry_after = parse_retry_after(headers)
        if retry_after is None:
            retry_after = self.retry_after_in_body(error)
        built = self.error(
            cls,
            message,
            status_code=status,
            provider_message=error.message,
            provider_code=error.code,
            retry_after=retry_after,
            request_id=self.request_id(headers),
            **sizes,
        )
        if headers and self.reads_rate_limits:
            built.rate_limit = rate_limit_info(headers)
        return built

    def retry_after_in_body(self, error: ErrorBody) -> float | None:
        """Seconds to wait that the body states (Gemini's ``RetryInfo``); read when no header said."""
        return None

    def request_id(self, headers: Mapping[str, str], data: Mapping[str, Any] | None = None) -> str | None:
        """The vendor's id of this request or answer: a ``request_id_headers`` header, else the body's ``id``."""
        # Scrubbed: a server may echo anything into a header we keep, a key included.
        for name in self.request_id_headers:
            value = headers.get(name)
            if value:
                return scrub(value)
        if data is not None:
            value = data.get("id")
            if value:
                if type(value) is not str:
                    raise AnswerError(f"the answer's id is {described(value)}, not a string")
                return scrub(value)
        return None

    def error(self, cls: type[ProviderError], message: str, **fields: Any) -> ProviderError:
        """Every error a provider builds passes here, built complete, once.

        Servers quote keys back (in messages, codes, even request-id headers): every string the
        error keeps is scrubbed of every key the process knows. Some quote the whole request back (vLLM's
        validation errors, proxies), images included: runs of base64 are cut out and the text is bounded
        (``kept_text``), so no image reaches an attempt, a log line or a span. Only failures pay for this.
        """
        for name in ("provider_message", "provider_code", "request_id"):
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = kept_text(value)
        return cls(kept_text(message), provider=self.name, model_id=self.model.id, **fields)

    def unsupported(self, what: str) -> ProviderError:
        """The error for content this model cannot take though another may (``UnsupportedContentError``): the
        chain moves on. ``what`` names the content by kind, media type, size or a URL's host: never its bytes,
        nor a URL's path and query (``types.describe_url``)."""
        return self.error(UnsupportedContentError, f"{self.name} cannot take {what}")

    # --- helpers for the mapping ----------------------------------------------------

    def api_key_value(self) -> str | None:
        """The key, for the mapping to put in a header. Never log it or put it in a URL."""
        return self._api_key.get_secret_value() if self._api_key is not None else None

    def api_key_variables(self) -> tuple[str, ...]:
        """The environment variables any one of which supplies this model's key, most specific first."""
        if self.model.api_key_env:
            return (self.model.api_key_env,)  # the model's own variable replaces the others
        section = f"TASKMODELS_PROVIDERS__{self.name.upper().replace('-', '_')}__API_KEY"
        return (self.api_key_env_var, section) if self.api_key_env_var else (section,)

    # --- sending: shared ---------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        http = self.build_completion_request(request, stream=False)
        try:  # _send's body, inline: the coroutine frame it would add is resumed at every read of the answer
            response = await self.client.request(http.method, http.url, headers=http.headers, json=http.json)
        except Exception as exc:  # noqa: BLE001 - narrowed at once: httpx2's errors, or a legacy httpx client's
            self._raise_transport(exc, http.url)
        if response.status_code != 200:
            raise self._status_error(response, response.content)
        data = self._json_body(response)
        try:
            result = self.parse_completion(data, response.headers)
        except ProviderError:
            raise
        except _UNREADABLE as exc:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered a body we could not read: {_reason(exc)}",
                status_code=response.status_code,
                request_id=self.request_id(response.headers),
            ) from None
        # What is left of the deployment's limits: the engine steers traffic off it before a 429.
        if self.reads_rate_limits:
            result.rate_limit = rate_limit_info(response.headers)
        return result

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        http = self.build_embedding_request(texts)
        response = await self._send(http)
        data = self._json_body(response)
        try:
            result = self.parse_embedding(data, response.headers)
            _check_vectors(result.vectors, len(texts))
        except ProviderError:
            raise
        except _UNREADABLE as exc:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered an embedding body we could not read: {_reason(exc)}",
                status_code=response.status_code,
                request_id=self.request_id(response.headers),
            ) from None
        return result

    async def stream(  # noqa: C901, PLR0912, PLR0915 - the one stream reader every provider shares: connect, status, frames, watchdog, drain
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
        except Exception as exc:  # narrowed at once: httpx2's errors, or a legacy httpx client's  # noqa: BLE001 - a provider bug becomes a typed error, never a raw one
            self._raise_transport(exc, http.url)
        try:
            if response.status_code != 200:
                body = await self._read_error_body(response)
                raise self._status_error(response, body)  # noqa: TRY301 - the response is closed by the finally below whichever way it ends
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
        except ProviderError:
            raise
        except Exception as exc:  # narrowed at once, as above  # noqa: BLE001 - see above
            self._raise_transport(exc, http.url)
        finally:
            await response.aclose()
        done = self._close(decoder)
        if done.request_id is None:
            done.request_id = self.request_id(response.headers)
        yield done

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
        except Exception as exc:
            if transport_error_class(exc) is None:
                raise
            return b""

    def _feed(self, decoder: StreamDecoder, event: str, data: str) -> list[StreamEvent]:
        try:
            return decoder.feed(event, data)
        except ProviderError:
            raise
        except _UNREADABLE as exc:
            raise self.error(
                InvalidResponseError, f"{self.name} sent a stream event we could not read: {_reason(exc)}"
            ) from None

    def _close(self, decoder: StreamDecoder) -> StreamEvent:
        try:
            return decoder.close()
        except ProviderError:
            raise
        except _UNREADABLE as exc:
            raise self.error(
                InvalidResponseError, f"{self.name} sent a stream we could not read: {_reason(exc)}"
            ) from None

    async def _send(self, http: HttpRequest) -> httpx2.Response:
        try:
            response = await self.client.request(http.method, http.url, headers=http.headers, json=http.json)
        except Exception as exc:  # narrowed at once: httpx2's errors, or a legacy httpx client's  # noqa: BLE001 - see above
            self._raise_transport(exc, http.url)
        if response.status_code != 200:
            raise self._status_error(response, response.content)
        return response

    def _status_error(self, response: httpx2.Response, body: bytes) -> ProviderError:
        """The error for an answer whose status is not 200: the mapped error of an error status, else an invalid
        response. httpx2 follows no redirect, and no protocol answers a call with another 2xx; a redirect names
        only the host it pointed to, since a full URL may hold a key."""
        status = response.status_code
        if status >= 400:
            return self.parse_error(status, response.headers, body)
        if 300 <= status < 400:
            message = f"{self.name} answered {status}, a redirect {_redirect_target(response.headers)}: not followed"
        else:
            message = f"{self.name} answered {status} instead of 200"
        return self.error(
            InvalidResponseError, message, status_code=status, request_id=self.request_id(response.headers)
        )

    def _json_body(self, response: httpx2.Response) -> Any:
        try:
            return json.loads(response.content)
        except RecursionError:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered {response.status_code} with JSON nested too deep to read",
                status_code=response.status_code,
                request_id=self.request_id(response.headers),
            ) from None
        except ValueError:
            raise self.error(
                InvalidResponseError,
                f"{self.name} answered {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
                request_id=self.request_id(response.headers),
            ) from None

    def _raise_transport(self, exc: Exception, url: str) -> NoReturn:
        """Re-raise ``exc`` as the typed error for a client failure, naming host and port only.

        Anything that is not an HTTP client's exception goes on as it is.
        """
        cls = transport_error_class(exc)
        if cls is None:
            raise exc
        raise self.error(cls, describe_failure(cls, self.name, url, exc)) from None


# What a parser raises on a body that is not what its protocol declares: a missing key, a wrong type, a check of
# providers/answers.py, a number too large for a float, JSON (or a tool call's arguments) nested too deep.
_UNREADABLE = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, RecursionError)


def _reason(exc: BaseException) -> str:
    """What a parser found wrong: a check's own words, else only the exception's class (its text may quote the body)."""
    return str(exc) if isinstance(exc, AnswerError) else type(exc).__name__


def _redirect_target(headers: Mapping[str, str]) -> str:
    """Where a redirect pointed, by host alone."""
    location = headers.get("location")
    if not location:
        return "with no Location"
    try:
        host = urlsplit(location).hostname
    except ValueError:
        host = None
    return f"to host {host}" if host else "to a location without a host"


def _check_vectors(vectors: list[list[float]], texts: int) -> None:
    """One vector per text, all of one non-zero size: anything else cannot be matched to the texts."""
    if len(vectors) != texts:
        raise AnswerError(f"the answer holds {len(vectors)} vectors for {texts} texts")
    if vectors:
        size = len(vectors[0])
        if not size or any(len(v) != size for v in vectors):
            raise AnswerError("the answer's vectors are empty or of different sizes")


ERROR_TEXT_LIMIT = 1000
"""Characters an error keeps of a provider's text: every vendor's own messages are shorter."""
_BASE64_RUN = re.compile(r"(?:data:[\w.+-]+/[\w.+-]+;base64,)?[A-Za-z0-9+/]{256,}={0,2}")


def kept_text(text: str) -> str:
    """A provider's text as an error keeps it: each run of 256 or more base64 characters (an image or a file
    quoted back, with its ``data:`` prefix) replaced by its length, then scrubbed of keys, then cut to
    ``ERROR_TEXT_LIMIT``. Eliding only removes text, so it cannot expose a piece of a key; scrubbing comes
    before the cut, so no key straddles it."""
    if len(text) >= 256:
        text = _BASE64_RUN.sub(lambda run: f"[{len(run.group()):,} characters of base64]", text)
    text = scrub(text)
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"


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


_DRAIN_LINES = 8
_DRAIN_LIMIT = 0.5  # seconds


class _ReadTimedOut(Exception):  # noqa: N818 - a private signal, not an error a caller sees
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
