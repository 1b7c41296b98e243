"""A client that stops reading is cut off (DESIGN.md invariant 5); the others carry on."""

from __future__ import annotations

import base64
import json
import os
import struct

import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from resgate.config import DEFAULT_WS_MAX_UNREAD as MAX_UNREAD_BYTES
from tests.rig.aio import eventually, within
from tests.rig.ws import connect_ws

EVENT_SIZE = 64 * 1024
BATCH = 8
#: Far more than the bound plus what the kernel's socket buffers on both ends hold.
MAX_EVENTS = (MAX_UNREAD_BYTES + 64 * 1024 * 1024) // EVENT_SIZE


def masked_text_frame(payload: bytes) -> bytes:
    """One client-to-server text frame (clients must mask), payload under 64 KiB."""
    mask = os.urandom(4)
    header = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126
                               else bytes([0x80 | 126]) + struct.pack("!H", len(payload)))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class StalledClient(protocol.Protocol):
    """Upgrades, subscribes, and then never reads another byte."""

    def connectionMade(self) -> None:
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        # The upgrade's answer (101); a frame sent before it would reach the HTTP channel.
        self.transport.write(masked_text_frame(json.dumps({"id": 1, "method": "subscribe.test.big"}).encode()))
        self.transport.pauseProducing()


@pytest_twisted.ensureDeferred
async def test_client_that_does_not_read_is_cut_off(gateway, fake_service):
    fake_service.on("access.test.big", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.big", lambda r: r.respond_result({"model": {"n": 0, "blob": ""}}))
    reader = await connect_ws(gateway.ws_url)
    await reader.request("subscribe.test.big")
    stalled = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port), StalledClient())
    await eventually(lambda: len(gateway.clients.protocols) == 2)
    await eventually(lambda: len(gateway.cache.event_subs["test.big"].base.subs) == 2)

    # Events come in batches the reader takes in before the next: it keeps up,
    # the stalled client falls further behind with every batch until cut off.
    blob = "x" * EVENT_SIZE
    n = 0
    while len(gateway.clients.protocols) == 2:
        assert n < MAX_EVENTS, "the stalled client was never cut off"
        batch = range(n + 1, n + BATCH + 1)
        for n in batch:
            fake_service.event("test.big", "change", {"values": {"n": n, "blob": blob[: EVENT_SIZE - n % 2]}})
        for expected in batch:
            message = await reader.next_message(timeout=10)
            assert message["data"]["values"]["n"] == expected
    # Not before it had more than the bound unread.
    assert n * EVENT_SIZE > MAX_UNREAD_BYTES
    # The reader is the one left, and is still served.
    fake_service.event("test.big", "change", {"values": {"n": -1}})
    assert (await reader.next_message(timeout=10))["data"]["values"]["n"] == -1
    stalled.transport.abortConnection()
    await within(reader.close())
