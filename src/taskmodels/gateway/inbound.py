"""OpenAI request bodies, read into the library's call arguments.

Only what the body's shape needs is checked here (the ``model`` is a task name, ``messages`` a list, which
parameters exist); every value goes on to ``taskmodels.validation`` through the service, which accepts
OpenAI's dicts for messages, content parts, tools, tool choices and response formats and names the parameter
at fault. Nothing is checked twice.

Every top-level parameter of Chat Completions is in one of four groups:

- honoured: ``model``, ``messages``, ``stream``, ``stream_options``, ``max_tokens``, ``max_completion_tokens``,
  ``temperature``, ``top_p``, ``stop``, ``seed`` (sent to the provider as is), ``tools``, ``tool_choice``,
  ``response_format``;
- metadata, kept and never sent upstream: ``user``, ``metadata``, ``safety_identifier``, ``prompt_cache_key``;
- accepted only at the value that asks for nothing (``n`` 1, ``logprobs`` false, ``parallel_tool_calls``
  true, ``modalities`` ``["text"]`` ...): any other value is a 400 naming it, since the library cannot honour
  it and a silently dropped parameter is a wrong answer;
- anything else: a 400 ``unknown_parameter``, as OpenAI's own API answers, so a typo never passes.

``null`` is the same as leaving a parameter out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from taskmodels.gateway.errors import GatewayError

__all__ = ["ChatCall", "EmbeddingsCall", "parse_chat", "parse_embeddings", "parse_json"]


@dataclass(slots=True)
class ChatCall:
    """One ``/v1/chat/completions`` request, read."""

    task: str
    fields: dict[str, Any]  # CompletionRequest fields, checked by the service
    stream: bool = False
    include_usage: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # user, metadata ...: governance's, never sent
    tokens_param: str = "max_tokens"  # which spelling of the output limit the client used, for error messages


@dataclass(slots=True)
class EmbeddingsCall:
    task: str
    texts: list[str]
    base64: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what it is instead."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder goes
        raise GatewayError(400, "the request body is not valid JSON", code="invalid_json") from None
    if type(body) is not dict:
        raise GatewayError(400, f"the request body must be a JSON object, not {_json_type(body)}", code="invalid_type")
    return body


def _json_type(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null"
    )


# --- chat ---------------------------------------------------------------------------------------------------


def _never(_: object) -> bool:
    return False


def _is(expected: object) -> Callable[[Any], bool]:
    return lambda value: value == expected and type(value) is type(expected)


_NEUTRAL: Final[Mapping[str, tuple[Callable[[Any], bool], str]]] = {
    # parameter: (the values that ask for nothing, what the library does instead)
    "n": (_is(1), "one answer per request: n must be 1"),
    "logprobs": (_is(False), "log probabilities are not returned"),
    "top_logprobs": (_never, "log probabilities are not returned"),
    "parallel_tool_calls": (_is(True), "the model may always call several tools at once"),
    "frequency_penalty": (lambda v: v == 0 and type(v) in (int, float), "penalties are not supported"),
    "presence_penalty": (lambda v: v == 0 and type(v) in (int, float), "penalties are not supported"),
    "logit_bias": (lambda v: v == {}, "logit_bias is not supported"),
    "modalities": (lambda v: v == ["text"], "answers are text only"),
    "audio": (_never, "answers are text only"),
    "prediction": (_never, "predicted outputs are not supported"),
    "web_search_options": (_never, "web search is not supported"),
    "service_tier": (lambda v: v in ("auto", "default"), "service tiers are not chosen per request"),
    "store": (_is(False), "answers are not stored"),
    "reasoning_effort": (_never, "reasoning settings come from the registry's models, not the request"),
    "verbosity": (_never, "verbosity is not supported"),
    "functions": (_never, "give tools, not the deprecated functions"),
    "function_call": (_never, "give tool_choice, not the deprecated function_call"),
}
_METADATA: Final = frozenset({"user", "metadata", "safety_identifier", "prompt_cache_key"})
_STREAM_OPTIONS: Final = frozenset({"include_usage", "include_obfuscation"})
# What a client sends back of an assistant message it got: fields of OpenAI's answers a request does not take.
# Dropped when empty, so `messages.append(completion.choices[0].message)` works; with content, they are refused.
_ANSWER_ONLY: Final = ("annotations", "audio", "function_call", "parsed")


def parse_chat(body: dict[str, Any]) -> ChatCall:  # noqa: C901, PLR0912 - one branch per parameter group
    """The call a Chat Completions body asks for, or a ``GatewayError`` naming the parameter."""
    call = ChatCall(_task(body), {"messages": _messages(body.get("messages"))})
    fields = call.fields
    for name, value in body.items():
        if value is None or name in ("model", "messages"):
            continue
        if name == "stream":
            call.stream = _flag(name, value)
        elif name == "stream_options":
            call.include_usage = _stream_options(value)
        elif name in ("temperature", "top_p", "stop", "tools", "tool_choice"):
            fields[name] = value  # checked by taskmodels.validation
        elif name in ("max_tokens", "max_completion_tokens"):
            if fields.get("max_tokens", value) != value:
                raise GatewayError(
                    400, "max_tokens and max_completion_tokens differ: give one", code="invalid_value", param=name
                )
            fields["max_tokens"] = value
            call.tokens_param = name
        elif name == "response_format":
            if not (isinstance(value, Mapping) and value.get("type") == "text"):  # text: what is asked anyway
                fields["response_format"] = value
        elif name == "seed":
            if type(value) is not int:
                raise GatewayError(400, f"seed must be an integer, not {value!r}", code="invalid_type", param="seed")
            fields["extra"] = {"seed": value}
        elif name in _METADATA:
            call.metadata[name] = value
        elif (neutral := _NEUTRAL.get(name)) is not None:
            accepts, why = neutral
            if not accepts(value):
                raise GatewayError(
                    400, f"{name}={_short(value)} cannot be honoured: {why}", code="unsupported_parameter", param=name
                )
        else:
            raise GatewayError(
                400, f"Unknown parameter: '{_short_name(name)}'.", code="unknown_parameter", param=_short_name(name)
            )
    if "stream_options" in body and body["stream_options"] is not None and not call.stream:
        raise GatewayError(
            400, "stream_options is only allowed when stream is true", code="invalid_value", param="stream_options"
        )
    return call


def _task(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise GatewayError(
            400, "you must give model: the name of a task", code="missing_required_parameter", param="model"
        )
    if type(model) is not str or not model:
        raise GatewayError(400, f"model must be a task name, not {_short(model)}", code="invalid_type", param="model")
    return model


def _messages(value: object) -> list[Any]:
    if value is None:
        raise GatewayError(400, "you must give messages", code="missing_required_parameter", param="messages")
    if type(value) is not list or not value:
        raise GatewayError(400, "messages must be a non-empty array", code="invalid_type", param="messages")
    out: list[Any] | None = None
    for index, message in enumerate(value):
        if type(message) is dict and any(key in message for key in _ANSWER_ONLY):
            kept = {k: v for k, v in message.items() if not (k in _ANSWER_ONLY and not v)}
            if out is None:
                out = list(value)
            out[index] = kept
    return value if out is None else out


def _flag(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise GatewayError(400, f"{name} must be true or false, not {_short(value)}", code="invalid_type", param=name)
    return value


def _stream_options(value: object) -> bool:
    if not isinstance(value, Mapping):
        raise GatewayError(
            400, f"stream_options must be an object, not {_short(value)}", code="invalid_type", param="stream_options"
        )
    unknown = value.keys() - _STREAM_OPTIONS
    if unknown:
        name = min(map(str, unknown))
        raise GatewayError(
            400,
            f"Unknown parameter: 'stream_options.{_short_name(name)}'.",
            code="unknown_parameter",
            param=f"stream_options.{_short_name(name)}",
        )
    include = value.get("include_usage")
    return include is not None and _flag("stream_options.include_usage", include)


# --- embeddings ---------------------------------------------------------------------------------------------


def parse_embeddings(body: dict[str, Any]) -> EmbeddingsCall:
    """The call an Embeddings body asks for: text input only (a string or an array of strings)."""
    call = EmbeddingsCall(_task(body), _texts(body.get("input")))
    for name, value in body.items():
        if value is None or name in ("model", "input"):
            continue
        if name == "encoding_format":
            if value not in ("float", "base64"):
                raise GatewayError(
                    400,
                    f"encoding_format must be float or base64, not {_short(value)}",
                    code="invalid_value",
                    param=name,
                )
            call.base64 = value == "base64"
        elif name == "user":
            call.metadata[name] = value
        elif name == "dimensions":
            raise GatewayError(
                400,
                "dimensions cannot be honoured: vectors come at the model's own size",
                code="unsupported_parameter",
                param=name,
            )
        else:
            raise GatewayError(
                400, f"Unknown parameter: '{_short_name(name)}'.", code="unknown_parameter", param=_short_name(name)
            )
    return call


def _texts(value: object) -> list[str]:
    if value is None:
        raise GatewayError(400, "you must give input", code="missing_required_parameter", param="input")
    if type(value) is str:
        return [value]
    if type(value) is not list or not value:
        raise GatewayError(
            400, "input must be a string or a non-empty array of strings", code="invalid_type", param="input"
        )
    for index, text in enumerate(value):
        if type(text) is not str:
            if type(text) is int or type(text) is list:
                raise GatewayError(
                    400,
                    "token arrays are not supported as input: send the text",
                    code="unsupported_value",
                    param="input",
                )
            raise GatewayError(
                400,
                f"input[{index}] must be a string, not {_short(text)}",
                code="invalid_type",
                param=f"input[{index}]",
            )
    return value


def _short(value: object) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (ValueError, RecursionError):
        return type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _short_name(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."
