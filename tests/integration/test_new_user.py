"""What a new user does, from `pip install` to a first answer, outside the repository.

In an empty temporary folder: a fresh venv, a non-editable install of the wheel built
from this checkout (its dependencies come from the package index), then the commands
the README and the getting-started guide give, in order, each as a subprocess of the
venv's own `taskmodels`, as written (nothing edited between them):

    taskmodels init  ->  taskmodels plan  ->  cp .env.example .env  ->  taskmodels check (missing keys, exit 1)
    taskmodels fake-server (no port: 8080, the starter's local-llama)  ->  its variables  ->  taskmodels check --ping
    one complete_with_task_model call, which answers.

And a contributor's: a copy of this checkout, a fresh venv with the pip its Python ships, and the README's
command for a clone, run as written (its pytest only collects: the suite itself is what CI runs next).

And the gateway's path (docs/gateway.md): ``pip install '<wheel>[serve]'``, ``taskmodels init``,
``taskmodels serve`` against the fake server, one call from the openai SDK with ``model="clustering"``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

FIRST_CALL = """
import asyncio

from taskmodels.containers import Container


async def main() -> None:
    container = Container()
    try:
        result = await container.model_service().complete_with_task_model(
            "clustering", prompt="Cluster these personas: a baker, a pilot, a chef"
        )
    finally:
        await container.aclose()
    print(result.model_id, "|", result.text)


asyncio.run(main())
"""


def _guide_output(starts: str) -> str:
    """The text block of the getting-started guide that shows a command's output, by its first characters."""
    from tests.docs.test_docs_snippets import parse_blocks

    blocks = [b.code for b in parse_blocks(ROOT / "docs" / "getting-started.md") if b.lang == "text"]
    [found] = [code for code in blocks if code.startswith(starts)]
    return found


SDK_CALL = """
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
answer = client.chat.completions.create(
    model="clustering",
    messages=[{"role": "user", "content": "Cluster these personas: a baker, a pilot, a chef"}],
)
print(answer.model, "|", answer.choices[0].message.content)
"""


def _require_or_skip(request: pytest.FixtureRequest, ok: bool, why: str) -> None:
    root_conftest = ROOT / "tests" / "conftest.py"
    module = request.config.pluginmanager.get_plugin(str(root_conftest))
    assert module is not None, f"{root_conftest} was not loaded"
    module.require_or_skip(ok, why)


