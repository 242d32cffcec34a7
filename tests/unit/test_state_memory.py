"""MemoryStateStore: the breaker state machine and spend windows."""

from __future__ import annotations

import pytest

from taskmodels.resilience.state import MemoryStateStore, window_start


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
    assert (snap.state, snap.retry_at) == ("open", 21)  # a failed probe reopens whatever the threshold
    await store.admit("m", now=21, probe_lease=3)
    assert (await store.record_success("m", now=22)).state == "closed"
    assert (await store.admit("m", now=22, probe_lease=3)).allowed
    assert await store.breakers(now=22) == {}


async def test_success_clears_consecutive_failures() -> None:
    store = MemoryStateStore()
    await store.record_failure("m", now=0, threshold=3, cooldown=10)
    await store.record_failure("m", now=0, threshold=3, cooldown=10)
    await store.record_success("m", now=0)
    assert (await store.record_failure("m", now=0, threshold=3, cooldown=10)).state == "closed"


async def test_spend_is_reserved_within_the_limit_per_window() -> None:
    store = MemoryStateStore()
    assert (await store.reserve_spend("s", 0.6, limit=1.0, window=100, now=5)).accepted
    refused = await store.reserve_spend("s", 0.6, limit=1.0, window=100, now=6)
    assert (refused.accepted, refused.total) == (False, pytest.approx(0.6))
    assert await store.add_spend("s", -0.2, window=100, now=7) == pytest.approx(0.4)
    assert (await store.reserve_spend("s", 0.6, limit=1.0, window=100, now=8)).accepted
    assert await store.spend("s", window=100, now=150) == 0.0  # the next window
    assert window_start(150, 100) == 100
