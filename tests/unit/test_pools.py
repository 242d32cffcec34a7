"""Deployments behind one model: choosing within the pool, draining it before the chain moves on, breakers,
holds and rate limits per deployment — on fakes and a manual clock."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from taskmodels.engine.pools import Pool
from taskmodels.errors import AllModelsFailedError
from taskmodels.registry.schema import ModelConfig
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.service import ModelService
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    auth_error,
    fake_model,
    fake_registry,
    make_test_service,
    rate_limited,
    server_error,
)


def pooled(mid: str, *deployments: dict[str, Any], **keys: Any) -> dict[str, Any]:
    return fake_model(mid, deployments=list(deployments), **keys)


def dep(did: str, **keys: Any) -> dict[str, Any]:
    return {"id": did, **keys}


class Env:
    def __init__(self, reg: dict[str, Any]) -> None:
        self.backend = FakeBackend()
        self.clock = ManualClock()
        self.store = MemoryStateStore()
        self.service: ModelService = make_test_service(
            reg,
            backend=self.backend,
            state_store=self.store,
            clock=self.clock,
            wall_clock=self.clock,
            sleep=self.clock.sleep,
            rand=lambda: 0.5,
        )

    async def served(self, n: int, task: str = "t") -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            result = await self.service.complete_with_task_model(task, "hi")
            seen[f"{result.model_id}/{result.deployment_id}"] += 1
        return seen


def model_config(*weights: float, routing: str | None = None) -> ModelConfig:
    deployments = [dep(f"d{i}", weight=w) for i, w in enumerate(weights)]
    keys: dict[str, Any] = {} if routing is None else {"routing": routing}
    return ModelConfig.model_validate(pooled("m", *deployments, **keys))


def test_a_model_without_deployments_is_a_pool_of_one_keyed_by_its_id() -> None:
    pool = Pool(ModelConfig.model_validate(fake_model("m")))
    (route,) = pool.order()
    assert (route.key, route.deployment_id, route.limited) == ("m", None, False)
    assert route.config is pool.model


def test_smooth_weighted_round_robin_is_exact_and_spread() -> None:
    pool = Pool(model_config(5, 1, 1))
    picks = [pool.order()[0].deployment_id for _ in range(14)]
    # nginx's sequence for weights 5, 1, 1: the light ones are spread between the heavy one's turns
    assert picks[:7] == ["d0", "d0", "d1", "d0", "d2", "d0", "d0"]
    assert picks[7:] == picks[:7]


def test_the_rest_of_the_pool_follows_the_pick_by_weight() -> None:
    pool = Pool(model_config(1, 3, 2))
    order = [r.deployment_id for r in pool.order()]
    assert order[0] == "d1"
    assert order[1:] == ["d2", "d0"]


def test_least_busy_prefers_fewest_in_flight_and_latency_prefers_fastest() -> None:
    pool = Pool(model_config(1, 1, 1, routing="least-busy"))
    pool.routes[0].in_flight, pool.routes[1].in_flight, pool.routes[2].in_flight = 3, 0, 1
    assert pool.order()[0].deployment_id == "d1"
    assert pool.order("latency")[0].deployment_id == "d0"  # nothing measured: registry order
    for route, seconds in zip(pool.routes, (0.5, 0.1, 0.3), strict=True):
        route.observe(seconds)
    assert [r.deployment_id for r in pool.order("latency")] == ["d1", "d2", "d0"]


async def test_each_deployment_serves_its_weight_over_many_calls() -> None:
    env = Env(fake_registry(pooled("m", dep("a", weight=3), dep("b", weight=1))))
    seen = await env.served(400)
    assert seen == {"m/a": 300, "m/b": 100}


async def test_a_failing_deployment_hands_over_to_its_sibling_not_a_retry_or_the_next_model() -> None:
    env = Env(fake_registry(pooled("m", dep("a", weight=10), dep("b")), fake_model("z")))
    env.backend.script("m/a", server_error(503))
    result = await env.service.complete_with_task_model("t", "hi")
    assert (result.model_id, result.deployment_id) == ("m", "b")
    assert [(a.deployment_id, a.outcome) for a in result.attempts] == [("a", "error"), ("b", "success")]
    assert env.clock.sleeps == []  # no backoff: a sibling was free


async def test_a_pool_whose_deployments_all_fail_hands_over_to_the_next_model() -> None:
    env = Env(fake_registry(pooled("m", dep("a"), dep("b")), fake_model("z")))
    env.backend.always("m", server_error(503))
    result = await env.service.complete_with_task_model("t", "hi")
    assert result.model_id == "z"
    assert result.deployment_id is None
    tried = [(a.model_id, a.deployment_id) for a in result.attempts if a.outcome == "error"]
    assert ("m", "a") in tried
    assert ("m", "b") in tried


async def test_breakers_are_per_deployment() -> None:
    env = Env(fake_registry(pooled("m", dep("a"), dep("b"))))
    env.backend.always("m/a", auth_error())  # trips a's breaker at once
    await env.service.complete_with_task_model("t", "hi")
    health = await env.service.health()
    deployments = health["models"]["m"]["deployments"]
    assert deployments["a"]["state"] == "open"
    assert deployments["b"]["state"] == "closed"
    seen = await env.served(10)
    assert seen == {"m/b": 10}


async def test_a_429_holds_only_that_deployment_for_its_retry_after() -> None:
    env = Env(fake_registry(pooled("m", dep("a"), dep("b"))))
    env.backend.script("m/a", rate_limited(retry_after=30))
    await env.service.complete_with_task_model("t", "hi")
    seen = await env.served(10)
    assert seen == {"m/b": 10}  # a is held, b serves everything
    env.clock.advance(30)
    seen = await env.served(10)
    assert seen["m/a"] == 5


async def test_declared_rpm_is_enforced_and_the_chain_moves_on_when_the_pool_is_spent() -> None:
    env = Env(fake_registry(pooled("m", dep("a", rpm=3), dep("b", rpm=2)), fake_model("z")))
    seen = await env.served(8)
    assert seen == {"m/a": 3, "m/b": 2, "z/None": 3}
    env.clock.advance(60)
    seen = await env.served(5)
    assert seen == {"m/a": 3, "m/b": 2}


async def test_declared_tpm_counts_the_real_tokens_once_settled() -> None:
    # Each call reserves its estimate (prompt + maxTokens 100, about 106: two would not fit in 150) and
    # settles to the 15 tokens the fake reports, so three fit before the next estimate would overflow.
    env = Env(fake_registry(pooled("m", dep("a", tpm=150)), fake_model("z")))
    seen = await env.served(6)
    snap = await env.store.rate("m/a", window=60.0, now=env.clock())
    assert seen == {"m/a": 3, "z/None": 3}
    assert (snap.requests, snap.tokens) == (3, 45)


async def test_when_every_deployment_is_held_and_nothing_else_is_left_the_call_fails_with_the_reasons() -> None:
    env = Env(fake_registry(pooled("m", dep("a", rpm=1), dep("b", rpm=1))))
    await env.served(2)
    with pytest.raises(AllModelsFailedError) as info:
        await env.service.complete_with_task_model("t", "hi")
    reasons = [a.error_message or "" for a in info.value.attempts]
    assert any("'a': rate limit spent" in r for r in reasons)
    assert any("'b': rate limit spent" in r for r in reasons)


# --- tenants ---------------------------------------------------------------------------------


async def test_a_tenant_scoped_budget_holds_for_each_tenant_apart_and_totals_name_them() -> None:
    from taskmodels import tenant_scope
    from taskmodels.errors import BudgetExceededError

    # Every answer costs 15 tokens x 0.001 / 1000; the estimate (prompt + 100 tokens) is about 0.000106.
    budget = {"limit": 0.0002, "windowSeconds": 3600, "scope": "tenant"}
    env = Env(fake_registry(fake_model("m"), budget=budget))
    with tenant_scope("acme"):
        for _ in range(2):
            await env.service.complete_with_task_model("t", "hi")
    spent = await env.store.spend("budget:t:tenant:acme", window=3600, now=env.clock())
    assert spent == pytest.approx(2 * 15 * 0.001 / 1000)
    await env.service.complete_with_task_model("t", "hi", tenant="globex")  # its own budget, untouched by acme's

    async def until_refused() -> None:
        for _ in range(10):  # 0.00003 spent + the 0.000106 estimate fits once more, then no longer
            await env.service.complete_with_task_model("t", "hi")

    with tenant_scope("acme"), pytest.raises(BudgetExceededError, match="for tenant 'acme'"):
        await until_refused()
    totals = env.service.totals()["tenants"]
    assert totals["globex"]["calls"] == 1
    assert totals["acme"]["calls"] >= 2
    assert totals["acme"]["failed_calls"] == 1


def test_tenant_scope_refuses_an_empty_tenant() -> None:
    from taskmodels import tenant_scope

    with pytest.raises(ValueError, match="non-empty"), tenant_scope(""):
        pass


# --- what plan and explain show --------------------------------------------------------------


def test_plan_and_explain_show_each_pool_and_its_deployments(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from taskmodels.cli import main

    deployments = [dep("east", weight=2, rpm=500, tags=["us-east"]), dep("west", tpm=90000, baseUrl="http://w:1/v1")]
    registry = fake_registry(
        pooled("m", *deployments, provider="openai", routing="latency"), fake_model("z", provider="openai")
    )
    path = tmp_path / "modelRegistry.json"
    path.write_text(json.dumps(registry))
    assert main(["plan", "--registry", str(path)]) == 0
    out = capsys.readouterr().out
    assert "POOL" in out
    assert "latency" in out
    assert "east" in out
    assert "90,000" in out
    assert "us-east" in out
    assert main(["explain", "t", "--registry", str(path), "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)["models"]
    assert chain[0]["routing"] == "latency"
    assert [d["id"] for d in chain[0]["deployments"]] == ["east", "west"]
    assert "deployments" not in chain[1]
