"""Reading registry files, merging environment overlays, and validating the result.

Files are JSON (always), TOML (``.toml``, via :mod:`tomllib`) or YAML (``.yaml``/``.yml``,
when PyYAML is installed). Every problem is collected, never just the first, and each
names the file, a JSON path such as ``taskMappings[2].fallbackModelIds[0]`` written
with the key spelling the file used, and a message.

Overlay merge rules (``modelRegistry.json`` then ``modelRegistry.<environment>.json``):

- ``models`` merge by ``id``. An overlay entry whose ``id`` exists replaces just the
  keys it lists on that model (a shallow merge: a listed ``capabilities`` or
  ``options`` replaces the whole value, it is not merged item by item). An entry with
  a new ``id`` is appended.
- ``taskMappings`` merge by ``taskName`` the same way: listing ``fallbackModelIds``
  replaces the whole chain.
- ``defaultModelId`` (and any other top-level key) is replaced when the overlay has it.
- A key may be spelled camelCase or snake_case in either file; the overlay's value wins
  whichever spelling each file used.

Problems in the merged result name the file (and that file's index) each value came
from, so an error in an overlaid key points into the overlay.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import sys
import tomllib
import types
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from taskmodels.errors import Problem
from taskmodels.registry.schema import ModelConfig, RegistryConfig, TaskMapping
from taskmodels.registry.suggest import SUGGESTED, IdSuggester

__all__ = [
    "LoadResult",
    "Merged",
    "field_message",
    "load_layers",
    "merge_layers",
    "read_layer",
    "shape_problem",
    "shown",
    "validate_merged",
]

_MODELS = "models"
_TASKS = "taskMappings"
# Providers with no default endpoint: a model of theirs needs a baseUrl, or one from settings.
_NEEDS_BASE_URL = frozenset({"openai-compatible"})
# The providers reasoningEffort is mapped for: providers/reasoning.py's MAPPED_PROVIDERS (a test keeps them
# equal; the registry does not import the HTTP side).
REASONING_PROVIDERS = frozenset({"openai", "azure-openai", "openai-compatible", "anthropic", "gemini"})
# A registry is a handful of levels deep (registry, models, a model, its options, a value in them); a file
# nested deeper is no registry, and code that walks values recursively (equality on reload, a request body's
# JSON) must never meet depth enough to exhaust the stack.
MAX_DEPTH = 64
# YAML aliases share one value between many places; code that walks the document sees every copy. A file
# whose aliases multiply it past this many values, and tenfold what is written, is refused ("billion laughs").
MAX_EXPANDED_VALUES = 1_000_000


def _spellings(cls: type[BaseModel]) -> dict[str, str]:
    """Every accepted key spelling -> the field name."""
    out: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        out[name] = name
        if info.alias:
            out[info.alias] = name
    return out


def _preferred(cls: type[BaseModel]) -> dict[str, str]:
    """Field name -> the spelling the documentation uses (the alias when there is one)."""
    return {name: info.alias or name for name, info in cls.model_fields.items()}


_T = TypeVar("_T", bound=BaseModel)
_YAML_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_DIGITS = re.compile(r"(\d+)")

_MODEL_KEYS = _spellings(ModelConfig)
_TASK_KEYS = _spellings(TaskMapping)
_TOP_KEYS = _spellings(RegistryConfig)


# --- reading -------------------------------------------------------------------------


def read_layer(path: Path) -> tuple[Any, list[Problem]]:  # noqa: PLR0911 - one return per way a file can fail to decode
    """Parse one file by its suffix; problems instead of an exception when it cannot be read.

    The data comes back even when there are problems that do not stop the parse (a key
    given twice in one object), so that the rest of the file is still checked.
    """
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem(source, "", "file not found")]
    except OSError as exc:
        return None, [Problem(source, "", f"cannot read file: {exc.strerror or exc}")]
    text, problem = _decode(raw)
    if problem is not None:
        return None, [Problem(source, "", problem)]
    if not text.strip():
        return None, [Problem(source, "", "the file is empty")]
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return tomllib.loads(text), []  # TOML itself refuses a key given twice
        except tomllib.TOMLDecodeError as exc:
            return None, [Problem(source, "", f"invalid TOML: {exc}")]
        except ValueError as exc:  # tomllib converts integers itself, past Python's digit limit
            return None, [Problem(source, "", f"invalid TOML: {_long_number(text) or exc}")]
        except RecursionError:
            return None, [Problem(source, "", "invalid TOML: nested too deeply")]
    if suffix in {".yaml", ".yml"}:
        return _read_yaml(source, text)
    return _read_json(source, text)


def _decode(raw: bytes) -> tuple[str, str | None]:
    """The text of a UTF-8 file (a byte-order mark is dropped), or why it is not one, by line and column."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "", "the file is UTF-16 encoded; save it as UTF-8"
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        start = exc.start
        line_start = raw.rfind(b"\n", 0, start) + 1
        # Everything before the bad byte decoded, so the column counts characters, as editors do.
        column = len(raw[line_start:start].decode("utf-8-sig", errors="replace")) + 1
        line = raw.count(b"\n", 0, start) + 1
        return "", f"not valid UTF-8 at line {line}, column {column} (byte 0x{raw[start]:02x}); save the file as UTF-8"


# A run of decimal digits (TOML allows '_' between them) that is a whole number: not part of a float.
_WHOLE_NUMBER = re.compile(r"(?<![0-9_.])[0-9](?:_?[0-9])*(?![0-9_.eE])")


