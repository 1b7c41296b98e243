"""Helpers for the HTTP API scenarios: requests in flight, raw HTTP, header auth.

``send`` starts a request and returns a Deferred, so a scenario can play
the service's part while the gateway waits for it (``await`` the Deferred
afterwards). ``raw_request`` writes bytes as given on a plain socket, for
hostile input no HTTP client would send, and parses the answer;
``raw_client`` keeps such a socket open to write to it when told (slow
clients, keep-alive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import treq
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.rig.aio import WAIT_TIMEOUT, eventually, sleep, within
from tests.rig.http import HttpResponse
from tests.rig.resources import ERR_NOT_FOUND, get_result, respond_get

#: The Content-Type of every API response with a body.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# The --alloworigin scenarios GET and POST share:
# (Origin header or None, --alloworigin, status, expected headers, headers that must be missing).
ALLOW_ORIGIN_CASES = [
    ("http://localhost", "*", 200, {"access-control-allow-origin": "*"},
     ["vary", "access-control-allow-credentials"]),
    ("http://localhost", "http://localhost", 200,
     {"access-control-allow-origin": "http://localhost", "vary": "Origin"}, ["access-control-allow-credentials"]),
    ("https://resgate.io", "http://localhost;https://resgate.io", 200,
     {"access-control-allow-origin": "https://resgate.io", "vary": "Origin"}, ["access-control-allow-credentials"]),
    ("http://example.com", "http://localhost;https://resgate.io", 403,
     {"access-control-allow-origin": "http://localhost", "vary": "Origin"}, ["access-control-allow-credentials"]),
    (None, "*", 200, {"access-control-allow-origin": "*"}, ["vary"]),
    (None, "http://localhost", 200, {}, ["access-control-allow-origin", "vary"]),
]


def assert_headers(response: HttpResponse, present: dict[str, str], missing: list[str]) -> None:
    """``response`` has each header of ``present`` with its value and none of ``missing``."""
    for name, value in present.items():
        assert response.header(name) == value, response
    for name in missing:
        assert response.header(name) is None, response


# Errors only the HTTP API answers with, as they appear in bodies.
ERR_BAD_REQUEST = {"code": "system.badRequest", "message": "Bad request"}
ERR_METHOD_NOT_ALLOWED = {"code": "system.methodNotAllowed", "message": "Method not allowed"}
ERR_FORBIDDEN_ORIGIN = {"code": "system.forbidden", "message": "Forbidden origin"}
ERR_FORBIDDEN = {"code": "system.forbidden", "message": "Forbidden"}
ERR_SERVICE_UNAVAILABLE = {"code": "system.serviceUnavailable", "message": "Service unavailable"}
ERR_NOT_IMPLEMENTED = {"code": "system.notImplemented", "message": "Not implemented"}


def send(gateway, method: str, path: str, body: bytes | None = None,
         headers: dict[str, Any] | None = None) -> defer.Deferred:
    """Start ``method`` on ``path`` (relative to the API path) now; a Deferred of the HttpResponse.

    Redirects are not followed: a 3XX is a response to check like any other.
    """
    return defer.ensureDeferred(request(method, gateway.api_url + path, body=body, headers=headers))


async def request(method: str, url: str, *, body: bytes | None = None, headers: dict[str, Any] | None = None,
                  timeout: float = WAIT_TIMEOUT) -> HttpResponse:
    """One request over loopback, read whole and bounded by ``timeout``; no redirects followed."""
    response = await within(treq.request(method, url, data=body, headers=headers, persistent=False,
                                         allow_redirects=False), timeout)
    content = await within(treq.content(response), timeout)
    headers_out = {k.decode().lower(): [v.decode() for v in vs]
                   for k, vs in response.headers.getAllRawHeaders()}
    return HttpResponse(response.code, headers_out, content)


def server_url(gateway) -> str:
    """``http://127.0.0.1:<port>``: the gateway's root, for paths outside the API path."""
    return f"{gateway.config.scheme}://127.0.0.1:{gateway.port}"


def assert_error(response: HttpResponse, status: int, error: dict) -> None:
    assert (response.status, response.json()) == (status, error), response
    assert response.header("content-type") == JSON_CONTENT_TYPE, response


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reason: str = ""

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class _Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        # A response with a complete body is enough; the server need not close.
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if sep:
            if head.startswith(b"HTTP/1.1 101 "):
                # An upgraded connection: its HTTP response ends with the headers.
                self.transport.loseConnection()
                return
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.done.callback(self.data)


