"""OpenTelemetry traces and metrics of task calls, after the GenAI semantic conventions.

``OpenTelemetryTracer`` is the engine's ``CallTracer`` (``engine/observe.py``) written
against the OpenTelemetry API only: the SDK, its exporters and samplers are the
application's. Until the application installs an SDK every span is a no-op. The
container builds one when ``TASKMODELS_TELEMETRY__ENABLED`` is on (the default) and
``opentelemetry-api`` is installed (``pip install 'taskmodels[otel]'``); this module is
imported only then, never by ``import taskmodels``.

Spans, under whatever span is current when the call starts (a web request's, say):

- one ``INTERNAL`` span per call, ``taskmodels {task}``: ``taskmodels.task``,
  ``taskmodels.operation``, ``taskmodels.candidates``, ``taskmodels.outcome``
  (``success``, ``error``, ``abandoned``), ``taskmodels.model.id`` and ``taskmodels.cost``
  of the answer, ``taskmodels.attempts``, ``taskmodels.skipped`` (``"model: reason"``),
  ``error.type``. No ``gen_ai.*`` attribute, so a backend that sums token usage over
  GenAI spans does not count an answer twice.
- one ``CLIENT`` span per attempt, ``{gen_ai.operation.name} {gen_ai.request.model}``,
  with the conventions' attributes (``ATTEMPT_ATTRIBUTES`` below names them all) and
  ``taskmodels.attempt.number`` / ``.retry`` / ``.outcome``. A non-streamed attempt's
  span is the current span while the provider is called, so HTTP client spans nest in it.

With ``fold_single_attempt`` a call whose first attempt answers is traced as that attempt's span alone, which
then carries the call span's attributes too; the call span is opened (starting when the call started, linked to
the attempt) only when the first attempt fails, or when the call ends with none. Hedged calls keep their call span.

A failed call or attempt sets the span status to ``ERROR`` with ``error.type`` (the
``taskmodels`` error class) as its description; provider error messages are kept out
of spans unless content capture is on. Prompts and answers (``gen_ai.input.messages``,
``gen_ai.system_instructions``, ``gen_ai.output.messages``) are recorded only when the
application opts in: ``TASKMODELS_TELEMETRY__CAPTURE_CONTENT=true`` or the conventions'
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``. Everything textual is passed
through ``taskmodels.redaction.scrub`` first, so no configured key can reach a span.

Metrics: ``gen_ai.client.operation.duration`` (per attempt, ``error.type`` on failures),
``gen_ai.client.token.usage`` (``gen_ai.token.type`` ``input`` / ``output``),
``gen_ai.client.operation.time_to_first_chunk`` (streamed attempts, recorded as they end, with the response's
model), the observable counter ``taskmodels.client.cost`` (summed here, read when the application's reader
collects) and the counter ``taskmodels.client.fallbacks``. Label sets are built once per task and model and reused.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextvars import Token
from typing import Any, Final, cast
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from taskmodels import __version__
from taskmodels.engine.call import CallState
from taskmodels.providers.port import ModelPort
from taskmodels.redaction import scrub
from taskmodels.registry.schema import ModelConfig
from taskmodels.types import Attempt, CompletionRequest, CompletionResult, Message, TextPart, describe_url

__all__ = [
    "ATTEMPT_ATTRIBUTES",
    "CALL_ATTRIBUTES",
    "CAPTURE_CONTENT_VARIABLE",
    "INSTRUMENTATION_NAME",
    "METRICS",
    "OpenTelemetryTracer",
    "provider_name",
]

INSTRUMENTATION_NAME: Final = "taskmodels"
CAPTURE_CONTENT_VARIABLE: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_VALUES = frozenset({"true", "1", "span_only", "span_and_event"})

# --- names ---------------------------------------------------------------------------------------

OPERATION: Final = "gen_ai.operation.name"
PROVIDER: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
REQUEST_STREAM: Final = "gen_ai.request.stream"
OUTPUT_TYPE: Final = "gen_ai.output.type"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
USAGE_KIND: Final = "gen_ai.token.type"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"

TASK: Final = "taskmodels.task"
CALL_OPERATION: Final = "taskmodels.operation"
CANDIDATES: Final = "taskmodels.candidates"
OUTCOME: Final = "taskmodels.outcome"
MODEL_ID: Final = "taskmodels.model.id"
COST: Final = "taskmodels.cost"
ATTEMPTS: Final = "taskmodels.attempts"
SKIPPED: Final = "taskmodels.skipped"
ERROR_MESSAGE: Final = "taskmodels.error.message"
ATTEMPT_NUMBER: Final = "taskmodels.attempt.number"
ATTEMPT_RETRY: Final = "taskmodels.attempt.retry"
ATTEMPT_OUTCOME: Final = "taskmodels.attempt.outcome"
FALLBACK_FROM: Final = "taskmodels.fallback.from"

CALL_ATTRIBUTES: Final = (TASK, CALL_OPERATION, CANDIDATES, OUTCOME, MODEL_ID, COST, ATTEMPTS, SKIPPED, ERROR_TYPE)
ATTEMPT_ATTRIBUTES: Final = (
    OPERATION,
    PROVIDER,
    REQUEST_MODEL,
    REQUEST_MAX_TOKENS,
    REQUEST_TEMPERATURE,
    REQUEST_TOP_P,
    REQUEST_STOP_SEQUENCES,
    REQUEST_STREAM,
    OUTPUT_TYPE,
    RESPONSE_MODEL,
    RESPONSE_ID,
    FINISH_REASONS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    REASONING_TOKENS,
    TIME_TO_FIRST_CHUNK,
    SERVER_ADDRESS,
    SERVER_PORT,
    ERROR_TYPE,
    HTTP_STATUS,
    TASK,
    MODEL_ID,
    COST,
    ATTEMPT_NUMBER,
    ATTEMPT_RETRY,
    ATTEMPT_OUTCOME,
)

DURATION_METRIC: Final = "gen_ai.client.operation.duration"
USAGE_METRIC: Final = "gen_ai.client.token.usage"
FIRST_CHUNK_METRIC: Final = "gen_ai.client.operation.time_to_first_chunk"
COST_METRIC: Final = "taskmodels.client.cost"
FALLBACK_METRIC: Final = "taskmodels.client.fallbacks"
METRICS: Final = (DURATION_METRIC, USAGE_METRIC, FIRST_CHUNK_METRIC, COST_METRIC, FALLBACK_METRIC)

# The conventions' bucket advice: the same for the two client time histograms, and for token counts.
_DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS: Final = tuple(float(4**n) for n in range(14))  # 1, 4, 16 ... 67108864
_FIRST_CHUNK_BUCKETS: Final = _DURATION_BUCKETS

# Registry provider names -> the conventions' gen_ai.provider.name; a name not listed is reported as it is.
_PROVIDER_NAMES: Final[Mapping[str, str]] = {
    "openai": "openai",
    "azure-openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
}
# The OpenAI protocol reaches many services: one the conventions name is named after its host, whichever of the
# two providers the registry chose for it.
_OPENAI_PROTOCOL: Final = frozenset({"openai", "openai-compatible"})
_HOSTS: Final[Mapping[str, str]] = {
    "api.openai.com": "openai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshot_ai",
    "generativelanguage.googleapis.com": "gcp.gemini",  # the conventions' own example of it (AI Studio)
    "aiplatform.googleapis.com": "gcp.vertex_ai",
}
# Endpoints named per region or per resource: us-central1-aiplatform.googleapis.com, <resource>.openai.azure.com.
_HOST_SUFFIXES: Final = (("-aiplatform.googleapis.com", "gcp.vertex_ai"), (".openai.azure.com", "azure.ai.openai"))


def provider_name(provider: str, host: str | None) -> str:
    """``gen_ai.provider.name`` for a registry ``provider`` reached at ``host``."""
    if provider in _OPENAI_PROTOCOL and host:
        host = host.lower()
        by_host = _HOSTS.get(host)
        if by_host is None:
            by_host = next((name for suffix, name in _HOST_SUFFIXES if host.endswith(suffix)), None)
        if by_host is not None:
            return by_host
    return _PROVIDER_NAMES.get(provider, provider)


def capture_content_from_environment() -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for prompts and answers in spans."""
    return os.environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() in _CAPTURE_VALUES