def _long_number(text: str) -> str | None:
    """Where ``text`` has a whole number longer than Python converts (``sys.get_int_max_str_digits``), said by
    line and column; None when it has none. Readers raise a bare ValueError for one, with no position."""
    limit = sys.get_int_max_str_digits()
    if not limit:
        return None
    for match in _WHOLE_NUMBER.finditer(text):
        digits = len(match.group()) - match.group().count("_")
        if digits > limit:
            line, column = _line_column(text, match.start())
            return f"a whole number of {digits:,} digits (line {line}, column {column}); at most {limit:,} are read"
    return None


def _line_column(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


# (key, message) for each noted key of one object, by id(object): a key given twice, or (YAML) not a string.
_Notes = dict[int, list[tuple[str, str]]]


def _read_json(source: str, text: str) -> tuple[Any, list[Problem]]:
    # json keeps the last of two equal keys in one object; note each such object to report it by path.
    notes: _Notes = {}
    keep: list[object] = []  # an object noted stays alive, so its id cannot be reused by another

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                if id(obj) not in notes:
                    keep.append(obj)
                notes.setdefault(id(obj), []).append((key, _twice(key, "")))
            obj[key] = value
        return obj

    def constant(name: str) -> float:
        # Python's json reads NaN and Infinity; JSON has neither, and an infinite price would pass ">= 0".
        raise _NotJson(name)

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        return None, [Problem(source, "", f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")]
    except _NotJson as exc:
        return None, [Problem(source, "", f"invalid JSON: {exc} is not a JSON value; write a number")]
    except ValueError as exc:  # json's int() of a number past Python's digit limit
        return None, [Problem(source, "", f"invalid JSON: {_long_number(text) or exc}")]
    except RecursionError:
        return None, [Problem(source, "", "invalid JSON: nested too deeply")]
    return data, _noted_problems(source, data, notes)


def _twice(key: str, where: str) -> str:
    return f"duplicate key {key!r}{where}: only its last value would count, so give it once"


def _noted_problems(source: str, data: Any, notes: _Notes) -> list[Problem]:
    """One problem per noted key, located by JSON path. Each object is visited once, without recursion: the
    data may still be nested too deeply or (YAML) contain itself, which the merge reports."""
    if not notes:
        return []
    problems: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[Any, str, str]] = [(data, "", "")]
    while stack:
        node, path, subject = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: list[tuple[Any, str, str]] = []
        if isinstance(node, dict):
            for key, message in notes.get(id(node), ()):
                problems.append(Problem(source, f"{path}.{key}" if path else key, message + subject))
            children = [(value, f"{path}.{key}" if path else str(key), subject) for key, value in node.items()]
        elif isinstance(node, list):
            section = _TOP_KEYS.get(path)
            for i, item in enumerate(node):
                named = subject
                if section == "models":
                    named = _subject("model", _ident(item, "id", _MODEL_KEYS))
                elif section == "task_mappings":
                    named = _subject("task", _ident(item, "task_name", _TASK_KEYS))
                children.append((item, f"{path}[{i}]", named))
        stack.extend(reversed(children))  # in file order
    return problems


def _read_yaml(source: str, text: str) -> tuple[Any, list[Problem]]:
    try:
        import yaml
    except ImportError:
        return None, [Problem(source, "", "YAML registries need PyYAML: pip install 'taskmodels[yaml]'")]

    loader = None
    try:
        loader = _yaml_loader()(text)  # its reader refuses non-printable characters at once
        data = loader.get_single_data()
    except yaml.reader.ReaderError as exc:  # a character YAML refuses; its message says where in two lines
        line, column = _line_column(text, exc.position)
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason} (line {line}, column {column})"
        return None, [Problem(source, "", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(source, "", f"invalid YAML: {problem}{where}")]
    except RecursionError:
        return None, [Problem(source, "", "invalid YAML: nested too deeply")]
    finally:
        if loader is not None:
            loader.dispose()
    return data, _noted_problems(source, data, loader.notes)


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader (no arbitrary objects), built once PyYAML is known to be there, that:

    - notes a key given twice in one mapping (PyYAML keeps the last);
    - drops, noting it, a key that is not text (``1:``, ``~:``, ``yes:``): no part of a registry has one;
    - turns a value an explicit tag cannot build (``!!int abc``, a number past Python's digit limit) into a
      located YAML error, where PyYAML raises a bare ValueError or KeyError;
    - reads ``1e-5`` as a number.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.notes: _Notes = {}
            self.keep: list[object] = []  # as for JSON: a noted mapping stays alive so its id stays its own
            self.depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            # PyYAML's scanner slows quadratically with nesting (a second for 1,000 brackets) before its
            # composer's recursion fails: stop at the depth no registry reaches (+1: a scalar below the deepest
            # object or list allowed; that object's own depth the shape check reports, with its path).
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH + 1:
                    mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # untyped in the stubs
                    raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    Loader.add_constructor("tag:yaml.org,2002:map", _yaml_mapping)
    for kind in ("int", "float", "bool", "timestamp"):
        Loader.add_constructor(f"tag:yaml.org,2002:{kind}", _yaml_scalar(kind))
    # PyYAML follows YAML 1.1, where 1e-5 (no dot) is a string; YAML 1.2 and JSON call it a number, and a
    # strict loader would refuse the string, so read it as the number the author meant.
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML_EXPONENT, list("-+0123456789"))
    return Loader


def _yaml_mapping(loader: Any, node: Any) -> Iterator[dict[Any, Any]]:
    import yaml

    if not isinstance(node, yaml.MappingNode):  # an explicit !!map on a scalar or a list
        raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
    data: dict[Any, Any] = {}
    yield data

    def note(key: str, message: str) -> None:
        if id(data) not in loader.notes:
            loader.keep.append(data)
        loader.notes.setdefault(id(data), []).append((key, message))

    seen: set[str] = set()
    for key_node, _ in node.value:  # before merge keys ('<<') are expanded: those may repeat keys
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # a list or mapping as a key is unhashable: PyYAML refuses it, located
        mark = key_node.start_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})"
        if key_node.tag != "tag:yaml.org,2002:str":
            kind = key_node.tag.rsplit(":", 1)[-1]
            note(key_node.value, f"key {key_node.value!r}{where} is read as {kind}, not text; quote it")
        elif key_node.value in seen:
            note(key_node.value, _twice(key_node.value, where))
        else:
            seen.add(key_node.value)
    data.update(loader.construct_mapping(node))
    for key in [k for k in data if not isinstance(k, str)]:
        del data[key]


