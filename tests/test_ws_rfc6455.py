"""WebSocket frames that break RFC 6455, from a client over loopback.

A raw client (``tests.rig.wsframes``) writes what Autobahn's client never
would. Each case checks the answer the RFC asks for (a close frame with its
status code, then the TCP connection closed), that nothing is logged as an
error by any logger, and that another client connected all along is still
served afterwards.

| input | answer |
| --- | --- |
| a text message in several frames, control frames between them | one request, pongs in between |
| a continuation frame that continues nothing, a new message inside a fragmented one | close 1002 |
| invalid UTF-8 in a text message (also split across frames) | close 1007 |
| a frame, or a message in fragments, over ``MAX_MESSAGE_SIZE`` | close 1009, before the payload is read |
| a binary message | a request like a text message, as in Resgate |
| with ``--wscompression``: a message inflating past ``MAX_MESSAGE_SIZE`` (deflate bomb) | close 1009, while inflating |
| with ``--wscompression``: compressed data that is not deflate | close 1007 |
| an unmasked frame, RSV bits, an unknown opcode, a control frame over 125 bytes or fragmented | close 1002 |
| a ping flood | one pong per ping, in order; a client that floods without reading is cut off |
| a close code the RFC forbids on the wire (999, 1005, 1006, 5000, ...), a 1-byte close payload | close 1002 |
| a close reason that is not UTF-8 | close 1007 |
| several frames in one read, whole or cut, valid or not | each whole message a request in order, then the rest as alone |
| a 16-bit length that fits in 7 bits (not the shortest encoding) | close 1002 |

Not upstream scenarios: Resgate's suite has no frame-level tests.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import zlib

import pytest
import pytest_twisted
from twisted.internet import protocol

from resgate.config import MIN_WS_MAX_UNREAD
from resgate.ws import MAX_MESSAGE_SIZE
from tests.rig.aio import eventually, sleep, within
from tests.rig.ws import connect_ws
from tests.rig.wsframes import (
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, RawWsClient, close_frame, connect_raw_ws,
    frame, text_frame,
)

pytestmark = pytest.mark.usefixtures("logged_errors", "logged_failures")

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

REQUEST = json.dumps({"id": 7, "method": "call.test.model.ping"}).encode()


class Bystander:
    """A well-behaved client, connected before the hostile one and served after it."""

    def __init__(self, gateway, service) -> None:
        self.gateway = gateway
        self.service = service

    async def connect(self) -> Bystander:
        self.service.on("access.test.model", lambda r: r.respond_result({"get": True, "call": "*"}))
        self.service.on("call.test.model.ping", lambda r: r.respond_result("pong"))
        self.client = await connect_ws(self.gateway.ws_url)
        await self.assert_served()
        return self

    async def assert_served(self) -> None:
        response = await self.client.request("call.test.model.ping")
        assert response["result"] == "pong", response

    async def assert_alone(self) -> None:
        """The hostile client is gone from the gateway, this one is still served."""
        await eventually(lambda: len(self.gateway.clients.protocols) == 1)
        await eventually(lambda: len(self.gateway.context.conns) == 1)
        await self.assert_served()


@pytest_twisted.async_yield_fixture
async def bystander(gateway, fake_service):
    yield await Bystander(gateway, fake_service).connect()


async def hostile(gateway, answer_close: bool = True) -> RawWsClient:
    return await connect_raw_ws(gateway.port, answer_close=answer_close)


async def assert_closed_with(client: RawWsClient, code: int) -> None:
    """The gateway sent a close frame with ``code`` and closed the TCP connection."""
    await within(client.closed)
    assert client.close_frame is not None, f"no close frame, got {client.frames!r}"
    assert client.close_frame.close_code == code, client.close_frame


# ---------------------------------------------------------------------------
# Fragmented messages


@pytest.mark.parametrize("pieces", [2, 3, len(REQUEST)])
@pytest_twisted.ensureDeferred
async def test_fragmented_text_message_is_one_request(gateway, bystander, pieces):
    client = await hostile(gateway)
    size = -(-len(REQUEST) // pieces)
    chunks = [REQUEST[i:i + size] for i in range(0, len(REQUEST), size)]
    frames = [frame(OP_TEXT if i == 0 else OP_CONTINUATION, chunk, fin=i == len(chunks) - 1)
              for i, chunk in enumerate(chunks)]
    client.send(*frames)
    assert (await client.response(7))["result"] == "pong"
    client.send(close_frame(1000))
    await assert_closed_with(client, 1000)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_control_frames_inside_a_fragmented_message(gateway, bystander):
    client = await hostile(gateway)
    client.send(frame(OP_TEXT, REQUEST[:5], fin=False), frame(OP_PING, b"between"),
                frame(OP_CONTINUATION, REQUEST[5:10], fin=False), frame(OP_PONG, b"unasked"))
    pong = await client.wait_for(lambda f: f.opcode == OP_PONG)
    assert pong.payload == b"between"
    client.send(frame(OP_CONTINUATION, REQUEST[10:], fin=True))
    assert (await client.response(7))["result"] == "pong"
    await bystander.assert_served()


@pytest_twisted.ensureDeferred
async def test_continuation_without_a_start_closes_1002(gateway, bystander):
    client = await hostile(gateway)
    client.send(frame(OP_CONTINUATION, REQUEST))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    await bystander.assert_alone()


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("answer_close", [True, False], ids=["answers close", "never answers"])
@pytest_twisted.ensureDeferred
async def test_new_message_inside_a_fragmented_one_closes_1002(gateway, bystander, opcode, answer_close):
    """A client that never answers the close frame is dropped after the closing handshake's time."""
    client = await hostile(gateway, answer_close)
    client.send(frame(OP_TEXT, REQUEST[:5], fin=False), frame(opcode, REQUEST))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    assert not [f for f in client.frames if f.opcode == OP_TEXT]
    await bystander.assert_alone()


