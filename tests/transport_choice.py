"""Runs a test suite on the transport ``TASKMODELS_HTTP__TRANSPORT`` names, including its hand-built clients.

The provider and integration suites build many ``httpx2.AsyncClient()`` directly. CI runs
those suites once per transport (``.ci/run``); for the second run to exercise the other
transport, a client built without an explicit transport gets the chosen one here, with the
limits and TLS it was given. Clients with their own transport (``MockTransport``) keep it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx2
import pytest

from taskmodels.http_client import resolve_transport

__all__ = ["chosen_transport", "use_chosen_transport"]

_ORIGINAL_INIT_TRANSPORT = httpx2.AsyncClient._init_transport


@cache
def chosen_transport() -> str:
    """What the library's default settings resolve to in this environment (``auto`` unless the variable says)."""
    from taskmodels.settings import load_settings

    return resolve_transport(load_settings(_env_file=None).http)


def use_chosen_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    if chosen_transport() != "aiohttp":
        return
    from taskmodels.aiohttp_transport import AiohttpTransport

    def init_transport(  # noqa: PLR0917  (the signature httpx2 calls it with)
        self: httpx2.AsyncClient,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx2.Limits = httpx2.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> httpx2.AsyncBaseTransport:
        if transport is not None or http2:
            return _ORIGINAL_INIT_TRANSPORT(self, verify, cert, trust_env, http1, http2, limits, transport)
        return AiohttpTransport(ssl_context=httpx2.create_ssl_context(verify=verify, cert=cert), limits=limits)

    monkeypatch.setattr(httpx2.AsyncClient, "_init_transport", init_transport)
