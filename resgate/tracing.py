"""The trace a client request's requests to services carry (docs/operations.md, "Tracing").

A ``RequestTrace`` goes with one client request (an HTTP request, a
WebSocket request, a WebSocket upgrade's header auth): each request the
gateway sends a service on its behalf goes out through ``send_request``,
with the trace context as NATS headers. Without OpenTelemetry that is the
client's own valid ``traceparent``/``tracestate`` (``ForwardedTrace``);
with a tracer provider, a span for the client request and one for each
NATS request under it (``resgate.otel``). A client request with neither has
no trace, and its requests go out as plain messages, as they always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Protocol

from resgate.bus import Bus, Respond

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

#: What a span may be told of its request (OpenTelemetry's attributes, strings here).
Attributes = Mapping[str, str]


class RequestTrace(Protocol):
    """The trace of one client request."""

    def send_request(self, bus: Bus, subject: str, payload: bytes, respond: Respond) -> None:
        """``bus.send_request`` carrying this trace's context."""

    def end(self, failure: str | None = None) -> None:
        """The client request is answered (``failure`` says why it failed); idempotent."""


class Tracing(Protocol):
    """What starts the trace of a client request when spans are recorded (``resgate.otel``)."""

    def start(self, parent: Mapping[str, str] | None, name: str, attributes: Attributes) -> RequestTrace:
        """A span named ``name``, a child of ``parent`` (checked trace headers) or a root."""


class ForwardedTrace:
    """The client's own trace context, forwarded unchanged: no spans are recorded."""

    __slots__ = ("headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.headers = headers

    def send_request(self, bus: Bus, subject: str, payload: bytes, respond: Respond) -> None:
        bus.send_request(subject, payload, respond, self.headers)

    def end(self, failure: str | None = None) -> None:
        """Nothing was started."""


def client_trace(tracing: Tracing | None, headers: Mapping[str, str] | None, name: str,
                 attributes: Attributes) -> RequestTrace | None:
    """The trace of a client request that sent ``headers`` (checked, or None); None when it has none."""
    if tracing is not None:
        return tracing.start(headers, name, attributes)
    return None if headers is None else ForwardedTrace(headers)


def configured_tracing(provider: TracerProvider | None = None) -> Tracing | None:
    """Spans through ``provider``, or OpenTelemetry's global one if configured; None without.

    The global provider counts only once something set it (the SDK, or
    ``opentelemetry-instrument``): the API's placeholder and no-op
    providers record nothing, and their spans would carry no trace context.
    """
    if provider is None:
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
    from resgate.otel import OtelTracing

    return OtelTracing(provider)
