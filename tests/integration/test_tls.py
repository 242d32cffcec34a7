"""TLS on both transports against a real HTTPS server on 127.0.0.1 with a certificate made for the test.

The certificate's CA is in no trust store, so verifying as configured by default must fail
(a typed error, not a hang or a plain ``ssl`` exception), trusting the CA through
``ca_bundle`` (or ``SSL_CERT_FILE``, as a slim container would) must succeed, and
``verify=False`` must succeed without any CA.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from taskmodels.errors import ProviderConnectionError
from taskmodels.http_client import build_http_client
from taskmodels.providers.openai import OpenAICompatibleProvider
from taskmodels.registry.schema import ModelConfig
from taskmodels.sections import HttpSettings
from taskmodels.types import CompletionRequest
from tests.conftest import IN_CI, require_or_skip

_NO_AIOHTTP = importlib.util.find_spec("aiohttp") is None
# Under CI=true the dev group installs aiohttp, so no case is skipped there (tests/conftest.py: IN_CI).
TRANSPORTS = [
    "httpx2",
    pytest.param("aiohttp", marks=pytest.mark.skipif(_NO_AIOHTTP and not IN_CI, reason="aiohttp not installed")),
]
ANSWER = json.dumps(
    {
        "id": "chatcmpl-tls",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "over tls"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
).encode()


@dataclass(frozen=True, slots=True)
class Certificates:
    ca: Path  # the CA to trust
    cert: Path  # the server's, signed by the CA, for IP 127.0.0.1
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        require_or_skip(False, "the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=taskmodels test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=folder)
    (folder / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n",
        encoding="ascii",
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip
    return Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")


@pytest.fixture
async def https_url(certificates: Certificates) -> AsyncIterator[str]:
    """An HTTPS server answering every request with one chat completion."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client went away, or refused our certificate
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    yield f"https://127.0.0.1:{port}/v1"
    server.close()
    await server.wait_closed()


@pytest.fixture
def no_cert_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Default verification reads these when set; the tests choose them explicitly.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def provider(url: str, client: httpx2.AsyncClient) -> OpenAICompatibleProvider:
    model = ModelConfig.model_validate(
        {
            "id": "tls",
            "provider": "openai-compatible",
            "modelName": "m",
            "maxTokens": 8,
            "temperature": 0,
            "contextWindow": 1024,
            "costPer1kTokens": 0,
            "baseUrl": url,
        }
    )
    return OpenAICompatibleProvider(model, client)


async def ask(url: str, transport: str, **http: Any) -> str:
    async with build_http_client(HttpSettings(transport=transport, **http)) as client:  # type: ignore[arg-type]
        result = await provider(url, client).complete(CompletionRequest(prompt="hi"))
    return result.text


@pytest.mark.usefixtures("no_cert_env")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ca_bundle_verifies_the_server(https_url: str, certificates: Certificates, transport: str) -> None:
    assert await ask(https_url, transport, ca_bundle=certificates.ca) == "over tls"


@pytest.mark.usefixtures("no_cert_env")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_default_verification_rejects_an_unknown_ca(https_url: str, transport: str) -> None:
    with pytest.raises(
        ProviderConnectionError, match=r"could not reach openai-compatible at 127\.0\.0\.1:[0-9]+ \(ConnectError\)"
    ):
        await ask(https_url, transport)


@pytest.mark.usefixtures("no_cert_env")
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_off_accepts_any_certificate(https_url: str, transport: str) -> None:
    assert await ask(https_url, transport, verify=False) == "over tls"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ssl_cert_file_is_the_default_trust_store(
    https_url: str, certificates: Certificates, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    assert await ask(https_url, transport) == "over tls"


def test_a_missing_ca_bundle_is_a_settings_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmodels.errors import SettingsError
    from taskmodels.settings import load_settings

    monkeypatch.setenv("TASKMODELS_HTTP__CA_BUNDLE", str(tmp_path / "absent.pem"))
    with pytest.raises(SettingsError, match=r"TASKMODELS_HTTP__CA_BUNDLE: .*no CA bundle at"):
        load_settings(_env_file=None)
