"""Every request argument ends in a correct call or an InvalidRequestError naming it: the edge (validation.py).

The reproducers of the robustness issue each have a case here; every one escaped as a raw TypeError,
AttributeError, OverflowError, IndexError, SyntaxError or KeyError before the edge check, or was accepted and
failed later as the provider's error. A property-based test then throws generated values at every field.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import BaseModel

from taskmodels.errors import InvalidRequestError, TaskModelsError
from taskmodels.service import ModelService
from taskmodels.testing import FakeBackend, ManualClock, fake_model, fake_registry, make_test_service, reply
from taskmodels.types import (
    CompletionRequest,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolSpec,
)
from taskmodels.validation import MAX_IMAGE_BYTES, check_request

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 28


def _service() -> tuple[ModelService, FakeBackend]:
    backend = FakeBackend(default=reply("ok"))
    clock = ManualClock()
    registry = fake_registry(fake_model("a", context=100_000), fake_model("b", context=100_000))
    return make_test_service(registry, backend=backend, clock=clock, wall_clock=clock, sleep=clock.sleep), backend


@pytest.fixture
def svc() -> tuple[ModelService, FakeBackend]:
    return _service()


async def _refused(svc: ModelService, **fields: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        await svc.complete_with_task_model("t", **fields)
    return info.value


# --- the reproducers --------------------------------------------------------------------------------------

BAD_FIELDS: list[tuple[dict[str, Any], str, str]] = [
    # (fields, param, the start of the message)
    ({"prompt": "p", "temperature": "hot"}, "temperature", "temperature must be a number, not str 'hot'"),
    ({"prompt": "p", "top_p": "x"}, "top_p", "top_p must be a number, not str 'x'"),
    ({"prompt": "p", "max_cost": "x"}, "max_cost", "max_cost must be a number"),
    ({"prompt": "p", "deadline": "x"}, "deadline", "deadline must be a number"),
    ({"prompt": "p", "attempt_timeout": "1"}, "attempt_timeout", "attempt_timeout must be a number"),
    ({"prompt": "p", "first_token_timeout": [1]}, "first_token_timeout", "first_token_timeout must be a number"),
    ({"prompt": "p", "stall_timeout": None, "deadline": 10**400}, "deadline", "deadline is too large"),
    ({"prompt": "p", "deadline": math.inf}, "deadline", "deadline must be a finite number greater than 0"),
    ({"prompt": "p", "deadline": 0}, "deadline", "deadline must be a finite number greater than 0"),
    ({"prompt": "p", "temperature": math.nan}, "temperature", "temperature must be a finite number between 0 and 2"),
    ({"prompt": "p", "temperature": True}, "temperature", "temperature must be a number, not bool True"),
    ({"prompt": "p", "max_tokens": 1.5}, "max_tokens", "max_tokens must be an integer, not float 1.5"),
    ({"prompt": "p", "max_tokens": 10**400}, "max_tokens", "max_tokens must be a positive integer"),
    ({"prompt": "p", "max_tokens": 0}, "max_tokens", "max_tokens must be a positive integer (at most 2147483647)"),
    ({"prompt": 5}, "prompt", "prompt must be a string, not int 5"),
    ({"prompt": "p", "system_prompt": True}, "system_prompt", "system_prompt must be a string, not bool True"),
    ({"messages": "hello"}, "messages", "messages must be a list of messages, not str 'hello'"),
    ({"messages": [5]}, "messages[0]", "messages[0] must be a Message or a dict"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "messages[0].content must be a string"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "messages[0].role must be one of"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "messages[0].role must be one of"),
    ({"messages": [{"role": "user", "text": "x"}]}, "messages[0]", "messages[0]: unknown message field(s) text"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id", "messages[0].tool_call_id: a"),
    ({"messages": [Message(role="user", content=7)]}, "messages[0].content", "messages[0].content must be"),  # type: ignore[arg-type]
    ({"prompt": "p", "response_format": "json"}, "response_format", "response_format must be a ResponseFormat"),
    ({"prompt": "p", "response_format": {"type": "xml"}}, "response_format.type", "response_format.type must be"),
    (
        {"prompt": "p", "response_format": {"type": "json_schema"}},
        "response_format.json_schema",
        "response_format.json_schema must be",
    ),
    ({"prompt": "p", "tools": True}, "tools", "tools must be a list of tools, not bool True"),
    ({"prompt": "p", "tools": ["f"]}, "tools[0]", "tools[0] must be a ToolSpec or a dict"),
    ({"prompt": "p", "tools": [{"name": 5}]}, "tools[0].name", "tools[0].name must be a name of 1 to 64 characters"),
    ({"prompt": "p", "tools": [{"type": "web_search"}]}, "tools[0].type", "tools[0].type: only function tools"),
    ({"prompt": "p", "tools": [ToolSpec("f"), ToolSpec("f")]}, "tools[1].name", "tools[1].name: two tools are"),
    ({"prompt": "p", "stop": 5}, "stop", "stop must be a string or a list of strings, not int 5"),
    ({"prompt": "p", "stop": ["ok", 5]}, "stop[1]", "stop[1] must be a non-empty string, not int 5"),
    ({"prompt": "p", "extra": 5}, "extra", "extra must be a mapping"),
    ({"prompt": "p", "extra": {1: "x"}}, "extra", "extra must be a mapping"),
    ({"prompt": "p", "tool_choice": 5, "tools": [ToolSpec("f")]}, "tool_choice", "tool_choice must be auto, none"),
    ({"prompt": "p", "tool_choice": "auto"}, "tool_choice", "tool_choice needs tools"),
    ({"prompt": "p", "tool_choice": "g", "tools": [ToolSpec("f")]}, "tool_choice", "tool_choice names no tool"),
    ({"prompt": "p", "required_capabilities": [1]}, "required_capabilities", "required_capabilities must hold"),
    ({"prompt": "p", "required_capabilities": [{}]}, "required_capabilities", "required_capabilities must hold"),
    ({"prompt": "p", "required_capabilities": "vision"}, "required_capabilities", "required_capabilities must be"),
    ({}, "prompt", "nothing to send: give prompt, system_prompt or messages"),
    ({"prompt": "p", "output_type": int, "response_format": ResponseFormat.json()}, "output_type", "give output"),
]


@pytest.mark.parametrize(("fields", "param", "start"), BAD_FIELDS, ids=[case[1] for case in BAD_FIELDS])
async def test_each_wrong_argument_is_an_invalid_request_naming_it(
    svc: tuple[ModelService, FakeBackend], fields: dict[str, Any], param: str, start: str
) -> None:
    service, backend = svc
    error = await _refused(service, **fields)
    assert error.param == param
    assert str(error).startswith(start), str(error)
    assert backend.calls == []  # refused before any provider was called


@pytest.mark.parametrize("output_type", ["", " ", {}, ResponseFormat.json(), 5, "no such type"])
async def test_an_output_type_pydantic_cannot_describe_is_an_invalid_request(
    svc: tuple[ModelService, FakeBackend], output_type: object
) -> None:
    error = await _refused(svc[0], prompt="p", output_type=output_type)
    assert str(error).startswith("output_type must be a pydantic model, a dataclass, a TypedDict or a list of one")


@pytest.mark.parametrize("task", [[], {}, 5, None, b"t"])
async def test_a_task_that_is_no_name_is_an_invalid_request(svc: tuple[ModelService, FakeBackend], task: Any) -> None:
    service, _ = svc
    for call in (
        lambda: service.complete_with_task_model(task, "p"),
        lambda: service.embed_with_task_model(task, ["p"]),
    ):
        with pytest.raises(InvalidRequestError) as info:
            await call()
        assert info.value.param == "task"
    with pytest.raises(InvalidRequestError):
        await anext(service.stream_with_task_model(task, "p"))


async def test_a_request_that_is_no_request_is_an_invalid_request(svc: tuple[ModelService, FakeBackend]) -> None:
    with pytest.raises(InvalidRequestError, match=r"^request must be a CompletionRequest, a prompt string or None"):
        await svc[0].complete_with_task_model("t", 5)  # type: ignore[call-overload]


async def test_a_tenant_that_is_no_name_is_an_invalid_request(svc: tuple[ModelService, FakeBackend]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await svc[0].complete_with_task_model("t", "p", tenant=7)  # type: ignore[call-overload]
    assert info.value.param == "tenant"


@pytest.mark.parametrize(("texts", "param"), [(None, "texts"), (5, "texts"), ([], "texts"), (["a", 5], "texts[1]")])
async def test_embedding_texts_are_checked(svc: tuple[ModelService, FakeBackend], texts: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await svc[0].embed_with_task_model("t", texts)
    assert info.value.param == param


async def test_a_bare_string_is_one_text_to_embed_not_its_characters(svc: tuple[ModelService, FakeBackend]) -> None:
    service, backend = svc
    result = await service.embed_with_task_model("t", "abc")
    assert len(result.vectors) == 1
    assert backend.calls[0].texts == ("abc",)


async def test_the_sync_facade_checks_the_same_way(svc: tuple[ModelService, FakeBackend]) -> None:
    service, _ = svc
    sync = service.sync
    try:
        with pytest.raises(InvalidRequestError) as info:
            await _in_thread(lambda: sync.complete_with_task_model("t", "p", temperature="hot"))
        assert info.value.param == "temperature"
        with pytest.raises(InvalidRequestError) as info:
            await _in_thread(lambda: sync.embed_with_task_model("t", None))  # type: ignore[arg-type]
        assert info.value.param == "texts"
    finally:
        sync.close()


async def _in_thread(work: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(work)


# --- what is accepted, and what it becomes ----------------------------------------------------------------


async def test_openai_shaped_dicts_become_the_librarys_values(svc: tuple[ModelService, FakeBackend]) -> None:
    service, backend = svc
    await service.complete_with_task_model(
        "t",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "4 C"},
        ],
        tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        response_format={"type": "json_object"},
        stop="END",
    )
    sent = backend.calls[0].request
    assert sent is not None
    assert sent.messages == (
        Message(role="system", content="Be brief."),
        Message(role="user", content=(TextPart("Weather in "), TextPart("Oslo?"))),
        Message(role="assistant", tool_calls=(ToolCall("c1", "weather", '{"city":"Oslo"}'),)),
        Message(role="tool", content="4 C", tool_call_id="c1"),
    )
    assert sent.tools == (ToolSpec("weather", "", {"type": "object"}),)
    assert sent.tool_choice == "weather"
    assert sent.response_format == ResponseFormat(type="json_object")
    assert sent.stop == ("END",)


def test_a_plain_request_is_passed_on_as_it_is() -> None:
    request = CompletionRequest(prompt="hi", system_prompt="be brief", max_tokens=5, temperature=0.2)
    assert check_request(request) is request  # nothing copied on the common path


def test_images_are_read_from_their_bytes_not_their_name() -> None:
    image = ImagePart.from_bytes(JPEG, "image/png")  # declared wrong: the bytes say JPEG
    checked = check_request(CompletionRequest(messages=[Message(role="user", content=(TextPart("what?"), image))]))
    part = checked.messages[0].content[1]  # type: ignore[index]
    assert isinstance(part, ImagePart)
    assert (part.media_type, part.size) == ("image/jpeg", len(JPEG))


def test_a_data_url_becomes_an_inline_image() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    request = CompletionRequest(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]  # type: ignore[list-item]
    )
    part = check_request(request).messages[0].content[0]  # type: ignore[index]
    assert part == ImagePart(data=base64.b64encode(PNG).decode(), media_type="image/png", detail="low", size=len(PNG))
    assert "base64" not in repr(part)
    assert repr(part) == f"ImagePart(media_type='image/png', size={len(PNG)})"


def test_a_url_image_shows_only_its_host() -> None:
    part = ImagePart.from_url("https://bucket.example.com/a/b.png?X-Amz-Signature=secret123")
    assert repr(part) == "ImagePart(url='https://bucket.example.com/…')"


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (ImagePart.from_bytes(b""), "the image is empty"),
        (ImagePart.from_bytes(b"GIF8"), "the image is not PNG, JPEG, GIF or WebP"),
        (ImagePart.from_bytes(b"%PDF-1.7 " * 4, "application/pdf"), "the image is not PNG, JPEG, GIF or WebP"),
        (ImagePart(data="!!!!" * 8, media_type="image/png"), "the image's data is not base64"),
        (ImagePart(data="A" * (MAX_IMAGE_BYTES // 3 * 4 + 8), media_type="image/png"), "over the 20,971,520-byte"),
        (ImagePart.from_url("ftp://host/x.png"), "an image URL must be https://… or a data: URL"),
        (ImagePart.from_url("data:image/png,notbase64"), "a data: URL must be data:<media type>;base64"),
        (ImagePart(), "an image needs a url or data"),
        (ImagePart(url="https://h/x.png", detail="ultra"), "detail must be auto, low or high"),  # type: ignore[arg-type]
    ],
)
def test_an_unusable_image_is_refused_naming_its_part(part: ImagePart, message: str) -> None:
    request = CompletionRequest(messages=[Message(role="user", content=(TextPart("see"), part))])
    with pytest.raises(InvalidRequestError, match=message) as info:
        check_request(request)
    assert info.value.param is not None
    assert info.value.param.startswith("messages[0].content[1]")


def test_images_go_in_user_messages_only() -> None:
    image = ImagePart.from_bytes(PNG)
    with pytest.raises(InvalidRequestError, match=r"^messages\[0\].content\[0\]: images go in user messages"):
        check_request(CompletionRequest(messages=[Message(role="system", content=(image,))]))


# --- generated arguments: a result or a typed error, nothing else ------------------------------------------

_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
    st.just(ResponseFormat.json()),
    st.just(ToolSpec("f")),
)
_MESSAGE: st.SearchStrategy[Any] = st.one_of(
    st.builds(
        dict,
        role=st.sampled_from(["user", "assistant", "system", "developer", "tool", "x", 5]),
        content=st.one_of(
            st.text(max_size=10),
            st.none(),
            st.lists(
                st.one_of(
                    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=5), st.none())}),
                    st.fixed_dictionaries(
                        {
                            "type": st.just("image_url"),
                            "image_url": st.one_of(
                                st.just({"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}),
                                st.just({"url": "https://h.example/x.png", "detail": "high"}),
                                st.text(max_size=10),
                            ),
                        }
                    ),
                    _ANY_VALUE,
                ),
                max_size=3,
            ),
        ),
    ),
    _ANY_VALUE,
)
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "prompt": st.one_of(st.text(max_size=20), _ANY_VALUE),
    "system_prompt": _ANY_VALUE,
    "messages": st.one_of(st.lists(_MESSAGE, max_size=3), _ANY_VALUE),
    "max_tokens": st.one_of(st.integers(min_value=-5, max_value=10**12), _ANY_VALUE),
    "temperature": st.one_of(st.floats(min_value=-1, max_value=3), _ANY_VALUE),
    "top_p": _ANY_VALUE,
    "stop": _ANY_VALUE,
    "response_format": st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["json_object", "json_schema", "text", "yaml"])}), _ANY_VALUE
    ),
    "tools": st.one_of(st.lists(st.one_of(_ANY_VALUE, st.just({"name": "f"})), max_size=2), _ANY_VALUE),
    "tool_choice": _ANY_VALUE,
    "extra": _ANY_VALUE,
    "output_type": st.one_of(st.none(), st.text(max_size=5), st.just(int), st.just(dict[str, int]), _ANY_VALUE),
    "required_capabilities": _ANY_VALUE,
    "max_cost": _ANY_VALUE,
    "deadline": _ANY_VALUE,
    "attempt_timeout": _ANY_VALUE,
    "first_token_timeout": _ANY_VALUE,
    "stall_timeout": _ANY_VALUE,
}


class _Person(BaseModel):
    name: str


@hsettings(max_examples=1500)
@given(
    fields=st.fixed_dictionaries({}, optional=_FIELD_VALUES),
    task=st.one_of(st.just("t"), st.just("unknown"), _ANY_VALUE),
    how=st.sampled_from(["complete", "stream"]),
)
async def test_generated_arguments_end_in_a_result_or_a_typed_error(
    fields: dict[str, Any], task: Any, how: str
) -> None:
    service, _ = _service()
    refused: InvalidRequestError | None = None
    try:
        if how == "complete":
            result = await service.complete_with_task_model(task, **fields)
            assert isinstance(result.text, str)
        else:
            async for _event in service.stream_with_task_model(task, **fields):
                pass
    except InvalidRequestError as exc:
        refused = exc
    except TaskModelsError:
        pass  # an unknown task served, no eligible model, every model failed: typed, and said
    if refused is not None:  # every refusal names what was wrong
        assert refused.param, refused
        assert refused.param.split("[")[0].split(".")[0] in {*_FIELD_VALUES, "task"}, refused.param


@hsettings(max_examples=400)
@given(texts=st.one_of(st.lists(st.one_of(st.text(max_size=5), _ANY_VALUE), max_size=4), _ANY_VALUE))
async def test_generated_embedding_inputs_end_in_a_result_or_a_typed_error(texts: Any) -> None:
    service, _ = _service()
    try:
        result = await service.embed_with_task_model("t", texts)
    except InvalidRequestError as exc:
        param = exc.param
    else:
        assert len(result.vectors) == (1 if isinstance(texts, str) else len(texts))
        return
    assert param is not None
    assert param.startswith("texts")
