"""Test doubles for applications that use taskmodels, and for taskmodels' own tests.

``FakeProvider`` answers from a script instead of a network. Script each model's
calls on a ``FakeBackend``; when a model's script runs out it gets the backend's
default (an answer naming the model)::

    backend = FakeBackend()
    backend.script("primary", rate_limited(retry_after=0.1), server_error(503))
    backend.script("fallback", reply("hello", usage=Usage(12, 3)))

    factory = ModelProviderFactory(discover_entry_points=False)
    factory.register_provider_implementation("openai", backend.provider_class())
    ...
    assert [c.model_id for c in backend.calls] == ["primary", "primary", "fallback"]

Or take a whole container with fakes behind every provider name of a registry,
and any node overridden (overrides are reset when the block ends)::

    @pytest.fixture
    def container():
        with overridden_container(REGISTRY, backend=FakeBackend()) as container:
            yield container

    async def test_summary(container):
        service = container.model_service()
        result = await service.complete_with_task_model("summarize", prompt="...")

Steps: ``reply``, ``rate_limited``, ``server_error``, ``connection_error``,
``timeout``, ``hang`` (waits forever, or until the first-token limit when
streaming), ``stall`` (a stream stops after N chunks until the stall limit),
``cut`` (a stream ends after N chunks without its terminal event),
``malformed`` (a stream event that cannot be read), ``context_length``,
``content_filtered``, ``auth_error``, ``bad_request``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx2
from pydantic import SecretStr

from taskmodels.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilteredError,
    ContextLengthExceededError,
    FirstTokenTimeoutError,
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    StreamStalledError,
)
from taskmodels.redaction import remember, scrub
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import (
    CompletionRequest,
    CompletionResult,
    EmbeddingResult,
    FinishReason,
    StreamEvent,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    from taskmodels.containers import Container
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.registry.service import ModelRegistryService
    from taskmodels.resilience.state import StateStore
    from taskmodels.sections import ResilienceSettings
    from taskmodels.service import ModelService
    from taskmodels.settings import Settings

__all__ = [
    "Fail",
    "FakeBackend",
    "FakeCall",
    "FakeProvider",
    "Hang",
    "ManualClock",
    "Reply",
    "Step",
    "auth_error",
    "bad_request",
    "connection_error",
    "content_filtered",
    "context_length",
    "cut",
    "fake_model",
    "fake_registry",
    "hang",
    "make_test_container",
    "make_test_service",
    "malformed",
    "offline_client",
    "overridden_container",
    "rate_limited",
    "reply",
    "server_error",
    "stall",
    "timeout",
]


# --- steps -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer. Streamed as ``chunks`` text events (words by default), then ``done``."""

    text: str = "ok"
    usage: Usage = field(default_factory=lambda: Usage(10, 5))
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    chunks: Sequence[str] | None = None
    delay: float = 0.0  # seconds before answering (real time)
    model_name: str | None = None  # the model the answer names (a dated version, say); default: the registry's

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        words = self.text.split(" ")
        return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)] if self.text else []


@dataclass(frozen=True, slots=True)
class Fail:
    """Raise ``error``; when streaming, after sending ``after_chunks`` chunks of ``partial``."""

    error: type[ProviderError]
    message: str = "scripted failure"
    status_code: int | None = None
    retry_after: float | None = None
    provider_code: str | None = None
    after_chunks: int = 0
    partial: str = "partial answer that will be cut"


@dataclass(frozen=True, slots=True)
class Hang:
    """Wait forever (after ``after_chunks`` chunks when streaming).

    Streaming, it honours the limits a real provider gets: no first chunk within
    ``first_token_timeout`` raises ``FirstTokenTimeoutError``, a pause longer
    than ``stall_timeout`` raises ``StreamStalledError``. ``complete`` waits
    until the service's attempt timeout or deadline cancels it.
    """

    after_chunks: int = 0
    partial: str = "partial answer that stalls"


Step = Reply | Fail | Hang


def reply(text: str = "ok", *, usage: Usage | None = None, **kw: Any) -> Reply:
    return Reply(text, usage if usage is not None else Usage(10, 5), **kw)


def rate_limited(retry_after: float | None = None, message: str = "rate limited") -> Fail:
    return Fail(RateLimitError, message, 429, retry_after, "rate_limit_exceeded")


def server_error(status: int = 500, message: str = "server error", retry_after: float | None = None) -> Fail:
    return Fail(ProviderUnavailableError, message, status, retry_after)


def connection_error(message: str = "connection reset") -> Fail:
    return Fail(ProviderConnectionError, message)


def timeout(message: str = "timed out") -> Fail:
    return Fail(ProviderTimeoutError, message)


def hang(after_chunks: int = 0) -> Hang:
    return Hang(after_chunks)


def stall(after_chunks: int = 1) -> Hang:
    return Hang(after_chunks)


def cut(after_chunks: int = 2) -> Fail:
    return Fail(IncompleteStreamError, "stream ended before its terminal event", after_chunks=after_chunks)


def malformed(after_chunks: int = 0) -> Fail:
    return Fail(InvalidResponseError, "a stream event we could not read", after_chunks=after_chunks)


def context_length(message: str = "maximum context length exceeded") -> Fail:
    return Fail(ContextLengthExceededError, message, 400, None, "context_length_exceeded")


def content_filtered(reason: str = "content policy violation") -> Fail:
    return Fail(ContentFilteredError, reason, 400, None, "content_filter")


def auth_error(status: int = 401, message: str = "invalid api key") -> Fail:
    return Fail(AuthenticationError, message, status, None, "invalid_api_key")


def bad_request(message: str = "invalid request") -> Fail:
    return Fail(BadRequestError, message, 400, None, "invalid_request_error")


# --- the backend: scripts and records ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One call a fake provider saw. ``model_id`` is ``model/deployment`` for a call to one of a model's
    deployments."""

    model_id: str
    kind: Literal["complete", "stream", "embed"]
    request: CompletionRequest | None
    texts: tuple[str, ...] = ()
    first_token_timeout: float | None = None
    stall_timeout: float | None = None


class FakeBackend:
    """Scripts per model id, shared by every ``FakeProvider`` bound to it, and the calls they saw."""

    def __init__(self, default: Step | None = None) -> None:
        self.default = default
        self.calls: list[FakeCall] = []
        self._scripts: dict[str, deque[Step]] = {}
        self._always: dict[str, Step] = {}

    def script(self, model_id: str, *steps: Step) -> FakeBackend:
        """Queue ``steps`` for the model's next calls, one step per call."""
        self._scripts.setdefault(model_id, deque()).extend(steps)
        return self

    def always(self, model_id: str, step: Step) -> FakeBackend:
        """Answer every call of the model with ``step`` once its queued steps are spent."""
        self._always[model_id] = step
        return self

    def next_step(self, model: ModelConfig) -> Step:
        """The step for a call to ``model``; a deployment's own script (``"model/deployment"``) comes first."""
        ids = (model.id,) if model.deployment_id is None else (f"{model.id}/{model.deployment_id}", model.id)
        for ident in ids:
            queue = self._scripts.get(ident)
            if queue:
                return queue.popleft()
        for ident in ids:
            step = self._always.get(ident)
            if step is not None:
                return step
        return self.default if self.default is not None else Reply(f"answer from {ids[0]}")

    def calls_for(self, model_id: str) -> list[FakeCall]:
        """Calls to ``model_id``; a model's id covers its deployments, ``"model/deployment"`` one of them."""
        return [c for c in self.calls if c.model_id == model_id or c.model_id.startswith(model_id + "/")]

    def models_called(self) -> list[str]:
        return [c.model_id for c in self.calls]

    def provider_class(self, name: str = "fake") -> type[FakeProvider]:
        """A ``FakeProvider`` subclass bound to this backend, for ``register_provider_implementation``."""
        return type(f"FakeProvider_{name}", (FakeProvider,), {"name": name, "bound_backend": self})


def _no_network(request: httpx2.Request) -> httpx2.Response:  # noqa: ARG001 - a MockTransport handler
    raise httpx2.ConnectError("FakeProvider never uses the network")


