"""Under `mypy --strict`, every node of the container has its real type, not `Any`: a user's snippet is type-checked."""

from __future__ import annotations

from pathlib import Path

from tests.typecheck import check_user_code

SNIPPET = """
from taskmodels import CompletionResult, ModelService, tenant_scope  # the package's own exports, under --strict
from taskmodels.containers import Container


async def main() -> None:
    container = Container()
    reveal_type(container.model_service())
    reveal_type(container.settings())
    reveal_type(container.http_client())
    reveal_type(container.state_store())
    reveal_type(container.provider_factory())
    reveal_type(container.registry())
    reveal_type(container.selector())
    reveal_type(container.resources())
    result = await container.model_service().complete_with_task_model("t", prompt="hi")
    reveal_type(result)
    service: ModelService = container.model_service()
    with tenant_scope("acme"):
        answer: CompletionResult = await service.complete_with_task_model("t", prompt="hi")
    await container.aclose()
"""

EXPECTED = [
    "taskmodels.service.ModelService",
    "taskmodels.settings.Settings",
    "httpx2._client.AsyncClient",
    "taskmodels.resilience.state.StateStore",
    "taskmodels.providers.factory.ModelProviderFactory",
    "taskmodels.registry.service.ModelRegistryService",
    "taskmodels.selection.ModelSelectionFactory",
    "taskmodels.http_client.ResourcePool",
    "taskmodels.types.CompletionResult[Any]",  # generic in its output_type, Any without one
]


def test_every_node_has_its_type_under_mypy_strict(tmp_path: Path) -> None:
    checked = check_user_code(SNIPPET, tmp_path)
    assert checked.revealed == EXPECTED, checked.output
    assert checked.errors == [], checked.output  # `await container.aclose()` type-checks too
