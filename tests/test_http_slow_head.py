"""Slow request heads (slowloris): bounded by ``headTimeout``.

A client that sends its request line and headers a byte at a time, and
never finishes, gets 408 and the connection closes once the head has been
arriving for ``headTimeout`` milliseconds; the WebSocket upgrade request is
bound alike. A head that trickles in but completes in time is served, and
the bound does not run while a connection idles (other bounds do:
test_http_bounds.py). Other clients are served throughout.

Not upstream scenarios: Resgate sets no ReadHeaderTimeout; the bound is the
gateway's own. The tests set it short.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.rig.aio import eventually, sleep, within
from tests.rig.api import parse_response, raw_client, send, trickle, upgrade_request
from tests.rig.resources import get_result
from tests.rig.wsframes import text_frame

pytestmark = pytest.mark.usefixtures("logged_errors", "logged_failures")

MODEL = get_result("test.model")["model"]
GET = b"GET /api/test/model HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trickle\r\nAccept: */*\r\n\r\n"
#: A short bound for the tests that wait for it to pass (seconds, and as set in milliseconds).
SHORT = 0.3
SHORT_MS = 300


@pytest.fixture
def serve_model(fake_service):
    fake_service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.model", lambda r: r.respond_result({"model": MODEL}))


async def assert_bystander_served(gateway) -> None:
    response = await send(gateway, "GET", "test/model")
    assert (response.status, response.json()) == (200, MODEL)


def assert_timed_out(data: bytes) -> None:
    response = parse_response(data)
    assert response.status == 408, data
    assert response.header("Connection") == "close"
    assert json.loads(response.body) == {"code": "system.badRequest", "message": "Request header timeout"}


@pytest.mark.parametrize("request_bytes", [GET, upgrade_request()], ids=["GET", "WebSocket upgrade"])
@pytest_twisted.ensureDeferred
async def test_head_sent_byte_by_byte_is_cut_off(gateway_factory, serve_model, request_bytes):
    gateway = await gateway_factory(head_timeout=SHORT_MS)
    client = await raw_client(gateway.port)
    # Never finishes: the blank line that ends the head is left out, and
    # the bytes come slower than the bound allows for the whole head.
    sending = defer.ensureDeferred(trickle(client, request_bytes[:-2], SHORT / 10))
    await assert_bystander_served(gateway)
    assert_timed_out(await within(client.closed))
    await within(sending)
    await assert_bystander_served(gateway)
    assert not gateway.clients.protocols


@pytest_twisted.ensureDeferred
async def test_head_trickling_in_within_the_bound_is_served(gateway_factory, serve_model):
    gateway = await gateway_factory(head_timeout=10_000)
    client = await raw_client(gateway.port)
    pieces = [GET[i:i + 8] for i in range(0, len(GET), 8)]
    for piece in pieces:
        client.transport.write(piece)
        await sleep(0.01)
    await eventually(lambda: client.responses)
    assert client.responses[0].status == 200
    assert json.loads(client.responses[0].body) == MODEL
    assert client.is_open
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_websocket_upgrade_trickling_in_within_the_bound_upgrades(gateway_factory):
    """And the upgraded connection outlives the bound: the timer stops with the head."""
    gateway = await gateway_factory(head_timeout=1000)
    client = await raw_client(gateway.port)
    upgrade = upgrade_request()
    for i in range(0, len(upgrade), 16):
        client.transport.write(upgrade[i:i + 16])
        await sleep(0.01)
    await eventually(lambda: b"\r\n\r\n" in client.data)
    assert client.data.startswith(b"HTTP/1.1 101 ")
    await eventually(lambda: len(gateway.clients.protocols) == 1)
    await sleep(1.5)
    client.transport.write(text_frame('{"id":1,"method":"version"}'))
    await eventually(lambda: b'"protocol":"1.2.3"' in client.data)
    assert client.is_open
    client.transport.loseConnection()
    await eventually(lambda: not gateway.clients.protocols)


@pytest_twisted.ensureDeferred
async def test_idle_keep_alive_connection_is_not_bound_by_the_head_timeout(gateway_factory, serve_model):
    """Before the first request and between requests, a connection idles under other bounds (the defaults here)."""
    gateway = await gateway_factory(head_timeout=SHORT_MS)
    client = await raw_client(gateway.port)
    for n in range(1, 3):
        await sleep(SHORT * 3)
        assert client.is_open
        client.transport.write(GET)
        await eventually(lambda: len(client.responses) == n)
        assert client.responses[-1].status == 200
    assert client.is_open
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_each_head_has_its_own_bound(gateway_factory, serve_model):
    """A request served after the first one's bound has passed: the bound is per head, not per connection."""
    gateway = await gateway_factory(head_timeout=1500)
    client = await raw_client(gateway.port)
    for n in range(1, 4):
        client.transport.write(GET[:10])
        await sleep(0.6)
        client.transport.write(GET[10:])
        await eventually(lambda: len(client.responses) == n)
    assert [r.status for r in client.responses] == [200, 200, 200]
    assert client.is_open
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_pipelined_partial_head_is_cut_off(gateway_factory, serve_model):
    """A head begun behind a request being answered is bound from when its turn comes."""
    gateway = await gateway_factory(head_timeout=SHORT_MS)
    client = await raw_client(gateway.port)
    client.transport.write(GET + b"GET /api/test/mo")
    data = await within(client.closed)
    first, _, second = data.partition(b"\r\n\r\n" + json.dumps(MODEL, separators=(",", ":")).encode())
    assert parse_response(first + _).status == 200
    assert_timed_out(second)


@pytest_twisted.ensureDeferred
async def test_body_is_not_bound_by_the_head_timeout(gateway_factory, fake_service):
    """The head's bound ends with the head: a body may arrive later (it has its own bound, the default here)."""
    gateway = await gateway_factory(head_timeout=SHORT_MS)
    fake_service.on("access.test.model", lambda r: r.respond_result({"call": "*"}))
    fake_service.on("call.test.model.echo", lambda r: r.respond_result(r.payload["params"]))
    client = await raw_client(gateway.port)
    body = b'{"a":1}'
    client.transport.write(b"POST /api/test/model/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{"
                           % len(body))
    await sleep(SHORT * 3)
    client.transport.write(body[1:])
    await eventually(lambda: client.responses)
    assert (client.responses[0].status, json.loads(client.responses[0].body)) == (200, {"a": 1})
    client.transport.loseConnection()
