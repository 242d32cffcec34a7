"""The gateway's keys file: read and validated as the registry is, written atomically, reloaded on change.

The file is JSON (or YAML, ``.yaml``/``.yml``, with PyYAML; read-only TOML, ``.toml``)::

    {
      "keys": [
        {"name": "search-app", "sha256": "<64 hex digits>", "tasks": ["summarize"], "rpm": 60, "tpm": 50000,
         "budget": {"limit": 5.0, "windowSeconds": 86400}, "expires": "2027-01-31T00:00:00Z"},
        {"name": "batch", "sha256": "<64 hex digits>", "disabled": true}
      ]
    }

Every problem is collected and located (``keys[2].budget.limit``), with the registry's readers (a key given twice
in one object is an error, not a silent overwrite), its messages and its did-you-mean for unknown keys; a task
the registry does not map is a warning naming the closest one. Nothing a problem says repeats what was written
in ``sha256``: a key pasted there by mistake reaches no log.

``KeysFile`` holds the current ``KeyRing`` and swaps in a new one when the file changes (its modification time
or size, polled as the registry's are); a file that stops being valid keeps the last good ring, with one error
logged per version of the file. ``edit_keys`` changes the file under a lock and replaces it in one rename, so a
gateway reading it never sees half a file, and two ``taskmodels keys`` commands never lose each other's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import ValidationError

from taskmodels.errors import ConfigurationError, Problem
from taskmodels.gateway.keys import (
    KEY_PREFIX,
    NAME_PATTERN,
    KeyBudget,
    KeyRing,
    KeysConfig,
    VirtualKey,
    key_digest,
    new_key,
    utc_now,
)
from taskmodels.log import library_logger
from taskmodels.registry.loader import field_message, read_layer, shape_problem
from taskmodels.registry.suggest import IdSuggester

__all__ = [
    "KeysFile",
    "KeysFileError",
    "KeysLoad",
    "add_key",
    "check_keys_file",
    "edit_keys",
    "keys_json_schema",
    "load_keys",
    "set_disabled",
]

_log = library_logger("gateway")
_KEYS = "keys"
_SHAPE = "the keys file must be an object with a list of 'keys'"


class KeysFileError(ConfigurationError):
    """A keys file that cannot be used. ``problems`` lists every error found, each located in the file."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source or (self.problems[0].source if self.problems else "<keys>")
        count = len(self.problems)
        lines = [f"{self.source}: {count} problem{'s' if count != 1 else ''} in the keys file"]
        lines.extend(f"  {p.path or '(file)'}: {p.message}" for p in self.problems)
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class KeysLoad:
    """A checked keys file: its ``config`` (``None`` when there are errors), errors and warnings."""

    source: str
    config: KeysConfig | None
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]

    def ring(self) -> KeyRing:
        """The keys, ready for lookups; ``KeysFileError`` with every problem when the file has errors."""
        if self.config is None or self.errors:
            raise KeysFileError(self.errors, self.source)
        return KeyRing(self.config.keys, content_hash=content_hash(self.config), sources=(self.source,))


def keys_json_schema() -> dict[str, Any]:
    """The JSON Schema of the keys file, for editors (``"$schema"``)."""
    schema = KeysConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "taskmodels gateway keys"
    return schema


