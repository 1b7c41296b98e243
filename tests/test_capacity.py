"""The capacity caps (docs/reliability.md): connections per process and per address, resources per connection.

The gateway runs as its own process (``python -m resgate``) with small caps;
clients are real: treq, Autobahn's WebSocket client, and raw TCP
connections that send a request by hand, or nothing at all, from a chosen
loopback source address.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from resgate import admission
from resgate.admission import AdmissionFactory, ConnectionLimits, default_max_connections
from tests.rig.aio import WAIT_TIMEOUT, eventually, sleep, within
from tests.rig.http import http_request
from tests.rig.process import GatewayProcess, free_port
from tests.rig.tls import write_self_signed_cert
from tests.rig.ws import connect_ws

REFUSED_BODY = {"code": "system.serviceUnavailable", "message": "Too many connections"}


def upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


class RawConnection(protocol.Protocol):
    """Sends ``request`` (nothing if empty) and keeps what comes back."""

    def __init__(self, request: bytes = b"") -> None:
        self.request = request
        self.received = b""
        self.lost: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        if self.request:
            self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)

    async def status(self) -> int:
        """The status code of the response's first line, once it has come."""
        await eventually(lambda: b"\r\n" in self.received)
        return int(self.received.split(b" ", 2)[1])

    async def close(self) -> None:
        self.transport.loseConnection()
        await within(self.lost, WAIT_TIMEOUT)


async def open_raw(port: int, request: bytes = b"", source: str = "127.0.0.1") -> RawConnection:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    return await within(connectProtocol(endpoint, RawConnection(request)), WAIT_TIMEOUT)


async def upgrade_status(port: int, source: str = "127.0.0.1") -> tuple[int, RawConnection]:
    conn = await open_raw(port, upgrade_request(), source)
    return await conn.status(), conn


@pytest.fixture
def start_gateway(nats_server):
    """Starts the gateway process with extra flags; the port it listens on."""
    processes: list[GatewayProcess] = []

    def start(*flags: str) -> int:
        process = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(free_port()), *flags)
        processes.append(process)
        return process.wait_listening()

    yield start
    for process in processes:
        process.cleanup()


# -- connections


@pytest_twisted.ensureDeferred
async def test_connections_past_the_cap_get_503_over_http_and_websocket_until_some_close(start_gateway):
    port = start_gateway("--maxconns", "3")
    held = [await connect_ws(f"ws://127.0.0.1:{port}/") for _ in range(3)]

    response = await http_request("GET", f"http://127.0.0.1:{port}/api/test/model")
    assert response.status == 503
    assert response.header("content-type") == "application/json; charset=utf-8"
    assert response.json() == REFUSED_BODY
    status, refused = await upgrade_status(port)
    assert status == 503
    await within(refused.lost, WAIT_TIMEOUT)  # the gateway closes it
    with pytest.raises(ConnectionError, match="503"):
        await connect_ws(f"ws://127.0.0.1:{port}/")

    held[0].sendClose()
    await within(held[0].closed, WAIT_TIMEOUT)
    held[0] = await connect_ws(f"ws://127.0.0.1:{port}/")
    assert (await upgrade_status(port))[0] == 503
    for client in held:
        client.sendClose()
        await within(client.closed, WAIT_TIMEOUT)
    response = await http_request("GET", f"http://127.0.0.1:{port}/nothing")
    assert response.status == 404


@pytest_twisted.ensureDeferred
async def test_the_per_address_cap_refuses_one_address_and_serves_another(start_gateway):
    port = start_gateway("--maxconnsperaddr", "2")
    held = [await open_raw(port, source="127.0.0.1") for _ in range(2)]

    status, _ = await upgrade_status(port, source="127.0.0.1")
    assert status == 503
    status, other = await upgrade_status(port, source="127.0.0.2")
    assert status == 101

    await held[0].close()
    deadline = reactor.seconds() + WAIT_TIMEOUT
    while status != 101:  # until the gateway has seen the close
        assert reactor.seconds() < deadline, "the address was never served again"
        await sleep(0.05)
        status, _ = await upgrade_status(port, source="127.0.0.1")
    await other.close()


@pytest_twisted.ensureDeferred
async def test_half_open_connections_count_against_the_cap_and_do_not_stop_the_gateway(start_gateway):
    port = start_gateway("--maxconns", "50")
    silent = [await open_raw(port) for _ in range(50)]

    response = await http_request("GET", f"http://127.0.0.1:{port}/nothing")
    assert (response.status, response.json()) == (503, REFUSED_BODY)
    # A refusal lingers only until its client closes, here never: it is let go.
    lingering = await open_raw(port)
    await within(lingering.lost, WAIT_TIMEOUT)
    assert lingering.received.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")

    for conn in silent:
        await conn.close()
    deadline = reactor.seconds() + WAIT_TIMEOUT
    while response.status == 503:  # until the gateway has seen the closes
        assert reactor.seconds() < deadline, "the gateway never served again"
        await sleep(0.05)
        response = await http_request("GET", f"http://127.0.0.1:{port}/nothing")
    assert (response.status, response.json()["code"]) == (404, "system.notFound")


def test_the_default_cap_is_the_open_file_limit_less_a_reserve(monkeypatch):
    def limit(soft):
        monkeypatch.setattr(admission.resource, "getrlimit", lambda which: (soft, soft))
        return default_max_connections()

    assert limit(20_000) == 19_488  # room for the 19,000 WebSockets of the benchmark
    assert limit(1024) == 512
    assert limit(256) == 128
    assert limit(admission.resource.RLIM_INFINITY) == admission.UNLIMITED_FILES_CAP


