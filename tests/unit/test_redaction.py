"""Redaction by value: whole keys, fragments of 8+ characters, URL-encoded forms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from taskmodels import redaction
from taskmodels.redaction import REDACTED, remember, scrub, scrub_value

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
