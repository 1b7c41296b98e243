"""HTTP GET of resources (Resgate's 14http_get scenarios, and HTTPS).

A GET is a short-lived connection: access (``isHttp: true``), then the
resource and everything it references, nested in the response body as the
API encoding (``json`` or ``jsonflat``) says.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestHTTPGetInvalidURLs | test_get_invalid_url_is_not_found (6 URLs x 2 encodings) |
| TestHTTPGet | test_get_sequence (every subscribe sequence of protocol latest x 2 encodings), test_encodings_of_cyclic_and_linked_resources |
| TestHTTPGetOnPrimitiveQueryModel | test_get_query_resource[test.model] (2 encodings) |
| TestHTTPGetOnPrimitiveQueryCollection | test_get_query_resource[test.collection] (2 encodings) |
| TestHTTPGet_AllowOrigin_ExpectedResponse | test_get_allow_origin (6 rows) |
| TestHTTPGet_HeaderAuth_ExpectedResponse | test_get_header_auth (12 rows) |
| TestHTTPGet_LongResourceID_ReturnsStatus414 | test_get_long_resource_id_is_414 |
| TestHTTPGet_LongModelQuery_ReturnsModel | test_get_long_query_returns_model |
| TestMetrics_HTTPRequestsGet_IncreasesCounter (33metrics, request part) | test_get_model |

All ported; the metrics counter itself belongs to the metrics issue.
Added: test_get_over_https and test_subscribe_over_wss (``--tls``), and
test_get_cid_placeholder.
"""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory, connectWS
from twisted.internet import defer, ssl
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from tests.rig.aio import within
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
    ERR_NOT_FOUND,
    ERR_SUBJECT_TOO_LONG,
    PROTOCOL_VERSION,
    RESOURCES,
    VERSION_LATEST,
    client_result,
    get_result,
    respond_get,
    subscribe_to,
)
from tests.rig.tls import write_self_signed_cert
from tests.rig.ws import WsClient

pytestmark = pytest.mark.usefixtures("logged_errors")

ENCODINGS = ["json", "jsonFlat"]

MODEL = get_result("test.model")["model"]


def href(rid: str) -> dict:
    return {"href": "/api/" + rid.replace(".", "/")}


def _expected(rid: str, encoding: str) -> object:
    """What GET of fixture resource ``rid`` answers with in ``encoding``.

    Written from the encoding rules over the fixture data (not from the
    gateway's code); test_encodings_of_cyclic_and_linked_resources pins a
    few results literally.
    """
    flat = encoding.lower() == "jsonflat"

    def encode(rid: str, ancestors: tuple[str, ...], top: bool) -> object:
        resource = RESOURCES[rid]
        if rid in ancestors:
            return href(rid)
        if resource["type"] == "error":
            body = dict(resource["error"])
            return body if flat or top else {**href(rid), "error": body}
        inner = ancestors + (rid,)

        def value(v):
            if isinstance(v, dict) and "rid" in v:
                return href(v["rid"]) if v.get("soft") else encode(v["rid"], inner, False)
            if isinstance(v, dict) and "data" in v:
                return v["data"]
            return v

        data = resource["data"]
        body = ({k: value(v) for k, v in data.items()} if resource["type"] == "model"
                else [value(v) for v in data])
        if flat or top:
            return body
        return {**href(rid), resource["type"]: body}

    return encode(rid, (), True)


