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
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, TypeVar

from taskmodels.errors import (
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderError,
    ProviderTimeoutError,
    StreamStalledError,
)
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import StreamEvent

from .call import CallState, Cut

__all__ = ["STALL_BEFORE_CLOSE", "bounded", "guarded_stream", "unexpected_error", "window"]

_T = TypeVar("_T")

STALL_BEFORE_CLOSE = 0.5
"""A stream that ends early after a silence of at least this share of the stall limit stalled: the server
closed a connection it had stopped feeding, which is no reason to try the same silent model again."""


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


async def bounded(
    call: CallState, model: ModelConfig, work: Coroutine[Any, Any, _T], clock: Callable[[], float], *, last: bool
) -> _T:
    """Run one attempt within its attempt timeout and its share of the deadline."""
    now = clock()
    if call.plan.deadline_at <= now:
        work.close()
        raise call.deadline_error(now - call.plan.started)
    limit, cut = window(call, now, call.plan.policy.attempt_timeout, last=last)
    try:
        async with asyncio.timeout(limit) as scope:
            return await work
    except ProviderError:
        raise
    except TimeoutError:
        if not scope.expired():
            raise unexpected_error(model, TimeoutError()) from None
        call.cut_by = cut
        what = {"deadline": "the deadline", "share": "its share of the deadline", None: "the attempt timeout"}[cut]
        raise ProviderTimeoutError(
            f"no answer within {what} ({limit:.3g}s)", provider=model.provider, model_id=model.id
        ) from None
    except Exception as exc:  # a provider bug: never let it reach the caller raw
        raise unexpected_error(model, exc) from exc


async def guarded_stream(
    call: CallState, provider: ModelPort, clock: Callable[[], float], *, last: bool
) -> AsyncGenerator[StreamEvent, None]:
    """The provider's stream within the call's limits: the first event within the first-token limit, each later
    one within the stall limit, none after the deadline.

    Later events get no timer of their own here (that would cost one per chunk): the provider enforces the stall
    limit it is given, clamped to the deadline, and the deadline is checked between events.
    """
    plan, model = call.plan, provider.model
    now = clock()
    if plan.deadline_at <= now:
        raise call.deadline_error(now - plan.started)
    first, first_cut = window(call, now, min(plan.policy.first_token_timeout, plan.policy.attempt_timeout), last=last)
    stall, stall_cut = window(call, now, plan.policy.stall_timeout, last=last)
    stream = provider.stream(plan.request, first_token_timeout=first, stall_timeout=stall)
    last_event_at = now
    try:
        try:
            # A provider that ignores its limits is still cut off: the first read is bounded here too.
            async with asyncio.timeout(first * 1.5 + 0.05):
                event = await anext(stream)
        except StopAsyncIteration:
            raise InvalidResponseError(
                "the stream ended before any event", provider=model.provider, model_id=model.id
            ) from None
        except TimeoutError:
            call.cut_by = first_cut
            raise FirstTokenTimeoutError("no first token in time", provider=model.provider, model_id=model.id) from None
        except ProviderError as exc:
            call.cut_by = first_cut if isinstance(exc, ProviderTimeoutError) else None
            raise _stalled(exc, model, clock() - last_event_at, stall) or exc from exc.__cause__
        except Exception as exc:
            raise unexpected_error(model, exc) from exc
        yield event
        while True:
            last_event_at = clock()
            try:
                event = await anext(stream)
            except StopAsyncIteration:
                return
            except ProviderError as exc:
                call.cut_by = stall_cut if isinstance(exc, ProviderTimeoutError) else None
                raise _stalled(exc, model, clock() - last_event_at, stall) or exc from exc.__cause__
            except Exception as exc:
                raise unexpected_error(model, exc) from exc
            now = clock()
            if now > plan.deadline_at:
                raise call.deadline_error(now - plan.started)
            yield event
    finally:
        close = getattr(stream, "aclose", None)  # the port promises an iterator; generators need closing
        if close is not None:
            await close()


def _stalled(error: ProviderError, model: ModelConfig, silence: float, stall: float) -> StreamStalledError | None:
    """The stall an early end after a long silence really was, or ``None`` when ``error`` stands as it is."""
    if isinstance(error, IncompleteStreamError) and silence >= stall * STALL_BEFORE_CLOSE:
        return StreamStalledError(
            f"{model.provider} stream stalled for {silence:.3g}s, then the connection closed",
            provider=model.provider,
            model_id=model.id,
            request_id=error.request_id,
        )
    return None
