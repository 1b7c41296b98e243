"""The gateway's own opening of a plain upgrade against Autobahn's handshake.

``ClientProtocol`` opens an upgrade that passes all of Autobahn's checks
without running them (``_open_plain_upgrade``) and leaves every other head to
Autobahn. Each head below is sent twice over loopback to one gateway: once
as the gateway takes it, once with the plain handshake off, so Autobahn's
handshake answers. Both must write the same bytes and, for an upgrade,
leave the server's protocol in the same state. The plain handshake's options
also ready each connection without Autobahn's connectionMade (connect_plainly),
so the states compared are those two steps' together. For the plain heads,
the test also checks that neither of Autobahn's steps ran, so a fast path
that stops being taken fails here too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet import task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.rig.aio import WAIT_TIMEOUT, eventually, within
from tests.rig.api import RawClient

pytestmark = pytest.mark.usefixtures("logged_errors", "logged_failures")

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def head(*lines: str, target: str = "/", key: str = KEY) -> bytes:
    """An upgrade of ``target`` with the headers every upgrade needs, then ``lines``."""
    base = ["Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    return (f"GET {target} HTTP/1.1\r\n" + "".join(line + "\r\n" for line in base + list(lines)) + "\r\n").encode()


def raw_head(*lines: str) -> bytes:
    """An upgrade's head of exactly ``lines`` (request line first)."""
    return ("".join(line + "\r\n" for line in lines) + "\r\n").encode()


