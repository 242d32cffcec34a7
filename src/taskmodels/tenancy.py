"""The tenant a call is made for: a call's ``tenant=`` argument, or the one the application set for the
request it is serving.

A web app sets it once per request, in a middleware or a dependency, and every call made
while handling that request — however deep, in any task it spawns — counts against that
tenant's budgets (a task's ``budget`` with ``"scope": "tenant"``) and appears under
``tenants`` in ``ModelService.totals()``::

    with taskmodels.tenant_scope(request.headers["x-tenant"]):
        return await handle(request)

It is a ``ContextVar``: concurrent requests on one event loop each see their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["CURRENT_TENANT", "current_tenant", "tenant_scope"]

CURRENT_TENANT: ContextVar[str | None] = ContextVar("taskmodels_tenant", default=None)


def current_tenant() -> str | None:
    """The tenant set by the innermost ``tenant_scope``, or ``None``."""
    return CURRENT_TENANT.get()


@contextmanager
def tenant_scope(tenant: str) -> Iterator[str]:
    """Calls made inside the block are made for ``tenant`` (a call's own ``tenant=`` still wins)."""
    if not isinstance(tenant, str) or not tenant:
        raise ValueError(f"a tenant must be a non-empty string, not {tenant!r}")
    token = CURRENT_TENANT.set(tenant)
    try:
        yield tenant
    finally:
        CURRENT_TENANT.reset(token)
