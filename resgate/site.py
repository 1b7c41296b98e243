"""The gateway's HTTP site: one port for WebSocket upgrades and the HTTP API.

twisted.web's Site and Request, trimmed for the gateway's hot path (a
cached GET): routing by the whole path, a Date header formatted once a
second, no access log. What a request asks of the API is ``resgate.web``'s.
"""

from __future__ import annotations

import time
from typing import cast

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from resgate.web import BoundedBodyRequest, BoundedLineChannel, HttpBounds, write_not_found


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
                 reactor: IReactorTime | None = None) -> None:
        super().__init__(resource, timeout=None, reactor=reactor)
        #: Read by each BoundedLineChannel of the site.
        self.bounds = bounds
        #: Open HTTP connections (kept alive or answering); counted by BoundedLineChannel.
        self.http_connections = 0

    def log(self, request: http.Request) -> None:
        pass
