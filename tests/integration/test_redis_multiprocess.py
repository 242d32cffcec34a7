"""Separate OS processes sharing breaker and spend state through a real redis-server.

Each worker is this file run as a script: a ``RedisStateStore`` in its own
process, driven by JSON commands on stdin, answering one JSON line per command
together with whether the answer came from Redis. Every read of a worker's
answer is bounded, so a stuck worker fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import LogCapture, capture_logs

from taskmodels.resilience.redis import RedisStateStore
from taskmodels.sections import StateSettings

T0 = 1_700_000_000.0
DAY = 86400.0
REPLY_TIMEOUT = 20.0


# --- the worker process ----------------------------------------------------------------------


async def _reserve_many(
    store: RedisStateStore, scope: str, amount: float, limit: float, count: int, *, start_at: float = 0.0
) -> dict[str, Any]:
    # Every worker starts at the same wall-clock moment, so that they really race on a busy machine.
    await asyncio.sleep(max(0.0, start_at - time.time()))
    accepted = 0
    on_redis = True
    for _ in range(count):
        decision = await store.reserve_spend(scope, amount, limit=limit, window=DAY, now=T0)
        accepted += decision.accepted
        on_redis = on_redis and store.on_redis
    return {"accepted": accepted, "all_on_redis": on_redis}


def _ops(store: RedisStateStore, logged: LogCapture) -> dict[str, Callable[..., Awaitable[Any]]]:  # noqa: C901, PLR0915 - one small coroutine per store operation a worker serves
    async def admit(key: str, now: float) -> list[Any]:
        a = await store.admit(key, now=now, probe_lease=5)
        return [a.allowed, a.probe, a.retry_at]

    async def record_failure(key: str, now: float, threshold: int, cooldown: float) -> list[Any]:
        s = await store.record_failure(key, now=now, threshold=threshold, cooldown=cooldown)
        return [s.state, s.consecutive_failures, s.retry_at]

    async def record_success(key: str, now: float) -> str:
        return (await store.record_success(key, now=now)).state

    async def breaker(key: str, now: float) -> list[Any]:
        s = await store.breaker(key, now=now)
        return [s.state, s.consecutive_failures, s.retry_at]

    async def reserve_many(
        scope: str, amount: float, limit: float, count: int, start_at: float = 0.0
    ) -> dict[str, Any]:
        return await _reserve_many(store, scope, amount, limit, count, start_at=start_at)

    async def spend(scope: str) -> float:
        return await store.spend(scope, window=DAY, now=T0)

    services: dict[str, Any] = {}

    async def start_service(primary: str, budget: dict[str, Any] | None = None) -> None:
        # Imported here: only this command needs the service and its test kit.
        from taskmodels.sections import ResilienceSettings
        from taskmodels.testing import FakeBackend, fake_model, fake_registry, make_test_service, server_error

        backend = FakeBackend()
        if primary == "fail":
            backend.always("primary", server_error(503))
        resilience = ResilienceSettings(
            breaker_failure_threshold=2, breaker_cooldown_initial=60, max_attempts_per_model=1, backoff_initial=0
        )
        mapping = {"budget": budget} if budget else {}
        registry = fake_registry(fake_model("primary"), fake_model("fallback"), task="summarize", **mapping)
        services["backend"] = backend
        services["service"] = make_test_service(registry, backend=backend, state_store=store, resilience=resilience)

    async def complete(task: str) -> dict[str, Any]:
        result = await services["service"].complete_with_task_model(task, prompt="hello")
        return {
            "model_id": result.model_id,
            "attempts": [[a.model_id, a.outcome, a.error_class] for a in result.attempts],
            "primary_calls": len(services["backend"].calls_for("primary")),
        }

    async def complete_many(task: str, count: int) -> dict[str, Any]:
        from taskmodels.errors import BudgetExceededError

        served = refused = 0
        for _ in range(count):
            try:
                await services["service"].complete_with_task_model(task, prompt="hello")
                served += 1
            except BudgetExceededError:
                refused += 1
        return {"served": served, "refused": refused}

    async def start_priced_service(limit: float, input_tokens: int, output_tokens: int) -> None:
        # Every answer reports the same usage: the test says how many tokens this worker's prompt really is.
        from taskmodels.testing import FakeBackend, Reply, fake_model, fake_registry, make_test_service
        from taskmodels.types import Usage

        backend = FakeBackend(default=Reply("answer", usage=Usage(input_tokens, output_tokens)))
        budget = {"limit": limit, "windowSeconds": 3600}
        registry = fake_registry(fake_model("primary"), task="summarize", budget=budget)
        services["service"] = make_test_service(registry, backend=backend, state_store=store)

    async def complete_text_many(task: str, prompt: str, lanes: int, per_lane: int, start_at: float) -> dict[str, Any]:
        from taskmodels.errors import BudgetExceededError

        await asyncio.sleep(max(0.0, start_at - time.time()))
        costs: list[float] = []
        refused = 0

        async def lane() -> None:
            nonlocal refused
            for _ in range(per_lane):
                try:
                    result = await services["service"].complete_with_task_model(task, prompt=prompt)
                except BudgetExceededError:
                    refused += 1
                else:
                    costs.append(result.cost)

        await asyncio.gather(*(lane() for _ in range(lanes)))
        return {"served": len(costs), "refused": refused, "costs": costs}

    async def spend_now(scope: str, window: float) -> float:
        return await store.spend(scope, window=window, now=time.time())

    async def events() -> list[str]:
        return [str(e["event"]) for e in logged.entries]

    return {
        "start_service": start_service,
        "complete": complete,
        "complete_many": complete_many,
        "start_priced_service": start_priced_service,
        "complete_text_many": complete_text_many,
        "spend_now": spend_now,
        "events": events,
        "admit": admit,
        "record_failure": record_failure,
        "record_success": record_success,
        "breaker": breaker,
        "reserve_many": reserve_many,
        "spend": spend,
    }


async def _serve(url: str, namespace: str, operation_timeout: float, retry_interval: float) -> None:
    settings = StateSettings(
        backend="redis",
        url=SecretStr(url),
        namespace=namespace,
        operation_timeout=operation_timeout,
        retry_interval=retry_interval,
    )
    logged = LogCapture()  # stdout carries the replies, so log events are kept and asked for
    structlog.configure(processors=[logged])
    store = RedisStateStore.from_settings(settings)
    ops = _ops(store, logged)
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        result = await ops[command["op"]](**command["args"])
        print(json.dumps({"result": result, "on_redis": store.on_redis}), flush=True)
    await store.aclose()


# --- the test side ---------------------------------------------------------------------------


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
    raise SystemExit(0)


from tests.integration.redisserver import RedisServer, require_redis_server  # noqa: E402 - a worker needs none of this
from tests.integration.workers import LineWorker  # noqa: E402

pytestmark = pytest.mark.integration


class Worker(LineWorker):
    def __init__(
        self, url: str, namespace: str, *, operation_timeout: float = 1.0, retry_interval: float = 5.0
    ) -> None:
        argv = [sys.executable, __file__, url, namespace, str(operation_timeout), str(retry_interval)]
        super().__init__(argv, reply_timeout=REPLY_TIMEOUT)

    def send(self, op: str, **args: Any) -> None:
        self.send_json({"op": op, "args": args})

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.receive()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer.launch() as server:
        yield server


@pytest.fixture
def start_workers(redis_server: RedisServer) -> Iterator[Callable[..., list[Worker]]]:
    started: list[Worker] = []

    def start(n: int, namespace: str, **options: float) -> list[Worker]:
        workers = [Worker(redis_server.url, namespace, **options) for _ in range(n)]
        started.extend(workers)
        for w in workers:  # they start in parallel; wait for each in turn
            assert w.receive() == {"ready": True}
        return workers

    yield start
    for w in started:
        w.close()


def namespace() -> str:
    return f"mp-{uuid.uuid4().hex[:10]}"


def test_an_outage_seen_by_one_process_opens_the_breaker_for_the_others(
    start_workers: Callable[..., list[Worker]],
) -> None:
    a, b, c = start_workers(3, namespace())
    for n in (1, 2):
        assert a.ask("record_failure", key="gpt", now=T0, threshold=3, cooldown=30)["result"] == ["closed", n, None]
    assert b.ask("admit", key="gpt", now=T0)["result"] == [True, False, None]
    assert a.ask("record_failure", key="gpt", now=T0, threshold=3, cooldown=30)["result"] == ["open", 3, T0 + 30]

    reply = b.ask("admit", key="gpt", now=T0 + 1)
    assert reply == {"result": [False, False, T0 + 30], "on_redis": True}
    assert c.ask("breaker", key="gpt", now=T0 + 1)["result"] == ["open", 3, T0 + 30]

    # After the cooldown exactly one process gets the probe; its success closes the breaker for all.
    assert b.ask("admit", key="gpt", now=T0 + 30)["result"] == [True, True, None]
    assert c.ask("admit", key="gpt", now=T0 + 31)["result"] == [False, False, T0 + 35]
    assert b.ask("record_success", key="gpt", now=T0 + 32)["result"] == "closed"
    assert a.ask("admit", key="gpt", now=T0 + 32)["result"] == [True, False, None]
    assert c.ask("breaker", key="gpt", now=T0 + 32)["result"] == ["closed", 0, None]


def test_a_model_service_outage_in_one_process_opens_the_breaker_for_another(
    start_workers: Callable[..., list[Worker]],
) -> None:
    failing, healthy = start_workers(2, namespace())
    failing.ask("start_service", primary="fail")  # its primary answers 503
    healthy.ask("start_service", primary="ok")  # its primary would answer

    assert healthy.ask("complete", task="summarize")["result"]["model_id"] == "primary"
    for _ in range(2):  # the breaker threshold
        served = failing.ask("complete", task="summarize")["result"]
        assert served["model_id"] == "fallback"
        assert served["attempts"][0] == ["primary", "error", "ProviderUnavailableError"]

    reply = healthy.ask("complete", task="summarize")
    assert reply["on_redis"]
    served = reply["result"]
    assert served["model_id"] == "fallback"
    assert served["attempts"][0] == ["primary", "skipped", "CircuitOpen"]
    assert served["primary_calls"] == 1  # only the call made before the outage


@pytest.mark.parametrize(("amount", "limit"), [(1.0, 100.0), (0.3, 10.0)])
def test_processes_reserving_against_one_limit_never_exceed_it(
    start_workers: Callable[..., list[Worker]], amount: float, limit: float
) -> None:
    workers = start_workers(4, namespace())
    count = int(limit / amount)  # each could take the whole budget alone
    start_at = time.time() + 0.5
    for w in workers:
        w.send("reserve_many", scope="task:summarize", amount=amount, limit=limit, count=count, start_at=start_at)
    replies = [w.receive()["result"] for w in workers]
    assert all(r["all_on_redis"] for r in replies)
    accepted = sum(r["accepted"] for r in replies)
    total = workers[0].ask("spend", scope="task:summarize")["result"]
    assert total <= limit
    assert total > limit - amount  # the budget was used up, not merely respected
    assert accepted == round(total / amount)
    # Which processes won is up to the scheduler (on a busy 2-core machine one may take the
    # whole budget before the others run), so it is not asserted; each tried to take it all.


def test_model_services_in_several_processes_share_one_task_budget(
    start_workers: Callable[..., list[Worker]],
) -> None:
    workers = start_workers(3, namespace())
    # Each answer costs 15 tokens at 0.001 per 1k: 40 calls cost 0.0006, within the limit for one
    # process alone, but not for three sharing it.
    limit = 0.001
    for w in workers:
        w.ask("start_service", primary="ok", budget={"limit": limit, "windowSeconds": 3600})
    for w in workers:
        w.send("complete_many", task="summarize", count=40)
    replies = [w.receive() for w in workers]
    assert all(r["on_redis"] for r in replies)
    served = sum(r["result"]["served"] for r in replies)
    refused = sum(r["result"]["refused"] for r in replies)
    assert served + refused == 120
    assert refused > 0  # the processes counted each other's spend
    spent = workers[0].ask("spend_now", scope="budget:summarize", window=3600)["result"]
    assert spent <= limit
    assert spent == pytest.approx(served * 15 / 1000 * 0.001)


# Prompts where a token is close to one character, or to one byte: what characters/4 under-counted.
SCRIPT_PROMPTS = {
    "cjk": "人工知能は言語モデルの研究を進めています。数据中心的模型选择。한국어 문장도 있습니다。" * 15,
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 18,
    "emoji": "🙂👍🏽🚀👨‍👩‍👧‍👦🇺🇦" * 40,
    "code": "def f(xs):\n    return {k: [v ** 2 for v in vs] for k, vs in xs.items() if k}\n" * 24,
}
TEMPLATE_TOKENS = 7  # a chat template's tokens around one user message and before the reply


def test_a_shared_budget_holds_for_prompts_in_any_script(start_workers: Callable[..., list[Worker]]) -> None:
    """Four processes, one script each, race on one task budget through redis.

    Each answer reports, as its input tokens, the most any byte-level or byte-fallback tokenizer can
    make of its prompt: one token per UTF-8 byte, plus the chat template; and the full ``maxTokens`` of
    output. An estimate of characters/4 reserved a fraction of that and let the processes spend several
    times the limit between them; the promise is that the shared spend passes the limit by at most one
    call's cost.
    """
    limit = 0.03  # USD; each call costs about $0.002, so one process alone could spend it all
    output_tokens = 100  # the fake model's maxTokens: what a reservation counts on
    workers = start_workers(len(SCRIPT_PROMPTS), namespace())
    for w, prompt in zip(workers, SCRIPT_PROMPTS.values(), strict=True):
        tokens = len(prompt.encode("utf-8")) + TEMPLATE_TOKENS
        assert len(prompt) / 4 < tokens / 2.5  # characters/4 is well under the real count for every script
        w.ask("start_priced_service", limit=limit, input_tokens=tokens, output_tokens=output_tokens)
    start_at = time.time() + 0.5
    for w, prompt in zip(workers, SCRIPT_PROMPTS.values(), strict=True):
        w.send("complete_text_many", task="summarize", prompt=prompt, lanes=4, per_lane=6, start_at=start_at)
    replies = [w.receive() for w in workers]
    assert all(r["on_redis"] for r in replies)
    costs = [cost for r in replies for cost in r["result"]["costs"]]
    refused = sum(r["result"]["refused"] for r in replies)
    assert len(costs) + refused == 4 * 4 * 6
    assert refused > 0  # the limit was reached
    spent = workers[0].ask("spend_now", scope="budget:summarize", window=3600)["result"]
    assert spent == pytest.approx(sum(costs))  # every reservation was settled to the real cost
    one_call = max(costs)
    overshoot = spent - limit
    print(f"\nbudget ${limit}: spent ${spent:.6f} in {len(costs)} calls", end=", ")
    print(f"overshoot ${overshoot:.6f}, one call ${one_call:.6f}")
    assert overshoot <= one_call
    assert spent > limit - 2 * one_call  # and the budget was used, not merely respected


async def test_killing_redis_loses_no_call_and_restarting_resumes_sharing(  # noqa: C901, PLR0915 - one scenario: kill, serve, restart, share again
    redis_server: RedisServer, start_workers: Callable[..., list[Worker]]
) -> None:
    ns = namespace()
    (other,) = start_workers(1, ns, operation_timeout=0.5, retry_interval=0.05)
    clock = [0.0]
    settings = StateSettings(
        backend="redis", url=SecretStr(redis_server.url), namespace=ns, operation_timeout=0.5, retry_interval=1.0
    )
    store = RedisStateStore.from_settings(settings, monotonic=lambda: clock[0])  # retries on this test's clock

    with capture_logs() as logs:
        for _ in range(3):
            await store.record_failure("before", now=T0, threshold=3, cooldown=30)
        assert other.ask("admit", key="before", now=T0 + 1)["result"] == [False, False, T0 + 30]

        # Calls in flight while the server dies: every one of them returns an answer.
        async def call(i: int) -> object:
            if i % 2:
                return await store.admit(f"k{i % 7}", now=T0, probe_lease=5)
            return await store.reserve_spend("task", 0.01, limit=1e9, window=DAY, now=T0)

        killed = threading.Event()

        def kill() -> None:
            redis_server.kill()
            killed.set()

        warmed_up = asyncio.Event()

        async def calls() -> list[object]:
            results: list[object] = []
            after_kill = 0
            while after_kill < 100:
                async with asyncio.timeout(2.0):
                    results.append(await call(len(results)))
                if len(results) == 20:
                    warmed_up.set()
                after_kill += killed.is_set()
                await asyncio.sleep(0)  # local answers never yield; the loop must still run
            return results

        running = asyncio.create_task(calls())
        await warmed_up.wait()  # the first calls reach Redis before it dies
        assert store.on_redis
        await asyncio.to_thread(kill)
        results = await running
        assert len(results) >= 120
        assert all(r is not None for r in results)
        assert not store.on_redis

        # Local answers while Redis is down are the memory store's, bounded like every call.
        started = time.monotonic()
        for _ in range(3):
            snap = await store.record_failure("during", now=T0, threshold=3, cooldown=30)
        assert snap.state == "open"
        assert not (await store.admit("during", now=T0 + 1, probe_lease=5)).allowed
        assert time.monotonic() - started < 2.0
        assert other.ask("admit", key="x", now=T0)["on_redis"] is False

        redis_server.start()  # same port, empty: nothing is persisted
        assert (await store.admit("after", now=T0, probe_lease=5)).allowed
        assert not store.on_redis  # the retry interval has not passed on the store's clock
        clock[0] += 1.0
        for _ in range(3):
            await store.record_failure("after", now=T0, threshold=3, cooldown=30)
        assert store.on_redis

    assert len([e for e in logs if e["event"] == "taskmodels.state.redis_lost"]) == 1
    assert len([e for e in logs if e["event"] == "taskmodels.state.redis_restored"]) == 1

    # The other process finds Redis again on its own retry timer and sees the new state.
    deadline = time.monotonic() + 10.0
    while True:
        reply = other.ask("admit", key="after", now=T0 + 1)
        if reply["on_redis"] or time.monotonic() > deadline:
            break
    assert reply == {"result": [False, False, T0 + 30], "on_redis": True}
    assert other.ask("events")["result"] == ["taskmodels.state.redis_lost", "taskmodels.state.redis_restored"]
    await store.aclose()
