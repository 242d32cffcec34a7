"""Transport failures onto the error tree, for httpx2 clients and for legacy ``httpx`` ones.

An application moving from httpx to httpx2 may still hand the library an
``httpx.AsyncClient``. Its exceptions are httpx's own classes, not httpx2's, and must be
classified the same way: a timeout is not retried on the same model, a reset is. The
legacy module is never imported here: only ``sys.modules`` is consulted, because a
process that has not imported httpx cannot hold an httpx client.
"""

from __future__ import annotations

import sys
from types import ModuleType
from urllib.parse import urlsplit

import httpx2

from taskmodels.errors import (
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)

__all__ = ["describe_failure", "endpoint", "transport_error_class"]


def transport_error_class(exc: BaseException) -> type[ProviderError] | None:
    """The error class for an HTTP client's exception, or ``None`` when ``exc`` is not one."""
    module = _client_module(exc)
    if module is None:
        return None
    if isinstance(exc, module.TimeoutException):
        return ProviderTimeoutError
    if isinstance(exc, module.DecodingError):
        return InvalidResponseError
    if isinstance(exc, module.RemoteProtocolError):
        return IncompleteStreamError
    return ProviderConnectionError


def _client_module(exc: BaseException) -> ModuleType | None:
    if isinstance(exc, httpx2.HTTPError):
        return httpx2
    legacy = sys.modules.get("httpx")
    if legacy is None or legacy is httpx2:
        return None
    base = getattr(legacy, "HTTPError", None)
    if isinstance(base, type) and isinstance(exc, base):
        return legacy
    return None


def endpoint(url: str) -> str:
    """``host:port`` of a URL. Never its path or query: those can carry a key."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "an invalid URL"
    host = parts.hostname or "an unnamed host"
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}"


def describe_failure(cls: type[ProviderError], provider: str, url: str, exc: BaseException) -> str:
    """The message for a transport failure: what happened, where, and the client's exception class."""
    where = f"{provider} at {endpoint(url)}"
    kind = type(exc).__name__
    if cls is ProviderTimeoutError:
        return f"{where} timed out ({kind})"
    if cls is InvalidResponseError:
        return f"{where} sent a body we could not decode ({kind})"
    if cls is IncompleteStreamError:
        return f"{where} closed the connection mid-response ({kind})"
    return f"could not reach {where} ({kind})"
