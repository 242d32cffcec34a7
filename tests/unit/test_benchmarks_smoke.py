"""The benchmark machinery works: server answers, variants check answers, failures are reported.

No timing is asserted here; `python -m benchmarks --smoke` exercises the whole run in CI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack

import httpx2
import pytest

from benchmarks.clients import Endpoints, bare_httpx_variants
from benchmarks.harness import Variant, percentile, run_concurrent, run_sequential
from benchmarks.report import target_rows
from benchmarks.scale import generate_registry, measure_scale
from benchmarks.server import COMPLETION_TEXT, BenchServer
from benchmarks.subject import build_service, taskmodels_variants

CHUNKS = 5


@pytest.fixture(scope="module")
def server() -> Iterator[BenchServer]:
    with BenchServer(chunks=CHUNKS, lifetime=120.0) as srv:
        yield srv


async def test_server_answers_fails_and_streams(server: BenchServer) -> None:
    url = f"{server.url}/v1/chat/completions"
    async with httpx2.AsyncClient() as client:
        ok = await client.post(url, json={"model": "m", "messages": []})
        failed = await client.post(url, json={"model": "fail-503", "messages": []})
        async with client.stream("POST", url, json={"model": "m", "stream": True}) as response:
            lines = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == COMPLETION_TEXT
    assert ok.json()["usage"]["total_tokens"] == 21
    assert failed.status_code == 503
    assert "error" in failed.json()
    assert lines[-1] == "data: [DONE]"
    assert len(lines) == CHUNKS + 4  # role chunk, text chunks, finish chunk, usage chunk, [DONE]


async def test_bare_variants_pass_their_own_checks(server: BenchServer) -> None:
    async with httpx2.AsyncClient() as client:
        variants = bare_httpx_variants(Endpoints(server.url, CHUNKS), client)
        results = [await run_sequential([v], calls_per_round=3, rounds=2, warmup=1) for v in variants.values()]
    assert [(r.calls, r.error) for one in results for r in one.values()] == [(6, None)] * 3


async def test_taskmodels_variants_answer_through_the_container(server: BenchServer) -> None:
    ep = Endpoints(server.url, CHUNKS)
    async with AsyncExitStack() as stack:
        service = await build_service(ep, stack)
        variants = taskmodels_variants(service, ep)
        results = [await run_sequential([v], calls_per_round=2, rounds=1, warmup=1) for v in variants.values()]
    assert [(r.calls, r.error) for one in results for r in one.values()] == [(2, None)] * 3


async def test_a_wrong_answer_is_an_error_not_a_timing() -> None:
    calls = 0

    async def good() -> None:
        await asyncio.sleep(0)

    async def bad() -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise RuntimeError("wrong answer")

    seq = await run_sequential([Variant("good", good), Variant("bad", bad)], calls_per_round=5, rounds=2, warmup=1)
    conc = await run_concurrent([Variant("bad", bad)], concurrency=4, calls_per_round=8, rounds=1, warmup=0)
    assert seq["good"].error is None
    assert seq["good"].calls == 10
    assert seq["bad"].error == "RuntimeError: wrong answer"
    assert conc["bad"].error == "RuntimeError: wrong answer"


async def test_skipped_variant_is_not_run() -> None:
    async def boom() -> None:
        raise AssertionError("must not run")

    results = await run_sequential(
        [Variant("sdk", boom, skipped="sdk not installed")], calls_per_round=2, rounds=1, warmup=1
    )
    assert results["sdk"].skipped == "sdk not installed"
    assert results["sdk"].calls == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_generated_registry_loads_and_selects() -> None:
    data = generate_registry(50, 40)
    out = measure_scale(models=50, tasks=40, load_repeats=1, selections=10)
    assert len(data["models"]) == 50
    assert len(data["taskMappings"]) == 40
    assert out["sample_selection"]["models"] or out["sample_selection"]["skipped"]
    assert out["load_dict_s"] > 0


def test_failed_call_makes_the_target_row_fail() -> None:
    run = {
        "overhead": {
            "sequential": {
                "bare httpx2": {"median_s": 0.001, "p99_s": 0.002, "cpu_per_call_s": 0.001},
                "taskmodels": {"error": "RuntimeError: boom"},
            }
        }
    }
    rows = {r.metric: r for r in target_rows(run)}
    assert rows["sequential median"].met == "NO"
    assert "FAILED" in rows["sequential median"].candidate


def test_markdown_puts_runs_side_by_side() -> None:
    from benchmarks.markdown import render

    def run(ratio: str) -> dict[str, object]:
        target = {"metric": "sequential median", "baseline": "1 µs", "taskmodels": "1 µs", "ratio": ratio}
        return {
            "targets": [{**target, "target": "≤ 1.05×", "met": "yes"}],
            "comparison": [["bare httpx2", "1.000×", "1.000×", "1.000×", "1.000×", "1.000×", "1.000×"]],
            "imports": {"import httpx2": {"median_s": 0.05}},
        }

    text = render([run("1.010×"), run("1.020×")])
    row = next(line for line in text.splitlines() if line.startswith("| sequential median"))
    assert "1.010×" in row
    assert "1.020×" in row
    assert "| import httpx2 | 50 ms | 50 ms |" in text


def test_markdown_renders_telemetry_only_runs_which_have_no_imports() -> None:
    from benchmarks.markdown import render

    target = {"metric": "OTel on - off", "baseline": "+1 µs", "taskmodels": "+1 µs", "ratio": "1.000×"}
    run = {"targets": [{**target, "target": "≤ 1.10× theirs", "met": "yes"}], "comparison": []}
    text = render([run, run])
    assert "| OTel on - off |" in text
    assert "Cold imports" not in text


def test_any_failed_call_is_collected_for_a_non_zero_exit() -> None:
    from benchmarks.run import _errors

    run = {
        "overhead": {
            "sequential": {"bare httpx2": {"error": None}, "openai SDK": {"skipped": "openai not installed"}},
            "stream": {"taskmodels": {"error": "BenchCallError: stream gave 3 text chunks, expected 5"}},
        },
        "memory": {"taskmodels": {"error": "RuntimeError: boom"}},
        "service_layer": {"cpu_per_call_s": 1e-5},
    }
    assert _errors(run) == [
        "stream / taskmodels: BenchCallError: stream gave 3 text chunks, expected 5",
        "memory / taskmodels: RuntimeError: boom",
    ]
    assert _errors({"overhead": {"sequential": {"bare httpx2": {"error": None}}}}) == []
