"""Meta in service responses, applied to HTTP responses and WebSocket upgrades
(Resgate's 31http_meta scenarios, the HTTP side of 32meta, and the
``--wsheadauth`` scenario of 19websocket_options).

A service sets ``meta: {status, header}`` on auth, access and call
responses made for HTTP (``isHttp: true``). A 3XX status redirects (no body,
``Location`` from the header or a resource reference), a 4XX/5XX status
answers with the service's error or the one the status stands for; other
statuses are an error of the service, logged and ignored. Headers are
canonicalized, ``Set-Cookie`` accumulates, other headers are replaced with
the later response winning (call over access over auth), and the headers
the gateway owns are never touched.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestHTTPMeta_HTTPGetRequestWithMeta_ExpectedResponse | test_get_with_meta (27 rows) |
| TestHTTPMeta_HTTPPostRequestWithMeta_ExpectedResponse | test_post_with_meta (31 rows) |
| TestHTTPMeta_HTTPGetRequestWithMetaErrorStatus_ExpectedError | test_get_with_meta_error_status (22 statuses) |
| TestMeta_WSHeaderAuthWithMeta_ExpectedResponse (32meta) | test_upgrade_with_meta (the 7 upstream rows, and the 3 rows upstream comments out because its client cannot read a refused handshake; a raw socket can) |
| TestWebSocketOptions_WSHeaderAuth_ExpectedResponse (19websocket_options) | test_ws_header_auth (12 rows) |

All ported. Upstream counts logged errors per row; so do these, with the
``logged_errors`` fixture.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.rig.api import (
    AUTH_RESPONSES,
    ERR_BAD_REQUEST,
    ERR_FORBIDDEN,
    ERR_METHOD_NOT_ALLOWED,
    ERR_NOT_IMPLEMENTED,
    ERR_SERVICE_UNAVAILABLE,
    JSON_CONTENT_TYPE,
    NO_TOKEN,
    TIMEOUT,
    TOKENS,
    raw_request,
    send,
    upgrade_request,
)
from tests.rig.resources import (
    ERR_ACCESS_DENIED,
    ERR_INTERNAL_ERROR,
    ERR_NOT_FOUND,
    ERR_TIMEOUT,
    client_result,
    get_result,
    respond_get,
)
from tests.rig.ws import connect_ws

pytestmark = pytest.mark.usefixtures("logged_errors")

ORIGIN = "http://example.com"
HREF = "http://example.com/test/ref"
CUSTOM_ERROR = {"code": "system.custom", "message": "Custom"}
MODEL = get_result("test.model")["model"]
NULL_WITH_HEADER = b'{"result":null,"meta":{"header":{"Test-Header":["foo"]}}}'
PROTECTED = (b'{"result":null,"meta":{"header":{"Sec-Websocket-Extensions":["foo"],'
             b'"Sec-Websocket-Protocol":["foo"],"Access-Control-Allow-Credentials":["foo"],'
             b'"Access-Control-Allow-Origin":["foo"],"Content-Type":["text/html; charset=utf-8"]}}}')


def _meta(status: int | None = None, header: dict | None = None, result: str = "null") -> bytes:
    """A response with meta; ``result`` is its JSON (``error:`` prefix for an error response)."""
    meta = {}
    if status is not None:
        meta["status"] = status
    if header is not None:
        meta["header"] = header
    body = f'"error":{result[6:]}' if result.startswith("error:") else f'"result":{result}'
    return ("{" + body + ',"meta":' + json.dumps(meta) + "}").encode()


CUSTOM = "error:" + '{"code":"system.custom","message":"Custom"}'
GET_ACCESS = '{"get":true}'
CALL_ACCESS = '{"call":"method"}'


def assert_headers(response, expected: dict) -> None:
    """Each expected header has exactly these values (in any order); None means absent."""
    for name, values in expected.items():
        actual = response.headers.get(name.lower())
        if values is None:
            assert actual is None, f"{name}: expected missing, got {actual}"
        else:
            assert sorted(actual or []) == sorted(values), f"{name}: expected {values}, got {actual}"


# ---------------------------------------------------------------------------
# GET
#
# (name, auth response or None, access response or None, status, body, headers, logged errors)
# No auth response: no --headauth. No access response: no access and get
# requests are expected.

GET_WITH_META = [
    ("custom header in auth", NULL_WITH_HEADER, b'{"result":{"get":true}}', 200, MODEL,
     {"Test-Header": ["foo"]}, 0),
    ("canonicalized auth header", _meta(header={"test-header": ["foo"]}), b'{"result":{"get":true}}', 200, MODEL,
     {"Test-Header": ["foo"]}, 0),
    ("repeated header in auth", _meta(header={"Test-Header": ["foo", "bar"]}), b'{"result":{"get":true}}', 200,
     MODEL, {"Test-Header": ["foo", "bar"]}, 0),
    ("Set-Cookie in auth", _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}), b'{"result":{"get":true}}',
     200, MODEL, {"Set-Cookie": ["id=foo; Max-Age=86400"]}, 0),
    ("307 in auth", _meta(307, {"Location": [HREF]}), None, 307, None, {"Location": [HREF]}, 0),
    ("resource and 307 in auth", b'{"resource":{"rid":"test.redirect"},"meta":{"status":307}}', None, 307, None,
     {"Location": ["/api/test/redirect"]}, 0),
    ("407 with error in auth", _meta(407, result=CUSTOM), None, 407, CUSTOM_ERROR, {}, 0),
    ("507 with error in auth", _meta(507, result=CUSTOM), None, 507, CUSTOM_ERROR, {}, 0),
    ("407 with error and header in auth", _meta(407, {"Test-Header": ["foo"]}, CUSTOM), None, 407, CUSTOM_ERROR,
     {"Test-Header": ["foo"]}, 0),
    ("custom header in access", None, _meta(header={"Test-Header": ["foo"]}, result=GET_ACCESS), 200, MODEL,
     {"Test-Header": ["foo"]}, 0),
    ("canonicalized access header", None, _meta(header={"test-header": ["foo"]}, result=GET_ACCESS), 200, MODEL,
     {"Test-Header": ["foo"]}, 0),
    ("repeated header in access", None, _meta(header={"Test-Header": ["foo", "bar"]}, result=GET_ACCESS), 200,
     MODEL, {"Test-Header": ["foo", "bar"]}, 0),
    ("Set-Cookie in access", None, _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}, result=GET_ACCESS),
     200, MODEL, {"Set-Cookie": ["id=foo; Max-Age=86400"]}, 0),
    ("access header replaces auth header", NULL_WITH_HEADER,
     _meta(header={"Test-Header": ["bar"]}, result=GET_ACCESS), 200, MODEL, {"Test-Header": ["bar"]}, 0),
    ("auth and access headers", _meta(header={"Test-Auth": ["foo"]}),
     _meta(header={"Test-Access": ["bar"]}, result=GET_ACCESS), 200, MODEL,
     {"Test-Auth": ["foo"], "Test-Access": ["bar"]}, 0),
    ("Set-Cookie in auth and access", _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}),
     _meta(header={"Set-Cookie": ["id=bar; Max-Age=43200"]}, result=GET_ACCESS), 200, MODEL,
     {"Set-Cookie": ["id=foo; Max-Age=86400", "id=bar; Max-Age=43200"]}, 0),
    ("307 in access", None, _meta(307, {"Location": [HREF]}, GET_ACCESS), 307, None, {"Location": [HREF]}, 0),
    ("resource in auth and 307 in access: no redirect to the resource", b'{"resource":{"rid":"test.redirect"}}',
     _meta(307, result=GET_ACCESS), 307, None, {"Location": None}, 0),
    ("407 with error in access", None, _meta(407, result=CUSTOM), 407, CUSTOM_ERROR, {}, 0),
    ("507 with error in access", None, _meta(507, result=CUSTOM), 507, CUSTOM_ERROR, {}, 0),
    ("407 with error and header in access", None, _meta(407, {"Test-Header": ["foo"]}, CUSTOM), 407,
     CUSTOM_ERROR, {"Test-Header": ["foo"]}, 0),
    ("header in auth and 407 in access", NULL_WITH_HEADER, _meta(407, result=CUSTOM), 407, CUSTOM_ERROR,
     {"Test-Header": ["foo"]}, 0),
    ("protected headers in auth", PROTECTED, b'{"result":{"get":true}}', 200, MODEL, {
        "Sec-Websocket-Extensions": None, "Sec-Websocket-Protocol": None,
        "Access-Control-Allow-Credentials": ["true"], "Access-Control-Allow-Origin": [ORIGIN],
        "Content-Type": [JSON_CONTENT_TYPE]}, 0),
    ("206 in auth is ignored", _meta(206), b'{"result":{"get":true}}', 200, MODEL, {}, 1),
    ("601 in auth is ignored", _meta(601), b'{"result":{"get":true}}', 200, MODEL, {}, 1),
    ("206 in access is ignored", b'{"result":null}', _meta(206, result=GET_ACCESS), 200, MODEL, {}, 1),
    ("601 in access is ignored", b'{"result":null}', _meta(601, result=GET_ACCESS), 200, MODEL, {}, 1),
]


@pytest.mark.parametrize("name, auth, access, status, body, headers, logged", GET_WITH_META,
                         ids=[row[0] for row in GET_WITH_META])
@pytest_twisted.ensureDeferred
async def test_get_with_meta(gateway_factory, fake_service, logged_errors, name, auth, access, status, body,
                             headers, logged):
    settings = {"allow_origin": ORIGIN}
    if auth is not None:
        settings["header_auth"] = "vault.method"
    gateway = await gateway_factory(**settings)
    pending = send(gateway, "GET", "test/model", headers={"Origin": ORIGIN})
    if auth is not None:
        request = await fake_service.next_request()
        assert request.subject == "auth.vault.method"
        assert request.payload["isHttp"] is True
        request.respond(auth)
    if access is not None:
        reqs = await fake_service.take("access.test.model", "get.test.model")
        assert reqs["access.test.model"].payload["isHttp"] is True
        reqs["access.test.model"].respond(access)
        respond_get(reqs["get.test.model"])
    response = await pending
    assert response.status == status, response
    assert (response.json() if response.body else None) == body, response
    assert_headers(response, headers)
    logged_errors.assert_logged(logged)
    fake_service.assert_no_request()


# ---------------------------------------------------------------------------
# POST
#
# (name, auth response or None, access response, call response or None, status, body, headers, logged errors)

POST_WITH_META = [
    ("custom header in call", None, _meta(result=CALL_ACCESS), NULL_WITH_HEADER, 204, None,
     {"Test-Header": ["foo"]}, 0),
    ("canonicalized call header", None, _meta(result=CALL_ACCESS), _meta(header={"test-header": ["foo"]}), 204,
     None, {"Test-Header": ["foo"]}, 0),
    ("repeated header in call", None, _meta(result=CALL_ACCESS), _meta(header={"Test-Header": ["foo", "bar"]}),
     204, None, {"Test-Header": ["foo", "bar"]}, 0),
    ("Set-Cookie in call", None, _meta(result=CALL_ACCESS), _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}),
     204, None, {"Set-Cookie": ["id=foo; Max-Age=86400"]}, 0),
    ("307 in call", None, _meta(result=CALL_ACCESS), _meta(307, {"Location": [HREF]}), 307, None,
     {"Location": [HREF]}, 0),
    ("resource and 307 in call", None, _meta(result=CALL_ACCESS),
     b'{"resource":{"rid":"test.redirect"},"meta":{"status":307}}', 307, None,
     {"Location": ["/api/test/redirect"]}, 0),
    ("407 with error in call", None, _meta(result=CALL_ACCESS), _meta(407, result=CUSTOM), 407, CUSTOM_ERROR,
     {}, 0),
    ("507 with error in call", None, _meta(result=CALL_ACCESS), _meta(507, result=CUSTOM), 507, CUSTOM_ERROR,
     {}, 0),
    ("407 with error and header in call", None, _meta(result=CALL_ACCESS),
     _meta(407, {"Test-Header": ["foo"]}, CUSTOM), 407, CUSTOM_ERROR, {"Test-Header": ["foo"]}, 0),
    ("custom header in access", None, _meta(header={"Test-Header": ["foo"]}, result=CALL_ACCESS),
     b'{"result":null}', 204, None, {"Test-Header": ["foo"]}, 0),
    ("canonicalized access header", None, _meta(header={"test-header": ["foo"]}, result=CALL_ACCESS),
     b'{"result":null}', 204, None, {"Test-Header": ["foo"]}, 0),
    ("repeated header in access", None, _meta(header={"Test-Header": ["foo", "bar"]}, result=CALL_ACCESS),
     b'{"result":null}', 204, None, {"Test-Header": ["foo", "bar"]}, 0),
    ("Set-Cookie in access", None, _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}, result=CALL_ACCESS),
     b'{"result":null}', 204, None, {"Set-Cookie": ["id=foo; Max-Age=86400"]}, 0),
    ("call header replaces access header", None, _meta(header={"Test-Header": ["bar"]}, result=CALL_ACCESS),
     NULL_WITH_HEADER, 204, None, {"Test-Header": ["foo"]}, 0),
    ("access and call headers", None, _meta(header={"Test-Access": ["bar"]}, result=CALL_ACCESS),
     _meta(header={"Test-Call": ["baz"]}), 204, None, {"Test-Access": ["bar"], "Test-Call": ["baz"]}, 0),
    ("auth, access and call headers", _meta(header={"Test-Auth": ["foo"]}),
     _meta(header={"Test-Access": ["bar"]}, result=CALL_ACCESS), _meta(header={"Test-Call": ["baz"]}), 204, None,
     {"Test-Auth": ["foo"], "Test-Access": ["bar"], "Test-Call": ["baz"]}, 0),
    ("auth and call headers", _meta(header={"Test-Auth": ["foo"]}), _meta(result=CALL_ACCESS),
     _meta(header={"Test-Call": ["baz"]}), 204, None, {"Test-Auth": ["foo"], "Test-Call": ["baz"]}, 0),
    ("Set-Cookie in access and call", None,
     _meta(header={"Set-Cookie": ["id=bar; Max-Age=43200"]}, result=CALL_ACCESS),
     _meta(header={"Set-Cookie": ["id=baz; Max-Age=21600"]}), 204, None,
     {"Set-Cookie": ["id=bar; Max-Age=43200", "id=baz; Max-Age=21600"]}, 0),
    ("Set-Cookie in auth and call", _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}),
     _meta(result=CALL_ACCESS), _meta(header={"Set-Cookie": ["id=baz; Max-Age=21600"]}), 204, None,
     {"Set-Cookie": ["id=foo; Max-Age=86400", "id=baz; Max-Age=21600"]}, 0),
    ("Set-Cookie in auth, access and call", _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}),
     _meta(header={"Set-Cookie": ["id=bar; Max-Age=43200"]}, result=CALL_ACCESS),
     _meta(header={"Set-Cookie": ["id=baz; Max-Age=21600"]}), 204, None,
     {"Set-Cookie": ["id=foo; Max-Age=86400", "id=bar; Max-Age=43200", "id=baz; Max-Age=21600"]}, 0),
    ("307 in access", None, _meta(307, {"Location": [HREF]}, CALL_ACCESS), None, 307, None,
     {"Location": [HREF]}, 0),
    ("resource in auth and 307 in access: no redirect to the resource", b'{"resource":{"rid":"test.redirect"}}',
     _meta(307, result=CALL_ACCESS), None, 307, None, {"Location": None}, 0),
    ("407 with error in access", None, _meta(407, result=CUSTOM), None, 407, CUSTOM_ERROR, {}, 0),
    ("507 with error in access", None, _meta(507, result=CUSTOM), None, 507, CUSTOM_ERROR, {}, 0),
    ("407 with error and header in access", None, _meta(407, {"Test-Header": ["foo"]}, CUSTOM), None, 407,
     CUSTOM_ERROR, {"Test-Header": ["foo"]}, 0),
    ("header in auth and 407 in access", NULL_WITH_HEADER, _meta(407, result=CUSTOM), None, 407, CUSTOM_ERROR,
     {"Test-Header": ["foo"]}, 0),
    ("protected headers in call", None, _meta(result=CALL_ACCESS), PROTECTED, 204, None, {
        "Sec-Websocket-Extensions": None, "Sec-Websocket-Protocol": None,
        "Access-Control-Allow-Credentials": None, "Access-Control-Allow-Origin": [ORIGIN],
        "Content-Type": None}, 0),
    ("206 in call is ignored", None, _meta(result=CALL_ACCESS), _meta(206), 204, None, {}, 1),
    ("601 in call is ignored", None, _meta(result=CALL_ACCESS), _meta(601), 204, None, {}, 1),
    ("206 in access is ignored", None, _meta(206, result=CALL_ACCESS), b'{"result":null}', 204, None, {}, 1),
    ("601 in access is ignored", None, _meta(601, result=CALL_ACCESS), b'{"result":null}', 204, None, {}, 1),
]


@pytest.mark.parametrize("name, auth, access, call, status, body, headers, logged", POST_WITH_META,
                         ids=[row[0] for row in POST_WITH_META])
@pytest_twisted.ensureDeferred
async def test_post_with_meta(gateway_factory, fake_service, logged_errors, name, auth, access, call, status, body,
                              headers, logged):
    settings = {"allow_origin": ORIGIN}
    if auth is not None:
        settings["header_auth"] = "vault.method"
    gateway = await gateway_factory(**settings)
    pending = send(gateway, "POST", "test/model/method", headers={"Origin": ORIGIN})
    expected = [("auth.vault.method", auth), ("access.test.model", access), ("call.test.model.method", call)]
    for subject, answer in expected:
        if answer is None:
            continue
        request = await fake_service.next_request()
        assert request.subject == subject
        assert request.payload["isHttp"] is True
        request.respond(answer)
    response = await pending
    assert response.status == status, response
    assert (response.json() if response.body else None) == body, response
    assert_headers(response, headers)
    logged_errors.assert_logged(logged)
    fake_service.assert_no_request()


# ---------------------------------------------------------------------------
# An error status without an error: the error it stands for

ERROR_STATUSES = [
    (401, ERR_ACCESS_DENIED), (402, ERR_ACCESS_DENIED), (407, ERR_ACCESS_DENIED),
    (403, ERR_FORBIDDEN), (451, ERR_FORBIDDEN),
    (410, ERR_NOT_FOUND), (404, ERR_NOT_FOUND),
    (405, ERR_METHOD_NOT_ALLOWED),
    (408, ERR_TIMEOUT),
    (400, ERR_BAD_REQUEST), (406, ERR_BAD_REQUEST), (409, ERR_BAD_REQUEST), (411, ERR_BAD_REQUEST),
    (501, ERR_NOT_IMPLEMENTED),
    (503, ERR_SERVICE_UNAVAILABLE),
    (504, ERR_TIMEOUT),
    (500, ERR_INTERNAL_ERROR), (505, ERR_INTERNAL_ERROR), (506, ERR_INTERNAL_ERROR), (507, ERR_INTERNAL_ERROR),
    (508, ERR_INTERNAL_ERROR), (511, ERR_INTERNAL_ERROR),
]


@pytest.mark.parametrize("status, error", ERROR_STATUSES)
@pytest_twisted.ensureDeferred
async def test_get_with_meta_error_status(gateway_factory, fake_service, status, error):
    gateway = await gateway_factory(header_auth="vault.method")
    pending = send(gateway, "GET", "test/model")
    auth = await fake_service.next_request()
    assert auth.subject == "auth.vault.method"
    assert auth.payload["isHttp"] is True
    auth.respond(_meta(status))
    response = await pending
    assert (response.status, response.json()) == (status, error), response
    fake_service.assert_no_request()


# ---------------------------------------------------------------------------
# The WebSocket upgrade (--wsheadauth)
#
# (name, auth response, status, headers, body, logged errors)

UPGRADE_WITH_META = [
    ("custom header", NULL_WITH_HEADER, 101, {"Test-Header": ["foo"]}, None, 0),
    ("Set-Cookie header", _meta(header={"Set-Cookie": ["id=foo; Max-Age=86400"]}), 101,
     {"Set-Cookie": ["id=foo; Max-Age=86400"], "Server": None}, None, 0),  # no Server, as Resgate's 101
    ("307", _meta(307, {"Location": [HREF]}), 307, {"Location": [HREF]}, None, 0),
    ("resource and 307", b'{"resource":{"rid":"test.redirect"},"meta":{"status":307}}', 307,
     {"Location": ["/api/test/redirect"]}, None, 0),
    ("407 with error and header", _meta(407, {"Test-Header": ["foo"]}, CUSTOM), 407, {"Test-Header": ["foo"]},
     CUSTOM_ERROR, 0),
    ("407 with error", _meta(407, result=CUSTOM), 407, {}, CUSTOM_ERROR, 0),
    ("507 with error", _meta(507, result=CUSTOM), 507, {}, CUSTOM_ERROR, 0),
    ("protected headers", PROTECTED, 101, {
        "Sec-Websocket-Extensions": None, "Sec-Websocket-Protocol": None,
        "Access-Control-Allow-Credentials": None, "Access-Control-Allow-Origin": None,
        "Content-Type": None}, None, 0),
    ("206 is ignored", _meta(206), 101, {}, None, 1),
    ("601 is ignored", _meta(601), 101, {}, None, 1),
]


@pytest.mark.parametrize("name, auth, status, headers, body, logged", UPGRADE_WITH_META,
                         ids=[row[0] for row in UPGRADE_WITH_META])
@pytest_twisted.ensureDeferred
async def test_upgrade_with_meta(gateway_factory, fake_service, logged_errors, name, auth, status, headers, body,
                                 logged):
    gateway = await gateway_factory(ws_header_auth="vault.method", allow_origin=ORIGIN)
    pending = defer.ensureDeferred(raw_request(gateway.port, upgrade_request(headers={"Origin": ORIGIN})))
    request = await fake_service.next_request()
    assert request.subject == "auth.vault.method"
    assert request.payload["isHttp"] is True
    assert request.payload["header"]["Origin"] == [ORIGIN]
    request.respond(auth)
    response = await pending
    assert response.status == status, response
    for name, values in headers.items():
        actual = response.all(name)
        assert sorted(actual) == sorted(values or []), (name, response)
    if body is None:
        assert response.body == b""
    else:
        assert response.header("Content-Type") == JSON_CONTENT_TYPE
        assert json.loads(response.body) == body
    logged_errors.assert_logged(logged)
    fake_service.assert_no_request()


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("auth_response", AUTH_RESPONSES)
@pytest_twisted.ensureDeferred
async def test_ws_header_auth(gateway_factory, fake_service, auth_response, token):
    """The token set during the upgrade's auth request holds for the connection."""
    gateway = await gateway_factory(ws_header_auth="vault.method", request_timeout=500)
    connecting = connect_ws(gateway.ws_url)
    auth = await fake_service.next_request()
    assert auth.subject == "auth.vault.method"
    assert auth.payload["isHttp"] is True
    token = TOKENS[token]
    if token is not NO_TOKEN:
        fake_service.publish(f"conn.{auth.payload['cid']}.token", {"token": token})
    answer = AUTH_RESPONSES[auth_response]
    if answer is not TIMEOUT:
        auth.respond(answer)
    client = await connecting
    try:
        await client.request("version", {"protocol": "1.999.999"})
        pending = client.request("subscribe.test.model")
        reqs = await fake_service.take("access.test.model", "get.test.model")
        access = reqs["access.test.model"].payload
        assert access["token"] == (None if token is NO_TOKEN else token)
        assert "isHttp" not in access
        reqs["access.test.model"].respond_result({"get": True})
        respond_get(reqs["get.test.model"])
        response = await pending
        assert response["result"] == client_result("test.model")
    finally:
        await client.close()
