"""HTTP time bounds: the first byte, a request's body, idle keep-alive connections.

Against a gateway process started with short bounds by its flags
(``--firstbytetimeout``, ``--headtimeout``, ``--bodytimeout``,
``--keepalivetimeout``), over loopback sockets written to by hand:

- a body trickling in past ``bodyTimeout`` gets 408 and the connection closes;
- a connection that sends nothing is closed after ``firstByteTimeout``,
  one idle after a response after ``keepAliveTimeout``, both without a word;
- a request whose every part arrives within its own bound is served, though
  all of them together take longer than any one bound;
- an upgraded WebSocket idle far beyond every bound stays open and works.

Then the channel on a fake clock: each bound ends exactly when it should,
counted from where it should, and a keep-alive connection serving requests
keeps one timer, whatever the number of requests.

Not upstream scenarios: Resgate bounds none of this (docs/reliability.md).
The slow head is tests/test_http_slow_head.py.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from resgate.site import GatewaySite
from resgate.web import HttpBounds
from tests.rig.aio import eventually, sleep, within
from tests.rig.api import parse_response, raw_client, request, trickle, upgrade_request
from tests.rig.process import GatewayProcess, free_port
from tests.rig.resources import get_result
from tests.rig.wsframes import text_frame

MODEL = get_result("test.model")["model"]
GET = b"GET /api/test/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: Every bound of the gateway process, in seconds: short enough to wait
#: for, long enough that a busy machine delivers each part of a request
#: within it (the parts below come PAUSE apart).
BOUND = 2.0
PAUSE = 0.5
#: Well past when a bound must have ended, even on a busy machine.
AFTER_BOUND = BOUND + 8


@pytest.fixture(scope="module")
def bounded_gateway(nats_server):
    """The gateway as an operator starts it, with every HTTP bound set short."""
    port = free_port()
    bound_ms = str(int(BOUND * 1000))
    gateway = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(port),
                             "--firstbytetimeout", bound_ms, "--headtimeout", bound_ms,
                             "--bodytimeout", bound_ms, "--keepalivetimeout", bound_ms)
    try:
        gateway.wait_listening()
        gateway.port = port
        yield gateway
    finally:
        gateway.stop()
        gateway.cleanup()


@pytest.fixture
def serve_model(fake_service):
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True, "call": "*"}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": MODEL}))
    fake_service.on("call.test.model.echo", lambda r: r.respond_result(r.payload["params"]))


def post_head(body_length: int) -> bytes:
    return (b"POST /api/test/model/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
            % body_length)


@pytest_twisted.ensureDeferred
async def test_a_body_trickling_in_past_its_bound_gets_408_and_the_connection_closes(
        bounded_gateway, serve_model, fake_service):
    client = await raw_client(bounded_gateway.port)
    body = json.dumps({"padding": "x" * 40}).encode()
    client.transport.write(post_head(len(body)))
    # A byte every tenth of a second: the whole body would take over twice the bound.
    sending = defer.ensureDeferred(trickle(client, body, BOUND / len(body) * 2.5))
    bystander = await request("GET", f"http://127.0.0.1:{bounded_gateway.port}/api/test/model")
    assert (bystander.status, bystander.json()) == (200, MODEL)
    data = await within(client.closed, AFTER_BOUND)
    await within(sending, AFTER_BOUND)
    response = parse_response(data)
    assert response.status == 408, data
    assert response.header("Connection") == "close"
    assert json.loads(response.body) == {"code": "system.badRequest", "message": "Request body timeout"}
    assert not any(r.subject.startswith("call.") for r in fake_service.requests)


@pytest_twisted.ensureDeferred
async def test_a_connection_that_sends_nothing_is_closed_without_a_word(bounded_gateway):
    client = await raw_client(bounded_gateway.port)
    assert client.is_open
    assert await within(client.closed, AFTER_BOUND) == b""


@pytest_twisted.ensureDeferred
async def test_an_idle_keep_alive_connection_is_closed_after_its_response(bounded_gateway, serve_model):
    client = await raw_client(bounded_gateway.port)
    client.transport.write(GET)
    data = await within(client.closed, AFTER_BOUND)
    # The one response, whole, then the close: no 408 for a request never begun.
    assert [(r.status, json.loads(r.body)) for r in client.responses] == [(200, MODEL)]
    assert data.endswith(json.dumps(MODEL, separators=(",", ":")).encode())


@pytest_twisted.ensureDeferred
async def test_a_request_with_each_part_within_its_bound_is_served(bounded_gateway, serve_model):
    """Idle, head, body and idle again each take PAUSE, together over the bound:
    each bound counts for its own part only. Then the idle connection is closed."""
    client = await raw_client(bounded_gateway.port)
    body = b'{"a":1}'
    head = post_head(len(body))
    steps = [head[:10], head[10:], body[:3], body[3:], GET]
    for step in steps:
        await sleep(PAUSE)
        assert client.is_open
        client.transport.write(step)
    await eventually(lambda: len(client.responses) == 2, AFTER_BOUND)
    assert [(r.status, json.loads(r.body)) for r in client.responses] == [(200, {"a": 1}), (200, MODEL)]
    await within(client.closed, AFTER_BOUND)
    assert len(client.responses) == 2


@pytest_twisted.ensureDeferred
async def test_an_upgraded_websocket_idle_beyond_every_bound_stays_open_and_works(bounded_gateway):
    client = await raw_client(bounded_gateway.port)
    client.transport.write(upgrade_request())
    await eventually(lambda: b"\r\n\r\n" in client.data)
    assert client.data.startswith(b"HTTP/1.1 101 ")
    await sleep(BOUND * 2 + PAUSE)
    assert client.is_open
    client.transport.write(text_frame('{"id":1,"method":"version"}'))
    await eventually(lambda: b'"protocol":"1.2.3"' in client.data)
    assert client.is_open
    client.transport.loseConnection()


# ---------------------------------------------------------------------------
# The channel on a fake clock: where each bound starts and ends

FAKE_BOUNDS = HttpBounds(first_byte=10.0, head=30.0, body=60.0, keep_alive=75.0)
JUST = 0.001


class Answers(resource.Resource):
    """Answers GET at once; holds POST until the test finishes it."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[server.Request] = []

    def render(self, request: server.Request) -> bytes | int:
        if request.method == b"POST":
            self.held.append(request)
            return server.NOT_DONE_YET
        return b"ok"


