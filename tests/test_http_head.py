"""HTTP HEAD (Resgate's 23http_head scenarios): a GET without the body.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestHTTPMethodHEAD_InvalidURLs_CorrectStatus | test_head_invalid_url_is_not_found (6 URLs) |
| TestHTTPHead_OnSuccess_NoBody | test_head_on_success_has_no_body |
| TestHTTPHead_OnError_NoBody | test_head_on_error_has_no_body |

All ported. Unlike upstream (whose recorder keeps the bytes a handler
writes), these run over real sockets, so they also check that no body
arrives while Content-Length says how long the GET body would be.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.rig.api import JSON_CONTENT_TYPE, raw_request, send, server_url
from tests.rig.http import http_request
from tests.rig.resources import get_result, respond_get

pytestmark = pytest.mark.usefixtures("logged_errors")

INVALID_URLS = [
    "/wrong_prefix/test/model",
    "/api/",
    "/api/test.model",
    "/api/test/model/",
    "/api/test//model",
    "/api/test/m%C3%A5del/action",
]


@pytest.mark.parametrize("url", INVALID_URLS)
@pytest_twisted.ensureDeferred
async def test_head_invalid_url_is_not_found(gateway, fake_service, url):
    response = await http_request("HEAD", server_url(gateway) + url)
    assert (response.status, response.body) == (404, b""), response
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_head_on_success_has_no_body(gateway, fake_service):
    pending = send(gateway, "HEAD", "test/model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["access.test.model"].respond_result({"get": True})
    respond_get(reqs["get.test.model"])
    response = await pending
    assert (response.status, response.body) == (200, b""), response
    assert response.header("content-type") == JSON_CONTENT_TYPE


@pytest_twisted.ensureDeferred
async def test_head_on_error_has_no_body(gateway, fake_service):
    pending = send(gateway, "HEAD", "test/model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["access.test.model"].respond_result({"get": True})
    reqs["get.test.model"].respond_error("system.notFound", "Not found")
    response = await pending
    assert (response.status, response.body) == (404, b""), response


@pytest_twisted.ensureDeferred
async def test_head_content_length_is_that_of_get(gateway, fake_service):
    """Over a raw socket: the headers of the GET, no body bytes at all."""
    request = (b"HEAD /api/test/model HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    pending = defer.ensureDeferred(raw_request(gateway.port, request))
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["access.test.model"].respond_result({"get": True})
    respond_get(reqs["get.test.model"])
    response = await pending
    model = get_result("test.model")["model"]
    assert response.status == 200
    assert int(response.header("Content-Length")) == len(json.dumps(model, separators=(",", ":")))
    assert response.body == b""
