"""What a model's answer costs: cache reads and writes at their own prices, reasoning as output."""

from __future__ import annotations

from typing import Any

import pytest

from taskmodels.registry import ModelConfig
from taskmodels.types import Usage
from tests.registry_entries import model


def config(**keys: Any) -> ModelConfig:
    return ModelConfig.model_validate(model("m", **keys))


# Anthropic-like prices, per 1,000 tokens: input 0.003, output 0.015, cache read 0.0003, cache write 0.00375.
PRICED = config(
    costPer1kTokens=0.009,
    inputCostPer1kTokens=0.003,
    outputCostPer1kTokens=0.015,
    cachedInputCostPer1kTokens=0.0003,
    cacheWriteCostPer1kTokens=0.00375,
)


def test_cached_reads_and_cache_writes_are_priced_apart_from_the_rest_of_the_prompt() -> None:
    usage = Usage(input_tokens=10_000, output_tokens=500, cached_tokens=6_000, cache_write_tokens=3_000)
    # 1,000 plain input, 6,000 read from the cache, 3,000 written to it, 500 output.
    expected = (1_000 * 0.003 + 6_000 * 0.0003 + 3_000 * 0.00375 + 500 * 0.015) / 1000
    assert PRICED.cost(usage) == pytest.approx(expected)
    assert PRICED.cost(usage) == pytest.approx(0.02355)


def test_reasoning_tokens_are_output() -> None:
    with_reasoning = Usage(input_tokens=100, output_tokens=1_000, reasoning_tokens=900)
    assert PRICED.cost(with_reasoning) == PRICED.cost(Usage(input_tokens=100, output_tokens=1_000))
    assert PRICED.cost(with_reasoning) == pytest.approx((100 * 0.003 + 1_000 * 0.015) / 1000)


def test_unset_cache_prices_are_the_input_price() -> None:
    plain = config(inputCostPer1kTokens=0.002, outputCostPer1kTokens=0.008)
    assert (plain.cached_input_price, plain.cache_write_price) == (0.002, 0.002)
    usage = Usage(input_tokens=4_000, output_tokens=100, cached_tokens=3_000, cache_write_tokens=500)
    assert plain.cost(usage) == pytest.approx((4_000 * 0.002 + 100 * 0.008) / 1000)


def test_the_seed_format_prices_everything_at_cost_per_1k_tokens() -> None:
    seed = config(costPer1kTokens=0.001)
    assert seed.cost(Usage(2_000, 1_000, cached_tokens=1_500, cache_write_tokens=200, reasoning_tokens=50)) == (
        pytest.approx(0.003)
    )


def test_a_free_cache_read_costs_nothing() -> None:
    free_reads = config(inputCostPer1kTokens=0.001, cachedInputCostPer1kTokens=0)
    assert free_reads.cost(Usage(input_tokens=1_000, cached_tokens=1_000)) == 0.0


def test_cache_counts_above_the_prompt_never_make_a_negative_price() -> None:
    # A provider that reports its cache counts beside the prompt count instead of inside it.
    usage = Usage(input_tokens=100, output_tokens=0, cached_tokens=800, cache_write_tokens=300)
    assert PRICED.cost(usage) == pytest.approx((800 * 0.0003 + 300 * 0.00375) / 1000)


def test_the_estimate_is_an_upper_bound_when_cache_writes_cost_more_than_input() -> None:
    # Any split of the prompt between plain input, cache reads and cache writes costs at most the estimate.
    estimate = PRICED.estimate_cost(1_000, 200)
    assert estimate == pytest.approx((1_000 * 0.00375 + 200 * 0.015) / 1000)
    for cached, written in [(0, 0), (1_000, 0), (0, 1_000), (400, 600)]:
        assert PRICED.cost(Usage(1_000, 200, cached_tokens=cached, cache_write_tokens=written)) <= estimate
    assert config(costPer1kTokens=0.001).estimate_cost(1_000, 1_000) == pytest.approx(0.002)


# 2**53 tokens, the most a price is taken for (what providers/answers.py lets an answer report, plus one).
TOP = 9_007_199_254_740_992


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # 2**53 input at 0.003 and 2**53 output at 0.015 per 1,000.
        (Usage(input_tokens=10**400, output_tokens=10**400), (TOP * 0.003 + TOP * 0.015) / 1000),
        # The cache's counts leave no plain input: 2**53 read at 0.0003, written at 0.00375, output at 0.015.
        (
            Usage(input_tokens=10**400, output_tokens=10**400, cached_tokens=10**400, cache_write_tokens=10**400),
            (TOP * 0.0003 + TOP * 0.00375 + TOP * 0.015) / 1000,
        ),
    ],
    ids=["plain", "with-cache"],
)
def test_no_count_makes_the_price_overflow(usage: Usage, expected: float) -> None:
    assert PRICED.cost(usage) == pytest.approx(expected)


def test_negative_counts_cost_nothing() -> None:
    assert PRICED.cost(Usage(input_tokens=-5, output_tokens=-7)) == 0.0
    assert PRICED.cost(Usage(input_tokens=-5, output_tokens=-7, cached_tokens=-1, cache_write_tokens=-1)) == 0.0


def test_the_estimate_of_a_huge_max_tokens_does_not_overflow() -> None:
    # The dearer input price is the cache write's, 0.00375.
    assert PRICED.estimate_cost(10**400, 10**400) == pytest.approx((TOP * 0.00375 + TOP * 0.015) / 1000)
    assert PRICED.estimate_cost(-1, -1) == 0.0
