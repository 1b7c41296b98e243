"""Property-based tests of what clients and services may send (hypothesis).

Pure unit tests, no network:

* client requests (``rpc.handle_request``, the JSON-RPC a WebSocket client
  sends): any bytes give either nothing (not JSON, no valid id: as Resgate),
  one response carrying the request's id with a result or one of the
  protocol's errors, or a call into the connection with a valid resource
  ID; never an exception;
* service responses and events (``codec.decode_*``): any payload decodes,
  or raises a ``ResError``: the service's own error when it sent a
  well-formed one, else ``system.internalError``; valid responses built by
  construction decode to what was built;
* resource IDs: IDs built from valid parts are valid (with any query after
  ``?``), split back into name and query, and agree with a plain reading
  of Resgate's rule for any text; the HTTP path of a valid resource ID
  (``apiencoding.rid_to_path``) maps back to it (``web.path_to_rid``), and
  no path or query, however broken, makes the mapping raise.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resgate import codec, errors, rpc
from resgate.apiencoding import rid_to_path
from resgate.connection import Connection
from resgate.web import path_to_rid, path_to_rid_method

#: Bounded for CI; no deadline, as the machine running the suite may be loaded.
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- Strategies -----------------------------------------------------------------

RID_PART_CHARS = "".join(chr(c) for c in range(33, 127) if chr(c) not in ".*>?")

rid_parts = st.text(alphabet=RID_PART_CHARS, min_size=1, max_size=12)
rids = st.lists(rid_parts, min_size=1, max_size=5).map(".".join)
queries = st.text(max_size=30)
rids_with_query = st.tuples(rids, st.one_of(st.none(), queries)).map(
    lambda t: t[0] if t[1] is None else f"{t[0]}?{t[1]}")

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def mangled(draw, payloads: st.SearchStrategy[bytes]) -> bytes:
    """A payload cut short, or with a byte replaced: almost JSON."""
    data = draw(payloads)
    if not data:
        return data
    i = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()):
        return data[:i]
    return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]


def payloads_around(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bytes that are ``values`` as JSON, almost JSON, or anything at all."""
    as_json = values.map(encode)
    return st.one_of(as_json, mangled(as_json), json_values.map(encode), st.binary(max_size=64))


# --- Client requests ---------------------------------------------------------------

ACTIONS = ["subscribe", "get", "unsubscribe", "call", "auth", "new", "version", "", "foo"]
ALLOWED_CLIENT_ERRORS = {
    errors.CODE_INVALID_REQUEST, errors.CODE_INVALID_PARAMS, errors.CODE_UNSUPPORTED_PROTOCOL,
    errors.CODE_NO_SUBSCRIPTION,
}


