"""Pools: the deployments behind one model, and the order one call tries them in.

Every registry model is a pool. A model without ``deployments`` is a pool of one
whose route is the model itself: its breaker key is the model id, as it always was,
it keeps no rate state unless it declares none, and choosing costs one lookup. A
model with deployments has one ``Route`` per deployment, keyed ``model/deployment``.

``Pool.order(strategy)`` gives the routes for one call, the chosen one first and the
rest after it, so the loop drains the pool before the chain moves to its next model:

- ``weighted`` (the default): smooth weighted round robin (nginx's): every pick adds
  each route's weight to its credit and takes the route with the most, which then pays
  the total back. Deterministic, and over ``sum(weights)`` picks each route is chosen
  exactly ``weight`` times, evenly spread.
- ``least-busy``: the fewest calls in flight in this process; ties go the weighted way.
- ``latency``: the lowest rolling average latency (time to the first event, for a
  stream); a route never measured goes first, so each gets measured.

The state behind these (credits, calls in flight, averages) is per process: it only
orders routes. Breakers, holds and rate limits, which must agree across processes,
live in the state store, keyed by ``Route.key``.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskmodels.registry.schema import DeploymentConfig, ModelConfig, RoutingStrategy

__all__ = ["LATENCY_SMOOTHING", "Pool", "Pools", "Route"]

LATENCY_SMOOTHING = 0.3
"""Weight of the newest latency in a route's rolling average."""


@dataclass(slots=True, eq=False)
class Route:
    """One way to reach a model: the model itself, or one of its deployments."""

    model: ModelConfig  # the registry's entry: id, prices, limits
    config: ModelConfig  # what the provider is built from (the deployment's provider, URL, key, options)
    deployment_id: str | None  # None for a pool of one
    key: str  # breaker, hold and rate-limit key in the state store
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    limited: bool = False  # keeps rate state (holds, rpm/tpm) in the store
    tags: tuple[str, ...] = ()
    # Routing state of this process.
    credit: float = 0.0
    in_flight: int = 0
    latency: float = 0.0  # rolling average, seconds
    samples: int = 0

    def observe(self, seconds: float) -> None:
        """Fold one latency into the rolling average."""
        if self.samples:
            self.latency += LATENCY_SMOOTHING * (seconds - self.latency)
        else:
            self.latency = seconds
        self.samples += 1


def _route(model: ModelConfig, deployment: DeploymentConfig) -> Route:
    return Route(
        model,
        model.for_deployment(deployment),
        deployment.id,
        f"{model.id}/{deployment.id}",
        deployment.weight,
        deployment.rpm,
        deployment.tpm,
        limited=True,
        tags=deployment.tags,
    )


class Pool:
    """A model's routes and the strategy its registry entry names."""

    __slots__ = ("_after", "_total", "model", "routes", "single", "strategy")

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self.strategy: RoutingStrategy = model.routing or "weighted"
        if model.deployments:
            self.routes: tuple[Route, ...] = tuple(_route(model, d) for d in model.deployments)
        else:
            self.routes = (Route(model, model, None, model.id),)
        self.single = self.routes if len(self.routes) == 1 else None
        self._total = sum(r.weight for r in self.routes)
        # The weighted order once a route is picked: it first, the rest by weight. Computed once per pick.
        by_weight = sorted(self.routes, key=lambda r: -r.weight)
        self._after = {id(r): (r, *(o for o in by_weight if o is not r)) for r in self.routes}

    @property
    def shared(self) -> bool:
        """More than one route: choosing among them matters."""
        return self.single is None

    def order(self, strategy: RoutingStrategy | None = None) -> tuple[Route, ...]:
        """The routes of one call, the chosen one first; ``strategy`` (the task's) wins over the model's."""
        if self.single is not None:
            return self.single
        how = strategy or self.strategy
        if how == "latency":
            # Unmeasured routes first (they sort at 0.0), then the fastest; ties keep registry order.
            return tuple(sorted(self.routes, key=lambda r: (r.samples > 0, r.latency)))
        ordered = self._after[id(self._pick())]
        if how == "least-busy":
            return tuple(sorted(ordered, key=lambda r: r.in_flight))  # stable: the pick wins a tie
        return ordered

    def _pick(self) -> Route:
        best = self.routes[0]
        for route in self.routes:
            route.credit += route.weight
            if route.credit > best.credit:
                best = route
        best.credit -= self._total
        return best


class Pools:
    """One pool per registry model, rebuilt when a reload replaces the model's entry."""

    __slots__ = ("_pools",)

    def __init__(self) -> None:
        self._pools: dict[str, Pool] = {}

    def pool(self, model: ModelConfig) -> Pool:
        pool = self._pools.get(model.id)
        if pool is None or pool.model is not model:
            pool = self._pools[model.id] = Pool(model)
        return pool

    def known(self) -> list[Pool]:
        return list(self._pools.values())
