"""The site's own answer to a plain GET or HEAD of the API against twisted.web's.

``site.PlainGet`` answers a plain head (the whole of a read on an idle
connection, GET or HEAD of the API path, nothing twisted.web would read
differently) with a ``web.PlainRequest`` and leaves every other to
twisted.web. Each request below is sent twice over loopback to one gateway:
once as the gateway takes it, once with PlainGet off, so twisted.web
answers. Both must write the same bytes (the Date header's value aside),
and then answer, or not, a second request on the same connection the same
way. The test also checks which way the first request took, so a fast path
that stops being taken fails here, and so does one that takes what it
should leave.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from resgate import site, web
from resgate.web import BoundedLineChannel
from tests.rig.aio import eventually, within
from tests.rig.resources import get_result, respond_get

pytestmark = pytest.mark.usefixtures("logged_errors", "logged_failures")

HOST = b"Host: 127.0.0.1"
MODEL = get_result("test.model")["model"]


def head(*lines: bytes, target: bytes = b"/api/test/model", method: bytes = b"GET") -> bytes:
    """A request of ``target`` with a Host header, then ``lines``."""
    return b"\r\n".join([method + b" " + target + b" HTTP/1.1", HOST, *lines]) + b"\r\n\r\n"


#: Heads the gateway answers itself.
PLAIN = {
    "wrk": head(),
    "browser": head(b"Connection: keep-alive", b"Accept: application/json, text/plain, */*",
                    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)", b"Origin: http://localhost:8080",
                    b"Referer: http://localhost:8080/", b"Accept-Encoding: gzip, deflate, br",
                    b"Accept-Language: en-US,en;q=0.9", b"Cookie: session=abc; theme=dark"),
    "curl": head(b"User-Agent: curl/8.5.0", b"Accept: */*"),
    "twisted client": head(b"Connection: close", b"User-Agent: Twisted PageGetter"),
    "close among others": head(b"Connection: keep-alive, close"),
    "close glued to another token": head(b"Connection: close,te"),
    "Close in capitals": head(b"Connection: CLOSE"),
    "head": head(method=b"HEAD"),
    "head, closing": head(b"Connection: close", method=b"HEAD"),
    "query": head(target=b"/api/test/model?q=1&a=b%20c"),
    "repeated headers": head(b"Accept: a/b", b"Accept: c/d", b"Origin: http://a.example", b"Origin: http://b"),
    "spaced and tabbed values": head(b"Accept:   */*  ", b"X-Tab:\tvalue\t"),
    "empty value": head(b"X-Empty:"),
    "upper-case names": head(b"ORIGIN: http://x.example", b"CONNECTION: keep-alive"),
    "trace context": head(b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          b"tracestate: a=1"),
    "bad trace context": head(b"traceparent: nonsense"),
    "upgrade of an API path": head(b"Upgrade: websocket", b"Connection: Upgrade"),
    "access denied": head(target=b"/api/test/denied"),
    "headers from access": head(target=b"/api/test/cookies"),
    "status from access": head(target=b"/api/test/redirect"),
    "head of a redirect": head(target=b"/api/test/redirect", method=b"HEAD"),
    "error from access": head(target=b"/api/test/broken"),
    "dot in the path": head(target=b"/api/test.model"),
    "trailing slash": head(target=b"/api/test/model/"),
    "bad escape": head(target=b"/api/test/%zzmodel"),
    "escape of no UTF-8": head(target=b"/api/test/%FF"),
    "query of no UTF-8 escape": head(target=b"/api/test/model?%FF"),
    "API path alone": head(target=b"/api/"),
    "head of a missing path": head(target=b"/api/test.model", method=b"HEAD"),
    "fragment": head(target=b"/api/test/model#part"),
}

#: Heads PlainGet leaves to twisted.web (or to Autobahn: the WebSocket path), each for one reason.
OTHERS = {
    "HTTP/1.0": b"GET /api/test/model HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    "no Host": b"GET /api/test/model HTTP/1.1\r\n\r\n",
    "two Hosts": head(HOST),
    "bare LF": head(b"X-A: 1\nX-B: 2"),
    "bare CR in a value": head(b"X-A: 1\r2"),
    "Content-Length": head(b"Content-Length: 0"),
    "Transfer-Encoding": head(b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
    "Expect": head(b"Expect: 100-continue"),
    "NUL in a value": head(b"X-A: a\x00b"),
    "name with a space": head(b"Bad Name: x"),
    "space before the colon": head(b"Accept : */*"),
    "no colon": head(b"Accept"),
    "folded header": head(b"X-A: 1", b"  2"),
    "too many headers": head(*[b"X-A: %d" % i for i in range(501)]),
    "non-ASCII target": head(target=b"/api/test/m\xc3\xa5del"),
    "absolute target": head(target=b"http://127.0.0.1/api/test/model"),
    "lower-case method": head(method=b"get"),
    "POST": head(b"Content-Length: 2", method=b"POST") + b"{}",
    "OPTIONS": head(b"Origin: http://x.example", method=b"OPTIONS"),
    "WebSocket path": head(target=b"/"),
    "outside the API path": head(target=b"/other"),
    "two requests in one read": head() + head(),
    "request and a part": head() + b"GET /api",
    "extra space in the request line": b"GET  /api/test/model HTTP/1.1\r\n\r\n",
    "head over 16 KiB": head(b"X-A: " + b"a" * 16000, b"X-B: " + b"b" * 1000),
}

#: A second request on the same connection: answered, unless the first closed it.
FOLLOW_UP = head()


def serve(fake_service) -> None:
    """The resources every request above names, answered as often as asked."""
    def access(result: Any = None, meta: dict | None = None, error: str | None = None):
        def answer(request) -> None:
            response: dict[str, Any] = ({"error": {"code": error, "message": "Broken"}} if error
                                        else {"result": result})
            if meta is not None:
                response["meta"] = meta
            request.respond(response)
        return answer

    fake_service.on("access.test.model", access({"get": True}))
    fake_service.on("access.test.denied", access({"get": False}))
    fake_service.on("access.test.cookies", access({"get": True}, {"header": {
        "Set-Cookie": ["a=1", "b=2"], "etag": ["7"], "Test-Header": ["x", "y"]}}))
    fake_service.on("access.test.redirect", access({"get": True}, {
        "status": 302, "header": {"Location": ["/api/test/model"]}}))
    fake_service.on("access.test.broken", access(error="system.internalError"))
    for rid in ("test.model", "test.cookies"):
        fake_service.on(f"get.{rid}", lambda request: respond_get(request, "test.model"))


class RawClient(protocol.Protocol):
    """Writes ``data`` once connected, the follow-up once each request in it is answered; keeps what arrives."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests = data.count(b" HTTP/1.")
        self.received = b""
        self.followed_up = False
        self.gone = False

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.followed_up and len(responses(self.received, self.data)) == self.requests:
            self.followed_up = True
            self.transport.write(FOLLOW_UP)

    def connectionLost(self, reason: Any = None) -> None:
        self.gone = True


