"""Resident memory over many calls, after a warm-up that fills every cache and pool."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import Any

from benchmarks.harness import Variant

__all__ = ["measure_rss_growth", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size (not the peak getrusage reports)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _run(call: Any, calls: int, concurrency: int) -> None:
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure_rss_growth(
    variant: Variant, *, calls: int, warmup: int, concurrency: int, samples: int = 10
) -> dict[str, Any]:
    """RSS after warm-up, then every ``calls / samples`` calls; growth is last minus first."""
    await _run(variant.call, warmup, concurrency)
    gc.collect()
    start = rss_bytes()
    points = [start]
    step = max(1, calls // samples)
    done = 0
    while done < calls:
        n = min(step, calls - done)
        await _run(variant.call, n, concurrency)
        done += n
        gc.collect()
        points.append(rss_bytes())
    return {
        "calls": calls,
        "warmup": warmup,
        "concurrency": concurrency,
        "rss_start_bytes": start,
        "rss_end_bytes": points[-1],
        "growth_bytes": points[-1] - start,
        "rss_points_bytes": points,
    }
