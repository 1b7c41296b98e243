"""examples/ressvc.py, the helper the example services are written with.

A raw nats-py client plays the gateway: it sends requests the way Resgate
does and watches every subject, so the tests see the exact payloads and the
order in which the service publishes them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import nats
import pytest
import pytest_twisted
import treq
from twisted.internet import defer, endpoints
from twisted.web import resource

from tests.rig.aio import as_deferred, eventually, within

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import ressvc  # noqa: E402
from ressvc import (  # noqa: E402
    DELETE, Collection, InvalidParams, Model, NotFound, Ref, ResError, Resource, Service, SoftRef)


class Gateway:
    """A raw NATS connection that sends requests and records everything published."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[str, object]] = []
        self.nc = None

    async def start(self, watch: str) -> "Gateway":
        self.nc = await nats.connect(self.url)

        async def record(msg) -> None:
            self.seen.append((msg.subject, json.loads(msg.data) if msg.data else None))

        await self.nc.subscribe(watch, cb=record)
        # nats-py's flush() may overtake a pending SUB; a message of our own
        # that comes back proves the subscription is in place.
        barrier = "ressvct.barrier." + self.nc.new_inbox().rsplit(".", 1)[-1]
        await self.nc.publish(barrier, b"")
        for _ in range(500):
            if any(subject == barrier for subject, _ in self.seen):
                return self
            await asyncio.sleep(0.01)
        raise AssertionError("the watching subscription never saw its own message")

    async def request(self, subject: str, payload: dict | None = None) -> dict:
        msg = await self.nc.request(subject, json.dumps(payload or {}).encode(), timeout=5)
        return json.loads(msg.data)

    async def publish(self, subject: str, payload: dict, reply: str) -> None:
        await self.nc.publish(subject, json.dumps(payload).encode(), reply=reply)
        await self.nc.flush()

    async def close(self) -> None:
        await self.nc.close()


@pytest_twisted.async_yield_fixture
async def gateway_nc(nats_server):
    gateway = Gateway(nats_server.url)
    await within(as_deferred(gateway.start("ressvct.>")), 10)
    yield gateway
    await within(as_deferred(gateway.close()), 10)


@pytest_twisted.async_yield_fixture
async def connect(nats_server):
    """``await connect(service)`` connects a Service to the shared nats-server; closed after."""
    services: list[Service] = []

    async def start(service: Service) -> Service:
        services.append(service)
        return await within(service.connect(nats_server.url), 10)

    yield start
    for service in services:
        await within(service.close(), 10)


def request(gateway: Gateway, subject: str, payload: dict | None = None) -> defer.Deferred:
    return within(as_deferred(gateway.request(subject, payload)), 10)


@pytest_twisted.ensureDeferred
async def test_requests_reach_their_handlers_with_path_and_payload(gateway_nc, connect):
    service = Service()
    seen = []

    @service.get("ressvct.book.$id")
    def get_book(req):
        seen.append(req)
        return Model({"id": int(req.path["id"]), "next": Ref("ressvct.book.2"), "soft": SoftRef("ressvct.x")})

    @service.get("ressvct.books")
    def get_books(req):
        return Collection([Ref("ressvct.book.1"), 7, None])

    @service.access("ressvct.>")
    def access(req):
        seen.append(req)
        return {"get": True, "call": "*"}

    @service.call("ressvct.book.$id", "set")
    def set_book(req):
        seen.append(req)
        return {"echo": req.params}

    @service.auth("ressvct.auth", "login")
    def login(req):
        seen.append(req)
        return Resource("ressvct.book.1")

    await connect(service)

    assert await request(gateway_nc, "get.ressvct.book.1") == {"result": {"model": {
        "id": 1, "next": {"rid": "ressvct.book.2"}, "soft": {"rid": "ressvct.x", "soft": True}}}}
    assert seen[-1].kind == "get" and seen[-1].rid == "ressvct.book.1" and seen[-1].method is None
    assert await request(gateway_nc, "get.ressvct.books") == {
        "result": {"collection": [{"rid": "ressvct.book.1"}, 7, None]}}

    answer = await request(gateway_nc, "access.ressvct.deep.er", {"cid": "c1", "token": {"u": 1}})
    assert answer == {"result": {"get": True, "call": "*"}}
    assert (seen[-1].kind, seen[-1].rid, seen[-1].cid, seen[-1].token) == ("access", "ressvct.deep.er", "c1", {"u": 1})

    answer = await request(gateway_nc, "call.ressvct.book.42.set", {"cid": "c2", "params": {"title": "T"}})
    assert answer == {"result": {"echo": {"title": "T"}}}
    last = seen[-1]
    assert (last.rid, last.method, last.path, last.cid) == ("ressvct.book.42", "set", {"id": "42"}, "c2")

    header = {"Cookie": ["a=b"]}
    answer = await request(gateway_nc, "auth.ressvct.auth.login",
                           {"cid": "c3", "header": header, "host": "h", "remoteAddr": "1.2.3.4", "uri": "/"})
    assert answer == {"resource": {"rid": "ressvct.book.1"}}
    last = seen[-1]
    assert (last.kind, last.rid, last.method, last.header, last.host, last.remote_addr, last.uri) == (
        "auth", "ressvct.auth", "login", header, "h", "1.2.3.4", "/")


