"""The composition root: a dependency-injector container that wires, and does nothing else.

    settings -> http_client -> provider_factory -> registry -> selector -> model_service
                state_store ---------------------------------------------^
                tracer_provider, meter_provider -> tracer ---------------^

Each node's scope comes from ``settings.scopes`` (``singleton``, ``thread_local``,
``context_local`` or ``factory``). Any node can be overridden::

    container = Container()
    with container.provider_factory.override(my_factory):
        ...
    service = container.model_service()     # no await needed
    ...
    await container.aclose()                # closes the HTTP clients and the state store

An application embeds it as a sub-container and passes its own settings::

    class App(containers.DeclarativeContainer):
        models = providers.Container(Container, settings=providers.Object(Settings(...)))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx2
from dependency_injector import containers, providers

from taskmodels.engine.observe import CallTracer
from taskmodels.http_client import ResourcePool
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore, StateStore
from taskmodels.sections import Scope, StateSettings, TelemetrySettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.service import ModelService
from taskmodels.settings import Settings, load_settings

__all__ = ["Container", "build_call_tracer", "build_state_store"]

_T = TypeVar("_T")


def _scoped(
    scopes_from: providers.Provider[Settings], node: str, factory: Callable[..., _T], *args: Any, **kwargs: Any
) -> providers.Selector[_T]:
    """A node whose scope is read from ``settings.scopes.<node>`` when it is asked for.

    Typed by what ``factory`` returns, so ``Container().model_service()`` is a ``ModelService``
    to a type checker, not ``Any``.
    """
    node_provider: providers.Selector[_T] = providers.Selector(
        providers.Callable(_scope_of, scopes_from, node),
        singleton=providers.Singleton(factory, *args, **kwargs),
        thread_local=providers.ThreadLocalSingleton(factory, *args, **kwargs),
        context_local=providers.ContextLocalSingleton(factory, *args, **kwargs),
        factory=providers.Factory(factory, *args, **kwargs),
    )
    return node_provider


def _scope_of(settings: Settings, node: str) -> Scope:
    scope: Scope = getattr(settings.scopes, node)
    return scope


def _open_http_client(pool: ResourcePool, settings: Settings) -> httpx2.AsyncClient:
    return pool.open_http_client(settings.http)


def build_state_store(settings: StateSettings, pool: ResourcePool) -> StateStore:
    """The state store ``settings.backend`` names; Redis is imported only when chosen."""
    if settings.backend == "redis":
        from taskmodels.resilience.redis import RedisStateStore

        store: StateStore = RedisStateStore.from_settings(settings)
    else:
        store = MemoryStateStore()
    pool.add(store.aclose)
    return store


def build_call_tracer(settings: TelemetrySettings, tracer_provider: Any, meter_provider: Any) -> CallTracer | None:
    """OpenTelemetry's tracer for the service when ``settings.enabled`` and ``opentelemetry-api`` is installed;
    else ``None``, and the call path does no telemetry work at all. ``None`` providers mean the global ones."""
    if not settings.enabled:
        return None
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401 - only whether the API is there
    except ImportError:
        return None
    from taskmodels.telemetry import OpenTelemetryTracer

    return OpenTelemetryTracer(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_content=True if settings.capture_content else None,  # None: the conventions' variable decides
    )


def _provider_names(factory: ModelProviderFactory) -> frozenset[str]:
    return factory.provider_names()


async def _shutdown(container: Any) -> None:
    pool: ResourcePool = container.resources()
    try:
        await pool.aclose()
    finally:
        container.reset_singletons()


class Container(containers.DeclarativeContainer):
    """taskmodels' nodes. Override any of them; scopes come from ``settings.scopes``."""

    __self__ = providers.Self()

    settings: providers.Singleton[Settings] = providers.Singleton(load_settings)

    resources: providers.Singleton[ResourcePool] = providers.Singleton(ResourcePool)

    http_client = _scoped(settings, "http_client", _open_http_client, resources, settings)

    state_store = _scoped(settings, "state_store", build_state_store, settings.provided.state, resources)

    provider_factory = _scoped(
        settings, "provider_factory", ModelProviderFactory, settings=settings, http_client=http_client
    )

    registry = _scoped(
        settings,
        "registry",
        ModelRegistryService.from_settings,
        settings,
        provider_names=providers.Callable(_provider_names, provider_factory),
    )

    # The application's OpenTelemetry providers; None: the global ones (set by the SDK's set_tracer_provider ...).
    tracer_provider: providers.Object[Any] = providers.Object(None)
    meter_provider: providers.Object[Any] = providers.Object(None)

    tracer: providers.Singleton[CallTracer | None] = providers.Singleton(
        build_call_tracer, settings.provided.telemetry, tracer_provider, meter_provider
    )

    selector = _scoped(
        settings, "selector", ModelSelectionFactory, registry, unknown_task=settings.provided.selection.unknown_task
    )

    model_service = _scoped(
        settings,
        "model_service",
        ModelService,
        registry=registry,
        selector=selector,
        provider_factory=provider_factory,
        state_store=state_store,
        resilience=settings.provided.resilience,
        tracer=tracer,
    )

    aclose = providers.Coroutine(_shutdown, __self__)