# ---------------------------------------------------------------------------
# Payloads


INVALID_UTF8 = [
    b'{"id":1,"method":"call.test.model.\xff"}',
    b'{"id":1,"method":"version","params":{"x":"\xed\xa0\x80"}}',  # a surrogate
    b'{"id":1,"method":"version","params":"\xe2\x82',  # ends inside a code point
]


@pytest.mark.parametrize("payload", INVALID_UTF8, ids=["byte ff", "surrogate", "truncated"])
@pytest_twisted.ensureDeferred
async def test_invalid_utf8_text_closes_1007(gateway, bystander, payload):
    client = await hostile(gateway)
    client.send(text_frame(payload))
    await assert_closed_with(client, CLOSE_INVALID_PAYLOAD)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_across_fragments_closes_1007(gateway, bystander):
    client = await hostile(gateway)
    # "\xe2\x82" then "\x28": a three-byte sequence broken in its last byte, across frames.
    client.send(frame(OP_TEXT, b'{"id":1,"method":"version","x":"\xe2\x82', fin=False),
                frame(OP_CONTINUATION, b'\x28"}'))
    await assert_closed_with(client, CLOSE_INVALID_PAYLOAD)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_utf8_sequence_split_across_fragments_is_valid(gateway, bystander):
    client = await hostile(gateway)
    message = json.dumps({"id": 3, "method": "version", "params": {"protocol": "1.2.3"}, "x": "\u20ac"},
                         ensure_ascii=False).encode()
    cut = message.index("\u20ac".encode()) + 1
    client.send(frame(OP_TEXT, message[:cut], fin=False), frame(OP_CONTINUATION, message[cut:]))
    assert (await client.response(3))["result"] == {"protocol": "1.2.3"}
    await bystander.assert_served()


@pytest.mark.parametrize("size", [MAX_MESSAGE_SIZE + 1, 1 << 62])
@pytest_twisted.ensureDeferred
async def test_frame_over_limit_closes_1009_before_its_payload(gateway, bystander, size):
    client = await hostile(gateway)
    # Only the header: the gateway must not wait for (or buffer) the payload it announces.
    client.send(_header_only(OP_TEXT, size))
    await assert_closed_with(client, CLOSE_MESSAGE_TOO_BIG)
    await bystander.assert_alone()


