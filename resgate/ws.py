"""The WebSocket endpoint: Autobahn frames in and out of a Connection.

One ``ClientProtocol`` per socket. It checks the upgrade's Origin against
``--alloworigin`` and ``--refusenullorigin``, records what auth requests
send to services about the upgrade (header, host, remoteAddr, uri), and
passes every text message to the RES-client JSON-RPC on the gateway's work
queue.

With ``--wsheadauth`` the upgrade waits for an auth request about it, made
on the connection's behalf (a token it sets holds for the whole connection).
Meta in the auth response shapes the upgrade's HTTP response: a 3XX, 4XX or
5XX status answers instead of upgrading, other headers are added to the
101 response (meta.py).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Callable, cast
from urllib import parse

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server

from resgate import errors, rpc
from resgate.apiencoding import CONTENT_TYPE, encode_error, rid_to_path
from resgate.auth import header_auth, remote_addr
from resgate.clientcodec import SharedMessage
from resgate.config import ResourceMethod
from resgate.connection import Connection
from resgate.context import GatewayContext
from resgate.internals import (
    between_messages,
    connect_plainly,
    end_message,
    format_debug_lines_lazily,
    frame_bytes,
    has_unread_after_head,
    open_upgraded,
    parse_extension_offers,
    parse_upgrade_head,
    unmask,
    unmask_small_frames_in_python,
)
from resgate.meta import DirectResponse, Meta, reason_phrase
from resgate.trace import one_line
from resgate.tracecontext import trace_headers
from resgate.tracing import client_trace
from resgate.windowedlog import WindowedLog

log = Logger(namespace="resgate.ws")

#: The largest client message accepted; a larger one closes the connection
#: (1009, message too big). Resgate has no limit; unbounded input is not ours.
MAX_MESSAGE_SIZE = 1024 * 1024


#: The first byte of a whole (FIN), unfragmented text or binary frame without RSV bits.
_WHOLE_TEXT = 0x81
_WHOLE_BINARY = 0x82
#: A masked frame's header: 2 bytes and the mask, 2 more for a 16-bit length.
_SHORT_HEAD = 6
_MEDIUM_HEAD = 8
#: A 7-bit length field of 126 announces a 16-bit length.
_MEDIUM_LENGTH = 126
#: The two-byte heads of the text frames the gateway sends with a 7-bit length.
_SHORT_TEXT_HEADS = [bytes((_WHOLE_TEXT, length)) for length in range(_MEDIUM_LENGTH)]


def text_frame(payload: bytes) -> bytes:
    """The whole, unmasked text frame of ``payload``, as a server sends it (RFC 6455, 5.2).

    Autobahn's PreparedMessage makes the same bytes with an object and a
    dozen calls, for every reply to every client (3% of the gateway's samples
    in the calls line).
    """
    length = len(payload)
    if length < _MEDIUM_LENGTH:
        return _SHORT_TEXT_HEADS[length] + payload
    if length <= 0xFFFF:
        return b"\x81\x7e" + length.to_bytes(2, "big") + payload
    return b"\x81\x7f" + length.to_bytes(8, "big") + payload


#: A field of an Autobahn log line, left out where the count line names its kind.
_LOG_FIELD = re.compile(r"\{[^{}]*\}")


#: RFC 6455's key suffix for Sec-WebSocket-Accept.
_ACCEPT_MAGIC = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: A Sec-WebSocket-Key Autobahn takes: 16 bytes in base64.
_WS_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")
#: An Origin whose form Autobahn's handshake accepts (no other is taken by the plain handshake).
_PLAIN_ORIGIN = re.compile(r"null|https?://[A-Za-z0-9.-]+(?::([0-9]{1,5}))?", re.IGNORECASE)
#: The extension offers browsers and common clients send, which Autobahn parses without complaint.
_PLAIN_OFFERS = frozenset({"permessage-deflate", "permessage-deflate; client_max_window_bits"})


class AutobahnLog:
    """Autobahn's logger for client connections, with its warnings and notices counted per window.

    Autobahn logs each connection that breaks RFC 6455 (invalid UTF-8,
    oversized or malformed frames) with one to three warnings, and each
    refused upgrade (a forbidden origin, no NATS, a status from
    ``--wsheadauth``) as a notice and a warning: a hostile client would
    write the log at its connection rate. Each line format is a kind of
    the gateway's client log (``GatewayContext.client_log``): logged whole
    the first time, then counted. Other levels go to Autobahn's logger as
    they are.
    """

    def __init__(self, autobahn_log: Any, lines: WindowedLog) -> None:
        self._autobahn_log = autobahn_log
        self._lines = lines

    def warn(self, format: str, **fields: Any) -> None:
        self._lines.log(self._autobahn_log.warn, ("warn", format), _LOG_FIELD.sub("...", format), format, **fields)

    def info(self, format: str, **fields: Any) -> None:
        self._lines.log(self._autobahn_log.info, ("info", format), _LOG_FIELD.sub("...", format), format, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._autobahn_log, name)


def has_token(value: str | None, token: str) -> bool:
    """Whether a comma-separated header value names ``token`` (case-insensitive)."""
    return value is not None and any(part.strip().lower() == token for part in value.split(","))


def refusal_status(code: int, request_line: str | None, headers: dict[str, str] | None) -> int:
    """The status Resgate refuses this upgrade with, given the one Autobahn's check chose.

    gorilla/websocket, in Resgate, checks the Connection and Upgrade tokens
    first (400), then the method (405); every other failure of the head is a
    400. Only the gateway's own refusals, a forbidden origin (403, as
    gorilla's) and no NATS (503, ours), keep their status.
    """
    if request_line is None or headers is None:
        return 400
    if not (has_token(headers.get("connection"), "upgrade") and has_token(headers.get("upgrade"), "websocket")):
        return 400
    if request_line.split(" ", 1)[0] != "GET":
        return 405
    return code if code in (403, 503) else 400


def refusal_response(status: int, head_only: bool) -> bytes:
    """An upgrade's refusal as Resgate writes it: the reason phrase as a plain-text body, the version it speaks."""
    reason = reason_phrase(status)
    body = reason.encode() + b"\n"
    head = (f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Sec-Websocket-Version: 13\r\n"
            "X-Content-Type-Options: nosniff\r\n"
            f"Date: {http.datetimeToString().decode()}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head if head_only else head + body


def canonical_header_name(name: str) -> str:
    """``sec-websocket-key`` -> ``Sec-Websocket-Key``, as Go's net/http spells keys."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def upgrade_trace_headers(headers: dict[str, str]) -> dict[str, str] | None:
    """The upgrade request's checked trace context, from Autobahn's headers.

    Autobahn joins a repeated header's values with commas: several
    ``traceparent`` lines make one invalid value, several ``tracestate``
    lines one list, as HTTP combines them.
    """
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return None
    tracestate = headers.get("tracestate")
    return trace_headers([traceparent], None if tracestate is None else [tracestate])


class ClientProtocol(WebSocketServerProtocol):
    """One client's WebSocket."""

    # What a connected client's socket offers (Twisted types it as an optional ITransport).
    transport: ITCPTransport
    # Autobahn copies each of its ~30 protocol options from the factory onto
    # every new connection and pretty-prints them all for a debug line,
    # logged or not: a quarter of connecting a client. Here none is copied:
    # each connection reads them from its class, which the factory makes.
    CONFIG_ATTRS: list[str] = []
    # Set on each protocol's class by the factory's setProtocolOptions.
    closeHandshakeTimeout: float
    conn: Connection | None = None
    #: Describes the upgrade for auth requests (set by onConnect).
    _http_info: Callable[[], dict[str, Any]] | None = None
    # The whole HTTP response that refuses the upgrade, when meta asked for one.
    _refusal: bytes | None = None
    _closed = False

    #: Whether the factory's options leave a plain upgrade the outcome of
    #: _open_plain_upgrade (ClientFactory.setProtocolOptions), and the 101's
    #: lines before Sec-WebSocket-Accept.
    plain_handshake = False
    _upgrade_response_head = b""

    def connectionMade(self) -> None:
        # Shadows Autobahn's class-wide logger with the gateway's rate-limited one.
        self.log = self.factory.autobahn_log
        # Autobahn's connectionMade formats three debug lines and an option
        # list it does not log: a tenth of connecting a client. Where the
        # factory's options allow the plain handshake, the same state is set
        # without them (tests/test_ws_handshake.py).
        if self.plain_handshake:
            connect_plainly(self)
        else:
            super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        # Autobahn fires is_closed with the protocol itself, and the upgrade's
        # description is a method of it: two cycles that would leave a closed
        # connection (protocol, transport, buffers) to the cyclic GC's oldest
        # generation. Nothing reads either once the connection is lost
        # (tests/test_reference_cycles.py).
        self.is_closed = None
        self._http_info = None

    def processHandshake(self) -> None:
        # Autobahn's handshake checks the head line by line, formats a dozen
        # debug lines it does not log, and accepts it through a Deferred: a
        # fifth of connecting a client. A plain upgrade, one that passes every
        # check, is opened here to the state Autobahn's leaves, with the same
        # 101. Anything else, including every refusal, header auth, a
        # subprotocol and compression, is Autobahn's (tests/test_ws_handshake.py).
        if not (self.plain_handshake and self._open_plain_upgrade()):
            super().processHandshake()

    def _open_plain_upgrade(self) -> bool:
        """Open the connection if its head is a plain upgrade Autobahn would accept; whether it was."""
        data = self.data
        end = data.find(b"\r\n\r\n")
        context: GatewayContext = self.factory.context
        if end < 0 or not context.available or context.config.ws_header_auth_method is not None:
            return False
        head = data[:end + 4]
        try:
            status_line, headers, counts = parse_upgrade_head(head)
        except ValueError:
            return False
        request_line = status_line.split()
        if (len(request_line) != 3 or request_line[0] != "GET" or request_line[2] != "HTTP/1.1"
                or len(counts) != sum(counts.values())):  # a repeated header
            return False
        uri = request_line[1]
        path, _, query = uri.partition("?")
        # The forms urllib's parse (Autobahn's) reads as this path and query.
        if not path.startswith("/") or path.startswith("//") or ";" in path or "#" in uri:
            return False
        host = headers.get("host")
        upgrade = headers.get("upgrade")
        connection = headers.get("connection")
        key = headers.get("sec-websocket-key")
        if (host is None or upgrade is None or connection is None or key is None
                or headers.get("sec-websocket-version") != "13" or "sec-websocket-protocol" in headers):
            return False
        host = host.strip()
        if ":" in host and not host.endswith("]"):
            host, _, port = host.rpartition(":")
            if not port.isdigit() or not port.isascii():
                return False
        key = key.strip()
        if (_WS_KEY.fullmatch(key) is None
                or not has_token(upgrade, "websocket") or not has_token(connection, "upgrade")):
            return False
        origin = headers.get("origin")
        if origin is not None:
            origin_form = _PLAIN_ORIGIN.fullmatch(origin.strip())
            if (origin_form is None or int(origin_form.group(1) or 0) > 65535
                    or not context.config.origin_allowed(origin)):
                return False
        offers = headers.get("sec-websocket-extensions")
        if offers is not None and (offers not in _PLAIN_OFFERS or self.factory.compression):
            return False
        accept = base64.b64encode(hashlib.sha1(key.encode() + _ACCEPT_MAGIC).digest())
        self._http_info = self._describe_upgrade  # as onConnect
        open_upgraded(self, head, status_line, headers, uri, path, parse.parse_qs(query), host,
                      "" if origin is None else origin.strip(),
                      [] if offers is None else parse_extension_offers(self, offers), key,
                      self._upgrade_response_head + b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        return True

    # Autobahn's stubs leave out the Deferred its onConnect may return.
    def onConnect(self, request) -> defer.Deferred | None:  # type: ignore[override]
        context: GatewayContext = self.factory.context
        if not context.available:
            raise ConnectionDeny(503, "Service unavailable: no connection to NATS")
        if not context.config.origin_allowed(request.headers.get("origin")):
            raise ConnectionDeny(403, "Forbidden origin")
        # Described when an auth request first needs it, not here: most
        # connections never send one, and the description is a dozen objects
        # more per connection for the garbage collector to walk.
        self._http_info = self._describe_upgrade
        method = context.config.ws_header_auth_method
        if method is None:
            return None
        return self._header_auth(method, upgrade_trace_headers(request.headers))

    def _header_auth(self, method: ResourceMethod, trace_headers: dict[str, str] | None) -> defer.Deferred:
        """Authenticate the upgrade (``--wsheadauth``) before accepting it.

        Fires with Autobahn's ``(protocol, headers)`` to upgrade with the
        meta headers, or fails with ConnectionDeny to answer with the
        response a direct meta status calls for. Auth errors do not refuse
        the upgrade, as in Resgate: the client connects without a token.
        The auth request carries the upgrade's trace context (``trace_headers``),
        the only one a WebSocket connection has.
        """
        context: GatewayContext = self.factory.context
        upgraded: defer.Deferred = defer.Deferred()
        trace = client_trace(context.tracing, trace_headers, "WebSocket upgrade",
                             {"url.path": self.http_request_path})

        def answered(rid: str | None, error: errors.ResError | None, meta: Meta | None) -> None:
            if trace is not None:
                trace.end(None if error is None else error.code)
            if self.conn is not None:
                self.conn.request_trace = None
            if self._closed:
                # The client left during the auth request; onClose disposed the connection.
                return
            if meta is None:
                upgraded.callback((None, {}))
                return
            meta = meta.without_invalid_status("WebSocket")
            if meta.is_direct_response:
                assert meta.status is not None  # a direct response has a status
                self._refuse(DirectResponse(meta, rid_to_path(rid or "", context.config.api_path), error))
                upgraded.errback(ConnectionDeny(meta.status, reason_phrase(meta.status)))
                return
            upgraded.callback((None, meta.header))

        def start() -> None:
            if self._closed:
                return
            self.conn = Connection(context, self._send, self._http_info)
            self.conn.request_trace = trace
            header_auth(self.conn, method, answered)

        context.work.enqueue(start)
        return upgraded

    def _refuse(self, response: DirectResponse) -> None:
        """Prepare the HTTP response Autobahn sends when it fails the handshake."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.dispose()
        lines = [f"HTTP/1.1 {response.status} {reason_phrase(response.status)}"]
        for key, values in response.header.items():
            lines.extend(f"{key}: {value}" for value in values)
        body = encode_error(response.error) if response.error is not None else b""
        if body:
            lines.append("Content-Type: " + CONTENT_TYPE.decode())
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        self._refusal = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body

    def sendHttpErrorResponse(self, code, reason, responseHeaders=None) -> None:
        # Autobahn's refusal is a status line with its check's reason and no
        # body; a client of Resgate gets gorilla's (refusal_response). The
        # reason is still in Autobahn's log line (failHandshake).
        if self._refusal is not None:
            self.sendData(self._refusal)
            return
        request_line = getattr(self, "http_status_line", None)
        status = refusal_status(code, request_line, getattr(self, "http_headers", None))
        self.sendData(refusal_response(status, head_only=request_line is not None and request_line.startswith("HEAD ")))

    def _describe_upgrade(self) -> dict[str, Any]:
        """What auth requests tell of the upgrade: its headers (Autobahn's, as ``onConnect`` got them), host, ..."""
        headers = self.http_headers
        header: dict[str, list[str]] = {}
        for name, value in headers.items():
            # Go's net/http keeps Host apart from the headers; services see it as "host".
            if name != "host":
                header[canonical_header_name(name)] = [value]
        return {"header": header, "host": headers.get("host", ""),
                "remoteAddr": remote_addr(self.transport.getPeer()),
                "uri": self.http_request_uri}

    #: Bytes written since the transport's buffer filled up (None: it has room).
    _unread: int | None = None
    #: Whether the client was cut off for not reading (counted and logged once).
    _cut_off = False
    #: Cuts the client off unless its backlog drains in time (armed while ``_unread`` counts).
    _drain_call: IDelayedCall | None = None

    def onOpen(self) -> None:
        # As a streaming producer, the protocol hears when the transport's
        # write buffer fills (pauseProducing) and drains (resumeProducing).
        # The HTTP channel that carried the upgrade is the producer until now.
        if getattr(self.transport, "producer", None) is not None:
            # A socket with a producer is a consumer (ITCPTransport leaves that out).
            cast(IConsumer, self.transport).unregisterProducer()
        self.registerProducer(self, True)
        self.factory.protocols.add(self)
        self.factory.context.metrics.ws_connections_total += 1
        if self.conn is None:
            self.conn = Connection(self.factory.context, self._send, self._http_info)
        self.conn.shared_sender = self._send_shared
        if self.factory.context.debug:
            log.debug("[{cid}] Connected: {peer}", cid=self.conn.cid, peer=self.peer)

    def dataReceived(self, data: bytes) -> None:
        # A client's request is one small frame, and Autobahn reads each one
        # in a dozen calls (frame begin, data, end, message begin, data, end,
        # a masker object, an incremental UTF-8 validator): a sixth of the
        # gateway's time in the calls line. While Autobahn holds no part of a
        # frame, whole messages are read here; from the first byte of
        # anything else, Autobahn reads on.
        if self.state == self.STATE_OPEN and not self.websocket_extensions_in_use and between_messages(self):
            data = self._read_whole_messages(data)
            if not data:
                return
        super().dataReceived(data)

    def _read_whole_messages(self, data: bytes) -> bytes:
        """Deliver the whole, masked, unfragmented data frames ``data`` begins with; return the rest.

        A frame is taken only when it is one Autobahn would deliver as it is:
        FIN set, no RSV bits, masked, a length in its shortest encoding up to
        65,535 bytes (below MAX_MESSAGE_SIZE), all of it in ``data``, and for
        text valid UTF-8 (Python's strict decoder refuses what RFC 3629 does).
        The first frame that is not stays in the rest for Autobahn, which
        answers it as before: a control frame, a fragment, a close for a
        protocol error or invalid UTF-8, or a wait for more bytes.
        """
        start = 0
        size = len(data)
        while size - start >= _SHORT_HEAD and self.state == self.STATE_OPEN:
            first = data[start]
            second = data[start + 1]
            if (first != _WHOLE_TEXT and first != _WHOLE_BINARY) or second < 0x80:
                break
            length = second & 0x7F
            if length < _MEDIUM_LENGTH:
                head = _SHORT_HEAD
            elif length == _MEDIUM_LENGTH and size - start >= _MEDIUM_HEAD:
                length = int.from_bytes(data[start + 2:start + 4], "big")
                if length < _MEDIUM_LENGTH:
                    break
                head = _MEDIUM_HEAD
            else:
                break
            end = start + head + length
            if end > size:
                break
            payload = unmask(data[start + head:end], data[start + head - 4:start + head])
            if first == _WHOLE_TEXT and not payload.isascii():
                try:
                    payload.decode()
                except UnicodeDecodeError:
                    break
            start = end
            self.onMessage(payload, first == _WHOLE_BINARY)
        return data[start:] if start else data

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        conn = self.conn
        if conn is None:
            return
        context = self.factory.context
        if context.trace:
            log.debug("[{cid}] --> {payload}", cid=conn.cid, payload=one_line(payload),
                      resgate_trace=True)
        context.work.enqueue(lambda: rpc.handle_request(conn, payload, self._send))

    def onMessageEnd(self) -> None:
        end_message(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self in self.factory.protocols:
            self.factory.protocols.remove(self)
            self.factory.context.metrics.ws_disconnections_total += 1
        self._closed = True
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        # Autobahn unregisters the producer when it drops the connection: no resume comes.
        self._drained()
        conn, self.conn = self.conn, None
        if conn is not None:
            self.factory.context.work.enqueue(conn.dispose)
            if self.factory.context.debug:
                log.debug("[{cid}] Disconnected ({code})", cid=conn.cid, code=code)

    #: The abort that bounds a graceful drop (dropConnection).
    _abort_call = None

    def dropConnection(self, abort: bool = False) -> None:
        # Autobahn aborts (a TCP reset) right after writing the close frame
        # that refuses a client's close frame (a forbidden code, a reason
        # that is not UTF-8), which discards that frame. Closing gracefully
        # sends what is written first; the abort follows if the client does
        # not take it within the closing handshake's time.
        was_open = self.state != self.STATE_CLOSED
        super().dropConnection(abort=False)
        if abort and was_open and self._abort_call is None:
            self._abort_call = self.factory.reactor.callLater(
                self.closeHandshakeTimeout, self.transport.abortConnection)

    def onPing(self, payload: bytes) -> None:
        # Every ping is answered with a pong: a client that pings without
        # reading counts against the unread bound like any other output.
        if self.conn is not None and self._backlogged(len(payload) + 2):
            return
        super().onPing(payload)

    # The backlog: the transport pauses its producer when its write buffer
    # holds more than its bufferSize and resumes it once the buffer is empty,
    # every byte handed to the kernel ("drained", docs/reliability.md).

    def pauseProducing(self) -> None:
        if self._unread is None:
            self._unread = 0
            self._drain_call = self.factory.context.clock.callLater(
                self.factory.context.config.ws_drain_timeout, self._not_drained)

    def resumeProducing(self) -> None:
        self._drained()

    def stopProducing(self) -> None:
        self._drained()

    def _drained(self) -> None:
        self._unread = None
        if self._drain_call is not None:
            if self._drain_call.active():
                self._drain_call.cancel()
            self._drain_call = None

    @property
    def backlogged(self) -> bool:
        """Whether the transport's buffer has been full since the client last drained it."""
        return self._unread is not None

    def _not_drained(self) -> None:
        """Cut off a client whose backlog did not drain in ``wsDrainTimeout``, however small it is.

        A client that reads a little now and then stays under the byte bound
        while the gateway holds its backlog and the data in it grows stale.
        """
        self._drain_call = None
        if self.conn is None or self._cut_off:
            return
        self._cut_off_client("not drained", "Client does not read: backlog not drained in time",
                             "[{cid}] Client does not read: backlog not drained in {timeout} s; disconnecting",
                             timeout=self.factory.context.config.ws_drain_timeout)

    def _backlogged(self, size: int) -> bool:
        """Count ``size`` bytes against a client that is not reading; cut it off past the bound.

        The bound (``wsMaxUnread``) is on what the gateway holds beyond the
        socket buffers: a client that does not read must not grow the
        gateway's memory without bound (docs/design.md).
        """
        if self._unread is None:
            return False
        self._unread += size
        limit = self.factory.context.config.ws_max_unread
        if self._unread <= limit:
            return False
        if self._cut_off:
            # Aborted already; what else is sent before the socket closes is dropped.
            return True
        self._cut_off_client("over unread", "Client does not read: over the unread bound",
                             "[{cid}] Client does not read: over {limit} bytes unread; disconnecting", limit=limit)
        return True

    def _cut_off_client(self, kind: str, summary: str, format: str, **fields: Any) -> None:
        """Disconnect a client that does not read, once: logged (a kind of the client log) and counted."""
        self._cut_off = True
        assert self.conn is not None  # only an open client's output is counted
        self.factory.context.client_log.log(log.warn, kind, summary, format, cid=self.conn.cid, **fields)
        self.factory.context.metrics.slow_clients_cut_off += 1
        self.transport.abortConnection()

    # Without permessage-deflate a message's frame is the same on every
    # connection: it goes to the transport as text_frame (a reply) or
    # Autobahn's PreparedMessage (a shared message) frames it. Autobahn's
    # sendData would format the arguments of a debug line on every call,
    # logged or not (a sixth of the gateway's time in a burst).

    # Shadows Autobahn's queue-draining _send(), which runs only for sync or chopped sends the gateway never makes.
    def _send(self, data: bytes) -> None:  # type: ignore[override]
        # A closing socket takes no more messages; the connection is disposed on close.
        if self.conn is None or self.state != self.STATE_OPEN or self._backlogged(len(data)):
            return
        if self.factory.context.trace:
            log.debug("[{cid}] <-- {payload}", cid=self.conn.cid, payload=one_line(data),
                      resgate_trace=True)
        if self.websocket_extensions_in_use:
            self.sendMessage(data)  # compressed for this connection
        else:
            self.transport.write(text_frame(data))

    def _send_shared(self, message: SharedMessage) -> None:
        """Send a message many clients get alike, framed once for all of them."""
        if self.conn is None or self.state != self.STATE_OPEN or self._backlogged(len(message.data)):
            return
        if self.factory.context.trace:
            log.debug("[{cid}] <-- {payload}", cid=self.conn.cid, payload=one_line(message.data),
                      resgate_trace=True)
        if message.prepared is None:
            message.prepared = self.factory.prepareMessage(message.data)
        if self.websocket_extensions_in_use:
            self.sendPreparedMessage(message.prepared)  # compressed for this connection
        else:
            self.transport.write(frame_bytes(message.prepared))


#: Autobahn's default bound (seconds) on a WebSocket's opening handshake.
AUTOBAHN_OPEN_HANDSHAKE_TIMEOUT = 5


class ClientFactory(WebSocketServerFactory):
    """Makes a ClientProtocol per client; holds what they share."""

    protocol = ClientProtocol

    def __init__(self, context: GatewayContext, *, compression: bool = False) -> None:
        # No Server header in the 101 (Autobahn names itself and its version
        # there), as in Resgate's and in the gateway's HTTP responses.
        super().__init__(server=None)
        unmask_small_frames_in_python()
        format_debug_lines_lazily()
        self.context = context
        self.compression = compression
        self.protocols: set[ClientProtocol] = set()
        self.autobahn_log = AutobahnLog(WebSocketServerProtocol.log, context.client_log)
        options: dict[str, Any] = dict(
            maxMessagePayloadSize=MAX_MESSAGE_SIZE,
            maxFramePayloadSize=MAX_MESSAGE_SIZE,
            # A handshake has its own limit in Autobahn (64 KiB of headers).
            # A client breaking RFC 6455 gets a close frame with the status
            # code (1002, 1007, 1009) before the TCP connection closes, as the
            # RFC asks and gorilla/websocket does in Resgate, not a bare reset;
            # a close code the client sends is echoed back.
            failByDrop=False,
            echoCloseCodeReason=True,
            # The Origin check is the gateway's (onConnect). Each call of
            # setProtocolOptions sets Autobahn's own null check, off unless
            # given: hence one call, and "null" left to the gateway.
            allowNullOrigin=True,
            # As Resgate: only RFC 6455's version (Autobahn also speaks the
            # drafts' 8), and any other request to the WebSocket path is
            # refused as an upgrade (400), not answered with Autobahn's page.
            versions=[13],
            webStatus=False,
            # twisted.web hands Autobahn the upgrade request whole (read within
            # the HTTP bounds), so without header auth the handshake ends in the
            # call that starts it: Autobahn's open-handshake timer, armed and
            # cancelled for every connection, bounded nothing (5% of connecting).
            # With header auth it bounds the wait for the service, as before.
            openHandshakeTimeout=0 if context.config.ws_header_auth_method is None else AUTOBAHN_OPEN_HANDSHAKE_TIMEOUT,
        )
        if compression:
            from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

            def accept(offers):
                for offer in offers:
                    if isinstance(offer, PerMessageDeflateOffer):
                        return PerMessageDeflateOfferAccept(offer)
                return None

            options["perMessageCompressionAccept"] = accept
        self.setProtocolOptions(**options)

    # Autobahn's signature names every option; these pass them on unchanged.
    def setProtocolOptions(self, **options: Any) -> None:  # type: ignore[override]
        super().setProtocolOptions(**options)
        # The options as class attributes of the connections made from now
        # on: what Autobahn's copy per connection gave (ClientProtocol.CONFIG_ATTRS).
        # A function option (perMessageCompressionAccept) stays a function, not a method.
        settings = {name: staticmethod(value) if callable(value) else value
                    for name, value in ((name, getattr(self, name)) for name in WebSocketServerProtocol.CONFIG_ATTRS)}
        # What Autobahn's handshake checks beyond the head, and the head of its 101 (succeedHandshake).
        # No Server line: the factory has none (__init__).
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: WebSocket", "Connection: Upgrade"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        settings["_upgrade_response_head"] = ("\r\n".join(lines) + "\r\n").encode()
        settings["plain_handshake"] = (
            13 in self.versions and self.allowNullOrigin and self.allowedOrigins == ["*"]
            and not (self.trustXForwardedFor or self.maxConnections or self.autoPingInterval or self.logOctets
                     or self.trackTimings or self.openHandshakeTimeout or self.externalPort)
            and all(isinstance(value, str) for value in self.headers.values()))
        self.protocol = cast(type[ClientProtocol], type(ClientProtocol.__name__, (ClientProtocol,), settings))

    def close_all(self) -> None:
        """Close every client connection: the gateway is going away (1001)."""
        for protocol in list(self.protocols):
            # sendClose refuses 1001 (an endpoint's code, not an application's);
            # the frame-level call sends it as RFC 6455 intends for a server going away.
            protocol.sendCloseFrame(code=1001, reasonUtf8=b"Server is shutting down")


class UpgradeResource(WebSocketResource):
    """The WebSocket path in twisted.web: Autobahn's resource, but a client that sent bytes after its upgrade's head is closed unanswered.

    RFC 6455 has a client wait for the server's handshake before it sends
    anything; Resgate closes, without a response, the connection of one
    that did not. Autobahn's resource hands its protocol the head alone, so
    those bytes were lost and the client waited for answers to requests
    the gateway never read. A request that asks for no WebSocket upgrade
    gets Autobahn's answer, pipelined bytes or not. A head that arrives
    alone, as clients send it, is upgraded as before: site.DirectUpgrade
    takes only such heads and leaves any other to twisted.web and this
    resource.
    """

    def __init__(self, factory: ClientFactory) -> None:
        super().__init__(factory)
        self._clients = factory

    def render(self, request):
        channel = request.channel
        upgrade = request.getHeader("upgrade") or ""
        if (channel.transport is not None and "websocket" in upgrade.lower()
                and has_unread_after_head(channel)):
            if self._clients.context.debug:
                log.debug("Upgrade from {peer} refused: data sent before the handshake's answer",
                          peer=remote_addr(request.getClientAddress()))
            channel.transport.loseConnection()
            return server.NOT_DONE_YET
        return super().render(request)
