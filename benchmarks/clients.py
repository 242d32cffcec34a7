"""The calls taskmodels is compared with: bare httpx2 (the floor), bare httpx 0.28 (a reference) and the SDKs.

Every variant sends the same request to the same server and checks the answer,
so a variant that silently does less work cannot look fast. SDKs that are not
installed give a skipped variant that says which package is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx2

from benchmarks.harness import Variant
from benchmarks.server import COMPLETION_TEXT

__all__ = [
    "BASE",
    "FAIL_MODEL",
    "MAX_TOKENS",
    "MODEL_NAME",
    "PROMPT",
    "BenchCallError",
    "Endpoints",
    "bare_httpx_variants",
    "litellm_variants",
    "openai_variants",
    "pydantic_ai_variants",
]

PROMPT = "Say hello in one short sentence."
MODEL_NAME = "bench-model"
FAIL_MODEL = "fail-500"
MAX_TOKENS = 64


class BenchCallError(RuntimeError):
    """A call answered something other than the server's fixed answer."""


def expect_text(text: object) -> None:
    if text != COMPLETION_TEXT:
        raise BenchCallError(f"unexpected answer {text!r}")


def expect_chunks(got: int, want: int) -> None:
    if got != want:
        raise BenchCallError(f"stream gave {got} text chunks, expected {want}")


class Endpoints:
    """Where the server is and what it streams."""

    def __init__(self, base_url: str, chunks: int) -> None:
        self.base_url = base_url  # http://127.0.0.1:<port>
        self.api_base = f"{base_url}/v1"
        self.completions = f"{base_url}/v1/chat/completions"
        self.chunks = chunks


def _body(model: str, *, stream: bool = False) -> dict[str, Any]:
    # The body taskmodels' openai-compatible provider sends, so both sides do the same work on the wire.
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _missing(name: str, package: str) -> Variant:
    async def never() -> None:
        raise BenchCallError(f"{name} is not installed")

    return Variant(name, never, skipped=f"{package} not installed")


# --- bare httpx2 (and httpx) ----------------------------------------------------------------

BASE = "bare httpx2"


def bare_httpx_variants(
    ep: Endpoints, client: Any, label: str = BASE, *, status_error: type[Exception] = httpx2.HTTPStatusError
) -> dict[str, Variant]:
    """``complete``, ``fallback`` and ``stream`` written by hand over one client.

    ``client`` is an ``httpx2.AsyncClient`` or, for the reference row, an ``httpx.AsyncClient`` with
    ``status_error=httpx.HTTPStatusError``: the same API under the old name.
    """
    url = ep.completions

    async def complete() -> None:
        response = await client.post(url, json=_body(MODEL_NAME))
        response.raise_for_status()
        expect_text(response.json()["choices"][0]["message"]["content"])

    async def fallback() -> None:
        try:
            response = await client.post(url, json=_body(FAIL_MODEL))
            response.raise_for_status()
        except status_error:
            response = await client.post(url, json=_body(MODEL_NAME))
            response.raise_for_status()
        else:
            raise BenchCallError("the failing model answered")
        expect_text(response.json()["choices"][0]["message"]["content"])

    async def stream() -> None:
        pieces = 0
        async with client.stream("POST", url, json=_body(MODEL_NAME, stream=True)) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    # Read on to the body's end rather than break: a response left unread
                    # closes its connection, and the next stream would pay a reconnect.
                    continue
                chunk = json.loads(data)
                choices = chunk["choices"]
                if choices and choices[0]["delta"].get("content"):
                    pieces += 1
        expect_chunks(pieces, ep.chunks)

    return {
        "complete": Variant(label, complete),
        "fallback": Variant(f"{label} try/except", fallback),
        "stream": Variant(label, stream),
    }


# --- openai SDK ---------------------------------------------------------------------------


def _plain_create(completions: Any) -> Callable[..., Awaitable[Any]]:
    create: Callable[..., Awaitable[Any]] = completions.create
    return create


