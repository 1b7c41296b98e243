"""Corked client connections (resgate.transport) over real loopback sockets.

Writes wait for the end of the loop turn and go out together; what the kernel
does not take is left to Twisted's own buffering, producers and closing.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import socket
import struct
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, error, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString

from resgate import transport
from resgate.transport import CorkedServer, PortReactor
from tests.rig.aio import eventually, sleep, within


class Collector(protocol.Protocol):
    """A client that keeps every byte and fires ``closed`` with them."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.closed.callback(bytes(self.received))


class Server(protocol.Protocol):
    """Runs ``script(transport)`` on connection; keeps what the client sends."""

    def __init__(self, script) -> None:
        self.script = script
        self.received = bytearray()

    def connectionMade(self) -> None:
        self.script(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


async def serve(script, **port_options):
    """A ClientPort on loopback whose connections run ``script``; (port, servers)."""
    servers: list[Server] = []

    def build(_addr):
        servers.append(Server(script))
        return servers[-1]

    factory = protocol.Factory.forProtocol(Server)
    factory.buildProtocol = build
    endpoint = serverFromString(PortReactor(reactor, **port_options), "tcp:0:interface=127.0.0.1")
    port = await endpoint.listen(factory)
    return port, servers


async def connect(port) -> Collector:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Collector())


@contextlib.asynccontextmanager
async def connected_pair():
    """A loopback client and the server's transport of its connection (the server writes nothing itself)."""
    port, servers = await serve(lambda transport: None)
    try:
        client = await connect(port)
        await eventually(lambda: servers)
        yield client, servers[0].transport
        client.transport.loseConnection()
    finally:
        await port.stopListening()


