"""Markdown tables from result files, for benchmarks/README.md: runs side by side.

python -m benchmarks.markdown benchmarks/results/run1.json benchmarks/results/run2.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render"]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def render(runs: list[dict[str, Any]]) -> str:
    parts = []
    # Targets: one block of columns per run.
    metrics = [t["metric"] for t in runs[0]["targets"]]
    headers = ["metric", "target"]
    for i, _ in enumerate(runs, 1):
        headers += [f"run {i}: baseline", f"run {i}: taskmodels", f"run {i}: ratio", f"run {i}: met?"]
    rows = []
    for metric in metrics:
        row = [metric, ""]
        for run in runs:
            t = next((t for t in run["targets"] if t["metric"] == metric), None)
            if t is None:
                row += ["", "", "", ""]
                continue
            row[1] = row[1] or t["target"]
            row += [t["baseline"], t["taskmodels"], t["ratio"], t["met"]]
        rows.append(row)
    parts.append(_table(headers, rows))
    for key, base in (("comparison", "bare httpx2"), ("comparison_httpx", "bare httpx 0.28")):
        if all(key in run for run in runs):
            parts.append(
                f"Every client against {base} (" + " / ".join(f"run {i}" for i in range(1, len(runs) + 1)) + "):"
            )
            parts.append(
                _table(
                    ["client", "median", "p99", "CPU/call", "req/s @50", "fallback", "stream/chunk"], _merged(runs, key)
                )
            )
    imports = [run.get("imports") or {} for run in runs]  # none in a --telemetry-only run
    if not any(imports):
        return "\n\n".join(parts)
    rows = []
    for label in imports[0]:
        row = [label]
        for imp in imports:
            v = imp.get(label, {})
            row.append(f"{v['median_s'] * 1e3:.0f} ms" if v.get("median_s") is not None else str(v.get("error")))
        rows.append(row)
    parts.append("Cold imports (median of fresh interpreters):")
    parts.append(_table(["statement", *[f"run {i}" for i in range(1, len(runs) + 1)]], rows))
    return "\n\n".join(parts)


def _merged(runs: list[dict[str, Any]], key: str) -> list[list[str]]:
    """Every client's ratios, the runs' figures in one cell ("run 1 / run 2")."""
    names: list[str] = []
    cells: dict[str, list[list[str]]] = {}
    for run in runs:
        for row in run[key]:
            if row[0] not in cells:
                names.append(row[0])
                cells[row[0]] = []
            cells[row[0]].append([str(c) for c in row[1:]])
    rows = []
    for name in names:
        per_run = cells[name]
        # Identical cells ("—", the baseline's 1.000×) once; otherwise every run's figure.
        merged = []
        for i in range(len(per_run[0])):
            values = [r[i] for r in per_run]
            merged.append(values[0] if values[0] in {"—", "1.000×"} and len(set(values)) == 1 else " / ".join(values))
        rows.append([name, *merged])
    return rows


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print(__doc__)
        return 2
    print(render([json.loads(p.read_text(encoding="utf-8")) for p in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
