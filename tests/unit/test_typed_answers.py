"""Typed answers through the service: validation, feedback retries, the chain, strategies per model, implied
capabilities and answers that reasoning cut short."""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from taskmodels.errors import AllModelsFailedError, InvalidRequestError, NoEligibleModelError, OutputValidationError
from taskmodels.output import output_schema
from taskmodels.resilience.policy import RULES, retry_delay, rule_for
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import FakeBackend, ManualClock, fake_model, fake_registry, make_test_service, reply
from taskmodels.types import CompletionRequest, ResponseFormat, ToolSpec
from tests.typecheck import check_user_code


class Mood(StrEnum):
    happy = "happy"
    sad = "sad"


class Persona(BaseModel):
    name: str
    age: int
    mood: Mood


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


GOOD = '{"name": "Ada", "age": 36, "mood": "happy"}'


def service(registry: dict[str, Any], backend: FakeBackend) -> ModelService:
    clock = ManualClock()
    return make_test_service(registry, backend=backend, clock=clock, wall_clock=clock, sleep=clock.sleep)


def chain(*models: dict[str, Any], **mapping: Any) -> dict[str, Any]:
    return fake_registry(*models, **mapping)


# --- output types -------------------------------------------------------------------------------


async def test_a_pydantic_model_comes_back_validated_and_the_text_stays_raw() -> None:
    backend = FakeBackend().always("a", reply(GOOD))
    result = await service(chain(fake_model("a")), backend).complete_with_task_model("t", "who?", output_type=Persona)
    assert result.output == Persona(name="Ada", age=36, mood=Mood.happy)
    assert result.text == GOOD
    assert [a.outcome for a in result.attempts] == ["success"]


@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Movie, '{"title": "Alien", "year": 1979}', {"title": "Alien", "year": 1979}),
        # a list's schema is wrapped in an object (every structured-output API wants one at the root) ...
        (list[Point], '{"result": [{"x": 1, "y": 2}]}', [Point(1, 2)]),
        # ... and a model asked in its prompt may answer the bare list, in a code fence
        (list[Point], '```json\n[{"x": 3, "y": 4}]\n```', [Point(3, 4)]),
    ],
)
async def test_dataclasses_typeddicts_and_lists(output_type: Any, answer: str, expected: Any) -> None:
    backend = FakeBackend().always("a", reply(answer))
    result = await service(chain(fake_model("a")), backend).complete_with_task_model("t", "?", output_type=output_type)
    assert result.output == expected


def test_a_type_pydantic_cannot_describe_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="output_type must be"):
        output_schema(object())


async def test_output_type_and_response_format_together_are_refused() -> None:
    svc = service(chain(fake_model("a")), FakeBackend())
    with pytest.raises(InvalidRequestError, match="output_type or response_format"):
        await svc.complete_with_task_model("t", "?", output_type=Persona, response_format=ResponseFormat.json())


# --- validation failures ------------------------------------------------------------------------


async def test_an_invalid_answer_is_asked_again_with_the_error_then_the_chain_moves_on() -> None:
    backend = FakeBackend()
    backend.script("a", reply("not json at all"), reply('{"name": "Ada", "age": "old", "mood": "happy"}'))
    backend.always("b", reply(GOOD))
    svc = service(chain(fake_model("a"), fake_model("b")), backend)

    result = await svc.complete_with_task_model("t", "who?", output_type=Persona)

    assert result.model_id == "b"
    assert result.output == Persona(name="Ada", age=36, mood=Mood.happy)
    attempts = [(a.model_id, a.number, a.outcome, a.error_class) for a in result.attempts]
    assert attempts == [
        ("a", 1, "error", "OutputValidationError"),
        ("a", 2, "error", "OutputValidationError"),
        ("b", 1, "success", None),
    ]
    assert "age: Input should be a valid integer" in (result.attempts[1].error_message or "")
    # the second request to "a" carries its first answer and what was wrong with it
    second = backend.calls_for("a")[1].request
    assert second is not None
    assert [m.role for m in second.messages][-2:] == ["assistant", "user"]
    assert second.messages[-2].content == "not json at all"
    assert "not JSON" in (second.messages[-1].content or "")
    # a validation failure says nothing about the route's health
    assert (await svc.health())["models"]["a"]["consecutive_failures"] == 0


