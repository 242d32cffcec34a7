"""What ``hedge: {"after": "p95"}`` reads: rolling windows of observed latency, per task and model."""

from __future__ import annotations

import math
from collections import deque

from taskmodels.registry.schema import HedgeConfig

__all__ = ["Latencies"]


class Latencies:
    """Rolling windows of observed latency, per (task, model, first event or whole answer), for ``"p95"``."""

    __slots__ = ("_windows", "fallback", "floor", "min_samples", "size")

    def __init__(self, *, size: int = 200, min_samples: int = 20, floor: float = 0.05, fallback: float = 1.0) -> None:
        self.size = size
        self.min_samples = min_samples
        self.floor = floor  # never hedge sooner: below this, jitter alone would double the traffic
        self.fallback = fallback  # seconds, until min_samples were seen
        self._windows: dict[tuple[str, str, bool], _Window] = {}

    def delay(self, hedge: HedgeConfig, task: str, model_id: str, *, first_token: bool) -> float:
        """Seconds a try on ``model_id`` runs alone before the next one starts."""
        after = hedge.after
        if not isinstance(after, str):
            return after
        window = self._windows.get((task, model_id, first_token))
        if window is None or len(window.samples) < self.min_samples:
            return self.fallback
        return max(self.floor, window.quantile(0.95))

    def observe(self, task: str, model_id: str, seconds: float, *, first_token: bool) -> None:
        key = (task, model_id, first_token)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self.size)
        window.add(seconds)

    def p95(self, task: str, model_id: str, *, first_token: bool) -> float | None:
        """The current estimate (``None`` before any sample), for tests and for people."""
        window = self._windows.get((task, model_id, first_token))
        return window.quantile(0.95) if window is not None and window.samples else None


class _Window:
    __slots__ = ("_sorted", "samples")

    def __init__(self, size: int) -> None:
        self.samples: deque[float] = deque(maxlen=size)
        self._sorted: list[float] | None = None

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self._sorted = None

    def quantile(self, q: float) -> float:
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted(self.samples)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank
