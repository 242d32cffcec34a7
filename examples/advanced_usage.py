"""Advanced usage: select the task's model yourself, build its provider, and call the provider directly.

This skips the service's retries, fallbacks, deadline and accounting: use it when
you want exactly one model and handle failures yourself.

    python examples/advanced_usage.py --registry my.json --base-url http://127.0.0.1:8080/v1
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from _cli import parse_args, settings_from_args
from dependency_injector import providers

from taskmodels.containers import Container
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.selection import ModelSelectionFactory
from taskmodels.types import CompletionRequest


async def run(argv: Sequence[str] | None = None) -> str:
    args = parse_args(__doc__ or "", argv)
    container = Container()
    container.settings.override(providers.Object(settings_from_args(args)))
    selector: ModelSelectionFactory = container.selector()
    provider_factory: ModelProviderFactory = container.provider_factory()
    try:
        model = selector.select_model_for_task(args.task)
        provider = provider_factory.create_provider_for_model(model)
        result = await provider.complete(
            CompletionRequest(
                prompt="Cluster these personas into groups based on similarities: [...]",
                system_prompt="You are a helpful assistant that clusters personas into groups.",
            )
        )
    finally:
        await container.aclose()
    print(result.text)
    print(f"model {model.id} via {type(provider).__name__}: {result.usage.total_tokens} tokens, ${result.cost:.6f}")
    return result.text


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1:]))
