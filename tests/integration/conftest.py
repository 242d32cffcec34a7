"""Session fixtures for integration tests against real servers.

llama.cpp fixtures are prefixed ``llamacpp_``: a tiny generated model and two
servers on it, one open (with embeddings) and one that demands an API key.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faultserver import FaultServer
from tests.integration.llamacpp import LlamaCppServer, ServerStartError, TinyModel, write_tiny_llama
from tests.transport_choice import use_chosen_transport

LLAMACPP_CONTEXT = 256  # small on purpose: a long prompt must overflow it


def _require_or_skip(config: pytest.Config) -> Callable[[bool, str], None]:
    """``tests/conftest.py``'s ``require_or_skip``, as pytest loaded it.

    Looked up through the plugin manager, which registers each conftest under its
    path, because the module's import name depends on pytest's import mode.
    """
    root_conftest = Path(__file__).resolve().parent.parent / "conftest.py"
    module: Any = config.pluginmanager.get_plugin(str(root_conftest))
    if module is None:
        raise RuntimeError(f"{root_conftest} was not loaded by pytest")
    helper: Callable[[bool, str], None] = module.require_or_skip
    return helper


def _start(
    request: pytest.FixtureRequest, model: TinyModel, log_path: Path, **options: Any
) -> Iterator[LlamaCppServer]:
    try:
        server = LlamaCppServer.start(model.path, log_path, n_ctx=LLAMACPP_CONTEXT, **options)
    except (ImportError, ServerStartError, OSError) as exc:
        _require_or_skip(request.config)(False, f"llama.cpp server could not start: {exc}")
        raise  # not reached: require_or_skip skips or fails
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llamacpp_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A random-weight llama model (64-wide, 2 layers, byte vocabulary, ChatML), written once per session."""
    try:
        import gguf  # noqa: F401
        import numpy  # noqa: F401
        import xllamacpp  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        _require_or_skip(request.config)(False, f"llama.cpp integration needs gguf, numpy and xllamacpp: {exc}")
    return write_tiny_llama(tmp_path_factory.mktemp("llamacpp") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def llamacpp_server(
    request: pytest.FixtureRequest, llamacpp_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaCppServer]:
    """llama.cpp's server without a key, chat and embeddings enabled."""
    log_path = tmp_path_factory.mktemp("llamacpp-open") / "server.log"
    yield from _start(request, llamacpp_model, log_path, embeddings=True)


@pytest.fixture(scope="session")
def llamacpp_secured_server(
    request: pytest.FixtureRequest, llamacpp_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaCppServer]:
    """llama.cpp's server that accepts only ``server.api_key``, a fresh random key."""
    log_path = tmp_path_factory.mktemp("llamacpp-secured") / "server.log"
    yield from _start(request, llamacpp_model, log_path, api_key=f"sk-test-{secrets.token_hex(16)}")


@pytest.fixture(autouse=True)
def _chosen_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-built clients use the transport ``TASKMODELS_HTTP__TRANSPORT`` resolves to; CI runs both."""
    use_chosen_transport(monkeypatch)


@pytest.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    """The suite's fault server in the test's own event loop; stopping it drops every connection it still holds."""
    async with FaultServer() as server:
        yield server
