"""ModelSelectionFactory: which models may serve a task, in order, and why the others may not.

Pure functions of one registry snapshot and one request. ``candidates()`` runs on every
call, so the common case (a request that needs nothing special and fits every model)
returns the chain precomputed at load time after a few integer comparisons; sets and
skip reasons are built only when a model is really skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from taskmodels.errors import UnknownTaskError
from taskmodels.registry.schema import ModelConfig
from taskmodels.registry.service import ModelRegistryService, Registry
from taskmodels.types import CompletionRequest

__all__ = ["ModelSelectionFactory", "Selection", "Skip", "estimate_prompt_tokens"]

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4  # role markers and separators the chat templates add


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
    prompt_tokens: int = 0
    max_cost: float | None = None

    def skipped_pairs(self) -> tuple[tuple[str, str], ...]:
        """``(model_id, reason)`` pairs, the shape ``NoEligibleModelError`` takes."""
        return tuple((s.model_id, s.reason) for s in self.skipped)


def estimate_prompt_tokens(request: CompletionRequest) -> int:
    """A cheap upper-ish estimate: about four characters per token, plus a little per message."""
    chars = len(request.prompt or "") + len(request.system_prompt or "")
    count = (request.prompt is not None) + bool(request.system_prompt)
    for message in request.messages:
        count += 1
        chars += len(message.content or "")
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + 20 * len(tool.parameters)
    return -(-chars // _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * count


class ModelSelectionFactory:
    """Chooses the models for a task from the registry service's current snapshot."""

    def __init__(self, registry: ModelRegistryService) -> None:
        self._registry = registry

    def select_model_for_task(self, task: str) -> ModelConfig:
        """The task's primary model; the registry's default model for a task it does not name."""
        reg = self._registry.current
        chain = reg.chains.get(task)
        if chain:
            return chain[0]
        if reg.default_chain:
            return reg.default_chain[0]
        raise UnknownTaskError(f"the registry names no model for task {task!r} and has no default", task=task)

    def candidates(
        self, task: str, request: CompletionRequest | None = None, *, prompt_tokens: int | None = None
    ) -> Selection:
        """The ordered, de-duplicated chain (primary, fallbacks, default) minus the models this request rules out.

        An empty ``models`` tuple means every model was skipped; the caller raises
        ``NoEligibleModelError`` with ``selection.skipped_pairs()``.
        """
        return self._select(task, request, prompt_tokens, ())

    def explain(
        self,
        task: str,
        request: CompletionRequest | None = None,
        *,
        prompt_tokens: int | None = None,
        require: Iterable[str] = (),
    ) -> Selection:
        """The same decision ``candidates`` makes, with extra capabilities to require (for the CLI and debugging)."""
        return self._select(task, request, prompt_tokens, tuple(require))

    def _select(
        self,
        task: str,
        request: CompletionRequest | None,
        prompt_tokens: int | None,
        extra_caps: tuple[str, ...],
    ) -> Selection:
        reg = self._registry.current  # one snapshot for the whole decision
        mapping = reg.tasks_by_name.get(task)
        if mapping is None:
            chain = reg.default_chain
            if not chain:
                raise UnknownTaskError(f"the registry names no model for task {task!r} and has no default", task=task)
            task_caps: tuple[str, ...] = ()
            max_cost = None
        else:
            chain = reg.chains[task]
            task_caps = mapping.required_capabilities
            max_cost = mapping.max_cost_per_call

        out_tokens: int | None = None
        if request is not None:
            out_tokens = request.max_tokens
            if request.max_cost is not None:
                max_cost = request.max_cost
            if prompt_tokens is None:
                prompt_tokens = estimate_prompt_tokens(request)
        tokens_in = prompt_tokens or 0

        caps: frozenset[str] = frozenset()
        if task_caps or extra_caps or (request is not None and request.required_capabilities):
            caps = frozenset(task_caps).union(extra_caps)
            if request is not None:
                caps |= request.required_capabilities

        # Fast path: nothing but the token budget to check, and every model fits it.
        if not caps and max_cost is None:
            for model in chain:
                if tokens_in + (out_tokens or model.max_tokens) > model.context_window:
                    break
            else:
                return Selection(task, chain, (), reg, mapping is not None, caps, tokens_in, max_cost)

        models: list[ModelConfig] = []
        skipped: list[Skip] = []
        caps_by_id = reg.capabilities_by_id
        for model in chain:
            reason = _skip_reason(
                model,
                model_caps=caps_by_id.get(model.id),
                caps=caps,
                tokens_in=tokens_in,
                out_tokens=out_tokens,
                max_cost=max_cost,
            )
            if reason is None:
                models.append(model)
            else:
                skipped.append(Skip(model.id, reason))
        return Selection(task, tuple(models), tuple(skipped), reg, mapping is not None, caps, tokens_in, max_cost)


def _skip_reason(
    model: ModelConfig,
    *,
    model_caps: frozenset[str] | None,
    caps: frozenset[str],
    tokens_in: int,
    out_tokens: int | None,
    max_cost: float | None,
) -> str | None:
    if caps:
        have = model_caps if model_caps is not None else frozenset(model.capabilities)
        missing = caps - have
        if missing:
            return f"lacks capability {', '.join(sorted(missing))}"
    tokens_out = out_tokens or model.max_tokens
    needed = tokens_in + tokens_out
    if needed > model.context_window:
        return (
            f"context window {model.context_window} < {needed} tokens needed ({tokens_in} prompt + {tokens_out} output)"
        )
    if max_cost is not None:
        cost = model.estimate_cost(tokens_in, tokens_out)
        if cost > max_cost:
            return f"estimated cost ${cost:.4f} > limit ${max_cost:.4f}"
    return None
