"""The GenAI semantic conventions, rule by rule, against the built-in providers speaking their own wire protocol.

The rules are those of ``docs/gen-ai/gen-ai-spans.md`` and ``gen-ai-metrics.md`` in
open-telemetry/semantic-conventions-genai (where the GenAI conventions moved from open-telemetry/semantic-conventions),
the version with ``gen_ai.provider.name``, ``gen_ai.request.stream`` and ``gen_ai.response.time_to_first_chunk``.
Each test names its rule. Spans and metric points are read from the SDK's in-memory exporter and reader; the
providers are the real ones on an ``httpx2.MockTransport`` that answers with each vendor's documented bodies.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from pydantic import BaseModel

from taskmodels import redaction
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.telemetry import CAPTURE_CONTENT_VARIABLE
from taskmodels.testing import make_test_service
from taskmodels.types import ImagePart, Message, ResponseFormat, TextPart
from tests.otel_kit import FOLDS, Otel, attrs, in_memory_otel

KEY = "sk-conventions-test-0123456789abcdef"
ANSWER = '{"name": "Poseidonia"}'
RESPONSE_MODEL = "served-model-2025-01-01"  # every wire answers under this name: it differs from the one asked


class City(BaseModel):
    name: str


# --- the wire: each vendor's documented answer -----------------------------------------------------------


def _chat_completion(text: str) -> dict[str, Any]:
    # platform.openai.com/docs/api-reference/chat/object (OpenAI, Azure OpenAI, every OpenAI-compatible server)
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": RESPONSE_MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
    }


def _chat_chunks(text: str) -> str:
    # platform.openai.com/docs/api-reference/chat-streaming/streaming: deltas, the finish reason, the usage chunk
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": RESPONSE_MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    usage = {**chunk({}), "choices": [], "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}}
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": text}), chunk({}, "stop"), usage]
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def _anthropic_message(text: str) -> dict[str, Any]:
    # docs.anthropic.com/en/api/messages
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": RESPONSE_MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 19, "output_tokens": 10},
    }


def _gemini_response(text: str) -> dict[str, Any]:
    # ai.google.dev/api/generate-content#generatecontentresponse
    return {
        "candidates": [
            {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0},
        ],
        "usageMetadata": {"promptTokenCount": 19, "candidatesTokenCount": 10, "totalTokenCount": 29},
        "modelVersion": RESPONSE_MODEL,
        "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
    }


def _ollama_chat(text: str) -> dict[str, Any]:
    # github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
    return {
        "model": RESPONSE_MODEL,
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
        "total_duration": 5191566416,
        "prompt_eval_count": 19,
        "eval_count": 10,
    }


def _embeddings(texts: Sequence[str]) -> dict[str, Any]:
    # platform.openai.com/docs/api-reference/embeddings/object
    return {
        "object": "list",
        "data": [{"object": "embedding", "embedding": [0.1, 0.2], "index": i} for i in range(len(texts))],
        "model": RESPONSE_MODEL,
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


class Wire:
    """Every built-in provider's chat, stream and embedding endpoints, answering ``text``; requests are kept."""

    def __init__(self, text: str = ANSWER) -> None:
        self.text = text
        self.requests: list[httpx2.Request] = []
        self.client = httpx2.AsyncClient(transport=httpx2.MockTransport(self._answer))

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        body = json.loads(request.content) if request.content else {}
        if path.endswith("/chat/completions") and body.get("stream"):
            return httpx2.Response(200, content=_chat_chunks(self.text), headers={"content-type": "text/event-stream"})
        if path.endswith("/embeddings"):
            return httpx2.Response(200, json=_embeddings(body["input"]))
        for suffix, answer in _ANSWERS.items():
            if path.endswith(suffix):
                return httpx2.Response(200, json=answer(self.text))
        return httpx2.Response(404, json={"error": {"message": f"no route {path}"}})


_ANSWERS = {
    "/chat/completions": _chat_completion,
    "/v1/messages": _anthropic_message,
    ":generateContent": _gemini_response,
    "/api/chat": _ollama_chat,
}


