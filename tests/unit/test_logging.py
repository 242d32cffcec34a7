"""Logging: redaction of secrets, and configure_logging's formats."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from taskmodels import redaction
from taskmodels.log import REDACTED, configure_logging, get_logger, redact_secrets, redact_text

# An Azure key is 32 hex digits: no shape pattern knows it, only its value does.
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    redaction.forget_all()
    yield
    structlog.reset_defaults()
    redaction.forget_all()


def redact(event: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", event))


@pytest.mark.parametrize(
    "key", ["api_key", "Authorization", "x-api-key", "X-Goog-Api-Key", "password", "token", "secret", "openai_api_key"]
)
def test_secret_named_keys_are_masked(key: str) -> None:
    assert redact({"event": "e", key: "hunter2"})[key] == REDACTED


def test_counters_named_like_tokens_are_kept() -> None:
    event = {"event": "e", "max_tokens": 100, "input_tokens": 5, "first_token_timeout": 3.0, "tokens": 9}
    assert redact(dict(event)) == event


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnop1234",
        "sk-ant-api03-abcdefghijklmnopqrstuv",
        "AIzaSyA1234567890abcdefghijklmnopqrs",
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
    ],
)
def test_key_like_strings_are_masked_anywhere(secret: str) -> None:
    event = {
        "event": f"failed with {secret}",
        "nested": {"headers": [f"x {secret}", {"deep": secret}]},
        "as_tuple": (secret,),
    }
    out = redact(event)
    text = json.dumps(out)
    assert secret not in text
    assert secret.rsplit(maxsplit=1)[-1][:12] not in text
    assert out["event"] == f"failed with {REDACTED}"
    assert out["nested"]["headers"][1]["deep"] == REDACTED
    assert out["as_tuple"] == (REDACTED,)


def test_secret_keys_masked_when_nested() -> None:
    out = redact({"event": "e", "request": {"headers": {"Authorization": "abc", "Accept": "json"}}})
    assert out["request"]["headers"] == {"Authorization": REDACTED, "Accept": "json"}


def test_query_string_keys_are_masked() -> None:
    assert redact_text("GET https://x.test/v1?key=abc123&alt=sse") == f"GET https://x.test/v1?key={REDACTED}&alt=sse"


def test_ordinary_text_untouched() -> None:
    assert redact_text("task clustering on gpt-4o-mini took 1.2s") == "task clustering on gpt-4o-mini took 1.2s"


def test_configure_logging_json_redacts(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    log = get_logger("taskmodels.test")
    log.info("call_failed", api_key="sk-live-1234567890abcdef", error="401 for key sk-live-1234567890abcdef")
    log.debug("hidden")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1  # DEBUG filtered at INFO
    data = json.loads(lines[0])
    assert data["event"] == "call_failed"
    assert data["api_key"] == REDACTED
    assert data["error"] == f"401 for key {REDACTED}"
    assert data["level"] == "info"
    assert data["logger_name"] == "taskmodels.test"


def test_exception_text_is_redacted() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise RuntimeError("bad key sk-abcdefghijklmnop1234")
    except RuntimeError:
        get_logger().exception("boom")
    assert "sk-abcdefghijklmnop1234" not in stream.getvalue()
    assert "RuntimeError" in stream.getvalue()


def test_console_format_and_auto_picks_json_for_non_tty() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "console", stream=stream)
    get_logger().debug("hello", password="p")
    out = stream.getvalue()
    assert "hello" in out
    assert REDACTED in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream=stream)  # StringIO is not a TTY
    get_logger().info("hello")
    assert json.loads(stream.getvalue())["event"] == "hello"


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")


def test_importing_the_library_configures_nothing() -> None:
    code = (
        "import structlog, taskmodels, taskmodels.log, taskmodels.registry, taskmodels.selection;"
        "print(structlog.is_configured())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_key_of_no_known_shape_passes_the_shape_patterns_but_not_the_value_scrub() -> None:
    event = {"event": f"401 from azure: key {AZURE_KEY} rejected", "request_id": AZURE_KEY}
    assert AZURE_KEY in json.dumps(redact(dict(event)))  # what the patterns alone let through
    redaction.remember(AZURE_KEY)
    out = redact(dict(event))
    assert out == {"event": f"401 from azure: key {REDACTED} rejected", "request_id": REDACTED}


def test_value_scrub_reaches_fragments_nesting_keys_and_objects() -> None:
    redaction.remember(AZURE_KEY)

    class Holder:
        def __repr__(self) -> str:
            return f"Holder(key={AZURE_KEY!r})"

    event: dict[str, Any] = {
        "event": "e",
        "body": "<html>" + "x" * 480 + AZURE_KEY[:13],  # what a cut at 500 characters leaves
        "nested": {"headers": [{"x-request-id": f"req_{AZURE_KEY}"}], AZURE_KEY: 1},
        "as_set": {AZURE_KEY},
        "object": Holder(),
        "count": 3,
    }
    text = repr(redact(event))
    assert AZURE_KEY[:12] not in text
    assert AZURE_KEY[-12:] not in text
    assert "count': 3" in text  # plain values pass untouched


def test_url_encoded_key_is_redacted_in_events() -> None:
    key = "key/with+symbols=0123456789"
    redaction.remember(key)
    out = redact({"event": "GET /v1?token=x&k=key%2Fwith%2Bsymbols%3D0123456789"})
    assert "symbols" not in out["event"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_configured_logs_never_show_a_remembered_key(fmt: str) -> None:
    redaction.remember(AZURE_KEY)
    stream = io.StringIO()
    configure_logging("DEBUG", fmt, stream=stream)
    log = get_logger("taskmodels.test")
    log.debug("echo", message=f"invalid key {AZURE_KEY}", headers={"apim-request-id": AZURE_KEY[4:20]})
    try:
        raise RuntimeError(f"bad key {AZURE_KEY}")
    except RuntimeError:
        log.exception("boom")
    out = stream.getvalue()
    assert "echo" in out
    assert "RuntimeError" in out
    assert AZURE_KEY[:12] not in out
    assert AZURE_KEY[4:20] not in out
