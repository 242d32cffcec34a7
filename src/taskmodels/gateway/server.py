"""Building the gateway from a container, and serving it with uvicorn (``taskmodels serve``).

``create_app(container)`` is the public factory: the container's ``gateway`` node, the ASGI app over its
``model_service``, whose lifespan shutdown closes the container. ``worker_app`` is what each uvicorn worker
process calls (an import string, so ``--workers N`` works): a container of its own from the same settings, the
environment's. Workers share breakers, budgets and rate limits only through the state store (Redis).

uvicorn, uvloop and httptools come with ``pip install 'taskmodels[serve]'``; nothing here imports them until
``serve`` runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from taskmodels.errors import ConfigurationError
from taskmodels.gateway.asgi import ASGIApp
from taskmodels.gateway.hooks import Gatekeeper

if TYPE_CHECKING:
    from taskmodels.containers import Container
    from taskmodels.settings import Settings

__all__ = ["INSTALL_HINT", "create_app", "serve", "worker_app"]

INSTALL_HINT = "pip install 'taskmodels[serve]'"
WORKER_APP = "taskmodels.gateway.server:worker_app"


def create_app(
    container: Container,
    *,
    gatekeeper: Gatekeeper | None = None,
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> ASGIApp:
    """The gateway over ``container``'s service: the container's ``gateway`` node, or a new app with this
    ``gatekeeper`` (authentication and per-caller limits, see ``gateway.hooks``), wrapped in ``middleware``
    (ASGI middleware factories, outermost first)."""
    if gatekeeper is None:
        app: ASGIApp = container.gateway()
    else:
        from taskmodels.gateway.app import GatewayApp

        app = GatewayApp(
            container.model_service(), container.settings().gateway, shutdown=container.aclose, gatekeeper=gatekeeper
        )
    for wrap in reversed(middleware):
        app = wrap(app)
    return app


def worker_app() -> ASGIApp:
    """One worker's app: a container built from the environment's settings."""
    from taskmodels.containers import Container

    return create_app(Container())


def serve(settings: Settings, *, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run the gateway until SIGINT or SIGTERM; in-flight requests get ``settings.gateway.shutdown_grace`` seconds.

    Raises ``ConfigurationError`` naming the extra to install when uvicorn is missing.
    """
    try:
        import uvicorn
    except ImportError:
        raise ConfigurationError(f"taskmodels serve needs uvicorn: {INSTALL_HINT}") from None
    gateway = settings.gateway
    options: dict[str, Any] = {
        "host": host if host is not None else gateway.host,
        "port": port if port is not None else gateway.port,
        "workers": workers if workers is not None else gateway.workers,
        "factory": True,
        "lifespan": "on",
        "loop": "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") is not None else "h11",
        "timeout_graceful_shutdown": gateway.shutdown_grace,
        "access_log": gateway.access_log,
        "server_header": False,
        "log_level": "info",
    }
    uvicorn.run(WORKER_APP, **options)
