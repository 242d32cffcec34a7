"""What happens after an attempt: the answer priced and recorded, or the failure recorded and the rule table applied.

``succeeded`` prices the answer (``model.cost``), closes the breaker, settles the budget
reservation and the rate-limit ticket to what was really spent, and reports it. ``failed``
records the attempt and its error, counts it against the model (or deployment) when the
rule says so, gives the reservation back, and then decides: ``attempt.retry_in`` for
another try of the same model, nothing to move on, or it raises when the error must reach
the caller.
"""

from __future__ import annotations

from collections.abc import Callable

from taskmodels.errors import ProviderError, RateLimitError
from taskmodels.resilience.policy import Next, retry_delay, rule_for
from taskmodels.resilience.ratelimit import RateTicket
from taskmodels.sections import ResilienceSettings
from taskmodels.types import Attempt, CompletionResult, EmbeddingResult, RateLimitInfo

from .admission import Gate
from .call import CallState, Try
from .observe import Observation

__all__ = ["Outcomes"]


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
        attempt.settled = True
        latency = self._clock() - attempt.started
        result.cost = cost = model.cost(result.usage)
        deployment = None
        if route is not None and route.deployment_id is not None:
            deployment = result.deployment_id = route.deployment_id
            result.model_id, result.provider = model.id, route.config.provider
            route.observe(latency if attempt.first_at is None else attempt.first_at - attempt.started)
        else:
            result.model_id, result.provider = model.id, model.provider
        record = Attempt(model.id, result.provider, "success", latency, None, None, None, attempt.number, deployment)
        call.attempts.append(record)
        result.attempts = tuple(call.attempts)
        await self.gate.record_success(model.id if route is None else route.key)
        if attempt.reservation.scope:
            await self.gate.settle(attempt.reservation, cost)
        if attempt.ticket is not None:
            await self._settle_route(attempt, attempt.ticket, result.usage.total_tokens, result.rate_limit)
        self.observation.succeeded(call, record, result, attempt.trace)
        return result

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
        assert route is not None  # a ticket is only taken for a route
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
        embedded.model_id, embedded.provider = model.id, model.provider
        embedded.cost, embedded.attempts = done.cost, done.attempts
        return embedded

    async def failed(self, call: CallState, attempt: Try, error: ProviderError, *, final: bool = False) -> None:  # noqa: C901 - one branch per outcome of the rule table
        """Record a failed attempt, then apply the policy: set ``attempt.retry_in`` (or leave it ``None`` to move
        on), or raise when the error must reach the caller (``final``: a stream already committed to this model)."""
        cut_by = call.cut_by  # read once: with hedged tries in flight another may set it while this one awaits
        model = attempt.model
        route = attempt.route
        attempt.settled = True
        call.last_error = error
        call.errors.append(error)
        latency = self._clock() - attempt.started
        deployment = route.deployment_id if route is not None else None
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
            opened = await self.gate.record_failure(model.id if route is None else route.key, trip=rule.trips_breaker)
            if deployment is not None and route is not None:
                route.observe(latency)  # a failing deployment looks slow to the latency strategy
        if attempt.reservation.scope:
            await self.gate.settle(attempt.reservation, 0.0)
        if attempt.ticket is not None:
            await self._settle_route(attempt, attempt.ticket, 0, error.rate_limit, error)
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
            return
        plan = call.plan
        if rule.feedback:  # asked again at once, with the error, while the task's outputRetries allow
            output = call.output
            if output is not None and output.may_ask_again(model.id) and call.tries < plan.policy.max_attempts_total:
                attempt.retry_in = 0.0
            return
        if (
            opened
            or attempt.siblings  # the pool is drained first: a sibling deployment serves instead of a retry here
            or attempt.number >= plan.policy.max_attempts_per_model
            or call.tries >= plan.policy.max_attempts_total
        ):
            return  # an open breaker (a failed probe, say) is not retried within the call either
        delay = retry_delay(error, attempt.number, self._resilience, self._rand)
        if delay is not None and delay < plan.remaining(self._clock()):
            attempt.retry_in = delay