def responses(received: bytes, request: bytes) -> list[bytes]:
    """The whole final responses in ``received`` (by their Content-Length; none to a HEAD ``request``)."""
    found, rest = [], received
    no_body = request.startswith(b"HEAD ")
    while b"\r\n\r\n" in rest:
        response_head, _, rest = rest.partition(b"\r\n\r\n")
        if response_head.startswith(b"HTTP/1.1 100 "):  # to Expect: an interim response
            continue
        match = re.search(rb"\r\nContent-Length: (\d+)", response_head)
        length = 0 if no_body or match is None else int(match.group(1))
        if len(rest) < length:
            break
        found.append(response_head + b"\r\n\r\n" + rest[:length])
        rest, no_body = rest[length:], False  # the follow-up is a GET
    return found


async def exchange(gateway, data: bytes, *, plain: bool, monkeypatch) -> tuple[bytes, list[bool]]:
    """Send ``data`` then the follow-up; all the gateway wrote, and what PlainGet.take said of each read."""
    from twisted.internet import reactor

    took: list[bool] = []
    take = site.PlainGet.take

    def recorded(self, channel, read: bytes) -> bool:
        took.append(take(self, channel, read))
        return took[-1]

    with monkeypatch.context() as patch:
        patch.setattr(site.PlainGet, "take", recorded)
        patch.setattr(gateway.site, "plain_get", gateway.site.plain_get if plain else None)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port)
        client = await within(connectProtocol(endpoint, RawClient(data)))
        await eventually(lambda: client.gone or len(responses(client.received, data)) > client.requests)
        client.transport.loseConnection()
        await eventually(lambda: client.gone)
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: (now)\r\n", client.received), took


