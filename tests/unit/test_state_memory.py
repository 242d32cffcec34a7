"""MemoryStateStore: the breaker state machine and spend windows."""

from __future__ import annotations

import pytest

from taskmodels.resilience.state import MemoryStateStore, next_cooldown, window_start


async def test_an_unknown_key_is_closed_and_allowed() -> None:
    store = MemoryStateStore()
    assert (await store.admit("m", now=0, probe_lease=5)).allowed
    snap = await store.breaker("m", now=0)
    assert (snap.state, snap.consecutive_failures, snap.retry_at) == ("closed", 0, None)


async def test_opens_at_the_threshold_and_refuses_until_the_cooldown() -> None:
    store = MemoryStateStore()
    assert (await store.record_failure("m", now=0, threshold=2, cooldown=10)).state == "closed"
    snap = await store.record_failure("m", now=1, threshold=2, cooldown=10)
    assert (snap.state, snap.retry_at) == ("open", 11)
    refused = await store.admit("m", now=5, probe_lease=3)
    assert (refused.allowed, refused.retry_at) == (False, 11)


async def test_one_probe_after_the_cooldown_holds_the_slot_for_its_lease() -> None:
    store = MemoryStateStore()
    await store.record_failure("m", now=0, threshold=1, cooldown=10)
    probe = await store.admit("m", now=10, probe_lease=3)
    assert (probe.allowed, probe.probe) == (True, True)
    second = await store.admit("m", now=11, probe_lease=3)
    assert (second.allowed, second.retry_at) == (False, 13)
    again = await store.admit("m", now=13.5, probe_lease=3)  # the first probe's lease ran out
    assert again.probe


async def test_a_probes_success_closes_and_its_failure_reopens() -> None:
    store = MemoryStateStore()
    await store.record_failure("m", now=0, threshold=1, cooldown=10)
    await store.admit("m", now=10, probe_lease=3)
    snap = await store.record_failure("m", now=11, threshold=5, cooldown=10)
    # A failed probe reopens whatever the threshold, its cooldown counted from when it was let through.
    assert (snap.state, snap.retry_at) == ("open", 20)
    await store.admit("m", now=20, probe_lease=3)
    assert (await store.record_success("m", now=22)).state == "closed"
    assert (await store.admit("m", now=22, probe_lease=3)).allowed
    assert await store.breakers(now=22) == {}


async def test_success_clears_consecutive_failures() -> None:
    store = MemoryStateStore()
    await store.record_failure("m", now=0, threshold=3, cooldown=10)
    await store.record_failure("m", now=0, threshold=3, cooldown=10)
    await store.record_success("m", now=0)
    assert (await store.record_failure("m", now=0, threshold=3, cooldown=10)).state == "closed"


@pytest.mark.parametrize(
    ("current", "failed_probe", "cap", "expected"),
    [
        (0.0, False, 120.0, 1.0),  # a closed breaker opens for the first cooldown
        (4.0, True, 120.0, 8.0),  # a failed probe doubles it
        (64.0, True, 120.0, 120.0),  # up to the cap
        (8.0, False, 120.0, 8.0),  # a failure that was not the probe keeps it
        (8.0, True, None, 1.0),  # no cap: fixed
        (8.0, True, 0.5, 1.0),  # a cap below the first cooldown: fixed
        (500.0, False, 120.0, 120.0),  # a lowered cap applies at once
    ],
)
def test_next_cooldown(current: float, failed_probe: bool, cap: float | None, expected: float) -> None:
    assert next_cooldown(current, failed_probe=failed_probe, initial=1.0, cap=cap) == expected


async def test_failed_probes_double_the_cooldown_and_a_success_resets_it() -> None:
    store = MemoryStateStore()
    snap = await store.record_failure("m", now=0, threshold=1, cooldown=1, cooldown_max=4)
    probes = []
    while snap.retry_at is not None and snap.retry_at < 30:
        probes.append(snap.retry_at)
        assert (await store.admit("m", now=snap.retry_at, probe_lease=1)).probe
        snap = await store.record_failure("m", now=snap.retry_at, threshold=1, cooldown=1, cooldown_max=4)
    assert probes == [1, 3, 7, 11, 15, 19, 23, 27]
    await store.admit("m", now=31, probe_lease=1)
    await store.record_success("m", now=31)
    assert (await store.record_failure("m", now=40, threshold=1, cooldown=1, cooldown_max=4)).retry_at == 41


async def test_spend_is_reserved_within_the_limit_per_window() -> None:
    store = MemoryStateStore()
    assert (await store.reserve_spend("s", 0.6, limit=1.0, window=100, now=5)).accepted
    refused = await store.reserve_spend("s", 0.6, limit=1.0, window=100, now=6)
    assert not refused.accepted
    assert refused.total == pytest.approx(0.6)
    assert await store.add_spend("s", -0.2, window=100, now=7) == pytest.approx(0.4)
    assert (await store.reserve_spend("s", 0.6, limit=1.0, window=100, now=8)).accepted
    assert await store.spend("s", window=100, now=150) == 0.0  # the next window
    assert window_start(150, 100) == 100
