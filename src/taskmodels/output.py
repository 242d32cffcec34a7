"""Typed answers: the schema of an ``output_type``, the request each model gets, and the answer's validation.

``OutputSchema`` is built once per type (pydantic's ``TypeAdapter`` gives both the JSON Schema and the
validator, so a pydantic model, a dataclass, a TypedDict or a list of one all work). ``OutputRun`` is one
call's: for every model of the chain it rewrites the request the way that model takes a schema (the
strategy of ``providers/structured.py``), validates each answer, and, after a failed validation, adds the
answer and the error to the next request to the same model. It reaches the engine as a wrapper around each
model's port (``OutputRun.port``), so the loop itself knows only that ``OutputValidationError``'s rule
asks the same model again while ``may_ask_again`` says so.

A caller's own ``response_format`` (no ``output_type``) goes through the same rewriting, without
validation, so that a fallback that takes only JSON mode is not sent a schema field it would refuse.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from taskmodels.errors import InvalidRequestError, OutputValidationError
from taskmodels.providers.port import ModelPort
from taskmodels.providers.structured import (
    STRUCTURED_TAGS,
    WRAP_KEY,
    Strategy,
    object_rooted,
    openai_strict,
    strategy_for,
)
from taskmodels.registry.schema import ModelConfig
from taskmodels.selection import Selection
from taskmodels.types import (
    CompletionRequest,
    CompletionResult,
    EmbeddingResult,
    FinishReason,
    Message,
    ResponseFormat,
    StreamEvent,
)

__all__ = ["MAX_PROBLEMS", "OutputRun", "OutputSchema", "output_run_for", "output_schema", "raw_schema"]

MAX_PROBLEMS = 5
"""Validation messages kept on an ``OutputValidationError`` and fed back to the model."""

_SCHEMA_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """What a call needs to ask for and check one output type, built once per type."""

    adapter: TypeAdapter[Any] | None  # None: a caller's raw response_format, not validated
    schema: dict[str, Any]  # object-rooted, as every structured-output API wants it
    wrapped: bool  # the type's own schema sits under WRAP_KEY
    name: str
    strict_schema: dict[str, Any]
    strict: bool  # OpenAI's strict mode can take it
    raw_format: ResponseFormat | None = None  # a caller's own format: sent as it is where it is taken natively

    @property
    def instruction(self) -> str:
        """The system-prompt text for models that are not sent the schema natively."""
        return (
            "Answer with one JSON object that matches this JSON Schema, and nothing else: "
            "no prose, no code fence.\n" + json.dumps(self.schema, separators=(",", ":"))
        )

    def response_format(self, strategy: Strategy) -> ResponseFormat | None:
        if strategy == "native":
            if self.raw_format is not None:
                return self.raw_format
            schema = self.strict_schema if self.strict else self.schema
            return ResponseFormat.json_schema(schema, name=self.name, strict=self.strict)
        if strategy == "json_mode":
            return ResponseFormat.json()
        return None

    def parse(self, model: ModelConfig, text: str, finish_reason: FinishReason) -> Any:
        """The validated value of ``text``, or ``OutputValidationError`` with the first problems."""
        truncated = finish_reason == "length"
        try:
            data = json.loads(_json_text(text))
        except ValueError as exc:
            problems = [f"the answer is not JSON: {exc}"]
        else:
            if self.wrapped and isinstance(data, dict) and WRAP_KEY in data:
                data = data[WRAP_KEY]
            if self.adapter is None:
                return data
            try:
                return self.adapter.validate_python(data)
            except ValidationError as exc:
                problems = [_problem(error) for error in exc.errors(include_url=False)[:MAX_PROBLEMS]]
        if truncated:
            message = f"the answer was cut at max_tokens before its JSON closed ({len(text)} characters)"
        else:
            message = f"the answer does not match the output type: {'; '.join(problems)}"
        raise OutputValidationError(
            message, problems=problems, truncated=truncated, provider=model.provider, model_id=model.id
        )


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "(root)"
    return f"{where}: {error.get('msg', 'invalid')}"


def _json_text(text: str) -> str:
    """The JSON in an answer: models asked in the prompt often wrap it in a code fence or a sentence."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0].strip()
    if stripped[:1] in ("{", "["):
        return stripped
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if not starts:
        return stripped
    start = min(starts)
    end = max(stripped.rfind("}"), stripped.rfind("]"))
    return stripped[start : end + 1] if end > start else stripped[start:]


