"""HTTP POST calls (Resgate's 15http_post scenarios).

``POST <api path><resource path>/<method>`` checks ``call`` access, then
sends ``call.<resource>.<method>`` with the JSON body as ``params`` (null
without a body) and ``isHttp: true``. A result is the body (204 when null);
a resource response answers 200 with ``Location``.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestHTTPPostOnPrimitiveQueryModel | test_post_on_query_model (2 encodings) |
| TestHTTPPostResponses | test_post_responses (19 rows x 2 encodings) |
| TestHTTPPostNewResponses | test_post_new_responses (10 rows) |
| TestHTTPPostInvalidURLs | test_post_invalid_url_is_not_found (8 URLs) |
| TestHTTPPost_AllowOrigin_ExpectedResponse | test_post_allow_origin (6 rows) |
| TestHTTPPost_HeaderAuth_ExpectedResponse | test_post_header_auth (12 rows) |
| TestHTTPPost_LongResourceID_ReturnsStatus414 | test_post_long_resource_id_is_414 |
| TestHTTPPost_LongResourceMethod_ReturnsStatus414 | test_post_long_method_is_414 |
| TestHTTPCall_LongModelQuery_ReturnsResult | test_post_long_query_returns_result |
| TestMetrics_HTTPRequestsPost_IncreasesCounter (33metrics, request part) | test_post_null_result_is_no_content |

All ported. Upstream's new-response table also counts logged errors (the
deprecation notice of legacy ``{"rid": ...}`` results); here that notice is
a warning and not counted.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from tests.rig.api import (
    ALLOW_ORIGIN_CASES,
    AUTH_RESPONSES,
    ERR_FORBIDDEN_ORIGIN,
    JSON_CONTENT_TYPE,
    TOKENS,
    answer_header_auth,
    assert_error,
    assert_headers,
    send,
    server_url,
)
from tests.rig.http import http_request
from tests.rig.resources import (
    ERR_ACCESS_DENIED,
    ERR_INVALID_PARAMS,
    ERR_METHOD_NOT_FOUND,
    ERR_NOT_FOUND,
    ERR_SUBJECT_TOO_LONG,
    ERR_TIMEOUT,
)

pytestmark = pytest.mark.usefixtures("logged_errors")

ENCODINGS = ["json", "jsonFlat"]
PARAMS = b'{"value":42}'
SUCCESS = {"foo": "bar"}
TIMEOUT = "timeout"
NO_REQUEST = "no request"
LOCATION = {"location": "/api/test/model"}
#: Short enough for the timeout rows to be quick.
REQUEST_TIMEOUT = 500


def _answer(request, response) -> None:
    """Answer as a table row says: a timeout, raw bytes, an error object or a result."""
    if response == TIMEOUT:
        return
    if isinstance(response, bytes):
        request.respond(response)
    elif isinstance(response, dict) and set(response) == {"code", "message"}:
        request.respond({"error": response})
    else:
        request.respond_result(response)


def _assert_body(response, expected) -> None:
    if isinstance(expected, str):  # an error code only
        assert response.json()["code"] == expected, response
    elif expected is None:
        assert response.body == b"", response
    else:
        assert response.json() == expected, response


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest_twisted.ensureDeferred
async def test_post_on_query_model(gateway_factory, fake_service, encoding):
    gateway = await gateway_factory(api_encoding=encoding)
    pending = send(gateway, "POST", "test/model/method?q=foo&f=bar")
    access = await fake_service.next_request()
    assert access.subject == "access.test.model"
    assert (access.payload["token"], access.payload["query"], access.payload["isHttp"]) == (
        None, "q=foo&f=bar", True)
    access.respond_result({"call": "method"})
    call = await fake_service.next_request()
    assert call.subject == "call.test.model.method"
    assert (call.payload["query"], call.payload["isHttp"]) == ("q=foo&f=bar", True)
    call.respond_result(SUCCESS)
    response = await pending
    assert (response.status, response.json()) == (200, SUCCESS)
    assert response.header("content-type") == JSON_CONTENT_TYPE


FULL_ACCESS = {"get": True, "call": "*"}

# (body, access response, call response, status, headers, expected body)
POST_RESPONSES = [
    # Params
    (None, FULL_ACCESS, SUCCESS, 200, {}, SUCCESS),
    (PARAMS, FULL_ACCESS, SUCCESS, 200, {}, SUCCESS),
    # Access
    (None, {"get": True, "call": "method"}, SUCCESS, 200, {}, SUCCESS),
    (None, {"get": True, "call": "foo,method"}, SUCCESS, 200, {}, SUCCESS),
    (None, {"get": True, "call": "foo,bar"}, NO_REQUEST, 401, {}, ERR_ACCESS_DENIED),
    (None, {"get": True}, NO_REQUEST, 401, {}, ERR_ACCESS_DENIED),
    (None, TIMEOUT, NO_REQUEST, 404, {}, ERR_TIMEOUT),
    # Call
    (None, FULL_ACCESS, ERR_INVALID_PARAMS, 400, {}, ERR_INVALID_PARAMS),
    (None, FULL_ACCESS, ERR_METHOD_NOT_FOUND, 404, {}, ERR_METHOD_NOT_FOUND),
    (None, FULL_ACCESS, None, 204, {}, None),
    # Resource response
    (None, FULL_ACCESS, b'{"resource":{"rid":"test.model"}}', 200, LOCATION, None),
    # Invalid resource responses
    (None, FULL_ACCESS, b'{"resource":"test.model"}', 500, {}, "system.internalError"),
    (PARAMS, FULL_ACCESS, b'{"resource":"test.model"}', 500, {}, "system.internalError"),
    (None, FULL_ACCESS, b'{"resource":{}}', 500, {}, "system.internalError"),
    (PARAMS, FULL_ACCESS, b'{"resource":{}}', 500, {}, "system.internalError"),
    (None, FULL_ACCESS, b'{"resource":{"rid":42}}', 500, {}, "system.internalError"),
    (PARAMS, FULL_ACCESS, b'{"resource":{"rid":42}}', 500, {}, "system.internalError"),
    (None, FULL_ACCESS, b'{"resource":{"rid":"test..model"}}', 500, {}, "system.internalError"),
    (PARAMS, FULL_ACCESS, b'{"resource":{"rid":"test..model"}}', 500, {}, "system.internalError"),
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("body, access_response, call_response, status, headers, expected", POST_RESPONSES)
@pytest_twisted.ensureDeferred
async def test_post_responses(gateway_factory, fake_service, encoding, body, access_response,
                              call_response, status, headers, expected):
    gateway = await gateway_factory(api_encoding=encoding, request_timeout=REQUEST_TIMEOUT)
    await _post_scenario(gateway, fake_service, "test/model/method", "test.model", "method",
                         body, access_response, call_response, status, headers, expected)


async def _post_scenario(gateway, fake_service, path, rid, method, body, access_response,
                         call_response, status, headers, expected):
    pending = send(gateway, "POST", path, body=body)
    access = await fake_service.next_request()
    assert access.subject == f"access.{rid}"
    assert access.payload["isHttp"] is True
    _answer(access, access_response)
    if call_response != NO_REQUEST:
        call = await fake_service.next_request()
        assert call.subject == f"call.{rid}.{method}"
        assert call.payload["params"] == (json.loads(body) if body else None)
        _answer(call, call_response)
    response = await pending
    assert response.status == status, response
    _assert_body(response, expected)
    for name, value in headers.items():
        assert response.header(name) == value, response
    fake_service.assert_no_request()


NEW_ACCESS = {"get": True, "call": "new"}
COLLECTION_LOCATION = LOCATION

# (body, access response, call response, status, expected body, headers)
NEW_RESPONSES = [
    (PARAMS, FULL_ACCESS, {"rid": "test.model"}, 200, None, LOCATION),
    (None, FULL_ACCESS, {"rid": "test.model"}, 200, None, LOCATION),
    (PARAMS, NEW_ACCESS, {"rid": "test.model"}, 200, None, LOCATION),
    (PARAMS, {"get": True, "call": "foo,new"}, {"rid": "test.model"}, 200, None, LOCATION),
    (PARAMS, {"get": True, "call": "foo,bar"}, NO_REQUEST, 401, ERR_ACCESS_DENIED, {}),
    (PARAMS, {"get": True}, NO_REQUEST, 401, ERR_ACCESS_DENIED, {}),
    (PARAMS, TIMEOUT, NO_REQUEST, 404, ERR_TIMEOUT, {}),
    (PARAMS, FULL_ACCESS, ERR_INVALID_PARAMS, 400, ERR_INVALID_PARAMS, {}),
    (PARAMS, FULL_ACCESS, TIMEOUT, 404, ERR_TIMEOUT, {}),
    (PARAMS, FULL_ACCESS, b'{"resource":{"rid":"test.model"}}', 200, None, LOCATION),
]


@pytest.mark.parametrize("body, access_response, call_response, status, expected, headers", NEW_RESPONSES)
@pytest_twisted.ensureDeferred
async def test_post_new_responses(gateway_factory, fake_service, body, access_response, call_response,
                                  status, expected, headers):
    gateway = await gateway_factory(request_timeout=REQUEST_TIMEOUT)
    await _post_scenario(gateway, fake_service, "test/collection/new", "test.collection", "new",
                         body, access_response, call_response, status, headers, expected)


INVALID_URLS = [
    "/wrong_prefix/test/model/action",
    "/api/",
    "/api/action",
    "/api/test.model/action",
    "/api/test/model/action/",
    "/api/test//model/action",
    "/api/test/model/%C3%A4ction",
    "/api/test/m%C3%A5del/action",
]


@pytest.mark.parametrize("url", INVALID_URLS)
@pytest_twisted.ensureDeferred
async def test_post_invalid_url_is_not_found(gateway, fake_service, url):
    response = await http_request("POST", server_url(gateway) + url)
    assert_error(response, 404, ERR_NOT_FOUND)
    fake_service.assert_no_request()


@pytest.mark.parametrize("origin, allow_origin, status, present, missing", ALLOW_ORIGIN_CASES)
@pytest_twisted.ensureDeferred
async def test_post_allow_origin(gateway_factory, fake_service, origin, allow_origin, status, present, missing):
    gateway = await gateway_factory(allow_origin=allow_origin)
    pending = send(gateway, "POST", "test/model/method", headers={"Origin": origin} if origin else None)
    if status == 200:
        access = await fake_service.next_request()
        assert access.subject == "access.test.model"
        access.respond_result(FULL_ACCESS)
        call = await fake_service.next_request()
        assert call.subject == "call.test.model.method"
        call.respond_result(SUCCESS)
    response = await pending
    if status == 200:
        assert (response.status, response.json()) == (200, SUCCESS)
    else:
        assert_error(response, 403, ERR_FORBIDDEN_ORIGIN)
    assert_headers(response, present, missing)
    fake_service.assert_no_request()


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("auth_response", AUTH_RESPONSES)
@pytest_twisted.ensureDeferred
async def test_post_header_auth(gateway_factory, fake_service, auth_response, token):
    gateway = await gateway_factory(header_auth="vault.method", request_timeout=REQUEST_TIMEOUT)
    await answer_header_auth(gateway, fake_service, "POST", "test/model/method",
                             AUTH_RESPONSES[auth_response], TOKENS[token])


@pytest_twisted.ensureDeferred
async def test_post_long_resource_id_is_414(gateway, fake_service):
    response = await send(gateway, "POST", "test/" + "a" * 10000 + "/method")
    assert_error(response, 414, ERR_SUBJECT_TOO_LONG)
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_post_long_method_is_414(gateway, fake_service):
    pending = send(gateway, "POST", "test/" + "a" * 10000)
    access = await fake_service.next_request()
    assert access.subject == "access.test"
    access.respond_result(FULL_ACCESS)
    assert_error(await pending, 414, ERR_SUBJECT_TOO_LONG)
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_post_long_query_returns_result(gateway, fake_service):
    query = "q=" + "a" * 10000
    pending = send(gateway, "POST", "test/model/method?" + query)
    access = await fake_service.next_request()
    assert (access.subject, access.payload["query"]) == ("access.test.model", query)
    access.respond_result(FULL_ACCESS)
    call = await fake_service.next_request()
    assert (call.subject, call.payload["query"]) == ("call.test.model.method", query)
    call.respond_result(SUCCESS)
    response = await pending
    assert (response.status, response.json()) == (200, SUCCESS)


@pytest_twisted.ensureDeferred
async def test_post_null_result_is_no_content(gateway, fake_service):
    pending = send(gateway, "POST", "test/model/method")
    access = await fake_service.next_request()
    assert access.subject == "access.test.model"
    access.respond_result({"call": "method"})
    call = await fake_service.next_request()
    assert call.subject == "call.test.model.method"
    call.respond_result(None)
    response = await pending
    assert (response.status, response.body) == (204, b"")
    assert response.header("content-type") is None