class _Endpoint:
    """Where a model is served, as the conventions name it: computed once per label set (``_Labels``)."""

    __slots__ = ("address", "port", "provider")

    def __init__(self, provider: str, base_url: str | None) -> None:
        self.address: str | None = None
        self.port: int | None = None
        if base_url:
            try:
                parts = urlsplit(base_url)
                self.address = parts.hostname
                self.port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
            except ValueError:  # a base URL the provider could not use either: it reports that
                self.address = self.port = None
        self.provider = provider_name(provider, self.address)


_Answered = tuple[dict[str, AttributeValue], dict[str, AttributeValue], dict[str, AttributeValue]]


class _Labels:
    """The attributes of one model serving one task, built once and reused: the SDK copies what a span or a
    measurement is given, so one dict serves every call (building them per call was a tenth of our share)."""

    __slots__ = ("answered", "base", "cost_key", "first_try", "span_name")

    def __init__(self, task: str, operation: str, model: ModelConfig, endpoint: _Endpoint) -> None:
        base: dict[str, AttributeValue] = {
            OPERATION: operation,
            PROVIDER: endpoint.provider,
            REQUEST_MODEL: model.model_name,
            TASK: task,
        }
        if endpoint.address is not None:
            base[SERVER_ADDRESS] = endpoint.address
            if endpoint.port is not None:
                base[SERVER_PORT] = endpoint.port
        self.base = base
        self.cost_key = (task, model.id, endpoint.provider, operation)
        self.answered: dict[str, _Answered] = {}  # by the response's model name: duration, input, output
        self.span_name = f"{operation} {model.model_name}"
        # The usual attempt's attributes, kept: the first, with the model's own limits.
        self.first_try = self._attempt(model, _NO_LIMITS, 1)

    def attempt(self, model: ModelConfig, request: CompletionRequest, number: int) -> dict[str, AttributeValue]:
        """The attempt span's attributes known at the request, as a new dict unless they are ``first_try``'s."""
        if number == 1 and request.max_tokens is None and request.temperature is None:
            return self.first_try
        return self._attempt(model, request, number)

    def _attempt(self, model: ModelConfig, request: CompletionRequest, number: int) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            **self.base,
            MODEL_ID: model.id,
            ATTEMPT_NUMBER: number,
            ATTEMPT_RETRY: number - 1,
        }
        if self.base[OPERATION] == "chat":
            attributes[REQUEST_MAX_TOKENS] = request.max_tokens if request.max_tokens is not None else model.max_tokens
            temperature = request.temperature if request.temperature is not None else model.temperature
            if temperature is not None:
                attributes[REQUEST_TEMPERATURE] = temperature
        return attributes

    def for_answer(self, response_model: str) -> _Answered:
        answered = self.answered.get(response_model)
        if answered is None:
            labels = {**self.base, RESPONSE_MODEL: response_model} if response_model else self.base
            answered = (labels, {**labels, USAGE_KIND: "input"}, {**labels, USAGE_KIND: "output"})
            if len(self.answered) < _MAX_CACHED:  # a provider naming every answer differently is not cached
                self.answered[response_model] = answered
        return answered