def test_refusals_past_their_bound_are_closed_unanswered():
    class Built(protocol.Factory):
        def buildProtocol(self, addr):
            return protocol.Protocol()

    class Address:
        host = "127.0.0.1"

    limits = ConnectionLimits(1)
    limits.opened("127.0.0.1")
    factory = AdmissionFactory(limits, Built(), admission.RefusalFactory(limits, reactor, half_close=True))
    assert isinstance(factory.buildProtocol(Address()), admission.RefusedConnection)
    # Refusals are connections too: open, but not counted against the total.
    limits.open += admission.MAX_REFUSING
    limits.refusing = admission.MAX_REFUSING
    assert factory.buildProtocol(Address()) is None


# -- resources per connection


def serve_world(service) -> None:
    """test.held references two models; test.top a collection of four more."""
    models = {
        "test.held": {"b": {"rid": "test.b"}, "c": {"rid": "test.c"}},
        "test.top": {"list": {"rid": "test.list"}},
        **{f"test.{name}": {"n": 1} for name in ("b", "c", "m1", "m2", "m3", "m4")},
    }
    for rid, model in models.items():
        service.on(f"access.{rid}", lambda r: r.respond_result({"get": True}))
        service.on(f"get.{rid}", lambda r, model=model: r.respond_result({"model": model}))
    service.on("access.test.list", lambda r: r.respond_result({"get": True}))
    service.on("get.test.list", lambda r: r.respond_result(
        {"collection": [{"rid": f"test.m{i}"} for i in range(1, 5)]}))


@pytest_twisted.ensureDeferred
async def test_a_subscribe_past_the_resource_cap_fails_and_changes_nothing(start_gateway, fake_service):
    serve_world(fake_service)
    port = start_gateway("--maxresources", "6")
    client = await connect_ws(f"ws://127.0.0.1:{port}/")
    held = await client.request("subscribe.test.held")
    assert set(held["result"]["models"]) == {"test.held", "test.b", "test.c"}

    # 3 held + test.top, test.list and four models: the cap of 6 is hit in the list.
    refused = await client.request("subscribe.test.top")
    assert refused["error"] == {"code": "system.resourceLimitExceeded", "message": "Resource limit exceeded"}
    unsubscribed = await client.request("unsubscribe.test.top")
    assert unsubscribed["error"]["code"] == "system.noSubscription"

    fake_service.event("test.b", "change", {"values": {"n": 2}})
    event = await client.next_message()
    assert event == {"event": "test.b.change", "data": {"values": {"n": 2}}}
    # Nothing of the refused tree stayed: the connection holds three and takes three more.
    more = await client.request("subscribe.test.list")
    assert "error" in more and more["error"]["code"] == "system.resourceLimitExceeded"
    for rid in ("test.m1", "test.m2", "test.m3"):
        answer = await client.request(f"subscribe.{rid}")
        assert answer["result"] == {"models": {rid: {"n": 1}}}
    assert (await client.request("subscribe.test.m4"))["error"]["code"] == "system.resourceLimitExceeded"
    client.sendClose()
    await within(client.closed, WAIT_TIMEOUT)


@pytest_twisted.ensureDeferred
async def test_an_http_get_past_the_resource_cap_shows_the_error_in_place(start_gateway, fake_service):
    serve_world(fake_service)
    port = start_gateway("--maxresources", "3")
    response = await http_request("GET", f"http://127.0.0.1:{port}/api/test/top")
    assert response.status == 200
    assert response.json() == {"list": {"href": "/api/test/list", "error": {
        "code": "system.resourceLimitExceeded", "message": "Resource limit exceeded"}}}


@pytest_twisted.ensureDeferred
async def test_with_tls_the_refusal_is_sent_inside_tls(start_gateway, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    port = start_gateway("--tls", "--tlscert", cert, "--tlskey", key, "--maxconns", "1")
    held = await open_raw(port)  # a TCP connection that never starts TLS

    def get_over_tls() -> bytes:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_TIMEOUT) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                received = b""
                while chunk := tls.recv(65536):
                    received += chunk
                return received

    received = await within(threads.deferToThread(get_over_tls), WAIT_TIMEOUT)
    assert received.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert received.endswith(b'{"code":"system.serviceUnavailable","message":"Too many connections"}')
    await held.close()


@pytest_twisted.ensureDeferred
async def test_refusals_are_logged_once_then_counted_and_scraped(nats_server):
    metrics_port = free_port()
    process = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(free_port()),
                             "--maxconns", "2", "--metricsport", str(metrics_port))
    try:
        port = process.wait_listening()
        held = [await open_raw(port) for _ in range(2)]
        for _ in range(30):
            refused = await open_raw(port)
            await within(refused.lost, WAIT_TIMEOUT)
            assert refused.received.startswith(b"HTTP/1.1 503 ")
        response = await http_request("GET", f"http://127.0.0.1:{metrics_port}/metrics")
        assert b"resgate_connections_refused_total 30\n" in response.body
        lines = [line for line in process.output().splitlines() if "Refused a connection" in line]
        assert len(lines) == 1, lines
        assert "2 client connections already" in lines[0]
        for conn in held:
            await conn.close()
    finally:
        process.cleanup()
