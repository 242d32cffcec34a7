"""The bound a key's request reserves: the dearest model of the chain, the prompt's UTF-8 bytes as tokens, the
whole answer allowed."""

from __future__ import annotations

import pytest

from taskmodels.gateway.estimate import chat_bound, embeddings_bound
from taskmodels.gateway.governor import Bound
from taskmodels.registry.service import ModelRegistryService
from taskmodels.selection import ModelSelectionFactory
from taskmodels.testing import fake_model, fake_registry
from taskmodels.types import CompletionRequest


@pytest.fixture
def selector() -> ModelSelectionFactory:
    # a: cheap, the primary; b: ten times dearer, the fallback (and default). Both answer up to 100 tokens.
    registry = ModelRegistryService.from_dict(
        fake_registry(fake_model("a", price=0.001), fake_model("b", price=0.01)), provider_names=None
    )
    return ModelSelectionFactory(registry)


def test_a_chat_request_reserves_what_its_dearest_model_could_cost(selector: ModelSelectionFactory) -> None:
    # "héllo" is 6 UTF-8 bytes; 8 tokens for the request and 8 for its one message: 22 prompt tokens at most.
    # On b: (22 + 100) tokens at $0.01 per 1k.
    assert chat_bound(selector, "t", CompletionRequest(prompt="héllo")) == Bound(122, 0.00122)


def test_the_request_s_max_tokens_bounds_the_answer(selector: ModelSelectionFactory) -> None:
    assert chat_bound(selector, "t", CompletionRequest(prompt="héllo", max_tokens=10)) == Bound(32, 0.00032)


def test_any_script_is_bounded_by_its_bytes(selector: ModelSelectionFactory) -> None:
    # 6 Devanagari letters are 18 bytes, 4 CJK ideographs 12, one emoji 4: 34 bytes, + 16 = 50 prompt tokens.
    bound = chat_bound(selector, "t", CompletionRequest(prompt="नमस्ते漢字仮名🙂", max_tokens=1))
    assert bound.tokens == 51


def test_an_embeddings_request_reserves_its_texts(selector: ModelSelectionFactory) -> None:
    # "ab" is 2 bytes, "日本" 6; each text 4 tokens more: 16 tokens, priced on b.
    bound = embeddings_bound(selector, "t", ["ab", "日本"])
    assert bound.tokens == 16
    assert bound.cost == pytest.approx(0.00016)
