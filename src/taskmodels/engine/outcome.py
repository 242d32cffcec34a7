"""What happens after an attempt: the answer priced and recorded, or the failure recorded and the rule table applied.

``succeeded`` prices the answer (``model.cost``), closes the breaker, settles the attempt's
claim (budget reservation, rate ticket) to what was really spent, and reports it. ``failed``
records the attempt and its error, counts it against the model (or deployment) when the
rule says so, gives the claim back, and then returns its verdict: seconds before the same
model is tried again, ``None`` to move on, or it raises when the error must reach the caller.
``cancelled`` ends an attempt that lost a hedged race, charged what the provider bills for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from taskmodels.errors import ProviderError, RateLimitError
from taskmodels.resilience.policy import Next, retry_delay, rule_for
from taskmodels.resilience.ratelimit import RateTicket
from taskmodels.sections import ResilienceSettings
from taskmodels.types import Attempt, CompletionResult, EmbeddingResult, RateLimitInfo

from .admission import Gate
from .attempt import Try
from .call import CallState
from .observe import Observation

__all__ = ["HEDGE_CANCELLED", "Outcomes"]

HEDGE_CANCELLED = "HedgeCancelled"
"""``Attempt.error_class`` of a try cancelled because another answered first, or because the call ended."""


class Outcomes:
    """The steps after each attempt, shared by every driver (plain and hedged)."""

    __slots__ = ("_clock", "_rand", "_resilience", "gate", "observation")

    def __init__(
        self,
        gate: Gate,
        observation: Observation,
        resilience: ResilienceSettings,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self.gate = gate
        self.observation = observation
        self._resilience = resilience
        self._clock = clock
        self._rand = rand

    async def succeeded(self, call: CallState, attempt: Try, result: CompletionResult) -> CompletionResult:
        model = attempt.model
        route = attempt.route
        latency = self._clock() - attempt.started
        result.cost = cost = model.cost(result.usage)
        deployment = None
        if route.deployment_id is not None:
            deployment = result.deployment_id = route.deployment_id
            result.model_id, result.provider = model.id, route.config.provider
            route.observe(latency if attempt.first_at is None else attempt.first_at - attempt.started)
        else:
            result.model_id, result.provider = model.id, model.provider
        record = Attempt(model.id, result.provider, "success", latency, None, None, None, attempt.number, deployment)
        call.attempts.append(record)
        result.attempts = tuple(call.attempts)
        await self.gate.record_success(route.key)
        await self._settle(attempt, cost, result.usage.total_tokens, result.rate_limit)
        self.observation.succeeded(call, record, result, attempt.trace)
        return result

    async def _settle(
        self,
        attempt: Try,
        cost: float,
        tokens: int,
        info: RateLimitInfo | None = None,
        error: ProviderError | None = None,
    ) -> None:
        """The attempt's claim settled to what it really cost, once. Shielded: a cancellation arriving meanwhile
        (the caller gone) must not leave a reservation half given back; the settling finishes on its own."""
        claim = attempt.claim
        if claim.take() and (claim.reservation.scope or claim.ticket is not None):
            await asyncio.shield(self._settle_claim(attempt, cost, tokens, info, error))

    async def _settle_claim(
        self, attempt: Try, cost: float, tokens: int, info: RateLimitInfo | None, error: ProviderError | None
    ) -> None:
        claim = attempt.claim
        if claim.reservation.scope:
            await self.gate.settle(claim.reservation, cost)
        if claim.ticket is not None:
            await self._settle_route(attempt, claim.ticket, tokens, info, error)

    async def _settle_route(
        self,
        attempt: Try,
        ticket: RateTicket,
        tokens: int,
        info: RateLimitInfo | None,
        error: ProviderError | None = None,
    ) -> None:
        """A limited route's request settles to its real tokens; the provider's word on its limits (headers, a 429)
        holds the deployment before it would refuse the next request."""
        route = attempt.route
        if route.tpm:  # only a token limit needs the estimate corrected
            await self.gate.settle_rate(ticket, tokens)
        if isinstance(error, RateLimitError):
            await self.gate.hold(route, error.retry_after)
        elif info is not None:
            await self.gate.note_rate_limit(route, info, ticket.tokens)

    async def embedded(self, call: CallState, attempt: Try, embedded: EmbeddingResult) -> EmbeddingResult:
        model = attempt.model
        as_answer = CompletionResult("", model.id, model.provider, embedded.model_name, embedded.usage)
        done = await self.succeeded(call, attempt, as_answer)
        embedded.model_id, embedded.provider = model.id, done.provider
        embedded.cost, embedded.attempts = done.cost, done.attempts
        return embedded

    async def failed(
        self, call: CallState, attempt: Try, error: ProviderError, *, final: bool = False, alone: bool = True
    ) -> float | None:
        """Record a failed attempt, then apply the policy: the verdict is seconds before the same model is tried
        again, or ``None`` to move on; or it raises when the error must reach the caller (``final``: a stream
        already committed to this model). ``alone``: no other try of the call runs (a hedged race may have
        others): a try is retried only then, else the chain moves on while they run."""
        cut_by = error.cut_by  # this attempt's own bound, whatever others of the call run beside it
        model = attempt.model
        route = attempt.route
        call.last_error = error
        call.errors.append(error)
        latency = self._clock() - attempt.started
        deployment = route.deployment_id
        record = Attempt(
            model.id,
            attempt.config.provider,
            "error",
            latency,
            type(error).__name__,
            error.message,
            error.status_code,
            attempt.number,
            deployment,
        )
        call.attempts.append(record)
        rule = rule_for(error)
        opened = False
        if rule.counts_against_model and cut_by is None:
            opened = await self.gate.record_failure(route.key, trip=rule.trips_breaker)
            if deployment is not None:
                route.observe(latency)  # a failing deployment looks slow to the latency strategy
        await self._settle(attempt, 0.0, 0, error.rate_limit, error)
        self.observation.attempt_failed(call, record, breaker_opened=opened, trace=attempt.trace)
        if cut_by == "deadline":
            raise call.deadline_error(self._clock() - call.plan.started)
        if (
            final
            or rule.next is Next.RAISE
            or (rule.next is Next.IF_OPTED_IN and not call.plan.policy.fallback_on_content_filter)
        ):
            raise error
        if rule.next is Next.LARGER_CONTEXT:
            call.needs_larger_context(model, error)
            return None
        plan = call.plan
        if not alone or call.tries >= plan.policy.max_attempts_total:
            return None  # while another try of the call runs, the chain moves on rather than waiting here
        if rule.feedback:  # asked again at once, with the error, while the task's outputRetries allow
            output = call.output
            return 0.0 if output is not None and output.may_ask_again(model.id) else None
        if opened or attempt.siblings or attempt.number >= plan.policy.max_attempts_per_model:
            # An open breaker (a failed probe, say) is not retried within the call; a pool is drained first:
            # a sibling deployment serves instead of a retry here.
            return None
        delay = retry_delay(error, attempt.number, self._resilience, self._rand)
        return delay if delay is not None and delay < plan.remaining(self._clock()) else None

    async def cancelled(self, call: CallState, attempt: Try, reason: str, answer: object = None) -> None:
        """A try that lost a hedged race (another answered first, or the call ended): recorded ``cancelled``, and
        charged what a provider bills for a request it received: its real cost when it had answered (``answer``),
        else its prompt as budget reservations estimate it (no output was seen)."""
        model = attempt.model
        latency = self._clock() - attempt.started
        if isinstance(answer, (CompletionResult, EmbeddingResult)):
            cost = model.cost(answer.usage)
        else:
            cost = model.estimate_cost(call.plan.prompt_bound(model), 0)
        record = Attempt(
            model.id,
            attempt.config.provider,
            "cancelled",
            latency,
            HEDGE_CANCELLED,
            reason,
            None,
            attempt.number,
            attempt.deployment_id,
        )
        call.attempts.append(record)
        await self._settle(attempt, cost, call.plan.prompt_bound(model))  # it was sent: its prompt counts
        self.observation.attempt_cancelled(call, record, cost, attempt.trace)