# Literal results, to keep _expected honest.
LITERAL = {
    ("json", "test.model.parent"): {"name": "parent", "child": {**href("test.model"), "model": MODEL}},
    ("json", "test.model.brokenchild"): {
        "name": "brokenchild", "child": {**href("test.err.notFound"), "error": ERR_NOT_FOUND}},
    ("json", "test.model.soft"): {"name": "soft", "child": href("test.model")},
    ("json", "test.model.data"): {"name": "data", "primitive": 12, "object": {"foo": ["bar"]},
                                  "array": [{"foo": "bar"}]},
    ("json", "test.m.a"): {"a": href("test.m.a")},
    ("json", "test.m.b"): {"c": {**href("test.m.c"), "model": {"b": href("test.m.b")}}},
    ("json", "test.c.d"): [{**href("test.c.e"), "collection": [href("test.c.d")]},
                           {**href("test.c.f"), "collection": [href("test.c.d")]}],
    ("json", "test.m.h"): {"e": {**href("test.m.e"), "model": {"d": {**href("test.m.d"), "model": {
        "e": href("test.m.e"), "f": {**href("test.m.f"), "model": {"d": href("test.m.d")}}}}}}},
    ("jsonFlat", "test.model.parent"): {"name": "parent", "child": MODEL},
    ("jsonFlat", "test.collection.brokenchild"): ["brokenchild", ERR_NOT_FOUND],
    ("jsonFlat", "test.collection.soft.parent"): ["softparent", ["soft", href("test.collection")]],
    ("jsonFlat", "test.m.b"): {"c": {"b": href("test.m.b")}},
    ("jsonFlat", "test.c.g"): [[[href("test.c.e"), [href("test.c.d")]]],
                               [[[href("test.c.d")], href("test.c.f")]]],
}


@pytest.mark.parametrize("encoding, rid", sorted(LITERAL), ids=[f"{e}:{r}" for e, r in sorted(LITERAL)])
def test_encodings_of_cyclic_and_linked_resources(encoding, rid):
    assert _expected(rid, encoding) == LITERAL[(encoding, rid)]


# ---------------------------------------------------------------------------
# Invalid URLs


INVALID_URLS = [
    "/wrong_prefix/test/model",
    "/api/",
    "/api/test.model",
    "/api/test/model/",
    "/api/test//model",
    "/api/test/m%C3%A5del/action",
]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("url", INVALID_URLS)
@pytest_twisted.ensureDeferred
async def test_get_invalid_url_is_not_found(gateway_factory, fake_service, encoding, url):
    gateway = await gateway_factory(api_encoding=encoding)
    response = await http_request("GET", server_url(gateway) + url)
    assert_error(response, 404, ERR_NOT_FOUND)
    fake_service.assert_no_request()


# ---------------------------------------------------------------------------
# Sequences: GETs while the service answers access and get requests
#
# Steps: "get R" starts an HTTP GET of R; "access R"/"accessDenied R" answers
# the access request for R; "load R" answers the get request for R with the
# fixture; "response R" checks the GET of R answered 200 with R and all it
# references nested; "errorResponse R" checks it answered with an error.

