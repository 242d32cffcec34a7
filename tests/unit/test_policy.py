"""The policy table as data, and the delays before a retry."""

from __future__ import annotations

import pytest

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamStalledError,
    UnsupportedContentError,
)
from taskmodels.resilience.policy import Next, backoff_delay, retry_delay, rule_for
from taskmodels.sections import ResilienceSettings


def err(cls: type[ProviderError], retry_after: float | None = None) -> ProviderError:
    return cls("x", provider="p", model_id="m", retry_after=retry_after)


@pytest.mark.parametrize(
    ("cls", "retry_same", "next_", "counts", "trips"),
    [
        (RateLimitError, True, Next.ANY, True, False),
        (ProviderUnavailableError, True, Next.ANY, True, False),
        (ProviderConnectionError, True, Next.ANY, True, False),
        (InvalidResponseError, True, Next.ANY, True, False),
        (IncompleteStreamError, True, Next.ANY, True, False),
        (ProviderTimeoutError, False, Next.ANY, True, False),
        (FirstTokenTimeoutError, False, Next.ANY, True, False),
        (StreamStalledError, False, Next.ANY, True, False),
        (AuthenticationError, False, Next.ANY, True, True),
        (ContextLengthExceededError, False, Next.LARGER_CONTEXT, False, False),
        (ContentFilteredError, False, Next.IF_OPTED_IN, False, False),
        (UnsupportedContentError, False, Next.ANY, False, False),
        (BadRequestError, False, Next.RAISE, False, False),
    ],
)
def test_each_row_of_the_table(
    cls: type[ProviderError], retry_same: bool, next_: Next, counts: bool, trips: bool
) -> None:
    rule = rule_for(err(cls))
    assert (rule.retry_same, rule.next, rule.counts_against_model, rule.trips_breaker) == (
        retry_same,
        next_,
        counts,
        trips,
    )


def test_an_unknown_provider_error_moves_on_without_retrying() -> None:
    class Odd(ProviderError):
        pass

    rule = rule_for(err(Odd))
    assert (rule.retry_same, rule.next) == (False, Next.ANY)


def test_backoff_grows_by_the_multiplier_up_to_the_max_with_jitter_in_the_upper_half() -> None:
    s = ResilienceSettings(backoff_initial=1.0, backoff_multiplier=2.0, backoff_max=5.0)
    assert [backoff_delay(n, s, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert [backoff_delay(n, s, lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    s = ResilienceSettings(retry_after_cap=10)
    assert retry_delay(err(RateLimitError, 3.0), 1, s) == 3.0
    assert retry_delay(err(RateLimitError, 10.0), 1, s) == 10.0
    assert retry_delay(err(RateLimitError, 10.5), 1, s) is None


def test_no_delay_for_errors_that_are_not_retried_on_the_same_model() -> None:
    s = ResilienceSettings()
    for cls in (ProviderTimeoutError, AuthenticationError, BadRequestError, ContextLengthExceededError):
        assert retry_delay(err(cls, 1.0), 1, s) is None


def test_without_retry_after_a_rate_limit_backs_off() -> None:
    s = ResilienceSettings(backoff_initial=0.2, backoff_max=4)
    delay = retry_delay(err(RateLimitError), 1, s, lambda: 0.5)
    assert delay == pytest.approx(0.15)
