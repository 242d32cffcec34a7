"""Time limits of one attempt: the attempt timeout, the first-token and stall limits, and the call's deadline.

An attempt on a candidate that is not the last one may use only part of what is
left of the deadline (``1 - fallback_reserve``), so that a silent model cannot
leave its fallbacks no time. When the bound that fires is the deadline itself,
the call ends (``DeadlineExceededError``). When it is the share, the loop moves on
without counting the timeout against the model's breaker (it was cut short by us).
Any other bound is the model's failure and the loop moves on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Self

from taskmodels.errors import InvalidResponseError, ProviderError, ProviderTimeoutError
from taskmodels.registry.schema import ModelConfig

from .call import CallState, Cut

__all__ = ["Bound", "unexpected_error", "window"]


def window(call: CallState, now: float, limit: float, *, last: bool) -> tuple[float, Cut]:
    """Seconds an attempt may wait for ``limit``, and which bound that is if it is not ``limit`` itself:
    ``"share"`` (what it may use of the deadline, leaving the rest to the candidates after it) or ``"deadline"``."""
    remaining = call.plan.deadline_at - now
    reserve = call.plan.policy.fallback_reserve
    if not last and reserve:
        share = remaining * (1.0 - reserve)
        if share < limit:
            return share, "share"
    if remaining < limit:
        return remaining, "deadline"
    return limit, None


def unexpected_error(model: ModelConfig, exc: BaseException) -> InvalidResponseError:
    """A provider raised something that is not a ``ProviderError``: a bug in it, treated as a bad answer."""
    return InvalidResponseError(
        f"the provider raised an unexpected {type(exc).__name__}", provider=model.provider, model_id=model.id
    )


class Bound:
    """``with Bound(call, model, clock, last=...):`` around the await of one attempt: bounds it by its attempt
    timeout and its share of the deadline, and turns what escapes into a typed error built complete.

    A plain context manager rather than a coroutine around the attempt: every resumption of the call's task
    passes through each coroutine between it and the socket, so one frame fewer there is paid at every read.
    The timer is one handle and a flag, what ``asyncio.timeout`` does without its bookkeeping.
    """

    __slots__ = ("call", "cut", "fired", "handle", "limit", "model", "task")

    def __init__(self, call: CallState, model: ModelConfig, clock: Callable[[], float], *, last: bool) -> None:
        now = clock()
        if call.plan.deadline_at <= now:
            raise call.deadline_error(now - call.plan.started)
        self.call, self.model = call, model
        self.limit, self.cut = window(call, now, call.plan.policy.limit(model, "attempt_timeout"), last=last)
        task = asyncio.current_task()
        assert task is not None  # an attempt is always awaited inside a task
        self.task = task
        self.fired = False
        loop = asyncio.get_running_loop()
        self.handle = loop.call_at(loop.time() + self.limit, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self.task.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.handle.cancel()
        if exc is None or isinstance(exc, ProviderError):
            return
        if isinstance(exc, asyncio.CancelledError):
            if not self.fired or self.task.uncancel() > 0:
                return  # someone else's cancellation: not ours to turn into a timeout
            model = self.model
            what = {"deadline": "the deadline", "share": "its share of the deadline", None: "the attempt timeout"}
            error = ProviderTimeoutError(
                f"no answer within {what[self.cut]} ({self.limit:.3g}s)", provider=model.provider, model_id=model.id
            )
            error.cut_by = self.cut
            raise error from None
        if isinstance(exc, Exception):  # a provider bug: never let it reach the caller raw
            raise unexpected_error(self.model, exc) from exc
