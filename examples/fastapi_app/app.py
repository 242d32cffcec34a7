"""The FastAPI application: the container is wired at start-up and its resources closed at shutdown."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_app import endpoints
from fastapi_app.containers import DEFAULT_REGISTRY, ApplicationContainer
from fastapi_app.tracing import console_tracing
from taskmodels.errors import (
    AllModelsFailedError,
    BadRequestError,
    BudgetExceededError,
    DeadlineExceededError,
    SelectionError,
    TaskModelsError,
)

__all__ = ["create_app", "default_container"]


def default_container() -> ApplicationContainer:
    """The container with its configuration from the environment (PERSONAS_*)."""
    container = ApplicationContainer()
    container.config.from_dict(
        {
            "registry_path": os.environ.get("PERSONAS_REGISTRY_PATH", str(DEFAULT_REGISTRY)),
            "environment": os.environ.get("PERSONAS_ENVIRONMENT"),
            "openai_base_url": os.environ.get("PERSONAS_OPENAI_BASE_URL"),
        }
    )
    return container


def create_app(container: ApplicationContainer | None = None) -> FastAPI:
    container = container or default_container()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container.wire()  # the modules named in wiring_config
        try:
            yield
        finally:
            # Closes the pooled HTTP client and the state store taskmodels opened.
            await container.models.aclose()
            container.unwire()

    app = FastAPI(title="Persona generator", lifespan=lifespan)
    app.state.container = container
    app.include_router(endpoints.router)
    app.add_exception_handler(TaskModelsError, _taskmodels_error)
    console_tracing(app, container.models)  # PERSONAS_TRACE_CONSOLE=1: traces to the console
    return app


_STATUS: list[tuple[type[TaskModelsError], int]] = [
    (BadRequestError, 400),  # the request we built is wrong: a bug on our side, but say what the model said
    (SelectionError, 500),  # the registry cannot serve the task: a configuration problem
    (BudgetExceededError, 429),
    (DeadlineExceededError, 504),
    (AllModelsFailedError, 503),
]


async def _taskmodels_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 502)
    # The message names models and errors, never keys: taskmodels keeps secrets out of its messages.
    return JSONResponse(status_code=status, content={"error": type(exc).__name__, "message": str(exc)})
