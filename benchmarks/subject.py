"""taskmodels as the benchmarks use it: the real container over a generated registry.

The registry points an ``openai-compatible`` model at the benchmark server. The
resilience settings make the fallback path comparable with a hand-written
try/except: one try per model (no retry with backoff of the 500) and a breaker
that never opens (an open breaker would skip the failing request altogether).
"""

from __future__ import annotations

import json
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal

from benchmarks.clients import FAIL_MODEL, MAX_TOKENS, MODEL_NAME, PROMPT, Endpoints, expect_chunks, expect_text
from benchmarks.harness import Variant
from benchmarks.otel import Telemetry, telemetry_settings
from benchmarks.otel import apply as apply_telemetry

__all__ = [
    "TASK",
    "TASK_FALLBACK",
    "TASK_STREAM",
    "bench_registry",
    "build_service",
    "provider_only_variant",
    "taskmodels_variants",
]

TASK = "bench"
TASK_FALLBACK = "bench-fallback"
TASK_STREAM = "bench-stream"


def _model(model_id: str, model_name: str, api_base: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": "openai-compatible",
        "modelName": model_name,
        "maxTokens": MAX_TOKENS,
        "temperature": 0.0,
        "contextWindow": 8192,
        "costPer1kTokens": 0.001,
        "baseUrl": api_base,
    }


def bench_registry(api_base: str) -> dict[str, Any]:
    return {
        "models": [_model("bench", MODEL_NAME, api_base), _model("failing", FAIL_MODEL, api_base)],
        "taskMappings": [
            {"taskName": TASK, "primaryModelId": "bench"},
            {"taskName": TASK_STREAM, "primaryModelId": "bench"},
            {"taskName": TASK_FALLBACK, "primaryModelId": "failing", "fallbackModelIds": ["bench"]},
        ],
        "defaultModelId": "bench",
    }


async def build_service(
    ep: Endpoints,
    stack: AsyncExitStack,
    *,
    transport: Literal["httpx2", "aiohttp"] = "httpx2",
    telemetry: Telemetry = "default",
) -> Any:
    """A ``ModelService`` from a fresh container; the stack closes the container.

    ``telemetry``: ``default`` is what an application gets without choosing (spans through the global
    OpenTelemetry providers when the API is installed, a no-op without an SDK); ``off`` sets
    ``telemetry.enabled=False``; ``sdk`` gives the container the SDK's providers with a dropping exporter.
    """
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.sections import HttpSettings, ResilienceSettings
    from taskmodels.settings import Settings

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="taskmodels-bench-")))
    path = folder / "modelRegistry.json"
    path.write_text(json.dumps(bench_registry(ep.api_base)), encoding="utf-8")
    settings = Settings(
        registry_path=path,
        environment=None,
        http=HttpSettings(transport=transport),
        resilience=ResilienceSettings(max_attempts_per_model=1, breaker_failure_threshold=10**9),
        telemetry=telemetry_settings(telemetry),
    )
    container = Container(settings=providers.Object(settings))
    stack.push_async_callback(container.aclose)
    apply_telemetry(container, telemetry, stack)
    return container.model_service()


def taskmodels_variants(service: Any, ep: Endpoints, label: str = "taskmodels") -> dict[str, Variant]:
    complete_with_task_model = service.complete_with_task_model
    stream_with_task_model = service.stream_with_task_model

    async def complete() -> None:
        result = await complete_with_task_model(TASK, prompt=PROMPT)
        expect_text(result.text)

    async def fallback() -> None:
        result = await complete_with_task_model(TASK_FALLBACK, prompt=PROMPT)
        if result.model_id != "bench":
            raise RuntimeError(f"fallback served by {result.model_id!r}")
        expect_text(result.text)

    async def stream() -> None:
        pieces = 0
        async for event in stream_with_task_model(TASK_STREAM, prompt=PROMPT):
            if event.type == "text" and event.text:
                pieces += 1
        expect_chunks(pieces, ep.chunks)

    return {
        "complete": Variant(label, complete),
        "fallback": Variant(label, fallback),
        "stream": Variant(label, stream),
    }


def provider_only_variant(service: Any) -> Variant:
    """The provider the service would use, called directly: the mapping's cost without the service's."""
    from taskmodels.types import CompletionRequest

    model = service.registry.current.models_by_id["bench"]
    provider = service.provider_factory.create_provider_for_model(model)
    request = CompletionRequest(prompt=PROMPT)

    async def complete() -> None:
        result = await provider.complete(request)
        expect_text(result.text)

    return Variant("provider.complete (no service)", complete)
