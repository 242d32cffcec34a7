"""Fuzzing registry files: whatever a JSON, YAML or TOML file holds, loading it returns a registry or raises
RegistryError with located problems, and `taskmodels validate` on it exits 0 or 1 and prints no traceback.

Documents are drawn near the real schema (valid models and tasks, then mutated: wrong types, whole numbers
past Python's digit limit, infinities and NaN, deep nesting, keys that are not text, unknown and missing keys)
and as raw text and bytes. Each is written out by a small writer per format below, so values no writer
library would emit (a 5,000-digit number, ``1e999``, 5,000 brackets) reach the readers as text.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskmodels.cli import main
from taskmodels.errors import ConfigurationError, RegistryError
from taskmodels.registry.service import load_registry
from tests.registry_entries import model

FORMATS = (".json", ".yaml", ".toml")


@dataclass(frozen=True)
class Raw:
    """A value written as given text in each format, for what Python values cannot say: a number longer than
    Python converts, an infinity JSON can only write as 1e999, nesting deeper than a writer recurses."""

    json: str
    yaml: str
    toml: str


HUGE = Raw("9" * 5000, "9" * 5000, "9" * 5000)
INFINITE = Raw("1e999", ".inf", "inf")
NOT_A_NUMBER = Raw("NaN", ".nan", "nan")


def nested(depth: int) -> Raw:
    brackets = "[" * depth + "]" * depth
    return Raw(brackets, brackets, brackets)


SPECIAL = st.sampled_from([HUGE, INFINITE, NOT_A_NUMBER, nested(70), nested(5000)])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),  # infinities and NaN included
    st.text(max_size=12),
    st.sampled_from(["", "openai", "ollama", "openai-compatible", "http://127.0.0.1:1/v1", "p95", "a", "b"]),
)
VALUES = st.recursive(
    st.one_of(SCALARS, SPECIAL),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
# Keys: the schema's own (so mutations land on real fields), unknown ones, and (YAML) ones that are not text.
KEYS = st.one_of(
    st.sampled_from(
        [
            "id",
            "provider",
            "modelName",
            "maxTokens",
            "temperature",
            "contextWindow",
            "costPer1kTokens",
            "options",
            "deployments",
            "timeouts",
            "deadline",
            "weight",
            "taskName",
            "primaryModelId",
            "fallbackModelIds",
            "budget",
            "limit",
            "hedge",
            "after",
            "max_tokens",
        ]
    ),
    st.text(max_size=8),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[Any, Any]:
    """A valid registry, then up to four mutations, each somewhere in it."""
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "gpt-4o"]), min_size=1, max_size=3, unique=True))
    models: list[Any] = [model(i) for i in ids]
    if draw(st.booleans()):
        models[0]["deployments"] = [{"id": "one", "weight": 2}, {"id": "two", "apiKeyEnv": "FUZZ_KEY"}]
    tasks: list[Any] = [
        {"taskName": f"t{k}", "primaryModelId": ids[0], "fallbackModelIds": ids[1:]}
        for k in range(draw(st.integers(0, 2)))
    ]
    doc: dict[Any, Any] = {"models": models, "taskMappings": tasks, "defaultModelId": ids[-1]}
    for _ in range(draw(st.integers(0, 4))):
        containers = list(_containers(doc))
        target = draw(st.sampled_from(containers))
        if isinstance(target, list):
            if len(target) > 0 and draw(st.booleans()):
                target[draw(st.integers(0, len(target) - 1))] = draw(VALUES)
            else:
                target.append(draw(VALUES))
        elif len(target) > 0 and draw(st.booleans()):
            key = draw(st.sampled_from(list(target)))
            if draw(st.booleans()):
                del target[key]  # a missing key
            else:
                target[key] = draw(VALUES)  # a wrong type, a huge number, an infinity, deep nesting...
        else:
            target[draw(KEYS)] = draw(VALUES)  # an unknown key, or one that is not text
    return doc


def _containers(value: Any) -> Iterator[Any]:
    if isinstance(value, (dict, list)):
        yield value
        for inner in value.values() if isinstance(value, dict) else value:
            yield from _containers(inner)


# --- writers: shallow documents (depth comes in Raw text), so plain recursion ------------------------


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return value.json
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    if isinstance(value, float) and value != value:  # noqa: PLR0124 - NaN, which json.dumps writes as NaN
        return "NaN"
    return json.dumps(value)


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a YAML double-quoted string reads JSON's escapes
    if value is None:
        return "~"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}.get(repr(value), repr(value))
    return repr(value)


def to_yaml(value: Any) -> str:
    if isinstance(value, Raw):
        return value.yaml
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_scalar(k)}: {to_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_yaml(v) for v in value) + "]"
    return _yaml_scalar(value)


def _toml_scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string reads JSON's escapes (a lone surrogate is refused)
    if value is None:
        return '""'  # TOML has no null
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)  # inf, nan, 1e+100 are TOML floats too


def _toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return value.toml
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_scalar(value)


def to_toml(value: Any) -> str:
    if not isinstance(value, dict):
        return f"value = {_toml_value(value)}\n"
    return "".join(f"{json.dumps(str(k))} = {_toml_value(v)}\n" for k, v in value.items())


WRITERS: dict[str, Callable[[Any], str]] = {".json": to_json, ".yaml": to_yaml, ".toml": to_toml}


# --- the property ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory with no .env, and no TASKMODELS_ variable in the environment, for every example."""
    directory = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith("TASKMODELS_"):
                patch.delenv(name)
        patch.chdir(directory)
        yield directory


def loads_or_refuses(path: Path) -> None:
    """Loading returns a registry or raises RegistryError; nothing else escapes."""
    refused: RegistryError | None = None
    try:
        load_registry([path])
    except RegistryError as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused, ConfigurationError)
        assert refused.problems, "a RegistryError names at least one problem"
        assert all(p.source == str(path) for p in refused.problems)


def validates(path: Path) -> None:
    """`taskmodels validate PATH`, in-process: exit 0 or 1, and a report, never a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    printed = out.getvalue() + err.getvalue()
    assert code in {0, 1}, printed
    assert "Traceback" not in printed
    assert str(path) in printed


def write(directory: Path, suffix: str, content: str | bytes) -> Path:
    path = directory / f"registry{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


@settings(max_examples=1200)
@given(doc=documents(), suffix=st.sampled_from(FORMATS))
def test_a_mutated_registry_loads_or_raises_registry_error(workdir: Path, doc: dict[Any, Any], suffix: str) -> None:
    loads_or_refuses(write(workdir, suffix, WRITERS[suffix](doc)))


@settings(max_examples=600)
@given(content=st.one_of(st.text(), st.binary()), suffix=st.sampled_from(FORMATS))
def test_any_text_or_bytes_load_or_raise_registry_error(workdir: Path, content: str | bytes, suffix: str) -> None:
    loads_or_refuses(write(workdir, suffix, content))


@settings(max_examples=400)
@given(
    content=st.one_of(documents(), st.text(), st.binary()),
    suffix=st.sampled_from(FORMATS),
)
def test_validate_exits_0_or_1_without_a_traceback(workdir: Path, content: Any, suffix: str) -> None:
    text = content if isinstance(content, (str, bytes)) else WRITERS[suffix](content)
    path = write(workdir, suffix, text)
    loads_or_refuses(path)
    validates(path)