def content_hash(config: KeysConfig) -> str:
    """SHA-256 of the keys as validated, in one canonical JSON form: the same keys give the same hash however
    the file is laid out, so replicas can be seen to have converged after a reload."""
    data = config.model_dump(mode="json", by_alias=True, exclude={"schema_"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_keys_file(path: Path | str, *, tasks: Collection[str] | None = None) -> KeysLoad:
    """Read and validate a keys file; every problem, without raising. ``tasks``: the registry's task names, to
    warn about a key naming a task it does not map (``None``: not checked)."""
    path = Path(path)
    data, problems = read_layer(path)
    return validate_keys(str(path), data, problems, tasks=tasks)


def load_keys(path: Path | str, *, tasks: Collection[str] | None = None) -> KeyRing:
    """The keys of the file at ``path``; ``KeysFileError`` with every problem when it is not valid."""
    return check_keys_file(path, tasks=tasks).ring()


def validate_keys(
    source: str, data: Any, problems: Sequence[Problem] = (), *, tasks: Collection[str] | None = None
) -> KeysLoad:
    """Validate a parsed keys document (``problems``: those found reading it)."""
    errors = list(problems)
    warnings: list[Problem] = []
    if data is None or not isinstance(data, Mapping):
        if not errors:
            errors.append(Problem(source, "", _SHAPE))
        return KeysLoad(source, None, tuple(errors), ())
    shape = shape_problem(source, data)
    if shape is not None:
        return KeysLoad(source, None, (*errors, shape), ())
    items = _check_top(source, data, errors)
    keys = [_check_key(source, i, item, errors) for i, item in enumerate(items)]
    _check_unique(source, items, errors)
    if tasks is not None:
        _check_tasks(source, keys, frozenset(tasks), warnings)
    config = None
    if not errors:
        config = KeysConfig.model_construct(keys=tuple(k for k in keys if k is not None), schema_=data.get("$schema"))
    return KeysLoad(source, config, tuple(errors), tuple(warnings))


def _check_top(source: str, data: Mapping[str, Any], errors: list[Problem]) -> list[Any]:
    for key, value in data.items():
        if key == "$schema":
            if value is not None and not isinstance(value, str):
                errors.append(Problem(source, key, "must be a string"))
        elif key != _KEYS:
            errors.append(Problem(source, str(key), field_message(KeysConfig, _extra(key))))
    items = data.get(_KEYS, [])
    if not isinstance(items, list):
        errors.append(Problem(source, _KEYS, f"must be a list of keys (got {type(items).__name__})"))
        return []
    return items


def _extra(key: object) -> dict[str, Any]:
    # An unknown key, in the shape of pydantic's error, so it is reported with the registry's did-you-mean.
    return {"type": "extra_forbidden", "loc": (str(key),), "msg": "", "input": None}


def _check_key(source: str, i: int, item: Any, errors: list[Problem]) -> VirtualKey | None:
    where = f"{_KEYS}[{i}]"
    if not isinstance(item, Mapping):
        errors.append(Problem(source, where, f"must be an object, not {type(item).__name__}"))
        return None
    name = item.get("name")
    subject = f" (key {name!r})" if _valid_name(name) else ""
    try:
        return VirtualKey.model_validate(item)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = err["loc"]
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            errors.append(Problem(source, where + path, field_message(VirtualKey, err) + subject))
        return None


def _valid_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` is one a message may repeat: a valid name, never a key pasted there by mistake."""
    return (
        isinstance(name, str)
        and bool(re.fullmatch(NAME_PATTERN, name.strip()))
        and not name.strip().startswith(KEY_PREFIX)
    )


def _check_unique(source: str, items: Sequence[Any], errors: list[Problem]) -> None:
    """No name twice (it is the key's identity in logs, metrics and budgets), no key under two names."""
    names: dict[str, int] = {}
    digests: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        name, digest = item.get("name"), item.get("sha256")
        if _valid_name(name):
            first = names.setdefault(name.strip(), i)
            if first != i:
                errors.append(
                    Problem(source, f"{_KEYS}[{i}].name", f"duplicate name {name.strip()!r} (also at keys[{first}])")
                )
        if isinstance(digest, str) and digest.strip():
            first = digests.setdefault(digest.strip(), i)
            if first != i:
                errors.append(
                    Problem(source, f"{_KEYS}[{i}].sha256", f"the same key as keys[{first}]: one key, one name")
                )


def _check_tasks(
    source: str, keys: Sequence[VirtualKey | None], known: frozenset[str], warnings: list[Problem]
) -> None:
    suggester: IdSuggester | None = None
    for i, key in enumerate(keys):
        if key is None or key.tasks == "*":
            continue
        for k, task in enumerate(key.tasks):
            if task in known:
                continue
            suggester = suggester or IdSuggester(sorted(known))
            close = suggester.suggest(task)
            hint = f"; did you mean {close!r}?" if close else ""
            warnings.append(
                Problem(
                    source,
                    f"{_KEYS}[{i}].tasks[{k}]",
                    f"the registry maps no task {task!r}: the key cannot call it{hint} (key {key.name!r})",
                    severity="warning",
                )
            )


# --- writing ---------------------------------------------------------------------------------------------------


def dump_keys(config: KeysConfig, suffix: str) -> str:
    """The file's text for ``config``, in the format its suffix names (JSON, or YAML)."""
    return _render(_document(config), suffix)


def _document(config: KeysConfig) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if config.schema_ is not None:
        data["$schema"] = config.schema_
    data[_KEYS] = [_key_document(key) for key in config.keys]
    return data


def _render(document: Mapping[str, Any], suffix: str) -> str:
    if suffix in {".yaml", ".yml"}:
        import yaml

        return str(yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _key_document(key: VirtualKey) -> dict[str, Any]:
    """One key as the file writes it: what is set, in the schema's order; ``tasks`` always, so it can be read."""
    data = key.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not key.disabled:
        del data["disabled"]
    budget = data.get("budget")
    if budget is not None:  # 86400, not 86400.0: as a person writes it
        data["budget"] = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in budget.items()}
    return data


def edit_keys(
    path: Path | str, change: Callable[[KeysConfig], KeysConfig], *, tasks: Collection[str] | None = None
) -> tuple[KeysConfig, KeysLoad]:
    """Apply ``change`` to the keys file at ``path`` and write the result: under a lock on its directory (two
    editors never lose each other's change), through a temporary file renamed over it (a reader sees the old file
    or the new one, never half of either). A file that does not exist yet starts empty. ``KeysFileError`` when
    the file is not valid now, or ``change`` made it invalid: nothing is written then. Returns the new config and
    its check (for its warnings)."""
    path = Path(path)
    if path.suffix.lower() == ".toml":
        raise KeysFileError([Problem(str(path), "", "taskmodels writes JSON or YAML keys files, not TOML")])
    with _locked(path.parent if str(path.parent) else Path()):
        if path.exists():
            current = check_keys_file(path)
            if current.config is None or current.errors:
                raise KeysFileError(current.errors, str(path))
            config = current.config
        else:
            config = KeysConfig()
        new = change(config)
        document = _document(new)
        checked = validate_keys(str(path), document, tasks=tasks)  # as the gateway will read it back
        if checked.errors:
            raise KeysFileError(checked.errors, str(path))
        write_atomically(path, _render(document, path.suffix.lower()))
    return new, checked


def add_key(
    path: Path | str,
    name: str,
    *,
    tasks: Sequence[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    budget: KeyBudget | Mapping[str, Any] | None = None,
    expires: datetime | None = None,
    description: str | None = None,
) -> str:
    """Make a key named ``name`` in the keys file at ``path`` (made if need be) and return it: the only time it is
    seen, since the file keeps its SHA-256 alone. ``tasks``: the tasks it may call (``None``: every task);
    ``budget``: ``{"limit": USD, "windowSeconds": N}``. ``KeysFileError``, nothing written, when ``name`` is taken
    or a value is refused (located as the file's check locates it)."""
    key = new_key()
    fields: dict[str, Any] = {"name": name, "sha256": key_digest(key), "tasks": list(tasks) if tasks else "*"}
    extra = {"rpm": rpm, "tpm": tpm, "budget": budget, "expires": expires, "description": description}
    fields.update({k: v for k, v in extra.items() if v is not None}, created=utc_now())
    source = str(path)

    def change(config: KeysConfig) -> KeysConfig:
        where = f"{_KEYS}[{len(config.keys)}]"
        for i, other in enumerate(config.keys):
            if other.name == name:
                message = f"a key named {name!r} exists already (at keys[{i}]): disable it, or choose another name"
                raise KeysFileError([Problem(source, f"{where}.name", message)], source)
        try:
            entry = VirtualKey.model_validate(fields)
        except ValidationError as exc:
            problems = [
                Problem(source, where + "".join(f".{p}" for p in err["loc"]), field_message(VirtualKey, err))
                for err in exc.errors(include_url=False)
            ]
            raise KeysFileError(problems, source) from None
        return config.model_copy(update={"keys": (*config.keys, entry)})

    edit_keys(path, change)
    return key


def set_disabled(path: Path | str, name: str, disabled: bool = True) -> None:
    """Disable (or enable again) the key named ``name``: refused from the next reload on, kept in the file.
    ``KeysFileError`` naming the closest name when there is none such."""
    source = str(path)

    def change(config: KeysConfig) -> KeysConfig:
        names = [k.name for k in config.keys]
        if name not in names:
            close = IdSuggester(names).suggest(name) if names else None
            hint = f"; did you mean {close!r}?" if close else ""
            raise KeysFileError([Problem(source, _KEYS, f"no key named {name!r}{hint}")], source)
        keys = tuple(k.model_copy(update={"disabled": disabled}) if k.name == name else k for k in config.keys)
        return config.model_copy(update={"keys": keys})

    edit_keys(path, change)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one rename, flushed to disk first; its permissions are kept."""
    directory = path.parent if str(path.parent) else Path()
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself made durable, where the platform allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (POSIX ``flock``; elsewhere, none) while the block runs."""
    try:
        import fcntl
    except ImportError:  # Windows: the rename is still atomic; concurrent editors are the operator's to avoid
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# --- the current keys, reloaded on change ---------------------------------------------------------------------

_Stamp = tuple[int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class KeysFile:
    """The current keys of one file; ``reload_if_changed`` (or ``watch``) swaps in a new ring when it changed.

    ``tasks``, when given, returns the registry's task names at each load, for the warning about unknown ones.
    """

    def __init__(self, path: Path | str, *, tasks: Callable[[], Collection[str]] | None = None) -> None:
        self.path = Path(path)
        self._tasks = tasks
        self._lock = threading.Lock()
        self._stamp = _stamp(self.path)  # before reading: a write during the read is seen as a change later
        load = check_keys_file(self.path, tasks=tasks() if tasks is not None else None)
        self._current = load.ring()
        self.failed: tuple[Problem, ...] = ()  # the problems of the file on disk while the last good ring serves
        self._warn(load)

    @property
    def current(self) -> KeyRing:
        return self._current

    def changed(self) -> bool:
        return _stamp(self.path) != self._stamp

    def reload_if_changed(self) -> bool:
        """Reload when the file changed; a new ring swapped in: True. An invalid file keeps the current ring and
        logs its problems once (the next change is looked at again)."""
        if not self.changed():
            return False
        with self._lock:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return False
            self._stamp = stamp  # remembered even when invalid, so the error is logged once per version
            load = check_keys_file(self.path, tasks=self._tasks() if self._tasks is not None else None)
            try:
                ring = load.ring()
            except KeysFileError as exc:
                self.failed = exc.problems
                _log.error(
                    "taskmodels.gateway.keys_reload_failed",
                    source=str(self.path),
                    problems=[str(p) for p in exc.problems],
                    kept="previous keys",
                    keys=len(self._current.keys),
                )
                return False
            self._current, self.failed = ring, ()
        self._warn(load)
        _log.info(
            "taskmodels.gateway.keys_reloaded",
            source=str(self.path),
            keys=len(ring.keys),
            content_hash=ring.content_hash,
        )
        return True

    async def watch(self, interval: float = 2.0, *, stop: asyncio.Event | None = None) -> None:
        """Poll the file every ``interval`` seconds and reload on change, until ``stop`` is set or cancelled."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await asyncio.to_thread(self.reload_if_changed)  # stat and parse are blocking I/O
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    def _warn(self, load: KeysLoad) -> None:
        if load.warnings:
            _log.warning(
                "taskmodels.gateway.keys_warnings", source=str(self.path), warnings=[str(w) for w in load.warnings]
            )