def offline_client() -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` that refuses every request: fakes need none."""
    return httpx2.AsyncClient(transport=httpx2.MockTransport(_no_network))


class FakeProvider:
    """A ``ModelPort`` that plays its backend's script instead of calling a server.

    It implements the port directly: there is no request to build and no wire to parse. The
    constructor takes what ``ModelProviderFactory`` passes to every provider class, and ignores
    all of it but the model.
    """

    name: ClassVar[str] = "fake"
    bound_backend: ClassVar[FakeBackend | None] = None

    def __init__(
        self,
        model: ModelConfig,
        client: httpx2.AsyncClient | None = None,
        *,
        backend: FakeBackend | None = None,
        api_key: SecretStr | None = None,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.backend = backend or type(self).bound_backend or FakeBackend()
        if api_key is not None:
            # As a real provider does: a key it was given is redacted from every error it raises.
            remember(api_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model.id!r})"

    @property
    def _called(self) -> str:
        deployment = self.model.deployment_id
        return self.model.id if deployment is None else f"{self.model.id}/{deployment}"

    def _error(self, cls: type[ProviderError], message: str) -> ProviderError:
        return cls(scrub(message), provider=self.name, model_id=self.model.id)

    def _raise(self, step: Fail) -> ProviderError:
        message = scrub(step.message)
        return step.error(
            message,
            provider=self.name,
            model_id=self.model.id,
            status_code=step.status_code,
            provider_message=message,
            provider_code=step.provider_code and scrub(step.provider_code),
            retry_after=step.retry_after,
        )

    def _result(self, step: Reply) -> CompletionResult:
        return CompletionResult(
            text=step.text,
            model_id=self.model.id,
            provider=self.name,
            model_name=step.model_name or self.model.model_name,
            usage=step.usage,
            finish_reason=step.finish_reason,
            tool_calls=step.tool_calls,
        )

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        self.backend.calls.append(FakeCall(self._called, "complete", request))
        step = self.backend.next_step(self.model)
        if isinstance(step, Hang):
            await asyncio.Event().wait()
        if isinstance(step, Fail):
            raise self._raise(step)
        assert isinstance(step, Reply)
        if step.delay:
            await asyncio.sleep(step.delay)
        return self._result(step)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        self.backend.calls.append(FakeCall(self._called, "embed", None, tuple(texts)))
        step = self.backend.next_step(self.model)
        if isinstance(step, Hang):
            await asyncio.Event().wait()
        if isinstance(step, Fail):
            raise self._raise(step)
        assert isinstance(step, Reply)
        return EmbeddingResult(
            vectors=[[float(len(t)), 1.0] for t in texts],
            model_id=self.model.id,
            provider=self.name,
            model_name=step.model_name or self.model.model_name,
            usage=Usage(sum(len(t) for t in texts) // 4 + 1, 0),
        )

    async def stream(
        self,
        request: CompletionRequest,
        *,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        self.backend.calls.append(FakeCall(self._called, "stream", request, (), first_token_timeout, stall_timeout))
        step = self.backend.next_step(self.model)
        if isinstance(step, Reply):
            if step.delay:
                await asyncio.sleep(step.delay)
            for piece in step.pieces():
                yield StreamEvent(type="text", text=piece)
            for call in step.tool_calls:
                yield StreamEvent(type="tool_call", tool_call=call)
            yield StreamEvent(
                type="done",
                finish_reason=step.finish_reason,
                usage=step.usage,
                model_name=step.model_name or self.model.model_name,
            )
            return
        pieces = Reply(step.partial).pieces()
        for piece in pieces[: step.after_chunks]:
            yield StreamEvent(type="text", text=piece)
        if isinstance(step, Fail):
            raise self._raise(step)
        limit = first_token_timeout if step.after_chunks == 0 else stall_timeout
        try:
            async with asyncio.timeout(limit):
                await asyncio.Event().wait()
        except TimeoutError:
            if step.after_chunks == 0:
                raise self._error(FirstTokenTimeoutError, f"{self.name} sent no first token in time") from None
            raise self._error(StreamStalledError, f"{self.name} stream stalled") from None


_UNUSED_CLIENT = httpx2.AsyncClient(transport=httpx2.MockTransport(_no_network))


# --- registries -------------------------------------------------------------------------


def fake_model(model_id: str, *, context: int = 8000, price: float = 0.001, **keys: Any) -> dict[str, Any]:
    """A registry model entry (file format) served by the ``fake`` provider; ``keys`` add or replace keys."""
    return {
        "id": model_id,
        "provider": "fake",
        "modelName": f"{model_id}-name",
        "maxTokens": 100,
        "temperature": 0.2,
        "contextWindow": context,
        "costPer1kTokens": price,
        **keys,
    }


def fake_registry(*models: dict[str, Any], task: str = "t", **mapping: Any) -> dict[str, Any]:
    """A registry document with one task whose chain is ``models`` in order (the last is the default);
    ``mapping`` adds task-mapping keys such as ``streamPolicy`` or ``budget``."""
    ids = [m["id"] for m in models]
    entry = {"taskName": task, "primaryModelId": ids[0], "fallbackModelIds": ids[1:], **mapping}
    return {"models": list(models), "taskMappings": [entry], "defaultModelId": ids[-1]}


# --- clocks and services ----------------------------------------------------------------


class ManualClock:
    """A clock that moves only when told to, and a ``sleep`` that moves it instead of waiting.

    Pass ``clock=clock, sleep=clock.sleep`` (and ``wall_clock=clock``) to ``ModelService``.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_test_service(
    registry: Mapping[str, Any] | ModelRegistryService,
    *,
    backend: FakeBackend | None = None,
    provider_factory: ModelProviderFactory | None = None,
    state_store: StateStore | None = None,
    resilience: ResilienceSettings | None = None,
    settings: Settings | None = None,
    **nodes: Any,
) -> ModelService:
    """A ``ModelService`` built by the container, as an application's is, on ``registry``: a dict in the
    file's format, every provider name it uses served by ``backend``'s fakes; or a ``ModelRegistryService`` with
    the ``provider_factory`` that serves it (real providers, say). Its state is in memory unless ``state_store``
    is given. ``nodes`` override container nodes by name: ``clock``, ``wall_clock``, ``sleep``, ``rand``,
    ``tracer``, ``breaker`` ... (see ``containers.Container``)."""
    if resilience is not None:
        from taskmodels.settings import Settings

        settings = (settings or Settings()).model_copy(update={"resilience": resilience})
    from taskmodels.resilience.state import MemoryStateStore

    container = make_test_container(
        registry,
        backend=backend,
        settings=settings,
        provider_factory=provider_factory,
        # State in memory unless given: nothing for the caller to close, whatever TASKMODELS_STATE__* says.
        overrides={"state_store": state_store or MemoryStateStore(), **nodes},
    )
    return container.model_service()


def _used_providers(registry: ModelRegistryService) -> set[str]:
    """Every provider a loaded registry's models and their deployments name."""
    names = set()
    for model in registry.current.models_by_id.values():
        names.add(model.provider)
        names.update(d.provider for d in model.deployments if d.provider)
    return names


def _provider_names(registry: Mapping[str, Any]) -> set[str]:
    """Every provider the registry names, its models' deployments' included."""
    models = [m for m in registry.get("models", ()) if isinstance(m, Mapping)]
    names = {str(m.get("provider")) for m in models}
    for model in models:
        deployments = model.get("deployments")
        if isinstance(deployments, list):
            names.update(str(d["provider"]) for d in deployments if isinstance(d, Mapping) and "provider" in d)
    return names | {"fake"}


# --- containers ----------------------------------------------------------------------------


def make_test_container(
    registry: Mapping[str, Any] | ModelRegistryService,
    *,
    backend: FakeBackend | None = None,
    settings: Settings | None = None,
    overrides: Mapping[str, Any] | None = None,
    provider_factory: ModelProviderFactory | None = None,
) -> Container:
    """A ``Container`` whose registry is ``registry`` (a dict in the file's format, or a ``ModelRegistryService``)
    and whose every provider name is served by ``backend``'s ``FakeProvider`` (or by ``provider_factory``, when
    given). ``overrides`` maps node names (``state_store``, ``clock``, ``breaker``, ``model_service`` ...) to
    objects or dependency-injector providers. Call ``container.reset_override()`` when done, or use
    ``overridden_container``."""
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.registry.service import ModelRegistryService
    from taskmodels.settings import Settings

    settings = settings or Settings()
    if provider_factory is None:
        backend = backend or FakeBackend()
        provider_factory = ModelProviderFactory(settings, http_client=_UNUSED_CLIENT, discover_entry_points=False)
        names = _provider_names(registry) if isinstance(registry, Mapping) else _used_providers(registry)
        for name in names | {"fake"}:
            provider_factory.register_provider_implementation(name, backend.provider_class(name))
    if isinstance(registry, ModelRegistryService):
        service = registry
    else:
        service = ModelRegistryService.from_dict(registry, provider_names=provider_factory.provider_names())

    container = Container()
    container.settings.override(providers.Object(settings))
    container.provider_factory.override(providers.Object(provider_factory))
    container.registry.override(providers.Object(service))
    for node, value in (overrides or {}).items():
        target = getattr(container, node, None)
        if not isinstance(target, providers.Provider):
            raise ValueError(f"the container has no node named {node!r}")  # noqa: TRY004 - the test kit reports a wrong node name as a ValueError
        target.override(value if isinstance(value, providers.Provider) else providers.Object(value))
    return container


@contextmanager
def overridden_container(
    registry: Mapping[str, Any],
    *,
    backend: FakeBackend | None = None,
    settings: Settings | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Iterator[Container]:
    """``make_test_container`` for one block; every override and singleton is reset when it ends."""
    container = make_test_container(registry, backend=backend, settings=settings, overrides=overrides)
    try:
        yield container
    finally:
        container.reset_override()
        container.reset_singletons()
