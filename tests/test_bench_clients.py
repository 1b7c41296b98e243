"""bench/clients.mjs's RawClient: the load generator's WebSocket without `ws`, against real servers.

Against the gateway it must do what a RES client does (version, subscribe,
an event), with frames of every length form; against hand-written servers
it must refuse a bad handshake and read frames that arrive fragmented and
in pieces, answering a ping. It needs only Node's own modules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor, utils

from tests.rig.aio import within

CLIENTS = Path(__file__).resolve().parent.parent / "bench" / "clients.mjs"
MODEL = "benchclient.model"
MEDIUM = "benchclient.medium"  # its subscribe response needs a 16-bit length
LARGE = "benchclient.large"  # and this one a 64-bit length
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Opens one client, agrees on the version, subscribes each rid named, then
# (with any) calls poke and waits for the event it causes. Prints JSON lines.
SCRIPT = """
import { RawClient } from %s;
const [url, ...rids] = process.argv.slice(1);
const say = (line) => console.log(JSON.stringify(line));
setTimeout(() => { say({ error: 'timed out' }); process.exit(3); }, 8000).unref();
try {
  const client = await RawClient.open(url);
  say({ version: await client.call('version', { protocol: '1.2.3' }) });
  for (const rid of rids) say({ subscribed: await client.call(`subscribe.${rid}`) });
  if (rids.length) {
    const event = new Promise((resolve) => { client.onEvent = resolve; });
    await client.call(`call.${rids[0]}.poke`);
    say({ event: await event });
  }
  client.close();
} catch (error) {
  say({ error: error.message });
}
"""


async def run_client(url: str, *rids: str) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (needed for bench/clients.mjs): install Node.js")
    script = SCRIPT % json.dumps(CLIENTS.as_uri())
    out, err, code = await within(utils.getProcessOutputAndValue(
        node, ["--input-type=module", "-e", script, url, *rids], env={}), 15)
    assert code == 0, err.decode(errors="replace")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@pytest_twisted.ensureDeferred
async def test_a_res_client_round_trip_through_the_gateway(gateway, fake_service):
    resources = {MODEL: {"seq": 1}, MEDIUM: {"text": "m" * 300}, LARGE: {"text": "l" * 70000}}
    for rid, model in resources.items():
        fake_service.on(f"access.{rid}", lambda r: r.respond_result({"get": True, "call": "*"}))
        fake_service.on(f"get.{rid}", lambda r, model=model: r.respond_result({"model": model}))

    def poke(request) -> None:
        fake_service.event(MODEL, "change", {"values": {"seq": 2}})
        request.respond_result(None)

    fake_service.on(f"call.{MODEL}.poke", poke)
    lines = await run_client(gateway.ws_url, MODEL, MEDIUM, LARGE)
    assert lines[0] == {"version": {"protocol": "1.2.3"}}
    assert [line["subscribed"]["models"] for line in lines[1:4]] == [{rid: model} for rid, model in resources.items()]
    assert lines[4] == {"event": {"event": f"{MODEL}.change", "data": {"values": {"seq": 2}}}}
    assert len(lines) == 5


class Answering(protocol.Protocol):
    """A WebSocket server by hand: the handshake answered as ``answer`` says (the right accept key, a
    wrong one, 400, or a close before any answer), the client's frames kept."""

    def __init__(self, answer: str, pieces: list[bytes]) -> None:
        self.answer = answer
        self.pieces = pieces
        self.buffer = b""
        self.opened = False
        self.frames: list[tuple[int, bytes]] = []

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        if self.answer == "close":
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.opened:
            head, sep, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            self.opened = True
            key = re.search(rb"(?im)^sec-websocket-key: *(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            if self.answer == "wrong":
                accept = base64.b64encode(hashlib.sha1(b"another key" + GUID).digest())
            status = b"400 Bad Request" if self.answer == "400" else b"101 Switching Protocols"
            self.transport.write(b"HTTP/1.1 " + status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while len(self.buffer) >= 6:  # the client's frames: short and masked
            length = self.buffer[1] & 0x7F
            assert self.buffer[1] & 0x80 and length < 126
            if len(self.buffer) < 6 + length:
                return
            mask, payload = self.buffer[2:6], self.buffer[6:6 + length]
            self.frames.append((self.buffer[0], bytes(b ^ mask[i % 4] for i, b in enumerate(payload))))
            self.buffer = self.buffer[6 + length:]
            if len(self.frames) == 1:  # the version request: answer it in pieces
                for i, piece in enumerate(self.pieces):
                    reactor.callLater(0.02 * i, self.transport.write, piece)


def frame(first: int, payload: bytes) -> bytes:
    return struct.pack("!BB", first, len(payload)) + payload


class Serving(protocol.Factory):
    """Makes an ``Answering`` server for each connection, and keeps them."""

    def __init__(self, answer: str, pieces: list[bytes]) -> None:
        self.answer = answer
        self.pieces = pieces
        self.servers: list[Answering] = []

    def buildProtocol(self, addr) -> Answering:
        server = Answering(self.answer, list(self.pieces))
        self.servers.append(server)
        return server


async def against(answer: str, pieces: list[bytes] = ()) -> tuple[list[dict], Answering | None]:
    """RawClient's lines against an ``Answering`` server, and that server (None if never connected)."""
    factory = Serving(answer, list(pieces))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        lines = await run_client(f"ws://127.0.0.1:{port.getHost().port}/")
    finally:
        await port.stopListening()
    return lines, (factory.servers[0] if factory.servers else None)


@pytest_twisted.ensureDeferred
async def test_fragments_in_pieces_are_joined_and_a_ping_answered():
    reply = b'{"id":1,"result":{"protocol":"1.2.3"}}'
    whole = frame(0x89, b"ping!") + frame(0x01, reply[:10])  # in one read: the fragment must outlive it
    rest = frame(0x89, b"again") + frame(0x80, reply[10:])
    # The rest split inside a header and a payload; its last read is long
    # enough to overwrite where the first fragment was read.
    pieces = [whole, rest[:1], rest[1:4], rest[4:]]
    assert len(rest[4:]) > len(whole)
    lines, server = await against("right", pieces)
    assert lines == [{"version": {"protocol": "1.2.3"}}]
    opcodes = [first for first, _ in server.frames]
    assert json.loads(server.frames[0][1]) == {"id": 1, "method": "version", "params": {"protocol": "1.2.3"}}
    assert opcodes[0] == 0x81
    assert [payload for first, payload in server.frames if first == 0x8A] == [b"ping!", b"again"]


@pytest.mark.parametrize("answer, error", [
    ("wrong", "handshake refused: HTTP/1.1 101 Switching Protocols"),
    ("400", "handshake refused: HTTP/1.1 400 Bad Request"),
    ("close", "closed during the handshake"),
])
@pytest_twisted.ensureDeferred
async def test_a_bad_handshake_is_refused(answer, error):
    lines, _ = await against(answer)
    assert lines == [{"error": error}]
