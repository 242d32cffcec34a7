"""The keys file: every problem located as the registry's are, no key ever repeated in a message, written atomically
under a lock, reloaded on change keeping the last good keys."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from taskmodels.errors import ConfigurationError
from taskmodels.gateway.keys import KeyBudget, KeysConfig, VirtualKey, key_digest
from taskmodels.gateway.keysfile import (
    KeysFile,
    KeysFileError,
    add_key,
    check_keys_file,
    edit_keys,
    keys_json_schema,
    load_keys,
    set_disabled,
    write_atomically,
)

SENTINEL = "tm-SENTINEL-pasted-by-mistake-0123456789abcdefghij"
D1 = key_digest("tm-one")
D2 = key_digest("tm-two")


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def bump(path: Path) -> None:
    """Move the file's modification time on, so a change is seen even within the clock's resolution."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_valid_file_loads_with_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "keys.json",
        {
            "keys": [
                {
                    "name": "search",
                    "sha256": D1,
                    "tasks": ["summarize"],
                    "rpm": 60,
                    "tpm": 5000,
                    "budget": {"limit": 5, "windowSeconds": 3600},
                    "expires": "2030-01-01T00:00:00Z",
                    "description": "the search team's app",
                },
                {"name": "batch", "sha256": D2, "disabled": True},
            ]
        },
    )
    ring = load_keys(path)
    search, batch = ring.keys
    assert search.name == "search"
    assert search.tasks == ("summarize",)
    assert (search.rpm, search.tpm) == (60, 5000)
    assert search.budget == KeyBudget.model_validate({"limit": 5.0, "windowSeconds": 3600.0})
    assert search.expires is not None
    assert search.expires.timestamp() == 1893456000.0
    assert batch.tasks == "*"
    assert batch.disabled
    assert ring.by_name["batch"] is batch
    assert ring.sources == (str(path),)


def test_the_same_keys_hash_alike_however_the_file_is_written(tmp_path: Path) -> None:
    keys = {"keys": [{"name": "a", "sha256": D1, "rpm": 5, "budget": {"limit": 1}}]}
    as_json = write(tmp_path / "k.json", keys)
    spaced = write(tmp_path / "spaced.json", json.dumps(keys, indent=4))
    as_yaml = write(
        tmp_path / "k.yaml",
        f"keys:\n  - name: a\n    rpm: 5\n    sha256: {D1}\n    budget:\n      limit: 1.0\n",
    )
    hashes = {load_keys(p).content_hash for p in (as_json, spaced, as_yaml)}
    assert len(hashes) == 1
    other = write(tmp_path / "other.json", {"keys": [{"name": "a", "sha256": D1, "rpm": 6, "budget": {"limit": 1}}]})
    assert load_keys(other).content_hash not in hashes


BAD: list[tuple[Any, list[tuple[str, str]]]] = [
    ({"keys": [{"name": "a", "sha256": D1, "rpmm": 5}]}, [("keys[0].rpmm", "unknown key 'rpmm'; did you mean 'rpm'?")]),
    ({"kyes": []}, [("kyes", "unknown key 'kyes'; did you mean 'keys'?")]),
    ({"keys": [{"sha256": D1}]}, [("keys[0].name", "missing required key 'name'")]),
    ({"keys": [{"name": "a"}]}, [("keys[0].sha256", "missing required key 'sha256'")]),
    ({"keys": [{"name": "a", "sha256": D1, "rpm": 0}]}, [("keys[0].rpm", "must be greater than 0 (got 0)")]),
    ({"keys": [{"name": "a", "sha256": D1, "rpm": "60"}]}, [("keys[0].rpm", "must be a valid integer")]),
    ({"keys": [{"name": "a", "sha256": D1, "tpm": 1.5}]}, [("keys[0].tpm", "must be a valid integer")]),
    (
        {"keys": [{"name": "a", "sha256": D1, "budget": {"limit": -1}}]},
        [("keys[0].budget.limit", "must be greater than 0 (got -1)")],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1, "budget": {"limit": 1, "windowSecond": 60}}]},
        [("keys[0].budget.windowSecond", "unknown key 'windowSecond'; did you mean 'windowSeconds'?")],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1, "tasks": []}]},
        [("keys[0].tasks", "lists no task, so the key could call nothing")],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1, "tasks": "all"}]},
        [("keys[0].tasks", 'must be "*" (every task) or a list of task names')],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1, "tasks": ["x", ""]}]},
        [("keys[0].tasks", "tasks[1] must be a task name")],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1, "expires": "2030-01-01"}]},
        [("keys[0].expires", "must be an ISO 8601 time with its zone")],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1, "disabled": "yes"}]},
        [("keys[0].disabled", "must be a valid boolean")],
    ),
    ({"keys": [{"name": "a b", "sha256": D1}]}, [("keys[0].name", "1 to 64 letters, digits")]),
    ({"keys": [{"name": "x" * 65, "sha256": D1}]}, [("keys[0].name", "1 to 64 letters, digits")]),
    ({"keys": [{"name": "a", "sha256": D1.upper()}]}, [("keys[0].sha256", "64 lower-case hex digits")]),
    (
        {"keys": [{"name": "a", "sha256": D1}, {"name": "a", "sha256": D2}]},
        [("keys[1].name", "duplicate name 'a' (also at keys[0])")],
    ),
    (
        {"keys": [{"name": "a", "sha256": D1}, {"name": "b", "sha256": D1}]},
        [("keys[1].sha256", "the same key as keys[0]")],
    ),
    ({"keys": {"name": "a"}}, [("keys", "must be a list of keys")]),
    ({"keys": ["a"]}, [("keys[0]", "must be an object, not str")]),
    ([], [("", "the keys file must be an object with a list of 'keys'")]),
    ("", [("", "the file is empty")]),
    ("{", [("", "invalid JSON")]),
    ('{"keys": [], "keys": []}', [("keys", "duplicate key 'keys'")]),
]


