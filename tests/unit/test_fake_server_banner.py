"""`taskmodels fake-server` as a new user runs it: on the port the starter registry names, and a banner that says
which models of the registry its variables cannot reach (a model's own baseUrl wins over them)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from taskmodels import fake_server
from taskmodels.fake_server import FakeLLMServer, banner, registry_base_urls, start
from taskmodels.starter import write_starter


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_default_port_is_the_one_the_starter_registry_names(tmp_path: Path) -> None:
    write_starter(tmp_path)
    assert fake_server.DEFAULT_PORT == 8080
    assert registry_base_urls(tmp_path / "settings" / "modelRegistry.json") == [
        ("local-llama", "http://127.0.0.1:8080/v1")
    ]


def test_start_listens_on_the_default_port_when_it_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setattr(fake_server, "DEFAULT_PORT", port)
    server, moved = start()
    try:
        assert (server.port_in_use, moved) == (port, None)
    finally:
        server.stop()


def test_start_takes_any_free_port_when_the_default_is_taken_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        monkeypatch.setattr(fake_server, "DEFAULT_PORT", port)
        server, moved = start()
        try:
            assert server.port_in_use != port
            assert moved == (
                f"port {port} is taken (Address already in use), so this server is on port {server.port_in_use}"
            )
        finally:
            server.stop()
        with pytest.raises(OSError, match="in use"):  # a port asked for is that port or nothing
            start(port)


def test_the_banner_says_which_models_go_elsewhere(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        here, there = server.openai_base_url, "http://127.0.0.1:9/v1"
        registry = {
            "models": [
                {"id": "local", "baseUrl": here},
                {"id": "llama", "baseUrl": there},
                {"id": "pool", "deployments": [{"id": "a", "baseUrl": f"http://localhost:{server.port_in_use}"}]},
                {"id": "cloud"},
            ]
        }
        path = tmp_path / "registry.json"
        path.write_text(json.dumps(registry))
        lines = banner(server, registry=("registry.json", registry_base_urls(path)))
        port = server.port_in_use
    assert lines[0] == f"fake LLM server on http://127.0.0.1:{port} (OpenAI base URL {here}); Ctrl-C stops it"
    assert f"  export TASKMODELS_PROVIDERS__OPENAI__BASE_URL={here}" in lines
    assert lines[-4:] == [
        f"registry.json: local's baseUrl {here} is this server",
        (
            f"registry.json: llama's baseUrl {there} wins over these: its calls go there, not here "
            f"(set it to {here} to use this server)"
        ),
        f"registry.json: pool/a's baseUrl http://localhost:{port} is this server",
        "",
    ]


def test_a_missing_or_unreadable_registry_names_nothing(tmp_path: Path) -> None:
    assert registry_base_urls(tmp_path / "none.json") == []
    (tmp_path / "bad.json").write_text("{not json")
    assert registry_base_urls(tmp_path / "bad.json") == []
    (tmp_path / "list.json").write_text('["models"]')
    assert registry_base_urls(tmp_path / "list.json") == []
