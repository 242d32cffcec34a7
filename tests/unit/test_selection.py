"""ModelSelectionFactory: each selection rule has a test that fails without it."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from taskmodels.errors import ConfigurationError, InvalidRequestError, UnknownTaskError
from taskmodels.registry import ModelRegistryService
from taskmodels.selection import ModelSelectionFactory, Skip, estimate_prompt_tokens, image_tokens
from taskmodels.types import CompletionRequest, ImagePart, Message, ResponseFormat, TextPart, ToolCall, ToolSpec
from tests.registry_entries import model

EXAMPLE = Path(__file__).resolve().parents[2] / "settings" / "modelRegistry.json"

DATA: dict[str, Any] = {
    "models": [
        model("small", contextWindow=8192, capabilities=["chat", "json"], costPer1kTokens=0.0),
        model("big", contextWindow=128000, capabilities=["chat", "json", "vision"], costPer1kTokens=0.01),
        model("huge", contextWindow=1000000, capabilities=["chat", "json", "vision", "tools"], costPer1kTokens=0.1),
        model("dflt", contextWindow=32000, capabilities=["chat"], costPer1kTokens=0.001),
    ],
    "taskMappings": [
        {"taskName": "chat", "primaryModelId": "small", "fallbackModelIds": ["big", "huge"]},
        {"taskName": "json", "primaryModelId": "small", "fallbackModelIds": ["big"], "requiredCapabilities": ["json"]},
        {"taskName": "cheap", "primaryModelId": "big", "fallbackModelIds": ["huge"], "maxCostPerCall": 0.05},
        {"taskName": "self", "primaryModelId": "dflt", "fallbackModelIds": ["big"]},
    ],
    "defaultModelId": "dflt",
}


@pytest.fixture
def service() -> ModelRegistryService:
    return ModelRegistryService.from_dict(DATA)


@pytest.fixture
def selector(service: ModelRegistryService) -> ModelSelectionFactory:
    return ModelSelectionFactory(service)


def ids(models: Any) -> list[str]:
    return [m.id for m in models]


def test_select_model_for_task_returns_the_primary(selector: ModelSelectionFactory) -> None:
    assert selector.select_model_for_task("chat").id == "small"


def test_select_model_for_unknown_task_returns_the_default(selector: ModelSelectionFactory) -> None:
    assert selector.select_model_for_task("never-heard-of").id == "dflt"


def test_candidates_order_is_primary_fallbacks_then_default(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat")
    assert ids(selection.models) == ["small", "big", "huge", "dflt"]
    assert selection.skipped == ()
    assert selection.known_task is True


def test_candidates_do_not_repeat_the_default(selector: ModelSelectionFactory) -> None:
    assert ids(selector.candidates("self").models) == ["dflt", "big"]


def test_unknown_task_gets_the_default_chain(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("mystery")
    assert ids(selection.models) == ["dflt"]
    assert selection.known_task is False


def test_plain_request_returns_the_precomputed_chain(
    selector: ModelSelectionFactory, service: ModelRegistryService
) -> None:
    selection = selector.candidates("chat", CompletionRequest(prompt="hello"))
    assert selection.models is service.current.chains["chat"]  # no copy, no per-model work
    assert selection.registry is service.current


def test_request_capabilities_filter_with_reason(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat", CompletionRequest(prompt="x", required_capabilities=frozenset({"vision"})))
    assert ids(selection.models) == ["big", "huge"]
    assert selection.skipped == (
        Skip("small", "lacks capability vision"),
        Skip("dflt", "lacks capability vision"),
    )


def test_task_required_capabilities_filter(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("json")
    assert ids(selection.models) == ["small", "big"]
    assert selection.skipped == (Skip("dflt", "lacks capability json"),)
    assert selection.required_capabilities == frozenset({"json"})


def test_task_and_request_capabilities_combine(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("json", CompletionRequest(required_capabilities=frozenset({"vision"})))
    assert ids(selection.models) == ["big"]
    assert selection.skipped[0] == Skip("small", "lacks capability vision")


def test_context_window_with_explicit_prompt_tokens(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat", prompt_tokens=8000)
    assert ids(selection.models) == ["big", "huge", "dflt"]
    assert selection.skipped == (
        Skip("small", "context window 8192 < 9000 tokens needed (a prompt of at least 8000 + 1000 output)"),
    )


def test_context_window_uses_request_max_tokens(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat", CompletionRequest(max_tokens=31000), prompt_tokens=1001)
    assert ids(selection.models) == ["big", "huge"]
    assert selection.skipped[1] == Skip(
        "dflt", "context window 32000 < 32001 tokens needed (a prompt of at least 1001 + 31000 output)"
    )
    exactly_full = selector.candidates("chat", CompletionRequest(max_tokens=31000), prompt_tokens=1000)
    assert ids(exactly_full.models) == ["big", "huge", "dflt"]


def test_context_window_refuses_only_what_certainly_cannot_fit(selector: ModelSelectionFactory) -> None:
    # 40,000 bytes are at least 5,000 tokens (8 bytes a token at most): with small's 1,000 output tokens that
    # fits its 8,192 window, so small is tried; should it refuse, its context-length error moves the call on.
    fits = CompletionRequest(messages=[Message(role="user", content="x" * 40000)])
    assert ids(selector.candidates("chat", fits).models) == ["small", "big", "huge", "dflt"]
    # 64,000 bytes are at least 8,000 tokens (plus the message's overhead): 9,000 and more cannot fit 8,192.
    too_big = CompletionRequest(messages=[Message(role="user", content="x" * 64000)])
    selection = selector.candidates("chat", too_big)
    assert ids(selection.models) == ["big", "huge", "dflt"]
    assert selection.skipped[0].model_id == "small"
    assert selection.skipped[0].reason.startswith("context window 8192 < 9002 tokens needed")
    # Budgets still reserve on the upper bound: one token per byte.
    assert selection.prompt_tokens >= 64000


def test_estimate_counts_prompt_system_and_messages() -> None:
    short = estimate_prompt_tokens(CompletionRequest(prompt="abcd"))
    longer = estimate_prompt_tokens(CompletionRequest(prompt="abcd", system_prompt="efgh" * 10))
    assert 1 <= short < longer
    assert estimate_prompt_tokens(CompletionRequest(prompt="a" * 4000)) >= 4000


def test_task_cost_ceiling(selector: ModelSelectionFactory) -> None:
    # big: (1000 + 1000) * 0.01 / 1000 = 0.02 ok; huge: 2000 * 0.1 / 1000 = 0.2 > 0.05
    selection = selector.candidates("cheap", prompt_tokens=1000)
    assert ids(selection.models) == ["big", "dflt"]
    assert selection.skipped == (Skip("huge", "estimated cost $0.2000 > limit $0.0500"),)


def test_request_cost_ceiling_overrides_the_task(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("cheap", CompletionRequest(max_cost=0.5), prompt_tokens=1000)
    assert ids(selection.models) == ["big", "huge", "dflt"]
    selection = selector.candidates("chat", CompletionRequest(max_cost=0.001), prompt_tokens=0)
    assert ids(selection.models) == ["small", "dflt"]


def test_all_skipped_gives_empty_models_with_every_reason(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat", CompletionRequest(required_capabilities=frozenset({"audio"})))
    assert selection.models == ()
    assert [s.model_id for s in selection.skipped] == ["small", "big", "huge", "dflt"]
    assert selection.skipped[0] == Skip("small", "lacks capability audio")


def test_explain_requires_extra_capabilities(selector: ModelSelectionFactory) -> None:
    selection = selector.explain("chat", prompt_tokens=100, require=["tools"])
    assert ids(selection.models) == ["huge"]
    assert len(selection.skipped) == 3
    assert selection.required_capabilities == frozenset({"tools"})


def test_explain_matches_candidates(selector: ModelSelectionFactory) -> None:
    request = CompletionRequest(prompt="hi", required_capabilities=frozenset({"vision"}))
    assert selector.explain("chat", request) == selector.candidates("chat", request)


def test_selection_uses_the_snapshot_current_at_call_time(tmp_path: Any) -> None:
    import json

    path = tmp_path / "r.json"
    path.write_text(json.dumps(DATA))
    service = ModelRegistryService.from_path(path)
    selector = ModelSelectionFactory(service)
    before = selector.candidates("chat")
    data = json.loads(json.dumps(DATA))
    data["taskMappings"][0]["fallbackModelIds"] = []
    path.write_text(json.dumps(data))
    service.reload()
    after = selector.candidates("chat")
    assert ids(before.models) == ["small", "big", "huge", "dflt"]
    assert ids(after.models) == ["small", "dflt"]
    assert before.registry is not after.registry


# --- the estimate is an upper bound for any text ---------------------------------------------

SCRIPTS = {
    "english": "The quick brown fox jumps over the lazy dog. " * 20,
    "cjk": "人工知能は言語モデルの研究を進めています。数据中心的模型选择。한국어 문장도 있습니다。" * 10,
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 10,
    "emoji": "🙂👍🏽🚀👨‍👩‍👧‍👦🇺🇦" * 40,
    "code": "def f(x):\n\treturn {'k': [x ** 2 for x in range(10)]}  # 注释\n" * 10,
    "random": "".join(chr(c) for c in range(0x20, 0x2FFF, 7)),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_estimate_is_at_least_the_utf8_size_of_every_text(script: str) -> None:
    text = SCRIPTS[script]
    size = len(text.encode("utf-8"))
    request = CompletionRequest(
        prompt=text,
        system_prompt=text[:50],
        messages=[Message(role="user", content=text), Message(role="assistant", content=text[::-1])],
    )
    # Four texts (plus the system prompt's) and four messages' overhead on top.
    assert estimate_prompt_tokens(request) >= 3 * size + len(text[:50].encode("utf-8")) + 4 * 4


def test_estimate_counts_tool_calls_tools_and_json_schemas() -> None:
    base = CompletionRequest(prompt="hi")
    call = ToolCall(id="call_1", name="lookup", arguments='{"city": "Zürich"}')
    with_call = CompletionRequest(prompt="hi", messages=[Message(role="assistant", tool_calls=(call,))])
    assert estimate_prompt_tokens(with_call) >= estimate_prompt_tokens(base) + len(call.arguments.encode())
    params = {"type": "object", "properties": {"city": {"type": "string", "description": "ville à chercher"}}}
    with_tool = CompletionRequest(prompt="hi", tools=[ToolSpec("lookup", "Find a city", params)])
    # Providers add a tool-use system prompt of their own (Anthropic: up to 530 tokens).
    assert estimate_prompt_tokens(with_tool) >= estimate_prompt_tokens(base) + 530 + len(json.dumps(params))
    schema_request = CompletionRequest(prompt="hi", response_format=ResponseFormat.json_schema(params))
    assert estimate_prompt_tokens(schema_request) >= estimate_prompt_tokens(base) + 530
    assert estimate_prompt_tokens(CompletionRequest(prompt="hi", response_format=ResponseFormat.json())) == (
        estimate_prompt_tokens(base)
    )


def _old_estimate(request: CompletionRequest) -> int:
    """The estimate before it became a bound: four characters a token, four tokens a message."""
    chars = len(request.prompt or "") + len(request.system_prompt or "")
    return -(-chars // 4) + 4 * ((request.prompt is not None) + bool(request.system_prompt))


def _about(text: str, size: int) -> str:
    """``text`` repeated and cut to about ``size`` UTF-8 bytes."""
    out = text * (size // len(text.encode()) + 1)
    return out.encode()[:size].decode(errors="ignore")


@pytest.mark.parametrize("script", ["english", "cjk", "emoji", "code"])
def test_the_example_registry_routes_normal_prompts_as_before(script: str) -> None:
    selector = ModelSelectionFactory(ModelRegistryService.from_path(EXAMPLE))
    request = CompletionRequest(prompt=_about(SCRIPTS[script], 4000), system_prompt="You are concise.")
    for task in ("persona-generation", "persona-critique", "clustering", "summarisation", "classification"):
        now = selector.candidates(task, request)
        before = selector.candidates(task, request, prompt_tokens=_old_estimate(request))
        assert (ids(now.models), now.skipped) == (ids(before.models), before.skipped), task
        assert now.skipped == (), task


def test_prompts_that_fit_are_not_refused_by_the_byte_bound() -> None:
    # The regression: 45,000 characters of English (about 10k real tokens) were refused by a 16k-window model,
    # "context window 16000 < 46016 tokens needed", because the byte count (an upper bound) decided.
    registry = {
        "models": [
            model("k16", contextWindow=16000, maxTokens=1000),
            model("k128", contextWindow=128000, maxTokens=1000),
        ],
        "taskMappings": [{"taskName": "t", "primaryModelId": "k16", "fallbackModelIds": ["k128"]}],
        "defaultModelId": "k128",
    }
    selector = ModelSelectionFactory(ModelRegistryService.from_dict(registry))
    essay = CompletionRequest(prompt=_about(SCRIPTS["english"], 45000))
    assert ids(selector.candidates("t", essay).models) == ["k16", "k128"]
    # 130 kB of English (about 30k real tokens) is at least 16,250 tokens: it certainly does not fit 16k.
    report = CompletionRequest(prompt=_about(SCRIPTS["english"], 130000))
    assert ids(selector.candidates("t", report).models) == ["k128"]
    # A whole book (1.2 MB of English, about 300k real tokens) goes to the example registry's one-million and
    # two-million-token models, when the caller allows its estimated cost (budgets price the upper bound).
    example = ModelSelectionFactory(ModelRegistryService.from_path(EXAMPLE))
    book = CompletionRequest(prompt=SCRIPTS["english"] * 1300, max_cost=2.0)
    assert ids(example.candidates("summarisation", book).models) == ["gemini-1.5-flash", "gemini-1.5-pro"]


# --- capabilities as any iterable ------------------------------------------------------------


def test_required_capabilities_may_be_any_iterable_of_names(selector: ModelSelectionFactory) -> None:
    as_set = selector.candidates("chat", CompletionRequest(required_capabilities=frozenset({"vision"})))
    for given in (["vision"], ("vision",), {"vision"}, (c for c in ["vision"])):
        request = CompletionRequest(required_capabilities=given)  # type: ignore[arg-type]
        selection = selector.candidates("chat", request)
        assert (selection.models, selection.skipped) == (as_set.models, as_set.skipped)
        assert selection.required_capabilities == frozenset({"vision"})
    assert ids(selector.explain("chat", require={"tools"}).models) == ["huge"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "vision",
            "required_capabilities must be an iterable of capability names such as ['vision'], not str 'vision'",
        ),
        (7, "required_capabilities must be an iterable of capability names such as ['vision'], not int 7"),
        (["vision", 3], "required_capabilities must hold capability names (strings), not int 3"),
    ],
)
def test_required_capabilities_of_the_wrong_type_name_the_parameter(
    selector: ModelSelectionFactory, given: object, message: str
) -> None:
    request = CompletionRequest(required_capabilities=given)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError) as info:
        selector.candidates("chat", request)
    assert (str(info.value), info.value.param) == (message, "required_capabilities")
    with pytest.raises(InvalidRequestError, match=r"^require must be an iterable"):
        selector.explain("chat", require="tools")


# --- unknown tasks ----------------------------------------------------------------------------


def test_unknown_tasks_can_be_errors(service: ModelRegistryService) -> None:
    strict = ModelSelectionFactory(service, unknown_task="error")
    assert strict.unknown_task == "error"
    message = "unknown task 'jsno'; did you mean 'json'? (known tasks: 'chat', 'cheap', 'json', 'self')"
    for ask in (
        lambda: strict.select_model_for_task("jsno"),
        lambda: strict.candidates("jsno", CompletionRequest(prompt="hi")),
        lambda: strict.explain("jsno"),
    ):
        with pytest.raises(UnknownTaskError) as info:
            ask()
        assert (str(info.value), info.value.task) == (message, "jsno")
    assert ids(strict.candidates("json").models) == ["small", "big"]  # known tasks are unchanged
    with pytest.raises(UnknownTaskError, match=r"^unknown task 'zzz' \(known tasks: 'chat'"):
        strict.candidates("zzz")


def test_unknown_tasks_get_the_default_model_by_default(selector: ModelSelectionFactory) -> None:
    assert selector.unknown_task == "default"
    selection = selector.candidates("jsno")
    assert (ids(selection.models), selection.known_task) == (["dflt"], False)


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty, for one test, the record of the unknown tasks this process has warned about."""
    from taskmodels import selection

    monkeypatch.setattr(selection, "_warned", set())


