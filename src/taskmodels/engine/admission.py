"""Admission: may this model be tried now? Its circuit breaker and the task's budget decide.

Both keep their state in the ``StateStore`` (memory, or Redis shared between
processes). The rule "a failing state store never fails a call" is applied here, by
``resilience.state.StoreGuard`` (the gateway's per-key limits use the same guard):
every store operation goes through it, answering as if the store had said yes
(allowed, nothing reserved), with one warning when the store is lost and one when
it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from taskmodels.log import library_logger
from taskmodels.registry.schema import BudgetConfig, ModelConfig
from taskmodels.resilience.breaker import CircuitBreaker
from taskmodels.resilience.ratelimit import DEFAULT_HOLD, RATE_WINDOW, RateSnapshot, RateTicket, hold_until, new_ident
from taskmodels.resilience.state import Admission, BreakerSnapshot, Reservation, SpendDecision, StateStore, StoreGuard
from taskmodels.types import RateLimitInfo

from .call import CallState
from .pools import Route

__all__ = ["Claim", "Gate", "Reservation"]  # Reservation lives in resilience/state.py; the loop takes it from here

_log = library_logger("state")
_ALLOWED = Admission(True, False, None)


NOTHING_RESERVED = Reservation("", 0.0, 0.0)


class Claim:
    """What one attempt holds while it runs: its budget reservation, its rate ticket (a route that keeps rate
    state), its place among the route's calls in flight. Given back exactly once: ``take`` hands it to whoever
    ends the attempt (the step that settles it to its real cost), ``release`` gives back whatever no one took
    (a cancelled call, a driver that left early). Whatever path an attempt ends by, nothing leaks and nothing is
    given back twice."""

    __slots__ = ("_gate", "open", "reservation", "route", "ticket")

    def __init__(self, gate: Gate, route: Route, reservation: Reservation, ticket: RateTicket | None) -> None:
        self._gate = gate
        self.route = route
        self.reservation = reservation
        self.ticket = ticket
        self.open = True
        route.in_flight += 1

    def take(self) -> bool:
        """True once: the caller now settles the claim."""
        if not self.open:
            return False
        self.open = False
        self.route.in_flight -= 1
        return True

    async def release(self) -> None:
        """Give back what no one settled: the whole reservation, the ticket's tokens. Shielded, as settling is:
        it runs while a cancellation unwinds the call, and must finish even if another arrives."""
        if self.take() and (self.reservation.scope or self.ticket is not None):
            await asyncio.shield(self._gate.give_back(self.reservation, self.ticket))


class Gate:
    """Breakers and budgets over one state store, absorbing its failures."""

    __slots__ = ("_guard", "_guarded", "breaker", "store", "wall_clock")

    def __init__(
        self, store: StateStore, breaker: CircuitBreaker, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.breaker = breaker
        self.wall_clock = wall_clock
        self._guard = guard = StoreGuard(store)
        self._guarded = guard.guarded

    # --- one candidate of one call ------------------------------------------------------------

    async def admits(self, call: CallState, model: ModelConfig, *, forced: bool, route: Route | None = None) -> bool:
        """Whether ``model`` (through ``route``, one of its deployments) may be tried now; a refusal is recorded
        as a skip with its reason."""
        if call.min_context:
            reason = call.context_too_small(model)
            if reason is not None:
                call.skip(model, "ContextLengthExceededError", reason)
                return False
        if forced:  # every breaker was open: the one that closes soonest is tried anyway
            return True
        key = model.id if route is None else route.key
        admission = await self.admit(key, probe_lease=call.plan.policy.limit(model, "attempt_timeout"))
        if admission.allowed:
            return True
        retry_at = admission.retry_at if admission.retry_at is not None else 0.0
        call.open_breakers.append((retry_at, len(call.open_breakers), model))
        deployment = route.deployment_id if route is not None else None
        where = f"deployment {deployment!r}: " if deployment else ""
        call.skip(model, "CircuitOpen", f"{where}circuit open until {retry_at:.3f}", deployment_id=deployment)
        return False

    async def claim(self, call: CallState, route: Route) -> Claim | None:
        """An attempt's budget reservation and, for a route with rate state, its rate ticket; ``None`` (a skip
        recorded) when either refuses."""
        reservation = await self.reserve_for(call, route.model)
        if reservation is None:
            return None
        ticket = None
        if route.limited:
            ticket = await self.take_rate(call, route)
            if ticket is None:
                await self.give_back(reservation, None)
                return None
        return Claim(self, route, reservation, ticket)

    async def give_back(self, reservation: Reservation, ticket: RateTicket | None) -> None:
        """What an attempt that was never settled held: its whole reservation, its tokens."""
        if reservation.scope:
            await self.settle(reservation, 0.0)
        if ticket is not None:
            await self.settle_rate(ticket, 0)

    # --- rate limits of one route ------------------------------------------------------------

    async def take_rate(self, call: CallState, route: Route) -> RateTicket | None:
        """Admit one request to ``route`` under its hold and its ``rpm``/``tpm``: the ticket to settle, or
        ``None`` (recorded as a skip) when the deployment has no room now. A lost store admits."""
        tokens = call.plan.prompt_bound(route.config) + (call.plan.request.max_tokens or route.model.max_tokens)
        ident = new_ident()
        work = self.store.reserve_rate(
            route.key,
            ident,
            tokens=tokens,
            rpm=route.rpm,
            tpm=route.tpm,
            window=RATE_WINDOW,
            now=self.wall_clock(),
        )
        # Every call to a pooled model passes here: absorbed inline rather than through _guarded's extra frame.
        try:
            decision = await work
        except Exception as exc:  # noqa: BLE001 - a failing state store never fails a call
            self._guard.lost("reserve_rate", exc)
            return RateTicket(route.key, ident, tokens)
        if not self._guard.ok:
            self._guard.back()
        if decision.accepted:
            return RateTicket(route.key, ident, tokens)
        why = "held" if decision.held else "rate limit spent"
        at = decision.retry_at if decision.retry_at is not None else 0.0
        call.skip(
            route.model,
            "RateLimited",
            f"deployment {route.deployment_id!r}: {why} until {at:.3f}",
            deployment_id=route.deployment_id,
        )
        return None

    async def settle_rate(self, ticket: RateTicket, tokens: int) -> None:
        """The request's real tokens replace its estimate in the deployment's log."""
        if tokens == ticket.tokens:
            return
        try:  # on every call to a deployment with a tpm: absorbed inline, as reserve_rate is
            await self.store.settle_rate(
                ticket.key, ticket.ident, tokens=tokens, window=RATE_WINDOW, now=self.wall_clock()
            )
        except Exception as exc:  # noqa: BLE001 - see above
            self._guard.lost("settle_rate", exc)
            return
        if not self._guard.ok:
            self._guard.back()

    async def hold(self, route: Route, seconds: float | None) -> None:
        """Keep traffic off ``route`` for ``seconds`` (``None``: the default hold) — a 429's Retry-After."""
        now = self.wall_clock()
        until = now + (seconds if seconds is not None else DEFAULT_HOLD)
        await self._guarded("hold", self.store.hold(route.key, until, now=now), None)

    async def note_rate_limit(self, route: Route, info: RateLimitInfo, tokens_needed: int) -> None:
        """Hold ``route`` until its reset when the provider's headers show no room for another request."""
        now = self.wall_clock()
        until = hold_until(info, now, tokens_needed)
        if until is not None:
            await self._guarded("hold", self.store.hold(route.key, until, now=now), None)

    async def rate(self, key: str) -> RateSnapshot:
        return await self._guarded(
            "rate", self.store.rate(key, window=RATE_WINDOW, now=self.wall_clock()), RateSnapshot()
        )

    async def reserve_for(self, call: CallState, model: ModelConfig) -> Reservation | None:
        """The attempt's budget reservation (an empty one without a budget); ``None`` when the budget refuses
        and the task moves to cheaper candidates; ``BudgetExceededError`` when the task asks for an error."""
        budget = call.plan.policy.budget
        if budget is None:
            return NOTHING_RESERVED
        estimate = model.estimate_cost(call.plan.prompt_bound(model), call.plan.request.max_tokens or model.max_tokens)
        held = await self.reserve(call.task, budget, estimate, tenant=call.tenant)
        if isinstance(held, Reservation):
            return held
        call.budget_refused = (held.total, budget.limit)
        if budget.on_exceeded == "error":
            raise call.budget_error(model, held.total, estimate)
        call.skip(model, "BudgetExceededError", f"estimated cost {estimate:.6g} does not fit the budget")
        return None

    # --- breakers --------------------------------------------------------------------------

    # admit and record_success run on every call: they absorb inline rather than through _guarded's extra frame.

    async def admit(self, model_id: str, *, probe_lease: float) -> Admission:
        try:
            admission = await self.breaker.admit(model_id, probe_lease=probe_lease)
        except Exception as exc:  # noqa: BLE001 - a failing state store never fails a call, whatever it raises
            self._guard.lost("admit", exc)
            return _ALLOWED
        if not self._guard.ok:
            self._guard.back()
        return admission

    async def record_success(self, model_id: str) -> None:
        try:
            await self.breaker.record_success(model_id)
        except Exception as exc:  # noqa: BLE001 - see admit
            self._guard.lost("record_success", exc)
            return
        if not self._guard.ok:
            self._guard.back()

    async def record_failure(self, model_id: str, *, trip: bool) -> bool:
        """Count a failure against the model; True when that left its breaker open."""
        snapshot = await self._guarded("record_failure", self.breaker.record_failure(model_id, trip=trip), None)
        return snapshot is not None and snapshot.state != "closed"

    async def snapshot(self, model_id: str) -> BreakerSnapshot:
        return await self._guarded("breaker", self.breaker.snapshot(model_id), BreakerSnapshot(model_id, "closed"))

    async def snapshots(self) -> dict[str, BreakerSnapshot]:
        return dict(await self._guarded("breakers", self.breaker.snapshots(), {}))

    # --- budgets -----------------------------------------------------------------------------

    async def reserve(
        self, task: str, budget: BudgetConfig, amount: float, *, tenant: str | None = None
    ) -> Reservation | SpendDecision:
        """Hold ``amount`` against the task's budget (the tenant's, for a tenant-scoped one): the reservation,
        or the store's refusal."""
        # Calls made for no tenant share one budget of their own under a tenant-scoped one.
        scope = f"budget:{task}" if budget.scope == "task" else f"budget:{task}:tenant:{tenant or '-'}"
        work = self.store.reserve_spend(
            scope, amount, limit=budget.limit, window=budget.window_seconds, now=self.wall_clock()
        )
        decision = await self._guarded("reserve_spend", work, None)
        if decision is None:
            return NOTHING_RESERVED  # the store is down: the call goes on, with nothing to settle
        if not decision.accepted:
            return decision
        return Reservation(scope, amount, budget.window_seconds)

    async def settle(self, reservation: Reservation, cost: float) -> None:
        """Replace the reserved amount by the real ``cost`` (0.0 gives the whole reservation back)."""
        delta = cost - reservation.amount
        if not reservation.scope or delta == 0.0:
            return
        work = self.store.add_spend(reservation.scope, delta, window=reservation.window, now=self.wall_clock())
        await self._guarded("add_spend", work, None)