#: Upgrades the gateway opens itself; what a browser, Node's ws and others send.
PLAIN = {
    "node ws": raw_head("GET / HTTP/1.1", f"Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {KEY}",
                        "Connection: Upgrade", "Upgrade: websocket", "Host: 127.0.0.1:8080"),
    "browser": head("Origin: http://localhost:8080", "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
                    "Pragma: no-cache", "Cache-Control: no-cache", "Accept-Encoding: gzip, deflate, br",
                    "Accept-Language: en-US,en;q=0.9", "Cookie: session=abc; theme=dark",
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
    "firefox": raw_head("GET / HTTP/1.1", "Host: example.com", "Upgrade: websocket",
                        "Connection: keep-alive, Upgrade", "Sec-WebSocket-Version: 13",
                        "Origin: https://example.com", f"Sec-WebSocket-Key: {KEY}",
                        "Sec-WebSocket-Extensions: permessage-deflate"),
    "query": head(target="/?token=abc&a=1&a=2"),
    "null origin": head("Origin: null"),
    "origin with port": head("Origin: HTTP://Example.COM:65535"),
    "upgrade in a list": raw_head("GET / HTTP/1.1", "Host: [::1]:80", "Upgrade: foo, WebSocket",
                                  "Connection: keep-alive,upgrade", f"Sec-WebSocket-Key:  {KEY} ",
                                  "Sec-WebSocket-Version: 13"),
    "IPv6 host without port": head(target="/?x=1").replace(b"Host: 127.0.0.1", b"Host: [::1]"),
}

#: Heads Autobahn answers (each refused or accepted by its own rules).
AUTOBAHN = {
    "key too short": head(key="dGhlIHNhbXBsZQ=="),
    "key with a bad character": head(key="dGhlIHNhbXBsZSBub25jZ!=="),
    "version 8": head().replace(b"Version: 13", b"Version: 8"),
    "version 12": head().replace(b"Version: 13", b"Version: 12"),
    "version 013": head().replace(b"Version: 13", b"Version: 013"),
    "no version": raw_head("GET / HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: Upgrade",
                           f"Sec-WebSocket-Key: {KEY}"),
    "host with a bad port": head().replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1:http"),
    "host with a spaced port": head().replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1: 80"),
    "no websocket upgrade": head().replace(b"Upgrade: websocket", b"Upgrade: h2c"),
    "no upgrade connection": head().replace(b"Connection: Upgrade", b"Connection: close"),
    "fragment": head(target="/?a#b"),
    "subprotocol": head("Sec-WebSocket-Protocol: res, other"),
    "duplicate subprotocol": head("Sec-WebSocket-Protocol: res, res"),
    "origin without host": head("Origin: foo"),
    "origin port out of range": head("Origin: http://example.com:99999"),
    "origin of a file": head("Origin: file://"),
    "origin with an IPv6 host": head("Origin: http://[::1]:8080"),
    "other extension offer": head("Sec-WebSocket-Extensions: x-webkit-deflate-frame"),
    "bad deflate parameter": head("Sec-WebSocket-Extensions: permessage-deflate; nonsense=1"),
    "repeated origin": head("Origin: http://a.example", "Origin: http://b.example"),
}


def state_of(server: WebSocketServerProtocol) -> dict[str, Any]:
    """What the server's protocol holds after the handshake, but what is per connection (peer, cid)."""
    state: dict[str, Any] = {}
    for name, value in vars(server).items():
        if name in ("peer", "transport", "conn", "_http_info", "is_open", "is_closed", "_transport_details"):
            state[name] = type(value).__name__
        elif name == "websocket_extensions_in_use":
            state[name] = [repr(extension) for extension in value]
        elif isinstance(value, (str, bytes, int, float, bool, list, dict, tuple, type(None))):
            state[name] = value
        else:
            state[name] = (type(value).__name__, sorted(k for k in vars(value) if not k.startswith("_"))
                           if hasattr(value, "__dict__") else None)
    state["traffic"] = vars(server.trafficStats)
    state["opened"] = server.is_open.called
    state["described"] = server._http_info is not None and server._http_info()["header"]
    return state


async def exchange(gateway, data: bytes, *, plain: bool, monkeypatch) -> tuple[bytes, dict | None, list[str]]:
    """Send ``data``; the server's answer, its protocol's state if it opened, and which of Autobahn's steps ran."""
    from twisted.internet import reactor

    clients = gateway.clients
    ran = []
    autobahn_handshake = WebSocketServerProtocol.processHandshake
    autobahn_connection_made = WebSocketServerProtocol.connectionMade

    def counted_handshake(self) -> None:
        ran.append("processHandshake")
        autobahn_handshake(self)

    def counted_connection_made(self) -> None:
        ran.append("connectionMade")
        autobahn_connection_made(self)

    with monkeypatch.context() as patch:
        patch.setattr(WebSocketServerProtocol, "processHandshake", counted_handshake)
        patch.setattr(WebSocketServerProtocol, "connectionMade", counted_connection_made)
        patch.setattr(clients.protocol, "plain_handshake", plain and clients.protocol.plain_handshake)
        before = set(clients.protocols)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port, timeout=WAIT_TIMEOUT)
        client = await within(connectProtocol(endpoint, RawClient(data)), WAIT_TIMEOUT)
        opened: list = []

        def answered() -> bool:
            opened[:] = [p for p in clients.protocols - before
                         if p.transport.getPeer().port == client.transport.getHost().port]
            if client.gone:
                return True
            if not client.received.startswith(b"HTTP/1.1 101 "):
                return False
            return bool(opened) and b"\r\n\r\n" in client.received

        await eventually(answered)
        state = state_of(opened[0]) if opened else None
        client.transport.loseConnection()
        await eventually(lambda: client.gone)
    return client.received, state, ran


def undated(answer: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", answer, count=1)


async def compare(gateway, data: bytes, monkeypatch) -> tuple[bytes, list[str]]:
    """Both handshakes' answers and states, asserted equal; the answer and which of Autobahn's steps ran for the gateway's."""
    ours, our_state, ran = await exchange(gateway, data, plain=True, monkeypatch=monkeypatch)
    autobahns, autobahn_state, autobahn_ran = await exchange(gateway, data, plain=False, monkeypatch=monkeypatch)
    assert autobahn_ran == ["connectionMade", "processHandshake"]
    # A refusal is dated; the two may be a second apart.
    assert undated(ours) == undated(autobahns)
    assert our_state == autobahn_state
    return ours, ran


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(PLAIN))
async def test_a_plain_upgrade_opens_as_autobahns_handshake_would(gateway, monkeypatch, name):
    answer, ran = await compare(gateway, PLAIN[name], monkeypatch)
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer  # RFC 6455's example
    assert ran == []
    # The headers of Resgate's 101: nothing naming the server or its version.
    names = [line.split(b":")[0].lower() for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
    assert names == [b"upgrade", b"connection", b"sec-websocket-accept"]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(AUTOBAHN))