def unknown_task_events(events: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["event"] == "taskmodels.task.unknown"]


@pytest.mark.usefixtures("fresh_warnings")
def test_an_unknown_task_is_warned_about_once_naming_the_closest(selector: ModelSelectionFactory) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as events:
        assert ids(selector.candidates("jsno", CompletionRequest(prompt="hi")).models) == ["dflt"]
        selector.candidates("jsno")
        assert selector.select_model_for_task("jsno").id == "dflt"
    [warning] = unknown_task_events(events)
    assert warning["log_level"] == "warning"
    assert (warning["task"], warning["served_by"], warning["did_you_mean"]) == ("jsno", "dflt", "json")
    assert "TASKMODELS_SELECTION__UNKNOWN_TASK=error" in warning["note"]
    with capture_logs() as events:
        selector.select_model_for_task("zzz-nothing-like-it")  # another name: its own warning
    [other] = unknown_task_events(events)
    assert (other["task"], other["did_you_mean"]) == ("zzz-nothing-like-it", None)


@pytest.mark.usefixtures("fresh_warnings")
def test_explain_says_it_itself_and_does_not_log(selector: ModelSelectionFactory) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as events:
        assert selector.explain("jsno").known_task is False
    assert unknown_task_events(events) == []
    with capture_logs() as events:
        selector.candidates("jsno")  # explain did not use up the call path's one warning
    assert len(unknown_task_events(events)) == 1


