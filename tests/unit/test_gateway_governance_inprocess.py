"""Governance in the gateway's ASGI app, built by the container from a keys file and driven in-process: keys at the
door, each key's tasks and limits around its calls, rate-limit headers on every answer, /metrics, /healthz and
/readyz, the keys reloaded; and no key presented ever shown back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from taskmodels.containers import Container
from taskmodels.gateway.keys import key_digest
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.settings import Settings
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    fake_model,
    fake_registry,
    hang,
    make_test_container,
    reply,
    server_error,
)
from taskmodels.types import Usage
from tests.gateway_kit import Answer, Client, sse_events
from tests.otel_kit import Otel, by_name

CHAT = "/v1/chat/completions"
KEY = "tm-SENTINEL-the-key-of-app-0123456789abcdefghijklmn"
OTHER = "tm-SENTINEL-the-other-key-0123456789abcdefghijklmn"
T0 = 1_700_000_040.0  # 2023-11-14T22:14:00Z
MODELS = (fake_model("a", price=0.1), fake_model("b", price=0.1))


def chat(task: str = "t", **fields: Any) -> dict[str, Any]:
    return {"model": task, "messages": [{"role": "user", "content": "hello"}], **fields}


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


class Gateway:
    """The container's gateway over a fake backend, a keys file, a memory store and a manual wall clock."""

    def __init__(
        self,
        tmp_path: Path,
        keys: list[dict[str, Any]],
        *,
        registry: dict[str, Any] | None = None,
        otel: Otel | None = None,
    ) -> None:
        self.keys_path = tmp_path / "keys.json"
        self.write_keys(keys)
        self.backend = FakeBackend()
        self.store = MemoryStateStore()
        self.clock = ManualClock(T0)
        registry = registry or fake_registry(*MODELS, task="t")
        registry["taskMappings"].append({"taskName": "u", "primaryModelId": "b"})
        settings = Settings.model_validate(
            {"gateway": {"keys_file": str(self.keys_path), "reload_interval": 0}, "telemetry": {"enabled": True}}
        )
        overrides: dict[str, Any] = {"state_store": self.store, "wall_clock": self.clock, "sleep": self.clock.sleep}
        if otel is not None:
            overrides.update(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        self.container: Container = make_test_container(
            registry, backend=self.backend, settings=settings, overrides=overrides
        )
        self.app = self.container.gateway()
        self.client = Client(self.app)

    def write_keys(self, keys: list[dict[str, Any]]) -> None:
        self.keys_path.write_text(json.dumps({"keys": keys}))
        st = self.keys_path.stat()
        os.utime(self.keys_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    async def chat(self, key: str | None = KEY, **fields: Any) -> Answer:
        return await self.client.post(CHAT, chat(**fields), headers=bearer(key) if key is not None else ())

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = await self.client.get("/metrics")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain")
        found = {}
        for family in text_string_to_metric_families(answer.body.decode()):
            for sample in family.samples:
                found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        return found


def entry(name: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "sha256": key_digest(key), **fields}


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def never_shown(*texts: object) -> None:
    for text in texts:
        assert "SENTINEL" not in str(text)


# --- the door ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([], "You didn't provide an API key"),
        ([("authorization", "Bearer ")], "You didn't provide an API key"),
        ([("authorization", f"Basic {KEY}")], "You didn't provide an API key"),
        (bearer(OTHER), "Incorrect API key provided: it is unknown, expired or disabled."),
        (bearer("tm-SENTINEL-off"), "Incorrect API key provided: it is unknown, expired or disabled."),
        (bearer("tm-SENTINEL-old"), "Incorrect API key provided: it is unknown, expired or disabled."),
    ],
)
async def test_a_request_without_a_usable_key_is_a_401_that_names_no_key(
    tmp_path: Path, logs: list[MutableMapping[str, Any]], headers: list[tuple[str, str]], message: str
) -> None:
    gateway = Gateway(
        tmp_path,
        [
            entry("app", KEY),
            entry("off", "tm-SENTINEL-off", disabled=True),
            entry("old", "tm-SENTINEL-old", expires="2023-11-14T22:00:00Z"),
        ],
    )
    answer = await gateway.client.post(CHAT, chat(), headers=headers)
    assert answer.status == 401
    error = answer.error
    assert error["message"].startswith(message)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_api_key")
    assert gateway.backend.calls == []
    never_shown(answer.body, answer.headers, logs, await gateway.client.get("/metrics"))