@pytest.fixture(params=FOLDS)
def otel(request: pytest.FixtureRequest) -> Iterator[Otel]:
    """Every test here runs on both traces of a call: a call span over its attempts, and a call that made one
    attempt folded into it (``fold_single_attempt``)."""
    yield from in_memory_otel(fold=request.param)


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    w = Wire()
    async with w.client:
        yield w


@dataclass(frozen=True)
class Endpoint:
    """A registry provider at an endpoint, and what the conventions call it there."""

    provider: str
    base_url: str | None
    address: str
    port: int
    name: str  # gen_ai.provider.name

    def entry(self, model_id: str = "m", **keys: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": model_id,
            "provider": self.provider,
            "modelName": f"{model_id}-name",
            "maxTokens": 200,
            "temperature": 0.2,
            "contextWindow": 16000,
            "costPer1kTokens": 0.001,
            "capabilities": ["chat", "embedding"],
            **keys,
        }
        if self.base_url is not None:
            entry["baseUrl"] = self.base_url
        return entry


ENDPOINTS = {
    "openai": Endpoint("openai", None, "api.openai.com", 443, "openai"),
    "azure-openai": Endpoint(
        "azure-openai", "https://res-1.openai.azure.com", "res-1.openai.azure.com", 443, "azure.ai.openai"
    ),
    "anthropic": Endpoint("anthropic", None, "api.anthropic.com", 443, "anthropic"),
    "gemini": Endpoint("gemini", None, "generativelanguage.googleapis.com", 443, "gcp.gemini"),
    "ollama": Endpoint("ollama", None, "localhost", 11434, "ollama"),
    "groq": Endpoint("openai-compatible", "https://api.groq.com/openai/v1", "api.groq.com", 443, "groq"),
    "local": Endpoint("openai-compatible", "http://127.0.0.1:8080/v1", "127.0.0.1", 8080, "openai-compatible"),
    # Known services behind the OpenAI protocol are named by their host, as the conventions list them
    "gemini-openai": Endpoint(
        "openai-compatible",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "generativelanguage.googleapis.com",
        443,
        "gcp.gemini",
    ),
    "vertex-openai": Endpoint(
        "openai-compatible",
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi",
        "us-central1-aiplatform.googleapis.com",
        443,
        "gcp.vertex_ai",
    ),
    "azure-openai-v1": Endpoint(
        "openai-compatible",
        "https://res-2.openai.azure.com/openai/v1",
        "res-2.openai.azure.com",
        443,
        "azure.ai.openai",
    ),
    "openai-at-groq": Endpoint("openai", "https://api.groq.com/openai/v1", "api.groq.com", 443, "groq"),
}


def wire_service(otel: Otel, wire: Wire, *models: dict[str, Any], **kwargs: Any) -> ModelService:
    """A service whose task ``t`` chains ``models`` (registry entries), every provider the real one on ``wire``."""
    tracer = kwargs.pop("tracer", None) or otel.tracer()
    resilience = kwargs.pop("resilience", None) or ResilienceSettings(max_attempts_per_model=1)
    ids = [m["id"] for m in models]
    registry = {
        "models": list(models),
        "taskMappings": [{"taskName": "t", "primaryModelId": ids[0], "fallbackModelIds": ids[1:], **kwargs}],
        "defaultModelId": ids[-1],
    }
    keys = {f"{name}_api_key": KEY for name in ("openai", "anthropic", "gemini", "azure_openai")}
    factory = ModelProviderFactory(Settings(_env_file=None, **keys), wire.client, discover_entry_points=False)
    registry_service = ModelRegistryService.from_dict(registry, provider_names=factory.provider_names())
    return make_test_service(
        registry_service,
        provider_factory=factory,
        state_store=MemoryStateStore(),
        resilience=resilience,
        tracer=tracer,
    )


