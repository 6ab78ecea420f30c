"""OpenTelemetry spans for what the engine does: one per GraphQL request, parented to the
client's span when it sends a W3C `traceparent` header (the Dagger SDKs do), and one per step
the request waits for (run, cached or failed), a child of the request's span.

Spans go where the standard variables say (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, with `OTEL_EXPORTER_OTLP_HEADERS` and the other
`OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*` settings the exporter reads), over OTLP/HTTP with
protobuf. Without such a variable (or with `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none`) telemetry is off: this module's OpenTelemetry imports never
happen and requests and steps cost nothing more.

Steps are traced from the events the solver sends each request's job (`StepEvent`), so a step
shared by two requests appears under each. Span attributes carry the step's name and key,
never its output or error text (secrets are scrubbed from outputs, but a span is one more
place a value could leak, and the progress stream has the text).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dirk.solver.job import EventSink, StepEvent, discard_events

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class _Request:
    """The span of the request being served and the step spans opened under it."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.steps: list[_StepSpans] = []


#: The request being served, in the request's task (and the tasks it starts).
_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "dirk_request_trace", default=None
)


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def from_environment(env: Mapping[str, str] = os.environ) -> Telemetry | None:
    """A `Telemetry` when the environment asks for one, else None (and nothing imported)."""
    if not enabled(env):
        return None
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() not in ("", "http/protobuf"):
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported: dirk exports traces with "
            "http/protobuf (set that, or point the endpoint at a collector's OTLP/HTTP port)",
            protocol,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return Telemetry(OTLPSpanExporter())


class Telemetry:
    """The engine's tracer provider and the spans of requests and steps."""

    def __init__(self, exporter: Any, service_name: str = "dirk-engine") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from dirk import __version__

        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer: Tracer = self._provider.get_tracer("dirk.engine", __version__)

    @contextlib.contextmanager
    def request(self, headers: Mapping[str, str], name: str, session: str) -> Iterator[None]:
        """The span of one GraphQL request, a child of the client's `traceparent` if any."""
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier = {k.lower(): v for k, v in headers.items() if k.lower() in _TRACE_HEADERS}
        parent = TraceContextTextMapPropagator().extract(carrier)
        span = self._tracer.start_span(
            name, context=parent, attributes={"dirk.session": session}, kind=_server_kind()
        )
        current = _Request(span)
        token = _current.set(current)
        try:
            yield
        finally:
            _current.reset(token)
            for steps in current.steps:
                steps.close()
            span.end()

    def step_sink(self, events: EventSink) -> EventSink:
        """`events`, and a span for each step the current request waits for."""
        request = _current.get()
        if request is None:
            return events
        steps = _StepSpans(self._tracer, request.span)
        request.steps.append(steps)
        if events is discard_events:
            return steps.receive

        def both(event: StepEvent) -> None:
            events(event)
            steps.receive(event)

        return both

    def shutdown(self) -> None:
        """Send what is still buffered and stop (the engine is stopping)."""
        self._provider.shutdown()


_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def _server_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER


class _StepSpans:
    """Turns one job's step events into spans under its request's span."""

    def __init__(self, tracer: Tracer, request: Span) -> None:
        from opentelemetry.trace import set_span_in_context

        self._tracer = tracer
        self._parent = set_span_in_context(request)
        self._open: dict[str, Span] = {}

    def receive(self, event: StepEvent) -> None:
        if event.kind == "start":
            self._open[event.key] = self._start(event, cached=False)
        elif event.kind == "cached":
            self._start(event, cached=True).end()
        elif event.kind in ("done", "error", "cancelled"):
            span = self._open.pop(event.key, None)
            if span is not None:
                if event.kind == "error":
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR, "the step failed"))
                span.end()

    def close(self) -> None:
        """End the spans of steps the request stopped waiting for (it was cancelled)."""
        for span in self._open.values():
            span.set_attribute("dirk.abandoned", True)
            span.end()
        self._open.clear()

    def _start(self, event: StepEvent, *, cached: bool) -> Span:
        return self._tracer.start_span(
            event.description,
            context=self._parent,
            attributes={"dirk.key": event.key, "dirk.cached": cached},
        )
