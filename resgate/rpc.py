"""The RES-client JSON-RPC: a client message in, a connection method called, a reply out.

Shaped as Resgate's: a request is ``{"id", "method", "params"}``; the method
is ``version``, or ``<action>.<rid>`` with ``call``/``auth`` naming the
method after the last dot. A message that is not JSON, or has no numeric id,
gets no reply (Resgate's behaviour); every other problem gets an error
response and the connection carries on.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.logger import Logger

from resgate import codec, errors
from resgate.clientcodec import NO_RESULT, encode_error, encode_result
from resgate.connection import Connection

log = Logger(namespace="resgate.rpc")

_MISSING = object()


def _valid_id(request_id: Any) -> bool:
    # Resgate reads the id as an unsigned 64-bit integer.
    return type(request_id) is int and 0 <= request_id < 1 << 64


def handle_request(conn: Connection, data: bytes | str, reply) -> None:
    """Handle one client message; ``reply(bytes)`` sends the response."""
    try:
        request = orjson.loads(data)
    except orjson.JSONDecodeError:
        if conn.context.debug:
            log.debug("[{cid}] Invalid JSON request", cid=conn.cid)
        return
    if not isinstance(request, dict) or not _valid_id(request.get("id")):
        if conn.context.debug:
            log.debug("[{cid}] Request without a valid id", cid=conn.cid)
        return
    request_id = request["id"]
    method = request.get("method")
    params = request.get("params", _MISSING)

    def respond(result: Any, error: errors.ResError | None) -> None:
        reply(encode_error(request_id, error) if error is not None else encode_result(request_id, result))

    if not isinstance(method, str):
        respond(None, errors.INVALID_REQUEST)
        return
    action, dot, rid = method.partition(".")
    if not dot:
        if method == "version":
            _version(conn, params, respond)
        else:
            respond(None, errors.INVALID_REQUEST)
        return
    name = ""
    if action in ("call", "auth"):
        rid, dot, name = rid.rpartition(".")
        if not dot or not codec.is_valid_rid_part(name):
            respond(None, errors.INVALID_REQUEST)
            return
    if not codec.is_valid_rid(rid, True):
        respond(None, errors.INVALID_REQUEST)
        return
    counted = conn.context.metrics.ws_requests
    metric = "call" if action == "new" else action
    if metric in counted:
        counted[metric] += 1
    tracing = conn.context.tracing
    if tracing is None:
        _dispatch(conn, action, rid, name, params, respond)
        return
    trace = tracing.start(None, f"WebSocket {action}", {"resgate.rid": rid})

    def traced(result: Any, error: errors.ResError | None) -> None:
        trace.end(None if error is None else error.code)
        respond(result, error)

    # Requests sent while it is handled carry its span (Connection.request_trace).
    conn.request_trace = trace
    try:
        _dispatch(conn, action, rid, name, params, traced)
    finally:
        conn.request_trace = None


def _dispatch(conn: Connection, action: str, rid: str, name: str, params: Any, respond) -> None:
    """Call the connection method of ``action`` on ``rid`` (``name``: the method of a call or auth)."""
    call_params = None if params is _MISSING else params
    if action == "subscribe":
        conn.subscribe_resource(rid, respond)
    elif action == "get":
        conn.get_resource(rid, respond)
    elif action == "unsubscribe":
        _unsubscribe(conn, rid, params, respond)
    elif action == "call":
        conn.call_resource(rid, name, call_params, respond)
    elif action == "auth":
        conn.auth_resource(rid, name, call_params, respond)
    elif action == "new":
        conn.new_resource(rid, call_params, respond)
    else:
        respond(None, errors.INVALID_REQUEST)


def _version(conn: Connection, params: Any, respond) -> None:
    protocol = ""
    if params is not _MISSING and params is not None:
        value = params.get("protocol") if isinstance(params, dict) else _MISSING
        if value is None:
            value = ""
        if not isinstance(value, str):
            respond(None, errors.INVALID_PARAMS)
            return
        protocol = value
    try:
        respond({"protocol": conn.set_version(protocol)}, None)
    except errors.ResError as e:
        respond(None, e)


def _unsubscribe(conn: Connection, rid: str, params: Any, respond) -> None:
    count = 1
    if params is not _MISSING and params is not None:
        if not isinstance(params, dict):
            respond(None, errors.INVALID_PARAMS)
            return
        value = params.get("count")
        if value is not None:
            if type(value) is not int or value <= 0:
                respond(None, errors.INVALID_PARAMS)
                return
            count = value
    if conn.unsubscribe_resource(rid, count):
        respond(NO_RESULT, None)
    else:
        respond(None, errors.NO_SUBSCRIPTION)
