"""``benchmarks/pools.py`` runs and reports the pools' extra cost as a share of a bare call (no timing asserted)."""

from __future__ import annotations

from benchmarks.pools import measure_pools


async def test_the_pools_benchmark_measures_every_variant() -> None:
    result = await measure_pools(50, repeats=1, bare_calls=20)
    assert set(result["cpu_per_call_s"]) == {"single", "pool", "pool+limits"}
    assert all(v > 0 for v in result["cpu_per_call_s"].values())
    assert set(result["extra_share_of_bare_call"]) == {"pool", "pool+limits"}
    assert result["bare_httpx2_cpu_per_call_s"] > 0