@pytest_twisted.ensureDeferred
async def test_errors_become_error_replies(gateway_nc, connect):
    logged: list[str] = []
    service = Service(log=logged.append)

    @service.get("ressvct.missing")
    def missing(req):
        raise NotFound()

    @service.call("ressvct.thing", "bad")
    def bad(req):
        raise InvalidParams("Title must not be empty")

    @service.call("ressvct.thing", "custom")
    def custom(req):
        raise ResError("ressvct.custom", "Custom", {"x": 1})

    @service.call("ressvct.thing", "crash")
    def crash(req):
        raise KeyError("oops")

    @service.get("ressvct.wrong")
    def wrong(req):
        return {"model": {}}  # not a Model: a bug in the service

    await connect(service)
    assert await request(gateway_nc, "get.ressvct.missing") == {
        "error": {"code": "system.notFound", "message": "Not found"}}
    assert await request(gateway_nc, "call.ressvct.thing.bad") == {
        "error": {"code": "system.invalidParams", "message": "Title must not be empty"}}
    assert await request(gateway_nc, "call.ressvct.thing.custom") == {
        "error": {"code": "ressvct.custom", "message": "Custom", "data": {"x": 1}}}
    assert logged == []

    answer = await request(gateway_nc, "call.ressvct.thing.crash")
    assert answer["error"]["code"] == "system.internalError"
    assert "oops" in answer["error"]["message"]
    answer = await request(gateway_nc, "get.ressvct.wrong")
    assert answer["error"]["code"] == "system.internalError"
    assert len(logged) == 2 and "KeyError" in logged[0] and "Model or Collection" in logged[1]

    # A payload that is not JSON gets an error too, and the service carries on.
    msg = await within(as_deferred(gateway_nc.nc.request("get.ressvct.missing", b"{nope", timeout=5)), 10)
    assert json.loads(msg.data)["error"]["code"] == "system.internalError"
    assert await request(gateway_nc, "get.ressvct.missing") == {
        "error": {"code": "system.notFound", "message": "Not found"}}


@pytest_twisted.ensureDeferred
async def test_handlers_may_answer_later(gateway_nc, connect):
    from twisted.internet import reactor, task

    service = Service()

    @service.call("ressvct.slow", "deferred")
    def deferred(req):
        return task.deferLater(reactor, 0.05, lambda: "later")

    @service.call("ressvct.slow", "coroutine")
    async def coroutine(req):
        await task.deferLater(reactor, 0.05, lambda: None)
        raise InvalidParams("checked later")

    await connect(service)
    assert await request(gateway_nc, "call.ressvct.slow.deferred") == {"result": "later"}
    assert await request(gateway_nc, "call.ressvct.slow.coroutine") == {
        "error": {"code": "system.invalidParams", "message": "checked later"}}