async def compare(gateway, data: bytes, monkeypatch) -> tuple[bytes, list[bool]]:
    """Both ways' answers, asserted equal; the answer and what PlainGet.take said of each read."""
    ours, took = await exchange(gateway, data, plain=True, monkeypatch=monkeypatch)
    twisteds, twisted_took = await exchange(gateway, data, plain=False, monkeypatch=monkeypatch)
    assert twisted_took == []
    assert ours == twisteds
    return ours, took


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(PLAIN))
async def test_a_plain_head_is_answered_as_twisted_web_would(gateway, fake_service, monkeypatch, name):
    serve(fake_service)
    answer, took = await compare(gateway, PLAIN[name], monkeypatch)
    assert took[0] is True
    assert answer.startswith(b"HTTP/1.1 ")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(OTHERS))
async def test_any_other_head_is_left_to_twisted_web(gateway, fake_service, monkeypatch, name):
    serve(fake_service)
    answer, took = await compare(gateway, OTHERS[name], monkeypatch)
    assert took[:1] != [True]  # not asked at all of an upgrade's first read
    assert answer.startswith(b"HTTP/1.")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("origin", [b"http://allowed.example", b"http://ALLOWED.example", b"http://other.example",
                                    b"null", None])
async def test_an_origin_is_checked_as_on_twisted_webs_way(gateway_factory, fake_service, monkeypatch, origin):
    gateway = await gateway_factory(allow_origin="http://allowed.example")
    serve(fake_service)
    answer, took = await compare(gateway, head() if origin is None else head(b"Origin: " + origin), monkeypatch)
    assert took[0] is True
    assert answer.startswith(b"HTTP/1.1 ")


@pytest_twisted.ensureDeferred
async def test_a_request_with_header_auth_is_answered_as_twisted_web_would(gateway_factory, fake_service,
                                                                         monkeypatch):
    gateway = await gateway_factory(header_auth="vault.method")
    serve(fake_service)
    fake_service.on("auth.vault.method", lambda request: request.respond(
        {"result": None, "meta": {"header": {"Test-Auth": ["1"]}}}))
    answer, took = await compare(gateway, head(b"Cookie: a=b"), monkeypatch)
    assert took[0] is True
    assert b"\r\nTest-Auth: 1\r\n" in answer


# ---------------------------------------------------------------------------
# What arrives while a plain request is answered


class Held:
    """Access to test.model answered only once the test releases it, then at once."""

    def __init__(self, fake_service) -> None:
        self.waiting: list = []
        self.released = False
        fake_service.on("access.test.model", self._asked)
        fake_service.on("get.test.model", lambda request: respond_get(request, "test.model"))

    def _asked(self, request) -> None:
        self.waiting.append(request)
        if self.released:
            self.release()

    def release(self) -> None:
        self.released = True
        while self.waiting:
            self.waiting.pop(0).respond_result({"get": True})


