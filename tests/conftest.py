"""Shared fixtures. Integration tests need real servers; under CI=true they must run, never skip."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_or_skip(available: bool, why: str) -> None:
    """Skip a test whose server cannot start here, except in CI, where it fails."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"integration dependency missing in CI: {why}")
    pytest.skip(why)
