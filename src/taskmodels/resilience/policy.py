"""The fallback policy of DESIGN §4 as data: what each error means for the same model and the next.

| error                                   | same model again      | next model                 | breaker      |
|-----------------------------------------|-----------------------|----------------------------|--------------|
| RateLimitError (429)                    | after Retry-After/backoff | yes, when retries are spent | counts   |
| ProviderUnavailableError (5xx)          | bounded backoff       | yes                        | counts       |
| ProviderConnectionError                 | bounded backoff       | yes                        | counts       |
| InvalidResponseError, IncompleteStream  | bounded backoff       | yes                        | counts       |
| OutputValidationError                   | at once, error fed back (outputRetries) | yes          | not counted  |
| TruncatedAnswerError (length, no text)  | no                    | yes                        | not counted  |
| ProviderTimeoutError, first token, stall| no                    | yes                        | counts       |
| AuthenticationError (401/403)           | no                    | yes                        | opens at once|
| ContextLengthExceededError              | no                    | only a larger context      | not counted  |
| ContentFilteredError                    | no                    | only when the task opts in | not counted  |
| UnsupportedContentError (an image URL…) | no                    | yes                        | not counted  |
| BadRequestError (other 4xx)             | no                    | no: raised at once         | not counted  |
| any other ProviderError                 | no                    | yes                        | counts       |

The service looks a rule up with ``rule_for(error)`` (most specific class first)
and asks ``retry_delay`` how long to wait before trying the same model again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    InvalidResponseError,
    OutputValidationError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    TruncatedAnswerError,
    UnsupportedContentError,
)
from taskmodels.sections import ResilienceSettings

__all__ = ["RULES", "Next", "Rule", "backoff_delay", "retry_delay", "rule_for"]


class Next(Enum):
    """Where the fallback loop goes after the same model is done with."""

    ANY = "any"  # the next candidate
    LARGER_CONTEXT = "larger_context"  # only candidates whose context window is larger than the failing one's
    IF_OPTED_IN = "if_opted_in"  # the next candidate if the task (or settings) allow it, else raise
    RAISE = "raise"  # the caller's request is wrong: raise at once


@dataclass(frozen=True, slots=True)
class Rule:
    retry_same: bool
    next: Next
    counts_against_model: bool  # request-caused failures say nothing about the model's health
    trips_breaker: bool = False  # open the model's breaker at once (a route that cannot authenticate)
    # Ask the same model again at once with the error fed back, while the task's ``outputRetries`` allow:
    # the model answered, so there is nothing to wait for, and the next question is a different one.
    feedback: bool = False


_TRANSIENT = Rule(retry_same=True, next=Next.ANY, counts_against_model=True)
_SILENT = Rule(retry_same=False, next=Next.ANY, counts_against_model=True)

RULES: Mapping[type[ProviderError], Rule] = {
    RateLimitError: _TRANSIENT,
    ProviderUnavailableError: _TRANSIENT,
    ProviderConnectionError: _TRANSIENT,
    InvalidResponseError: _TRANSIENT,  # IncompleteStreamError too
    ProviderTimeoutError: _SILENT,  # FirstTokenTimeoutError and StreamStalledError too
    AuthenticationError: Rule(retry_same=False, next=Next.ANY, counts_against_model=True, trips_breaker=True),
    ContextLengthExceededError: Rule(retry_same=False, next=Next.LARGER_CONTEXT, counts_against_model=False),
    ContentFilteredError: Rule(retry_same=False, next=Next.IF_OPTED_IN, counts_against_model=False),
    # This model cannot take the request's content (an image URL on Ollama, GIF on Gemini); another may.
    UnsupportedContentError: Rule(retry_same=False, next=Next.ANY, counts_against_model=False),
    BadRequestError: Rule(retry_same=False, next=Next.RAISE, counts_against_model=False),
    # The route is healthy (it answered); the answer was wrong for this call.
    OutputValidationError: Rule(retry_same=True, next=Next.ANY, counts_against_model=False, feedback=True),
    TruncatedAnswerError: Rule(retry_same=False, next=Next.ANY, counts_against_model=False),
}

_DEFAULT = _SILENT  # an unknown ProviderError subclass: move on, do not hammer the same route
_cache: dict[type[BaseException], Rule] = {}


def rule_for(error: ProviderError) -> Rule:
    """The rule of the most specific class of ``error`` named in ``RULES``."""
    cls = type(error)
    rule = _cache.get(cls)
    if rule is None:
        rule = next((RULES[base] for base in cls.__mro__ if base in RULES), _DEFAULT)
        _cache[cls] = rule
    return rule


def backoff_delay(number: int, settings: ResilienceSettings, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter" before try ``number + 1`` of a model.

    The base grows ``backoff_initial * backoff_multiplier ** (number - 1)`` up to
    ``backoff_max``; half of it is fixed and half random, so retries spread out
    but never collapse to zero.
    """
    base = min(settings.backoff_max, settings.backoff_initial * settings.backoff_multiplier ** max(0, number - 1))
    half = base / 2.0
    return half + half * rand()


def retry_delay(
    error: ProviderError,
    number: int,
    settings: ResilienceSettings,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying the same model after ``error`` on try ``number``; ``None``: move on.

    A ``Retry-After`` is honoured up to ``retry_after_cap``; a longer one means
    the model will not answer soon enough, so the loop moves to the next model.
    """
    rule = rule_for(error)
    if not rule.retry_same:
        return None
    if rule.feedback:
        return 0.0
    if error.retry_after is not None:
        if error.retry_after > settings.retry_after_cap:
            return None
        return error.retry_after
    return backoff_delay(number, settings, rand)