def _yaml_scalar(kind: str) -> Any:
    import yaml

    tag = f"tag:yaml.org,2002:{kind}"
    builtin = yaml.SafeLoader.yaml_constructors[tag]

    def construct(loader: Any, node: Any) -> Any:
        try:
            return builtin(loader, node)
        except (ValueError, KeyError, AttributeError, OverflowError):  # an explicit tag on a value not of it
            problem = _unreadable_scalar(kind, str(node.value))
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    return construct


def _unreadable_scalar(kind: str, value: str) -> str:
    """Why PyYAML could not build a scalar: a whole number past Python's digit limit, or a value that is not
    of the type an explicit tag (``!!int abc``) names."""
    digits = value.replace("_", "").lstrip("+-")
    limit = sys.get_int_max_str_digits()
    if kind == "int" and digits.isdecimal() and limit and len(digits) > limit:
        return f"a whole number of {len(digits):,} digits; at most {limit:,} are read"
    return f"{shown(value)} is not a valid {kind}"


class _NotJson(ValueError):  # noqa: N818 - a private signal, not an error a caller sees
    """A constant Python's json accepts and JSON does not (NaN, Infinity)."""


def _subject(kind: str, name: str | None) -> str:
    """`` (task 'clustering')``: added to a problem inside a named element, so a long file need not be counted."""
    return f" ({kind} {name!r})" if name else ""


# --- merging -------------------------------------------------------------------------


@dataclass(slots=True)
class _Origin:
    """Where one list element came from, and where each overlaid key of it came from."""

    source: str
    index: int
    keys: dict[str, tuple[str, int]] | None = None


@dataclass(slots=True)
class Merged:
    """Layers merged into one registry document, remembering where each part came from."""

    sources: tuple[str, ...]
    top: dict[str, Any] = field(default_factory=dict)
    top_origins: dict[str, str] = field(default_factory=dict)
    models: list[Any] = field(default_factory=list)
    model_origins: list[_Origin] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)
    task_origins: list[_Origin] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    models_key: str = _MODELS
    models_seen: bool = False
    tasks_key: str = _TASKS
    unreadable: bool = False  # a layer could not be used at all: what it lacks is not known

    def where(self, section: str, i: int, key: str | None = None, rest: str = "") -> tuple[str, str]:
        """(file, JSON path) of element ``i`` of ``section``, or of one of its keys."""
        origin = (self.model_origins if section == _MODELS else self.task_origins)[i]
        source, index = origin.source, origin.index
        if key is not None and origin.keys and key in origin.keys:
            source, index = origin.keys[key]
        name = self.models_key if section == _MODELS else self.tasks_key
        path = f"{name}[{index}]"
        if key is not None:
            path += f".{key}"
        return source, path + rest


def _find_key(data: Mapping[str, Any], field_name: str, spellings: Mapping[str, str]) -> str | None:
    for key in data:
        if spellings.get(key) == field_name:
            return key
    return None


def merge_layers(layers: Sequence[tuple[str, Any]], problems: Sequence[Problem] = ()) -> Merged:
    """Merge parsed documents in order: the first is the base, the rest overlay it. ``problems`` are those found
    reading them; a layer that is None with no problem of its own was read and holds nothing (null, comments)."""
    merged = Merged(sources=tuple(source for source, _ in layers), problems=list(problems))
    for number, (source, data) in enumerate(layers):
        problem = None
        if data is None:
            if not any(p.source == source for p in problems):
                problem = Problem(source, "", "the registry must be an object with 'models'")
        elif isinstance(data, Mapping):
            problem = shape_problem(source, data)
        else:
            problem = Problem(source, "", "the registry must be an object with 'models'")
        if problem is not None:
            merged.problems.append(problem)
        if data is None or problem is not None:
            merged.unreadable = True
            continue
        _merge_one(merged, source, data, overlay=number > 0)
    return merged


# One step of a JSON path, linked to its parent's, so a path is written out only when it is reported.
_Path = tuple["_Path", str] | None


_SHOWN_STEPS = 4  # a problem too deep down is located by the first steps of its path, not by 64 of them


def _path_text(path: _Path, steps: int | None = None) -> str:
    parts: list[str] = []
    while path is not None:
        path, part = path
        parts.append(part)
    parts.reverse()
    text = "".join(parts[:steps])
    return text.removeprefix(".")


