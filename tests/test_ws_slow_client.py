"""A client that stops reading is cut off (docs/design.md, invariant 5); the others carry on.

The flood test runs the gateway as its own process with ``--wsmaxunread``:
a stalled client among 100 readers of 10,000 events is cut off past the
bound, every reader gets every event in order, and the gateway's memory
does not grow with what the stalled client leaves unread.

A client that reads a little now and then stays under the byte bound; it
is cut off when its backlog has not drained in ``wsDrainTimeout``, while
one that reads slowly but takes each backlog in within the bound keeps its
connection. Those tests step the gateway's clock (``ClockedReactor``), so
"within the bound" is exact however busy the machine; the one through a
gateway process waits the real seconds.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import struct

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from resgate.config import DEFAULT_WS_MAX_UNREAD as MAX_UNREAD_BYTES
from tests.rig.aio import eventually, sleep, within
from tests.rig.clock import ClockedReactor
from tests.rig.process import GatewayProcess, free_port, proc_status_bytes
from tests.rig.ws import WsClient, connect_ws
from tests.rig.wsframes import OP_TEXT, RawWsClient, close_frame, connect_raw_ws

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


def serve_model(fake_service, rid: str) -> None:
    """The service grants access to ``rid`` and serves it as a model whose values the events change."""
    fake_service.on("access." + rid, lambda r: r.respond_result({"get": True}))
    fake_service.on("get." + rid, lambda r: r.respond_result({"model": {"n": 0, "blob": ""}}))


@contextlib.contextmanager
def gateway_process(nats_server, port: int, *flags: str):
    """A gateway process listening on ``port``; its output printed if the test fails."""
    gateway = GatewayProcess("-n", nats_server.url, "-i", "127.0.0.1", "-p", str(port), *flags)
    try:
        gateway.wait_listening()
        yield gateway
    except BaseException:
        print(f"gateway output:\n{gateway.output()[-10_000:]}")
        raise
    finally:
        gateway.stop()
        gateway.cleanup()


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
    serve_model(fake_service, "test.big")
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
    # Once, whatever was sent to it between the cut and the close (the status page's count).
    assert gateway.metrics.slow_clients_cut_off == 1
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
    serve_model(fake_service, "test.flood")
    # Its own process: its memory is the gateway's alone, and the flag is the operator's.
    port = free_port()
    with gateway_process(nats_server, port, "--wsmaxunread", str(FLOOD_BOUND)) as gateway:
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


# ---------------------------------------------------------------------------
# Slow but not stalled: the backlog must drain within wsDrainTimeout

DRAIN_TIMEOUT = 10
#: The byte bound for these tests: far above what they ever send a client.
DRAIN_TEST_MAX_UNREAD = 256 * 1024 * 1024
#: Sent after the gateway's buffer filled, so that a few little reads cannot drain it.
BACKLOG_EVENTS = 64
#: What a little read takes in.
READ_SIZE = 16 * 1024
#: Events (of EVENT_SIZE) that fill the kernel's buffers on both ends and the gateway's, at most.
FILL_EVENTS = 400


class SlowReader(RawWsClient):
    """A raw WebSocket client that reads only when the test says so.

    Once it has stopped reading, the reactor no longer reads for it: each
    read is the test's own ``recv`` on the socket, of at most READ_SIZE bytes.
    """

    _seen = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.event_numbers: list[int] = []
        #: The gateway closed the connection (or reset it).
        self.reset = False

    def stop_reading(self) -> None:
        self.transport.pauseProducing()

    def read_once(self) -> bool:
        """One read of at most READ_SIZE bytes of what has come; False if nothing had."""
        try:
            data = self.transport.getHandle().recv(READ_SIZE)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.reset = True
            return False
        self.dataReceived(data)
        return True

    async def read_a_little(self) -> None:
        """Take in at most READ_SIZE bytes, waiting (bounded) until some have come."""
        for _ in range(1000):
            if self.read_once():
                return
            assert not self.reset, "the gateway closed the connection"
            await sleep(0.01)
        raise AssertionError("nothing came to read")

    async def read_until(self, condition, seconds: float = 30) -> None:
        """Read all that comes until ``condition()`` holds (or the connection ends), bounded."""
        deadline = reactor.seconds() + seconds
        while not condition() and not self.reset:
            assert reactor.seconds() < deadline, "condition not met in time"
            while self.read_once():
                pass
            await sleep(0.01)

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        # The events' numbers, in the order they came; their frames are let go.
        for received in self.frames[self._seen:]:
            if received.opcode == OP_TEXT and received.payload.startswith(b'{"event":'):
                self.event_numbers.append(json.loads(received.payload)["data"]["values"]["n"])
                received.payload = b""
        self._seen = len(self.frames)


async def slow_reader_on_clocked_gateway(gateway_factory, fake_service):
    """A gateway on a stepped clock (``DRAIN_TIMEOUT``), a SlowReader subscribed to test.big
    that has stopped reading, and its protocol in the gateway."""
    clock = ClockedReactor()
    gateway = await gateway_factory(reactor=clock, ws_max_unread=DRAIN_TEST_MAX_UNREAD,
                                    ws_drain_timeout=DRAIN_TIMEOUT)
    serve_model(fake_service, "test.big")
    reader = await connect_raw_ws(gateway.port, client_class=SlowReader)
    reader.request(1, "subscribe.test.big")
    await reader.response(1)
    reader.stop_reading()
    (protocol,) = gateway.clients.protocols
    return clock, gateway, reader, protocol


async def fall_behind(gateway, fake_service, protocol, first: int) -> int:
    """Send events numbered from ``first`` until the gateway's buffer for the client is full
    and then some; the last number sent."""
    blob = "x" * EVENT_SIZE
    n = first - 1
    while not protocol.backlogged:
        assert n - first < FILL_EVENTS, "the gateway's buffer never filled"
        n += 1
        fake_service.event("test.big", "change", {"values": {"n": n, "blob": blob[: EVENT_SIZE - n % 2]}})
        if n % BATCH == 0:
            await sleep(0.05)  # the gateway takes them in and writes
    for n in range(n + 1, n + BACKLOG_EVENTS + 1):
        fake_service.event("test.big", "change", {"values": {"n": n, "blob": blob[: EVENT_SIZE - n % 2]}})
    # The gateway sends an event to its subscribers as it applies it to the cached model.
    await eventually(lambda: gateway.cache.names["test.big"].base.model.values["n"].raw == n, 30)
    return n


@pytest_twisted.ensureDeferred
async def test_a_client_that_reads_a_little_now_and_then_is_cut_off_when_its_backlog_does_not_drain(
        gateway_factory, fake_service, gateway_lines):
    clock, gateway, reader, protocol = await slow_reader_on_clocked_gateway(gateway_factory, fake_service)
    cid = protocol.conn.cid
    sent = await fall_behind(gateway, fake_service, protocol, 1)

    # Reading a little every tenth of the bound: never drained, never over the byte bound.
    for _ in range(9):
        clock.advance(DRAIN_TIMEOUT / 10)
        await reader.read_a_little()
        assert protocol.backlogged and not reader.reset
    assert sent * EVENT_SIZE < DRAIN_TEST_MAX_UNREAD
    clock.advance(DRAIN_TIMEOUT / 10)
    await eventually(lambda: not gateway.clients.protocols)
    # Reading again, the client finds its connection gone.
    await reader.read_until(lambda: False)
    assert reader.reset
    assert gateway_lines.containing("Client does not read") == [
        f"[{cid}] Client does not read: backlog not drained in {DRAIN_TIMEOUT} s; disconnecting"]
    assert gateway.metrics.slow_clients_cut_off == 1


@pytest_twisted.ensureDeferred
async def test_a_client_that_reads_slowly_but_drains_within_the_bound_keeps_its_connection(
        gateway_factory, fake_service, gateway_lines):
    clock, gateway, reader, protocol = await slow_reader_on_clocked_gateway(gateway_factory, fake_service)
    sent = 0
    # Each round the client falls behind and takes the backlog in only just before the bound:
    # five rounds are four bounds and more in all.
    for _ in range(5):
        sent = await fall_behind(gateway, fake_service, protocol, sent + 1)
        clock.advance(DRAIN_TIMEOUT * 0.9)
        await reader.read_a_little()
        assert protocol.backlogged
        await reader.read_until(lambda: not protocol.backlogged and reader.event_numbers[-1:] == [sent])
    assert not reader.reset
    assert reader.event_numbers == list(range(1, sent + 1))
    assert gateway_lines.containing("Client does not read") == []
    reader.send(close_frame(1000))
    await reader.read_until(lambda: False)


#: Events for the gateway process: far more than the kernel's buffers on both ends hold.
PROCESS_EVENTS = 200


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_the_gateway_process_cuts_off_a_client_that_reads_a_little_now_and_then(nats_server, fake_service):
    serve_model(fake_service, "test.big")
    port = free_port()
    flags = ("--wsdraintimeout", "1", "--wsmaxunread", str(DRAIN_TEST_MAX_UNREAD))
    with gateway_process(nats_server, port, *flags) as gateway:
        reader = await connect_raw_ws(port, client_class=SlowReader)
        reader.request(1, "subscribe.test.big")
        await reader.response(1)
        reader.stop_reading()
        blob = "x" * EVENT_SIZE
        for n in range(1, PROCESS_EVENTS + 1):
            fake_service.event("test.big", "change", {"values": {"n": n, "blob": blob[: EVENT_SIZE - n % 2]}})
        # A little every tenth of a second, real time: the backlog never drains.
        for _ in range(600):
            reader.read_once()
            if reader.reset:
                break
            await sleep(0.1)
        assert reader.reset
        await eventually(lambda: "Client does not read" in gateway.output())
        assert re.search(r"\[\w+\] Client does not read: backlog not drained in 1 s; disconnecting", gateway.output())
        assert "bytes unread" not in gateway.output()
        assert len(reader.event_numbers) < PROCESS_EVENTS