async def test_refusals_are_logged_with_their_reason_and_a_known_key_s_name_only(
    tmp_path: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    gateway = Gateway(tmp_path, [entry("off", "tm-SENTINEL-off", disabled=True)])
    await gateway.chat("tm-SENTINEL-off")
    await gateway.chat("tm-SENTINEL-nobody")
    refused = [(e["reason"], e["key"]) for e in logs if e["event"] == "taskmodels.gateway.key_refused"]
    assert refused == [("disabled", "off"), ("unknown", None)]
    never_shown(logs)


async def test_a_key_calls_its_tasks_a_403_for_another_and_a_404_for_none(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, tasks=["t"])])
    assert (await gateway.chat()).status == 200
    forbidden = await gateway.chat(model="u")
    assert forbidden.status == 403
    assert forbidden.error == {
        "message": "key 'app' may not call task 'u'",
        "type": "invalid_request_error",
        "param": "model",
        "code": "permission_denied",
    }
    unknown = await gateway.chat(model="nope")
    assert (unknown.status, unknown.error["code"]) == (404, "model_not_found")
    listed = await gateway.client.get("/v1/models", headers=bearer(KEY))
    assert [m["id"] for m in listed.json()["data"]] == ["t"]
    assert (await gateway.client.get("/v1/models/u", headers=bearer(KEY))).status == 403


async def test_the_key_s_name_is_the_tenant_of_its_calls(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY)])
    await gateway.chat()
    service = gateway.container.model_service()
    assert set(service.totals()["tenants"]) == {"app"}


# --- limits --------------------------------------------------------------------------------------------------


async def test_rpm_refuses_with_a_429_retry_after_and_the_headers_count_down(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, rpm=2)])
    first = await gateway.chat()
    assert first.status == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    # The window is a minute and the default 1 s margin (TASKMODELS_GATEWAY__RATE_MARGIN).
    assert first.headers["x-ratelimit-reset-requests"] == "1m1s"
    gateway.clock.advance(15)
    assert (await gateway.chat()).headers["x-ratelimit-remaining-requests"] == "0"
    refused = await gateway.chat()
    assert refused.status == 429
    assert refused.error == {
        "message": "key 'app' is over its limit of 2 requests per minute: room again in 46 s",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("46", "46000")
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in refused.headers  # the SDK may wait 46 s and retry
    assert len(gateway.backend.calls) == 2
    gateway.clock.advance(45.5)
    assert (await gateway.chat()).status == 429  # the minute is over, the margin not yet
    gateway.clock.advance(0.5)
    assert (await gateway.chat()).status == 200


async def test_a_spent_budget_is_a_429_the_sdks_do_not_retry_and_each_call_settles_to_its_cost(
    tmp_path: Path,
) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, budget={"limit": 0.0065, "windowSeconds": 3600})])
    # Each answer: 10 + 5 tokens at $0.1 per 1k = $0.0015; each reserves its bound first (the prompt's bytes and
    # max_tokens 10 on the dearer model): 8 + 5 + 8 = 21 prompt tokens + 10 = 31 tokens = $0.0031. The fourth
    # finds 0.0045 spent: 0.0045 + 0.0031 is over the limit.
    gateway.backend.always("a", reply("fine", usage=Usage(10, 5)))
    statuses = [(await gateway.chat(max_tokens=10)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    governor = gateway.container.governor()
    key = gateway.container.keys().current.by_name["app"]
    assert await governor.spent(key) == pytest.approx(0.0045)
    refused = await gateway.chat(max_tokens=10)
    assert refused.status == 429
    assert refused.error["type"] == "insufficient_quota"
    assert refused.error["code"] == "budget_exceeded"
    assert refused.headers["retry-after"] == "2760"  # the hour's window opens again at 23:00
    assert refused.headers["x-should-retry"] == "false"
    assert len(gateway.backend.calls) == 3


async def test_a_failed_call_costs_its_key_nothing_and_its_answer_still_says_the_limits(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, rpm=5, budget={"limit": 1.0})])
    gateway.backend.always("a", server_error(503)).always("b", server_error(503))
    failed = await gateway.chat()
    assert failed.status == 502
    assert failed.headers["x-ratelimit-remaining-requests"] == "4"
    key = gateway.container.keys().current.by_name["app"]
    assert await gateway.container.governor().spent(key) == 0.0


async def test_a_stream_carries_the_headers_and_settles_at_its_end(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, tpm=1000, budget={"limit": 1.0})])
    gateway.backend.always("a", reply("one two three", usage=Usage(10, 5)))
    answer = await gateway.chat(stream=True, max_tokens=10)
    assert answer.status == 200
    assert sse_events(answer.body)[-1] == "[DONE]"
    assert answer.headers["x-ratelimit-remaining-tokens"] == "969"  # the bound, 31 tokens, held while it ran
    key = gateway.container.keys().current.by_name["app"]
    assert await gateway.container.governor().spent(key) == pytest.approx(0.0015)
    after = await gateway.chat(max_tokens=10)
    assert after.headers["x-ratelimit-remaining-tokens"] == "954"  # 1000 - 15 (the stream) - 31 (this one's bound)


async def test_a_client_that_leaves_mid_stream_is_charged_its_bound(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, budget={"limit": 1.0})])
    gateway.backend.always("a", hang(after_chunks=1))
    answer = await gateway.client.post(CHAT, chat(stream=True, max_tokens=10), headers=bearer(KEY), leave_after=1)
    assert answer.status == 200
    key = gateway.container.keys().current.by_name["app"]
    assert await gateway.container.governor().spent(key) == pytest.approx(0.0031)