def shape_problem(source: str, data: Any) -> Problem | None:
    """Why a parsed document cannot be walked safely, or None: nesting deeper than ``MAX_DEPTH``, a value
    that contains itself, a string that is not text, or (YAML aliases) more than ``MAX_EXPANDED_VALUES`` values
    once every alias is expanded.

    One pass without recursion. Each object is visited once however many aliases share it, and measured
    from below once its members are: its height, and how many values it stands for once expanded.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (height, values once expanded)
    entered: set[int] = set()
    written = 0  # values as the file writes them: each object once
    # (value, its depth, its path, its members once entered: then it is finished when popped again)
    stack: list[tuple[Any, int, _Path, list[tuple[str, Any, Any]] | None]] = [(data, 1, None, None)]
    while stack:
        node, depth, path, members = stack.pop()
        if members is not None:
            measured[id(node)] = _measure(members, measured)
            written += 1 + sum(1 for _, _, value in members if not isinstance(value, (dict, list)))
            continue
        height = measured[id(node)][0] if id(node) in measured else 1  # met again through an alias: known
        if depth + height - 1 > MAX_DEPTH:
            return Problem(source, _path_text(path, _SHOWN_STEPS), f"nested more than {MAX_DEPTH} levels deep")
        if id(node) in measured:
            continue
        if id(node) in entered:  # entered, not finished: we came back to it from inside it
            return Problem(source, _path_text(path), "this value contains itself (a YAML alias inside its anchor)")
        entered.add(id(node))
        members = _members(node)
        stack.append((node, depth, path, members))
        if (problem := _not_text(source, path, members)) is not None:
            return problem
        stack.extend((value, depth + 1, (path, step), None) for step, _, value in reversed(members) if _nests(value))
    expanded = measured[id(data)][1]
    if expanded > MAX_EXPANDED_VALUES and expanded > 10 * written:
        return Problem(
            source,
            "",
            f"aliases expand {written:,} values to {expanded:,} (more than {MAX_EXPANDED_VALUES:,}): "
            "write the repeated parts out, or alias fewer of them",
        )
    return None


def _measure(members: list[tuple[str, Any, Any]], measured: Mapping[int, tuple[int, int]]) -> tuple[int, int]:
    """(height, values once expanded) of an object or list whose members are measured already."""
    height, size = 1, 1
    for _, _, value in members:
        value_height, value_size = measured.get(id(value), (0, 1))  # a scalar: no height, one value
        height, size = max(height, value_height + 1), size + value_size
    return height, size


_SURROGATE = re.compile("[\\ud800-\\udfff]")


def _not_text(source: str, path: _Path, members: list[tuple[str, Any, Any]]) -> Problem | None:
    r"""The first key or string value holding JSON's ``\ud800`` escape: Python keeps it, but cannot write it
    out as UTF-8, so printing it (``taskmodels plan``) would fail."""
    for step, key, value in members:
        for text in (key, value):
            if isinstance(text, str) and not text.isascii() and _SURROGATE.search(text) is not None:
                where = _path_text(path if text is key else (path, step))
                what = "key " if text is key else ""
                return Problem(source, where, f"{what}{shown(text)} is not text: an unpaired \\u escape")
    return None


def _nests(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _members(node: Any) -> list[tuple[str, Any, Any]]:
    """(path step, key or None, value) of each member of an object or a list; nothing for other values."""
    if isinstance(node, dict):
        return [(f".{key}", key, value) for key, value in node.items()]
    if isinstance(node, list):
        return [(f"[{i}]", None, item) for i, item in enumerate(node)]
    return []


def _merge_one(merged: Merged, source: str, data: Mapping[str, Any], *, overlay: bool) -> None:
    for key, value in data.items():
        name = _TOP_KEYS.get(key)
        if name == "models":
            merged.models_seen = True
            if not overlay:
                merged.models_key = key
            _merge_list(merged, _MODELS, source, key, value, id_field="id", spellings=_MODEL_KEYS, overlay=overlay)
        elif name == "task_mappings":
            if not overlay:
                merged.tasks_key = key
            _merge_list(merged, _TASKS, source, key, value, id_field="task_name", spellings=_TASK_KEYS, overlay=overlay)
        else:
            if name is not None and (old := _find_key(merged.top, name, _TOP_KEYS)) is not None and old != key:
                del merged.top[old]
                del merged.top_origins[old]
            merged.top[key] = value
            merged.top_origins[key] = source


def _merge_list(  # noqa: C901 - overlay merge rules: by id, by name, replace, delete
    merged: Merged,
    section: str,
    source: str,
    key: str,
    value: Any,
    *,
    id_field: str,
    spellings: Mapping[str, str],
    overlay: bool,
) -> None:
    items = merged.models if section == _MODELS else merged.tasks
    origins = merged.model_origins if section == _MODELS else merged.task_origins
    if not isinstance(value, list):
        merged.problems.append(Problem(source, key, f"must be a list, not {_type_name(value)}"))
        return
    if not overlay:
        items.extend(value)
        origins.extend(_Origin(source, i) for i in range(len(value)))
        return
    by_id: dict[str, int] = {}
    for i, item in enumerate(items):
        ident = _ident(item, id_field, spellings)
        if ident is not None:
            by_id.setdefault(ident, i)
    seen_here: dict[str, int] = {}
    for j, entry in enumerate(value):
        ident = _ident(entry, id_field, spellings)
        if ident is not None and ident in seen_here:
            label = "model id" if section == _MODELS else "task name"
            merged.problems.append(
                Problem(
                    source,
                    f"{key}[{j}]",
                    f"duplicate {label} {ident!r} in this overlay (also at {key}[{seen_here[ident]}])",
                )
            )
            continue
        target = by_id.get(ident) if ident is not None else None
        if ident is not None:
            seen_here[ident] = j
        if target is None or not isinstance(entry, Mapping):
            items.append(entry)
            origins.append(_Origin(source, j))
            continue
        base = dict(items[target])
        origin = origins[target]
        keys = dict(origin.keys or {})
        for k, v in entry.items():
            name = spellings.get(k)
            if name is not None and (old := _find_key(base, name, spellings)) is not None and old != k:
                del base[old]
            base[k] = v
            keys[k] = (source, j)
        items[target] = base
        origins[target] = _Origin(origin.source, origin.index, keys)


def _ident(item: Any, id_field: str, spellings: Mapping[str, str]) -> str | None:
    if not isinstance(item, Mapping):
        return None
    key = _find_key(item, id_field, spellings)
    value = item.get(key) if key is not None else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def shown(value: Any) -> str:
    """``repr(value)`` short enough for a message: a long string is cut, a long whole number counted."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        try:
            return f"a number of {len(str(abs(value))):,} digits"
        except ValueError:  # past Python's digit limit: a dict built in code can hold one
            return f"a number of over {sys.get_int_max_str_digits():,} digits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