class AtStart(SpanProcessor):
    """Each span's attributes as they were when it started: what a sampler sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.seen.append((span.name, dict(span.attributes or {})))

    def on_end(self, span: ReadableSpan) -> None:
        return None


@pytest.fixture
def at_start(otel: Otel) -> AtStart:
    processor = AtStart()
    otel.tracer_provider.add_span_processor(processor)
    return processor


def attempt_spans(otel: Otel) -> list[ReadableSpan]:
    return [s for s in otel.finished() if not s.name.startswith("taskmodels ")]


def only_attempt(otel: Otel) -> dict[str, Any]:
    (span,) = attempt_spans(otel)
    return attrs(span)


def point_attributes(otel: Otel, metric: str) -> dict[str, Any]:
    (point,) = otel.points(metric)
    return dict(point.attributes)


# --- server.address, server.port and the provider's name, on every kind of call --------------------------

ASKED_FOR_JSON: dict[str, dict[str, Any]] = {
    "output_type": {"output_type": City},
    "json_schema": {"response_format": ResponseFormat.json_schema({"type": "object", "properties": {}})},
}


@pytest.mark.parametrize("how", list(ASKED_FOR_JSON))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_server_address_port_and_provider_name_are_set_at_creation_on_calls_that_ask_for_json(
    otel: Otel, wire: Wire, at_start: AtStart, endpoint: str, how: str
) -> None:
    """Inference span: ``server.address`` (recommended), ``server.port`` (conditionally required when the
    address is set) and ``gen_ai.provider.name`` (required), all SHOULD be given at span creation. A typed answer
    and a caller's own ``json_schema`` format reach the provider through a wrapper, which lost them."""
    where = ENDPOINTS[endpoint]
    # json_schema declared: the registry then says how each model takes a schema, so a caller's format is adapted
    svc = wire_service(otel, wire, where.entry(capabilities=["chat", "json_schema"]))
    await svc.complete_with_task_model("t", "the capital of Atlantis, as JSON", **ASKED_FOR_JSON[how])

    expected = {"server.address": where.address, "server.port": where.port, "gen_ai.provider.name": where.name}
    ((name, started),) = [(n, a) for n, a in at_start.seen if not n.startswith("taskmodels ")]
    assert name == "chat m-name"
    assert {k: started.get(k) for k in expected} == expected
    ended = only_attempt(otel)
    assert {k: ended.get(k) for k in expected} == expected
    duration = point_attributes(otel, "gen_ai.client.operation.duration")
    assert {k: duration.get(k) for k in expected} == expected


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_a_plain_call_names_its_server_and_provider_too(
    otel: Otel, wire: Wire, at_start: AtStart, endpoint: str
) -> None:
    where = ENDPOINTS[endpoint]
    svc = wire_service(otel, wire, where.entry())
    await svc.complete_with_task_model("t", "hello")
    expected = {"server.address": where.address, "server.port": where.port, "gen_ai.provider.name": where.name}
    ((_, started),) = [(n, a) for n, a in at_start.seen if not n.startswith("taskmodels ")]
    assert {k: started.get(k) for k in expected} == expected


# --- the time-to-first-chunk histogram --------------------------------------------------------------------


async def _stream(svc: ModelService, **fields: Any) -> None:
    events = [e async for e in svc.stream_with_task_model("t", "hello", **fields)]
    assert events[-1].type == "done"


async def test_time_to_first_chunk_has_the_conventions_buckets(otel: Otel, wire: Wire) -> None:
    """``gen_ai.client.operation.time_to_first_chunk`` SHOULD be specified with ExplicitBucketBoundaries
    [0.01, 0.02, 0.04, ..., 81.92] (not the server's time-to-first-token set, which starts at 0.001)."""
    svc = wire_service(otel, wire, ENDPOINTS["local"].entry())
    await _stream(svc)
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert list(point.explicit_bounds) == [
        0.01,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.64,
        1.28,
        2.56,
        5.12,
        10.24,
        20.48,
        40.96,
        81.92,
    ]


