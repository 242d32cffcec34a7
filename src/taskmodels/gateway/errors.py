"""What a failed call looks like to an OpenAI client: a status the SDKs map to their exception classes, and
OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}``.

| the library raised                               | status | ``type``                | ``code``                  |
|--------------------------------------------------|--------|-------------------------|---------------------------|
| ``InvalidRequestError`` (``param`` named)        | 400    | invalid_request_error   | invalid_value             |
| ``NoEligibleModelError`` (no model fits it)      | 400    | invalid_request_error   | no_eligible_model         |
| a provider's ``BadRequestError``                 | 400    | invalid_request_error   | upstream_bad_request      |
| ``ContentFilteredError``                         | 400    | invalid_request_error   | content_filter            |
| context length, on every model                   | 400    | invalid_request_error   | context_length_exceeded   |
| ``UnknownTaskError`` (and any task not mapped)   | 404    | invalid_request_error   | model_not_found           |
| ``BudgetExceededError``                          | 429    | insufficient_quota      | insufficient_quota        |
| every model rate limited                         | 429    | requests                | rate_limit_exceeded       |
| no model can take the content (images)           | 400    | invalid_request_error   | unsupported_content       |
| every model failed otherwise (auth upstream too) | 502    | server_error            | all_models_failed         |
| ``DeadlineExceededError``                        | 504    | server_error            | deadline_exceeded         |
| every model timed out                            | 504    | server_error            | upstream_timeout          |
| a configuration error, anything unexpected       | 500    | server_error            | internal_error            |

A 429 carries ``Retry-After``: for rate limits the soonest any provider asked for; for a budget, the seconds
until its window ends. An upstream's 401 is the gateway's problem, never the client's: a 502. Messages are
built from names and classes the library chose, never from an upstream's body (a provider's own text is passed
only for a 400 the client can fix, scrubbed of every key the process knows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Final

from taskmodels.errors import (
    AllModelsFailedError,
    BadRequestError,
    BudgetExceededError,
    ConfigurationError,
    ContentFilteredError,
    ContextLengthExceededError,
    DeadlineExceededError,
    InvalidRequestError,
    NoEligibleModelError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    TaskModelsError,
    UnknownTaskError,
    UnsupportedContentError,
)
from taskmodels.redaction import scrub
from taskmodels.types import Attempt

__all__ = ["GatewayError", "error_for", "retry_after_header"]

INVALID: Final = "invalid_request_error"
SERVER: Final = "server_error"


class GatewayError(TaskModelsError):
    """An answer the gateway gives instead of a result: an HTTP status and OpenAI's error envelope.

    Raise one from a gatekeeper hook to refuse a request (``GatewayError(401, "unknown key",
    code="invalid_api_key")``); the gateway raises them for requests it cannot serve.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = INVALID,
        code: str | None = None,
        param: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self.status = status
        self.message = scrub(message)
        self.type = type_
        self.code = code
        self.param = param
        self.headers: tuple[tuple[bytes, bytes], ...] = tuple(headers)
        super().__init__(self.message)

    def envelope(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body(self) -> bytes:
        return json.dumps(self.envelope(), ensure_ascii=False).encode()


def retry_after_header(seconds: float | None) -> tuple[tuple[bytes, bytes], ...]:
    """``Retry-After`` in whole seconds, rounded up (at least 1), or nothing when no wait is known."""
    if seconds is None or not math.isfinite(seconds):
        return ()
    return ((b"retry-after", str(max(1, math.ceil(seconds))).encode()),)


def error_for(exc: BaseException, *, budget_wait: float | None = None) -> GatewayError:  # noqa: PLR0911 - one answer per error class, in the table's order
    """The answer to ``exc``. ``budget_wait``: for a ``BudgetExceededError``, seconds until its window ends."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, InvalidRequestError):
        return GatewayError(400, str(exc), code="invalid_value", param=exc.param)
    if isinstance(exc, UnknownTaskError):
        return GatewayError(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, NoEligibleModelError):
        return GatewayError(400, str(exc), code="no_eligible_model")
    if isinstance(exc, BudgetExceededError):
        return GatewayError(
            429,
            str(exc),
            type_="insufficient_quota",
            code="insufficient_quota",
            headers=retry_after_header(budget_wait),
        )
    if isinstance(exc, DeadlineExceededError):
        message = f"task {exc.task!r}: the call's deadline passed{_tried(exc.attempts)}"
        return GatewayError(504, message, type_=SERVER, code="deadline_exceeded")
    if isinstance(exc, AllModelsFailedError):
        return _all_failed(exc)
    if isinstance(exc, ProviderError):
        return _provider_error(exc)
    if isinstance(exc, ConfigurationError):  # the operator's to fix, in the gateway's log: not the client's business
        return GatewayError(
            500, f"the gateway is misconfigured ({type(exc).__name__})", type_=SERVER, code="internal_error"
        )
    return GatewayError(500, f"internal error ({type(exc).__name__})", type_=SERVER, code="internal_error")


def _all_failed(exc: AllModelsFailedError) -> GatewayError:
    errors = [e for e in exc.exceptions if isinstance(e, ProviderError)]
    if errors and all(isinstance(e, RateLimitError) for e in errors):
        message = f"task {exc.task!r}: every model is rate limited{_tried(exc.attempts)}"
        return GatewayError(
            429, message, type_="requests", code="rate_limit_exceeded", headers=retry_after_header(exc.retry_after)
        )
    if errors and all(isinstance(e, ProviderTimeoutError) for e in errors):
        message = f"task {exc.task!r}: no model answered in time{_tried(exc.attempts)}"
        return GatewayError(504, message, type_=SERVER, code="upstream_timeout")
    if errors and all(isinstance(e, UnsupportedContentError) for e in errors):
        message = f"task {exc.task!r}: no model can take what the request carries{_tried(exc.attempts)}"
        return GatewayError(400, message, code="unsupported_content", param="messages")
    if errors and all(isinstance(e, ContextLengthExceededError) for e in errors):
        message = f"task {exc.task!r}: the messages do not fit any model's context window{_tried(exc.attempts)}"
        return GatewayError(400, message, code="context_length_exceeded", param="messages")
    return GatewayError(
        502, f"task {exc.task!r}: every model failed{_tried(exc.attempts)}", type_=SERVER, code="all_models_failed"
    )


def _provider_error(exc: ProviderError) -> GatewayError:  # noqa: PLR0911 - one answer per error class
    """A provider's error that ended the call by itself (the rule table raised it rather than move on)."""
    if isinstance(exc, BadRequestError):  # the caller's request is wrong: what the provider said helps fix it
        return GatewayError(
            400,
            f"model {exc.model_id!r} refused the request: {exc.provider_message or exc.message}",
            code="upstream_bad_request",
        )
    if isinstance(exc, ContentFilteredError):
        return GatewayError(
            400, f"refused on content grounds: {exc.provider_message or exc.message}", code="content_filter"
        )
    if isinstance(exc, ContextLengthExceededError):
        return GatewayError(400, exc.provider_message or exc.message, code="context_length_exceeded", param="messages")
    if isinstance(exc, RateLimitError):
        return GatewayError(
            429,
            f"model {exc.model_id!r} is rate limited",
            type_="requests",
            code="rate_limit_exceeded",
            headers=retry_after_header(exc.retry_after),
        )
    if isinstance(exc, ProviderTimeoutError):
        return GatewayError(
            504, f"model {exc.model_id!r} did not answer in time", type_=SERVER, code="deadline_exceeded"
        )
    status = exc.status_code
    if status is not None and 400 <= status < 500 and status not in (401, 403, 429):
        # The caller's request is wrong (the rule table raised at once): what the provider said helps fix it.
        detail = exc.provider_message or exc.message
        return GatewayError(400, f"model {exc.model_id!r} refused the request: {detail}", code="upstream_bad_request")
    what = f" ({status})" if status is not None else ""
    return GatewayError(
        502, f"model {exc.model_id!r} failed: {type(exc).__name__}{what}", type_=SERVER, code="all_models_failed"
    )


def _tried(attempts: Iterable[Attempt]) -> str:
    """What each attempt came to, in names and classes only: ``: m1 RateLimitError 429; m2 skipped``."""
    parts = []
    for a in attempts:
        if a.outcome == "skipped":
            parts.append(f"{a.model_id} skipped ({a.error_class})")
        elif a.outcome != "success":
            status = f" {a.status_code}" if a.status_code is not None else ""
            parts.append(f"{a.model_id} {a.error_class}{status}")
    return ": " + "; ".join(parts) if parts else ""
