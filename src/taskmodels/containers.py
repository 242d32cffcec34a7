"""The composition root: a dependency-injector container that wires, and does nothing else.

    settings -> http_client -> provider_factory -> registry -> selector ----------------> model_service -> gateway
                state_store -> breaker -> gate -------------------------> engine ----------^  gatekeeper -^
                clock, wall_clock, sleep, rand --> observation, outcomes -^   planner -----^  operations -^
                tracer_provider, meter_provider -> tracer -^
                keys (the gateway's keys file), governor (per-key limits on the state store), gateway_metrics

Every part of the engine is a node, so a test or an application overrides any of them, the clock and the
random source most often::

    container = Container()
    with container.clock.override(providers.Object(my_clock)):
        service = container.model_service()     # no await needed
    ...
    await container.aclose()                # closes the HTTP clients and the state store

Each node's scope comes from ``settings.scopes`` (``singleton``, ``thread_local``, ``context_local`` or
``factory``). The two that hold open resources, ``http_client`` and ``state_store``, take ``singleton`` or
``thread_local`` only: a connection pool or a store connection opened per call (or per asyncio context) would be
opened without end and gain nothing, so those scopes are refused when the settings load (a ``SettingsError``
naming the node and what it takes). ``settings`` and ``resources`` are the container's own and always one.

An application embeds it as a sub-container and passes its own settings::

    class App(containers.DeclarativeContainer):
        models = providers.Container(Container, settings=providers.Object(Settings(...)))
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx2
from dependency_injector import containers, providers

from taskmodels.engine.admission import Gate
from taskmodels.engine.loop import Engine
from taskmodels.engine.observe import CallTracer, Observation
from taskmodels.engine.outcome import Outcomes
from taskmodels.engine.plan import Planner
from taskmodels.http_client import ResourcePool
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.breaker import CircuitBreaker
from taskmodels.resilience.state import MemoryStateStore, StateStore
from taskmodels.sections import GatewaySettings, Scope, ScopeSettings, StateSettings, TelemetrySettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.service import ModelService
from taskmodels.settings import Settings, load_settings

__all__ = [
    "Container",
    "build_call_tracer",
    "build_gatekeeper",
    "build_gateway",
    "build_gateway_metrics",
    "build_keys",
    "build_operations",
    "build_state_store",
]

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
    return _resolved_scopes(settings.scopes)[node]


HOLDS: dict[str, tuple[str, ...]] = {
    # What each node's instance keeps a reference to: an unset scope follows these (ScopeSettings).
    "http_client": (),
    "state_store": (),
    "provider_factory": ("http_client",),
    "registry": (),
    "selector": ("registry",),
    "tracer": (),
    "breaker": ("state_store",),
    "gate": ("state_store", "breaker"),
    "observation": ("tracer",),
    "outcomes": ("gate", "observation"),
    "engine": ("gate", "provider_factory", "observation", "outcomes"),
    "planner": (),
    "model_service": ("registry", "selector", "engine", "planner"),
}
_NARROWER: dict[Scope, int] = {"singleton": 0, "thread_local": 1, "context_local": 2}


@functools.lru_cache(maxsize=32)
def _resolved_scopes(scopes: ScopeSettings) -> dict[str, Scope]:
    """Every node's scope: as set, or the narrowest thread- or context-bound scope of what it holds (a factory
    dependency does not narrow its holder: the holder simply keeps the one it was given)."""
    resolved: dict[str, Scope] = {}
    for node, held in HOLDS.items():  # in dependency order: what a node holds is resolved before it
        chosen: Scope | None = getattr(scopes, node)
        if chosen is None:
            chosen = "singleton"
            for scope in (resolved[h] for h in held):
                if _NARROWER.get(scope, -1) > _NARROWER[chosen]:
                    chosen = scope
        resolved[node] = chosen
    return resolved


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
        fold_single_attempt=settings.fold_single_attempt,
    )


def build_gateway(
    service: ModelService,
    settings: GatewaySettings,
    gatekeeper: Any,
    shutdown: Callable[[], Awaitable[object]],
    *,
    operations: Any = None,
    trace_context: bool = True,
    wall_clock: Callable[[], float] = time.time,
) -> Any:
    """The OpenAI-compatible ASGI app over ``service`` (``taskmodels.gateway``); its lifespan shutdown runs
    ``shutdown`` (the container's ``aclose``). Imported only when asked for."""
    from taskmodels.gateway.app import GatewayApp

    return GatewayApp(
        service,
        settings,
        shutdown=shutdown,
        gatekeeper=gatekeeper,
        operations=operations,
        trace_context=trace_context,
        wall_clock=wall_clock,
    )


def build_keys(settings: GatewaySettings, registry: ModelRegistryService) -> Any:
    """The gateway's keys file (``taskmodels.gateway.keysfile.KeysFile``), or None when none is set."""
    if settings.keys_file is None:
        return None
    from taskmodels.gateway.keysfile import KeysFile

    return KeysFile(settings.keys_file, tasks=lambda: registry.current.tasks_by_name)


def build_governor(store: StateStore, settings: GatewaySettings, wall_clock: Callable[[], float]) -> Any:
    """Per-key budgets and rate limits on the state store (``taskmodels.gateway.governor.Governor``)."""
    from taskmodels.gateway.governor import Governor
    from taskmodels.resilience.ratelimit import RATE_WINDOW

    return Governor(store, wall_clock=wall_clock, window=RATE_WINDOW + settings.rate_margin)


def build_gatekeeper(
    keys: Any, governor: Any, selector: ModelSelectionFactory, metrics: Any, wall_clock: Callable[[], float]
) -> Any:
    """The gateway's keys at the door and their limits around each call; None (no keys file): an open gateway."""
    if keys is None:
        return None
    from taskmodels.gateway.governance import KeyGatekeeper

    return KeyGatekeeper(keys, governor, selector, metrics=metrics, wall_clock=wall_clock)


def build_gateway_metrics(settings: GatewaySettings) -> Any:
    """The gateway's Prometheus metrics, or None when turned off or prometheus-client is not installed."""
    if not settings.metrics:
        return None
    try:
        from taskmodels.gateway.metrics import GatewayMetrics
    except ImportError:  # prometheus-client comes with taskmodels[serve]
        return None
    return GatewayMetrics()


def build_operations(
    service: ModelService,
    settings: GatewaySettings,
    *,
    metrics: Any,
    keys: Any,
    governor: Any,
    store: StateStore,
    wall_clock: Callable[[], float],
) -> Any:
    """/metrics, /healthz, /readyz and the reload of the registry and keys (``taskmodels.gateway.ops``)."""
    from taskmodels.gateway.ops import Operations

    return Operations(
        service,
        metrics=metrics,
        keys=keys,
        governor=governor,
        store=store,
        reload_interval=settings.reload_interval,
        wall_clock=wall_clock,
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

    tracer = _scoped(
        settings, "tracer", build_call_tracer, settings.provided.telemetry, tracer_provider, meter_provider
    )

    selector = _scoped(
        settings, "selector", ModelSelectionFactory, registry, unknown_task=settings.provided.selection.unknown_task
    )

    # Time and chance, as every part of the engine reads them: what tests override most.
    clock: providers.Object[Callable[[], float]] = providers.Object(time.monotonic)  # limits, latencies
    wall_clock: providers.Object[Callable[[], float]] = providers.Object(time.time)  # breakers, budgets, rates
    sleep: providers.Object[Callable[[float], Awaitable[None]]] = providers.Object(asyncio.sleep)  # backoff
    rand: providers.Object[Callable[[], float]] = providers.Object(random.random)  # backoff jitter

    breaker = _scoped(
        settings, "breaker", CircuitBreaker.from_settings, state_store, settings.provided.resilience, clock=wall_clock
    )

    gate = _scoped(settings, "gate", Gate, state_store, breaker, wall_clock=wall_clock)

    observation = _scoped(settings, "observation", Observation, clock, tracer)

    outcomes = _scoped(settings, "outcomes", Outcomes, gate, observation, settings.provided.resilience, clock, rand)

    engine = _scoped(
        settings,
        "engine",
        Engine,
        gate=gate,
        providers=provider_factory,
        observation=observation,
        resilience=settings.provided.resilience,
        clock=clock,
        sleep=sleep,
        rand=rand,
        outcomes=outcomes,
    )

    planner = _scoped(settings, "planner", Planner, settings.provided.resilience)

    model_service = _scoped(
        settings,
        "model_service",
        ModelService,
        registry=registry,
        selector=selector,
        engine=engine,
        planner=planner,
        resources=resources,
    )

    aclose = providers.Coroutine(_shutdown, __self__)

    # The gateway (taskmodels serve): the ASGI app over the service. ``gatekeeper`` is governance's seam: an object
    # with ``authorize`` and ``admit`` (taskmodels.gateway.hooks.Gatekeeper): the keys file's when one is set
    # (TASKMODELS_GATEWAY__KEYS_FILE), else None, which serves every task to anyone.
    keys: providers.Singleton[Any] = providers.Singleton(build_keys, settings.provided.gateway, registry)
    governor: providers.Singleton[Any] = providers.Singleton(
        build_governor, state_store, settings.provided.gateway, wall_clock
    )
    gateway_metrics: providers.Singleton[Any] = providers.Singleton(build_gateway_metrics, settings.provided.gateway)
    gatekeeper: providers.Singleton[Any] = providers.Singleton(
        build_gatekeeper, keys, governor, selector, gateway_metrics, wall_clock
    )
    operations: providers.Singleton[Any] = providers.Singleton(
        build_operations,
        model_service,
        settings.provided.gateway,
        metrics=gateway_metrics,
        keys=keys,
        governor=governor,
        store=state_store,
        wall_clock=wall_clock,
    )
    gateway: providers.Singleton[Any] = providers.Singleton(
        build_gateway,
        model_service,
        settings.provided.gateway,
        gatekeeper,
        aclose.provider,
        operations=operations,
        trace_context=settings.provided.telemetry.enabled,
        wall_clock=wall_clock,
    )
