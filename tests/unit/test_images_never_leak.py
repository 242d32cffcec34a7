"""An image's bytes never come out anywhere but the wire: not in a log line, an error, an attempt or a span.

A 5 MB PNG (a real PNG header, then random bytes, so that any 64-character slice of its base64 is unique)
goes to a first model whose server fails and echoes the whole request back in its error message, as vLLM's
validation errors and some proxies do, then to a second that answers. Logs are captured with structlog's
``capture_logs``, spans with the OpenTelemetry SDK's in-memory exporter with content capture on. The
variant where every model fails checks ``AllModelsFailedError``, its attempts and its errors too. Each
record must hold none of the image's base64 and no ``data:`` URL, and be at most a few kB.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx2
import pytest
from structlog.testing import capture_logs

from taskmodels.errors import AllModelsFailedError
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.testing import make_test_service
from taskmodels.types import ImagePart, Message, TextPart
from tests.otel_kit import Otel

pytest.importorskip("opentelemetry.sdk")

SIZE = 5 * 1024 * 1024
RECORD_LIMIT = 4096  # "a few kB": what one log event, error message, attempt or span may weigh at most


def png_of(size: int) -> bytes:
    """A PNG signature and IHDR chunk (a 2048x2048 RGBA image), then random bytes up to ``size``."""
    ihdr = struct.pack(">IIBBBBB", 2048, 2048, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    head = b"\x89PNG\r\n\x1a\n" + chunk
    return head + random.Random(22).randbytes(size - len(head))


IMAGE = ImagePart.from_bytes(png_of(SIZE))
B64 = IMAGE.data or ""
SLICES = [B64[:64], B64[len(B64) // 2 : len(B64) // 2 + 64], B64[-64:]]


def answer(model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": "A cat."}
    return {
        "id": "chatcmpl-1",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1600, "completion_tokens": 3, "total_tokens": 1603},
    }


def upstream(failing: set[str]) -> httpx2.MockTransport:
    """An OpenAI-compatible server: models in ``failing`` answer 500 quoting the whole request body back."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = request.content.decode()
        model = json.loads(body)["model"]
        if model in failing:
            error = {"message": f"could not process the request: {body}", "type": "server_error", "code": 500}
            return httpx2.Response(500, json={"error": error})
        if json.loads(body).get("stream"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"content": "A cat."}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            ]
            sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=answer(model))

    return httpx2.MockTransport(handle)


def entry(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": "openai-compatible",
        "modelName": model_id,
        "maxTokens": 64,
        "temperature": 0.0,
        "contextWindow": 128000,
        "costPer1kTokens": 0.001,
        "capabilities": ["chat", "vision"],
        "baseUrl": "http://upstream.test/v1",
    }


@pytest.fixture
async def make_service(otel: Otel) -> AsyncIterator[Any]:
    clients: list[httpx2.AsyncClient] = []

    def make(failing: set[str]) -> ModelService:
        client = httpx2.AsyncClient(transport=upstream(failing))
        clients.append(client)
        factory = ModelProviderFactory(http_client=client, discover_entry_points=False)
        registry = ModelRegistryService.from_dict(
            {
                "models": [entry("primary"), entry("fallback")],
                "taskMappings": [{"taskName": "look", "primaryModelId": "primary", "fallbackModelIds": ["fallback"]}],
                "defaultModelId": "fallback",
            },
            provider_names=factory.provider_names(),
        )
        return make_test_service(
            registry,
            provider_factory=factory,
            state_store=MemoryStateStore(),
            resilience=ResilienceSettings(deadline=30.0, max_attempts_per_model=1),
            tracer=otel.tracer(capture_content=True),
        )

    yield make
    for client in clients:
        await client.aclose()


def looking_at_it() -> list[Message]:
    return [Message(role="user", content=(TextPart("What is in this picture?"), IMAGE))]


def assert_clean(label: str, records: Iterable[str]) -> None:
    for record in records:
        assert "base64," not in record, f"{label}: a data: URL in {record[:200]!r}"
        for piece in SLICES:
            assert piece not in record, f"{label}: image bytes in {record[:200]!r}"
        assert len(record) <= RECORD_LIMIT, f"{label}: a record of {len(record):,} characters: {record[:200]!r}"


def span_records(otel: Otel) -> list[str]:
    records: list[str] = []
    for span in otel.finished():
        records += [json.dumps(dict(span.attributes or {}), default=str)]
        records += [str(span.status.description)]
        records += [json.dumps(dict(event.attributes or {}), default=str) for event in span.events]
    assert records
    return records


async def test_a_fallback_after_an_echoing_failure_keeps_the_image_out_of_everything(
    make_service: Any, otel: Otel
) -> None:
    service = make_service({"primary"})
    with capture_logs() as logs:
        result = await service.complete_with_task_model("look", messages=looking_at_it())
        streamed = [e async for e in service.stream_with_task_model("look", messages=looking_at_it())]

    assert result.model_id == "fallback"
    assert streamed[-1].result is not None
    assert [a.error_class for a in result.attempts] == ["ProviderUnavailableError", None]
    assert_clean("logs", [json.dumps(event, default=str) for event in logs])
    assert_clean("attempts", [repr(a) for a in (*result.attempts, *streamed[-1].result.attempts)])
    spans = span_records(otel)
    assert_clean("spans", spans)
    assert any(f'\\"size\\": {SIZE}' in record for record in spans)  # content capture was on: a placeholder
    assert "could not process the request" in (result.attempts[0].error_message or "")  # the echo, minus the image


async def test_when_every_model_fails_the_error_and_its_attempts_hold_no_image(make_service: Any, otel: Otel) -> None:
    service = make_service({"primary", "fallback"})
    with capture_logs() as logs, pytest.raises(AllModelsFailedError) as caught:
        await service.complete_with_task_model("look", messages=looking_at_it())

    error = caught.value
    assert [a.model_id for a in error.attempts] == ["primary", "fallback"]
    assert_clean("the error", [str(error), repr(error)])
    assert_clean("its attempts", [repr(a) for a in error.attempts])
    assert_clean(
        "its errors",
        [f"{e} {e!r} {vars(e)}" for e in error.exceptions] + [f"{error.__cause__} {vars(error.__cause__)}"],
    )
    assert_clean("logs", [json.dumps(event, default=str) for event in logs])
    assert_clean("spans", span_records(otel))