class _Costs:
    """The cost counter's running totals, observed when a metric reader collects.

    An observable counter costs a call one dict update where a counter's ``add`` cost 5 µs of SDK work (its
    attributes are cleaned and hashed on every call). One instance per meter provider: the SDK keeps the
    callbacks of the first instrument registered under a name, so every tracer on a provider feeds the same
    totals.
    """

    __slots__ = ("__weakref__", "_lock", "_totals")

    def __init__(self, meter: metrics.Meter) -> None:
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str, str, str], float] = {}
        meter.create_observable_counter(
            COST_METRIC,
            callbacks=[self._observe],
            unit="1",
            description="Cost of the answers, in the currency of the registry's prices.",
        )

    def add(self, key: tuple[str, str, str, str], amount: float) -> None:
        with self._lock:
            self._totals[key] = self._totals.get(key, 0.0) + amount

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = list(self._totals.items())
        return [
            Observation(total, {TASK: task, MODEL_ID: model_id, PROVIDER: provider, OPERATION: operation})
            for (task, model_id, provider, operation), total in totals
        ]


class _GlobalMeters:
    """Stands for the global meter provider in ``_COSTS`` (``None`` cannot be a weak key)."""


_NO_LIMITS: Final = CompletionRequest()  # a request that sets neither max_tokens nor temperature
_GLOBAL_METERS: Final = _GlobalMeters()
_COSTS: weakref.WeakKeyDictionary[object, _Costs] = weakref.WeakKeyDictionary()
_COSTS_LOCK: Final = threading.Lock()
_MAX_CACHED: Final = 4096  # label sets kept per tracer; a registry reload adds a few, never this many


