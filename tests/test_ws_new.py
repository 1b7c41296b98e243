"""Legacy client ``new`` requests over WebSocket (Resgate's 06new scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestLegacyNewOnResource | test_legacy_new_on_resource |

Ported, except the per-row count of errors Resgate writes to its log (the
deprecated ``{"rid": ...}`` call result and invalid resource IDs are logged):
a log line is not part of the wire behaviour these black-box tests check.
Where upstream lets its mocked NATS time a request out, the gateway here
gets a short request timeout and the fake service does not answer.

A ``new.<rid>`` request is a call of method ``new``: access is checked for
``call`` of ``new``, the service answers with the new resource's ID as the
result (``{"rid": ...}``, nothing else), and the client gets the subscribed
resource as ``{"rid": ..., "models"/"errors": ...}``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import pytest_twisted

from tests.rig.replies import (
    INTERNAL,
    NO_REQUEST,
    Error,
    ErrorCode,
    Reply,
    Result,
    check_response,
    error,
    model_get,
    no_reply,
    raw,
    result,
    start_gateway,
)
from tests.rig.resources import (
    ERR_ACCESS_DENIED,
    ERR_INVALID_PARAMS,
    ERR_TIMEOUT,
    client_result,
    connect_client,
)

PARAMS = {"value": 42}
NEW_RESULT = result({"rid": "test.model"})
FULL_CALL_ACCESS = result({"get": True, "call": "*"})
METHOD_CALL_ACCESS = result({"get": True, "call": "new"})
MULTI_METHOD_CALL_ACCESS = result({"get": True, "call": "foo,new"})
MISSING_METHOD_CALL_ACCESS = result({"get": True, "call": "foo,bar"})
NO_CALL_ACCESS = result({"get": True})

MODEL_RESULT = Result({"rid": "test.model", **client_result("test.model")})


def model_error(err: dict) -> Result:
    return Result({"rid": "test.model", "errors": {"test.model": err}})


class NewCase(NamedTuple):
    params: Any
    call_access: Reply  # answer to access.test.collection
    call: Reply | None  # answer to call.test.collection.new; NO_REQUEST: none expected
    get: Reply | None  # answer to get.test.model; NO_REQUEST: no get/access of test.model expected
    model_access: Reply | None  # answer to access.test.model
    expected: Any


def invalid_rid(rid_json: bytes) -> NewCase:
    """A new call answered with an unusable result: an internal error, nothing subscribed."""
    return NewCase(None, FULL_CALL_ACCESS, raw(b'{"result":{"rid":' + rid_json + b"}}"),
                   NO_REQUEST, NO_REQUEST, INTERNAL)


NEW_CASES = [
    # Params variants
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, model_get, FULL_CALL_ACCESS, MODEL_RESULT),
    NewCase(None, FULL_CALL_ACCESS, NEW_RESULT, model_get, FULL_CALL_ACCESS, MODEL_RESULT),
    # Call access variants
    NewCase(PARAMS, METHOD_CALL_ACCESS, NEW_RESULT, model_get, FULL_CALL_ACCESS, MODEL_RESULT),
    NewCase(PARAMS, MULTI_METHOD_CALL_ACCESS, NEW_RESULT, model_get, FULL_CALL_ACCESS, MODEL_RESULT),
    NewCase(PARAMS, MISSING_METHOD_CALL_ACCESS, NO_REQUEST, NO_REQUEST, NO_REQUEST, Error(ERR_ACCESS_DENIED)),
    NewCase(PARAMS, NO_CALL_ACCESS, NO_REQUEST, NO_REQUEST, NO_REQUEST, Error(ERR_ACCESS_DENIED)),
    NewCase(PARAMS, no_reply, NO_REQUEST, NO_REQUEST, NO_REQUEST, Error(ERR_TIMEOUT)),
    # Call response variants
    NewCase(PARAMS, FULL_CALL_ACCESS, error(ERR_INVALID_PARAMS), NO_REQUEST, NO_REQUEST,
            Error(ERR_INVALID_PARAMS)),
    NewCase(PARAMS, FULL_CALL_ACCESS, no_reply, NO_REQUEST, NO_REQUEST, Error(ERR_TIMEOUT)),
    # Get response variants
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, error(ERR_INVALID_PARAMS), FULL_CALL_ACCESS,
            model_error(ERR_INVALID_PARAMS)),
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, no_reply, FULL_CALL_ACCESS, model_error(ERR_TIMEOUT)),
    # Model access variants
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, model_get, result({"get": False}),
            model_error(ERR_ACCESS_DENIED)),
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, model_get, error(ERR_INVALID_PARAMS),
            model_error(ERR_INVALID_PARAMS)),
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, model_get, error(ERR_ACCESS_DENIED),
            model_error(ERR_ACCESS_DENIED)),
    NewCase(PARAMS, FULL_CALL_ACCESS, NEW_RESULT, model_get, no_reply, model_error(ERR_TIMEOUT)),
    # Invalid service responses
    NewCase(None, FULL_CALL_ACCESS, raw(b'{"broken":JSON}'), NO_REQUEST, NO_REQUEST, INTERNAL),
    NewCase(None, FULL_CALL_ACCESS, raw(b"42"), NO_REQUEST, NO_REQUEST, INTERNAL),
    NewCase(None, FULL_CALL_ACCESS, raw(b"{}"), NO_REQUEST, NO_REQUEST, INTERNAL),
    NewCase(None, FULL_CALL_ACCESS,
            raw(b'{"result":{"foo":"bar"},"error":{"code":"system.custom","message":"Custom"}}'),
            NO_REQUEST, NO_REQUEST, ErrorCode("system.custom")),
    NewCase(None, FULL_CALL_ACCESS, result({}), NO_REQUEST, NO_REQUEST, INTERNAL),
    invalid_rid(b'""'),
    invalid_rid(b'"?q=foo"'),
    invalid_rid(b'"test\\tmodel"'),
    invalid_rid(b'"test\\nmodel"'),
    invalid_rid(b'"test\\rmodel"'),
    invalid_rid(b'"test model"'),
    invalid_rid(b'"test\\ufffdmodel"'),
    invalid_rid(b"42"),
    NewCase(None, FULL_CALL_ACCESS, result({"rid": "test.model", "foo": 42}), NO_REQUEST, NO_REQUEST,
            INTERNAL),
    # Invalid error responses
    NewCase(None, FULL_CALL_ACCESS, raw(b'{"error":[]}'), NO_REQUEST, NO_REQUEST, INTERNAL),
    NewCase(None, FULL_CALL_ACCESS, raw(b'{"error":{"message":"missing code"}}'),
            NO_REQUEST, NO_REQUEST, ErrorCode("")),
    NewCase(None, FULL_CALL_ACCESS, raw(b'{"error":{"code":12,"message":"integer code"}}'),
            NO_REQUEST, NO_REQUEST, INTERNAL),
]


@pytest.mark.parametrize("case", NEW_CASES, ids=[f"case{i:02d}" for i in range(1, len(NEW_CASES) + 1)])
@pytest_twisted.ensureDeferred
async def test_legacy_new_on_resource(gateway_factory, fake_service, case: NewCase):
    """``new.test.collection``: access, then ``call.test.collection.new``, then
    the get and access of the created test.model, in that order of stages."""
    gateway = await start_gateway(gateway_factory, case.call_access, case.call, case.get, case.model_access)
    client = await connect_client(gateway)

    pending = client.request("new.test.collection", case.params)

    access = (await fake_service.take("access.test.collection"))["access.test.collection"]
    assert "isHttp" not in access.payload, access.payload
    case.call_access(access)

    if case.call is not NO_REQUEST:
        call = (await fake_service.take("call.test.collection.new"))["call.test.collection.new"]
        assert "params" in call.payload and call.payload["params"] == case.params, call.payload
        assert "isHttp" not in call.payload, call.payload
        case.call(call)

    if case.get is not NO_REQUEST:
        reqs = await fake_service.take("get.test.model", "access.test.model")
        case.get(reqs["get.test.model"])
        case.model_access(reqs["access.test.model"])

    check_response(await pending, case.expected)
    fake_service.assert_no_request()
