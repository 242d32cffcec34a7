"""The gateway's cost: ``taskmodels serve`` beside a direct call to the same stub upstream, and beside LiteLLM's proxy.

    python -m benchmarks.gateway                         # both transports, LiteLLM when TASKMODELS_BENCH_LITELLM is set
    python -m benchmarks.gateway --litellm .venv-litellm/bin/litellm
    python -m benchmarks.gateway --smoke                 # CI: seconds per row, no LiteLLM, no timing asserted

Every server runs in its own process with one worker: the stub upstream (``benchmarks/server.py``, zero delay),
the gateway (``taskmodels serve``, uvicorn with uvloop and httptools), LiteLLM's proxy (from its own venv, its
executable given by ``--litellm`` or ``TASKMODELS_BENCH_LITELLM``; its rows say why when it is absent). The
load generator is ``wrk`` (a Lua script posts the body) in its own process for latency and throughput, and an
aiohttp client in this process for streams. Rows:

- added latency at concurrency 1: the gateway's p50 and p99 minus the direct call's (wrk's percentiles, µs);
- requests per second at concurrency 64, per worker;
- a stream's time to first chunk and gap between chunks, added to the direct stream's;
- concurrent streams held at once, each checked whole and in order (the stub numbers its pieces);
- RSS growth of the gateway process over 100,000 requests, after a warm-up;
- the same gateway behind Starlette's router (a Mount) against the bare one: what the framework would cost;
- governance: the gateway with a keys file whose key has a budget and an rpm limit (never reached) beside the same
  gateway without keys, on the memory store and on a real ``redis-server`` this run starts: what keys and per-key
  limits add, apart from what Redis adds.

    python -m benchmarks.gateway --governance-only       # just those rows
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.server import BenchServer

__all__ = ["bare_app", "main", "starlette_app"]

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
STREAM_PIECES = 20
KEY = "sk-bench-" + "0123456789abcdef" * 3  # LiteLLM's proxy refuses to start without a master key; ours checks none


@dataclass(frozen=True, slots=True)
class Size:
    seconds: float  # per wrk run
    streams: int  # concurrent streams held at once
    stream_calls: int  # sequential streams for time to first chunk
    memory_calls: int
    memory_warmup: int


SIZES = {
    "smoke": Size(seconds=1.0, streams=32, stream_calls=20, memory_calls=2_000, memory_warmup=500),
    "default": Size(seconds=10.0, streams=512, stream_calls=300, memory_calls=100_000, memory_warmup=10_000),
}


def bare_app() -> Any:
    """The gateway as ``taskmodels serve`` builds it (for uvicorn's ``--factory``)."""
    from taskmodels.gateway.server import worker_app

    return worker_app()


def starlette_app() -> Any:
    """The same gateway reached through Starlette's router: what routing by a framework would add."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/", app=bare_app())])


# --- processes ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            try:
                if client.get(url).status_code < 500:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)  # poll interval, bounded by the deadline
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@contextmanager
def _process(args: list[str], ready_url: str, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(ready_url, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _registry(upstream: str, folder: Path) -> Path:
    path = folder / "modelRegistry.json"
    model = {
        "id": "bench",
        "provider": "openai-compatible",
        "modelName": "bench",
        "maxTokens": 16,
        "temperature": 0.0,
        "contextWindow": 8192,
        "costPer1kTokens": 0.001,
        "baseUrl": f"{upstream}/v1",
    }
    seq = {**model, "id": "seq", "modelName": "seq"}
    tasks = [{"taskName": "bench", "primaryModelId": "bench"}, {"taskName": "seq", "primaryModelId": "seq"}]
    path.write_text(json.dumps({"models": [model, seq], "taskMappings": tasks, "defaultModelId": "bench"}))
    return path


def _gateway_env(registry: Path, transport: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        "TASKMODELS_REGISTRY_PATH": str(registry),
        "TASKMODELS_HTTP__TRANSPORT": transport,
        "TASKMODELS_HTTP__MAX_KEEPALIVE_CONNECTIONS": "100",
        "TASKMODELS_RESILIENCE__MAX_ATTEMPTS_PER_MODEL": "1",
        "TASKMODELS_RESILIENCE__DEADLINE": "120",
        "TASKMODELS_RESILIENCE__ATTEMPT_TIMEOUT": "60",
        "TASKMODELS_RESILIENCE__FIRST_TOKEN_TIMEOUT": "60",
        "TASKMODELS_GATEWAY__MAX_STREAMS": "4096",
        "TASKMODELS_TELEMETRY__ENABLED": "false",
        **(extra or {}),
    }


@contextmanager
def gateway(
    registry: Path,
    transport: str,
    folder: Path,
    *,
    app: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, int]]:
    """``taskmodels serve`` (or uvicorn on ``app``, a factory of this module) on a free port: its URL and pid;
    ``env``: more settings (a keys file, the Redis store)."""
    port = _free_port()
    if app is None:
        args = [sys.executable, "-m", "taskmodels.cli", "serve", "--port", str(port)]
    else:
        args = [sys.executable, "-m", "uvicorn", app, "--factory", "--port", str(port), "--no-access-log"]
        args += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    log = folder / f"gateway-{transport}-{port}.log"
    with _process(args, f"{url}/healthz", _gateway_env(registry, transport, env), log) as process:
        yield url, process.pid


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A ``redis-server`` on a free port, no persistence: its URL."""
    port = _free_port()
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    args += ["--dir", str(folder)]
    with (folder / "redis.log").open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)  # poll interval, bounded by the deadline
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(5)


