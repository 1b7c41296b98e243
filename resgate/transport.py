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

The ports can also share their address with other processes (``SO_REUSEPORT``,
for ``--workers``) and count their connections against the connection caps
(``resgate.admission``); all of it is chosen by handing the endpoint a
PortReactor.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorSSL, IReactorTCP
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from resgate.admission import AdmissionFactory, ConnectionLimits, RefusalFactory
from resgate.internals import has_unsent_data, mark_tls

log = Logger()

#: Connections with corked writes, in the order they first wrote this turn.
_corked: list[CorkedServer] = []


def _flush() -> None:
    """Send what every corked connection has written during this loop turn."""
    global _corked
    batch, _corked = _corked, []
    for transport in batch:
        transport.flush()


class CorkedServer(tcp.Server):
    """An accepted connection whose writes go out at the end of the loop turn."""

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
        limits = server.limits
        if limits is not None:
            self._client_host: str = client[0]
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

    def stopWriting(self) -> None:
        if self._is_watched:
            self._is_watched = False
            super().stopWriting()

    def _watch(self) -> None:
        self._is_watched = True
        super().startWriting()

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


@implementer(IReactorTCP, IReactorSSL)
class PortReactor:
    """The reactor, except that the TCP and TLS ports it opens are ClientPorts.

    Handed to ``serverFromString`` for the client listener, whose endpoint
    string (``tcp:`` or ``ssl:``) still decides the address, the certificate
    and the rest; other endpoint kinds (``unix:``, ``systemd:``) are unchanged.
    With ``tls``, its TCP ports serve TLS with those options (the listener of
    ``--tls``, whose certificate is not given in the endpoint string). With
    ``limits``, its ports refuse connections past those caps.
    """

    def __init__(self, reactor, *, reuse_port: bool = False, tls: CertificateOptions | None = None,
                 limits: ConnectionLimits | None = None) -> None:
        self._reactor = reactor
        self.reuse_port = reuse_port
        self.tls = tls
        self.limits = limits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory, backlog: int = 50, interface: str = "") -> ClientPort:
        if self.tls is not None:
            return self.listenSSL(port, factory, self.tls, backlog, interface)
        return self._listen(port, factory, backlog, interface)

    def _listen(self, port: int, factory, backlog: int, interface: str, refused=None) -> ClientPort:
        limits = self.limits
        if limits is not None:
            if refused is None:
                refused = RefusalFactory(limits, self._reactor, half_close=True)
            factory = AdmissionFactory(limits, factory, refused)
        listening = ClientPort(port, factory, backlog, interface, self._reactor, reuse_port=self.reuse_port,
                               limits=limits)
        listening.startListening()
        return listening

    def listenSSL(self, port: int, factory, contextFactory, backlog: int = 50,
                  interface: str = "") -> ClientPort:
        # As the reactor's own listenSSL does: TLS in memory over a TCP port;
        # refusals too are answered inside TLS.
        refused = None
        if self.limits is not None:
            refused = TLSMemoryBIOFactory(contextFactory, False,
                                          RefusalFactory(self.limits, self._reactor, half_close=False))
        listening = self._listen(port, TLSMemoryBIOFactory(contextFactory, False, factory),
                                 backlog, interface, refused)
        mark_tls(listening)
        return listening