def _user_env(venv: Path) -> dict[str, str]:
    """The environment of a user who has set nothing for taskmodels: no keys, no TASKMODELS_ variables."""
    keys = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_OPENAI_API_KEY"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKMODELS_") and k not in keys}
    env.pop("PYTHONPATH", None)  # the installed wheel, not this checkout's src/
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A fresh venv with the wheel of this checkout installed (not editable); returns the venv."""
    base = tmp_path_factory.mktemp("new-user")
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    source = base / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        source.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = base / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    _require_or_skip(request, built.returncode == 0, f"could not build the wheel: {built.stderr[-2000:]}")
    wheel = next(wheels.glob("taskmodels-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_user_env(venv),  # a PYTHONPATH onto this checkout would make pip think taskmodels is installed
    )
    _require_or_skip(
        request, pip.returncode == 0, f"pip could not install the wheel's dependencies: {pip.stderr[-2000:]}"
    )
    assert (venv / "bin" / "taskmodels").is_file(), pip.stdout + pip.stderr
    return venv


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "my-app"
    folder.mkdir()
    return folder


def taskmodels(venv: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "taskmodels"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def fake_server(
    installed: Path, project: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, dict[str, str], list[str]]]:
    """`taskmodels fake-server` as a user starts it, in the project after `init`; yields its base URL, the variables
    it says to export and every line it printed."""
    init = taskmodels(installed, project, _user_env(installed), "init")
    assert init.returncode == 0, init.stderr
    # What the guide shows init printing, in its example folder.
    assert init.stdout == _guide_output("wrote ").replace("/home/me/my-app", str(project))
    process = subprocess.Popen(
        [str(installed / "bin" / "taskmodels"), "fake-server"],
        cwd=project,
        env=_user_env(installed),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        printed: list[str] = []
        deadline = time.monotonic() + 30
        while not printed or printed[-1].strip():  # the banner ends with an empty line
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"fake-server printed no banner in time: {printed}"
            assert process.poll() is None, f"fake-server exited: {printed}"
            try:
                printed.append(lines.get(timeout=remaining))
            except queue.Empty:
                continue
        match = re.search(r"fake LLM server on (http://127\.0\.0\.1:\d+)", printed[0])
        assert match, printed
        # The documented sequence needs the port the starter's local-llama names; something else may hold it here.
        _require_or_skip(request, match.group(1).endswith(":8080"), f"port 8080 is taken on this machine: {printed}")
        exports = dict(
            line.strip().removeprefix("export ").split("=", 1) for line in printed if line.strip().startswith("export ")
        )
        yield match.group(1), exports, printed
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        stdout.close()


def test_from_pip_install_to_a_first_answer(
    installed: Path, tmp_path: Path, fake_server: tuple[str, dict[str, str], list[str]]
) -> None:
    env = _user_env(installed)
    base_url, exports, banner = fake_server
    project = tmp_path / "my-app"  # where the fake server was started, after `taskmodels init`
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()

    assert taskmodels(installed, elsewhere, env, "--version").stdout.startswith("taskmodels ")
    # Nothing here yet: the error says where it looked and what to do.
    missing = taskmodels(installed, elsewhere, env, "plan")
    assert missing.returncode == 2
    assert str(elsewhere / "settings" / "modelRegistry.json") in missing.stderr
    assert "taskmodels init" in missing.stderr

    assert (project / "settings" / "modelRegistry.json").is_file()
    assert (project / ".env.example").is_file()
    plan = taskmodels(installed, project, env, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "clustering" in plan.stdout
    assert "primary" in plan.stdout

    shutil.copy(project / ".env.example", project / ".env")  # init's next step: cp .env.example .env
    check = taskmodels(installed, project, env, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout == _guide_output("settings: ok\n")  # what the guide shows, to the character

    # The fake server, as documented: on the port the starter's local-llama names, which its banner says.
    assert base_url == "http://127.0.0.1:8080"
    assert "settings/modelRegistry.json: local-llama's baseUrl http://127.0.0.1:8080/v1 is this server\n" in banner
    env.update(exports)  # "run those export lines in another shell"
    ping = taskmodels(installed, project, env, "check", "--ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "ready: keys, endpoints and pings in place for 3 models" in ping.stdout
    for key in (v for k, v in exports.items() if k.endswith("_KEY")):
        assert key not in ping.stdout

    answer = subprocess.run(
        [str(installed / "bin" / "python"), "-c", FIRST_CALL],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert (
        answer.stdout.strip()
        == "gpt-4o-mini | [gpt-4o-mini] answer to: Cluster these personas: a baker, a pilot, a chef"
    )

    # The reference pages' registry is in the wheel too.
    example = taskmodels(installed, elsewhere, env, "init", "--example")
    assert example.returncode == 0, example.stderr
    assert taskmodels(installed, elsewhere, env, "validate", "--env", "production").returncode == 0


# --- a contributor's first command ----------------------------------------------------------------------------

_NOT_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis", ".env"
)


def test_the_readme_command_installs_a_clone_from_the_pip_a_fresh_venv_ships(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tests.docs.test_readme_command import readme_clone_command

    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=_NOT_A_CLONE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = _user_env(venv)
    shipped = subprocess.run(
        ["pip", "--version"], cwd=clone, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # pytest only collects here: every test module imports, so every tool the suite needs was installed.
    env["PYTEST_ADDOPTS"] = "--collect-only -q -p no:cacheprovider"
    command = readme_clone_command()
    done = subprocess.run(
        ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    output = done.stdout + done.stderr
    unreachable = "No matching distribution" in output or "Could not fetch URL" in output
    _require_or_skip(request, not unreachable, f"no package index reachable: {output[-2000:]}")
    assert done.returncode == 0, f"`{command}` from {shipped.strip()} failed:\n{output[-6000:]}"
    assert re.search(r"^\d+ tests collected", done.stdout, re.MULTILINE), done.stdout[-2000:]


def test_from_pip_install_to_an_answer_through_the_gateway(
    installed: Path, project: Path, fake_server: tuple[str, dict[str, str], list[str]], request: pytest.FixtureRequest
) -> None:
    import httpx2

    from tests.integration.redisserver import free_port

    env = _user_env(installed)
    wheel = next((installed.parent / "wheels").glob("taskmodels-*.whl"))
    pip = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"{wheel}[serve]",
            "openai",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    _require_or_skip(request, pip.returncode == 0, f"pip could not install the serve extra: {pip.stderr[-2000:]}")

    # The fixture ran `taskmodels init` in the project, then started the fake server as the guide says.
    _, exports, _ = fake_server  # the starter's clustering chain starts with OpenAI: its variables point there
    env.update(exports)
    port = free_port()
    log = project / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(installed / "bin" / "taskmodels"), "serve", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        with httpx2.Client(timeout=2.0, trust_env=False) as http:
            while True:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"taskmodels serve was not ready: {log.read_text()}"
                try:
                    if http.get(f"{url}/models").status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                time.sleep(0.1)  # poll interval, bounded by the deadline
        answer = subprocess.run(
            [str(installed / "bin" / "python"), "-c", SDK_CALL, url],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer.returncode == 0, answer.stderr + log.read_text()
    assert (
        answer.stdout.strip()
        == "gpt-4o-mini | [gpt-4o-mini] answer to: Cluster these personas: a baker, a pilot, a chef"
    )
    assert "taskmodels gateway: 3 tasks" in log.read_text()
