"""Hostile input to the HTTP API: each gets a 4XX, and nothing else is affected.

Every scenario runs while an ordinary GET is in flight (started before the
hostile request, answered by the service after it): that GET must still get
its resource, so a bad request never disturbs another one. Raw sockets send
what no well-behaved HTTP client would.

Not upstream scenarios (Resgate has no body limit and trusts meta headers
to Go's net/http); the behaviours are the gateway's own:

* invalid UTF-8 in a path: 404 (no resource has such an ID) or Twisted's 400
  for raw bytes in the request line; in a body: 400 with an error object;
* a body over ``MAX_BODY_SIZE``: 413 with an error object, whether its size
  is announced or chunked;
* ``%2F`` stays inside its path part (it never separates resource ID parts)
  and ``..`` or an escaped dot never climbs out of the API path;
* meta headers with CR, LF or NUL, or a name that is no HTTP token, are
  dropped (logged) and never split the response, on HTTP responses and on
  the WebSocket upgrade;
* very long queries: 10 000 bytes are served (as Resgate does), a request
  line over twisted.web's 16 KiB limit gets 414 with an error object, a
  resource ID too long for a NATS subject 414 ``system.subjectTooLong``;
* more than 500 header lines, or a head over 16 KiB in all: twisted.web's
  400 (no body); a head that arrives too slowly: tests/test_http_slow_head.py;
* malformed JSON, bad percent escapes: 400 and 404;
* a chain of references deeper than any recursion: still encoded;
* a client that leaves mid-request: its connection is released at once
  and no request is made for it afterwards;
* an HTTP/1.1 request without Host, or any request with two: Go's net/http
  400, on every path, before Resgate sees it; HTTP/1.0 needs no Host;
  ``*`` as target: 200 for OPTIONS, else 400, as net/http.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from resgate.web import MAX_BODY_SIZE
from tests.rig.aio import eventually, within
from tests.rig.api import answer_before_close, assert_error, parse_response, raw_request, send, upgrade_request
from tests.rig.resources import ERR_NOT_FOUND, ERR_SUBJECT_TOO_LONG, get_result, respond_get

pytestmark = pytest.mark.usefixtures("logged_errors")

MODEL = get_result("test.model")["model"]


class BystanderGet:
    """An ordinary GET of test.model in flight while the hostile request is made."""

    def __init__(self, gateway, fake_service) -> None:
        self.gateway = gateway
        self.service = fake_service
        self.response = None

    async def start(self) -> BystanderGet:
        self.response = send(self.gateway, "GET", "test/model")
        if self.gateway.config.header_auth_method is not None:
            auth = await self.service.next_request()
            assert auth.subject == "auth.vault.method"
            auth.respond_result(None)
        self.requests = await self.service.take("access.test.model", "get.test.model")
        return self

    async def finish(self) -> None:
        self.requests["access.test.model"].respond_result({"get": True})
        respond_get(self.requests["get.test.model"])
        response = await self.response
        assert (response.status, response.json()) == (200, MODEL), response
        self.service.assert_no_request()
        # Every request's temporary connection is gone once it is answered.
        await eventually(lambda: not self.gateway.context.conns)


@pytest.fixture
def bystander(gateway, fake_service):
    return BystanderGet(gateway, fake_service)


def raw(method: str, target: bytes, body: bytes = b"", headers: tuple[bytes, ...] = ()) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# ---------------------------------------------------------------------------
# Paths


PATHS_NOT_FOUND = [
    b"/api/test/%FF%FE",            # an escape that is no UTF-8
    b"/api/test/m%C3%A5del",        # UTF-8, but no resource ID may hold it
    b"/api/test/%00model",          # control character
    b"/api/test/%zzmodel",          # not an escape at all
    b"/api/test/../model",          # literal dots are refused
    b"/api/test/%2E%2E/model",      # escaped dots become empty ID parts
    b"/api/%2E%2E/%2E%2E/",         # trailing slash
    b"/api/test/mo%20del",          # space
]


@pytest.mark.parametrize("target", PATHS_NOT_FOUND, ids=[t.decode() for t in PATHS_NOT_FOUND])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest_twisted.ensureDeferred
async def test_bad_path_is_not_found(gateway, bystander, method, target):
    await bystander.start()
    response = await raw_request(gateway.port, raw(method, target))
    assert (response.status, json.loads(response.body)) == (404, ERR_NOT_FOUND)
    await bystander.finish()


@pytest.mark.parametrize("target", [b"/api/test/\xff\xfe", b"/api/test/model?q=\xff", b"/api/test/\xc3\xa5"])
@pytest_twisted.ensureDeferred
async def test_raw_non_ascii_request_line_is_bad_request(gateway, bystander, target):
    await bystander.start()
    response = await raw_request(gateway.port, raw("GET", target))
    assert 400 <= response.status < 500
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_escaped_slash_stays_in_its_part(gateway, fake_service, bystander):
    """``%2F`` is part of a resource ID part (Resgate's hrefs escape ``/`` so)."""
    await bystander.start()
    pending = send(gateway, "GET", "test/a%2Fb")
    reqs = await fake_service.take("access.test.a/b", "get.test.a/b")
    reqs["access.test.a/b"].respond_result({"get": False})
    reqs["get.test.a/b"].respond_error("system.notFound", "Not found")
    response = await pending
    assert response.status == 401, response
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_escaped_slash_in_call_method(gateway, fake_service, bystander):
    await bystander.start()
    pending = send(gateway, "POST", "test/model/a%2Fb")
    access = await fake_service.next_request()
    assert access.subject == "access.test.model"
    access.respond_result({"call": "x"})
    response = await pending
    assert response.status == 401, response
    await bystander.finish()


# ---------------------------------------------------------------------------
# Bodies


@pytest.mark.parametrize("body", [b'{"a":"\xff"}', b"\xfe\xff", b'{"a":', b"{'a':1}", b"NaN", b"[1,]"])
@pytest_twisted.ensureDeferred
async def test_bad_body_is_bad_request(gateway, bystander, body):
    await bystander.start()
    response = await raw_request(gateway.port, raw("POST", b"/api/test/model/method", body))
    assert response.status == 400
    error = json.loads(response.body)
    assert error["code"] == "system.badRequest"
    assert error["message"].startswith("Error decoding request body")
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_body_over_limit_is_too_large(gateway, bystander):
    await bystander.start()
    body = b'"' + b"a" * MAX_BODY_SIZE + b'"'
    response = await send(gateway, "POST", "test/model/method", body=body)
    assert_error(response, 413, {"code": "system.badRequest",
                                 "message": f"Request body exceeds {MAX_BODY_SIZE} bytes"})
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_chunked_body_over_limit_is_too_large(gateway, bystander):
    await bystander.start()
    chunk = b"a" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY_SIZE // len(chunk) + 1))
    request = (b"POST /api/test/model/method HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    response = await raw_request(gateway.port, request)
    assert response.status == 413
    assert json.loads(response.body)["code"] == "system.badRequest"
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_body_within_limit_is_params(gateway, fake_service, bystander):
    await bystander.start()
    params = {"text": "å" * 100_000}
    pending = send(gateway, "POST", "test/model/method", body=json.dumps(params).encode())
    access = await fake_service.next_request()
    access.respond_result({"call": "*"})
    call = await fake_service.next_request()
    assert call.payload["params"] == params
    call.respond_result(None)
    assert (await pending).status == 204
    await bystander.finish()


@pytest.mark.parametrize("body", [b"", b"  \r\n\t "])
@pytest_twisted.ensureDeferred
async def test_empty_body_is_null_params(gateway, fake_service, body):
    pending = send(gateway, "POST", "test/model/method", body=body)
    access = await fake_service.next_request()
    access.respond_result({"call": "*"})
    call = await fake_service.next_request()
    assert call.payload["params"] is None
    call.respond_result(None)
    assert (await pending).status == 204


# ---------------------------------------------------------------------------
# Meta headers that could split a response

SPLITTING_HEADERS = [
    {"X-Injected": ["foo\r\nSet-Cookie: evil=1"]},
    {"X-Injected": ["foo\nSet-Cookie: evil=1"]},
    {"X-Injected": ["foo\rSet-Cookie: evil=1"]},
    {"X-Injected": ["foo\x00bar"]},
    {"X-Injected\r\nSet-Cookie: evil=1\r\nX": ["foo"]},
    {"X Injected": ["foo"]},
    {"X-Injected:": ["foo"]},
]


@pytest.mark.parametrize("header", SPLITTING_HEADERS, ids=[repr(h) for h in SPLITTING_HEADERS])
@pytest_twisted.ensureDeferred
async def test_meta_header_with_line_break_is_dropped(gateway, fake_service, bystander, logged_errors, header):
    await bystander.start()
    pending = defer.ensureDeferred(raw_request(gateway.port, raw("POST", b"/api/test/model/method")))
    access = await fake_service.next_request()
    access.respond({"result": {"call": "*"}, "meta": {"header": {"X-Kept": ["yes"], **header}}})
    call = await fake_service.next_request()
    call.respond({"result": {"ok": True}, "meta": {"header": header}})
    response = await pending
    assert (response.status, json.loads(response.body)) == (200, {"ok": True})
    assert response.header("X-Kept") == "yes"
    assert response.all("Set-Cookie") == []
    assert not any("evil" in name or "evil" in value or "Injected" in name for name, value in response.headers)
    # Dropping a header is logged (once per response it came in).
    assert logged_errors.messages, "dropping a header is logged"
    logged_errors.messages.clear()
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_meta_header_with_line_break_is_dropped_on_upgrade(gateway_factory, fake_service, logged_errors):
    gateway = await gateway_factory(ws_header_auth="vault.method")
    pending = defer.ensureDeferred(raw_request(gateway.port, upgrade_request()))
    auth = await fake_service.next_request()
    auth.respond({"result": None, "meta": {"header": {"X-Kept": ["yes"], "X-Injected": ["a\r\nSet-Cookie: evil=1"]}}})
    response = await pending
    assert response.status == 101
    assert response.header("X-Kept") == "yes"
    assert response.all("Set-Cookie") == [] and response.all("X-Injected") == []
    logged_errors.assert_logged(1)


@pytest_twisted.ensureDeferred
async def test_meta_with_invalid_shape_is_ignored(gateway, fake_service, bystander, logged_errors):
    await bystander.start()
    pending = send(gateway, "POST", "test/model/method")
    access = await fake_service.next_request()
    access.respond({"result": {"call": "*"}, "meta": {"status": "307", "header": {"X-A": "not a list"}}})
    call = await fake_service.next_request()
    call.respond({"result": 1, "meta": ["not", "an", "object"]})
    response = await pending
    assert (response.status, response.json()) == (200, 1)
    assert response.header("x-a") is None
    # The status and the header are logged; a meta that is no object is no meta at all.
    logged_errors.assert_logged(2)
    await bystander.finish()


# ---------------------------------------------------------------------------
# Long requests


@pytest_twisted.ensureDeferred
async def test_request_line_over_limit_is_414(gateway, bystander):
    await bystander.start()
    response = await raw_request(gateway.port, raw("GET", b"/api/test/model?q=" + b"a" * 20000))
    assert (response.status, json.loads(response.body)) == (
        414, {"code": "system.badRequest", "message": "Request URI too long"})
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_header_line_over_limit_is_431(gateway, bystander):
    await bystander.start()
    response = await raw_request(gateway.port, raw("GET", b"/api/test/model", headers=(b"X-Big: " + b"a" * 20000,)))
    assert response.status == 431
    assert json.loads(response.body)["code"] == "system.badRequest"
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_too_many_header_lines_is_bad_request(gateway, bystander):
    """twisted.web takes at most 500 header lines (Go has no count, only a size limit)."""
    await bystander.start()
    headers = tuple(b"X-H%d: %d" % (i, i) for i in range(501))
    response = await raw_request(gateway.port, raw("GET", b"/api/test/model", headers=headers))
    assert response.status == 400
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_headers_over_total_size_are_bad_request(gateway, bystander):
    """Each line under the 16 KiB line limit, all of them over twisted.web's 16 KiB for the whole head."""
    await bystander.start()
    headers = tuple(b"X-H%d: " % i + b"a" * 1000 for i in range(20))
    response = await raw_request(gateway.port, raw("GET", b"/api/test/model", headers=headers))
    assert response.status == 400
    await bystander.finish()


MISSING_HOST = "Bad Request: missing required Host header"
UPGRADE_WITHOUT_HOST = upgrade_request().replace(b"Host: 127.0.0.1\r\n", b"")
#: Requests Go's net/http refuses before Resgate's handlers, and the reason it gives (seen from Go Resgate 1.8.0).
HOST_REFUSALS = {
    "GET without Host": (b"GET /api/test/model HTTP/1.1\r\n\r\n", MISSING_HOST),
    "HEAD without Host": (b"HEAD /api/test/model HTTP/1.1\r\nAccept: */*\r\n\r\n", MISSING_HOST),
    "POST without Host": (b"POST /api/test/model/method HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", MISSING_HOST),
    "upgrade without Host": (UPGRADE_WITHOUT_HOST, MISSING_HOST),
    "GET with two Hosts": (raw("GET", b"/api/test/model", headers=(b"Host: other",)), "Bad Request"),
    "HTTP/1.0 GET with two Hosts": (b"GET /api/test/model HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "Bad Request"),
    "upgrade with two Hosts": (upgrade_request(headers={"Host": "other"}), "Bad Request"),
    "a bad path without Host": (b"GET /nowhere HTTP/1.1\r\n\r\n", MISSING_HOST),
}


PIPELINED_GET = b"GET /api/test/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize("name", sorted(HOST_REFUSALS))
@pytest_twisted.ensureDeferred
async def test_a_missing_or_repeated_host_is_refused_as_go_s_net_http_does(gateway, bystander, name):
    data, reason = HOST_REFUSALS[name]
    await bystander.start()
    # The connection closes after the refusal; a request pipelined after it is not read.
    response = parse_response(await answer_before_close(gateway.port, data + PIPELINED_GET))
    body = b"" if data.startswith(b"HEAD ") else b"400 " + reason.encode()
    assert (response.status, response.reason, response.body) == (400, reason, body)
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("Connection") == "close"
    assert not gateway.clients.protocols
    await bystander.finish()  # no request reached the service for it


@pytest_twisted.ensureDeferred
async def test_an_asterisk_target_is_for_options_only(gateway, bystander):
    """net/http answers OPTIONS * itself (200, no body, kept open); any other method gets 400 and a close."""
    await bystander.start()
    answer = await answer_before_close(
        gateway.port, b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + PIPELINED_GET)
    options, bad = answer.split(b"\r\n\r\n", 1)
    assert options.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nContent-Length: 0" in options
    assert bad.startswith(b"HTTP/1.1 400 Bad Request\r\n") and bad.endswith(b"\r\nConnection: close\r\n\r\n")
    assert b"\r\nContent-Length: 0\r\n" in bad
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_an_http_1_0_request_needs_no_host(gateway, fake_service):
    response = defer.ensureDeferred(raw_request(gateway.port, b"GET /api/test/model HTTP/1.0\r\n\r\n"))
    requests = await fake_service.take("access.test.model", "get.test.model")
    requests["access.test.model"].respond_result({"get": True})
    respond_get(requests["get.test.model"])
    response = await response
    assert (response.status, json.loads(response.body)) == (200, MODEL)


@pytest.mark.parametrize("method, path", [("GET", "test/{}"), ("POST", "test/{}/method"), ("POST", "test/{}")])
@pytest_twisted.ensureDeferred
async def test_subject_too_long_is_414(gateway, fake_service, bystander, logged_errors, method, path):
    await bystander.start()
    pending = send(gateway, method, path.format("a" * 12000))
    if method == "POST" and path == "test/{}":
        access = await fake_service.next_request()
        assert access.subject == "access.test"
        access.respond_result({"call": "*"})
    assert_error(await pending, 414, ERR_SUBJECT_TOO_LONG)
    await bystander.finish()


@pytest_twisted.ensureDeferred
async def test_long_resource_id_logs_no_error(gateway, fake_service, logged_errors):
    assert_error(await send(gateway, "GET", "test/" + "a" * 12000), 414, ERR_SUBJECT_TOO_LONG)
    await eventually(lambda: not gateway.context.conns)
    try:
        logged_errors.assert_logged(0)
    finally:
        logged_errors.messages.clear()


# ---------------------------------------------------------------------------
# A service's very long chain of references

CHAIN_LENGTH = 1500


def _chain_body(encoding: str) -> bytes:
    """deep.m0 -> deep.m1 -> ... as the encoding nests them (built from the inside out)."""
    body = b'{"n":%d}' % (CHAIN_LENGTH - 1)
    for i in range(CHAIN_LENGTH - 2, -1, -1):
        if encoding == "json":
            body = b'{"n":%d,"next":{"href":"/api/deep/m%d","model":%s}}' % (i, i + 1, body)
        else:
            body = b'{"n":%d,"next":%s}' % (i, body)
    return body


@pytest.mark.parametrize("encoding", ["json", "jsonflat"])
@pytest_twisted.ensureDeferred
async def test_long_reference_chain_is_encoded(gateway_factory, fake_service, encoding):
    """Deeper than orjson (255 levels) or Python recursion would go: written iteratively."""
    gateway = await gateway_factory(api_encoding=encoding)
    for i in range(CHAIN_LENGTH):
        model = {"n": i}
        if i + 1 < CHAIN_LENGTH:
            model["next"] = {"rid": f"deep.m{i + 1}"}
        fake_service.on(f"get.deep.m{i}", lambda r, model=model: r.respond_result({"model": model}))
    fake_service.on("access.deep.m0", lambda r: r.respond_result({"get": True}))
    response = await send(gateway, "GET", "deep/m0")
    assert response.status == 200
    assert response.body == _chain_body(encoding)


# ---------------------------------------------------------------------------
# Clients that leave


async def assert_next_request_is_flush(gateway, fake_service) -> None:
    """Nothing the gateway sent before now is still on its way to the service.

    The gateway publishes on one NATS connection, so the access request of
    a new call arrives after everything published before it.
    """
    pending = send(gateway, "POST", "test/flush/method")
    if gateway.config.header_auth_method is not None:
        auth = await fake_service.next_request()
        assert auth.subject == "auth.vault.method", f"unexpected request {auth.subject}"
        auth.respond_result(None)
    access = await fake_service.next_request()
    assert access.subject == "access.test.flush", f"unexpected request {access.subject}"
    access.respond_result({"call": ""})
    assert (await pending).status == 401


# (header auth, HTTP method, path, requests pending when the client leaves)
LEAVING = [
    (True, "GET", b"/api/test/collection", ["auth.vault.method"]),
    (False, "GET", b"/api/test/collection", ["access.test.collection", "get.test.collection"]),
    (False, "POST", b"/api/test/collection/method", ["access.test.collection"]),
]


@pytest.mark.parametrize("header_auth, method, target, pending", LEAVING,
                         ids=["during auth", "during get", "during call access"])
@pytest_twisted.ensureDeferred
async def test_client_leaving_mid_request_releases_its_connection(gateway_factory, fake_service, bystander,
                                                                 header_auth, method, target, pending):
    """The temporary connection is disposed when the client goes, and makes no further request."""
    from twisted.internet import reactor

    gateway = await gateway_factory(header_auth="vault.method" if header_auth else None)
    bystander.gateway = gateway
    await bystander.start()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port)
    client = await within(endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol)))
    client.transport.write(raw(method, target))
    reqs = await fake_service.take(*pending)
    assert len(gateway.context.conns) == 2
    client.transport.loseConnection()
    await eventually(lambda: len(gateway.context.conns) == 1)
    # Late answers find nothing to write to, and lead to no request.
    for subject, request in reqs.items():
        if subject.startswith("get."):
            respond_get(request)
        else:
            request.respond_result({"get": True, "call": "*"} if subject.startswith("access.") else None)
    await bystander.finish()
    await assert_next_request_is_flush(gateway, fake_service)
