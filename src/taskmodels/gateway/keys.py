"""Virtual keys: who may call the gateway, which tasks, and within which limits.

A key is ``tm-`` followed by 43 URL-safe characters (256 random bits), made by ``new_key`` and shown once. The
keys file (``keysfile.py``) keeps only its SHA-256, so the file can be read, copied and committed without
handing anyone a key. A request presents the key as ``Authorization: Bearer <key>``, which is what the OpenAI
SDKs send; ``KeyRing.authenticate`` hashes it and compares the digest with the known ones in constant time.

Each key names the tasks it may call (``"*"``: every task), its ``rpm`` and ``tpm``, a ``budget`` (USD per
window) and an optional expiry, and can be ``disabled`` without being deleted. Its ``name`` is what the gateway
logs, labels metrics with and calls the tenant of its calls: never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import AwareDatetime, Field, field_validator

from taskmodels.registry.loader import shown
from taskmodels.registry.schema import _Flag, _Int, _Number, _Strict

__all__ = [
    "KEY_PREFIX",
    "NAME_PATTERN",
    "KeyBudget",
    "KeyRefused",
    "KeyRing",
    "KeysConfig",
    "VirtualKey",
    "bearer_token",
    "key_digest",
    "new_key",
]

KEY_PREFIX: Final = "tm-"
"""Every key starts so: recognisable in a leaked config or a secret scanner, and told apart from a provider's."""

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""A key's name: it labels metrics and logs, so it is short and plain."""

_DIGEST_PATTERN: Final = r"^[0-9a-f]{64}$"
_BUCKET: Final = 4  # hex digits of a digest that choose its bucket: see KeyRing


def new_key() -> str:
    """A new random key: ``tm-`` and 256 bits from ``secrets``."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """The SHA-256 of ``key`` in lower-case hex: what the keys file keeps instead of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or ``None`` when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token.decode("latin-1") if token else None


class KeyBudget(_Strict):
    """A key's spend limit: ``limit`` USD in each window of ``windowSeconds`` (aligned to the epoch)."""

    limit: _Number = Field(gt=0, description="USD per window")
    window_seconds: _Number = Field(default=86400.0, alias="windowSeconds", gt=0, description="Seconds per window")