SEQUENCES = [
    "get test.model; access test.model; load test.model; response test.model",
    "get test.model.parent; access test.model.parent; load test.model.parent; load test.model;"
    " response test.model.parent",
    "get test.model.grandparent; access test.model.grandparent; load test.model.grandparent;"
    " load test.model.parent; load test.model; response test.model.grandparent",
    "get test.model.parent; access test.model.parent; load test.model.parent; load test.model;"
    " response test.model.parent; get test.model.secondparent; access test.model.secondparent;"
    " load test.model.secondparent; response test.model.secondparent",
    "get test.model.brokenchild; access test.model.brokenchild; load test.model.brokenchild;"
    " load test.err.notFound; response test.model.brokenchild",
    "get test.model.soft; access test.model.soft; load test.model.soft; response test.model.soft",
    "get test.model.soft.parent; access test.model.soft.parent; load test.model.soft.parent;"
    " load test.model.soft; response test.model.soft.parent",
    "get test.model.data; access test.model.data; load test.model.data; response test.model.data",
    "get test.model.data.parent; access test.model.data.parent; load test.model.data.parent;"
    " load test.model.data; response test.model.data.parent",
    "get test.m.a; access test.m.a; load test.m.a; response test.m.a",
    "get test.m.b; access test.m.b; load test.m.b; load test.m.c; response test.m.b",
    "get test.m.d; access test.m.d; load test.m.d; load test.m.e; load test.m.f; response test.m.d",
    "get test.m.g; access test.m.g; load test.m.g; load test.m.e; load test.m.f; load test.m.d;"
    " response test.m.g",
    "get test.m.d; access test.m.d; load test.m.d; get test.m.h; access test.m.h; load test.m.e;"
    " load test.m.h; load test.m.f; response test.m.d; response test.m.h",
    "get test.collection; access test.collection; load test.collection; response test.collection",
    "get test.collection.parent; access test.collection.parent; load test.collection.parent;"
    " load test.collection; response test.collection.parent",
    "get test.collection.grandparent; access test.collection.grandparent;"
    " load test.collection.grandparent; load test.collection.parent; load test.collection;"
    " response test.collection.grandparent",
    "get test.collection.parent; access test.collection.parent; load test.collection.parent;"
    " load test.collection; response test.collection.parent; get test.collection.secondparent;"
    " access test.collection.secondparent; load test.collection.secondparent;"
    " response test.collection.secondparent",
    "get test.collection.brokenchild; access test.collection.brokenchild;"
    " load test.collection.brokenchild; load test.err.notFound; response test.collection.brokenchild",
    "get test.collection.soft; access test.collection.soft; load test.collection.soft;"
    " response test.collection.soft",
    "get test.collection.soft.parent; access test.collection.soft.parent;"
    " load test.collection.soft.parent; load test.collection.soft; response test.collection.soft.parent",
    "get test.collection.data; access test.collection.data; load test.collection.data;"
    " response test.collection.data",
    "get test.collection.data.parent; access test.collection.data.parent;"
    " load test.collection.data.parent; load test.collection.data; response test.collection.data.parent",
    "get test.c.a; access test.c.a; load test.c.a; response test.c.a",
    "get test.c.b; access test.c.b; load test.c.b; load test.c.c; response test.c.b",
    "get test.c.d; access test.c.d; load test.c.d; load test.c.e; load test.c.f; response test.c.d",
    "get test.c.g; access test.c.g; load test.c.g; load test.c.e; load test.c.f; load test.c.d;"
    " response test.c.g",
    "get test.c.d; access test.c.d; load test.c.d; get test.c.h; access test.c.h; load test.c.e;"
    " load test.c.h; load test.c.f; response test.c.d; response test.c.h",
    # A resource the cache already holds through a reference: access only.
    "get test.model.parent; access test.model.parent; load test.model.parent; load test.model;"
    " response test.model.parent; get test.model; access test.model; response test.model",
    "get test.model.parent; access test.model.parent; load test.model.parent; load test.model;"
    " response test.model.parent; get test.model; accessDenied test.model; errorResponse test.model",
]


def _steps(sequence: str) -> list[tuple[str, str]]:
    return [tuple(step.split()) for step in sequence.split(";")]


def _sequence_id(sequence: str) -> str:
    return "+".join(rid for step, rid in _steps(sequence) if step == "get")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("sequence", SEQUENCES, ids=[_sequence_id(s) for s in SEQUENCES])
@pytest_twisted.ensureDeferred
async def test_get_sequence(gateway_factory, fake_service, encoding, sequence):
    gateway = await gateway_factory(api_encoding=encoding)
    pending = {}    # rid -> HTTP GET in flight
    received = {}   # subject -> service request not answered yet

    async def service_request(subject):
        while subject not in received:
            request = await fake_service.next_request()
            assert request.subject not in received, f"duplicate request {request.subject}"
            received[request.subject] = request
        return received.pop(subject)

    for step, rid in _steps(sequence):
        if step == "get":
            pending[rid] = send(gateway, "GET", rid.replace(".", "/"))
        elif step in ("access", "accessDenied"):
            request = await service_request(f"access.{rid}")
            assert request.payload["isHttp"] is True
            request.respond_result({"get": step == "access"})
        elif step == "load":
            respond_get(await service_request(f"get.{rid}"))
        elif step == "response":
            response = await pending.pop(rid)
            assert response.status == 200, response
            assert response.header("content-type") == JSON_CONTENT_TYPE
            assert response.json() == _expected(rid, encoding)
        elif step == "errorResponse":
            response = await pending.pop(rid)
            assert response.status >= 400 and "code" in response.json(), response
        else:
            raise ValueError(f"unknown step {step}")
    assert not received, f"unexpected requests: {sorted(received)}"
    fake_service.assert_no_request()