_cache: dict[Any, OutputSchema] = {}
_cache_lock = threading.Lock()


def output_schema(output_type: Any) -> OutputSchema:
    """The ``OutputSchema`` of a type (cached); ``InvalidRequestError`` when pydantic cannot describe it."""
    try:
        cached = _cache.get(output_type)
    except TypeError:  # an unhashable "type": built each time, then refused or used once
        cached = None
    if cached is not None:
        return cached
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(output_type)
        raw = adapter.json_schema()
    except Exception as exc:  # noqa: BLE001 - whatever pydantic raises for a value that is no type (IndexError for "", SyntaxError for " ", KeyError for {}) is the caller's error
        raise InvalidRequestError(
            f"output_type must be a pydantic model, a dataclass, a TypedDict or a list of one; "
            f"pydantic cannot describe {output_type!r}: {exc}",
            param="output_type",
        ) from None
    built = _schema(adapter, raw, _type_name(output_type))
    with _cache_lock:
        if len(_cache) >= _SCHEMA_CACHE_SIZE:
            _cache.clear()
        with contextlib.suppress(TypeError):  # unhashable: not cached
            _cache[output_type] = built
    return built


def raw_schema(fmt: ResponseFormat) -> OutputSchema:
    """A caller's own ``json_schema`` response format, rewritten per model as a typed answer's is (never
    wrapped: the caller reads the JSON itself, and gets the same shape from every model)."""
    schema = dict(fmt.schema or {"type": "object"})
    return OutputSchema(
        adapter=None,
        schema=schema,
        wrapped=False,
        name=fmt.name,
        strict_schema=schema,
        strict=fmt.strict,
        raw_format=fmt,
    )


def _schema(adapter: TypeAdapter[Any] | None, raw: Mapping[str, Any], name: str) -> OutputSchema:
    schema, wrapped = object_rooted(raw)
    strict_schema, strict = openai_strict(schema)
    return OutputSchema(adapter, schema, wrapped, name, strict_schema, strict)


def _type_name(output_type: Any) -> str:
    name = getattr(output_type, "__name__", None) or "response"
    # OpenAI's schema name: letters, digits, underscores and dashes, at most 64 characters.
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(name))
    return cleaned[:64] or "response"


class OutputRun:
    """One call's typed answer: the request per model, validation, and the feedback for a second try.

    ``value`` is the last validated output (the answer the engine then accepts); ``declared`` holds every
    capability tag the registry uses, which says how far the tags decide (see ``providers/structured.py``).
    """

    __slots__ = ("_failures", "_feedback", "_truncated", "declared", "retries", "schema", "validate", "value")

    def __init__(self, schema: OutputSchema, *, retries: int, declared: frozenset[str], validate: bool = True) -> None:
        self.schema = schema
        self.retries = retries
        self.declared = declared
        self.validate = validate
        self.value: Any = None
        self._failures: dict[str, int] = {}
        self._feedback: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._truncated: set[str] = set()

    def port(self, inner: ModelPort) -> ModelPort:
        """``inner`` with every request rewritten for its model and every answer validated."""
        return _TypedPort(inner, self)

    def may_ask_again(self, model_id: str) -> bool:
        """Whether the model whose answer just failed validation gets another try, with the error."""
        return model_id not in self._truncated and self._failures.get(model_id, 0) <= self.retries

    def strategy(self, model: ModelConfig) -> Strategy:
        return strategy_for(model, declared=self.declared)

    def request_for(self, model: ModelConfig, request: CompletionRequest) -> CompletionRequest:
        """``request`` as ``model`` takes it: the schema its way, and the last failure's feedback."""
        strategy = self.strategy(model)
        conversation = request.conversation()
        if strategy != "native":
            conversation = _with_system(conversation, self.schema.instruction)
        feedback = self._feedback.get(model.id)
        if feedback is not None:
            answer, problems = feedback
            conversation.append(Message(role="assistant", content=answer))
            conversation.append(
                Message(
                    role="user",
                    content="That answer does not match the required JSON Schema: "
                    + "; ".join(problems)
                    + ". Answer again with only the corrected JSON.",
                )
            )
        return replace(
            request,
            prompt=None,
            system_prompt=None,
            messages=tuple(conversation),
            response_format=self.schema.response_format(strategy),
            output_type=None,
        )

    def check(self, model: ModelConfig, text: str, finish_reason: FinishReason) -> Any:
        """The answer's validated value; a failure is recorded for the next request and raised."""
        try:
            value = self.schema.parse(model, text, finish_reason)
        except OutputValidationError as exc:
            self._failures[model.id] = self._failures.get(model.id, 0) + 1
            self._feedback[model.id] = (text, exc.problems)
            if exc.truncated:
                self._truncated.add(model.id)
            raise
        self.value = value
        return value


