"""Redaction by value: whole keys, fragments of 8+ characters, URL-encoded forms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from taskmodels import redaction
from taskmodels.redaction import MIN_FRAGMENT, REDACTED, remember, scrub, scrub_value

KEY = "azure0123456789abcdef0123456789ab"  # a hex-shaped key no pattern recognises


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    redaction.forget_all()
    yield
    redaction.forget_all()


def test_nothing_remembered_changes_nothing() -> None:
    assert scrub(f"key {KEY}") == f"key {KEY}"


def test_whole_key_and_fragments_are_redacted() -> None:
    remember(SecretStr(KEY))
    assert scrub(f"bad key {KEY}!") == f"bad key {REDACTED}!"
    cut = f"<html>... {KEY[:13]}"  # what a truncation at the wrong place leaves
    assert KEY[:13] not in scrub(cut)
    assert scrub(f"tail {KEY[-9:]} end") == f"tail {REDACTED} end"


def test_a_fragment_shorter_than_eight_characters_is_kept() -> None:
    remember(KEY)
    assert scrub(f"x {KEY[:7]} y") == f"x {KEY[:7]} y"


def test_url_encoded_form_is_redacted() -> None:
    key = "sk/with+plus=and slash"
    remember(key)
    assert "plus" not in scrub("GET /v1?key=sk%2Fwith%2Bplus%3Dand%20slash HTTP/1.1")
    assert "plus" not in scrub("key=sk%2Fwith%2Bplus%3Dand+slash")


def test_short_values_are_not_remembered() -> None:
    remember("short", None, "")
    assert scrub("short and sweet text") == "short and sweet text"


def test_scrub_value_walks_containers() -> None:
    remember(KEY)
    value = {"headers": {"x-request-id": f"req-{KEY}"}, "list": [KEY, 3], "tuple": (KEY,)}
    assert scrub_value(value) == {
        "headers": {"x-request-id": f"req-{REDACTED}"},
        "list": [REDACTED, 3],
        "tuple": (REDACTED,),
    }


@pytest.mark.parametrize("name", ["Authorization", "x-api-key", "X-Goog-Api-Key", "api-key", "openai_api_key", "token"])
def test_secret_names(name: str) -> None:
    assert redaction.is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "input_tokens", "x-request-id", "content-type", "first_token_timeout"])
def test_names_that_are_not_secret(name: str) -> None:
    assert not redaction.is_secret_name(name)


def test_a_key_straddling_any_cut_leaves_nothing_of_eight_characters() -> None:
    remember(KEY)
    body = "<html><body>" + "x" * 600 + "</body></html>"
    for offset in range(500 - len(KEY) - 2, 503):
        text = (body[:offset] + KEY + body[offset:])[:500]
        cleaned = scrub(text)
        for i in range(len(KEY) - MIN_FRAGMENT + 1):
            assert KEY[i : i + MIN_FRAGMENT] not in cleaned, offset


def test_a_provider_error_a_plugin_builds_directly_is_scrubbed() -> None:
    """A plugin's provider raises ``ProviderError`` subclasses it builds itself, not through
    ``BaseModelProvider.error``: every string the error keeps is scrubbed all the same."""
    from taskmodels.errors import ProviderUnavailableError

    remember(SecretStr(KEY))
    error = ProviderUnavailableError(
        f"upstream said: bad key {KEY}",
        provider="plugin",
        model_id="m",
        provider_message=f"key={KEY[:20]}",
        provider_code=KEY,
        request_id=f"req-{KEY}",
    )
    for kept in (error.message, str(error), error.provider_message, error.provider_code, error.request_id):
        assert kept is not None
        assert KEY[:MIN_FRAGMENT] not in kept, kept
        assert REDACTED in kept
