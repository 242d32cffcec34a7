"""Virtual keys: made once and kept only as their SHA-256, found in constant time, refused for each reason without
saying anything of the key or of the others."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from taskmodels.gateway.keys import (
    _BUCKET,
    KeyBudget,
    KeyRefused,
    KeyRing,
    VirtualKey,
    bearer_token,
    key_digest,
    new_key,
)

SENTINEL = "tm-SENTINEL-never-shown-0123456789abcdefghijklmnop"


def vkey(name: str, key: str, **fields: object) -> VirtualKey:
    return VirtualKey.model_validate({"name": name, "sha256": key_digest(key), **fields})


def test_a_new_key_is_prefixed_random_and_url_safe() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert re.fullmatch(r"tm-[A-Za-z0-9_-]{43}", key), key


def test_the_digest_is_sha256_in_lower_case_hex() -> None:
    # printf 'tm-abc' | sha256sum
    assert key_digest("tm-abc") == "6c0b278b4b615212325cf33cd4a29df396f3ca483f9db917c2a3753b4761b4bb"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer tm-abc", "tm-abc"),
        (b"bearer tm-abc", "tm-abc"),
        (b"BEARER   tm-abc  ", "tm-abc"),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearer", None),
        (b"Bearer    ", None),
        (b"", None),
        (None, None),
    ],
)
def test_the_bearer_token_is_read_from_the_authorization_header(header: bytes | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_a_known_key_is_found_and_every_other_is_refused_with_its_reason() -> None:
    ring = KeyRing(
        [
            vkey("live", "tm-live"),
            vkey("off", "tm-off", disabled=True),
            vkey("old", "tm-old", expires="2030-01-01T00:00:00Z"),
        ]
    )
    expiry = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert ring.authenticate("tm-live", expiry).name == "live"
    assert ring.authenticate("tm-old", expiry - 1).name == "old"
    cases: list[tuple[str | None, str, str | None]] = [(None, "missing", None), ("", "missing", None)]
    cases += [("tm-nope", "unknown", None)]
    cases += [("tm-off", "disabled", "off"), ("tm-old", "expired", "old")]
    for token, reason, name in cases:
        with pytest.raises(KeyRefused) as caught:
            ring.authenticate(token, expiry)
        assert (caught.value.reason, caught.value.name) == (reason, name)


def test_a_refusal_carries_nothing_of_the_key_presented() -> None:
    ring = KeyRing([vkey("off", SENTINEL, disabled=True)])
    for token in (SENTINEL, SENTINEL + "x"):
        with pytest.raises(KeyRefused) as caught:
            ring.authenticate(token, 0.0)
        for text in (str(caught.value), repr(caught.value), repr(caught.value.args)):
            assert "SENTINEL" not in text


def test_keys_sharing_a_bucket_are_each_found() -> None:
    # Digests are bucketed by their first hex digits: keys in one bucket must not shadow each other.
    by_prefix: dict[str, list[str]] = {}
    i = 0
    while not any(len(found) >= 3 for found in by_prefix.values()):
        key = f"tm-{i}"
        by_prefix.setdefault(key_digest(key)[:_BUCKET], []).append(key)
        i += 1
    crowded = next(found for found in by_prefix.values() if len(found) >= 3)
    ring = KeyRing([vkey(f"k{n}", key) for n, key in enumerate(crowded)])
    for n, key in enumerate(crowded):
        assert ring.authenticate(key, 0.0).name == f"k{n}"


@hsettings(max_examples=60)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=8, unique=True),
    other=st.text(min_size=1, max_size=40),
)
def test_a_token_finds_exactly_the_key_it_hashes_to(tokens: list[str], other: str) -> None:
    ring = KeyRing([vkey(f"k{i}", token) for i, token in enumerate(tokens)])
    for i, token in enumerate(tokens):
        assert ring.authenticate(token, 0.0).name == f"k{i}"
    if other not in tokens:
        with pytest.raises(KeyRefused):
            ring.authenticate(other, 0.0)


def test_the_digest_hashes_any_text_a_header_can_carry() -> None:
    # A header is latin-1; a lone surrogate cannot come from one but must not crash the hash either.
    assert key_digest("\udcff") == hashlib.sha256(b"\xed\xb3\xbf").hexdigest()
    with pytest.raises(KeyRefused):
        KeyRing([]).authenticate("\udcff", 0.0)


def test_a_key_may_call_its_tasks_or_every_task() -> None:
    some = vkey("some", "tm-a", tasks=["summarize", "classify"])
    every = vkey("every", "tm-b")
    assert some.may_call("summarize")
    assert not some.may_call("translate")
    assert some.task_set == frozenset({"summarize", "classify"})
    assert every.may_call("anything")
    assert every.task_set is None


def test_a_budget_defaults_to_a_day() -> None:
    assert KeyBudget(limit=5).window_seconds == 86400.0
