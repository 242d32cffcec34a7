"""The README's command for a clone is the one CI runs, and the one tests/integration/test_new_user.py runs in a
fresh venv with the pip it ships: the three cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_clone_command() -> str:
    """The one-line bash block of the README that installs a clone with the development tools and runs the tests."""
    blocks = re.findall(
        r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL
    )
    found = [str(block).strip() for block in blocks if "--group dev" in block and "\n" not in str(block).strip()]
    assert len(found) == 1, found
    return found[0]


def test_the_readme_command_upgrades_pip_before_it_installs_a_dependency_group() -> None:
    command = readme_clone_command()
    upgrade, install = command.index("pip install -U pip"), command.index("--group dev")
    assert upgrade < install, command
    assert command.endswith("&& pytest")


def test_ci_runs_the_readme_command_as_written_from_a_fresh_venvs_pip() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.strip() for line in script.splitlines()]
    assert readme_clone_command() in lines
    # Nothing upgrades pip before the README's command does: CI starts from the pip a new venv ships.
    before = lines[: lines.index(readme_clone_command())]
    assert not [line for line in before if "install" in line and "pip" in line and not line.startswith("#")]
