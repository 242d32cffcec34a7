"""The edge of a call: every argument a caller gives, checked once, before anything else runs.

``coerce_request`` turns what a caller gave (a ``CompletionRequest``, a prompt string, keyword fields, or
both) into a ``CompletionRequest`` whose every field has its declared type and a usable value, or raises
``InvalidRequestError`` whose ``param`` names the argument at fault (``messages[1].content[0]``) and whose
message says what it accepts. Nothing after this checks again: selection, the engine and the providers take
the request as it comes, so a wrong value can no longer surface deep inside as a raw ``TypeError``.

OpenAI's shapes are accepted where users write them: a message, a content part, a tool, a tool choice or a
response format given as a dict becomes the library's own value here. Code ported from the openai SDK, and
the gateway's requests, go through the same checks as everything else.

Cheap on purpose, since it runs on every call: the common request (a prompt and a system prompt) costs a
few type checks and builds nothing; a conversation costs one pass over its messages; an inline image a look
at its first bytes, never a decode of the whole.
"""

from __future__ import annotations

import binascii
import difflib
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any, Final, NoReturn

from taskmodels.errors import InvalidRequestError
from taskmodels.types import (
    CompletionRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    Role,
    TextPart,
    ToolCall,
    ToolSpec,
    describe_url,
    sniff_media_type,
)

__all__ = [
    "IMAGE_MEDIA_TYPES",
    "MAX_IMAGE_BYTES",
    "check_request",
    "check_task",
    "check_tenant",
    "coerce_request",
    "coerce_texts",
]

MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024
"""The largest inline image a request may carry: OpenAI's and Gemini's limit per request part (Anthropic's API
takes 5 MB, and answers a larger one with a 400)."""

IMAGE_MEDIA_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""The image formats OpenAI, Azure and Anthropic all take (Gemini takes all but GIF)."""

MAX_OUTPUT_TOKENS: Final = 2**31 - 1  # no provider takes more; a larger count would overflow their int32 fields

_FIELDS: Final = frozenset(f.name for f in fields(CompletionRequest))
_ROLES: Final[frozenset[Role]] = frozenset({"system", "user", "assistant", "tool"})
_PLAIN_ROLES: Final = frozenset({"system", "user", "assistant"})
_MESSAGE_KEYS: Final = frozenset({"role", "content", "name", "tool_call_id", "tool_calls", "refusal"})
_FORMATS: Final = frozenset({"text", "json_object", "json_schema"})
_DETAILS: Final = frozenset({"auto", "low", "high"})
_TOOL_CHOICES: Final = frozenset({"auto", "none", "required"})
_TIME_LIMITS: Final = ("deadline", "attempt_timeout", "first_token_timeout", "stall_timeout")
_SAMPLING: Final = (("temperature", 2.0), ("top_p", 1.0))
_MAX_NAME: Final = 64  # OpenAI's limit on a tool's and a schema's name, the strictest of the providers'


def _refuse(param: str, message: str) -> NoReturn:
    # A sentence where the message is a predicate ("temperature must be"), a colon where it is a statement.
    joiner = " " if message.startswith(("must ", "needs ", "names ", "is ")) else ": "
    raise InvalidRequestError(f"{param}{joiner}{message}", param=param)


def _kind(value: object) -> str:
    """A wrong value, described without repeating a large one in full."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


# --- the request as a whole ------------------------------------------------------------------------------


