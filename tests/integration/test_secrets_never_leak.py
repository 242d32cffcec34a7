"""A sentinel API key run through every path must never come out anywhere but the wire.

Two sentinels: one shaped like an OpenAI key (``sk-...``), which the log redaction
pattern would catch anyway, and one shaped like nothing in particular, which only
the design (keys live in ``SecretStr`` and travel in headers alone) keeps out of
sight. Both are given the way users give them: in the environment.

The fault server is the only place allowed to see them (in the ``Authorization``
header), and the tests check that it did, so a path that silently dropped the key
could not make them pass.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pickle
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
import structlog
from dependency_injector import providers
from structlog.testing import capture_logs

from taskmodels import redaction
from taskmodels.cli import main as cli_main
from taskmodels.containers import Container
from taskmodels.log import RedactingFilter, configure_logging, redact_secrets
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.testing import make_test_service
from taskmodels.types import CompletionRequest, CompletionResult, StreamEvent
from tests.integration.faultserver import Behaviour, FaultServer
from tests.transport_choice import chosen_transport

pytestmark = pytest.mark.integration

SENTINEL = "sk-SENTINEL-0123456789abcdef"
PLAIN = "plainSENTINEL9876543210zyxw"  # matches no key pattern: only keeping it out works
SECRETS = (SENTINEL, PLAIN, "SENTINEL")

OPENAI_MODEL = "k-openai"  # provider "openai", key from OPENAI_API_KEY
COMPAT_MODEL = "k-compat"  # provider "openai-compatible", key from TASKMODELS_PROVIDERS__...
FALLBACK_MODEL = "k-fallback"


def assert_clean(label: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{label} leaks the key: ...{_around(text, secret)}..."


def _around(text: str, secret: str) -> str:
    i = text.index(secret)
    return text[max(0, i - 80) : i + len(secret) + 40]


def _model(model_id: str, provider: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "provider": provider,
        "modelName": model_id,
        "maxTokens": 32,
        "temperature": 0.0,
        "contextWindow": 4096,
        "costPer1kTokens": 0.001,
        "capabilities": ["chat"],
        "baseUrl": base_url,  # never the provider's real endpoint: all traffic stays on 127.0.0.1
        **extra,
    }


def registry_data(base_url: str) -> dict[str, Any]:
    return {
        "models": [
            _model(OPENAI_MODEL, "openai", base_url),
            _model(COMPAT_MODEL, "openai-compatible", base_url),
            _model(FALLBACK_MODEL, "openai-compatible", base_url),
        ],
        "taskMappings": [
            {"taskName": "openai", "primaryModelId": OPENAI_MODEL, "fallbackModelIds": [FALLBACK_MODEL]},
            {"taskName": "compat", "primaryModelId": COMPAT_MODEL, "fallbackModelIds": [FALLBACK_MODEL]},
            {"taskName": "openai-solo", "primaryModelId": OPENAI_MODEL, "streamPolicy": "error"},
            {"taskName": "compat-solo", "primaryModelId": COMPAT_MODEL, "streamPolicy": "error"},
            {"taskName": "budgeted", "primaryModelId": OPENAI_MODEL, "budget": {"limit": 1e-9, "onExceeded": "error"}},
        ],
        "defaultModelId": FALLBACK_MODEL,
    }


@pytest.fixture(autouse=True)
def _forget_keys() -> Iterator[None]:
    """Each test starts knowing no key: only what its own settings and providers remember."""
    redaction.forget_all()
    yield
    redaction.forget_all()


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keys in the environment, as users set them; cwd in a clean directory so no stray .env is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__API_KEY", PLAIN)
    return tmp_path


@pytest.fixture
def registry_file(key_env: Path, fault_server: FaultServer) -> Path:
    path = key_env / "modelRegistry.json"
    path.write_text(json.dumps(registry_data(fault_server.base_url)))
    return path


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


ServiceFactory = Callable[[], ModelService]


@pytest.fixture
async def make_service(registry_file: Path) -> AsyncIterator[ServiceFactory]:
    """Fresh services (fresh breakers) on one settings object read from the environment."""
    settings = Settings(
        registry_path=registry_file,
        resilience=ResilienceSettings(
            deadline=2.0,
            attempt_timeout=0.2,
            first_token_timeout=0.15,
            stall_timeout=0.15,
            backoff_initial=0.01,
            backoff_max=0.02,
            retry_after_cap=0.5,
            breaker_failure_threshold=100,
            fallback_reserve=0,  # a silent model may use the whole deadline, so the deadline path is covered
        ),
    )
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == SENTINEL  # the env var was really read
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5.0, connect=1.0)) as client:

        def build() -> ModelService:
            factory = ModelProviderFactory(settings, client)
            registry = ModelRegistryService.from_settings(settings, provider_names=factory.provider_names())
            return make_test_service(
                registry,
                provider_factory=factory,
                state_store=MemoryStateStore(),
                resilience=settings.resilience,
            )

        yield build


# --- the paths -------------------------------------------------------------------------

Scenario = tuple[str, str, list[str | Behaviour], bool]  # label, task, primary's script, streamed

SCENARIOS: list[Scenario] = [
    ("success", "openai", ["ok"], False),
    ("success, compatible", "compat", ["ok"], False),
    ("stream success", "openai", ["ok"], True),
    ("stream success, compatible", "compat", ["ok"], True),
    ("429 with Retry-After then ok", "openai", ["429:0.05", "ok"], False),
    ("429 without Retry-After then fallback", "compat", ["429", "429"], False),
    ("500 then fallback", "openai", ["500", "500"], False),
    ("503 stream then fallback", "compat", ["503", "503"], True),
    ("reset then fallback", "openai", ["reset", "reset"], False),
    ("silent then fallback", "compat", ["silent"], False),
    ("401", "openai-solo", ["401"], False),
    ("403 stream", "compat-solo", ["403"], True),
    ("400", "openai", ["400"], False),
    ("400 stream", "compat", ["400"], True),
    ("content filtered", "openai", ["content_policy_violation"], False),
    ("context length", "compat-solo", ["context_length_exceeded"], False),
    ("cut stream", "openai-solo", [Behaviour.cut(after_chunks=2)] * 2, True),
    ("malformed stream", "compat-solo", [Behaviour.malformed(after_chunks=2)] * 2, True),
    ("stalled stream", "openai-solo", [Behaviour.stall(after_chunks=2)], True),
    ("slow first token", "compat-solo", [Behaviour.slow_first_token(1.0)], True),
    ("no [DONE]", "openai-solo", ["no_done"], True),
    ("cut body", "openai-solo", ["cut", "cut"], False),
    ("silent until the deadline", "compat-solo", ["silent"], False),
    ("no eligible model", "openai", [], False),
    ("budget exceeded", "budgeted", [], False),
    ("cost ceiling", "compat", [], True),
]

_EXTRA_FIELDS: dict[str, dict[str, Any]] = {
    "silent until the deadline": {"deadline": 0.1},  # shorter than the attempt timeout
    "no eligible model": {"required_capabilities": frozenset({"vision"})},
    "cost ceiling": {"max_cost": 1e-12},
}


def _primary(task: str) -> str:
    return OPENAI_MODEL if task.startswith("openai") else COMPAT_MODEL


async def run_scenario(service: ModelService, server: FaultServer, scenario: Scenario) -> list[str]:
    """Run one path; return every text it produced (results, events, errors and their tracebacks)."""
    label, task, script, streamed = scenario
    server.script(_primary(task), script)
    fields: dict[str, Any] = {"prompt": "hello"}
    fields.update(_EXTRA_FIELDS.get(label, {}))
    texts: list[str] = []
    try:
        async with asyncio.timeout(5):
            if streamed:
                events: list[StreamEvent] = []
                async for event in service.stream_with_task_model(task, **fields):
                    events.append(event)
                texts.append(repr(events))
            else:
                result = await service.complete_with_task_model(task, **fields)
                texts.append(repr(result))
                texts.append(repr(result.attempts))
    except TimeoutError:
        pytest.fail(f"{label}: the call did not end within 5 s")
    except Exception as exc:
        texts.extend(_exception_texts(exc))
    return texts


def _exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(vars(exc)), repr(exc.args)]
    for attempt in getattr(exc, "attempts", ()):
        texts.append(repr(attempt))
    return texts


async def run_all(make_service: ServiceFactory, server: FaultServer) -> list[str]:
    """Every scenario, each on a fresh service and a fresh script, so one's open breaker cannot hide the next."""
    texts: list[str] = []
    for scenario in SCENARIOS:
        server.reset_scripts()
        service = make_service()
        texts += [f"{scenario[0]}: {t}" for t in await run_scenario(service, server, scenario)]
        texts.append(repr(await service.health()))
    return texts


