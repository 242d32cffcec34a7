"""structlog setup for applications and the CLI, and the processor that keeps secrets out of logs.

Importing this module configures nothing: a library must not change its host's
logging. An application calls :func:`configure_logging` once at start-up, or adds
:func:`redact_secrets` to its own structlog processor chain.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from taskmodels.redaction import REDACTED, is_secret_name, scrub

__all__ = [
    "REDACTED",
    "LibraryLogger",
    "RedactingFilter",
    "configure_logging",
    "get_logger",
    "library_logger",
    "redact_secrets",
    "redact_text",
]

# Things that look like keys wherever they appear, e.g. inside an error message or a URL:
# they catch keys this process was never given (a key pasted into a prompt, another service's).
_SECRET_PATTERN = re.compile(
    r"""
      \bBearer\s+[A-Za-z0-9._~+/\-]+=*        # Authorization header values
    | \bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{8,}  # OpenAI and Anthropic keys
    | \bAIza[0-9A-Za-z_\-]{20,}               # Google API keys
    | \b(?:gsk|xai|hf)[_-][A-Za-z0-9]{16,}    # Groq, xAI, Hugging Face
    | ([?&](?:key|api_key|apikey|token)=)[^&\s"']+   # keys in query strings
    """,
    re.VERBOSE,
)

# Values a renderer prints as they are; anything else is printed through its repr or str.
_PLAIN = (int, float, bool, type(None), bytes)


def redact_text(text: str) -> str:
    """``text`` without any key this process was given (whole, fragment or URL-encoded: see
    ``taskmodels.redaction``) and without anything shaped like a key."""
    if not text:
        return text
    # By value first: a shape match could cut a key and leave a piece only the value scrub knows.
    return _SECRET_PATTERN.sub(lambda m: (m.group(1) or "") + REDACTED, scrub(text))


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN) or depth > 20:  # > 20: a cycle or absurd nesting; stop rather than recurse
        return value
    if isinstance(value, Mapping):
        return {
            _redact(k, depth + 1): (
                REDACTED if isinstance(k, str) and is_secret_name(k) and v is not None else _redact(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return _redact_object(value)


def _redact_object(value: Any) -> Any:
    # Any other object (an exception, a dataclass) reaches the renderer, which prints its repr
    # or str: when either would show a key, the object is replaced by its redacted text.
    for render in (str, repr):
        try:
            text = render(value)
        except Exception:  # a broken __repr__ must not break logging  # noqa: BLE001 - a repr that raises must not break logging
            return f"<unprintable {type(value).__name__}>"
        if redact_text(text) != text:
            return redact_text(repr(value))
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:  # noqa: ARG001 - structlog's processor signature
    """Structlog processor: mask secret-named keys, every key this process was given and key-shaped
    strings anywhere in the event, recursively. Put it before the renderer and anything that truncates."""
    for key in list(event_dict):
        value = event_dict[key]
        if is_secret_name(key) and value is not None:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(value)
    return event_dict


class RedactingFilter(logging.Filter):
    """A standard-library logging filter that takes keys out of each record, as ``redact_secrets`` does.

    HTTP clients log at DEBUG through the standard library, and httpcore logs every
    response's headers there: a server that echoes a key in a header puts it in those
    records. Add this to the handlers that write them::

        handler.addFilter(RedactingFilter())

    The record is changed in place, so every handler after this one sees it clean too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def configure_logging(
    level: str | int = "INFO",
    fmt: str = "auto",  # "auto", "console" or "json"
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for an application: console output in a terminal, JSON lines otherwise.

    ``fmt`` is ``auto`` (console when the stream is a TTY), ``console`` or ``json``.
    Output goes to ``stream`` (stderr by default). Secrets are redacted in both formats.
    """
    out = stream if stream is not None else sys.stderr
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in {"auto", "console", "json"}:
        raise ValueError(f"unknown log format {fmt!r}; use auto, console or json")
    use_console = fmt == "console" or (fmt == "auto" and _isatty(out))
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=_isatty(out)) if use_console else structlog.processors.JSONRenderer()
    )
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Exceptions become text first so the redaction below sees their messages too.
        structlog.processors.format_exc_info,
        redact_secrets,
        renderer,
    ]
    if use_console:
        processors.remove(structlog.processors.format_exc_info)  # the console renderer formats them itself
        processors.insert(processors.index(redact_secrets) + 1, _redact_exc_info)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _redact_exc_info(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # The console renderer prints exc_info itself; render it to redacted text here instead.
    exc = event_dict.pop("exc_info", None)
    if exc:
        formatted = structlog.processors.format_exc_info(logger, method_name, {"exc_info": exc})
        if "exception" in formatted:
            event_dict["exception"] = redact_text(str(formatted["exception"]))
    return event_dict


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A lazy structlog logger with ``logger_name=name`` bound; configuration stays the application's business.

    The name is bound as ``logger_name`` because structlog reserves the ``logger`` keyword.
    It is also passed to the logger factory, so stdlib-backed setups name their logger after it.
    """
    values: MutableMapping[str, Any] = dict(initial)
    if name:
        values["logger_name"] = name
        return structlog.get_logger(name, **values)
    return structlog.get_logger(**values)


DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40


class LibraryLogger:
    """How every taskmodels module logs: structlog, quiet by default, cheap when off.

    Until the application configures structlog, nothing below WARNING is emitted (as the
    standard library's logging does by default), so a library call never prints to stdout
    on its own. ``enabled(level)`` returns the bound logger or ``None``, so a hot path pays
    for building an event only when someone will read it. The bound logger is rebuilt only
    when structlog's configuration changes.

    Event names follow one scheme, ``taskmodels.<area>.<event>``; docs/logging lists them.
    """

    __slots__ = ("_check", "_key", "_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._key: tuple[Any, ...] | None = None
        self._logger: Any = None
        self._check: Any = None

    def enabled(self, level: int) -> Any:
        """The logger when ``level`` is enabled, else ``None``; no other logging work happens when it is off."""
        if level < WARNING and not structlog.is_configured():
            return None
        cfg = structlog.get_config()
        key = (cfg["wrapper_class"], cfg["logger_factory"], cfg["processors"])
        if key != self._key:
            self._logger = logger = structlog.get_logger(self.name).bind(logger_name=self.name)
            self._check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
            self._key = key
        check = self._check
        if check is not None and not check(level):
            return None
        return self._logger

    def also(self, level: int) -> bool:
        """Whether ``level`` is enabled too, right after ``enabled`` (no new configuration lookup)."""
        check = self._check
        return check is None or bool(check(level))

    def debug(self, event: str, **values: Any) -> None:
        if (log := self.enabled(DEBUG)) is not None:
            log.debug(event, **values)

    def info(self, event: str, **values: Any) -> None:
        if (log := self.enabled(INFO)) is not None:
            log.info(event, **values)

    def warning(self, event: str, **values: Any) -> None:
        if (log := self.enabled(WARNING)) is not None:
            log.warning(event, **values)

    def error(self, event: str, **values: Any) -> None:
        if (log := self.enabled(ERROR)) is not None:
            log.error(event, **values)


def library_logger(area: str) -> LibraryLogger:
    """The logger of one area of the library (``taskmodels.<area>``); see ``LibraryLogger``."""
    return LibraryLogger(f"taskmodels.{area}")
