"""Basic usage: ask the service for a completion by task name, and let the registry pick the model.

    python examples/basic_usage.py                                    # settings/modelRegistry.json, real keys
    python examples/basic_usage.py --registry my.json --base-url http://127.0.0.1:8080/v1

The second form runs without any API key against a local OpenAI-compatible server
(llama.cpp's llama-server, vLLM, or ``taskmodels fake-server``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from _cli import parse_args, settings_from_args
from dependency_injector import providers

from taskmodels.containers import Container
from taskmodels.service import ModelService


async def run(argv: Sequence[str] | None = None) -> str:
    args = parse_args(__doc__ or "", argv)
    container = Container()
    container.settings.override(providers.Object(settings_from_args(args)))
    service: ModelService = container.model_service()  # built synchronously: no await
    try:
        result = await service.complete_with_task_model(
            args.task,
            prompt="Cluster these personas into groups based on similarities: [...]",
            system_prompt="You are a helpful assistant that clusters personas into groups.",
        )
    finally:
        await container.aclose()  # closes the pooled HTTP client and the state store
    print(result.text)
    print(f"served by {result.model_id} ({result.provider}, {result.model_name}); cost ${result.cost:.6f}")
    for attempt in result.attempts:
        print(f"  attempt: {attempt.model_id} try {attempt.number}: {attempt.outcome} {attempt.error_class or ''}")
    return result.text


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1:]))