class RecordingConnection:
    """Stands in for a Connection: records which request handler rpc called, answers none."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.protocol_version = 0
        self.context = type("Context", (), {"debug": False, "metrics": _Metrics(), "tracing": None})()

    set_version = Connection.set_version

    def subscribe_resource(self, rid, callback):
        self.calls.append(("subscribe", rid))

    def get_resource(self, rid, callback):
        self.calls.append(("get", rid))

    def call_resource(self, rid, method, params, callback):
        self.calls.append(("call", rid, method, params))

    def auth_resource(self, rid, method, params, callback):
        self.calls.append(("auth", rid, method, params))

    def new_resource(self, rid, params, callback):
        self.calls.append(("new", rid, params))

    def unsubscribe_resource(self, rid, count):
        self.calls.append(("unsubscribe", rid, count))
        return False


class _Metrics:
    def __init__(self) -> None:
        self.ws_requests = {"subscribe": 0, "get": 0, "call": 0, "auth": 0, "unsubscribe": 0}


@st.composite
def methods(draw) -> str:
    """A request method: an action and a valid or broken resource ID, sometimes a method name."""
    action = draw(st.sampled_from(ACTIONS))
    rid = draw(st.one_of(rids_with_query, st.text(max_size=20)))
    method = f"{action}.{rid}" if action else rid
    if action in ("call", "auth") and draw(st.booleans()):
        method += "." + draw(st.one_of(rid_parts, st.text(max_size=6)))
    return draw(st.one_of(st.just(method), st.text(max_size=30)))


request_ids = st.one_of(st.integers(min_value=0, max_value=(1 << 64) - 1), json_values)

client_requests = st.fixed_dictionaries(
    {"id": request_ids, "method": st.one_of(methods(), json_values)},
    optional={"params": json_values},
)


def handle(data: bytes) -> tuple[RecordingConnection, list[bytes]]:
    conn = RecordingConnection()
    replies: list[bytes] = []
    rpc.handle_request(conn, data, replies.append)
    return conn, replies


def is_request_with_id(data: bytes) -> bool:
    # Parsed as the gateway parses (orjson): Python's json reads NaN, lone
    # surrogates and UTF-16, which are no JSON a client may send.
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(message, dict) and type(message.get("id")) is int and 0 <= message["id"] < 1 << 64


@PROPERTY
@given(payloads_around(client_requests))
@example(b"[" * 2000)
@example(b'{"id":18446744073709551616,"method":"version"}')
@example(b'{"id":1,"method":"version","params":{"protocol":"1.\xd9\xa3.0"}}')
@example('{"id":1,"method":"version","params":{"protocol":"1.\u0663.0"}}'.encode())
def test_any_client_message_gets_nothing_a_response_or_a_dispatch(data):
    conn, replies = handle(data)
    assert len(replies) <= 1 and len(conn.calls) <= 1
    # Only unsubscribe is answered at once (here: no such subscription).
    assert not (replies and conn.calls) or conn.calls[0][0] == "unsubscribe"
    if not is_request_with_id(data):
        assert replies == [] and conn.calls == []
        return
    request = orjson.loads(data)
    if replies:
        response = json.loads(replies[0])
        assert response["id"] == request["id"]
        assert ("result" in response) != ("error" in response)
        if "error" in response:
            assert response["error"]["code"] in ALLOWED_CLIENT_ERRORS
        else:
            assert request["method"] == "version"
    for call in conn.calls:
        action, rid = call[0], call[1]
        assert codec.is_valid_rid(rid, True)
        if action in ("call", "auth"):
            assert codec.is_valid_rid_part(call[2])
            assert request["method"] == f"{action}.{rid}.{call[2]}"
        else:
            assert request["method"] == f"{action}.{rid}"


@PROPERTY
@given(st.integers(0, (1 << 64) - 1), st.sampled_from(["subscribe", "get", "new"]), rids_with_query,
       st.one_of(st.nothing(), json_values))
def test_valid_resource_requests_are_dispatched(request_id, action, rid, params):
    conn, replies = handle(encode({"id": request_id, "method": f"{action}.{rid}", "params": params}))
    assert replies == []
    assert conn.calls[0][:2] == (action, rid)


@PROPERTY
@given(st.integers(0, (1 << 64) - 1), st.sampled_from(["call", "auth"]), rids_with_query, rid_parts, json_values)
def test_valid_method_requests_are_dispatched(request_id, action, rid, method, params):
    conn, replies = handle(encode({"id": request_id, "method": f"{action}.{rid}.{method}", "params": params}))
    assert replies == []
    assert conn.calls == [(action, rid, method, params)]


@PROPERTY
@given(st.integers(0, (1 << 64) - 1),
       st.one_of(st.text(max_size=12), st.tuples(*[st.integers(0, 1200)] * 3).map(lambda t: "%d.%d.%d" % t)))
def test_version_is_agreed_or_refused(request_id, protocol):
    _, replies = handle(encode({"id": request_id, "method": "version", "params": {"protocol": protocol}}))
    response = json.loads(replies[0])
    parts = protocol.split(".")
    acceptable = (len(parts) == 3 and all(p.isascii() and p.isdigit() and int(p) < 1000 for p in parts)
                  and parts[0].lstrip("0") == "1")
    if protocol == "" or acceptable:
        assert response["result"] == {"protocol": "1.2.3"}
    else:
        assert response["error"]["code"] in (errors.CODE_INVALID_PARAMS, errors.CODE_UNSUPPORTED_PROTOCOL)


# --- Service responses and events -------------------------------------------------------

references = st.fixed_dictionaries({"rid": rids_with_query}, optional={"soft": st.booleans()})
data_values = st.fixed_dictionaries({"data": json_values})
model_values = st.one_of(json_scalars, references, data_values)
models = st.dictionaries(st.text(max_size=8), model_values, max_size=6)
collections = st.lists(model_values, max_size=6)

service_errors = st.fixed_dictionaries(
    {"code": st.one_of(st.text(max_size=20), json_scalars), "message": st.one_of(st.text(max_size=20), json_scalars)},
    optional={"data": json_values})
service_messages = st.one_of(
    st.fixed_dictionaries({}, optional={
        "result": st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "model": st.one_of(models, json_values), "collection": st.one_of(collections, json_values),
            "query": json_values, "get": json_values, "call": json_values})),
        "error": st.one_of(service_errors, json_values),
        "resource": st.one_of(references, json_values),
        "meta": json_values,
    }),
    json_values,
)


def well_formed_error(data: bytes) -> dict | None:
    """The error object of a response that has one a service may send, else None."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("error"), dict):
        return None
    error = message["error"]
    if not isinstance(error.get("code", ""), str) or not isinstance(error.get("message", ""), str):
        return None
    return error


