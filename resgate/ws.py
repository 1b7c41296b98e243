"""The WebSocket endpoint: Autobahn frames in and out of a Connection.

One ``ClientProtocol`` per socket. It checks the upgrade's Origin against
``--alloworigin``, records what auth requests send to services about the
upgrade (header, host, remoteAddr, uri), and passes every text message to
the RES-client JSON-RPC on the gateway's work queue.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from resgate import rpc
from resgate.conn import Connection, GatewayContext

log = Logger(namespace="resgate.ws")

#: The largest client message accepted; a larger one closes the connection
#: (1009, message too big). Resgate has no limit; unbounded input is not ours.
MAX_MESSAGE_SIZE = 1024 * 1024


def canonical_header_name(name: str) -> str:
    """``sec-websocket-key`` -> ``Sec-Websocket-Key``, as Go's net/http spells keys."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def origin_allowed(allowed: list[str], origin: str | None) -> bool:
    """Resgate's check: any origin with ``*``; no Origin or "null" always passes."""
    if allowed == ["*"] or origin is None or origin == "null":
        return True
    return origin.lower() in allowed


class ClientProtocol(WebSocketServerProtocol):
    """One client's WebSocket."""

    conn: Connection | None = None

    def onConnect(self, request) -> None:
        context: GatewayContext = self.factory.context
        if not origin_allowed(context.config.allowed_origins, request.headers.get("origin")):
            raise ConnectionDeny(403, "Forbidden origin")
        self._http_info = self._describe_upgrade(request)

    def _describe_upgrade(self, request) -> dict[str, Any]:
        header: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            # Go's net/http keeps Host apart from the headers; services see it as "host".
            if name != "host":
                header[canonical_header_name(name)] = [value]
        peer = self.transport.getPeer()
        host = getattr(peer, "host", "")
        remote = f"[{host}]:{peer.port}" if ":" in host else f"{host}:{getattr(peer, 'port', '')}"
        return {"header": header, "host": request.headers.get("host", ""), "remoteAddr": remote,
                "uri": self.http_request_uri}

    def onOpen(self) -> None:
        self.factory.protocols.add(self)
        self.conn = Connection(self.factory.context, self._send, self._http_info)
        if self.factory.context.debug:
            log.debug("[{cid}] Connected: {peer}", cid=self.conn.cid, peer=self.peer)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        conn = self.conn
        if conn is None:
            return
        context = self.factory.context
        if context.trace:
            log.debug("[{cid}] --> {payload}", cid=conn.cid, payload=payload.decode("utf-8", "replace"),
                      resgate_trace=True)
        context.work.enqueue(lambda: rpc.handle_request(conn, payload, self._send))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.protocols.discard(self)
        conn, self.conn = self.conn, None
        if conn is not None:
            self.factory.context.work.enqueue(conn.dispose)
            if self.factory.context.debug:
                log.debug("[{cid}] Disconnected ({code})", cid=conn.cid, code=code)

    def _send(self, data: bytes) -> None:
        # A closing socket takes no more messages; the connection is disposed on close.
        if self.conn is None or self.state != self.STATE_OPEN:
            return
        if self.factory.context.trace:
            log.debug("[{cid}] <-- {payload}", cid=self.conn.cid, payload=data.decode("utf-8", "replace"),
                      resgate_trace=True)
        self.sendMessage(data)


class ClientFactory(WebSocketServerFactory):
    """Makes a ClientProtocol per client; holds what they share."""

    protocol = ClientProtocol

    def __init__(self, context: GatewayContext, *, compression: bool = False) -> None:
        super().__init__()
        self.context = context
        self.protocols: set[ClientProtocol] = set()
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_MESSAGE_SIZE,
            maxFramePayloadSize=MAX_MESSAGE_SIZE,
            # A handshake has its own limit in Autobahn (64 KiB of headers).
        )
        if compression:
            from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

            def accept(offers):
                for offer in offers:
                    if isinstance(offer, PerMessageDeflateOffer):
                        return PerMessageDeflateOfferAccept(offer)
                return None

            self.setProtocolOptions(perMessageCompressionAccept=accept)

    def close_all(self) -> None:
        """Close every client connection: the gateway is going away (1001)."""
        for protocol in list(self.protocols):
            # sendClose refuses 1001 (an endpoint's code, not an application's);
            # the frame-level call sends it as RFC 6455 intends for a server going away.
            protocol.sendCloseFrame(code=1001, reasonUtf8=b"Server is shutting down")