async def test_any_other_head_is_autobahns_to_answer(gateway, monkeypatch, name):
    _, ran = await compare(gateway, AUTOBAHN[name], monkeypatch)
    assert ran == ["processHandshake"]


@pytest_twisted.ensureDeferred
async def test_a_forbidden_origin_is_refused_by_autobahns_handshake(gateway_factory, monkeypatch):
    gateway = await gateway_factory(allow_origin="http://allowed.example")
    answer, ran = await compare(gateway, head("Origin: http://other.example"), monkeypatch)
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert ran == ["processHandshake"]
    answer, ran = await compare(gateway, head("Origin: http://ALLOWED.example"), monkeypatch)
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert ran == []


@pytest_twisted.ensureDeferred
async def test_with_compression_an_offer_is_negotiated_by_autobahn(gateway_factory, monkeypatch):
    gateway = await gateway_factory(ws_compression=True)
    answer, ran = await compare(gateway, PLAIN["browser"], monkeypatch)
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate" in answer
    assert ran == ["processHandshake"]
    _, ran = await compare(gateway, PLAIN["node ws"], monkeypatch)
    assert ran == []


def masked_text_frame(payload: bytes) -> bytes:
    """A client's text frame of up to 125 bytes, masked as RFC 6455 requires."""
    mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


VERSION_REQUEST = masked_text_frame(b'{"id":1,"method":"version","params":{"protocol":"1.2.3"}}')


async def sent_in_one_write(gateway, data: bytes) -> RawClient:
    """A client that sent ``data`` in one write; once the gateway answered it (101 and the version reply) or closed."""
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port, timeout=WAIT_TIMEOUT)
    client = await within(connectProtocol(endpoint, RawClient(data)), WAIT_TIMEOUT)
    await eventually(lambda: client.gone or b'"protocol":' in client.received)
    return client


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", ["node ws", "browser", "subprotocol", "compression", "header auth"])
async def test_a_client_that_sends_before_the_handshake_s_answer_is_closed_unanswered(gateway_factory, name):
    """RFC 6455 has a client wait for the 101; Resgate closes one that did not, and so does the gateway."""
    settings: dict[str, Any] = {"ws_compression": name == "compression"}
    if name == "header auth":
        settings["ws_header_auth"] = "auth.ws.login"
    gateway = await gateway_factory(**settings)
    upgrade = head("Sec-WebSocket-Protocol: res") if name == "subprotocol" else PLAIN.get(name, PLAIN["browser"])
    client = await sent_in_one_write(gateway, upgrade + VERSION_REQUEST)
    assert client.gone and client.received == b""
    assert not gateway.clients.protocols


@pytest_twisted.ensureDeferred
async def test_the_same_request_after_the_101_is_answered(gateway):
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port, timeout=WAIT_TIMEOUT)
    client = await within(connectProtocol(endpoint, RawClient(PLAIN["node ws"])), WAIT_TIMEOUT)
    await eventually(lambda: client.gone or b"\r\n\r\n" in client.received)
    client.transport.write(VERSION_REQUEST)
    await eventually(lambda: client.gone or b'"protocol":' in client.received)
    assert client.received.startswith(b"HTTP/1.1 101 ") and b'"protocol":"1.2.3"' in client.received
    client.transport.loseConnection()
    await eventually(lambda: client.gone)


