"""Governance on a real ``taskmodels serve``, driven by the real ``openai`` SDK: a key made with ``taskmodels keys
add`` and used as the docs say, keys that never leave the gateway, the refusal to serve the network without
keys, and several workers' metrics summed. The fleet (three replicas on one Redis) is test_gateway_fleet.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.faultserver import Behaviour, FaultServer, model_entry
from tests.integration.gatewayserver import GatewayProcess, ThreadedFaultServer
from tests.integration.redisserver import free_port

pytestmark = pytest.mark.integration

UPSTREAM = "sk-upstream-gov-5d1c9e7a3b8f"  # the gateway's own key for the upstream
SENTINEL = "tm-SENTINEL-client-key-9f8e7d6c5b4a39281706abcdefgh"  # a client's key: never anywhere but its hash
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    with ThreadedFaultServer() as server:
        yield server


def registry(fault: FaultServer, path: Path, *tasks: tuple[str, str]) -> Path:
    """A registry of one model per task, on the fault server, each model named after its task."""
    models = [model_entry(model, fault.base_url, apiKeyEnv="GOV_TEST_UPSTREAM_KEY") for _, model in tasks]
    mappings = [{"taskName": task, "primaryModelId": model} for task, model in tasks]
    path.write_text(json.dumps({"models": models, "taskMappings": mappings, "defaultModelId": tasks[0][1]}))
    return path


def env(keys: Path | None, **more: str) -> dict[str, str]:
    base = {
        "GOV_TEST_UPSTREAM_KEY": UPSTREAM,
        "TASKMODELS_RESILIENCE__MAX_ATTEMPTS_PER_MODEL": "1",
        "TASKMODELS_GATEWAY__SHUTDOWN_GRACE": "2",
        **more,
    }
    if keys is not None:
        base["TASKMODELS_GATEWAY__KEYS_FILE"] = str(keys)
    return base


def taskmodels(*argv: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in its own process."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TASKMODELS_")}
    return subprocess.run(
        [sys.executable, "-m", "taskmodels.cli", *argv],
        cwd=cwd,
        env={**environment, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_new_user_makes_a_key_and_calls_the_gateway_with_it(fault: FaultServer, tmp_path: Path) -> None:
    # As docs/gateway.md says: point TASKMODELS_GATEWAY__KEYS_FILE at a file, make a key, serve, call.
    keys = tmp_path / "gatewayKeys.json"
    made = taskmodels("keys", "add", "my-app", extra_env={"TASKMODELS_GATEWAY__KEYS_FILE": str(keys)}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tm-")
    assert key not in keys.read_text()
    path = registry(fault, tmp_path / "modelRegistry.json", ("summarize", "m-newuser"))
    with GatewayProcess.start(path, env=env(keys)) as gateway:
        with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30) as client:
            answer = client.chat.completions.create(model="summarize", messages=HELLO)
        assert answer.choices[0].message.content
        with (
            openai.OpenAI(base_url=gateway.base_url, api_key="tm-not-a-key", max_retries=0, timeout=30) as stranger,
            pytest.raises(openai.AuthenticationError) as refused,
        ):
            stranger.chat.completions.create(model="summarize", messages=HELLO)
        assert refused.value.code == "invalid_api_key"
        # The SDK always sends some key: a request without one, by hand.
        with httpx2.Client(timeout=30, trust_env=False) as http:
            reply = http.post(f"{gateway.base_url}/chat/completions", json={"model": "summarize", "messages": HELLO})
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "invalid_api_key"
        listed = taskmodels("keys", "list", "--file", str(keys), cwd=tmp_path)
        assert listed.stdout.splitlines()[1].split()[:3] == ["my-app", "active", "*"]
        assert key not in listed.stdout


def test_a_client_key_reaches_no_upstream_log_error_or_metric(fault: FaultServer, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "keys": [
                    {"name": "app", "sha256": _sha(SENTINEL), "tasks": ["open"], "rpm": 2},
                    {"name": "off", "sha256": _sha(SENTINEL + "-off"), "disabled": True},
                ]
            }
        )
    )
    path = registry(fault, tmp_path / "registry.json", ("open", "m-sentinel"), ("closed", "m-closed"))
    fault.always("m-sentinel", Behaviour.ok())
    # Every log line the gateway writes: uvicorn's access log, and the library's events from DEBUG up.
    extra = {"TASKMODELS_GATEWAY__ACCESS_LOG": "true", "GOV_TEST_LOG": "DEBUG"}
    with GatewayProcess.start(path, env=env(keys, **extra), launcher="tests.integration.govreplica") as gateway:
        seen: list[str] = []
        errors: list[openai.APIStatusError] = []

        def call(api_key: str, task: str) -> None:
            with openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0, timeout=30) as client:
                try:
                    raw = client.chat.completions.with_raw_response.create(model=task, messages=HELLO)
                except openai.APIStatusError as exc:
                    errors.append(exc)
                else:
                    seen.extend([raw.text, json.dumps(dict(raw.headers))])

        call(SENTINEL, "open")
        for api_key, task in ((SENTINEL, "closed"), (SENTINEL + "x", "open"), (SENTINEL + "-off", "open")):
            call(api_key, task)
        fault.always("m-sentinel", "503")
        call(SENTINEL, "open")  # an upstream failure
        call(SENTINEL, "open")  # then the rpm is spent
        assert [e.status_code for e in errors] == [403, 401, 401, 502, 429]
        seen += [e.response.text + json.dumps(dict(e.response.headers)) for e in errors]
        with httpx2.Client(timeout=30, trust_env=False) as http:
            seen += [http.get(f"{gateway.url}/metrics").text, http.get(f"{gateway.url}/readyz").text]
    log = gateway.log()
    # The library's events are there, from DEBUG up: each attempt, each call, each refusal (with the key's name).
    for event in ("taskmodels.call.attempt", "taskmodels.call.finished", "taskmodels.gateway.key_refused"):
        assert f'"event": "{event}"' in log
    assert '"key": "off"' in log
    seen.append(log)
    upstream = fault.requests("m-sentinel")
    assert upstream
    assert {r.headers.get("authorization") for r in upstream} == {f"Bearer {UPSTREAM}"}
    seen += [json.dumps(dict(r.headers)) + json.dumps(r.body) for r in upstream]
    for text in seen:
        assert "SENTINEL" not in text


def _sha(key: str) -> str:
    from taskmodels.gateway.keys import key_digest

    return key_digest(key)


def test_without_keys_it_refuses_to_serve_the_network_unless_told_so(fault: FaultServer, tmp_path: Path) -> None:
    path = registry(fault, tmp_path / "registry.json", ("open", "m-open"))
    everywhere = "0.0.0.0"  # noqa: S104 - the address it must refuse, then take when told so
    refused = taskmodels(
        "serve", "--registry", str(path), "--host", everywhere, "--port", str(free_port()), cwd=tmp_path
    )
    assert refused.returncode == 2
    assert "refusing to serve 0.0.0.0 without keys" in refused.stderr
    assert "--unauthenticated" in refused.stderr
    args = ("--host", everywhere, "--unauthenticated")
    with (
        GatewayProcess.start(path, env=env(None), args=args) as gateway,
        openai.OpenAI(base_url=gateway.base_url, api_key="anything", max_retries=0, timeout=30) as client,
    ):
        assert client.chat.completions.create(model="open", messages=HELLO).choices[0].message.content
        assert "no keys: anyone who can reach it may call every task" in gateway.log()


def test_two_workers_answer_metrics_summed_over_both(fault: FaultServer, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "app", "sha256": _sha(SENTINEL)}]}))
    path = registry(fault, tmp_path / "registry.json", ("open", "m-workers"))
    with GatewayProcess.start(path, env=env(keys), workers=2) as gateway:
        deadline = time.monotonic() + 30
        while gateway.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # poll, bounded: the first worker answers before the second has started
        for _ in range(10):
            with openai.OpenAI(base_url=gateway.base_url, api_key=SENTINEL, max_retries=0, timeout=30) as client:
                client.chat.completions.create(model="open", messages=HELLO)  # a new connection: any worker
        for _ in range(6):  # scraped through whichever worker takes the connection: the same sums
            with httpx2.Client(timeout=30, trust_env=False) as http:
                text = http.get(f"{gateway.url}/metrics").text
            samples = _samples(text)
            labels = (("key", "app"), ("model", "m-workers"), ("status", "200"), ("task", "open"))
            assert samples["taskmodels_gateway_requests_total", labels] == 10
            assert samples["taskmodels_gateway_in_flight_requests", ()] == 0
    assert gateway.log().count("Application startup complete") == 2


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found
