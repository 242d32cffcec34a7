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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from benchmarks.clients import PROMPT
from benchmarks.otel import Telemetry, telemetry_settings
from benchmarks.otel import apply as apply_telemetry

if TYPE_CHECKING:
    from taskmodels.providers.base import BaseModelProvider

__all__ = ["INSTANT_MODEL", "measure_service_layer", "measure_service_layers"]


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
    return (await measure_service_layers(calls, (telemetry,), repeats=repeats))[telemetry]


async def measure_service_layers(
    calls: int, modes: Sequence[Telemetry], *, repeats: int = 5
) -> dict[Telemetry, dict[str, Any]]:
    """``measure_service_layer`` for each of ``modes``, one service each, timed in alternating blocks of ``calls``
    in an order rotated every repeat (so a drift of the machine falls on every mode alike); a mode whose
    service cannot be built gets ``{"error": ...}``."""
    out: dict[Telemetry, dict[str, Any]] = {}
    async with AsyncExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="taskmodels-layer-")))
        path = folder / "modelRegistry.json"
        path.write_text(json.dumps(_REGISTRY), encoding="utf-8")
        calls_of: dict[Telemetry, tuple[Callable[..., Awaitable[Any]], Callable[[], object]]] = {}
        for mode in modes:
            try:
                calls_of[mode] = await _service(path, mode, stack)
            except Exception as exc:  # reported in the run's JSON, as the harness does
                out[mode] = {"error": f"{type(exc).__name__}: {exc}"}
        for complete, flush in calls_of.values():
            for _ in range(min(calls, 2000)):
                await complete("t", prompt=PROMPT)
            flush()
        names = list(calls_of)
        best = dict.fromkeys(names, float("inf"))
        for r in range(repeats):
            k = r % len(names) if names else 0
            for mode in [*names[k:], *names[:k]]:
                complete, flush = calls_of[mode]
                t0 = time.process_time()
                for _ in range(calls):
                    await complete("t", prompt=PROMPT)
                flush()  # the block's spans exported within it (see ``benchmarks.otel.apply``)
                best[mode] = min(best[mode], (time.process_time() - t0) / calls)
    for mode in names:
        out[mode] = {"calls": calls, "repeats": repeats, "cpu_per_call_s": best[mode], "telemetry": mode}
    return out


INSTANT_MODEL: dict[str, Any] = {
    "id": "instant",
    "provider": "instant",
    "modelName": "m",
    "maxTokens": 64,
    "temperature": 0.0,
    "contextWindow": 8192,
    "costPer1kTokens": 0.001,
}
_REGISTRY: dict[str, Any] = {
    "models": [INSTANT_MODEL],
    "taskMappings": [{"taskName": "t", "primaryModelId": "instant"}],
    "defaultModelId": "instant",
}


async def _service(
    path: Path, telemetry: Telemetry, stack: AsyncExitStack
) -> tuple[Callable[..., Awaitable[Any]], Callable[[], object]]:
    """``complete_with_task_model`` of a container over ``path`` with the instant provider, closed with ``stack``,
    and what exports its queued spans."""
    from dependency_injector import providers

    from taskmodels.containers import Container
    from taskmodels.sections import ResilienceSettings
    from taskmodels.settings import Settings

    settings = Settings(
        registry_path=path,
        environment=None,
        resilience=ResilienceSettings(),
        telemetry=telemetry_settings(telemetry),
    )
    container = Container(settings=providers.Object(settings))
    stack.push_async_callback(container.aclose)
    flush = apply_telemetry(container, telemetry, stack, batch=False)  # why: benchmarks/otel.py's docstring
    container.provider_factory().register_provider_implementation("instant", _instant_provider_class())
    return container.model_service().complete_with_task_model, flush
