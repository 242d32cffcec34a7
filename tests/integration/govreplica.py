"""A gateway replica for the governance tests: ``taskmodels serve`` itself (``cli.main``), each worker's container
changed only for observing, never in what is observed:

- ``GOV_TEST_SCALE``: its wall clock runs that many times faster (``time.time() * SCALE``, the same function of
  the same system clock in every replica, so they agree on it as on ``time.time``): a key's minute of ``rpm`` is
  ``60 / SCALE`` real seconds, and a test need not wait minutes;
- on Redis, each request it sends upstream carries the key reservation that admitted it (``RESERVATION``: the
  reservation's id, the time the store logged it at, and whether Redis or this replica's own memory answered), so
  the fault server can count the requests by the time the store admitted them, as well as by when they arrived;
- ``GOV_TEST_LOG``: the library's log at that level (JSON lines on stderr), every event a test can grep.

    python -m tests.integration.govreplica serve --registry PATH --port N     # as taskmodels serve
"""

from __future__ import annotations

import os
import sys
import time
from contextvars import ContextVar
from typing import Any

MINUTE = 60.0  # the window rpm and tpm count in, on the replicas' clock
RESERVATION = "x-test-reservation"

_admitted: ContextVar[str] = ContextVar("admitted", default="")


def worker_app() -> Any:
    """``taskmodels.gateway.server.worker_app`` with the scaled clock and the stamping store and client."""
    import httpx2
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.gateway import create_app
    from taskmodels.resilience.ratelimit import RateDecision
    from taskmodels.resilience.redis import RedisStateStore

    class Stamping(RedisStateStore):
        """The Redis store, remembering in the calling task the key reservation it admitted last."""

        async def reserve_rate(
            self, key: str, ident: str, *, tokens: int, rpm: int | None, tpm: int | None, window: float, now: float
        ) -> RateDecision:
            decision = await super().reserve_rate(key, ident, tokens=tokens, rpm=rpm, tpm=tpm, window=window, now=now)
            if decision.accepted:
                _admitted.set(f"{ident} {decision.at!r} {'redis' if self.on_redis else 'memory'}")
            return decision

    async def stamp(request: httpx2.Request) -> None:
        request.headers[RESERVATION] = _admitted.get()

    level = os.environ.get("GOV_TEST_LOG")
    if level:
        from taskmodels.log import configure_logging

        configure_logging(level, "json")
    container = Container()
    scale = float(os.environ.get("GOV_TEST_SCALE", "1"))
    if scale != 1.0:
        container.wall_clock.override(providers.Object(lambda: time.time() * scale))
    state = container.settings().state
    if state.backend == "redis":
        container.state_store.override(providers.Singleton(Stamping.from_settings, state))
        container.http_client.override(
            providers.Singleton(
                httpx2.AsyncClient, timeout=httpx2.Timeout(30.0, connect=2.0), event_hooks={"request": [stamp]}
            )
        )
    return create_app(container)


if __name__ == "__main__":
    from taskmodels import cli
    from taskmodels.gateway import server

    server.WORKER_APP = "tests.integration.govreplica:worker_app"
    sys.exit(cli.main(sys.argv[1:]))
