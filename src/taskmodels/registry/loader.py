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
import json
import re
import tomllib
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from taskmodels.errors import Problem
from taskmodels.registry.schema import ModelConfig, RegistryConfig, TaskMapping

__all__ = ["LoadResult", "Merged", "load_layers", "merge_layers", "read_layer", "validate_merged"]

_MODELS = "models"
_TASKS = "taskMappings"
# Suggesting a close model id is O(number of ids) per unknown reference; beyond this many
# ids the suggestion is skipped so a large registry with many typos still loads fast.
_SUGGEST_LIMIT = 5000


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
_DIGITS = re.compile(r"(\d+)")

_MODEL_KEYS = _spellings(ModelConfig)
_TASK_KEYS = _spellings(TaskMapping)
_TOP_KEYS = _spellings(RegistryConfig)


# --- reading -------------------------------------------------------------------------


def read_layer(path: Path) -> tuple[Any, list[Problem]]:
    """Parse one file by its suffix; a problem instead of an exception when it cannot be read."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(source, "", "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(source, "", f"cannot read file: {exc}")]
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return tomllib.loads(text), []
        except tomllib.TOMLDecodeError as exc:
            return None, [Problem(source, "", f"invalid TOML: {exc}")]
    if suffix in {".yaml", ".yml"}:
        return _read_yaml(source, text)
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [Problem(source, "", f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")]


def _read_yaml(source: str, text: str) -> tuple[Any, list[Problem]]:
    try:
        import yaml
    except ImportError:
        return None, [Problem(source, "", "YAML registries need PyYAML: pip install 'taskmodels[yaml]'")]
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(source, "", f"invalid YAML: {problem}{where}")]


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


def merge_layers(layers: Sequence[tuple[str, Any]]) -> Merged:
    """Merge parsed documents in order: the first is the base, the rest overlay it."""
    merged = Merged(sources=tuple(source for source, _ in layers))
    for number, (source, data) in enumerate(layers):
        if data is None:
            continue  # unreadable: its problem was reported by read_layer
        if not isinstance(data, Mapping):
            merged.problems.append(Problem(source, "", "the registry must be an object with 'models'"))
            continue
        _merge_one(merged, source, data, overlay=number > 0)
    return merged


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


def _merge_list(
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
    problems: Sequence[Problem] = (),
) -> LoadResult:
    """Merge and validate parsed layers; ``problems`` are earlier ones (e.g. unreadable files) to report too."""
    merged = merge_layers(layers)
    merged.problems[:0] = problems
    return validate_merged(merged, provider_names=provider_names)


def validate_merged(merged: Merged, *, provider_names: Collection[str] | None = None) -> LoadResult:
    v = _Validator(merged, provider_names)
    return v.run()


class _Validator:
    def __init__(self, merged: Merged, provider_names: Collection[str] | None) -> None:
        self.m = merged
        self.providers = None if provider_names is None else frozenset(provider_names)
        self.errors: list[Problem] = list(merged.problems)
        self.warnings: list[Problem] = []
        self.base = merged.sources[0] if merged.sources else "<registry>"

    def error(self, where: tuple[str, str], message: str) -> None:
        self.errors.append(Problem(where[0], where[1], message))

    def warn(self, where: tuple[str, str], message: str) -> None:
        self.warnings.append(Problem(where[0], where[1], message, severity="warning"))

    def run(self) -> LoadResult:
        m = self.m
        top = self._check_top()
        models = self._elements(_MODELS, ModelConfig, m.models)
        tasks = self._elements(_TASKS, TaskMapping, m.tasks)
        model_index = self._check_model_ids()
        valid_models: dict[str, ModelConfig] = {}
        for model in models:
            if model is not None:
                valid_models.setdefault(model.id, model)
        # Without a usable model list every reference would be "unknown": say it once, not per reference.
        refs = m.models_seen and not any(p.path == m.models_key for p in m.problems)
        self._check_tasks(model_index, valid_models, check_refs=refs)
        default_id = top.get("default_model_id")
        if refs and isinstance(default_id, str) and default_id.strip() and default_id.strip() not in model_index:
            key = _find_key(m.top, "default_model_id", _TOP_KEYS) or "defaultModelId"
            self.error((m.top_origins[key], key), self._unknown_model(default_id.strip(), model_index))
        config = None
        if not self.errors and isinstance(default_id, str):
            config = RegistryConfig.model_construct(
                models=tuple(x for x in models if x is not None),
                task_mappings=tuple(x for x in tasks if x is not None),
                default_model_id=default_id.strip(),
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
                self.error((source, key), _unknown_key(key, RegistryConfig))
            elif name == "default_model_id":
                if not isinstance(value, str) or not value.strip():
                    self.error((source, key), f"must be a non-empty string (got {value!r})")
                out[name] = value
            elif name == "schema_":
                if value is not None and not isinstance(value, str):
                    self.error((source, key), f"must be a string (got {_type_name(value)})")
                out[name] = value
        # A file that could not be read at all says nothing about which keys it lacks.
        if not any(p.path == "" for p in m.problems):
            if not m.models_seen:
                self.error((self.base, ""), "missing required key 'models'")
            if "default_model_id" not in out:
                self.error((self.base, ""), "missing required key 'defaultModelId'")
        return out

    # one element at a time, so one bad entry does not hide problems in the others

    def _elements(self, section: str, cls: type[_T], items: list[Any]) -> list[_T | None]:
        out: list[_T | None] = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                self.error(self.m.where(section, i), f"must be an object, not {_type_name(item)}")
                out.append(None)
                continue
            try:
                out.append(cls.model_validate(item))
            except ValidationError as exc:
                out.append(None)
                for err in exc.errors(include_url=False):
                    self._field_error(section, i, cls, err["loc"], err)
        return out

    def _field_error(self, section: str, i: int, cls: type[BaseModel], loc: tuple[int | str, ...], err: Any) -> None:
        if not loc:
            self.error(self.m.where(section, i), str(err["msg"]))
            return
        head, rest = str(loc[0]), "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        where = self.m.where(section, i, head, rest)
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(cls, loc[:-1])
            self.error(where, _unknown_key(str(loc[-1]), owner))
        elif kind == "missing":
            self.error(where, f"missing required key '{loc[-1]}'")
        else:
            message = str(err["msg"])
            if message.startswith("Input should be"):
                message = "must be" + message[len("Input should be") :]
            value = err.get("input")
            if isinstance(value, (int, float, str, bool)) or value is None:
                message += f" (got {value!r})"
            self.error(where, message)

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
                    known = ", ".join(sorted(self.providers))
                    self.error(
                        self.m.where(_MODELS, i, p_key),
                        f"no provider implementation named {provider.strip()!r} (known: {known})",
                    )
        return first

    def _unknown_model(self, ref: str, model_index: Mapping[str, int]) -> str:
        message = f"unknown model {ref!r}"
        if len(model_index) <= _SUGGEST_LIMIT:
            close = difflib.get_close_matches(ref, model_index.keys(), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        return message

    def _check_tasks(
        self, model_index: Mapping[str, int], valid: Mapping[str, ModelConfig], *, check_refs: bool
    ) -> None:
        first: dict[str, int] = {}
        for i, item in enumerate(self.m.tasks):
            if not isinstance(item, Mapping):
                continue
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
                self.error(self.m.where(_TASKS, i, primary_key), self._unknown_model(primary, model_index))
            fb_key = _find_key(item, "fallback_model_ids", _TASK_KEYS)
            fallbacks = item.get(fb_key) if fb_key is not None else None
            if fb_key is None or not isinstance(fallbacks, list):
                continue
            seen: dict[str, int] = {}
            for k, raw in enumerate(fallbacks):
                if not isinstance(raw, str) or not raw.strip():
                    continue  # reported by the field validation
                ref = raw.strip()
                where = self.m.where(_TASKS, i, fb_key, f"[{k}]")
                if ref not in model_index:
                    self.error(where, self._unknown_model(ref, model_index))
                elif ref == primary:
                    self.error(where, f"model {ref!r} is already this task's primary model")
                elif ref in seen:
                    self.error(where, f"model {ref!r} appears twice in the chain (also at {fb_key}[{seen[ref]}])")
                else:
                    self._compare(where, valid.get(primary) if primary else None, valid.get(ref))
                seen.setdefault(ref, k)

    def _compare(self, where: tuple[str, str], primary: ModelConfig | None, fallback: ModelConfig | None) -> None:
        if primary is None or fallback is None:
            return
        if fallback.context_window < primary.context_window:
            self.warn(
                where,
                f"fallback {fallback.id!r} has a smaller context window ({fallback.context_window}) "
                f"than the primary {primary.id!r} ({primary.context_window})",
            )
        missing = [c for c in primary.capabilities if c not in fallback.capabilities]
        if missing:
            self.warn(
                where,
                f"fallback {fallback.id!r} lacks capabilities the primary {primary.id!r} has: {', '.join(missing)}",
            )


def _in_file_order(problems: list[Problem], sources: Sequence[str]) -> tuple[Problem, ...]:
    """Sorted by file, then by path with indexes compared as numbers, so a report reads top to bottom."""
    rank = {source: i for i, source in enumerate(sources)}

    def key(p: Problem) -> tuple[int, list[str | int]]:
        parts: list[str | int] = [int(t) if i % 2 else t for i, t in enumerate(_DIGITS.split(p.path))]
        return rank.get(p.source, -1), parts

    return tuple(sorted(problems, key=key))


def _unknown_key(key: str, owner: type[BaseModel] | None) -> str:
    message = f"unknown key {key!r}"
    if owner is not None:
        preferred = _preferred(owner)
        candidates = {spelling: preferred[name] for spelling, name in _spellings(owner).items()}
        close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.7)
        if not close:
            lowered = {c.lower().replace("_", ""): c for c in candidates}
            hit = lowered.get(key.lower().replace("_", "").replace("-", ""))
            close = [hit] if hit else []
        if close:
            message += f"; did you mean {candidates[close[0]]!r}?"
    return message


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
