"""``SyncModelService``: the blocking facade over ``ModelService``, for applications without an event loop.

Every call runs on one dedicated background event-loop thread, never in a nested
loop, so the HTTP client and the state store (which belong to the loop that first
used them) always see the same loop. Calling it from a thread that already runs an
event loop raises ``RuntimeError``: blocking there would freeze that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterator, Sequence
from typing import Any, Protocol, TypeVar, overload

from taskmodels.tenancy import current_tenant
from taskmodels.types import CompletionRequest, CompletionResult, EmbeddingResult, StreamEvent


class _AsyncService(Protocol):
    """What the facade uses of ``ModelService`` (named here rather than imported: the service hands out its
    facade, so the facade does not import the service)."""

    def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> Coroutine[Any, Any, CompletionResult]: ...

    def embed_with_task_model(
        self, task: str, texts: Sequence[str], *, tenant: str | None = None
    ) -> Coroutine[Any, Any, EmbeddingResult]: ...

    def stream_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> AsyncGenerator[StreamEvent, None]: ...

    def health(self) -> Coroutine[Any, Any, dict[str, Any]]: ...

    def totals(self) -> dict[str, dict[str, dict[str, int | float]]]: ...


__all__ = ["SyncModelService"]

_T = TypeVar("_T")
_O = TypeVar("_O")  # a call's output_type


class SyncModelService:
    """A blocking facade: each call runs on one dedicated background event-loop thread.

    Never a nested loop: the service's coroutines run on the facade's own loop,
    so the HTTP client and the state store should be used through this facade
    only (an ``httpx2.AsyncClient`` belongs to the loop that first used it).
    Calling from a thread that already runs an event loop raises ``RuntimeError``:
    blocking there would freeze that loop; use the async API instead.
    """

    def __init__(self, service: _AsyncService) -> None:
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "the taskmodels sync facade was called from inside a running event loop; "
                "await the ModelService methods instead"
            )
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="taskmodels-sync", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            loop = self._ensure_loop()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    # The background loop runs in another thread, which does not see this thread's tenant_scope: it is read here.

    @overload
    def complete_with_task_model(
        self,
        task: str,
        request: CompletionRequest | str | None = None,
        /,
        *,
        output_type: type[_O],
        tenant: str | None = None,
        **fields: Any,
    ) -> CompletionResult[_O]: ...

    @overload
    def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> CompletionResult: ...

    def complete_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> CompletionResult:
        # Checked by the service, as every call is (a refusal is traced there too).
        return self._run(
            self.service.complete_with_task_model(task, request, tenant=tenant or current_tenant(), **fields)
        )

    def embed_with_task_model(self, task: str, texts: Sequence[str], *, tenant: str | None = None) -> EmbeddingResult:
        return self._run(self.service.embed_with_task_model(task, texts, tenant=tenant or current_tenant()))

    def stream_with_task_model(
        self, task: str, request: CompletionRequest | str | None = None, /, *, tenant: str | None = None, **fields: Any
    ) -> Iterator[StreamEvent]:
        """The stream's events, one blocking step at a time on the background loop."""
        stream = self.service.stream_with_task_model(task, request, tenant=tenant or current_tenant(), **fields)
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            if self._loop is not None and not self._loop.is_closed():
                asyncio.run_coroutine_threadsafe(stream.aclose(), self._loop).result()

    def health(self) -> dict[str, Any]:
        return self._run(self.service.health())

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run any coroutine on the facade's loop, where the service's HTTP client lives.

        A synchronous application shuts down with ``sync.run(container.aclose())``
        and then ``sync.close()``.
        """
        return self._run(coro)

    def totals(self) -> dict[str, dict[str, dict[str, int | float]]]:
        return self.service.totals()

    def close(self) -> None:
        """Stop the background loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()


async def _next(stream: AsyncGenerator[StreamEvent, None]) -> StreamEvent:
    return await anext(stream)
