"""Client TCP ports whose connections write once per loop turn (corked writes).

Twisted hands every ``transport.write`` to the reactor: the socket is
registered for writability (an ``epoll_ctl``), written on the next turn and
unregistered again (another one). When the gateway sends one event to
thousands of clients, or answers thousands of requests a second, those two
system calls and their callbacks per message cost more than the send itself
(bench/README.md has the profiles). Here a connection that has something to
write joins a list that is flushed once, at the end of the current loop turn:
everything written to it meanwhile goes out in one ``send``, and the reactor
is asked to watch the socket only when the kernel does not take it all.

Ordering, buffering, producers and closing stay Twisted's own: the data sits
in the transport's usual buffers and is sent by its own ``doWrite``.

The end of the turn is worth waiting for only when more is coming in it: a
burst of events read from NATS at once, each to the same clients, goes out
in one ``send`` per client. When the bus has nothing more read
(``Bus.has_unread``), the connections an event is written to go out
``EARLY_FLUSH`` at a time while the rest are still being written, so the
first clients do not wait for the last ones' turn. The sends of such an
early flush are shared with the sender thread: both take the next plain
send from one queue, each ``send`` releases the GIL, and the reactor thread
waits for the sender's last one before it goes on, so that thread touches
only the sockets it was handed and only while the flush lasts. On loopback
most of a delivery's cost is the ``send`` (the receiver's side of TCP runs
in the sender's system call); sharing them lets one event's fan-out use both
cores. A send that fails, takes only part, or leaves a producer or a close
waiting is finished by Twisted's own ``doWrite``. Once the bus has handled
the last whole message it read, what the messages wrote goes out at once
(``send_corked``): under uvloop the turn ends only after every other socket
ready in the same poll was handled.

The ports can also share their address with other processes (``SO_REUSEPORT``,
for ``--workers``) and count their connections against the connection caps
(``resgate.admission``); all of it is chosen by handing the endpoint a
PortReactor.
Every kind of endpoint the gateway listens on reaches the reactor through one
of its methods (``tcp:`` listenTCP, ``ssl:`` listenSSL, ``unix:`` listenUNIX,
``systemd:`` adoptStreamPort), so every client connection is corked.

A ``haproxy:`` endpoint wraps another one and hands it Twisted's PROXY
protocol factory: each connection must start with a PROXY header (v1 or v2),
``getPeer`` then answers the client's address the header names, and one
without a valid header is closed. PortReactor swaps that factory for
ProxiedFactory, which logs the refusal, and reads the header before TLS
starts (as proxies send it), where Twisted's ``haproxy:ssl:`` would expect it
inside the TLS stream. It also waits for a header that arrives in pieces:
Twisted's parser refuses one whose first read is too short to tell v1 from v2.

A PortReactor with ``tls_minimum`` (``minTLS=`` of an ``ssl:`` description,
resgate.endpoints) refuses clients below that TLS version.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import queue
import socket
import struct
import threading
from typing import Any, Callable

from typing import TYPE_CHECKING

from twisted.internet import tcp, unix
from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IReactorSocket, IReactorSSL, IReactorTCP, IReactorUNIX
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from resgate.admission import AdmissionFactory, ConnectionLimits, RefusalFactory
from resgate.internals import (
    HAProxyProtocolWrapper,
    HAProxyWrappingFactory,
    buffer_write,
    has_unsent_data,
    mark_tls,
    proxy_header_read,
    record_sent,
    take_unsent,
)

log = Logger()

#: How a PROXY header begins: v1 in text, v2 with a binary signature (then version and command).
PROXY_V1_SIGNATURE = b"PROXY"
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Bytes Twisted's parser needs in its first read to take a header: v2 has its
#: length in bytes 15 and 16; v1 begins "PROXY TCP4 " or shorter.
PROXY_V2_FIXED_PART = 16
PROXY_V1_FIRST_READ = 8
#: The longest block after a v2 header's fixed part: addresses (at most 216
#: bytes, two Unix socket paths) and TLVs (TLS details, a cloud's endpoint id,
#: a request id), generous for every proxy we know. The format allows 65535,
#: which each connection could make the gateway hold before it is refused.
#: (A v1 header is at most 107 bytes; Twisted's parser holds no more.)
MAX_PROXY_V2_BLOCK = 2048

#: Connections with corked writes, in the order they first wrote this turn.
_corked: list[_CorkedWrites] = []
#: How many corked connections are sent at once, before the turn ends, when
#: nothing more is read (see the module's docstring).
EARLY_FLUSH = 32


def _nothing_unread() -> bool:
    return False


#: Whether messages already received wait to be handled (``set_unread_check``).
_unread: Callable[[], bool] = _nothing_unread


def set_unread_check(check: Callable[[], bool]) -> None:
    """Have corked writes ask ``check`` (the gateway's ``Bus.has_unread``) whether more is coming this turn."""
    global _unread
    _unread = check


def _flush() -> None:
    """Send what every corked connection has written during this loop turn."""
    global _corked
    batch, _corked = _corked, []
    for transport in batch:
        transport.flush()


def send_corked() -> None:
    """Send now what the corked connections wrote so far, not once the loop turn ends.

    The bus calls it when it has handled all it read: under uvloop the turn
    ends only after every other socket ready in the same poll (a thousand
    clients closing, say) was handled, and what is written waits for all of it.
    """
    global _corked
    if not _corked:  # a read whose messages wrote nothing
        return
    batch, _corked = _corked, []
    if len(batch) >= EARLY_FLUSH:
        _send_shared(batch)
    else:
        for transport in batch:
            transport.flush()


class _Sends:
    """One early flush's plain sends, taken from one queue by the reactor thread and the sender thread.

    ``results`` gets (transport, bytes sent), None for a send that failed;
    ``working`` is held while the sender thread works, so the reactor thread
    knows when the sender's last send is over.
    """

    __slots__ = ("queue", "results", "working")

    def __init__(self, items: list) -> None:
        self.queue = collections.deque(items)
        self.results: list = []
        self.working = threading.Lock()

    def work(self) -> None:
        """Send until the queue is empty."""
        pop = self.queue.popleft
        append = self.results.append
        while True:
            try:
                transport, sock, data = pop()
            except IndexError:
                return
            try:
                append((transport, sock.send(data)))
            except (BlockingIOError, InterruptedError):
                append((transport, 0))
            except OSError:
                append((transport, None))

    def help(self) -> None:
        """The sender thread's share of the work."""
        with self.working:
            self.work()


_sender_jobs: queue.SimpleQueue | None = None


def _sender(jobs: queue.SimpleQueue) -> None:
    """The sender thread: the batches the reactor thread offers on ``jobs``, as long as the process lives."""
    while True:
        jobs.get().help()


def _send_shared(batch: list[_CorkedWrites]) -> None:
    """Send the batch's plain writes with the sender thread's help; the rest Twisted's way."""
    global _sender_jobs
    items = []
    for transport in batch:
        data = transport.take_plain_send()
        if data is None:
            transport.flush()
        else:
            items.append((transport, transport.getHandle(), data))
    if not items:
        return
    sends = _Sends(items)
    if _sender_jobs is None:
        _sender_jobs = queue.SimpleQueue()
        threading.Thread(target=_sender, args=(_sender_jobs,), name="resgate-sender", daemon=True).start()
    _sender_jobs.put(sends)
    sends.work()
    with sends.working:  # the sender thread's last send, if it is in one
        pass
    for transport, sent in sends.results:
        transport.sent(sent)


# The mixin is always combined with a tcp.Server; mypy checks it as one.
if TYPE_CHECKING:
    _ServerBase = tcp.Server
else:
    _ServerBase = object


class _CorkedWrites(_ServerBase):
    """What makes an accepted connection's writes go out at the end of the loop turn."""

    #: In ``_corked``, waiting for the flush.
    _is_corked = False
    #: The reactor watches the socket for writability (the kernel was full).
    _is_watched = False
    _host = None
    _peer = None
    #: The port's caps, which count this connection while it is open.
    _limits: ConnectionLimits | None = None

    def __init__(self, sock, protocol, client, server, sessionno, reactor) -> None:
        super().__init__(sock, protocol, client, server, sessionno, reactor)
        limits = getattr(server, "limits", None)
        if limits is not None:
            # A Unix socket's peers have no address of their own: one count for all.
            self._client_host: str = client[0] if isinstance(client, tuple) else "unix"
            limits.opened(self._client_host)
            self._limits = limits

    def connectionLost(self, reason) -> None:
        limits, self._limits = self._limits, None
        if limits is not None:
            limits.closed(self._client_host)
        super().connectionLost(reason)

    # Both addresses are fixed for the connection's life; twisted.web asks
    # for them on every request, and getHost costs a system call.
    def getHost(self):
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def getPeer(self):
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def write(self, data: bytes) -> None:
        # Twisted's write, minus its calls per write on the fan-out's hot path;
        # anything but bytes, and a connection that started TLS, take Twisted's way.
        if self.TLS or type(data) is not bytes:
            super().write(data)
        else:
            buffer_write(self, data)

    def writeSequence(self, iovec) -> None:
        # twisted.web writes each response's head as a list of a dozen pieces:
        # joined, it takes write()'s way, without Twisted's checks and calls per piece.
        if self.TLS or any(type(piece) is not bytes for piece in iovec):
            super().writeSequence(iovec)
        else:
            buffer_write(self, b"".join(iovec))

    def startWriting(self) -> None:
        # Called by write(), writeSequence() and loseConnection().
        if self._is_corked or self._is_watched:
            return
        if not _corked:  # the first this turn schedules the flush
            try:
                asyncio.get_running_loop().call_soon(_flush)
            except RuntimeError:  # not on a running asyncio loop: Twisted's way
                self._watch()
                return
        _corked.append(self)
        self._is_corked = True
        if len(_corked) >= EARLY_FLUSH and not _unread():
            send_corked()  # shared with the sender thread

    def stopWriting(self) -> None:
        if self._is_watched:
            self._is_watched = False
            super().stopWriting()

    def _watch(self) -> None:
        self._is_watched = True
        super().startWriting()

    def take_plain_send(self) -> bytes | None:
        """What one plain ``send`` should write now (``internals.take_unsent``); None if not plain."""
        self._is_corked = False
        if self._is_watched or not self.connected or self.TLS:
            return None
        return take_unsent(self)

    def sent(self, count: int | None) -> None:
        """The rest of a write after ``take_plain_send``'s bytes were sent: ``count`` of them, None if it failed."""
        if count is not None and not record_sent(self, count):
            return
        # A failure, a partial send, data written meanwhile, or a producer or
        # close waiting for the empty buffer: Twisted's own doWrite from here
        # (a failed send fails again there and ends the connection its way).
        self.flush()

    def flush(self) -> None:
        """Write now what the kernel takes; leave the rest to the reactor."""
        self._is_corked = False
        if self._is_watched or not self.connected:
            return
        try:
            why = self.doWrite()
        except Exception:
            log.failure("Writing to a client connection")
            why = True
        # A write error, a finished loseConnection() or a full kernel buffer:
        # the reactor's writability loop takes over and ends it as usual.
        if why is not None or has_unsent_data(self):
            self._watch()


class CorkedServer(_CorkedWrites, tcp.Server):
    """An accepted TCP connection whose writes go out at the end of the loop turn."""


class CorkedUNIXServer(_CorkedWrites, unix.Server):
    """An accepted Unix socket connection whose writes go out at the end of the loop turn."""


def describe_address(address: Any) -> str:
    """An address for log lines: ``host:port`` (``[host]:port`` for IPv6), or a socket's path."""
    host = getattr(address, "host", None)
    if host is None:
        name = getattr(address, "name", None)
        return f"unix:{name.decode(errors='replace') if isinstance(name, bytes) else name}"
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


class ProxiedConnection(HAProxyProtocolWrapper):
    """A connection of a ``haproxy:`` endpoint; one without a valid PROXY header is closed and logged.

    A header may arrive in pieces: its first bytes are held until they say
    which version it is (and a v2 header's length, at most MAX_PROXY_V2_BLOCK);
    Twisted's parser then gathers the rest. The HTTP channel's first-byte
    bound runs meanwhile: it hears nothing until the header is complete.
    """

    _refused = False
    #: What has arrived of the header's start, until Twisted's parser can take it; None after.
    _opening: bytes | None = b""
    #: The client's address from the header, IPv6 in canonical form (Twisted's v2 parser
    #: spells out every group: 2001:db8:0:0:0:0:0:7).
    _client = None

    def getPeer(self):
        if self._client is not None:
            return self._client
        peer = super().getPeer()
        if not proxy_header_read(self):
            return peer  # the proxy's own address, until the header names the client's
        if isinstance(peer, IPv6Address):
            ip = ipaddress.IPv6Address(peer.host)
            peer = IPv6Address(peer.type, str(ip.ipv4_mapped or ip), peer.port)
        self._client = peer
        return peer

    def dataReceived(self, data: bytes) -> None:
        if self._opening is not None:
            data = self._opening + data
            if _proxy_header_undecided(data):
                self._opening = data
                return
            self._opening = None
            if _proxy_v2_block_length(data) > MAX_PROXY_V2_BLOCK:
                self.loseConnection()
                self._log_refusal("its PROXY v2 header is longer than the gateway takes")
                return
        super().dataReceived(data)
        if self.disconnecting and not self._refused and not proxy_header_read(self):
            self._log_refusal("it did not start with a valid PROXY header")

    def _log_refusal(self, why: str) -> None:
        # Debug only: anyone who reaches the port can cause it.
        self._refused = True
        assert self.transport is not None  # data comes only over a connection
        log.debug("Closed a connection from {peer}: {why}", peer=describe_address(self.transport.getPeer()),
                  why=why)


def _proxy_header_undecided(start: bytes) -> bool:
    """Whether ``start`` begins a PROXY header but is too short for Twisted's parser to take it."""
    if PROXY_V2_SIGNATURE.startswith(start[:len(PROXY_V2_SIGNATURE)]):
        return len(start) < PROXY_V2_FIXED_PART
    return PROXY_V1_SIGNATURE.startswith(start[:len(PROXY_V1_SIGNATURE)]) and len(start) < PROXY_V1_FIRST_READ


def _proxy_v2_block_length(start: bytes) -> int:
    """The length a v2 header's fixed part gives the rest of it; 0 when ``start`` is no v2 header."""
    if not start.startswith(PROXY_V2_SIGNATURE):
        return 0
    (length,) = struct.unpack_from("!H", start, len(PROXY_V2_SIGNATURE) + 2)
    return length


def with_tls_minimum(options: CertificateOptions, minimum: TLSVersion) -> CertificateOptions:
    """The TLS settings of an ``ssl:`` description, accepting no version below ``minimum``.

    Twisted fixes the versions when it builds the settings, so they are built
    again from what its ``ssl:`` parser sets: key, certificate, chain and DH
    parameters (``sslmethod=``, which would pin a version, is refused with
    ``minTLS=``; tests/test_listen.py checks that nothing else differs).
    """
    return CertificateOptions(privateKey=options.privateKey, certificate=options.certificate,
                              extraCertChain=options.extraCertChain, dhParameters=options.dhParameters,
                              raiseMinimumTo=minimum)


class ProxiedFactory(HAProxyWrappingFactory):
    protocol = ProxiedConnection  # type: ignore[assignment]  # a subclass: Twisted's stub is too narrow


def _proxied(factory):
    """The factory a ``haproxy:`` endpoint wraps, or None when ``factory`` is no such wrapper."""
    return factory.wrappedFactory if isinstance(factory, HAProxyWrappingFactory) else None


def _logging_refusals(factory):
    inner = _proxied(factory)
    return factory if inner is None else ProxiedFactory(inner)


class ClientPort(tcp.Port):
    """A TCP port for clients: corked connections, optionally SO_REUSEPORT and counted."""

    transport = CorkedServer

    def __init__(self, *args: Any, reuse_port: bool = False, limits: ConnectionLimits | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reuse_port = reuse_port
        self.limits = limits

    def createInternetSocket(self) -> socket.socket:
        sock = super().createInternetSocket()
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock


class ClientUNIXPort(unix.Port):
    """A Unix socket port for clients (a reverse proxy on the same host): corked, counted connections."""

    transport = CorkedUNIXServer
    limits: ConnectionLimits | None = None


@implementer(IReactorTCP, IReactorSSL, IReactorUNIX, IReactorSocket)
class PortReactor:
    """The reactor, except that the ports it opens for clients have corked connections.

    Handed to ``serverFromString`` for a client listener, whose endpoint
    string still decides the address, the certificate and the rest. With
    ``tls``, its TCP ports serve TLS with those options (the listener of
    ``--tls``, whose certificate is not given in the endpoint string). With
    ``limits``, its ports count their connections and refuse those past the caps.
    With ``tls_minimum``, its TLS ports refuse clients below that version.
    """

    def __init__(self, reactor, *, reuse_port: bool = False, tls: CertificateOptions | None = None,
                 limits: ConnectionLimits | None = None, tls_minimum: TLSVersion | None = None) -> None:
        self._reactor = reactor
        self.reuse_port = reuse_port
        self.tls = tls
        self.limits = limits
        self.tls_minimum = tls_minimum

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory, backlog: int = 50, interface: str = "") -> ClientPort:
        if self.tls is not None:
            return self.listenSSL(port, factory, self.tls, backlog, interface)
        return self._listen(port, _logging_refusals(factory), backlog, interface)

    def _admitting(self, factory, refused=None):
        """``factory`` behind the caps, if any: past them a connection gets ``refused``'s 503."""
        if self.limits is None:
            return factory
        if refused is None:
            refused = RefusalFactory(self.limits, self._reactor, half_close=True)
        return AdmissionFactory(self.limits, factory, refused)

    def _listen(self, port: int, factory, backlog: int, interface: str, refused=None) -> ClientPort:
        listening = ClientPort(port, self._admitting(factory, refused), backlog, interface, self._reactor,
                               reuse_port=self.reuse_port, limits=self.limits)
        listening.startListening()
        return listening

    def listenSSL(self, port: int, factory, contextFactory, backlog: int = 50,
                  interface: str = "") -> ClientPort:
        # As the reactor's own listenSSL does: TLS in memory over a TCP port;
        # refusals too are answered inside TLS.
        if self.tls_minimum is not None:
            contextFactory = with_tls_minimum(contextFactory, self.tls_minimum)
        inner = _proxied(factory)
        if inner is None:
            factory = TLSMemoryBIOFactory(contextFactory, False, factory)
        else:  # the PROXY header comes first, in the clear
            factory = ProxiedFactory(TLSMemoryBIOFactory(contextFactory, False, inner))
        refused = None
        if self.limits is not None:
            refused = TLSMemoryBIOFactory(contextFactory, False,
                                          RefusalFactory(self.limits, self._reactor, half_close=False))
        listening = self._listen(port, factory, backlog, interface, refused)
        mark_tls(listening)
        return listening

    def listenUNIX(self, address, factory, backlog: int = 50, mode: int = 0o666,
                   wantPID: int = 0) -> ClientUNIXPort:
        listening = ClientUNIXPort(address, self._admitting(_logging_refusals(factory)), backlog, mode,
                                   self._reactor, wantPID)
        listening.limits = self.limits
        listening.startListening()
        return listening

    def adoptStreamPort(self, fileDescriptor: int, addressFamily: int, factory) -> tcp.Port:
        listening = self._reactor.adoptStreamPort(fileDescriptor, addressFamily,
                                                  self._admitting(_logging_refusals(factory)))
        # It accepts on a later loop turn: its first connection is corked and counted already.
        listening.transport = CorkedUNIXServer if addressFamily == socket.AF_UNIX else CorkedServer
        listening.limits = self.limits
        return listening
