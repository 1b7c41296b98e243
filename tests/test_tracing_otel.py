"""OpenTelemetry spans of client requests, recorded with the SDK's in-memory exporter.

With a tracer provider, each client request is a SERVER span (a child of the
client's valid ``traceparent``, a root otherwise) and each NATS request it
makes a CLIENT span under it; the ``traceparent`` a service gets names that
CLIENT span, and the client's ``tracestate`` goes along. The gateway is
given its provider (``GatewayService(tracer_provider=...)``): the global
one is the process's, shared by every test.
"""

from __future__ import annotations

import sys

import pytest
import pytest_twisted
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from resgate.otel import OtelTracing
from resgate.tracing import configured_tracing

from tests.rig.api import send
from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.resources import connect_client, get_result
from tests.rig.ws import connect_ws

pytestmark = pytest.mark.usefixtures("logged_errors")

TRACE_ID = 0x4bf92f3577b34da6a3ce929d0e0e4736
SPAN_ID = 0x00f067aa0ba902b7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE"
GRANTED = {"result": {"get": True, "call": "*"}}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    found = {span.name: span for span in spans}
    assert len(found) == len(spans), [span.name for span in spans]
    return found


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def assert_child(span: ReadableSpan, parent: ReadableSpan, kind: SpanKind = SpanKind.CLIENT) -> None:
    assert span.kind == kind
    assert span.parent is not None and span.parent.span_id == parent.context.span_id, span.name
    assert span.context.trace_id == parent.context.trace_id


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_an_http_get_is_a_span_under_the_client_trace_and_its_requests_spans_under_it(
        gateway_factory, fake_service, provider, exporter):
    gateway = await gateway_factory(tracer_provider=provider)
    pending = send(gateway, "GET", "test/model", headers={"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    requests = await fake_service.take("access.test.model", "get.test.model")
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 200
    spans = by_name(exporter)
    assert set(spans) == {"HTTP GET", "NATS access", "NATS get"}
    server = spans["HTTP GET"]
    assert server.kind == SpanKind.SERVER
    assert (server.context.trace_id, server.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert server.attributes["url.path"] == "/api/test/model"
    for name, subject in (("NATS access", "access.test.model"), ("NATS get", "get.test.model")):
        assert_child(spans[name], server)
        assert spans[name].attributes["messaging.destination.name"] == subject
        assert requests[subject].headers == {"traceparent": traceparent_of(spans[name]), "tracestate": TRACESTATE}


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_a_request_without_or_with_malformed_trace_context_starts_a_trace(
        gateway_factory, fake_service, provider, exporter):
    gateway = await gateway_factory(tracer_provider=provider)
    for headers in ({}, {"traceparent": "ff" + TRACEPARENT[2:], "tracestate": TRACESTATE}):
        exporter.clear()
        pending = send(gateway, "POST", "test/model/method", body=b"{}", headers=headers)
        access = await fake_service.next_request()
        access.respond(GRANTED)
        call = await fake_service.next_request()
        call.respond({"result": None})
        assert (await pending).status == 204
        spans = by_name(exporter)
        server = spans["HTTP POST"]
        assert server.parent is None and server.context.trace_id != TRACE_ID
        assert_child(spans["NATS access"], server)
        assert_child(spans["NATS call"], server)
        assert call.headers == {"traceparent": traceparent_of(spans["NATS call"])}


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_a_failed_request_to_a_service_is_an_error_span(gateway_factory, fake_service, provider, exporter):
    gateway = await gateway_factory(tracer_provider=provider, request_timeout=200)
    pending = send(gateway, "GET", "test/model")
    await fake_service.take("access.test.model", "get.test.model")
    response = await pending
    assert response.status == 404  # Resgate answers a timeout with 404
    spans = by_name(exporter)
    for name in ("NATS access", "NATS get"):
        assert spans[name].status.status_code == StatusCode.ERROR
        assert spans[name].status.description == "system.timeout"
    assert spans["HTTP GET"].status.status_code == StatusCode.UNSET


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_websocket_requests_are_spans_by_method_with_their_requests_under_them(
        gateway_factory, fake_service, provider, exporter):
    gateway = await gateway_factory(tracer_provider=provider)
    client = await connect_client(gateway, headers={"traceparent": TRACEPARENT})
    response = client.request("subscribe.test.model")
    requests = await fake_service.take("access.test.model", "get.test.model")
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert "result" in await response
    spans = by_name(exporter)
    subscribe = spans["WebSocket subscribe"]
    # A WebSocket message has no header: its span starts a trace of its own.
    assert subscribe.kind == SpanKind.SERVER and subscribe.parent is None
    assert subscribe.attributes["resgate.rid"] == "test.model"
    assert_child(spans["NATS access"], subscribe)
    assert_child(spans["NATS get"], subscribe)
    assert requests["get.test.model"].headers == {"traceparent": traceparent_of(spans["NATS get"])}

    # A call sent once its access is answered still belongs to its client request.
    exporter.clear()
    response = client.request("call.test.other.method")
    access = await fake_service.next_request()
    access.respond(GRANTED)
    call = await fake_service.next_request()
    call.respond({"error": {"code": "system.custom", "message": "Custom"}})
    assert (await response)["error"]["code"] == "system.custom"
    spans = by_name(exporter)
    call_span = spans["WebSocket call"]
    assert_child(spans["NATS access"], call_span)
    assert_child(spans["NATS call"], call_span)
    assert call.headers == {"traceparent": traceparent_of(spans["NATS call"])}
    assert call_span.status.status_code == StatusCode.ERROR
    assert call_span.status.description == "system.custom"
    client.close()


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_a_websocket_upgrade_header_auth_is_a_span_under_the_upgrade_trace(
        gateway_factory, fake_service, provider, exporter):
    gateway = await gateway_factory(tracer_provider=provider, ws_header_auth="vault.method")
    pending = connect_ws(gateway.ws_url, headers={"traceparent": TRACEPARENT})
    auth = await fake_service.next_request()
    auth.respond({"result": None})
    client = await pending
    spans = by_name(exporter)
    upgrade = spans["WebSocket upgrade"]
    assert (upgrade.context.trace_id, upgrade.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert_child(spans["NATS auth"], upgrade)
    assert auth.headers == {"traceparent": traceparent_of(spans["NATS auth"])}
    client.close()


def test_without_a_configured_global_provider_no_spans_are_recorded():
    # Nothing in the test process sets OpenTelemetry's global provider: it is the API's placeholder.
    assert configured_tracing() is None


def test_without_the_opentelemetry_api_no_spans_are_recorded(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what an import finds when it is not installed
    assert configured_tracing() is None


def test_a_given_provider_records_spans(provider):
    assert isinstance(configured_tracing(provider), OtelTracing)