def _keys_file(folder: Path) -> Path:
    """The key wrk sends, with a budget and an rpm limit that the run never reaches: every request is governed,
    none refused."""
    from taskmodels.gateway.keys import key_digest

    path = folder / "gatewayKeys.json"
    limits = {"rpm": 1_000_000_000, "budget": {"limit": 1_000_000_000.0, "windowSeconds": 86400}}
    path.write_text(json.dumps({"keys": [{"name": "bench", "sha256": key_digest(KEY), **limits}]}))
    return path


def governance(size: Size, registry: Path, transport: str, folder: Path) -> dict[str, tuple[Load, Load]]:
    """The gateway without keys and with them, on the memory store and on Redis: c1 and c64 each."""
    rows: dict[str, tuple[Load, Load]] = {}
    with redis_server(folder) as url:
        redis = {"TASKMODELS_STATE__BACKEND": "redis", "TASKMODELS_STATE__URL": url}
        keys = {"TASKMODELS_GATEWAY__KEYS_FILE": str(_keys_file(folder))}
        for name, env in (
            ("governance off, memory store", {}),
            ("governance on: key, budget, rpm; memory store", keys),
            ("governance off, Redis", redis),
            ("governance on: key, budget, rpm; Redis", {**redis, **keys}),
        ):
            with gateway(registry, transport, folder, env=env) as (base, _):
                endpoint = f"{base}/v1/chat/completions"
                wrk(endpoint, connections=8, seconds=min(size.seconds, 2.0), folder=folder)  # warm-up
                rows[name] = (
                    wrk(endpoint, connections=1, seconds=size.seconds, folder=folder),
                    wrk(endpoint, connections=64, seconds=size.seconds, folder=folder),
                )
    return rows


@contextmanager
def litellm_proxy(executable: str, upstream: str, folder: Path) -> Iterator[str]:
    port = _free_port()
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  turn_off_message_logging: true\n"
    )
    args = [executable, "--config", str(config), "--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_LOG": "ERROR", "NO_PROXY": "127.0.0.1,localhost", "LITELLM_TELEMETRY": "False"}
    with _process(args, f"http://127.0.0.1:{port}/health/liveliness", env, folder / "litellm.log"):
        yield f"http://127.0.0.1:{port}"


