"""HTTP OPTIONS: CORS preflight (Resgate's 21http_options scenarios).

A preflight always answers 200 without a body, even for an origin that is
not allowed (the browser decides from the headers): the allowed methods
(only those enabled, see test_allow_methods_list_only_mapped_methods), the
request headers echoed, and the origin headers as any request gets them.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestHTTPOptions_AllowOrigin_ExpectedResponseHeaders | test_options_allow_origin (6 rows) |
| TestHTTPOptions_RequestHeaders_ExpectedResponseHeaders | test_options_request_headers (4 rows) |
| TestHTTPOptions_HeaderAuth_HasExpectedResponseHeaders | test_options_with_header_auth_allows_credentials |

All ported. Added: test_allow_methods_list_only_mapped_methods.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.rig.api import assert_headers, send

pytestmark = pytest.mark.usefixtures("logged_errors")

# (Origin header or None, --alloworigin, expected headers, headers that must be missing)
ALLOW_ORIGIN = [
    ("http://localhost", "*", {"access-control-allow-origin": "*"}, ["vary"]),
    ("http://localhost", "http://localhost",
     {"access-control-allow-origin": "http://localhost", "vary": "Origin"}, []),
    ("https://resgate.io", "http://localhost;https://resgate.io",
     {"access-control-allow-origin": "https://resgate.io", "vary": "Origin"}, []),
    ("http://example.com", "http://localhost;https://resgate.io",
     {"access-control-allow-origin": "http://localhost", "vary": "Origin"}, []),
    (None, "*", {"access-control-allow-origin": "*"}, ["vary"]),
    (None, "http://localhost", {}, ["access-control-allow-origin", "vary"]),
]


@pytest.mark.parametrize("origin, allow_origin, present, missing", ALLOW_ORIGIN)
@pytest_twisted.ensureDeferred
async def test_options_allow_origin(gateway_factory, fake_service, origin, allow_origin, present, missing):
    gateway = await gateway_factory(allow_origin=allow_origin)
    response = await send(gateway, "OPTIONS", "test/model", headers={"Origin": origin} if origin else None)
    assert (response.status, response.body) == (200, b""), response
    assert_headers(response, present, missing)
    fake_service.assert_no_request()


# (Access-Control-Request-Headers lines, expected Access-Control-Allow-Headers or None)
REQUEST_HEADERS = [
    (["Content-Type"], "Content-Type"),
    (["X-PINGOTHER", "Content-Type"], "X-PINGOTHER, Content-Type"),
    (["X-PINGOTHER", "Content-Type", "Authorization"], "X-PINGOTHER, Content-Type, Authorization"),
    (None, None),
]


@pytest.mark.parametrize("request_headers, allow_headers", REQUEST_HEADERS)
@pytest_twisted.ensureDeferred
async def test_options_request_headers(gateway, fake_service, request_headers, allow_headers):
    headers = {"Access-Control-Request-Headers": request_headers} if request_headers else None
    response = await send(gateway, "OPTIONS", "test/model", headers=headers)
    assert (response.status, response.body) == (200, b""), response
    assert response.header("access-control-allow-headers") == allow_headers
    assert response.header("access-control-allow-credentials") is None
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_options_with_header_auth_allows_credentials(gateway_factory, fake_service):
    gateway = await gateway_factory(header_auth="vault.method")
    response = await send(gateway, "OPTIONS", "test/model")
    assert (response.status, response.body) == (200, b""), response
    assert response.header("access-control-allow-credentials") == "true"
    # A preflight makes no auth request.
    fake_service.assert_no_request()


# (mapping settings, expected Access-Control-Allow-Methods)
ALLOW_METHODS = [
    ({}, "GET, HEAD, OPTIONS, POST"),
    ({"put_method": "set"}, "GET, HEAD, OPTIONS, POST, PUT"),
    ({"delete_method": "delete"}, "GET, HEAD, OPTIONS, POST, DELETE"),
    ({"patch_method": "patch"}, "GET, HEAD, OPTIONS, POST, PATCH"),
    ({"put_method": "set", "delete_method": "delete", "patch_method": "patch"},
     "GET, HEAD, OPTIONS, POST, PUT, DELETE, PATCH"),
]


@pytest.mark.parametrize("settings, allow_methods", ALLOW_METHODS)
@pytest_twisted.ensureDeferred
async def test_allow_methods_list_only_mapped_methods(gateway_factory, settings, allow_methods):
    gateway = await gateway_factory(**settings)
    response = await send(gateway, "OPTIONS", "test/model",
                          headers={"Origin": "http://localhost", "Access-Control-Request-Method": "PUT"})
    assert response.status == 200, response
    assert response.header("access-control-allow-methods") == allow_methods
