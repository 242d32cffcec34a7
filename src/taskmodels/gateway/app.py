"""The gateway: the registry's tasks behind OpenAI's HTTP API, as a plain ASGI app.

    POST /v1/chat/completions      the request's model is a task; JSON or, with "stream": true, SSE chunks
    POST /v1/embeddings            text in, vectors out (float or base64)
    GET  /v1/models                the registry's tasks (those the caller's key may call)
    GET  /v1/models/{task}
    GET  /metrics, /healthz, /readyz    for operators (ops.py): no key asked

A router of our own over (method, path), and ASGI's send and receive by hand: no framework, so a request costs
what the call costs plus a few dict lookups and one JSON encode. Mount it anywhere (``app.mount("/llm",
create_app(container))``): it routes on the path below its mount point.

What it adds to the call is translation and limits at the door: the body's size, JSON and parameters
(``inbound.py``), the answer's shapes (``outbound.py``), the error envelope and status (``errors.py``), a bound
on streams in flight, a client that leaves cancelling its call, and keep-alive comments while a stream waits
for its first token. Retries, fallbacks, budgets and the rest are the service's, unchanged. Governance plugs in
as a ``gatekeeper`` (``hooks.py``; with a keys file, ``governance.py``): a key at the door, its limits around the
call, its rate-limit headers on the answer. An incoming W3C ``traceparent`` continues into the library's spans.

A stream never lies. Before its first content the service falls back invisibly, and a failure there is an
HTTP error with its status; once content went out a failure ends the stream with an ``error`` event and no
``[DONE]`` (the gateway asks the service for the ``error`` stream policy: an OpenAI client cannot take a
``restart``). A stream whose response started with a keep-alive comment and then fails before content ends
the same way, since its status went out already.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from taskmodels.errors import BudgetExceededError, TaskModelsError, UnknownTaskError
from taskmodels.gateway.asgi import (
    BodyTooLarge,
    ClientGone,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    read_body,
    route_path,
    send_bytes,
)
from taskmodels.gateway.errors import GatewayError, error_for
from taskmodels.gateway.hooks import ANONYMOUS, NO_TICKET, Caller, Gatekeeper, Ticket, no_limits
from taskmodels.gateway.inbound import ChatCall, parse_chat, parse_embeddings, parse_json
from taskmodels.gateway.metrics import CONTENT_TYPE, Answered, GatewayMetrics
from taskmodels.gateway.ops import Operations
from taskmodels.gateway.outbound import Chunks, completion_body, embeddings_body, model_object, models_body, new_id
from taskmodels.gateway.tracing import continued_trace
from taskmodels.log import library_logger
from taskmodels.resilience.state import window_start
from taskmodels.sections import GatewaySettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.service import ModelService
from taskmodels.types import CompletionResult, EmbeddingResult, StreamEvent

__all__ = ["GatewayApp"]

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies such as nginx: pass each event on at once
]
_KEEPALIVE: Final = b": keep-alive\n\n"
_MODELS_PREFIX: Final = "/v1/models/"
_log = library_logger("gateway")

Handler = Callable[["_Exchange"], Awaitable[None]]


class _Exchange:
    """One request: what the server handed the app, the caller, and whether the client is still there."""

    __slots__ = (
        "caller",
        "counted",
        "done",
        "first_content",
        "gone",
        "receive",
        "result",
        "scope",
        "send",
        "started",
        "stream",
        "task",
        "task_name",
        "ticket",
        "watcher",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = started
        self.caller: Caller = ANONYMOUS
        self.task: asyncio.Task[Any] | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.gone = False  # the client disconnected: its call was cancelled
        self.done = False  # the last byte of the answer is on its way: a disconnect now cancels nothing
        # What the metrics count, and the answer's headers from the caller's limits:
        self.counted = False  # a client's request the metrics count (operators' endpoints are not)
        self.task_name: str | None = None
        self.result: CompletionResult | EmbeddingResult | None = None
        self.stream = False
        self.first_content: float | None = None
        self.ticket: Ticket = NO_TICKET

    def watch(self) -> None:
        """From now on (the body is read) a client that disconnects cancels this request's call at once."""
        self.task = asyncio.current_task()
        self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass  # the body was read already: nothing else is expected but the disconnect
        if not self.done and self.task is not None:
            self.gone = True
            self.task.cancel()

    def unwatch(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()


class GatewayApp:
    """The ASGI app; build it with ``taskmodels.gateway.create_app(container)`` or the container's ``gateway``."""

    def __init__(
        self,
        service: ModelService,
        settings: GatewaySettings | None = None,
        *,
        shutdown: Callable[[], Awaitable[object]] | None = None,
        gatekeeper: Gatekeeper | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        operations: Operations | None = None,
        trace_context: bool = True,
    ) -> None:
        self.service = service
        self.settings = settings or GatewaySettings()
        self.gatekeeper = gatekeeper
        self.operations = operations
        self.metrics: GatewayMetrics | None = operations.metrics if operations is not None else None
        self.trace_context = trace_context  # an incoming traceparent continues into the call's spans
        self._shutdown = shutdown
        self.clock = clock
        self.wall_clock = wall_clock
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
        }
        # Operators' endpoints: no key asked (load balancers and Prometheus call them).
        self._open: dict[tuple[str, str], Handler] = {("GET", "/healthz"): self._healthz}
        if operations is not None:
            self._open[("GET", "/readyz")] = self._readyz
            if operations.metrics is not None and self.settings.metrics:
                self._open[("GET", "/metrics")] = self._metrics
        self._paths = frozenset(path for _, path in (*self._routes, *self._open))
        # Selection's did-you-mean for a task the registry does not map: the gateway never serves a client's
        # typo with the default model, whatever the registry's unknown_task policy says for code.
        self._strict = ModelSelectionFactory(service.registry, unknown_task="error")
        self._models_cache: tuple[object, bytes] | None = None
        self.in_flight = 0
        self.streams = 0
        self._idle: asyncio.Event | None = None

    # --- ASGI ------------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets: not served; returning without accepting makes the server refuse the handshake

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        exchange = _Exchange(scope, receive, send if metrics is None else _Recording(send), self.clock())
        self.in_flight += 1
        try:
            with continued_trace(scope["headers"], enabled=self.trace_context):
                await self._serve(exchange)
        except asyncio.CancelledError:
            if not exchange.gone:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # our own cancellation, for a client that left: nothing more to say
        finally:
            exchange.unwatch()
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()
            if metrics is not None and exchange.counted:
                metrics.in_flight.dec()
                self._count(metrics, exchange)

    async def _serve(self, exchange: _Exchange) -> None:
        scope = exchange.scope
        path = route_path(scope)
        key = (scope["method"], path)
        handler = self._routes.get(key)
        try:
            if handler is None:
                handler = self._open.get(key)
                if handler is not None:  # an operator's endpoint: no key asked
                    await handler(exchange)
                    return
                handler = self._route(scope["method"], path)
            if self.metrics is not None:  # a client's request: in flight, and counted when answered
                exchange.counted = True
                self.metrics.in_flight.inc()
            if self.gatekeeper is not None:
                exchange.caller = await self.gatekeeper.authorize(scope)
            await handler(exchange)
        except ClientGone:
            return  # the client left before its request was read: nobody to answer
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer in OpenAI's envelope
            await self._refuse(exchange, exc)

    def _count(self, metrics: GatewayMetrics, exchange: _Exchange) -> None:
        """One answer in the metrics (a client that left before any answer: none)."""
        status = exchange.send.status if isinstance(exchange.send, _Recording) else 0
        if not status:
            return
        registry = self.service.registry.current
        answer = Answered(
            exchange.task_name,
            exchange.caller.name,
            status,
            seconds=self.clock() - exchange.started,
            stream=exchange.stream,
        )
        result = exchange.result
        if result is not None:
            tried = {a.model_id for a in result.attempts if a.outcome not in ("skipped", "cancelled")}
            answer = Answered(
                exchange.task_name,
                exchange.caller.name,
                status,
                result.model_id,
                answer.seconds,
                exchange.stream,
                result.usage.input_tokens,
                result.usage.output_tokens,
                result.cost,
                max(0, len(tried) - 1),
            )
        metrics.answered(answer, tasks=registry.tasks_by_name, models=registry.models_by_id)
        if exchange.first_content is not None and exchange.task_name is not None:
            metrics.first_content(
                exchange.task_name, exchange.first_content - exchange.started, tasks=registry.tasks_by_name
            )

    def _route(self, method: str, path: str) -> Handler:
        if method == "GET" and path.startswith(_MODELS_PREFIX) and len(path) > len(_MODELS_PREFIX):
            return self._model
        if path in self._paths:
            allowed = ", ".join(sorted(m for m, p in self._routes if p == path)).encode()
            raise GatewayError(
                405, f"Method not allowed ({method} {path})", code="method_not_allowed", headers=[(b"allow", allowed)]
            )
        raise GatewayError(404, f"Invalid URL ({method} {path})", code="unknown_url")

    async def _refuse(self, exchange: _Exchange, exc: Exception) -> None:
        if isinstance(exc, BudgetExceededError):
            error = error_for(exc, budget_wait=self._budget_wait(exc.task))
        else:
            error = error_for(exc)
        if error.status >= 500 and not isinstance(exc, GatewayError):
            _log.warning("taskmodels.gateway.failed", error_class=type(exc).__name__, status=error.status)
        exchange.done = True
        await send_bytes(exchange.send, error.status, error.body(), [*error.headers, *exchange.ticket.headers])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.operations is not None:
                    self.operations.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.operations is not None:
                    await self.operations.stop()
                await self.drain(self.settings.shutdown_grace)
                try:
                    if self._shutdown is not None:
                        await self._shutdown()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which logs it
                    await send({"type": "lifespan.shutdown.failed", "message": f"{type(exc).__name__}: {exc}"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def drain(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for the requests in flight to finish; whether they all did."""
        if not self.in_flight:
            return True
        self._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        return not self.in_flight

    # --- the routes ----------------------------------------------------------------------------------------

    async def _body(self, exchange: _Exchange) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
        try:
            raw = await read_body(exchange.scope, exchange.receive, limit)
        except BodyTooLarge as exc:
            raise GatewayError(
                413, f"the request body is over the gateway's limit of {limit:,} bytes", code="request_too_large"
            ) from exc
        exchange.watch()
        return parse_json(raw)

    def _check_task(self, exchange: _Exchange, task: str) -> None:
        """A 404 for a task the registry does not map, with the closest one named; a 403 for one the caller may not
        call."""
        exchange.task_name = task
        if task in self.service.registry.current.tasks_by_name:
            if exchange.caller.may_call(task):
                return
            raise GatewayError(
                403, f"key {exchange.caller.name!r} may not call task {task!r}", code="permission_denied", param="model"
            )
        try:
            self._strict.select_model_for_task(task)
        except UnknownTaskError as exc:
            detail = str(exc)
        else:
            detail = f"unknown task {task!r}"
        raise GatewayError(
            404,
            f"The model `{task}` does not exist or you do not have access to it: {detail}",
            code="model_not_found",
            param="model",
        )

    async def _chat(self, exchange: _Exchange) -> None:
        call = parse_chat(await self._body(exchange))
        self._check_task(exchange, call.task)
        try:
            if call.stream:
                await self._stream(exchange, call)
                return
            limits = (
                no_limits
                if self.gatekeeper is None
                else self.gatekeeper.admit(exchange.caller, call.task, "chat", call.fields)
            )
            async with limits as ticket:
                exchange.ticket = ticket
                result = await self.service.complete_with_task_model(
                    call.task, tenant=exchange.caller.tenant, **call.fields
                )
                ticket.used(result.usage.total_tokens, result.cost)
                # Answered inside the limits' block: the caller's limits settle after the answer went out, so the
                # client does not wait for that store round trip.
                exchange.result = result
                body = completion_body(result, new_id(), int(self.wall_clock()))
                exchange.done = True
                headers = [*self._served_headers(exchange, call.task, result), *ticket.headers]
                await send_bytes(exchange.send, 200, body, headers)
        except TaskModelsError as exc:
            _name_tokens_param(exc, call)
            raise

    def _served_headers(self, exchange: _Exchange, task: str, result: CompletionResult) -> Headers:
        tried = [a for a in result.attempts if a.outcome != "skipped"]
        upstream = sum(a.latency for a in tried)
        overhead = max(0.0, self.clock() - exchange.started - upstream) * 1000.0
        headers = [
            (b"x-taskmodels-task", _header_value(task)),
            (b"x-taskmodels-model-id", _header_value(result.model_id)),
            (b"x-taskmodels-attempts", str(len(tried)).encode()),
            (b"x-taskmodels-cost", repr(float(result.cost)).encode()),
            (b"x-taskmodels-overhead-ms", f"{overhead:.3f}".encode()),
        ]
        if result.deployment_id is not None:
            headers.append((b"x-taskmodels-deployment", _header_value(result.deployment_id)))
        return headers

    async def _embeddings(self, exchange: _Exchange) -> None:
        call = parse_embeddings(await self._body(exchange))
        self._check_task(exchange, call.task)
        limits = (
            no_limits
            if self.gatekeeper is None
            else self.gatekeeper.admit(exchange.caller, call.task, "embeddings", call.texts)
        )
        async with limits as ticket:
            exchange.ticket = ticket
            result = await self.service.embed_with_task_model(call.task, call.texts, tenant=exchange.caller.tenant)
            ticket.used(result.usage.total_tokens, result.cost)
            exchange.result = result
            body = embeddings_body(result, base64_floats=call.base64)
            tried = [a for a in result.attempts if a.outcome != "skipped"]
            overhead = max(0.0, self.clock() - exchange.started - sum(a.latency for a in tried)) * 1000.0
            headers = [
                (b"x-taskmodels-task", _header_value(call.task)),
                (b"x-taskmodels-model-id", _header_value(result.model_id)),
                (b"x-taskmodels-attempts", str(len(tried)).encode()),
                (b"x-taskmodels-cost", repr(float(result.cost)).encode()),
                (b"x-taskmodels-overhead-ms", f"{overhead:.3f}".encode()),
                *ticket.headers,
            ]
            exchange.done = True
            await send_bytes(exchange.send, 200, body, headers)  # before the limits settle, as for chat

    async def _models(self, exchange: _Exchange) -> None:
        registry = self.service.registry.current
        caller = exchange.caller
        if caller.tasks is not None:
            body = models_body(t for t in registry.tasks_by_name if caller.may_call(t))
        else:
            cached = self._models_cache
            if cached is None or cached[0] is not registry:  # built once per registry snapshot
                cached = self._models_cache = (registry, models_body(registry.tasks_by_name))
            body = cached[1]
        exchange.done = True
        await send_bytes(exchange.send, 200, body)

    async def _model(self, exchange: _Exchange) -> None:
        task = route_path(exchange.scope)[len(_MODELS_PREFIX) :]
        self._check_task(exchange, task)
        exchange.done = True
        await send_bytes(exchange.send, 200, json.dumps(model_object(task), ensure_ascii=False).encode())

    # --- streams -------------------------------------------------------------------------------------------

    async def _stream(self, exchange: _Exchange, call: ChatCall) -> None:
        if self.streams >= self.settings.max_streams:
            raise GatewayError(
                503,
                f"the gateway holds its limit of {self.settings.max_streams} streams: try again shortly",
                type_="server_error",
                code="overloaded",
                headers=[(b"retry-after", b"1")],
            )
        self.streams += 1
        exchange.stream = True
        if self.metrics is not None:
            self.metrics.streams.inc()
        try:
            limits = (
                no_limits
                if self.gatekeeper is None
                else self.gatekeeper.admit(exchange.caller, call.task, "chat", call.fields)
            )
            async with limits as ticket:
                exchange.ticket = ticket
                events = self.service.stream_with_task_model(
                    call.task, tenant=exchange.caller.tenant, stream_policy="error", **call.fields
                )
                try:
                    await _Relay(self, exchange, call).run(events)
                finally:
                    await events.aclose()
        finally:
            self.streams -= 1
            if self.metrics is not None:
                self.metrics.streams.dec()

    # --- operators' endpoints ------------------------------------------------------------------------------

    async def _healthz(self, exchange: _Exchange) -> None:
        exchange.done = True
        await send_bytes(exchange.send, 200, b'{"status":"ok"}')

    async def _readyz(self, exchange: _Exchange) -> None:
        assert self.operations is not None
        status, report = await self.operations.readiness()
        exchange.done = True
        await send_bytes(exchange.send, status, json.dumps(report, ensure_ascii=False).encode())

    async def _metrics(self, exchange: _Exchange) -> None:
        assert self.operations is not None
        body = await self.operations.metrics_text()
        exchange.done = True
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())]
        await exchange.send({"type": "http.response.start", "status": 200, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body, "more_body": False})

    def _budget_wait(self, task: str) -> float | None:
        """Seconds until the task's budget window ends (windows are aligned to the epoch: every replica agrees)."""
        mapping = self.service.registry.current.tasks_by_name.get(task)
        budget = mapping.budget if mapping is not None else None
        if budget is None:
            return None
        now = self.wall_clock()
        return window_start(now, budget.window_seconds) + budget.window_seconds - now


class _Relay:
    """One stream's events as SSE: headers at the first event (or the first keep-alive), then a chunk per event."""

    __slots__ = ("_app", "_call", "_exchange", "_lock", "_started")

    def __init__(self, app: GatewayApp, exchange: _Exchange, call: ChatCall) -> None:
        self._app = app
        self._exchange = exchange
        self._call = call
        self._started = False
        self._lock = asyncio.Lock()  # the keep-alive ticker and the first event take turns at send

    async def _start(self, model_id: str | None) -> None:
        headers = [*_SSE_HEADERS, (b"x-taskmodels-task", _header_value(self._call.task))]
        if model_id is not None:
            headers.append((b"x-taskmodels-model-id", _header_value(model_id)))
        headers.extend(self._exchange.ticket.headers)
        self._started = True
        await self._exchange.send({"type": "http.response.start", "status": 200, "headers": headers})

    async def _tick(self) -> None:
        interval = self._app.settings.keepalive_interval
        send = self._exchange.send
        while True:
            await asyncio.sleep(interval)
            async with self._lock:
                if not self._started:
                    await self._start(None)
                await send({"type": "http.response.body", "body": _KEEPALIVE, "more_body": True})

    async def _first(self, events: Any) -> StreamEvent:
        ticker = asyncio.get_running_loop().create_task(self._tick())
        try:
            event: StreamEvent = await anext(events)
        finally:
            async with self._lock:  # a keep-alive being written finishes before the ticker stops
                ticker.cancel()
        return event

    async def run(self, events: Any) -> None:  # noqa: C901 - one branch per kind of event and per way a stream ends
        try:
            event = await self._first(events)
        except Exception as exc:
            if not self._started:
                raise  # nothing went out yet: an HTTP error with its status
            await self._fail(exc)  # a keep-alive went out, and with it the status
            return
        if not self._started:
            await self._start(event.model_id)
        wall = self._app.wall_clock
        chunks = Chunks(
            new_id(), int(wall()), event.model_name or self._call.task, include_usage=self._call.include_usage
        )
        send = self._exchange.send
        role = chunks.first()  # goes out with the first event
        try:
            while True:
                kind = event.type
                if kind == "text":
                    out = chunks.text(event.text)
                elif kind == "tool_call" and event.tool_call is not None:
                    out = chunks.tool_call(event.tool_call)
                elif kind == "done":
                    usage = event.result.usage if event.result is not None else event.usage
                    if event.result is not None:
                        self._exchange.result = event.result
                        self._exchange.ticket.used(event.result.usage.total_tokens, event.result.cost)
                    self._exchange.done = True
                    body = role + chunks.end(event.finish_reason, usage)
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
                else:  # a restart: never asked for (stream policy "error"), and it would lie to an OpenAI client
                    await self._fail(GatewayError(502, "the answer broke off", type_="server_error"))
                    return
                if role:
                    out, role = role + out, b""
                    self._exchange.ticket.content_sent()  # the client has content: leaving now is no refund
                    self._exchange.first_content = self._app.clock()
                await send({"type": "http.response.body", "body": out, "more_body": True})
                event = await anext(events)
        except StopAsyncIteration:
            await self._fail(GatewayError(502, "the stream ended without its last event", type_="server_error"))
        except Exception as exc:  # noqa: BLE001 - content went out: the stream ends in an error event, never [DONE]
            await self._fail(exc)

    async def _fail(self, exc: BaseException) -> None:
        error = error_for(exc)
        self._exchange.done = True
        body = b"data: " + json.dumps(error.envelope(), ensure_ascii=False).encode() + b"\n\n"
        await self._exchange.send({"type": "http.response.body", "body": body, "more_body": False})


def _name_tokens_param(exc: TaskModelsError, call: ChatCall) -> None:
    """Name the output limit as the client spelled it (``max_completion_tokens``), not as the library does."""
    if call.tokens_param != "max_tokens" and getattr(exc, "param", None) == "max_tokens":
        exc.param = call.tokens_param  # type: ignore[attr-defined]  # an InvalidRequestError's, checked above


def _header_value(text: str) -> bytes:
    """A header value from a name: latin-1 text without control characters (anything else percent-escaped)."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return "".join(c if c.isascii() and c.isprintable() else f"%{ord(c):02X}" for c in text).encode("ascii", "replace")


class _Recording:
    """``send``, remembering the status of the response it started (for the metrics)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