async def test_embeddings_reserve_their_texts(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, tpm=100)])
    answer = await gateway.client.post("/v1/embeddings", {"model": "t", "input": ["ab", "cd"]}, headers=bearer(KEY))
    assert answer.status == 200
    assert answer.headers["x-ratelimit-remaining-tokens"] == "88"  # (2 + 4) * 2 bytes-and-markers reserved


# --- operators -----------------------------------------------------------------------------------------------


async def test_metrics_count_by_key_name_and_never_show_a_key(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, rpm=1, budget={"limit": 1.0})])
    gateway.backend.always("a", reply("fine", usage=Usage(10, 5)))
    await gateway.chat()
    await gateway.chat()  # over the rpm
    await gateway.chat(OTHER)  # not a key
    await gateway.chat(model="not-a-task")
    found = await gateway.metrics()
    requests = "taskmodels_gateway_requests_total"
    assert found[requests, (("key", "app"), ("model", "a"), ("status", "200"), ("task", "t"))] == 1
    assert found[requests, (("key", "app"), ("model", "-"), ("status", "429"), ("task", "t"))] == 1
    assert found[requests, (("key", "-"), ("model", "-"), ("status", "401"), ("task", "unknown"))] == 1
    assert found["taskmodels_gateway_limited_total", (("key", "app"), ("limit", "requests"))] == 1
    assert found["taskmodels_gateway_tokens_total", (("direction", "output"), ("key", "app"), ("task", "t"))] == 5
    assert found["taskmodels_gateway_cost_usd_total", (("key", "app"), ("task", "t"))] == pytest.approx(0.0015)
    assert found["taskmodels_gateway_key_budget_spent_usd", (("key", "app"),)] == pytest.approx(0.0015)
    assert found["taskmodels_gateway_key_budget_limit_usd", (("key", "app"),)] == 1.0
    assert found["taskmodels_gateway_breaker_state", (("deployment", "-"), ("model", "a"))] == 0
    assert found["taskmodels_gateway_in_flight_requests", ()] == 0
    never_shown(found)


async def test_health_and_readiness_need_no_key_and_say_what_is_loaded(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY)])
    health = await gateway.client.get("/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    ready = await gateway.client.get("/readyz")
    assert ready.status == 200
    report = ready.json()
    assert report["status"] == "ready"
    assert report["keys"]["keys"] == 1
    assert len(report["keys"]["hash"]) == 64
    assert len(report["registry"]["hash"]) == 64
    assert report["registry"]["tasks"] == 2
    assert report["state"] == {"store": "MemoryStateStore", "shared": False, "reachable": True}
    never_shown(ready.body)


async def test_a_reload_changes_the_keys_hash_and_a_bad_file_keeps_the_last_good_keys(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY)])
    before = (await gateway.client.get("/readyz")).json()["keys"]["hash"]
    gateway.write_keys([entry("app", KEY), entry("other", OTHER)])
    assert gateway.container.keys().reload_if_changed()
    after = (await gateway.client.get("/readyz")).json()
    assert after["keys"]["hash"] != before
    assert (await gateway.chat(OTHER)).status == 200
    gateway.write_keys([{"name": "broken"}])
    with capture_logs():
        assert not gateway.container.keys().reload_if_changed()
    degraded = await gateway.client.get("/readyz")
    assert degraded.status == 200
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["keys"]["hash"] == after["keys"]["hash"]
    assert degraded.json()["keys"]["reload_failed"]
    assert (await gateway.chat(OTHER)).status == 200  # the last good keys still serve


async def test_readiness_is_503_once_shutdown_begins(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY)])
    await gateway.container.operations().stop()
    ready = await gateway.client.get("/readyz")
    assert (ready.status, ready.json()["status"]) == (503, "draining")


class BrokenStore(MemoryStateStore):
    async def spend(self, *args: Any, **kwargs: Any) -> float:
        raise ConnectionError("down")


async def test_a_store_that_fails_makes_the_replica_unready_but_serves_calls(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY)])
    gateway.container.operations().store = BrokenStore()
    ready = await gateway.client.get("/readyz")
    assert ready.status == 503
    assert ready.json()["state"] == {"store": "BrokenStore", "reachable": False, "error_class": "ConnectionError"}


# --- traces ----------------------------------------------------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


async def test_a_request_s_traceparent_continues_into_the_call_span_and_no_span_holds_a_key(
    tmp_path: Path, otel: Otel
) -> None:
    gateway = Gateway(tmp_path, [entry("app", KEY, rpm=1)], otel=otel)
    traced = [("traceparent", f"00-{TRACE}-{PARENT}-01")]
    assert (await gateway.client.post(CHAT, chat(), headers=[*bearer(KEY), *traced])).status == 200
    assert (await gateway.client.post(CHAT, chat(), headers=[*bearer(KEY), *traced])).status == 429
    assert (await gateway.client.post(CHAT, chat(), headers=[*bearer(OTHER), *traced])).status == 401
    (call,) = by_name(otel.finished(), "taskmodels t")
    assert call.context is not None
    assert call.context.trace_id == int(TRACE, 16)
    assert call.parent is not None
    assert call.parent.span_id == int(PARENT, 16)
    never_shown(otel.everything_recorded())
