"""The gateway's HTTP site: one port for WebSocket upgrades and the HTTP API.

twisted.web's Site and Request, trimmed for the gateway's hot path (a
cached GET): routing by the whole path, a Date header formatted once a
second, no access log. What a request asks of the API is ``resgate.web``'s.
"""

from __future__ import annotations

import re
import time
from typing import cast

from twisted.internet.interfaces import IReactorTime
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from resgate.web import BoundedBodyRequest, BoundedLineChannel, HttpBounds, write_not_found
from resgate.ws import ClientFactory


class GatewayRoot(resource.Resource):
    """Routes by the whole path, as Resgate does: the WebSocket path, then
    anything under the API path, else not found."""

    isLeaf = True

    def __init__(self, ws_path: str, websocket: resource.IResource,
                 api_path: str, api: resource.Resource) -> None:
        super().__init__()
        self.ws_path = ws_path.encode()
        self.websocket = websocket
        self.api_path = api_path.encode()
        self.api = api

    def render(self, request: server.Request) -> bytes | int:
        # A body, or server.NOT_DONE_YET (an int) when the answer comes later.
        response: bytes | int
        if request.path == self.ws_path:
            response = self.websocket.render(request)
            if request.channel.transport is None:
                cast(BoundedLineChannel, request.channel).handed_over()
        elif request.path.startswith(self.api_path):
            response = self.api.render(request)
        else:
            response = write_not_found(request)
        return response


class _HttpDate:
    """The Date header's value, formatted once a second rather than per response."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = http.datetimeToString(now)
        return self._value


http_date = _HttpDate()


class GatewayRequest(BoundedBodyRequest):
    """A request to the gateway; ``*`` as target is a bad request, as in Resgate.

    Rendered by the site's root resource, which routes by the whole path
    (GatewayRoot): twisted.web's resource-tree walk and its unescaping of
    every path segment are skipped, and, as Go's net/http in Resgate, the
    response has a Date header and no Server header.
    """

    def process(self) -> None:
        # Site.buildProtocol sets channel.site; Twisted's stubs leave it out.
        self.site = self.channel.site  # type: ignore[attr-defined]
        self.setHeader(b"date", http_date())
        if self.path == b"*":
            self.setResponseCode(400)
            self.setHeader(b"connection", b"close")
            self.finish()
            return
        try:
            self.render(self.site.resource)
        except BaseException:
            self.processingFailed(Failure())


#: A header name: an HTTP token (RFC 9110).
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers that announce a body, which twisted.web reads before the upgrade and Autobahn would not.
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


class DirectUpgrade:
    """Hands a plain WebSocket upgrade to Autobahn as it arrived, without twisted.web parsing it first.

    Through twisted.web an upgrade is parsed into a Request, rendered by
    Autobahn's WebSocketResource, written out again as bytes and parsed a
    second time by Autobahn: a tenth of connecting a client. Only a head
    whose second parse would see exactly what the first gave is taken: the
    whole head in the connection's first read and nothing after it, ``GET``
    of the WebSocket path in HTTP/1.1, CRLF line ends, every header a token
    name and a colon, each name once (WebSocketResource joins a repeated one
    into one line), no body announced, no line over twisted.web's limit.
    Anything else takes twisted.web's way, as before.
    """

    def __init__(self, ws_path: str, factory: ClientFactory) -> None:
        self._prefix = b"GET " + ws_path.encode()
        self._factory = factory

    def take(self, channel: BoundedLineChannel, data: bytes) -> bool:
        """Give the connection to a WebSocket protocol if ``data`` is such a head; whether it was."""
        if (not data.startswith(self._prefix) or len(data) > channel.MAX_LENGTH
                or data.find(b"\r\n\r\n") != len(data) - 4):
            return False
        line_ends = data.count(b"\r\n")
        if data.count(b"\n") != line_ends or data.count(b"\r") != line_ends:  # CRLF only: no bare CR or LF
            return False
        lines = data[:-4].split(b"\r\n")
        request_line = lines[0].split(b" ")
        if (len(request_line) != 3 or request_line[2] != b"HTTP/1.1"
                or request_line[1].partition(b"?")[0] != self._prefix[4:]):
            return False
        names = set()
        for line in lines[1:]:
            name, colon, _ = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                return False
            name = name.lower()
            if name in names or name in _BODY_HEADERS:
                return False
            names.add(name)
        transport = channel.transport
        assert transport is not None  # data comes only over a connection
        protocol = self._factory.buildProtocol(transport.getPeer())
        assert protocol is not None  # the client factory makes one for every address
        # As WebSocketResource takes the transport over from twisted.web.
        channel.transport = None
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        elif isinstance(transport.protocol, ProtocolWrapper):  # type: ignore[attr-defined]
            transport.protocol.wrappedProtocol = protocol  # type: ignore[attr-defined]
        else:
            transport.protocol = protocol  # type: ignore[attr-defined]  # a tcp.Server's protocol
        channel.handed_over()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return True


class GatewaySite(server.Site):
    """The HTTP site, quiet as Resgate is: no access log, no factory chatter.

    Its connections' time bounds are the channel's (``HttpBounds``), one
    timer per connection that a request on a keep-alive connection does not
    touch. Twisted's own 60-second idle timer is off: it was re-armed on
    every request and reset on every read, and without it the bench's
    cached GET answers 10-15% more requests a second.
    """

    noisy = False
    requestFactory = GatewayRequest
    # Twisted types this as its HTTP/2-negotiating wrapper; buildProtocol takes any channel class.
    protocol = BoundedLineChannel  # type: ignore[assignment]

    def __init__(self, resource: resource.Resource, bounds: HttpBounds,
                 reactor: IReactorTime | None = None, direct_upgrade: DirectUpgrade | None = None) -> None:
        super().__init__(resource, timeout=None, reactor=reactor)
        #: Read by each BoundedLineChannel of the site, on its first read.
        self.direct_upgrade = direct_upgrade
        #: Read by each BoundedLineChannel of the site.
        self.bounds = bounds
        #: Open HTTP connections (kept alive or answering); counted by BoundedLineChannel.
        self.http_connections = 0

    def log(self, request: http.Request) -> None:
        pass
