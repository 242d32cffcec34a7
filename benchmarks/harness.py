"""Timing loops that compare variants fairly: warm-up first, then interleaved rounds.

Each round runs every variant once, in an order rotated by one each round
(ABC, BCA, CAB, ...), so drift in machine load or thermal state spreads evenly
over all variants instead of landing on whichever ran last.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConcurrentResult",
    "SequentialResult",
    "Variant",
    "percentile",
    "run_concurrent",
    "run_sequential",
]


@dataclass(slots=True)
class Variant:
    """One way of making the call under test. ``call`` raises if the answer is wrong."""

    name: str
    call: Callable[[], Awaitable[Any]]
    skipped: str | None = None  # why this variant could not run (a missing package, say)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; plain and monotone, which is what a p99 of a few thousand samples needs."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * len(ordered)) - 1))
    return ordered[rank]


@dataclass(slots=True)
class SequentialResult:
    name: str
    walls: list[float] = field(default_factory=list)  # seconds per call
    cpu: float = 0.0  # client process CPU seconds over all timed calls
    calls: int = 0
    error: str | None = None
    skipped: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    @property
    def p99(self) -> float:
        return percentile(self.walls, 99)

    @property
    def cpu_per_call(self) -> float:
        return self.cpu / self.calls if self.calls else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "median_s": self.median,
            "p99_s": self.p99,
            "mean_s": statistics.fmean(self.walls) if self.walls else None,
            "cpu_per_call_s": self.cpu_per_call,
            "error": self.error,
            "skipped": self.skipped,
        }


@dataclass(slots=True)
class ConcurrentResult:
    name: str
    rps: list[float] = field(default_factory=list)  # one per round
    cpu_per_call: list[float] = field(default_factory=list)
    calls: int = 0
    error: str | None = None
    skipped: str | None = None

    @property
    def median_rps(self) -> float:
        return statistics.median(self.rps) if self.rps else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "median_rps": self.median_rps,
            "rps_per_round": self.rps,
            "cpu_per_call_s": statistics.median(self.cpu_per_call) if self.cpu_per_call else None,
            "error": self.error,
            "skipped": self.skipped,
        }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _check_unique(variants: Sequence[Variant]) -> None:
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")


def _rotated(items: Sequence[Variant], by: int) -> list[Variant]:
    k = by % len(items) if items else 0
    return [*items[k:], *items[:k]]


async def _warm(variant: Variant, calls: int) -> None:
    for _ in range(calls):
        await variant.call()


async def run_sequential(
    variants: Sequence[Variant], *, calls_per_round: int, rounds: int, warmup: int
) -> dict[str, SequentialResult]:
    """One call at a time; wall time per call and client CPU per call."""
    _check_unique(variants)
    results = {v.name: SequentialResult(v.name, skipped=v.skipped) for v in variants}
    active = [v for v in variants if v.skipped is None]
    for v in active:
        try:
            await _warm(v, warmup)
        except Exception as exc:  # a broken variant is reported, the others still run
            results[v.name].error = _describe(exc)
    active = [v for v in active if results[v.name].error is None]
    perf = time.perf_counter
    for r in range(rounds):
        for v in _rotated(active, r):
            res = results[v.name]
            if res.error is not None:
                continue
            call = v.call
            walls = res.walls
            gc.collect()
            cpu0 = time.process_time()
            done = 0
            try:
                for _ in range(calls_per_round):
                    t0 = perf()
                    await call()
                    walls.append(perf() - t0)
                    done += 1
            except Exception as exc:
                res.error = _describe(exc)
            res.cpu += time.process_time() - cpu0
            res.calls += done
    return results


async def run_concurrent(
    variants: Sequence[Variant], *, concurrency: int, calls_per_round: int, rounds: int, warmup: int
) -> dict[str, ConcurrentResult]:
    """``concurrency`` workers share ``calls_per_round`` calls; requests per second per round."""
    _check_unique(variants)
    results = {v.name: ConcurrentResult(v.name, skipped=v.skipped) for v in variants}
    active = [v for v in variants if v.skipped is None]

    async def batch(v: Variant, calls: int) -> None:
        left = calls

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await v.call()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    for v in active:
        try:
            await batch(v, warmup)
        except Exception as exc:
            results[v.name].error = _describe(exc)
    for r in range(rounds):
        for v in _rotated(active, r):
            res = results[v.name]
            if res.error is not None:
                continue
            gc.collect()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            try:
                await batch(v, calls_per_round)
            except Exception as exc:
                res.error = _describe(exc)
                continue
            elapsed = time.perf_counter() - t0
            res.rps.append(calls_per_round / elapsed)
            res.cpu_per_call.append((time.process_time() - cpu0) / calls_per_round)
            res.calls += calls_per_round
    return results
