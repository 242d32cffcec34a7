"""The gateway's ASGI app, driven in-process (tests/gateway_kit.py): OpenAI's shapes in and out, every error's
status and envelope, streams that never lie, limits at the door, a client that leaves, lifespan."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from taskmodels.gateway import GatewayApp, create_app
from taskmodels.redaction import forget_all, remember
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import GatewaySettings, ResilienceSettings
from taskmodels.settings import Settings
from taskmodels.testing import (
    FakeBackend,
    ManualClock,
    auth_error,
    bad_request,
    cut,
    fake_model,
    fake_registry,
    hang,
    make_test_container,
    make_test_service,
    rate_limited,
    reply,
    server_error,
    stall,
)
from taskmodels.types import ToolCall, Usage
from tests.gateway_kit import Answer, Client, sse_events

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]
WINDOW = 3600.0


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "t", "messages": HELLO, **fields}


def gateway(
    backend: FakeBackend,
    *models: dict[str, Any],
    settings: GatewaySettings | None = None,
    resilience: ResilienceSettings | None = None,
    state_store: MemoryStateStore | None = None,
    **mapping: Any,
) -> GatewayApp:
    registry = fake_registry(*(models or (fake_model("a"), fake_model("b"))), **mapping)
    service = make_test_service(
        registry,
        backend=backend,
        resilience=resilience or ResilienceSettings(max_attempts_per_model=1, backoff_initial=0),
        state_store=state_store,
    )
    return GatewayApp(service, settings)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(backend: FakeBackend) -> Client:
    return Client(gateway(backend))


# --- answers ------------------------------------------------------------------------------------------------


async def test_a_completion_in_openais_shape_with_headers_naming_what_served_it(backend: FakeBackend) -> None:
    backend.script("a", server_error(503))
    backend.script("b", reply("hi there", usage=Usage(12, 7, cached_tokens=4, reasoning_tokens=3)))
    answer = await Client(gateway(backend)).post(CHAT, chat())
    assert answer.status == 200
    body = answer.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "b-name"
    assert isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 7,
        "total_tokens": 19,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    headers = answer.headers
    assert headers["x-taskmodels-task"] == "t"
    assert headers["x-taskmodels-model-id"] == "b"
    assert headers["x-taskmodels-attempts"] == "2"
    assert float(headers["x-taskmodels-cost"]) == pytest.approx(19 / 1000 * 0.001)
    assert float(headers["x-taskmodels-overhead-ms"]) >= 0
    assert "x-taskmodels-deployment" not in headers


async def test_the_request_reaches_the_model_as_the_library_takes_it(backend: FakeBackend, client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is in "}, {"type": "text", "text": "this?"}]},
    ]
    answer = await client.post(
        CHAT,
        chat(
            messages=messages,
            max_completion_tokens=40,
            temperature=0.5,
            top_p=0.9,
            stop="END",
            seed=7,
            tools=tools,
            tool_choice="auto",
            user="someone",
            n=1,
            logprobs=False,
        ),
    )
    assert answer.status == 200, answer.body
    request = backend.calls[0].request
    assert request is not None
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].text == "what is in this?"
    assert request.max_tokens == 40
    assert request.temperature == 0.5
    assert request.top_p == 0.9
    assert tuple(request.stop) == ("END",)
    assert request.extra == {"seed": 7}
    assert [t.name for t in request.tools] == ["lookup"]
    assert request.tool_choice == "auto"


async def test_tool_calls_come_back_as_openai_tool_calls(backend: FakeBackend, client: Client) -> None:
    call = ToolCall(id="call_1", name="lookup", arguments='{"q": "x"}')
    backend.script("a", reply("", tool_calls=(call,), finish_reason="tool_calls"))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    answer = await client.post(CHAT, chat(tools=tools))
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    ]
    # The client sends the assistant message back as it got it, then the tool's answer.
    follow_up = chat(
        tools=tools,
        messages=[*HELLO, choice["message"], {"role": "tool", "tool_call_id": "call_1", "content": "found"}],
    )
    again = await client.post(CHAT, follow_up)
    assert again.status == 200, again.body
    sent = backend.calls[1].request
    assert sent is not None
    assert sent.messages[1].tool_calls == (call,)
    assert sent.messages[2].tool_call_id == "call_1"


async def test_an_assistant_message_as_the_sdk_echoes_it_back_is_taken(backend: FakeBackend, client: Client) -> None:
    echoed: dict[str, Any] = {"role": "assistant", "content": "hi", "refusal": None, "annotations": [], "audio": None}
    answer = await client.post(CHAT, chat(messages=[*HELLO, echoed, *HELLO]))
    assert answer.status == 200, answer.body


async def test_image_parts_reach_the_model_as_image_parts(backend: FakeBackend, client: Client) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
    content = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}", "detail": "low"}},
    ]
    answer = await client.post(CHAT, chat(messages=[{"role": "user", "content": content}]))
    assert answer.status == 200, answer.body
    request = backend.calls[0].request
    assert request is not None
    (image,) = request.messages[0].images
    assert (image.media_type, image.detail, image.data) == ("image/png", "low", png)


async def test_embeddings_as_floats_and_as_base64(backend: FakeBackend, client: Client) -> None:
    floats = await client.post("/v1/embeddings", {"model": "t", "input": ["abc", "de"]})
    assert floats.status == 200, floats.body
    body = floats.json()
    assert body["object"] == "list"
    assert body["model"] == "a-name"
    assert [d["embedding"] for d in body["data"]] == [[3.0, 1.0], [2.0, 1.0]]  # the fake's vectors: [len, 1.0]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]
    packed = await client.post("/v1/embeddings", {"model": "t", "input": "abc", "encoding_format": "base64"})
    (item,) = packed.json()["data"]
    assert struct.unpack("<2f", base64.b64decode(item["embedding"])) == (3.0, 1.0)
    assert backend.calls[1].texts == ("abc",)


async def test_the_models_are_the_registrys_tasks(client: Client) -> None:
    listed = await client.get("/v1/models")
    assert listed.json() == {
        "object": "list",
        "data": [{"id": "t", "object": "model", "created": 1_735_689_600, "owned_by": "taskmodels"}],
    }
    one = await client.get("/v1/models/t")
    assert one.json() == {"id": "t", "object": "model", "created": 1_735_689_600, "owned_by": "taskmodels"}
    missing = await client.get("/v1/models/x")
    assert missing.status == 404
    assert missing.error["code"] == "model_not_found"


# --- refusals at the door --------------------------------------------------------------------------------


async def test_an_unknown_task_is_a_404_naming_the_closest_and_never_the_default_model(backend: FakeBackend) -> None:
    # The registry serves unknown tasks with its default model (the settings' default), for code; not here.
    client = Client(gateway(backend, task="clustering"))
    answer = await client.post(CHAT, chat(model="clusterin"))
    assert answer.status == 404
    assert answer.error["code"] == "model_not_found"
    assert answer.error["param"] == "model"
    assert "did you mean 'clustering'?" in answer.error["message"]
    assert backend.calls == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("parallel_tool_calls", False),
        ("frequency_penalty", 0.5),
        ("logit_bias", {"50256": -100}),
        ("reasoning_effort", "high"),
        ("functions", [{"name": "f"}]),
    ],
)
async def test_a_parameter_the_library_cannot_honour_is_a_400_naming_it(
    backend: FakeBackend, client: Client, field: str, value: object
) -> None:
    answer = await client.post(CHAT, chat(**{field: value}))
    assert answer.status == 400
    assert answer.error == {
        "message": answer.error["message"],
        "type": "invalid_request_error",
        "param": field,
        "code": "unsupported_parameter",
    }
    assert backend.calls == []


async def test_an_unknown_parameter_is_a_400_as_openai_answers_it(client: Client) -> None:
    answer = await client.post(CHAT, chat(temprature=0.2))
    assert answer.status == 400
    assert (answer.error["code"], answer.error["param"]) == ("unknown_parameter", "temprature")
    assert answer.error["message"] == "Unknown parameter: 'temprature'."


async def test_null_is_the_same_as_leaving_a_parameter_out(backend: FakeBackend, client: Client) -> None:
    answer = await client.post(CHAT, chat(n=None, logprobs=None, audio=None, temperature=None, stream_options=None))
    assert answer.status == 200, answer.body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(temperature=7), "temperature"),
        (chat(max_completion_tokens=0), "max_completion_tokens"),
        (chat(max_tokens=-1), "max_tokens"),
        (chat(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]), None),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (chat(tool_choice="auto"), "tool_choice"),
        (chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), "response_format.schema"),
        (chat(seed="7"), "seed"),
        (chat(stream="yes"), "stream"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(max_tokens=5, max_completion_tokens=6), None),
        ({"messages": HELLO}, "model"),
        ({"model": "t"}, "messages"),
        ({"model": "t", "messages": []}, "messages"),
        ({"model": 3, "messages": HELLO}, "model"),
    ],
)
async def test_a_wrong_value_is_a_400_naming_its_parameter(
    backend: FakeBackend, client: Client, body: dict[str, Any], param: str | None
) -> None:
    answer = await client.post(CHAT, body)
    assert answer.status == 400, answer.body
    assert answer.error["type"] == "invalid_request_error"
    if param is not None:
        assert answer.error["param"] == param
    else:
        assert answer.error["param"]
    assert backend.calls == []


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_type"), (b'"text"', "invalid_type"), (b"", "invalid_json")],
)
async def test_a_body_that_is_not_a_json_object_is_a_clear_400(client: Client, raw: bytes, code: str) -> None:
    answer = await client.post(CHAT, raw)
    assert answer.status == 400
    assert answer.error["code"] == code


async def test_a_body_over_the_limit_is_a_413_whether_declared_or_sent(backend: FakeBackend) -> None:
    client = Client(gateway(backend, settings=GatewaySettings(max_body_bytes=1000)))
    big = json.dumps(chat(messages=[{"role": "user", "content": "x" * 2000}])).encode()
    declared = await client.post(CHAT, big, headers=[("content-length", str(len(big)))])
    assert declared.status == 413
    assert declared.error["code"] == "request_too_large"
    streamed = await client.post(CHAT, big, chunks=5)  # no content-length: counted as it arrives
    assert streamed.status == 413
    fits = await client.post(CHAT, chat(), chunks=3)
    assert fits.status == 200
    assert backend.models_called() == ["a"]


async def test_unknown_paths_and_methods_are_404_and_405(client: Client) -> None:
    assert (await client.get("/v1/completions")).status == 404
    wrong = await client.get(CHAT)
    assert wrong.status == 405
    assert wrong.headers["allow"] == "POST"
    assert (await client.post("/v1/models", {})).headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("field", "value"),
    [("input", [[1, 2, 3]]), ("input", [1, 2]), ("dimensions", 256), ("encoding_format", "int8"), ("input", [])],
)
async def test_embeddings_refuse_what_they_cannot_honour(client: Client, field: str, value: object) -> None:
    answer = await client.post("/v1/embeddings", {"model": "t", "input": "x", field: value})
    assert answer.status == 400
    assert answer.error["param"] == field


# --- errors of the call -----------------------------------------------------------------------------------


async def test_a_chain_that_ended_in_rate_limits_is_a_429_with_the_soonest_retry_after(backend: FakeBackend) -> None:
    backend.script("a", rate_limited(retry_after=7.2))
    backend.script("b", rate_limited(retry_after=3.5))
    answer = await Client(gateway(backend)).post(CHAT, chat())
    assert answer.status == 429
    assert answer.headers["retry-after"] == "4"
    assert (answer.error["type"], answer.error["code"]) == ("requests", "rate_limit_exceeded")


async def test_every_model_down_is_a_502_and_an_upstream_401_never_the_clients(backend: FakeBackend) -> None:
    backend.script("a", auth_error(401))
    backend.script("b", server_error(503))
    answer = await Client(gateway(backend)).post(CHAT, chat())
    assert answer.status == 502
    assert (answer.error["type"], answer.error["code"]) == ("server_error", "all_models_failed")
    assert "a AuthenticationError 401" in answer.error["message"]


async def test_the_calls_deadline_is_a_504(backend: FakeBackend) -> None:
    backend.always("a", hang())
    backend.always("b", hang())
    resilience = ResilienceSettings(deadline=0.2, attempt_timeout=0.15, max_attempts_per_model=1)
    answer = await Client(gateway(backend, resilience=resilience)).post(CHAT, chat())
    assert answer.status == 504
    assert answer.error["code"] == "deadline_exceeded"


async def test_a_spent_budget_is_a_429_with_the_seconds_until_its_window_ends(backend: FakeBackend) -> None:
    store = MemoryStateStore()
    clock = ManualClock(start=WINDOW * 1000 + WINDOW - 90.5)  # 90.5 s before the window ends
    registry = fake_registry(fake_model("a", price=1.0), budget={"limit": 0.01, "windowSeconds": WINDOW})
    service = make_test_service(registry, backend=backend, state_store=store, wall_clock=clock)
    await store.add_spend("budget:t", 0.01, window=WINDOW, now=clock())
    answer = await Client(GatewayApp(service, wall_clock=clock)).post(CHAT, chat())
    assert answer.status == 429
    assert (answer.error["type"], answer.error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert answer.headers["retry-after"] == "91"
    assert backend.calls == []


async def test_a_bad_request_upstream_is_a_400_without_any_key_it_echoed(backend: FakeBackend) -> None:
    key = "sk-sentinel-0123456789abcdef0123"
    remember(key)
    try:
        backend.script("a", bad_request(f"invalid 'stop' (your key {key} is fine)"))
        answer = await Client(gateway(backend)).post(CHAT, chat())
    finally:
        forget_all()
    assert answer.status == 400
    assert answer.error["code"] == "upstream_bad_request"
    assert "invalid 'stop'" in answer.error["message"]
    assert key[:12] not in answer.body.decode()


async def test_no_upstream_text_reaches_the_client_of_a_502(backend: FakeBackend) -> None:
    backend.script("a", server_error(500, message="stack trace: /srv/secret/config.py line 9"))
    backend.script("b", server_error(503, message="upstream http://10.0.0.7:8080/v1 said no"))
    answer = await Client(gateway(backend)).post(CHAT, chat())
    assert answer.status == 502
    assert "secret" not in answer.body.decode()
    assert "10.0.0.7" not in answer.body.decode()


# --- streams ----------------------------------------------------------------------------------------------


def chunks_of(answer: Answer) -> list[dict[str, Any]]:
    return [json.loads(e) for e in sse_events(answer.body) if e != "[DONE]"]


async def test_a_stream_in_openais_chunks_with_usage_then_done(backend: FakeBackend, client: Client) -> None:
    backend.script("a", reply("one two three", usage=Usage(9, 3, cached_tokens=2)))
    answer = await client.post(CHAT, chat(stream=True, stream_options={"include_usage": True}))
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-taskmodels-model-id"] == "a"
    assert answer.complete
    events = sse_events(answer.body)
    assert events[-1] == "[DONE]"
    chunks = chunks_of(answer)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "a-name" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "one two three"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_a_stream_without_include_usage_has_no_usage_chunk(client: Client) -> None:
    chunks = chunks_of(await client.post(CHAT, chat(stream=True)))
    assert all(c["choices"] and "usage" not in c for c in chunks)


async def test_a_streamed_tool_call_is_one_delta_with_its_index(backend: FakeBackend, client: Client) -> None:
    calls = (ToolCall("c1", "f", '{"a": 1}'), ToolCall("c2", "g", "{}"))
    backend.script("a", reply("", tool_calls=calls, finish_reason="tool_calls"))
    tools = [{"type": "function", "function": {"name": n}} for n in ("f", "g")]
    chunks = chunks_of(await client.post(CHAT, chat(stream=True, tools=tools)))
    tool_deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert tool_deltas == [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"index": 1, "id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_failure_before_content_falls_back_invisibly(backend: FakeBackend, client: Client) -> None:
    backend.script("a", cut(after_chunks=0))
    backend.script("b", reply("from b"))
    answer = await client.post(CHAT, chat(stream=True))
    assert answer.headers["x-taskmodels-model-id"] == "b"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks_of(answer)) == "from b"
    assert sse_events(answer.body)[-1] == "[DONE]"


async def test_a_stream_that_fails_before_content_everywhere_is_an_http_error(backend: FakeBackend) -> None:
    backend.script("a", server_error(503))
    backend.script("b", rate_limited())
    answer = await Client(gateway(backend)).post(CHAT, chat(stream=True))
    assert answer.status == 502
    assert answer.error["code"] == "all_models_failed"


async def test_a_stream_cut_after_content_ends_in_an_error_event_and_no_done(backend: FakeBackend) -> None:
    # The task's own policy would restart on b; an OpenAI client cannot take a restart, so the gateway does not ask.
    backend.script("a", cut(after_chunks=2))
    client = Client(gateway(backend, streamPolicy="restart"))
    answer = await client.post(CHAT, chat(stream=True))
    assert answer.status == 200
    assert answer.complete
    events = sse_events(answer.body)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert set(last) == {"error"}
    assert last["error"]["type"] == "server_error"
    assert backend.models_called() == ["a"]  # b never started: nothing was thrown away


async def test_keep_alive_comments_while_waiting_for_the_first_token(backend: FakeBackend) -> None:
    backend.script("a", hang())  # silent until its first-token limit, then b answers
    backend.script("b", reply("late"))
    resilience = ResilienceSettings(first_token_timeout=0.3, max_attempts_per_model=1)
    settings = GatewaySettings(keepalive_interval=0.05)
    answer = await Client(gateway(backend, settings=settings, resilience=resilience)).post(CHAT, chat(stream=True))
    assert answer.pieces[0] == b": keep-alive\n\n"
    assert answer.headers["x-taskmodels-task"] == "t"
    assert "x-taskmodels-model-id" not in answer.headers  # the headers went out before anyone answered
    assert sse_events(answer.body)[-1] == "[DONE]"


async def test_a_failure_after_a_keep_alive_is_an_error_event_not_a_second_status(backend: FakeBackend) -> None:
    backend.always("a", hang())
    backend.always("b", hang())
    resilience = ResilienceSettings(first_token_timeout=0.2, max_attempts_per_model=1)
    settings = GatewaySettings(keepalive_interval=0.05)
    answer = await Client(gateway(backend, settings=settings, resilience=resilience)).post(CHAT, chat(stream=True))
    assert answer.status == 200
    events = sse_events(answer.body)
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "upstream_timeout"  # both stayed silent


async def test_a_client_that_leaves_mid_stream_cancels_the_call_and_its_reservation(backend: FakeBackend) -> None:
    store = MemoryStateStore()
    backend.script("a", stall(after_chunks=1))  # one chunk, then silence for the stall limit (a minute)
    app = gateway(
        backend,
        fake_model("a", price=1.0),
        state_store=store,
        resilience=ResilienceSettings(stall_timeout=60, max_attempts_per_model=1),
        budget={"limit": 100.0, "windowSeconds": WINDOW},
    )
    async with asyncio.timeout(10):  # generous: the call must end at once, not after the stall limit
        answer = await Client(app).post(CHAT, chat(stream=True), leave_after=1)
    assert answer.pieces  # content went out before the client left
    assert not answer.complete
    assert (app.streams, app.in_flight) == (0, 0)
    assert await store.spend("budget:t", window=WINDOW, now=time.time()) == 0.0  # the reservation came back


async def test_streams_beyond_the_limit_are_a_503_with_retry_after(backend: FakeBackend) -> None:
    backend.script("a", stall(after_chunks=1))
    app = gateway(backend, settings=GatewaySettings(max_streams=1), resilience=ResilienceSettings(stall_timeout=60))
    first_piece = asyncio.Event()
    client = Client(app)
    held = asyncio.create_task(
        client.post(CHAT, chat(stream=True), on_piece=lambda answer: first_piece.set(), leave_after=2)
    )
    async with asyncio.timeout(10):
        await first_piece.wait()
    refused = await client.post(CHAT, chat(stream=True))
    assert refused.status == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.error["code"] == "overloaded"
    assert (await client.post(CHAT, chat())).status == 200  # plain completions are not streams
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held


# --- wiring -----------------------------------------------------------------------------------------------


@pytest.fixture
def container(backend: FakeBackend) -> Iterator[Any]:
    container = make_test_container(
        fake_registry(fake_model("a"), task="clustering"),
        backend=backend,
        settings=Settings(gateway=GatewaySettings(shutdown_grace=5)),
        overrides={"state_store": MemoryStateStore()},
    )
    yield container
    container.reset_override()


async def test_create_app_is_the_containers_gateway_node_and_closes_it_on_shutdown(container: Any) -> None:
    app = create_app(container)
    assert app is container.gateway()
    closed: list[bool] = []
    pool = container.resources()
    pool.add(lambda: _record(closed))
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        messages.put_nowait({"type": kind})
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, messages.get, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert closed == [True]


async def _record(closed: list[bool]) -> None:
    closed.append(True)


async def test_shutdown_lets_a_request_in_flight_finish_first(backend: FakeBackend) -> None:
    backend.script("a", reply("slow", delay=0.2))
    app = gateway(backend)
    request = asyncio.create_task(Client(app).post(CHAT, chat()))
    await asyncio.sleep(0)  # one turn of the loop: the request starts
    for _ in range(100):
        if app.in_flight:
            break
        await asyncio.sleep(0)
    assert await app.drain(5.0)
    assert request.done()
    assert (await request).status == 200


async def test_it_serves_mounted_under_a_prefix(backend: FakeBackend) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/llm", app=gateway(backend))])
    answer = await Client(outer).post("/llm" + CHAT, chat())
    assert answer.status == 200, answer.body
    assert (await Client(gateway(backend), root_path="/llm").get("/v1/models")).status == 200


# --- any body ---------------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
_FIELDS = st.sampled_from(
    ["model", "messages", "stream", "stream_options", "max_tokens", "temperature", "tools", "tool_choice",
     "response_format", "stop", "seed", "n", "user", "input", "encoding_format"]
)  # fmt: skip


@hsettings(max_examples=150)
@given(body=st.dictionaries(_FIELDS, _JSON, max_size=6), path=st.sampled_from([CHAT, "/v1/embeddings"]))
async def test_any_body_gets_an_answer_in_openais_shape_never_a_500(body: dict[str, Any], path: str) -> None:
    body.setdefault("model", "t")
    answer = await Client(gateway(FakeBackend())).post(path, body)
    assert answer.status in {200, 400, 404}, answer.body
    assert answer.complete
    if answer.status != 200:
        error = answer.error
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str)
    elif not body.get("stream"):
        assert answer.json()["object"] in {"chat.completion", "list"}


# --- the command ------------------------------------------------------------------------------------------


def test_the_gateway_imports_without_the_serve_extra() -> None:
    import subprocess
    import sys

    code = "import sys, taskmodels.gateway, taskmodels.containers; assert 'uvicorn' not in sys.modules, 'uvicorn'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_serve_without_uvicorn_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from taskmodels import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert cli.main(["serve"]) == 2
    assert "pip install 'taskmodels[serve]'" in capsys.readouterr().err


def test_serve_checks_the_registry_before_it_starts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskmodels import cli
    from taskmodels.gateway import server

    started: list[object] = []
    monkeypatch.setattr(server, "serve", lambda *a, **kw: started.append(a))
    broken = tmp_path / "registry.json"
    broken.write_text(json.dumps({"models": [], "taskMappings": [], "defaultModelId": "nowhere"}))
    assert cli.main(["serve", "--registry", str(broken)]) == 1
    assert "defaultModelId" in capsys.readouterr().err
    assert started == []
