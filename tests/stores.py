"""State stores that misbehave on purpose, for the tests of what the engine does around them."""

from __future__ import annotations

import asyncio
from typing import Any

from taskmodels.resilience.state import MemoryStateStore

__all__ = ["SlowSecondReservation"]


class SlowSecondReservation(MemoryStateStore):
    """The second budget reservation of a call takes 0.2 s: a hedge is still being admitted when the primary
    answers, so its request is never sent."""

    def __init__(self) -> None:
        super().__init__()
        self.reservations = 0

    async def reserve_spend(self, scope: str, amount: float, *, limit: float, window: float, now: float) -> Any:
        self.reservations += 1
        if self.reservations == 2:
            await asyncio.sleep(0.2)
        return await super().reserve_spend(scope, amount, limit=limit, window=window, now=now)