async def test_output_retries_zero_moves_on_at_once() -> None:
    backend = FakeBackend().always("a", reply("{}")).always("b", reply(GOOD))
    svc = service(chain(fake_model("a"), fake_model("b"), outputRetries=0), backend)
    result = await svc.complete_with_task_model("t", "?", output_type=Persona)
    assert [a.model_id for a in result.attempts] == ["a", "b"]


async def test_every_model_invalid_ends_in_all_models_failed_with_the_validation_errors() -> None:
    backend = FakeBackend(default=reply('{"name": 1}'))
    svc = service(chain(fake_model("a"), fake_model("b")), backend)
    with pytest.raises(AllModelsFailedError) as info:
        await svc.complete_with_task_model("t", "?", output_type=Persona)
    errors = [e for e in info.value.exceptions if isinstance(e, OutputValidationError)]
    assert len(errors) == 4  # two tries of each model
    assert errors[0].problems[:2] == ("name: Input should be a valid string", "age: Field required")


async def test_json_cut_at_max_tokens_is_a_failure_not_retried_on_the_same_model() -> None:
    backend = FakeBackend().always("a", reply('{"name": "Ada", "ag', finish_reason="length"))
    backend.always("b", reply(GOOD))
    svc = service(chain(fake_model("a"), fake_model("b")), backend)
    result = await svc.complete_with_task_model("t", "?", output_type=Persona)
    assert [(a.model_id, a.outcome) for a in result.attempts] == [("a", "error"), ("b", "success")]
    assert "cut at max_tokens" in (result.attempts[0].error_message or "")


def test_the_policy_table_asks_the_same_model_again_at_once() -> None:
    error = OutputValidationError("bad", provider="p", model_id="m")
    rule = rule_for(error)
    assert rule is RULES[OutputValidationError]
    assert (rule.retry_same, rule.feedback, rule.counts_against_model) == (True, True, False)
    assert retry_delay(error, 1, ResilienceSettings()) == 0.0


# --- reasoning models: length with no text ------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_length_with_no_text_moves_on_instead_of_succeeding_empty(streamed: bool) -> None:
    backend = FakeBackend().always("a", reply("", finish_reason="length")).always("b", reply("the answer"))
    svc = service(chain(fake_model("a"), fake_model("b")), backend)
    if streamed:
        events = [e async for e in svc.stream_with_task_model("t", "?")]
        result = events[-1].result
        assert result is not None
    else:
        result = await svc.complete_with_task_model("t", "?")
    assert result.text == "the answer"
    assert [(a.model_id, a.error_class) for a in result.attempts] == [("a", "TruncatedAnswerError"), ("b", None)]


# --- streams ------------------------------------------------------------------------------------


async def test_a_stream_s_done_event_carries_the_output() -> None:
    backend = FakeBackend().always("a", reply(GOOD, chunks=[GOOD[:10], GOOD[10:]]))
    svc = service(chain(fake_model("a")), backend)
    events = [e async for e in svc.stream_with_task_model("t", "?", output_type=Persona)]
    assert events[-1].type == "done"
    assert events[-1].result is not None
    assert events[-1].result.output == Persona(name="Ada", age=36, mood=Mood.happy)


async def test_a_stream_whose_answer_fails_validation_restarts_on_the_next_model() -> None:
    backend = FakeBackend().always("a", reply("nope")).always("b", reply(GOOD))
    svc = service(chain(fake_model("a"), fake_model("b"), outputRetries=0), backend)
    events = [e async for e in svc.stream_with_task_model("t", "?", output_type=Persona)]
    assert [e.type for e in events if e.type in ("restart", "done")] == ["restart", "done"]
    assert events[-1].result is not None
    assert events[-1].result.output is not None


