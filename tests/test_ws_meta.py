"""Meta objects in service responses, for plain WebSocket clients
(Resgate's 32meta scenarios, WebSocket part).

A service response may carry ``meta`` (an HTTP status and headers). Resgate
applies it only to HTTP: to HTTP API requests and, with ``--wsheadauth``, to
the HTTP response of the WebSocket upgrade. For requests over an open
WebSocket it drops the meta unread (upstream ``server/wsConn.go``: the
auth, call and access callbacks of WebSocket requests discard the meta
argument), so the client gets the result or error as if there were no meta,
and invalid meta is not even logged.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestMeta_WSHeaderAuthWithMeta_ExpectedResponse | tests/test_http_meta.py: test_upgrade_with_meta; here its auth responses replayed for a plain client: test_meta_in_auth_response_is_ignored_on_websocket (table: the 7 upstream rows) |

TestMeta_WSHeaderAuthWithMeta_ExpectedResponse itself is about the WebSocket
upgrade's HTTP response (status 101 or the meta status, meta headers such as
``Set-Cookie`` on the upgrade, protected headers left alone, invalid
statuses logged) produced by the ``--wsheadauth`` auth request; it is ported
in tests/test_http_meta.py.

What applies to plain WebSocket clients is ported instead: the same auth
responses, answering a client's ``auth`` request on an open WebSocket, must
reach the client without their meta having any effect. Two further
scenarios (not upstream test functions; the behaviour is upstream's
wsConn.go) check the same for access and call responses:
test_meta_in_access_response_is_ignored_on_websocket,
test_meta_in_call_response_is_ignored_on_websocket.
"""

import pytest
import pytest_twisted

from tests.rig.resources import client_result, connect_client, get_result

CUSTOM_ERROR = {"code": "system.custom", "message": "Custom"}


NULL_RESULT = {"result": {"payload": None}}

# (name, auth response, what the client gets)
AUTH_WITH_META = [
    ("custom header", b'{"result":null,"meta":{"header":{"Test-Header":["foo"]}}}', NULL_RESULT),
    ("set-cookie header", b'{"result":null,"meta":{"header":{"Set-Cookie":["id=foo; Max-Age=86400"]}}}',
     NULL_RESULT),
    ("4xx status with error", b'{"error":{"code":"system.custom","message":"Custom"},"meta":{"status":407}}',
     {"error": CUSTOM_ERROR}),
    ("5xx status with error", b'{"error":{"code":"system.custom","message":"Custom"},"meta":{"status":507}}',
     {"error": CUSTOM_ERROR}),
    ("protected headers",
     b'{"result":null,"meta":{"header":{"Sec-Websocket-Extensions":["foo"],"Sec-Websocket-Protocol":["foo"],'
     b'"Access-Control-Allow-Credentials":["foo"],"Access-Control-Allow-Origin":["foo"],'
     b'"Content-Type":["text/html; charset=utf-8"]}}}', NULL_RESULT),
    ("2xx status", b'{"result":null,"meta":{"status":206}}', NULL_RESULT),
    ("invalid status", b'{"result":null,"meta":{"status":601}}', NULL_RESULT),
]


@pytest.mark.parametrize("response, expected", [r[1:] for r in AUTH_WITH_META], ids=[r[0] for r in AUTH_WITH_META])
@pytest_twisted.ensureDeferred
async def test_meta_in_auth_response_is_ignored_on_websocket(gateway, fake_service, logged_errors, response, expected):
    client = await connect_client(gateway)
    pending = client.request("auth.vault.method")
    (await fake_service.take("auth.vault.method"))["auth.vault.method"].respond(response)

    got = await pending
    got.pop("id")
    assert got == expected
    # The connection carries on, and nothing was logged about the meta.
    pending = client.request("auth.vault.method")
    (await fake_service.take("auth.vault.method"))["auth.vault.method"].respond_result(None)
    assert (await pending)["result"] == {"payload": None}
    logged_errors.assert_logged(0)


@pytest_twisted.ensureDeferred
async def test_meta_in_access_response_is_ignored_on_websocket(gateway, fake_service, logged_errors):
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    # A status that would end an HTTP request at once has no effect here.
    reqs["access.test.model"].respond({"result": {"get": True}, "meta": {"status": 403, "header": {"X-Foo": ["bar"]}}})
    reqs["get.test.model"].respond_result(get_result("test.model"))
    assert (await pending)["result"] == client_result("test.model")
    logged_errors.assert_logged(0)


@pytest_twisted.ensureDeferred
async def test_meta_in_call_response_is_ignored_on_websocket(gateway, fake_service, logged_errors):
    client = await connect_client(gateway)
    pending = client.request("call.test.model.method", {"foo": "bar"})
    access = (await fake_service.take("access.test.model"))["access.test.model"]
    access.respond_result({"get": True, "call": "*"})
    call = (await fake_service.take("call.test.model.method"))["call.test.model.method"]
    call.respond({"result": {"zoo": "baz"}, "meta": {"status": 601, "header": {"Set-Cookie": ["id=foo"]}}})
    assert (await pending)["result"] == {"payload": {"zoo": "baz"}}
    logged_errors.assert_logged(0)