# --- load ------------------------------------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = [[%s]]
function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\\n")
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%.1f %%.1f %%.1f\\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass(slots=True)
class Load:
    requests: int
    errors: int
    seconds: float
    p50_us: float
    p99_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(url: str, *, connections: int, seconds: float, folder: Path, body: Mapping[str, Any] = BODY) -> Load:
    """``wrk`` against ``url`` for ``seconds``, posting ``body``."""
    script = folder / f"wrk-{connections}.lua"
    script.write_text(_WRK_SCRIPT % (KEY, json.dumps(body)))
    threads = 1 if connections == 1 else 2
    duration = f"{max(1, round(seconds))}s"
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", duration, "-s", str(script), url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", done.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout}\n{done.stderr}")
    requests, errors, micros, p50, p99 = match.groups()
    bad = done.stderr.count("status ")
    return Load(int(requests), int(errors) + bad, int(micros) / 1e6, float(p50), float(p99))


def _requests(url: str, total: int, folder: Path) -> Load:
    """At least ``total`` requests at concurrency 16, in runs of a few seconds."""
    done = Load(0, 0, 0.0, 0.0, 0.0)
    while done.requests < total:
        run = wrk(url, connections=16, seconds=5.0 if total > 10_000 else 1.0, folder=folder)
        done = Load(done.requests + run.requests, done.errors + run.errors, done.seconds + run.seconds, 0.0, 0.0)
    return done


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass(slots=True)
class Streams:
    first_chunk_ms: float  # median time to the first content chunk
    gap_ms: float  # median gap between content chunks
    held: int = 0  # concurrent streams that all arrived whole and in order
    broken: int = 0
    failures: list[str] = field(default_factory=list)


async def _one_stream(session: Any, url: str, body: Mapping[str, Any]) -> tuple[float, list[float], list[str]]:
    started = time.perf_counter()
    stamps: list[float] = []
    pieces: list[str] = []
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {await response.text()}")
        buffer = b""
        async for data in response.content.iter_any():
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                chunk = json.loads(event[6:])
                if "error" in chunk:
                    raise RuntimeError(f"error event: {chunk}")
                for choice in chunk.get("choices", ()):
                    text = choice["delta"].get("content")
                    if text:
                        stamps.append(time.perf_counter() - started)
                        pieces.append(text)
    return started, stamps, pieces


async def measure_streams(url: str, *, calls: int, concurrent: int) -> Streams:
    import aiohttp

    endpoint = f"{url}/v1/chat/completions"
    body = {**BODY, "model": "seq", "stream": True}
    expected = [f"{i} " for i in range(STREAM_PIECES)]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {KEY}"}) as session:
        firsts: list[float] = []
        gaps: list[float] = []
        for _ in range(calls):
            _, stamps, pieces = await _one_stream(session, endpoint, body)
            if pieces != expected:
                raise RuntimeError(f"a stream arrived broken: {pieces}")
            firsts.append(stamps[0])
            gaps.extend(b - a for a, b in itertools.pairwise(stamps))
        result = Streams(statistics.median(firsts) * 1000, statistics.median(gaps) * 1000)
        outcomes = await asyncio.gather(
            *(_one_stream(session, endpoint, body) for _ in range(concurrent)), return_exceptions=True
        )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            result.broken += 1
            result.failures.append(f"{type(outcome).__name__}: {outcome}")
        elif outcome[2] != expected:
            result.broken += 1
            result.failures.append(f"dropped or reordered: {outcome[2][:5]}...")
        else:
            result.held += 1
    return result


