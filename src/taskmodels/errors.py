"""Every error taskmodels raises.

Configuration errors are found when the registry or the settings load; call
errors happen while a task is being served. No raw ``httpx``, ``json`` or
``KeyError`` escapes the library: each is mapped onto one of these.

TaskModelsError
├── ConfigurationError
│   ├── RegistryError                 a registry file with located problems (all of them)
│   ├── SettingsError                 an invalid setting, named by its variable
│   └── MissingCredentialError        a model needs an API key none was configured for; names the variables
├── InvalidRequestError               a per-call value is unusable (also a ValueError)
├── SelectionError
│   ├── UnknownTaskError              the registry names no model for the task, and has no default
│   └── NoEligibleModelError          every candidate was skipped; carries each skip's reason
├── ProviderError                     one call to one model failed (task, model, provider, status, ...)
│   ├── RateLimitError                429; ``retry_after`` when the provider said
│   ├── ProviderUnavailableError      5xx, overloaded (Anthropic 529)
│   ├── ProviderConnectionError       refused, reset, DNS, TLS
│   ├── ProviderTimeoutError          no answer in time
│   │   ├── FirstTokenTimeoutError    a stream's first token came too late
│   │   └── StreamStalledError        a stream stopped sending mid-answer
│   ├── InvalidResponseError          a body or stream event we could not parse
│   │   └── IncompleteStreamError     a stream ended before its terminal event
│   ├── OutputValidationError         the answer is not the JSON the call's ``output_type`` asks for
│   ├── TruncatedAnswerError          the answer hit max_tokens before any text (reasoning spent the budget)
│   ├── AuthenticationError           401 / 403
│   ├── ContextLengthExceededError    the prompt does not fit the model
│   ├── ContentFilteredError          the provider refused on content grounds
│   ├── UnsupportedContentError       the model cannot take what the request carries (an image URL, a format)
│   │                                 or do what it asks (embeddings from a chat model); another may
│   └── BadRequestError               any other 4xx: the caller's request is wrong
├── DeadlineExceededError             the whole call's deadline passed
├── AllModelsFailedError              every candidate failed; carries every attempt
├── BudgetExceededError               a task's spend limit for its window is reached
└── ServiceClosedError                the service's container was closed (aclose); also a RuntimeError
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from taskmodels.redaction import scrub

if TYPE_CHECKING:
    from taskmodels.types import Attempt, RateLimitInfo

__all__ = [
    "AllModelsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "DeadlineExceededError",
    "FirstTokenTimeoutError",
    "IncompleteStreamError",
    "InvalidRequestError",
    "InvalidResponseError",
    "MissingCredentialError",
    "NoEligibleModelError",
    "OutputValidationError",
    "Problem",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RegistryError",
    "SelectionError",
    "ServiceClosedError",
    "SettingsError",
    "StreamStalledError",
    "TaskModelsError",
    "TruncatedAnswerError",
    "UnknownTaskError",
    "UnsupportedContentError",
]


class TaskModelsError(Exception):
    """Root of every error this library raises."""

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors: pickle through __dict__ so errors cross process pools.
        return (_rebuild_error, (type(self), self.args, self.__dict__.copy()))


def _rebuild_error(cls: type[TaskModelsError], args: tuple[object, ...], state: dict[str, object]) -> TaskModelsError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


# --- configuration -----------------------------------------------------------------


class ConfigurationError(TaskModelsError):
    """The registry or the settings are wrong; found when they load, not per call."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a registry file.

    ``path`` is a JSON path such as ``taskMappings[2].fallbackModelIds[0]``;
    ``source`` is the file it came from (or ``<dict>`` for an in-memory registry).
    """

    source: str
    path: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}: {where}{self.message}"


class RegistryError(ConfigurationError):
    """A registry that cannot be used. ``problems`` lists every error found, not just the first."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source or (self.problems[0].source if self.problems else "<registry>")
        count = len(self.problems)
        lines = [f"{self.source}: {count} problem{'s' if count != 1 else ''} in the model registry"]
        lines.extend(f"  {p.path or '(file)'}: {p.message}" for p in self.problems)
        super().__init__("\n".join(lines))


