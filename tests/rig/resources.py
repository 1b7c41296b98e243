"""The standard fixture resources of the scenario tests, and helpers to serve them.

Every scenario plays the same small world of resources (the ones Resgate's
own test suite uses), so a scenario can say "subscribe to
test.model.parent" and both the service side (the ``get`` response) and the
client side (what the gateway must send to the client) are known here.

Shapes:

* ``RESOURCES[rid]`` is ``{"type": "model" | "collection" | "error", ...}``
  with ``"data"`` (the value the service returns, as a Python object) for
  models and collections, or ``"error"`` (a RES error object) for errors.
* ``get_result(rid)`` is the service's get ``result`` (``{"model": ...}`` or
  ``{"collection": ...}``); ``get_response(rid)`` is the whole reply message
  (``{"result": ...}`` or ``{"error": ...}``), ready for ``ServiceRequest.respond``.
* ``client_data(rid)`` is what a client sees for the resource: for clients
  on protocol 1.2.1 or later a primitive data value ``{"data": 12}`` becomes
  ``12`` while object and array data values and all references (soft or not,
  with their ``soft`` flag as the service wrote it) are passed on as they
  are; for older clients (``legacy=True``) a soft reference becomes its rid
  as a plain string and an object/array data value becomes ``"[Data]"``.
* ``client_result(*rids)`` is a client ``result`` holding those resources:
  ``{"models": {...}, "collections": {...}, "errors": {...}}`` with empty
  groups left out.

Scenario helpers (the client's side of a scenario):

* connecting: ``connect_client`` (connect plus version handshake), ``get_cid``;
* subscribing: ``subscribe_to`` (a successful subscribe/get, serving every
  request), ``subscribe_query`` (with a query the service normalizes),
  ``subscribe_parent_and_collection``, ``resubscribe_from_cache``,
  ``request_with_cid_placeholder``;
* events: ``event`` (a client event message), ``expect_custom_event``,
  ``expect_no_custom_event``;
* nothing more: ``assert_no_event``, ``flush_requests`` and
  ``assert_no_nats_request`` do not sleep (an auth round trip flushes the
  gateway), while ``assert_quiet`` waits ``QUIET`` seconds, for scenarios
  that do not flush.

``MonitoredNatsServer`` is a nats-server whose monitoring endpoint shows the
gateway's event subscriptions.

Cyclic groups: test.m.a -> a; b <-> c; d -> e, f; e -> d; f -> d; g -> e, f;
h -> e (and the same for test.c.*).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable

from tests.rig.aio import sleep
from tests.rig.nats import NatsServer

#: The protocol version a client announces to get the current behaviour
#: (what Resgate's suite uses: newer than any real version).
VERSION_LATEST = "1.999.999"
#: The RES protocol version the gateway implements and reports.
PROTOCOL_VERSION = "1.2.3"

#: A custom event payload the scenarios send and expect back.
CUSTOM_EVENT = {"foo": "bar"}

#: How long ``assert_quiet`` watches for messages that should not come (seconds).
QUIET = 0.2


def _err(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


# Predefined RES errors, as they appear on the wire.
ERR_ACCESS_DENIED = _err("system.accessDenied", "Access denied")
ERR_DISPOSING = _err("system.internalError", "Internal error: disposing connection")
ERR_INTERNAL_ERROR = _err("system.internalError", "Internal error")
ERR_INVALID_PARAMS = _err("system.invalidParams", "Invalid parameters")
ERR_INVALID_QUERY = _err("system.invalidQuery", "Invalid query")
ERR_METHOD_NOT_FOUND = _err("system.methodNotFound", "Method not found")
ERR_NO_SUBSCRIPTION = _err("system.noSubscription", "No subscription")
ERR_NOT_FOUND = _err("system.notFound", "Not found")
ERR_TIMEOUT = _err("system.timeout", "Request timeout")
ERR_INVALID_REQUEST = _err("system.invalidRequest", "Invalid request")
ERR_UNSUPPORTED_PROTOCOL = _err("system.unsupportedProtocol", "Unsupported protocol")
ERR_SUBJECT_TOO_LONG = _err("system.subjectTooLong", "Subject too long")
ERR_DELETED = _err("system.deleted", "Deleted")

#: ``unsubscribe`` event payloads.
UNSUBSCRIBE_REASON_ACCESS_DENIED = {"reason": ERR_ACCESS_DENIED}
UNSUBSCRIBE_REASON_DELETED = {"reason": ERR_DELETED}


def _model(data: dict) -> dict:
    return {"type": "model", "data": data}


def _collection(data: list) -> dict:
    return {"type": "collection", "data": data}


def _error(error: dict) -> dict:
    return {"type": "error", "error": error}


def _ref(rid: str, **extra: Any) -> dict:
    return {"rid": rid, **extra}


RESOURCES: dict[str, dict] = {
    # Models
    "test.model": _model({"string": "foo", "int": 42, "bool": True, "null": None}),
    "test.model.parent": _model({"name": "parent", "child": _ref("test.model")}),
    "test.model.secondparent": _model({"name": "secondparent", "child": _ref("test.model")}),
    "test.model.grandparent": _model({"name": "grandparent", "child": _ref("test.model.parent")}),
    "test.model.brokenchild": _model({"name": "brokenchild", "child": _ref("test.err.notFound")}),
    "test.model.soft": _model({"name": "soft", "child": _ref("test.model", soft=True)}),
    "test.model.soft.parent": _model({"name": "softparent", "child": _ref("test.model.soft", soft=False)}),
    "test.model.data": _model({
        "name": "data",
        "primitive": {"data": 12},
        "object": {"data": {"foo": ["bar"]}},
        "array": {"data": [{"foo": "bar"}]},
    }),
    "test.model.data.parent": _model({"name": "dataparent", "child": _ref("test.model.data")}),
    "test.model.query.parent": _model({"name": "queryparent", "child": _ref("test.model?foo=bar")}),
    # Cyclic models
    "test.m.a": _model({"a": _ref("test.m.a")}),
    "test.m.b": _model({"c": _ref("test.m.c")}),
    "test.m.c": _model({"b": _ref("test.m.b")}),
    "test.m.d": _model({"e": _ref("test.m.e"), "f": _ref("test.m.f")}),
    "test.m.e": _model({"d": _ref("test.m.d")}),
    "test.m.f": _model({"d": _ref("test.m.d")}),
    "test.m.g": _model({"e": _ref("test.m.e"), "f": _ref("test.m.f")}),
    "test.m.h": _model({"e": _ref("test.m.e")}),
    # Collections
    "test.collection": _collection(["foo", 42, True, None]),
    "test.collection.parent": _collection(["parent", _ref("test.collection")]),
    "test.collection.secondparent": _collection(["secondparent", _ref("test.collection")]),
    "test.collection.grandparent": _collection(["grandparent", _ref("test.collection.parent")]),
    "test.collection.brokenchild": _collection(["brokenchild", _ref("test.err.notFound")]),
    "test.collection.soft": _collection(["soft", _ref("test.collection", soft=True)]),
    "test.collection.soft.parent": _collection(["softparent", _ref("test.collection.soft", soft=False)]),
    "test.collection.data": _collection([
        "data", {"data": 12}, {"data": {"foo": ["bar"]}}, {"data": [{"foo": "bar"}]},
    ]),
    "test.collection.data.parent": _collection(["dataparent", _ref("test.collection.data")]),
    "test.collection.empty": _collection([]),
    # Cyclic collections
    "test.c.a": _collection([_ref("test.c.a")]),
    "test.c.b": _collection([_ref("test.c.c")]),
    "test.c.c": _collection([_ref("test.c.b")]),
    "test.c.d": _collection([_ref("test.c.e"), _ref("test.c.f")]),
    "test.c.e": _collection([_ref("test.c.d")]),
    "test.c.f": _collection([_ref("test.c.d")]),
    "test.c.g": _collection([_ref("test.c.e"), _ref("test.c.f")]),
    "test.c.h": _collection([_ref("test.c.e")]),
    # Errors
    "test.err.notFound": _error(ERR_NOT_FOUND),
    "test.err.internalError": _error(ERR_INTERNAL_ERROR),
    "test.err.timeout": _error(ERR_TIMEOUT),
}


def _resource(rid: str) -> dict:
    try:
        return RESOURCES[rid]
    except KeyError:
        raise KeyError(f"no fixture resource named {rid!r}") from None


def resource_type(rid: str) -> str:
    """``"model"``, ``"collection"`` or ``"error"``."""
    return _resource(rid)["type"]


def resource_data(rid: str) -> Any:
    """The service-side data of a model or collection (a fresh copy), or the error object."""
    r = _resource(rid)
    return copy.deepcopy(r["error"] if r["type"] == "error" else r["data"])


def get_result(rid: str) -> dict:
    """The ``result`` of the service's get response: ``{"model": ...}`` or ``{"collection": ...}``."""
    r = _resource(rid)
    if r["type"] == "error":
        raise ValueError(f"{rid} is an error resource; use get_response")
    return {r["type"]: copy.deepcopy(r["data"])}