def coerce_request(request: object, fields_: Mapping[str, Any]) -> CompletionRequest:
    """A checked ``CompletionRequest`` from one, from a prompt string, or from its fields (which override)."""
    if fields_:
        unknown = fields_.keys() - _FIELDS
        if unknown:
            first = min(map(str, unknown))
            close = difflib.get_close_matches(first, _FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            names = ", ".join(sorted(map(str, unknown)))
            raise InvalidRequestError(
                f"unknown request field(s) {names}{hint} (a request takes {', '.join(sorted(_FIELDS))})", param=first
            )
    if request is None:
        built = CompletionRequest(**fields_)
        changes = _changes(built)
        # Built again from the fields rather than copied: no per-field reads of the first build.
        return CompletionRequest(**{**fields_, **changes}) if changes else built
    if isinstance(request, str):
        built = CompletionRequest(prompt=request, **fields_)
    elif isinstance(request, CompletionRequest):
        built = _replaced(request, dict(fields_)) if fields_ else request
    else:
        _refuse("request", f"must be a CompletionRequest, a prompt string or None, not {_kind(request)}")
    return check_request(built)


def check_request(request: CompletionRequest) -> CompletionRequest:
    """``request`` when every field is usable (a normalised copy when some field was given in another accepted
    shape: dicts, a bare stop string, a numpy number), else ``InvalidRequestError`` naming the field."""
    changes = _changes(request)
    return _replaced(request, changes) if changes else request


def _changes(request: CompletionRequest) -> dict[str, Any]:  # noqa: C901, PLR0912, PLR0915 - one check per field, in field order
    """What must change in ``request`` for every field to have its declared type; ``InvalidRequestError`` naming
    the field when one is unusable."""
    changes: dict[str, Any] = {}
    prompt, system = request.prompt, request.system_prompt
    if prompt is not None and type(prompt) is not str:
        _refuse("prompt", f"must be a string, not {_kind(prompt)}")
    if system is not None and type(system) is not str:
        _refuse("system_prompt", f"must be a string, not {_kind(system)}")
    messages = request.messages
    if messages:
        checked = _messages(messages)
        if checked is not messages:
            changes["messages"] = checked
    elif messages is None:
        changes["messages"] = ()
    elif isinstance(messages, str):  # an empty one: a non-empty one is refused by _messages
        _refuse("messages", "must be a list of messages; for one question use prompt=")
    if prompt is None and not messages and not system:
        raise InvalidRequestError("nothing to send: give prompt, system_prompt or messages", param="prompt")
    if request.max_tokens is not None:
        count = _count("max_tokens", request.max_tokens, MAX_OUTPUT_TOKENS)
        if count is not request.max_tokens:
            changes["max_tokens"] = count
    for name, high in _SAMPLING:
        value = getattr(request, name)
        if value is not None:
            number = _number(name, value, 0.0, high)
            if type(value) is not float and type(value) is not int:
                changes[name] = number  # numpy's and the like: a plain float, which JSON takes
    stop = request.stop
    if stop:
        checked_stop = _stop(stop)
        if checked_stop is not stop:
            changes["stop"] = checked_stop
    elif stop is None:
        changes["stop"] = ()
    fmt = request.response_format
    if fmt is not None:
        checked_fmt = _response_format(fmt)
        if checked_fmt is not fmt:
            changes["response_format"] = checked_fmt
    tools = request.tools
    if tools:
        checked_tools = _tools(tools)
        if checked_tools is not tools:
            changes["tools"] = checked_tools
        tools = checked_tools
    elif tools is None:
        changes["tools"] = tools = ()
    if request.tool_choice is not None:
        choice = _tool_choice(request.tool_choice, tools)
        if choice is not request.tool_choice:
            changes["tool_choice"] = choice
    extra = request.extra
    if extra is None:
        changes["extra"] = {}
    elif extra and (not isinstance(extra, Mapping) or not all(type(key) is str for key in extra)):
        _refuse("extra", f"must be a mapping of request-body field names to values, not {_kind(extra)}")
    caps = request.required_capabilities
    if type(caps) is not frozenset or caps:
        checked_caps = _capabilities(caps)
        if checked_caps is not caps:
            changes["required_capabilities"] = checked_caps
    if request.max_cost is not None:
        _number("max_cost", request.max_cost, 0.0, math.inf)
    for name in _TIME_LIMITS:
        value = getattr(request, name)
        if value is not None:
            number = _number(name, value, 0.0, math.inf, open_low=True)
            if type(value) is not float and type(value) is not int:
                changes[name] = number  # numpy's and the like; an int too large for a float is refused above
    if request.output_type is not None and fmt is not None:
        raise InvalidRequestError(
            "give output_type or response_format, not both: output_type sends its own schema", param="output_type"
        )
    return changes


def _replaced(request: CompletionRequest, changes: dict[str, Any]) -> CompletionRequest:
    """``dataclasses.replace`` without its per-call introspection of the fields."""
    return CompletionRequest(**{**{name: getattr(request, name) for name in _FIELDS}, **changes})


def check_task(task: object) -> str:
    """A task name: a string (which task it is, selection decides)."""
    if type(task) is not str:
        _refuse("task", f"must be a task name (a string), not {_kind(task)}")
    return task


def check_tenant(tenant: object) -> str | None:
    if tenant is not None and type(tenant) is not str:
        _refuse("tenant", f"must be a string naming whom the call is for, or None, not {_kind(tenant)}")
    return tenant


def coerce_texts(texts: object) -> list[str]:
    """The texts of an embedding call: a list of strings, or one string (one text, never its characters)."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, Mapping)) or not isinstance(texts, Iterable):
        _refuse("texts", f"must be a string or a list of strings, not {_kind(texts)}")
    out = list(texts)
    if not out:
        _refuse("texts", "must hold at least one text")
    for index, text in enumerate(out):
        if type(text) is not str:
            _refuse(f"texts[{index}]", f"must be a string, not {_kind(text)}")
    return out


# --- numbers ---------------------------------------------------------------------------------------------


def _number(param: str, value: object, low: float, high: float, *, open_low: bool = False) -> float:
    """A finite real number within bounds, as a ``float``; a string or a bool is refused, not converted."""
    if type(value) is float or (
        (type(value) is int or isinstance(value, numbers.Real)) and not isinstance(value, bool)
    ):
        try:
            number = float(value)  # type: ignore[arg-type,unused-ignore]  # a Real, by the test above
        except OverflowError:
            _refuse(param, f"is too large: {_kind(value)}")
    else:
        _refuse(param, f"must be a number, not {_kind(value)}")
    low_ok = number > low if open_low else number >= low
    if not (math.isfinite(number) and low_ok and number <= high):
        if high != math.inf:
            bounds = f"between {low:g} and {high:g}"
        else:
            bounds = f"greater than {low:g}" if open_low else f"at least {low:g}"
        _refuse(param, f"must be a finite number {bounds}, not {_kind(value)}")
    return number


def _count(param: str, value: object, high: int) -> int:
    """An integer from 1 to ``high``, as an ``int`` (numpy's integers too); a float, a string or a bool is refused."""
    if type(value) is int:
        number = value
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    else:
        _refuse(param, f"must be an integer, not {_kind(value)}")
    if not 1 <= number <= high:
        _refuse(param, f"must be a positive integer (at most {high}), not {_kind(number)}")
    return number


# --- messages and their parts ----------------------------------------------------------------------------


def _messages(value: object) -> Sequence[Message] | Any:
    """The messages as given when each is a usable ``Message`` (a list stays a list), else a tuple of them."""
    if (
        type(value) is not list
        and type(value) is not tuple
        and (isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable))
    ):
        _refuse("messages", f"must be a list of messages, not {_kind(value)}")
    items = value if type(value) is list or type(value) is tuple else tuple(value)
    out: list[Message] = []
    changed = items is not value
    for index, item in enumerate(items):
        if type(item) is Message:
            message = _check_message(item, f"messages[{index}]")
        elif isinstance(item, Mapping):
            message = _message_from_dict(item, f"messages[{index}]")
        else:
            _refuse(
                f"messages[{index}]", f"must be a Message or a dict such as {{'role': 'user', ...}}, not {_kind(item)}"
            )
        changed = changed or message is not item
        out.append(message)
    return tuple(out) if changed else value


def _check_message(message: Message, where: str) -> Message:
    role = message.role
    content = message.content
    if (
        (content is None or type(content) is str)
        and message.name is None
        and message.tool_call_id is None
        and not message.tool_calls
        and type(message.tool_calls) is tuple
        and type(role) is str
        and role in _PLAIN_ROLES
    ):
        return message  # the common turn: text from system, user or assistant
    if type(role) is not str or role not in _ROLES:
        _refuse(f"{where}.role", f"must be one of {', '.join(sorted(_ROLES))}, not {_kind(role)}")
    parts = None if content is None or type(content) is str else _content(content, f"{where}.content", role)
    for name in ("name", "tool_call_id"):
        value = getattr(message, name)
        if value is not None and type(value) is not str:
            _refuse(f"{where}.{name}", f"must be a string, not {_kind(value)}")
    if role == "tool" and not message.tool_call_id:
        _refuse(f"{where}.tool_call_id", "a tool message answers a call: give the id of the call it answers")
    calls = message.tool_calls
    checked_calls = calls if not calls and type(calls) is tuple else _tool_calls(calls, f"{where}.tool_calls")
    if (parts is None or parts is content) and checked_calls is calls:
        return message
    return replace(message, content=content if parts is None else parts, tool_calls=checked_calls)


def _message_from_dict(item: Mapping[Any, Any], where: str) -> Message:
    """A message in OpenAI's shape: ``role`` (``developer`` is ``system``), ``content`` (text, or a list of
    ``text`` and ``image_url`` parts), ``name``, ``tool_call_id``, ``tool_calls``."""
    role = item.get("role")
    content = item.get("content")
    if len(item) == 2 and type(content) is str and type(role) is str and role in _PLAIN_ROLES:
        return Message(role, content)  # type: ignore[arg-type]  # the common turn, as OpenAI's clients send it
    unknown = [key for key in item if key not in _MESSAGE_KEYS]
    if unknown:
        names = ", ".join(sorted(map(str, unknown)))
        _refuse(
            f"{where}", f"unknown message field(s) {names}; a message has role, content, name, tool_call_id, tool_calls"
        )
    if role == "developer":
        role = "system"  # OpenAI's newer name for the system turn
    if type(role) is not str or role not in _ROLES:
        _refuse(f"{where}.role", f"must be one of developer, {', '.join(sorted(_ROLES))}, not {_kind(role)}")
    calls = item.get("tool_calls")
    message = Message(
        role=role,
        content=content,
        name=item.get("name"),
        tool_call_id=item.get("tool_call_id"),
        tool_calls=() if calls is None else calls,
    )
    return _check_message(message, where)


def _content(content: object, where: str, role: str) -> tuple[ContentPart, ...]:
    if isinstance(content, (bytes, Mapping)) or not isinstance(content, Iterable):
        _refuse(where, f"must be a string or a list of text and image parts, not {_kind(content)}")
    items = tuple(content)
    out: list[ContentPart] = []
    changed = type(content) is not tuple
    for index, part in enumerate(items):
        at = f"{where}[{index}]"
        if type(part) is TextPart:
            if type(part.text) is not str:
                _refuse(f"{at}.text", f"must be a string, not {_kind(part.text)}")
            checked: ContentPart = part
        elif type(part) is ImagePart:
            checked = _image(part, at)
        elif isinstance(part, Mapping):
            checked = _part_from_dict(part, at)
        elif type(part) is str:
            checked = TextPart(part)
        else:
            _refuse(
                at, f"must be a TextPart, an ImagePart or a dict such as {{'type': 'text', ...}}, not {_kind(part)}"
            )
        if type(checked) is ImagePart and role != "user":
            _refuse(at, f"images go in user messages, not in a {role} message")
        changed = changed or checked is not part
        out.append(checked)
    return tuple(out) if changed else items


def _part_from_dict(part: Mapping[Any, Any], where: str) -> ContentPart:
    """OpenAI's content parts: ``{"type": "text", "text": ...}`` and ``{"type": "image_url", "image_url":
    {"url": ..., "detail": ...}}`` (the URL alone is taken too, as some clients send it)."""
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if type(text) is not str:
            _refuse(f"{where}.text", f"must be a string, not {_kind(text)}")
        return TextPart(text)
    if kind == "image_url":
        image = part.get("image_url")
        detail = None
        if isinstance(image, Mapping):
            detail = image.get("detail")
            image = image.get("url")
        if type(image) is not str:
            _refuse(f"{where}.image_url.url", f"must be an https:// or data: URL, not {_kind(image)}")
        if detail is not None and detail not in _DETAILS:
            _refuse(f"{where}.image_url.detail", f"must be auto, low or high, not {_kind(detail)}")
        return _image(ImagePart.from_url(image, detail=detail), where)
    _refuse(f"{where}.type", f"must be 'text' or 'image_url' (audio and files are not supported), not {_kind(kind)}")


def _image(image: ImagePart, where: str) -> ImagePart:
    """An image a provider can take: a web URL, or inline bytes of a supported format within the size limit."""
    if image.detail is not None and image.detail not in _DETAILS:
        _refuse(f"{where}.detail", f"must be auto, low or high, not {_kind(image.detail)}")
    if image.data is None:
        url = image.url
        if type(url) is not str or not url:
            _refuse(where, "an image needs a url or data")
        lowered = url[:8].lower()
        if lowered.startswith("data:"):
            _refuse(where, "a data: URL must be data:<media type>;base64,<base64 data>")
        if not lowered.startswith(("https://", "http://")):
            _refuse(where, f"an image URL must be https://… or a data: URL, not {describe_url(url)!r}")
        return image
    return _inline_image(image, image.data, where)


def _inline_image(image: ImagePart, data: object, where: str) -> ImagePart:
    if type(data) is not str:
        _refuse(f"{where}.data", f"must be the image's bytes as base64 text, not {type(data).__name__}")
    padding = len(data) - len(data.rstrip("="))
    size = len(data) * 3 // 4 - padding
    if size <= 0:
        _refuse(where, "the image is empty")
    if size > MAX_IMAGE_BYTES:
        _refuse(where, f"the image is {size:,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit")
    try:
        head = binascii.a2b_base64(data[:16], strict_mode=True)
    except (binascii.Error, ValueError):
        _refuse(where, "the image's data is not base64")
    sniffed = sniff_media_type(head)
    if sniffed is None:
        declared = image.media_type or "unknown"
        _refuse(where, f"the image is not PNG, JPEG, GIF or WebP (declared {declared!r}; its bytes say otherwise)")
    if image.media_type == sniffed and image.size == size:
        return image
    # The bytes' own type wins over a declared one: providers refuse an image whose type does not match.
    return replace(image, media_type=sniffed, size=size)


def _tool_calls(calls: object, where: str) -> tuple[ToolCall, ...]:
    if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Iterable):
        _refuse(where, f"must be a list of tool calls, not {_kind(calls)}")
    out: list[ToolCall] = []
    for index, call in enumerate(calls):
        at = f"{where}[{index}]"
        if isinstance(call, Mapping):
            function = call.get("function")
            if not isinstance(function, Mapping):
                _refuse(f"{at}.function", f"must be {{'name': ..., 'arguments': ...}}, not {_kind(function)}")
            arguments = function.get("arguments", "")
            if isinstance(arguments, Mapping):
                import json  # a rare shape (an object, not its JSON text): no import on the common path

                arguments = json.dumps(arguments)
            name: Any = function.get("name")  # checked below, as any ToolCall's
            call = ToolCall(id=call.get("id", ""), name=name, arguments=arguments)  # noqa: PLW2901 - see above
        elif type(call) is not ToolCall:
            _refuse(at, f"must be a ToolCall or a dict in OpenAI's shape, not {_kind(call)}")
        for name in ("id", "name", "arguments"):
            value = getattr(call, name)
            if type(value) is not str:
                _refuse(f"{at}.{name}", f"must be a string, not {_kind(value)}")
        if not call.name:
            _refuse(f"{at}.name", "must name the tool called")
        out.append(call)
    return tuple(out)