# ---------------------------------------------------------------------------
# Queries


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("rid", ["test.model", "test.collection"])
@pytest_twisted.ensureDeferred
async def test_get_query_resource(gateway_factory, fake_service, encoding, rid):
    gateway = await gateway_factory(api_encoding=encoding)
    pending = send(gateway, "GET", rid.replace(".", "/") + "?q=foo&f=bar")
    reqs = await fake_service.take(f"access.{rid}", f"get.{rid}")
    access = reqs[f"access.{rid}"].payload
    assert (access["token"], access["query"], access["isHttp"]) == (None, "q=foo&f=bar", True)
    reqs[f"access.{rid}"].respond_result({"get": True})
    assert reqs[f"get.{rid}"].payload["query"] == "q=foo&f=bar"
    reqs[f"get.{rid}"].respond_result({**get_result(rid), "query": "q=foo&f=bar"})

    response = await pending
    assert (response.status, response.json()) == (200, get_result(rid)[RESOURCES[rid]["type"]])


@pytest_twisted.ensureDeferred
async def test_get_long_query_returns_model(gateway, fake_service):
    query = "q=" + "a" * 10000
    pending = send(gateway, "GET", "test/model?" + query)
    reqs = await fake_service.take("access.test.model", "get.test.model")
    assert reqs["access.test.model"].payload["query"] == query
    reqs["access.test.model"].respond_result({"get": True})
    assert reqs["get.test.model"].payload["query"] == query
    reqs["get.test.model"].respond_result({"model": MODEL, "query": query})
    response = await pending
    assert (response.status, response.json()) == (200, MODEL)