@pytest.mark.parametrize("endpoint", ["local", "openai", "groq"])
async def test_time_to_first_chunk_has_the_durations_attributes_and_the_response_model(
    otel: Otel, wire: Wire, endpoint: str
) -> None:
    """The histogram's attributes: ``gen_ai.operation.name``, ``gen_ai.provider.name`` (required),
    ``gen_ai.request.model``, ``server.port`` (conditionally required), ``gen_ai.response.model``,
    ``server.address`` (recommended): those of the duration, which docs/tracing.md promises."""
    where = ENDPOINTS[endpoint]
    svc = wire_service(otel, wire, where.entry())
    await _stream(svc)
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": where.name,
        "gen_ai.request.model": "m-name",
        "gen_ai.response.model": RESPONSE_MODEL,
        "server.address": where.address,
        "server.port": where.port,
        "taskmodels.task": "t",
    }
    assert point_attributes(otel, "gen_ai.client.operation.time_to_first_chunk") == expected
    assert point_attributes(otel, "gen_ai.client.operation.duration") == expected


# --- gen_ai.request.stream ---------------------------------------------------------------------------------


async def test_a_streamed_request_says_so_at_creation(otel: Otel, wire: Wire, at_start: AtStart) -> None:
    """``gen_ai.request.stream``: conditionally required, "if and only if the request is streaming"."""
    svc = wire_service(otel, wire, ENDPOINTS["local"].entry())
    await _stream(svc)
    ((_, started),) = [(n, a) for n, a in at_start.seen if not n.startswith("taskmodels ")]
    assert started.get("gen_ai.request.stream") is True
    assert only_attempt(otel)["gen_ai.request.stream"] is True
    (request,) = wire.requests
    assert json.loads(request.content)["stream"] is True  # what the attribute says went out


async def test_a_complete_read_as_a_stream_is_a_streamed_request(otel: Otel, wire: Wire) -> None:
    svc = wire_service(otel, wire, ENDPOINTS["groq"].entry(), resilience=ResilienceSettings(stream_under_the_hood=True))
    await svc.complete_with_task_model("t", "hello")
    assert json.loads(wire.requests[0].content)["stream"] is True
    assert only_attempt(otel)["gen_ai.request.stream"] is True


@pytest.mark.parametrize("endpoint", ["local", "anthropic", "gemini", "ollama"])
async def test_a_request_that_does_not_stream_has_no_stream_attribute(otel: Otel, wire: Wire, endpoint: str) -> None:
    """``gen_ai.request.stream``: "If unset, the request is assumed to be non-streaming". Never set to false."""
    svc = wire_service(otel, wire, ENDPOINTS[endpoint].entry())
    await svc.complete_with_task_model("t", "hello")
    if endpoint == "local":  # an embedding request is never a stream either
        await svc.embed_with_task_model("t", ["one"])
    for span in attempt_spans(otel):
        assert "gen_ai.request.stream" not in attrs(span), span.name


# --- gen_ai.output.type ---------------------------------------------------------------------------------

OUTPUT_TYPES: list[tuple[str, dict[str, Any], str | None]] = [
    ("output_type", {"output_type": City}, "json"),
    ("json_schema", {"response_format": ResponseFormat.json_schema({"type": "object"})}, "json"),
    ("json_mode", {"response_format": ResponseFormat.json()}, "json"),
    ("json_mode_as_a_dict", {"response_format": {"type": "json_object"}}, "json"),
    ("text", {"response_format": ResponseFormat(type="text")}, "text"),
    ("nothing_asked", {}, None),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [(f, e) for _, f, e in OUTPUT_TYPES], ids=[i for i, _, _ in OUTPUT_TYPES]
)
@pytest.mark.parametrize("endpoint", ["openai", "anthropic", "gemini"])
async def test_the_output_type_asked_for_is_on_the_span(
    otel: Otel, wire: Wire, endpoint: str, fields: dict[str, Any], expected: str | None
) -> None:
    """``gen_ai.output.type``: conditionally required "when applicable and if the request includes an output
    format"; ``json`` for a schema or JSON mode ("JSON object with known or unknown schema"), ``text`` for plain
    text. The type the client asked for, whichever way each model is then sent it."""
    svc = wire_service(otel, wire, ENDPOINTS[endpoint].entry())
    await svc.complete_with_task_model("t", "the capital of Atlantis", **fields)
    assert only_attempt(otel).get("gen_ai.output.type") == expected


