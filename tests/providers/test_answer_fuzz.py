"""Fuzzing every protocol's answers: whatever a server sends, a provider returns a well-typed result or raises a
``ProviderError`` (an ``InvalidResponseError`` for a body it cannot read), and nothing else.

Bodies start from each protocol's documented answers (tests/providers/wire.py) and are mutated near their real
shapes: a field's value replaced by JSON of another type or a huge, negative or fractional number, a field or an
array item dropped or added, an event of a stream dropped, doubled or moved. Served on ``httpx2.MockTransport``;
tests/integration/test_bad_answers_http.py serves a few fixed bad answers over both real transports.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from taskmodels.errors import ProviderError
from taskmodels.types import StreamEvent
from tests.providers.wire import (
    WIRES,
    Path,
    check_completion,
    check_embedding,
    check_events,
    complete,
    embed,
    stream,
)

KINDS = sorted(WIRES)
EMBEDDERS = sorted(kind for kind, wire in WIRES.items() if wire.embedding is not None)

# Scalars near the values real answers hold, and the ones fuzzing found trouble with.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, -1, 2**53 - 1, 2**53, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "stop", "STOP", "tool_calls", "end_turn", "get_weather", "[DONE]", '{"city": "Paris"}']),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every place in ``value`` a mutation can reach: each object member and each array item, at any depth."""
    found: list[Path] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found.extend(paths(item, (*prefix, index)))
    return found


def _parent(body: Any, path: Path) -> Any:
    for step in path[:-1]:
        body = body[step]
    return body


@st.composite
def mutated(draw: st.DrawFn, body: Any, *, most: int = 3) -> Any:
    """``body`` with one to ``most`` mutations: a value replaced, a member or item dropped, or one added."""
    out = copy.deepcopy(body)
    for _ in range(draw(st.integers(min_value=1, max_value=most))):
        places = paths(out)
        if not places:
            return draw(JSON)
        path = draw(st.sampled_from(places))
        parent, last = _parent(out, path), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
        if action == "replace":
            parent[last] = draw(JSON)
        elif action == "drop":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(JSON)
        else:
            parent.insert(draw(st.integers(min_value=0, max_value=len(parent))), draw(JSON))
    return out


@st.composite
def mutated_events(draw: st.DrawFn, events: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A stream's events with some payloads mutated, and maybe one event dropped, doubled or moved."""
    out = list(events)
    for index in draw(st.lists(st.integers(min_value=0, max_value=len(out) - 1), min_size=1, max_size=3)):
        name, payload = out[index]
        if not isinstance(payload, str):  # "[DONE]" is not JSON
            out[index] = (name, draw(mutated(payload, most=2)))
    shuffle = draw(st.sampled_from(["none", "none", "drop", "double", "move"]))
    index = draw(st.integers(min_value=0, max_value=len(out) - 1))
    if shuffle == "drop":
        del out[index]
    elif shuffle == "double":
        out.insert(index, out[index])
    elif shuffle == "move":
        out.insert(draw(st.integers(min_value=0, max_value=len(out) - 1)), out.pop(index))
    return out


@settings(max_examples=1200)
@given(data=st.data())
async def test_every_completion_answer_is_a_well_typed_result_or_a_provider_error(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    body = data.draw(mutated(WIRES[kind].completion), label="body")
    try:
        result = await complete(kind, body)
    except ProviderError:
        return
    check_completion(result)


@settings(max_examples=1000)
@given(data=st.data())
async def test_every_stream_is_well_typed_events_or_a_provider_error(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    events = data.draw(mutated_events(WIRES[kind].events), label="events")
    seen: list[StreamEvent] = []
    try:
        await stream(kind, events, seen)
    except ProviderError:
        check_events(seen)  # what reached the caller before the error was well-typed too
        return
    check_events(seen)
    assert seen[-1].type == "done"


@settings(max_examples=600)
@given(data=st.data())
async def test_every_embedding_answer_is_well_typed_vectors_or_a_provider_error(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(EMBEDDERS), label="kind")
    texts = data.draw(st.integers(min_value=1, max_value=3), label="texts")
    make = WIRES[kind].embedding
    assert make is not None
    answered = data.draw(st.integers(min_value=max(texts - 1, 0), max_value=texts + 1), label="vectors")
    body = make(answered)
    if data.draw(st.booleans(), label="mutate"):
        body = data.draw(mutated(body), label="body")
    try:
        result = await embed(kind, body, texts)
    except ProviderError:
        return
    check_embedding(result, texts)