class VirtualKey(_Strict):
    """One key of the keys file."""

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Logged, labelled and the tenant of its calls (never the key): 1-64 of A-Za-z0-9._-",
    )
    sha256: str = Field(pattern=_DIGEST_PATTERN, description="SHA-256 of the key, lower-case hex")
    tasks: Literal["*"] | tuple[str, ...] = Field(
        default="*", description='The tasks the key may call; "*" (the default): every task'
    )
    rpm: _Int | None = Field(default=None, gt=0, description="Requests per minute, across every replica")
    tpm: _Int | None = Field(default=None, gt=0, description="Tokens per minute (input and output)")
    budget: KeyBudget | None = None
    expires: AwareDatetime | None = Field(default=None, description="ISO 8601 with a time zone; refused from then")
    disabled: _Flag = False
    created: AwareDatetime | None = None
    description: str | None = Field(default=None, max_length=500)

    @field_validator("name", mode="before")
    @classmethod
    def _plain_name(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith(KEY_PREFIX):  # a key pasted as its name: not shown
            raise ValueError(f"a key's name must not start with {KEY_PREFIX!r}, which marks the keys themselves")
        if isinstance(value, str) and not re.fullmatch(NAME_PATTERN, value.strip()):
            raise ValueError(
                "a key's name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
                f"(got {shown(value)})"
            )
        return value

    @field_validator("sha256", mode="before")
    @classmethod
    def _digest_only(cls, value: Any) -> Any:
        # What was written is never shown: a key pasted here by mistake must not reach a log or a terminal.
        if not isinstance(value, str) or not re.fullmatch(_DIGEST_PATTERN, value.strip()):
            raise ValueError(
                "must be the key's SHA-256 as 64 lower-case hex digits, never the key itself "
                "('taskmodels keys add' writes it)"
            )
        return value

    @field_validator("tasks", mode="before")
    @classmethod
    def _star_or_names(cls, value: Any) -> Any:
        # One message for both shapes, rather than pydantic's one error per member of the union.
        if value == "*":
            return value
        if not isinstance(value, list | tuple):
            raise ValueError(f'must be "*" (every task) or a list of task names (got {shown(value)})')  # noqa: TRY004 - pydantic reports a ValueError, located; a TypeError would escape it
        for i, task in enumerate(value):
            if not isinstance(task, str) or not task.strip():
                raise ValueError(f"tasks[{i}] must be a task name, a non-empty string (got {shown(task)})")
        if not value:
            raise ValueError('lists no task, so the key could call nothing: name its tasks, or "*" for every task')
        return tuple(task.strip() for task in value)

    @field_validator("expires", "created", mode="before")
    @classmethod
    def _zoned(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                raise ValueError(
                    f"must be an ISO 8601 time with its zone, e.g. 2027-01-31T00:00:00Z (got {shown(value)})"
                )
        return value

    def may_call(self, task: str) -> bool:
        return self.tasks == "*" or task in self.tasks

    def expired(self, now: float) -> bool:
        """Whether ``now`` (seconds since the epoch) is at or past the expiry."""
        return self.expires is not None and now >= self.expires.timestamp()

    @property
    def task_set(self) -> frozenset[str] | None:
        """The tasks the key may call, or ``None`` for every task."""
        return None if self.tasks == "*" else frozenset(self.tasks)


class KeysConfig(_Strict):
    """The whole keys file."""

    keys: tuple[VirtualKey, ...] = ()
    schema_: str | None = Field(default=None, alias="$schema", description="Optional JSON Schema reference")


RefusalReason = Literal["missing", "unknown", "expired", "disabled"]


class KeyRefused(Exception):  # noqa: N818 - a refusal the gateway answers with a 401, not a failure
    """A request whose key cannot be used. ``reason`` is for the operator's log; ``name`` the key's name when the
    key is known (expired or disabled). Neither the key nor anything about other keys is carried."""

    def __init__(self, reason: RefusalReason, name: str | None = None) -> None:
        self.reason: RefusalReason = reason
        self.name = name
        super().__init__(reason)


class KeyRing:
    """The keys of one version of the file, indexed for lookup. Never changed: a reload builds a new ring.

    Digests are grouped in buckets by their first hex digits; a lookup hashes the presented key and compares it
    with each digest of its bucket by ``hmac.compare_digest``, so no comparison's timing says how much of a
    digest matched. (Which bucket was looked in is a function of the SHA-256 of what the client sent: it says
    nothing about any key.)
    """

    __slots__ = ("_buckets", "by_name", "content_hash", "keys", "sources")

    def __init__(self, keys: Iterable[VirtualKey], *, content_hash: str = "", sources: Iterable[str] = ()) -> None:
        self.keys: tuple[VirtualKey, ...] = tuple(keys)
        self.content_hash = content_hash  # of the file's content: replicas that loaded the same keys show the same
        self.sources: tuple[str, ...] = tuple(sources)
        self.by_name: Mapping[str, VirtualKey] = MappingProxyType({key.name: key for key in self.keys})
        buckets: dict[str, list[tuple[bytes, VirtualKey]]] = {}
        for key in self.keys:
            buckets.setdefault(key.sha256[:_BUCKET], []).append((bytes.fromhex(key.sha256), key))
        self._buckets = {prefix: tuple(found) for prefix, found in buckets.items()}

    def authenticate(self, token: str | None, now: float) -> VirtualKey:
        """The key ``token`` is, usable at ``now`` (seconds since the epoch); ``KeyRefused`` otherwise."""
        if not token:
            raise KeyRefused("missing")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: VirtualKey | None = None
        for known, key in self._buckets.get(digest.hex()[:_BUCKET], ()):
            if hmac.compare_digest(known, digest):
                found = key
        if found is None:
            raise KeyRefused("unknown")
        if found.disabled:
            raise KeyRefused("disabled", found.name)
        if found.expired(now):
            raise KeyRefused("expired", found.name)
        return found


def utc_now() -> datetime:
    """Now, as the keys file writes times (UTC, whole seconds)."""
    return datetime.now(UTC).replace(microsecond=0)
