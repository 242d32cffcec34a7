"""Images in messages, in each provider's own wire shape, against httpx2.MockTransport.

The expected bodies are written out from each vendor's documentation (the URL is above each test), not
computed by the mapping under test. A provider that cannot take what a request carries refuses it before
sending anything, with ``UnsupportedContentError`` naming the image by type, size or host: never its bytes
nor a URL's path and query.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import SecretStr

from taskmodels.errors import UnsupportedContentError
from taskmodels.providers.anthropic import AnthropicProvider
from taskmodels.providers.azure import AzureOpenAIProvider
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.gemini import GeminiProvider
from taskmodels.providers.ollama import OllamaProvider
from taskmodels.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from taskmodels.types import CompletionRequest, ImagePart, Message, TextPart, ToolCall
from taskmodels.validation import coerce_request

# A 1x1 PNG, as the vendors' own examples use, and its base64 text written out.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG = base64.b64decode(PNG_B64)
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
GIF_B64 = "R0lGODlhAQABAAAAADs="
CAT_URL = "https://images.example.com/pets/cat.jpg?sig=SECRET-SIGNATURE"

OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A cat."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}
ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "A cat."}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 10, "output_tokens": 2},
}
GEMINI_ANSWER = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "A cat."}]}, "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2},
}
OLLAMA_ANSWER = {
    "model": "llava",
    "message": {"role": "assistant", "content": "A cat."},
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 10,
    "eval_count": 2,
}


def looking_at(*parts: TextPart | ImagePart) -> CompletionRequest:
    return CompletionRequest(messages=[Message(role="user", content=parts)])


def provider(kind: str, mock: Any, make_model: Any) -> BaseModelProvider:
    key = SecretStr("test-key-0123456789")
    if kind == "openai":
        return OpenAIProvider(make_model(model_name="gpt-4o"), mock.client, api_key=key)
    if kind == "azure-openai":
        model = make_model(provider="azure-openai", model_name="gpt-4o", base_url="https://r.openai.azure.com")
        return AzureOpenAIProvider(model, mock.client, api_key=key)
    if kind == "openai-compatible":
        model = make_model(provider="openai-compatible", model_name="qwen2.5-vl")
        return OpenAICompatibleProvider(model, mock.client, base_url="http://127.0.0.1:8080/v1")
    if kind == "anthropic":
        return AnthropicProvider(
            make_model(provider="anthropic", model_name="claude-sonnet-4-5"), mock.client, api_key=key
        )
    if kind == "gemini":
        return GeminiProvider(make_model(provider="gemini", model_name="gemini-2.5-flash"), mock.client, api_key=key)
    return OllamaProvider(make_model(provider="ollama", model_name="llava"), mock.client)


def assert_names_no_image_data(error: BaseException) -> None:
    text = f"{error} {error!r} {vars(error)}"
    for secret in ("/pets/cat", "SECRET-SIGNATURE", PNG_B64[:24], GIF_B64[:12]):
        assert secret not in text


# --- OpenAI, Azure OpenAI, OpenAI-compatible ------------------------------------------------------------
# https://platform.openai.com/docs/guides/images-vision ("Passing a URL" and "Passing a Base64 encoded
# image"): content is a list of {"type": "text", "text"} and {"type": "image_url", "image_url": {"url",
# "detail"}} parts, the URL an https URL or a data: URL. Azure OpenAI takes the same body at its deployment
# URL: https://learn.microsoft.com/azure/ai-foundry/openai/how-to/gpt-with-vision


@pytest.mark.parametrize("kind", ["openai", "azure-openai", "openai-compatible"])
async def test_openai_protocols_send_text_and_image_url_parts(mock_http: Any, make_model: Any, kind: str) -> None:
    mock_http.reply(200, json=OPENAI_ANSWER)
    request = looking_at(
        TextPart("What is in these images?"),
        ImagePart.from_bytes(PNG, detail="low"),
        ImagePart.from_url(CAT_URL),
    )
    await provider(kind, mock_http, make_model).complete(request)
    assert mock_http.last_json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": CAT_URL}},
            ],
        }
    ]


async def test_an_openai_shaped_dict_message_goes_out_as_it_came_in(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(200, json=OPENAI_ANSWER)
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64, "detail": "high"}},
        ],
    }
    await provider("openai", mock_http, make_model).complete(coerce_request(None, {"messages": [message]}))
    assert mock_http.last_json()["messages"] == [message]


async def test_text_stays_a_string_and_text_parts_without_images_are_joined(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(200, json=OPENAI_ANSWER)
    request = CompletionRequest(
        system_prompt="Be brief.",
        messages=[Message(role="user", content=(TextPart("Hello, "), TextPart("world")))],
        prompt="Again.",
    )
    await provider("openai", mock_http, make_model).complete(request)
    assert mock_http.last_json()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, world"},
        {"role": "user", "content": "Again."},
    ]


async def test_an_openai_stream_carries_the_image_parts_too(mock_http: Any, make_model: Any, sse_body: Any) -> None:
    mock_http.reply_stream(
        sse_body(
            {"choices": [{"index": 0, "delta": {"content": "A cat."}, "finish_reason": "stop"}]},
            "[DONE]",
        )
    )
    events = [
        e async for e in provider("openai", mock_http, make_model).stream(looking_at(ImagePart.from_url(CAT_URL)))
    ]
    assert events[-1].type == "done"
    assert mock_http.last_json()["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": CAT_URL}}]


# --- Anthropic ----------------------------------------------------------------------------------------
# https://docs.claude.com/en/docs/build-with-claude/vision: {"type": "image", "source": {"type": "base64",
# "media_type": "image/png", "data": ...}} and {"type": "image", "source": {"type": "url", "url": ...}} blocks
# beside {"type": "text"} blocks; JPEG, PNG, GIF and WebP; at most 5 MB an image.


async def test_anthropic_sends_base64_and_url_image_blocks_beside_text(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(200, json=ANTHROPIC_ANSWER)
    request = looking_at(
        ImagePart.from_bytes(PNG), ImagePart.from_url(CAT_URL), TextPart("Compare them."), TextPart("")
    )
    await provider("anthropic", mock_http, make_model).complete(request)
    assert mock_http.last_json()["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                {"type": "image", "source": {"type": "url", "url": CAT_URL}},
                {"type": "text", "text": "Compare them."},
            ],
        }
    ]


async def test_anthropic_keeps_tool_results_first_in_the_user_turn_that_adds_an_image(
    mock_http: Any, make_model: Any
) -> None:
    mock_http.reply(200, json=ANTHROPIC_ANSWER)
    request = CompletionRequest(
        messages=[
            Message(role="user", content="Take a photo."),
            Message(role="assistant", tool_calls=(ToolCall(id="toolu_1", name="camera", arguments="{}"),)),
            Message(role="tool", tool_call_id="toolu_1", content="taken"),
            Message(role="user", content=(TextPart("Here it is."), ImagePart.from_bytes(GIF))),
        ]
    )
    await provider("anthropic", mock_http, make_model).complete(request)
    assert mock_http.last_json()["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "camera", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "taken"},
                {"type": "text", "text": "Here it is."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": GIF_B64}},
            ],
        },
    ]


async def test_anthropic_refuses_an_image_over_its_5_mb_before_sending(mock_http: Any, make_model: Any) -> None:
    limit = 5 * 1024 * 1024  # Anthropic's limit, on the base64 text
    at_limit = ImagePart(data=PNG_B64[:12] + "A" * (limit - 12), media_type="image/png", size=limit * 3 // 4)
    over = ImagePart(data=PNG_B64[:12] + "A" * (limit - 8), media_type="image/png", size=(limit + 4) * 3 // 4)
    mock_http.reply(200, json=ANTHROPIC_ANSWER)
    anthropic = provider("anthropic", mock_http, make_model)
    await anthropic.complete(looking_at(at_limit))
    assert len(mock_http.requests) == 1
    with pytest.raises(UnsupportedContentError) as caught:
        await anthropic.complete(looking_at(TextPart("What is it?"), over))
    assert len(mock_http.requests) == 1  # nothing more was sent
    assert "image/png image of 3,932,163 bytes" in str(caught.value)
    assert caught.value.model_id == "test-model"
    assert_names_no_image_data(caught.value)


# --- Gemini -------------------------------------------------------------------------------------------
# https://ai.google.dev/gemini-api/docs/image-understanding: {"inlineData": {"mimeType", "data"}} parts
# beside {"text"} parts; PNG, JPEG, WebP, HEIC and HEIF (no GIF). https://ai.google.dev/gemini-api/docs/
# file-input-methods: a public or signed https URL goes as {"fileData": {"mimeType", "fileUri"}}, fetched
# by Gemini.


async def test_gemini_sends_inline_data_and_file_data_parts(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(200, json=GEMINI_ANSWER)
    request = looking_at(
        TextPart("What is in these images?"),
        ImagePart.from_bytes(PNG),
        ImagePart.from_url(CAT_URL),
        ImagePart.from_url("https://cdn.example.com/render/42"),
        ImagePart.from_url("https://cdn.example.com/a/B.PNG#top"),
    )
    await provider("gemini", mock_http, make_model).complete(request)
    assert mock_http.last_json()["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is in these images?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG_B64}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": CAT_URL}},
                {"fileData": {"fileUri": "https://cdn.example.com/render/42"}},  # its type unsaid: Gemini reads it
                {"fileData": {"mimeType": "image/png", "fileUri": "https://cdn.example.com/a/B.PNG#top"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (ImagePart.from_bytes(GIF), "a image/gif image"),
        (
            ImagePart.from_url("https://images.example.com/pets/cat.gif?sig=SECRET-SIGNATURE"),
            "https://images.example.com/…",
        ),
    ],
    ids=["inline", "url"],
)
async def test_gemini_refuses_a_gif_before_sending(
    mock_http: Any, make_model: Any, image: ImagePart, said: str
) -> None:
    with pytest.raises(UnsupportedContentError) as caught:
        await provider("gemini", mock_http, make_model).complete(looking_at(TextPart("What is it?"), image))
    assert mock_http.requests == []
    assert said in str(caught.value)
    assert "PNG, JPEG, WebP, HEIC and HEIF" in str(caught.value)
    assert_names_no_image_data(caught.value)


# --- Ollama -------------------------------------------------------------------------------------------
# https://github.com/ollama/ollama/blob/main/docs/api.md#chat-request-with-images: the message's "images"
# is a list of base64 strings (no data: prefix) beside its "content" text. Ollama takes no URLs.


async def test_ollama_sends_the_messages_images_as_base64(mock_http: Any, make_model: Any) -> None:
    mock_http.reply(200, json=OLLAMA_ANSWER)
    request = looking_at(TextPart("What is in this image? "), ImagePart.from_bytes(PNG), TextPart("Be brief."))
    await provider("ollama", mock_http, make_model).complete(request)
    assert mock_http.last_json()["messages"] == [
        {"role": "user", "content": "What is in this image? Be brief.", "images": [PNG_B64]}
    ]


async def test_ollama_refuses_an_image_url_and_fetches_nothing(mock_http: Any, make_model: Any) -> None:
    ollama = provider("ollama", mock_http, make_model)
    with pytest.raises(UnsupportedContentError) as caught:
        await ollama.complete(looking_at(TextPart("What is it?"), ImagePart.from_url(CAT_URL)))
    with pytest.raises(UnsupportedContentError):
        async for _ in ollama.stream(looking_at(ImagePart.from_url(CAT_URL))):
            pass
    assert mock_http.requests == []  # neither the URL nor Ollama was asked anything
    assert "an image URL (https://images.example.com/…)" in str(caught.value)
    assert caught.value.status_code is None
    assert_names_no_image_data(caught.value)


# --- a model that answers it takes no images ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        # OpenAI and Azure, for a model without vision (the body quoted in openai/openai-python and vLLM issues).
        (
            "openai",
            400,
            {
                "error": {
                    "message": "Invalid content type. image_url is only supported by certain models.",
                    "type": "invalid_request_error",
                    "param": "messages.[0].content.[1].type",
                    "code": None,
                }
            },
        ),
        # llama.cpp's server without a vision projector (what tests/integration/test_llamacpp.py gets for real).
        (
            "openai-compatible",
            500,
            {
                "error": {
                    "code": 500,
                    "message": "image input is not supported - hint: if this is unexpected, you may need to "
                    "provide the mmproj",
                    "type": "server_error",
                }
            },
        ),
        # Ollama, a model without a projector.
        (
            "ollama",
            500,
            {
                "error": "Failed to create new sequence: failed to process inputs: this model is missing data "
                "required for image input"
            },
        ),
    ],
    ids=["openai", "llama.cpp", "ollama"],
)
async def test_a_model_that_takes_no_images_is_unsupported_content_not_an_outage(
    mock_http: Any, make_model: Any, kind: str, status: int, body: dict[str, Any]
) -> None:
    mock_http.reply(status, json=body)
    with pytest.raises(UnsupportedContentError) as caught:
        await provider(kind, mock_http, make_model).complete(looking_at(ImagePart.from_bytes(PNG)))
    assert caught.value.status_code == status
