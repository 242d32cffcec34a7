"""``GET /metrics``: the gateway's traffic, limits and health in Prometheus' text format (``prometheus-client``).

Every name starts ``taskmodels_gateway_``::

    requests_total{task, key, status, model}        answers given, by the task asked, the key's NAME, the HTTP
                                                    status and the model that served (``-``: none did)
    request_duration_seconds{task, stream}          from the request's arrival to its last byte
    time_to_first_chunk_seconds{task}               streams: until the first content went out
    tokens_total{task, key, direction}              ``input`` and ``output`` tokens of the answers
    cost_usd_total{task, key}                       what the answers cost
    fallbacks_total{task}                           moves from one model of a task's chain to another
    limited_total{key, limit}                       requests a key's ``budget``, ``requests`` or ``tokens`` refused
    in_flight_requests, open_streams                now, summed over the live processes
    breaker_state{model, deployment}                0 closed, 1 half-open, 2 open (``deployment`` ``-``: the
                                                    model's own breaker); from ``ModelService.health()``
    key_budget_spent_usd{key}, key_budget_limit_usd{key}    each budgeted key's current window, from the store

Labels are bounded: a task the registry does not map is counted as ``unknown`` and a model it does not list as
``other``, the key label is a key's name from the keys file (``-``: no key, or none accepted), and nothing from
a prompt or a client's id is ever a label.

Several worker processes (``taskmodels serve --workers N``) share one ``PROMETHEUS_MULTIPROC_DIR``, set before
they start: each writes its samples there and any of them answers ``/metrics`` with the sum over all
(prometheus-client's multiprocess mode); the gauges that say "now" count live processes only, and the ones read
from the shared store take the latest reading.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_VARIABLE",
    "NO_KEY",
    "NO_MODEL",
    "OTHER_MODEL",
    "UNKNOWN_TASK",
    "Answered",
    "GatewayMetrics",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

UNKNOWN_TASK: Final = "unknown"
OTHER_MODEL: Final = "other"
NO_MODEL: Final = "-"
NO_KEY: Final = "-"
NO_DEPLOYMENT: Final = "-"

_PREFIX: Final = "taskmodels_gateway_"
_DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_FIRST_CHUNK_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BREAKER: Final = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass(frozen=True, slots=True)
class Answered:
    """One request answered (or refused), as the metrics count it; ``task`` and ``model`` as the request and the
    result named them, bounded by ``GatewayMetrics.answered``."""

    task: str | None
    key: str | None
    status: int
    model: str | None = None
    seconds: float = 0.0
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    fallbacks: int = 0


class GatewayMetrics:
    """The gateway's metrics, in a registry of their own (so several apps in one process never clash).

    ``multiprocess_dir``: the directory worker processes share (default: ``$PROMETHEUS_MULTIPROC_DIR``); it must
    be set in the environment before ``prometheus_client`` is imported, so ``taskmodels serve`` sets it before it
    starts its workers.
    """

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_VARIABLE) or None
        own = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[str, str, int, str, bool], _Series] = {}
        # In multiprocess mode the samples live in the shared files and are read from there at each scrape.
        where = None if self.multiprocess_dir else own
        self._registry = own
        self.requests = Counter(
            _PREFIX + "requests", "Requests answered, by task, key name, status and serving model",
            ["task", "key", "status", "model"], registry=where,
        )  # fmt: skip
        self.duration = Histogram(
            _PREFIX + "request_duration_seconds", "From a request's arrival to its last byte",
            ["task", "stream"], buckets=_DURATION_BUCKETS, registry=where,
        )  # fmt: skip
        self.first_chunk = Histogram(
            _PREFIX + "time_to_first_chunk_seconds", "Streams: from the request's arrival to its first content",
            ["task"], buckets=_FIRST_CHUNK_BUCKETS, registry=where,
        )  # fmt: skip
        self.tokens = Counter(
            _PREFIX + "tokens", "Tokens of the answers, input and output", ["task", "key", "direction"], registry=where
        )
        self.cost = Counter(_PREFIX + "cost_usd", "What the answers cost, USD", ["task", "key"], registry=where)
        self.fallbacks = Counter(
            _PREFIX + "fallbacks", "Moves from one model of a task's chain to another", ["task"], registry=where
        )
        self.limited = Counter(
            _PREFIX + "limited", "Requests a key's budget or rate limit refused", ["key", "limit"], registry=where
        )
        self.in_flight = Gauge(
            _PREFIX + "in_flight_requests", "Requests being served", registry=where, multiprocess_mode="livesum"
        )
        self.streams = Gauge(
            _PREFIX + "open_streams", "Streams being relayed", registry=where, multiprocess_mode="livesum"
        )
        self.breakers = Gauge(
            _PREFIX + "breaker_state", "Circuit breakers: 0 closed, 1 half-open, 2 open",
            ["model", "deployment"], registry=where, multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.spent = Gauge(
            _PREFIX + "key_budget_spent_usd", "Each budgeted key's spend in its current window, USD",
            ["key"], registry=where, multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.budget = Gauge(
            _PREFIX + "key_budget_limit_usd", "Each budgeted key's limit per window, USD",
            ["key"], registry=where, multiprocess_mode="livemostrecent",
        )  # fmt: skip

    # --- counting ------------------------------------------------------------------------------------------

    def answered(self, answer: Answered, *, tasks: Collection[str], models: Collection[str]) -> None:
        """Count one answer; ``tasks`` and ``models``: the registry's, which bound the labels."""
        task = _bounded(answer.task, tasks, UNKNOWN_TASK)
        key = answer.key or NO_KEY
        model = NO_MODEL if answer.model is None else _bounded(answer.model, models, OTHER_MODEL)
        series = self._series.get((task, key, answer.status, model, answer.stream))
        if series is None:  # the labels' children, looked up once per combination: labels() costs microseconds
            series = self._series[task, key, answer.status, model, answer.stream] = _Series(
                self.requests.labels(task, key, str(answer.status), model),
                self.duration.labels(task, "true" if answer.stream else "false"),
                self.tokens.labels(task, key, "input"),
                self.tokens.labels(task, key, "output"),
                self.cost.labels(task, key),
                self.fallbacks.labels(task),
            )
        series.requests.inc()
        series.duration.observe(answer.seconds)
        if answer.input_tokens:
            series.input_tokens.inc(answer.input_tokens)
        if answer.output_tokens:
            series.output_tokens.inc(answer.output_tokens)
        if answer.cost > 0:
            series.cost.inc(answer.cost)
        if answer.fallbacks:
            series.fallbacks.inc(answer.fallbacks)

    def first_content(self, task: str, seconds: float, *, tasks: Collection[str]) -> None:
        self.first_chunk.labels(_bounded(task, tasks, UNKNOWN_TASK)).observe(seconds)

    def refused_by_limit(self, key: str, limit: str) -> None:
        """A key's ``budget``, ``requests`` (rpm) or ``tokens`` (tpm) limit refused a request."""
        self.limited.labels(key, limit).inc()

    # --- read at each scrape -------------------------------------------------------------------------------

    def health(self, health: Mapping[str, Any]) -> None:
        """The breakers ``ModelService.health()`` reported: each model's, and each deployment's of a pool."""
        for model_id, model in health.get("models", {}).items():
            self.breakers.labels(model_id, NO_DEPLOYMENT).set(_BREAKER.get(model.get("state"), 0.0))
            for deployment_id, deployment in model.get("deployments", {}).items():
                state = deployment.get("breaker", deployment.get("state"))
                self.breakers.labels(model_id, deployment_id).set(_BREAKER.get(state, 0.0))

    def budgets(self, budgets: Iterable[tuple[str, float | None, float]]) -> None:
        """Each budgeted key's ``(name, spent in its window or None when unknown, limit)``."""
        for name, spent, limit in budgets:
            self.budget.labels(name).set(limit)
            if spent is not None:
                self.spent.labels(name).set(spent)

    def render(self) -> bytes:
        """Every metric in Prometheus' text format: this process's, or all workers' in multiprocess mode."""
        if not self.multiprocess_dir:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
        return generate_latest(registry)

    def process_exited(self, pid: int | None = None) -> None:
        """Drop a finished worker's live gauges (its counters keep counting in the sum)."""
        if self.multiprocess_dir:
            pid = pid if pid is not None else os.getpid()
            prometheus_multiprocess.mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream


@dataclass(frozen=True, slots=True)
class _Series:
    """One answer's metric children, for one combination of labels."""

    requests: Any
    duration: Any
    input_tokens: Any
    output_tokens: Any
    cost: Any
    fallbacks: Any


def _bounded(value: str | None, known: Collection[str], other: str) -> str:
    if value is None:
        return other
    return value if value in known else other
