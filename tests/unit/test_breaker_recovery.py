"""How fast traffic returns to a model after an outage, with the default breaker settings, on a fake clock.

A call arrives every ``step`` seconds of the fake clock while the primary is down
for ``outage`` seconds, then up. Measured: how long after the primary came back
the first call was served by it, and how many probes failed in between. With the
former fixed 30 s cooldown a 6 s outage kept traffic off the primary for ~24 s
after it recovered, and a 10-minute outage cost ~20 failed probes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from taskmodels.registry.schema import ModelConfig
from taskmodels.sections import ResilienceSettings
from taskmodels.testing import (
    Fail,
    FakeBackend,
    ManualClock,
    Step,
    fake_model,
    fake_registry,
    make_test_service,
    reply,
    server_error,
)

PRIMARY, FALLBACK = "primary", "fallback"
REGISTRY = fake_registry(fake_model(PRIMARY), fake_model(FALLBACK))
DEFAULTS = ResilienceSettings()


@dataclass(frozen=True)
class Recovery:
    after: float  # seconds from the primary's recovery to the first call it served
    failed_probes: list[float]  # when each failed probe was made, seconds into the outage


async def outage(seconds: float, *, step: float) -> Recovery:
    backend = FakeBackend()
    clock = ManualClock()
    service = make_test_service(
        REGISTRY,
        backend=backend,
        resilience=DEFAULTS,
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )
    start = clock.now
    up_at = start + seconds
    backend.always(PRIMARY, server_error(503))
    failed_probes: list[float] = []
    while True:
        assert clock.now < up_at + 3600, "traffic never came back to the primary"
        if clock.now >= up_at:
            backend.always(PRIMARY, reply("back"))
        probing = (await service.breaker.snapshot(PRIMARY)).state == "half_open"
        result = await service.complete_with_task_model("t", "p")
        tried = [a for a in result.attempts if a.model_id == PRIMARY and a.outcome != "skipped"]
        if probing:
            assert len(tried) == 1, "a probe is one attempt, never retried"
            if tried[0].outcome == "error":
                failed_probes.append(clock.now - start)
        if result.model_id == PRIMARY and clock.now >= up_at:
            return Recovery(clock.now - up_at, failed_probes)
        clock.advance(step)


async def test_a_6_second_outage_gives_traffic_back_within_3_seconds() -> None:
    recovery = await outage(6, step=0.1)
    assert recovery.after <= 3.0, recovery
    assert len(recovery.failed_probes) >= 1  # the breaker did open: the primary was probed, not retried


async def test_a_60_second_outage_gives_traffic_back_within_30_seconds() -> None:
    recovery = await outage(60, step=0.1)
    assert recovery.after <= 30.0, recovery


async def test_a_10_minute_outage_costs_about_log2_of_600_over_the_first_cooldown_probes() -> None:
    recovery = await outage(600, step=0.5)
    expected = math.log2(600 / DEFAULTS.breaker_cooldown_initial)
    assert abs(len(recovery.failed_probes) - expected) <= 1.5, recovery
    # Each failed probe at least doubles the wait until the cap: the gaps never shrink.
    gaps = [b - a for a, b in itertools.pairwise(recovery.failed_probes)]
    assert gaps == sorted(gaps)
    assert max(gaps) <= DEFAULTS.breaker_cooldown_max + 1.0
    assert recovery.after <= DEFAULTS.breaker_cooldown_max + 1.0


class AnswersLate(FakeBackend):
    """Each failure comes back ``latency`` seconds of the fake clock after the call was sent."""

    def __init__(self, clock: ManualClock, latency: float) -> None:
        super().__init__()
        self.clock = clock
        self.latency = latency

    def next_step(self, model: ModelConfig) -> Step:
        step = super().next_step(model)
        if isinstance(step, Fail):
            self.clock.advance(self.latency)
        return step


async def test_probes_on_a_4_second_beat_do_not_slip_a_beat_when_each_503_takes_5_ms() -> None:
    # A failover benchmark's longer profile: the primary down for 60 s, a request every 4 s, each 503 back 5 ms
    # after it was sent. The breaker opens on the first failure (threshold 1), and a probe taken 5 ms early
    # no longer waits for the next request.
    clock = ManualClock()
    backend = AnswersLate(clock, 0.005)
    backend.always(PRIMARY, server_error(503))
    service = make_test_service(
        REGISTRY,
        backend=backend,
        resilience=ResilienceSettings(breaker_failure_threshold=1, max_attempts_per_model=1),
        clock=clock,
        wall_clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )
    start, outage, beat = clock.now, 60.0, 4.0
    sent_to_primary: list[float] = []
    for n in range(60):
        clock.now = start + n * beat
        if n * beat >= outage:
            backend.always(PRIMARY, reply("back"))
        result = await service.complete_with_task_model("t", "p")
        if any(a.model_id == PRIMARY and a.outcome != "skipped" for a in result.attempts):
            sent_to_primary.append(n * beat)
        if result.model_id == PRIMARY:
            break
        assert result.model_id == FALLBACK
    # The first request opens the breaker; then a probe with every request due (1, 2, 4, 8, 16, 32 s after
    # the probe before it was sent): back on the primary 8 s after it recovered.
    assert sent_to_primary == [0.0, 4.0, 8.0, 12.0, 20.0, 36.0, 68.0]
    assert sent_to_primary[-1] - outage <= 10.0
