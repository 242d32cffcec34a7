"""ModelSelectionFactory: each selection rule has a test that fails without it."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.registry import ModelRegistryService
from taskmodels.selection import ModelSelectionFactory, Skip, estimate_prompt_tokens
from taskmodels.types import CompletionRequest, Message
from tests.registry_entries import model

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
    assert selection.skipped == (Skip("small", "context window 8192 < 9000 tokens needed (8000 prompt + 1000 output)"),)


def test_context_window_uses_request_max_tokens(selector: ModelSelectionFactory) -> None:
    selection = selector.candidates("chat", CompletionRequest(max_tokens=31000), prompt_tokens=1001)
    assert ids(selection.models) == ["big", "huge"]
    assert selection.skipped[1] == Skip(
        "dflt", "context window 32000 < 32001 tokens needed (1001 prompt + 31000 output)"
    )
    exactly_full = selector.candidates("chat", CompletionRequest(max_tokens=31000), prompt_tokens=1000)
    assert ids(exactly_full.models) == ["big", "huge", "dflt"]


def test_context_window_estimated_from_messages(selector: ModelSelectionFactory) -> None:
    request = CompletionRequest(messages=[Message(role="user", content="x" * 40000)])
    assert estimate_prompt_tokens(request) >= 10000
    selection = selector.candidates("chat", request)
    assert "small" in [s.model_id for s in selection.skipped]
    assert selection.prompt_tokens == estimate_prompt_tokens(request)


def test_estimate_counts_prompt_system_and_messages() -> None:
    short = estimate_prompt_tokens(CompletionRequest(prompt="abcd"))
    longer = estimate_prompt_tokens(CompletionRequest(prompt="abcd", system_prompt="efgh" * 10))
    assert 1 <= short < longer
    assert estimate_prompt_tokens(CompletionRequest(prompt="a" * 4000)) >= 1000


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
    assert selection.skipped_pairs()[0] == ("small", "lacks capability audio")


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
