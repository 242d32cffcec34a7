"""Per-key limits on the memory store with a manual clock: a budget reserved then settled, rpm and tpm in a sliding
minute, OpenAI's rate-limit headers, and a failing store that never fails a request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from taskmodels.gateway.governor import Bound, Governor, LimitExceeded, Permit, duration
from taskmodels.gateway.keys import VirtualKey, key_digest
from taskmodels.resilience.state import MemoryStateStore

T0 = 1_700_000_040.0  # 40 s into a minute; 1_700_000_000 is 2023-11-14T22:13:20Z, on no hour's edge
HOUR = 3600.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def key(**fields: Any) -> VirtualKey:
    return VirtualKey.model_validate({"name": "app", "sha256": key_digest("tm-app"), **fields})


def make(**fields: Any) -> tuple[Governor, MemoryStateStore, Clock, VirtualKey]:
    store, clock = MemoryStateStore(), Clock()
    return Governor(store, wall_clock=clock), store, clock, key(**fields)


def headers(permit_or_refusal: Permit | LimitExceeded) -> Mapping[str, str]:
    return {k.decode(): v.decode() for k, v in permit_or_refusal.headers}


async def test_rpm_admits_that_many_in_any_minute_then_says_when_room_is_back() -> None:
    governor, _, clock, k = make(rpm=3)
    for at in (0.0, 10.0, 20.0):
        clock.now = T0 + at
        await governor.admit(k, Bound(10, 0.0))
    clock.now = T0 + 30.0
    with pytest.raises(LimitExceeded) as caught:
        await governor.admit(k, Bound(10, 0.0))
    refused = caught.value
    assert refused.kind == "requests"
    assert refused.retry_after == 30.0  # the request at T0 leaves the window at T0 + 60
    assert str(refused) == "key 'app' is over its limit of 3 requests per minute: room again in 30 s"
    assert headers(refused) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "30s",
    }
    clock.now = T0 + 60.0
    await governor.admit(k, Bound(10, 0.0))


async def test_tpm_counts_the_bound_until_the_call_settles_to_what_it_used() -> None:
    governor, _, _, k = make(tpm=1000)
    first = await governor.admit(k, Bound(800, 0.0))
    assert headers(first)["x-ratelimit-remaining-tokens"] == "200"
    with pytest.raises(LimitExceeded) as caught:
        await governor.admit(k, Bound(300, 0.0))
    assert caught.value.kind == "tokens"
    assert str(caught.value) == "key 'app' is over its limit of 1000 tokens per minute: room again in 60 s"
    await governor.settle(first, tokens=100, cost=0.0)
    second = await governor.admit(k, Bound(300, 0.0))
    assert headers(second) == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-reset-tokens": "1m0s",
    }


async def test_headers_count_down_with_each_request_and_say_when_the_oldest_leaves() -> None:
    governor, _, clock, k = make(rpm=5, tpm=100)
    seen = []
    for at in (0.0, 1.5, 2.25):
        clock.now = T0 + at
        seen.append(headers(await governor.admit(k, Bound(10, 0.0))))
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["4", "3", "2"]
    assert [h["x-ratelimit-remaining-tokens"] for h in seen] == ["90", "80", "70"]
    assert [h["x-ratelimit-reset-requests"] for h in seen] == ["1m0s", "58.5s", "57.75s"]


async def test_a_key_without_rate_limits_sends_no_rate_headers_and_logs_nothing() -> None:
    governor, store, _, k = make(budget={"limit": 1.0})
    permit = await governor.admit(k, Bound(10, 0.01))
    assert permit.headers == []
    assert permit.ticket is None
    assert (await store.rate("gateway:key:app", window=60.0, now=T0)).requests == 0


async def test_a_budget_holds_the_bound_then_settles_to_the_real_cost() -> None:
    governor, _, clock, k = make(budget={"limit": 0.05, "windowSeconds": HOUR})
    permits = [await governor.admit(k, Bound(100, 0.02)) for _ in range(2)]
    assert await governor.spent(k) == pytest.approx(0.04)
    with pytest.raises(LimitExceeded) as caught:
        await governor.admit(k, Bound(100, 0.02))
    refused = caught.value
    assert refused.kind == "budget"
    # T0 is 2023-11-14T22:14:00Z: the hour's window opens again at 23:00, 2760 s later.
    assert refused.retry_after == 2760.0
    assert str(refused) == (
        "key 'app' has spent its budget of $0.05 for this window (1 hour): it opens again in 2760 s"
    )
    await governor.settle(permits[0], tokens=50, cost=0.001)
    assert await governor.spent(k) == pytest.approx(0.021)
    await governor.admit(k, Bound(100, 0.02))  # room again: the first call cost far less than its bound
    clock.now = T0 + 2760.0
    assert await governor.spent(k) == 0.0  # a new window


async def test_a_refusal_by_the_budget_logs_no_request_and_one_by_the_rate_gives_the_budget_back() -> None:
    governor, store, _, k = make(rpm=1, budget={"limit": 0.05})
    await governor.admit(k, Bound(10, 0.03))
    with pytest.raises(LimitExceeded) as caught:
        await governor.admit(k, Bound(10, 0.03))
    assert caught.value.kind == "budget"
    assert (await store.rate("gateway:key:app", window=60.0, now=T0)).requests == 1  # not logged: refused first
    with pytest.raises(LimitExceeded) as caught:
        await governor.admit(k, Bound(10, 0.01))
    assert caught.value.kind == "requests"
    assert await governor.spent(k) == pytest.approx(0.03)  # the 0.01 reserved before the rate refused: back


async def test_a_permit_settles_once() -> None:
    governor, _, _, k = make(budget={"limit": 1.0}, tpm=1000)
    permit = await governor.admit(k, Bound(500, 0.5))
    await governor.settle(permit, tokens=10, cost=0.1)
    await governor.settle(permit, tokens=0, cost=0.0)
    assert await governor.spent(k) == pytest.approx(0.1)
    assert headers(await governor.admit(k, Bound(1, 0.0)))["x-ratelimit-remaining-tokens"] == "989"


async def test_keys_are_limited_apart() -> None:
    governor, _, _, a = make(rpm=1)
    b = VirtualKey.model_validate({"name": "other", "sha256": key_digest("tm-b"), "rpm": 1})
    await governor.admit(a, Bound(1, 0.0))
    await governor.admit(b, Bound(1, 0.0))
    with pytest.raises(LimitExceeded):
        await governor.admit(a, Bound(1, 0.0))


class Failing(MemoryStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def reserve_spend(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionError("store down")
        return await super().reserve_spend(*args, **kwargs)

    async def reserve_rate(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionError("store down")
        return await super().reserve_rate(*args, **kwargs)

    async def rate(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionError("store down")
        return await super().rate(*args, **kwargs)


async def test_a_failing_store_admits_every_request_and_warns_once_until_it_is_back() -> None:
    store = Failing()
    governor = Governor(store, wall_clock=Clock())
    k = key(rpm=1, budget={"limit": 0.01})
    with capture_logs() as logs:
        for _ in range(3):
            permit = await governor.admit(k, Bound(10, 1.0))
            assert permit.reservation is None
            assert permit.ticket is None
            await governor.settle(permit, tokens=10, cost=1.0)
        store.down = False
        await governor.admit(k, Bound(10, 0.001))
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("taskmodels.gateway.limits_unenforced", "warning"),
        ("taskmodels.gateway.limits_enforced", "warning"),
    ]
    assert logs[0]["operation"] == "reserve_spend"
    assert logs[0]["error_class"] == "ConnectionError"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0172, "18ms"),
        (0.9999, "1000ms"),
        (1.0, "1s"),
        (8.64, "8.64s"),
        (59.5, "59.5s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (3723.0, "1h2m3s"),
        (86400.0, "24h0m0s"),
    ],
)
def test_a_wait_is_written_as_openai_writes_it(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@hsettings(max_examples=60)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.02),  # the bound a request reserves
            st.floats(min_value=0.0, max_value=1.0),  # the share of it the call really cost
            st.booleans(),  # settled before the next request (else it stays in flight)
        ),
        max_size=40,
    )
)
async def test_spend_never_passes_the_limit_while_each_call_costs_within_its_bound(
    steps: list[tuple[float, float, bool]],
) -> None:
    governor, _, _, k = make(budget={"limit": 0.05, "windowSeconds": HOUR})
    in_flight: list[tuple[Permit, float]] = []
    real = 0.0
    for bound, share, settle_now in steps:
        try:
            permit = await governor.admit(k, Bound(1, bound))
        except LimitExceeded:
            continue
        in_flight.append((permit, bound * share))
        if settle_now:
            for held, cost in in_flight:
                await governor.settle(held, tokens=1, cost=cost)
                real += cost
            in_flight.clear()
        spent = await governor.spent(k)
        assert spent is not None
        assert spent <= 0.05 + 1e-12
    for held, cost in in_flight:
        await governor.settle(held, tokens=1, cost=cost)
        real += cost
    assert real <= 0.05 + 1e-12