class Connected:
    """A channel of a GatewaySite on a fake clock, over a StringTransport."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.answers = Answers()
        self.channel = GatewaySite(self.answers, FAKE_BOUNDS, reactor=self.clock).buildProtocol(None)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)


def test_first_byte_bound_closes_a_silent_connection_exactly_then():
    conn = Connected()
    clock, transport = conn.clock, conn.transport
    clock.advance(FAKE_BOUNDS.first_byte - JUST)
    assert not transport.disconnecting
    clock.advance(2 * JUST)
    assert transport.disconnecting and transport.value() == b""


def test_keep_alive_bound_counts_from_the_end_of_the_last_response():
    conn = Connected()
    clock, transport = conn.clock, conn.transport
    clock.advance(FAKE_BOUNDS.first_byte - 1)
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answered = transport.value()
    assert answered.startswith(b"HTTP/1.1 200 ")
    clock.advance(FAKE_BOUNDS.keep_alive - JUST)
    assert not transport.disconnecting
    clock.advance(2 * JUST)
    assert transport.disconnecting and transport.value() == answered


def test_head_bound_counts_from_the_first_byte():
    conn = Connected()
    clock, transport = conn.clock, conn.transport
    clock.advance(FAKE_BOUNDS.first_byte - 1)
    conn.send(b"GET / HT")
    clock.advance(FAKE_BOUNDS.head - JUST)
    assert not transport.disconnecting
    clock.advance(2 * JUST)
    assert transport.disconnecting
    assert b"Request header timeout" in transport.value()


def test_body_bound_counts_from_the_end_of_the_head_and_answering_is_unbounded():
    conn = Connected()
    clock, transport, answers = conn.clock, conn.transport, conn.answers
    conn.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
    clock.advance(FAKE_BOUNDS.head - 1)
    conn.send(b"Content-Length: 4\r\n\r\n{}")
    clock.advance(FAKE_BOUNDS.body - 1)
    conn.send(b"{}")
    assert not transport.disconnecting and len(answers.held) == 1
    # The service may take as long as it likes: no bound while the gateway answers.
    clock.advance(10 * FAKE_BOUNDS.keep_alive)
    assert not transport.disconnecting
    answers.held[0].write(b"done")
    answers.held[0].finish()
    clock.advance(FAKE_BOUNDS.keep_alive - JUST)
    assert not transport.disconnecting
    clock.advance(2 * JUST)
    assert transport.disconnecting


def test_a_body_not_arriving_in_time_gets_408():
    conn = Connected()
    clock, transport, answers = conn.clock, conn.transport, conn.answers
    conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}")
    clock.advance(FAKE_BOUNDS.body + JUST)
    assert transport.disconnecting and answers.held == []
    response = parse_response(transport.value())
    assert response.status == 408
    assert json.loads(response.body) == {"code": "system.badRequest", "message": "Request body timeout"}


def test_requests_on_a_keep_alive_connection_keep_one_timer():
    """The timer is not moved per request, only waits on when it fires early: the hot path stays as it was."""
    conn = Connected()
    clock, transport = conn.clock, conn.transport
    for _ in range(100):
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        clock.advance(1)
        assert len(clock.getDelayedCalls()) == 1
    assert not transport.disconnecting
    assert transport.value().count(b"HTTP/1.1 200 ") == 100


def test_a_channel_handed_over_to_a_websocket_keeps_no_timer():
    """Else its timer would hold the channel and its upgrade request until the first-byte bound."""
    conn = Connected()
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(conn.clock.getDelayedCalls()) == 1
    site = conn.channel.site
    open_before = site.http_connections
    conn.channel.handed_over()
    assert conn.clock.getDelayedCalls() == []
    assert site.http_connections == open_before - 1
    conn.clock.advance(10 * FAKE_BOUNDS.keep_alive)
    assert not conn.transport.disconnecting
