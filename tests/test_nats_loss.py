"""NATS lost under a running gateway (docs/design.md, invariant 7).

Clients are let go (their resources are stale), new ones are turned away
with a clear error while NATS is down, and the gateway reconnects on its own
when NATS is back, after which clients subscribe as before.
"""

from __future__ import annotations

import pytest_twisted

from tests.rig.aio import eventually, within
from tests.rig.http import http_request
from tests.rig.nats import NatsServer
from tests.rig.service import FakeService
from tests.rig.ws import connect_ws

MODEL = {"greeting": "hello"}


def serve_model(service: FakeService) -> None:
    service.on("access.test.model", lambda r: r.respond_result({"get": True}))
    service.on("get.test.model", lambda r: r.respond_result({"model": MODEL}))


@pytest_twisted.async_yield_fixture
async def restartable_nats():
    server = NatsServer().start()
    yield server
    server.cleanup()


@pytest_twisted.ensureDeferred
async def test_clients_are_let_go_and_served_again_when_nats_is_back(restartable_nats, gateway_factory):
    gateway = await gateway_factory(nats_url=restartable_nats.url)
    service = await FakeService(restartable_nats.url).start()
    serve_model(service)
    client = await connect_ws(gateway.ws_url)
    assert (await client.request("subscribe.test.model"))["result"] == {"models": {"test.model": MODEL}}

    restartable_nats.kill()
    assert await within(client.closed, 10) == 1001
    await eventually(lambda: not gateway.context.available)
    assert gateway.cache.resource_count == 0

    # Turned away while NATS is down: the upgrade and the HTTP API say 503.
    try:
        await connect_ws(gateway.ws_url)
    except ConnectionError as e:
        assert "[503]: Service Unavailable" in str(e)
    else:
        raise AssertionError("a WebSocket was accepted while NATS is down")
    response = await http_request("GET", gateway.api_url + "test/model")
    assert response.status == 503
    assert response.json()["code"] == "system.serviceUnavailable"

    restartable_nats.start()
    await eventually(lambda: gateway.context.available, 15)
    service = await FakeService(restartable_nats.url).start()
    serve_model(service)
    again = await connect_ws(gateway.ws_url)
    assert (await again.request("subscribe.test.model"))["result"] == {"models": {"test.model": MODEL}}
    service.event("test.model", "change", {"values": {"greeting": "welcome back"}})
    assert await again.next_message() == {
        "event": "test.model.change", "data": {"values": {"greeting": "welcome back"}}
    }
    await service.stop()
