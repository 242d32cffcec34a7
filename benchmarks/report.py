"""Turns one run's measurements into the targets table, the comparison table and the JSON record."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Row", "comparison_rows", "format_table", "machine_info", "target_rows", "telemetry_rows"]

_PACKAGES = (
    "taskmodels",
    "httpx2",
    "httpcore2",
    "httpx",
    "httpcore",
    "pydantic",
    "dependency-injector",
    "structlog",
    "openai",
    "pydantic-ai-slim",
    "litellm",
    "httpx-aiohttp",
    "aiohttp",
    "uvloop",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
)


@dataclass(slots=True)
class Row:
    metric: str
    baseline: str
    candidate: str
    ratio: str
    target: str
    met: str

    def as_dict(self) -> dict[str, str]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "taskmodels": self.candidate,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
        }


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)


def _us(seconds: float | None) -> str:
    return f"{seconds * 1e6:,.1f} µs" if _finite(seconds) else "—"  # type: ignore[operator]


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1e3:,.1f} ms" if _finite(seconds) else "—"  # type: ignore[operator]


def _ratio(a: float | None, b: float | None) -> float | None:
    if not (_finite(a) and _finite(b)) or not b:
        return None
    return a / b  # type: ignore[operator]


def _x(r: float | None) -> str:
    return f"{r:.3f}×" if r is not None else "—"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "NO")


def _status(entry: dict[str, Any] | None) -> str | None:
    """Why a variant has no figures: skipped (and why) or failed (and how)."""
    if entry is None:
        return "not run"
    if entry.get("skipped"):
        return f"skipped: {entry['skipped']!s}"
    if entry.get("error"):
        return f"FAILED: {str(entry['error'])[:80]}"
    return None


def target_rows(run: dict[str, Any], *, subject: str = "taskmodels", base: str = "bare httpx2") -> list[Row]:
    """One row per target of the issue, taskmodels against its baseline."""
    rows: list[Row] = []
    ov = run.get("overhead", {})
    seq = ov.get("sequential", {})
    b = seq.get(base)

    def pair_rows(
        metric: str,
        group: dict[str, Any],
        *,
        base_name: str,
        key: str,
        fmt: Any,
        limit: float | None,
        higher_is_better: bool = False,
        per: float = 1.0,
    ) -> None:
        be, se = group.get(base_name), group.get(subject)
        bad = _status(be) or _status(se)
        target = "—" if limit is None else (f"≥ {limit:.2f}×" if higher_is_better else f"≤ {limit:.2f}×")
        if bad is not None:
            rows.append(
                Row(metric, _status(be) or "", _status(se) or "", "—", target, "NO" if "FAILED" in bad else "—")
            )
            return
        assert be is not None
        assert se is not None
        bv, sv = be[key] / per, se[key] / per
        r = _ratio(sv, bv)
        ok = None if limit is None or r is None else (r >= limit if higher_is_better else r <= limit)
        rows.append(Row(metric, fmt(bv), fmt(sv), _x(r), target, _met(ok)))

    fb_base = f"{base} try/except"
    pair_rows("sequential median", seq, base_name=base, key="median_s", fmt=_us, limit=1.05)
    pair_rows("sequential p99", seq, base_name=base, key="p99_s", fmt=_us, limit=1.20)
    pair_rows("client CPU per call", seq, base_name=base, key="cpu_per_call_s", fmt=_us, limit=None)
    pair_rows(
        "concurrency 50 (req/s)",
        ov.get("concurrent", {}),
        base_name=base,
        key="median_rps",
        fmt=lambda v: f"{v:,.0f}/s",
        limit=0.95,
        higher_is_better=True,
    )
    pair_rows("fallback path median", ov.get("fallback", {}), base_name=fb_base, key="median_s", fmt=_us, limit=1.10)
    chunks = float(run.get("config", {}).get("chunks", 1))
    stream = ov.get("stream", {})
    pair_rows("streaming, per chunk", stream, base_name=base, key="median_s", fmt=_us, limit=1.10, per=chunks)

    bare_call = b.get("median_s") if b and not _status(b) else None
    provider_only = seq.get("provider.complete (no service)")
    if provider_only is not None:
        pair_rows(
            "provider alone (no service), median",
            {**seq, subject: provider_only},
            base_name=base,
            key="median_s",
            fmt=_us,
            limit=None,
        )
    layer = run.get("service_layer") or {}
    if layer.get("cpu_per_call_s") is not None:
        share = _ratio(layer["cpu_per_call_s"], bare_call)
        rows.append(
            Row(
                "service layer alone (instant provider), CPU",
                _us(bare_call) + " (1 bare call)",
                _us(layer["cpu_per_call_s"]),
                f"{share * 100:.2f} %" if share is not None else "—",
                "—",
                "—",
            )
        )

    rows += telemetry_rows(run, subject=subject, base=base)

    scale = run.get("scale")
    if scale:
        size = f"{scale['models']:,} models/{scale['tasks']:,} tasks"
        for key, label in (("select_s", "selection"), ("select_filtered_s", "selection + capability filter")):
            share = _ratio(scale[key], bare_call)
            rows.append(
                Row(
                    f"{label} ({size})",
                    _us(bare_call) + " (1 bare call)",
                    _us(scale[key]),
                    f"{share * 100:.2f} %" if share is not None else "—",
                    "< 2 %",
                    _met(None if share is None else share < 0.02),
                )
            )
        for key, label in (("load_file_s", "load+validate from file"), ("load_dict_s", "load+validate from dict")):
            rows.append(Row(f"{label} ({size})", "—", _ms(scale[key]), "—", "< 1 s", _met(scale[key] < 1.0)))
    elif run.get("scale_error"):
        rows.append(Row("registry scale", "", f"FAILED: {run['scale_error'][:80]}", "—", "", "NO"))

    imports = run.get("imports", {})
    ti, hi = imports.get("import taskmodels", {}), imports.get("import httpx2", {})
    if ti and hi:
        r = _ratio(ti.get("median_s"), hi.get("median_s"))
        rows.append(
            Row(
                "import taskmodels",
                _ms(hi.get("median_s")) + " (httpx2)",
                _ms(ti.get("median_s")),
                _x(r),
                "—",
                "—",
            )
        )
        ready = imports.get("taskmodels ready to call", {})
        if ready.get("median_s") is not None:
            r2 = _ratio(ready.get("median_s"), hi.get("median_s"))
            rows.append(
                Row(
                    "first-call imports (Container + provider)",
                    _ms(hi.get("median_s")) + " (httpx2)",
                    _ms(ready["median_s"]),
                    _x(r2),
                    "≤ 2.00×",
                    _met(None if r2 is None else r2 <= 2.0),
                )
            )

    mem = run.get("memory", {})
    mt, mb = mem.get(subject), mem.get(base)
    if mt is not None:
        if mt.get("error"):
            rows.append(Row("RSS growth", "", f"FAILED: {mt['error'][:80]}", "—", "< 1 MB", "NO"))
        else:
            growth = mt["growth_bytes"] / 1e6
            base_txt = f"{mb['growth_bytes'] / 1e6:+.2f} MB (bare)" if mb and not mb.get("error") else "—"
            rows.append(
                Row(
                    f"RSS growth over {mt['calls']:,} calls",
                    base_txt,
                    f"{growth:+.2f} MB",
                    "—",
                    "< 1 MB",
                    _met(growth < 1.0),
                )
            )
    return rows


def telemetry_rows(run: dict[str, Any], *, subject: str = "taskmodels", base: str = "bare httpx2") -> list[Row]:
    """What telemetry adds per call, as a share of one bare call: end to end (median against median, within
    the run's noise; CPU per call), in the service layer alone (CPU, the precise figure), what the SDK itself
    costs for the same work (the floor, no taskmodels), and what a peer's instrumentation adds to its client."""
    from benchmarks.otel_floor import FLOOR_CASES
    from benchmarks.otel_peer import OFF_LABEL, PEER_LABEL

    rows: list[Row] = []
    seq = run.get("overhead", {}).get("sequential", {})
    bare = seq.get(base)
    bare_call = bare.get("median_s") if bare and not _status(bare) else None
    off_label, sdk_label = f"{subject} (telemetry off)", f"{subject} (OTel SDK, no-op exporter)"
    floor_label = f"{subject} (OTel SDK, the floor's spans and records only)"

    def share(
        metric: str,
        extra: float | None,
        target: str = "—",
        limit: float | None = None,
        why: str = "",
        *,
        signed: bool = True,
    ) -> None:
        """``extra`` seconds per call (a difference when ``signed``) as a share of one bare call; ``why`` says
        why there is no figure."""
        if not _finite(extra) or bare_call is None:
            rows.append(Row(metric, _us(bare_call), why or "—", "—", target, "NO" if "FAILED" in why else "—"))
            return
        assert extra is not None
        part = _ratio(extra, bare_call)
        ok = None if limit is None or part is None else part < limit
        sign = "+" if signed else ""
        rows.append(
            Row(
                metric,
                _us(bare_call) + " (1 bare call)",
                f"{extra * 1e6:{sign},.1f} µs",
                f"{part * 100:{sign}.2f} %" if part is not None else "—",
                target,
                _met(ok),
            )
        )

    def delta(on: float | None, off: float | None) -> float | None:
        return on - off if _finite(on) and _finite(off) else None  # type: ignore[operator]

    def pair(on_name: str, off_name: str, key: str) -> tuple[float | None, str]:
        on_e, off_e = seq.get(on_name) or {}, seq.get(off_name) or {}
        why = _status(on_e) or _status(off_e) or ""
        return (None, why) if why else (delta(on_e.get(key), off_e.get(key)), "")

    if seq.get(sdk_label) or seq.get(off_label):
        d, why = pair(sdk_label, off_label, "median_s")
        share("telemetry, OTel SDK (sequential median, on - off)", d, "< 3 %", 0.03, why)
        d, why = pair(sdk_label, off_label, "cpu_per_call_s")
        share("telemetry, OTel SDK (client CPU per call, on - off)", d, "< 3 %", 0.03, why)
    if seq.get(floor_label):
        d, why = pair(floor_label, off_label, "median_s")
        share("telemetry, the floor's SDK calls in place (sequential median, floor tracer - off)", d, why=why)
        d, why = pair(sdk_label, floor_label, "median_s")
        share("telemetry, taskmodels' own (sequential median, taskmodels' tracer - floor tracer)", d, why=why)
    layers = run.get("service_layer_telemetry") or {}
    cpu = {mode: (layers.get(mode) or {}).get("cpu_per_call_s") for mode in ("default", "off", "sdk", "floor")}
    if layers:
        why = _status(layers.get("sdk")) or _status(layers.get("off")) or ""
        share("telemetry, OTel SDK (service layer CPU, on - off)", delta(cpu["sdk"], cpu["off"]), "< 3 %", 0.03, why)
        why = _status(layers.get("default")) or _status(layers.get("off")) or ""
        share("telemetry, API without SDK (service layer CPU)", delta(cpu["default"], cpu["off"]), why=why)
        if "floor" in layers:
            why = _status(layers.get("floor")) or _status(layers.get("off")) or ""
            share(
                "telemetry, the floor's SDK calls in place (service layer CPU, floor tracer - off)",
                delta(cpu["floor"], cpu["off"]),
                why=why,
            )
            why = _status(layers.get("floor")) or _status(layers.get("sdk")) or ""
            share(
                "telemetry, taskmodels' own (service layer CPU, taskmodels' tracer - floor tracer)",
                delta(cpu["sdk"], cpu["floor"]),
                why=why,
            )

    floor = run.get("otel_floor")
    if floor is not None:
        floor_cpu = floor.get("cpu_per_call_s") or {}
        why = _status(floor) or ""
        for case, label in FLOOR_CASES.items():
            share(f"OTel SDK floor, no taskmodels: {label} (CPU)", floor_cpu.get(case), why=why, signed=False)

    if PEER_LABEL in seq:
        for key, what in (("median_s", "sequential median"), ("cpu_per_call_s", "client CPU per call")):
            d, why = pair(PEER_LABEL, OFF_LABEL, key)
            share(f"peer: {OFF_LABEL} + official OTel openai-v2 instrumentation ({what}, on - off)", d, why=why)
    return rows


def comparison_rows(run: dict[str, Any], base: str = "bare httpx2") -> list[list[str]]:
    """Every variant as ratios to ``base``: median, p99, CPU per call, req/s, fallback, per-chunk streaming."""
    ov = run.get("overhead", {})
    seq, conc, fb, st = (ov.get(k, {}) for k in ("sequential", "concurrent", "fallback", "stream"))
    names = list(seq)
    for extra in (*conc, *fb, *st):
        short = extra.split(" try/except")[0].split(" FallbackModel")[0].split(" fallbacks")[0]
        if short not in names:
            names.append(short)

    def fallback_name(name: str) -> str | None:
        if name in fb:
            return name
        # The hand-written and SDK fallbacks carry a suffix naming how they fall back.
        suffixed = [str(k) for k in fb if str(k).startswith(name + " ")]
        return min(suffixed, key=len) if suffixed else None

    def ratio(group: dict[str, Any], name: str | None, base_name: str, key: str) -> str:
        if name is None:
            return "—"
        e, be = group.get(name), group.get(base_name)
        if e is None:
            return "—"
        bad = _status(e)
        if bad is not None:
            return bad
        if be is None or e is None or _status(be) is not None:
            return "—"
        return _x(_ratio(e[key], be[key]))

    out = []
    for name in names:
        entry = seq.get(name) or {}
        if entry.get("skipped"):
            # Say it once: a missing package skips the whole row.
            out.append([name, f"skipped: {entry['skipped']!s}", "—", "—", "—", "—", "—"])
            continue
        out.append(
            [
                name,
                ratio(seq, name, base, "median_s"),
                ratio(seq, name, base, "p99_s"),
                ratio(seq, name, base, "cpu_per_call_s"),
                ratio(conc, name, base, "median_rps"),
                ratio(fb, fallback_name(name), f"{base} try/except", "median_s"),
                ratio(st, name, base, "median_s"),
            ]
        )
    return out


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average_at_start": list(load),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "src")),
    }
