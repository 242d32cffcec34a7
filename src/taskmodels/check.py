"""``taskmodels check``: is this deployment ready to serve calls?

Settings load, the registry validates, every route a call can take has its key and
its endpoint, and with ``ping`` one cheap request per distinct endpoint answers: a
model list where the provider has one (OpenAI and OpenAI-compatible ``GET /models``,
Anthropic ``GET /v1/models``, Gemini ``GET /v1beta/models``, Ollama ``GET /api/tags``),
else a one-token completion (Azure OpenAI, providers you register).

A route is what engine/pools.py calls: a model without deployments is its own one
route; a model with deployments has one per deployment (``model.for_deployment(d)``)
and none of its own, so its own key and endpoint are never what a call uses. A model
none of whose routes is usable is a problem (its calls all go to the chain's next
model); an unusable deployment beside a usable one is a warning.

Keys are looked up the way the calls look them up (the provider factory and
``Settings.provider_settings``), so ``check`` and a real call cannot disagree.
Nothing a key could be part of is printed: only variable names, and every echoed
string passes through :func:`taskmodels.redaction.scrub`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from taskmodels.errors import ConfigurationError, MissingCredentialError, ProviderError
from taskmodels.providers.base import BaseModelProvider
from taskmodels.providers.factory import ModelProviderFactory
from taskmodels.redaction import remember, scrub
from taskmodels.registry.schema import ModelConfig
from taskmodels.registry.service import check_files, endpoint_providers, registry_not_found
from taskmodels.settings import Settings
from taskmodels.types import CompletionRequest

__all__ = ["CheckReport", "ModelStatus", "PingResult", "deployment_statuses", "run_check"]

DEFAULT_PING_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """One route's readiness (a model, or one deployment of it): its key (``set``, ``missing`` or ``not needed``),
    the variables it is read from, and its endpoint; ``problems`` say what keeps a call from using it."""

    model_id: str
    provider: str
    key: str
    key_variables: tuple[str, ...]
    endpoint: str | None
    problems: tuple[str, ...] = ()
    deployment_id: str | None = None

    @property
    def label(self) -> str:
        """``model`` or ``model/deployment``, as breakers and the attempts of a call name the route."""
        return self.model_id if self.deployment_id is None else f"{self.model_id}/{self.deployment_id}"


@dataclass(frozen=True, slots=True)
class PingResult:
    """One request to one endpoint, on behalf of the models that share it."""

    provider: str
    endpoint: str
    models: tuple[str, ...]
    probe: str  # what was sent, e.g. "GET /v1/models"
    ok: bool
    detail: str
    latency_ms: int | None = None


@dataclass(slots=True)
class CheckReport:
    settings_error: str | None = None
    unconfigured: list[str] = field(default_factory=list)  # TASKMODELS_ variables that configure nothing
    sources: tuple[str, ...] = ()
    registry_errors: list[str] = field(default_factory=list)
    models: list[ModelStatus] = field(default_factory=list)  # one per route, a model's deployments in order
    pings: list[PingResult] = field(default_factory=list)
    tasks: int = 0

    @property
    def model_count(self) -> int:
        return len({status.model_id for status in self.models})

    def _routes(self) -> dict[str, list[ModelStatus]]:
        routes: dict[str, list[ModelStatus]] = {}
        for status in self.models:
            routes.setdefault(status.model_id, []).append(status)
        return routes

    @property
    def problems(self) -> list[str]:
        """Every problem, one line each, in the order a person should fix them: what keeps a model from serving."""
        out: list[str] = []
        if self.settings_error:
            out.append(f"settings: {self.settings_error}")
        out.extend(f"settings: {variable}" for variable in self.unconfigured)
        out.extend(f"registry: {e}" for e in self.registry_errors)
        for model_id, routes in self._routes().items():
            if any(not route.problems for route in routes):
                continue  # a usable route: the unusable ones beside it are warnings
            out.extend(f"{route.label}: {p}" for route in routes for p in route.problems)
            if routes[0].deployment_id is not None:
                out.append(
                    f"{model_id}: none of its {len(routes)} deployments is usable: "
                    "its calls go to the next model of their chain"
                )
        out.extend(f"ping {ping.provider} {ping.endpoint}: {ping.detail}" for ping in self.pings if not ping.ok)
        return out

    @property
    def warnings(self) -> list[str]:
        """Deployments a call skips while a sibling serves the model: less capacity, not an outage."""
        out: list[str] = []
        for routes in self._routes().values():
            if any(not route.problems for route in routes):
                out.extend(f"{route.label}: {p}" for route in routes for p in route.problems)
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "settings": {
                "ok": self.settings_error is None and not self.unconfigured,
                "error": self.settings_error,
                "unconfigured": list(self.unconfigured),
            },
            "registry": {
                "sources": list(self.sources),
                "valid": bool(self.sources) and not self.registry_errors and self.settings_error is None,
                "errors": list(self.registry_errors),
                "models": self.model_count,
                "tasks": self.tasks,
            },
            "models": [
                {
                    "id": m.model_id,
                    "deployment": m.deployment_id,
                    "provider": m.provider,
                    "key": m.key,
                    "keyVariables": list(m.key_variables),
                    "endpoint": m.endpoint,
                    "problems": list(m.problems),
                }
                for m in self.models
            ],
            "pings": [
                {
                    "provider": p.provider,
                    "endpoint": p.endpoint,
                    "models": list(p.models),
                    "probe": p.probe,
                    "ok": p.ok,
                    "detail": p.detail,
                    "latencyMs": p.latency_ms,
                }
                for p in self.pings
            ],
            "problems": self.problems,
            "warnings": self.warnings,
        }


def run_check(
    settings: Settings, paths: Sequence[Path], *, ping: bool, timeout: float = DEFAULT_PING_TIMEOUT
) -> CheckReport:
    """Check the registry at ``paths`` and its models' keys and endpoints; ``ping`` each endpoint when asked."""
    return asyncio.run(_run(settings, paths, ping=ping, limit=timeout))


