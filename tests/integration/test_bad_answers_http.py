"""A few fixed bad answers of every protocol, served over real HTTP on 127.0.0.1 through both transports: each
ends in an InvalidResponseError, as on httpx2.MockTransport (tests/providers/test_answer_fuzz.py fuzzes them
there), never in a raw error or a wrong-typed result."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskmodels.errors import InvalidResponseError
from taskmodels.http_client import build_http_client
from taskmodels.providers.base import BaseModelProvider
from taskmodels.sections import HttpSettings
from tests.conftest import IN_CI
from tests.integration.faultserver import Behaviour, FaultServer
from tests.providers.kinds import build
from tests.providers.wire import (
    KEY,
    REQUEST,
    WIRES,
    Wire,
    body_bytes,
    check_completion,
    check_embedding,
    check_events,
    put,
)

if not IN_CI:  # in CI the dev group installs aiohttp: a missing one fails where the client is built
    pytest.importorskip("aiohttp")

TRANSPORTS = ["httpx2", "aiohttp"]
MODEL = "some-model"  # tests/providers/kinds.py's modelName: the fault server keys its scripts by it
# A redirect's target: loopback, so that a transport following it could reach nothing outside this machine.
LOCATION = f"http://127.0.0.9:9/v1/chat/completions?key={KEY}"


def _json(body: Any) -> Behaviour:
    return Behaviour.raw(200, json.dumps(body))


def _stream(wire: Wire, field: str, value: Any) -> Behaviour:
    index, *rest = wire.stream_paths[field]
    assert isinstance(index, int)
    events = list(wire.events)
    events[index] = (events[index][0], put(events[index][1], tuple(rest), value))
    kind = "application/x-ndjson" if wire.framing == "ndjson" else "text/event-stream"
    return Behaviour.raw(200, body_bytes(wire, events), content_type=kind)


def cases(kind: str) -> list[tuple[str, str, Behaviour]]:
    """``(what, operation, answer)`` for each fixed bad answer ``kind`` can be sent."""
    wire = WIRES[kind]
    out = [
        ("a 401-digit usage count", "complete", _json(put(wire.completion, wire.paths["usage"], 10**400))),
        ("a model name that is a list", "complete", _json(put(wire.completion, wire.paths["model"], ["m"]))),
        ("a tool name that is an object", "complete", _json(put(wire.completion, wire.paths["tool_name"], {}))),
        ("JSON nested too deep", "complete", Behaviour.raw(200, "[" * 50_000 + "]" * 50_000)),
        ("a redirect", "complete", Behaviour.raw(302, "", headers={"Location": LOCATION})),
        ("204 No Content", "complete", Behaviour.raw(204, "")),
        ("a stream text that is a number", "stream", _stream(wire, "text", 5)),
        ("a stream usage count that is a string", "stream", _stream(wire, "usage", "12")),
        ("a stream answered 201", "stream", Behaviour.raw(201, body_bytes(wire, wire.events))),
    ]
    if wire.embedding is not None:
        out += [
            ("one vector for two texts", "embed", _json(wire.embedding(1))),
            ("a vector of strings", "embed", _json(put(wire.embedding(2), wire.embedding_paths["vector"], ["0.1"]))),
        ]
    return out


def provider(kind: str, server: FaultServer, client: Any) -> BaseModelProvider:
    root = f"http://127.0.0.1:{server.port}"
    base_url = server.base_url if kind in {"openai", "openai-compatible"} else root
    return build(kind, client, key=KEY, base_url=base_url)


async def outcome(provider: BaseModelProvider, operation: str) -> str:
    """The InvalidResponseError's message, or ``"answered"`` for a well-typed result (a check failing raises)."""
    try:
        if operation == "complete":
            check_completion(await provider.complete(REQUEST))
        elif operation == "stream":
            check_events([event async for event in provider.stream(REQUEST)])
        else:
            check_embedding(await provider.embed(["first", "second"]), 2)
    except InvalidResponseError as exc:
        return str(exc)
    return "answered"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_fixed_bad_answers_are_invalid_responses_on_both_transports(
    fault_server: FaultServer, transport: str
) -> None:
    messages: dict[tuple[str, str], str] = {}
    async with build_http_client(HttpSettings(transport=transport)) as client:  # type: ignore[arg-type]
        for kind in WIRES:
            for what, operation, answer in cases(kind):
                fault_server.script(MODEL, [answer])
                messages[kind, what] = await outcome(provider(kind, fault_server, client), operation)
    assert [case for case, message in messages.items() if message == "answered"] == []
    assert [case for case, message in messages.items() if KEY in message] == []
    for kind in WIRES:
        assert "redirect to host 127.0.0.9" in messages[kind, "a redirect"]
        assert "/v1/chat" not in messages[kind, "a redirect"]
    assert len(fault_server.requests(MODEL)) == len(messages)
