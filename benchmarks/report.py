"""Turns one run's measurements into the targets table, the comparison table and the JSON record."""

from __future__ import annotations

import math
import os
import platform
import statistics
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


# taskmodels' tracer in each of its traces, and the floor tracer making the same spans, records and attributes by
# hand (benchmarks/otel.py's modes): what the telemetry target compares, mode against mode.
_TRACES: tuple[tuple[str, str, str], ...] = (("sdk", "floor", "call span"), ("folded", "floor_folded", "folded"))
FLOOR_LIMIT = 1.10  # taskmodels' telemetry costs at most the hand-written floor + 10 %
PEER_LIMIT = 1.00  # ... and at most the openai SDK's official instrumentation, measured in the same run
QUIET_LIMIT = 0.01  # the API without an SDK: within noise of telemetry off, under 1 % of a bare call


def telemetry_rows(run: dict[str, Any], *, subject: str = "taskmodels", base: str = "bare httpx2") -> list[Row]:
    """The telemetry target, judged: with the SDK, what taskmodels' tracer adds per call (on - off) against what
    the floor tracer adds making the same spans, records and attributes by hand (at most +10 %), and against what
    the openai SDK's official instrumentation adds to its calls in the same run (at most as much); without an SDK,
    within noise of telemetry off. End to end (sequential median; client CPU per call) and in the service layer
    alone (CPU, the precise figure), then the SDK's own costs in a tight loop, for reference."""
    from benchmarks.otel import TELEMETRY_LABELS
    from benchmarks.otel_floor import FLOOR_CASES
    from benchmarks.otel_peer import OFF_LABEL, PEER_LABEL

    rows: list[Row] = []
    seq = run.get("overhead", {}).get("sequential", {})
    bare = seq.get(base)
    bare_call = bare.get("median_s") if bare and not _status(bare) else None
    label: dict[str, str] = {mode: text.replace("taskmodels", subject, 1) for mode, text in TELEMETRY_LABELS.items()}
    layers = run.get("service_layer_telemetry") or {}

    def extra(seconds: float | None) -> str:
        """Seconds a call adds, as µs and as a share of one bare call."""
        if not _finite(seconds):
            return "—"
        assert seconds is not None
        share = _ratio(seconds, bare_call)
        return f"{seconds * 1e6:+,.1f} µs" + (f" ({share * 100:+.1f} %)" if share is not None else "")

    def added(on: dict[str, Any] | None, off: dict[str, Any] | None, key: str) -> tuple[float | None, str]:
        """``on``'s figure minus ``off``'s, or why there is none."""
        why = _status(on) or _status(off)
        if why is not None:
            return None, why
        assert on is not None
        assert off is not None
        a, b = on.get(key), off.get(key)
        if a is None or b is None or not (_finite(a) and _finite(b)):
            return None, "—"
        return a - b, ""

    def judged(metric: str, theirs: tuple[float | None, str], ours: tuple[float | None, str], limit: float) -> None:
        (t, t_why), (o, o_why) = theirs, ours
        target = f"≤ {limit:.2f}× theirs"
        if t is None or o is None:
            failed = "FAILED" in t_why + o_why
            rows.append(Row(metric, t_why or extra(t), o_why or extra(o), "—", target, "NO" if failed else "—"))
            return
        r = _ratio(o, t) if t > 0 else None
        rows.append(Row(metric, extra(t), extra(o), _x(r), target, _met(None if r is None else r <= limit)))

    rounds = (run.get("round_medians") or {}).get("sequential") or {}

    def paired(on: str, off: str) -> tuple[float | None, str]:
        """The median over rounds of ``on``'s median minus ``off``'s in the same round; without the rounds (an
        older run), the difference of the whole run's medians."""
        why = _status(seq.get(on)) or _status(seq.get(off))
        if why is not None or on not in rounds or off not in rounds:
            return added(seq.get(on), seq.get(off), "median_s") if why is None else (None, why)
        return statistics.median(a - b for a, b in zip(rounds[on], rounds[off], strict=True)), ""

    def difference(on: str, off: str, key: str) -> tuple[float | None, str]:
        return paired(on, off) if key == "median_s" else added(seq.get(on), seq.get(off), key)

    median = "sequential median, paired by round" if rounds else "sequential median"
    end_to_end = (("median_s", median), ("cpu_per_call_s", "client CPU per call"))
    off = seq.get(label["off"])
    peer = {key: difference(PEER_LABEL, OFF_LABEL, key) for key, _ in end_to_end}
    for mode, by_hand, trace in _TRACES:
        if label[mode] not in seq and mode not in layers:
            continue
        for key, what in end_to_end:
            judged(
                f"OTel on - off, {trace}, {what}: vs the floor by hand",
                difference(label[by_hand], label["off"], key),
                difference(label[mode], label["off"], key),
                FLOOR_LIMIT,
            )
        if mode in layers:
            judged(
                f"OTel on - off, {trace}, service layer CPU: vs the floor by hand",
                added(layers.get(by_hand), layers.get("off"), "cpu_per_call_s"),
                added(layers.get(mode), layers.get("off"), "cpu_per_call_s"),
                FLOOR_LIMIT,
            )
        if PEER_LABEL in seq:
            for key, what in end_to_end:
                judged(
                    f"OTel on - off, {trace}, {what}: vs openai SDK + openai-v2",
                    peer[key],
                    difference(label[mode], label["off"], key),
                    PEER_LIMIT,
                )

    def quiet(metric: str, figure: tuple[float | None, str], limit: float | None) -> None:
        value, why = figure
        share = _ratio(value, bare_call)
        target = "—" if limit is None else f"< {limit * 100:.0f} % of a bare call"
        ok = None if limit is None or share is None else abs(share) < limit
        rows.append(Row(metric, _us(bare_call) + " (1 bare call)", why or extra(value), "—", target, _met(ok)))

    for _, by_hand, trace in _TRACES:
        if f"conventions_{by_hand}" in layers:
            figure = added(layers.get(by_hand), layers.get(f"conventions_{by_hand}"), "cpu_per_call_s")
            quiet(f"OTel, {trace}: taskmodels' attributes beyond the conventions' (service layer CPU)", figure, None)
    if label["default"] in seq and off is not None:
        figure = paired(label["default"], label["off"])
        quiet(f"OTel API without SDK - off, {median}", figure, None)
    if "default" in layers:
        figure = added(layers.get("default"), layers.get("off"), "cpu_per_call_s")
        quiet("OTel API without SDK - off, service layer CPU", figure, QUIET_LIMIT)

    floor = run.get("otel_floor")
    if floor is not None:
        floor_cpu = floor.get("cpu_per_call_s") or {}
        why = _status(floor) or ""
        for case, text in FLOOR_CASES.items():
            quiet(f"OTel SDK alone, tight loop CPU: {text}", (floor_cpu.get(case), why), None)
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
