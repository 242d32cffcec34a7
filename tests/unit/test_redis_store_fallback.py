"""RedisStateStore without a Redis: every call answers from local memory, within the bound, and says so once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any, cast

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from taskmodels.errors import SettingsError
from taskmodels.resilience.redis import RedisStateStore
from taskmodels.sections import StateSettings

T0 = 1_700_000_000.0
BOUND = 2.0  # far above the 50 ms operation timeout: fails only if a call waits on the dead server


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens once the socket is closed


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def exercise(store: RedisStateStore) -> None:
    """Every operation, each under the bound, with answers that only local state can give."""
    async with asyncio.timeout(BOUND):
        for _ in range(3):
            await store.record_failure("m", now=T0, threshold=3, cooldown=30)
    async with asyncio.timeout(BOUND):
        assert not (await store.admit("m", now=T0 + 1, probe_lease=5)).allowed
    async with asyncio.timeout(BOUND):
        assert (await store.breaker("m", now=T0 + 1)).state == "open"
    async with asyncio.timeout(BOUND):
        assert set(await store.breakers(now=T0)) == {"m"}
    async with asyncio.timeout(BOUND):
        assert (await store.reserve_spend("task", 2.0, limit=3.0, window=60, now=T0)).accepted
    async with asyncio.timeout(BOUND):
        assert not (await store.reserve_spend("task", 2.0, limit=3.0, window=60, now=T0)).accepted
    async with asyncio.timeout(BOUND):
        assert await store.add_spend("task", -0.5, window=60, now=T0) == 1.5
    async with asyncio.timeout(BOUND):
        assert await store.spend("task", window=60, now=T0) == 1.5
    async with asyncio.timeout(BOUND):
        assert (await store.record_success("m", now=T0)).state == "closed"


async def test_closed_port_falls_back_within_the_bound_and_warns_once() -> None:
    port = closed_port()
    url = f"redis://app:hunter2@127.0.0.1:{port}/0"
    store = RedisStateStore.from_settings(StateSettings(backend="redis", url=SecretStr(url), retry_interval=60))
    with capture_logs() as logs:
        await exercise(store)
    await store.aclose()
    assert not store.on_redis
    lost = events(logs, "taskmodels.state.redis_lost")
    assert len(lost) == 1
    assert lost[0]["log_level"] == "warning"
    assert lost[0]["redis"] == store.location == f"127.0.0.1:{port}/0"
    assert events(logs, "taskmodels.state.redis_restored") == []
    assert "hunter2" not in repr(logs)
    assert "hunter2" not in repr(store)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A listener that accepts connections and never answers: the worst kind of outage."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


async def test_a_server_that_never_answers_is_cut_off_by_the_timeout(silent_port: int) -> None:
    settings = StateSettings(backend="redis", url=SecretStr(f"redis://127.0.0.1:{silent_port}/0"), retry_interval=60)
    store = RedisStateStore.from_settings(settings)
    with capture_logs() as logs:
        await exercise(store)
    await store.aclose()
    assert not store.on_redis
    assert len(events(logs, "taskmodels.state.redis_lost")) == 1
    assert events(logs, "taskmodels.state.redis_lost")[0]["error"] == "TimeoutError"


class DownRedis:
    """Stands in for a client whose server is gone; counts how often it is asked."""

    def __init__(self) -> None:
        self.attempts = 0

    async def evalsha(self, *_: object) -> object:
        self.attempts += 1
        raise RedisConnectionError("connection refused")

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_lost_redis_is_retried_at_most_every_retry_interval() -> None:
    client, clock = DownRedis(), Clock()
    store = RedisStateStore(lambda: cast("Redis", client), retry_interval=5.0, monotonic=clock)
    with capture_logs() as logs:
        for _ in range(10):
            await store.admit("m", now=T0, probe_lease=1)
        assert client.attempts == 1
        clock.now += 4.9
        await store.admit("m", now=T0, probe_lease=1)
        assert client.attempts == 1
        clock.now += 0.1
        for _ in range(10):
            await store.admit("m", now=T0, probe_lease=1)
        assert client.attempts == 2  # one retry, which failed; the next waits another interval
        clock.now += 5.0
        await asyncio.gather(*(store.admit("m", now=T0, probe_lease=1) for _ in range(10)))
        assert client.attempts == 3  # concurrent calls: only one of them tries Redis
    assert len(events(logs, "taskmodels.state.redis_lost")) == 1
    assert not store.on_redis


def test_settings_errors_name_the_variable_and_hide_the_password() -> None:
    with pytest.raises(SettingsError, match="TASKMODELS_STATE__URL"):
        RedisStateStore.from_settings(StateSettings(backend="redis"))
    with pytest.raises(SettingsError, match="TASKMODELS_STATE__URL") as info:
        RedisStateStore.from_settings(StateSettings(backend="redis", url=SecretStr("http://u:hunter2@host:1/0")))
    assert "hunter2" not in str(info.value)
    assert "host:1/0" in str(info.value)


async def test_the_local_fallback_keeps_the_adaptive_cooldown() -> None:
    store = RedisStateStore(lambda: cast("Redis", DownRedis()), retry_interval=60.0)
    snap = await store.record_failure("m", now=T0, threshold=1, cooldown=1, cooldown_max=3)
    assert (snap.retry_at, snap.cooldown) == (T0 + 1, 1)
    cooldowns = []
    for _ in range(3):
        assert snap.retry_at is not None
        assert (await store.admit("m", now=snap.retry_at, probe_lease=1)).probe
        snap = await store.record_failure("m", now=snap.retry_at, threshold=1, cooldown=1, cooldown_max=3)
        cooldowns.append(snap.cooldown)
    assert cooldowns == [2, 3, 3]
    assert not store.on_redis
