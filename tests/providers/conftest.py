r"""Shared helpers for provider tests: an ``httpx2.MockTransport`` that records requests and plays scripted answers.

Use the ``mock_http`` fixture::

    mock_http.reply(200, json={...}, headers={...})       # queue answers, served in order (the last repeats)
    mock_http.reply_stream([b"data: ...\\n\\n"], hang=True)  # a body sent chunk by chunk, then optionally hanging
    mock_http.fail(httpx2.ConnectError("refused"))           # a transport failure
    provider = SomeProvider(make_model(provider="..."), mock_http.client, ...)
    mock_http.requests[0], mock_http.last_json()            # what was sent

``make_model`` and ``sse_body`` are fixtures returning the helper functions below, so test
modules need not import this conftest (its import path depends on pytest's import mode).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import httpx2
import pytest

from taskmodels.registry.schema import ModelConfig
from tests.transport_choice import use_chosen_transport

Answer = Callable[[httpx2.Request], "httpx2.Response | Any"]


class ScriptedByteStream(httpx2.AsyncByteStream):
    """A response body sent chunk by chunk; ``hang`` waits forever afterwards, ``error`` raises instead of ending."""

    def __init__(self, chunks: Iterable[bytes | str], *, hang: bool = False, error: Exception | None = None) -> None:
        self.chunks = [c.encode() if isinstance(c, str) else c for c in chunks]
        self.hang = hang
        self.error = error
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.hang:
            await asyncio.Event().wait()  # never set: the test's timeout must end it
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


class MockHttp:
    """Records every request; answers each with the next queued answer (the last one repeats)."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self._answers: list[Answer] = []
        self.client = httpx2.AsyncClient(transport=httpx2.MockTransport(self._handle))

    async def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if not self._answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        result = answer(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, httpx2.Response)
        return result

    def reply(
        self,
        status: int = 200,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        def answer(_: httpx2.Request) -> httpx2.Response:
            if content is not None:
                return httpx2.Response(status, content=content, headers=headers)
            return httpx2.Response(status, json=json, headers=headers)

        self._answers.append(answer)

    def reply_stream(
        self,
        chunks: Iterable[bytes | str],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        hang: bool = False,
        error: Exception | None = None,
    ) -> ScriptedByteStream:
        stream = ScriptedByteStream(chunks, hang=hang, error=error)
        merged = {"content-type": "text/event-stream", **(headers or {})}
        self._answers.append(lambda _: httpx2.Response(status, stream=stream, headers=merged))
        return stream

    def hang(self) -> None:
        """Never answer: the response headers never come."""

        async def answer(_: httpx2.Request) -> httpx2.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        self._answers.append(answer)

    def fail(self, exc: Exception) -> None:
        def answer(_: httpx2.Request) -> httpx2.Response:
            raise exc

        self._answers.append(answer)

    def answer_with(self, answer: Answer) -> None:
        self._answers.append(answer)

    def last_json(self) -> Any:
        assert self.requests, "no request was sent"
        return json.loads(self.requests[-1].content)


@pytest.fixture
async def mock_http() -> AsyncIterator[MockHttp]:
    mock = MockHttp()
    yield mock
    await mock.client.aclose()


def make_model(**fields: Any) -> ModelConfig:
    """A registry entry with defaults for every required field; pass any to override (snake_case)."""
    base: dict[str, Any] = {
        "id": "test-model",
        "provider": "openai",
        "model_name": "gpt-test",
        "max_tokens": 256,
        "temperature": 0.3,
        "context_window": 8192,
        "cost_per_1k_tokens": 0.002,
    }
    base.update(fields)
    return ModelConfig(**base)


def sse(*payloads: Any, done: bool = True) -> str:
    """An SSE body: each payload as one ``data:`` event (dicts as JSON), then ``[DONE]`` unless ``done=False``."""
    parts = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts)


@pytest.fixture(name="make_model")
def make_model_fixture() -> Callable[..., ModelConfig]:
    return make_model


@pytest.fixture(name="sse_body")
def sse_body_fixture() -> Callable[..., str]:
    return sse


@pytest.fixture(autouse=True)
def _chosen_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-built clients use the transport ``TASKMODELS_HTTP__TRANSPORT`` resolves to; CI runs both."""
    use_chosen_transport(monkeypatch)