async def _run(settings: Settings, paths: Sequence[Path], *, ping: bool, limit: float) -> CheckReport:
    report = CheckReport()
    if not paths[0].is_file():
        report.unconfigured = [str(variable) for variable in settings.unconfigured_variables()]
        report.registry_errors.append(registry_not_found(paths[0]).replace("\n", " "))
        return report
    async with httpx2.AsyncClient(timeout=limit) as client:
        factory = ModelProviderFactory(settings, client)
        names = factory.provider_names()
        result = check_files(paths, provider_names=names, providers_with_base_url=endpoint_providers(settings, names))
        report.sources = tuple(result.sources)
        # A variable the registry names as a key (apiKeyEnv) is read by the calls, not the settings.
        named = [] if result.config is None else [v for m in result.config.models for v in _key_variables(m)]
        report.unconfigured = [str(variable) for variable in settings.unconfigured_variables(named)]
        if result.errors or result.config is None:
            report.registry_errors.extend(scrub(str(p)) for p in result.errors)
            return report
        report.tasks = len(result.config.task_mappings)
        built = [route for model in result.config.models for route in _routes(model, factory, settings)]
        report.models = [status for status, _ in built]
        if ping:
            report.pings = await _ping_all(built, client, limit)
    return report


def _key_variables(model: ModelConfig) -> Iterator[str]:
    if model.api_key_env:
        yield model.api_key_env
    yield from (d.api_key_env for d in model.deployments if d.api_key_env)


def deployment_statuses(settings: Settings, models: Sequence[ModelConfig]) -> list[ModelStatus]:
    """Each deployment of ``models`` built as a call builds it (``taskmodels plan`` shows them): its key, the
    variables it is read from, its real endpoint (from the registry, the settings or the provider's default).

    No event loop is needed (``plan`` may be called from inside one): the providers get a client they never
    send through, so it opens no connection and there is nothing to close."""
    factory = ModelProviderFactory(settings, httpx2.AsyncClient())
    return [status for model in models if model.deployments for status, _ in _routes(model, factory, settings)]


def _routes(
    model: ModelConfig, factory: ModelProviderFactory, settings: Settings
) -> list[tuple[ModelStatus, BaseModelProvider | None]]:
    """A status per route a call can take, built as engine/pools.py builds it: the model itself when it has no
    deployments, else each deployment's view of it and never the model's own (no call uses that)."""
    if not model.deployments:
        return [_model_status(model, factory, settings)]
    return [_model_status(model.for_deployment(d), factory, settings) for d in model.deployments]


def _model_status(
    model: ModelConfig, factory: ModelProviderFactory, settings: Settings
) -> tuple[ModelStatus, BaseModelProvider | None]:
    """What a call would find: the factory builds the route's provider exactly as a call does, so a missing key
    or endpoint is reported with the same variables the call's ``MissingCredentialError`` would name.
    ``model`` is a registry model or one deployment's view of it (``ModelConfig.for_deployment``)."""
    deployment = model.deployment_id
    section = settings.provider_settings(model.provider)
    if model.api_key_env:
        key = settings.variable(model.api_key_env)
    else:
        key = section.api_key.get_secret_value() if section.api_key is not None else None
    remember(key)  # so that scrub() cuts it out of anything an endpoint answers
    try:
        provider = factory.create_provider_for_model(model)
    except MissingCredentialError as exc:
        cls = factory.get_provider_class(model.provider)
        url = model.base_url or section.base_url or getattr(cls, "default_base_url", None)
        endpoint = _shown_url(url.rstrip("/")) if url else None
        problem = f"no API key: set {' or '.join(exc.variables)}"
        status = ModelStatus(model.id, model.provider, "missing", exc.variables, endpoint, (problem,), deployment)
        return status, None
    except ConfigurationError as exc:
        problem = f"no endpoint: {scrub(str(exc))}"
        return ModelStatus(model.id, model.provider, "-", (), None, (problem,), deployment), None
    if not isinstance(provider, BaseModelProvider):  # a plugin speaking no HTTP we know: nothing to probe
        state = "set" if key else "not needed"
        return ModelStatus(model.id, model.provider, state, (), None, deployment_id=deployment), None
    variables = provider.api_key_variables()
    state = "set" if key else ("missing" if provider.requires_api_key else "not needed")
    endpoint = _shown_url(provider.base_url)
    return ModelStatus(model.id, model.provider, state, variables, endpoint, deployment_id=deployment), provider


