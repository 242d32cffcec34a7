"""A peer's telemetry cost: the official OpenTelemetry instrumentation of the openai SDK (``openai-v2``).

The instrumented row is the ``openai SDK`` row of ``benchmarks.clients`` with one difference: the method it calls is
the instrumentation's wrapper of ``AsyncCompletions.create``, on the same SDK providers as taskmodels' telemetry
rows (``benchmarks.otel.sdk_providers``: a batch span processor with a dropping exporter, an in-memory metric
reader). Instrumenting patches the openai class for the whole process, which would turn every openai-based row of
the run (the plain openai SDK, pydantic-ai) into an instrumented one; so the wrapper is taken from the class and
the class restored at once, and only this row calls the wrapper, bound per call to the client's resource exactly
as the patched class binds it. The on - off pair is this row against ``openai SDK``, interleaved with every other
variant in rotated rounds.

Before it is timed, one call through a wrapper on in-memory providers must give a ``chat`` span with the answer's
token counts and a duration measurement, so the row cannot look cheap by recording nothing; a version mismatch (an
import that fails, a dependency conflict the instrumentor reports, a wrapper that records nothing) skips the row
with the reason instead.

    python -m benchmarks.otel_peer --calls 50 --rounds 10     # alone: bare httpx2, openai SDK, instrumented
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from importlib import metadata
from typing import Any

from benchmarks.clients import MODEL_NAME, Endpoints, openai_variants
from benchmarks.harness import Variant
from benchmarks.otel import sdk_missing, sdk_providers

__all__ = ["INSTRUMENTATION", "OFF_LABEL", "PEER_LABEL", "instrumented_openai_variants"]

INSTRUMENTATION = "opentelemetry-instrumentation-openai-v2"
OFF_LABEL = "openai SDK"
PEER_LABEL = "openai SDK + OTel openai-v2 instrumentation"
_KINDS = ("complete", "fallback", "stream")
INPUT_TOKENS = "gen_ai.usage.input_tokens"


class PeerUnavailableError(RuntimeError):
    """The instrumentation cannot instrument the installed openai SDK; the message says why."""


def _skipped(why: str) -> dict[str, Variant]:
    async def never() -> None:
        raise PeerUnavailableError(why)

    return {k: Variant(PEER_LABEL, never, skipped=why) for k in _KINDS}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions() -> str:
    return ", ".join(
        f"{dist} {_version(dist)}"
        for dist in ("openai", INSTRUMENTATION, "opentelemetry-util-genai", "opentelemetry-instrumentation")
    )


def _instrumentor() -> Any:
    """The instrumentor, or ``PeerUnavailableError`` naming the versions that do not fit together."""
    if (why := sdk_missing()) is not None:
        raise PeerUnavailableError(why)
    try:
        import openai  # noqa: F401  (its presence is the question)
    except ImportError:
        raise PeerUnavailableError("openai not installed") from None
    if _version(INSTRUMENTATION) == "not installed":
        raise PeerUnavailableError(f"{INSTRUMENTATION} not installed")
    versions = _versions()
    # Through importlib: the instrumentation is an optional peer, absent where CI type-checks.
    try:
        module = importlib.import_module("opentelemetry.instrumentation.openai_v2")
        package = importlib.import_module("opentelemetry.instrumentation.openai_v2.package")
        dependencies = importlib.import_module("opentelemetry.instrumentation.dependencies")
    except ImportError as exc:
        raise PeerUnavailableError(f"the instrumentation does not import ({exc}) with {versions}") from None
    conflict = dependencies.get_dependency_conflicts(package._instruments)  # noqa: SLF001  (its declared range)
    if conflict is not None:
        raise PeerUnavailableError(f"the instrumentor refuses the installed SDK ({conflict}) with {versions}")
    return module.OpenAIInstrumentor()


def _wrapper(instrumentor: Any, tracer_provider: Any, meter_provider: Any) -> Callable[[Any], Any]:
    """``AsyncCompletions.create`` as the instrumentation wraps it on these providers, the class left unpatched;
    the result binds the wrapper to a completions resource as attribute lookup on the patched class would."""
    from openai.resources.chat import completions

    cls = completions.AsyncCompletions
    original = cls.__dict__["create"]
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        wrapped = cls.__dict__["create"]
    finally:
        instrumentor.uninstrument()
    if cls.__dict__["create"] is not original:
        raise RuntimeError("uninstrument() left AsyncCompletions.create patched")
    if wrapped is original:
        raise PeerUnavailableError("instrument() left AsyncCompletions.create unwrapped")

    def bind(resource: Any) -> Callable[..., Awaitable[Any]]:
        bound: Callable[..., Awaitable[Any]] = wrapped.__get__(resource, cls)
        return bound

    return bind


class _Warnings(logging.Handler):
    """The SDK's complaints during a check call (an attribute value of the wrong type, say), kept as text."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage()[:160])