def assert_keys_reached_the_wire(server: FaultServer) -> None:
    """The server saw the keys: the paths really carried them, so their absence elsewhere means something."""
    openai_auth = {r.headers.get("authorization") for r in server.requests(OPENAI_MODEL)}
    compat_auth = {r.headers.get("authorization") for r in server.requests(COMPAT_MODEL)}
    assert openai_auth == {f"Bearer {SENTINEL}"}
    assert compat_auth == {f"Bearer {PLAIN}"}


async def raised_errors(make_service: ServiceFactory, server: FaultServer) -> list[Exception]:
    errors: list[Exception] = []
    for label, task, script, streamed in SCENARIOS:
        fields: dict[str, Any] = {"prompt": "hello", "deadline": 0.5, **_EXTRA_FIELDS.get(label, {})}
        server.reset_scripts()
        server.always(_primary(task), script[-1] if script else "ok")
        server.always(FALLBACK_MODEL, script[-1] if script else "ok")  # nowhere to go: the error reaches us
        service = make_service()
        try:
            async with asyncio.timeout(5):
                if streamed:
                    async for _ in service.stream_with_task_model(task, **fields):
                        pass
                else:
                    await service.complete_with_task_model(task, **fields)
        except Exception as exc:
            errors.append(exc)
    return errors