# --- the request each model gets ----------------------------------------------------------------


def strategies_registry(**mapping: Any) -> dict[str, Any]:
    return chain(
        fake_model("native", capabilities=["chat", "json_schema"]),
        fake_model("jsonmode", capabilities=["chat", "json"]),
        fake_model("plain", capabilities=["chat"]),
        **mapping,
    )


async def test_each_model_gets_the_schema_the_way_its_capabilities_say() -> None:
    backend = FakeBackend(default=reply("{}"))
    svc = service(strategies_registry(outputRetries=0), backend)
    with pytest.raises(AllModelsFailedError):
        await svc.complete_with_task_model("t", "who?", output_type=Persona)
    native, jsonmode, plain = (backend.calls_for(m)[0].request for m in ("native", "jsonmode", "plain"))
    assert native is not None
    assert jsonmode is not None
    assert plain is not None
    assert native.response_format is not None
    assert native.response_format.type == "json_schema"
    assert native.response_format.schema is not None
    assert native.response_format.schema["properties"]["mood"] == {"$ref": "#/$defs/Mood"}
    assert native.response_format.strict is True  # every field required, no defaults
    assert all(m.role != "system" for m in native.messages)  # the schema is not repeated in the prompt
    assert jsonmode.response_format == ResponseFormat.json()
    assert plain.response_format is None
    for request in (jsonmode, plain):
        system = request.messages[0]
        assert system.role == "system"
        assert '"mood"' in (system.content or "")
    assert all(r.output_type is None for r in (native, jsonmode, plain))


async def test_a_callers_json_schema_is_sent_natively_only_where_it_is_taken() -> None:
    backend = FakeBackend(default=reply("{}"))
    backend.script("native", reply("x", finish_reason="length"))
    svc = service(strategies_registry(), backend)
    fmt = ResponseFormat.json_schema({"type": "object", "properties": {"a": {"type": "integer"}}}, strict=False)
    result = await svc.complete_with_task_model("t", "?", response_format=fmt)
    assert result.model_id == "native"  # not validated: the caller reads the JSON
    backend.script("native", reply("", finish_reason="length"))
    result = await svc.complete_with_task_model("t", "?", response_format=fmt)
    assert result.model_id == "jsonmode"
    sent = backend.calls_for("jsonmode")[0].request
    assert sent is not None
    assert sent.response_format == ResponseFormat.json()
    assert backend.calls_for("native")[0].request.response_format == fmt  # type: ignore[union-attr]


# --- capabilities the request implies ------------------------------------------------------------


async def test_a_response_format_skips_models_without_json_in_a_registry_that_uses_the_tag() -> None:
    backend = FakeBackend(default=reply("{}"))
    svc = service(chain(fake_model("plain", capabilities=["chat"]), fake_model("js", capabilities=["json"])), backend)
    result = await svc.complete_with_task_model("t", "?", response_format=ResponseFormat.json())
    assert result.model_id == "js"
    assert [(a.model_id, a.outcome, a.error_message) for a in result.attempts] == [
        ("plain", "skipped", "lacks capability json"),
        ("js", "success", None),
    ]
    explained = svc.selector.explain("t", CompletionRequest(prompt="?", response_format=ResponseFormat.json()))
    assert [(s.model_id, s.reason) for s in explained.skipped] == [("plain", "lacks capability json")]


async def test_tools_and_embeddings_imply_their_tags() -> None:
    backend = FakeBackend(default=reply("ok"))
    reg = chain(
        fake_model("chatty", capabilities=["chat"]),
        fake_model("tooled", capabilities=["chat", "tools", "embedding"]),
    )
    svc = service(reg, backend)
    result = await svc.complete_with_task_model("t", "?", tools=[ToolSpec("lookup")])
    assert result.model_id == "tooled"
    embedded = await svc.embed_with_task_model("t", ["x"])
    assert embedded.model_id == "tooled"
    assert [a.model_id for a in embedded.attempts if a.outcome == "skipped"] == ["chatty"]


