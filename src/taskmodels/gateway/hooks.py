"""The seams governance plugs into: who is calling, and per-caller limits around each call.

The gateway ships open (no keys): every request is an anonymous ``Caller`` that may call every task. A
``Gatekeeper`` (the container's ``gatekeeper`` node, or ``create_app(..., gatekeeper=...)``) changes that:

- ``authorize`` reads the request's headers and says who it is for: the ``tenant`` calls are made for (the
  engine's tenant-scoped budgets and totals count it) and the ``tasks`` it may call (any other is a 404, as an
  unknown one); it raises ``GatewayError(401, ...)`` to refuse.
- ``admit`` wraps each call in the caller's limits (requests or tokens per minute, concurrency, a spend
  limit): entered before the call, left after it however it ended; raising ``GatewayError(429, ...)`` refuses.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

from taskmodels.gateway.asgi import Scope

__all__ = ["ANONYMOUS", "Caller", "Gatekeeper", "Operation", "no_limits"]

Operation = Literal["chat", "embeddings", "models"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request is for, as the gatekeeper decided."""

    tenant: str | None = None
    tasks: frozenset[str] | None = None  # the tasks it may call; None: every task of the registry
    name: str | None = None  # for logs: a key's name, never the key

    def may_call(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks


ANONYMOUS = Caller()


class Gatekeeper(Protocol):
    """Authentication and per-caller limits; see the module docstring."""

    async def authorize(self, scope: Scope) -> Caller: ...

    def admit(self, caller: Caller, task: str, operation: Operation) -> AbstractAsyncContextManager[object]: ...


class _NoLimits:
    """An ``async with`` that does nothing: the open gateway's limits, at the cost of two calls."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


no_limits: AbstractAsyncContextManager[object] = _NoLimits()