# --- the tests -------------------------------------------------------------------------


async def test_no_path_leaks_the_key_into_results_errors_or_captured_logs(
    make_service: ServiceFactory, fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log requests too
    with capture_logs() as entries:
        texts = await run_all(make_service, fault_server)
    assert_keys_reached_the_wire(fault_server)
    assert len(texts) >= len(SCENARIOS)
    blob = "\n".join(texts)
    for kind in (
        "CompletionResult(",
        "StreamEvent(type='done'",
        "RateLimitError",
        "ProviderUnavailableError",
        "ProviderConnectionError",
        "ProviderTimeoutError",
        "FirstTokenTimeoutError",
        "StreamStalledError",
        "IncompleteStreamError",
        "InvalidResponseError",
        "AuthenticationError",
        "BadRequestError",
        "ContentFilteredError",
        "ContextLengthExceededError",
        "DeadlineExceededError",
        "AllModelsFailedError",
        "NoEligibleModelError",
        "BudgetExceededError",
    ):
        assert kind in blob, f"no path produced {kind}: the leak check would not cover it"
    for text in texts:
        assert_clean("a result or an error", text)
    assert entries, "the service logged nothing: the check below would be vacuous"
    for entry in entries:
        assert_clean(f"log event {entry.get('event')!r}", repr(entry))
    for record in caplog.records:
        assert_clean(f"stdlib log record from {record.name}", record.getMessage())


async def test_no_path_leaks_the_key_into_configured_json_logs(
    make_service: ServiceFactory, fault_server: FaultServer, restore_structlog: None
) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    await run_all(make_service, fault_server)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) >= len(SCENARIOS), "fewer log lines than calls: the check would be vacuous"
    for line in lines:
        json.loads(line)  # really JSON lines
        assert_clean("a JSON log line", line)
    assert_keys_reached_the_wire(fault_server)


async def test_console_logs_are_clean_too(
    make_service: ServiceFactory, fault_server: FaultServer, restore_structlog: None
) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "console", stream=out)
    await run_all(make_service, fault_server)
    assert out.getvalue().strip()
    assert_clean("console log output", out.getvalue())


