"""A stream read to its terminal event gives its connection back to the pool.

Breaking off at ``[DONE]`` without reading the body's end would close the
connection and cost a TCP connect per stream; against a loopback server that
was most of a short stream's CPU.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2
import pytest

from taskmodels.providers.openai import OpenAICompatibleProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import CompletionRequest

CHUNK = {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi "}, "finish_reason": None}]}
LAST = {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
BODY = ("".join(f"data: {json.dumps(c)}\n\n" for c in (CHUNK, CHUNK, LAST)) + "data: [DONE]\n\n").encode()


class CountingServer:
    """HTTP/1.1 keep-alive server on 127.0.0.1 answering every request with the same SSE body."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.requests += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    + f"content-length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[tuple[CountingServer, str]]:
    srv = CountingServer()
    url = await srv.__aenter__()
    yield srv, url
    await srv.__aexit__()


async def test_consecutive_streams_share_one_connection(server: tuple[CountingServer, str]) -> None:
    srv, url = server
    model = ModelConfig.model_validate(
        {
            "id": "m",
            "provider": "openai-compatible",
            "modelName": "m",
            "maxTokens": 16,
            "temperature": 0,
            "contextWindow": 1024,
            "costPer1kTokens": 0,
            "baseUrl": url,
        }
    )
    async with httpx2.AsyncClient() as client:
        provider = OpenAICompatibleProvider(model, client)
        for _ in range(5):
            events = [e async for e in provider.stream(CompletionRequest(prompt="hi"), stall_timeout=5)]
            assert "".join(e.text for e in events if e.type == "text") == "hi hi "
            assert events[-1].type == "done"
    assert srv.requests == 5
    assert srv.connections == 1