def chunks(count: int, size: int) -> list[bytes]:
    """Distinct chunks, so that a reordering or a loss changes the digest."""
    return [hashlib.sha256(str(i).encode()).digest() * (size // 32) for i in range(count)]


@pytest_twisted.ensureDeferred
async def test_connections_are_corked():
    async with connected_pair() as (client, transport):
        assert isinstance(transport, CorkedServer)
        transport.write(b"one ")
        transport.writeSequence([b"two ", b"three"])
        # Nothing was sent yet, and the reactor was not asked to watch the socket.
        assert transport._tempDataBuffer
        assert transport not in reactor.getWriters()
        await eventually(lambda: bytes(client.received) == b"one two three")
        assert transport not in reactor.getWriters()


@pytest_twisted.ensureDeferred
async def test_more_than_the_kernel_takes_arrives_whole_and_in_order_before_the_close():
    parts = chunks(2000, 8192)  # 16 MiB in one loop turn, far past the socket buffers

    def script(transport):
        for part in parts:
            transport.write(part)
        transport.loseConnection()

    port, _servers = await serve(script)
    try:
        client = await connect(port)
        received = await within(client.closed, 30)
        assert len(received) == sum(map(len, parts))
        assert hashlib.sha256(received).digest() == hashlib.sha256(b"".join(parts)).digest()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_writes_over_several_turns_to_a_slow_reader_keep_their_order():
    parts = chunks(400, 16384)
    async with connected_pair() as (client, transport):
        client.transport.pauseProducing()  # the client does not read for a while
        for i, part in enumerate(parts):
            transport.write(part)
            if i % 20 == 19:
                await sleep(0)
        await sleep(0.2)
        assert transport in reactor.getWriters()  # the kernel is full: the reactor watches
        client.transport.resumeProducing()
        await eventually(lambda: len(client.received) == sum(map(len, parts)), 30)
        assert hashlib.sha256(client.received).digest() == hashlib.sha256(b"".join(parts)).digest()
        await eventually(lambda: transport not in reactor.getWriters())
        # Drained: writes are corked again.
        transport.write(b"end")
        assert transport not in reactor.getWriters()
        await eventually(lambda: client.received.endswith(b"end"))


class Producer:
    """A streaming producer that records what its consumer asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


@pytest_twisted.ensureDeferred
async def test_a_streaming_producer_is_paused_and_resumed_as_by_twisted():
    async with connected_pair() as (client, transport):
        producer = Producer()
        transport.registerProducer(producer, True)
        transport.write(b"x" * (transport.bufferSize + 1))
        assert producer.calls == ["pause"]
        await eventually(lambda: producer.calls == ["pause", "resume"])
        assert len(client.received) == transport.bufferSize + 1
        transport.unregisterProducer()


@pytest_twisted.ensureDeferred
async def test_writes_are_refused_and_dropped_as_by_twisted():
    async with connected_pair() as (client, transport):
        with pytest.raises(TypeError):
            transport.write("text")  # type: ignore[arg-type]
        transport.write(b"")
        assert not transport._tempDataBuffer
        transport.write(b"sent")
        transport.loseConnection()
        # Twisted still takes writes while the connection closes, and drops them once it is lost.
        transport.write(b" while closing")
        assert await within(client.closed) == b"sent while closing"
        await eventually(lambda: not transport.connected)
        transport.write(b"lost")
        assert not transport._tempDataBuffer


@pytest_twisted.ensureDeferred
async def test_a_write_to_a_reset_connection_ends_it():
    lost = defer.Deferred()

    def script(transport):
        transport.stopReading()  # only a write can find out
        transport.protocol.connectionLost = lambda reason: lost.callback(reason.value)

    port, servers = await serve(script)
    try:
        client = await connect(port)
        await eventually(lambda: servers)
        # The client resets the connection (SO_LINGER 0), then the server writes.
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.transport.abortConnection()
        await sleep(0.1)
        transport = servers[0].transport
        for _ in range(3):
            transport.write(b"x" * 1024)
            await sleep(0.05)
        assert isinstance(await within(lost), error.ConnectionLost)
        assert not transport.connected
        assert transport not in reactor.getWriters()
    finally:
        await port.stopListening()


@pytest.mark.parametrize("close, received", [("loseConnection", b"last words"), ("abortConnection", b"")])
@pytest_twisted.ensureDeferred
async def test_a_close_right_after_a_write_sends_it_unless_aborted(close, received):
    def script(transport):
        transport.write(b"last words")
        getattr(transport, close)()

    port, _servers = await serve(script)
    try:
        client = await connect(port)
        assert await within(client.closed) == received
    finally:
        await port.stopListening()


@pytest.mark.parametrize("reuse_port", [False, True])
@pytest_twisted.ensureDeferred
async def test_reuse_port_is_set_only_when_asked(reuse_port):
    port, _servers = await serve(lambda transport: None, reuse_port=reuse_port)
    try:
        assert bool(port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)) is reuse_port
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_addresses_are_the_sockets():
    async with connected_pair() as (client, transport):
        for _ in range(2):  # the second time from the kept ones
            assert transport.getHost() == client.transport.getPeer()
            assert transport.getPeer() == client.transport.getHost()


@contextlib.asynccontextmanager
async def connected_many(count: int):
    """``count`` loopback clients and the server's transports of their connections, in connecting order."""
    port, servers = await serve(lambda transport: None)
    clients = []
    try:
        for _ in range(count):
            clients.append(await connect(port))
            await eventually(lambda: len(servers) == len(clients))
        yield clients, [server.transport for server in servers]
        for client in clients:
            client.transport.loseConnection()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_with_nothing_unread_a_fan_out_goes_out_before_the_turn_ends(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: False)
    async with connected_many(transport.EARLY_FLUSH + 1) as (clients, transports):
        for server_side in transports[:transport.EARLY_FLUSH - 1]:
            server_side.write(b"event")
        assert all(server_side._tempDataBuffer for server_side in transports[:transport.EARLY_FLUSH - 1])
        # The EARLY_FLUSH-th corked connection sends them all, in this turn.
        transports[transport.EARLY_FLUSH - 1].write(b"event")
        assert not any(server_side._tempDataBuffer for server_side in transports[:transport.EARLY_FLUSH])
        transports[-1].write(b"event")
        assert transports[-1]._tempDataBuffer  # a new batch, corked again
        await eventually(lambda: all(bytes(client.received) == b"event" for client in clients))


@pytest_twisted.ensureDeferred
async def test_send_corked_sends_a_few_connections_before_the_turn_ends(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: True)  # no early flush on its own
    async with connected_many(3) as (clients, transports):
        for server_side in transports:
            server_side.write(b"event")
        assert all(server_side._tempDataBuffer for server_side in transports)
        transport.send_corked()
        assert not any(server_side._tempDataBuffer for server_side in transports)
        assert not transport._corked
        transports[0].write(b" and the next")  # corked again, for the turn's end
        assert transports[0]._tempDataBuffer
        await eventually(lambda: [bytes(client.received) for client in clients]
                         == [b"event and the next", b"event", b"event"])


@pytest_twisted.ensureDeferred
async def test_while_more_is_unread_a_fan_out_waits_for_the_turn_to_end(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: True)
    async with connected_many(transport.EARLY_FLUSH + 1) as (clients, transports):
        for server_side in transports:
            server_side.write(b"event")
        assert all(server_side._tempDataBuffer for server_side in transports)
        for server_side in transports:
            server_side.write(b" and the next")
        await eventually(lambda: all(bytes(client.received) == b"event and the next" for client in clients))


# -- an early flush's sends, shared with the sender thread


@pytest_twisted.ensureDeferred
async def test_early_flushes_share_their_sends_and_every_connection_keeps_its_order(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: False)
    count = transport.EARLY_FLUSH * 3 + 5
    parts = chunks(count * 4, 256)
    async with connected_many(count) as (clients, transports):
        for round_ in range(4):  # each round's writes go out in early flushes of EARLY_FLUSH
            for i, server_side in enumerate(transports):
                server_side.write(parts[round_ * count + i])
            if round_ == 1:
                await sleep(0)
        assert any(thread.name == "resgate-sender" for thread in threading.enumerate())
        expected = [b"".join(parts[round_ * count + i] for round_ in range(4)) for i in range(count)]
        await eventually(lambda: [bytes(client.received) for client in clients] == expected, 10)
        assert not any(server_side in reactor.getWriters() for server_side in transports)


@pytest_twisted.ensureDeferred
async def test_what_a_shared_send_leaves_is_sent_by_the_reactor_in_order(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: False)
    big = chunks(1, 100_000)[0]  # below SEND_LIMIT, past the small buffers below
    async with connected_many(transport.EARLY_FLUSH) as (clients, transports):
        slow = transports[0]
        slow.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        clients[0].transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        clients[0].transport.pauseProducing()
        slow.write(big)
        for server_side in transports[1:]:
            server_side.write(b"event")
        assert not any(server_side._tempDataBuffer for server_side in transports)  # the early flush ran
        assert slow in reactor.getWriters()  # the kernel took part of it: the reactor has the rest
        slow.write(b" and after")
        await eventually(lambda: all(bytes(client.received) == b"event" for client in clients[1:]))
        clients[0].transport.resumeProducing()
        await eventually(lambda: bytes(clients[0].received) == big + b" and after", 10)
        await eventually(lambda: slow not in reactor.getWriters())


@pytest_twisted.ensureDeferred
async def test_a_reset_connection_in_a_shared_send_ends_only_it(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: False)
    async with connected_many(transport.EARLY_FLUSH) as (clients, transports):
        lost = defer.Deferred()
        reset = transports[5]
        reset.stopReading()  # only a write can find out
        reset.protocol.connectionLost = lambda reason: lost.callback(reason.value)
        clients[5].transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        clients[5].transport.abortConnection()
        await sleep(0.1)
        for _ in range(2):  # the first send may still be taken; the next one fails
            for server_side in transports:
                server_side.write(b"event")
            await sleep(0.05)
        assert isinstance(await within(lost), error.ConnectionLost)
        assert not reset.connected
        others = clients[:5] + clients[6:]
        await eventually(lambda: all(bytes(client.received) == b"eventevent" for client in others))


@pytest_twisted.ensureDeferred
async def test_a_shared_send_resumes_a_paused_producer_and_ends_a_closing_connection(monkeypatch):
    monkeypatch.setattr(transport, "_unread", lambda: False)
    async with connected_many(transport.EARLY_FLUSH) as (clients, transports):
        producer = Producer()
        transports[0].registerProducer(producer, True)
        transports[0].write(b"x" * (transports[0].bufferSize + 1))
        assert producer.calls == ["pause"]
        transports[1].write(b"last words")
        transports[1].loseConnection()
        for server_side in transports[2:]:
            server_side.write(b"event")
        await eventually(lambda: producer.calls == ["pause", "resume"])
        assert await within(clients[1].closed) == b"last words"
        await eventually(lambda: len(clients[0].received) == transports[0].bufferSize + 1)
        transports[0].unregisterProducer()


@pytest.mark.parametrize("unread", [False, True], ids=["early flush", "send_corked"])
@pytest_twisted.ensureDeferred
async def test_a_shared_flush_hands_its_sends_to_the_sender_thread(monkeypatch, unread):
    monkeypatch.setattr(transport, "_unread", lambda: unread)
    handed = queue.SimpleQueue()
    monkeypatch.setattr(transport, "_sender_jobs", handed)  # the sender thread does not take it
    async with connected_many(transport.EARLY_FLUSH) as (clients, transports):
        for server_side in transports:
            server_side.write(b"event")
        if unread:  # no early flush while more is unread: the bus sends them once it handled its read
            assert handed.empty()
            transport.send_corked()
        sends = handed.get_nowait()
        assert handed.empty() and not sends.queue  # offered, and all sent by the reactor thread alone
        assert sorted(map(id, (t for t, _sent in sends.results))) == sorted(map(id, transports))
        sends.help()  # a sender thread late for it finds nothing left
        assert len(sends.results) == len(transports)
        await eventually(lambda: all(bytes(client.received) == b"event" for client in clients))