class SettingsError(ConfigurationError):
    """An invalid setting. The message names the environment variable to fix."""


class InvalidRequestError(TaskModelsError, ValueError):
    """A value of one call is unusable (``temperature=7``, ``max_tokens=-1``): checked as registry values are.

    ``param`` names the argument at fault as a path (``messages[1].content[0]``), when one is.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class MissingCredentialError(ConfigurationError):
    """A model's provider needs an API key and none was configured.

    Configuration, not an outage: the model cannot be called until the key is set, so
    it is skipped rather than counted against its circuit breaker. ``variables`` names
    the environment variables any one of which would supply the key.
    """

    def __init__(self, message: str, *, provider: str, model_id: str, variables: Sequence[str]) -> None:
        self.provider = provider
        self.model_id = model_id
        self.variables: tuple[str, ...] = tuple(variables)
        super().__init__(message)


# --- selection ---------------------------------------------------------------------


class SelectionError(TaskModelsError):
    """No model could be chosen for a task."""

    def __init__(self, message: str, *, task: str) -> None:
        self.task = task
        super().__init__(message)


class UnknownTaskError(SelectionError):
    """The registry maps no model to the task and has no default model."""


class NoEligibleModelError(SelectionError):
    """Every candidate for the task was skipped; ``skipped`` holds ``(model_id, reason)`` pairs."""

    def __init__(self, *, task: str, skipped: Sequence[tuple[str, str]]) -> None:
        self.skipped: tuple[tuple[str, str], ...] = tuple(skipped)
        reasons = "; ".join(f"{model_id}: {reason}" for model_id, reason in self.skipped)
        super().__init__(f"no model can serve task {task!r}: {reasons or 'no candidates'}", task=task)


# --- calls -------------------------------------------------------------------------


CURRENT_TASK: ContextVar[str | None] = ContextVar("taskmodels_current_task", default=None)
"""The task the running call serves, set by the call engine for the call's duration.

Providers know nothing of tasks, yet every error they build must be complete when it
is built: ``ProviderError`` reads its ``task`` from here when none is given.
"""


class ProviderError(TaskModelsError):
    """One call to one model failed.

    Built complete, once: ``task`` comes from the call in progress (``CURRENT_TASK``)
    when the builder does not know it. Providers redact every key the process knows
    from the message and the provider's own text before they build one.
    """

    rate_limit: RateLimitInfo | None = None
    """The provider's rate-limit headers on the error response, when the HTTP mapping saw any."""

    cut_by: str | None = None
    """For a timeout: ``"deadline"`` or ``"share"`` when what ran out was the call's deadline or the share of it
    this attempt could use, not the model's own limit (then the model is not blamed). Set where the bound fired,
    on this error: each attempt's error carries its own cause, whatever other attempts run beside it."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model_id: str,
        task: str | None = None,
        status_code: int | None = None,
        provider_message: str | None = None,
        provider_code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        # Servers quote keys back in odd places; every string kept here is scrubbed of every key the process
        # knows, whoever builds the error (our providers, a plugin's, a test double's).
        self.message = message = scrub(message)
        self.provider = provider
        self.model_id = model_id
        self.task = task if task is not None else CURRENT_TASK.get()
        self.status_code = status_code
        self.provider_message = scrub(provider_message) if provider_message else provider_message
        self.provider_code = scrub(provider_code) if provider_code else provider_code
        self.retry_after = retry_after
        self.request_id = scrub(request_id) if request_id else request_id
        super().__init__(message)

    def __str__(self) -> str:
        parts = [f"task={self.task!r}"] if self.task is not None else []
        parts.append(f"model={self.model_id!r}")
        parts.append(f"provider={self.provider!r}")
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.provider_code:
            parts.append(f"code={self.provider_code!r}")
        return f"{self.message} ({', '.join(parts)})"


class RateLimitError(ProviderError):
    """429, or a provider's own rate-limit signal."""


class ProviderUnavailableError(ProviderError):
    """5xx or overloaded: the provider could not serve the call right now."""


class ProviderConnectionError(ProviderError):
    """The connection failed: refused, reset before an answer, DNS or TLS."""


class ProviderTimeoutError(ProviderError):
    """No answer within the attempt's time limit."""


