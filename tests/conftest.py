"""Shared fixtures. Integration tests need real servers; under CI=true they must run, never skip."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.otel_kit import Otel, in_memory_otel

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Property-based tests: no example database on disk (a clean clone runs the same way every time), no per-example
# deadline (two busy cores make single examples slow, which says nothing about the property), and each test sets
# its own max_examples, sized so the whole fuzz suite stays under a minute.
settings.register_profile(
    "taskmodels", database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("taskmodels")


def require_or_skip(available: bool, why: str) -> None:
    """Skip a test whose server cannot start here, except in CI, where it fails."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"integration dependency missing in CI: {why}")
    pytest.skip(why)


@pytest.fixture
def otel() -> Iterator[Otel]:
    """The OpenTelemetry SDK reading spans and metric points into memory (``tests/otel_kit.py``)."""
    yield from in_memory_otel()
