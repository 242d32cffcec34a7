"""Redaction by value: every key this process was given is cut out of every string the library keeps or emits.

Shape-based patterns (``sk-…``, ``AIza…``) miss keys of other shapes (an Azure hex key)
and keys a server echoes in odd places. So the process remembers each secret it was
configured with, and ``scrub`` removes, wherever they appear:

- the whole secret,
- any fragment of it of ``MIN_FRAGMENT`` (8) characters or more (a key cut by a truncation,
  or split across two fields, leaves such a fragment),
- the same in its URL-encoded form (a key echoed back from a query string).

Callers scrub *before* truncating: a cut made first could leave a fragment shorter
than the minimum at the edge, or one longer that a later scrub would still find but
too late for what was already copied.

The set of secrets is process-wide on purpose: a key a provider was built with must
also be removed from a log line written by another module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

__all__ = ["MIN_FRAGMENT", "REDACTED", "forget_all", "is_secret_name", "remember", "scrub", "scrub_value"]

REDACTED = "[REDACTED]"
MIN_FRAGMENT = 8

# Names whose value is a secret whatever it looks like (headers, log fields, settings keys).
# Compared after lowercasing and turning '-' into '_', so 'X-Api-Key' and 'x_api_key' match
# alike. Counters such as 'max_tokens' must not match, so 'token' is matched as a whole word.
_SECRET_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "x_goog_api_key",
        "api_token",
        "password",
        "passwd",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "cookie",
        "set_cookie",
        "url_password",
    }
)
_SECRET_SUFFIXES = ("_api_key", "_apikey", "_password", "_secret", "_token")

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_grams: frozenset[str] = frozenset()  # every MIN_FRAGMENT-long piece of every remembered form


def remember(*secrets: str | SecretStr | None) -> None:
    """Add secrets to redact from now on; values shorter than ``MIN_FRAGMENT`` are too short to match safely."""
    global _secrets, _grams  # noqa: PLW0603 - one process-wide set, replaced whole so readers need no lock
    forms: set[str] = set()
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not value or len(value) < MIN_FRAGMENT or value in _secrets:
            continue
        forms.update({value, quote(value, safe=""), quote_plus(value)})
    if not forms:
        return
    with _lock:
        grams = set(_grams)
        for form in forms:
            grams.update(form[i : i + MIN_FRAGMENT] for i in range(len(form) - MIN_FRAGMENT + 1))
        _secrets = _secrets | forms
        _grams = frozenset(grams)


def forget_all() -> None:
    """Forget every remembered secret (for tests)."""
    global _secrets, _grams  # noqa: PLW0603 - see remember
    with _lock:
        _secrets = frozenset()
        _grams = frozenset()


def scrub(text: str) -> str:
    """``text`` with every remembered secret, and every fragment of one of 8+ characters, replaced by ``[REDACTED]``."""
    grams = _grams
    if not grams or len(text) < MIN_FRAGMENT:
        return text
    spans = _covered(text, grams)
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


def scrub_value(value: Any, _depth: int = 0) -> Any:
    """``scrub`` applied to every string inside mappings, lists and tuples (keys of mappings too)."""
    if isinstance(value, str):
        return scrub(value)
    if _depth > 20:  # a cycle or absurd nesting: stop rather than recurse forever
        return value
    if isinstance(value, Mapping):
        return {scrub_value(k, _depth + 1): scrub_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [scrub_value(v, _depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def is_secret_name(name: str) -> bool:
    """Whether a header, field or setting called ``name`` holds a secret (``Authorization``, ``x-api-key``, ...)."""
    normalised = name.lower().replace("-", "_")
    return normalised in _SECRET_NAMES or normalised.endswith(_SECRET_SUFFIXES)


def _covered(text: str, grams: Iterable[str]) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` spans of ``text`` covered by some window that is a piece of a secret.

    Every fragment of 8+ characters of a secret is a union of overlapping 8-character
    windows that are all pieces of that secret, so marking each matching window finds them all.
    """
    spans: list[tuple[int, int]] = []
    lookup = grams if isinstance(grams, frozenset) else frozenset(grams)
    width = MIN_FRAGMENT
    for i in range(len(text) - width + 1):
        if text[i : i + width] in lookup:
            end = i + width
            if spans and i <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((i, end))
    return spans
