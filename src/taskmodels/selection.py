"""ModelSelectionFactory: which models may serve a task, in order, and why the others may not.

Pure functions of one registry snapshot and one request. ``candidates()`` runs on every
call, so the common case (a request that needs nothing special and fits every model)
returns the chain precomputed at load time after a few integer comparisons; sets and
skip reasons are built only when a model is really skipped.

Capabilities the request itself implies (``implied_capabilities``): tools imply ``tools``,
a ``response_format`` (JSON mode or a JSON schema) ``json``, an embedding call
``embedding``, an image part ``vision``. A model declaring ``json_schema`` has ``json`` too.
Each applies only in a registry where some model declares that tag: a registry that never
says ``tools`` has not said its models lack tools, it just does not use the tag (the seed's
example tags only ``text-generation`` and ``chat``), and skipping every model there would
break it. An ``output_type`` implies nothing: every model can be asked for JSON in its
prompt, and the answer is validated (see ``providers/structured.py``).

Two sizes of the prompt, for two purposes: budgets reserve on an upper bound
(``estimate_prompt_tokens``, so a reservation is never short), while the context-window
check refuses only a prompt that certainly cannot fit (``lower_prompt_tokens``): a prompt
that fits but is near the window goes to the model, and should the provider refuse it,
its context-length error moves the call on to a larger window.
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from taskmodels.errors import ConfigurationError, InvalidRequestError, UnknownTaskError
from taskmodels.log import WARNING, library_logger
from taskmodels.registry.schema import ModelConfig
from taskmodels.registry.service import ModelRegistryService, Registry
from taskmodels.registry.suggest import IdSuggester
from taskmodels.types import CompletionRequest, ImagePart, Message, TextPart

__all__ = [
    "ModelSelectionFactory",
    "Operation",
    "Selection",
    "Skip",
    "UnknownTaskPolicy",
    "count_images",
    "estimate_prompt_tokens",
    "image_tokens",
    "implied_capabilities",
    "lower_prompt_tokens",
]

Operation = Literal["chat", "embeddings"]

UnknownTaskPolicy = Literal["default", "error"]
"""What a task name the registry does not map gets: the default model, or ``UnknownTaskError``."""

# Role markers, separators and the tokens a chat template wraps around each message (three or four for
# OpenAI's, five or six for Llama 3's and Gemma's), plus SentencePiece's one word-start marker per text.
_TOKENS_PER_MESSAGE = 8
# The reply's priming and a beginning-of-sequence token.
_TOKENS_PER_REQUEST = 8
# Providers add a system prompt of their own when tools or a JSON schema are given: Anthropic documents
# 159 to 530 tokens per model and tool choice. A safe bound takes more than the largest.
_TOOL_USE_OVERHEAD = 1024
_TOKENS_PER_TOOL = 16
_KNOWN_TASKS_SHOWN = 20

_log = library_logger("task")
UNKNOWN_TASKS_LOGGED = 1_000
"""Distinct unknown task names warned about per process; past this (names made up per call, as a gateway's
callers may send), one last warning says the rest go unlogged, so neither memory nor the log grows without end."""
_warned: set[str] = set()  # the unknown task names warned about in this process
_warned_lock = threading.Lock()

BYTES_PER_TOKEN_MAX = 8
"""No tokenizer in common use averages more than this many bytes of real text a token (English prose takes
4 to 5 with OpenAI's, Llama's or Gemini's; code and whitespace runs up to 6 or 7), so a prompt of ``n`` bytes
is at least ``n / 8`` tokens: the lower bound the context-window check uses."""

IMAGE_TOKENS: Mapping[str, int] = {
    # Anthropic: width x height / 750 tokens, images resized to at most about 1.15 megapixels.
    "anthropic": 1_600,
    # OpenAI's tiled models: 85 + 170 per 512-pixel tile, at most 1,445; its patch-based ones (gpt-4.1-mini and
    # nano, o4-mini): up to 1,536 patches times a model multiplier of at most 2.46.
    "openai": 3_800,
    "azure-openai": 3_800,
    # Gemini: 258 per 768-pixel tile; Gemini 3's highest media resolution, 1,120 an image.
    "gemini": 1_120,
}
"""What one image can cost in prompt tokens at most, per provider, as the providers document it; budgets and
rate limits reserve this much for each image of a request (``image_tokens``)."""

DEFAULT_IMAGE_TOKENS = 4_096
"""For every other provider (OpenAI-compatible servers, Ollama), whose vision models differ: llama.cpp's
and vLLM's multimodal models commonly cap an image at 4,096 tokens."""


def image_tokens(provider: str) -> int:
    """The most prompt tokens one image can cost on ``provider``."""
    return IMAGE_TOKENS.get(provider, DEFAULT_IMAGE_TOKENS)


@dataclass(frozen=True, slots=True)
class Skip:
    """A model left out of the chain, and the reason in words."""

    model_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    """The decision for one call: the eligible models in order, the skipped ones with reasons."""

    task: str
    models: tuple[ModelConfig, ...]
    skipped: tuple[Skip, ...]
    registry: Registry
    known_task: bool = True  # False: the registry does not name the task, so the default model serves it
    required_capabilities: frozenset[str] = frozenset()
    prompt_tokens: int = 0  # an upper bound of the prompt's text (budgets reserve on it), images apart
    max_cost: float | None = None
    declared_capabilities: frozenset[str] = frozenset()  # every tag some model of the registry declares
    images: int = 0  # image parts in the request: each costs up to image_tokens(provider) more


def _utf8_size(text: str) -> int:
    # isascii() reads a flag CPython keeps on every str: the common case costs no pass over the text.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_size(value: Mapping[str, Any]) -> int:
    # ensure_ascii writes each non-ASCII character as one or two 6-byte escapes, never fewer bytes than UTF-8.
    return len(json.dumps(value, separators=(",", ":"), default=str)) if value else 0


def _message_size(message: Message) -> int:
    content = message.content
    if not content:
        size = 0
    elif type(content) is str:
        size = _utf8_size(content)
    else:  # parts: the text of each (images are counted apart, per provider)
        size = sum(_utf8_size(part.text) + _TOKENS_PER_MESSAGE for part in content if isinstance(part, TextPart))
    if message.name:
        size += _utf8_size(message.name)
    if message.tool_call_id:
        size += _utf8_size(message.tool_call_id)
    for call in message.tool_calls:
        size += _utf8_size(call.id) + _utf8_size(call.name) + _utf8_size(call.arguments) + _TOKENS_PER_MESSAGE
    return size


def estimate_prompt_tokens(request: CompletionRequest, schema: Mapping[str, Any] | None = None) -> int:
    """A safe upper bound of the prompt's tokens, for any script, code or emoji: its size in UTF-8 bytes.

    Why bytes bound tokens: a byte-level BPE tokenizer (GPT-2, OpenAI's cl100k and o200k,
    Llama 3, Qwen, DeepSeek) starts from one token per byte and every merge only joins
    tokens, so it never uses more tokens than the text has bytes. A SentencePiece
    tokenizer with byte fallback (Llama 2, Mistral, Gemma, Gemini) gives each character
    either one piece or, when the character is not in its vocabulary, one token per UTF-8
    byte, so again at most one token per byte, plus the one word-start marker it adds
    in front of a text (counted in the per-message overhead). Not covered: a tokenizer
    that NFKC-normalises before falling back to bytes, where a compatibility character
    such as U+FDFD can expand to many; and tokenizers that are not published (Anthropic's)
    are assumed to be no worse than these.

    On top of the text: a fixed overhead per message and per request for the chat
    template, and when tools or a JSON schema are sent, their JSON size plus the system
    prompt providers add for them. The estimate is about four times the real count for
    English prose; that is the price of a bound that budgets can rely on.

    Cheap by design (it runs on every call): ASCII text is measured without a pass over
    it, other text with one ``str.encode``.
    """
    size = _TOKENS_PER_REQUEST
    if request.prompt is not None:
        size += _utf8_size(request.prompt) + _TOKENS_PER_MESSAGE
    if request.system_prompt:
        size += _utf8_size(request.system_prompt) + _TOKENS_PER_MESSAGE
    for message in request.messages:
        size += _message_size(message) + _TOKENS_PER_MESSAGE
    if schema is None and request.response_format is not None:
        schema = request.response_format.schema
    if request.tools or schema:
        size += _TOOL_USE_OVERHEAD
        for tool in request.tools:
            size += _utf8_size(tool.name) + _utf8_size(tool.description) + _json_size(tool.parameters)
            size += _TOKENS_PER_TOOL
        if schema:
            size += _json_size(schema)
    return size


def lower_prompt_tokens(upper: int) -> int:
    """A size the prompt certainly reaches, from its upper bound (see ``BYTES_PER_TOKEN_MAX``)."""
    return upper // BYTES_PER_TOKEN_MAX


def count_images(request: CompletionRequest) -> int:
    """The image parts of a request's messages."""
    count = 0
    for message in request.messages:
        content = message.content
        if content and type(content) is not str:
            count += sum(1 for part in content if isinstance(part, ImagePart))
    return count


_TOOLS = frozenset({"tools"})
_JSON = frozenset({"json"})
_TOOLS_JSON = frozenset({"tools", "json"})
_VISION = frozenset({"vision"})
_EMBEDDING = frozenset({"embedding"})
_NONE: frozenset[str] = frozenset()


def implied_capabilities(
    request: CompletionRequest | None, operation: Operation = "chat", *, images: int = 0
) -> frozenset[str]:
    """The capability tags the request needs whatever the task says, before the registry's use of them counts.
    ``images``: the request's image parts, when the caller counted them (``count_images``)."""
    if operation == "embeddings":
        return _EMBEDDING
    if request is None:
        return _NONE
    fmt = request.response_format
    wants_json = fmt is not None and fmt.type != "text"
    implied = (_TOOLS_JSON if wants_json else _TOOLS) if request.tools else (_JSON if wants_json else _NONE)
    return (implied | _VISION) if images else implied


def _declared(reg: Registry) -> frozenset[str]:
    return frozenset().union(*reg.capabilities_by_id.values())


def _capabilities(value: object, parameter: str) -> frozenset[str]:
    """Any iterable of capability names, as a frozenset; ``InvalidRequestError`` naming ``parameter`` else."""
    if isinstance(value, frozenset) and all(isinstance(c, str) for c in value):
        return value
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidRequestError(
            f"{parameter} must be an iterable of capability names such as ['vision'], "
            f"not {type(value).__name__} {value!r}",
            param=parameter,
        )
    items = tuple(value)
    wrong = [c for c in items if not isinstance(c, str)]
    if wrong:
        raise InvalidRequestError(
            f"{parameter} must hold capability names (strings), not {type(wrong[0]).__name__} {wrong[0]!r}",
            param=parameter,
        )
    return frozenset(items)


class ModelSelectionFactory:
    """Chooses the models for a task from the registry service's current snapshot."""

    def __init__(self, registry: ModelRegistryService, *, unknown_task: UnknownTaskPolicy = "default") -> None:
        """``unknown_task``: what a task the registry does not map gets; ``"default"`` serves it with the
        default model (the original design), ``"error"`` raises ``UnknownTaskError`` so a typo is caught."""
        if unknown_task not in ("default", "error"):
            raise ConfigurationError(f"unknown_task must be 'default' or 'error', not {unknown_task!r}")
        self._registry = registry
        self._unknown_task = unknown_task
        self._declared: tuple[Registry, frozenset[str]] | None = None  # the tags of the last snapshot seen

    @property
    def unknown_task(self) -> UnknownTaskPolicy:
        return self._unknown_task

    def select_model_for_task(self, task: str) -> ModelConfig:
        """The task's primary model; for a task the registry does not name, the default model (or
        ``UnknownTaskError`` when unknown tasks are errors)."""
        reg = self._registry.current
        chain = reg.chains.get(task)
        if chain:
            return chain[0]
        return self._unmapped_chain(reg, task, warn=True)[0]

    def _unmapped_chain(self, reg: Registry, task: str, *, warn: bool) -> tuple[ModelConfig, ...]:
        if self._unknown_task == "error":
            raise UnknownTaskError(_unknown_task_message(task, reg), task=task)
        if not reg.default_chain:
            raise UnknownTaskError(f"the registry names no model for task {task!r} and has no default", task=task)
        if warn and task not in _warned:  # a set lookup on the hot path; the rest once per name
            _warn_unknown_task(task, reg)
        return reg.default_chain

    def candidates(
        self,
        task: str,
        request: CompletionRequest | None = None,
        *,
        prompt_tokens: int | None = None,
        operation: Operation = "chat",
        schema: Mapping[str, Any] | None = None,
    ) -> Selection:
        """The ordered, de-duplicated chain (primary, fallbacks, default) minus the models this request rules out.

        An empty ``models`` tuple means every model was skipped, each with its reason in
        ``selection.skipped``. ``prompt_tokens`` replaces the estimate (an exact count, when
        the caller has one: then the context check uses it as it is); ``operation``
        ``"embeddings"`` requires ``embedding`` where the registry uses that tag; ``schema``
        is a JSON Schema sent with the prompt (a typed answer's), counted in its size.
        """
        return self._select(task, request, prompt_tokens, frozenset(), operation, schema=schema, warn=True)

    def explain(
        self,
        task: str,
        request: CompletionRequest | None = None,
        *,
        prompt_tokens: int | None = None,
        require: Iterable[str] = (),
        operation: Operation = "chat",
        schema: Mapping[str, Any] | None = None,
    ) -> Selection:
        """The same decision ``candidates`` makes, with extra capabilities to require (for the CLI and debugging).

        An unknown task is not logged here: the selection says so itself (``known_task``)."""
        caps = _capabilities(require, "require")
        return self._select(task, request, prompt_tokens, caps, operation, schema=schema, warn=False)

    def _declared_capabilities(self, reg: Registry) -> frozenset[str]:
        cached = self._declared
        if cached is not None and cached[0] is reg:
            return cached[1]
        declared = _declared(reg)
        self._declared = (reg, declared)
        return declared

    def _select(  # noqa: C901, PLR0912 - the fast path and the filtered path of one decision, kept together
        self,
        task: str,
        request: CompletionRequest | None,
        prompt_tokens: int | None,
        extra_caps: frozenset[str],
        operation: Operation,
        *,
        schema: Mapping[str, Any] | None,
        warn: bool,
    ) -> Selection:
        reg = self._registry.current  # one snapshot for the whole decision
        declared = self._declared_capabilities(reg)
        mapping = reg.tasks_by_name.get(task)
        if mapping is None:
            chain = self._unmapped_chain(reg, task, warn=warn)
            task_caps: tuple[str, ...] = ()
            max_cost = None
        else:
            chain = reg.chains[task]
            task_caps = mapping.required_capabilities
            max_cost = mapping.max_cost_per_call

        out_tokens: int | None = None
        images = 0
        if request is not None:
            out_tokens = request.max_tokens
            if request.max_cost is not None:
                max_cost = request.max_cost
            if request.messages:
                images = count_images(request)
        if prompt_tokens is not None:
            tokens_in = lower = prompt_tokens  # a count the caller made: taken as it is
        else:
            tokens_in = estimate_prompt_tokens(request, schema) if request is not None else 0
            lower = lower_prompt_tokens(tokens_in)  # what certainly cannot fit is all the context check refuses

        caps: frozenset[str] = frozenset()
        if task_caps or extra_caps or (request is not None and request.required_capabilities):
            caps = frozenset(task_caps).union(extra_caps)
            if request is not None:
                caps |= _capabilities(request.required_capabilities, "required_capabilities")
        implied = implied_capabilities(request, operation, images=images)
        if implied:
            # A tag no model declares is one the registry does not use: it rules nothing out.
            implied = frozenset(
                tag for tag in implied if tag in declared or (tag == "json" and "json_schema" in declared)
            )
            caps = caps | implied if caps else implied

        # Fast path: nothing but the token budget to check, and every model fits it.
        if not caps and max_cost is None:
            for model in chain:
                if lower + (out_tokens or model.max_tokens) > model.context_window:
                    break
            else:
                known = mapping is not None
                return Selection(task, chain, (), reg, known, caps, tokens_in, max_cost, declared, images)

        models: list[ModelConfig] = []
        skipped: list[Skip] = []
        caps_by_id = reg.capabilities_by_id
        for model in chain:
            reason = _skip_reason(
                model,
                model_caps=caps_by_id.get(model.id),
                caps=caps,
                tokens_in=tokens_in,
                lower=lower,
                images=images,
                out_tokens=out_tokens,
                max_cost=max_cost,
            )
            if reason is None:
                models.append(model)
            else:
                skipped.append(Skip(model.id, reason))
        return Selection(
            task, tuple(models), tuple(skipped), reg, mapping is not None, caps, tokens_in, max_cost, declared, images
        )


def _skip_reason(
    model: ModelConfig,
    *,
    model_caps: frozenset[str] | None,
    caps: frozenset[str],
    tokens_in: int,
    lower: int,
    images: int,
    out_tokens: int | None,
    max_cost: float | None,
) -> str | None:
    if caps:
        have = model_caps if model_caps is not None else frozenset(model.capabilities)
        missing = caps - have
        if "json" in missing and "json_schema" in have:
            missing = missing - {"json"}  # a model that takes a schema takes JSON mode too
        if missing:
            return f"lacks capability {', '.join(sorted(missing))}"
    tokens_out = out_tokens or model.max_tokens
    needed = lower + tokens_out
    if needed > model.context_window:
        return (
            f"context window {model.context_window} < {needed} tokens needed "
            f"(a prompt of at least {lower} + {tokens_out} output)"
        )
    if max_cost is not None:
        cost = model.estimate_cost(tokens_in + images * image_tokens(model.provider), tokens_out)
        if cost > max_cost:
            return f"estimated cost ${cost:.4f} > limit ${max_cost:.4f}"
    return None


def _warn_unknown_task(task: str, reg: Registry) -> None:
    """One WARNING per unknown task name per process: the default model serves it, which a typo makes silent."""
    with _warned_lock:
        if task in _warned or len(_warned) > UNKNOWN_TASKS_LOGGED:
            return
        _warned.add(task)
        last = len(_warned) > UNKNOWN_TASKS_LOGGED  # the set keeps this name too, so the check above stops it all
    if (logger := _log.enabled(WARNING)) is None:
        return
    if last:
        logger.warning(
            "taskmodels.task.unknown",
            task=task,
            note=f"{UNKNOWN_TASKS_LOGGED:,} unknown task names were logged; no more will be in this process",
        )
        return
    close = IdSuggester(reg.tasks_by_name, limit=1).suggest(task)
    logger.warning(
        "taskmodels.task.unknown",
        task=task,
        served_by=reg.default_model.id,
        did_you_mean=close,
        note="the registry maps no such task, so its default model serves it; "
        "TASKMODELS_SELECTION__UNKNOWN_TASK=error makes it an UnknownTaskError",
    )


def _unknown_task_message(task: str, reg: Registry) -> str:
    known = sorted(reg.tasks_by_name)
    message = f"unknown task {task!r}"
    close = difflib.get_close_matches(task, known, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if not known:
        return message + " (the registry maps no tasks)"
    shown = ", ".join(repr(t) for t in known[:_KNOWN_TASKS_SHOWN])
    more = f" and {len(known) - _KNOWN_TASKS_SHOWN} more" if len(known) > _KNOWN_TASKS_SHOWN else ""
    return f"{message} (known tasks: {shown}{more})"
