"""Validation of the names clients and services send: resource IDs and methods.

The rules are Resgate's (``server/codec``): a resource ID is one or more
dot-separated parts of printable ASCII without ``*``, ``>`` or ``?``,
because the parts become NATS subject tokens. A query, when allowed, starts
at the first ``?`` after a complete part and may hold anything.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from resgate import errors

# Printable ASCII (33..126) except the NATS wildcards, the token separator and
# the query mark; everything else, including non-ASCII, is rejected.
_PART = r"[^\x00-\x20\x7f-\U0010ffff.*>?]+"

_RID_PART = re.compile(_PART)
_RID = re.compile(rf"{_PART}(?:\.{_PART})*")
_RID_WITH_QUERY = re.compile(rf"{_PART}(?:\.{_PART})*(?:\?.*)?", re.DOTALL)


def is_valid_rid(rid: str, allow_query: bool) -> bool:
    """Whether ``rid`` is a resource ID, optionally followed by ``?query``.

    Used on every request and reference, so it is a single precompiled match.
    """
    pattern = _RID_WITH_QUERY if allow_query else _RID
    return pattern.fullmatch(rid) is not None


def is_valid_rid_part(part: str) -> bool:
    """Whether ``part`` can be one dot-free token of a resource ID.

    Method names (call, auth) and the HTTP method mappings must be one part.
    """
    return _RID_PART.fullmatch(part) is not None


# --- Values: what models and collections hold --------------------------------

VALUE_DELETE = 1
VALUE_PRIMITIVE = 2
VALUE_REFERENCE = 3
VALUE_SOFT_REFERENCE = 4
VALUE_DATA = 5

_INVALID_RESPONSE = errors.invalid_response("invalid service response")
_MISSING_RESULT = errors.invalid_response("response missing result")
_INVALID_VALUE = errors.invalid_response("invalid value")
_EMPTY_RID = errors.invalid_response('invalid value: resource references requires a non-empty "rid" value')
_AMBIGUOUS = errors.invalid_response("invalid value: ambiguous value type")
_NESTED_OBJECT = errors.invalid_response("invalid value: nested json object must be wrapped as a data value")
_NESTED_ARRAY = errors.invalid_response("invalid value: nested json array must be wrapped as a data value")
#: What a pre-1.2.1 client sees instead of a data value.
LEGACY_DATA_PLACEHOLDER = "[Data]"


class Value:
    """One model property or collection item.

    ``raw`` is the JSON value sent on to clients: the primitive itself, or the
    object the service sent for references and data values (a data value
    wrapping a primitive becomes that primitive, as in Resgate).
    """

    __slots__ = ("type", "raw", "rid")

    def __init__(self, type: int, raw: Any, rid: str | None = None) -> None:
        self.type = type
        self.raw = raw
        self.rid = rid

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Value) or self.type != other.type:
            return False
        if self.type == VALUE_REFERENCE or self.type == VALUE_SOFT_REFERENCE:
            return self.rid == other.rid
        return self.type == VALUE_DELETE or _same_json(self.raw, other.raw)

    __hash__ = None  # type: ignore[assignment]

    @property
    def is_proper(self) -> bool:
        """A value a resource may hold (not a delete action)."""
        return self.type != VALUE_DELETE

    def legacy(self) -> Any:
        """The value as a client of protocol 1.2.0 or older expects it."""
        if self.type == VALUE_SOFT_REFERENCE:
            return self.rid
        if self.type == VALUE_DATA:
            return LEGACY_DATA_PLACEHOLDER
        return self.raw

    def __repr__(self) -> str:
        return f"Value({self.type}, {self.raw!r})"


DELETE_VALUE = Value(VALUE_DELETE, {"action": "delete"})


def _same_json(a: Any, b: Any) -> bool:
    # 1 == True and 1 == 1.0 in Python, but not in JSON.
    return type(a) is type(b) and a == b


def decode_value(raw: Any) -> Value:
    """Classify a JSON value from a service; raises ResError when it is not allowed."""
    if isinstance(raw, dict):
        rid = raw.get("rid")
        if rid is not None or "rid" in raw:
            if not isinstance(rid, str) or rid == "":
                raise _EMPTY_RID.copy()
            if "action" in raw or "data" in raw:
                raise _AMBIGUOUS.copy()
            if not is_valid_rid(rid, True):
                raise errors.invalid_response(f'invalid value: resource reference rid "{rid}" is invalid')
            return Value(VALUE_SOFT_REFERENCE if raw.get("soft") is True else VALUE_REFERENCE, raw, rid)
        if "action" in raw:
            if "data" in raw:
                raise _AMBIGUOUS.copy()
            if raw["action"] != "delete":
                raise errors.invalid_response(f'invalid value: unknown action "{raw["action"]}"')
            return DELETE_VALUE
        if "data" in raw:
            data = raw["data"]
            if isinstance(data, (dict, list)):
                return Value(VALUE_DATA, raw)
            return Value(VALUE_PRIMITIVE, data)
        raise _NESTED_OBJECT.copy()
    if isinstance(raw, list):
        raise _NESTED_ARRAY.copy()
    return Value(VALUE_PRIMITIVE, raw)


def decode_proper_value(raw: Any) -> Value:
    value = decode_value(raw)
    if not value.is_proper:
        raise _INVALID_VALUE.copy()
    return value


# --- Service responses ---------------------------------------------------------


def json_type_name(value: Any) -> str:
    """What kind of JSON value ``value`` is ("an array"), for messages that must not show it."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _decode_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise errors.invalid_response(e) from None