def _costs_for(meter_provider: metrics.MeterProvider | None, meter: metrics.Meter) -> _Costs:
    key: object = _GLOBAL_METERS if meter_provider is None else meter_provider
    with _COSTS_LOCK:
        costs = _COSTS.get(key)
        if costs is None:
            costs = _COSTS[key] = _Costs(meter)
        return costs


class _CallHandle:
    __slots__ = (
        "context",
        "ended",
        "extra",
        "first",
        "inputs",
        "open",
        "previous_model",
        "span",
        "started",
        "streaming",
    )

    def __init__(self, span: Span | None, context: otel_context.Context, *, streaming: bool) -> None:
        # None while the call is folded into its first attempt (``fold_single_attempt``): the call span is opened
        # only if that attempt fails, or if the call ends without one.
        self.span = span
        self.context = context  # the attempts' parent: the call span's context, or the caller's while folded
        self.streaming = streaming
        self.started = time.time_ns() if span is None else 0  # when a folded call began: its late span's start
        self.first: _AttemptHandle | None = None  # the attempt a folded call may be traced as
        self.ended = False
        self.open: list[_AttemptHandle] = []
        self.previous_model: str | None = None
        # What every attempt says of the request (top_p, stop, streamed, output type, the captured prompt): built
        # at the first attempt
        self.extra: dict[str, AttributeValue] | None = None
        self.inputs: dict[str, AttributeValue] | None = None  # an embedding call's captured texts


class _AttemptHandle:
    __slots__ = ("call", "ended", "first_chunk", "labels", "span", "started", "token")

    def __init__(
        self, call: _CallHandle, span: Span, labels: _Labels, token: Token[otel_context.Context] | None
    ) -> None:
        self.call = call
        self.span = span
        self.labels = labels  # the attributes every metric of this attempt carries
        self.token = token  # the context token while the span is current, else None
        self.started = time.perf_counter()
        self.first_chunk: float | None = None
        self.ended = False