# --- tools, formats, the rest ----------------------------------------------------------------------------


def _tools(tools: object) -> Sequence[ToolSpec] | Any:
    """The tools as given when each is a usable ``ToolSpec`` (a list stays a list), else a tuple of them."""
    if (
        type(tools) is not list
        and type(tools) is not tuple
        and (isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable))
    ):
        _refuse("tools", f"must be a list of tools, not {_kind(tools)}")
    items = tools if type(tools) is list or type(tools) is tuple else tuple(tools)
    out: list[ToolSpec] = []
    seen: set[str] = set()
    changed = items is not tools
    for index, tool in enumerate(items):
        at = f"tools[{index}]"
        if type(tool) is ToolSpec:
            spec = tool
        elif isinstance(tool, Mapping):
            spec = _tool_from_dict(tool, at)
        else:
            _refuse(
                at,
                f"must be a ToolSpec or a dict such as {{'type': 'function', 'function': {{...}}}}, not {_kind(tool)}",
            )
        if type(spec.name) is not str or not spec.name or len(spec.name) > _MAX_NAME:
            _refuse(f"{at}.name", f"must be a name of 1 to {_MAX_NAME} characters, not {_kind(spec.name)}")
        if type(spec.description) is not str:
            _refuse(f"{at}.description", f"must be a string, not {_kind(spec.description)}")
        parameters = spec.parameters
        if (type(parameters) is not dict and not isinstance(parameters, Mapping)) or not all(
            type(k) is str for k in parameters
        ):
            _refuse(f"{at}.parameters", f"must be a JSON Schema object, not {_kind(spec.parameters)}")
        if spec.name in seen:
            _refuse(f"{at}.name", f"two tools are named {spec.name!r}")
        seen.add(spec.name)
        changed = changed or spec is not tool
        out.append(spec)
    return tuple(out) if changed else tools