class FirstTokenTimeoutError(ProviderTimeoutError):
    """A stream's first token did not arrive in time."""


class StreamStalledError(ProviderTimeoutError):
    """A stream sent nothing for longer than the stall limit."""


class InvalidResponseError(ProviderError):
    """The provider answered something we could not parse."""


class IncompleteStreamError(InvalidResponseError):
    """A stream ended before its terminal event: the answer may be truncated."""


class OutputValidationError(ProviderError):
    """The answer is not the JSON the call's ``output_type`` asks for: not JSON, not valid, or cut short.

    ``problems`` holds the first validation messages (``"age: Input should be a valid integer"``);
    ``truncated`` says the answer was cut at ``max_tokens`` before its JSON closed, which asking
    the same model again would not fix. The answer itself is not kept: it may hold anything.
    """

    def __init__(self, message: str, *, problems: Sequence[str] = (), truncated: bool = False, **fields: Any) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        self.truncated = truncated
        super().__init__(message, **fields)


class TruncatedAnswerError(ProviderError):
    """The answer ended at ``max_tokens`` with no text and no tool call: a reasoning model spent the whole
    budget thinking. Not a success with empty text; the chain moves on."""


class AuthenticationError(ProviderError):
    """401 or 403: the key is missing, wrong or lacks permission."""


class ContextLengthExceededError(ProviderError):
    """The request does not fit the model's context window.

    ``requested_tokens`` and ``limit_tokens`` hold the sizes the provider reported
    (input plus requested output where it counts both), when its error says them.
    """

    def __init__(
        self,
        message: str,
        *,
        requested_tokens: int | None = None,
        limit_tokens: int | None = None,
        **fields: Any,
    ) -> None:
        self.requested_tokens = requested_tokens
        self.limit_tokens = limit_tokens
        super().__init__(message, **fields)


class ContentFilteredError(ProviderError):
    """The provider refused the prompt or the answer on content grounds."""


class UnsupportedContentError(ProviderError):
    """The model cannot take what the request carries, though another may: an image URL where the provider
    takes only inline bytes (Ollama), an image format it refuses (GIF on Gemini), an image over its size limit
    (Anthropic's 5 MB), a model that answers it takes no images at all, or one asked for embeddings that
    makes none.

    Never fixed by fetching: a URL the caller gave is not fetched by the library (that would let any caller
    make the process request any address). Not the model's fault and not the request's either: the chain
    moves on to the next model, and the model's breaker does not count it.
    """


class BadRequestError(ProviderError):
    """Any other 4xx: the caller's request is wrong, and another model will not fix it."""


# --- whole calls -------------------------------------------------------------------


class DeadlineExceededError(TaskModelsError):
    """The call's overall deadline passed before any model answered."""

    def __init__(self, message: str, *, task: str, attempts: Sequence[Attempt] = ()) -> None:
        self.task = task
        self.attempts: tuple[Attempt, ...] = tuple(attempts)
        super().__init__(message)


class AllModelsFailedError(TaskModelsError, ExceptionGroup):  # type: ignore[misc,unused-ignore]  # bases agree at run time
    """Every candidate for the task failed. ``attempts`` says what was tried and why it failed.

    An ``ExceptionGroup`` of the real errors (each attempt's ``ProviderError``, each
    skip's ``ConfigurationError``), so ``except* RateLimitError`` works; ``__cause__``
    is the last provider error. ``retry_after`` is the soonest any provider asked for.
    """

    task: str
    attempts: tuple[Attempt, ...]
    skipped: tuple[tuple[str, str], ...]

    def __new__(
        cls,
        message: str,
        *,
        task: str,
        attempts: Sequence[Attempt],
        skipped: Sequence[tuple[str, str]] = (),
        errors: Sequence[Exception] = (),
    ) -> Self:
        # An exception group cannot be empty: a chain that raised nothing (every model
        # skipped without an error of its own) still says why, through this placeholder.
        group = list(errors) or [TaskModelsError(_NO_MODEL_TRIED)]
        self = super().__new__(cls, _with_first_cause(message, errors), group)
        self.task = task
        self.attempts = tuple(attempts)
        self.skipped = tuple(skipped)
        return self

    def __init__(self, message: str, **_: object) -> None:
        super().__init__(message, list(self.exceptions))

    def __str__(self) -> str:
        return self.message

    @property
    def retry_after(self) -> float | None:
        """The soonest ``Retry-After`` among the errors, in seconds, or ``None`` when no provider gave one."""
        waits = [e.retry_after for e in self.exceptions if isinstance(e, ProviderError) and e.retry_after is not None]
        return min(waits) if waits else None

    def derive(self, excs: Sequence[Exception]) -> ExceptionGroup[Exception]:  # type: ignore[override]
        # ``except*`` splits the group: the parts keep the message, as a plain group.
        return ExceptionGroup(self.message, list(excs))

    def __reduce__(self) -> tuple[object, ...]:
        state = (self.message, self.task, self.attempts, self.skipped, tuple(self.exceptions), self.__cause__)
        return (_rebuild_all_failed, (state,))


