"""The seams governance plugs into: who is calling, and per-caller limits around each call.

The gateway ships open (no keys): every request is an anonymous ``Caller`` that may call every task. A
``Gatekeeper`` (the container's ``gatekeeper`` node, or ``create_app(..., gatekeeper=...)``) changes that:

- ``authorize`` reads the request's headers and says who it is for: the ``tenant`` calls are made for (the
  engine's tenant-scoped budgets and totals count it) and the ``tasks`` it may call (another task the registry
  maps is a 403; one it does not, a 404); it raises ``GatewayError(401, ...)`` to refuse.
- ``admit`` wraps each call in the caller's limits (requests or tokens per minute, concurrency, a spend
  limit): entered before the call, left after it however it ended; raising ``GatewayError(429, ...)`` refuses.
  It is given the request (a chat's fields, or an embedding's texts) to size what it reserves, and yields a
  ``Ticket``: its ``headers`` go on the answer, and the gateway tells it what the call used.

``taskmodels.gateway.governance.KeyGatekeeper`` is the one the keys file (``TASKMODELS_GATEWAY__KEYS_FILE``) sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

from taskmodels.gateway.asgi import Scope

__all__ = ["ANONYMOUS", "NO_TICKET", "Caller", "Gatekeeper", "Operation", "Payload", "Ticket", "no_limits"]

Operation = Literal["chat", "embeddings", "models"]
Payload = Mapping[str, Any] | Sequence[str]
"""What a call asks for: a chat's request fields (``CompletionRequest``'s), or an embedding's texts."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request is for, as the gatekeeper decided."""

    tenant: str | None = None
    tasks: frozenset[str] | None = None  # the tasks it may call; None: every task of the registry
    name: str | None = None  # for logs: a key's name, never the key

    def may_call(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


ANONYMOUS = Caller()


class Ticket:
    """What ``admit`` hands the call it let in: ``headers`` for the answer (a caller's rate-limit headers, say), and
    what the call used, as the gateway tells it: ``used`` once the answer is known, ``content_sent`` when a
    stream's first content went out (a stream the client leaves after that never reports its usage). This base
    one records nothing."""

    __slots__ = ("headers",)

    def __init__(self, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self.headers: list[tuple[bytes, bytes]] = list(headers)

    def used(self, tokens: int, cost: float) -> None:
        """The call's answer used ``tokens`` (prompt and answer) and cost ``cost`` USD."""

    def content_sent(self) -> None:
        """A stream's first content went out."""


NO_TICKET = Ticket()


class Gatekeeper(Protocol):
    """Authentication and per-caller limits; see the module docstring."""

    async def authorize(self, scope: Scope) -> Caller: ...

    def admit(
        self, caller: Caller, task: str, operation: Operation, payload: Payload
    ) -> AbstractAsyncContextManager[Ticket]: ...


class _NoLimits:
    """An ``async with`` that does nothing: the open gateway's limits, at the cost of two calls."""

    __slots__ = ()

    async def __aenter__(self) -> Ticket:
        return NO_TICKET

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


no_limits: AbstractAsyncContextManager[Ticket] = _NoLimits()