def assert_rejected_properly(error: errors.ResError, data: bytes) -> None:
    assert isinstance(error, errors.ResError)
    sent = well_formed_error(data)
    if sent is not None:
        assert (error.code, error.message) == (sent.get("code", ""), sent.get("message", ""))
    else:
        assert error.code == errors.CODE_INTERNAL_ERROR


@PROPERTY
@given(payloads_around(service_messages))
@example(b"[" * 2000)
@example(b"1e400")
def test_any_get_response_decodes_or_is_an_error(data):
    try:
        result = codec.decode_get_response(data)
    except errors.ResError as e:
        assert_rejected_properly(e, data)
        return
    assert (result.model is None) != (result.collection is None)
    assert isinstance(result.query, str)
    values = result.model.values() if result.model is not None else result.collection
    assert all(value.is_proper for value in values)


@PROPERTY
@given(payloads_around(service_messages))
def test_any_call_response_decodes_or_is_an_error(data):
    try:
        _result, rid, meta = codec.decode_call_response(data)
    except errors.ResError as e:
        assert_rejected_properly(e, data)
        return
    assert rid is None or codec.is_valid_rid(rid, True)
    assert meta is None or isinstance(meta, dict)


@PROPERTY
@given(payloads_around(service_messages))
def test_any_access_response_is_an_access(data):
    access, meta = codec.decode_access_response(data)
    assert meta is None or isinstance(meta, dict)
    if access.error is not None:
        assert_rejected_properly(access.error, data)
        assert not access.get and access.call is None
    else:
        assert isinstance(access.get, bool) and (access.call is None or isinstance(access.call, str))


@PROPERTY
@given(payloads_around(json_values))
def test_any_event_payload_decodes_or_is_an_internal_error(data):
    """Events are decoded in steps: the JSON, then the event kind's own shape."""
    decoders = [
        lambda d: codec.decode_change_event(codec.decode_event(d)),
        lambda d: codec.decode_add_event(codec.decode_event(d)),
        lambda d: codec.decode_remove_event(codec.decode_event(d)),
        codec.decode_conn_token_event,
        codec.decode_system_reset,
        codec.decode_system_token_reset,
        codec.response_meta,
    ]
    for decode in decoders:
        try:
            decode(data)
        except errors.ResError as e:
            assert e.code == errors.CODE_INTERNAL_ERROR


@PROPERTY
@given(st.one_of(models.map(lambda m: {"model": m}), collections.map(lambda c: {"collection": c})),
       st.one_of(st.none(), queries))
