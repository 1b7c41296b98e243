"""The gateway's HTTP site: one port for WebSocket upgrades and the HTTP API.

twisted.web's Site and Request, trimmed: routing by the whole path, a Date
header formatted once a second, no access log. Two kinds of head skip
twisted.web's parse: a plain WebSocket upgrade goes to Autobahn as it came
(DirectUpgrade), and a plain GET of the API, the gateway's hot path, is
answered without a twisted.web Request (PlainGet). What a request asks of
the API is ``resgate.web``'s.
"""

from __future__ import annotations

import re
import time
from typing import cast

from twisted.internet.interfaces import IReactorTime
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.http_headers import Headers

from resgate.web import ApiResource, BoundedBodyRequest, BoundedLineChannel, HttpBounds, PlainRequest, write_not_found
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

    def render(self, request: BoundedBodyRequest) -> bytes | int:
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
    """A request to the gateway; ``*`` as target (but for OPTIONS), or a missing or repeated Host, is a bad request, as in Resgate.

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
            # As net/http: OPTIONS * asks what the server supports at all
            # (200, nothing); any other method cannot apply to it.
            if self.method == b"OPTIONS":
                self.setHeader(b"content-length", b"0")
                self.finish()
            else:
                self._refuse(b"Bad Request", b"", b"")
            return
        hosts = self.requestHeaders.getRawHeaders(b"host")
        if (hosts is None and self.clientproto == b"HTTP/1.1") or (hosts is not None and len(hosts) > 1):
            self._refuse_host(missing=hosts is None)
            return
        try:
            self.render(self.site.resource)
        except BaseException:
            self.processingFailed(Failure())

    def _refuse_host(self, missing: bool) -> None:
        """An HTTP/1.1 request without Host, or any with two: 400, as RFC 9112 asks and Go's net/http answers.

        Resgate never sees such a request: net/http answers it, on every
        path, the WebSocket path included, with this reason and text.
        """
        reason = b"Bad Request: missing required Host header" if missing else b"Bad Request"
        self._refuse(reason, b"text/plain; charset=utf-8", b"400 " + reason)

    def _refuse(self, reason: bytes, content_type: bytes, body: bytes) -> None:
        """A 400 before any resource is asked, and the connection closed after it, as net/http does."""
        self.setResponseCode(400, reason)
        if content_type:
            self.setHeader(b"content-type", content_type)
        self.setHeader(b"content-length", b"%d" % len(body))
        self.setHeader(b"connection", b"close")
        self.channel.persistent = False  # what is pipelined after it is dropped
        if body and self.method != b"HEAD":
            self.write(body)
        self.finish()


#: A header name: an HTTP token (RFC 9110).
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers that announce a body, which twisted.web reads before the upgrade and Autobahn would not.
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def _plain_head(channel: BoundedLineChannel, data: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]]] | None:
    """The request line's three parts and the (lower-case name, raw value) headers of a plain head; else None.

    Plain: a head twisted.web would read exactly as it stands, the whole of
    ``data``: one HTTP/1.1 request line, CRLF line ends only, every header
    a token name and a colon, no body announced, no line (so nothing) over
    twisted.web's limit.
    """
    if len(data) > channel.MAX_LENGTH or data.find(b"\r\n\r\n") != len(data) - 4:
        return None
    line_ends = data.count(b"\r\n")
    if data.count(b"\n") != line_ends or data.count(b"\r") != line_ends:  # CRLF only: no bare CR or LF
        return None
    lines = data[:-4].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[2] != b"HTTP/1.1":
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            return None
        name = name.lower()
        if name in _BODY_HEADERS:
            return None
        headers.append((name, value))
    return request_line, headers


class DirectUpgrade:
    """Hands a plain WebSocket upgrade to Autobahn as it arrived, without twisted.web parsing it first.

    Through twisted.web an upgrade is parsed into a Request, rendered by
    Autobahn's WebSocketResource, written out again as bytes and parsed a
    second time by Autobahn: a tenth of connecting a client. Only a head
    whose second parse would see exactly what the first gave is taken: the
    whole head in the connection's first read and nothing after it, a plain
    head (``_plain_head``) with ``GET`` of the WebSocket path, each header
    name once (WebSocketResource joins a repeated one into one line), Host
    among them (GatewayRequest refuses a head without).
    Anything else takes twisted.web's way, as before.
    """

    def __init__(self, ws_path: str, factory: ClientFactory) -> None:
        self._prefix = b"GET " + ws_path.encode()
        self._factory = factory

    def take(self, channel: BoundedLineChannel, data: bytes) -> bool:
        """Give the connection to a WebSocket protocol if ``data`` is such a head; whether it was."""
        if not data.startswith(self._prefix):
            return False
        head = _plain_head(channel, data)
        if head is None:
            return False
        request_line, headers = head
        if request_line[1].partition(b"?")[0] != self._prefix[4:]:
            return False
        names = {name for name, _ in headers}
        if len(names) != len(headers) or b"host" not in names:
            return False
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


#: What a request target may hold here: printable ASCII, no space (twisted.web admits more and refuses less).
_TARGET = re.compile(rb"[!-~]+")


class PlainGet:
    """Answers a plain GET or HEAD of the HTTP API without twisted.web's parse and Request.

    A cached GET spent a fifth of its time in twisted.web: the head read
    line by line, a Request with its content file, header sets and
    notifications, the response written in a dozen pieces. Taken here is a
    plain head (``_plain_head``) that is the whole of a read on an idle
    connection, ``GET`` or ``HEAD`` of a path under the API path (not the
    WebSocket path), with a printable target, at most
    ``HTTPChannel.maxHeaders`` headers, one Host, no NUL in a value and no ``Expect``;
    the API renders a ``web.PlainRequest`` for it. Anything else takes
    twisted.web's way, and what arrives while a request is answered is
    held, as twisted.web holds it, and read once it is. Both ways write the
    same bytes (tests/test_http_plain.py).
    """

    def __init__(self, ws_path: str, api_path: str, api: ApiResource) -> None:
        self._ws_path = ws_path.encode()
        self._api_path = api_path.encode()
        self._api = api

    def take(self, channel: BoundedLineChannel, data: bytes) -> bool:
        """Answer ``data`` if it is such a head; whether it was taken."""
        if not (data.startswith(b"GET /") or data.startswith(b"HEAD /")):
            return False
        head = _plain_head(channel, data)
        if head is None:
            return False
        (method, target, _), lines = head
        path = target.partition(b"?")[0]
        if (path == self._ws_path or not path.startswith(self._api_path)
                or _TARGET.fullmatch(target) is None or len(lines) > channel.maxHeaders):
            return False
        headers = Headers()
        hosts = 0
        for name, value in lines:
            value = value.strip(b" \t")
            if b"\x00" in value or name == b"expect":
                return False
            if name == b"host":
                hosts += 1
            headers.addRawHeader(name, value)
        if hosts != 1:  # refused by GatewayRequest
            return False
        # As HTTPChannel.checkPersistence reads an HTTP/1.1 request's Connection header.
        connection = headers.getRawHeaders(b"connection")
        persistent = connection is None or b"close" not in connection[0].lower().split(b" ")
        request = PlainRequest(channel, method, target, path, headers, http_date(), persistent)
        channel.answer_plain(request)
        try:
            # As twisted.web's Request.render writes a body the resource returns.
            body = self._api.render(request)
            if body is not server.NOT_DONE_YET:
                assert isinstance(body, bytes)  # a resource's render returns bytes or NOT_DONE_YET
                if method == b"GET":
                    request.setHeader(b"content-length", b"%d" % len(body))
                request.write(body)
                request.finish()
        except BaseException:  # as GatewayRequest.process catches around render
            request.processing_failed()
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
                 reactor: IReactorTime | None = None, direct_upgrade: DirectUpgrade | None = None,
                 plain_get: PlainGet | None = None) -> None:
        super().__init__(resource, timeout=None, reactor=reactor)
        #: Read by each BoundedLineChannel of the site, on its first read.
        self.direct_upgrade = direct_upgrade
        #: Read by each BoundedLineChannel of the site, on each read that may begin a request.
        self.plain_get = plain_get
        #: Read by each BoundedLineChannel of the site.
        self.bounds = bounds
        #: Open HTTP connections (kept alive or answering); counted by BoundedLineChannel.
        self.http_connections = 0

    def log(self, request: http.Request) -> None:
        pass
