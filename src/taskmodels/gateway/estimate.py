"""The most one request can cost a key: what the gateway reserves against the key's budget and tpm before the call.

The bound is the engine's own, taken over every model selection would try for the request: the prompt's UTF-8
bytes as tokens (a bound for any tokenizer in use, see ``selection.estimate_prompt_tokens``), each image at its
provider's bound, and the request's ``max_tokens`` (else the model's) of answer, priced at the dearer of the
model's input and cache-write prices. The dearest model of the chain sets it, since any of them may answer.

A key is charged what the answer cost (``CompletionResult.cost``), as the usage its client sees: attempts that
failed, and hedged requests that lost their race, are the operator's cost, not the key's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from taskmodels.gateway.governor import Bound
from taskmodels.registry.schema import ModelConfig
from taskmodels.selection import ModelSelectionFactory, Selection, image_tokens
from taskmodels.types import CompletionRequest

__all__ = ["chat_bound", "embeddings_bound"]

_PER_TEXT = 4  # tokens an embedding input may cost besides its bytes (a start and an end marker, with margin)


def chat_bound(
    selector: ModelSelectionFactory,
    task: str,
    request: CompletionRequest,
    *,
    schema: Mapping[str, Any] | None = None,
) -> Bound:
    """The bound of a chat request; ``schema``: a typed answer's JSON Schema, which goes with the prompt."""
    selection = selector.candidates(task, request, schema=schema)
    tokens, cost = 0, 0.0
    for model in selection.models:
        prompt = _prompt_bound(selection, model)
        answer = request.max_tokens or model.max_tokens
        tokens = max(tokens, prompt + answer)
        cost = max(cost, model.estimate_cost(prompt, answer))
    return Bound(tokens, cost)


def embeddings_bound(selector: ModelSelectionFactory, task: str, texts: Sequence[str]) -> Bound:
    """The bound of an embeddings request of ``texts``."""
    selection = selector.candidates(task, operation="embeddings")
    tokens = sum(len(text.encode("utf-8", "surrogatepass")) + _PER_TEXT for text in texts)
    cost = max((model.estimate_cost(tokens, 0) for model in selection.models), default=0.0)
    return Bound(tokens, cost)


def _prompt_bound(selection: Selection, model: ModelConfig) -> int:
    # CallPlan.prompt_bound, for a selection not yet planned.
    if not selection.images:
        return selection.prompt_tokens
    return selection.prompt_tokens + selection.images * image_tokens(model.provider)