def _response_error(message: dict) -> errors.ResError | None:
    """The error object of a service response, if it has one.

    As Resgate reads it: a missing code or message is empty, one of the
    wrong type makes the whole response invalid.
    """
    error = message.get("error")
    if error is None:
        return None
    if not isinstance(error, dict):
        return _INVALID_RESPONSE.copy()
    code = error.get("code", "")
    text = error.get("message", "")
    if not isinstance(code, str) or not isinstance(text, str):
        return _INVALID_RESPONSE.copy()
    return errors.ResError(code, text, error.get("data"))


def _response(payload: bytes) -> dict:
    message = _decode_json(payload)
    if not isinstance(message, dict):
        raise _INVALID_RESPONSE.copy()
    return message


class GetResult:
    """A get response: a model or a collection, and the normalized query."""

    __slots__ = ("model", "collection", "query")

    def __init__(self, model: dict[str, Value] | None, collection: list[Value] | None, query: str) -> None:
        self.model = model
        self.collection = collection
        self.query = query


def _decode_resource(result: dict) -> tuple[dict[str, Value] | None, list[Value] | None]:
    model = result.get("model")
    collection = result.get("collection")
    if model is not None:
        if collection is not None or not isinstance(model, dict):
            raise _INVALID_RESPONSE.copy()
        values = {}
        for key, raw in model.items():
            value = decode_value(raw)
            if not value.is_proper:
                raise _INVALID_RESPONSE.copy()
            values[key] = value
        return values, None
    if collection is not None:
        if not isinstance(collection, list):
            raise _INVALID_RESPONSE.copy()
        items = [decode_value(raw) for raw in collection]
        if not all(item.is_proper for item in items):
            raise _INVALID_RESPONSE.copy()
        return None, items
    return None, None


def decode_get_response(payload: bytes) -> GetResult:
    """Decode a get response; raises the service's error or ``system.internalError``."""
    message = _response(payload)
    error = _response_error(message)
    if error is not None:
        raise error
    result = message.get("result")
    if result is None:
        raise _MISSING_RESULT.copy()
    if not isinstance(result, dict):
        raise _INVALID_RESPONSE.copy()
    model, collection = _decode_resource(result)
    if model is None and collection is None:
        raise _INVALID_RESPONSE.copy()
    query = result.get("query", "")
    return GetResult(model, collection, query if isinstance(query, str) else "")


