"""The rig itself: real nats-server, fake service and WebSocket client work as tests expect."""

import json
import socket

import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor

from resgate import errors
from tests.rig.aio import failure_of, within
from tests.rig.natsbus import connected_client
from tests.rig.service import FakeService
from tests.rig.ws import connect_ws


def test_nats_server_accepts_connections(nats_server):
    with socket.create_connection(("127.0.0.1", nats_server.port), timeout=5) as sock:
        assert sock.recv(4).startswith(b"INFO")


@pytest_twisted.ensureDeferred
async def test_fake_service_records_and_answers(nats_server):
    service = await FakeService(nats_server.url).start()
    client = await connected_client(nats_server.url)
    try:
        service.on("get.rig.scripted", lambda req: req.respond_result({"model": {"a": 1}}))
        reply = await within(client.request("get.rig.scripted", b"{}"))
        assert json.loads(reply) == {"result": {"model": {"a": 1}}}

        pending = client.request("access.rig.later", b'{"cid":"c1"}')
        request = await service.next_request()
        assert request.subject == "access.rig.later"
        assert request.payload == {"cid": "c1"}
        request.respond_error("system.accessDenied", "Access denied")
        assert json.loads(await within(pending)) == {
            "error": {"code": "system.accessDenied", "message": "Access denied"}
        }
        assert [r.subject for r in service.requests] == ["get.rig.scripted", "access.rig.later"]

        # Subjects a RES service does not answer are not taken: nobody responds.
        failure = await failure_of(client.request("event.rig.x.change", b"{}"))
        assert failure == errors.NOT_FOUND
    finally:
        await client.close()
        await service.stop()


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        message = json.loads(payload)
        self.sendMessage(json.dumps({"id": message["id"], "result": message.get("params")}).encode())
        self.sendMessage(json.dumps({"event": "x.y.change", "data": {}}).encode())


@pytest_twisted.ensureDeferred
async def test_ws_client_matches_responses_and_queues_events():
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        client = await connect_ws(f"ws://127.0.0.1:{port.getHost().port}")
        first = await client.request("call.x.y", {"n": 1})
        second = await client.request("call.x.y", {"n": 2})
        assert first == {"id": 1, "result": {"n": 1}}
        assert second == {"id": 2, "result": {"n": 2}}
        assert (await client.next_message())["event"] == "x.y.change"
        assert (await client.next_message())["event"] == "x.y.change"
        assert await client.close() == 1000
    finally:
        await port.stopListening()