@pytest.mark.parametrize(("data", "expected"), BAD)
def test_every_problem_is_located_and_said(tmp_path: Path, data: Any, expected: list[tuple[str, str]]) -> None:
    load = check_keys_file(write(tmp_path / "keys.json", data))
    assert load.config is None
    found = [(p.path, p.message) for p in load.errors]
    assert len(found) == len(expected), found
    for (path, message), (want_path, want) in zip(found, expected, strict=True):
        assert path == want_path
        assert want in message, message
    with pytest.raises(KeysFileError) as caught:
        load.ring()
    assert isinstance(caught.value, ConfigurationError)
    assert str(tmp_path / "keys.json") in str(caught.value)


def test_all_problems_are_reported_at_once_with_the_key_named(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"keys": [{"name": "a", "sha256": D1, "rpm": 0, "tpm": 0}]})
    with pytest.raises(KeysFileError) as caught:
        load_keys(path)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("keys[0].rpm", "must be greater than 0 (got 0) (key 'a')"),
        ("keys[0].tpm", "must be greater than 0 (got 0) (key 'a')"),
    ]


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    load = check_keys_file(tmp_path / "none.json")
    assert [p.message for p in load.errors] == ["file not found"]


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a", "sha256": SENTINEL},
        {"name": SENTINEL, "sha256": D1},
        {"name": "a", "sha256": [SENTINEL]},
        [{"name": SENTINEL, "sha256": D1}, {"name": SENTINEL, "sha256": D2}],
    ],
)
def test_a_key_pasted_where_its_hash_or_name_goes_is_never_repeated(tmp_path: Path, entry: Any) -> None:
    path = write(tmp_path / "keys.json", {"keys": entry if isinstance(entry, list) else [entry]})
    with pytest.raises(KeysFileError) as caught:
        load_keys(path)
    assert "SENTINEL" not in str(caught.value)
    assert all("SENTINEL" not in p.message for p in caught.value.problems)


def test_a_task_the_registry_does_not_map_is_a_warning_with_the_closest_named(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"keys": [{"name": "a", "sha256": D1, "tasks": ["summarise", "classify"]}]})
    load = check_keys_file(path, tasks=["summarize", "classify"])
    assert not load.errors
    assert [(w.path, w.message, w.severity) for w in load.warnings] == [
        (
            "keys[0].tasks[0]",
            "the registry maps no task 'summarise': the key cannot call it; did you mean 'summarize'? (key 'a')",
            "warning",
        )
    ]
    assert load.ring().keys[0].tasks == ("summarise", "classify")


def test_the_schema_describes_the_file() -> None:
    schema = keys_json_schema()
    key = schema["$defs"]["VirtualKey"]
    assert set(key["properties"]) == {
        "name",
        "sha256",
        "tasks",
        "rpm",
        "tpm",
        "budget",
        "expires",
        "disabled",
        "created",
        "description",
    }
    assert key["required"] == ["name", "sha256"]
    assert schema["$defs"]["KeyBudget"]["properties"]["windowSeconds"]["default"] == 86400.0


# --- writing ---------------------------------------------------------------------------------------------------


def adding(name: str, key: str, **fields: Any) -> Any:
    def change(config: KeysConfig) -> KeysConfig:
        entry = VirtualKey.model_validate({"name": name, "sha256": key_digest(key), **fields})
        return config.model_copy(update={"keys": (*config.keys, entry)})

    return change


