"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.otel_kit import Otel, in_memory_otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    """The OpenTelemetry SDK reading spans and metric points into memory (``tests/otel_kit.py``)."""
    yield from in_memory_otel()