def get_response(rid: str) -> dict:
    """The whole get reply message: ``{"result": {...}}`` or ``{"error": {...}}``."""
    r = _resource(rid)
    if r["type"] == "error":
        return {"error": dict(r["error"])}
    return {"result": get_result(rid)}


def respond_get(request, rid: str | None = None) -> None:
    """Answer a ``get.<rid>`` ServiceRequest with the fixture resource (rid from its subject by default)."""
    if rid is None:
        rid = request.subject[len("get."):]
    request.respond(get_response(rid))


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "rid" in value


def _values(data: Any) -> Iterable[Any]:
    return data.values() if isinstance(data, dict) else data


def _client_value(value: Any, legacy: bool) -> Any:
    if isinstance(value, dict):
        if "data" in value:
            inner = value["data"]
            if not isinstance(inner, (dict, list)):
                return inner
            return "[Data]" if legacy else value
        if "rid" in value and value.get("soft") and legacy:
            return value["rid"]
    return value


def client_data(rid: str, legacy: bool = False) -> Any:
    """What a client receives for ``rid``: model/collection data, or the error object.

    ``legacy`` gives the form for clients on protocol versions below 1.2.1
    (including clients that sent no version request at all).
    """
    r = _resource(rid)
    if r["type"] == "error":
        return dict(r["error"])
    data = copy.deepcopy(r["data"])
    if r["type"] == "model":
        return {k: _client_value(v, legacy) for k, v in data.items()}
    return [_client_value(v, legacy) for v in data]


