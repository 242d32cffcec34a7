"""Registry scale: load and validate a generated registry, then select at that size."""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["generate_registry", "measure_scale"]

_PROVIDERS = ("openai", "openai-compatible", "anthropic", "gemini", "ollama")
_CAPABILITIES = ("chat", "json", "tools", "vision", "long-context", "embeddings")


def generate_registry(models: int, tasks: int, *, seed: int = 7) -> dict[str, Any]:
    """A valid registry: varied providers, capabilities and windows; every task has two fallbacks."""
    rng = random.Random(seed)
    model_list = []
    for i in range(models):
        caps = sorted(rng.sample(_CAPABILITIES, rng.randint(1, 4)))
        model_list.append(
            {
                "id": f"model-{i:05d}",
                "provider": _PROVIDERS[i % len(_PROVIDERS)],
                "modelName": f"vendor-model-{i}",
                "maxTokens": rng.choice((1024, 4096, 8192)),
                "temperature": round(rng.uniform(0, 1), 2),
                "contextWindow": rng.choice((16384, 32768, 128000, 1000000)),  # each larger than any maxTokens
                "costPer1kTokens": round(rng.uniform(0.0001, 0.03), 5),
                "capabilities": caps,
            }
        )
    task_list = []
    for j in range(tasks):
        primary = j % models
        task: dict[str, Any] = {
            "taskName": f"task-{j:05d}",
            "primaryModelId": f"model-{primary:05d}",
            "fallbackModelIds": [f"model-{(primary + 1) % models:05d}", f"model-{(primary + 7) % models:05d}"],
            "description": f"generated task {j}",
        }
        task_list.append(task)
    return {"models": model_list, "taskMappings": task_list, "defaultModelId": "model-00000"}


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_scale(*, models: int, tasks: int, load_repeats: int, selections: int) -> dict[str, Any]:
    """Seconds to load from a dict and from a file, and seconds per ``candidates`` call."""
    from taskmodels.providers.factory import ModelProviderFactory
    from taskmodels.registry.service import ModelRegistryService
    from taskmodels.selection import ModelSelectionFactory
    from taskmodels.types import CompletionRequest

    names = ModelProviderFactory(discover_entry_points=False).provider_names()
    data = generate_registry(models, tasks)
    out: dict[str, Any] = {"models": models, "tasks": tasks}
    out["load_dict_s"] = _median_time(lambda: ModelRegistryService.from_dict(data, provider_names=names), load_repeats)
    with tempfile.TemporaryDirectory(prefix="taskmodels-scale-") as folder:
        path = Path(folder) / "modelRegistry.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        out["file_bytes"] = path.stat().st_size
        out["load_file_s"] = _median_time(
            lambda: ModelRegistryService.from_path(path, provider_names=names), load_repeats
        )
        registry = ModelRegistryService.from_path(path, provider_names=names)
    selector = ModelSelectionFactory(registry)
    rng = random.Random(11)
    task_names = [f"task-{rng.randrange(tasks):05d}" for _ in range(1024)]
    plain = CompletionRequest(prompt="Say hello in one short sentence.")
    # A capability that some chain members lack makes the filter skip and explain, the costlier path.
    filtered = CompletionRequest(prompt="Say hello in one short sentence.", required_capabilities=frozenset({"json"}))
    for label, request in (("select_s", plain), ("select_filtered_s", filtered)):
        for name in task_names[:100]:  # warm-up
            selector.candidates(name, request)
        best = float("inf")
        for _ in range(5):  # best of five: selection is pure CPU, so the minimum is the least disturbed
            t0 = time.perf_counter()
            for i in range(selections):
                selector.candidates(task_names[i & 1023], request)
            best = min(best, (time.perf_counter() - t0) / selections)
        out[label] = best
    sample = selector.candidates(task_names[0], filtered)
    out["sample_selection"] = {
        "task": task_names[0],
        "models": [m.id for m in sample.models],
        "skipped": [[s.model_id, s.reason] for s in sample.skipped],
    }
    return out
