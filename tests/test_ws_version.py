"""The version request over WebSocket (Resgate's 20version scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestVersion_Request_ReturnsExpectedResponse | test_version_request (one case per table row) |

All ported. As upstream, each client first makes the usual handshake with
protocol 1.999.999 and then sends the version request under test: a client
may send version more than once.
"""

import pytest
import pytest_twisted

from tests.rig.resources import (
    ERR_INVALID_PARAMS,
    ERR_UNSUPPORTED_PROTOCOL,
    PROTOCOL_VERSION,
    connect_client,
)

VERSION_RESULT = {"protocol": PROTOCOL_VERSION}
NO_PARAMS = object()  # a request without "params"

VERSION_TABLE = [
    # Accepted
    (NO_PARAMS, VERSION_RESULT),
    ({}, VERSION_RESULT),
    ({"foo": "bar"}, VERSION_RESULT),
    ({"protocol": ""}, VERSION_RESULT),
    ({"protocol": None}, VERSION_RESULT),
    ({"protocol": "1.0.0"}, VERSION_RESULT),
    ({"protocol": "1.1.0"}, VERSION_RESULT),
    ({"protocol": "1.0.1"}, VERSION_RESULT),
    ({"protocol": "1.999.999"}, VERSION_RESULT),
    # Malformed
    ("", ERR_INVALID_PARAMS),
    ("1.0.0", ERR_INVALID_PARAMS),
    (["1.0.0"], ERR_INVALID_PARAMS),
    ({"protocol": 1.0}, ERR_INVALID_PARAMS),
    ({"protocol": "1.0"}, ERR_INVALID_PARAMS),
    ({"protocol": "1.2.3.4"}, ERR_INVALID_PARAMS),
    ({"protocol": "v1.0.0"}, ERR_INVALID_PARAMS),
    ({"protocol": "1.0.1000"}, ERR_INVALID_PARAMS),
    ({"protocol": "1.1000.0"}, ERR_INVALID_PARAMS),
    # Well formed, but not a major version 1
    ({"protocol": "0.0.0"}, ERR_UNSUPPORTED_PROTOCOL),
    ({"protocol": "2.0.0"}, ERR_UNSUPPORTED_PROTOCOL),
    ({"protocol": "0.999.999"}, ERR_UNSUPPORTED_PROTOCOL),
    ({"protocol": "3.2.1"}, ERR_UNSUPPORTED_PROTOCOL),
]


@pytest.mark.parametrize("params, expected", VERSION_TABLE,
                         ids=["no params" if p is NO_PARAMS else repr(p) for p, _ in VERSION_TABLE])
@pytest_twisted.ensureDeferred
async def test_version_request(gateway, params, expected):
    client = await connect_client(gateway)
    response = await client.request("version", None if params is NO_PARAMS else params)
    if "code" in expected:
        assert response.get("error") == expected, response
    else:
        assert response.get("result") == expected, response
