"""``taskmodels keys``: make, list, disable and enable the gateway's virtual keys.

    taskmodels keys add search-app --tasks summarize,classify --rpm 60 --budget 5/day --expires 90d
    taskmodels keys list
    taskmodels keys disable search-app
    taskmodels keys schema > keys.schema.json

``add`` prints the new key once, alone on stdout (``KEY=$(taskmodels keys add app)`` works), and writes only its
SHA-256 to the keys file: it cannot be shown again, only replaced. The file is ``--file``, else
``TASKMODELS_GATEWAY__KEYS_FILE``; ``add`` creates it. Nothing here prints a key but ``add``, once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from taskmodels.errors import ConfigurationError
from taskmodels.gateway.keys import KeyBudget, VirtualKey, utc_now
from taskmodels.gateway.keysfile import KeysFileError, add_key, check_keys_file, keys_json_schema, set_disabled
from taskmodels.registry.suggest import IdSuggester

__all__ = ["KEYS_FILE_VARIABLE", "add_keys_parser", "parse_budget", "parse_expiry", "run_keys"]

KEYS_FILE_VARIABLE = "TASKMODELS_GATEWAY__KEYS_FILE"

_OK, _INVALID, _USAGE = 0, 1, 2

_UNITS = {
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], 1.0),
    **dict.fromkeys(["m", "min", "mins", "minute", "minutes"], 60.0),
    **dict.fromkeys(["h", "hour", "hours"], 3600.0),
    **dict.fromkeys(["d", "day", "days"], 86400.0),
    **dict.fromkeys(["w", "week", "weeks"], 604800.0),
}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)?\s*([a-z]+)?")


class _Usage(Exception):  # noqa: N818 - a usage problem, answered with exit code 2
    pass


def add_keys_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``keys`` command and its subcommands, on the ``taskmodels`` parser's subparsers ``sub``."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--file", metavar="PATH", help=f"the keys file (default: ${KEYS_FILE_VARIABLE})")
    keys = sub.add_parser("keys", help="the gateway's virtual keys: add (shown once), list, disable, enable")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", parents=[common, where], help="make a key: printed once, only its SHA-256 is written"
    )
    add.add_argument("name", metavar="NAME", help="what logs, metrics and budgets call it (never the key)")
    add.add_argument("--tasks", metavar="T[,T...]", help="the tasks it may call, comma separated (default: every task)")
    add.add_argument("--rpm", type=_positive, metavar="N", help="requests per minute, across every replica")
    add.add_argument("--tpm", type=_positive, metavar="N", help="tokens per minute (prompt and answer)")
    add.add_argument(
        "--budget", type=parse_budget, metavar="USD/WINDOW", help="spend limit, e.g. 5/day, 0.5/1h, 100/30d"
    )
    add.add_argument(
        "--expires", type=parse_expiry, metavar="WHEN", help="2027-01-31, 2027-01-31T12:00:00+02:00, or 90d, 12h"
    )
    add.add_argument("--description", metavar="TEXT", help="a note for operators")
    actions.add_parser("list", parents=[common, where], help="every key's name, tasks, limits and state; never a key")
    actions.add_parser("schema", help='print the JSON Schema of the keys file (for editors\' "$schema")')
    for action, what in (("disable", "refuse a key from now on (kept in the file)"), ("enable", "accept it again")):
        parser = actions.add_parser(action, parents=[common, where], help=what)
        parser.add_argument("name", metavar="NAME")


def run_keys(args: argparse.Namespace, out: TextIO, err: TextIO, *, tasks: Callable[[], Collection[str] | None]) -> int:
    """Run ``taskmodels keys ...``; ``tasks`` gives the registry's task names (``None`` when it cannot be read),
    for the warning about a key naming a task the registry does not map."""
    action = args.keys_command
    if action == "schema":
        out.write(json.dumps(keys_json_schema(), indent=2, ensure_ascii=False) + "\n")
        return _OK
    try:
        path = _path(args)
        if action == "add":
            return _add(args, path, out, err, tasks())
        if action == "list":
            return _list(args, path, out)
        return _set_disabled(args, path, out, disabled=action == "disable")
    except _Usage as exc:
        err.write(f"taskmodels: error: {exc}\n")
        return _USAGE
    except ConfigurationError as exc:  # KeysFileError: every problem, located
        err.write(f"taskmodels: error: {exc}\n")
        return _INVALID


def _path(args: argparse.Namespace) -> Path:
    given = getattr(args, "file", None) or os.environ.get(KEYS_FILE_VARIABLE)
    if not given:
        raise _Usage(f"no keys file: pass --file PATH or set {KEYS_FILE_VARIABLE}=PATH")
    return Path(given)


def _add(args: argparse.Namespace, path: Path, out: TextIO, err: TextIO, tasks: Collection[str] | None) -> int:
    names = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    if names is not None and not all(names):
        raise _Usage(f"--tasks {args.tasks!r}: an empty task name (write the names separated by commas)")
    key = add_key(
        path,
        args.name,
        tasks=names,
        rpm=args.rpm,
        tpm=args.tpm,
        budget=args.budget,
        expires=args.expires,
        description=args.description or None,
    )
    if names is not None and tasks is not None:
        suggester = IdSuggester(sorted(tasks))
        for task in names:
            if task not in tasks:
                close = suggester.suggest(task)
                hint = f"; did you mean {close!r}?" if close else ""
                err.write(f"warning: the registry maps no task {task!r}: the key cannot call it{hint}\n")
    if getattr(args, "json", False):
        out.write(json.dumps({"name": args.name, "key": key, "file": str(path)}) + "\n")
    else:
        out.write(key + "\n")
    err.write(
        f"added key {args.name!r} to {path}: it is shown above this once, and only its SHA-256 is kept.\n"
        "Clients send it as 'Authorization: Bearer <key>' (the OpenAI SDKs' api_key).\n"
    )
    return _OK


def _list(args: argparse.Namespace, path: Path, out: TextIO) -> int:
    if not path.exists():
        raise _Usage(f"keys file not found: {path} (create it with: taskmodels keys add NAME)")
    load = check_keys_file(path)
    if load.config is None:
        raise KeysFileError(load.errors, str(path))
    now = datetime.now(UTC).timestamp()
    keys = load.config.keys
    if getattr(args, "json", False):
        rows = [_key_json(k, now) for k in keys]
        out.write(json.dumps({"file": str(path), "keys": rows}, indent=2, ensure_ascii=False) + "\n")
        return _OK
    header = ["NAME", "STATE", "TASKS", "RPM", "TPM", "BUDGET", "EXPIRES", "SHA-256"]
    rows_text = [
        [
            k.name,
            _state(k, now),
            "*" if k.tasks == "*" else ",".join(k.tasks),
            str(k.rpm or "-"),
            str(k.tpm or "-"),
            _budget_text(k.budget),
            k.expires.isoformat().replace("+00:00", "Z") if k.expires else "-",
            k.sha256[:12],
        ]
        for k in keys
    ]
    widths = [max(len(r[i]) for r in [header, *rows_text]) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows_text])
    out.writelines(line + "\n" for line in lines)
    if not keys:
        out.write(f"(no keys in {path}: add one with: taskmodels keys add NAME)\n")
    return _OK


def _set_disabled(args: argparse.Namespace, path: Path, out: TextIO, *, disabled: bool) -> int:
    if not path.exists():
        raise _Usage(f"keys file not found: {path}")
    set_disabled(path, args.name, disabled)
    out.write(f"{'disabled' if disabled else 'enabled'} key {args.name!r} in {path}\n")
    return _OK


def _state(key: VirtualKey, now: float) -> str:
    if key.disabled:
        return "disabled"
    return "expired" if key.expired(now) else "active"


def _budget_text(budget: KeyBudget | None) -> str:
    if budget is None:
        return "-"
    window = budget.window_seconds
    for unit, size in (("week", 604800.0), ("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if window == size:
            return f"${budget.limit:g}/{unit}"
    return f"${budget.limit:g}/{window:g}s"


def _key_json(key: VirtualKey, now: float) -> dict[str, Any]:
    data = key.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["state"] = _state(key, now)
    return data


# --- argument types ----------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _seconds(text: str, *, bare_unit: str | None) -> float | None:
    """Seconds in ``90d``, ``1.5h``, ``30 minutes``, ``day`` (one of it), or a bare number of ``bare_unit``;
    ``None`` when ``text`` is no such span."""
    match = _SPAN.fullmatch(text.strip().lower())
    if match is None:
        return None
    number, unit = match.groups()
    if unit is None:
        if number is None or bare_unit is None:
            return None
        unit = bare_unit
    size = _UNITS.get(unit)
    if size is None:
        return None
    seconds = (float(number) if number is not None else 1.0) * size
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def parse_budget(text: str) -> KeyBudget:
    """``USD/WINDOW``: ``5/day``, ``$0.50/1h``, ``100/30d``, ``2/3600`` (seconds); ``5`` alone is per day."""
    amount, _, window = text.strip().partition("/")
    try:
        limit = float(amount.strip().removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write USD/WINDOW, e.g. 5/day or 0.5/1h") from None
    if not math.isfinite(limit) or limit <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the amount must be a number of USD greater than 0")
    seconds = _seconds(window, bare_unit="s") if window.strip() else 86400.0
    if seconds is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the window must be seconds or a span such as 1h, day, 30d, week (got {window.strip()!r})"
        )
    return KeyBudget.model_validate({"limit": limit, "windowSeconds": seconds})


def parse_expiry(text: str, *, now: datetime | None = None) -> datetime:
    """A date (midnight UTC), an ISO 8601 time (UTC unless it names its zone), or a span from now: ``90d``."""
    now = now or utc_now()
    span = _seconds(text, bare_unit=None)
    if span is not None:
        return (now + timedelta(seconds=span)).replace(microsecond=0)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write a date (2027-01-31), a time (2027-01-31T12:00:00Z) or a span from now (90d, 12h)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the past: the key would never be accepted")
    return when
