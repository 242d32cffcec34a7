"""The ASGI entry point: ``uvicorn fastapi_app.main:app`` from the examples directory."""

from __future__ import annotations

from fastapi_app.app import create_app

app = create_app()
