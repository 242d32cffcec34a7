"""Building the gateway from a container, and serving it with uvicorn (``taskmodels serve``).

``create_app(container)`` is the public factory: the container's ``gateway`` node, the ASGI app over its
``model_service``, whose lifespan shutdown closes the container. ``worker_app`` is what each uvicorn worker
process calls (an import string, so ``--workers N`` works): a container of its own from the same settings, the
environment's. Workers share breakers, budgets and rate limits only through the state store (Redis), and their
metrics through ``PROMETHEUS_MULTIPROC_DIR``. Without a keys file it serves only this machine unless told
``unauthenticated``.

uvicorn, uvloop and httptools come with ``pip install 'taskmodels[serve]'``; nothing here imports them until
``serve`` runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from taskmodels.errors import ConfigurationError
from taskmodels.gateway.asgi import ASGIApp
from taskmodels.gateway.hooks import Gatekeeper

if TYPE_CHECKING:
    from taskmodels.containers import Container
    from taskmodels.settings import Settings

__all__ = ["INSTALL_HINT", "check_exposure", "create_app", "is_loopback", "serve", "worker_app"]

INSTALL_HINT = "pip install 'taskmodels[serve]'"
WORKER_APP = "taskmodels.gateway.server:worker_app"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # metrics.py's, not imported from there: it imports prometheus-client


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

        settings = container.settings()
        app = GatewayApp(
            container.model_service(),
            settings.gateway,
            shutdown=container.aclose,
            gatekeeper=gatekeeper,
            operations=container.operations(),
            trace_context=settings.telemetry.enabled,
            wall_clock=container.wall_clock(),
        )
    for wrap in reversed(middleware):
        app = wrap(app)
    return app


def worker_app() -> ASGIApp:
    """One worker's app: a container built from the environment's settings."""
    from taskmodels.containers import Container

    return create_app(Container())


def is_loopback(host: str) -> bool:
    """Whether ``host`` answers only this machine: ``localhost``, ``127.0.0.0/8``, ``::1``."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(settings: Settings, host: str, *, unauthenticated: bool = False) -> None:
    """Refuse (``ConfigurationError``) to serve beyond this machine without keys, unless asked in so many words."""
    if settings.gateway.keys_file is None and not unauthenticated and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve {host} without keys: anyone who can reach it could call every task. "
            "Set TASKMODELS_GATEWAY__KEYS_FILE (make a key with: taskmodels keys add NAME), "
            "or pass --unauthenticated to serve every task to anyone who can reach it"
        )


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    unauthenticated: bool = False,
) -> None:
    """Run the gateway until SIGINT or SIGTERM; in-flight requests get ``settings.gateway.shutdown_grace`` seconds.

    Raises ``ConfigurationError`` naming the extra to install when uvicorn is missing, and when asked to serve
    beyond this machine with no keys file and not ``unauthenticated`` (``check_exposure``). Several workers share
    their Prometheus metrics through a directory of their own (``PROMETHEUS_MULTIPROC_DIR``, made here unless set).
    """
    try:
        import uvicorn
    except ImportError:
        raise ConfigurationError(f"taskmodels serve needs uvicorn: {INSTALL_HINT}") from None
    gateway = settings.gateway
    host = host if host is not None else gateway.host
    workers = workers if workers is not None else gateway.workers
    check_exposure(settings, host, unauthenticated=unauthenticated)
    options: dict[str, Any] = {
        "host": host,
        "port": port if port is not None else gateway.port,
        "workers": workers,
        "factory": True,
        "lifespan": "on",
        "loop": "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") is not None else "h11",
        "timeout_graceful_shutdown": gateway.shutdown_grace,
        "access_log": gateway.access_log,
        "server_header": False,
        "log_level": "info",
    }
    with _metrics_directory(workers > 1 and gateway.metrics):
        uvicorn.run(WORKER_APP, **options)


@contextlib.contextmanager
def _metrics_directory(shared: bool) -> Iterator[None]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers to start with, removed after them; one the operator set
    is theirs to keep."""
    if not shared or os.environ.get(MULTIPROC_VARIABLE):
        yield
        return
    directory = tempfile.mkdtemp(prefix="taskmodels-metrics-")
    os.environ[MULTIPROC_VARIABLE] = directory  # before any worker starts: prometheus-client reads it at import
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)
