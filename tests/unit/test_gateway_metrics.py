"""The gateway's Prometheus metrics: what each counts, labels that stay bounded, and workers summed through
prometheus-client's multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from taskmodels.gateway.metrics import Answered, GatewayMetrics

TASKS = {"summarize", "classify"}
MODELS = {"m-a", "m-b"}


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_an_answer_is_counted_with_its_task_key_status_model_tokens_and_cost() -> None:
    metrics = GatewayMetrics()
    answer = Answered("summarize", "search", 200, "m-b", 0.2, input_tokens=11, output_tokens=4, cost=0.0015)
    metrics.answered(answer, tasks=TASKS, models=MODELS)
    metrics.answered(Answered("summarize", "search", 200, "m-a", 0.03, fallbacks=1), tasks=TASKS, models=MODELS)
    found = samples(metrics.render())
    requests = "taskmodels_gateway_requests_total"
    assert found[requests, (("key", "search"), ("model", "m-b"), ("status", "200"), ("task", "summarize"))] == 1
    assert found[requests, (("key", "search"), ("model", "m-a"), ("status", "200"), ("task", "summarize"))] == 1
    tokens = "taskmodels_gateway_tokens_total"
    assert found[tokens, (("direction", "input"), ("key", "search"), ("task", "summarize"))] == 11
    assert found[tokens, (("direction", "output"), ("key", "search"), ("task", "summarize"))] == 4
    assert found["taskmodels_gateway_cost_usd_total", (("key", "search"), ("task", "summarize"))] == 0.0015
    assert found["taskmodels_gateway_fallbacks_total", (("task", "summarize"),)] == 1
    duration = "taskmodels_gateway_request_duration_seconds"
    assert found[duration + "_count", (("stream", "false"), ("task", "summarize"))] == 2
    assert found[duration + "_bucket", (("le", "0.05"), ("stream", "false"), ("task", "summarize"))] == 1
    assert found[duration + "_sum", (("stream", "false"), ("task", "summarize"))] == 0.23


def test_labels_stay_bounded_whatever_a_client_sends() -> None:
    metrics = GatewayMetrics()
    for i in range(50):
        metrics.answered(Answered(f"typo-{i}", None, 404), tasks=TASKS, models=MODELS)
        metrics.answered(Answered("classify", "k", 200, f"leaked-{i}"), tasks=TASKS, models=MODELS)
    found = samples(metrics.render())
    requests = {labels for name, labels in found if name == "taskmodels_gateway_requests_total"}
    assert requests == {
        (("key", "-"), ("model", "-"), ("status", "404"), ("task", "unknown")),
        (("key", "k"), ("model", "other"), ("status", "200"), ("task", "classify")),
    }
    assert (
        found[
            "taskmodels_gateway_requests_total", (("key", "-"), ("model", "-"), ("status", "404"), ("task", "unknown"))
        ]
        == 50
    )


def test_first_chunks_limits_and_the_now_gauges() -> None:
    metrics = GatewayMetrics()
    metrics.first_content("summarize", 0.3, tasks=TASKS)
    metrics.refused_by_limit("search", "requests")
    metrics.refused_by_limit("search", "budget")
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.streams.inc()
    metrics.in_flight.dec()
    found = samples(metrics.render())
    first = "taskmodels_gateway_time_to_first_chunk_seconds"
    assert found[first + "_bucket", (("le", "0.5"), ("task", "summarize"))] == 1
    assert found[first + "_bucket", (("le", "0.25"), ("task", "summarize"))] == 0
    assert found["taskmodels_gateway_limited_total", (("key", "search"), ("limit", "requests"))] == 1
    assert found["taskmodels_gateway_limited_total", (("key", "search"), ("limit", "budget"))] == 1
    assert found["taskmodels_gateway_in_flight_requests", ()] == 1
    assert found["taskmodels_gateway_open_streams", ()] == 1


def test_breakers_and_budgets_are_read_in() -> None:
    metrics = GatewayMetrics()
    health = {
        "models": {
            "m-a": {"state": "open", "consecutive_failures": 3},
            "m-b": {
                "state": "closed",
                "routing": "weighted",
                "deployments": {"east": {"state": "held", "breaker": "closed"}, "west": {"state": "half_open"}},
            },
        }
    }
    metrics.health(health)
    metrics.budgets([("search", 0.012, 0.05), ("batch", None, 5.0)])
    found = samples(metrics.render())
    breaker = "taskmodels_gateway_breaker_state"
    assert found[breaker, (("deployment", "-"), ("model", "m-a"))] == 2
    assert found[breaker, (("deployment", "-"), ("model", "m-b"))] == 0
    assert found[breaker, (("deployment", "east"), ("model", "m-b"))] == 0
    assert found[breaker, (("deployment", "west"), ("model", "m-b"))] == 1
    assert found["taskmodels_gateway_key_budget_spent_usd", (("key", "search"),)] == 0.012
    assert found["taskmodels_gateway_key_budget_limit_usd", (("key", "batch"),)] == 5.0
    assert ("taskmodels_gateway_key_budget_spent_usd", (("key", "batch"),)) not in found


def test_two_apps_in_one_process_keep_their_own_counts() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.answered(Answered("classify", None, 200), tasks=TASKS, models=MODELS)
    labels = (("key", "-"), ("model", "-"), ("status", "200"), ("task", "classify"))
    assert samples(first.render())["taskmodels_gateway_requests_total", labels] == 1
    assert ("taskmodels_gateway_requests_total", labels) not in samples(second.render())


WORKER = textwrap.dedent(
    """
    import json, os, sys
    from taskmodels.gateway.metrics import Answered, GatewayMetrics
    metrics = GatewayMetrics()
    n = int(sys.argv[1])
    for _ in range(n):
        metrics.answered(Answered("classify", "k", 200, "m-a", 0.1, cost=0.5), tasks={"classify"}, models={"m-a"})
    metrics.in_flight.inc()
    if sys.argv[2] == "exit":
        metrics.process_exited()
    else:
        print(metrics.render().decode())
    """
)


def test_workers_are_summed_through_the_shared_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(n: int, then: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(n), then],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    worker(3, "exit")  # a worker that served 3 requests and exited
    text = worker(2, "render")  # a live one, answering the scrape
    found = samples(text.encode())
    labels = (("key", "k"), ("model", "m-a"), ("status", "200"), ("task", "classify"))
    assert found["taskmodels_gateway_requests_total", labels] == 5
    assert found["taskmodels_gateway_cost_usd_total", (("key", "k"), ("task", "classify"))] == 2.5
    # The exited worker's in-flight gauge left with it (marked dead); the live one's, read while it ran, remains.
    assert found["taskmodels_gateway_in_flight_requests", ()] == 1
