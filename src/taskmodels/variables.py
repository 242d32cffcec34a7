"""Which ``TASKMODELS_*`` variables configure nothing, and the real variable each was probably meant to be.

pydantic-settings ignores a variable whose first part names no setting: ``TASKMODELS_REGISTRY``,
``TASKMODELS_PROVIDER__OPENAI__API_KEY`` and ``TASKMODELS_PROVIDERS_OPENAI_API_KEY`` all load without a word,
and the path or key the user meant is simply not there. (A wrong key inside a section,
``TASKMODELS_HTTP__MAX_CONECTIONS``, the section refuses itself, naming the variable.) Here the settings'
fields are walked as pydantic-settings reads them: case-insensitively, ``__`` between the levels, a field
with aliases read under its aliases only. Provider sections are keyed by any name, so
``TASKMODELS_PROVIDERS__<NAME>__API_KEY`` configures something for every NAME.

Pure functions of a settings class and the variables given: ``settings.py`` applies them to the process
environment and the ``.env`` file.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

__all__ = ["Unconfigured", "closest_variable", "unconfigured_variables"]

_SEPARATORS = str.maketrans("", "", "_-")


@dataclass(frozen=True, slots=True)
class Unconfigured:
    """A ``TASKMODELS_`` variable that configures nothing: its name, where it was set, the closest real one."""

    name: str
    source: str  # "environment", or the .env file it is in
    did_you_mean: str | None

    def __str__(self) -> str:
        where = "" if self.source == "environment" else f" (in {self.source})"
        text = f"{self.name}{where} configures nothing"
        return text + (f"; did you mean {self.did_you_mean}?" if self.did_you_mean else "")


def unconfigured_variables(
    settings_cls: type[BaseModel],
    sources: Mapping[str, Mapping[str, str | None]],
    *,
    prefix: str,
    delimiter: str,
    also_known: Iterable[str] = (),
    dynamic_keys: Iterable[str] = (),
) -> list[Unconfigured]:
    """Each variable of ``sources`` (a source's name: its variables) under ``prefix`` that no field of
    ``settings_cls`` reads, with the closest variable that does. ``also_known``: names read elsewhere (a
    registry's ``apiKeyEnv``, the secrets directory's variable); ``dynamic_keys``: names suggested for the
    keys of a dict of sections (the provider names)."""
    known = {name.upper() for name in also_known}
    fields = _readable_fields(settings_cls, prefix)
    found: list[Unconfigured] = []
    seen: set[str] = set()
    for source, variables in sources.items():
        for name in sorted(variables):
            upper = name.upper()
            if not upper.startswith(prefix) or upper in known or upper in seen:
                continue
            if _configures(upper[len(prefix) :], fields, delimiter):
                continue
            seen.add(upper)
            close = closest_variable(settings_cls, upper, prefix=prefix, delimiter=delimiter, keys=dynamic_keys)
            found.append(Unconfigured(name, source, close))
    return found


def closest_variable(
    settings_cls: type[BaseModel], name: str, *, prefix: str, delimiter: str, keys: Iterable[str] = ()
) -> str | None:
    """The real variable ``name`` was probably meant to be, or None. Separators are compared last: a name that
    differs only in its underscores (``PROVIDERS_OPENAI_API_KEY``) is found whatever else is near it."""
    upper = name.upper()
    # The dict keys to try: the usual ones, and each part of the name itself (a provider name of its own).
    parts = upper.removeprefix(prefix).replace(delimiter, "_").split("_")
    names = [key.upper().replace("-", "_") for key in keys]
    candidates = list(dict.fromkeys(_variables(settings_cls, prefix, delimiter, [*names, *parts])))
    flat = upper.translate(_SEPARATORS)
    for candidate in candidates:
        if candidate.translate(_SEPARATORS) == flat and candidate != upper:
            return candidate
    # The shared prefix would make every name look alike: compare what follows it.
    rest = {candidate.removeprefix(prefix): candidate for candidate in candidates if candidate != upper}
    close = difflib.get_close_matches(upper.removeprefix(prefix), list(rest), n=1, cutoff=0.6)
    return rest[close[0]] if close else None


def _readable_fields(settings_cls: type[BaseModel], prefix: str) -> dict[str, FieldInfo | None]:
    """The first part of each variable a field is read from, lower-case; None for an alias read whole."""
    out: dict[str, FieldInfo | None] = {}
    for name, info in settings_cls.model_fields.items():
        aliases = _aliases(info)
        if aliases is None:
            out[name.lower()] = info
            continue
        for alias in aliases:  # read under its aliases only, each a whole variable name
            if alias.upper().startswith(prefix):
                out[alias.upper().removeprefix(prefix).lower()] = None
    return out


def _configures(rest: str, fields: Mapping[str, FieldInfo | None], delimiter: str) -> bool:
    lowered = rest.lower()
    if lowered in fields:
        return True
    head, _, _ = lowered.partition(delimiter.lower())
    info = fields.get(head)
    # Below a section or a dict of them, the section itself refuses a key it does not have.
    return info is not None and _nests(info.annotation)


def _aliases(info: FieldInfo) -> list[str] | None:
    alias = info.validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return None


def _variables(cls: type[BaseModel], prefix: str, delimiter: str, keys: list[str]) -> Iterator[str]:
    """Every variable ``cls``'s fields are read from, with ``keys`` standing in for the keys of a dict of them."""
    for name, info in cls.model_fields.items():
        aliases = _aliases(info)
        if aliases is not None:
            yield from (a.upper() for a in aliases if a.upper().startswith(prefix))
            continue
        yield from _below(prefix + name.upper(), info.annotation, delimiter, keys, depth=0)


def _below(base: str, annotation: Any, delimiter: str, keys: list[str], depth: int) -> Iterator[str]:
    yield base
    if depth > 4:  # settings nest two or three levels; a self-referring model must not recurse for ever
        return
    model = _model_in(annotation)
    if model is not None:
        for name, info in model.model_fields.items():
            for spelling in _aliases(info) or [name]:
                yield from _below(base + delimiter + spelling.upper(), info.annotation, delimiter, keys, depth + 1)
        return
    value = _dict_value(annotation)
    if value is not None and _model_in(value) is not None:
        for key in keys:
            yield from _below(base + delimiter + key, value, delimiter, keys, depth + 1)


def _nests(annotation: Any) -> bool:
    return _model_in(annotation) is not None or _dict_value(annotation) is not None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _dict_value(annotation: Any) -> Any:
    """The value type of a ``dict[str, X]`` annotation (or of one in a union), else None."""
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping):
        args = typing.get_args(annotation)
        return args[1] if len(args) == 2 else Any  # a mapping's key and value types
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _dict_value(arg)
            if found is not None:
                return found
    return None
