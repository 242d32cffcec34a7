"""One benchmark run: every measurement against the same server, then the tables and the JSON file.

    python -m benchmarks            # the default size (a couple of minutes)
    python -m benchmarks --full     # the published figures: 100,000 calls for memory, more rounds
    python -m benchmarks --smoke    # CI: a few hundred calls, well under a minute, no timing asserted

The exit status is non-zero when any call failed (a wrong answer, an exception),
never because a timing missed its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import traceback
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

from benchmarks.clients import BASE, SDK_BUILDERS, Endpoints, bare_httpx_variants, openai_variants
from benchmarks.harness import SequentialResult, Variant, run_concurrent, run_sequential
from benchmarks.imports import measure_imports
from benchmarks.layer import measure_service_layers
from benchmarks.memory import measure_rss_growth
from benchmarks.otel import TELEMETRY_LABELS, Telemetry, sdk_missing
from benchmarks.otel_floor import measure_otel_floor
from benchmarks.otel_peer import instrumented_openai_variants
from benchmarks.report import comparison_rows, format_table, machine_info, target_rows, telemetry_rows
from benchmarks.scale import measure_scale
from benchmarks.server import BenchServer
from benchmarks.subject import build_service, provider_only_variant, taskmodels_variants

__all__ = ["SIZES", "Size", "main"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Size:
    seq_calls: int  # per round per variant
    seq_rounds: int
    warmup: int
    conc_calls: int
    conc_rounds: int
    concurrency: int
    fb_calls: int
    fb_rounds: int
    stream_calls: int
    stream_rounds: int
    chunks: int
    scale_models: int
    scale_repeats: int
    selections: int
    import_repeats: int
    memory_calls: int
    memory_warmup: int
    memory_concurrency: int
    layer_calls: int


# Many short rounds rather than a few long ones: on a shared machine the load changes by
# the second, and short interleaved rounds spread that drift evenly over the variants.
SIZES: dict[str, Size] = {
    "smoke": Size(20, 2, 5, 100, 1, 50, 10, 2, 10, 2, 20, 1_000, 1, 1_000, 2, 300, 50, 10, 500),
    "quick": Size(50, 20, 50, 500, 5, 50, 50, 10, 50, 10, 20, 10_000, 3, 20_000, 6, 10_000, 2_000, 10, 10_000),
    "full": Size(100, 50, 100, 1_000, 10, 50, 100, 20, 50, 30, 20, 10_000, 5, 50_000, 10, 100_000, 5_000, 10, 20_000),
}


def _failed_variant(name: str, exc: BaseException) -> dict[str, Variant]:
    message = f"{type(exc).__name__}: {exc}"

    async def broken() -> None:
        raise RuntimeError(f"could not build {name}: {message}")

    return {k: Variant(name, broken) for k in ("complete", "fallback", "stream")}


def _missing_group(name: str, why: str) -> dict[str, Variant]:
    async def never() -> None:
        raise RuntimeError(f"{name}: {why}")

    return {k: Variant(name, never, skipped=why) for k in ("complete", "fallback", "stream")}


async def _httpx_reference(ep: Endpoints, stack: AsyncExitStack) -> dict[str, Variant]:
    """Bare httpx 0.28, the client taskmodels ran on before httpx2: a reference row, never the floor."""
    label = "bare httpx 0.28"
    try:
        import httpx
    except ImportError:
        return _missing_group(label, "httpx not installed")
    client = httpx.AsyncClient()
    stack.push_async_callback(client.aclose)
    return bare_httpx_variants(ep, client, label=label, status_error=httpx.HTTPStatusError)


async def _aiohttp_variants(ep: Endpoints, stack: AsyncExitStack) -> list[dict[str, Variant]]:
    """The same calls over taskmodels' aiohttp transport and, for comparison, httpx-aiohttp's."""
    try:
        from taskmodels.aiohttp_transport import AiohttpTransport
        from taskmodels.http_client import build_ssl_context
        from taskmodels.sections import HttpSettings
    except ImportError:
        return [_missing_group(f"{BASE}+aiohttp", "aiohttp not installed")]
    client = httpx2.AsyncClient(transport=AiohttpTransport(ssl_context=build_ssl_context(HttpSettings())))
    stack.push_async_callback(client.aclose)
    out = [bare_httpx_variants(ep, client, label=f"{BASE}+aiohttp")]
    label = "taskmodels (aiohttp transport)"
    try:
        service = await build_service(ep, stack, transport="aiohttp")
        out.append(taskmodels_variants(service, ep, label=label))
    except Exception as exc:
        out.append(_failed_variant(label, exc))
    try:
        from httpx_aiohttp.httpx2 import AiohttpTransport as TheirTransport
    except ImportError:
        out.append(_missing_group(f"{BASE}+httpx-aiohttp", "httpx-aiohttp not installed"))
    else:
        theirs = httpx2.AsyncClient(transport=TheirTransport())
        stack.push_async_callback(theirs.aclose)
        out.append(bare_httpx_variants(ep, theirs, label=f"{BASE}+httpx-aiohttp"))
    return out


async def _telemetry_variants(ep: Endpoints, stack: AsyncExitStack, *, plain_openai: bool) -> list[dict[str, Variant]]:
    """Taskmodels with telemetry switched off; with the OpenTelemetry SDK and a dropping exporter, in each of its
    traces (a call span per call, and ``fold_single_attempt``); the floor tracer making the same spans, records and
    attributes by hand on that SDK (``benchmarks.otel_floor.FloorTracer``), in each trace too; and the peer: the
    openai SDK through its official instrumentation on the same SDK, whose off is the plain openai SDK row
    (``plain_openai``: added here, when the SDK comparisons do not add it). All in one run, interleaved: paired."""
    out = []
    modes: tuple[Telemetry, ...] = ("off", "sdk", "folded", "floor", "floor_folded")
    for mode in modes:
        label = TELEMETRY_LABELS[mode]
        why = sdk_missing() if mode != "off" else None
        if why is not None:
            out.append(_missing_group(label, why))
            continue
        try:
            out.append(taskmodels_variants(await build_service(ep, stack, telemetry=mode), ep, label=label))
        except Exception as exc:
            out.append(_failed_variant(label, exc))
    builds = (openai_variants, instrumented_openai_variants) if plain_openai else (instrumented_openai_variants,)
    for build in builds:
        try:
            out.append(await build(ep, stack))
        except Exception as exc:
            out.append(_failed_variant(build.__name__.removesuffix("_variants"), exc))
    return out


# The service layer adds the floor with the conventions' attributes only: what taskmodels' own attributes cost.
_LAYER_MODES: tuple[Telemetry, ...] = (
    "default",
    "off",
    "sdk",
    "folded",
    "floor",
    "floor_folded",
    "conventions_floor",
    "conventions_floor_folded",
)


async def _layers(calls: int) -> dict[str, Any]:
    """The service layer over an instant provider: as an application gets it, telemetry off, each SDK mode of
    ``_telemetry_variants`` (taskmodels' tracer and the floor tracer, in both traces) and the floor tracer with the
    conventions' attributes only, in alternating blocks."""
    why = sdk_missing()
    modes = _LAYER_MODES[:2] if why is not None else _LAYER_MODES
    try:
        # Ten short blocks per mode rather than five long ones: the best block is the figure, and on a shared
        # machine more chances to run undisturbed steady it (two runs' floors were 110 and 117 µs with five).
        measured = await measure_service_layers(max(calls // 2, 1), modes, repeats=10)
        out: dict[str, Any] = {str(mode): entry for mode, entry in measured.items()}
    except Exception as exc:
        return {mode: {"error": f"{type(exc).__name__}: {exc}"} for mode in _LAYER_MODES}
    if why is not None:
        out.update({mode: {"skipped": why} for mode in _LAYER_MODES[2:]})
    return out


async def _other_clients(
    ep: Endpoints, stack: AsyncExitStack, *, sdks: bool, aiohttp: bool
) -> list[dict[str, Variant]]:
    """The other clients compared: bare httpx 0.28, the aiohttp transports, the openai SDK, pydantic-ai, LiteLLM."""
    groups = [await _httpx_reference(ep, stack)]
    if aiohttp:
        groups += await _aiohttp_variants(ep, stack)
    if sdks:
        for build in SDK_BUILDERS:
            try:
                groups.append(await build(ep, stack))
            except Exception as exc:
                groups.append(_failed_variant(build.__name__.removesuffix("_variants"), exc))
    return groups


async def _overhead(
    ep: Endpoints, size: Size, *, sdks: bool, aiohttp: bool, telemetry_only: bool, log: Any
) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        client = httpx2.AsyncClient()
        stack.push_async_callback(client.aclose)
        bare = bare_httpx_variants(ep, client)
        groups = [bare]
        extra_sequential: list[Variant] = []
        try:
            service = await build_service(ep, stack, transport="httpx2")
            subject = taskmodels_variants(service, ep)
            if not telemetry_only:
                extra_sequential.append(provider_only_variant(service))
        except Exception as exc:
            traceback.print_exc()
            subject = _failed_variant("taskmodels", exc)
        groups.append(subject)
        # The peer's instrumented openai row pairs with the plain openai SDK row (on - off), which the SDK
        # comparisons bring when they run.
        groups += await _telemetry_variants(ep, stack, plain_openai=telemetry_only or not sdks)
        if not telemetry_only:
            groups += await _other_clients(ep, stack, sdks=sdks, aiohttp=aiohttp)

        def pick(kind: str) -> list[Variant]:
            return [g[kind] for g in groups]

        # Every sequential phase before the first concurrent burst: after a burst an httpx pool keeps
        # its extra idle connections and polls each of them on every later request, which would
        # inflate every httpx-based row of a later sequential phase by a timing-dependent amount.
        out: dict[str, Any] = {}
        log("sequential calls")
        seq = await run_sequential(
            [*pick("complete"), *extra_sequential],
            calls_per_round=size.seq_calls,
            rounds=size.seq_rounds,
            warmup=size.warmup,
        )
        out["sequential"] = {k: v.as_dict() for k, v in seq.items()}
        by_round = {"sequential": _round_medians(seq, size.seq_calls)}
        log("fallback path")
        fb = await run_sequential(
            pick("fallback"), calls_per_round=size.fb_calls, rounds=size.fb_rounds, warmup=size.warmup
        )
        out["fallback"] = {k: v.as_dict() for k, v in fb.items()}
        by_round["fallback"] = _round_medians(fb, size.fb_calls)
        log("streaming")
        st = await run_sequential(
            pick("stream"), calls_per_round=size.stream_calls, rounds=size.stream_rounds, warmup=size.warmup
        )
        out["stream"] = {k: v.as_dict() for k, v in st.items()}
        by_round["stream"] = _round_medians(st, size.stream_calls)
        telemetry = {"round_medians": by_round, **await _telemetry_costs(size, log)}
        if telemetry_only:
            return {"overhead": out, **telemetry}
        log(f"concurrency {size.concurrency}")
        conc = await run_concurrent(
            pick("complete"),
            concurrency=size.concurrency,
            calls_per_round=size.conc_calls,
            rounds=size.conc_rounds,
            warmup=size.warmup,
        )
        out["concurrent"] = {k: v.as_dict() for k, v in conc.items()}
        log(f"memory over {size.memory_calls:,} calls")
        memory: dict[str, Any] = {}
        for variant in (bare["complete"], subject["complete"]):
            try:
                memory[variant.name] = await measure_rss_growth(
                    variant, calls=size.memory_calls, warmup=size.memory_warmup, concurrency=size.memory_concurrency
                )
            except Exception as exc:
                memory[variant.name] = {"error": f"{type(exc).__name__}: {exc}"}
        return {"overhead": out, "memory": memory, **telemetry}


def _round_medians(results: dict[str, SequentialResult], calls_per_round: int) -> dict[str, list[float]]:
    """Each variant's median wall time in each round (its calls are kept in the order they ran, a block of
    ``calls_per_round`` per round): the blocks of one round ran within a second or so of each other, so the
    difference of two variants' medians round by round is paired against the machine's drift, which a difference
    of the whole run's medians is not (``benchmarks.report``'s telemetry rows use it)."""
    out: dict[str, list[float]] = {}
    for name, result in results.items():
        walls = result.walls
        if result.error is None and walls and len(walls) % calls_per_round == 0:
            blocks = range(0, len(walls), calls_per_round)
            out[name] = [statistics.median(walls[i : i + calls_per_round]) for i in blocks]
    return out


async def _telemetry_costs(size: Size, log: Any) -> dict[str, Any]:
    """The service layer over an instant provider in every telemetry mode, and the SDK's costs in a tight loop."""
    log("service layer over an instant provider (telemetry as default, off, and each SDK mode)")
    layers = await _layers(size.layer_calls)
    log("the OpenTelemetry SDK's own floor for one GenAI call")
    try:
        floor = await measure_otel_floor(size.layer_calls)
    except Exception as exc:
        traceback.print_exc()
        floor = {"error": f"{type(exc).__name__}: {exc}"}
    return {"service_layer": layers["default"], "service_layer_telemetry": layers, "otel_floor": floor}


def _errors(run: dict[str, Any]) -> list[str]:
    found = []
    for group, entries in run.get("overhead", {}).items():
        for name, entry in entries.items():
            if entry.get("error"):
                found.append(f"{group} / {name}: {entry['error']}")
    for mode, entry in run.get("service_layer_telemetry", {}).items():
        if entry.get("error"):
            found.append(f"service layer ({mode}): {entry['error']}")
    if run.get("otel_floor", {}).get("error"):
        found.append(f"OpenTelemetry SDK floor: {run['otel_floor']['error']}")
    for name, entry in run.get("memory", {}).items():
        if entry.get("error"):
            found.append(f"memory / {name}: {entry['error']}")
    if run.get("scale_error"):
        found.append(f"scale: {run['scale_error']}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_const", dest="size", const="smoke", help="CI size, no timing asserted")
    mode.add_argument("--quick", action="store_const", dest="size", const="quick", help="the default size")
    mode.add_argument("--full", action="store_const", dest="size", const="full", help="the published size")
    parser.add_argument(
        "--no-sdks",
        action="store_true",
        help="skip the openai / pydantic-ai / LiteLLM comparisons and the instrumented openai peer",
    )
    parser.add_argument("--no-aiohttp", action="store_true", help="skip the aiohttp transport variants")
    parser.add_argument(
        "--telemetry-only",
        action="store_true",
        help="only the telemetry target: bare httpx2, taskmodels in each telemetry mode, the floor tracer and the "
        "instrumented openai SDK, sequential, fallback and streaming; the service layer; the SDK's tight loop",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="taskmodels' log level during the run (WARNING: the per-call events are off, as in production)",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON file (default benchmarks/results/<time>.json)")
    args = parser.parse_args(argv)
    size_name = args.size or "quick"
    # Unconfigured structlog prints every event at every level: an application sets a level, so do we.
    from taskmodels.log import configure_logging

    # Rendered to /dev/null: the formatting work counts, a terminal's speed does not.
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  (lives as long as the run)
    configure_logging(level=args.log_level, fmt="json", stream=devnull)
    size = SIZES[size_name]
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    run: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": size_name,
        "log_level": args.log_level,
        "config": vars_of(size),
        "machine": machine_info(),
    }
    with BenchServer(chunks=size.chunks, lifetime=3600.0) as server:
        log(f"server at {server.url} (pid {server.pid})")
        ep = Endpoints(server.url, size.chunks)
        measured = _overhead(
            ep, size, sdks=not args.no_sdks, aiohttp=not args.no_aiohttp, telemetry_only=args.telemetry_only, log=log
        )
        run.update(asyncio.run(measured))
    if args.telemetry_only:
        return _finish(run, args, size_name, started, telemetry_rows(run))
    log(f"registry scale at {size.scale_models:,} models and tasks")
    try:
        run["scale"] = measure_scale(
            models=size.scale_models,
            tasks=size.scale_models,
            load_repeats=size.scale_repeats,
            selections=size.selections,
        )
    except Exception as exc:
        traceback.print_exc()
        run["scale_error"] = f"{type(exc).__name__}: {exc}"
    log("cold imports")
    labels = ["import taskmodels", "import httpx2", "import httpx", "taskmodels ready to call"]
    if not args.no_sdks and size_name != "smoke":
        labels += ["import openai", "import pydantic_ai", "import litellm"]
    run["imports"] = measure_imports(size.import_repeats, labels=labels)
    return _finish(run, args, size_name, started, target_rows(run))


def _finish(run: dict[str, Any], args: Any, size_name: str, started: float, targets: list[Any]) -> int:
    """The tables printed, the run written to its JSON file; non-zero when a call failed."""
    run["elapsed_s"] = time.perf_counter() - started
    run["targets"] = [r.as_dict() for r in targets]
    print()
    print(f"taskmodels benchmarks ({size_name}) on {run['machine']['cpu_model']}, {run['machine']['cpu_cores']} cores")
    print()
    print(
        format_table(
            ["metric", "baseline", "taskmodels", "ratio", "target", "met?"],
            [[r.metric, r.baseline, r.candidate, r.ratio, r.target, r.met] for r in targets],
        )
    )
    print()
    headers = ["client", "median", "p99", "CPU/call", "req/s @50", "fallback", "stream/chunk"]
    print(f"every client against {BASE}, the floor (ratios; lower is better except req/s):")
    print()
    comparison = comparison_rows(run)
    run["comparison"] = comparison
    print(format_table(headers, comparison))
    reference = "bare httpx 0.28"
    if (run["overhead"]["sequential"].get(reference) or {"skipped": "not run"}).get("skipped") is None:
        print()
        print(f"the same against {reference}, the client taskmodels ran on before httpx2:")
        print()
        run["comparison_httpx"] = comparison_rows(run, base=reference)
        print(format_table(headers, run["comparison_httpx"]))
    imports = run.get("imports")
    if imports:
        print()
        print(
            "cold imports (median of fresh interpreters): "
            + ", ".join(
                f"{k}: {v['median_s'] * 1e3:.0f} ms" if v["median_s"] is not None else f"{k}: {v['error']}"
                for k, v in imports.items()
            )
        )
    suffix = "-telemetry" if args.telemetry_only else ""
    out = args.output or RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{size_name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=2, default=str), encoding="utf-8")
    print(f"\nwrote {out} in {run['elapsed_s']:.0f} s")
    errors = _errors(run)
    if errors:
        print("\nFAILED calls:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


def vars_of(size: Size) -> dict[str, Any]:
    return {name: getattr(size, name) for name in Size.__dataclass_fields__}
