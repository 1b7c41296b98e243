"""A client that stops reading is cut off (docs/design.md, invariant 5); the others carry on.

The flood test runs the gateway as its own process with ``--wsmaxunread``:
a stalled client among 100 readers of 10,000 events is cut off past the
bound, every reader gets every event in order, and the gateway's memory
does not grow with what the stalled client leaves unread.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from resgate.config import DEFAULT_WS_MAX_UNREAD as MAX_UNREAD_BYTES
from tests.rig.aio import eventually, within
from tests.rig.process import GatewayProcess, free_port, proc_status_bytes
from tests.rig.ws import WsClient, connect_ws

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
    """Upgrades, subscribes to ``rid``, and then never reads another byte."""

    def __init__(self, rid: str = "test.big") -> None:
        self.rid = rid
        self.lost: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        # The upgrade's answer (101); a frame sent before it would reach the HTTP channel.
        self.transport.write(masked_text_frame(json.dumps({"id": 1, "method": "subscribe." + self.rid}).encode()))
        self.transport.pauseProducing()

    def connectionLost(self, reason) -> None:
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_client_that_does_not_read_is_cut_off(gateway, fake_service):
    fake_service.on("access.test.big", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.big", lambda r: r.respond_result({"model": {"n": 0, "blob": ""}}))
    reader = await connect_ws(gateway.ws_url)
    await reader.request("subscribe.test.big")
    stalled = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port), StalledClient())
    await eventually(lambda: len(gateway.clients.protocols) == 2)
    await eventually(lambda: len(gateway.cache.names["test.big"].base.subs) == 2)

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


READERS = 100
FLOOD_EVENTS = 10_000
#: Events published before the readers must have taken them all in: a reader
#: never has more than a batch outstanding, far below the bound.
FLOOD_BATCH = 10
FLOOD_EVENT_SIZE = 2048
#: --wsmaxunread for the flood: the stalled client is cut off early in it.
FLOOD_BOUND = 256 * 1024
#: What the gateway's peak RSS may grow by during the flood (measured: well
#: under 1 MB). Kept for the stalled client, the flood would take 20 MB, less
#: the 4 MB or so the kernel's socket buffers hold before the gateway sees
#: the client stall.
RSS_GROWTH_LIMIT = 8 * 1024 * 1024


FLOOD_EVENT_START = b'{"event":"test.flood.change","data":{"values":{'
FLOOD_SEQUENCE = re.compile(rb'"n":([0-9]+)')


class EventCounter(WsClient):
    """Counts the flood's events and checks their sequence numbers; keeps none of them."""

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.last = 0
        self.out_of_order = 0
        self._until: tuple[int, defer.Deferred] | None = None

    def onOpen(self) -> None:
        # 20 MB of events each, text the test wrote itself: validating it is time lost.
        self.utf8validateIncoming = False
        super().onOpen()

    def reached(self, n: int) -> defer.Deferred:
        """Fires once the event numbered ``n`` (or a later one) has arrived."""
        if self.last >= n:
            return defer.succeed(None)
        self._until = (n, defer.Deferred())
        return self._until[1]

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # A million events: the sequence number is read without parsing the whole of each.
        if not payload.startswith(FLOOD_EVENT_START):
            super().onMessage(payload, isBinary)
            return
        n = int(FLOOD_SEQUENCE.search(payload, len(FLOOD_EVENT_START))[1])
        self.received += 1
        if n != self.last + 1:
            self.out_of_order += 1
        self.last = n
        if self._until is not None and n >= self._until[0]:
            d, self._until = self._until[1], None
            d.callback(None)


@pytest.mark.timeout(300)  # 30 seconds on an idle machine, far longer on a busy one
@pytest_twisted.ensureDeferred
async def test_a_stalled_client_is_cut_off_while_100_readers_get_10000_events(nats_server, fake_service):
    fake_service.on("access.test.flood", lambda r: r.respond_result({"get": True}))
    fake_service.on("get.test.flood", lambda r: r.respond_result({"model": {"n": 0, "blob": ""}}))
    # Its own process: its memory is the gateway's alone, and the flag is the operator's.
    port = free_port()
    gateway = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(port),
                             "--wsmaxunread", str(FLOOD_BOUND))
    try:
        gateway.wait_listening()
        url = f"ws://127.0.0.1:{port}/"
        readers = [await connect_ws(url, protocol=EventCounter) for _ in range(READERS)]
        for reader in readers:
            await reader.request("subscribe.test.flood")
        stalled = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), StalledClient("test.flood"))
        # The resource is cached: the stalled client's subscribe asks for access only.
        await eventually(lambda: sum(r.subject == "access.test.flood" for r in fake_service.requests) == READERS + 1)

        rss_before = proc_status_bytes(gateway.process.pid, "VmRSS")
        blob = "x" * FLOOD_EVENT_SIZE
        cut_off_after = None
        n = 0
        while n < FLOOD_EVENTS:
            for n in range(n + 1, n + FLOOD_BATCH + 1):
                # Every value changes: the gateway drops values equal to the cached ones.
                fake_service.event("test.flood", "change", {"values": {"n": n, "blob": blob[: FLOOD_EVENT_SIZE - n % 2]}})
            try:
                await within(defer.gatherResults([reader.reached(n) for reader in readers], consumeErrors=True), 30)
            except defer.TimeoutError:
                behind = [(i, r.last, r.close_code) for i, r in enumerate(readers) if r.last < n]
                raise AssertionError(f"readers (index, last event, close code) without event {n}: {behind}")
            if cut_off_after is None and "Client does not read" in gateway.output():
                cut_off_after = n
        rss_after = proc_status_bytes(gateway.process.pid, "VmRSS")
        rss_peak = proc_status_bytes(gateway.process.pid, "VmHWM")

        assert [(r.received, r.last, r.out_of_order) for r in readers] == [(FLOOD_EVENTS, FLOOD_EVENTS, 0)] * READERS
        assert cut_off_after is not None, "the stalled client was never cut off"
        assert f"Client does not read: over {FLOOD_BOUND} bytes unread; disconnecting" in gateway.output()
        # Reading again, the stalled client finds its connection gone.
        stalled.transport.resumeProducing()
        await within(stalled.lost, 10)
        print(f"\n{READERS} readers and 1 stalled client, {FLOOD_EVENTS} events of {FLOOD_EVENT_SIZE} bytes"
              f" ({FLOOD_EVENTS * FLOOD_EVENT_SIZE} bytes to each client), --wsmaxunread {FLOOD_BOUND}:"
              f" stalled client cut off by event {cut_off_after} ({cut_off_after * FLOOD_EVENT_SIZE} bytes sent);"
              f" gateway RSS before {rss_before}, after {rss_after}, peak {rss_peak}"
              f" (peak growth {rss_peak - rss_before} bytes)")
        assert rss_peak - rss_before < RSS_GROWTH_LIMIT
        for reader in readers:
            await within(reader.close())
    except BaseException:
        print(f"gateway output:\n{gateway.output()[-10_000:]}")
        raise
    finally:
        gateway.stop()
        gateway.cleanup()