# --- validation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadResult:
    """A validated registry (``config`` is None when there are errors), its errors and warnings."""

    config: RegistryConfig | None
    sources: tuple[str, ...]
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]


def load_layers(
    layers: Sequence[tuple[str, Any]],
    *,
    provider_names: Collection[str] | None = None,
    providers_with_base_url: Collection[str] | None = None,
    problems: Sequence[Problem] = (),
) -> LoadResult:
    """Merge and validate parsed layers; ``problems`` are earlier ones (e.g. unreadable files) to report too.

    ``providers_with_base_url`` names the providers whose settings give an endpoint; see
    :func:`validate_merged`.
    """
    merged = merge_layers(layers, problems)
    return validate_merged(merged, provider_names=provider_names, providers_with_base_url=providers_with_base_url)


def validate_merged(
    merged: Merged,
    *,
    provider_names: Collection[str] | None = None,
    providers_with_base_url: Collection[str] | None = None,
) -> LoadResult:
    """Validate a merged registry.

    ``provider_names``: the registered implementations (None: any provider name passes).
    ``providers_with_base_url``: the providers whose settings give an endpoint. A model
    of a provider with no default endpoint (``openai-compatible``) and no ``baseUrl``
    is an error when its provider is not among them, and a warning when they are not
    known (None), since the endpoint may still come from settings.
    """
    v = _Validator(merged, provider_names, providers_with_base_url)
    return v.run()


