"""Every code block in docs/*.md and README.md runs, so the docs cannot drift from the code.

How blocks run, one test per Markdown file:

- ```python blocks run in order in one namespace per file, like a notebook: a later
  block may use what an earlier one defined. Top-level ``await`` is allowed (it runs
  on the file's own event loop); a block may also call ``asyncio.run(...)``.
- ```bash blocks: each line that starts with ``taskmodels`` (or ``$ taskmodels``) runs
  through ``taskmodels.cli.main``; each ``pytest ...`` line runs pytest in a subprocess
  in the working directory. Either must exit 0 unless the line ends with a comment
  ``# exit N``. Other lines (pip, export, uvicorn) are not run.
- ```console blocks are a terminal session: each ``$ taskmodels ...`` line runs through
  ``taskmodels.cli.main`` and what it prints (stdout, then stderr) must be the lines that
  follow it, exactly (trailing spaces aside), up to the next ``$`` line. Its exit code is
  0 unless the line ends with ``# exit N``, as in bash blocks.
- ```bash blocks marked ``<!-- apply-env -->``: their ``export NAME=VALUE`` lines are set
  in the environment for the rest of the page. A value holding ``redis://127.0.0.1:6379``
  gets the address of a ``redis-server`` the runner starts for the page instead (skipped
  locally when redis-server is missing, a failure in CI).
- ```json blocks must parse (a block of one object per line is read as JSON Lines). A
  whole registry is validated like ``taskmodels validate``; an object with ``taskName``
  and ``primaryModelId`` must be a valid task mapping, one with ``provider`` and
  ``modelName`` a valid model entry.
- A block is skipped only when the line before it is ``<!-- no-run: REASON -->``.
- ``<!-- file: PATH -->`` before a block writes the block to PATH (relative to the
  working directory) instead of checking or running it: a guide's "save this as
  registry.json" or "save this as app.py". The page then checks it itself
  (``taskmodels validate``), imports it (the working directory is on ``sys.path``),
  or runs it (``pytest test_app.py``).
  ``<!-- append-to: PATH KEY -->`` appends the block's JSON object to the list KEY
  of the JSON file PATH: a guide's "add this to the models list".

Where they run: a temporary directory holding what ``taskmodels init`` writes (the
starter registry at ``settings/modelRegistry.json``, as a new user has it), or, on a page
marked ``<!-- registry: example -->``, what ``taskmodels init --example`` writes (the
repository's example registry and its production overlay); such a page must say so where
a reader sees it (``test_pages_on_the_example_registry_say_so``). Nothing writes into the
repository. A fake LLM server on 127.0.0.1 (``taskmodels.fake_server``)
standing in for every provider: the providers' usual key variables hold dummy keys
and their base URLs point at the fake. An HTTPS proxy on a closed local port makes
any request that escapes to the internet fail at once instead of leaving the machine.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskmodels.fake_server import FakeLLMServer

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

_FENCE = re.compile(r"^```(\w*)\s*$")
_NO_RUN = re.compile(r"^<!--\s*no-run:\s*(\S.*?)\s*-->\s*$")
_FILE = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")
_APPLY_ENV = "<!-- apply-env -->"
_REDIS_PLACEHOLDER = "redis://127.0.0.1:6379"
_APPEND = re.compile(r"^<!--\s*append-to:\s*(\S+)\s+(\w+)\s*-->\s*$")
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
_EXAMPLE_REGISTRY = "<!-- registry: example -->"
_EXAMPLE_SAID = "taskmodels init --example"


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip_reason: str | None
    marker: str = ""  # the HTML comment line just before the block, if any

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the no-run reason of each, if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, lang = i, match.group(1).lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        prev = prev.strip()
        reason = _NO_RUN.match(prev)
        marker = prev if prev.startswith("<!--") else ""
        code = "\n".join(body) + "\n"
        blocks.append(Block(path, start + 1, lang, code, reason.group(1) if reason else None, marker))
    return blocks


# --- the environment blocks run in -------------------------------------------------------------


@pytest.fixture
def doc_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    # A doc's bash block may set variables (apply-env); monkeypatch restores them after the page.
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # pages import the files they saved (app.py ...)
    for name in list(os.environ):
        if name.startswith("TASKMODELS_"):
            monkeypatch.delenv(name)
    with FakeLLMServer() as server:
        env = {
            "OPENAI_API_KEY": "sk-docs-dummy-key-0000",
            "ANTHROPIC_API_KEY": "sk-ant-docs-dummy-key-0000",
            "GEMINI_API_KEY": "docs-dummy-gemini-key",
            "AZURE_OPENAI_API_KEY": "docs-dummy-azure-key",
            "AZURE_OPENAI_ENDPOINT": server.base_url,
            "OLLAMA_HOST": server.base_url,
            "TASKMODELS_PROVIDERS__OPENAI__BASE_URL": server.openai_base_url,
            "TASKMODELS_PROVIDERS__OPENAI_COMPATIBLE__BASE_URL": server.openai_base_url,
            "TASKMODELS_PROVIDERS__ANTHROPIC__BASE_URL": server.base_url,
            "TASKMODELS_PROVIDERS__GEMINI__BASE_URL": server.base_url,
            # Anything not for 127.0.0.1 goes to a closed local port and fails fast.
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "ALL_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield server


# --- running blocks ------------------------------------------------------------------------------


class _Runner:
    def __init__(self, server: FakeLLMServer, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.resources = contextlib.ExitStack()
        self._redis_url: str | None = None
        # A real module, so that code which wires or pickles by module name (``container.wire(modules=[__name__])``)
        # finds what the page defined.
        self.module = types.ModuleType(name)
        sys.modules[name] = self.module
        self.namespace: dict[str, Any] = self.module.__dict__
        self.loop = asyncio.new_event_loop()
        self.server = server

    def forget_local_modules(self) -> None:
        """Drop modules the page imported from its working directory (``app.py`` ...) from ``sys.modules``."""
        here = str(Path.cwd().resolve())
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(here):
                del sys.modules[name]

    def close(self) -> None:
        self.forget_local_modules()
        self.resources.close()
        sys.modules.pop(self.module.__name__, None)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, block: Block) -> None:
        if (match := _FILE.match(block.marker)) is not None:
            self.forget_local_modules()  # a rewritten file must be imported afresh
            target = Path(match.group(1))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            return  # the page checks the file itself (e.g. with `taskmodels validate`), maybe expecting errors
        if (match := _APPEND.match(block.marker)) is not None:
            target, key = Path(match.group(1)), match.group(2)
            document = json.loads(target.read_text(encoding="utf-8"))
            document[key].append(json.loads(block.code))
            target.write_text(json.dumps(document, indent=2), encoding="utf-8")
        if block.lang == "python":
            self.python(block)
        elif block.lang == "console":
            self.console(block)
        elif block.lang in {"bash", "sh", "shell"}:
            self.bash(block)
        elif block.lang == "json":
            check_json(block)

    def python(self, block: Block) -> None:
        # dont_inherit: this module's `from __future__ import annotations` must not leak into the page's code.
        code = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        result = eval(code, self.namespace)  # exec that may return a coroutine (top-level await)
        if asyncio.iscoroutine(result):
            self.loop.run_until_complete(result)

    def redis_url(self) -> str:
        if self._redis_url is None:
            from tests.integration.redisserver import RedisServer, require_redis_server

            require_redis_server()
            server = self.resources.enter_context(RedisServer.launch())
            self._redis_url = server.url.rsplit("/", 1)[0]
        return self._redis_url

    def apply_env(self, block: Block) -> None:
        for raw in block.code.splitlines():
            line = raw.strip()
            if not line.startswith("export "):
                continue
            name, _, value = line.removeprefix("export ").partition("=")
            value = " ".join(shlex.split(value, comments=True))
            if _REDIS_PLACEHOLDER in value:
                value = value.replace(_REDIS_PLACEHOLDER, self.redis_url())
            self.monkeypatch.setenv(name.strip(), value)

    def bash(self, block: Block) -> None:
        if block.marker == _APPLY_ENV:
            self.apply_env(block)
        for raw in block.code.splitlines():
            line = raw.strip().removeprefix("$ ")
            if not line.startswith(("taskmodels ", "pytest ")):
                continue
            match = _EXIT.search(line)
            expected = int(match.group(1)) if match else 0
            args = shlex.split(line, comments=True)
            if args[0] == "pytest":
                done = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args[1:]],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                code, output = done.returncode, done.stdout + done.stderr
            else:
                code, output = _run_cli(args[1:])
            assert code == expected, f"{block.where}: `{line}` exited {code}, expected {expected}\n{output}"

    def console(self, block: Block) -> None:
        """Each ``$ taskmodels ...`` line, and the output the page says it prints."""
        sessions: list[tuple[str, list[str]]] = []
        for line in block.code.splitlines():
            if line.startswith("$ "):
                sessions.append((line.removeprefix("$ ").strip(), []))
            elif sessions:
                sessions[-1][1].append(line.rstrip())
            else:
                raise AssertionError(f"{block.where}: a console block starts with a '$ ' command line")
        for command, shown in sessions:
            match = _EXIT.search(command)
            expected = int(match.group(1)) if match else 0
            args = shlex.split(command, comments=True)
            assert args[0] == "taskmodels", f"{block.where}: only taskmodels commands run in console blocks"
            code, output = _run_cli(args[1:])
            printed = [line.rstrip() for line in output.splitlines()]
            assert printed == shown, f"{block.where}: `{command}` printed:\n{output}"
            assert code == expected, f"{block.where}: `{command}` exited {code}, expected {expected}\n{output}"


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from taskmodels.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue() + err.getvalue()


def check_json(block: Block) -> None:
    from taskmodels.providers.factory import BUILTIN_PROVIDERS
    from taskmodels.registry.schema import ModelConfig, TaskMapping
    from taskmodels.registry.service import ModelRegistryService

    try:
        documents = [json.loads(block.code)]
    except ValueError:
        try:
            documents = [json.loads(line) for line in block.code.splitlines() if line.strip()]
        except ValueError as exc:
            raise AssertionError(f"{block.where}: not JSON: {exc}") from None
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if "models" in doc and "defaultModelId" in doc:
            # The built-in provider names, plus any the page registered in its Python blocks.
            names = set(BUILTIN_PROVIDERS) | _names_in(block.path)
            ModelRegistryService.from_dict(doc, provider_names=names)
        elif "taskName" in doc and "primaryModelId" in doc:
            TaskMapping.model_validate(doc)
        elif "provider" in doc and "modelName" in doc:
            ModelConfig.model_validate(doc)


def _names_in(path: Path) -> set[str]:
    """Provider names a page registers with ``register_provider_implementation("name", ...)``."""
    return set(re.findall(r"register_provider_implementation\(\s*\"([^\"]+)\"", path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", DOC_FILES, ids=[str(p.relative_to(ROOT)) for p in DOC_FILES])
def test_every_code_block_runs(path: Path, doc_env: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmodels.starter import write_starter

    write_starter(Path.cwd(), example=uses_example_registry(path))  # what `taskmodels init [--example]` writes
    runner = _Runner(doc_env, "docs_" + re.sub(r"\W", "_", path.stem), monkeypatch)
    try:
        for block in parse_blocks(path):
            if block.skip_reason is not None:
                continue
            try:
                runner.run(block)
            except Exception as exc:
                detail = "".join(traceback.format_exception(exc))
                pytest.fail(f"{block.where}: the {block.lang} block failed:\n{block.code}\n{detail}", pytrace=False)
    finally:
        runner.close()


def uses_example_registry(path: Path) -> bool:
    return _EXAMPLE_REGISTRY in path.read_text(encoding="utf-8")


def test_pages_on_the_example_registry_say_so() -> None:
    """A page whose snippets read the example registry says so before its first snippet, where a reader sees it
    (not only in the marker, an HTML comment); every other page runs against the starter registry."""
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        if _EXAMPLE_REGISTRY not in text:
            continue
        before_code = text[: text.find("\n```")]
        visible = re.sub(r"<!--.*?-->", "", before_code, flags=re.DOTALL)
        assert _EXAMPLE_SAID in visible, f"{path.name}: say before the first snippet that it uses `{_EXAMPLE_SAID}`"


def test_the_example_registry_the_package_ships_is_the_repositorys() -> None:
    from taskmodels.starter import EXAMPLE_FILES, starter_text

    registries = [starter for starter in EXAMPLE_FILES if starter.target.startswith("settings/")]
    assert len(registries) == 2  # the base file and its production overlay
    for starter in registries:
        assert starter_text(starter.template) == (ROOT / starter.target).read_text(encoding="utf-8"), starter.target


def test_the_readme_snippets_run_as_files() -> None:
    """Pasted into a .py file, each README snippet is valid Python: no top-level await."""
    for block in parse_blocks(ROOT / "README.md"):
        if block.lang == "python":
            compile(block.code, block.where, "exec", dont_inherit=True)  # a SyntaxError fails the test


def test_where_the_guides_start_they_say_how_to_run_top_level_await() -> None:
    for name in ("index.md", "getting-started.md"):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert "python -m asyncio" in text, name
        assert "asyncio.run(main())" in text, name


def test_the_docs_exist_and_hold_code() -> None:
    names = {p.name for p in DOC_FILES}
    expected = {
        "index.md",
        "getting-started.md",
        "registry.md",
        "settings.md",
        "scopes.md",
        "testing.md",
        "providers.md",
        "fallbacks.md",
        "workers.md",
        "cli.md",
        "tracing.md",
    }
    assert expected <= names
    runnable = [b for p in DOC_FILES for b in parse_blocks(p) if b.lang == "python" and b.skip_reason is None]
    assert len(runnable) >= 10


def test_skipped_blocks_are_rare_and_give_a_reason() -> None:
    blocks = [b for p in DOC_FILES for b in parse_blocks(p) if b.lang == "python"]
    skipped = [b for b in blocks if b.skip_reason is not None]
    assert all(len(b.skip_reason or "") >= 10 for b in skipped)
    assert len(skipped) <= max(2, len(blocks) // 10), [b.where for b in skipped]