def _problem(kind: str, spans: list[tuple[str, dict[str, Any], bool]], metrics: set[str]) -> str | None:
    """What is wrong with one check call's record, or ``None``; ``spans``: (name, attributes, failed)."""
    want = f"chat {MODEL_NAME}"
    answered = [a for name, a, failed in spans if name == want and not failed]
    if len(answered) != 1 or (kind != "stream" and answered[0].get(INPUT_TOKENS) != 12):
        return f"recorded the spans {spans}"
    if kind == "fallback":
        errors = [a.get("error.type") for name, a, failed in spans if failed]
        if len(errors) != 1 or not isinstance(errors[0], str) or errors[0].startswith("<class"):
            return f"recorded the failed attempt's error.type as {errors}"
    if "gen_ai.client.operation.duration" not in metrics:
        return f"recorded the metrics {sorted(metrics)}"
    return None


async def _check_records(ep: Endpoints, instrumentor: Any) -> dict[str, str | None]:
    """One call of each kind on in-memory providers: the wrapper must record the spans and measurements it
    promises, without the SDK rejecting any of them. What is wrong, per kind (``None``: nothing)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    problems: dict[str, str | None] = {}
    otel_logger = logging.getLogger("opentelemetry")
    try:
        for kind in _KINDS:
            reader = InMemoryMetricReader()
            meter_provider = MeterProvider(metric_readers=[reader])
            exporter.clear()
            warnings = _Warnings()
            otel_logger.addHandler(warnings)
            try:
                bind = _wrapper(instrumentor, tracer_provider, meter_provider)
                async with AsyncExitStack() as stack:
                    await (await openai_variants(ep, stack, name=PEER_LABEL, bind=bind))[kind].call()
                data = reader.get_metrics_data()
            finally:
                otel_logger.removeHandler(warnings)
                meter_provider.shutdown()
            spans = [
                (span.name, dict(span.attributes or {}), span.status.status_code is StatusCode.ERROR)
                for span in exporter.get_finished_spans()
            ]
            metrics = {
                m.name for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
            }
            problem = _problem(kind, spans, metrics)
            if problem is None and warnings.seen:
                problem = f"made the SDK warn {warnings.seen[0]!r} ({len(warnings.seen)}x in one call)"
            problems[kind] = problem
    finally:
        tracer_provider.shutdown()
    return problems


async def instrumented_openai_variants(ep: Endpoints, stack: AsyncExitStack) -> dict[str, Variant]:
    """The openai SDK's calls through the openai-v2 instrumentation on the benchmark's SDK providers; a kind
    of call whose check failed is skipped with the reason and the versions installed."""
    try:
        instrumentor = _instrumentor()
        problems = await _check_records(ep, instrumentor)
    except PeerUnavailableError as exc:
        return _skipped(str(exc))
    tracer_provider, meter_provider = sdk_providers(stack)
    bind = _wrapper(instrumentor, tracer_provider, meter_provider)
    variants = await openai_variants(ep, stack, name=PEER_LABEL, bind=bind)
    for kind, problem in problems.items():
        if problem is not None:
            why = f"an instrumented {kind} call {problem} with {_versions()}"
            variants[kind] = Variant(variants[kind].name, variants[kind].call, skipped=why)
    return variants


async def _alone(calls: int, rounds: int) -> int:
    import httpx2

    from benchmarks.clients import bare_httpx_variants
    from benchmarks.harness import run_sequential
    from benchmarks.server import BenchServer

    with BenchServer() as server:
        ep = Endpoints(server.url, server.chunks)
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(httpx2.AsyncClient())
            variants = [
                bare_httpx_variants(ep, client)["complete"],
                (await openai_variants(ep, stack))["complete"],
                (await instrumented_openai_variants(ep, stack))["complete"],
            ]
            results = await run_sequential(variants, calls_per_round=calls, rounds=rounds, warmup=calls)
    for name, res in results.items():
        if res.skipped or res.error:
            print(f"{name:<45} {'skipped: ' + res.skipped if res.skipped else f'FAILED: {res.error}'}")
        else:
            print(f"{name:<45} median {res.median * 1e6:8.1f} µs, CPU/call {res.cpu_per_call * 1e6:8.1f} µs")
    bare, off, on = (results[v.name] for v in variants)
    if on.skipped or on.error or off.error or bare.error:
        return 1 if (on.error or off.error or bare.error) else 0
    for what, delta in (("median", on.median - off.median), ("CPU per call", on.cpu_per_call - off.cpu_per_call)):
        print(
            f"instrumentation on - off, {what}: {delta * 1e6:+.1f} µs"
            f" = {delta / bare.median * 100:+.2f} % of a bare call"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otel_peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    return asyncio.run(_alone(args.calls, args.rounds))


if __name__ == "__main__":
    raise SystemExit(main())