@pytest.mark.usefixtures("fresh_warnings")
def test_known_tasks_and_strict_selectors_log_nothing(service: ModelRegistryService) -> None:
    from structlog.testing import capture_logs

    strict = ModelSelectionFactory(service, unknown_task="error")
    with capture_logs() as events:
        ModelSelectionFactory(service).candidates("chat")
        with pytest.raises(UnknownTaskError):
            strict.candidates("jsno")
    assert unknown_task_events(events) == []


@pytest.mark.usefixtures("fresh_warnings")
def test_threads_asking_for_one_unknown_task_warn_once(selector: ModelSelectionFactory) -> None:
    import threading

    from structlog.testing import capture_logs

    start = threading.Barrier(8)

    def ask() -> None:
        start.wait(timeout=10)
        for _ in range(200):
            selector.candidates("clusterring")

    with capture_logs() as events:
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert [e["task"] for e in unknown_task_events(events)] == ["clusterring"]


@pytest.mark.usefixtures("fresh_warnings")
def test_unknown_task_warnings_stop_after_a_bound(
    selector: ModelSelectionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from structlog.testing import capture_logs

    from taskmodels import selection

    monkeypatch.setattr(selection, "UNKNOWN_TASKS_LOGGED", 3)
    with capture_logs() as events:
        for i in range(10):
            selector.candidates(f"made-up-{i}")
    warnings = unknown_task_events(events)
    assert [e["task"] for e in warnings] == ["made-up-0", "made-up-1", "made-up-2", "made-up-3"]
    assert warnings[-1]["note"] == "3 unknown task names were logged; no more will be in this process"
    assert len(selection._warned) == 4  # the bound is on memory too


def test_the_known_tasks_listed_are_bounded() -> None:
    data = {
        "models": [model("a")],
        "taskMappings": [{"taskName": f"task-{i:03d}", "primaryModelId": "a"} for i in range(45)],
        "defaultModelId": "a",
    }
    strict = ModelSelectionFactory(ModelRegistryService.from_dict(data), unknown_task="error")
    with pytest.raises(UnknownTaskError) as info:
        strict.candidates("other")
    assert str(info.value).endswith("'task-019' and 25 more)")


def test_an_unknown_policy_is_a_configuration_error(service: ModelRegistryService) -> None:
    with pytest.raises(ConfigurationError, match="unknown_task must be 'default' or 'error', not 'ignore'"):
        ModelSelectionFactory(service, unknown_task="ignore")  # type: ignore[arg-type]


def test_the_unknown_task_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmodels.errors import SettingsError
    from taskmodels.settings import load_settings

    assert load_settings().selection.unknown_task == "default"
    monkeypatch.setenv("TASKMODELS_SELECTION__UNKNOWN_TASK", "error")
    assert load_settings().selection.unknown_task == "error"
    monkeypatch.setenv("TASKMODELS_SELECTION__UNKNOWN_TASK", "fail")
    with pytest.raises(SettingsError, match="TASKMODELS_SELECTION__UNKNOWN_TASK"):
        load_settings()


# --- images imply vision ---------------------------------------------------------------------------------

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")  # a PNG's first bytes


def with_images(count: int, **fields: Any) -> CompletionRequest:
    parts: tuple[TextPart | ImagePart, ...] = (
        TextPart("What is this?"),
        *(ImagePart.from_bytes(PNG) for _ in range(count)),
    )
    return CompletionRequest(messages=[Message(role="user", content=parts)], **fields)


def test_an_image_part_implies_vision_where_the_registry_declares_it(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat", with_images(2))
    assert ids(selection.models) == ["big", "huge"]
    assert selection.skipped == (
        Skip("small", "lacks capability vision"),
        Skip("dflt", "lacks capability vision"),
    )
    assert selection.images == 2
    assert selection.required_capabilities == frozenset({"vision"})


def test_an_image_url_implies_vision_too(selector: ModelSelectionFactory) -> None:
    request = CompletionRequest(
        messages=[Message(role="user", content=(ImagePart.from_url("https://example.com/cat.png"),))]
    )
    assert ids(selector.candidates("chat", request).models) == ["big", "huge"]


def test_images_rule_nothing_out_in_a_registry_that_never_says_vision() -> None:
    data = {
        "models": [model("a", capabilities=["chat"]), model("b", capabilities=["chat"])],
        "taskMappings": [{"taskName": "t", "primaryModelId": "a", "fallbackModelIds": ["b"]}],
        "defaultModelId": "a",
    }
    selection = ModelSelectionFactory(ModelRegistryService.from_dict(data)).candidates("t", with_images(1))
    assert ids(selection.models) == ["a", "b"]
    assert selection.skipped == ()


def test_no_model_with_vision_is_no_eligible_model_naming_the_capability() -> None:
    data = {
        "models": [model("a", capabilities=["chat"]), model("v", capabilities=["chat", "vision"])],
        "taskMappings": [{"taskName": "t", "primaryModelId": "a"}],
        "defaultModelId": "a",
    }
    selection = ModelSelectionFactory(ModelRegistryService.from_dict(data)).candidates("t", with_images(1))
    assert selection.models == ()
    assert selection.skipped == (Skip("a", "lacks capability vision"),)


def test_each_image_counts_its_providers_bound_against_the_cost_limit(selector: ModelSelectionFactory) -> None:
    # "big": openai at $0.01 per 1k tokens, 1000 output tokens. Without images the call costs about $0.0101;
    # each image adds up to 3,800 prompt tokens on OpenAI (about $0.038), which a $0.03 limit cannot take.
    assert ids(selector.candidates("cheap", with_images(0, max_cost=0.03)).models) == ["big", "dflt"]
    selection = selector.candidates("cheap", with_images(1, max_cost=0.03))
    assert selection.models == ()
    big, huge, dflt = selection.skipped
    assert big.reason.startswith("estimated cost $0.04")
    assert huge.reason.startswith("estimated cost $0.4")
    assert dflt == Skip("dflt", "lacks capability vision")


@pytest.mark.parametrize(
    ("provider", "tokens"),
    [("openai", 3_800), ("azure-openai", 3_800), ("anthropic", 1_600), ("gemini", 1_120), ("ollama", 4_096)],
)
def test_the_image_token_bound_of_each_provider(provider: str, tokens: int) -> None:
    assert image_tokens(provider) == tokens
