"""OpenTelemetry spans of client requests and of the NATS requests each makes.

Imported only once a tracer provider is known (``resgate.tracing``): the
OpenTelemetry API is an optional dependency (``pip install resgate[otel]``).
A client request is a SERVER span, a child of the client's ``traceparent``
when it sent a valid one; each request to a service is a CLIENT span under
it, and the ``traceparent`` the service gets names that span.
"""

from __future__ import annotations

from typing import Mapping

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from resgate import __version__, errors
from resgate.bus import Bus, Respond

_PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracing:
    """Starts a span per client request with the provider's ``resgate`` tracer."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("resgate", __version__)

    def start(self, parent: Mapping[str, str] | None, name: str, attributes: Mapping[str, str]) -> SpanTrace:
        context = _PROPAGATOR.extract(parent) if parent is not None else None
        span = self._tracer.start_span(name, context=context, kind=SpanKind.SERVER, attributes=attributes)
        return SpanTrace(self._tracer, span)


class SpanTrace:
    """A client request's span: its NATS requests are spans under it."""

    __slots__ = ("_tracer", "_span", "_context", "_ended")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self._tracer = tracer
        self._span = span
        self._context = trace.set_span_in_context(span)
        self._ended = False

    def send_request(self, bus: Bus, subject: str, payload: bytes, respond: Respond) -> None:
        span = self._tracer.start_span(
            "NATS " + subject.partition(".")[0], context=self._context, kind=SpanKind.CLIENT,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        )
        headers: dict[str, str] = {}
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))

        def answered(reply: bytes | None, error: errors.ResError | None) -> None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error.code))
            span.end()
            respond(reply, error)

        bus.send_request(subject, payload, answered, headers)

    def end(self, failure: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if failure is not None:
            self._span.set_status(Status(StatusCode.ERROR, failure))
        self._span.end()
