"""Type-check a user's snippet as a user's strict mypy would see the package: what it reveals, what it rejects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Checked:
    revealed: list[str]  # every `reveal_type`, in order
    errors: list[str]
    output: str  # what mypy printed, for assertion messages


def check_user_code(code: str, folder: Path) -> Checked:
    """``mypy --strict`` on ``code`` saved as ``user_code.py`` in ``folder``, with ``src/`` as the package's home."""
    pytest.importorskip("mypy")
    snippet = folder / "user_code.py"
    snippet.write_text(code)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(folder / "cache"),
            str(snippet),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        env={**os.environ, "MYPYPATH": str(SRC), "PYTHONPATH": str(SRC)},
        timeout=300,
        check=False,
    )
    return Checked(
        revealed=re.findall(r'Revealed type is "([^"]+)"', done.stdout),
        errors=[line for line in done.stdout.splitlines() if ": error:" in line],
        output=done.stdout + done.stderr,
    )