def _tool_from_dict(tool: Mapping[Any, Any], where: str) -> ToolSpec:
    """OpenAI's ``{"type": "function", "function": {"name", "description", "parameters"}}``, or the function
    object alone."""
    if "type" in tool or "function" in tool:
        if tool.get("type", "function") != "function":
            _refuse(f"{where}.type", f"only function tools are supported, not {_kind(tool.get('type'))}")
        function = tool.get("function")
        if not isinstance(function, Mapping):
            _refuse(f"{where}.function", f"must be {{'name': ..., 'parameters': ...}}, not {_kind(function)}")
        where, tool = f"{where}.function", function
    unknown = set(tool) - {"name", "description", "parameters", "strict"}
    if unknown:
        _refuse(where, f"unknown tool field(s) {', '.join(sorted(map(str, unknown)))}")
    name: Any = tool.get("name")  # checked by the caller, as any ToolSpec's
    description = tool.get("description")
    parameters = tool.get("parameters")
    return ToolSpec(
        name=name,
        description="" if description is None else description,
        parameters={} if parameters is None else parameters,
    )


def _tool_choice(choice: object, tools: Any) -> str:
    """``auto``, ``none``, ``required``, or the name of one of the request's tools (OpenAI's
    ``{"type": "function", "function": {"name": ...}}`` becomes that name, so providers map one shape)."""
    if not tools:
        _refuse("tool_choice", "needs tools: the request offers none")
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if choice.get("type", "function") != "function" or type(name) is not str:
            _refuse("tool_choice", f"must be {{'type': 'function', 'function': {{'name': ...}}}}, not {_kind(choice)}")
    elif type(choice) is str:
        name = choice
    else:
        _refuse("tool_choice", f"must be auto, none, required or a tool's name, not {_kind(choice)}")
    if name not in _TOOL_CHOICES and all(tool.name != name for tool in tools):
        names = ", ".join(repr(tool.name) for tool in tools)
        _refuse("tool_choice", f"names no tool of this request ({name!r}; its tools: {names})")
    return name