class QueryResult:
    """A query request's response: the events to apply, or the resource as the query now selects it.

    ``events`` is a list of ``(event, data)`` pairs (items without an event
    name are left out); otherwise ``model`` or ``collection`` (or neither).
    """

    __slots__ = ("events", "model", "collection")

    def __init__(self, events: list[tuple[str, Any]] | None, model: dict[str, Value] | None,
                 collection: list[Value] | None) -> None:
        self.events = events
        self.model = model
        self.collection = collection


_QUERY_MISSING_RESULT = errors.internal_error("response missing result")
_QUERY_INVALID_RESPONSE = errors.internal_error("invalid service response")


def decode_query_response(payload: bytes) -> QueryResult:
    """Decode the response to a query event's request; raises the service's error or ResError."""
    message = _response(payload)
    error = _response_error(message)
    if error is not None:
        raise error
    result = message.get("result")
    if not isinstance(result, dict):
        raise _QUERY_MISSING_RESULT.copy()
    events = result.get("events")
    if events is not None:
        if not isinstance(events, list) or result.get("model") is not None \
                or result.get("collection") is not None:
            raise _QUERY_INVALID_RESPONSE.copy()
        return QueryResult([(item["event"], item.get("data")) for item in events
                            if isinstance(item, dict) and isinstance(item.get("event"), str)], None, None)
    model, collection = _decode_resource(result)
    return QueryResult(None, model, collection)


class Access:
    """An access response: ``get`` and the ``call`` methods, or the error."""

    __slots__ = ("get", "call", "error")

    def __init__(self, get: bool = False, call: str | None = None, error: errors.ResError | None = None) -> None:
        self.get = get
        self.call = call
        self.error = error

    def can_get(self) -> errors.ResError | None:
        if self.error is not None:
            return self.error
        return None if self.get else errors.ACCESS_DENIED

    def can_call(self, method: str) -> errors.ResError | None:
        if self.error is not None:
            return self.error
        if self.call == "*" or (self.call and method in self.call.split(",")):
            return None
        return errors.ACCESS_DENIED


def decode_meta(message: dict) -> dict | None:
    """The ``meta`` object of a response (status and header), for HTTP requests."""
    meta = message.get("meta")
    return meta if isinstance(meta, dict) else None


