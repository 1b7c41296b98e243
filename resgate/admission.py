"""Which client connections the gateway takes: the connection caps.

Every connection accepted on the client port counts, from accept to close,
whatever it turns out to be (HTTP, a WebSocket upgrade, or nothing at all
yet): the transport (``transport.CorkedServer``) reports both ends to the
port's ``ConnectionLimits``. A connection accepted past a cap is refused at
once, before a byte of it is read: the gateway writes a fixed 503 response
with a RES error body, which an HTTP client reads as the answer to its
request and a WebSocket client as the answer to its upgrade, and closes.

A refusal is cheap and bounded: nothing of the request is parsed. What the
client sends is read only to be dropped, so that closing does not reset the
connection before the client has read the 503 (a socket closed with unread
data sends RST), and only until the client closes or ``REFUSAL_LINGER``
passes. At most ``MAX_REFUSING`` refusals linger at once; past that a
connection is closed unanswered, so a flood of them costs no more than that.

The caps hold per gateway process: with ``--workers`` each process has its
own open-file limit and counts its own connections.
"""

from __future__ import annotations

import resource
from typing import Callable

from twisted.internet import interfaces, protocol
from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from resgate import errors
from resgate.apiencoding import CONTENT_TYPE, encode_error

#: Files the process keeps for itself when the connection cap derives from
#: its open-file limit: NATS, the listening sockets, the event loop, logs,
#: metrics scrapes, worker pipes, and the refusals lingering past the cap.
FILE_RESERVE = 512
#: The cap when the open-file limit is unlimited.
UNLIMITED_FILES_CAP = 1_000_000
#: How long a refused connection waits for the client to close after its 503.
REFUSAL_LINGER = 1.0
#: The most refused connections lingering at once.
MAX_REFUSING = 256

TOO_MANY_CONNECTIONS = errors.ResError(errors.CODE_SERVICE_UNAVAILABLE, "Too many connections")

_REFUSAL_BODY = encode_error(TOO_MANY_CONNECTIONS)
#: The whole answer to a connection past a cap, HTTP/1.1 as any client reads it.
REFUSAL = b"".join((
    b"HTTP/1.1 503 Service Unavailable\r\n",
    b"Content-Type: " + CONTENT_TYPE + b"\r\n",
    b"Content-Length: %d\r\n" % len(_REFUSAL_BODY),
    b"Connection: close\r\n\r\n",
    _REFUSAL_BODY,
))


def default_max_connections() -> int:
    """The connection cap of ``maxConns`` 0: the open-file limit less ``FILE_RESERVE``.

    At least half the limit, for processes run with a small one.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNLIMITED_FILES_CAP
    return max(soft // 2, soft - FILE_RESERVE)


class ConnectionLimits:
    """The live connections of one client port, in all and by client address.

    ``max_per_address`` 0 counts no addresses. Refused connections count
    against their address (they hold its files while they linger), not
    against the total, which ``MAX_REFUSING`` bounds on its own.
    """

    def __init__(self, max_total: int, max_per_address: int = 0) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.open = 0
        self.refusing = 0
        self.by_address: dict[str, int] = {}
        #: Connections refused past a cap since start, answered or not.
        self.refused_total = 0
        #: Told of each refusal: the client's host, and whether its address's cap refused it.
        self.on_refused: Callable[[str, bool], None] | None = None

    def opened(self, host: str) -> None:
        self.open += 1
        if self.max_per_address:
            self.by_address[host] = self.by_address.get(host, 0) + 1

    def closed(self, host: str) -> None:
        self.open -= 1
        if self.max_per_address:
            left = self.by_address[host] - 1
            if left:
                self.by_address[host] = left
            else:
                del self.by_address[host]

    def admits(self, host: str) -> bool:
        """Whether one more connection from ``host`` fits under the caps."""
        if self.open - self.refusing >= self.max_total:
            return False
        return not self.max_per_address or self.by_address.get(host, 0) < self.max_per_address

    def refused(self, host: str) -> None:
        """Count a connection from ``host`` refused past a cap, and tell ``on_refused``."""
        self.refused_total += 1
        if self.on_refused is not None:
            self.on_refused(host, self.open - self.refusing < self.max_total)


@implementer(interfaces.IProtocolFactory, interfaces.ILoggingContext)
class AdmissionFactory:
    """The client port's factory: ``admitted``'s protocol within the caps, a refusal past them.

    Only ``buildProtocol`` comes through here, once per accept; the
    connection's protocol is ``admitted``'s own, unwrapped.
    """

    def __init__(self, limits: ConnectionLimits, admitted: protocol.Factory, refused: protocol.Factory) -> None:
        self.limits = limits
        self.admitted = admitted
        self.refused = refused

    def doStart(self) -> None:
        self.admitted.doStart()
        self.refused.doStart()

    def doStop(self) -> None:
        self.admitted.doStop()
        self.refused.doStop()

    def logPrefix(self) -> str:
        return self.admitted.logPrefix()

    def buildProtocol(self, addr: IAddress | None) -> interfaces.IProtocol | None:
        limits = self.limits
        # A Unix socket's peers have no host: they count as one, "unix" (resgate.transport).
        host = getattr(addr, "host", "unix")
        if limits.admits(host):
            return self.admitted.buildProtocol(addr)
        limits.refused(host)
        if limits.refusing >= MAX_REFUSING:
            return None  # the port closes the socket at once
        return self.refused.buildProtocol(addr)


class RefusedConnection(protocol.Protocol):
    """Answers ``REFUSAL`` at once, drops what the client sends, closes (see the module)."""

    def __init__(self, limits: ConnectionLimits, clock: interfaces.IReactorTime, half_close: bool) -> None:
        self.limits = limits
        self.clock = clock
        self.half_close = half_close
        self._linger: interfaces.IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.limits.refusing += 1
        transport = self.transport
        assert transport is not None  # makeConnection set it
        transport.write(REFUSAL)
        # Half-closing sends the 503 and a FIN; the client closes in turn.
        # TLS has no half-close: its close_notify follows the 503 all the same.
        if self.half_close:
            transport.loseWriteConnection()  # type: ignore[attr-defined]
        else:
            transport.loseConnection()
        self._linger = self.clock.callLater(REFUSAL_LINGER, transport.abortConnection)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: object = None) -> None:
        self.limits.refusing -= 1
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None


class RefusalFactory(protocol.Factory):
    """Builds the refusals of connections past the caps of ``limits``.

    ``half_close``: the connection is plain TCP, whose write side closes alone.
    """

    noisy = False

    def __init__(self, limits: ConnectionLimits, clock: interfaces.IReactorTime, *, half_close: bool) -> None:
        self.limits = limits
        self.clock = clock
        self.half_close = half_close

    def buildProtocol(self, addr: IAddress | None) -> RefusedConnection:
        return RefusedConnection(self.limits, self.clock, self.half_close)
