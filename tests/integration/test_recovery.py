"""Traffic returns to a model soon after its outage ends, and a long outage costs a handful of probes.

Two measurements, both with the default breaker settings:

- **Several processes on one real redis-server, on a shared fake clock.** A
  10-minute outage cannot take 10 minutes of a test, and scaling the settings
  down would test other numbers than the defaults. So time is simulated: the
  test owns the clock and sends its reading with every command; each worker (this
  file run as a script: a ``ModelService`` on a ``RedisStateStore``, its
  providers faked) sets its ``ManualClock`` to it. Everything else is real: the
  processes, the Lua scripts, the race for the one probe. Every simulated second
  all workers serve one call at once.
- **Real time against real servers**: the suite's HTTP fault server and a
  redis-server, a 6 s outage (set ``TASKMODELS_RECOVERY_SECONDS`` to measure
  others, e.g. 60: it then takes that long).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

PRIMARY, FALLBACK = "primary", "fallback"
REPLY_TIMEOUT = 20.0


# --- the worker process ----------------------------------------------------------------------


async def _serve(url: str, namespace: str) -> None:
    import structlog
    from pydantic import SecretStr

    from taskmodels.resilience.redis import RedisStateStore
    from taskmodels.resilience.state import Admission
    from taskmodels.sections import ResilienceSettings, StateSettings
    from taskmodels.testing import (
        FakeBackend,
        ManualClock,
        fake_model,
        fake_registry,
        make_test_service,
        reply,
        server_error,
    )

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # stdout carries the replies: no logs
    settings = StateSettings(backend="redis", url=SecretStr(url), namespace=namespace, operation_timeout=2.0)
    store = RedisStateStore.from_settings(settings)
    probes: list[bool] = []
    admit = store.admit

    async def noting_probes(key: str, *, now: float, probe_lease: float) -> Admission:
        admission = await admit(key, now=now, probe_lease=probe_lease)
        probes.append(admission.probe)
        return admission

    store.admit = noting_probes  # type: ignore[method-assign]
    backend = FakeBackend()
    clock = ManualClock(0.0)
    service = make_test_service(
        fake_registry(fake_model(PRIMARY), fake_model(FALLBACK)),
        backend=backend,
        state_store=store,
        resilience=ResilienceSettings(),  # the defaults are what is measured
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        # The shared clock; a backoff sleep within the last call may have moved this one a little past it.
        clock.now = max(clock.now, command["now"])
        backend.always(PRIMARY, reply("back") if command["primary_up"] else server_error(503))
        probes.clear()
        result = await service.complete_with_task_model("t", "p")
        tried = [a.outcome for a in result.attempts if a.model_id == PRIMARY and a.outcome != "skipped"]
        answer = {"model_id": result.model_id, "primary": tried, "probe": any(probes), "on_redis": store.on_redis}
        print(json.dumps(answer), flush=True)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
    raise SystemExit(0)


import httpx2  # noqa: E402 - a worker needs none of this
import pytest  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from taskmodels.providers.factory import ModelProviderFactory  # noqa: E402
from taskmodels.registry.service import ModelRegistryService  # noqa: E402
from taskmodels.resilience.redis import RedisStateStore  # noqa: E402
from taskmodels.sections import ResilienceSettings, StateSettings  # noqa: E402
from taskmodels.settings import Settings  # noqa: E402
from taskmodels.testing import make_test_service  # noqa: E402
from tests.integration.faultserver import FaultServer, model_entry  # noqa: E402
from tests.integration.redisserver import RedisServer, require_redis_server  # noqa: E402
from tests.integration.workers import LineWorker  # noqa: E402

pytestmark = pytest.mark.integration

DEFAULTS = ResilienceSettings()


class Worker(LineWorker):
    def __init__(self, url: str, namespace: str) -> None:
        super().__init__([sys.executable, __file__, url, namespace], reply_timeout=REPLY_TIMEOUT)

    def send(self, **command: Any) -> None:
        self.send_json(command)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer.launch() as server:
        yield server


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[list[Worker]]:
    namespace = f"recovery-{uuid.uuid4().hex[:10]}"
    started = [Worker(redis_server.url, namespace) for _ in range(3)]
    try:
        for w in started:
            assert w.receive() == {"ready": True}
        yield started
    finally:
        for w in started:
            w.close()


def test_a_10_minute_outage_costs_about_log2_of_600_over_the_first_cooldown_probes_across_processes(
    workers: list[Worker],
) -> None:
    outage = 600.0
    failed_probes: list[tuple[float, int]] = []  # (simulated time, worker)
    now = 0.0
    while True:
        assert now < outage + 3600, "traffic never came back to the primary"
        up = now >= outage
        for w in workers:  # all at once: they race for the probe on the server
            w.send(now=now, primary_up=up)
        replies = [w.receive() for w in workers]
        assert all(r["on_redis"] for r in replies)
        probes = [i for i, r in enumerate(replies) if r["probe"]]
        assert len(probes) <= 1, f"several processes probed at {now}: {replies}"
        for i in probes:
            assert len(replies[i]["primary"]) == 1  # a probe is one attempt, never retried
            if replies[i]["primary"] == ["error"]:
                failed_probes.append((now, i))
        if up and any(r["model_id"] == PRIMARY for r in replies):
            recovered_after = now - outage
            break
        now += 1.0

    expected = math.log2(outage / DEFAULTS.breaker_cooldown_initial)
    summary = f"{len(failed_probes)} failed probes (log2 = {expected:.1f}) at {failed_probes}"
    assert abs(len(failed_probes) - expected) <= 1.5, summary
    times = [t for t, _ in failed_probes]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps), summary  # the shared cooldown only grew: no process reset it alone
    assert recovered_after <= DEFAULTS.breaker_cooldown_max + 1.0, recovered_after
    # The figures the issue asks for; shown with -s.
    print(f"\n10 min down, 3 processes: {summary}; back on the primary {recovered_after:.0f} s after recovery")


# --- real time, real servers -----------------------------------------------------------------


def _model(model_id: str, base_url: str) -> dict[str, Any]:
    return model_entry(model_id, base_url, capabilities=["chat"])


async def test_traffic_returns_within_3_seconds_of_a_6_second_outage_in_real_time(
    fault_server: FaultServer, redis_server: RedisServer
) -> None:
    outage = float(os.environ.get("TASKMODELS_RECOVERY_SECONDS", "6"))
    bound = 3.0 if outage <= 6 else 30.0  # the targets: 3 s after a 6 s outage, 30 s after 60 s
    registry = ModelRegistryService.from_dict(
        {
            "models": [_model(PRIMARY, fault_server.base_url), _model(FALLBACK, fault_server.base_url)],
            "taskMappings": [{"taskName": "chat", "primaryModelId": PRIMARY, "fallbackModelIds": [FALLBACK]}],
            "defaultModelId": PRIMARY,
        },
        provider_names={"openai-compatible"},
    )
    store = RedisStateStore.from_settings(
        StateSettings(backend="redis", url=SecretStr(redis_server.url), namespace=f"rt-{uuid.uuid4().hex[:10]}")
    )
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10.0, connect=1.0)) as client:
        factory = ModelProviderFactory(Settings(), client)
        service = make_test_service(
            registry,
            provider_factory=factory,
            state_store=store,
            resilience=DEFAULTS,
        )
        fault_server.down(PRIMARY, "503")
        started = time.monotonic()
        up_at: float | None = None
        hits_at_open: int | None = None
        while True:
            now = time.monotonic()
            assert now < started + outage + bound + 30, "traffic never came back to the primary"
            if up_at is None and now - started >= outage:
                fault_server.up(PRIMARY)
                up_at = time.monotonic()
            async with asyncio.timeout(10):
                result = await service.complete_with_task_model("chat", prompt="hello")
            if hits_at_open is None and any(a.outcome == "skipped" for a in result.attempts):
                hits_at_open = fault_server.hits(PRIMARY) - 0  # the requests that opened the breaker
            if up_at is not None and result.model_id == PRIMARY:
                recovered_after = time.monotonic() - up_at
                break
            await asyncio.sleep(0.05)  # a call every ~50 ms: the traffic, not a wait for a condition
        assert hits_at_open is not None, "the breaker never opened"
        probes = fault_server.hits(PRIMARY) - hits_at_open  # the failed ones and the one that succeeded
        assert store.on_redis
        await store.aclose()
    print(
        f"\n{outage:g} s down in real time: back on the primary {recovered_after:.2f} s after it recovered; "
        f"{probes - 1} failed probes"
    )
    assert recovered_after <= bound
