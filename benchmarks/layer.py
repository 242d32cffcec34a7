"""The service layer alone: ``complete_with_task_model`` over a provider that answers at once.

With no network in the way this isolates what routing itself costs per call
(selection, breaker, deadline, accounting, attempt bookkeeping, the log-level
check). Measured in a tight loop, so the figure is a lower bound: in a real
call the same code runs with colder CPU caches, between httpx's work.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchmarks.clients import PROMPT
from benchmarks.otel import Telemetry
from benchmarks.otel import apply as apply_telemetry

if TYPE_CHECKING:
    from taskmodels.providers.base import BaseModelProvider

__all__ = ["measure_service_layer"]


def _instant_provider_class() -> type[BaseModelProvider]:
    from taskmodels.providers.base import BaseModelProvider, HttpRequest, StreamDecoder
    from taskmodels.types import CompletionRequest, CompletionResult, Usage

    class InstantProvider(BaseModelProvider):
        """Answers without I/O; only ``complete`` is used."""

        name: ClassVar[str] = "instant"
        default_base_url: ClassVar[str | None] = "http://instant.invalid"
        requires_api_key: ClassVar[bool] = False

        async def complete(self, request: CompletionRequest) -> CompletionResult:
            return CompletionResult(
                text="ok", model_id=self.model.id, provider=self.name, model_name="m", usage=Usage(12, 9)
            )

        def build_completion_request(self, request: CompletionRequest, *, stream: bool) -> HttpRequest:
            raise NotImplementedError

        def parse_completion(self, data: Any, headers: Mapping[str, str]) -> CompletionResult:
            raise NotImplementedError

        def new_stream_decoder(self) -> StreamDecoder:
            raise NotImplementedError

    return InstantProvider


async def measure_service_layer(calls: int, *, repeats: int = 5, telemetry: Telemetry = "default") -> dict[str, Any]:
    """Best-of-``repeats`` CPU seconds per call of the service over an instant provider (``telemetry``: see
    ``benchmarks.subject.build_service``)."""
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.sections import ResilienceSettings, TelemetrySettings
    from taskmodels.settings import Settings

    model = {
        "id": "instant",
        "provider": "instant",
        "modelName": "m",
        "maxTokens": 64,
        "temperature": 0.0,
        "contextWindow": 8192,
        "costPer1kTokens": 0.001,
    }
    registry = {
        "models": [model],
        "taskMappings": [{"taskName": "t", "primaryModelId": "instant"}],
        "defaultModelId": "instant",
    }
    async with AsyncExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="taskmodels-layer-")))
        path = folder / "modelRegistry.json"
        path.write_text(json.dumps(registry), encoding="utf-8")
        settings = Settings(
            registry_path=path,
            environment=None,
            resilience=ResilienceSettings(),
            telemetry=TelemetrySettings(enabled=telemetry != "off"),
        )
        container = Container(settings=providers.Object(settings))
        stack.push_async_callback(container.aclose)
        apply_telemetry(container, telemetry, stack)
        container.provider_factory().register_provider_implementation("instant", _instant_provider_class())
        complete = container.model_service().complete_with_task_model
        for _ in range(min(calls, 2000)):
            await complete("t", prompt=PROMPT)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            for _ in range(calls):
                await complete("t", prompt=PROMPT)
            best = min(best, (time.process_time() - t0) / calls)
    return {"calls": calls, "repeats": repeats, "cpu_per_call_s": best, "telemetry": telemetry}
