"""Checks for the fields of a provider's answer, before they become results.

Every protocol's parser reads the decoded JSON through these: each value that becomes part of a
``CompletionResult``, ``StreamEvent`` or ``EmbeddingResult`` is checked to be of the type the result
declares, and a value that is not raises ``AnswerError`` naming the field and what was found (its
type, never the value itself: a server may echo anything, a key included). The provider's sending
code turns it into ``InvalidResponseError``, which the engine retries and moves past like any other
bad answer.

The checks are a type test per field, cheap enough for every call; nothing here builds a model.

Token counts are non-negative integers up to ``MAX_TOKEN_COUNT`` (2**53 - 1): the largest integer a
JSON number keeps exactly in every decoder (an IEEE double), and so the largest a price can multiply
without overflow or rounding. No real answer comes near it. A float with an integral value (``12.0``)
is taken as that integer, as JSON Schema and the registry loader take it: JSON has one number type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "MAX_TOKEN_COUNT",
    "AnswerError",
    "arguments",
    "count",
    "described",
    "items",
    "name",
    "obj",
    "optional_text",
    "text",
    "vector",
]

MAX_TOKEN_COUNT: Final = 2**53 - 1
"""The largest token count an answer may report (see the module's docstring)."""

_EMPTY: Mapping[str, Any] = {}
_FLOATS = frozenset({float})


class AnswerError(ValueError):
    """A field of a provider's answer is not of the type its protocol declares."""


def described(value: Any) -> str:
    """What ``value`` is, without its content: ``a str``, ``a 401-digit int``, ``a negative int``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "null" if value is None else f"a {type(value).__name__}"
    return _number(value)


def _number(value: float) -> str:
    if value < 0:
        return f"a negative {type(value).__name__}"
    if isinstance(value, int):
        try:
            return f"a {len(str(value))}-digit int"
        except ValueError:  # str() refuses ints of more digits than sys.get_int_max_str_digits()
            return "an int of thousands of digits"
    if not math.isfinite(value):
        return f"a float ({value})"
    return "a float too large" if value.is_integer() else "a fractional float"


def count(value: Any, where: str) -> int:
    """A token count: a non-negative int up to ``MAX_TOKEN_COUNT``; absent (``None``) is 0."""
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    if value is None:
        return 0
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_TOKEN_COUNT:
        return int(value)
    raise AnswerError(f"{where} is {described(value)}, not a token count (an integer from 0 to 2**53 - 1)")


def text(value: Any, where: str) -> str:
    """A string the answer must hold here."""
    if type(value) is str:
        return value
    raise AnswerError(f"{where} is {described(value)}, not a string")


def optional_text(value: Any, where: str) -> str | None:
    """A string, or ``None`` when the answer has none."""
    if value is None or type(value) is str:
        return value
    raise AnswerError(f"{where} is {described(value)}, not a string")


def name(value: Any, default: str, where: str) -> str:
    """A name the answer may give (a model's, say), else ``default`` (absent, null or empty)."""
    if type(value) is str:
        return value or default
    if value is None:
        return default
    raise AnswerError(f"{where} is {described(value)}, not a string")


def obj(value: Any, where: str) -> Mapping[str, Any]:
    """A JSON object; absent (``None``) is an empty one."""
    if type(value) is dict or isinstance(value, Mapping):  # decoded JSON is a dict: the ABC check is the rare case
        return value
    if value is None:
        return _EMPTY
    raise AnswerError(f"{where} is {described(value)}, not an object")


def items(value: Any, where: str) -> list[Any]:
    """A JSON array; absent (``None``) is an empty one."""
    if type(value) is list:
        return value
    if value is None:
        return []
    raise AnswerError(f"{where} is {described(value)}, not an array")


def arguments(value: Any, where: str) -> str:
    """A tool call's arguments as JSON text: the protocol's string, or an object (some servers send one)."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return json.dumps(value)
    raise AnswerError(f"{where} is {described(value)}, not JSON text or an object")


def vector(value: Any, where: str) -> list[float]:
    """An embedding: an array of finite numbers, as floats."""
    if type(value) is not list:
        raise AnswerError(f"{where} is {described(value)}, not an array of numbers")
    # The common answer holds floats only; a finite sum proves none is inf or nan (either would make it so).
    if set(map(type, value)) <= _FLOATS and math.isfinite(sum(value)):
        return value
    out: list[float] = []
    for x in value:
        if type(x) is float:
            number = x
        elif type(x) is int and -MAX_TOKEN_COUNT <= x <= MAX_TOKEN_COUNT:
            number = float(x)
        else:
            raise AnswerError(f"{where} holds {described(x)}, not a number")
        if not math.isfinite(number):
            raise AnswerError(f"{where} holds {described(number)}, not a finite number")
        out.append(number)
    return out