class OpenTelemetryTracer:
    """Spans and metrics for every call and attempt, through the OpenTelemetry API.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (a no-op until
    the application installs an SDK). ``capture_content`` records prompts and answers;
    ``None`` leaves it to ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
    ``fold_single_attempt`` traces a call whose first attempt answers as that attempt's span
    alone, carrying the call's attributes (one span where there were two: the SDK's cost of
    a call span is most of what taskmodels' telemetry costs above the conventions' own).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
        fold_single_attempt: bool = False,
    ) -> None:
        self.capture_content = capture_content_from_environment() if capture_content is None else capture_content
        self.fold_single_attempt = fold_single_attempt
        # On the global providers, nothing records until the application installs an SDK: until then a call
        # skips telemetry after one check (FastAPI brings opentelemetry-api along, so that is the common case).
        self._on_globals = tracer_provider is None and meter_provider is None
        self._sdk_checked_at = -_SDK_RECHECK  # when the globals were last looked at (monotonic)
        self._sdk_seen = False
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider)
        self._duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            USAGE_METRIC,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._first_chunk = meter.create_histogram(
            FIRST_CHUNK_METRIC,
            unit="s",
            description="Time to receive the first chunk, measured from when the client issues the generation "
            "request to when the first chunk is received in the response stream.",
            explicit_bucket_boundaries_advisory=_FIRST_CHUNK_BUCKETS,
        )
        self._costs = _costs_for(meter_provider, meter)
        self._fallbacks = meter.create_counter(
            FALLBACK_METRIC, unit="{fallback}", description="Moves from one model of a task's chain to another."
        )
        self._labels: dict[tuple[str, str, str, str, str, str | None], _Labels] = {}

    # --- the call ------------------------------------------------------------------------------

    def _no_sdk_yet(self) -> bool:
        """Whether the application has not installed an SDK yet, looked up at most once a second (each look reads
        the environment); once one is seen it stays: OpenTelemetry sets the global providers only once."""
        now = time.monotonic()
        if now - self._sdk_checked_at < _SDK_RECHECK:
            return True
        self._sdk_checked_at = now
        self._sdk_seen = not _no_sdk_installed()
        return not self._sdk_seen

    def call_started(self, call: CallState, *, streaming: bool) -> _CallHandle | None:
        if self._on_globals and not self._sdk_seen and self._no_sdk_yet():
            return None
        plan = call.plan
        # A hedged call's tries race from the start: folding one away would leave the others without a parent.
        if self.fold_single_attempt and plan.policy.hedge is None:
            return _CallHandle(None, otel_context.get_current(), streaming=streaming)
        span = self._tracer.start_span(
            f"taskmodels {plan.task}",
            kind=SpanKind.INTERNAL,
            attributes={TASK: plan.task, CALL_OPERATION: plan.operation, CANDIDATES: [m.id for m in plan.models]},
        )
        return _CallHandle(span, trace.set_span_in_context(span), streaming=streaming)

    def _unfold(self, call: CallState, handle: _CallHandle, after: _AttemptHandle | None) -> Span:
        """The call span of a folded call that needs one after all (its first attempt failed, or it made none),
        started when the call started, beside the attempt ``after`` it links to; later attempts nest in it."""
        plan = call.plan
        span = self._tracer.start_span(
            f"taskmodels {plan.task}",
            context=handle.context,
            kind=SpanKind.INTERNAL,
            attributes={TASK: plan.task, CALL_OPERATION: plan.operation, CANDIDATES: [m.id for m in plan.models]},
            links=None if after is None else [Link(after.span.get_span_context())],
            start_time=handle.started,
        )
        handle.span, handle.first = span, None
        handle.context = trace.set_span_in_context(span, handle.context)
        return span

    def call_ended(self, call: CallState, result: CompletionResult | None, error: BaseException | None) -> None:
        handle = call.trace
        if not isinstance(handle, _CallHandle) or handle.ended:
            return
        handle.ended = True
        span = handle.span
        folded = handle.first
        if span is None and folded is None:  # a folded call that made no attempt: its call span after all
            span = self._unfold(call, handle, None)
        handle.first = None
        for attempt in tuple(handle.open):
            if attempt is folded and attempt.span.is_recording():  # a stream abandoned, a call cancelled
                self._end_call(call, attempt.span, result, error, folded=True)
            self._abandon(attempt)
        if span is not None:
            if span.is_recording():
                self._end_call(call, span, result, error, folded=False)
            span.end()

    def _end_call(
        self,
        call: CallState,
        span: Span,
        result: CompletionResult | None,
        error: BaseException | None,
        *,
        folded: bool,
    ) -> None:
        span.set_attributes(self._call_summary(call, result, error, folded=folded))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))

    def _call_summary(
        self, call: CallState, result: CompletionResult | None, error: BaseException | None, *, folded: bool
    ) -> dict[str, AttributeValue]:
        """The call's attributes as it ends, for its span or, ``folded``, for the one attempt it is traced as (which
        names its model and cost itself, and is given what the call span would have said at its start)."""
        attributes: dict[str, AttributeValue] = {ATTEMPTS: call.attempts_made()}
        if folded:
            plan = call.plan
            attributes[CALL_OPERATION] = plan.operation
            attributes[CANDIDATES] = [m.id for m in plan.models]
        if call.skipped:
            attributes[SKIPPED] = [scrub(f"{model_id}: {reason}") for model_id, reason in call.skipped]
        if result is not None:
            attributes[OUTCOME] = "success"
            if not folded:
                attributes[MODEL_ID] = result.model_id
                attributes[COST] = result.cost
        elif error is not None:
            attributes[OUTCOME] = "error"
            attributes[ERROR_TYPE] = type(error).__name__
            if self.capture_content:
                attributes[ERROR_MESSAGE] = scrub(str(error))
        else:
            attributes[OUTCOME] = "abandoned"
        return attributes

    def embedding_inputs(self, call: CallState, texts: Sequence[str]) -> None:
        """An embedding call's texts, before its first attempt: recorded on its attempts when content is captured."""
        handle = call.trace
        if self.capture_content and isinstance(handle, _CallHandle):
            handle.inputs = _embedding_inputs(texts)

    # --- attempts --------------------------------------------------------------------------------

    def attempt_started(self, call: CallState, model: ModelConfig, provider: ModelPort, number: int) -> _AttemptHandle:
        handle = cast("_CallHandle", call.trace)  # the engine asks only for a call this tracer started
        plan = call.plan
        operation = plan.operation
        labels = self._labels_for(plan.task, operation, model, getattr(provider, "base_url", None))
        previous = handle.previous_model
        # A try started while another is still open is a hedge racing it, not a move down the chain.
        if previous is not None and previous != model.id and not handle.open:
            self._fallbacks.add(1, {TASK: plan.task, MODEL_ID: model.id, FALLBACK_FROM: previous})
        handle.previous_model = model.id
        attributes = labels.attempt(model, plan.request, number)
        extra = handle.extra
        if extra is None:
            extra = handle.extra = self._call_attributes(call, handle)
        if extra:
            attributes = {**attributes, **extra}
        span = self._tracer.start_span(
            labels.span_name, context=handle.context, kind=SpanKind.CLIENT, attributes=attributes
        )
        token = None
        # A stream's attempt runs between the consumer's reads: made current, the span would adopt the
        # consumer's own spans, and could not be detached from the context its end comes from.
        # A hedged attempt runs in a task of its own, made current there (``attempt_running``).
        if not handle.streaming and plan.policy.hedge is None and span.is_recording():
            token = otel_context.attach(trace.set_span_in_context(span, handle.context))
        attempt = _AttemptHandle(handle, span, labels, token)
        handle.open.append(attempt)
        if handle.span is None and handle.first is None:  # folded: the call is traced as this attempt if it answers
            handle.first = attempt
        return attempt

    def attempt_running(self, attempt: Any) -> None:
        # Attached for good: the task's context ends with it, whatever order the racing tries end in.
        if isinstance(attempt, _AttemptHandle) and attempt.span.is_recording():
            otel_context.attach(trace.set_span_in_context(attempt.span, attempt.call.context))

    def attempt_streams(self, attempt: Any) -> None:
        """The attempt's request goes out as a stream: a complete read as one (``stream_under_the_hood``); a
        stream's attempts said so when they started."""
        if isinstance(attempt, _AttemptHandle) and not attempt.call.streaming and attempt.span.is_recording():
            attempt.span.set_attribute(REQUEST_STREAM, True)

    def first_chunk(self, attempt: Any) -> None:
        # Measured now, recorded when the attempt ends: the histogram carries the response's model, known then.
        if not isinstance(attempt, _AttemptHandle) or attempt.first_chunk is not None:
            return
        attempt.first_chunk = elapsed = time.perf_counter() - attempt.started
        attempt.span.set_attribute(TIME_TO_FIRST_CHUNK, elapsed)

    def attempt_ended(self, call: CallState, attempt: Any, record: Attempt, result: CompletionResult | None) -> None:
        if not isinstance(attempt, _AttemptHandle) or attempt.ended:
            return
        self._close(attempt)
        duration = time.perf_counter() - attempt.started
        span = attempt.span
        handle = attempt.call
        if result is not None:
            # An answer ends its call: a folded call's one span says so, and the call is over for the tracer.
            folded = attempt is handle.first
            if folded:  # and no cycle left between the two handles, for the garbage collector to find
                handle.ended, handle.first = True, None
            self._answered(attempt, span, duration, result, call if folded else None)
        else:
            kind = record.error_class or "_OTHER"
            self._duration.record(duration, {**attempt.labels.base, ERROR_TYPE: kind})
            if attempt.first_chunk is not None:  # a stream that broke after its first chunk
                self._first_chunk.record(attempt.first_chunk, attempt.labels.base)
            if span.is_recording():
                attributes: dict[str, AttributeValue] = {ERROR_TYPE: kind, ATTEMPT_OUTCOME: "error"}
                description = kind
                if record.status_code is not None:
                    attributes[HTTP_STATUS] = record.status_code
                    description = f"{kind} (HTTP {record.status_code})"
                if self.capture_content and record.error_message:
                    attributes[ERROR_MESSAGE] = scrub(record.error_message)
                span.set_attributes(attributes)
                span.set_status(Status(StatusCode.ERROR, description))
            if attempt is handle.first:  # a folded call going on, or ending in error: it has its call span
                self._unfold(call, handle, attempt)
        span.end()

    def attempt_cancelled(self, call: CallState, attempt: Any, record: Attempt, cost: float) -> None:
        """A hedged try that lost the race: no failure and no operation to measure, but what it was charged (its
        prompt, or a whole answer that came at the same moment) counts in the cost counter and on its span."""
        if not isinstance(attempt, _AttemptHandle) or attempt.ended:
            return
        self._close(attempt)
        span = attempt.span
        if cost:
            self._costs.add(attempt.labels.cost_key, cost)
        if attempt.first_chunk is not None:
            self._first_chunk.record(attempt.first_chunk, attempt.labels.base)
        if span.is_recording():
            span.set_attributes({ATTEMPT_OUTCOME: "cancelled", COST: cost})
        span.end()

    def _answered(
        self,
        attempt: _AttemptHandle,
        span: Span,
        duration: float,
        result: CompletionResult,
        folded: CallState | None,
    ) -> None:
        """An answer's measurements and span attributes; ``folded``: the call the span stands for (one set of
        attributes for both, as each ``set_attributes`` costs the SDK a lock and a pass of its own)."""
        labels = attempt.labels
        chat = labels.base[OPERATION] == "chat"
        usage = result.usage
        answered, input_labels, output_labels = labels.for_answer(result.model_name)
        self._duration.record(duration, answered)
        if attempt.first_chunk is not None:
            self._first_chunk.record(attempt.first_chunk, answered)
        self._tokens.record(usage.input_tokens, input_labels)
        if chat:
            self._tokens.record(usage.output_tokens, output_labels)
        if result.cost:
            self._costs.add(labels.cost_key, result.cost)
        if span.is_recording():
            attributes = self._answer_attributes(result, chat=chat)
            if folded is not None:
                attributes.update(self._call_summary(folded, result, None, folded=True))
            span.set_attributes(attributes)

    def _answer_attributes(self, result: CompletionResult, *, chat: bool) -> dict[str, AttributeValue]:
        usage = result.usage
        attributes: dict[str, AttributeValue] = {
            ATTEMPT_OUTCOME: "success",
            INPUT_TOKENS: usage.input_tokens,
            COST: result.cost,
        }
        if result.model_name:
            attributes[RESPONSE_MODEL] = result.model_name
        if result.request_id:
            attributes[RESPONSE_ID] = result.request_id
        if usage.cached_tokens:
            attributes[CACHE_READ_TOKENS] = usage.cached_tokens
        if usage.cache_write_tokens:
            attributes[CACHE_WRITE_TOKENS] = usage.cache_write_tokens
        if usage.reasoning_tokens:
            attributes[REASONING_TOKENS] = usage.reasoning_tokens
        if chat:  # an embedding has no output tokens and no finish reason
            attributes[OUTPUT_TOKENS] = usage.output_tokens
            attributes[FINISH_REASONS] = (result.finish_reason,)
            if self.capture_content:
                attributes[OUTPUT_MESSAGES] = _output_messages(result)
        return attributes

    def _abandon(self, attempt: _AttemptHandle) -> None:
        """An attempt its call left without a word: a stream the consumer stopped reading, a cancelled call."""
        self._close(attempt)
        if attempt.first_chunk is not None:  # the consumer stopped reading after the first chunk came
            self._first_chunk.record(attempt.first_chunk, attempt.labels.base)
        span = attempt.span
        span.set_attribute(ATTEMPT_OUTCOME, "abandoned")
        span.end()

    @staticmethod
    def _close(attempt: _AttemptHandle) -> None:
        attempt.ended = True
        opened = attempt.call.open
        if attempt in opened:
            opened.remove(attempt)
        if attempt.token is not None:
            otel_context.detach(attempt.token)

    def _call_attributes(self, call: CallState, handle: _CallHandle) -> dict[str, AttributeValue]:
        """What every attempt of a call says of its request: its top_p and stop sequences, whether it streams,
        the output type asked for (the conventions' conditionally required ``gen_ai.request.stream`` and
        ``gen_ai.output.type``), and the prompt when content is captured."""
        plan = call.plan
        if plan.operation != "chat":
            return dict(handle.inputs) if handle.inputs else {}
        request = plan.request
        attributes: dict[str, AttributeValue] = {}
        if request.top_p is not None:
            attributes[REQUEST_TOP_P] = request.top_p
        if request.stop:
            attributes[REQUEST_STOP_SEQUENCES] = tuple(request.stop)
        if handle.streaming:
            attributes[REQUEST_STREAM] = True
        if (kind := _output_type(request)) is not None:
            attributes[OUTPUT_TYPE] = kind
        if self.capture_content:
            attributes.update(_input_messages(request))
        return attributes

    def _labels_for(self, task: str, operation: str, model: ModelConfig, base_url: object) -> _Labels:
        url = base_url if isinstance(base_url, str) else None
        key = (task, operation, model.id, model.provider, model.model_name, url)
        labels = self._labels.get(key)
        if labels is None:
            endpoint = _Endpoint(model.provider, url)
            labels = _Labels(task, operation, model, endpoint)
            if len(self._labels) >= _MAX_CACHED:  # tasks named per request, say: keep the memory bounded
                self._labels.clear()
            self._labels[key] = labels
        return labels