@pytest_twisted.ensureDeferred
async def test_get_long_resource_id_is_414(gateway, fake_service, logged_errors):
    response = await send(gateway, "GET", "test/" + "a" * 10000)
    assert_error(response, 414, ERR_SUBJECT_TOO_LONG)
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_get_model(gateway, fake_service):
    pending = send(gateway, "GET", "test/model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["access.test.model"].respond_result({"get": True})
    respond_get(reqs["get.test.model"])
    response = await pending
    assert (response.status, response.json()) == (200, MODEL)
    assert response.header("content-type") == JSON_CONTENT_TYPE


@pytest_twisted.ensureDeferred
async def test_get_cid_placeholder(gateway, fake_service):
    pending = send(gateway, "GET", "test/{cid}/model")
    reqs = {r.subject.split(".")[0]: r for r in [await fake_service.next_request() for _ in range(2)]}
    cid = reqs["access"].payload["cid"]
    assert reqs["access"].subject == f"access.test.{cid}.model"
    assert reqs["get"].subject == f"get.test.{cid}.model"
    reqs["access"].respond_result({"get": True})
    reqs["get"].respond_result({"model": MODEL})
    response = await pending
    assert (response.status, response.json()) == (200, MODEL)


# ---------------------------------------------------------------------------
# CORS


@pytest.mark.parametrize("origin, allow_origin, status, present, missing", ALLOW_ORIGIN_CASES)
@pytest_twisted.ensureDeferred
async def test_get_allow_origin(gateway_factory, fake_service, origin, allow_origin, status, present, missing):
    gateway = await gateway_factory(allow_origin=allow_origin)
    pending = send(gateway, "GET", "test/model", headers={"Origin": origin} if origin else None)
    if status == 200:
        reqs = await fake_service.take("access.test.model", "get.test.model")
        reqs["access.test.model"].respond_result({"get": True})
        respond_get(reqs["get.test.model"])
    response = await pending
    if status == 200:
        assert (response.status, response.json()) == (200, MODEL)
    else:
        assert_error(response, 403, ERR_FORBIDDEN_ORIGIN)
    assert_headers(response, present, missing)


# ---------------------------------------------------------------------------
# Header authentication (--headauth)

@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("auth_response", AUTH_RESPONSES)
@pytest_twisted.ensureDeferred
async def test_get_header_auth(gateway_factory, fake_service, auth_response, token):
    gateway = await gateway_factory(header_auth="vault.method", request_timeout=500)
    await answer_header_auth(gateway, fake_service, "GET", "test/model", AUTH_RESPONSES[auth_response],
                             TOKENS[token])


@pytest.mark.parametrize("header_auth", [None, "vault.method"])
@pytest_twisted.ensureDeferred
async def test_conn_events_are_listened_for_only_with_header_auth(gateway_factory, fake_service, header_auth):
    """An HTTP request's connection subscribes ``conn.<cid>.*`` only when an auth request is made for it.

    Resgate subscribes for every request; without an auth request no token
    can matter to the client (the connection ends with the response), and
    the SUB and UNSUB per request kept nats-server busy enough to hold the
    bench's cached GET back by 10-20%.
    """
    gateway = await gateway_factory(header_auth=header_auth)
    pending = send(gateway, "GET", "test/model")
    if header_auth:
        auth = await fake_service.next_request()
        assert auth.subject == "auth.vault.method"
        auth.respond_result(None)
    reqs = await fake_service.take("access.test.model", "get.test.model")
    (conn,) = gateway.context.conns.values()
    assert (conn._conn_sub is not None) == bool(header_auth)
    reqs["access.test.model"].respond_result({"get": True})
    respond_get(reqs["get.test.model"])
    assert (await pending).status == 200


# ---------------------------------------------------------------------------
# TLS


@implementer(IPolicyForHTTPS)
class TrustOne:
    """Trusts the one self-signed test certificate, whatever host the URL names."""

    def __init__(self, cert_path: str) -> None:
        with open(cert_path, "rb") as f:
            self.authority = ssl.Certificate.loadPEM(f.read())

    def options(self) -> object:
        return ssl.optionsForClientTLS("localhost", trustRoot=self.authority)

    def creatorForNetloc(self, hostname, port):
        return self.options()


@pytest_twisted.ensureDeferred
async def test_get_over_https(gateway_factory, fake_service, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    gateway = await gateway_factory(tls=True, tls_cert=cert, tls_key=key)
    assert gateway.api_url.startswith("https://")
    from twisted.internet import reactor

    client = treq.client.HTTPClient(Agent(reactor, contextFactory=TrustOne(cert)))
    pending = defer.ensureDeferred(_get_body(client, gateway.api_url + "test/model"))
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["access.test.model"].respond_result({"get": True})
    respond_get(reqs["get.test.model"])
    status, body = await within(pending)
    assert (status, body) == (200, MODEL)


async def _get_body(client, url):
    response = await client.get(url)
    return response.code, await response.json()


@pytest_twisted.ensureDeferred
async def test_subscribe_over_wss(gateway_factory, fake_service, tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    gateway = await gateway_factory(tls=True, tls_cert=cert, tls_key=key)
    assert gateway.ws_url.startswith("wss://")
    factory = WebSocketClientFactory(gateway.ws_url)
    factory.protocol = WsClient
    factory.opened = defer.Deferred()
    connectWS(factory, contextFactory=TrustOne(cert).options(), timeout=5)
    client = await within(factory.opened)
    try:
        version = await client.request("version", {"protocol": VERSION_LATEST})
        assert version["result"] == {"protocol": PROTOCOL_VERSION}
        response, _cid = await subscribe_to(client, fake_service, "test.model")
        assert response["result"] == client_result("test.model")
    finally:
        await client.close()