@pytest_twisted.ensureDeferred
async def test_a_head_in_two_reads_with_a_frame_after_it_is_closed_unanswered(gateway):
    """The end of the head and the frame in one read, its start in an earlier one (twisted.web's way, not the direct one)."""
    from twisted.internet import reactor

    upgrade = PLAIN["node ws"]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port, timeout=WAIT_TIMEOUT)
    client = await within(connectProtocol(endpoint, RawClient(upgrade[:20])), WAIT_TIMEOUT)
    await task.deferLater(reactor, 0.05)  # most likely read apart; either way the answer is the same
    client.transport.write(upgrade[20:] + VERSION_REQUEST)
    await eventually(lambda: client.gone or bool(client.received))
    assert client.gone and client.received == b""


#: Requests to the WebSocket path that Resgate 1.8 refuses, and its status for each (seen from Go
#: Resgate 1.8.0 here): gorilla/websocket checks the Connection and Upgrade tokens, then the method.
#: Two heads are answered otherwise on purpose: a key that is not 16 bytes in base64 (RFC 6455's
#: rule; Resgate upgrades it) and no Host (net/http's answer, tests/test_http_hostile.py).
REFUSED = {
    "GET without an upgrade": (raw_head("GET / HTTP/1.1", "Host: 127.0.0.1"), 400),
    "GET with a query": (raw_head("GET /?x=1 HTTP/1.1", "Host: 127.0.0.1"), 400),
    "HEAD": (raw_head("HEAD / HTTP/1.1", "Host: 127.0.0.1"), 400),
    "POST": (raw_head("POST / HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 2") + b"{}", 400),
    "OPTIONS": (raw_head("OPTIONS / HTTP/1.1", "Host: 127.0.0.1", "Origin: http://127.0.0.1"), 400),
    "PUT with an upgrade": (head().replace(b"GET ", b"PUT ", 1), 405),
    "POST without a Connection token": (head().replace(b"GET ", b"POST ", 1).replace(b"Connection: Upgrade", b"Connection: close"), 400),
    "version 8": (AUTOBAHN["version 8"], 400),
    "no version": (AUTOBAHN["no version"], 400),
    "no upgrade connection": (AUTOBAHN["no upgrade connection"], 400),
    "no websocket upgrade": (AUTOBAHN["no websocket upgrade"], 400),
    "forbidden origin": (head("Origin: http://other.example"), 403),
}
REASONS = {400: b"Bad Request", 403: b"Forbidden", 405: b"Method Not Allowed"}


def refusal_of(answer: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """A refusal's status line, headers (Date's value dropped) and body."""
    head_part, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head_part.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", headers.pop(b"Date"))
    return status_line, headers, body


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_refused_request_gets_resgates_answer_then_the_connection_closes(gateway_factory, name):
    """Status, headers and plain-text body as Resgate's, not Autobahn's status page or bare status line."""
    data, status = REFUSED[name]
    gateway = await gateway_factory(allow_origin="http://127.0.0.1")
    client = await sent_in_one_write(gateway, data)
    await eventually(lambda: client.gone)
    reason = REASONS[status]
    body = b"" if data.startswith(b"HEAD ") else reason + b"\n"
    assert refusal_of(client.received) == (b"HTTP/1.1 %d %s" % (status, reason), {
        b"Content-Type": b"text/plain; charset=utf-8", b"Sec-Websocket-Version": b"13",
        b"X-Content-Type-Options": b"nosniff", b"Content-Length": str(len(reason) + 1).encode(),
        b"Connection": b"close"}, body)
    assert not gateway.clients.protocols


@pytest_twisted.ensureDeferred
async def test_a_get_of_the_websocket_path_without_an_upgrade_is_answered_with_bytes_after_it_too(gateway):
    """Not an upgrade: refused as the same GET alone is, not closed unanswered."""
    plain_get = raw_head("GET / HTTP/1.1", "Host: 127.0.0.1")
    answers = []
    for data in (plain_get, plain_get + plain_get):
        client = await sent_in_one_write(gateway, data)
        await eventually(lambda: client.gone)
        answers.append(refusal_of(client.received))
    assert answers[0] == answers[1] and answers[0][0] == b"HTTP/1.1 400 Bad Request"
