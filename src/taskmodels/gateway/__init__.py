"""The registry's tasks as an OpenAI-compatible HTTP endpoint (``taskmodels serve``; docs/gateway.md).

from taskmodels.containers import Container
from taskmodels.gateway import create_app

app = create_app(Container())            # an ASGI app: serve it, or mount it in your own
"""

from __future__ import annotations

from taskmodels.gateway.app import GatewayApp
from taskmodels.gateway.errors import GatewayError
from taskmodels.gateway.hooks import Caller, Gatekeeper
from taskmodels.gateway.server import create_app

__all__ = ["Caller", "Gatekeeper", "GatewayApp", "GatewayError", "create_app"]