def _with_system(conversation: list[Message], instruction: str) -> list[Message]:
    if conversation and conversation[0].role == "system":
        first = conversation[0]
        return [replace(first, content=f"{first.content or ''}\n\n{instruction}"), *conversation[1:]]
    return [Message(role="system", content=instruction), *conversation]


class _TypedPort:
    """A model's port as a typed call sees it. Answers that only call tools are passed on unvalidated."""

    __slots__ = ("_inner", "_run")

    def __init__(self, inner: ModelPort, run: OutputRun) -> None:
        self._inner = inner
        self._run = run

    @property
    def model(self) -> ModelConfig:
        return self._inner.model

    @property
    def base_url(self) -> str | None:
        """The wrapped port's endpoint, for telemetry (``server.address``, the provider's name by host)."""
        url = getattr(self._inner, "base_url", None)
        return url if isinstance(url, str) else None

    async def complete(self, request: CompletionRequest) -> CompletionResult:
        run, model = self._run, self._inner.model
        result = await self._inner.complete(run.request_for(model, request))
        if run.validate and not (result.tool_calls and result.finish_reason == "tool_calls"):
            result.output = run.check(model, result.text, result.finish_reason)
        return result

    async def stream(
        self,
        request: CompletionRequest,
        *,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        run, model = self._run, self._inner.model
        stream = self._inner.stream(
            run.request_for(model, request), first_token_timeout=first_token_timeout, stall_timeout=stall_timeout
        )
        texts: list[str] = []
        tools = False
        try:
            async for event in stream:
                if event.type == "text":
                    texts.append(event.text)
                elif event.type == "tool_call":
                    tools = True
                elif event.type == "done" and run.validate and not (tools and event.finish_reason == "tool_calls"):
                    run.check(model, "".join(texts), event.finish_reason or "stop")
                yield event
        finally:
            close = getattr(stream, "aclose", None)  # the port promises an iterator; generators need closing
            if close is not None:
                await close()

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return await self._inner.embed(texts)


def output_run_for(selection: Selection, request: CompletionRequest) -> OutputRun | None:
    """The per-model rewriting (and, for an ``output_type``, the validation) of a call that asks for JSON."""
    declared = selection.declared_capabilities
    if request.output_type is not None:
        mapping = selection.registry.tasks_by_name.get(selection.task)
        retries = mapping.output_retries if mapping is not None else 1
        return OutputRun(output_schema(request.output_type), retries=retries, declared=declared)
    fmt = request.response_format
    if fmt is None or fmt.type != "json_schema" or STRUCTURED_TAGS.isdisjoint(declared):
        return None  # JSON mode and plain text go as they are; an untagged registry says nothing to adapt to
    return OutputRun(raw_schema(fmt), retries=0, declared=declared, validate=False)