async def openai_variants(
    ep: Endpoints,
    stack: AsyncExitStack,
    *,
    name: str = "openai SDK",
    bind: Callable[[Any], Callable[..., Awaitable[Any]]] = _plain_create,
) -> dict[str, Variant]:
    """The openai SDK's ``chat.completions.create``; ``bind`` turns the client's completions resource into the
    method to call, looked up per call as an application's ``client.chat.completions.create`` is (the
    instrumented row of ``benchmarks.otel_peer`` passes the instrumentation's wrapper here)."""
    try:
        import openai
    except ImportError:
        return {k: _missing(name, "openai") for k in ("complete", "fallback", "stream")}
    # max_retries=0: the SDK would otherwise retry the 500 itself, with sleeps.
    client = openai.AsyncOpenAI(base_url=ep.api_base, api_key="bench-key", max_retries=0)
    stack.push_async_callback(client.close)
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def complete() -> None:
        r = await bind(client.chat.completions)(
            model=MODEL_NAME, messages=messages, max_tokens=MAX_TOKENS, temperature=0.0
        )
        expect_text(r.choices[0].message.content)

    async def fallback() -> None:
        try:
            await bind(client.chat.completions)(
                model=FAIL_MODEL, messages=messages, max_tokens=MAX_TOKENS, temperature=0.0
            )
        except openai.InternalServerError:
            r = await bind(client.chat.completions)(
                model=MODEL_NAME, messages=messages, max_tokens=MAX_TOKENS, temperature=0.0
            )
        else:
            raise BenchCallError("the failing model answered")
        expect_text(r.choices[0].message.content)

    async def stream() -> None:
        pieces = 0
        events = await bind(client.chat.completions)(
            model=MODEL_NAME,
            messages=messages,
            max_tokens=MAX_TOKENS,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in events:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
        expect_chunks(pieces, ep.chunks)

    return {
        "complete": Variant(name, complete),
        "fallback": Variant(f"{name} try/except", fallback),
        "stream": Variant(name, stream),
    }


# --- pydantic-ai -----------------------------------------------------------------------------


async def pydantic_ai_variants(ep: Endpoints, stack: AsyncExitStack) -> dict[str, Variant]:
    name = "pydantic-ai"
    try:
        import openai
        from pydantic_ai import Agent
        from pydantic_ai.models.fallback import FallbackModel
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider
    except ImportError:
        return {k: _missing(name, "pydantic-ai-slim[openai]") for k in ("complete", "fallback", "stream")}
    client = openai.AsyncOpenAI(base_url=ep.api_base, api_key="bench-key", max_retries=0)
    stack.push_async_callback(client.close)
    provider = OpenAIProvider(openai_client=client)
    settings: Any = {"max_tokens": MAX_TOKENS, "temperature": 0.0}
    plain = Agent(OpenAIChatModel(MODEL_NAME, provider=provider), model_settings=settings)
    fallback_agent = Agent(
        FallbackModel(OpenAIChatModel(FAIL_MODEL, provider=provider), OpenAIChatModel(MODEL_NAME, provider=provider)),
        model_settings=settings,
    )

    async def complete() -> None:
        result = await plain.run(PROMPT)
        expect_text(result.output)

    async def fallback() -> None:
        result = await fallback_agent.run(PROMPT)
        expect_text(result.output)

    async def stream() -> None:
        pieces = 0
        async with plain.run_stream(PROMPT) as result:
            async for delta in result.stream_text(delta=True, debounce_by=None):
                if delta:
                    pieces += 1
        expect_chunks(pieces, ep.chunks)

    return {
        "complete": Variant(name, complete),
        "fallback": Variant(f"{name} FallbackModel", fallback),
        "stream": Variant(name, stream),
    }


# --- LiteLLM ----------------------------------------------------------------------------------


def _quiet_litellm() -> None:
    # Keep LiteLLM from fetching its price map from the internet at import: loopback only.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_TELEMETRY", "False")


async def litellm_variants(ep: Endpoints, stack: AsyncExitStack) -> dict[str, Variant]:
    name = "LiteLLM Router"
    _quiet_litellm()
    try:
        import litellm
        from litellm.router import Router
    except ImportError:
        return {k: _missing(name, "litellm") for k in ("complete", "fallback", "stream")}
    litellm.telemetry = False
    litellm.suppress_debug_info = True

    def deployment(alias: str, model: str) -> dict[str, Any]:
        return {
            "model_name": alias,
            "litellm_params": {"model": f"openai/{model}", "api_base": ep.api_base, "api_key": "bench-key"},
        }

    router_kwargs: dict[str, Any] = {
        "model_list": [deployment("primary", FAIL_MODEL), deployment("bench", MODEL_NAME)],
        "fallbacks": [{"primary": ["bench"]}],
        "num_retries": 0,
    }
    try:
        # Without this the Router cools the failing deployment down and stops sending its request.
        router = Router(**router_kwargs, disable_cooldowns=True)
    except TypeError:
        router = Router(**router_kwargs, allowed_fails=10**9)
    closer = getattr(litellm, "close_litellm_async_clients", None)
    if closer is not None:
        stack.push_async_callback(closer)
    messages = [{"role": "user", "content": PROMPT}]

    async def complete() -> None:
        r: Any = await router.acompletion(model="bench", messages=messages, max_tokens=MAX_TOKENS, temperature=0.0)
        expect_text(r.choices[0].message.content)

    async def fallback() -> None:
        r: Any = await router.acompletion(model="primary", messages=messages, max_tokens=MAX_TOKENS, temperature=0.0)
        expect_text(r.choices[0].message.content)

    async def stream() -> None:
        pieces = 0
        events: Any = await router.acompletion(
            model="bench", messages=messages, max_tokens=MAX_TOKENS, temperature=0.0, stream=True
        )
        async for chunk in events:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
        expect_chunks(pieces, ep.chunks)

    return {
        "complete": Variant(name, complete),
        "fallback": Variant(f"{name} fallbacks", fallback),
        "stream": Variant(name, stream),
    }


SdkBuilder = Callable[[Endpoints, AsyncExitStack], Awaitable[dict[str, Variant]]]
SDK_BUILDERS: tuple[SdkBuilder, ...] = (openai_variants, pydantic_ai_variants, litellm_variants)
