"""Each provider's wire form for each way of sending a schema, on MockTransport with the providers' documented
request and response bodies, and the reasoning settings each maps.

The typed port (``OutputRun.port``) is what the engine calls for a call with an ``output_type``: these tests
call it the same way, so the request on the wire and the validated ``output`` are both checked.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from taskmodels.errors import OutputValidationError
from taskmodels.output import OutputRun, output_schema
from taskmodels.providers.anthropic import JSON_TOOL_NAME, AnthropicProvider
from taskmodels.providers.azure import AzureOpenAIProvider
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.gemini import GeminiProvider
from taskmodels.providers.ollama import OllamaProvider
from taskmodels.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from taskmodels.providers.reasoning import MAPPED_PROVIDERS
from taskmodels.registry.loader import REASONING_PROVIDERS
from taskmodels.types import CompletionRequest


class Sentiment(StrEnum):
    positive = "positive"
    negative = "negative"


class Review(BaseModel):
    sentiment: Sentiment
    recommended: bool


ANSWER = {"sentiment": "positive", "recommended": True}
EXPECTED = Review(sentiment=Sentiment.positive, recommended=True)
KEY = SecretStr("sk-test-structured")


def openai_body(content: str, finish: str = "stop") -> dict[str, Any]:
    """OpenAI's documented Chat Completions answer to a ``json_schema`` request."""
    return {
        "id": "chatcmpl-9nYAG9LPNonX8DAyrkwYfemr3C8HC",
        "object": "chat.completion",
        "created": 1721596428,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 81, "completion_tokens": 11, "total_tokens": 92},
    }


ANTHROPIC_TOOL_ANSWER = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": JSON_TOOL_NAME, "input": ANSWER}],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 21},
}

