"""PUT, DELETE and PATCH mapped to call methods (Resgate's 22http_method_mapping scenarios).

``--putmethod``, ``--deletemethod`` and ``--patchmethod`` name the method an
HTTP method calls on the resource its path names; the body is the params.
Without a mapping the answer is 405, and so is a ``system.methodNotFound``
from the service (the resource has no such method: the HTTP method is not
allowed on it).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestHTTPMethod_MappedMethod_ExpectedResponse | test_mapped_method (18 rows) |
| TestMetrics_HTTPRequestsOther_IncreasesCounter (33metrics, request part) | test_mapped_method_with_call_access_only (3 methods) |

All ported. Added: test_unknown_http_method_is_not_allowed.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from tests.rig.api import ERR_METHOD_NOT_ALLOWED, assert_error, raw_request, send
from tests.rig.resources import ERR_ACCESS_DENIED, ERR_INVALID_PARAMS, ERR_METHOD_NOT_FOUND, ERR_TIMEOUT

pytestmark = pytest.mark.usefixtures("logged_errors")

PARAMS = b'{"foo":"bar"}'
RESULT = "zoo"
METHOD = "mappedMethod"
SETTING = {"PUT": "put_method", "DELETE": "delete_method", "PATCH": "patch_method"}
TIMEOUT = "timeout"
NO_REQUEST = "no request"

# (HTTP method mapped, HTTP method used, call response, status, expected body)
MAPPED = [
    (m, m, response, status, expected)
    for response, status, expected in [
        ({"result": RESULT}, 200, RESULT),
        ({"error": ERR_INVALID_PARAMS}, 400, ERR_INVALID_PARAMS),
        (TIMEOUT, 404, ERR_TIMEOUT),
        ({"error": ERR_ACCESS_DENIED}, 401, ERR_ACCESS_DENIED),
        ({"error": ERR_METHOD_NOT_FOUND}, 405, ERR_METHOD_NOT_ALLOWED),
    ]
    for m in ("PUT", "DELETE", "PATCH")
] + [
    ("DELETE", "PUT", NO_REQUEST, 405, ERR_METHOD_NOT_ALLOWED),
    ("PATCH", "DELETE", NO_REQUEST, 405, ERR_METHOD_NOT_ALLOWED),
    ("PUT", "PATCH", NO_REQUEST, 405, ERR_METHOD_NOT_ALLOWED),
]


@pytest.mark.parametrize("mapped, used, call_response, status, expected", MAPPED)
@pytest_twisted.ensureDeferred
async def test_mapped_method(gateway_factory, fake_service, mapped, used, call_response, status, expected):
    gateway = await gateway_factory(request_timeout=500, **{SETTING[mapped]: METHOD})
    pending = send(gateway, used, "test/model", body=PARAMS)
    if call_response != NO_REQUEST:
        access = await fake_service.next_request()
        assert access.subject == "access.test.model"
        access.respond_result({"get": True, "call": "*"})
        call = await fake_service.next_request()
        assert call.subject == f"call.test.model.{METHOD}"
        assert call.payload["params"] == {"foo": "bar"}
        assert call.payload["isHttp"] is True
        if call_response != TIMEOUT:
            call.respond(call_response)
    response = await pending
    if status == 200:
        assert (response.status, response.json()) == (200, expected), response
    else:
        assert_error(response, status, expected)
    fake_service.assert_no_request()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest_twisted.ensureDeferred
async def test_mapped_method_with_call_access_only(gateway_factory, fake_service, method):
    name = method.lower()
    gateway = await gateway_factory(**{SETTING[method]: name})
    pending = send(gateway, method, "test/model")
    access = await fake_service.next_request()
    assert access.subject == "access.test.model"
    access.respond_result({"call": name})
    call = await fake_service.next_request()
    assert call.subject == f"call.test.model.{name}"
    assert call.payload["params"] is None
    call.respond_result(None)
    response = await pending
    assert (response.status, response.body) == (204, b"")


@pytest.mark.parametrize("method", ["TRACE", "get", "FOO"])
@pytest_twisted.ensureDeferred
async def test_unknown_http_method_is_not_allowed(gateway, fake_service, method):
    """Methods are case-sensitive, as in Go's net/http: ``get`` is no GET."""
    response = await raw_request(
        gateway.port, f"{method} /api/test/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert response.status == 405
    assert json.loads(response.body) == ERR_METHOD_NOT_ALLOWED
    fake_service.assert_no_request()
