"""Cold import time: each statement timed inside a fresh interpreter, statements alternated per round."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["STATEMENTS", "measure_imports"]

# label -> statement. The first is the target's subject, the second its baseline.
STATEMENTS: dict[str, str] = {
    "import taskmodels": "import taskmodels",
    "import httpx2": "import httpx2",
    "import httpx": "import httpx",
    "taskmodels ready to call": (
        "import taskmodels; from taskmodels.containers import Container; import taskmodels.providers.openai"
    ),
    "import openai": "import openai",
    "import pydantic_ai": "import pydantic_ai; import pydantic_ai.models.openai",
    "import litellm": "import litellm",
}

_TIMER = "import time, sys\nt0 = time.perf_counter()\nexec(sys.argv[1])\nprint(time.perf_counter() - t0)\n"


def _time_once(statement: str, env: dict[str, str], cwd: Path) -> float | None:
    proc = subprocess.run(
        [sys.executable, "-c", _TIMER, statement],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def measure_imports(repeats: int, *, labels: list[str] | None = None) -> dict[str, Any]:
    """Median seconds per statement over ``repeats`` fresh interpreters; ``None`` where the import fails."""
    env = dict(os.environ)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network at import
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    cwd = Path(__file__).resolve().parent  # away from the repo root, so the installed package is what loads
    chosen = {k: v for k, v in STATEMENTS.items() if labels is None or k in labels}
    samples: dict[str, list[float]] = {k: [] for k in chosen}
    failed: set[str] = set()
    order = list(chosen)
    for r in range(repeats):
        k = r % len(order)
        for label in [*order[k:], *order[:k]]:
            if label in failed:
                continue
            t = _time_once(chosen[label], env, cwd)
            if t is None:
                failed.add(label)
            else:
                samples[label].append(t)
    return {
        label: {
            "median_s": statistics.median(samples[label]) if samples[label] else None,
            "runs": len(samples[label]),
            "error": "import failed (not installed?)" if label in failed else None,
        }
        for label in chosen
    }
