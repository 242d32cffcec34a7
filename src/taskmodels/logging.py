"""STUB — configure_logging and the redaction processor (issue 2 / 4)."""

from __future__ import annotations

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    raise NotImplementedError
