"""Answers that are not what their protocol declares become InvalidResponseError, on every protocol.

Each case is one documented answer (tests/providers/wire.py) with one field broken, as fuzzing found them:
token counts that are not sane integers, texts, names, ids, tool calls and finish reasons of the wrong type,
embeddings with the wrong number of vectors or vectors of non-numbers, and a status other than 200. None may
end in a raw exception or in a result holding a value of the wrong type.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskmodels.errors import InvalidResponseError
from taskmodels.types import StreamEvent
from tests.providers.wire import (
    KEY,
    REQUEST,
    WIRES,
    Path,
    body_bytes,
    check_completion,
    check_embedding,
    check_events,
    complete,
    embed,
    mock_client,
    provider,
    put,
    stream,
)

KINDS = list(WIRES)
EMBEDDERS = [kind for kind, wire in WIRES.items() if wire.embedding is not None]
WITH_IDS = [kind for kind, wire in WIRES.items() if "request_id" in wire.paths]


def embedding(kind: str, n: int = 2) -> dict[str, Any]:
    """``kind``'s documented embedding answer for ``n`` texts."""
    make = WIRES[kind].embedding
    assert make is not None
    return make(n)


def put_event(events: list[tuple[str, Any]], path: Path, value: Any) -> list[tuple[str, Any]]:
    """``events`` with ``value`` at ``path``, whose first step is the event's index."""
    index, *rest = path
    assert isinstance(index, int)
    out = list(events)
    name, payload = out[index]
    out[index] = (name, put(payload, tuple(rest), value))
    return out


async def broken_completion(kind: str, field: str, value: Any) -> None:
    wire = WIRES[kind]
    with pytest.raises(InvalidResponseError) as caught:
        check_completion(await complete(kind, put(wire.completion, wire.paths[field], value)))
    assert caught.value.status_code == 200


async def broken_stream(kind: str, field: str, value: Any) -> list[StreamEvent]:
    """What the stream yielded before it raised: the bad event must never be among it."""
    wire = WIRES[kind]
    seen: list[StreamEvent] = []
    with pytest.raises(InvalidResponseError):
        await stream(kind, put_event(wire.events, wire.stream_paths[field], value), seen)
    check_events(seen)
    return seen


# --- the documented answers themselves ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_the_documented_answers_are_read_whole(kind: str) -> None:
    wire = WIRES[kind]
    result = await complete(kind, wire.completion)
    check_completion(result)
    assert result.text == "Let me look."
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]
    events = await stream(kind, wire.events)
    check_events(events)
    assert "".join(e.text for e in events if e.type == "text") == "Let me look."
    assert [e.tool_call.name for e in events if e.tool_call is not None] == ["get_weather"]
    assert events[-1].type == "done"


@pytest.mark.parametrize("kind", EMBEDDERS)
async def test_the_documented_embeddings_are_read_whole(kind: str) -> None:
    check_embedding(await embed(kind, embedding(kind), texts=2), 2)


# --- token counts ---------------------------------------------------------------------------------------

BAD_COUNTS = [10**400, 2**53, 12.5, "12", -1, True, float("inf"), [12], {"n": 12}]
BAD_COUNT_IDS = ["401-digit", "2**53", "fraction", "string", "negative", "bool", "inf", "list", "object"]


@pytest.mark.parametrize("value", BAD_COUNTS, ids=BAD_COUNT_IDS)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_usage_count_that_is_not_a_sane_integer_is_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "usage", value)
    await broken_stream(kind, "usage", value)


@pytest.mark.parametrize(("value", "expected"), [(2**53 - 1, 9007199254740991), (12.0, 12), (None, 0)])
@pytest.mark.parametrize("kind", KINDS)
async def test_counts_up_to_2_53_and_integral_floats_are_taken(kind: str, value: Any, expected: int) -> None:
    wire = WIRES[kind]
    result = await complete(kind, put(wire.completion, wire.paths["usage"], value))
    check_completion(result)
    assert result.usage.input_tokens == expected