@pytest_twisted.ensureDeferred
async def test_events_go_out_in_order_before_the_reply(nats_server, connect):
    watcher = Gateway(nats_server.url)
    await within(as_deferred(watcher.start(">")), 10)
    try:
        service = Service(reset=["ressvct.>"])

        @service.call("ressvct.model", "go")
        def go(req):
            service.change("ressvct.model", {"a": 1, "gone": DELETE, "ref": Ref("ressvct.other")})
            service.add("ressvct.list", Ref("ressvct.model"), 2)
            service.remove("ressvct.list", 0)
            service.set_token(req.cid, {"user": "x"})
            service.reset(resources=["ressvct.a.>"], access=["ressvct.b.>"])
            return None

        await connect(service)
        await eventually(lambda: ("system.reset", {"resources": ["ressvct.>"]}) in watcher.seen, 5)
        await within(as_deferred(watcher.publish("call.ressvct.model.go", {"cid": "cid9"}, "ressvct.inbox.1")), 10)
        await eventually(lambda: any(s == "ressvct.inbox.1" for s, _ in watcher.seen), 5)

        mine = [(s, p) for s, p in watcher.seen
                if s.startswith(("event.ressvct.", "conn.cid9.", "ressvct.inbox.")) or
                (s == "system.reset" and p != {"resources": ["ressvct.>"]})]
        assert mine == [
            ("event.ressvct.model.change", {"values": {"a": 1, "gone": {"action": "delete"},
                                                       "ref": {"rid": "ressvct.other"}}}),
            ("event.ressvct.list.add", {"value": {"rid": "ressvct.model"}, "idx": 2}),
            ("event.ressvct.list.remove", {"idx": 0}),
            ("conn.cid9.token", {"token": {"user": "x"}}),
            ("system.reset", {"resources": ["ressvct.a.>"], "access": ["ressvct.b.>"]}),
            ("ressvct.inbox.1", {"result": None}),
        ]
    finally:
        await within(as_deferred(watcher.close()), 10)


def test_patterns_are_checked():
    service = Service()
    with pytest.raises(ValueError):
        service.get("ressvct.>")  # only access handlers take '>'
    with pytest.raises(ValueError):
        service.access("ressvct.>.x")
    with pytest.raises(ValueError):
        service.get("ressvct..x")
    with pytest.raises(ValueError):
        service.call("ressvct.x", "a.b")
    with pytest.raises(ValueError):
        service.auth("ressvct.x", "*")
    service.access(">")  # everything: fine


@pytest_twisted.ensureDeferred
async def test_static_site_serves_the_page_resclient_and_config(tmp_path):
    from twisted.internet import reactor

    page = tmp_path / "index.html"
    page.write_text("<h1>hi</h1>")

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            return b"extra"

    async def get(port, path):
        response = await within(treq.get(f"http://127.0.0.1:{port}{path}"), 10)
        return response.code, response.headers.getRawHeaders("content-type", [""])[0], \
            await within(treq.content(response), 10)

    sites = [ressvc.static_site(page, "ws://127.0.0.1:9999", {"hello": Hello()}), ressvc.static_site(page)]
    ports = [await within(endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site), 10)
             for site in sites]
    try:
        with_url, without_url = (p.getHost().port for p in ports)
        assert await get(with_url, "/") == (200, "text/html; charset=utf-8", b"<h1>hi</h1>")
        assert (await get(with_url, "/index.html"))[2] == b"<h1>hi</h1>"
        code, kind, body = await get(with_url, "/config.js")
        assert (code, kind, body) == (200, "text/javascript; charset=utf-8",
                                      b'window.RESGATE_URL = "ws://127.0.0.1:9999";\n')
        code, _, body = await get(without_url, "/config.js")
        assert code == 200 and b"RESGATE_URL" not in body.replace(b"// No --resgate", b"")
        assert await get(with_url, "/hello") == (200, "text/html", b"extra")
        assert (await get(with_url, "/server.py"))[0] == 404
        code, kind, body = await get(with_url, "/resclient.min.js")
        assert ressvc.RESCLIENT_JS.is_file(), "run scripts/setup (npm ci in examples/)"
        assert code == 200 and "javascript" in kind and body == ressvc.RESCLIENT_JS.read_bytes()
    finally:
        for port in ports:
            await within(defer.maybeDeferred(port.stopListening), 10)
