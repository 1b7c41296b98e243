"""WebSocket frames by hand, for clients that break RFC 6455 on purpose.

Autobahn's client only sends well-formed frames. ``frame`` builds any frame
(any opcode, FIN and RSV bits, masked or not, fragments), and
``RawWsClient`` upgrades over a plain TCP connection, writes such frames and
parses what the gateway sends back: text messages, pongs and the close
frame with its status code.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.rig.aio import WAIT_TIMEOUT, within

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True,
          length: int | None = None) -> bytes:
    """One frame as a client writes it (masked unless told otherwise).

    ``length`` announces another payload length than the payload's own
    (a frame whose header promises more than is ever sent).
    """
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text_frame(text: str | bytes, **options: Any) -> bytes:
    return frame(OP_TEXT, text.encode() if isinstance(text, str) else text, **options)


def close_frame(code: int | None = None, reason: bytes = b"", **options: Any) -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(OP_CLOSE, payload, **options)


@dataclass
class Frame:
    """A frame the gateway sent."""

    opcode: int
    payload: bytes
    fin: bool = True
    #: The RSV bits: 4 (RSV1) on a compressed message's first frame.
    rsv: int = 0

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def json(self) -> Any:
        return json.loads(self.payload)


class RawWsClient(protocol.Protocol):
    """A WebSocket client of raw frames: upgrades, then writes whatever it is given.

    ``opened`` fires once the 101 response is in; ``frames`` collects every
    frame the server sends afterwards; ``closed`` fires when the TCP
    connection is gone. It answers a close frame with one of its own, as
    RFC 6455 asks, unless it sent one first or ``answer_close`` is False;
    it never answers a ping.
    """

    def __init__(self, path: str = "/", answer_close: bool = True, headers: dict[str, str] | None = None) -> None:
        self.path = path
        self.headers = headers or {}
        self.answer_close = answer_close
        self.close_sent = False
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.frames: list[Frame] = []
        self.response_head = b""
        self._upgraded = False
        self._buffer = b""
        self._waiting: list[tuple[Any, defer.Deferred]] = []

    def connectionMade(self) -> None:
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
            + b"".join(f"{name}: {value}\r\n".encode() for name, value in self.headers.items()) + b"\r\n"
        )

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            head, sep, rest = self._buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.response_head, self._buffer, self._upgraded = head, rest, True
            if head.startswith(b"HTTP/1.1 101 "):
                self.opened.callback(self)
            else:
                self.opened.errback(ConnectionError(head.split(b"\r\n")[0].decode("latin-1")))
                return
        while True:
            parsed = _parse_frame(self._buffer)
            if parsed is None:
                break
            received, self._buffer = parsed
            self.frames.append(received)
            if received.opcode == OP_CLOSE and self.answer_close and not self.close_sent:
                self.send(close_frame(received.close_code))
            self._notify()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError("closed before the upgrade"))
        self.closed.callback(self.frames)
        self._notify()

    def send(self, *frames: bytes) -> None:
        """Write ``frames`` (each one whole frame, or the start of one) as they are."""
        if any(f and f[0] & 0x0F == OP_CLOSE for f in frames):
            self.close_sent = True
        self.transport.write(b"".join(frames))

    def request(self, request_id: int, method: str, params: Any = None) -> None:
        """Send one JSON-RPC request as a single text frame."""
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(text_frame(json.dumps(message)))

    def _notify(self) -> None:
        # A waiter's callback may send, wait again or close: take the list first.
        waiting, self._waiting = self._waiting, []
        for condition, d in waiting:
            found = next((f for f in self.frames if condition(f)), None)
            if found is not None:
                d.callback(found)
            elif self.closed.called:
                d.errback(ConnectionError(f"connection closed; frames: {self.frames!r}"))
            else:
                self._waiting.append((condition, d))

    def wait_for(self, condition, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
        """The first frame (already received or to come) for which ``condition(frame)`` holds."""
        d: defer.Deferred = defer.Deferred()
        self._waiting.append((condition, d))
        self._notify()
        return within(d, timeout)

    def response(self, request_id: int, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
        """The JSON response to request ``request_id``."""
        def is_response(f: Frame) -> bool:
            if f.opcode != OP_TEXT:
                return False
            message = f.json()
            return isinstance(message, dict) and message.get("id") == request_id
        return within(self.wait_for(is_response, timeout).addCallback(Frame.json), timeout)

    @property
    def close_frame(self) -> Frame | None:
        return next((f for f in self.frames if f.opcode == OP_CLOSE), None)

    def pongs(self) -> list[bytes]:
        return [f.payload for f in self.frames if f.opcode == OP_PONG]


def _parse_frame(data: bytes) -> tuple[Frame, bytes] | None:
    """One unmasked server frame from the start of ``data`` and the rest, or None if incomplete."""
    if len(data) < 2:
        return None
    fin, rsv, opcode = bool(data[0] & 0x80), data[0] >> 4 & 0x7, data[0] & 0x0F
    size, offset = data[1] & 0x7F, 2
    if size == 126:
        if len(data) < 4:
            return None
        size, offset = struct.unpack("!H", data[2:4])[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, offset = struct.unpack("!Q", data[2:10])[0], 10
    if len(data) < offset + size:
        return None
    return Frame(opcode, data[offset:offset + size], fin, rsv), data[offset + size:]


async def connect_raw_ws(port: int, path: str = "/", timeout: float = WAIT_TIMEOUT,
                         answer_close: bool = True, headers: dict[str, str] | None = None,
                         client_class: type[RawWsClient] = RawWsClient) -> RawWsClient:
    """A RawWsClient (or ``client_class``) upgraded on the gateway at ``port`` (loopback), with ``headers``."""
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    client = await within(connectProtocol(endpoint, client_class(path, answer_close, headers)), timeout)
    await within(client.opened, timeout)
    return client
