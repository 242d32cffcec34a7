"""The fallback loop's state: circuit breakers, retry policy and where their state lives."""

from taskmodels.resilience.state import (
    Admission,
    BreakerSnapshot,
    MemoryStateStore,
    SpendDecision,
    StateStore,
)

__all__ = ["Admission", "BreakerSnapshot", "MemoryStateStore", "SpendDecision", "StateStore"]
