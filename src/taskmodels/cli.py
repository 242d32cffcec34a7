"""The ``taskmodels`` command: start a project, validate a registry, show its routing, explain one decision,
check a deployment's keys and endpoints, print the schema, serve the tasks as an OpenAI-compatible API, run a
fake server.

Exit codes: 0 success, 1 the registry has errors (or ``check`` found a problem, or ``init``
would overwrite a file), 2 a usage error or a missing file.
Nothing here prints a secret: the registry holds none, ``check`` names key variables only
and scrubs what endpoints answer, and settings are otherwise read for the registry path
and environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from taskmodels import __version__
from taskmodels.errors import ConfigurationError, Problem, RegistryError, SettingsError, UnknownTaskError
from taskmodels.registry.jsonschema import registry_json_schema
from taskmodels.registry.schema import DeploymentConfig, ModelConfig, TaskMapping
from taskmodels.registry.service import (
    ModelRegistryService,
    build_registry,
    check_files,
    endpoint_providers,
    registry_not_found,
)
from taskmodels.selection import ModelSelectionFactory, Selection
from taskmodels.types import CompletionRequest

if TYPE_CHECKING:
    from taskmodels.check import CheckReport, ModelStatus
    from taskmodels.settings import Settings

__all__ = ["main"]

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    """A problem with how the command was called, or a file that is not there: exit 2."""


@dataclass(frozen=True, slots=True)
class _Context:
    paths: list[Path]
    as_json: bool
    out: TextIO
    err: TextIO
    providers: frozenset[str] = frozenset()  # the registered provider implementations, looked up once
    endpoints: frozenset[str] = frozenset()  # providers whose settings give a base URL
    settings: Settings | None = None  # what deployments are built with, for their keys and endpoints


def _build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before and after the subcommand; SUPPRESS keeps a
    # subcommand's unset copy from overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", metavar="PATH", default=argparse.SUPPRESS, help="registry file")
    common.add_argument("--env", metavar="NAME", default=argparse.SUPPRESS, help="environment overlay to apply")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="taskmodels",
        description="Start, inspect and check a taskmodels project: which model serves each task, and why.",
        epilog=_registry_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"taskmodels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    init = sub.add_parser("init", help="write a starter registry and .env.example (never overwrites)")
    init.add_argument("directory", nargs="?", default=".", metavar="DIR", help="project directory (default: here)")
    init.add_argument(
        "--example",
        action="store_true",
        help="the example registry the docs' reference pages use (11 models, 6 tasks, a production overlay)",
    )
    validate = sub.add_parser("validate", parents=[common], help="check a registry file; list every problem")
    validate.add_argument("path", nargs="?", metavar="PATH", help="registry file (default: --registry)")
    sub.add_parser("plan", parents=[common], help="show each task's chain: primary, fallbacks, default")
    explain = sub.add_parser("explain", parents=[common], help="the chain for one request, with each skip's reason")
    explain.add_argument("task", metavar="TASK")
    explain.add_argument("--prompt-tokens", type=_non_negative, metavar="N", help="prompt size in tokens")
    explain.add_argument("--max-tokens", type=_positive, metavar="N", help="output tokens to reserve")
    explain.add_argument("--max-cost", type=float, metavar="USD", help="cost ceiling for one call")
    explain.add_argument(
        "--require", action="append", default=[], metavar="CAP", help="a capability the call needs (repeatable)"
    )
    check = sub.add_parser(
        "check", parents=[common], help="readiness: settings, registry, every model's key and endpoint; exit 1 if not"
    )
    check.add_argument("--ping", action="store_true", help="also send one cheap request to each distinct endpoint")
    check.add_argument("--timeout", type=_positive_float, default=5.0, metavar="SECONDS", help="per ping (default: 5)")
    sub.add_parser("schema", parents=[common], help="print the JSON Schema of the registry file")
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the registry's tasks as an OpenAI-compatible API (pip install 'taskmodels[serve]')",
    )
    serve.add_argument("--host", metavar="ADDRESS", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=_non_negative, metavar="N", help="port to listen on (default: 8000)")
    serve.add_argument("--workers", type=_positive, metavar="N", help="processes (default: 1); share state via Redis")
    serve.add_argument(
        "--unauthenticated",
        action="store_true",
        help="with no keys file, serve beyond this machine anyway: every task to anyone who can reach it",
    )
    fake = sub.add_parser(
        "fake-server", help="serve a fake LLM (OpenAI, Anthropic, Gemini, Ollama protocols) on 127.0.0.1"
    )
    fake.add_argument(
        "--port", type=_non_negative, default=None, help="port to listen on (default: 8080, else any free port)"
    )
    _add_keys_parser(sub, common)
    return parser


def _registry_help() -> str:
    from taskmodels.settings import Settings

    default = Settings.model_fields["registry_path"].default
    return (
        "The registry file: --registry PATH, else $TASKMODELS_REGISTRY_PATH, else "
        f"{default} (here: {Path(default).absolute()}).\n"
        "No registry yet? 'taskmodels init' writes a starter one."
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _provider_names() -> frozenset[str]:
    from taskmodels.providers.factory import ModelProviderFactory

    return ModelProviderFactory().provider_names()


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, without the library's warning about variables that configure nothing: the commands
    name those themselves (on stderr, or in ``check``'s report)."""
    from taskmodels.settings import load_settings, unannounced

    overrides: dict[str, Any] = {}
    registry = getattr(args, "path", None) or getattr(args, "registry", None)
    if registry:
        overrides["registry_path"] = Path(registry)
    if getattr(args, "env", None) is not None:
        overrides["environment"] = args.env or None
    with unannounced():
        return load_settings(**overrides)


