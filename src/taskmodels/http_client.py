"""The pooled ``httpx2.AsyncClient`` providers share, and what closes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx2

from taskmodels.sections import HttpSettings

__all__ = ["ResourcePool", "build_http_client"]


def build_http_client(settings: HttpSettings) -> httpx2.AsyncClient:
    """One pooled client with the limits and timeouts of ``settings``."""
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
    if settings.transport == "aiohttp":
        try:
            from httpx_aiohttp import AiohttpTransport  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            from taskmodels.errors import SettingsError

            raise SettingsError(
                "TASKMODELS_HTTP__TRANSPORT: 'aiohttp' needs the httpx-aiohttp package (pip install httpx-aiohttp)"
            ) from exc
        return httpx2.AsyncClient(timeout=timeout, limits=limits, transport=AiohttpTransport(), verify=settings.verify)
    return httpx2.AsyncClient(timeout=timeout, limits=limits, http2=settings.http2, verify=settings.verify)


class ResourcePool:
    """Remembers what a container opened, whatever its scope, so that one call closes it all."""

    def __init__(self) -> None:
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def add(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def open_http_client(self, settings: HttpSettings) -> httpx2.AsyncClient:
        client = build_http_client(settings)
        self.add(client.aclose)
        return client

    async def aclose(self) -> None:
        closers, self._closers = self._closers, []
        errors: list[BaseException] = []
        for close in reversed(closers):
            try:
                await close()
            except Exception as exc:  # close every resource even when one fails
                errors.append(exc)
        if errors:
            raise errors[0]
