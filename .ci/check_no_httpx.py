"""CI: taskmodels runs on httpx2 alone.

The old ``httpx`` package must be absent unless something installed here asks for it (the test
extra may, for the legacy-client tests); whether or not it is there, calls through the real
container on both transports must not import it.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack

from benchmarks.clients import Endpoints
from benchmarks.server import BenchServer
from benchmarks.subject import TASK, TASK_STREAM, build_service

CHUNKS = 3


async def calls(ep: Endpoints) -> None:
    for transport in ("httpx2", "aiohttp"):
        async with AsyncExitStack() as stack:
            service = await build_service(ep, stack, transport=transport)
            result = await service.complete_with_task_model(TASK, prompt="hi")
            events = [e async for e in service.stream_with_task_model(TASK_STREAM, prompt="hi")]
            assert result.text, transport
            assert sum(e.type == "text" for e in events) == CHUNKS, transport
            print(f"{transport}: one call and one stream answered")


def why_httpx_is_installed() -> str | None:
    """``None`` when httpx is absent; else who requires it, or ``""`` when nothing does."""
    import tomllib
    from importlib import metadata
    from pathlib import Path

    from packaging.requirements import Requirement

    try:
        metadata.version("httpx")
    except metadata.PackageNotFoundError:
        return None
    wanted_by = []
    # The project's own dependency groups (the legacy-client tests) are not in any installed metadata.
    groups = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["dependency-groups"]
    for name, items in groups.items():
        if any(isinstance(i, str) and Requirement(i).name == "httpx" for i in items):
            wanted_by.append(f"the {name!r} dependency group")
    for dist in metadata.distributions():
        for line in dist.requires or []:
            req = Requirement(line)
            extras = ("fast",) if dist.metadata["Name"] == "taskmodels" else ("",)
            if req.name == "httpx" and any(req.marker is None or req.marker.evaluate({"extra": e}) for e in extras):
                wanted_by.append(dist.metadata["Name"])
    return ", ".join(sorted(set(wanted_by)))


def main() -> int:
    why = why_httpx_is_installed()
    if why == "":
        print("FAILED: httpx is installed and nothing here requires it", file=sys.stderr)
        return 1
    print("httpx is not installed" if why is None else f"httpx is installed, required by {why}")
    with BenchServer(chunks=CHUNKS, lifetime=120.0) as server:
        asyncio.run(calls(Endpoints(server.url, CHUNKS)))
    if "httpx" in sys.modules:
        print("FAILED: taskmodels imported the old httpx package", file=sys.stderr)
        return 1
    print("httpx was not imported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