async def test_a_stream_asking_for_json_says_both(otel: Otel, wire: Wire) -> None:
    svc = wire_service(otel, wire, ENDPOINTS["openai"].entry())
    await _stream(svc, output_type=City)
    got = only_attempt(otel)
    assert (got["gen_ai.output.type"], got["gen_ai.request.stream"]) == ("json", True)


# --- image parts in captured content ------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # a PNG's signature, then bytes no text would contain
PNG_BASE64 = base64.b64encode(PNG).decode("ascii")
SIGNED_URL = "https://images.example.com/private/ada-quill.png?X-Amz-Signature=deadbeefcafe"


@pytest.mark.parametrize("endpoint", ["openai", "anthropic", "gemini"])
async def test_image_parts_follow_the_input_messages_schema_and_never_carry_the_image(
    otel: Otel, wire: Wire, endpoint: str
) -> None:
    """``gen_ai.input.messages`` MUST follow gen-ai-input-messages.json: a ``BlobPart`` requires ``type``
    (``blob``), ``modality`` and ``content`` (with ``mime_type`` when known), a ``UriPart`` ``type`` (``uri``),
    ``modality`` and ``uri``. The conventions let an instrumentation truncate a part's content while keeping the
    structure: the image's bytes are left out (``content`` empty), and of a URL only its scheme and host are kept
    (a signed URL's query is a credential)."""
    svc = wire_service(otel, wire, ENDPOINTS[endpoint].entry(capabilities=["chat", "vision"]))
    svc.observation.tracer = otel.tracer(capture_content=True)
    message = Message(
        role="user",
        content=(
            TextPart("what is in these?"),
            ImagePart.from_bytes(PNG),
            ImagePart.from_url(f"data:image/png;base64,{PNG_BASE64}"),
            ImagePart.from_url(SIGNED_URL),
        ),
    )
    await svc.complete_with_task_model("t", messages=[message])

    (sent,) = json.loads(only_attempt(otel)["gen_ai.input.messages"])
    assert sent == {
        "role": "user",
        "parts": [
            {"type": "text", "content": "what is in these?"},
            {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "", "size": len(PNG)},
            {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "", "size": len(PNG)},
            {"type": "uri", "modality": "image", "uri": "https://images.example.com/…"},
        ],
    }
    recorded = otel.everything_recorded()  # no span or metric carries any of the images
    for fragment in (PNG_BASE64[:24], PNG_BASE64[-24:], "data:", "base64,", "ada-quill", "X-Amz-Signature", "deadbeef"):
        assert fragment not in recorded


# --- embedding inputs in captured content --------------------------------------------------------------------

TEXTS = ["the patient's name is Ada Quill", f"her key is {KEY}"]


@pytest.fixture
def remembered_key() -> Iterator[str]:
    redaction.remember(KEY)
    yield KEY
    redaction.forget_all()


@pytest.mark.parametrize("endpoint", ["openai", "local"])
async def test_with_capture_on_embedding_inputs_are_the_input_messages(
    otel: Otel, wire: Wire, remembered_key: str, endpoint: str
) -> None:
    """The embeddings span defines no attribute for its input; its closest documented one is the inference span's
    opt-in ``gen_ai.input.messages`` (gen-ai-input-messages.json): the texts, in order, as the text parts of one
    ``user`` message, scrubbed of keys like every captured text."""
    svc = wire_service(otel, wire, ENDPOINTS[endpoint].entry(), tracer=otel.tracer(capture_content=True))
    await svc.embed_with_task_model("t", TEXTS)
    got = only_attempt(otel)
    assert got["gen_ai.operation.name"] == "embeddings"
    assert json.loads(got["gen_ai.input.messages"]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "the patient's name is Ada Quill"},
                {"type": "text", "content": "her key is [REDACTED]"},
            ],
        }
    ]
    assert remembered_key[:16] not in otel.everything_recorded()


