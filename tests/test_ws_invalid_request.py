"""Malformed client request methods over WebSocket (Resgate's 16invalid_request scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestResponseOnInvalidRequests | test_invalid_method_is_invalid_request (one case per table row) |

All ported. Each case also checks that nothing reached the services.
"""

import pytest
import pytest_twisted

from tests.rig.resources import ERR_INVALID_REQUEST, connect_client, flush_requests

INVALID_METHODS = [
    "",
    "test",
    "new",
    "unknown.test",
    "call.test",  # no method name
    "call.test.methöd",  # method names are ASCII
    "call.test?foo",
    "call.test.method?foo",  # no query on the method name
    "auth.test",
    "subscribe..test.model",
    "subscribe.test..model",
    "subscribe.test.model.",
    ".subscribe.test.model",
    "subscribe?foo=bar",
    "subscribe.test\tmodel",
    "subscribe.test\nmodel",
    "subscribe.test\rmodel",
    "subscribe.test model",
    "subscribe.test\ufffdmodel",
    "subscribe.täst.model",
    "subscribe.test.*.model",
    "subscribe.test.>.model",
    "subscribe.test.model.>",
]


@pytest.mark.parametrize("method", INVALID_METHODS, ids=[repr(m) for m in INVALID_METHODS])
@pytest_twisted.ensureDeferred
async def test_invalid_method_is_invalid_request(gateway, fake_service, method):
    client = await connect_client(gateway)
    response = await client.request(method)
    assert response["error"] == ERR_INVALID_REQUEST, response
    await flush_requests(client, fake_service)
