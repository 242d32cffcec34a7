"""The SSE parser and BaseModelProvider's sending: NDJSON framing, transport failures, bodies, stream time limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import httpx2
import pytest

from taskmodels.errors import (
    BadRequestError,
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    StreamStalledError,
)
from taskmodels.providers.base import BaseModelProvider, HttpRequest, StreamDecoder, parse_retry_after
from taskmodels.providers.streams import SseEvent, SseParser
from taskmodels.types import CompletionRequest, CompletionResult, StreamEvent


def feed_all(parser: SseParser, lines: Sequence[str]) -> list[SseEvent]:
    return [event for line in lines if (event := parser.feed(line)) is not None]


async def sse_events(*lines: str) -> list[SseEvent]:
    return feed_all(SseParser(), lines)


# --- SseParser ---------------------------------------------------------------------------


async def test_sse_skips_comments_and_joins_multiline_data() -> None:
    events = await sse_events(": keep-alive", "", "data: a", "data: b", ": inline comment", "data:c", "", "data: d", "")
    assert events == [SseEvent("message", "a\nb\nc"), SseEvent("message", "d")]


async def test_sse_event_names_ids_and_unknown_fields() -> None:
    events = await sse_events(
        "event: message_start", "id: 7", "retry: 1000", "foo: bar", "data: {}", "", "data: x", "", "event: ping", ""
    )
    assert events == [SseEvent("message_start", "{}", "7"), SseEvent("message", "x", "7")]


async def test_sse_keeps_only_the_first_space_and_empty_data() -> None:
    events = await sse_events("data:  two spaces", "", "data:", "", "data", "")
    assert [e.data for e in events] == [" two spaces", "", ""]


async def test_sse_drops_an_event_still_open_at_the_end() -> None:
    events = await sse_events("data: complete", "", "data: cut")
    assert [e.data for e in events] == ["complete"]


async def test_sse_with_crlf_and_cr_line_endings_through_httpx() -> None:
    body = b"data: one\r\n\r\n:comment\r\ndata: two\rdata: more\r\r"
    response = httpx2.Response(200, content=body)
    events = feed_all(SseParser(), [line async for line in response.aiter_lines()])
    assert [e.data for e in events] == ["one", "two\nmore"]


async def test_ndjson_skips_blank_lines(mock_http: Any, make_model: Any) -> None:
    provider = NdjsonEchoProvider(make_model(provider="echo"), mock_http.client)
    mock_http.reply_stream(['{"a": 1}\n', "\n", "   \n", '{"b": 2}\n', "END\n"])
    events = await collect(provider.stream(REQUEST))
    assert [e.text for e in events] == ['{"a": 1}', '{"b": 2}', ""]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"retry-after": "-3"}, 0.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


# --- a minimal provider to drive the base class ------------------------------------------


class LineDecoder(StreamDecoder):
    """Each data event is a piece of text; the event named ``end`` finishes; ``bad`` raises like a broken parser."""

    def __init__(self) -> None:
        self.finished = False
        self.count = 0

    def feed(self, event: str, data: str) -> list[StreamEvent]:
        if event == "end" or data == "END":
            self.finished = True
            return []
        if data == "bad":
            raise KeyError("missing")
        self.count += 1
        return [StreamEvent(type="text", text=data)]

    def close(self) -> StreamEvent:
        if not self.finished:
            raise IncompleteStreamError("cut", provider="echo", model_id="m")
        return StreamEvent(type="done", finish_reason="stop")


class EchoProvider(BaseModelProvider):
    name: ClassVar[str] = "echo"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:9/v1"
    requires_api_key: ClassVar[bool] = False

    def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
        return HttpRequest("POST", f"{self.base_url}/echo", {}, {"prompt": request.prompt, "stream": stream})

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
        return CompletionResult(
            text=data["text"], model_id=self.model.id, provider=self.name, model_name=self.model.model_name
        )

    def new_stream_decoder(self) -> StreamDecoder:
        return LineDecoder()


class NdjsonEchoProvider(EchoProvider):
    stream_framing: ClassVar[Literal["sse", "ndjson"]] = "ndjson"


@pytest.fixture
def echo(mock_http: Any, make_model: Any) -> EchoProvider:
    return EchoProvider(make_model(provider="echo"), mock_http.client)


async def collect(events: AsyncIterator[StreamEvent], into: list[StreamEvent] | None = None) -> Sequence[StreamEvent]:
    out = into if into is not None else []
    async for event in events:
        out.append(event)
    return out


REQUEST = CompletionRequest(prompt="hello")


# --- complete / embed --------------------------------------------------------------------


async def test_complete_sends_and_parses(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply(json={"text": "hi"})
    result = await echo.complete(REQUEST)
    assert result.text == "hi"
    assert mock_http.last_json() == {"prompt": "hello", "stream": False}


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx2.ConnectError("connection refused"), ProviderConnectionError),
        (httpx2.ReadError("connection reset by peer"), ProviderConnectionError),
        (httpx2.ConnectTimeout("connect timed out"), ProviderTimeoutError),
        (httpx2.ReadTimeout("read timed out"), ProviderTimeoutError),
        (httpx2.PoolTimeout("no connection free"), ProviderTimeoutError),
        (httpx2.RemoteProtocolError("peer closed connection"), IncompleteStreamError),
    ],
)
async def test_transport_errors_are_mapped(
    echo: EchoProvider, mock_http: Any, exc: Exception, cls: type[ProviderError]
) -> None:
    mock_http.fail(exc)
    with pytest.raises(cls) as info:
        await echo.complete(REQUEST)
    assert type(info.value) is cls
    assert info.value.provider == "echo"
    assert info.value.model_id == "test-model"
    assert info.value.__cause__ is None  # the httpx exception is not chained into ours


async def test_transport_error_on_stream_is_mapped(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.fail(httpx2.ConnectError("connection refused"))
    with pytest.raises(ProviderConnectionError):
        await collect(echo.stream(REQUEST))


async def test_non_json_body_is_invalid_response(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply(200, content=b"<html>gateway says hi</html>", headers={"x-request-id": "r1"})
    with pytest.raises(InvalidResponseError) as info:
        await echo.complete(REQUEST)
    assert info.value.status_code == 200
    assert info.value.request_id == "r1"


async def test_body_the_parser_cannot_read_is_invalid_response(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply(json={"unexpected": True})
    with pytest.raises(InvalidResponseError, match="KeyError"):
        await echo.complete(REQUEST)


async def test_default_error_mapping(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply(429, json={"error": {"message": "slow down", "type": "rate_limit"}}, headers={"retry-after": "2"})
    with pytest.raises(RateLimitError) as info:
        await echo.complete(REQUEST)
    assert (info.value.provider_message, info.value.provider_code, info.value.retry_after) == (
        "slow down",
        "rate_limit",
        2.0,
    )


async def test_embed_without_support_is_bad_request(echo: EchoProvider, mock_http: Any) -> None:
    with pytest.raises(BadRequestError, match="no embeddings"):
        await echo.embed(["x"])
    assert mock_http.requests == []


# --- stream ------------------------------------------------------------------------------


async def test_stream_events_then_done(echo: EchoProvider, mock_http: Any) -> None:
    body = mock_http.reply_stream(["data: a\n\n: ping\n\ndata: b\n\nevent: end\ndata: {}\n\n"])
    events = await collect(echo.stream(REQUEST))
    assert [(e.type, e.text) for e in events] == [("text", "a"), ("text", "b"), ("done", "")]
    assert mock_http.last_json() == {"prompt": "hello", "stream": True}
    assert body.closed


async def test_stream_stops_reading_at_the_terminal_event(echo: EchoProvider, mock_http: Any) -> None:
    # The server keeps the connection open after its terminal event: we must not wait for it.
    mock_http.reply_stream(["data: a\n\nevent: end\ndata: {}\n\n"], hang=True)
    events = await collect(echo.stream(REQUEST, stall_timeout=5))
    assert events[-1].type == "done"


async def test_stream_closed_early_by_consumer_closes_the_response(echo: EchoProvider, mock_http: Any) -> None:
    body = mock_http.reply_stream(["data: a\n\ndata: b\n\n"], hang=True)
    stream = echo.stream(REQUEST)
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.text == "a"
    assert body.closed


async def test_stream_that_ends_without_terminal_event(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply_stream(["data: a\n\n"])
    received: list[StreamEvent] = []
    with pytest.raises(IncompleteStreamError):
        await collect(echo.stream(REQUEST), received)
    assert [e.text for e in received] == ["a"]


async def test_stream_connection_cut_mid_body(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply_stream(["data: a\n\n"], error=httpx2.RemoteProtocolError("peer closed connection"))
    with pytest.raises(IncompleteStreamError, match="mid-response"):
        await collect(echo.stream(REQUEST))


async def test_stream_read_error_mid_body(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply_stream(["data: a\n\n"], error=httpx2.ReadError("connection reset by peer"))
    with pytest.raises(ProviderConnectionError):
        await collect(echo.stream(REQUEST))


async def test_stream_event_the_decoder_cannot_read(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply_stream(["data: a\n\ndata: bad\n\n"])
    with pytest.raises(InvalidResponseError, match="KeyError"):
        await collect(echo.stream(REQUEST))


async def test_stream_error_status_uses_parse_error(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply_stream([json.dumps({"error": {"message": "no such model", "code": "model_not_found"}})], status=404)
    with pytest.raises(BadRequestError) as info:
        await collect(echo.stream(REQUEST))
    assert info.value.status_code == 404
    assert info.value.provider_code == "model_not_found"


async def test_ndjson_framing(mock_http: Any, make_model: Any) -> None:
    provider = NdjsonEchoProvider(make_model(provider="echo"), mock_http.client)
    mock_http.reply_stream(["one\n\ntw", "o\nEND\n"])
    events = await collect(provider.stream(REQUEST))
    assert [e.text for e in events] == ["one", "two", ""]


# --- stream time limits ------------------------------------------------------------------


async def test_first_token_timeout_when_headers_never_come(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.hang()
    with pytest.raises(FirstTokenTimeoutError):
        await collect(echo.stream(REQUEST, first_token_timeout=0.05))


async def test_first_token_timeout_when_body_never_starts(echo: EchoProvider, mock_http: Any) -> None:
    body = mock_http.reply_stream([": keep-alive\n\n"], hang=True)  # comments are not tokens
    with pytest.raises(FirstTokenTimeoutError):
        await collect(echo.stream(REQUEST, first_token_timeout=0.05, stall_timeout=10))
    assert body.closed


async def test_stall_timeout_after_first_event(echo: EchoProvider, mock_http: Any) -> None:
    body = mock_http.reply_stream(["data: a\n\n"], hang=True)
    received: list[StreamEvent] = []
    with pytest.raises(StreamStalledError) as info:
        await collect(echo.stream(REQUEST, first_token_timeout=10, stall_timeout=0.05), received)
    assert [e.text for e in received] == ["a"]
    assert isinstance(info.value, ProviderTimeoutError)
    assert body.closed


async def test_time_limits_do_not_cover_the_consumers_own_work(echo: EchoProvider, mock_http: Any) -> None:
    mock_http.reply_stream(["data: a\n\ndata: b\n\nevent: end\ndata: {}\n\n"])
    texts = []
    async for event in echo.stream(REQUEST, first_token_timeout=0.05, stall_timeout=0.05):
        texts.append(event.text)
        # A slow consumer: if a timeout scope stayed open across the yield, it would fire here.
        await asyncio.sleep(0.1)
    assert texts == ["a", "b", ""]
