"""One attempt at one model (``Try``), as the loop hands it to a lane and a lane to the drivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskmodels.registry.schema import ModelConfig

from .admission import Claim
from .pools import Route

if TYPE_CHECKING:
    from taskmodels.providers.port import ModelPort

__all__ = ["Try"]


@dataclass(slots=True)
class Try:
    """One attempt at one model, handed to a driver by the loop. Its ``claim`` (budget reservation, rate ticket,
    place among the route's calls in flight) is given back exactly once, by whoever ends the attempt."""

    model: ModelConfig
    provider: ModelPort
    number: int  # 1-based try of this model within the call
    last: bool  # no candidate after this one: it may use the whole deadline
    claim: Claim
    started: float
    route: Route
    siblings: bool = False  # deployments of the same model still to try: a failure moves to them, not back here
    trace: Any = None  # the tracer's handle, when the call has a trace
    first_at: float | None = None  # when its first event (a stream's) or its answer arrived: its commit

    @property
    def config(self) -> ModelConfig:
        """The model as this try's deployment configures it (its route's), or the model itself."""
        return self.route.config

    @property
    def deployment_id(self) -> str | None:
        return self.route.deployment_id