def _header_only(opcode: int, size: int) -> bytes:
    """A masked frame's header announcing ``size`` bytes of payload, without the payload."""
    head = bytes([0x80 | opcode])
    if size < 1 << 16:
        return head + bytes([0x80 | 126]) + struct.pack("!H", size) + b"\0\0\0\0"
    return head + bytes([0x80 | 127]) + struct.pack("!Q", size) + b"\0\0\0\0"


@pytest_twisted.ensureDeferred
async def test_message_over_limit_in_fragments_closes_1009(gateway, bystander):
    client = await hostile(gateway)
    piece = b" " * (MAX_MESSAGE_SIZE // 4)
    client.send(frame(OP_TEXT, b'{"id":1,"method":"version","x":"', fin=False))
    for _ in range(5):
        client.send(frame(OP_CONTINUATION, piece, fin=False))
    await assert_closed_with(client, CLOSE_MESSAGE_TOO_BIG)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_message_at_limit_is_a_request(gateway, bystander):
    client = await hostile(gateway)
    padding = MAX_MESSAGE_SIZE - len(b'{"id":5,"method":"version","x":""}')
    message = b'{"id":5,"method":"version","x":"' + b"a" * padding + b'"}'
    assert len(message) == MAX_MESSAGE_SIZE
    client.send(frame(OP_TEXT, message))
    assert (await client.response(5, timeout=10))["result"] == {"protocol": "1.2.3"}
    await bystander.assert_served()


@pytest_twisted.ensureDeferred
async def test_binary_message_is_a_request(gateway, bystander):
    """Resgate reads a binary message as a request as well (gorilla's ReadMessage ignores the type)."""
    client = await hostile(gateway)
    client.send(frame(OP_BINARY, REQUEST))
    response = await client.response(7)
    assert response["result"] == "pong"
    # Answered in a text frame, as every response.
    assert [f.opcode for f in client.frames] == [OP_TEXT]
    await bystander.assert_served()


@pytest.mark.parametrize("payload", [b"\xff\xfe", b'{"id":1,"method":"version","x":"\xff"}', b""])
@pytest_twisted.ensureDeferred
async def test_binary_message_that_is_no_json_gets_no_reply(gateway, bystander, payload):
    client = await hostile(gateway)
    client.send(frame(OP_BINARY, payload))
    client.request(2, "version")
    assert (await client.response(2))["result"] == {"protocol": "1.2.3"}
    assert len([f for f in client.frames if f.opcode == OP_TEXT]) == 1
    await bystander.assert_served()


# ---------------------------------------------------------------------------
# Compressed messages (--wscompression)

DEFLATE = {"Sec-WebSocket-Extensions": "permessage-deflate"}


def deflated(payload: bytes) -> bytes:
    """``payload`` as a permessage-deflate message body (RFC 7692: raw deflate, the flush tail cut)."""
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


@pytest_twisted.async_yield_fixture
async def compressing(gateway_factory, fake_service):
    """A gateway with --wscompression, its bystander, and a raw client that negotiated deflate."""
    gateway = await gateway_factory(ws_compression=True)
    bystander = await Bystander(gateway, fake_service).connect()
    client = await connect_raw_ws(gateway.port, headers=DEFLATE)
    assert b"permessage-deflate" in client.response_head.lower()
    yield client, bystander


@pytest_twisted.ensureDeferred
async def test_compressed_request_is_answered(compressing):
    client, bystander = compressing
    client.send(frame(OP_TEXT, deflated(REQUEST), rsv=4))
    answer = await client.wait_for(lambda f: f.opcode == OP_TEXT)
    assert answer.rsv == 4
    inflated = zlib.decompressobj(wbits=-15).decompress(answer.payload + b"\x00\x00\xff\xff")
    assert json.loads(inflated) == {"id": 7, "result": "pong"}
    await bystander.assert_served()


@pytest_twisted.ensureDeferred
async def test_compression_bomb_closes_1009(compressing):
    """A few KiB that inflate past MAX_MESSAGE_SIZE: stopped while inflating, not after."""
    client, bystander = compressing
    bomb = deflated(b'{"id":1,"method":"version","x":"' + b" " * (8 * MAX_MESSAGE_SIZE) + b'"}')
    assert len(bomb) < 64 * 1024
    client.send(frame(OP_TEXT, bomb, rsv=4))
    await assert_closed_with(client, CLOSE_MESSAGE_TOO_BIG)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_corrupt_compressed_data_closes_1007(compressing):
    client, bystander = compressing
    client.send(frame(OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv=4))
    await assert_closed_with(client, CLOSE_INVALID_PAYLOAD)
    await bystander.assert_alone()


# ---------------------------------------------------------------------------
# Framing


@pytest_twisted.ensureDeferred
async def test_unmasked_frame_closes_1002(gateway, bystander):
    client = await hostile(gateway)
    client.send(frame(OP_TEXT, REQUEST, masked=False))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    assert not [f for f in client.frames if f.opcode == OP_TEXT]
    await bystander.assert_alone()


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
@pytest_twisted.ensureDeferred
async def test_reserved_bits_close_1002(gateway, bystander, rsv):
    client = await hostile(gateway)
    client.send(frame(OP_TEXT, REQUEST, rsv=rsv))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    await bystander.assert_alone()


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
@pytest_twisted.ensureDeferred
async def test_unknown_opcode_closes_1002(gateway, bystander, opcode):
    client = await hostile(gateway)
    client.send(frame(opcode, b"x"))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    await bystander.assert_alone()


@pytest.mark.parametrize("bad", ["too long", "fragmented"])
@pytest_twisted.ensureDeferred
async def test_bad_control_frame_closes_1002(gateway, bystander, bad):
    client = await hostile(gateway)
    client.send(frame(OP_PING, b"x" * 126) if bad == "too long" else frame(OP_PING, b"x", fin=False))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    assert client.pongs() == []
    await bystander.assert_alone()


# ---------------------------------------------------------------------------
# Several frames in one read: the gateway reads whole data frames itself
# (ws.ClientProtocol._read_whole_messages) and leaves Autobahn the rest.


def version_request(request_id: int, **extra: object) -> bytes:
    """A request the gateway answers itself, at once: its answers come in request order."""
    return json.dumps({"id": request_id, "method": "version", **extra}).encode()


def answered_ids(client: RawWsClient) -> list[int]:
    return [f.json()["id"] for f in client.frames if f.opcode == OP_TEXT]


def medium_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame with a 16-bit length, whatever the payload's size (the shortest form only from 126)."""
    mask = b"\x01\x02\x03\x04"
    return (bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


@pytest_twisted.ensureDeferred
async def test_whole_frames_in_one_read_are_requests_in_order(gateway, bystander):
    client = await hostile(gateway)
    long_text = version_request(3, x="\u20ac" * 100)  # 16-bit length, not ASCII
    assert len(long_text) >= 126
    client.send(text_frame(version_request(1)), frame(OP_BINARY, version_request(2)),
                medium_frame(OP_TEXT, long_text), text_frame(b""), text_frame(version_request(4)))
    await client.response(4)
    # The empty message is no JSON: no reply, as when it comes alone.
    assert answered_ids(client) == [1, 2, 3, 4]
    await bystander.assert_served()


@pytest_twisted.ensureDeferred
async def test_a_ping_and_a_cut_frame_after_whole_ones_in_one_read(gateway, bystander):
    client = await hostile(gateway)
    last = text_frame(version_request(4))
    client.send(text_frame(version_request(1)), frame(OP_PING, b"between"), text_frame(version_request(2)),
                frame(OP_TEXT, version_request(3)[:4], fin=False), frame(OP_CONTINUATION, version_request(3)[4:]),
                last[:5])
    await client.response(3)
    assert client.pongs() == [b"between"]
    client.send(last[5:])
    await client.response(4)
    assert answered_ids(client) == [1, 2, 3, 4]
    await bystander.assert_served()


@pytest.mark.parametrize("cut", [1, 2, 5, 7])
@pytest_twisted.ensureDeferred
async def test_a_frame_cut_anywhere_after_a_whole_one(gateway, bystander, cut):
    client = await hostile(gateway)
    second = medium_frame(OP_TEXT, version_request(2, x="y" * 200))
    client.send(text_frame(version_request(1)), second[:cut])
    await client.response(1)
    client.send(second[cut:])
    await client.response(2)
    assert answered_ids(client) == [1, 2]
    await bystander.assert_served()


@pytest.mark.parametrize("bad", ["invalid UTF-8", "unmasked", "reserved bit", "not shortest length"])
@pytest_twisted.ensureDeferred
async def test_a_bad_frame_after_whole_ones_in_one_read(gateway, bystander, bad):
    """The whole frames before it are answered; the bad one gets the close it gets alone."""
    payload = version_request(3)
    bad_frame = {
        "invalid UTF-8": text_frame(INVALID_UTF8[0]),
        "unmasked": frame(OP_TEXT, payload, masked=False),
        "reserved bit": frame(OP_TEXT, payload, rsv=1),
        "not shortest length": medium_frame(OP_TEXT, payload),
    }[bad]
    client = await hostile(gateway)
    client.send(text_frame(version_request(1)), text_frame(version_request(2)), bad_frame,
                text_frame(version_request(4)))
    code = CLOSE_INVALID_PAYLOAD if bad == "invalid UTF-8" else CLOSE_PROTOCOL_ERROR
    await assert_closed_with(client, code)
    assert answered_ids(client) == [1, 2]
    await bystander.assert_alone()


def mixed_stream(rng: random.Random, messages: int) -> tuple[bytes, list[bytes]]:
    """Requests 1..``messages`` as whole, 16-bit-length, binary or fragmented frames, pings between; and the pings' payloads."""
    stream = []
    pings = []
    for request_id in range(1, messages + 1):
        kind = rng.choice(["whole", "medium", "binary", "fragments"])
        if kind == "whole":
            stream.append(text_frame(version_request(request_id)))
        elif kind == "medium":
            stream.append(medium_frame(OP_TEXT, version_request(request_id, x="\u20ac" * rng.randint(50, 500))))
        elif kind == "binary":
            stream.append(frame(OP_BINARY, version_request(request_id)))
        else:
            payload = version_request(request_id)
            cut = rng.randint(1, len(payload) - 1)
            stream += [frame(OP_TEXT, payload[:cut], fin=False), frame(OP_CONTINUATION, payload[cut:])]
        if rng.random() < 0.2:
            pings.append(b"%d" % request_id)
            stream.append(frame(OP_PING, pings[-1]))
    return b"".join(stream), pings


@pytest.mark.parametrize("seed", range(5))
@pytest_twisted.ensureDeferred
async def test_a_mixed_stream_in_random_reads_loses_and_reorders_nothing(gateway, bystander, seed):
    """Whatever the reads cut, the gateway's whole-frame reading and Autobahn's take turns without a byte lost."""
    rng = random.Random(seed)
    messages = 200
    stream, pings = mixed_stream(rng, messages)
    client = await hostile(gateway)
    offset = 0
    while offset < len(stream):
        size = rng.choice([1, 2, 3, 7, 64, 500, 4000])
        client.send(stream[offset:offset + size])
        offset += size
        await sleep(0)  # a read of its own, mostly
    await client.response(messages)
    assert answered_ids(client) == list(range(1, messages + 1))
    await eventually(lambda: len(client.pongs()) == len(pings))
    assert client.pongs() == pings
    await bystander.assert_served()


@pytest_twisted.ensureDeferred
async def test_a_16_bit_length_that_fits_7_bits_closes_1002(gateway, bystander):
    client = await hostile(gateway)
    client.send(medium_frame(OP_TEXT, version_request(1)))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    assert answered_ids(client) == []
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_whole_frames_after_a_close_frame_in_one_read_are_not_requests(gateway, bystander):
    client = await hostile(gateway)
    client.send(text_frame(version_request(1)), close_frame(1000), text_frame(version_request(2)))
    await assert_closed_with(client, 1000)
    assert answered_ids(client) == [1]
    await bystander.assert_alone()


# ---------------------------------------------------------------------------
# Pings

PINGS = 2000


@pytest_twisted.ensureDeferred
async def test_ping_flood_gets_a_pong_for_each_ping(gateway, bystander):
    client = await hostile(gateway)
    payloads = [b"%d" % i + b"." * 100 for i in range(PINGS)]
    for i in range(0, PINGS, 100):
        client.send(*(frame(OP_PING, p) for p in payloads[i:i + 100]))
        await bystander.assert_served()
    await eventually(lambda: len(client.pongs()) == PINGS, 10)
    assert client.pongs() == payloads
    client.request(1, "version")
    assert (await client.response(1))["result"] == {"protocol": "1.2.3"}


class PingFlooder(RawWsClient):
    """Sends pings as fast as the gateway reads them, and never reads a pong."""

    sent = 0

    def flood(self) -> None:
        self.transport.registerProducer(self, True)
        self.transport.pauseProducing()  # never read again
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self._producing = True
        batch = frame(OP_PING, b"p" * 125) * 500
        while self._producing and self.transport.connected:
            self.transport.write(batch)
            self.sent += 500

    def pauseProducing(self) -> None:
        self._producing = False

    def stopProducing(self) -> None:
        self._producing = False


@pytest_twisted.ensureDeferred
async def test_ping_flood_without_reading_is_cut_off(gateway_factory, fake_service):
    """Pongs count against the bound on unread output like any message (docs/design.md, invariant 5)."""
    from twisted.internet import reactor

    gateway = await gateway_factory(ws_max_unread=MIN_WS_MAX_UNREAD)
    bystander = await Bystander(gateway, fake_service).connect()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window, so the gateway's own buffers fill soon.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.setblocking(False)
    client = PingFlooder()
    reactor.adoptStreamConnection(sock.fileno(), socket.AF_INET, protocol.Factory.forProtocol(lambda: client))
    sock.close()  # the reactor holds its own duplicate
    await within(client.opened)
    await eventually(lambda: len(gateway.clients.protocols) == 2)
    client.flood()
    await within(client.closed, 30)
    await bystander.assert_alone()


# ---------------------------------------------------------------------------
# Closing


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1012, 3000, 4999])
@pytest_twisted.ensureDeferred
async def test_valid_close_code_is_echoed(gateway, bystander, code):
    client = await hostile(gateway)
    client.send(close_frame(code, "bye ✓".encode()))
    await assert_closed_with(client, code)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_close_without_code_is_answered(gateway, bystander):
    client = await hostile(gateway)
    client.send(close_frame())
    await within(client.closed)
    assert client.close_frame is not None
    await bystander.assert_alone()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
@pytest_twisted.ensureDeferred
async def test_invalid_close_code_closes_1002(gateway, bystander, code):
    client = await hostile(gateway)
    client.send(close_frame(code))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    await bystander.assert_alone()


@pytest_twisted.ensureDeferred
async def test_one_byte_close_payload_closes_1002(gateway, bystander):
    client = await hostile(gateway)
    client.send(frame(OP_CLOSE, b"\x03"))
    await assert_closed_with(client, CLOSE_PROTOCOL_ERROR)
    await bystander.assert_alone()


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xe2\x82", b"\xed\xa0\x80"], ids=["ff", "truncated", "surrogate"])
@pytest_twisted.ensureDeferred
async def test_close_reason_not_utf8_closes_1007(gateway, bystander, reason):
    client = await hostile(gateway)
    client.send(close_frame(1000, reason))
    await assert_closed_with(client, CLOSE_INVALID_PAYLOAD)
    await bystander.assert_alone()
