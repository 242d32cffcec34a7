"""An incoming ``traceparent`` makes the library's call span a child of the client's span, in its trace."""

from __future__ import annotations

import pytest

from taskmodels.gateway.tracing import continued_trace
from taskmodels.resilience.state import MemoryStateStore
from taskmodels.service import ModelService
from taskmodels.testing import FakeBackend, fake_model, fake_registry, make_test_service, reply
from tests.otel_kit import Otel, by_name

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def service(otel: Otel) -> ModelService:
    backend = FakeBackend().script("a", reply("fine"))
    return make_test_service(
        fake_registry(fake_model("a")), backend=backend, state_store=MemoryStateStore(), tracer=otel.tracer()
    )


async def test_the_call_span_continues_the_client_s_trace(otel: Otel) -> None:
    svc = service(otel)
    headers = [(b"content-type", b"application/json"), (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())]
    with continued_trace(headers):
        await svc.complete_with_task_model("t", prompt="hi")
    (call,) = by_name(otel.finished(), "taskmodels t")
    assert call.context is not None
    assert call.context.trace_id == int(TRACE, 16)
    assert call.parent is not None
    assert call.parent.span_id == int(PARENT, 16)
    assert call.parent.is_remote


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", b"00-not-a-trace-01")],
        [(b"traceparent", f"00-{'0' * 32}-{PARENT}-01".encode())],  # an all-zero trace id is invalid
    ],
)
async def test_without_a_valid_traceparent_the_call_starts_its_own_trace(
    otel: Otel, headers: list[tuple[bytes, bytes]]
) -> None:
    svc = service(otel)
    with continued_trace(headers):
        await svc.complete_with_task_model("t", prompt="hi")
    (call,) = by_name(otel.finished(), "taskmodels t")
    assert call.parent is None


async def test_turned_off_it_leaves_the_context_alone(otel: Otel) -> None:
    svc = service(otel)
    with continued_trace([(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())], enabled=False):
        await svc.complete_with_task_model("t", prompt="hi")
    (call,) = by_name(otel.finished(), "taskmodels t")
    assert call.parent is None


async def test_the_context_is_restored_after_the_block(otel: Otel) -> None:
    from opentelemetry import trace

    before = trace.get_current_span()
    with continued_trace([(b"traceparent", f"00-{TRACE}-{PARENT}-01".encode())]):
        assert trace.get_current_span().get_span_context().trace_id == int(TRACE, 16)
    assert trace.get_current_span() is before