_NO_MODEL_TRIED = "no model was tried"  # the placeholder of a group whose chain raised nothing


# What a person can act on, when every model failed: what the configuration lacks, a key the provider refused, a
# server that is not there, a request the provider refused. The first of these in the chain's order is named
# first; without one, the first error (an outage, a rate limit: what passes by itself).
_ACTIONABLE = (
    ConfigurationError,
    AuthenticationError,
    ProviderConnectionError,
    BadRequestError,
    ContextLengthExceededError,
    UnsupportedContentError,
)
_LEADS = ("; fix first: ", "; first: ")
_CAUSE_CHARS = 240


def _with_first_cause(message: str, errors: Sequence[Exception]) -> str:
    """``message`` with what to do first on its first line, so a traceback's summary says it before the group
    lists every error."""
    head, newline, rest = message.partition("\n")
    errors = [e for e in errors if not (type(e) is TaskModelsError and str(e) == _NO_MODEL_TRIED)]
    if not errors or any(lead in head for lead in _LEADS):
        return message  # nothing to say, or said already (an error rebuilt from its pickled state)
    actionable = next((e for e in errors if isinstance(e, _ACTIONABLE)), None)
    lead, error = (_LEADS[0], actionable) if actionable is not None else (_LEADS[1], errors[0])
    colon = ":" if head.endswith(":") else ""
    return f"{head.removesuffix(':')}{lead}{_cause(error)}{colon}{newline}{rest}"


def _cause(error: Exception) -> str:
    """One error in one line: the model, the class and status, what it said, and what to do where that is known."""
    if isinstance(error, MissingCredentialError):
        return f"{error.model_id}: no API key: set {' or '.join(error.variables)}"
    if not isinstance(error, ProviderError):
        return _short(str(error))
    status = f" {error.status_code}" if error.status_code is not None else ""
    text = f"{error.model_id}: {type(error).__name__}{status}: {_short(error.message)}"
    if isinstance(error, AuthenticationError):
        text += f" (the provider refused the key: check the {error.provider} key; taskmodels check names its variable)"
    elif isinstance(error, ProviderConnectionError):
        text += " (is the server running? taskmodels check --ping reaches every endpoint)"
    return text


def _short(text: str) -> str:
    line = text.strip().partition("\n")[0]
    return line if len(line) <= _CAUSE_CHARS else line[: _CAUSE_CHARS - 1] + "…"


def _rebuild_all_failed(
    state: tuple[
        str, str, tuple[Attempt, ...], tuple[tuple[str, str], ...], tuple[Exception, ...], BaseException | None
    ],
) -> AllModelsFailedError:
    message, task, attempts, skipped, errors, cause = state
    error = AllModelsFailedError(message, task=task, attempts=attempts, skipped=skipped, errors=errors)
    error.__cause__ = cause
    return error


class BudgetExceededError(TaskModelsError):
    """The task's spend limit for the current window is reached."""

    def __init__(self, message: str, *, task: str, spent: float, limit: float) -> None:
        self.task = task
        self.spent = spent
        self.limit = limit
        super().__init__(message)


class ServiceClosedError(TaskModelsError, RuntimeError):
    """A call on a service whose container was closed (``await container.aclose()``): its HTTP client and state
    store are gone. Raised before anything is sent, so no model is tried and no breaker counts it."""