# --- the run ----------------------------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def run(
    size: Size, *, litellm: str | None, transports: list[str], folder: Path, governance_only: bool = False
) -> dict[str, Any]:
    report: dict[str, Any] = {"rows": [], "routing": {}}
    with BenchServer(chunks=STREAM_PIECES) as upstream:
        registry = _registry(upstream.url, folder)
        direct_url = f"{upstream.url}/v1/chat/completions"
        direct_body = {**BODY}
        direct1 = wrk(direct_url, connections=1, seconds=size.seconds, folder=folder, body=direct_body)
        direct64 = wrk(direct_url, connections=64, seconds=size.seconds, folder=folder, body=direct_body)
        direct_streams = asyncio.run(measure_streams(upstream.url, calls=size.stream_calls, concurrent=0))
        report["direct"] = {"c1": direct1, "c64": direct64, "streams": direct_streams}
        if shutil.which("redis-server") is not None:
            report["governance"] = governance(size, registry, transports[-1], folder)
        else:
            report["governance_skipped"] = "redis-server is not installed"
        if governance_only:
            return report
        for transport in transports:
            with gateway(registry, transport, folder) as (url, pid):
                endpoint = f"{url}/v1/chat/completions"
                wrk(endpoint, connections=8, seconds=min(size.seconds, 2.0), folder=folder)  # warm-up
                c1 = wrk(endpoint, connections=1, seconds=size.seconds, folder=folder)
                c64 = wrk(endpoint, connections=64, seconds=size.seconds, folder=folder)
                streams = asyncio.run(measure_streams(url, calls=size.stream_calls, concurrent=size.streams))
                _requests(endpoint, size.memory_warmup, folder)
                before = _rss_kib(pid)
                memory = _requests(endpoint, size.memory_calls, folder)
                growth = (_rss_kib(pid) - before) / 1024
            report["rows"].append(
                {
                    "name": f"taskmodels serve ({transport})",
                    "c1": c1,
                    "c64": c64,
                    "streams": streams,
                    "memory": memory,
                    "rss_growth_mib": growth,
                }
            )
        if litellm:
            try:
                with litellm_proxy(litellm, upstream.url, folder) as url:
                    endpoint = f"{url}/v1/chat/completions"
                    wrk(endpoint, connections=8, seconds=min(size.seconds, 2.0), folder=folder)
                    c1 = wrk(endpoint, connections=1, seconds=size.seconds, folder=folder)
                    c64 = wrk(endpoint, connections=64, seconds=size.seconds, folder=folder)
            except RuntimeError as exc:  # its rows say why; the rest of the run stands
                log = (folder / "litellm.log").read_text(errors="replace")[-600:]
                report["litellm_skipped"] = f"LiteLLM's proxy failed: {exc}: {log}".replace("\n", " ")
            else:
                report["rows"].append({"name": "LiteLLM proxy", "c1": c1, "c64": c64})
        else:
            report["litellm_skipped"] = "no LiteLLM proxy: give --litellm PATH or TASKMODELS_BENCH_LITELLM"
        # The framework question, asked once: the same app behind Starlette's router, on the same uvicorn.
        transport = transports[0]
        routing = {}
        for name, factory in (
            ("bare ASGI router", "benchmarks.gateway:bare_app"),
            ("Starlette Mount", "benchmarks.gateway:starlette_app"),
        ):
            with gateway(registry, transport, folder, app=factory) as (url, _):
                endpoint = f"{url}/v1/chat/completions"
                wrk(endpoint, connections=8, seconds=min(size.seconds, 2.0), folder=folder)
                routing[name] = (
                    wrk(endpoint, connections=1, seconds=size.seconds, folder=folder),
                    wrk(endpoint, connections=64, seconds=size.seconds, folder=folder),
                )
        report["routing"] = routing
    return report