def test_valid_get_responses_decode_to_what_was_sent(resource, query):
    result = dict(resource)
    if query is not None:
        result["query"] = query
    decoded = codec.decode_get_response(encode({"result": result}))
    assert decoded.query == (query or "")
    if "model" in resource:
        assert decoded.collection is None
        assert list(decoded.model) == list(resource["model"])
        pairs = [(decoded.model[k], v) for k, v in resource["model"].items()]
    else:
        assert decoded.model is None
        pairs = list(zip(decoded.collection, resource["collection"], strict=True))
    for value, sent in pairs:
        if isinstance(sent, dict) and "rid" in sent:
            expected = codec.VALUE_SOFT_REFERENCE if sent.get("soft") is True else codec.VALUE_REFERENCE
            assert (value.type, value.rid) == (expected, sent["rid"])
        elif isinstance(sent, dict):
            data = sent["data"]
            if isinstance(data, (dict, list)):
                assert (value.type, value.raw) == (codec.VALUE_DATA, sent)
            else:
                assert value.type == codec.VALUE_PRIMITIVE and value == codec.decode_value(data)
        else:
            assert value.type == codec.VALUE_PRIMITIVE and value == codec.decode_value(sent)


# --- Resource IDs and paths ------------------------------------------------------------------


def resgate_rid_rule(rid: str, allow_query: bool) -> bool:
    """Resgate's rule read plainly: parts of printable ASCII but ``.*>?``, a query after ``?``."""
    if allow_query:
        rid = rid.partition("?")[0]
    if rid == "":
        return False
    return all(part != "" and all(33 <= ord(c) <= 126 and c not in "*>?" for c in part)
               for part in rid.split("."))


@PROPERTY
@given(st.one_of(rids_with_query, st.text(max_size=30), st.text(alphabet=RID_PART_CHARS + ".?*> \x00é", max_size=20)))
def test_rid_validation_agrees_with_the_rule(rid):
    assert codec.is_valid_rid(rid, True) is resgate_rid_rule(rid, True)
    assert codec.is_valid_rid(rid, False) is resgate_rid_rule(rid, False)


@PROPERTY
@given(rids, st.one_of(st.none(), queries))
def test_rids_built_from_valid_parts_are_valid_and_split_back(name, query):
    assert codec.is_valid_rid(name, False) and codec.is_valid_rid(name, True)
    rid = name if query is None else f"{name}?{query}"
    assert codec.is_valid_rid(rid, True)
    assert codec.is_valid_rid(rid, False) is (query is None)
    assert codec.split_rid(rid) == (name, query or "")
    for part in name.split("."):
        assert codec.is_valid_rid_part(part)


@PROPERTY
@given(rids, st.sampled_from(["/api/", "/", "/x/y/"]))
def test_rid_to_path_and_back(rid, api_path):
    path = rid_to_path(rid, api_path)
    assert path.isascii() and "." not in path and "?" not in path
    assert path_to_rid(path.encode(), "", api_path.encode()) == rid


@PROPERTY
@given(rids, queries)
def test_rid_with_query_to_path_and_back(name, query):
    """A query in a resource ID is escaped into the path (Resgate's hrefs); it maps back textually."""
    rid = f"{name}?{query}"
    path = rid_to_path(rid, "/api/")
    assert path_to_rid(path.encode(), "", b"/api/") == rid


@PROPERTY
@given(rids, rid_parts)
def test_call_path_and_back(rid, method):
    path = rid_to_path(f"{rid}.{method}", "/api/")
    assert path_to_rid_method(path.encode(), "q=1", b"/api/") == (f"{rid}?q=1", method)


@PROPERTY
@given(st.binary(max_size=40), st.text(max_size=10))
@example(b"/api/%", "")
@example(b"/api/a%2", "")
@example(b"/api/%ff%fe", "")
@example(b"/api/a/%C3%28", "")
def test_any_path_maps_to_some_rid_or_none(tail, query):
    for path in (tail, b"/api/" + tail):
        rid = path_to_rid(path, query, b"/api/")
        assert isinstance(rid, str)
        rid, method = path_to_rid_method(path, query, b"/api/")
        assert isinstance(rid, str) and isinstance(method, str)