async def test_with_capture_off_embedding_inputs_stay_out(
    otel: Otel, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_VARIABLE, raising=False)
    svc = wire_service(otel, wire, ENDPOINTS["openai"].entry())
    await svc.embed_with_task_model("t", TEXTS)
    assert "gen_ai.input.messages" not in only_attempt(otel)
    assert "Ada Quill" not in otel.everything_recorded()


async def test_every_attempt_of_an_embedding_carries_its_inputs(otel: Otel, wire: Wire) -> None:
    down = Endpoint("openai-compatible", "http://127.0.0.1:9/v1", "127.0.0.1", 9, "openai-compatible")
    first, second = down.entry("down"), ENDPOINTS["local"].entry("up")
    wire_answer = wire._answer

    def refuse_the_first(request: httpx2.Request) -> httpx2.Response:
        if request.url.port == 9:
            return httpx2.Response(503, json={"error": {"message": "overloaded"}})
        return wire_answer(request)

    wire.client = httpx2.AsyncClient(transport=httpx2.MockTransport(refuse_the_first))
    async with wire.client:
        svc = wire_service(otel, wire, first, second, tracer=otel.tracer(capture_content=True))
        await svc.embed_with_task_model("t", TEXTS[:1])
    spans = {s.name: attrs(s) for s in attempt_spans(otel)}
    assert set(spans) == {"embeddings down-name", "embeddings up-name"}
    for got in spans.values():
        assert "Ada Quill" in got["gen_ai.input.messages"]


async def test_the_service_hands_embedding_inputs_to_the_tracer(otel: Otel, wire: Wire) -> None:
    svc = wire_service(otel, wire, ENDPOINTS["openai"].entry(), tracer=otel.tracer(capture_content=True))
    await svc.embed_with_task_model("t", TEXTS)
    assert "gen_ai.input.messages" in only_attempt(otel)


# --- the other request attributes the conventions recommend, and the embeddings span's own set -----------


@pytest.mark.parametrize("endpoint", ["openai", "anthropic", "gemini"])
async def test_top_p_and_stop_sequences_asked_for_are_on_the_span(otel: Otel, wire: Wire, endpoint: str) -> None:
    """Inference span, recommended: ``gen_ai.request.top_p`` (double), ``gen_ai.request.stop_sequences``
    (string[]), when the request sets them."""
    svc = wire_service(otel, wire, ENDPOINTS[endpoint].entry())
    await svc.complete_with_task_model("t", "hello", top_p=0.9, stop=["\n\n", "END"])
    await svc.complete_with_task_model("t", "hello")
    asked, plain = (attrs(s) for s in attempt_spans(otel))
    assert (asked["gen_ai.request.top_p"], asked["gen_ai.request.stop_sequences"]) == (0.9, ("\n\n", "END"))
    assert "gen_ai.request.top_p" not in plain
    assert "gen_ai.request.stop_sequences" not in plain


async def test_an_embeddings_span_has_the_embeddings_spans_attributes(otel: Otel, wire: Wire) -> None:
    """Embeddings span: operation, provider, request model, server address and port, response model and input
    tokens; an embedding has no output, so no ``gen_ai.usage.output_tokens`` and no chat attribute."""
    svc = wire_service(otel, wire, ENDPOINTS["openai"].entry())
    await svc.embed_with_task_model("t", ["one", "two"])
    got = {k: v for k, v in only_attempt(otel).items() if k.startswith(("gen_ai.", "server."))}
    assert got == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m-name",
        "gen_ai.response.model": RESPONSE_MODEL,
        "gen_ai.usage.input_tokens": 8,
        "server.address": "api.openai.com",
        "server.port": 443,
    }