def print_report(report: dict[str, Any], size_name: str) -> None:
    direct1: Load = report["direct"]["c1"]
    direct64: Load = report["direct"]["c64"]
    direct_streams: Streams = report["direct"]["streams"]
    print(f"\n## Gateway benchmark ({size_name}; {os.cpu_count()} cores; wrk for load, aiohttp for streams)\n")
    print("| server | p50 c1 (µs) | added p50 | p99 c1 (µs) | added p99 | req/s c64 | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    errors = direct1.errors + direct64.errors
    p50, p99, rps = direct1.p50_us, direct1.p99_us, direct64.rps
    print(f"| direct to the stub | {p50:,.0f} | - | {p99:,.0f} | - | {rps:,.0f} | {errors} |")
    litellm_rps = next((r["c64"].rps for r in report["rows"] if r["name"] == "LiteLLM proxy"), None)
    for row in report["rows"]:
        c1: Load = row["c1"]
        c64: Load = row["c64"]
        print(
            f"| {row['name']} | {c1.p50_us:,.0f} | {c1.p50_us - direct1.p50_us:+,.0f} | {c1.p99_us:,.0f} | "
            f"{c1.p99_us - direct1.p99_us:+,.0f} | {c64.rps:,.0f} | {c1.errors + c64.errors} |"
        )
    if "litellm_skipped" in report:
        print(f"| LiteLLM proxy | skipped: {report['litellm_skipped']} | | | | | |")
    print(
        "\n| server | first chunk (ms) | added | chunk gap (ms) | added | streams held at once | broken "
        "| RSS growth (MiB) / requests | × LiteLLM req/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    first, gap = direct_streams.first_chunk_ms, direct_streams.gap_ms
    print(f"| direct to the stub | {first:.3f} | - | {gap:.4f} | - | - | - | - | - |")
    for row in report["rows"]:
        streams: Streams | None = row.get("streams")
        if streams is None:
            continue
        ratio = f"{row['c64'].rps / litellm_rps:.1f}×" if litellm_rps else "-"
        memory: Load = row["memory"]
        print(
            f"| {row['name']} | {streams.first_chunk_ms:.3f} | {streams.first_chunk_ms - first:+.3f} | "
            f"{streams.gap_ms:.4f} | {streams.gap_ms - gap:+.4f} | {streams.held} | {streams.broken} | "
            f"{row['rss_growth_mib']:+.1f} / {memory.requests:,} | {ratio} |"
        )
        for failure in streams.failures[:3]:
            print(f"  broken stream: {failure}")
    if report["routing"]:
        print("\n| routing (same gateway, same uvicorn) | p50 c1 (µs) | p99 c1 (µs) | req/s c64 |")
        print("|---|---:|---:|---:|")
        for name, (c1, c64) in report["routing"].items():
            print(f"| {name} | {c1.p50_us:,.0f} | {c1.p99_us:,.0f} | {c64.rps:,.0f} |")
    _print_governance(report, direct1)


def _print_governance(report: dict[str, Any], direct1: Load) -> None:
    if "governance" not in report:
        print(f"\ngovernance rows skipped: {report.get('governance_skipped')}")
        return
    print("\n| governance (same gateway, same uvicorn) | p50 c1 (µs) | added p50 | p99 c1 (µs) | req/s c64 | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (c1, c64) in report["governance"].items():
        print(
            f"| {name} | {c1.p50_us:,.0f} | {c1.p50_us - direct1.p50_us:+,.0f} | {c1.p99_us:,.0f} | "
            f"{c64.rps:,.0f} | {c1.errors + c64.errors} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="seconds per row, no LiteLLM (CI)")
    parser.add_argument("--litellm", default=os.environ.get("TASKMODELS_BENCH_LITELLM"), help="LiteLLM's executable")
    parser.add_argument("--transport", choices=["httpx2", "aiohttp"], action="append", help="default: both")
    parser.add_argument("--governance-only", action="store_true", help="only the governance rows (and the direct)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.gateway: skipped: wrk is not installed (apt-get install wrk)")
        return 0
    size_name = "smoke" if args.smoke else "default"
    transports = args.transport or (["httpx2"] if args.smoke else ["httpx2", "aiohttp"])
    litellm = None if args.smoke else args.litellm
    with tempfile.TemporaryDirectory(prefix="taskmodels-gateway-bench-") as tmp:
        report = run(
            SIZES[size_name],
            litellm=litellm,
            transports=transports,
            folder=Path(tmp),
            governance_only=args.governance_only,
        )
    print_report(report, size_name)
    failed = sum(r["c1"].errors + r["c64"].errors for r in report["rows"]) + sum(
        r["streams"].broken for r in report["rows"] if "streams" in r
    )
    failed += sum(c1.errors + c64.errors for c1, c64 in report.get("governance", {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