def _shown_url(url: str) -> str:
    """The URL without any user:password part, scrubbed."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        parts = parts._replace(netloc=netloc)
    return scrub(urlunsplit(parts))


async def _ping_all(
    built: Sequence[tuple[ModelStatus, BaseModelProvider | None]], client: httpx2.AsyncClient, limit: float
) -> list[PingResult]:
    groups: dict[tuple[str, str, tuple[str, ...]], list[tuple[ModelStatus, BaseModelProvider]]] = {}
    for status, provider in built:
        if provider is None or status.key == "missing":
            continue  # already a problem; a request without its key proves nothing
        groups.setdefault((status.provider, provider.base_url, status.key_variables), []).append((status, provider))
    jobs = [_ping(members, client, limit) for members in groups.values()]
    return list(await asyncio.gather(*jobs))


def _list_url(provider: BaseModelProvider) -> str | None:
    """The provider's cheapest authenticated read: its model list, where it has one."""
    from taskmodels.providers.anthropic import AnthropicProvider
    from taskmodels.providers.azure import AzureOpenAIProvider
    from taskmodels.providers.gemini import GeminiProvider
    from taskmodels.providers.ollama import OllamaProvider
    from taskmodels.providers.openai import OpenAIProvider

    base = provider.base_url
    if isinstance(provider, AzureOpenAIProvider):
        return None  # a resource lists no deployments on the data plane: one token it is
    if isinstance(provider, OpenAIProvider):
        return f"{base}/models"
    if isinstance(provider, AnthropicProvider):
        return f"{base}/v1/models"
    if isinstance(provider, GeminiProvider):
        return f"{base}/{provider.options.get('apiVersion', 'v1beta')}/models"
    if isinstance(provider, OllamaProvider):
        return f"{base}/api/tags"
    return None


async def _ping(
    members: Sequence[tuple[ModelStatus, BaseModelProvider]], client: httpx2.AsyncClient, limit: float
) -> PingResult:
    status, provider = members[0]
    ids = tuple(s.label for s, _ in members)
    endpoint = _shown_url(provider.base_url)
    target = urlsplit(provider.base_url)
    where = f"{target.hostname}:{target.port or (443 if target.scheme == 'https' else 80)}"
    try:
        # The completion request carries the provider's auth headers; a model list takes the same ones.
        built = provider.build_completion_request(CompletionRequest(prompt="ping", max_tokens=1), stream=False)
    except ProviderError as exc:
        return PingResult(status.provider, endpoint, ids, "-", False, scrub(str(exc)))
    url = _list_url(provider)
    if url is not None:
        method, body = "GET", None
        headers = {k: v for k, v in built.headers.items() if k.lower() != "content-type"}
    else:
        method, url, body, headers = built.method, built.url, built.json, dict(built.headers)
    probe = f"{method} {urlsplit(url).path}" + (" (1 token)" if method == "POST" else "")
    started = time.perf_counter()
    try:
        response = await client.request(method, url, headers=headers, json=body, timeout=limit)
    except httpx2.TimeoutException:
        return PingResult(status.provider, endpoint, ids, probe, False, f"no answer from {where} within {limit:g} s")
    except httpx2.HTTPError as exc:
        return PingResult(
            status.provider, endpoint, ids, probe, False, f"could not connect to {where} ({type(exc).__name__})"
        )
    latency = round((time.perf_counter() - started) * 1000)
    if response.status_code >= 400:
        error = provider.parse_error(response.status_code, response.headers, response.content)
        said = error.provider_message or f"HTTP {response.status_code}"
        detail = scrub(f"{where} answered {response.status_code}: {said}")
        return PingResult(status.provider, endpoint, ids, probe, False, detail, latency)
    return PingResult(status.provider, endpoint, ids, probe, True, f"{response.status_code} in {latency} ms", latency)