def _response_format(fmt: object) -> ResponseFormat:
    if type(fmt) is ResponseFormat:
        checked = fmt
    elif isinstance(fmt, Mapping):
        checked = _format_from_dict(fmt)
    else:
        _refuse(
            "response_format",
            f"must be a ResponseFormat (ResponseFormat.json(), ResponseFormat.json_schema(schema)) or "
            f"{{'type': 'json_object'}}, not {_kind(fmt)}",
        )
    if checked.type not in _FORMATS:
        _refuse("response_format.type", f"must be text, json_object or json_schema, not {_kind(checked.type)}")
    if checked.type == "json_schema" and not isinstance(checked.schema, Mapping):
        _refuse(
            "response_format.schema", f"a json_schema format needs a JSON Schema object, not {_kind(checked.schema)}"
        )
    if checked.schema is not None and not isinstance(checked.schema, Mapping):
        _refuse("response_format.schema", f"must be a JSON Schema object, not {_kind(checked.schema)}")
    if type(checked.name) is not str or not checked.name or len(checked.name) > _MAX_NAME:
        _refuse("response_format.name", f"must be a name of 1 to {_MAX_NAME} characters, not {_kind(checked.name)}")
    if type(checked.strict) is not bool:
        _refuse("response_format.strict", f"must be true or false, not {_kind(checked.strict)}")
    return checked