async def test_an_error_body_that_echoes_the_key_does_not_carry_it_further(
    make_service: ServiceFactory, fault_server: FaultServer, restore_structlog: None
) -> None:
    # Some servers quote the key they rejected; the library must not pass that on. Each call
    # runs twice: once through configure_logging's JSON output, once under capture_logs, which
    # replaces the processors (so capturing inside the first run would leave `out` empty).
    for key, model, task in ((SENTINEL, OPENAI_MODEL, "openai-solo"), (PLAIN, COMPAT_MODEL, "compat-solo")):
        fault_server.always(model, Behaviour.error(401, code="invalid_api_key", message=f"Incorrect API key: {key}"))
        out = io.StringIO()
        configure_logging("DEBUG", "json", stream=out)
        texts = await run_scenario(make_service(), fault_server, ("echo", task, [], False))
        with capture_logs() as entries:
            texts += await run_scenario(make_service(), fault_server, ("echo", task, [], False))
        assert any("AuthenticationError" in text for text in texts), texts  # the echoing body really came back
        assert entries, "nothing captured: the check on log events would be vacuous"
        assert out.getvalue().strip(), "no JSON log line: the check on the output would be vacuous"
        for text in texts:
            assert_clean("an error built from a body that echoed the key", text)
        for entry in entries:
            assert_clean("a log event about a body that echoed the key", repr(entry))
        assert_clean("JSON logs about a body that echoed the key", out.getvalue())


async def test_reprs_and_dumps_of_every_node_hide_the_key(registry_file: Path, make_service: ServiceFactory) -> None:
    service = make_service()
    settings = Settings(registry_path=registry_file)
    texts: dict[str, str] = {
        "Settings repr": repr(settings),
        "Settings str": str(settings),
        "Settings json": settings.model_dump_json(),
        "Settings dump": repr(settings.model_dump()),
        "openai provider settings": repr(settings.provider_settings("openai")),
        "compatible provider settings": repr(settings.provider_settings("openai-compatible")),
        "service": repr(service),
        "service vars": repr(vars(service)),
        "factory": repr(service.provider_factory),
        "registry": repr(service.registry),
        "selector": repr(service.selector),
    }
    for model_id in (OPENAI_MODEL, COMPAT_MODEL):
        model = service.registry.current.models_by_id[model_id]
        provider = service.provider_factory.create_provider_for_model(model)
        assert isinstance(provider, BaseModelProvider)
        assert provider.api_key_value() in {SENTINEL, PLAIN}  # the key is really there, behind the repr
        texts[f"provider {model_id}"] = repr(provider)
        texts[f"provider {model_id} str"] = str(provider)
        http = provider.build_completion_request(CompletionRequest(prompt="hi"), stream=False)
        texts[f"request of {model_id}"] = repr(http)

    container = Container()
    with container.settings.override(providers.Object(settings)):
        nodes: dict[str, Callable[[], Any]] = {
            "container settings": container.settings,
            "container http_client": container.http_client,
            "container state_store": container.state_store,
            "container provider_factory": container.provider_factory,
            "container registry": container.registry,
            "container selector": container.selector,
            "container model_service": container.model_service,
        }
        for label, node in nodes.items():
            texts[label] = repr(node())
            texts[label + " provider"] = repr(node)
        texts["container"] = repr(container)
        await container.aclose()
    for label, text in texts.items():
        assert_clean(label, text)


async def test_errors_survive_pickling_without_the_key(make_service: ServiceFactory, fault_server: FaultServer) -> None:
    # Errors cross process pools; what comes out the other side must be as clean as what went in.
    errors = await raised_errors(make_service, fault_server)
    kinds = {type(e).__name__ for e in errors}
    expected = {"AllModelsFailedError", "BadRequestError", "ContentFilteredError", "DeadlineExceededError"}
    assert expected | {"NoEligibleModelError", "BudgetExceededError"} <= kinds, kinds
    for exc in errors:
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert str(copy) == str(exc)
        assert_clean(f"unpickled {type(exc).__name__}", repr(copy) + str(copy) + repr(vars(copy)))


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(
    "case",
    [
        (["plan"], 0),
        (["validate"], 0),
        (["explain", "openai"], 0),
        (["explain", "compat", "--prompt-tokens", "100000"], 1),  # every model skipped: exit 1, with reasons
    ],
    ids=["plan", "validate", "explain", "explain-skips"],
)
def test_the_cli_never_prints_the_key(
    registry_file: Path,
    capsys: pytest.CaptureFixture[str],
    restore_structlog: None,
    case: tuple[list[str], int],
    as_json: bool,
) -> None:
    argv, expected_code = case
    args = [*argv, "--registry", str(registry_file), *(["--json"] if as_json else [])]
    with capture_logs() as entries:
        code = cli_main(args)
    out, err = capsys.readouterr()
    assert code == expected_code, err
    assert out.strip()
    if as_json:
        json.loads(out)
    assert_clean("CLI stdout", out)
    assert_clean("CLI stderr", err)
    assert_clean("CLI logs", repr(entries))


