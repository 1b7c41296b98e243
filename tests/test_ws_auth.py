"""Client auth requests over WebSocket (Resgate's 05auth scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestAuthOnResource | test_auth_on_resource |
| TestAuth_WithCIDPlaceholder_ReplacesCID | test_auth_replaces_cid_placeholder |
| TestAuth_LongResourceMethod_ReturnsErrSubjectTooLong | test_auth_with_too_long_method_is_refused |
| TestAuth_LongResourceID_ReturnsErrSubjectTooLong | test_auth_with_too_long_resource_id_is_refused |
| (none: upstream's harness has no real socket) | test_auth_request_describes_the_upgrade_request |

All ported. Upstream's in-memory WebSocket has no network address, so it
only checks the types of ``header``, ``host`` and ``uri``; with a real
socket the extra scenario checks their values and ``remoteAddr`` too.
Where upstream lets its mocked NATS time a request out, the gateway here
gets a short request timeout and the fake service does not answer.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.rig.replies import (
    INTERNAL,
    Error,
    ErrorCode,
    Result,
    check_response,
    error,
    no_reply,
    raw,
    result,
    start_gateway,
)
from tests.rig.resources import (
    ERR_INVALID_PARAMS,
    ERR_SUBJECT_TOO_LONG,
    ERR_TIMEOUT,
    connect_client,
    get_cid,
)

PARAMS = {"value": 42}
SUCCESS = result({"foo": "bar"})
SUCCESS_RESULT = Result({"payload": {"foo": "bar"}})

AUTH_CASES = [
    (None, SUCCESS, SUCCESS_RESULT),
    (None, error(ERR_INVALID_PARAMS), Error(ERR_INVALID_PARAMS)),
    (None, result(None), Result({"payload": None})),
    (None, no_reply, Error(ERR_TIMEOUT)),
    (PARAMS, SUCCESS, SUCCESS_RESULT),
    # Invalid service responses
    (None, raw(b'{"broken":JSON}'), INTERNAL),
    (None, raw(b"{}"), INTERNAL),
    (None, raw(b'{"result":{"foo":"bar"},"error":{"code":"system.custom","message":"Custom"}}'),
     ErrorCode("system.custom")),
    # Invalid auth error responses
    (None, raw(b'{"error":[]}'), INTERNAL),
    (None, raw(b'{"error":{"message":"missing code"}}'), ErrorCode("")),
    (None, raw(b'{"error":{"code":12,"message":"integer code"}}'), INTERNAL),
]


@pytest.mark.parametrize("params, reply, expected", AUTH_CASES,
                         ids=[f"case{i:02d}" for i in range(1, len(AUTH_CASES) + 1)])
@pytest_twisted.ensureDeferred
async def test_auth_on_resource(gateway_factory, fake_service, params, reply, expected):
    """An auth request goes to the service without an access check, carrying
    the connection's cid, its (null) token, the upgrade request and the params;
    the answer reaches the client as ``{"payload": ...}`` or an error."""
    gateway = await start_gateway(gateway_factory, reply)
    client = await connect_client(gateway)

    pending = client.request("auth.test.model.method", params)
    auth = (await fake_service.take("auth.test.model.method"))["auth.test.model.method"]
    payload = auth.payload
    assert isinstance(payload.get("cid"), str) and payload["cid"], payload
    assert "token" in payload and payload["token"] is None, payload
    assert isinstance(payload.get("header"), dict), payload
    assert isinstance(payload.get("host"), str), payload
    assert isinstance(payload.get("uri"), str), payload
    assert "params" in payload and payload["params"] == params, payload
    assert "isHttp" not in payload, payload
    reply(auth)

    check_response(await pending, expected)
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_auth_request_describes_the_upgrade_request(gateway, fake_service):
    """``header`` holds the upgrade request's headers as Go's http.Header does
    (canonical names, lists of values, no Host); ``host``, ``uri`` and
    ``remoteAddr`` are the Host header, the request target and the client's
    address."""
    client = await connect_client(gateway, headers={"x-custom-header": "foo"})

    pending = client.request("auth.test.model.method")
    auth = (await fake_service.take("auth.test.model.method"))["auth.test.model.method"]
    payload = auth.payload
    assert payload["header"].get("X-Custom-Header") == ["foo"], payload["header"]
    # Go moves the Host header out of the header map into the host field.
    assert "Host" not in payload["header"], payload["header"]
    for name, values in payload["header"].items():
        assert isinstance(values, list) and all(isinstance(v, str) for v in values), (name, values)
    assert payload["host"] == f"127.0.0.1:{gateway.port}", payload
    assert payload["uri"] == "/", payload
    assert payload["remoteAddr"].startswith("127.0.0.1:"), payload
    auth.respond_result(None)

    check_response(await pending, Result({"payload": None}))


@pytest_twisted.ensureDeferred
async def test_auth_replaces_cid_placeholder(gateway, fake_service):
    """``{cid}`` in the resource ID of an auth request becomes the connection ID."""
    client = await connect_client(gateway)
    cid = await get_cid(client, fake_service)

    pending = client.request("auth.test.{cid}.model.method", {"foo": "bar"})
    subject = f"auth.test.{cid}.model.method"
    auth = (await fake_service.take(subject))[subject]
    assert auth.payload["params"] == {"foo": "bar"}
    auth.respond_result("zoo")

    check_response(await pending, Result({"payload": "zoo"}))


@pytest_twisted.ensureDeferred
async def test_auth_with_too_long_method_is_refused(gateway, fake_service):
    """An auth subject longer than NATS allows is not sent."""
    client = await connect_client(gateway)

    response = await client.request("auth.test." + "a" * 10000)

    check_response(response, Error(ERR_SUBJECT_TOO_LONG))
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_auth_with_too_long_resource_id_is_refused(gateway, fake_service):
    client = await connect_client(gateway)

    response = await client.request("auth.test." + "a" * 10000 + ".method")

    check_response(response, Error(ERR_SUBJECT_TOO_LONG))
    fake_service.assert_no_request()
