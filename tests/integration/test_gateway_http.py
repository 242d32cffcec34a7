"""The gateway as users run it: a real ``taskmodels serve`` process (uvicorn), real upstreams (the suite's fault
server, llama.cpp's server, the fake LLM server), driven by the real ``openai`` SDK, sync and async, and by raw
HTTP for the SSE framing.

One gateway serves the module: each scenario is a task of its registry, on models of its own, so that no
breaker or script of one test reaches another.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from pydantic import BaseModel, SecretStr

from taskmodels.fake_server import FakeLLMServer
from taskmodels.resilience.redis import RedisStateStore
from taskmodels.sections import StateSettings
from tests.integration.faultserver import Behaviour, FaultServer, model_entry
from tests.integration.gatewayserver import GatewayProcess, ThreadedFaultServer
from tests.integration.llamacpp import LlamaCppServer
from tests.integration.redisserver import RedisServer, redis_server_available, require_redis_server

pytestmark = pytest.mark.integration

SENTINEL = "sk-sentinel-gw-7f3a9c1e5b2d4680aa11"  # the upstream key: it must never reach a client
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(40)).decode()
BUDGET_WINDOW = 3600.0
HELLO = [{"role": "user", "content": "hello"}]


def _task(name: str, primary: str, *fallbacks: str, **keys: Any) -> dict[str, Any]:
    return {"taskName": name, "primaryModelId": primary, "fallbackModelIds": list(fallbacks), **keys}


def _registry(fault: FaultServer, llama: LlamaCppServer, fake: FakeLLMServer) -> dict[str, Any]:
    url = fault.base_url
    models = [
        model_entry(m, url)
        for m in ("m-ok", "m-a", "m-b", "m-l1", "m-l2", "m-d1", "m-d2", "m-slow", "m-cut", "m-after", "m-hold")
    ]
    models += [
        model_entry("m-secret", url, apiKeyEnv="GATEWAY_TEST_UPSTREAM_KEY"),
        model_entry("m-secret2", url, apiKeyEnv="GATEWAY_TEST_UPSTREAM_KEY"),
        model_entry("m-priced", url, costPer1kTokens=1.0),
        {
            **model_entry("m-vision", url.removesuffix("/v1"), capabilities=["chat", "vision"]),
            "provider": "anthropic",
            "apiKeyEnv": "GATEWAY_TEST_UPSTREAM_KEY",
        },
        {
            "id": "tiny",
            "provider": "openai-compatible",
            "modelName": "tiny-llama",
            "maxTokens": 16,
            "temperature": 0.8,
            "contextWindow": 256,
            "costPer1kTokens": 0.0,
            "capabilities": ["chat", "json_schema", "embedding"],
            "baseUrl": llama.v1_url,
        },
        {
            "id": "fake-tools",
            "provider": "openai-compatible",
            "modelName": "fake-tools",
            "maxTokens": 64,
            "temperature": 0.0,
            "contextWindow": 8192,
            "costPer1kTokens": 0.0,
            "capabilities": ["chat", "tools"],
            "baseUrl": fake.openai_base_url,
        },
    ]
    tasks = [
        _task("ok", "m-ok"),
        _task("fallback", "m-a", "m-b"),
        _task("limited", "m-l1", "m-l2"),
        _task("down", "m-d1", "m-d2"),
        _task("slow", "m-slow", timeouts={"deadline": 1.0, "attemptTimeout": 0.8}),
        _task("cut", "m-cut", "m-after", streamPolicy="restart"),
        _task("held", "m-hold", budget={"limit": 100.0, "windowSeconds": BUDGET_WINDOW}),
        _task("secret", "m-secret", "m-secret2"),
        _task("vision", "m-vision"),
        _task("chat", "tiny"),
        _task("tools", "fake-tools"),
    ]
    # The default model ends every chain: one that can never be used (no key), so no scenario is rescued by it.
    models.append({**model_entry("m-default", url), "provider": "openai", "apiKeyEnv": "GATEWAY_TEST_NO_SUCH_KEY"})
    return {"models": models, "taskMappings": tasks, "defaultModelId": "m-default"}


@pytest.fixture(scope="module")
def fault() -> Iterator[FaultServer]:
    with ThreadedFaultServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer.launch() as server:
        yield server


def _env(redis: RedisServer, **more: str) -> dict[str, str]:
    return {
        "GATEWAY_TEST_UPSTREAM_KEY": SENTINEL,
        "TASKMODELS_STATE__BACKEND": "redis",
        "TASKMODELS_STATE__URL": redis.url,
        "TASKMODELS_STATE__NAMESPACE": "gw-test",
        "TASKMODELS_RESILIENCE__MAX_ATTEMPTS_PER_MODEL": "1",
        "TASKMODELS_RESILIENCE__BACKOFF_INITIAL": "0",
        "TASKMODELS_RESILIENCE__STALL_TIMEOUT": "30",
        "TASKMODELS_GATEWAY__SHUTDOWN_GRACE": "3",
        **more,
    }


@pytest.fixture(scope="module")
def gateway(
    fault: FaultServer,
    llamacpp_server: LlamaCppServer,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    with FakeLLMServer() as fake:
        path = tmp_path_factory.mktemp("gateway") / "modelRegistry.json"
        path.write_text(json.dumps(_registry(fault, llamacpp_server, fake)))
        with GatewayProcess.start(path, env=_env(redis)) as process:
            yield process


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key="not-checked", max_retries=0, timeout=30) as sdk:
        yield sdk


# --- answers, through the SDK --------------------------------------------------------------------------


def test_a_completion_and_a_stream_from_llamacpp_with_the_sync_client(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="chat", messages=HELLO, max_tokens=8)
    assert answer.model == "tiny-llama"
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0

    raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO, max_tokens=4)
    assert raw.headers["x-taskmodels-task"] == "chat"
    assert raw.headers["x-taskmodels-model-id"] == "tiny"
    assert raw.headers["x-taskmodels-attempts"] == "1"
    assert float(raw.headers["x-taskmodels-overhead-ms"]) >= 0

    chunks = list(
        client.chat.completions.create(
            model="chat", messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}


async def test_the_async_client_completes_and_streams(gateway: GatewayProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0, timeout=30) as sdk:
        answer = await sdk.chat.completions.create(model="ok", messages=HELLO)
        assert answer.choices[0].message.content == "answer from m-ok"
        assert answer.model == "m-ok"
        stream = await sdk.chat.completions.create(model="ok", messages=HELLO, stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces) == "answer from m-ok"


class Number(BaseModel):
    a: int


def test_parse_with_a_pydantic_model_gets_a_typed_answer(client: openai.OpenAI) -> None:
    # llama.cpp turns the strict schema into a grammar: even random weights write the JSON it asks.
    parsed = client.chat.completions.parse(
        model="chat", messages=[{"role": "user", "content": "a number"}], response_format=Number, max_tokens=64
    )
    value = parsed.choices[0].message.parsed
    assert isinstance(value, Number)


def test_a_full_tool_round_trip(client: openai.OpenAI) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "the weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    first = client.chat.completions.create(model="tools", messages=messages, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    messages.append(choice.message)  # the SDK's own message object, sent back as it is
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'})
    second = client.chat.completions.create(model="tools", messages=messages, tools=tools)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content


def test_embeddings_from_llamacpp_as_floats_and_base64(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="chat", input=["one", "two"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 64  # the tiny model's width
    packed = client.embeddings.create(model="chat", input="one")  # the SDK asks for base64 and decodes it
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-5)


def test_the_models_are_the_tasks(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["ok", "fallback", "limited", "down", "slow", "cut", "held", "secret", "vision", "chat", "tools"]
    one = client.models.retrieve("chat")
    assert (one.id, one.owned_by, one.created) == ("chat", "taskmodels", 1_735_689_600)


# --- errors, as the SDK raises them ------------------------------------------------------------------


def test_each_error_is_the_sdks_exception_class(client: openai.OpenAI, fault: FaultServer) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="ok", messages=HELLO, n=3)
    assert bad.value.param == "n"
    assert bad.value.code == "unsupported_parameter"

    probe = [{"role": "user", "content": "a typo must not reach the default model"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="fallbak", messages=probe)
    assert missing.value.code == "model_not_found"
    assert "did you mean 'fallback'?" in missing.value.message
    assert all(r.body.get("messages") != probe for r in fault.requests())

    fault.always("m-l1", "429:3")
    fault.always("m-l2", "429:7")
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="limited", messages=HELLO)
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.code == "rate_limit_exceeded"

    fault.always("m-d1", "500")
    fault.always("m-d2", "503")
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model="down", messages=HELLO)
    assert down.value.status_code == 502
    assert down.value.code == "all_models_failed"

    fault.always("m-slow", "silent")
    with pytest.raises(openai.APIStatusError) as late:
        client.chat.completions.create(model="slow", messages=HELLO)
    assert late.value.status_code == 504
    assert late.value.code in {"deadline_exceeded", "upstream_timeout"}


def test_no_upstream_key_reaches_the_client(gateway: GatewayProcess, fault: FaultServer) -> None:
    # The upstream refuses the key and echoes it, in its body and a header; then a 400 quoting it.
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {SENTINEL}", "code": "invalid_api_key"}})
    fault.always("m-secret", Behaviour.raw(401, echo, headers={"x-request-id": SENTINEL}))
    fault.always("m-secret2", Behaviour.raw(400, json.dumps({"error": {"message": f"bad stop; key {SENTINEL} ok"}})))
    with httpx2.Client(timeout=30, trust_env=False) as http:
        answer = http.post(f"{gateway.base_url}/chat/completions", json={"model": "secret", "messages": HELLO})
        streamed = http.post(
            f"{gateway.base_url}/chat/completions", json={"model": "secret", "messages": HELLO, "stream": True}
        )
    for response in (answer, streamed):
        assert response.status_code == 400, response.text  # the upstream's 400 is the caller's; its 401 never is
        everything = response.text + json.dumps(dict(response.headers))
        assert SENTINEL[:12] not in everything
        assert "sk-sentinel" not in everything
    assert fault.requests("m-secret")[0].headers["authorization"] == f"Bearer {SENTINEL}"


# --- streams that never lie ------------------------------------------------------------------------


def test_a_stream_cut_upstream_after_content_raises_in_the_sdk(client: openai.OpenAI, fault: FaultServer) -> None:
    fault.always("m-cut", Behaviour.cut(after_chunks=2))
    got: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(model="cut", messages=HELLO, stream=True):
            got.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as broken:
        read()
    assert "".join(got)  # content had gone out: the SDK saw it, then the error, never a quiet end
    assert broken.value.type == "server_error"
    assert fault.hits("m-after") == 0  # the task restarts streams; an OpenAI client could not take it


def test_a_streamed_answer_falls_back_between_upstreams(client: openai.OpenAI, fault: FaultServer) -> None:
    fault.always("m-a", "503")
    raw = client.chat.completions.with_raw_response.create(model="fallback", messages=HELLO, stream=True)
    assert raw.headers["x-taskmodels-model-id"] == "m-b"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "answer from m-b"
    assert fault.hits("m-a") == 1


def test_a_client_that_leaves_mid_stream_cancels_upstream_and_its_reservation(
    gateway: GatewayProcess, fault: FaultServer, redis: RedisServer
) -> None:
    fault.always("m-hold", Behaviour.stall(after_chunks=1))  # one piece, then silence for the stall limit (30 s)
    body = json.dumps({"model": "held", "messages": HELLO, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        seen = b""
        while b'"delta":{"content":' not in seen:  # a text chunk: content went out
            data = sock.recv(65536)
            assert data, seen
            seen += data
        assert _spent(redis, "budget:held") > 0  # the call's reservation is held while it streams
        left_at = time.monotonic()
    deadline = time.monotonic() + 10
    while not fault.closed_by_client("m-hold") and time.monotonic() < deadline:
        time.sleep(0.02)  # poll, bounded: the gateway closes the upstream connection when its client leaves
    (closed,) = fault.closed_by_client("m-hold")
    assert closed - left_at < 5  # at once, not after the 30 s stall limit
    while _spent(redis, "budget:held") and time.monotonic() < deadline:
        time.sleep(0.02)  # poll, bounded: the claim is given back as the cancellation unwinds
    assert _spent(redis, "budget:held") == 0.0  # the reservation came back: nothing was billed


def _spent(redis: RedisServer, scope: str) -> float:
    """What the gateway's budget holds now, read from Redis as another process would."""
    import asyncio

    async def read() -> float:
        settings = StateSettings(backend="redis", url=SecretStr(redis.url), namespace="gw-test")
        store = RedisStateStore.from_settings(settings)
        try:
            return await store.spend(scope, window=BUDGET_WINDOW, now=time.time())
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_image_parts_reach_the_upstream_in_its_own_shape(client: openai.OpenAI, fault: FaultServer) -> None:
    anthropic_answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m-vision",
        "content": [{"type": "text", "text": "a tiny image"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": 4},
    }
    fault.always("m-vision", Behaviour.raw(200, json.dumps(anthropic_answer)))
    content: Any = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    answer = client.chat.completions.create(model="vision", messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "a tiny image"
    (seen,) = fault.requests("m-vision")
    assert seen.path.endswith("/v1/messages")
    assert seen.body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]


# --- the raw framing ---------------------------------------------------------------------------------


def test_the_sse_framing_byte_for_byte(gateway: GatewayProcess, fault: FaultServer) -> None:
    with httpx2.Client(timeout=30, trust_env=False) as http:
        with http.stream(
            "POST", f"{gateway.base_url}/chat/completions", json={"model": "ok", "messages": HELLO, "stream": True}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache"
            raw = b"".join(response.iter_bytes())
        assert raw.endswith(b"\n\ndata: [DONE]\n\n")
        events = raw.split(b"\n\n")[:-1]
        assert all(e.startswith(b"data: ") and b"\n" not in e for e in events)
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

        fault.always("m-cut", Behaviour.cut(after_chunks=1))
        broken = http.post(
            f"{gateway.base_url}/chat/completions", json={"model": "cut", "messages": HELLO, "stream": True}
        )
        last = broken.content.split(b"\n\n")[-2]
        assert json.loads(last.removeprefix(b"data: "))["error"]["type"] == "server_error"
        assert b"[DONE]" not in broken.content

        bad = http.post(f"{gateway.base_url}/chat/completions", content=b"{oops", headers={"content-type": "x"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_json"


# --- processes ---------------------------------------------------------------------------------------


def test_shutdown_lets_a_stream_in_flight_finish(fault: FaultServer, redis: RedisServer, tmp_path: Path) -> None:
    entry = model_entry("m-late", fault.base_url)
    registry = {"models": [entry], "taskMappings": [_task("late", "m-late")], "defaultModelId": "m-late"}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(registry))
    fault.always("m-late", Behaviour.slow_first_token(1.0))
    with (
        GatewayProcess.start(path, env=_env(redis)) as process,
        openai.OpenAI(base_url=process.base_url, api_key="x", max_retries=0) as sdk,
    ):
        stream = sdk.chat.completions.create(model="late", messages=HELLO, stream=True)
        deadline = time.monotonic() + 10
        while not fault.hits("m-late") and time.monotonic() < deadline:
            time.sleep(0.02)  # poll, bounded: the stream's call reached the upstream
        process.terminate()
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "answer from m-late"
        # uvicorn re-raises the signal it handled once it has shut down, so a supervisor sees it: -SIGTERM.
        assert process.wait(20) in {0, -15}
    assert "Application shutdown complete" in process.log()


def test_two_workers_share_one_budget_through_redis(fault: FaultServer, redis: RedisServer, tmp_path: Path) -> None:
    assert redis_server_available()
    entry = model_entry("m-shared", fault.base_url, costPer1kTokens=1.0)
    limit = 0.1  # each answer costs 15 tokens at $1/1K: the estimate admits a few, then none
    task = _task("shared", "m-shared", budget={"limit": limit, "windowSeconds": BUDGET_WINDOW})
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": [entry], "taskMappings": [task], "defaultModelId": "m-shared"}))
    statuses: list[int] = []
    with GatewayProcess.start(path, env=_env(redis), workers=2) as process:
        deadline = time.monotonic() + 30
        while process.log().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # poll, bounded: the first worker answers before the second has started
        for _ in range(12):
            with httpx2.Client(timeout=30, trust_env=False) as http:  # a new connection each: any worker answers
                reply = http.post(f"{process.base_url}/chat/completions", json={"model": "shared", "messages": HELLO})
                statuses.append(reply.status_code)
        log = process.log()
    assert log.count("Application startup complete") == 2
    served = statuses.count(200)
    assert served >= 1
    assert statuses == [200] * served + [429] * (12 - served)  # once spent, spent for every worker
    assert _spent(redis, "budget:shared") == pytest.approx(served * 0.015)
