"""An application's legacy ``httpx.AsyncClient`` fails exactly like an ``httpx2`` one.

Each transport error class is raised through both clients, on ``complete`` and on ``stream``,
and must become the same typed error. httpx is optional: locally these tests are skipped
without it; under CI (``CI=true``) the test extra installs it and they must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx2
import pytest

from taskmodels.errors import (
    IncompleteStreamError,
    InvalidResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
)
from taskmodels.types import CompletionRequest
from tests.providers.kinds import build

if os.environ.get("CI") == "true":
    import httpx as legacy  # the test extra installs it: in CI these tests must never be skipped
else:
    legacy = pytest.importorskip("httpx")

CLIENTS: dict[str, ModuleType] = {"httpx2": httpx2, "httpx": legacy}
REQUEST = CompletionRequest(prompt="x")

ERRORS: list[tuple[str, type[ProviderError]]] = [
    ("ConnectError", ProviderConnectionError),
    ("ReadError", ProviderConnectionError),
    ("WriteError", ProviderConnectionError),
    ("ProxyError", ProviderConnectionError),
    ("ConnectTimeout", ProviderTimeoutError),
    ("ReadTimeout", ProviderTimeoutError),
    ("WriteTimeout", ProviderTimeoutError),
    ("PoolTimeout", ProviderTimeoutError),
    ("RemoteProtocolError", IncompleteStreamError),
    ("DecodingError", InvalidResponseError),
]


def failing_client(module: ModuleType, error: str) -> Any:
    def handler(request: Any) -> Any:
        raise getattr(module, error)(f"{error} from the test")

    return module.AsyncClient(transport=module.MockTransport(handler))


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
@pytest.mark.parametrize(("error", "cls"), ERRORS)
async def test_each_error_class_is_classified_the_same_through_both_clients(
    client_kind: str, error: str, cls: type[ProviderError]
) -> None:
    async with failing_client(CLIENTS[client_kind], error) as client:
        provider = build("openai-compatible", client, key=None)
        with pytest.raises(cls) as completing:
            await provider.complete(REQUEST)
        with pytest.raises(cls) as streaming:
            _ = [event async for event in provider.stream(REQUEST)]
    for caught in (completing.value, streaming.value):
        assert type(caught) is cls
        assert caught.__cause__ is None
        assert "127.0.0.1:8080" in caught.message
        assert f"({error})" in caught.message


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
async def test_a_connection_cut_mid_stream_is_incomplete_through_both_clients(client_kind: str) -> None:
    module = CLIENTS[client_kind]

    class CutBody(module.AsyncByteStream):  # type: ignore[name-defined,misc]
        async def __aiter__(self) -> AsyncIterator[bytes]:
            chunk = {"choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            raise module.RemoteProtocolError("peer closed connection without sending complete message body")

    def handler(request: Any) -> Any:
        return module.Response(200, stream=CutBody(), headers={"content-type": "text/event-stream"})

    async with module.AsyncClient(transport=module.MockTransport(handler)) as client:
        provider = build("openai-compatible", client, key=None)
        stream = provider.stream(REQUEST)
        first = await anext(stream)
        with pytest.raises(IncompleteStreamError, match="mid-response"):
            await anext(stream)
    assert first.text == "partial"


@pytest.mark.parametrize("client_kind", sorted(CLIENTS))
async def test_an_exception_that_is_no_http_error_goes_on_unchanged(client_kind: str) -> None:
    module = CLIENTS[client_kind]

    def handler(request: Any) -> Any:
        raise LookupError("a bug in a transport, not a network failure")

    async with module.AsyncClient(transport=module.MockTransport(handler)) as client:
        with pytest.raises(LookupError):
            await build("openai-compatible", client, key=None).complete(REQUEST)


def test_the_library_never_imports_httpx_itself() -> None:
    code = (
        "import sys\n"
        "import taskmodels.providers.openai, taskmodels.providers.anthropic, taskmodels.providers.gemini\n"
        "import taskmodels.providers.ollama, taskmodels.providers.azure, taskmodels.providers.transport as t\n"
        "assert t.transport_error_class(RuntimeError('x')) is None\n"
        "assert 'httpx' not in sys.modules, 'httpx was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
