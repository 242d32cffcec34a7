"""Governance at the gateway's door: a virtual key on every request, each key's tasks and limits around its calls.

``KeyGatekeeper`` is the gateway's ``Gatekeeper`` (``hooks.py``) once a keys file is set
(``TASKMODELS_GATEWAY__KEYS_FILE``):

- ``authorize`` takes the key from ``Authorization: Bearer <key>`` (what the OpenAI SDKs send) and looks it up in
  the current keys (``keys.py``: by its SHA-256, in constant time). A missing, unknown, expired or disabled key is
  a 401 that says nothing of which keys exist, and never repeats what was sent. The key's name is the caller's
  name and the tenant of its calls; its tasks are the tasks it may call (another is a 403).
- ``admit`` reserves the request's bound (``estimate.py``) against the key's budget, rpm and tpm
  (``governor.py``): a 429 with ``Retry-After`` when one has no room. The ``Ticket`` it hands the call carries
  OpenAI's ``x-ratelimit-*`` headers for the answer and takes what the call used; leaving the block settles the
  reservation to it (to nothing, when the call failed before it used anything), shielded from cancellation.

The presented key goes nowhere but into ``hashlib.sha256``: not upstream (the gateway sends providers its own keys),
not into a log, an error, a span or a metric label.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from taskmodels.gateway.asgi import Scope, header
from taskmodels.gateway.errors import GatewayError
from taskmodels.gateway.estimate import chat_bound, embeddings_bound
from taskmodels.gateway.governor import Bound, Governor, LimitExceeded, Permit
from taskmodels.gateway.hooks import Caller, Operation, Payload, Ticket
from taskmodels.gateway.keys import KeyRefused, VirtualKey, bearer_token
from taskmodels.gateway.keysfile import KeysFile
from taskmodels.gateway.metrics import GatewayMetrics
from taskmodels.log import library_logger
from taskmodels.selection import ModelSelectionFactory
from taskmodels.validation import coerce_request

__all__ = ["KeyCaller", "KeyGatekeeper", "KeyTicket"]

_log = library_logger("gateway")

_MISSING: Final = "You didn't provide an API key: send it as 'Authorization: Bearer <key>' (the OpenAI SDKs' api_key)."
_INVALID: Final = "Incorrect API key provided: it is unknown, expired or disabled."
_SDK_RETRY_LIMIT: Final = 60.0  # the OpenAI SDKs honour a Retry-After up to a minute; a longer wait: do not retry


@dataclass(frozen=True, slots=True)
class KeyCaller(Caller):
    """A caller with a key: its limits travel with it, so a reload between the door and the call changes nothing
    of a request already admitted."""

    key: VirtualKey | None = None


class KeyTicket(Ticket):
    """What one admitted call holds against its key: settled, when the call ends, to what it used (``used``); to
    its whole bound when a stream's content went out and its usage never came (the client left); to nothing when
    it ended before either (it failed: failed attempts are the operator's cost, not the key's)."""

    __slots__ = ("bound", "cost", "permit", "tokens")

    def __init__(self, permit: Permit, bound: Bound) -> None:
        super().__init__(permit.headers)
        self.permit = permit
        self.bound = bound
        self.tokens = 0
        self.cost = 0.0

    def used(self, tokens: int, cost: float) -> None:
        self.tokens, self.cost = tokens, cost

    def content_sent(self) -> None:
        self.tokens, self.cost = self.bound.tokens, self.bound.cost


class _Admission:
    __slots__ = ("_bound", "_gatekeeper", "_key", "_ticket")

    def __init__(self, gatekeeper: KeyGatekeeper, key: VirtualKey, bound: Bound) -> None:
        self._gatekeeper = gatekeeper
        self._key = key
        self._bound = bound
        self._ticket: KeyTicket | None = None

    async def __aenter__(self) -> KeyTicket:
        gatekeeper = self._gatekeeper
        try:
            permit = await gatekeeper.governor.admit(self._key, self._bound)
        except LimitExceeded as refused:
            if gatekeeper.metrics is not None:
                gatekeeper.metrics.refused_by_limit(self._key.name, refused.kind)
            raise _too_many(refused) from None
        self._ticket = KeyTicket(permit, self._bound)
        return self._ticket

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ticket = self._ticket
        if ticket is None:
            return
        settle = self._gatekeeper.governor.settle(ticket.permit, tokens=ticket.tokens, cost=ticket.cost)
        # Shielded: a cancellation arriving meanwhile (a client that left) must not leave a reservation held.
        await asyncio.shield(settle)


class KeyGatekeeper:
    """Keys and per-key limits; see the module docstring."""

    def __init__(
        self,
        keys: KeysFile,
        governor: Governor,
        selector: ModelSelectionFactory,
        *,
        metrics: GatewayMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.governor = governor
        self.selector = selector
        self.metrics = metrics
        self.wall_clock = wall_clock

    async def authorize(self, scope: Scope) -> Caller:
        token = bearer_token(header(scope, b"authorization"))
        try:
            key = self.keys.current.authenticate(token, self.wall_clock())
        except KeyRefused as refused:
            # The reason and, for a known key, its name: the operator's to see. What was sent: nobody's.
            _log.info("taskmodels.gateway.key_refused", reason=refused.reason, key=refused.name)
            message = _MISSING if refused.reason == "missing" else _INVALID
            raise GatewayError(401, message, code="invalid_api_key") from None
        return KeyCaller(tenant=key.name, tasks=key.task_set, name=key.name, key=key)

    def admit(self, caller: Caller, task: str, operation: Operation, payload: Payload) -> _Admission:
        key = caller.key if isinstance(caller, KeyCaller) else None
        if key is None:  # a caller this gatekeeper did not let in: never served unlimited
            raise GatewayError(401, _INVALID, code="invalid_api_key")
        if not key.budget and not key.tpm:
            bound = Bound(0, 0.0)  # nothing is counted in tokens or dollars: no estimate needed
        elif operation == "embeddings":
            bound = embeddings_bound(self.selector, task, [str(text) for text in payload])
        else:
            request = coerce_request(None, payload if isinstance(payload, Mapping) else {})
            bound = chat_bound(self.selector, task, request)
        return _Admission(self, key, bound)


def _too_many(refused: LimitExceeded) -> GatewayError:
    wait = max(refused.retry_after, 0.0)
    headers = [
        *refused.headers,
        (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        (b"retry-after-ms", str(max(1, math.ceil(wait * 1000))).encode()),
    ]
    if wait > _SDK_RETRY_LIMIT:  # the SDKs would retry at once and again: tell them not to
        headers.append((b"x-should-retry", b"false"))
    if refused.kind == "budget":
        return GatewayError(429, str(refused), type_="insufficient_quota", code="budget_exceeded", headers=headers)
    return GatewayError(429, str(refused), type_=refused.kind, code="rate_limit_exceeded", headers=headers)
