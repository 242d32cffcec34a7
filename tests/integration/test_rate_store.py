"""The rate-limit part of the ``StateStore`` contract, on ``MemoryStateStore`` and on a real redis-server: the
same answers from both, the memory store being the reference."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from taskmodels.resilience.ratelimit import RateDecision, RateSnapshot
from taskmodels.resilience.redis import RedisStateStore
from taskmodels.resilience.state import MemoryStateStore, StateStore
from taskmodels.sections import StateSettings
from tests.integration.redisserver import RedisServer, require_redis_server

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0
W = 60.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer.launch() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    settings = StateSettings.model_validate(
        {
            "backend": "redis",
            "url": SecretStr(server.url),
            "namespace": f"test-{uuid.uuid4().hex[:12]}",
            "operation_timeout": 2.0,
        }
    )
    s = RedisStateStore.from_settings(settings)
    yield s
    assert s.on_redis, "a Redis contract test was answered by the local fallback"
    await s.aclose()


async def reserve(
    store: StateStore, ident: str, at: float, *, tokens: int = 10, rpm: int | None = 2, tpm: int | None = None
) -> RateDecision:
    return await store.reserve_rate("m/a", ident, tokens=tokens, rpm=rpm, tpm=tpm, window=W, now=at)


async def test_rpm_admits_that_many_in_any_window_and_says_when_room_is_back(store: StateStore) -> None:
    assert (await reserve(store, "1", T0)).accepted
    assert (await reserve(store, "2", T0 + 10)).accepted
    refused = await reserve(store, "3", T0 + 59.9)
    assert refused == RateDecision(accepted=False, retry_at=T0 + W, held=False)
    assert (await reserve(store, "4", T0 + 60)).accepted  # the first left the window
    assert not (await reserve(store, "5", T0 + 69.9)).accepted
    assert await store.rate("m/a", window=W, now=T0 + 65) == RateSnapshot(2, 20, None, oldest=T0 + 10)


async def test_requests_logged_with_no_tokens_leave_the_window_too(store: StateStore) -> None:
    # An rpm-only limit logs requests of 0 tokens; their leaving the window once made the Redis script increment
    # the total by -0, which Redis refuses as an integer: the store fell back to memory (the fixture says so).
    assert (await reserve(store, "1", T0, tokens=0, rpm=1)).accepted
    assert (await reserve(store, "2", T0 + 61, tokens=0, rpm=1)).accepted
    assert not (await reserve(store, "3", T0 + 62, tokens=0, rpm=1)).accepted


async def test_an_accepted_request_says_the_window_it_left(store: StateStore) -> None:
    first = await reserve(store, "1", T0 + 1, tokens=7, rpm=5)
    assert (first.at, first.requests, first.tokens, first.oldest) == (T0 + 1, 1, 7, T0 + 1)
    second = await reserve(store, "2", T0 + 2.5, tokens=3, rpm=5)
    assert (second.at, second.requests, second.tokens, second.oldest) == (T0 + 2.5, 2, 10, T0 + 1)
    later = await reserve(store, "3", T0 + 61.5, tokens=1, rpm=5)  # the first left the window
    assert (later.requests, later.tokens, later.oldest) == (2, 4, T0 + 2.5)
    unlimited = await reserve(store, "4", T0 + 62, rpm=None)  # no limits: nothing logged, nothing to say
    assert unlimited == RateDecision(accepted=True)


async def test_a_snapshot_says_when_the_oldest_request_in_the_window_was_logged(store: StateStore) -> None:
    assert await store.rate("m/a", window=W, now=T0) == RateSnapshot()
    assert (await reserve(store, "1", T0 + 1, rpm=5)).accepted
    assert (await reserve(store, "2", T0 + 7.5, rpm=5)).accepted
    assert (await store.rate("m/a", window=W, now=T0 + 30)).oldest == T0 + 1
    assert (await store.rate("m/a", window=W, now=T0 + 61.5)).oldest == T0 + 7.5  # the first left the window
    assert (await store.rate("m/a", window=W, now=T0 + 68)).oldest is None


async def test_tpm_counts_settled_tokens_and_lets_one_large_request_into_an_empty_window(store: StateStore) -> None:
    assert (await reserve(store, "1", T0, tokens=500, rpm=None, tpm=100)).accepted  # alone: else never served
    assert not (await reserve(store, "2", T0 + 1, tokens=10, rpm=None, tpm=100)).accepted
    await store.settle_rate("m/a", "1", tokens=40, window=W, now=T0 + 2)
    assert (await reserve(store, "3", T0 + 3, tokens=60, rpm=None, tpm=100)).accepted
    assert not (await reserve(store, "4", T0 + 4, tokens=1, rpm=None, tpm=100)).accepted
    assert (await store.rate("m/a", window=W, now=T0 + 5)).tokens == 100
    await store.settle_rate("m/a", "gone", tokens=5, window=W, now=T0 + 5)  # an unknown request: nothing happens
    assert (await store.rate("m/a", window=W, now=T0 + 5)).tokens == 100


async def test_a_hold_refuses_until_its_time_and_a_shorter_one_never_cuts_it(store: StateStore) -> None:
    assert await store.hold("m/a", T0 + 30, now=T0) == T0 + 30
    assert await store.hold("m/a", T0 + 5, now=T0) == T0 + 30  # litellm #40130: the longer deadline wins
    assert await reserve(store, "1", T0 + 29, rpm=None) == RateDecision(accepted=False, retry_at=T0 + 30, held=True)
    assert (await store.rate("m/a", window=W, now=T0 + 1)).held_until == T0 + 30
    assert (await reserve(store, "2", T0 + 30, rpm=None)).accepted
    assert (await store.rate("m/a", window=W, now=T0 + 31)).held_until is None


async def test_concurrent_reservations_never_overshoot(store: StateStore) -> None:
    results = await asyncio.gather(*(reserve(store, str(i), T0, rpm=7) for i in range(40)))
    assert sum(r.accepted for r in results) == 7


async def test_a_reading_older_than_one_already_logged_counts_at_the_later_time(store: StateStore) -> None:
    """A request whose clock reading was taken before another's but reaches the store after it (a slow round trip
    on a loaded machine) is logged at the later time: otherwise the later one's expiry of old entries would let it
    in, and a window of the log's times would hold more than the limit (three in 60 s with rpm 2, here)."""
    assert (await reserve(store, "old-1", T0 + 0.5)).accepted
    assert (await reserve(store, "old-2", T0 + 0.6)).accepted
    newer = await reserve(store, "newer", T0 + 61.0)  # both old ones left its window
    assert (newer.accepted, newer.at) == (True, T0 + 61.0)
    late = await reserve(store, "late", T0 + 60.0)  # read before "newer", logged after it
    assert (late.accepted, late.at) == (True, T0 + 61.0)  # its window is (1.0, 61.0]: "newer" alone was in it
    assert not (await reserve(store, "next", T0 + 60.5)).accepted  # two in (1.0, 61.0]: full