def client_result(*rids: str, legacy: bool = False) -> dict:
    """A client result holding these resources, grouped as models, collections and errors."""
    groups = {"models": {}, "collections": {}, "errors": {}}
    group_of = {"model": "models", "collection": "collections", "error": "errors"}
    for rid in rids:
        groups[group_of[resource_type(rid)]][rid] = client_data(rid, legacy)
    return {k: v for k, v in groups.items() if v}


def client_models(*rids: str, legacy: bool = False) -> dict:
    """``{rid: client form}`` for these model resources (the "models" group of a result)."""
    return {rid: client_data(rid, legacy) for rid in rids}


client_collections = client_models
client_errors = client_models


def references(rid: str, soft: bool = False) -> list[str]:
    """The rids ``rid`` refers to directly (soft references only if ``soft``)."""
    r = _resource(rid)
    if r["type"] == "error":
        return []
    return [v["rid"] for v in _values(r["data"]) if _is_ref(v) and (soft or not v.get("soft"))]


def resource_tree(rid: str) -> list[str]:
    """``rid`` and every resource reached from it through non-soft references (each once)."""
    seen = [rid]
    i = 0
    while i < len(seen):
        for ref in references(seen[i]):
            if ref not in seen:
                seen.append(ref)
        i += 1
    return seen


# ---------------------------------------------------------------------------
# Client-side session helpers shared by the WebSocket scenarios.


async def connect_client(gateway, version: str | None = VERSION_LATEST, headers: dict | None = None):
    """A WsClient connected to ``gateway`` (a GatewayService or a ws:// URL).

    Unless ``version`` is None it first makes the version handshake the
    way Resgate's test sessions do, and checks the gateway's answer.
    """
    from tests.rig.ws import connect_ws

    url = gateway if isinstance(gateway, str) else gateway.ws_url
    client = await connect_ws(url, headers=headers)
    if version is not None:
        response = await client.request("version", {"protocol": version})
        assert response.get("result") == {"protocol": PROTOCOL_VERSION}, response
    return client


