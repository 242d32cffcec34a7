"""The ``StateStore`` contract, run against ``MemoryStateStore`` and ``RedisStateStore`` on a real redis-server.

The memory store is the reference: every test here must pass unchanged on both.
A Redis test also checks that its answers really came from Redis, not from the
local fallback.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from taskmodels.resilience.breaker import CircuitBreaker
from taskmodels.resilience.redis import RedisStateStore
from taskmodels.resilience.state import BreakerSnapshot, MemoryStateStore, StateStore, next_cooldown
from taskmodels.sections import StateSettings
from taskmodels.testing import ManualClock
from tests.integration.redisserver import RedisServer, require_redis_server

pytestmark = pytest.mark.integration

DAY = 86400.0
T0 = 1_700_000_000.0  # an instant well inside one day window: floor(T0 / DAY) * DAY < T0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer.launch() as server:
        yield server


def redis_store(server: RedisServer, **overrides: object) -> RedisStateStore:
    settings = StateSettings.model_validate(
        {
            "backend": "redis",
            "url": SecretStr(server.url),
            "namespace": f"test-{uuid.uuid4().hex[:12]}",
            # Generous: the contract is about answers, and CI machines are shared.
            "operation_timeout": 2.0,
            **overrides,
        }
    )
    return RedisStateStore.from_settings(settings)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    s = redis_store(request.getfixturevalue("redis_server"))
    yield s
    assert s.on_redis, "a Redis contract test was answered by the local fallback"
    await s.aclose()


# --- breakers ------------------------------------------------------------------------------


async def test_unknown_key_is_closed_and_admitted(store: StateStore) -> None:
    snap = await store.breaker("m", now=T0)
    assert (snap.key, snap.state, snap.consecutive_failures, snap.retry_at) == ("m", "closed", 0, None)
    admission = await store.admit("m", now=T0, probe_lease=5)
    assert admission.allowed
    assert not admission.probe
    assert admission.retry_at is None
    assert await store.breakers(now=T0) == {}


async def test_failures_below_threshold_stay_closed(store: StateStore) -> None:
    for n in (1, 2):
        snap = await store.record_failure("m", now=T0, threshold=3, cooldown=30)
        assert snap.state == "closed"
        assert snap.consecutive_failures == n
        assert snap.retry_at is None
    assert (await store.admit("m", now=T0, probe_lease=5)).allowed
    assert (await store.breaker("m", now=T0)).consecutive_failures == 2


async def test_threshold_opens_and_refuses_until_cooldown(store: StateStore) -> None:
    for _ in range(2):
        await store.record_failure("m", now=T0, threshold=3, cooldown=30)
    snap = await store.record_failure("m", now=T0 + 1, threshold=3, cooldown=30)
    assert (snap.state, snap.consecutive_failures, snap.retry_at) == ("open", 3, T0 + 31)
    refused = await store.admit("m", now=T0 + 30.5, probe_lease=5)
    assert (refused.allowed, refused.probe, refused.retry_at) == (False, False, T0 + 31)
    assert (await store.breaker("m", now=T0 + 31)).state == "half_open"


async def test_one_probe_after_cooldown_then_lease_expiry_lets_another(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=1, cooldown=10)
    probe = await store.admit("m", now=T0 + 10, probe_lease=4)
    assert (probe.allowed, probe.probe) == (True, True)
    second = await store.admit("m", now=T0 + 11, probe_lease=4)
    assert (second.allowed, second.probe, second.retry_at) == (False, False, T0 + 14)
    again = await store.admit("m", now=T0 + 14, probe_lease=4)
    assert (again.allowed, again.probe) == (True, True)


async def test_probe_failure_reopens_below_threshold(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=1, cooldown=10)
    await store.admit("m", now=T0 + 10, probe_lease=4)
    snap = await store.record_failure("m", now=T0 + 12, threshold=100, cooldown=10)
    # The cooldown counts from when the probe was let through (T0 + 10), not from its failure.
    assert (snap.state, snap.consecutive_failures, snap.retry_at) == ("open", 2, T0 + 20)
    assert not (await store.admit("m", now=T0 + 19.99, probe_lease=4)).allowed
    assert (await store.admit("m", now=T0 + 20, probe_lease=4)).probe


async def test_failure_while_open_without_probe_keeps_retry_at(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=2, cooldown=10)
    await store.record_failure("m", now=T0, threshold=2, cooldown=10)
    # A call admitted before the breaker opened fails late: the count is past the threshold,
    # so the cooldown starts again from this failure.
    snap = await store.record_failure("m", now=T0 + 5, threshold=2, cooldown=10)
    assert (snap.state, snap.consecutive_failures, snap.retry_at) == ("open", 3, T0 + 15)
    # Below the threshold and with no probe out, a failure leaves the retry time alone.
    snap = await store.record_failure("m", now=T0 + 6, threshold=10, cooldown=10)
    assert (snap.state, snap.consecutive_failures, snap.retry_at) == ("open", 4, T0 + 15)


async def test_probe_success_closes_and_forgets(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=1, cooldown=10)
    assert (await store.admit("m", now=T0 + 10, probe_lease=4)).probe
    snap = await store.record_success("m", now=T0 + 11)
    assert (snap.state, snap.consecutive_failures, snap.retry_at) == ("closed", 0, None)
    assert (await store.breaker("m", now=T0 + 11)).consecutive_failures == 0
    admission = await store.admit("m", now=T0 + 11, probe_lease=4)
    assert (admission.allowed, admission.probe) == (True, False)
    assert "m" not in await store.breakers(now=T0 + 11)


async def test_success_clears_failures_of_a_closed_breaker(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=3, cooldown=10)
    await store.record_success("m", now=T0)
    snap = await store.record_failure("m", now=T0, threshold=3, cooldown=10)
    assert snap.consecutive_failures == 1
    assert snap.state == "closed"
    assert (await store.record_success("never-seen", now=T0)).state == "closed"


async def test_breakers_lists_every_known_breaker(store: StateStore) -> None:
    keys = ["closed-one", "open:with:colons", "half-open", "ünïcode/*?[x]"]
    await store.record_failure(keys[0], now=T0, threshold=5, cooldown=10)
    await store.record_failure(keys[1], now=T0, threshold=1, cooldown=100)
    await store.record_failure(keys[2], now=T0 - 20, threshold=1, cooldown=10)
    await store.record_failure(keys[3], now=T0, threshold=1, cooldown=1)
    found = await store.breakers(now=T0)
    assert set(found) == set(keys)
    assert {k: s.state for k, s in found.items()} == {
        keys[0]: "closed",
        keys[1]: "open",
        keys[2]: "half_open",
        keys[3]: "open",
    }
    assert found[keys[1]].retry_at == T0 + 100
    assert found[keys[0]] == await store.breaker(keys[0], now=T0)


async def test_fractional_times_round_trip_exactly(store: StateStore) -> None:
    now, cooldown = 1_700_000_000.123456789, 0.1 + 0.2
    snap = await store.record_failure("m", now=now, threshold=1, cooldown=cooldown)
    assert snap.retry_at == now + cooldown
    refused = await store.admit("m", now=now, probe_lease=1)
    assert refused.retry_at == now + cooldown


async def test_concurrent_admits_let_exactly_one_probe_through(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=1, cooldown=1)
    admissions = await asyncio.gather(*(store.admit("m", now=T0 + 2, probe_lease=5) for _ in range(20)))
    assert sum(a.probe for a in admissions) == 1
    assert sum(a.allowed for a in admissions) == 1


# --- the adaptive cooldown ------------------------------------------------------------------


async def _fail_probe(store: StateStore, now: float, *, cooldown: float, cap: float | None) -> BreakerSnapshot:
    probe = await store.admit("m", now=now, probe_lease=4)
    assert probe.probe, f"no probe at {now - T0}"
    return await store.record_failure("m", now=now + 0.5, threshold=3, cooldown=cooldown, cooldown_max=cap)


async def test_each_failed_probe_doubles_the_cooldown_up_to_the_cap(store: StateStore) -> None:
    for _ in range(3):
        snap = await store.record_failure("m", now=T0, threshold=3, cooldown=2, cooldown_max=10)
    assert (snap.state, snap.retry_at, snap.cooldown) == ("open", T0 + 2, 2)
    cooldowns = []
    for _ in range(5):
        assert snap.retry_at is not None
        now = snap.retry_at
        snap = await _fail_probe(store, now, cooldown=2, cap=10)
        cooldowns.append(snap.cooldown)
        assert snap.state == "open"
        assert snap.retry_at is not None
        assert snap.cooldown is not None
        assert snap.retry_at == now + snap.cooldown  # counted from the probe's admission, not its failure
        refused = await store.admit("m", now=snap.retry_at - 0.01, probe_lease=4)
        assert (refused.allowed, refused.retry_at) == (False, snap.retry_at)
    assert cooldowns == [4, 8, 10, 10, 10]
    assert await store.breaker("m", now=T0) == snap
    assert (await store.breakers(now=T0))["m"] == snap


async def test_a_success_starts_the_cooldown_over(store: StateStore) -> None:
    snap = await store.record_failure("m", now=T0, threshold=1, cooldown=1, cooldown_max=60)
    for _ in range(4):
        assert snap.retry_at is not None
        snap = await _fail_probe(store, snap.retry_at, cooldown=1, cap=60)
    assert snap.cooldown == 16
    assert snap.retry_at is not None
    assert (await store.admit("m", now=snap.retry_at, probe_lease=4)).probe
    closed = await store.record_success("m", now=snap.retry_at)
    assert (closed.state, closed.cooldown) == ("closed", None)
    reopened = await store.record_failure("m", now=T0 + 100, threshold=1, cooldown=1, cooldown_max=60)
    assert (reopened.retry_at, reopened.cooldown) == (T0 + 101, 1)


async def test_a_failure_that_is_not_the_probe_keeps_the_cooldown(store: StateStore) -> None:
    snap = await store.record_failure("m", now=T0, threshold=1, cooldown=2, cooldown_max=60)
    snap = await _fail_probe(store, T0 + 2, cooldown=2, cap=60)
    assert (snap.retry_at, snap.cooldown) == (T0 + 6, 4)
    # A call let through before the breaker opened fails late: no probe was out, so it does not double.
    late = await store.record_failure("m", now=T0 + 3, threshold=1, cooldown=2, cooldown_max=60)
    assert (late.retry_at, late.cooldown) == (T0 + 7, 4)


async def test_without_a_cap_the_cooldown_is_fixed(store: StateStore) -> None:
    snap = await store.record_failure("m", now=T0, threshold=1, cooldown=10)
    for _ in range(3):
        assert snap.retry_at is not None
        snap = await _fail_probe(store, snap.retry_at, cooldown=10, cap=None)
        assert snap.cooldown == 10
    snap = await _fail_probe(store, T0 + 100, cooldown=10, cap=5)  # a cap below the first cooldown
    assert (snap.retry_at, snap.cooldown) == (T0 + 110, 10)


async def test_fractional_cooldowns_double_exactly(store: StateStore) -> None:
    first = 0.1 + 0.2
    snap = await store.record_failure("m", now=T0, threshold=1, cooldown=first, cooldown_max=7.7)
    expected = [first]
    for _ in range(6):
        expected.append(next_cooldown(expected[-1], failed_probe=True, initial=first, cap=7.7))
        assert snap.retry_at is not None
        now = snap.retry_at
        snap = await _fail_probe(store, now, cooldown=first, cap=7.7)
        assert snap.cooldown == expected[-1]
        assert snap.retry_at == now + expected[-1]
    assert expected[-1] == 7.7


async def test_concurrent_failures_after_one_probe_double_the_cooldown_once(store: StateStore) -> None:
    await store.record_failure("m", now=T0, threshold=1, cooldown=1, cooldown_max=100)
    assert (await store.admit("m", now=T0 + 1, probe_lease=5)).probe
    snaps = await asyncio.gather(
        *(store.record_failure("m", now=T0 + 2, threshold=1, cooldown=1, cooldown_max=100) for _ in range(10))
    )
    assert {s.cooldown for s in snaps} == {2}
    assert (await store.breaker("m", now=T0 + 2)).cooldown == 2


# A failover benchmark's longer profile: the primary is down for a minute, a request comes every 4 s and its
# 503 comes back 5 ms after it was sent. Counted from the failure, each next probe fell due 5 ms after the request
# that should have been it, and slipped a whole beat.
OUTAGE, BEAT, LATENCY = 60.0, 4.0, 0.005


async def test_probes_keep_the_beat_of_regular_traffic_through_an_outage(store: StateStore) -> None:
    clock = ManualClock(T0)
    breaker = CircuitBreaker(store, threshold=1, cooldown=1, cooldown_max=120, clock=clock)
    probes: list[float] = []
    for n in range(60):
        sent = n * BEAT
        clock.now = T0 + sent
        admission = await breaker.admit("primary", probe_lease=30)
        if not admission.allowed:
            continue  # the fallback answers
        if admission.probe:
            probes.append(sent)
        clock.now = T0 + sent + LATENCY
        if sent < OUTAGE:
            await breaker.record_failure("primary")
            continue
        await breaker.record_success("primary")
        break
    # Opened by the request at 0 s; then a probe with each request due: 1 s after 0, 2 after 4, 4 after 8,
    # 8 after 12, 16 after 20, 32 after 36 (68 s), the first request the primary answers, 8 s after its recovery.
    assert probes == [4.0, 8.0, 12.0, 20.0, 36.0, 68.0]
    assert probes[-1] - OUTAGE <= 10.0


# --- spend ---------------------------------------------------------------------------------


async def test_reserve_within_limit_then_refuse_without_change(store: StateStore) -> None:
    first = await store.reserve_spend("task", 3.0, limit=5.0, window=DAY, now=T0)
    assert (first.accepted, first.total) == (True, 3.0)
    refused = await store.reserve_spend("task", 2.5, limit=5.0, window=DAY, now=T0)
    assert (refused.accepted, refused.total) == (False, 3.0)
    exact = await store.reserve_spend("task", 2.0, limit=5.0, window=DAY, now=T0)
    assert (exact.accepted, exact.total) == (True, 5.0)
    assert await store.spend("task", window=DAY, now=T0) == 5.0


async def test_add_spend_settles_and_gives_back(store: StateStore) -> None:
    await store.reserve_spend("task", 1.0, limit=2.0, window=DAY, now=T0)
    assert await store.add_spend("task", -0.75, window=DAY, now=T0) == 0.25
    assert await store.add_spend("task", 5.0, window=DAY, now=T0) == 5.25  # settling may pass the limit
    assert not (await store.reserve_spend("task", 0.01, limit=2.0, window=DAY, now=T0)).accepted
    assert await store.add_spend("fresh", 0.5, window=DAY, now=T0) == 0.5


async def test_windows_and_scopes_are_separate(store: StateStore) -> None:
    await store.add_spend("a", 4.0, window=DAY, now=T0)
    await store.add_spend("a:b", 1.0, window=DAY, now=T0)
    assert await store.spend("a", window=DAY, now=T0) == 4.0
    assert await store.spend("a", window=DAY, now=T0 + DAY) == 0.0
    assert await store.spend("a", window=3600, now=T0) == 0.0
    assert await store.spend("a:b", window=DAY, now=T0) == 1.0
    assert await store.spend("never", window=DAY, now=T0) == 0.0
    assert (await store.reserve_spend("a", 5.0, limit=5.0, window=DAY, now=T0 + DAY)).accepted


async def test_float_totals_match_python_addition(store: StateStore) -> None:
    expected = 0.0
    for amount in (0.1, 0.2, 0.3, 1e-9, 0.07):
        expected += amount
        decision = await store.reserve_spend("f", amount, limit=float("inf"), window=DAY, now=T0)
        assert decision.accepted
        assert decision.total == expected
    assert await store.spend("f", window=DAY, now=T0) == expected


async def test_concurrent_reservations_never_exceed_the_limit(store: StateStore) -> None:
    decisions = await asyncio.gather(
        *(store.reserve_spend("c", 1.0, limit=25.0, window=DAY, now=T0) for _ in range(60))
    )
    assert sum(d.accepted for d in decisions) == 25
    assert await store.spend("c", window=DAY, now=T0) == 25.0


# --- Redis specifics -------------------------------------------------------------------------


async def test_keys_are_namespaced_and_expire(redis_server: RedisServer) -> None:
    store = redis_store(redis_server, namespace="ns-expiry")
    raw = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await store.record_failure("m", now=T0, threshold=1, cooldown=30)
        await store.admit("m", now=T0 + 31, probe_lease=5)
        await store.reserve_spend("task", 1.0, limit=2.0, window=3600, now=T0)
        await store.add_spend("other", 1.0, window=DAY, now=T0)
        keys = sorted(await raw.keys("ns-expiry:*"))
        assert keys == [
            "ns-expiry:breaker:m",
            f"ns-expiry:spend:other:{(T0 // DAY) * DAY!r}",
            f"ns-expiry:spend:task:{(T0 // 3600) * 3600!r}",
        ]
        stored = await raw.hgetall("ns-expiry:breaker:m")
        assert sorted(stored) == ["cooldown", "failures", "open", "probe_at", "probe_until", "retry_at"]
        assert (stored["failures"], stored["open"], float(stored["cooldown"])) == ("1", "1", 30)
        assert (float(stored["retry_at"]), float(stored["probe_until"])) == (T0 + 30, T0 + 36)
        assert float(stored["probe_at"]) == T0 + 31  # a failure of this probe cools down from here
        ttls = {k: await raw.pttl(k) for k in keys}
        assert 0 < ttls["ns-expiry:breaker:m"] <= 3600_000  # max(cooldown * 10, 1 h)
        assert 3600_000 < ttls[keys[2]] <= (3600 + 360) * 1000  # the window and a margin
        assert DAY * 1000 < ttls[keys[1]] <= DAY * 1.1 * 1000
        assert store.on_redis
    finally:
        await raw.aclose()
        await store.aclose()


async def test_namespaces_do_not_see_each_other(redis_server: RedisServer) -> None:
    a, b = redis_store(redis_server, namespace="tenant*a"), redis_store(redis_server, namespace="tenant-b")
    try:
        await a.record_failure("m", now=T0, threshold=1, cooldown=30)
        await b.record_failure("n", now=T0, threshold=1, cooldown=30)
        assert set(await a.breakers(now=T0)) == {"m"}
        assert set(await b.breakers(now=T0)) == {"n"}
        assert (await b.breaker("m", now=T0)).state == "closed"
    finally:
        await a.aclose()
        await b.aclose()


async def test_two_stores_on_one_server_share_state(redis_server: RedisServer) -> None:
    ns = f"shared-{uuid.uuid4().hex[:8]}"
    a, b = redis_store(redis_server, namespace=ns), redis_store(redis_server, namespace=ns)
    try:
        for _ in range(3):
            await a.record_failure("m", now=T0, threshold=3, cooldown=30)
        refused = await b.admit("m", now=T0 + 1, probe_lease=5)
        assert (refused.allowed, refused.retry_at) == (False, T0 + 30)
        await b.reserve_spend("task", 4.0, limit=5.0, window=DAY, now=T0)
        assert not (await a.reserve_spend("task", 1.5, limit=5.0, window=DAY, now=T0)).accepted
    finally:
        await a.aclose()
        await b.aclose()


async def test_scripts_are_reloaded_after_a_script_flush(redis_server: RedisServer) -> None:
    store = redis_store(redis_server)
    raw = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await store.record_failure("m", now=T0, threshold=5, cooldown=30)
        await raw.script_flush()
        snap = await store.record_failure("m", now=T0, threshold=5, cooldown=30)
        assert snap.consecutive_failures == 2
        assert store.on_redis
    finally:
        await raw.aclose()
        await store.aclose()


async def test_the_container_builds_it_from_settings(redis_server: RedisServer) -> None:
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.settings import Settings

    ns = f"container-{uuid.uuid4().hex[:8]}"
    settings = Settings(state=StateSettings(backend="redis", url=SecretStr(redis_server.url), namespace=ns))
    container = Container()
    container.settings.override(providers.Object(settings))
    try:
        store = container.state_store()
        assert isinstance(store, RedisStateStore)
        await store.record_failure("m", now=T0, threshold=1, cooldown=30)
        assert store.on_redis
        other = redis_store(redis_server, namespace=ns)
        assert (await other.breaker("m", now=T0)).state == "open"
        await other.aclose()
    finally:
        await container.aclose()
        container.reset_override()