def holding(monkeypatch) -> list:
    """The channels that held a read, once per read, as they held it."""
    held: list = []
    hold = BoundedLineChannel._hold

    def recorded(channel, data: bytes) -> None:
        hold(channel, data)
        held.append(channel)

    monkeypatch.setattr(BoundedLineChannel, "_hold", recorded)
    return held


def all_models(answers: list[bytes]) -> bool:
    return all(answer.startswith(b"HTTP/1.1 200 OK\r\n")
               and json.loads(answer.partition(b"\r\n\r\n")[2]) == MODEL for answer in answers)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("then, answered", [(head(), 2), (head() + head(b"Connection: close"), 3),
                                            (head()[:20], 1)], ids=["a request", "two requests", "part of one"])
async def test_what_comes_while_a_plain_request_is_answered_is_read_after_it(gateway, fake_service, monkeypatch,
                                                                           then, answered):
    from twisted.internet import reactor

    held, holds = Held(fake_service), holding(monkeypatch)
    client = RawClient(head())
    client.followed_up = True  # this test sends what follows itself
    await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port), client))
    await eventually(lambda: len(held.waiting) == 1)
    client.transport.write(then)
    await eventually(lambda: len(holds) == 1)
    assert client.received == b""
    held.release()
    await eventually(lambda: len(responses(client.received, b"")) == answered)
    if answered == 1:  # the rest of the part, then its answer
        client.transport.write(head()[20:])
        await eventually(lambda: len(responses(client.received, b"")) == 2)
    assert all_models(responses(client.received, b""))
    if answered == 3:  # the last asked to close
        await eventually(lambda: client.gone)
    client.transport.loseConnection()
    await eventually(lambda: client.gone)


@pytest_twisted.ensureDeferred
async def test_a_flood_of_requests_while_one_is_answered_stops_reading_until_it_is(gateway, fake_service,
                                                                                 monkeypatch):
    """Past what twisted.web would hold (16 KiB), the gateway reads no more until the request is answered."""
    from twisted.internet import reactor

    held, holds = Held(fake_service), holding(monkeypatch)
    flood = head() * 3000  # 147 KB, more than one read
    client = RawClient(head())
    client.followed_up = True
    await within(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port), client))
    await eventually(lambda: len(held.waiting) == 1)
    client.transport.write(flood)
    await eventually(lambda: bool(holds) and holds[-1]._held_paused)
    channel = holds[-1]
    assert 16 * 1024 < sum(map(len, channel._held)) < len(flood)
    held.release()
    await eventually(lambda: len(responses(client.received, b"")) == 3001, seconds=30)
    assert all_models(responses(client.received, b""))
    assert not channel._held_paused
    client.transport.loseConnection()
    await eventually(lambda: client.gone)


@pytest_twisted.ensureDeferred
async def test_an_exception_in_rendering_is_answered_500_as_twisted_web_would(gateway, fake_service, monkeypatch,
                                                                             logged_errors, logged_failures):
    """A bug in the API's render gets twisted.web's 500 page both ways, logged, and the connection stays usable."""
    serve(fake_service)

    def broken(self, request):
        raise RuntimeError("broken render")

    monkeypatch.setattr(web.ApiResource, "render", broken)
    answer, took = await compare(gateway, head(), monkeypatch)
    assert took[0] is True
    page = (b"HTTP/1.1 500 Internal Server Error\r\nDate: (now)\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\n\r\n" % len(web.PROCESSING_FAILED) + web.PROCESSING_FAILED)
    assert answer == page * 2  # the request and the follow-up on the same connection
    ours = "Unhandled error answering GET /api/test/model"
    assert logged_failures.messages == [ours, ours, "", ""]  # twisted.web logs its failures without a message
    logged_failures.messages.clear()
    logged_errors.assert_logged(4)  # GatewayRequest logs as a resgate logger too
