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
import pickle
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import structlog
from dependency_injector import providers
from structlog.testing import capture_logs

from taskmodels.cli import main as cli_main
from taskmodels.containers import Container
from taskmodels.log import configure_logging
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.registry.service import ModelRegistryService
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.sections import ResilienceSettings
from taskmodels.selection import ModelSelectionFactory
from taskmodels.service import ModelService
from taskmodels.settings import Settings
from taskmodels.types import CompletionRequest, StreamEvent
from tests.integration.faultserver import Behaviour, FaultServer

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


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keys in the environment, as users set them; cwd in a clean directory so no stray .env is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    monkeypatch.setenv("TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__API_KEY", PLAIN)
    return tmp_path


@pytest.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as server:
        yield server


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
        ),
    )
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == SENTINEL  # the env var was really read
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(5.0, connect=1.0)) as client:

        def build() -> ModelService:
            factory = ModelProviderFactory(settings, client)
            registry = ModelRegistryService.from_settings(settings, provider_names=factory.provider_names())
            return ModelService(
                registry=registry,
                selector=ModelSelectionFactory(registry),
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
    # Some servers quote the key they rejected; the library must not pass that on.
    for key, model, task in ((SENTINEL, OPENAI_MODEL, "openai-solo"), (PLAIN, COMPAT_MODEL, "compat-solo")):
        fault_server.always(model, Behaviour.error(401, code="invalid_api_key", message=f"Incorrect API key: {key}"))
        out = io.StringIO()
        configure_logging("DEBUG", "json", stream=out)
        with capture_logs() as entries:
            texts = await run_scenario(make_service(), fault_server, ("echo", task, [], False))
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