class _Validator:
    def __init__(
        self,
        merged: Merged,
        provider_names: Collection[str] | None,
        providers_with_base_url: Collection[str] | None,
    ) -> None:
        self.m = merged
        self.providers = None if provider_names is None else frozenset(provider_names)
        self.with_base_url = None if providers_with_base_url is None else frozenset(providers_with_base_url)
        self.errors: list[Problem] = list(merged.problems)
        self.warnings: list[Problem] = []
        self.base = merged.sources[0] if merged.sources else "<registry>"
        self.model_index: dict[str, int] = {}
        self.suggester: IdSuggester | None = None  # built at the first unknown reference
        self.first_declined: int | None = None  # index in errors of the first unknown reference not suggested for

    def error(self, where: tuple[str, str], message: str) -> None:
        self.errors.append(Problem(where[0], where[1], message))

    def warn(self, where: tuple[str, str], message: str) -> None:
        self.warnings.append(Problem(where[0], where[1], message, severity="warning"))

    def subject(self, section: str, i: int) -> str:
        """`` (model 'x')`` or `` (task 'y')`` for element ``i``, when it has a usable id."""
        if section == _MODELS:
            return _subject("model", _ident(self.m.models[i], "id", _MODEL_KEYS))
        return _subject("task", _ident(self.m.tasks[i], "task_name", _TASK_KEYS))

    def run(self) -> LoadResult:
        m = self.m
        top = self._check_top()
        models = self._elements(_MODELS, ModelConfig, m.models, _MODEL_KEYS)
        tasks = self._elements(_TASKS, TaskMapping, m.tasks, _TASK_KEYS)
        model_index = self.model_index = self._check_model_ids()
        self._check_models(models)
        valid_models: dict[str, ModelConfig] = {}
        for model in models:
            if model is not None:
                valid_models.setdefault(model.id, model)
        # Without a usable model list every reference would be "unknown": say it once, not per reference.
        refs = m.models_seen and not any(p.path == m.models_key for p in m.problems)
        default_id = top.get("default_model_id")
        default = default_id.strip() if isinstance(default_id, str) and default_id.strip() else None
        # The default first: its key comes before the task list in a report, and so does its suggestion.
        if refs and default is not None and default not in model_index:
            key = _find_key(m.top, "default_model_id", _TOP_KEYS) or "defaultModelId"
            self._unknown_model((m.top_origins[key], key), default)
        self._check_tasks(model_index, valid_models, tasks, default, check_refs=refs)
        self._count_declined()
        config = None
        if not self.errors and default is not None:
            config = RegistryConfig.model_construct(
                models=tuple(x for x in models if x is not None),
                task_mappings=tuple(x for x in tasks if x is not None),
                default_model_id=default,
                schema_=top.get("schema_"),
            )
        return LoadResult(
            config, m.sources, _in_file_order(self.errors, m.sources), _in_file_order(self.warnings, m.sources)
        )

    # top level

    def _check_top(self) -> dict[str, Any]:
        m = self.m
        out: dict[str, Any] = {}
        for key, value in m.top.items():
            source = m.top_origins[key]
            name = _TOP_KEYS.get(key)
            if name is None:
                self.error((source, str(key)), _unknown_key(key, RegistryConfig))
            elif name == "default_model_id":
                if not isinstance(value, str) or not value.strip():
                    self.error((source, key), f"must be a non-empty string (got {shown(value)})")
                out[name] = value
            elif name == "schema_":
                if value is not None and not isinstance(value, str):
                    self.error((source, key), f"must be a string (got {_type_name(value)})")
                out[name] = value
        # A file that could not be read at all says nothing about which keys it lacks.
        if not m.unreadable and not any(p.path == "" for p in m.problems):
            if not m.models_seen:
                self.error((self.base, ""), "missing required key 'models'")
            if "default_model_id" not in out:
                self.error((self.base, ""), "missing required key 'defaultModelId'")
        return out

    # one element at a time, so one bad entry does not hide problems in the others

    def _elements(self, section: str, cls: type[_T], items: list[Any], spellings: Mapping[str, str]) -> list[_T | None]:
        out: list[_T | None] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                self.error(self.m.where(section, i), f"must be an object, not {_type_name(item)}")
                out.append(None)
                continue
            subject = self.subject(section, i)
            twice = self._same_key_twice(section, i, item, spellings, subject)
            try:
                out.append(None if twice else cls.model_validate(item))
            except ValidationError as exc:
                out.append(None)
                errors = exc.errors(include_url=False)
                meant = _meant_keys(cls, errors)
                for err in errors:
                    if err["type"] == "missing" and _field_at(cls, err["loc"]) in meant:
                        continue  # the misspelled key is reported, with this one as its suggestion
                    self._field_error(section, i, cls, err, subject=subject)
        return out

    def _same_key_twice(
        self, section: str, i: int, item: Mapping[str, Any], spellings: Mapping[str, str], subject: str
    ) -> bool:
        """``maxTokens`` and ``max_tokens`` in one object: one would silently win, so neither is taken."""
        first: dict[str, str] = {}
        found = False
        for key in item:
            name = spellings.get(key)
            if name is None:
                continue
            if name in first:
                found = True
                other = first[name]
                self.error(
                    self.m.where(section, i, key),
                    f"{other!r} and {key!r} are two spellings of one key; give it once{subject}",
                )
            else:
                first[name] = key
        return found

    def _field_error(self, section: str, i: int, cls: type[BaseModel], err: Any, *, subject: str) -> None:
        loc: tuple[int | str, ...] = err["loc"]
        if not loc:
            self.error(self.m.where(section, i), str(err["msg"]) + subject)
            return
        head, rest = str(loc[0]), "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        self.error(self.m.where(section, i, head, rest), field_message(cls, err) + subject)

    # cross-element checks, on the raw data so an invalid entry's id still counts

    def _check_model_ids(self) -> dict[str, int]:
        first: dict[str, int] = {}
        for i, item in enumerate(self.m.models):
            if not isinstance(item, Mapping):
                continue
            id_key = _find_key(item, "id", _MODEL_KEYS)
            ident = _ident(item, "id", _MODEL_KEYS)
            if ident is not None and id_key is not None:
                if ident in first:
                    _, other = self.m.where(_MODELS, first[ident])
                    self.error(self.m.where(_MODELS, i, id_key), f"duplicate model id {ident!r} (also at {other})")
                else:
                    first[ident] = i
            if self.providers is not None:
                p_key = _find_key(item, "provider", _MODEL_KEYS)
                provider = item.get(p_key) if p_key is not None else None
                if isinstance(provider, str) and provider.strip() and provider.strip() not in self.providers:
                    self.error(
                        self.m.where(_MODELS, i, p_key),
                        self._unknown_provider(provider.strip()) + self.subject(_MODELS, i),
                    )
        return first

    def _check_models(self, models: Sequence[ModelConfig | None]) -> None:
        """What each valid model's keys say together: a window with room for a prompt, an endpoint."""
        for i, model in enumerate(models):
            if model is None:
                continue
            subject = _subject("model", model.id)
            self._check_reasoning(i, model, subject)
            if model.context_window <= model.max_tokens:
                key = _find_key(self.m.models[i], "context_window", _MODEL_KEYS)
                self.error(
                    self.m.where(_MODELS, i, key),
                    f"contextWindow ({model.context_window}) must be larger than maxTokens ({model.max_tokens}): "
                    f"the prompt and the answer share the window, so this model could never be selected{subject}",
                )
            if model.deployments:
                self._check_deployments(i, model, subject)
            if model.base_url is None and model.provider in _NEEDS_BASE_URL and not model.deployments:
                variable = f"TASKMODELS_PROVIDERS__{model.provider.upper().replace('-', '_')}__BASE_URL"
                where = self.m.where(_MODELS, i, "baseUrl")
                if self.with_base_url is None:
                    self.warn(
                        where,
                        f"this {model.provider} model needs an endpoint: set baseUrl, or {variable}, "
                        f"or its calls fail{subject}",
                    )
                elif model.provider not in self.with_base_url:
                    self.error(
                        where,
                        f"this {model.provider} model needs an endpoint: set baseUrl "
                        f"(e.g. http://127.0.0.1:8080/v1) or {variable}{subject}",
                    )

    def _check_reasoning(self, i: int, model: ModelConfig, subject: str) -> None:
        """Settings of a reasoning model that will not reach it are reported, not silently dropped."""
        if "temperature" in model.unsupported_parameters and model.temperature != 1.0:
            key = _find_key(self.m.models[i], "temperature", _MODEL_KEYS)
            self.warn(
                self.m.where(_MODELS, i, key),
                f"temperature {model.temperature:g} is never sent: unsupportedParameters names temperature{subject}",
            )
        if model.reasoning_effort is not None and model.provider not in REASONING_PROVIDERS:
            key = _find_key(self.m.models[i], "reasoning_effort", _MODEL_KEYS)
            self.warn(
                self.m.where(_MODELS, i, key),
                f"reasoningEffort is not mapped for provider {model.provider!r} and is not sent "
                f"(mapped: {', '.join(sorted(REASONING_PROVIDERS))}){subject}",
            )

    def _check_deployments(self, i: int, model: ModelConfig, subject: str) -> None:
        """Deployment ids unique within the model, each deployment's provider known and given an endpoint."""
        key = _find_key(self.m.models[i], "deployments", _MODEL_KEYS) or "deployments"
        first: dict[str, int] = {}
        for k, deployment in enumerate(model.deployments):
            if deployment.id in first:
                self.error(
                    self.m.where(_MODELS, i, key, f"[{k}].id"),
                    f"duplicate deployment id {deployment.id!r} (also at {key}[{first[deployment.id]}]){subject}",
                )
            first.setdefault(deployment.id, k)
            provider = deployment.provider or model.provider
            if deployment.provider is not None and self.providers is not None and provider not in self.providers:
                self.error(self.m.where(_MODELS, i, key, f"[{k}].provider"), self._unknown_provider(provider) + subject)
            has_url = deployment.base_url is not None or model.base_url is not None
            if (
                not has_url
                and provider in _NEEDS_BASE_URL
                and (self.with_base_url is not None and provider not in self.with_base_url)
            ):
                self.error(
                    self.m.where(_MODELS, i, key, f"[{k}].baseUrl"),
                    f"this {provider} deployment needs an endpoint: set baseUrl (on it or on the model){subject}",
                )

    def _unknown_provider(self, provider: str) -> str:
        """A provider name no implementation has, with the closest one (``OpenAI``, ``openai_compatible``)."""
        known = sorted(self.providers or ())
        # Case and separators first (OpenAI, openai_compatible); a close spelling only when really close: provider
        # names are short, and difflib's usual 0.6 takes 'nope' for 'openai'.
        normal = {name.casefold().replace("_", "-"): name for name in known}
        close = normal.get(provider.casefold().replace("_", "-"))
        if close is None:
            found = difflib.get_close_matches(provider.casefold(), known, n=1, cutoff=0.8)
            close = found[0] if found else None
        hint = f"; did you mean {close!r}?" if close is not None else ""
        return f"no provider implementation named {provider!r}{hint} (known: {', '.join(known)})"

    def _unknown_model(self, where: tuple[str, str], ref: str, subject: str = "") -> None:
        """An unknown reference, with the closest known id when there is one (see ``suggest.py``)."""
        if self.suggester is None:
            self.suggester = IdSuggester(self.model_index)
        declined = self.suggester.declined
        close = self.suggester.suggest(ref)
        if self.suggester.declined > declined and self.first_declined is None:
            self.first_declined = len(self.errors)
        message = f"unknown model {ref!r}"
        if close is not None:
            message += f"; did you mean {close!r}?"
        self.error(where, message + subject)

    def _count_declined(self) -> None:
        """Say, at the first unknown reference given no suggestion, that suggestions stopped and for how many."""
        if self.suggester is None or self.first_declined is None:
            return
        first = self.errors[self.first_declined]
        note = (
            f" (did-you-mean stops after {SUGGESTED} unknown ids: "
            f"{self.suggester.declined:,} unknown id{'s' if self.suggester.declined != 1 else ''} without one)"
        )
        self.errors[self.first_declined] = Problem(first.source, first.path, first.message + note, first.severity)

    def _check_tasks(  # noqa: C901, PLR0912 - one check per task rule, each locating its problem
        self,
        model_index: Mapping[str, int],
        valid: Mapping[str, ModelConfig],
        tasks: Sequence[TaskMapping | None],
        default: str | None,
        *,
        check_refs: bool,
    ) -> None:
        first: dict[str, int] = {}
        for i, item in enumerate(self.m.tasks):
            if not isinstance(item, Mapping):
                continue
            subject = self.subject(_TASKS, i)
            name_key = _find_key(item, "task_name", _TASK_KEYS)
            name = _ident(item, "task_name", _TASK_KEYS)
            if name is not None and name_key is not None:
                if name in first:
                    _, other = self.m.where(_TASKS, first[name])
                    self.error(self.m.where(_TASKS, i, name_key), f"duplicate task name {name!r} (also at {other})")
                else:
                    first[name] = i
            primary_key = _find_key(item, "primary_model_id", _TASK_KEYS)
            primary = item.get(primary_key) if primary_key is not None else None
            primary = primary.strip() if isinstance(primary, str) and primary.strip() else None
            if not check_refs:
                continue
            if primary is not None and primary_key is not None and primary not in model_index:
                self._unknown_model(self.m.where(_TASKS, i, primary_key), primary, subject)
            fb_key = _find_key(item, "fallback_model_ids", _TASK_KEYS)
            fallbacks = item.get(fb_key) if fb_key is not None else None
            if fb_key is not None and isinstance(fallbacks, list):
                seen: dict[str, int] = {}
                for k, raw in enumerate(fallbacks):
                    if not isinstance(raw, str) or not raw.strip():
                        continue  # reported by the field validation
                    ref = raw.strip()
                    where = self.m.where(_TASKS, i, fb_key, f"[{k}]")
                    if ref not in model_index:
                        self._unknown_model(where, ref, subject)
                    elif ref == primary:
                        self.error(where, f"model {ref!r} is already this task's primary model{subject}")
                    elif ref in seen:
                        self.error(
                            where, f"model {ref!r} appears twice in the chain (also at {fb_key}[{seen[ref]}]){subject}"
                        )
                    else:
                        self._compare(where, valid.get(primary) if primary else None, valid.get(ref), subject)
                    seen.setdefault(ref, k)
            task = tasks[i]
            if task is not None and task.required_capabilities:
                self._check_capabilities(i, task, valid, default, subject)

    def _check_capabilities(
        self, i: int, task: TaskMapping, valid: Mapping[str, ModelConfig], default: str | None, subject: str
    ) -> None:
        """A task whose every model lacks a required capability could never be served."""
        ids = [task.primary_model_id, *task.fallback_model_ids]
        if default is not None:
            ids.append(default)
        chain = [valid.get(x) for x in dict.fromkeys(ids)]
        if default is None or any(model is None for model in chain):
            return  # a broken reference is reported already; the chain is not known
        required = set(task.required_capabilities)
        gaps = []
        for model in chain:
            assert model is not None
            missing = sorted(required.difference(model.capabilities))
            if not missing:
                return
            gaps.append(f"{model.id!r} lacks {', '.join(missing)}")
        key = _find_key(self.m.tasks[i], "required_capabilities", _TASK_KEYS)
        self.error(
            self.m.where(_TASKS, i, key),
            f"no model of the chain (primary, fallbacks, default) has every required capability: "
            f"{'; '.join(gaps)}{subject}",
        )

    def _compare(
        self, where: tuple[str, str], primary: ModelConfig | None, fallback: ModelConfig | None, subject: str
    ) -> None:
        if primary is None or fallback is None:
            return
        if fallback.context_window < primary.context_window:
            self.warn(
                where,
                f"fallback {fallback.id!r} has a smaller context window ({fallback.context_window}) "
                f"than the primary {primary.id!r} ({primary.context_window}){subject}",
            )
        has = frozenset(fallback.capabilities)
        missing = [c for c in primary.capabilities if c not in has]
        if missing:
            self.warn(
                where,
                f"fallback {fallback.id!r} lacks capabilities the primary {primary.id!r} has: "
                f"{', '.join(missing)}{subject}",
            )


