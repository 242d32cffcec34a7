"""The pooled ``httpx2.AsyncClient`` providers share, its transport and TLS, and what closes it."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx2

from taskmodels.errors import SettingsError
from taskmodels.sections import HttpSettings

__all__ = ["ResourcePool", "build_http_client", "build_ssl_context", "resolve_transport"]


def _aiohttp_installed() -> bool:
    # Imported rather than looked up: whoever asks is about to use it, and a broken install counts as missing.
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_transport(settings: HttpSettings) -> Literal["httpx2", "aiohttp"]:
    """The transport ``settings.transport`` means here: ``auto`` takes aiohttp when it is installed.

    As uvicorn takes uvloop: installing ``taskmodels[fast]`` is the whole opt-in. HTTP/2 is httpx2's alone.
    """
    if settings.transport == "aiohttp":
        if settings.http2:
            raise SettingsError(
                "TASKMODELS_HTTP__TRANSPORT: 'aiohttp' speaks HTTP/1.1 only; TASKMODELS_HTTP__HTTP2 needs 'httpx2'"
            )
        if not _aiohttp_installed():
            raise SettingsError(
                "TASKMODELS_HTTP__TRANSPORT: 'aiohttp' needs the aiohttp package (pip install 'taskmodels[fast]')"
            )
        return "aiohttp"
    if settings.transport == "auto" and not settings.http2 and _aiohttp_installed():
        return "aiohttp"
    return "httpx2"


def build_ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    """The TLS context both transports use.

    By default httpx2's: the operating system's trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
    when set). ``ca_bundle`` trusts exactly the CAs it holds; ``verify=False`` checks nothing.
    """
    if not settings.verify:
        return httpx2.create_ssl_context(verify=False)
    bundle = settings.ca_bundle
    if bundle is None:
        return httpx2.create_ssl_context()
    try:
        if bundle.is_dir():
            return ssl.create_default_context(capath=str(bundle))
        return ssl.create_default_context(cafile=str(bundle))
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"TASKMODELS_HTTP__CA_BUNDLE: cannot load {bundle}: {exc}") from None


def build_http_client(settings: HttpSettings) -> httpx2.AsyncClient:
    """One pooled client with the limits, timeouts, TLS and transport of ``settings``."""
    timeout = httpx2.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )
    limits = httpx2.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=settings.keepalive_expiry,
    )
    ssl_context = build_ssl_context(settings)
    if resolve_transport(settings) == "aiohttp":
        from taskmodels.aiohttp_transport import AiohttpTransport

        transport = AiohttpTransport(ssl_context=ssl_context, limits=limits)
        return httpx2.AsyncClient(timeout=timeout, transport=transport)
    return httpx2.AsyncClient(timeout=timeout, limits=limits, http2=settings.http2, verify=ssl_context)


class ResourcePool:
    """Remembers what a container opened, whatever its scope, so that one call closes it all."""

    def __init__(self) -> None:
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.closed = False
        """Set by ``aclose``: what was built on these resources must not be used again (``ServiceClosedError``)."""

    def add(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def __len__(self) -> int:
        """Resources open and held until ``aclose``."""
        return len(self._closers)

    def open_http_client(self, settings: HttpSettings) -> httpx2.AsyncClient:
        client = build_http_client(settings)
        self.add(client.aclose)
        return client

    async def aclose(self) -> None:
        self.closed = True
        closers, self._closers = self._closers, []
        errors: list[BaseException] = []
        for close in reversed(closers):
            try:
                await close()
            except Exception as exc:  # close every resource even when one fails  # noqa: BLE001 - close every resource even when one fails
                errors.append(exc)
        if errors:
            raise errors[0]