def response_meta(payload: bytes) -> dict | None:
    """The ``meta`` of a response, also of one whose other parts are broken or an error."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return decode_meta(message) if isinstance(message, dict) else None


def decode_access_response(payload: bytes) -> tuple[Access, dict | None]:
    """Decode an access response; an invalid one becomes an Access with an error."""
    try:
        message = _response(payload)
    except errors.ResError as e:
        return Access(error=e), None
    meta = decode_meta(message)
    error = _response_error(message)
    if error is not None:
        return Access(error=error), meta
    result = message.get("result")
    if result is None:
        return Access(error=_MISSING_RESULT), meta
    if not isinstance(result, dict):
        return Access(error=_INVALID_RESPONSE), meta
    get = result.get("get", False)
    call = result.get("call")
    if not isinstance(get, bool) or not (call is None or isinstance(call, str)):
        return Access(error=errors.invalid_response("invalid access response")), meta
    return Access(get, call), meta


_NO_RESULT = object()


def decode_call_response(payload: bytes) -> tuple[Any, str | None, dict | None]:
    """Decode a call or auth response: (result, resource RID or None, meta).

    Raises the service's error, or ``system.internalError`` for a broken response.
    """
    message = _response(payload)
    error = _response_error(message)
    if error is not None:
        raise error
    meta = decode_meta(message)
    resource = message.get("resource")
    if resource is not None:
        rid = resource.get("rid") if isinstance(resource, dict) else None
        if not isinstance(rid, str) or not is_valid_rid(rid, True):
            raise _INVALID_RESPONSE.copy()
        return None, rid, meta
    result = message.get("result", _NO_RESULT)
    if result is _NO_RESULT:
        raise _MISSING_RESULT.copy()
    return result, None, meta


def legacy_new_rid(result: Any) -> str | None:
    """The rid of a pre-1.1 ``new`` call result (``{"rid": ...}`` alone), if it is one."""
    if isinstance(result, dict) and len(result) == 1 and isinstance(result.get("rid"), str):
        if not is_valid_rid(result["rid"], True):
            raise _INVALID_RESPONSE.copy()
        return result["rid"]
    return None


# --- Events ------------------------------------------------------------------------


def decode_event(payload: bytes) -> Any:
    """The JSON payload of an event; raises ResError when malformed.

    An empty payload is None, as is ``null``: the client gets ``"data":null``
    for both (see clientcodec.encode_event).
    """
    return _decode_json(payload) if payload else None


def is_legacy_change_event(data: Any) -> bool:
    """Whether a change event is pre-1.0 style: the changed values without ``values``."""
    return not (isinstance(data, dict) and len(data) == 1 and isinstance(data.get("values"), dict))


def decode_change_event(data: Any) -> dict[str, Value]:
    values = data if is_legacy_change_event(data) else data["values"]
    if not isinstance(values, dict):
        raise _INVALID_VALUE.copy()
    return {key: decode_value(raw) for key, raw in values.items()}


def decode_add_event(data: Any) -> tuple[int, Value]:
    if not isinstance(data, dict) or not _is_int(data.get("idx")):
        raise errors.internal_error("invalid add event")
    return data["idx"], decode_proper_value(data.get("value"))


def decode_remove_event(data: Any) -> int:
    if not isinstance(data, dict) or not _is_int(data.get("idx")):
        raise errors.internal_error("invalid remove event")
    return data["idx"]


def _is_int(value: Any) -> bool:
    return type(value) is int


def decode_conn_token_event(payload: bytes) -> tuple[Any, str, bool]:
    """(token, tid, whether a token was given) of a ``conn.<cid>.token`` event.

    A JSON null payload, or one without ``token``, gives no token at all,
    which Resgate tells apart from ``"token": null``.
    """
    message = _decode_json(payload)
    if message is None:
        return None, "", False
    if not isinstance(message, dict):
        raise errors.internal_error("invalid token event")
    tid = message.get("tid")
    return message.get("token"), tid if isinstance(tid, str) else "", "token" in message


def decode_system_reset(payload: bytes) -> tuple[list[str], list[str]]:
    """(resource patterns, access patterns) of a ``system.reset`` event."""
    message = decode_event(payload) or {}
    if not isinstance(message, dict):
        raise errors.internal_error("invalid system reset event")
    return _strings(message.get("resources")), _strings(message.get("access"))


def decode_system_token_reset(payload: bytes) -> tuple[list[str], str]:
    """(tids, subject) of a ``system.tokenReset`` event."""
    message = decode_event(payload) or {}
    if not isinstance(message, dict):
        raise errors.internal_error("invalid system token reset event")
    subject = message.get("subject")
    return _strings(message.get("tids")), subject if isinstance(subject, str) else ""


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise errors.internal_error("expected a list of strings")
    return value


# --- Requests to services ------------------------------------------------------------

_NO_QUERY_GET_REQUEST = b"{}"


def create_request(cid: str, token: Any, *, query: str = "", params: Any = _NO_RESULT,
                   is_http: bool = False, http: dict | None = None) -> bytes:
    """The payload of an access, call or auth request.

    ``token`` is always present (null without one); ``params`` when the caller
    passes it; ``query`` and ``isHttp`` only when set; ``http`` adds the auth
    request's header, host, remoteAddr and uri.
    """
    message: dict[str, Any] = {}
    if params is not _NO_RESULT:
        message["params"] = params
    message["token"] = token
    if query:
        message["query"] = query
    message["cid"] = cid
    if is_http:
        message["isHttp"] = True
    if http:
        message.update(http)
    return orjson.dumps(message)


def create_get_request(query: str) -> bytes:
    return orjson.dumps({"query": query}) if query else _NO_QUERY_GET_REQUEST


def create_event_query_request(query: str) -> bytes:
    return orjson.dumps({"query": query})


def split_rid(rid: str) -> tuple[str, str]:
    """(resource name, query) of a resource ID."""
    name, _, query = rid.partition("?")
    return name, query
