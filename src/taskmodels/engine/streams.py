"""A stream attempt within its limits: the first event within the first-token limit, each later one within the
stall limit, none after the deadline; and the answer its events make up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from taskmodels.errors import (
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderError,
    ProviderTimeoutError,
    StreamStalledError,
    TruncatedAnswerError,
)
from taskmodels.providers.port import ModelPort
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionResult, StreamEvent, ToolCall, Usage

from .call import CallState
from .limits import unexpected_error, window

__all__ = ["STALL_BEFORE_CLOSE", "assemble", "done_event", "guarded_stream", "spent"]

STALL_BEFORE_CLOSE = 0.5
"""A stream that ends early after a silence of at least this share of the stall limit stalled: the server
closed a connection it had stopped feeding, which is no reason to try the same silent model again."""


async def guarded_stream(  # noqa: C901, PLR0912, PLR0915 - one guard per way a stream can end: first token, stall, close, deadline, bug
    call: CallState,
    provider: ModelPort,
    clock: Callable[[], float],
    *,
    last: bool,
    first_chunk: Callable[[], None] | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """The provider's stream within the call's limits: the first event within the first-token limit, each later
    one within the stall limit, none after the deadline. ``first_chunk`` is told when the first event arrived.

    Later events get no timer of their own here (that would cost one per chunk): the provider enforces the stall
    limit it is given, clamped to the deadline, and the deadline is checked between events.
    """
    plan, model = call.plan, provider.model
    now = clock()
    if plan.deadline_at <= now:
        raise call.deadline_error(now - plan.started)
    policy = plan.policy
    first_limit = min(policy.limit(model, "first_token_timeout"), policy.limit(model, "attempt_timeout"))
    first, first_cut = window(call, now, first_limit, last=last)
    stall, stall_cut = window(call, now, policy.limit(model, "stall_timeout"), last=last)
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
            late = FirstTokenTimeoutError("no first token in time", provider=model.provider, model_id=model.id)
            late.cut_by = first_cut
            raise late from None
        except ProviderError as exc:
            if isinstance(exc, ProviderTimeoutError):
                exc.cut_by = first_cut
            raise _stalled(exc, model, clock() - last_event_at, stall) or exc from exc.__cause__
        except Exception as exc:
            raise unexpected_error(model, exc) from exc
        if first_chunk is not None:
            first_chunk()
        yield event
        while True:
            last_event_at = clock()
            try:
                event = await anext(stream)
            except StopAsyncIteration:
                return
            except ProviderError as exc:
                if isinstance(exc, ProviderTimeoutError):
                    exc.cut_by = stall_cut
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


def assemble(model: ModelConfig, done: StreamEvent, texts: list[str], tools: list[ToolCall]) -> CompletionResult:
    """The answer a stream's events make up, once its ``done`` event arrived.

    The built-in providers check every event before it is yielded; a port of another kind (a plugin's) that
    sent a piece of text that is not a string fails here as an invalid response, not with a ``TypeError``.
    """
    try:
        text = "".join(texts)
    except TypeError:
        raise InvalidResponseError(
            "the stream sent a text event whose text is not a string", provider=model.provider, model_id=model.id
        ) from None
    return CompletionResult(
        text=text,
        model_id=model.id,
        provider=model.provider,
        model_name=done.model_name or model.model_name,
        usage=done.usage or Usage(),
        finish_reason=done.finish_reason or "stop",
        tool_calls=tuple(tools),
        request_id=done.request_id,
    )


def done_event(result: CompletionResult) -> StreamEvent:
    """The last event of a stream the service hands out: the whole answer, priced, with its attempts."""
    return StreamEvent(
        type="done",
        finish_reason=result.finish_reason,
        usage=result.usage,
        model_id=result.model_id,
        model_name=result.model_name,
        request_id=result.request_id,
        result=result,
    )


def spent(model: ModelConfig) -> TruncatedAnswerError:
    """An answer that reached max_tokens with nothing to show: a reasoning model thought the whole budget away."""
    return TruncatedAnswerError(
        "the answer reached max_tokens with no text: the model's reasoning spent the whole budget",
        provider=model.provider,
        model_id=model.id,
    )
