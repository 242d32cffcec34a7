"""The registry's tasks as an OpenAI-compatible HTTP endpoint (``taskmodels serve``; docs/gateway.md).

from taskmodels.containers import Container
from taskmodels.gateway import create_app

app = create_app(Container())            # an ASGI app: serve it, or mount it in your own

Names are imported on first use (PEP 562): the app needs the ``serve`` extra (prometheus-client for its
``/metrics``), while the keys file and ``taskmodels keys``, which live in this package too, must work with
``pip install taskmodels`` alone.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Caller": "taskmodels.gateway.hooks",
    "Gatekeeper": "taskmodels.gateway.hooks",
    "GatewayApp": "taskmodels.gateway.app",
    "GatewayError": "taskmodels.gateway.errors",
    "create_app": "taskmodels.gateway.server",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - built from the one export list; the block below re-exports for type checkers


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskmodels.gateway' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from taskmodels.gateway.app import GatewayApp as GatewayApp
    from taskmodels.gateway.errors import GatewayError as GatewayError
    from taskmodels.gateway.hooks import Caller as Caller
    from taskmodels.gateway.hooks import Gatekeeper as Gatekeeper
    from taskmodels.gateway.server import create_app as create_app
