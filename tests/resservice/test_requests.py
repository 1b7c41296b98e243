"""Access, get, call, new and auth requests: what the handler sees and what the requester gets.

go-res's test/02 to 09 and 11 (access, get, call, new, auth, resource
request methods and path parameters, meta, request accessors, values and
references), over the in-memory bus and a real nats-server.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from twisted.internet import reactor, task

from resservice import (
    DELETE, Access, Collection, Data, Model, Ref, ResError, ResourceResult, Service, SoftRef, access_denied,
    invalid_params, not_found)
from tests.rig.svc import on_asyncio


# --- access

@pytest.mark.parametrize("result, expected", [
    (True, {"get": True, "call": "*"}),
    (Access(get=True), {"get": True}),
    (Access(call="set,foo"), {"call": "set,foo"}),
    ({"get": True, "call": "*"}, {"get": True, "call": "*"}),
])
@on_asyncio
async def test_access_results(open_session, result, expected):
    service = Service("test")
    service.access("model")(lambda r: result)
    async with open_session(service) as session:
        (await session.access("test.model")).assert_result(expected)


@pytest.mark.parametrize("result", [False, None, Access()])
@on_asyncio
async def test_no_access_is_access_denied(open_session, result):
    service = Service("test")
    service.access("model")(lambda r: result)
    async with open_session(service) as session:
        (await session.access("test.model")).assert_error("system.accessDenied", "Access denied")


@on_asyncio
async def test_access_handler_sees_cid_token_query_and_is_http(open_session):
    service = Service("test")
    seen = []

    @service.access("model")
    def access(request):
        seen.append((request.kind, request.rid, request.cid, request.token, request.query, request.is_http))
        raise access_denied("Not you")

    async with open_session(service) as session:
        (await session.access("test.model", cid="c1", token={"user": "u"}, query="q=1", is_http=True)) \
            .assert_error("system.accessDenied", "Not you")
        (await session.access("test.model")).assert_error("system.accessDenied")
    assert seen == [("access", "test.model", "c1", {"user": "u"}, "q=1", True),
                    ("access", "test.model", "testcid", None, None, False)]


@on_asyncio
async def test_a_wildcard_access_handler_covers_every_resource_below(open_session):
    service = Service("test")
    service.access(">")(lambda r: Access(get=True))
    service.access("secret")(lambda r: False)
    async with open_session(service) as session:
        (await session.access("test.a.b.c")).assert_access(get=True)
        (await session.access("test.secret")).assert_error("system.accessDenied")
        assert service.subjects() == ["access.test.>"]


# --- get

@on_asyncio
async def test_get_model_and_collection_with_every_kind_of_value(open_session):
    service = Service("test")

    @service.model("model")
    def model(request):
        return {"string": "foo", "int": 42, "bool": True, "null": None, "ref": Ref("test.other"),
                "soft": SoftRef("test.soft"), "data": Data({"foo": ["bar"]}), "float": 1.5}

    @service.collection("collection")
    def collection(request):
        return Collection(["foo", 42, True, None, Ref("test.model"), Data([1, 2])])

    @service.get("any.$kind")
    def any_kind(request):
        return Model({"x": 1}) if request.path_params["kind"] == "model" else [1, 2]

    async with open_session(service) as session:
        (await session.get("test.model")).assert_result({"model": {
            "string": "foo", "int": 42, "bool": True, "null": None, "ref": {"rid": "test.other"},
            "soft": {"rid": "test.soft", "soft": True}, "data": {"data": {"foo": ["bar"]}}, "float": 1.5}})
        (await session.get("test.collection")).assert_result({"collection": [
            "foo", 42, True, None, {"rid": "test.model"}, {"data": [1, 2]}]})
        (await session.get("test.any.model")).assert_model({"x": 1})
        (await session.get("test.any.list")).assert_collection([1, 2])


@on_asyncio
async def test_get_query_resource_answers_with_normalized_query(open_session):
    service = Service("test")

    @service.collection("list")
    def query_list(request):
        query = request.parse_query()
        start = int(query.get("start", ["0"])[0])
        return Collection(list(range(start, start + 2)), query=f"start={start}")

    async with open_session(service) as session:
        (await session.get("test.list", query="start=3&x=")).assert_collection([3, 4], query="start=3")


@on_asyncio
async def test_get_handler_returning_the_wrong_kind_is_an_internal_error(open_session, service_log):
    service = Service("test")
    service.model("model")(lambda r: [1])
    service.collection("collection")(lambda r: {"a": 1})
    service.get("other")(lambda r: "text")
    async with open_session(service) as session:
        for rid in ("test.model", "test.collection", "test.other"):
            (await session.get(rid)).assert_error("system.internalError")
    assert len(service_log.errors) == 3


@on_asyncio
async def test_get_not_found_for_a_resource_without_handler(open_session):
    service = Service("test")
    service.model("model.$id")(lambda r: not_found_unless(r.path_params["id"] == "1"))
    async with open_session(service) as session:
        (await session.get("test.model.1")).assert_model({"id": 1})
        (await session.get("test.model.2")).assert_error("system.notFound", "Not found")


def not_found_unless(ok):
    if not ok:
        raise not_found()
    return {"id": 1}


# --- call and new

@on_asyncio
async def test_call_results_params_and_resource_responses(open_session):
    service = Service("test")
    seen = []

    @service.call("model", "echo")
    def echo(request):
        seen.append((request.kind, request.method, request.params, request.cid, request.token))
        return request.params

    @service.call("model", "empty")
    def empty(request):
        return None

    @service.call("model", "point")
    def point(request):
        return ResourceResult("test.other?q=1")

    @service.call("model", "refs")
    def refs(request):
        return {"ref": Ref("test.x"), "gone": DELETE}

    async with open_session(service) as session:
        for params in ({"a": [1, {"b": None}]}, [1, 2], "text", 42, None):
            (await session.call("test.model", "echo", params, token={"t": 1})).assert_result(params)
        (await session.call("test.model", "empty")).assert_result(None)
        (await session.call("test.model", "point")).assert_resource("test.other?q=1")
        (await session.call("test.model", "refs")).assert_result({"ref": {"rid": "test.x"},
                                                                  "gone": {"action": "delete"}})
        (await session.call("test.model", "missing")).assert_error("system.methodNotFound", "Method not found")
    assert seen[0] == ("call", "echo", {"a": [1, {"b": None}]}, "testcid", {"t": 1})


@on_asyncio
async def test_legacy_new_answers_with_the_new_resource_reference(open_session):
    service = Service("test")
    service.new("collection")(lambda r: Ref(f"test.model.{r.params['id']}"))
    service.new("strings")(lambda r: "test.model.7")
    service.new("broken")(lambda r: 42)

    async with open_session(service) as session:
        (await session.call("test.collection", "new", {"id": 3})).assert_result({"rid": "test.model.3"})
        (await session.call("test.strings", "new")).assert_result({"rid": "test.model.7"})
        (await session.call("test.broken", "new")).assert_error("system.internalError")
        (await session.call("test.collection", "other")).assert_error("system.methodNotFound")


@on_asyncio
async def test_a_call_method_named_new_wins_over_the_legacy_handler(open_session):
    service = Service("test")
    service.call("collection", "new")(lambda r: {"made": True})
    async with open_session(service) as session:
        (await session.call("test.collection", "new")).assert_result({"made": True})


# --- auth

@on_asyncio
async def test_auth_sees_header_host_remote_addr_and_uri_and_may_set_a_token(open_session):
    service = Service("test")
    seen = []

    @service.auth("auth", "login")
    def login(request):
        seen.append((request.header, request.host, request.remote_addr, request.uri, request.params))
        if request.params.get("password") != "secret":
            raise invalid_params("Wrong password")
        service.token_event(request.cid, {"user": "jane"}, tid="t1")
        return {"ok": True}

    async with open_session(service) as session:
        session.skip_events()
        header = {"Cookie": ["a=b"], "Authorization": ["Bearer x"]}
        response = await session.auth("test.auth", "login", {"password": "secret"}, cid="c9", header=header,
                                      host="example.com", remote_addr="127.0.0.1:5", uri="/ws")
        response.assert_result({"ok": True})
        assert [(m.subject, m.data) for m in response.events] == [
            ("conn.c9.token", b'{"token":{"user":"jane"},"tid":"t1"}')]
        (await session.auth("test.auth", "login", {"password": "no"})).assert_error(
            "system.invalidParams", "Wrong password")
        (await session.auth("test.auth", "logout")).assert_error("system.methodNotFound")
        await session.assert_event("conn.c9.token")
        await session.assert_no_event()
    assert seen[0] == ({"Cookie": ["a=b"], "Authorization": ["Bearer x"]}, "example.com", "127.0.0.1:5", "/ws",
                       {"password": "secret"})


# --- handlers of every shape

@on_asyncio
async def test_async_deferred_and_plain_handlers(open_session):
    service = Service("test")

    @service.call("model", "plain")
    def plain(request):
        return "plain"

    @service.call("model", "coroutine")
    async def coroutine(request):
        await asyncio.sleep(0.01)
        return "coroutine"

    @service.call("model", "deferred")
    def deferred(request):
        return task.deferLater(reactor, 0.01, lambda: "deferred")

    @service.call("model", "failing")
    def failing(request):
        return task.deferLater(reactor, 0.01, lambda: (_ for _ in ()).throw(invalid_params("later")))

    async with open_session(service) as session:
        for method in ("plain", "coroutine", "deferred"):
            (await session.call("test.model", method)).assert_result(method)
        (await session.call("test.model", "failing")).assert_error("system.invalidParams", "later")


# --- path parameters and patterns

@on_asyncio
async def test_path_parameters_and_the_most_specific_pattern(open_session):
    service = Service("test")
    service.model("model.$id.$part")(lambda r: {"by": "params", **r.path_params})
    service.model("model.$id.name")(lambda r: {"by": "name", "id": r.path_param("id")})
    service.model("model.1.name")(lambda r: {"by": "literal"})
    async with open_session(service) as session:
        (await session.get("test.model.7.size")).assert_model({"by": "params", "id": "7", "part": "size"})
        (await session.get("test.model.7.name")).assert_model({"by": "name", "id": "7"})
        (await session.get("test.model.1.name")).assert_model({"by": "literal"})
        # One subscription covers the three: each request is answered once.
        assert service.subjects() == ["get.test.model.*.*"]


@on_asyncio
async def test_a_service_without_name_takes_full_resource_names(open_session):
    service = Service()
    service.model("a.b")(lambda r: {"rid": r.rid})
    async with open_session(service) as session:
        (await session.get("a.b")).assert_model({"rid": "a.b"})


# --- parsing params, token and query

@dataclasses.dataclass
class Title:
    title: str
    pages: int = 0
    note: str | None = None


@on_asyncio
async def test_parse_params_and_token_into_dataclasses(open_session):
    service = Service("test")

    @service.call("model", "set")
    def set_title(request):
        params = request.parse_params(Title)
        token = request.parse_token(Title)
        return {"title": params.title, "pages": params.pages, "token": token and token.title}

    async with open_session(service) as session:
        (await session.call("test.model", "set", {"title": "T", "pages": 3}, token={"title": "U"})) \
            .assert_result({"title": "T", "pages": 3, "token": "U"})
        (await session.call("test.model", "set", {"title": "T", "note": None})) \
            .assert_result({"title": "T", "pages": 0, "token": None})
        for bad in ({"pages": 3}, {"title": 1}, {"title": "T", "pages": True}, {"title": "T", "x": 1}, [1], None):
            (await session.call("test.model", "set", bad)).assert_error("system.invalidParams")
        (await session.call("test.model", "set", {"title": "T"}, token=[1])).assert_error("system.internalError")


# --- meta and pre-responses

@on_asyncio
async def test_meta_status_and_headers(open_session):
    service = Service("test")

    @service.auth("auth", "redirect")
    def redirect(request):
        request.set_response_status(302)
        request.add_response_header("Location", "https://example.com/")
        request.add_response_header("Set-Cookie", "a=1")
        request.add_response_header("Set-Cookie", "b=2")
        return None

    @service.access("model")
    def access(request):
        request.set_response_status(401)
        raise access_denied()

    @service.call("model", "bad")
    def bad(request):
        with pytest.raises(ValueError):
            request.set_response_status(99)
        with pytest.raises(ValueError):
            request.add_response_header("X-Split", "a\r\nb")
        return None

    async with open_session(service) as session:
        (await session.auth("test.auth", "redirect", is_http=True)).assert_result(None).assert_meta(
            {"status": 302, "header": {"Location": ["https://example.com/"], "Set-Cookie": ["a=1", "b=2"]}})
        (await session.access("test.model", is_http=True)).assert_error("system.accessDenied").assert_meta(
            {"status": 401})
        (await session.call("test.model", "bad")).assert_result(None).assert_meta(None)


@on_asyncio
async def test_timeout_sends_a_pre_response_and_extends_the_handlers_time(open_session):
    service = Service("test", handler_timeout=0.2)

    @service.call("model", "slow")
    async def slow(request):
        request.timeout(5)
        await asyncio.sleep(0.4)
        return "done"

    async with open_session(service) as session:
        response = await session.call("test.model", "slow")
        response.assert_result("done")
        assert response.pre_responses == ['timeout:"5000"']


# --- custom errors

@on_asyncio
async def test_custom_errors_keep_code_message_and_data(open_session, service_log):
    service = Service("test")

    @service.call("model", "custom")
    def custom(request):
        raise ResError("test.custom", "Custom error", {"foo": "bar"})

    async with open_session(service) as session:
        response = await session.call("test.model", "custom")
        response.assert_error("test.custom", "Custom error")
        assert response.error.data == {"foo": "bar"}
    assert service_log.errors == []


@dataclasses.dataclass
class Page:
    start: int = 0
    limit: int = 10
    tags: list[str] = dataclasses.field(default_factory=list)
    done: bool = False


@on_asyncio
async def test_parse_query_into_a_dataclass(open_session):
    service = Service("test")

    @service.collection("list")
    def page(request):
        query = request.parse_query(Page)
        return Collection([query.start, query.limit, query.tags, query.done], query=request.query)

    async with open_session(service) as session:
        (await session.get("test.list", query="start=5&tags=a&tags=b&done=true")).assert_collection(
            [5, 10, ["a", "b"], True], query="start=5&tags=a&tags=b&done=true")
        for bad in ("start=x", "other=1", "done=maybe"):
            (await session.get("test.list", query=bad)).assert_error("system.invalidQuery")