def _format_from_dict(fmt: Mapping[Any, Any]) -> ResponseFormat:
    """OpenAI's ``{"type": "json_object"}`` and ``{"type": "json_schema", "json_schema": {"name", "schema",
    "strict"}}``."""
    kind: Any = fmt.get("type")  # checked by the caller, as any ResponseFormat's
    if kind != "json_schema":
        return ResponseFormat(type=kind)
    spec = fmt.get("json_schema")
    if not isinstance(spec, Mapping):
        _refuse("response_format.json_schema", f"must be {{'name': ..., 'schema': {{...}}}}, not {_kind(spec)}")
    strict = spec.get("strict")
    return ResponseFormat(
        type="json_schema",
        schema=spec.get("schema"),
        name=spec.get("name", "response"),
        strict=True if strict is None else strict,
    )


def _stop(stop: object) -> tuple[str, ...] | Any:
    if type(stop) is str:
        return (stop,)
    if isinstance(stop, (bytes, Mapping)) or not isinstance(stop, Iterable):
        _refuse("stop", f"must be a string or a list of strings, not {_kind(stop)}")
    items = stop if type(stop) is list or type(stop) is tuple else tuple(stop)
    for index, item in enumerate(items):
        if type(item) is not str or not item:
            _refuse(f"stop[{index}]", f"must be a non-empty string, not {_kind(item)}")
    return items


def _capabilities(caps: object) -> frozenset[str]:
    if isinstance(caps, (str, bytes)) or not isinstance(caps, Iterable):
        _refuse(
            "required_capabilities",
            f"must be a collection of capability names such as {{'vision'}}, not {_kind(caps)}",
        )
    items = tuple(caps)
    for item in items:
        if type(item) is not str:
            _refuse("required_capabilities", f"must hold capability names (strings), not {_kind(item)}")
    return caps if type(caps) is frozenset else frozenset(items)
