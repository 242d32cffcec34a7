"""Both transports against real loopback servers: the same answers, the same httpx2 errors, the pool limits honoured.

The provider layer classifies failures by httpx2 exception class (a timeout is retried
differently from a refused connection), so each fault must raise the same class whichever
transport carried the request.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx2
import pytest

from taskmodels.errors import SettingsError
from taskmodels.http_client import build_http_client, resolve_transport
from taskmodels.sections import HttpSettings
from taskmodels.settings import load_settings
from tests.conftest import IN_CI
from tests.integration.faultserver import Behaviour, FaultServer

if not IN_CI:  # in CI the dev group installs aiohttp: a missing one fails at the import below
    pytest.importorskip("aiohttp")
import aiohttp

from taskmodels.aiohttp_transport import translate_error

TRANSPORTS = ["httpx2", "aiohttp"]


class KeepAliveServer:
    """HTTP/1.1 with keep-alive on 127.0.0.1: answers ``ok`` after ``delay``; counts connections."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if self.delay:
                    await asyncio.sleep(self.delay)  # holds the connection busy: the pool must open another or wait
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def client(transport: str, **http: Any) -> httpx2.AsyncClient:
    return build_http_client(HttpSettings(transport=transport, **http))  # type: ignore[arg-type]


async def read_stream(http: httpx2.AsyncClient, url: str) -> list[str]:
    async with http.stream("POST", url, json={"model": "m", "stream": True}) as response:
        return [line async for line in response.aiter_lines()]


# --- choosing the transport ------------------------------------------------------------


def test_auto_takes_aiohttp_when_installed_and_httpx2_for_http2() -> None:
    assert resolve_transport(HttpSettings()) == "aiohttp"
    assert resolve_transport(HttpSettings(http2=True)) == "httpx2"
    assert resolve_transport(HttpSettings(transport="httpx2")) == "httpx2"
    assert HttpSettings(transport="httpx").transport == "httpx2"  # type: ignore[arg-type]  # the old name


def test_auto_falls_back_to_httpx2_and_explicit_aiohttp_fails_clearly_without_aiohttp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "aiohttp", None)  # import aiohttp now raises ImportError
    assert resolve_transport(HttpSettings()) == "httpx2"
    with pytest.raises(SettingsError, match=r"TASKMODELS_HTTP__TRANSPORT.*taskmodels\[fast\]"):
        build_http_client(HttpSettings(transport="aiohttp"))


def test_aiohttp_with_http2_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"HTTP/1\.1 only"):
        build_http_client(HttpSettings(transport="aiohttp", http2=True))


def test_env_selects_the_transport_and_rejects_unknown_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMODELS_HTTP__TRANSPORT", "httpx2")
    assert load_settings(_env_file=None).http.transport == "httpx2"
    monkeypatch.setenv("TASKMODELS_HTTP__TRANSPORT", "urllib")
    with pytest.raises(SettingsError, match="TASKMODELS_HTTP__TRANSPORT"):
        load_settings(_env_file=None)


# --- the same answers and the same errors --------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_answers_and_streams(fault_server: FaultServer, transport: str) -> None:
    url = fault_server.base_url + "/chat/completions"
    async with client(transport) as http:
        answer = await http.post(url, json={"model": "m", "messages": []})
        async with http.stream("POST", url, json={"model": "m", "stream": True}) as response:
            lines = [line async for line in response.aiter_lines() if line]
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "answer from m"
    assert response.headers["content-type"] == "text/event-stream"
    assert lines[-1] == "data: [DONE]"
    assert len(lines) == 8  # role, the four text chunks, finish, usage, [DONE]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("reset", httpx2.ReadError),
        (Behaviour.cut(after_chunks=1), httpx2.RemoteProtocolError),
        ("silent", httpx2.ReadTimeout),
        (Behaviour.stall(after_chunks=1), httpx2.ReadTimeout),
    ],
    ids=["reset", "cut", "silent", "stall"],
)
async def test_faults_raise_the_httpx2_class_of_the_default_transport(
    fault_server: FaultServer, transport: str, behaviour: str | Behaviour, expected: type[httpx2.RequestError]
) -> None:
    fault_server.always("m", behaviour)
    async with client(transport, read_timeout=0.3) as http:
        with pytest.raises(expected) as caught:
            await read_stream(http, fault_server.base_url + "/chat/completions")
    assert type(caught.value) is expected
    assert caught.value.request.url.path == "/v1/chat/completions"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_connection_is_a_connect_error(transport: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with client(transport) as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), httpx2.ConnectTimeout),
        (aiohttp.SocketTimeoutError("read"), httpx2.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx2.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx2.ReadError),
        (aiohttp.ClientConnectionResetError("closing transport"), httpx2.WriteError),
        (aiohttp.ClientPayloadError("not completed"), httpx2.RemoteProtocolError),
        (aiohttp.NonHttpUrlClientError("ftp://x"), httpx2.UnsupportedProtocol),
        (aiohttp.ClientConnectionError("gone"), httpx2.NetworkError),
        (aiohttp.ClientError("other"), httpx2.TransportError),
        (TimeoutError(), httpx2.TimeoutException),
    ],
)
def test_every_aiohttp_failure_has_its_httpx2_class(error: BaseException, expected: type[Exception]) -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/v1")
    mapped = translate_error(error, request)
    assert type(mapped) is expected
    assert mapped.request is request


def test_a_body_cut_by_a_reset_is_a_read_error() -> None:
    error = aiohttp.ClientPayloadError("not completed")
    error.__cause__ = ConnectionResetError(104, "reset")
    assert type(translate_error(error, httpx2.Request("GET", "http://x/"))) is httpx2.ReadError


# --- the pool ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sequential_calls_reuse_one_connection(transport: str) -> None:
    server = KeepAliveServer()
    async with server as url, client(transport) as http:
        for _ in range(5):
            assert (await http.post(url, content=b"{}")).text == "ok"
    assert server.connections == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_keepalive_opens_a_connection_per_call(transport: str) -> None:
    server = KeepAliveServer()
    async with server as url, client(transport, max_keepalive_connections=0) as http:
        for _ in range(3):
            assert (await http.post(url, content=b"{}")).text == "ok"
    assert server.connections == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_max_connections_bounds_the_pool(transport: str) -> None:
    server = KeepAliveServer(delay=0.05)
    async with server as url, client(transport, max_connections=2) as http:
        answers = await asyncio.gather(*(http.post(url, content=b"{}") for _ in range(6)))
    assert [a.text for a in answers] == ["ok"] * 6
    assert server.most_open == 2


def test_hand_built_clients_run_on_the_chosen_transport() -> None:
    from taskmodels.aiohttp_transport import AiohttpTransport
    from tests.transport_choice import chosen_transport

    built = httpx2.AsyncClient()
    on_aiohttp = isinstance(built._transport, AiohttpTransport)
    assert on_aiohttp == (chosen_transport() == "aiohttp")
    assert isinstance(
        httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(204)))._transport,
        httpx2.MockTransport,
    )
