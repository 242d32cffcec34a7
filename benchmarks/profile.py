"""Profile taskmodels' hot path against the benchmark server with pyinstrument (or cProfile).

    python -m benchmarks.profile complete --calls 5000
    python -m benchmarks.profile fallback --calls 3000 --cprofile
    python -m benchmarks.profile stream --calls 2000

Only the calls are profiled, after a warm-up; the server runs in its own process,
so every sample is client work: taskmodels, httpx and the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.clients import Endpoints, bare_httpx_variants
from benchmarks.server import BenchServer
from benchmarks.subject import build_service, taskmodels_variants

__all__ = ["main"]


async def _profile(ep: Endpoints, kind: str, calls: int, *, use_cprofile: bool, bare: bool) -> str:
    async with AsyncExitStack() as stack:
        if bare:
            import httpx2

            client = httpx2.AsyncClient()
            stack.push_async_callback(client.aclose)
            variant = bare_httpx_variants(ep, client)[kind]
        else:
            service = await build_service(ep, stack)
            variant = taskmodels_variants(service, ep)[kind]
        for _ in range(200):
            await variant.call()
        if use_cprofile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(calls):
                await variant.call()
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("tottime").print_stats(30)
            # Our own functions by internal time: what taskmodels adds on top of httpx.
            stats.sort_stats("tottime").print_stats(r"taskmodels|dependency_injector|structlog|pydantic", 30)
            return out.getvalue()
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        for _ in range(calls):
            await variant.call()
        profiler.stop()
        text: str = profiler.output_text(unicode=True, color=False, show_all=False)
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("complete", "fallback", "stream"))
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--cprofile", action="store_true", help="deterministic cProfile table instead of pyinstrument")
    parser.add_argument("--bare", action="store_true", help="profile the bare httpx call instead, for reference")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    from taskmodels.log import configure_logging

    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115  (lives as long as the run)
    configure_logging(level=args.log_level, fmt="json", stream=devnull)
    with BenchServer(chunks=20, lifetime=900.0) as server:
        ep = Endpoints(server.url, 20)
        report: Any = asyncio.run(_profile(ep, args.kind, args.calls, use_cprofile=args.cprofile, bare=args.bare))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
