"""An ``httpx2`` transport that sends requests with aiohttp: the fast path behind ``taskmodels[fast]``.

httpx2's client stays the interface every provider uses (requests, responses,
``HTTPError`` classes); only the wire work moves to aiohttp's connection pool and
its C HTTP parser. Every aiohttp failure is raised as the ``httpx2`` exception
the default transport raises for the same event, so a provider classifies a
failure the same way whichever transport carried the request.

What maps onto aiohttp and what cannot:

- ``Limits.max_connections`` is the connector's ``limit``; ``keepalive_expiry`` its
  ``keepalive_timeout``; ``max_keepalive_connections=0`` closes every connection
  after its response. aiohttp has no cap on idle connections other than ``limit``.
- ``Timeout.connect`` bounds opening a socket, ``Timeout.pool + Timeout.connect``
  bounds getting a connection at all (aiohttp measures both from the same start),
  ``Timeout.read`` bounds each wait for data. aiohttp has no write timeout: a
  request body is written before its response is awaited under the read limit.
- TLS uses the ``ssl.SSLContext`` it is given, the one the default transport uses.
- Proxies come from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` as read when the session opens.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.request import getproxies

import aiohttp
import httpx2

__all__ = ["AiohttpTransport", "translate_error"]

# First match wins, so each subclass comes before its base. The httpx2 class is the one
# its own transport raises for the same event (a refused or failed TLS handshake is a
# ConnectError there too; a peer that closes before a full response, RemoteProtocolError).
_ERROR_MAP: tuple[tuple[type[BaseException], type[httpx2.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx2.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx2.TimeoutException),
    (aiohttp.ClientProxyConnectionError, httpx2.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx2.ProxyError),
    (aiohttp.ClientConnectorError, httpx2.ConnectError),
    (aiohttp.ServerFingerprintMismatch, httpx2.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),
    (aiohttp.ClientConnectionResetError, httpx2.WriteError),
    (aiohttp.ClientOSError, httpx2.ReadError),
    (aiohttp.ClientConnectionError, httpx2.NetworkError),
    (aiohttp.ClientResponseError, httpx2.RemoteProtocolError),
    (aiohttp.NonHttpUrlClientError, httpx2.UnsupportedProtocol),
    (aiohttp.InvalidURL, httpx2.UnsupportedProtocol),
    (TimeoutError, httpx2.TimeoutException),
)


def translate_error(exc: BaseException, request: httpx2.Request) -> httpx2.TransportError:
    """The ``httpx2`` exception for an aiohttp failure on ``request``."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientPayloadError):
        # A body cut short: by a reset it is a read error, as in httpx2; by a clean close
        # before the end (the chunked terminator or Content-Length never came), a protocol error.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConnectionResetError | aiohttp.ClientOSError):
            return httpx2.ReadError(message, request=request)
        return httpx2.RemoteProtocolError(message, request=request)
    for source, target in _ERROR_MAP:
        if isinstance(exc, source):
            return target(message, request=request)
    return httpx2.TransportError(message, request=request)


_CAUGHT = (aiohttp.ClientError, TimeoutError)


@contextmanager
def _mapped(request: httpx2.Request) -> Iterator[None]:
    try:
        yield
    except _CAUGHT as exc:
        raise translate_error(exc, request) from exc


class _ResponseBody(httpx2.AsyncByteStream):
    """aiohttp's response body as httpx2 reads it; closing hands the connection back to the pool."""

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request):
            # iter_any hands over what has arrived at once: an SSE event is not held back for a full buffer.
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end returns the connection for reuse; one left unread closes it.
        self._response.release()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """Sends ``httpx2`` requests over one ``aiohttp.ClientSession``, opened on first use in the running loop."""

    def __init__(self, *, ssl_context: ssl.SSLContext, limits: httpx2.Limits | None = None) -> None:
        self._ssl = ssl_context
        self._limits = limits or httpx2.Limits()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        limits = self._limits
        keep: dict[str, Any] = (
            {"force_close": True}
            if limits.max_keepalive_connections == 0
            else {"keepalive_timeout": limits.keepalive_expiry}
        )
        connector = aiohttp.TCPConnector(
            ssl=self._ssl,
            limit=limits.max_connections or 0,  # 0: no limit, as httpx2's None
            limit_per_host=0,
            **keep,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # httpx2 decodes content encodings, follows redirects and keeps cookies itself.
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            # Proxies from HTTP(S)_PROXY / NO_PROXY, as httpx2's default reads them, but only when one is
            # set: aiohttp's trust_env re-reads the environment and ~/.netrc on every request (2.2× the CPU).  # noqa: RUF003 - the multiplication sign of a measured ratio
            trust_env=bool(getproxies()),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._session
        if session is None:
            session = self._session = self._open()
        limits: dict[str, float | None] = request.extensions.get("timeout", {})
        connect, pool = limits.get("connect"), limits.get("pool")
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=limits.get("read"),
        )
        headers = request.headers.multi_items()
        data: Any
        try:
            data = request.content or None
        except httpx2.RequestNotRead:
            # A streamed body: aiohttp sends it chunked and writes that header itself.
            data = request.stream
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        with _mapped(request):
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=False,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseBody(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