async def subscribe_to(client, service, rid: str, method: str = "subscribe",
                       cached: Iterable[str] = ()) -> tuple[dict, str]:
    """Make a successful ``subscribe``/``get`` of fixture resource ``rid``.

    Grants access, answers the get requests of ``rid`` and of every resource
    it references that is not in ``cached`` (already held by the gateway),
    in whatever order they come, and returns ``(client response, cid)``.
    Requests for anything else fail the scenario.
    """
    cached = set(cached)
    pending = client.request(f"{method}.{rid}")
    expected = {f"access.{rid}"} | {f"get.{r}" for r in resource_tree(rid) if r not in cached}
    cid = None
    while expected:
        request = await service.next_request()
        if request.subject not in expected:
            raise AssertionError(f"unexpected request {request.subject}; expected {sorted(expected)}")
        expected.discard(request.subject)
        if request.subject.startswith("access."):
            cid = request.payload.get("cid")
            request.respond_result({"get": True})
        else:
            respond_get(request)
    response = await pending
    assert "result" in response, response
    return response, cid


async def subscribe_parent_and_collection(client, service) -> None:
    """Subscribe to test.model.parent (with its child test.model) and test.collection."""
    response, _ = await subscribe_to(client, service, "test.model.parent")
    assert response["result"] == client_result("test.model.parent", "test.model")
    response, _ = await subscribe_to(client, service, "test.collection")
    assert response["result"] == client_result("test.collection")


async def expect_custom_event(client, service, rid: str) -> None:
    """Send a custom event on ``rid``; it must be the client's next message."""
    service.event(rid, "custom", CUSTOM_EVENT)
    assert await client.next_message() == {"event": f"{rid}.custom", "data": CUSTOM_EVENT}


async def resubscribe_from_cache(client, service, rid: str) -> dict:
    """Unsubscribe from ``rid`` and subscribe again: only access is asked, the
    resource comes from the gateway's cache. Returns the client's result."""
    response = await client.request(f"unsubscribe.{rid}")
    assert "error" not in response, response
    pending = client.request(f"subscribe.{rid}")
    (await service.take(f"access.{rid}"))[f"access.{rid}"].respond_result({"get": True})
    response = await pending
    assert "result" in response, response
    return response["result"]


async def expect_no_custom_event(client, service, rid: str) -> None:
    """Send a custom event on ``rid``; the client gets no event (see ``assert_no_event``)."""
    service.event(rid, "custom", CUSTOM_EVENT)
    await assert_no_event(client, service, rid)


async def get_cid(client, service) -> str:
    """The connection ID, learnt from an auth request (the way Resgate's tests learn it)."""
    pending = client.request("auth.test.method")
    request = await service.next_request()
    assert request.subject == "auth.test.method", request.subject
    cid = request.payload["cid"]
    request.respond_result(None)
    await pending
    return cid


async def request_with_cid_placeholder(client, service, method: str) -> str:
    """``<method>.test.{cid}.model`` (``get`` or ``subscribe``); returns the cid.

    The access and get requests go out for ``test.<cid>.model``, served as
    test.model, and the client gets it under the resource ID it asked for,
    placeholder and all.
    """
    cid = await get_cid(client, service)
    pending = client.request(f"{method}.test.{{cid}}.model")
    reqs = await service.take(f"access.test.{cid}.model", f"get.test.{cid}.model")
    reqs[f"access.test.{cid}.model"].respond_result({"get": True})
    reqs[f"get.test.{cid}.model"].respond_result(get_result("test.model"))
    response = await pending
    assert response["result"] == {"models": {"test.{cid}.model": client_data("test.model")}}
    return cid


async def assert_no_event(client, service, rid: str = "test") -> None:
    """Fail if the client got, or is about to get, any event.

    Like Resgate's suite, it flushes instead of sleeping: an ``auth`` request
    on ``rid`` makes a round trip through the service, whose reply reaches
    the gateway after every event the service published before it; the
    gateway handles NATS messages in order, so any event for the client
    would be sent before the auth response.
    """
    assert not client.inbox, f"expected no client event, got {client.inbox[0]!r}"
    await flush_requests(client, service, rid)
    assert not client.inbox, f"expected no client event, got {client.inbox[0]!r}"


