"""The providers' rate-limit response headers, read into one ``RateLimitInfo``.

- OpenAI and Azure OpenAI: ``x-ratelimit-remaining-requests``, ``x-ratelimit-remaining-tokens``
  and ``x-ratelimit-reset-requests`` / ``-tokens`` as durations (``"1s"``, ``"6m0s"``, ``"20ms"``).
- Anthropic: ``anthropic-ratelimit-requests-remaining``, ``-tokens-remaining`` and
  ``-requests-reset`` / ``-tokens-reset`` as RFC 3339 times.

A header that cannot be read is ignored: a quirky value must never fail a call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from taskmodels.types import RateLimitInfo

__all__ = ["parse_duration", "rate_limit_info"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ms|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds in an OpenAI-style duration (``"6m0s"``, ``"1.5s"``, ``"20ms"``, a bare number of seconds)."""
    text = text.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        end = match.end()
    return total if end and end == len(text) else None


def _seconds_until(text: str, now: float) -> float | None:
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        return parse_duration(text)
    if at.tzinfo is None:
        return None
    return max(at.timestamp() - now, 0.0)


def _count(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _reset(headers: Mapping[str, str], name: str, read: Callable[[str], float | None]) -> float | None:
    value = headers.get(name)
    return None if value is None else read(value)


def rate_limit_info(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> RateLimitInfo | None:
    """The rate-limit state ``headers`` announce, or ``None`` when they carry none (most servers)."""
    requests = _count(headers, "x-ratelimit-remaining-requests")
    tokens = _count(headers, "x-ratelimit-remaining-tokens")
    if requests is not None or tokens is not None:
        return RateLimitInfo(
            requests,
            tokens,
            _reset(headers, "x-ratelimit-reset-requests", parse_duration),
            _reset(headers, "x-ratelimit-reset-tokens", parse_duration),
        )
    requests = _count(headers, "anthropic-ratelimit-requests-remaining")
    tokens = _count(headers, "anthropic-ratelimit-tokens-remaining")
    if requests is None and tokens is None:
        return None
    at = now()
    return RateLimitInfo(
        requests,
        tokens,
        _reset(headers, "anthropic-ratelimit-requests-reset", lambda v: _seconds_until(v, at)),
        _reset(headers, "anthropic-ratelimit-tokens-reset", lambda v: _seconds_until(v, at)),
    )
