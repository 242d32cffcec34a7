"""Three gateway replicas on one real redis-server, hammered through the ``openai`` SDK, counted at the upstream
(the fault server): a key's rpm and budget hold across the fleet, a reload of the keys reaches every replica, and
Redis killed mid-run fails no request while limits fall back to each replica and come back with it.

Each replica is ``taskmodels serve`` with its wall clock scaled (``govreplica.py``): a key's minute is
``60 / SCALE`` real seconds. Every upstream request carries the reservation that admitted it (its id, the store's
time for it, and whether Redis or the replica's memory answered), so the upstream counts requests two ways: as they
arrive, in any whole minute, which is what a provider counts; and by the store's time, in any minute and margin,
which is what the gateway holds. The two differ by the delay between a request's admission and its arrival (a Redis
round trip, then the HTTP request): the gateway holds each key's window a margin longer than its minute
(``TASKMODELS_GATEWAY__RATE_MARGIN``; here 0.5 real seconds) so that the spread of those delays, measured here, stays
inside it and no minute of arrivals holds more than ``rpm``.

The whole module runs in about 40 s: 3 replicas started twice (about 3 s each time), the rpm run for 2.5 windows
(7.5 s), the budget until spent (a few seconds), the outage run for about 7 windows (21 s).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from pydantic import SecretStr

from taskmodels.gateway.keys import key_digest
from taskmodels.gateway.keysfile import load_keys
from taskmodels.resilience.redis import RedisStateStore
from taskmodels.sections import StateSettings
from tests.integration.faultserver import FaultServer, SeenRequest, model_entry
from tests.integration.gatewayserver import GatewayProcess, ThreadedFaultServer
from tests.integration.govreplica import MINUTE, RESERVATION
from tests.integration.redisserver import RedisServer, require_redis_server

pytestmark = pytest.mark.integration

SCALE = 20.0
WINDOW = MINUTE / SCALE  # real seconds: 3
MARGIN = 0.5 * SCALE  # the key windows' margin on the replicas' clock: 0.5 real seconds
REPLICAS = 3
LANES = 3  # concurrent clients per replica
RPM = 30
BUDGET = 0.05
PRICE = 0.1  # USD per 1K tokens: the fault server's answer (11 + 4 tokens) costs $0.0015
ANSWER_COST = 15 * PRICE / 1000
MAX_TOKENS = 8
# Prompts in several scripts: a reservation counts each prompt's UTF-8 bytes as tokens, whatever the script.
PROMPTS = ["hello", "héllo wörld", "Привет, мир", "你好，世界", "مرحبا بالعالم", "नमस्ते दुनिया", "🙂🙃 emoji", "Γειά σου"]
KEYS = {
    "fleet-rpm": "tm-fleet-rpm-0123456789abcdefghijklmnopqrstuvwxyzAB",
    "fleet-budget": "tm-fleet-budget-0123456789abcdefghijklmnopqrstuvwxy",
    "fleet-kill": "tm-fleet-kill-0123456789abcdefghijklmnopqrstuvwxyzA",
    "fleet-late": "tm-fleet-late-0123456789abcdefghijklmnopqrstuvwxyzA",
}
BUDGET_WINDOW = 864_000.0  # ten days of the replicas' clock (12 real hours): no window ends during a test


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    with ThreadedFaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer.launch() as server:
        yield server


def write_keys(path: Path, *names: str) -> Path:
    entries: dict[str, dict[str, Any]] = {
        "fleet-rpm": {"tasks": ["rpm"], "rpm": RPM},
        "fleet-budget": {"tasks": ["budget"], "budget": {"limit": BUDGET, "windowSeconds": BUDGET_WINDOW}},
        "fleet-kill": {"tasks": ["kill"], "rpm": 20},
        "fleet-late": {"tasks": ["rpm"]},
    }
    keys = [{"name": name, "sha256": key_digest(KEYS[name]), **entries[name]} for name in names]
    path.write_text(json.dumps({"keys": keys}))
    return path


def write_registry(fault: FaultServer, path: Path) -> Path:
    url = fault.base_url
    models = [model_entry(f"m-{task}", url, costPer1kTokens=PRICE) for task in ("rpm", "budget", "kill")]
    tasks = [{"taskName": task, "primaryModelId": f"m-{task}"} for task in ("rpm", "budget", "kill")]
    path.write_text(json.dumps({"models": models, "taskMappings": tasks, "defaultModelId": "m-rpm"}))
    return path


def fleet_env(redis: RedisServer, keys: Path, **more: str) -> dict[str, str]:
    return {
        "GOV_TEST_SCALE": str(SCALE),
        "TASKMODELS_STATE__BACKEND": "redis",
        "TASKMODELS_STATE__URL": redis.url,
        "TASKMODELS_STATE__NAMESPACE": f"fleet-{uuid.uuid4().hex[:8]}",
        # Generous: on a loaded machine a Redis round trip has taken over 0.5 s, and a fallback to memory is not
        # what the rpm and budget tests measure (the outage test sets its own).
        "TASKMODELS_STATE__OPERATION_TIMEOUT": "5",
        "TASKMODELS_RESILIENCE__MAX_ATTEMPTS_PER_MODEL": "1",
        "TASKMODELS_GATEWAY__KEYS_FILE": str(keys),
        "TASKMODELS_GATEWAY__RELOAD_INTERVAL": "0.2",
        "TASKMODELS_GATEWAY__SHUTDOWN_GRACE": "2",
        "TASKMODELS_GATEWAY__RATE_MARGIN": str(MARGIN),
        **more,
    }


def start_fleet(stack: ExitStack, registry: Path, env: dict[str, str]) -> list[GatewayProcess]:
    """``REPLICAS`` replicas started side by side, each stopped when ``stack`` closes."""

    def start(_: int) -> GatewayProcess:
        return GatewayProcess.start(registry, env=env, launcher="tests.integration.govreplica", timeout=60)

    with ThreadPoolExecutor(REPLICAS) as pool:
        replicas = list(pool.map(start, range(REPLICAS)))
    for replica in replicas:
        stack.enter_context(replica)
    return replicas


@pytest.fixture(scope="module")
def fleet(
    fault: FaultServer, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[GatewayProcess], Path, dict[str, str]]]:
    where = tmp_path_factory.mktemp("fleet")
    keys = write_keys(where / "keys.json", "fleet-rpm", "fleet-budget")
    env = fleet_env(redis, keys)
    with ExitStack() as stack:
        yield start_fleet(stack, write_registry(fault, where / "registry.json"), env), keys, env


# --- hammering ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    at: float  # time.monotonic() when the answer came
    replica: int
    status: int | str  # an HTTP status, or the class of a connection error
    code: str | None = None


async def hammer(
    replicas: Sequence[GatewayProcess],
    key: str,
    task: str,
    *,
    until: float,
    stop_when_spent: bool = False,
    stop: asyncio.Event | None = None,
    outcomes: list[Outcome] | None = None,
) -> list[Outcome]:
    """``LANES`` clients per replica calling ``task`` with ``key`` until ``until`` (``time.monotonic()``) or ``stop``
    is set, or, with ``stop_when_spent``, until each was refused by the key's budget. Each answer goes into
    ``outcomes`` as it comes."""
    outcomes = [] if outcomes is None else outcomes
    stop = stop or asyncio.Event()

    async def lane(number: int, client: openai.AsyncOpenAI, replica: int) -> None:
        turn = number
        while time.monotonic() < until and not stop.is_set():
            prompt = PROMPTS[turn % len(PROMPTS)]
            turn += 1
            messages = [{"role": "user", "content": prompt}]
            try:
                await client.chat.completions.create(model=task, messages=messages, max_tokens=MAX_TOKENS)
            except openai.RateLimitError as exc:
                outcomes.append(Outcome(time.monotonic(), replica, 429, exc.code))
                if stop_when_spent and exc.code == "budget_exceeded":
                    return
                await asyncio.sleep(0.02)  # a refused client waits a little, as the SDK would (much longer)
            except openai.APIStatusError as exc:
                outcomes.append(Outcome(time.monotonic(), replica, exc.status_code, exc.code))
            except openai.APIConnectionError as exc:
                outcomes.append(Outcome(time.monotonic(), replica, type(exc).__name__))
            else:
                outcomes.append(Outcome(time.monotonic(), replica, 200))

    clients = [
        openai.AsyncOpenAI(base_url=replica.base_url, api_key=key, max_retries=0, timeout=30) for replica in replicas
    ]
    try:
        await asyncio.gather(
            *(lane(i * LANES + j, client, i) for i, client in enumerate(clients) for j in range(LANES))
        )
    finally:
        for client in clients:
            await client.close()
    return outcomes


# --- counting at the upstream ---------------------------------------------------------------------------------


def most_in_any_window(times: Sequence[float], window: float) -> int:
    ordered = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - window:
            first += 1
        best = max(best, last - first + 1)
    return best


@dataclass
class Stamp:
    ident: str
    at: float  # the store's time for the reservation (the replicas' scaled clock)
    where: str  # "redis", or "memory": a replica's own, while Redis was lost
    arrived: float  # at the upstream, on the replicas' scale (plus a constant: the clocks' offset)

    @property
    def process(self) -> str:
        return self.ident.split(".", 1)[0]  # new_ident()'s prefix: the replica process's pid


def stamps(seen: Sequence[SeenRequest]) -> list[Stamp]:
    out = []
    for request in seen:
        parts = request.headers.get(RESERVATION, "").split(" ")
        assert len(parts) == 3, f"a request went out without its reservation: {parts}"
        out.append(Stamp(parts[0], float(parts[1]), parts[2], request.at * SCALE))
    assert len({s.ident for s in out}) == len(out), "two requests went out on one reservation"
    return out


def counted(found: Sequence[Stamp]) -> tuple[int, int, float]:
    """The most requests in any minute of arrivals at the upstream, and in any minute and margin of the store's
    times; and the spread of the delays from one to the other (real seconds), which the margin must cover."""
    delays = [s.arrived - s.at for s in found]
    spread = max(delays) - min(delays)
    assert spread < MARGIN, f"requests took up to {spread / SCALE:.2f} s more than others to arrive"
    arrived = most_in_any_window([s.arrived for s in found], MINUTE)
    return arrived, most_in_any_window([s.at for s in found], MINUTE + MARGIN), spread / SCALE


# --- the tests ------------------------------------------------------------------------------------------------


def test_a_key_s_rpm_holds_across_three_replicas(
    fleet: tuple[list[GatewayProcess], Path, dict[str, str]], fault: FaultServer
) -> None:
    replicas, _, _ = fleet
    outcomes = asyncio.run(hammer(replicas, KEYS["fleet-rpm"], "rpm", until=time.monotonic() + 2.5 * WINDOW))
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 429}, statuses
    found = stamps(fault.requests("m-rpm"))
    assert {s.where for s in found} == {"redis"}
    by_arrival, by_store, spread = counted(found)
    served = len(found)
    print(
        f"\nrpm {RPM} on 3 replicas, {2.5 * WINDOW:.1f} s (2.5 of the replicas' minutes, {WINDOW:.0f} s each): "
        f"{served} served, {statuses[429]} refused; most in any minute at the upstream: {by_arrival} as they "
        f"arrived, {by_store} by the store's time (in a minute and margin); delays spread {spread:.3f} s"
    )
    assert statuses[200] == served  # every answer the clients got reached the upstream once
    assert by_arrival <= RPM  # what a provider counting at its door sees
    assert by_store <= RPM
    assert served >= 2 * RPM  # the limit bound, and it was used: not a gateway refusing more than it must
    assert len({o.replica for o in outcomes if o.status == 200}) == REPLICAS
    answered = [o for o in outcomes if o.status == 429]
    assert {o.code for o in answered} == {"rate_limit_exceeded"}


def test_a_key_s_budget_overshoots_by_no_more_than_its_reservations_allow(
    fleet: tuple[list[GatewayProcess], Path, dict[str, str]], fault: FaultServer, redis: RedisServer
) -> None:
    replicas, _, env = fleet
    outcomes = asyncio.run(
        hammer(replicas, KEYS["fleet-budget"], "budget", until=time.monotonic() + 30, stop_when_spent=True)
    )
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 429}, statuses
    assert {o.code for o in outcomes if o.status == 429} == {"budget_exceeded"}
    answered = len(fault.requests("m-budget"))
    assert answered == statuses[200]
    spent_upstream = answered * ANSWER_COST  # what the upstream's usage says the answers cost
    # The bound a request reserves: its prompt's UTF-8 bytes (and 16 tokens of framing) plus max_tokens, priced.
    bounds = [(len(p.encode()) + 16 + MAX_TOKENS) * PRICE / 1000 for p in PROMPTS]
    # Overshoot: a reservation is taken only while spend + reservation stays within the limit, and each answer
    # cost less than its reservation (15 tokens against 29 or more), so the bound on the overshoot, the sum over
    # the calls in flight of what they cost beyond their reservations, is 0 here.
    overshoot_bound = 0.0
    print(
        f"\nbudget ${BUDGET} on 3 replicas: {answered} answers at ${ANSWER_COST:.4f} = ${spent_upstream:.4f} "
        f"upstream; overshoot {max(0.0, spent_upstream - BUDGET):.4f} (bound {overshoot_bound}); "
        f"reservations ${min(bounds):.4f}-${max(bounds):.4f}; {statuses[429]} refused"
    )
    assert spent_upstream <= BUDGET + overshoot_bound + 1e-9
    assert spent_upstream >= BUDGET - max(bounds)  # all of it used, but for less than one reservation
    store = RedisStateStore.from_settings(
        StateSettings(
            backend="redis",
            url=SecretStr(redis.url),
            namespace=env["TASKMODELS_STATE__NAMESPACE"],
            operation_timeout=5.0,
        )
    )

    async def read() -> float:
        try:
            return await store.spend("gateway:key:fleet-budget", window=BUDGET_WINDOW, now=time.time() * SCALE)
        finally:
            await store.aclose()

    assert asyncio.run(read()) == pytest.approx(spent_upstream)  # settled to the answers' cost, nothing held


def test_a_keys_reload_reaches_every_replica(
    fleet: tuple[list[GatewayProcess], Path, dict[str, str]], fault: FaultServer
) -> None:
    replicas, keys, _ = fleet

    def hashes() -> list[str | None]:
        with httpx2.Client(timeout=10, trust_env=False) as http:
            return [http.get(f"{r.url}/readyz").json()["keys"]["hash"] for r in replicas]

    before = hashes()
    assert len(set(before)) == 1
    write_keys(keys, "fleet-rpm", "fleet-budget", "fleet-late")
    expected = load_keys(keys).content_hash
    deadline = time.monotonic() + 20
    while hashes() != [expected] * REPLICAS:
        assert time.monotonic() < deadline, f"not every replica reloaded: {hashes()}"
        time.sleep(0.05)  # poll, bounded: each replica looks at the file every 0.2 s
    for replica in replicas:
        with openai.OpenAI(base_url=replica.base_url, api_key=KEYS["fleet-late"], max_retries=0, timeout=30) as sdk:
            assert sdk.models.list().data[0].id == "rpm"
    keys.write_text('{"keys": [{"name": "broken"}]}')  # a bad file: every replica keeps the last good keys
    deadline = time.monotonic() + 20
    while True:
        with httpx2.Client(timeout=10, trust_env=False) as http:
            reports = [http.get(f"{r.url}/readyz").json() for r in replicas]
        if all(r["status"] == "degraded" for r in reports):
            break
        assert time.monotonic() < deadline, reports
        time.sleep(0.05)
    assert [r["keys"]["hash"] for r in reports] == [expected] * REPLICAS
    write_keys(keys, "fleet-rpm", "fleet-budget", "fleet-late")


def test_redis_lost_mid_run_fails_no_request_and_limits_come_back_with_it(fault: FaultServer, tmp_path: Path) -> None:
    require_redis_server()
    rpm = 20
    with RedisServer.launch() as redis, ExitStack() as stack:
        env = fleet_env(
            redis,
            write_keys(tmp_path / "keys.json", "fleet-kill"),
            TASKMODELS_STATE__OPERATION_TIMEOUT="0.5",
            TASKMODELS_STATE__RETRY_INTERVAL="0.5",
        )
        replicas = start_fleet(stack, write_registry(fault, tmp_path / "registry.json"), env)
        marks: dict[str, float] = {}

        outcomes: list[Outcome] = []

        async def run() -> None:
            start, stop = time.monotonic(), asyncio.Event()
            work = asyncio.ensure_future(
                hammer(replicas, KEYS["fleet-kill"], "kill", until=start + 90, stop=stop, outcomes=outcomes)
            )
            await asyncio.sleep(1.5 * WINDOW)  # the outage's schedule, in real seconds
            marks["lost"] = time.monotonic()
            marks["lost on the replicas' clock"] = time.time() * SCALE
            await asyncio.to_thread(redis.kill)
            await asyncio.sleep(2 * WINDOW)
            await asyncio.to_thread(redis.start)
            marks["back"] = time.monotonic()
            await asyncio.to_thread(all_back_on_redis, replicas)
            marks["all back"] = time.monotonic()
            marks["all back on the replicas' clock"] = time.time() * SCALE
            await asyncio.sleep(2.5 * WINDOW)
            stop.set()
            await work
            marks["end"] = time.monotonic()

        asyncio.run(run())
    statuses = Counter(o.status for o in outcomes)
    found = stamps(fault.requests("m-kill"))
    on_redis = [s for s in found if s.where == "redis"]
    in_memory = [s for s in found if s.where == "memory"]
    per_replica = {p: [s.at for s in in_memory if s.process == p] for p in {s.process for s in in_memory}}
    outage_most = most_in_any_window([s.arrived for s in in_memory], MINUTE)
    print(
        f"\nRedis lost for {marks['back'] - marks['lost']:.1f} s (all replicas back on it "
        f"{marks['all back'] - marks['back']:.1f} s after it returned): {statuses}; "
        f"most in any minute of arrivals on Redis {most_in_any_window([s.arrived for s in on_redis], MINUTE)} "
        f"(rpm {rpm}), per replica in memory {[most_in_any_window(t, MINUTE + MARGIN) for t in per_replica.values()]}"
        f", the fleet in memory {outage_most}"
    )
    assert set(statuses) <= {200, 429}, statuses  # no request failed because Redis did
    assert statuses[200] == len(found)
    assert in_memory, "no replica fell back to its own memory"
    # ... and only while Redis was lost: before it, and once every replica was back, the fleet shared Redis.
    lost, back = marks["lost on the replicas' clock"], marks["all back on the replicas' clock"]
    assert all(lost <= s.at <= back for s in in_memory), [s.at for s in in_memory if not lost <= s.at <= back]
    assert all(most_in_any_window(times, MINUTE + MARGIN) <= rpm for times in per_replica.values())  # each alone
    assert most_in_any_window([s.at for s in on_redis], MINUTE + MARGIN) <= rpm  # the fleet, before and after
    assert most_in_any_window([s.arrived for s in on_redis], MINUTE) <= rpm
    for process, times in per_replica.items():  # every replica that fell back went back to Redis
        assert any(s.process == process and s.at > max(times) for s in on_redis), process


def all_back_on_redis(replicas: Sequence[GatewayProcess], timeout: float = 30.0) -> None:
    """Poll each replica's /readyz (whose probe tries Redis again) until every one says Redis is reachable."""
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=10, trust_env=False) as http:
        while True:
            states: list[Any] = [http.get(f"{r.url}/readyz").json()["state"] for r in replicas]
            if all(state.get("reachable") for state in states):
                return
            assert time.monotonic() < deadline, states
            time.sleep(0.1)  # poll, bounded: the store tries Redis again every 0.5 s