async def test_a_registry_that_never_uses_the_tags_is_not_affected() -> None:
    backend = FakeBackend(default=reply("{}"))
    reg = chain(fake_model("a", capabilities=["text-generation", "chat"]), fake_model("b"))
    svc = service(reg, backend)
    result = await svc.complete_with_task_model(
        "t", "?", tools=[ToolSpec("lookup")], response_format=ResponseFormat.json()
    )
    assert result.model_id == "a"
    assert (await svc.embed_with_task_model("t", ["x"])).model_id == "a"


async def test_output_type_alone_skips_no_model() -> None:
    backend = FakeBackend(default=reply(GOOD))
    svc = service(chain(fake_model("plain", capabilities=["chat"]), fake_model("js", capabilities=["json"])), backend)
    result = await svc.complete_with_task_model("t", "?", output_type=Persona)
    assert result.model_id == "plain"


async def test_json_schema_counts_as_json() -> None:
    backend = FakeBackend(default=reply("{}"))
    svc = service(chain(fake_model("s", capabilities=["json_schema"])), backend)
    result = await svc.complete_with_task_model("t", "?", response_format=ResponseFormat.json())
    assert result.model_id == "s"


async def test_no_model_with_the_implied_tag_is_no_eligible_model() -> None:
    reg = chain(fake_model("a", capabilities=["chat"]), fake_model("e", capabilities=["embedding"]))
    reg["models"].append(fake_model("elsewhere", capabilities=["tools"]))  # the registry uses the tag
    svc = service(reg, FakeBackend())
    with pytest.raises(NoEligibleModelError, match="lacks capability tools"):
        await svc.complete_with_task_model("t", "?", tools=[ToolSpec("f")])


def test_schema_of_a_model_with_a_default_is_not_strict() -> None:
    class WithDefault(BaseModel):
        a: int = 1

    schema = output_schema(WithDefault)
    assert schema.strict is False
    assert json.loads(json.dumps(schema.schema))["type"] == "object"


# --- typing ---------------------------------------------------------------------------------------

TYPED_SNIPPET = """
from pydantic import BaseModel
from taskmodels.service import ModelService


class Persona(BaseModel):
    name: str


async def main(service: ModelService) -> None:
    typed = await service.complete_with_task_model("t", "who?", output_type=Persona)
    reveal_type(typed.output)
    many = await service.complete_with_task_model("t", "who?", output_type=list[Persona])
    reveal_type(many.output)
    plain = await service.complete_with_task_model("t", "who?")
    reveal_type(plain.output)
    reveal_type(service.sync.complete_with_task_model("t", "who?", output_type=Persona).output)
"""


def test_mypy_sees_output_as_the_output_type(tmp_path: Path) -> None:
    checked = check_user_code(TYPED_SNIPPET, tmp_path)
    assert checked.revealed == ["user_code.Persona", "list[user_code.Persona]", "Any", "user_code.Persona"], (
        checked.output
    )
    assert checked.errors == [], checked.output


async def test_the_schema_counts_in_the_prompt_estimate() -> None:
    backend = FakeBackend(default=reply(GOOD))
    # A window that holds the prompt alone but not the prompt with the schema and its overhead: the schema and the
    # tool-use overhead (1,024) are at least 1,300 bytes, so at least 160 tokens; with 100 output tokens, more
    # than 200. The prompt alone is a few tokens.
    svc = service(chain(fake_model("small", context=200), fake_model("big", context=8000)), backend)
    assert (await svc.complete_with_task_model("t", "who?")).model_id == "small"
    result = await svc.complete_with_task_model("t", "who?", output_type=Persona)
    assert result.model_id == "big"
    assert result.attempts[0].outcome == "skipped"
    assert "context window 200 <" in (result.attempts[0].error_message or "")