def _paths(settings: Settings) -> list[Path]:
    paths = settings.registry_paths()
    for i, path in enumerate(paths):
        if i == 0 and not path.is_file():
            raise _UsageError(registry_not_found(path))
        if not path.is_file():
            raise _UsageError(f"overlay for environment {settings.environment!r} not found: {path.absolute()}")
    return paths


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901, PLR0911, PLR0912 - one branch per subcommand, each returning its exit code
    """Run the command line; returns the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    out, err = sys.stdout, sys.stderr
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "schema":
            _print_json(registry_json_schema(), out)
            return EXIT_OK
        if args.command == "init":
            return _init(Path(args.directory), out, err, example=args.example)
        if args.command == "fake-server":
            from taskmodels.fake_server import main as serve

            registry = getattr(args, "registry", None)
            return serve(
                [
                    *(["--port", str(args.port)] if args.port is not None else []),
                    *(["--registry", registry] if registry else []),
                ]
            )
        if args.command == "check":
            return _check(args, as_json, out, err)
        if args.command == "keys":
            return _keys(args, out, err)
        if args.command == "serve":
            return _serve(args, out, err)
        settings = _settings(args)
        for variable in settings.unconfigured_variables():
            print(f"taskmodels: warning: {variable}", file=err)
        providers = _provider_names()  # entry points are scanned once per command, not once per use
        ctx = _Context(
            _paths(settings), as_json, out, err, providers, endpoint_providers(settings, providers), settings
        )
        if args.command == "validate":
            return _validate(ctx)
        service = _load(ctx)
        if service is None:
            return EXIT_INVALID
        if args.command == "plan":
            return _plan(ctx, service)
        return _explain(ctx, service, args)
    except (_UsageError, SettingsError) as exc:
        print(f"taskmodels: error: {exc}", file=err)
        return EXIT_USAGE
    except BrokenPipeError:
        # `taskmodels plan | head`: the reader left; stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --- commands ------------------------------------------------------------------------


def _init(directory: Path, out: TextIO, err: TextIO, *, example: bool) -> int:
    from taskmodels.starter import write_starter

    try:
        written = write_starter(directory, example=example)
    except ConfigurationError as exc:
        print(f"taskmodels: error: {exc}", file=err)
        return EXIT_INVALID
    for path in written:
        print(f"wrote {path.absolute()}", file=out)
    print("next:", file=out)
    if directory.resolve() != Path.cwd().resolve():
        print(f"  cd {directory}", file=out)
    print("  taskmodels plan             # which model serves each task", file=out)
    print("  cp .env.example .env        # then fill in the keys your models need", file=out)
    print("  taskmodels check            # are every model's key and endpoint in place?", file=out)
    print("  taskmodels fake-server      # no keys yet? a local server that answers like every provider", file=out)
    return EXIT_OK


def _check(args: argparse.Namespace, as_json: bool, out: TextIO, err: TextIO) -> int:  # noqa: ARG001 - every subcommand takes the same streams
    from taskmodels.check import CheckReport, run_check

    try:
        settings = _settings(args)
    except SettingsError as exc:
        from taskmodels.settings import Settings

        unconfigured = [str(variable) for variable in Settings.unconfigured_variables()]
        report = CheckReport(settings_error=str(exc), unconfigured=unconfigured)
    else:
        paths = settings.registry_paths()
        if len(paths) > 1 and not paths[1].is_file():
            raise _UsageError(f"overlay for environment {settings.environment!r} not found: {paths[1].absolute()}")
        report = run_check(settings, paths, ping=args.ping, timeout=args.timeout)
    if as_json:
        _print_json(report.to_json(), out)
    else:
        _print_check(report, ping=args.ping, timeout=args.timeout, out=out)
    return EXIT_OK if report.ok else EXIT_INVALID


def _print_check(report: CheckReport, *, ping: bool, timeout: float, out: TextIO) -> None:
    print(f"settings: {_settings_state(report)}", file=out)
    if report.sources and not report.registry_errors:
        summary = f"{_count(report.model_count, 'model')}, {_count(report.tasks, 'task')}"
        print(f"registry: {' + '.join(report.sources)}: valid ({summary})", file=out)
    elif report.settings_error is None:
        print("registry: not usable", file=out)
    if report.models:
        print(file=out)
        _print_routes(report.models, out)
    if report.pings:
        print(file=out)
        print(f"ping, one request per endpoint (timeout {timeout:g} s):", file=out)
        rows = [
            [p.endpoint, p.provider, p.probe, "ok" if p.ok else "FAILED", p.detail, ", ".join(p.models)]
            for p in report.pings
        ]
        _print_table(["ENDPOINT", "PROVIDER", "PROBE", "RESULT", "DETAIL", "MODELS"], rows, out)
    problems, warnings = report.problems, report.warnings
    print(file=out)
    if warnings:
        print(f"{_count(len(warnings), 'warning')}: deployments a call skips while another serves the model", file=out)
        for warning in warnings:
            print(f"  {warning}", file=out)
    if problems:
        print(f"{_count(len(problems), 'problem')}:", file=out)
        for problem in problems:
            print(f"  {problem}", file=out)
    else:
        what = "keys, endpoints and pings" if ping else "keys and endpoints (add --ping to reach them)"
        print(f"ready: {what} in place for {_count(report.model_count, 'model')}", file=out)


def _settings_state(report: CheckReport) -> str:
    if report.settings_error is not None:
        return "invalid"
    if report.unconfigured:
        return f"{_count(len(report.unconfigured), 'variable')} configuring nothing (see below)"
    return "ok"


def _print_routes(routes: list[ModelStatus], out: TextIO) -> None:
    """One row per route: a model, or each of its deployments under it (then with a DEPLOYMENT column)."""
    pooled = any(route.deployment_id is not None for route in routes)
    rows = []
    for i, route in enumerate(routes):
        first = i == 0 or routes[i - 1].model_id != route.model_id
        row = [route.model_id if first else "", route.provider, route.key, _variable(route), route.endpoint or "-"]
        if pooled:
            row.insert(1, route.deployment_id or "-")
        rows.append(row)
    header = ["MODEL", "PROVIDER", "KEY", "KEY VARIABLE", "ENDPOINT"]
    if pooled:
        header.insert(1, "DEPLOYMENT")
    _print_table(header, rows, out)


def _variable(route: ModelStatus) -> str:
    """The variable a route's key is read from first (the model's or deployment's apiKeyEnv, else the vendor's)."""
    return route.key_variables[0] if route.key_variables and route.key != "not needed" else "-"


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import importlib.util

    from taskmodels.gateway.server import INSTALL_HINT, serve

    if importlib.util.find_spec("uvicorn") is None:
        print(f"taskmodels: error: serve needs uvicorn: {INSTALL_HINT}", file=err)
        return EXIT_USAGE
    settings = _settings(args)
    paths = _paths(settings)
    endpoints = endpoint_providers(settings, _provider_names())
    result = check_files(paths, provider_names=_provider_names(), providers_with_base_url=endpoints)
    if result.errors or result.config is None:
        print(str(RegistryError(result.errors)), file=err)
        print("run 'taskmodels validate' for details", file=err)
        return EXIT_INVALID
    # Each worker builds its container from the environment: what the options chose goes there first.
    if getattr(args, "registry", None):
        os.environ["TASKMODELS_REGISTRY_PATH"] = str(Path(args.registry).absolute())
    if getattr(args, "env", None) is not None:
        os.environ["TASKMODELS_ENVIRONMENT"] = args.env
    gateway = settings.gateway
    host = args.host if args.host is not None else gateway.host
    port = args.port if args.port is not None else gateway.port
    workers = args.workers if args.workers is not None else gateway.workers
    tasks = len(result.config.task_mappings)
    keys = _serve_keys(settings, [t.task_name for t in result.config.task_mappings], host, args, err)
    if isinstance(keys, int):
        return keys
    print(
        f"taskmodels gateway: {_count(tasks, 'task')} of {' + '.join(result.sources)} at http://{host}:{port}/v1 "
        f"({_count(workers, 'worker')}; {keys})",
        file=out,
        flush=True,
    )
    serve(settings, host=host, port=port, workers=workers, unauthenticated=args.unauthenticated)
    return EXIT_OK


def _serve_keys(settings: Settings, tasks: list[str], host: str, args: argparse.Namespace, err: TextIO) -> str | int:
    """What serve says of its keys, checked as the registry is first; an exit code when it must not start."""
    from taskmodels.gateway.keysfile import KeysFileError, check_keys_file
    from taskmodels.gateway.server import check_exposure

    try:
        check_exposure(settings, host, unauthenticated=args.unauthenticated)
    except ConfigurationError as exc:
        print(f"taskmodels: error: {exc}", file=err)
        return EXIT_USAGE
    path = settings.gateway.keys_file
    if path is None:
        return "no keys: anyone who can reach it may call every task"
    load = check_keys_file(path, tasks=tasks)
    if load.config is None or load.errors:
        print(f"taskmodels: error: {KeysFileError(load.errors, str(path))}", file=err)
        return EXIT_INVALID
    for warning in load.warnings:
        print(f"taskmodels: warning: {warning}", file=err)
    return f"{_count(len(load.config.keys), 'key')} from {path}"


# --- keys: the gateway's virtual keys (taskmodels/gateway/keys_command.py) ----------------------------------


def _add_keys_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    from taskmodels.gateway.keys_command import add_keys_parser

    add_keys_parser(sub, common)


def _keys(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from taskmodels.gateway.keys_command import run_keys

    def tasks() -> list[str] | None:
        # The registry's tasks, for a warning about a key naming one it does not map: none when it cannot be read.
        try:
            result = check_files(_settings(args).registry_paths())
        except (ConfigurationError, OSError):
            return None
        return None if result.config is None else [t.task_name for t in result.config.task_mappings]

    return run_keys(args, out, err, tasks=tasks)


def _validate(ctx: _Context) -> int:
    result = check_files(ctx.paths, provider_names=ctx.providers, providers_with_base_url=ctx.endpoints)
    if ctx.as_json:
        _print_json(
            {
                "valid": not result.errors,
                "sources": list(result.sources),
                "errors": [_problem_json(p) for p in result.errors],
                "warnings": [_problem_json(p) for p in result.warnings],
                "models": len(result.config.models) if result.config else None,
                "tasks": len(result.config.task_mappings) if result.config else None,
            },
            ctx.out,
        )
        return EXIT_INVALID if result.errors else EXIT_OK
    files = " + ".join(result.sources)
    if result.errors:
        count = len(result.errors)
        print(f"{files}: {_count(count, 'error')}", file=ctx.out)
        for problem in result.errors:
            print(f"  {problem}", file=ctx.out)
    for problem in result.warnings:
        print(f"  warning: {problem}", file=ctx.out)
    if result.errors or result.config is None:
        return EXIT_INVALID
    config = result.config
    warn = len(result.warnings)
    print(
        f"{files}: valid: {_count(len(config.models), 'model')}, {_count(len(config.task_mappings), 'task')}, "
        f"default model {config.default_model_id!r}, {_count(warn, 'warning')}",
        file=ctx.out,
    )
    return EXIT_OK


def _load(ctx: _Context) -> ModelRegistryService | None:
    result = check_files(ctx.paths, provider_names=ctx.providers, providers_with_base_url=ctx.endpoints)
    if result.errors or result.config is None:
        if ctx.as_json:
            _print_json({"valid": False, "errors": [_problem_json(p) for p in result.errors]}, ctx.out)
        else:
            print(str(RegistryError(result.errors)), file=ctx.err)
            print("run 'taskmodels validate' for details", file=ctx.err)
        return None
    registry = build_registry(result.config, result.sources, result.warnings)
    return ModelRegistryService(registry, paths=ctx.paths)


def _plan(ctx: _Context, service: ModelRegistryService) -> int:
    # Each chain is the one `explain TASK` gives for a request with no extra needs: a model the
    # task's own requirements rule out (a capability, its window, its cost ceiling) is listed as
    # skipped, with the reason, never as part of the chain.
    reg = service.current
    selector = ModelSelectionFactory(service)
    plans = [(task, selector.explain(task.task_name)) for task in service.list_tasks()]
    routes = _deployments(ctx, [reg.default_model, *(m for _, selection in plans for m in selection.models)])
    if ctx.as_json:
        _print_json(
            {
                "sources": list(reg.sources),
                "default": _model_json(reg.default_model, routes=routes),
                "tasks": [
                    {
                        "task": task.task_name,
                        "description": task.description,
                        "chain": [_model_json(m, role=_role(m, task), routes=routes) for m in selection.models],
                        "skipped": [{"id": s.model_id, "reason": s.reason} for s in selection.skipped],
                    }
                    for task, selection in plans
                ],
            },
            ctx.out,
        )
        return EXIT_OK
    rows: list[list[str]] = []
    skipped: list[list[str]] = []
    for task, selection in plans:
        for i, model in enumerate(selection.models):
            rows.append([task.task_name if i == 0 else "", _role(model, task), *_model_cells(model)])
        if not selection.models:
            rows.append([task.task_name, "-", "(no model can serve it: see below)", "", "", "", "", ""])
        skipped.extend([task.task_name, s.model_id, s.reason] for s in selection.skipped)
    print(f"registry: {' + '.join(reg.sources)}", file=ctx.out)
    print(file=ctx.out)
    header = ["TASK", "ROLE", "MODEL", "PROVIDER", "MODEL NAME", "CONTEXT", "$/1K IN", "$/1K OUT"]
    _print_table(header, rows, ctx.out, right={5, 6, 7})
    if skipped:
        print(file=ctx.out)
        _print_table(["TASK", "SKIPPED", "REASON"], skipped, ctx.out)
    _print_pools([m for _, selection in plans for m in selection.models], ctx.out, routes)
    print(file=ctx.out)
    d = reg.default_model
    print(
        f"default model (any other task): {d.id} ({d.provider} {d.model_name}, "
        f"context {d.context_window:,}, ${_price(d.input_price)}/${_price(d.output_price)} per 1K)",
        file=ctx.out,
    )
    return EXIT_OK


def _explain(ctx: _Context, service: ModelRegistryService, args: argparse.Namespace) -> int:
    selector = ModelSelectionFactory(service)
    request = None
    if args.max_tokens is not None or args.max_cost is not None:
        request = CompletionRequest(max_tokens=args.max_tokens, max_cost=args.max_cost)
    try:
        selection = selector.explain(args.task, request, prompt_tokens=args.prompt_tokens or 0, require=args.require)
    except UnknownTaskError as exc:
        print(f"taskmodels: error: {exc}", file=ctx.err)
        return EXIT_INVALID
    routes = _deployments(ctx, selection.models)
    if ctx.as_json:
        _print_json(_selection_json(selection, routes), ctx.out)
        return EXIT_OK if selection.models else EXIT_INVALID
    where = "" if selection.known_task else " (not in the registry: the default model serves it)"
    print(f"task: {selection.task}{where}", file=ctx.out)
    needs = [f"prompt {selection.prompt_tokens:,} tokens"]
    if args.max_tokens is not None:
        needs.append(f"output {args.max_tokens:,} tokens")
    if selection.required_capabilities:
        needs.append("capabilities " + ", ".join(sorted(selection.required_capabilities)))
    if selection.max_cost is not None:
        needs.append(f"cost <= ${selection.max_cost:.4f}")
    print(f"needs: {'; '.join(needs)}", file=ctx.out)
    print(file=ctx.out)
    if selection.models:
        rows = [[str(i + 1), *_model_cells(m)] for i, m in enumerate(selection.models)]
        _print_table(
            ["#", "MODEL", "PROVIDER", "MODEL NAME", "CONTEXT", "$/1K IN", "$/1K OUT"], rows, ctx.out, {4, 5, 6}
        )
    else:
        print("no model can serve this request", file=ctx.out)
    if selection.skipped:
        print(file=ctx.out)
        _print_table(["SKIPPED", "REASON"], [[s.model_id, s.reason] for s in selection.skipped], ctx.out)
    _print_pools(list(selection.models), ctx.out, routes)
    return EXIT_OK if selection.models else EXIT_INVALID


# --- formatting ----------------------------------------------------------------------


def _role(model: ModelConfig, task: TaskMapping) -> str:
    if model.id == task.primary_model_id:
        return "primary"
    if model.id in task.fallback_model_ids:
        return f"fallback {task.fallback_model_ids.index(model.id) + 1}"
    return "default"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _price(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"


def _model_cells(model: ModelConfig) -> list[str]:
    return [
        model.id,
        model.provider,
        model.model_name,
        f"{model.context_window:,}",
        _price(model.input_price),
        _price(model.output_price),
    ]


def _deployments(ctx: _Context, models: Sequence[ModelConfig]) -> dict[str, ModelStatus]:
    """Each deployment of the pooled models among ``models``, built as a call builds it (its provider, key and
    endpoint from the registry, the settings or the provider's default), by ``model/deployment``."""
    pooled = list({m.id: m for m in models if m.deployments}.values())
    if not pooled or ctx.settings is None:
        return {}
    from taskmodels.check import deployment_statuses

    return {status.label: status for status in deployment_statuses(ctx.settings, pooled)}


def _print_pools(models: list[ModelConfig], out: TextIO, routes: Mapping[str, ModelStatus]) -> None:
    """The deployments of every pooled model among ``models``, once each, in order, then those a call skips."""
    pooled = list({m.id: m for m in models if m.deployments}.values())
    if not pooled:
        return
    rows: list[list[str]] = []
    unusable: list[str] = []
    for m in pooled:
        for i, d in enumerate(m.deployments):
            route = routes.get(f"{m.id}/{d.id}")
            endpoint = d.base_url or m.base_url or "(provider default)"
            key = ["-", "-"]
            if route is not None:
                endpoint, key = route.endpoint or "-", [route.key, _variable(route)]
                unusable.extend(f"{route.label}: {problem}" for problem in route.problems)
            first = i == 0
            rows.append(
                [
                    m.id if first else "",
                    (m.routing or "weighted") if first else "",
                    d.id,
                    d.provider or m.provider,
                    f"{d.weight:g}",
                    f"{d.rpm:,}" if d.rpm else "-",
                    f"{d.tpm:,}" if d.tpm else "-",
                    *key,
                    endpoint,
                    ", ".join(d.tags),
                ]
            )
    print(file=out)
    header = ["POOL", "ROUTING", "DEPLOYMENT", "PROVIDER", "WEIGHT", "RPM", "TPM", "KEY", "KEY VARIABLE"]
    _print_table([*header, "ENDPOINT", "TAGS"], rows, out, right={4, 5, 6})
    if unusable:
        print(file=out)
        print("deployments a call skips as configured here (taskmodels check says more):", file=out)
        for line in unusable:
            print(f"  {line}", file=out)


def _model_json(
    model: ModelConfig, *, role: str | None = None, routes: Mapping[str, ModelStatus] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {} if role is None else {"role": role}
    data.update(
        id=model.id,
        provider=model.provider,
        modelName=model.model_name,
        contextWindow=model.context_window,
        maxTokens=model.max_tokens,
        inputCostPer1kTokens=model.input_price,
        outputCostPer1kTokens=model.output_price,
        capabilities=list(model.capabilities),
    )
    if model.deployments:
        data["routing"] = model.routing or "weighted"
        data["deployments"] = [
            _deployment_json(model, d, (routes or {}).get(f"{model.id}/{d.id}")) for d in model.deployments
        ]
    return data


def _deployment_json(model: ModelConfig, deployment: DeploymentConfig, route: ModelStatus | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": deployment.id,
        "provider": deployment.provider or model.provider,
        "baseUrl": deployment.base_url or model.base_url,  # the registry's; "endpoint" is where calls go
        "weight": deployment.weight,
        "rpm": deployment.rpm,
        "tpm": deployment.tpm,
        "tags": list(deployment.tags),
    }
    if route is not None:
        data.update(
            endpoint=route.endpoint,
            key=route.key,
            keyVariables=list(route.key_variables),
            problems=list(route.problems),
        )
    return data


def _selection_json(selection: Selection, routes: Mapping[str, ModelStatus]) -> dict[str, Any]:
    return {
        "task": selection.task,
        "knownTask": selection.known_task,
        "promptTokens": selection.prompt_tokens,
        "requiredCapabilities": sorted(selection.required_capabilities),
        "maxCost": selection.max_cost,
        "models": [_model_json(m, routes=routes) for m in selection.models],
        "skipped": [{"id": s.model_id, "reason": s.reason} for s in selection.skipped],
    }


def _problem_json(problem: Problem) -> dict[str, str]:
    return {"source": problem.source, "path": problem.path, "message": problem.message, "severity": problem.severity}


def _print_table(header: list[str], rows: list[list[str]], out: TextIO, right: set[int] | None = None) -> None:
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    print(line(header), file=out)
    for row in rows:
        print(line(row), file=out)


def _print_json(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=out)


if __name__ == "__main__":
    sys.exit(main())
