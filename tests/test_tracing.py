"""W3C trace context from clients to services, without OpenTelemetry.

An HTTP request's valid ``traceparent`` (and ``tracestate``) reaches the
service as NATS message headers on every request the gateway makes for it:
access, get, call, auth and header auth. A WebSocket upgrade's reaches the
connection's header auth; WebSocket messages have none. A malformed
``traceparent`` is never forwarded, and requests without one are plain
messages. Over both buses: the memory bus's headers, and nats-py's over a
real nats-server. The checks of the header values themselves are in
test_trace_headers.py; spans, in test_tracing_otel.py.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.rig.api import raw_request, send, upgrade_request
from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.resources import ERR_ACCESS_DENIED, connect_client, get_result
from tests.rig.ws import connect_ws

pytestmark = [pytest.mark.usefixtures("logged_errors"), OVER_BOTH_BUSES]

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
TRACE = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
GRANTED = {"result": {"get": True, "call": "*"}}


@pytest_twisted.ensureDeferred
async def test_an_http_get_carries_the_trace_to_access_and_get(gateway, fake_service):
    pending = send(gateway, "GET", "test/model", headers=TRACE)
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert {subject: request.headers for subject, request in requests.items()} == {
        "access.test.model": TRACE, "get.test.model": TRACE}
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 200


@pytest_twisted.ensureDeferred
async def test_the_gets_of_referenced_resources_carry_the_http_request_trace(gateway, fake_service):
    pending = send(gateway, "GET", "test/model/parent", headers=TRACE)
    requests = await fake_service.take("access.test.model.parent", "get.test.model.parent")
    requests["access.test.model.parent"].respond(GRANTED)
    requests["get.test.model.parent"].respond({"result": get_result("test.model.parent")})
    reference = await fake_service.next_request()
    assert (reference.subject, reference.headers) == ("get.test.model", TRACE)
    reference.respond({"result": get_result("test.model")})
    assert (await pending).status == 200


@pytest_twisted.ensureDeferred
async def test_an_http_call_carries_the_trace_to_access_and_call(gateway, fake_service):
    pending = send(gateway, "POST", "test/model/method", body=b'{"value":42}', headers=TRACE)
    access = await fake_service.next_request()
    assert (access.subject, access.headers) == ("access.test.model", TRACE)
    access.respond(GRANTED)
    call = await fake_service.next_request()
    assert (call.subject, call.headers) == ("call.test.model.method", TRACE)
    call.respond({"result": {"ok": True}})
    assert (await pending).json() == {"ok": True}


@pytest_twisted.ensureDeferred
async def test_http_header_auth_carries_the_trace(gateway_factory, fake_service):
    gateway = await gateway_factory(header_auth="vault.method")
    pending = send(gateway, "GET", "test/model", headers={"traceparent": TRACEPARENT})
    auth = await fake_service.next_request()
    assert (auth.subject, auth.headers) == ("auth.vault.method", {"traceparent": TRACEPARENT})
    auth.respond({"result": None})
    access = await fake_service.take("access.test.model", "get.test.model")
    assert all(request.headers == {"traceparent": TRACEPARENT} for request in access.values())
    access["access.test.model"].respond({"error": ERR_ACCESS_DENIED})
    access["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 401


@pytest_twisted.ensureDeferred
async def test_a_request_without_trace_context_sends_messages_without_headers(gateway, fake_service):
    pending = send(gateway, "GET", "test/model")
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert [request.headers for request in requests.values()] == [None, None]
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 200


HOSTILE_TRACEPARENTS = [
    ("wrong length", TRACEPARENT + "0"),
    ("bad hex", TRACEPARENT.replace("4bf9", "4bfz")),
    ("version ff", "ff" + TRACEPARENT[2:]),
    ("all-zero trace id", f"00-{'0' * 32}-00f067aa0ba902b7-01"),
    ("all-zero span id", f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01"),
    ("oversized", "01" + TRACEPARENT[2:] + "-" + "a" * 8000),
]


@pytest.mark.parametrize("name, value", HOSTILE_TRACEPARENTS, ids=[row[0] for row in HOSTILE_TRACEPARENTS])
@pytest_twisted.ensureDeferred
async def test_a_malformed_traceparent_is_not_forwarded_nor_its_tracestate(gateway, fake_service, name, value):
    pending = send(gateway, "GET", "test/model", headers={"traceparent": value, "tracestate": TRACESTATE})
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert [request.headers for request in requests.values()] == [None, None]
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 200


def _get_request(path: str, header_lines: list[str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *header_lines]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest_twisted.ensureDeferred
async def test_several_traceparent_headers_are_not_forwarded(gateway, fake_service):
    request = _get_request("/api/test/model", [f"traceparent: {TRACEPARENT}", f"traceparent: {TRACEPARENT}"])
    pending = defer.ensureDeferred(raw_request(gateway.port, request))
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert [request.headers for request in requests.values()] == [None, None]
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 200


@pytest_twisted.ensureDeferred
async def test_tracestate_lines_are_forwarded_as_one_list_and_an_oversized_one_not_at_all(gateway, fake_service):
    lines = [f"traceparent: {TRACEPARENT}", "tracestate: congo=t61rcWkgMzE", "tracestate: rojo=00f067aa0ba902b7"]
    pending = defer.ensureDeferred(raw_request(gateway.port, _get_request("/api/test/model", lines)))
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert requests["access.test.model"].headers == TRACE
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert (await pending).status == 200

    oversized = {"traceparent": TRACEPARENT, "tracestate": ",".join(f"k{i}=" + "v" * 20 for i in range(30))}
    pending = send(gateway, "GET", "test/model", headers=oversized)
    access = await fake_service.next_request()
    assert (access.subject, access.headers) == ("access.test.model", {"traceparent": TRACEPARENT})
    access.respond(GRANTED)
    assert (await pending).status == 200


@pytest_twisted.ensureDeferred
async def test_a_shared_get_carries_the_trace_of_the_request_that_caused_it(gateway, fake_service):
    first = send(gateway, "GET", "test/model", headers={"traceparent": TRACEPARENT})
    requests = await fake_service.take("access.test.model", "get.test.model")
    other = TRACEPARENT.replace("00f067aa0ba902b7", "b7ad6b7169203331")
    second = send(gateway, "GET", "test/model", headers={"traceparent": other})
    access = await fake_service.next_request()
    assert (access.subject, access.headers) == ("access.test.model", {"traceparent": other})
    assert requests["get.test.model"].headers == {"traceparent": TRACEPARENT}
    requests["access.test.model"].respond(GRANTED)
    access.respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert [(await first).status, (await second).status] == [200, 200]
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_the_upgrade_trace_reaches_the_websocket_header_auth_only(gateway_factory, fake_service):
    gateway = await gateway_factory(ws_header_auth="vault.method")
    pending = connect_ws(gateway.ws_url, headers=TRACE)
    auth = await fake_service.next_request()
    assert (auth.subject, auth.headers) == ("auth.vault.method", TRACE)
    auth.respond({"result": None})
    client = await pending
    # WebSocket messages carry no header: nothing to forward without spans.
    response = client.request("subscribe.test.model")
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert [request.headers for request in requests.values()] == [None, None]
    requests["access.test.model"].respond(GRANTED)
    requests["get.test.model"].respond({"result": get_result("test.model")})
    assert "result" in await response
    client.close()


@pytest_twisted.ensureDeferred
async def test_several_traceparent_headers_in_an_upgrade_are_not_forwarded(gateway_factory, fake_service):
    gateway = await gateway_factory(ws_header_auth="vault.method")
    request = upgrade_request().replace(
        b"\r\n\r\n", f"\r\ntraceparent: {TRACEPARENT}\r\ntraceparent: {TRACEPARENT}\r\n\r\n".encode())
    pending = defer.ensureDeferred(raw_request(gateway.port, request))
    auth = await fake_service.next_request()
    assert (auth.subject, auth.headers) == ("auth.vault.method", None)
    auth.respond({"result": None})
    assert (await pending).status == 101


@pytest_twisted.ensureDeferred
async def test_a_websocket_client_without_header_auth_sends_plain_messages(gateway, fake_service):
    client = await connect_client(gateway, headers=TRACE)
    response = client.request("call.test.model.method", {"value": 1})
    access = await fake_service.next_request()
    assert access.headers is None
    access.respond(GRANTED)
    call = await fake_service.next_request()
    assert (call.subject, call.headers) == ("call.test.model.method", None)
    call.respond({"result": 1})
    assert (await response)["result"] == {"payload": 1}
    client.close()