def _output_type(request: CompletionRequest) -> str | None:
    """``gen_ai.output.type`` of what the caller asked for: ``json`` for a typed answer, a schema or JSON mode,
    ``text`` for a text format; ``None`` when the request names no format."""
    if request.output_type is not None:
        return "json"
    fmt = request.response_format
    if fmt is None:
        return None
    return "text" if fmt.type == "text" else "json"


# --- content, when the application opts in ----------------------------------------------------------


def _input_messages(request: CompletionRequest) -> dict[str, AttributeValue]:
    """The prompt as the conventions' JSON attributes, every text scrubbed of keys."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in request.conversation():
        parts = _content_parts(message)
        if message.role == "system":
            system.extend(parts)
            continue
        if message.role == "tool":
            parts = [{"type": "tool_call_response", "id": message.tool_call_id, "response": message.text}]
        parts.extend(
            {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        )
        messages.append({"role": message.role, "parts": parts})
    out: dict[str, AttributeValue] = {INPUT_MESSAGES: scrub(json.dumps(messages, ensure_ascii=False))}
    if system:
        out[SYSTEM_INSTRUCTIONS] = scrub(json.dumps(system, ensure_ascii=False))
    return out


def _embedding_inputs(texts: Sequence[str]) -> dict[str, AttributeValue]:
    """An embedding call's texts as the closest attribute the conventions define: the embeddings span has none
    for its input, so they are ``gen_ai.input.messages``, in order, as the text parts of one ``user`` message."""
    message = {"role": "user", "parts": [{"type": "text", "content": text} for text in texts]}
    return {INPUT_MESSAGES: scrub(json.dumps([message], ensure_ascii=False))}


def _content_parts(message: Message) -> list[dict[str, Any]]:
    """A message's content as the conventions' parts (gen-ai-input-messages.json). An image is a ``blob`` part
    whose ``content`` is left empty (the conventions let a part's content be truncated, its structure kept: the
    bytes are large and may be private) and whose ``size`` says how many bytes it had, or a ``uri`` part with
    only the URL's scheme and host (a signed URL's path and query are credentials)."""
    content = message.content
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "content": part.text})
        elif part.data is not None:  # inline: from bytes, a file or a data: URL (a malformed one is refused)
            # The placeholder says what was sent (its media type and size), never the bytes.
            blob = {"type": "blob", "modality": "image", "mime_type": part.media_type, "content": "", "size": part.size}
            parts.append(blob)
        else:
            uri: dict[str, Any] = {"type": "uri", "modality": "image", "uri": describe_url(part.url)}
            if part.media_type is not None:
                uri["mime_type"] = part.media_type
            parts.append(uri)
    return parts


def _output_messages(result: CompletionResult) -> str:
    parts: list[dict[str, Any]] = []
    if result.text:
        parts.append({"type": "text", "content": result.text})
    parts.extend({"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls)
    message = {"role": "assistant", "parts": parts, "finish_reason": result.finish_reason}
    return scrub(json.dumps([message], ensure_ascii=False))


_SDK_RECHECK = 1.0  # seconds between two looks at the global providers while no SDK is installed


def _no_sdk_installed() -> bool:
    """Whether the global tracer and meter providers are still the API's placeholders (no SDK set them)."""
    # The meter's placeholder class is private to the API; its name is what there is to compare.
    return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) and (
        type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    )