def _in_file_order(problems: list[Problem], sources: Sequence[str]) -> tuple[Problem, ...]:
    """Sorted by file, then by path with indexes compared as numbers, so a report reads top to bottom."""
    rank = {source: i for i, source in enumerate(sources)}

    def key(p: Problem) -> tuple[int, list[str | int]]:
        parts: list[str | int] = [int(t) if i % 2 else t for i, t in enumerate(_DIGITS.split(p.path))]
        return rank.get(p.source, -1), parts

    return tuple(sorted(problems, key=key))


def field_message(cls: type[BaseModel], err: Any) -> str:
    """What the loader says of one pydantic error (an item of ``ValidationError.errors()``) met validating ``cls``:
    an unknown key with its did-you-mean, a missing key, a value with what was given. The error's ``loc`` says
    where; this is the message only, so a file of another shape (the gateway's keys) reports as the registry does."""
    loc: tuple[int | str, ...] = err["loc"]
    kind = err["type"]
    if kind == "extra_forbidden" and loc:
        return _unknown_key(str(loc[-1]), _model_at(cls, loc[:-1]))
    if kind == "missing" and loc:
        return f"missing required key '{loc[-1]}'"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    message = str(err["msg"])
    for start in ("Input should", "String should"):
        if message.startswith(start):
            message = "must" + message[len(start) :]
    value = err.get("input")
    if isinstance(value, (int, float, str, bool)) or value is None:
        message += f" (got {shown(value)})"
    return message