def test_the_cli_error_paths_never_print_the_key(
    key_env: Path, registry_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = key_env / "broken.json"
    data = registry_data("http://127.0.0.1:9/v1")
    data["taskMappings"][0]["fallbackModelIds"] = ["no-such-model"]
    broken.write_text(json.dumps(data))
    codes = [
        cli_main(["validate", str(broken), "--json"]),
        cli_main(["validate", str(broken)]),
        cli_main(["plan", "--registry", str(broken)]),
        cli_main(["explain", "no-such-task", "--registry", str(registry_file)]),
        cli_main(["plan", "--registry", str(key_env / "missing.json")]),
    ]
    monkeypatch.setenv("TASKMODELS_RESILIENCE__DEADLINE", "-1")  # an invalid setting next to the keys
    codes.append(cli_main(["plan", "--registry", str(registry_file), "--json"]))
    out, err = capsys.readouterr()
    assert codes[:3] == [1, 1, 1]
    assert all(code != 0 for code in codes[4:])
    assert err.strip()
    assert_clean("CLI stdout on errors", out)
    assert_clean("CLI stderr on errors", err)


# --- keys a provider echoes back ------------------------------------------------------------
#
# One sentinel key per provider, given each way a user can give it. The fault server
# echoes it in every field of an error body, in the response headers the library keeps
# (request ids), and in HTML pages at every offset around the 500-character cut. Nothing
# the library stores or emits may hold the key, or even its first 12 characters.

ECHO_KEYS: dict[str, str] = {
    "openai": "sk-proj-OPENAIecho0123456789abcdefghij",
    "openai-compatible": "compatECHOkey0123456789abcdefghij",
    "azure-openai": "a1b2c3d4e5f60718293a4b5c6d7e8f90",  # an Azure key: 32 hex digits, no known shape
    "anthropic": "sk-ant-api03-ANTHROPICecho0123456789ab",
    "gemini": "AIzaGEMINIecho0123456789abcdefghijklmn",
    "ollama": "ollamaECHOkey0123456789abcdefghijkl",
}
USUAL_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "azure-openai": "AZURE_OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
WIRE_HEADERS = {
    "openai": "authorization",
    "openai-compatible": "authorization",
    "azure-openai": "api-key",
    "anthropic": "x-api-key",
    "gemini": "x-goog-api-key",
    "ollama": "authorization",
}
# The headers a library keeps as a request id, from any provider.
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-goog-request-id")
WAYS = ("variable", "taskmodels", "apiKeyEnv", "dotenv", "secrets_dir")
ECHO_PARAMS = [(p, w) for p in ECHO_KEYS for w in WAYS if w != "variable" or p in USUAL_VARIABLES]
ECHO_MODEL = "e-primary"
OK_MODEL = "e-ok"
CUT = 500  # where providers cut a non-JSON error body


def _taskmodels_variable(provider: str) -> str:
    return f"TASKMODELS_PROVIDERS__{provider.upper().replace('-', '_')}__API_KEY"


def _give_key(provider: str, way: str, key: str, monkeypatch: pytest.MonkeyPatch, home: Path) -> dict[str, Any]:
    """Set ``key`` up the way a user would; return what the model's registry entry needs for it."""
    variable = USUAL_VARIABLES.get(provider, _taskmodels_variable(provider))
    if way == "variable":
        monkeypatch.setenv(variable, key)
    elif way == "taskmodels":
        monkeypatch.setenv(_taskmodels_variable(provider), key)
    elif way == "apiKeyEnv":
        monkeypatch.setenv("ECHO_MODEL_KEY", key)
        return {"apiKeyEnv": "ECHO_MODEL_KEY"}
    elif way == "dotenv":
        (home / ".env").write_text(f"{variable}={key}\n")
    elif way == "secrets_dir":
        secrets = home / "secrets"
        secrets.mkdir()
        if provider in USUAL_VARIABLES:
            (secrets / variable).write_text(key)
        else:  # a nested section is one file holding its JSON
            (secrets / "TASKMODELS_PROVIDERS").write_text(json.dumps({provider: {"api_key": key}}))
        monkeypatch.setenv("TASKMODELS_SECRETS_DIR", str(secrets))
    else:
        raise AssertionError(way)
    return {}


def _echo_registry(provider: str, root_url: str, extra: dict[str, Any]) -> dict[str, Any]:
    # Each provider's paths hang off a different root; the server routes them all.
    base = f"{root_url}/v1" if provider in {"openai", "openai-compatible"} else root_url
    models = [
        _model(ECHO_MODEL, provider, base, **extra),
        _model(OK_MODEL, "openai-compatible", f"{root_url}/v1"),
    ]
    return {
        "models": models,
        "taskMappings": [
            {"taskName": "solo", "primaryModelId": ECHO_MODEL, "streamPolicy": "error"},
            {"taskName": "fallback", "primaryModelId": ECHO_MODEL, "fallbackModelIds": [OK_MODEL]},
        ],
        "defaultModelId": ECHO_MODEL,  # so "solo" has nowhere to go and ends in AllModelsFailedError
    }


def _success_body(provider: str) -> dict[str, Any]:
    """A minimal successful answer in the provider's shape, naming no request id of its own."""
    if provider == "anthropic":
        return {
            "type": "message",
            "role": "assistant",
            "model": ECHO_MODEL,
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    if provider == "gemini":
        return {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
        }
    if provider == "ollama":
        return {
            "model": ECHO_MODEL,
            "message": {"role": "assistant", "content": "hi"},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 1,
            "eval_count": 1,
        }
    return {
        "object": "chat.completion",
        "created": 0,
        "model": ECHO_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _field_bodies(key: str) -> list[tuple[str, Any]]:
    """Error bodies echoing the key, one field at a time, in every provider's error shape."""
    bearer = f"Bearer {key}"
    return [
        ("message", {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}}),
        ("code", {"error": {"message": "Incorrect API key", "type": "invalid_request_error", "code": bearer}}),
        ("type", {"type": "error", "error": {"type": bearer, "message": "invalid x-api-key"}}),
        ("param", {"error": {"message": "Incorrect API key", "param": bearer, "code": "invalid_api_key"}}),
        ("status", {"error": {"code": 401, "message": "API key not valid", "status": bearer}}),
        (
            "nested",
            {
                "error": {
                    "code": 401,
                    "message": "API key not valid",
                    "status": "UNAUTHENTICATED",
                    "details": [{"@type": "google.rpc.ErrorInfo", "reason": bearer, "metadata": {"key": key}}],
                }
            },
        ),
        ("error string", {"error": f"invalid key {key}"}),
        ("top-level message", {"message": f"invalid key {key}"}),
        ("url-encoded", {"error": {"message": f"denied: /v1?key={quote(bearer, safe='')}", "code": quote(bearer)}}),
        ("prefix", {"error": {"message": "Incorrect API key", "code": key[:14]}}),
    ]


def _html_page(key: str, offset: int) -> str:
    filler = "<!DOCTYPE html><html><head><title>401 Unauthorized</title></head><body>" + "x" * (2 * CUT)
    return filler[:offset] + key + filler[offset:] + "</body></html>"


EchoCase = tuple[str, Behaviour, str, bool]  # label, what the server does, task, streamed


def echo_cases(provider: str, key: str) -> list[EchoCase]:
    cases: list[EchoCase] = []
    for label, body in _field_bodies(key):
        behaviour = Behaviour.raw(401, json.dumps(body))
        cases += [
            (f"body {label}", behaviour, "solo", False),
            (f"body {label}, fallback", behaviour, "fallback", False),
            (f"body {label}, stream", behaviour, "solo", True),
        ]
    echoed = dict.fromkeys(REQUEST_ID_HEADERS, key)
    error_with_headers = Behaviour.raw(401, json.dumps({"error": {"message": "Incorrect API key"}}), headers=echoed)
    cases += [
        ("error headers", error_with_headers, "solo", False),
        ("error headers, fallback", error_with_headers, "fallback", False),
        ("error headers, stream", error_with_headers, "solo", True),
        ("success headers", Behaviour.raw(200, json.dumps(_success_body(provider)), headers=echoed), "solo", False),
    ]
    for offset in range(CUT - len(key) - 2, CUT + 2):  # the key before, across and after the cut
        page = Behaviour.raw(502, _html_page(key, offset), content_type="text/html")
        cases.append((f"html at {offset}", page, "solo", False))
    straddling = Behaviour.raw(502, _html_page(key, CUT - len(key) // 2), content_type="text/html")
    cases += [("html across the cut, fallback", straddling, "fallback", False)]
    cases += [("html across the cut, stream", straddling, "solo", True)]
    return cases


def _error_surfaces(exc: BaseException, label: str, depth: int = 0) -> dict[str, str]:
    """Every way an error can be looked at: str, repr, vars, traceback, pickle; its attempts, cause, members."""
    surfaces = {
        f"{label} str": str(exc),
        f"{label} repr": repr(exc),
        f"{label} vars": repr(vars(exc)),
        f"{label} args": repr(exc.args),
        f"{label} traceback": "".join(traceback.format_exception(exc)),
        f"{label} pickle": pickle.dumps(exc).decode("latin-1"),
    }
    for i, attempt in enumerate(getattr(exc, "attempts", ())):
        surfaces[f"{label} attempt {i}"] = repr(attempt)
        surfaces[f"{label} attempt {i} pickle"] = pickle.dumps(attempt).decode("latin-1")
    related = [exc.__cause__, exc.__context__, *getattr(exc, "exceptions", ())]
    for i, other in enumerate(e for e in related if e is not None):
        if depth < 3:
            surfaces.update(_error_surfaces(other, f"{label} related {i}", depth + 1))
    return surfaces


def _result_surfaces(result: CompletionResult, label: str) -> dict[str, str]:
    surfaces = {
        f"{label} result repr": repr(result),
        f"{label} result pickle": pickle.dumps(result).decode("latin-1"),
    }
    for i, attempt in enumerate(result.attempts):
        surfaces[f"{label} result attempt {i}"] = repr(attempt)
    return surfaces


async def run_echo_case(service: ModelService, server: FaultServer, case: EchoCase) -> dict[str, str]:
    label, behaviour, task, streamed = case
    server.reset_scripts()
    server.always(ECHO_MODEL, behaviour)
    try:
        async with asyncio.timeout(5):
            if streamed:
                events = [event async for event in service.stream_with_task_model(task, prompt="hello")]
                surfaces = {f"{label} events": repr(events)}
                done = events[-1].result if events else None
                if done is not None:
                    surfaces.update(_result_surfaces(done, label))
                return surfaces
            return _result_surfaces(await service.complete_with_task_model(task, prompt="hello"), label)
    except TimeoutError:
        pytest.fail(f"{label}: the call did not end within 5 s")
    except Exception as exc:
        return _error_surfaces(exc, label)


def count_leaks(key: str, surfaces: dict[str, str]) -> dict[str, tuple[int, int]]:
    """``surface: (whole-key occurrences, 12-character-prefix occurrences)`` for every surface that leaks."""
    prefix = key[:12]
    counts = {name: (text.count(key), text.count(prefix)) for name, text in surfaces.items()}
    return {name: c for name, c in counts.items() if c[1]}


def _leak_summary(leaks: dict[str, tuple[int, int]]) -> str:
    whole = sum(c[0] for c in leaks.values())
    prefixes = sum(c[1] for c in leaks.values())
    lines = [f"{len(leaks)} surfaces leak: {whole} whole keys, {prefixes} 12-character prefixes"]
    lines += [f"  {name}: {c[0]} whole, {c[1]} prefix" for name, c in sorted(leaks.items())]
    return "\n".join(lines)


@pytest.fixture
def clean_key_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key of the host's, no stray .env: only what a test gives."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TASKMODELS_") or name.endswith("_API_KEY") or name == "ECHO_MODEL_KEY":
            monkeypatch.delenv(name)
    return tmp_path


def _echo_settings(registry_path: Path) -> Settings:
    return Settings(
        registry_path=registry_path,
        resilience=ResilienceSettings(
            deadline=5.0,
            attempt_timeout=2.0,
            first_token_timeout=2.0,
            stall_timeout=2.0,
            max_attempts_per_model=1,
            backoff_initial=0.0,
            backoff_max=0.0,
            breaker_failure_threshold=100,
        ),
    )


class _Tee:
    """structlog processor that keeps each event as the library built it, before any other processor."""

    def __init__(self) -> None:
        self.raw: list[str] = []

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        self.raw.append(repr(event_dict))
        return event_dict


@pytest.fixture
def echo_registry(
    provider: str, way: str, clean_key_env: Path, fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The provider's key given ``way``; a registry with one model of that provider and a fallback."""
    extra = _give_key(provider, way, ECHO_KEYS[provider], monkeypatch, clean_key_env)
    path = clean_key_env / "modelRegistry.json"
    root_url = fault_server.base_url.removesuffix("/v1")
    path.write_text(json.dumps(_echo_registry(provider, root_url, extra)))
    return path


@pytest.mark.usefixtures("restore_structlog")
@pytest.mark.parametrize(("provider", "way"), ECHO_PARAMS, ids=[f"{p}-{w}" for p, w in ECHO_PARAMS])
async def test_a_key_the_provider_echoes_never_comes_out(
    provider: str,
    echo_registry: Path,
    fault_server: FaultServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = ECHO_KEYS[provider]
    registry_path = echo_registry
    settings = _echo_settings(registry_path)

    # One run, logged at DEBUG both ways: `tee` sees each event as the library made it (what an
    # application's own processor chain gets), `out` what the library's own chain renders.
    tee = _Tee()
    out = io.StringIO()
    structlog.configure(
        processors=[tee, structlog.processors.add_log_level, redact_secrets, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # httpcore logs every response's headers at DEBUG: an echoed request id lands there, in a
    # record the library never touches. RedactingFilter is what an application puts on its handlers.
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactingFilter())
    surfaces: dict[str, str] = {}
    cases = echo_cases(provider, key)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5.0, connect=1.0)) as client:
        factory = ModelProviderFactory(settings, client)
        registry = ModelRegistryService.from_settings(settings, provider_names=factory.provider_names())
        for case in cases:
            service = make_test_service(  # a fresh breaker each time: a 401 opens the model's circuit at once
                registry,
                provider_factory=factory,
                state_store=MemoryStateStore(),
                resilience=settings.resilience,
            )
            surfaces.update(await run_echo_case(service, fault_server, case))

    # The key was really given, and really sent: its absence elsewhere means something.
    sent = {r.headers.get(WIRE_HEADERS[provider], "").removeprefix("Bearer ") for r in fault_server.requests()}
    assert key in sent, f"{provider}: the key never reached the wire"
    assert len(surfaces) >= len(cases)
    assert tee.raw, "the library logged nothing: the log check would be vacuous"
    assert out.getvalue().strip()
    surfaces["log events as the library built them"] = "\n".join(tee.raw)
    surfaces["log output through the library's processors"] = out.getvalue()
    if chosen_transport() == "httpx2":  # httpcore2 logs headers; the aiohttp transport logs none
        assert any(r.name.startswith("httpcore") for r in caplog.records)
    surfaces["stdlib log records through RedactingFilter"] = "\n".join(r.getMessage() for r in caplog.records)

    for argv in (["plan"], ["validate"], ["explain", "solo"], ["explain", "solo", "--prompt-tokens", "99999"]):
        for as_json in ([], ["--json"]):
            cli_main([*argv, "--registry", str(registry_path), *as_json])
            printed, errors = capsys.readouterr()
            assert printed.strip()
            surfaces[f"cli {' '.join(argv + as_json)}"] = printed + errors

    leaks = count_leaks(key, surfaces)
    assert not leaks, f"{provider}'s key:\n{_leak_summary(leaks)}"
