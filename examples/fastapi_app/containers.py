"""The application's container. It embeds taskmodels' container and hands it the settings it needs."""

from __future__ import annotations

from pathlib import Path

from dependency_injector import containers, providers

from taskmodels.containers import Container as TaskModelsContainer
from taskmodels.sections import ProviderSettings
from taskmodels.settings import Settings, load_settings

__all__ = ["DEFAULT_REGISTRY", "ApplicationContainer", "taskmodels_settings"]

# The example registry of the repository is this application's registry.
DEFAULT_REGISTRY = Path(__file__).resolve().parents[2] / "settings" / "modelRegistry.json"


def taskmodels_settings(registry_path: str, environment: str | None, openai_base_url: str | None) -> Settings:
    """Taskmodels' settings from the application's configuration (the rest still comes from TASKMODELS_*)."""
    overrides: dict[str, object] = {"registry_path": Path(registry_path), "environment": environment or None}
    if openai_base_url:
        # Point OpenAI-protocol models at a local server (llama.cpp, vLLM, a fake in tests).
        overrides["providers"] = {
            name: ProviderSettings(base_url=openai_base_url) for name in ("openai", "openai-compatible")
        }
    return load_settings(**overrides)


class ApplicationContainer(containers.DeclarativeContainer):
    # Endpoints ask for nodes with Provide[...]; the lifespan wires these modules.
    wiring_config = containers.WiringConfiguration(modules=["fastapi_app.endpoints"], auto_wire=False)

    config = providers.Configuration()

    settings = providers.Singleton(
        taskmodels_settings,
        registry_path=config.registry_path,
        environment=config.environment,
        openai_base_url=config.openai_base_url,
    )

    # taskmodels' container as a sub-container: its `settings` node is replaced by ours.
    models = providers.Container(TaskModelsContainer, settings=settings)