@pytest.mark.parametrize("kind", [kind for kind in EMBEDDERS if "usage" in WIRES[kind].embedding_paths])
async def test_an_embedding_usage_count_that_is_not_an_integer_is_an_invalid_response(kind: str) -> None:
    with pytest.raises(InvalidResponseError, match="not a token count"):
        await embed(kind, put(embedding(kind), WIRES[kind].embedding_paths["usage"], 10**400))


# --- texts, names, ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_text_that_is_not_a_string_is_refused_before_it_is_yielded(kind: str) -> None:
    seen = await broken_stream(kind, "text", 5)
    assert all(type(event.text) is str for event in seen)


@pytest.mark.parametrize("kind", KINDS)
async def test_answer_text_that_is_not_a_string_is_an_invalid_response(kind: str) -> None:
    await broken_completion(kind, "text", 5)


@pytest.mark.parametrize("kind", ["openai", "openai-compatible", "azure-openai"])
async def test_content_parts_whose_text_is_not_a_string_are_an_invalid_response(kind: str) -> None:
    parts = [{"type": "text", "text": "Let me"}, {"type": "text", "text": 5}]
    await broken_completion(kind, "text", parts)
    await broken_stream(kind, "text", parts)


@pytest.mark.parametrize("value", [5, ["gpt-4o"], {"name": "gpt-4o"}], ids=["int", "list", "object"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_model_name_that_is_not_a_string_is_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "model", value)
    await broken_stream(kind, "model", value)


@pytest.mark.parametrize("value", [5, {"id": "x"}, ["x"]], ids=["int", "object", "list"])
@pytest.mark.parametrize("kind", WITH_IDS)
async def test_a_request_id_that_is_not_a_string_is_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "request_id", value)
    await broken_stream(kind, "request_id", value)


# --- tool calls and finish reasons ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"name": "get_weather"}, 5, None], ids=["object", "int", "null"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_tool_name_that_is_not_a_string_is_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "tool_name", value)
    if value is not None:  # OpenAI streams the name in one fragment of many: a fragment without one is usual
        await broken_stream(kind, "tool_name", value)


@pytest.mark.parametrize("value", [5, ["call_1"], {"id": "call_1"}], ids=["int", "list", "object"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_tool_call_id_that_is_not_a_string_is_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "tool_id", value)
    await broken_stream(kind, "tool_id", value)


@pytest.mark.parametrize("value", [5, ["city", "Paris"], True], ids=["int", "list", "bool"])
@pytest.mark.parametrize("kind", KINDS)
async def test_tool_arguments_of_the_wrong_type_are_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "tool_args", value)
    await broken_stream(kind, "tool_args", value)