class RawClient(protocol.Protocol):
    """Writes ``data`` once connected; keeps what the server sends."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.gone = False

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.gone = True


async def answer_before_close(port: int, data: bytes, timeout: float = WAIT_TIMEOUT) -> bytes:
    """All the gateway writes for ``data`` until it closes the connection (which it must, within ``timeout``)."""
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    client = await within(connectProtocol(endpoint, RawClient(data)), timeout)
    await eventually(lambda: client.gone, timeout)
    return client.received


async def raw_request(port: int, data: bytes, timeout: float = WAIT_TIMEOUT) -> RawResponse:
    """Write ``data`` to the gateway as it is; the parsed response (read until close or complete)."""
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    proto = await within(defer.ensureDeferred(_connect(endpoint)), timeout)
    proto.transport.write(data)
    raw = await within(proto.done, timeout)
    return parse_response(raw)


async def _connect(endpoint) -> _Collect:
    return await endpoint.connect(protocol.Factory.forProtocol(_Collect))


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        raise AssertionError(f"not an HTTP response: {raw[:200]!r}")
    _, status_code, reason = (lines[0].split(" ", 2) + [""])[:3]
    status = int(status_code)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return RawResponse(status, headers, body, reason)


class RawHttpClient(protocol.Protocol):
    """Writes what it is told when it is told; keeps what arrives."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason=None) -> None:
        self.closed.callback(self.data)

    @property
    def responses(self) -> list:
        """The complete responses received so far (each with a Content-Length)."""
        found, rest = [], self.data
        while b"\r\n\r\n" in rest:
            head, _, body = rest.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) < length:
                break
            found.append(parse_response(head + b"\r\n\r\n" + body[:length]))
            rest = body[length:]
        return found

    @property
    def is_open(self) -> bool:
        return not self.closed.called


async def raw_client(port: int) -> RawHttpClient:
    """A RawHttpClient connected to the gateway's loopback ``port``."""
    from twisted.internet import reactor

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return await within(connectProtocol(endpoint, RawHttpClient()))


async def trickle(client: RawHttpClient, data: bytes, pause: float) -> None:
    """Send ``data`` a byte at a time, ``pause`` seconds apart, while the connection lasts."""
    for i in range(len(data)):
        if not client.is_open:
            return
        client.transport.write(data[i:i + 1])
        await sleep(pause)


def upgrade_request(path: str = "/", headers: dict[str, str] | None = None) -> bytes:
    """A WebSocket upgrade request, to see the raw HTTP response the gateway gives it."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------------------
# Header authentication (--headauth): Resgate's table of auth outcomes

TOKEN = {"user": "foo"}
NO_TOKEN = object()
TIMEOUT = object()
AUTH_RESPONSES = {"timeout": TIMEOUT, "notFound": {"error": ERR_NOT_FOUND}, "invalid": b"{]",
                  "null": {"result": None}}
TOKENS = {"no token": NO_TOKEN, "token": TOKEN, "null token": None}


async def answer_header_auth(gateway, fake_service, method, path, auth_response, token):
    """The flow of Resgate's header auth tables: auth request, token event, then the request itself."""
    pending = send(gateway, method, path, headers={"Origin": "example.com"})
    auth = await fake_service.next_request()
    assert auth.subject == "auth.vault.method"
    assert auth.payload["header"]["Origin"] == ["example.com"]
    assert auth.payload["isHttp"] is True
    assert auth.payload["uri"] == "/api/" + path
    assert auth.payload["remoteAddr"].startswith("127.0.0.1:")
    assert auth.payload["host"] == f"127.0.0.1:{gateway.port}"
    if token is not NO_TOKEN:
        fake_service.publish(f"conn.{auth.payload['cid']}.token", {"token": token})
    if auth_response is not TIMEOUT:
        auth.respond(auth_response)
    expected_token = None if token is NO_TOKEN else token
    if method == "GET":
        reqs = await fake_service.take("access.test.model", "get.test.model", timeout=3)
        assert reqs["access.test.model"].payload["token"] == expected_token
        assert reqs["access.test.model"].payload["isHttp"] is True
        reqs["access.test.model"].respond_result({"get": True})
        respond_get(reqs["get.test.model"])
        expected = get_result("test.model")["model"]
    else:
        access = (await fake_service.take("access.test.model", timeout=3))["access.test.model"]
        assert access.payload["token"] == expected_token
        access.respond_result({"get": True, "call": "*"})
        call = (await fake_service.take("call.test.model.method"))["call.test.model.method"]
        call.respond_result({"foo": "bar"})
        expected = {"foo": "bar"}
    response = await pending
    assert (response.status, response.json()) == (200, expected)
    assert response.header("access-control-allow-credentials") == "true"