def _unknown_key(key: object, owner: type[BaseModel] | None) -> str:
    if not isinstance(key, str):  # a dict built in code; a YAML file's are dropped and noted when read
        return f"key {shown(key)} is not a string"
    message = f"unknown key {key!r}"
    meant = _meant_field(key, owner) if owner is not None else None
    if owner is not None and meant is not None:
        message += f"; did you mean {_preferred(owner)[meant]!r}?"
    return message


def _meant_field(key: str, owner: type[BaseModel]) -> str | None:
    """The field of ``owner`` an unknown ``key`` was probably meant to be, by its name."""
    candidates = _spellings(owner)
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.7)
    if not close:
        lowered = {c.lower().replace("_", ""): c for c in candidates}
        hit = lowered.get(key.lower().replace("_", "").replace("-", ""))
        close = [hit] if hit else []
    return candidates[close[0]] if close else None


def _meant_keys(cls: type[BaseModel], errors: Sequence[Any]) -> set[tuple[tuple[int | str, ...], str]]:
    """(where, field) of each field an unknown key among ``errors`` is taken for: the misspelling of a required
    key is one problem (the unknown key, with its suggestion), not also a missing key."""
    meant: set[tuple[tuple[int | str, ...], str]] = set()
    for err in errors:
        loc: tuple[int | str, ...] = err["loc"]
        if err["type"] != "extra_forbidden" or not loc or not isinstance(loc[-1], str):
            continue
        owner = _model_at(cls, loc[:-1])
        field = _meant_field(loc[-1], owner) if owner is not None else None
        if field is not None:
            meant.add((loc[:-1], field))
    return meant


def _field_at(cls: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], str] | None:
    """(where, field) of the key at ``loc``, however it is spelled there."""
    owner = _model_at(cls, loc[:-1]) if loc else None
    if owner is None or not isinstance(loc[-1], str):
        return None
    field = _spellings(owner).get(loc[-1])
    return None if field is None else (loc[:-1], field)


def _model_at(cls: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at ``loc`` inside ``cls`` (for nested sections)."""
    current: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        spellings = _spellings(current)
        name = spellings.get(part)
        if name is None:
            return None
        current = _model_in(current.model_fields[name].annotation)
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType or origin in (tuple, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