@pytest.mark.parametrize("value", [5, ["stop"], {"reason": "stop"}], ids=["int", "list", "object"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_finish_reason_that_is_not_a_string_is_an_invalid_response(kind: str, value: Any) -> None:
    await broken_completion(kind, "finish", value)
    await broken_stream(kind, "finish", value)


# --- embeddings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vectors", "texts"), [(1, 2), (3, 2), (0, 1)], ids=["fewer", "more", "none"])
@pytest.mark.parametrize("kind", EMBEDDERS)
async def test_embeddings_must_hold_one_vector_per_text(kind: str, vectors: int, texts: int) -> None:
    with pytest.raises(InvalidResponseError, match=f"{vectors} vectors for {texts} texts"):
        await embed(kind, embedding(kind, vectors), texts=texts)


@pytest.mark.parametrize("value", [{}, None, "vectors", 5], ids=["object", "null", "string", "int"])
@pytest.mark.parametrize("kind", EMBEDDERS)
async def test_embeddings_that_are_not_a_list_are_an_invalid_response(kind: str, value: Any) -> None:
    with pytest.raises(InvalidResponseError):
        check_embedding(await embed(kind, put(embedding(kind), WIRES[kind].embedding_paths["vectors"], value)), 2)


@pytest.mark.parametrize(
    "value",
    [["0.1", 0.2, 0.3], [True, 0.2, 0.3], [None, 0.2, 0.3], [[0.1], 0.2, 0.3], [], "0.1,0.2", [10**400, 0.2, 0.3]],
    ids=["string", "bool", "null", "nested", "empty", "text", "huge-int"],
)
@pytest.mark.parametrize("kind", EMBEDDERS)
async def test_a_vector_of_anything_but_numbers_is_an_invalid_response(kind: str, value: Any) -> None:
    with pytest.raises(InvalidResponseError):
        check_embedding(await embed(kind, put(embedding(kind), WIRES[kind].embedding_paths["vector"], value)), 2)


async def test_integers_in_a_vector_are_taken_as_floats() -> None:
    body = put(embedding("ollama"), ("embeddings", 1), [1, 0, -2])
    result = await embed("ollama", body)
    check_embedding(result, 2)
    assert result.vectors[1] == [1.0, 0.0, -2.0]


async def test_non_finite_numbers_in_a_vector_are_an_invalid_response() -> None:
    body = json.dumps(embedding("ollama")).replace("0.010071029", "NaN", 1).encode()  # json.loads reads NaN
    async with mock_client(200, body) as client:
        with pytest.raises(InvalidResponseError, match="not a finite number"):
            await provider("ollama", client).embed(["a", "b"])


@pytest.mark.parametrize("index", [0, 2, -1, "1", None], ids=["twice", "past-the-end", "negative", "string", "null"])
@pytest.mark.parametrize("kind", ["openai", "openai-compatible", "azure-openai"])
async def test_openai_items_must_name_each_text_once(kind: str, index: Any) -> None:
    with pytest.raises(InvalidResponseError, match="not the index of a text"):
        await embed(kind, put(embedding(kind), ("data", 1, "index"), index))


async def test_openai_items_in_any_order_are_put_in_the_texts_order() -> None:
    body = embedding("openai")
    body["data"].reverse()
    result = await embed("openai", body)
    assert [v[2] for v in result.vectors] == [0.0157, 0.0314]


# --- statuses -------------------------------------------------------------------------------------------

LOCATION = f"https://mirror.example.net/v1/chat/completions?key={KEY}"


async def answered(kind: str, operation: str, status: int, headers: dict[str, str] | None = None) -> None:
    """Each operation answered ``status`` with its documented, valid body."""
    wire = WIRES[kind]
    if operation == "complete":
        await complete(kind, wire.completion, status=status, headers=headers)
    elif operation == "stream":
        async with mock_client(status, body_bytes(wire, wire.events), headers) as client:
            async for _ in provider(kind, client).stream(REQUEST):
                pass
    else:
        async with mock_client(status, json.dumps(embedding(kind)).encode(), headers) as client:
            await provider(kind, client).embed(["a", "b"])


OPERATIONS = [
    (kind, op) for kind in KINDS for op in ("complete", "stream", "embed") if op != "embed" or kind in EMBEDDERS
]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize(("kind", "operation"), OPERATIONS)
async def test_a_redirect_is_an_invalid_response_naming_only_the_host(kind: str, operation: str, status: int) -> None:
    with pytest.raises(InvalidResponseError) as caught:
        await answered(kind, operation, status, {"location": LOCATION})
    error = caught.value
    assert error.status_code == status
    assert "redirect" in str(error)
    assert "mirror.example.net" in str(error)
    assert KEY not in str(error)
    assert "/v1/chat" not in str(error)


@pytest.mark.parametrize("status", [201, 202, 203, 204, 206, 304])
@pytest.mark.parametrize(("kind", "operation"), OPERATIONS)
async def test_a_status_other_than_200_is_an_invalid_response(kind: str, operation: str, status: int) -> None:
    with pytest.raises(InvalidResponseError, match=str(status)) as caught:
        await answered(kind, operation, status)
    assert caught.value.status_code == status


# --- bodies no parser can read --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_json_nested_too_deep_is_an_invalid_response(kind: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with mock_client(200, deep) as client:
        with pytest.raises(InvalidResponseError, match="nested too deep"):
            await provider(kind, client).complete(REQUEST)
    events = [*WIRES[kind].events[:1], ("", "[" * 100_000 + "]" * 100_000)]
    with pytest.raises(InvalidResponseError):
        await stream(kind, events)