async def assert_quiet(client) -> None:
    """No message reaches the client for ``QUIET`` seconds (a wait, not a flush)."""
    await sleep(QUIET)
    assert client.inbox == [], f"unexpected messages: {client.inbox}"


def event(name: str, data: Any) -> dict:
    """The client message of event ``name`` (``<rid>.<event>``) with ``data``."""
    return {"event": name, "data": data}


async def flush_requests(client, service, rid: str = "test") -> None:
    """Fail if the service has been sent any request not taken yet.

    Sends ``auth.<rid>.foo`` from the client and checks it is the very next
    request the service sees, then answers it and awaits the client response.
    """
    pending = client.request(f"auth.{rid}.foo")
    request = await service.next_request()
    assert request.subject == f"auth.{rid}.foo", f"expected no NATS request, got {request.subject}"
    request.respond_result(None)
    await pending


async def assert_no_nats_request(client, service, rid: str) -> None:
    """No request reached the service: the flush request comes next, nothing else came."""
    await flush_requests(client, service, rid)
    service.assert_no_request()


async def subscribe_query(client, service, rid: str, query: str, normalized: str) -> str:
    """Subscribe to fixture resource ``rid`` with ``query``; the service normalizes it.

    Checks that both access and get requests carry the query as the client
    wrote it, answers the get as a query resource with ``normalized``, and
    checks the client gets the resource under the rid it asked for.
    Returns the connection ID.
    """
    full = f"{rid}?{query}" if query else rid
    pending = client.request(f"subscribe.{full}")
    reqs = await service.take(f"access.{rid}", f"get.{rid}")
    access = reqs[f"access.{rid}"]
    get = reqs[f"get.{rid}"]
    if query:
        assert access.payload.get("query") == query, access.payload
        assert get.payload.get("query") == query, get.payload
    cid = access.payload["cid"]
    access.respond_result({"get": True})
    get.respond_result({**get_result(rid), "query": normalized})
    response = await pending
    group = "models" if resource_type(rid) == "model" else "collections"
    assert response.get("result") == {group: {full: client_data(rid)}}, response
    return cid


# ---------------------------------------------------------------------------
# A nats-server with its monitoring endpoint, to see the gateway's NATS
# subscriptions (Resgate subscribes to ``event.<resource name>.*`` for every
# resource in its cache and unsubscribes when the resource leaves the cache).

_MONITOR = re.compile(r"http monitor on [^\s]*:(\d+)")


class MonitoredNatsServer(NatsServer):
    """A NatsServer with an HTTP monitoring port of its own choosing.

    Use it in a test module by overriding the ``nats_server`` fixture::

        @pytest.fixture(scope="module")
        def nats_server():
            server = MonitoredNatsServer().start()
            yield server
            server.cleanup()
    """

    def __init__(self, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(extra_args=("-m", "-1", *extra_args))

    @property
    def monitor_url(self) -> str:
        match = _MONITOR.search(self.log())
        if match is None:
            raise RuntimeError("nats-server monitor port not found in its log")
        return f"http://127.0.0.1:{match.group(1)}"

    async def subscriptions(self) -> set[str]:
        """Every subject any client connection subscribes to."""
        from tests.rig.http import http_request

        response = await http_request("GET", f"{self.monitor_url}/connz?subs=1&limit=100000")
        assert response.status == 200, response
        subjects: set[str] = set()
        for conn in response.json().get("connections") or []:
            subjects.update(conn.get("subscriptions_list") or [])
        return subjects

    async def event_subscriptions(self) -> set[str]:
        """Resource names with an ``event.<name>.*`` (or ``.>``) subscription."""
        return {s[len("event."):-2] for s in await self.subscriptions()
                if s.startswith("event.") and s[-2:] in (".*", ".>")}


#: Custom event payloads as a service sends them, and the data a client must get for each
#: (an empty payload is null data, as in Resgate).
CUSTOM_PAYLOADS = [
    (b"null", b"null"),
    (b"false", b"false"),
    (b"0", b"0"),
    (b'""', b'""'),
    (b"{}", b"{}"),
    (b"[]", b"[]"),
    (b'{"a":null,"b":[null]}', b'{"a":null,"b":[null]}'),
    (b"", b"null"),
]
