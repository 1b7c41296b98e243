"""The private parts of Twisted and Autobahn the gateway relies on, reached only from here.

Each is used because the public API has nothing that does the job, mostly on
a hot path; each is checked when this module is imported, so a Twisted or
Autobahn release that changes one stops the gateway at start with one clear
line instead of breaking it quietly. The supported versions are the ranges
in setup.cfg; CI runs the tests on the lowest (``tests/lowest-versions.txt``)
and on the newest release. nats-py's private parts are checked in
``resgate.natsbus`` the same way.

| private part | used by | for |
| --- | --- | --- |
| ``FileDescriptor._tempDataBuffer`` | transport.CorkedServer | whether a corked write left bytes unsent |
| ``FileDescriptor._tempDataLen``, ``_writeDisconnected`` | transport.CorkedServer | buffering a client write in one call instead of five |
| ``FileDescriptor.dataBuffer``, ``offset``, ``SEND_LIMIT`` and the state ``doWrite`` reads once its buffer is empty | transport.CorkedServer | an early flush's sends done outside ``doWrite``, shared with the sender thread |
| ``tcp.Port._type`` | transport.PortReactor | a TLS port logs itself as TLS, as the reactor's own does |
| ``PreparedMessage.payloadHybi`` | ws.ClientProtocol | writing a frame prepared once to many transports |
| ``twisted.protocols.haproxy._wrapper`` | transport.PortReactor | the factory ``haproxy:`` endpoints wrap, to log refused headers and to read the header before TLS |
| ``HAProxyProtocolWrapper._proxyInfo`` | transport.ProxiedConnection | whether the PROXY header was read |
| ``autobahn.websocket.protocol.create_xor_masker`` | ws.ClientFactory | unmasking small client frames without a CFFI object each |
| ``hltype`` and ``hlval`` in ``autobahn.websocket.protocol`` and ``autobahn.twisted.websocket`` | ws.ClientFactory | no debug line's arguments formatted unless it is logged |
| ``WebSocketProtocol.message_data``, ``message_is_binary``, ``failedByMe`` | ws.ClientProtocol | ending a message without firing Autobahn's "message" signal |
| ``WebSocketProtocol.data``, ``current_frame``, ``inside_message`` | ws.ClientProtocol | reading whole messages itself only while Autobahn holds no part of one |
| ``HTTPChannel._networkProducer``, ``_waitingForTransport``, ``_optimisticEagerReadSize`` | web.BoundedLineChannel | holding a client's pipelined requests while a plain GET is answered, as twisted.web holds them |
| ``LineReceiver._buffer`` of ``HTTPChannel`` | ws.UpgradeResource | whether a client sent bytes after its upgrade's head, before the answer |
| ``twisted.internet.asyncioreactor.callWithLogger`` | process.install_reactor | calling a socket's reader or writer without a log context built per event |
| ``autobahn.websocket.protocol.parseHttpHeader``, ``WebSocketProtocol._parseExtensionsHeader``, the attributes ``processHandshake`` and ``succeedHandshake`` set, ``_onOpen`` | ws.ClientProtocol | opening a plain upgrade to the state Autobahn's handshake leaves, without it |
| the attributes Autobahn's three ``connectionMade`` steps set, ``autobahn.twisted.websocket.create_transport_details`` | ws.ClientProtocol | readying a connection for a plain upgrade without Autobahn's debug lines |

Public hooks the gateway overrides (tested by the suite on both versions,
not checked here): ``tcp.Server.write``/``startWriting``/``stopWriting``,
``server.Request.process`` (site.GatewayRequest: routing by whole path),
``HTTPChannel.allHeadersReceived``/``allContentReceived``/``requestDone``
(web.BoundedLineChannel: the time bounds of each part of a request),
``WebSocketServerProtocol.dropConnection`` and ``sendHttpErrorResponse``,
its ``log`` (ws.AutobahnLog: Autobahn's per-connection warnings counted),
and ``WebSocketProtocol.CONFIG_ATTRS`` (ws.ClientProtocol: no option copied per connection).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Callable, cast

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn import util as autobahn_util
from autobahn.twisted import websocket as autobahn_twisted_websocket
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import abstract, asyncioreactor, protocol, tcp
from twisted.internet.interfaces import IPushProducer, IReactorFDSet
from twisted.protocols import basic
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper as HAProxyProtocolWrapper
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory as HAProxyWrappingFactory
from twisted.web import http


#: Stands for a reactor where an object is built only to look at its attributes.
_NO_REACTOR = cast(IReactorFDSet, object())


def has_unsent_data(transport: abstract.FileDescriptor) -> bool:
    """Whether the transport still holds bytes it has not handed to the kernel."""
    return bool(transport.dataBuffer or transport._tempDataBuffer)


#: What Twisted's own FileDescriptor.write reads and sets, and buffer_write does the same way.
_WRITE_NAMES = {"connected", "_writeDisconnected", "_tempDataBuffer", "_tempDataLen",
                "_maybePauseProducer", "startWriting"}


def buffer_write(transport: abstract.FileDescriptor, data: bytes) -> None:
    """Twisted's ``FileDescriptor.write`` of bytes, inline.

    The same steps (buffer, pause a streaming producer once the buffer is
    past ``bufferSize``, ask to write) without the four calls Twisted makes
    for them: per delivery of a burst they cost a fifth of the gateway.
    """
    if not data or not transport.connected or transport._writeDisconnected:
        return
    transport._tempDataBuffer.append(data)
    transport._tempDataLen += len(data)
    producer = transport.producer
    if (producer is not None and transport.streamingProducer
            and len(transport.dataBuffer) + transport._tempDataLen > transport.bufferSize):
        transport.producerPaused = True
        cast(IPushProducer, producer).pauseProducing()  # a streaming producer pushes
    transport.startWriting()


#: What Twisted's FileDescriptor.doWrite reads and sets, and take_unsent and record_sent the same way.
_DO_WRITE_NAMES = {"dataBuffer", "offset", "_tempDataBuffer", "_tempDataLen", "SEND_LIMIT", "producer",
                   "streamingProducer", "producerPaused", "disconnecting", "_writeDisconnecting"}


def take_unsent(transport: abstract.FileDescriptor) -> bytes | None:
    """What the transport holds, for one plain ``send`` of it, as ``doWrite`` would send it.

    The bytes move to ``dataBuffer``, where ``doWrite`` keeps what it sends;
    None (nothing moved) unless that buffer is empty and they fit one send.
    """
    if transport.dataBuffer or transport._tempDataLen > transport.SEND_LIMIT or not transport._tempDataBuffer:
        return None
    data = transport.dataBuffer = b"".join(transport._tempDataBuffer)
    transport.offset = 0
    transport._tempDataBuffer = []
    transport._tempDataLen = 0
    return data


def record_sent(transport: abstract.FileDescriptor, count: int) -> bool:
    """Count ``count`` bytes of ``dataBuffer`` sent, as ``doWrite`` does; whether ``doWrite`` has more to do.

    It has when bytes are left or were written meanwhile, and when an emptied
    buffer has a producer to resume or a close to finish.
    """
    transport.offset += count
    if transport.offset != len(transport.dataBuffer) or transport._tempDataLen:
        return True
    transport.dataBuffer = b""
    transport.offset = 0
    producer_waits = transport.producer is not None and (
        not transport.streamingProducer or transport.producerPaused)
    return bool(producer_waits or transport.disconnecting or transport._writeDisconnecting)


def mark_tls(port: tcp.Port) -> None:
    """Make a TCP port carrying TLS name itself so in its log lines."""
    port._type = "TLS"


def frame_bytes(message: PreparedMessage) -> bytes:
    """The whole WebSocket frame (header and payload) of an uncompressed prepared message."""
    return message.payloadHybi


def proxy_header_read(connection: HAProxyProtocolWrapper) -> bool:
    """Whether a connection of a ``haproxy:`` endpoint has received its whole PROXY header."""
    return connection._proxyInfo is not None


#: What the asyncio reactor registers a socket's events with, and call_selectables_without_log_context replaces.
_CALL_NAMES = {"callWithLogger", "_readOrWrite"}


def _call_without_log_context(logger: object, function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


def call_selectables_without_log_context() -> None:
    """Have Twisted's asyncio reactors call readers and writers directly.

    The reactor wraps every read and write event in ``callWithLogger``: the
    socket's logPrefix and a copy of the log context, the "system" of
    legacy ``log.msg`` calls, which the gateway makes none of (its lines
    are twisted.logger's). The reactor's ``_readOrWrite`` still catches and
    logs what a reader or writer raises. A cached GET answers 6% more
    requests a second without it (bench/README.md).
    """
    asyncioreactor.callWithLogger = _call_without_log_context


#: What HTTPChannel reads to hold a client's pipelined requests back, and hold_back and read_on read the same way.
_HOLD_NAMES = {"_networkProducer", "_waitingForTransport", "_optimisticEagerReadSize"}
_READ_ON_NAMES = {"_networkProducer", "_waitingForTransport"}


def hold_back(channel: http.HTTPChannel, held: int) -> bool:
    """Stop reading from the client past what twisted.web holds while answering (``held`` bytes); whether it did.

    Not when the client already stopped reading its responses: the channel
    has stopped reading then, and resumes once the client reads.
    """
    if held > channel._optimisticEagerReadSize and not channel._waitingForTransport:
        channel._networkProducer.pauseProducing()
        return True
    return False


def read_on(channel: http.HTTPChannel) -> None:
    """Read from the client again after ``hold_back``, as twisted.web does after a response (``requestDone``)."""
    if not channel._waitingForTransport:
        channel._networkProducer.resumeProducing()


#: Frames up to this size are unmasked by PlainXorMasker; larger ones by
#: Autobahn's native masker, faster per byte once past its set-up cost.
PLAIN_XOR_MAX_FRAME = 1024


class PlainXorMasker:
    """Unmasks one frame's payload with Python's big-integer XOR.

    Every client frame is masked (RFC 6455), and Autobahn builds a CFFI masker
    object for each one: about 5 µs against 1 µs here for a 100-byte message.
    Same interface as Autobahn's maskers; the payload may come in parts.
    """

    __slots__ = ("_mask", "_offset")

    def __init__(self, mask: bytes) -> None:
        self._mask = mask
        self._offset = 0

    def pointer(self) -> int:
        return self._offset

    def reset(self) -> None:
        self._offset = 0

    def process(self, data: bytes) -> bytes:
        turn = self._offset & 3
        self._offset += len(data)
        return unmask(data, self._mask[turn:] + self._mask[:turn])


def unmask(data: bytes, mask: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``mask`` repeated, as one big integer."""
    size = len(data)
    key = (mask * ((size >> 2) + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


_native_xor_masker = autobahn_protocol.create_xor_masker


def _xor_masker(mask: bytes, length: int | None = None) -> Any:
    if length is not None and length <= PLAIN_XOR_MAX_FRAME:
        return PlainXorMasker(mask)
    return _native_xor_masker(mask, length)


def unmask_small_frames_in_python() -> None:
    """Have Autobahn's protocols (every one in the process) mask and unmask small frames with PlainXorMasker."""
    autobahn_protocol.create_xor_masker = _xor_masker


class LogArgument:
    """An argument of one of Autobahn's debug lines, formatted only if the line is.

    Autobahn formats the arguments of its debug lines before it calls the
    logger (``hltype`` and ``hlval``: a qualified name looked up and
    highlighted), whether or not the line is logged: five times per
    connection, a tenth of connecting a client.
    """

    __slots__ = ("_format", "_value")

    def __init__(self, format_value: Callable[[Any], str], value: Any) -> None:
        self._format = format_value
        self._value = value

    def __format__(self, spec: str) -> str:
        return format(self._format(self._value), spec)

    def __str__(self) -> str:
        return self._format(self._value)

    __repr__ = __str__


_hltype, _hlval = autobahn_util.hltype, autobahn_util.hlval


def _lazy_hltype(obj: Any) -> LogArgument:
    return LogArgument(_hltype, obj)


def _lazy_hlval(value: Any) -> LogArgument:
    return LogArgument(_hlval, value)


#: Autobahn's modules whose debug lines the gateway's protocols run through, and what formats their arguments.
_DEBUG_LINE_MODULES = (autobahn_protocol, autobahn_twisted_websocket)
_DEBUG_NAMES = {"hltype", "hlval"}


def format_debug_lines_lazily() -> None:
    """Have Autobahn's protocols (every one in the process) format a debug line's arguments only when it is logged.

    In those modules ``hltype`` and ``hlval`` are called only to make the
    arguments of log lines (debug lines, and one error line); each call now
    makes a LogArgument, which formats as they would once a line is logged.
    """
    for module in _DEBUG_LINE_MODULES:
        # Names the modules import from autobahn.util, not their own.
        setattr(module, "hltype", _lazy_hltype)
        setattr(module, "hlval", _lazy_hlval)


#: What Autobahn's own onMessageEnd reads, and end_message reads the same way.
_MESSAGE_END_NAMES = {"failedByMe", "message_data", "message_is_binary", "_onMessage"}


def end_message(protocol: WebSocketServerProtocol) -> None:
    """Deliver the message whose frames have all arrived, as Autobahn's onMessageEnd does.

    Autobahn then also fires a "message" signal for observers, which costs a
    Deferred and a gather per message; the gateway observes none.
    """
    if not protocol.failedByMe:
        protocol._onMessage(b"".join(protocol.message_data), protocol.message_is_binary)
    # As Autobahn does; its annotation of message_data leaves None out.
    protocol.message_data = None  # type: ignore[assignment]


#: What Autobahn's frame reader keeps between reads, and between_messages reads the same way.
_FRAME_STATE_NAMES = {"data", "current_frame"}
_MESSAGE_STATE_NAMES = {"inside_message"}


def between_messages(protocol: WebSocketServerProtocol) -> bool:
    """Whether Autobahn holds no part of an incoming frame or message: nothing buffered, no fragment begun."""
    return not protocol.data and protocol.current_frame is None and not protocol.inside_message


#: What Autobahn's handshake sets on a protocol it opens; open_upgraded sets the same.
_HANDSHAKE_NAMES = {"http_request_data", "http_status_line", "http_headers", "http_request_uri",
                    "http_request_path", "http_request_params", "http_request_host", "websocket_version",
                    "websocket_protocols", "websocket_origin", "websocket_extensions", "_wskey", "data"}
_OPEN_NAMES = {"websocket_protocol_in_use", "websocket_extensions_in_use", "http_response_data", "state",
               "inside_message", "current_frame", "_onOpen", "is_open", "consumeData"}


#: A whole head that Autobahn's parseHttpHeader accepts, in the one form clients send: a request
#: line without control characters, then lines of a token, a colon and a value of visible
#: characters, obs-text, spaces and tabs, each ended by CRLF, then an empty line.
_PLAIN_HEAD = re.compile(rb"[^\x00-\x1f\x7f]*\r\n(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n")


def has_unread_after_head(channel: http.HTTPChannel) -> bool:
    """Whether bytes arrived after the head of the request ``channel`` is rendering, in the same read.

    twisted.web renders a request without a body from within the read that
    ended its head; the rest of that read waits in the channel's line buffer.
    """
    return bool(channel._buffer)


def parse_upgrade_head(head: bytes) -> tuple[str, dict[str, str], dict[str, int]]:
    """Autobahn's strict parse of an upgrade's head: request line, headers (names in lower case), their counts.

    A head that matches ``_PLAIN_HEAD`` as a whole passes each of
    parseHttpHeader's checks, so it is split here to the same result in a
    third of the time; any other is parseHttpHeader's, which raises
    ValueError for a head Autobahn's handshake would refuse as unparsable.
    """
    if _PLAIN_HEAD.fullmatch(head) is None:
        return autobahn_protocol.parseHttpHeader(head)
    lines = head.decode("iso-8859-1").split("\r\n")
    headers: dict[str, str] = {}
    counts: dict[str, int] = {}
    for line in lines[1:-2]:  # the last two: the empty strings around the final CRLF
        name, _, value = line.partition(":")
        name = name.lower()
        value = value.strip(" \t")
        if name in headers:
            headers[name] += ", " + value
            counts[name] += 1
        else:
            headers[name] = value
            counts[name] = 1
    return lines[0].strip(" "), headers, counts


#: Extension offers as Autobahn's handshake keeps them: each name with its parameters' values.
ExtensionOffers = list[tuple[str, dict[str, list[Any]]]]


def parse_extension_offers(protocol: WebSocketProtocol, header: str) -> ExtensionOffers:
    """Autobahn's parse of a Sec-WebSocket-Extensions header, as its handshake keeps it."""
    return cast(ExtensionOffers, protocol._parseExtensionsHeader(header))


#: Every name Autobahn's connectionMade steps use, exactly: WebSocketAdapterProtocol.connectionMade,
#: then WebSocketServerProtocol._connectionMade, then WebSocketProtocol._connectionMade.
#: connect_plainly sets the state they set; a release that sets more fails the check.
_CONNECT_NAMES = (
    frozenset({"CHANNEL_FRAMING_WEBSOCKET", "TransportDetails", "_connectionMade", "_transport_details",
               "channel_framing", "connectionMade", "create_transport_details", "debug", "hltype", "hlval",
               "is_server", "log", "peer", "setTcpNoDelay", "tcpNoDelay", "transport"}),
    frozenset({"WebSocketProtocol", "_connectionMade", "countConnections", "debug", "factory", "hltype", "log",
               "peer"}),
    frozenset({"CONFIG_ATTRS", "SEND_STATE_GROUND", "STATE_CONNECTING", "STATE_PROXY_CONNECTING", "TrafficStats",
               "Utf8Validator", "WebSocketProtocol", "__class__", "__name__", "_batched_timer", "_perMessageCompress",
               "append", "autoPingPending", "autoPingPendingCall", "autoPingPendingSent", "autoPingPendingSeq",
               "autoPingTimeoutCall", "call_later", "closeHandshakeTimeoutCall", "closedByMe", "data", "debug",
               "deque", "droppedByMe", "factory", "failedByMe", "getattr", "hasattr", "isServer",
               "localCloseCode", "localCloseReason", "log", "onOpenHandshakeTimeout", "openHandshakeTimeout",
               "openHandshakeTimeoutCall", "pformat", "proxy", "remoteCloseCode", "remoteCloseReason",
               "send_queue", "send_state", "serverConnectionDropTimeoutCall", "setTrackTimings", "setattr",
               "state", "trackTimings", "trackedTimings", "trafficStats", "triggered", "utf8validator",
               "wasClean", "wasCloseHandshakeTimeout", "wasMaxFramePayloadSizeExceeded",
               "wasMaxMessagePayloadSizeExceeded", "wasNotCleanReason", "wasOpenHandshakeTimeout",
               "wasServerConnectionDropTimeout", "wasServingFlashSocketPolicyFile"}),
)


def connect_plainly(protocol: WebSocketServerProtocol) -> None:
    """Ready a new connection's ``protocol`` for its opening handshake as Autobahn's connectionMade does.

    The same attributes set to the same values, without its three debug
    lines, its pretty-printed option list (empty: CONFIG_ATTRS) and its
    calls per step: two fifths of its time. Only for a server protocol
    with no option of its own, no timings and no open-handshake timer
    (ws.ClientFactory's plain_handshake).
    """
    transport = protocol.transport
    assert transport is not None  # connectionMade comes with one
    details = autobahn_twisted_websocket.create_transport_details(transport, True)
    details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
    protocol._transport_details = details
    protocol.peer = details.peer
    try:
        # tcpNoDelay: a protocol option (the factory's) that Autobahn's annotations leave out.
        transport.setTcpNoDelay(protocol.tcpNoDelay)  # type: ignore[attr-defined]
    except Exception:  # as Autobahn's: a Unix socket has no Nagle option
        pass
    protocol._perMessageCompress = None
    # As Autobahn does (this and wasNotCleanReason); its annotations leave None out.
    protocol.trackedTimings = None  # type: ignore[assignment]
    protocol.trafficStats = autobahn_protocol.TrafficStats()
    protocol.state = WebSocketProtocol.STATE_CONNECTING
    protocol.send_state = WebSocketProtocol.SEND_STATE_GROUND
    protocol.data = b""
    protocol.send_queue = deque()
    protocol.triggered = False
    protocol.utf8validator = autobahn_protocol.Utf8Validator()  # the one Autobahn's module chose
    protocol.wasMaxFramePayloadSizeExceeded = False
    protocol.wasMaxMessagePayloadSizeExceeded = False
    protocol.closedByMe = False
    protocol.failedByMe = False
    protocol.droppedByMe = False
    protocol.wasClean = False
    protocol.wasNotCleanReason = None  # type: ignore[assignment]
    protocol.wasServerConnectionDropTimeout = False
    protocol.wasOpenHandshakeTimeout = False
    protocol.wasCloseHandshakeTimeout = False
    protocol.wasServingFlashSocketPolicyFile = False
    protocol.localCloseCode = None
    protocol.localCloseReason = None
    protocol.remoteCloseCode = None
    protocol.remoteCloseReason = None
    protocol.openHandshakeTimeoutCall = None
    protocol.closeHandshakeTimeoutCall = None
    protocol.autoPingTimeoutCall = None
    protocol.autoPingPending = None
    protocol.autoPingPendingCall = None
    protocol.autoPingPendingSeq = 0
    protocol.autoPingPendingSent = None
    protocol.factory.countConnections += 1


def open_upgraded(protocol: WebSocketServerProtocol, head: bytes, status_line: str, headers: dict[str, str],
                  uri: str, path: str, params: dict[str, list[str]], host: str, origin: str,
                  extensions: ExtensionOffers, key: str, response: bytes) -> None:
    """Open ``protocol`` as Autobahn's handshake does once it accepts an upgrade without a subprotocol.

    The same attributes set to the same values (``processHandshake``'s, then
    ``succeedHandshake``'s), ``response`` written, then ``onOpen``; what
    arrived after the head is read on as frames.
    """
    protocol.http_request_data = head
    protocol.http_status_line = status_line
    protocol.http_headers = headers
    protocol.http_request_uri = uri
    protocol.http_request_path = path
    protocol.http_request_params = params
    protocol.http_request_host = host
    protocol.websocket_version = 13
    protocol.websocket_protocols = []
    protocol.websocket_origin = origin
    protocol.websocket_extensions = extensions
    protocol.data = protocol.data[len(head):]
    protocol._wskey = key
    protocol.websocket_protocol_in_use = None
    protocol.websocket_extensions_in_use = []
    transport = protocol.transport
    assert transport is not None  # a handshake arrives over a connection
    transport.write(response)
    protocol.trafficStats.preopenOutgoingOctetsWireLevel += len(response)
    protocol.http_response_data = response.decode()
    protocol.state = WebSocketProtocol.STATE_OPEN
    protocol.inside_message = False
    # As Autobahn does; its annotation of current_frame leaves None out.
    protocol.current_frame = None  # type: ignore[assignment]
    protocol._onOpen()
    protocol.is_open.callback(None)  # a Deferred under Twisted (txaio.resolve)
    if protocol.data:
        protocol.consumeData()


def check() -> None:
    """Fail loudly unless Twisted and Autobahn still have the parts above."""
    problems = []
    # Any reactor will do for a look at the attributes: importing this module
    # must not install Twisted's default reactor.
    descriptor = abstract.FileDescriptor(reactor=_NO_REACTOR)
    if not isinstance(vars(descriptor).get("_tempDataBuffer"), list):
        problems.append("twisted FileDescriptor._tempDataBuffer")
    if (vars(descriptor).get("_tempDataLen") != 0
            or not _WRITE_NAMES <= set(abstract.FileDescriptor.write.__code__.co_names)):
        problems.append("twisted FileDescriptor.write's _tempDataLen, _writeDisconnected")
    if (not _DO_WRITE_NAMES <= set(abstract.FileDescriptor.doWrite.__code__.co_names)
            or abstract.FileDescriptor.dataBuffer != b"" or abstract.FileDescriptor.offset != 0
            or not isinstance(getattr(abstract.FileDescriptor, "SEND_LIMIT", None), int)):
        problems.append("twisted FileDescriptor.doWrite's dataBuffer, offset, SEND_LIMIT")
    if getattr(tcp.Port, "_type", None) != "TCP":
        problems.append("twisted tcp.Port._type")
    if PreparedMessage(b"x", False, False, True).__dict__.get("payloadHybi") != b"\x81\x01x":
        problems.append("autobahn PreparedMessage.payloadHybi")
    wrapper = HAProxyWrappingFactory(protocol.Factory.forProtocol(protocol.Protocol)).buildProtocol(None)
    if not (isinstance(wrapper, HAProxyProtocolWrapper) and "_proxyInfo" in vars(wrapper)):
        problems.append("twisted HAProxyProtocolWrapper._proxyInfo")
    if not _MESSAGE_END_NAMES <= set(WebSocketProtocol.onMessageEnd.__code__.co_names):
        problems.append("autobahn WebSocketProtocol.onMessageEnd's message_data, message_is_binary, failedByMe")
    if (not _FRAME_STATE_NAMES <= set(WebSocketProtocol.processData.__code__.co_names)
            or not _MESSAGE_STATE_NAMES <= set(WebSocketProtocol.onFrameBegin.__code__.co_names)):
        problems.append("autobahn WebSocketProtocol.data, current_frame, inside_message")
    if (not callable(getattr(autobahn_protocol, "parseHttpHeader", None))
            or not callable(getattr(WebSocketProtocol, "_parseExtensionsHeader", None))
            or not callable(getattr(WebSocketServerProtocol, "_onOpen", None))
            or not _HANDSHAKE_NAMES <= set(WebSocketServerProtocol.processHandshake.__code__.co_names)
            or not _OPEN_NAMES <= set(WebSocketServerProtocol.succeedHandshake.__code__.co_names)):
        problems.append("autobahn parseHttpHeader, _parseExtensionsHeader, _onOpen and its handshake's attributes")
    if (not _HOLD_NAMES <= set(http.HTTPChannel.rawDataReceived.__code__.co_names)
            or not _READ_ON_NAMES <= set(http.HTTPChannel.requestDone.__code__.co_names)
            or not isinstance(getattr(http.HTTPChannel, "_optimisticEagerReadSize", None), int)):
        problems.append("twisted HTTPChannel._networkProducer, _waitingForTransport, _optimisticEagerReadSize")
    selector_reactor = asyncioreactor.AsyncioSelectorReactor
    if (not callable(getattr(asyncioreactor, "callWithLogger", None))
            or not _CALL_NAMES <= set(selector_reactor.addReader.__code__.co_names)
            or not _CALL_NAMES <= set(selector_reactor.addWriter.__code__.co_names)
            or "failure" not in selector_reactor._readOrWrite.__code__.co_names):
        problems.append("twisted asyncioreactor.callWithLogger, as its reactor's addReader and addWriter use it")
    adapter = autobahn_twisted_websocket.WebSocketAdapterProtocol
    if (any(not callable(getattr(module, name, None)) for module in _DEBUG_LINE_MODULES for name in _DEBUG_NAMES)
            or not _DEBUG_NAMES <= set(adapter.connectionMade.__code__.co_names)
            or "hltype" not in WebSocketServerProtocol._connectionMade.__code__.co_names):
        problems.append("autobahn hltype, hlval in its websocket modules' debug lines")
    adapter_steps = (adapter.connectionMade, WebSocketServerProtocol._connectionMade, WebSocketProtocol._connectionMade)
    if (tuple(frozenset(step.__code__.co_names) for step in adapter_steps) != _CONNECT_NAMES
            or not callable(getattr(autobahn_twisted_websocket, "create_transport_details", None))):
        problems.append("autobahn connectionMade's attributes and create_transport_details")
    if (not issubclass(http.HTTPChannel, basic.LineReceiver)
            or "_buffer" not in basic.LineReceiver.dataReceived.__code__.co_names
            or not isinstance(getattr(http.HTTPChannel(), "_buffer", None), bytes)):
        problems.append("twisted LineReceiver._buffer, as HTTPChannel reads a request's head")
    if not callable(getattr(autobahn_protocol, "create_xor_masker", None)):
        problems.append("autobahn websocket.protocol.create_xor_masker")
    if problems:
        raise ImportError(
            f"resgate uses {', '.join(problems)}, which the installed Twisted or Autobahn does not "
            "have as expected; install versions in the ranges setup.cfg names"
        )


check()