GEMINI_ANSWER = {
    "candidates": [
        {"content": {"parts": [{"text": json.dumps(ANSWER)}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ],
    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 9, "totalTokenCount": 21},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-1",
}

OLLAMA_ANSWER = {
    "model": "llama3.2",
    "created_at": "2024-12-06T19:35:51.000Z",
    "message": {"role": "assistant", "content": json.dumps(ANSWER)},
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 20,
    "eval_count": 12,
}


ALL_TAGS = frozenset({"chat", "json", "json_schema"})


def run(*, declared: frozenset[str] = ALL_TAGS, retries: int = 1) -> OutputRun:
    return OutputRun(output_schema(Review), retries=retries, declared=declared)


def request() -> CompletionRequest:
    return CompletionRequest(prompt="Great film, go see it.", system_prompt="You classify reviews.")


# --- native JSON schema -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [OpenAIProvider, OpenAICompatibleProvider])
async def test_openai_protocol_sends_response_format_json_schema(mock_http: Any, make_model: Any, cls: Any) -> None:
    model = make_model(provider=cls.name, capabilities=("json_schema",), base_url="http://llm.test/v1")
    provider = cls(model, mock_http.client, api_key=KEY)
    mock_http.reply(json=openai_body(json.dumps(ANSWER)))

    result = await run().port(provider).complete(request())

    body = mock_http.last_json()
    assert body["response_format"]["type"] == "json_schema"
    schema_part = body["response_format"]["json_schema"]
    assert schema_part["name"] == "Review"
    assert schema_part["strict"] is True
    assert schema_part["schema"]["required"] == ["sentiment", "recommended"]
    assert schema_part["schema"]["additionalProperties"] is False
    assert schema_part["schema"]["$defs"]["Sentiment"]["enum"] == ["positive", "negative"]
    # natively sent: the prompt is the caller's, no schema repeated in it
    assert body["messages"] == [
        {"role": "system", "content": "You classify reviews."},
        {"role": "user", "content": "Great film, go see it."},
    ]
    assert result.output == EXPECTED


async def test_azure_sends_response_format_json_schema(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="azure-openai", model_name="gpt-4o", capabilities=("json_schema",))
    provider = AzureOpenAIProvider(model, mock_http.client, api_key=KEY, base_url="https://res.openai.azure.com")
    mock_http.reply(json=openai_body(json.dumps(ANSWER)))
    result = await run().port(provider).complete(request())
    assert "/openai/deployments/gpt-4o/chat/completions" in str(mock_http.requests[0].url)
    assert mock_http.last_json()["response_format"]["json_schema"]["schema"]["type"] == "object"
    assert result.output == EXPECTED


async def test_gemini_sends_response_json_schema_and_mime_type(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="gemini", model_name="gemini-2.5-flash", capabilities=("json_schema",))
    provider = GeminiProvider(model, mock_http.client, api_key=KEY)
    mock_http.reply(json=GEMINI_ANSWER)

    result = await run().port(provider).complete(request())

    config = mock_http.last_json()["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["recommended"] == {"title": "Recommended", "type": "boolean"}
    assert result.output == EXPECTED


async def test_anthropic_forces_a_tool_whose_input_schema_is_the_schema(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="anthropic", model_name="claude-sonnet-4-5", capabilities=("json_schema",))
    provider = AnthropicProvider(model, mock_http.client, api_key=KEY)
    mock_http.reply(json=ANTHROPIC_TOOL_ANSWER)

    result = await run().port(provider).complete(request())

    body = mock_http.last_json()
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    [tool] = body["tools"]
    assert tool["name"] == JSON_TOOL_NAME
    assert tool["input_schema"]["type"] == "object"
    assert set(tool["input_schema"]["properties"]) == {"sentiment", "recommended"}
    assert body["system"] == "You classify reviews."
    assert result.output == EXPECTED
    assert json.loads(result.text) == ANSWER


async def test_ollama_sends_the_schema_as_format(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="ollama", model_name="llama3.2", capabilities=("json_schema",))
    provider = OllamaProvider(model, mock_http.client)
    mock_http.reply(json=OLLAMA_ANSWER)
    result = await run().port(provider).complete(request())
    assert mock_http.last_json()["format"]["properties"]["sentiment"] == {"$ref": "#/$defs/Sentiment"}
    assert result.output == EXPECTED


# --- JSON mode and prompted ----------------------------------------------------------------------------


async def test_json_mode_sends_json_object_and_the_schema_in_the_system_prompt(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="openai-compatible", capabilities=("json",), base_url="http://llm.test/v1")
    provider = OpenAICompatibleProvider(model, mock_http.client)
    mock_http.reply(json=openai_body("Sure! " + json.dumps(ANSWER)))

    result = await run().port(provider).complete(request())

    body = mock_http.last_json()
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You classify reviews.\n\nAnswer with one JSON object")
    assert '"recommended"' in system["content"]
    assert result.output == EXPECTED  # the JSON is found after the model's preamble


async def test_gemini_json_mode_sends_only_the_mime_type(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="gemini", model_name="gemini-2.0-flash", capabilities=("json",))
    provider = GeminiProvider(model, mock_http.client, api_key=KEY)
    mock_http.reply(json=GEMINI_ANSWER)
    await run().port(provider).complete(request())
    body = mock_http.last_json()
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in body["generationConfig"]
    assert '"sentiment"' in body["systemInstruction"]["parts"][0]["text"]


async def test_prompted_sends_no_structured_field_at_all(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="openai-compatible", capabilities=("chat",), base_url="http://llm.test/v1")
    provider = OpenAICompatibleProvider(model, mock_http.client)
    mock_http.reply(json=openai_body("```json\n" + json.dumps(ANSWER) + "\n```"))
    result = await run().port(provider).complete(request())
    body = mock_http.last_json()
    assert "response_format" not in body
    assert '"sentiment"' in body["messages"][0]["content"]
    assert result.output == EXPECTED


async def test_anthropic_with_extended_thinking_is_prompted_not_forced(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="anthropic", capabilities=("json_schema",), reasoning_effort="low", max_tokens=1000)
    provider = AnthropicProvider(model, mock_http.client, api_key=KEY)
    mock_http.reply(
        json={
            **ANTHROPIC_TOOL_ANSWER,
            "content": [
                {"type": "thinking", "thinking": "The reviewer liked it.", "signature": "sig"},
                {"type": "text", "text": json.dumps(ANSWER)},
            ],
            "stop_reason": "end_turn",
        }
    )
    result = await run().port(provider).complete(request())
    body = mock_http.last_json()
    assert "tools" not in body
    assert "tool_choice" not in body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 1000 + 2048
    assert "temperature" not in body
    assert result.output == EXPECTED


@pytest.mark.parametrize(
    ("provider_name", "capabilities", "declared", "expected"),
    [
        # a registry that uses neither tag: each provider's default
        ("openai", ("chat",), {"chat"}, "native"),
        ("anthropic", ("chat",), {"chat"}, "native"),
        ("openai-compatible", ("chat",), {"chat"}, "prompted"),
        ("my-plugin", ("chat",), {"chat"}, "prompted"),
        # json in use, json_schema not: a model with json keeps its provider's default, one without is prompted
        ("openai", ("chat", "json"), {"chat", "json"}, "native"),
        ("openai", ("chat",), {"chat", "json"}, "prompted"),
        ("openai-compatible", ("chat", "json"), {"chat", "json"}, "json_mode"),
        # json_schema in use: a model without it has said so
        ("openai", ("chat", "json"), {"json", "json_schema"}, "json_mode"),
        ("gemini", ("chat",), {"json_schema"}, "prompted"),
        ("openai-compatible", ("json_schema",), {"json_schema"}, "native"),
    ],
)
def test_the_tags_decide_where_the_registry_uses_them(
    make_model: Any, provider_name: str, capabilities: tuple[str, ...], declared: set[str], expected: str
) -> None:
    model = make_model(provider=provider_name, capabilities=capabilities)
    assert run(declared=frozenset(declared)).strategy(model) == expected


# --- validation on the wire ------------------------------------------------------------------------------


async def test_a_second_try_carries_the_answer_and_the_error(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="openai", capabilities=("json_schema",))
    port = run().port(OpenAIProvider(model, mock_http.client, api_key=KEY))
    mock_http.reply(json=openai_body('{"sentiment": "meh", "recommended": true}'))
    mock_http.reply(json=openai_body(json.dumps(ANSWER)))
    with pytest.raises(OutputValidationError) as info:
        await port.complete(request())
    assert info.value.problems == ("sentiment: Input should be 'positive' or 'negative'",)
    assert (await port.complete(request())).output == EXPECTED
    messages = mock_http.last_json()["messages"]
    assert messages[-2] == {"role": "assistant", "content": '{"sentiment": "meh", "recommended": true}'}
    assert messages[-1]["role"] == "user"
    assert "sentiment: Input should be 'positive' or 'negative'" in messages[-1]["content"]


async def test_json_cut_at_max_tokens_is_a_truncated_validation_error(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="openai", capabilities=("json_schema",))
    the_run = run()
    port = the_run.port(OpenAIProvider(model, mock_http.client, api_key=KEY))
    mock_http.reply(json=openai_body('{"sentiment": "posi', finish="length"))
    with pytest.raises(OutputValidationError, match="cut at max_tokens") as info:
        await port.complete(request())
    assert info.value.truncated
    assert not the_run.may_ask_again(model.id)


async def test_a_streamed_answer_is_validated_at_its_end(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    model = make_model(provider="openai", capabilities=("json_schema",))
    the_run = run()
    port = the_run.port(OpenAIProvider(model, mock_http.client, api_key=KEY))
    text = json.dumps(ANSWER)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c1", "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    mock_http.reply_stream([sse_body(chunk({"content": text[:9]}), chunk({"content": text[9:]}), chunk({}, "stop"))])
    events = [event async for event in port.stream(request())]
    assert events[-1].type == "done"
    assert the_run.value == EXPECTED
    assert mock_http.last_json()["stream"] is True
    assert mock_http.last_json()["response_format"]["type"] == "json_schema"


# --- reasoning models ---------------------------------------------------------------------------------


def test_the_registry_check_knows_the_same_mapped_providers() -> None:
    assert REASONING_PROVIDERS == MAPPED_PROVIDERS


async def test_openai_reasoning_effort_and_refused_temperature(mock_http: Any, make_model: Any) -> None:
    model = make_model(
        provider="openai", model_name="o4-mini", reasoning_effort="high", unsupported_parameters=("temperature",)
    )
    mock_http.reply(json=openai_body("ok"))
    await OpenAIProvider(model, mock_http.client, api_key=KEY).complete(
        CompletionRequest(prompt="hi", temperature=0.5, top_p=0.9)
    )
    body = mock_http.last_json()
    assert body["reasoning_effort"] == "high"
    assert "temperature" not in body  # not even the request's own
    assert body["top_p"] == 0.9


async def test_gemini_thinking_config_and_refused_parameters(mock_http: Any, make_model: Any) -> None:
    model = make_model(
        provider="gemini",
        model_name="gemini-2.5-pro",
        reasoning_effort="medium",
        unsupported_parameters=("temperature", "stop"),
    )
    mock_http.reply(json=GEMINI_ANSWER)
    await GeminiProvider(model, mock_http.client, api_key=KEY).complete(CompletionRequest(prompt="hi", stop=["x"]))
    config = mock_http.last_json()["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 8192}
    assert "temperature" not in config
    assert "stopSequences" not in config


async def test_ollama_leaves_out_refused_options(mock_http: Any, make_model: Any) -> None:
    model = make_model(provider="ollama", model_name="qwen3", unsupported_parameters=("temperature",))
    mock_http.reply(json=OLLAMA_ANSWER)
    provider: BaseModelProvider = OllamaProvider(model, mock_http.client)
    await provider.complete(CompletionRequest(prompt="hi", temperature=0.1))
    assert "temperature" not in mock_http.last_json()["options"]