def test_editing_creates_the_file_then_keeps_what_it_held(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    edit_keys(path, adding("a", "tm-a", rpm=5, budget={"limit": 2, "windowSeconds": 3600}))
    edit_keys(path, adding("b", "tm-b", tasks=["t"]))
    assert json.loads(path.read_text()) == {
        "keys": [
            {
                "name": "a",
                "sha256": key_digest("tm-a"),
                "tasks": "*",
                "rpm": 5,
                "budget": {"limit": 2, "windowSeconds": 3600},
            },
            {"name": "b", "sha256": key_digest("tm-b"), "tasks": ["t"]},
        ]
    }
    assert [k.name for k in load_keys(path).keys] == ["a", "b"]


def test_editing_a_yaml_file_writes_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.yaml", f"keys:\n  - name: a\n    sha256: {D1}\n")
    edit_keys(path, adding("b", "tm-b"))
    text = path.read_text()
    assert not text.lstrip().startswith("{")
    assert [k.name for k in load_keys(path).keys] == ["a", "b"]


def test_a_change_that_breaks_the_file_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    edit_keys(path, adding("a", "tm-a"))
    before = path.read_bytes()
    with pytest.raises(KeysFileError, match="duplicate name 'a'"):
        edit_keys(path, adding("a", "tm-other"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary file left behind


def test_an_invalid_file_is_not_edited(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"keys": [{"name": "a"}]})
    with pytest.raises(KeysFileError, match="missing required key 'sha256'"):
        edit_keys(path, adding("b", "tm-b"))


def test_toml_is_read_but_never_written(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.toml", f'[[keys]]\nname = "a"\nsha256 = "{D1}"\n')
    assert [k.name for k in load_keys(path).keys] == ["a"]
    with pytest.raises(KeysFileError, match="JSON or YAML"):
        edit_keys(path, adding("b", "tm-b"))


def test_a_rewrite_keeps_the_file_permissions(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"keys": []})
    path.chmod(0o640)
    write_atomically(path, '{"keys": []}\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_concurrent_editors_never_lose_each_others_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            edit_keys(path, adding(f"k{n}", f"tm-{n}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert sorted(k.name for k in load_keys(path).keys) == sorted(f"k{n}" for n in range(12))


# --- reloading -------------------------------------------------------------------------------------------------


def test_a_changed_file_is_reloaded_and_a_bad_one_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"keys": [{"name": "a", "sha256": D1}]})
    keys = KeysFile(path)
    first = keys.current
    assert keys.reload_if_changed() is False

    write(path, {"keys": [{"name": "a", "sha256": D1, "rmp": 1}]})
    bump(path)
    with capture_logs() as logs:
        assert keys.reload_if_changed() is False
        assert keys.reload_if_changed() is False  # the same bad version: one error, not one per poll
    assert keys.current is first
    assert [p.path for p in keys.failed] == ["keys[0].rmp"]
    failures = [e for e in logs if e["event"] == "taskmodels.gateway.keys_reload_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert failures[0]["kept"] == "previous keys"

    write(path, {"keys": [{"name": "a", "sha256": D1}, {"name": "b", "sha256": D2}]})
    bump(path)
    with capture_logs() as logs:
        assert keys.reload_if_changed() is True
    assert [k.name for k in keys.current.keys] == ["a", "b"]
    assert keys.failed == ()
    assert keys.current.content_hash != first.content_hash
    assert [e["event"] for e in logs] == ["taskmodels.gateway.keys_reloaded"]


def test_a_file_that_disappears_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.json", {"keys": [{"name": "a", "sha256": D1}]})
    keys = KeysFile(path)
    path.unlink()
    with capture_logs():
        assert keys.reload_if_changed() is False
    assert keys.current.authenticate("tm-one", 0.0).name == "a"


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="file not found"):
        KeysFile(tmp_path / "none.json")


async def test_watch_reloads_until_stopped(tmp_path: Path) -> None:
    import asyncio

    path = write(tmp_path / "keys.json", {"keys": [{"name": "a", "sha256": D1}]})
    keys = KeysFile(path)
    stop = asyncio.Event()
    watcher = asyncio.create_task(keys.watch(interval=0.01, stop=stop))
    write(path, {"keys": [{"name": "b", "sha256": D2}]})
    bump(path)
    for _ in range(1000):  # bounded poll, not a fixed sleep
        if "b" in keys.current.by_name:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(watcher, timeout=10)
    assert list(keys.current.by_name) == ["b"]


def test_add_key_returns_the_key_once_and_writes_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = add_key(path, "notebook", tasks=["t"], rpm=60, budget={"limit": 5, "windowSeconds": 3600})
    assert key not in path.read_text()
    found = load_keys(path).authenticate(key, 0.0)
    assert (found.name, found.tasks, found.rpm) == ("notebook", ("t",), 60)
    assert found.budget == KeyBudget.model_validate({"limit": 5, "windowSeconds": 3600})
    assert found.created is not None
    with pytest.raises(KeysFileError) as caught:
        add_key(path, "notebook")
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("keys[1].name", "a key named 'notebook' exists already (at keys[0]): disable it, or choose another name")
    ]
    with pytest.raises(KeysFileError) as caught:
        add_key(path, "other", rpm=0)
    assert [(p.path, p.message) for p in caught.value.problems] == [("keys[1].rpm", "must be greater than 0 (got 0)")]
    set_disabled(path, "notebook")
    assert load_keys(path).by_name["notebook"].disabled
    set_disabled(path, "notebook", disabled=False)
    assert not load_keys(path).by_name["notebook"].disabled
    with pytest.raises(KeysFileError, match="no key named 'notebok'; did you mean 'notebook'"):
        set_disabled(path, "notebok")
