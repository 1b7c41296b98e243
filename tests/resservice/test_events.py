"""Events: resource, query, connection and system events, in the order made and before the reply.

go-res's test/10, 12, 13 and 22 (request events, apply handlers,
listeners, query events) and the service events of test/00.
"""

from __future__ import annotations

import pytest

from resservice import DELETE, Collection, Event, Model, Ref, Service, not_found
from tests.rig.svc import on_asyncio


@on_asyncio
async def test_events_of_a_call_go_out_in_order_before_its_reply(open_session):
    service = Service("test")

    @service.call("model", "go")
    def go(request):
        request.change({"a": 1, "gone": DELETE, "ref": Ref("test.other")})
        service.resource("test.list").add(Ref("test.model"), 2)
        service.resource("test.list").remove(0)
        request.reaccess()
        request.event("custom", {"x": [1]})
        request.event("empty")
        service.token_event(request.cid, {"user": "x"})
        service.reset(resources=["test.a.>"], access=["test.b.>"])
        service.token_reset("test.auth.renew", ["t1", "t2"])
        request.delete()
        return None

    async with open_session(service) as session:
        response = await session.call("test.model", "go")
        response.assert_result(None)
        assert [(m.subject, m.data) for m in response.events] == [
            ("event.test.model.change", b'{"values":{"a":1,"gone":{"action":"delete"},"ref":{"rid":"test.other"}}}'),
            ("event.test.list.add", b'{"value":{"rid":"test.model"},"idx":2}'),
            ("event.test.list.remove", b'{"idx":0}'),
            ("event.test.model.reaccess", b""),
            ("event.test.model.custom", b'{"x":[1]}'),
            ("event.test.model.empty", b""),
            ("conn.testcid.token", b'{"token":{"user":"x"}}'),
            ("system.reset", b'{"resources":["test.a.>"],"access":["test.b.>"]}'),
            ("system.tokenReset", b'{"tids":["t1","t2"],"subject":"test.auth.renew"}'),
            ("event.test.model.delete", b""),
        ]


@on_asyncio
async def test_an_empty_change_or_reset_sends_nothing(open_session):
    service = Service("test")

    @service.call("model", "go")
    def go(request):
        request.change({})
        service.reset([], [])
        service.token_reset("x", [])
        return None

    async with open_session(service) as session:
        session.skip_events()
        assert (await session.call("test.model", "go")).events == []
        await session.assert_no_event()


@pytest.mark.parametrize("name", ["change", "add", "remove", "delete", "reaccess", "query", "create", "a.b", "", "*"])
@on_asyncio
async def test_custom_events_may_not_take_a_protocol_name(open_session, name):
    service = Service("test")
    service.model("model")(lambda r: {})
    async with open_session(service):
        with pytest.raises(ValueError):
            service.resource("test.model").event(name)


@pytest.mark.parametrize("cid", ["", "a.b", "a*", "a b", ">"])
@on_asyncio
async def test_token_event_with_an_invalid_cid_is_refused(open_session, cid):
    service = Service("test")
    service.model("model")(lambda r: {})
    async with open_session(service) as session:
        with pytest.raises(ValueError):
            service.token_event(cid, None)
        service.token_event("ok", None)
        await session.assert_event("system.reset")
        await session.assert_event("conn.ok.token", {"token": None})


@on_asyncio
async def test_apply_handlers_update_the_data_and_shape_the_events(open_session):
    service = Service("test")
    model = {"a": 1, "b": 2}
    items = ["x", "y"]
    store = {"test.new": None}
    seen: list[Event] = []

    def apply_change(resource, values):
        revert = {}
        for key, value in values.items():
            old = model.get(key, DELETE)
            if value is DELETE:
                if key in model:
                    del model[key]
                    revert[key] = old
            elif model.get(key) != value:
                model[key] = value
                revert[key] = old
        return revert

    def apply_remove(resource, idx):
        return items.pop(idx)

    service.handle("model", get=lambda r: dict(model), kind="model", apply_change=apply_change)
    service.handle("list", get=lambda r: list(items), kind="collection",
                   apply_add=lambda r, value, idx: items.insert(idx, value), apply_remove=apply_remove)
    service.handle("new", get=lambda r: store["test.new"] or not_found(), kind="model",
                   apply_create=lambda r, data: store.update({r.rid: data}),
                   apply_delete=lambda r: store.pop(r.rid))
    service.add_listener("test.>", seen.append)

    async with open_session(service) as session:
        await session.assert_event("system.reset")
        service.resource("test.model").change({"a": 1, "b": 3, "c": DELETE, "d": 4})
        await session.assert_event("event.test.model.change", {"values": {"b": 3, "d": 4}})
        service.resource("test.model").change({"a": 1})  # nothing changes: no event
        service.resource("test.list").add("z", 1)
        await session.assert_event("event.test.list.add", {"value": "z", "idx": 1})
        service.resource("test.list").remove(0)
        await session.assert_event("event.test.list.remove", {"idx": 0})
        service.resource("test.new").create({"n": 1})
        (await session.get("test.new")).assert_model({"n": 1})
        service.resource("test.new").delete()
        await session.assert_event("event.test.new.delete")
        await session.assert_no_event()
        assert model == {"a": 1, "b": 3, "d": 4} and items == ["z", "y"]
        assert await service.resource("test.model").value() == Model({"a": 1, "b": 3, "d": 4})
        assert await service.resource("test.list").value() == Collection(["z", "y"])
    assert [(e.name, e.rid, e.revert) for e in seen] == [
        ("change", "test.model", {"b": 2, "d": DELETE}),
        ("add", "test.list", None),
        ("remove", "test.list", "x"),
        ("create", "test.new", None),
        ("delete", "test.new", {"n": 1}),
    ]


@on_asyncio
async def test_a_failing_listener_is_logged_and_the_event_still_sent(open_session, service_log):
    service = Service("test")
    service.model("model")(lambda r: {})

    def broken(event):
        raise RuntimeError("listener bug")

    service.add_listener("test.model", broken)
    async with open_session(service) as session:
        await session.assert_event("system.reset")
        service.resource("test.model").change({"a": 1})
        await session.assert_event("event.test.model.change")
    assert len(service_log.errors) == 1 and "listener" in service_log.errors[0]


@on_asyncio
async def test_query_event_answers_each_query_with_its_events(open_session):
    service = Service("test")
    items = [1, 2, 3, 4]

    @service.collection("list")
    def get_list(request):
        limit = int(request.parse_query().get("limit", ["10"])[0])
        return Collection(items[:limit], query=f"limit={limit}")

    def on_query(request):
        limit = int(request.parse_query()["limit"][0])
        if limit == 0:
            request.not_found()
        if limit == 9:
            return Collection(items[:limit])
        if limit <= 2:
            request.remove(0)
            request.add(items[limit - 1], limit - 1)
        return None

    async with open_session(service) as session:
        await session.assert_event("system.reset")
        items.pop(0)
        service.resource("test.list").query_event(on_query)
        event = await session.assert_event("event.test.list.query")
        subject = event["subject"]
        (await session.query(subject, "limit=2")).assert_result({"events": [
            {"event": "remove", "data": {"idx": 0}}, {"event": "add", "data": {"value": 3, "idx": 1}}]})
        (await session.query(subject, "limit=3")).assert_result({"events": []})
        (await session.query(subject, "limit=9")).assert_collection([2, 3, 4])
        (await session.query(subject, "limit=0")).assert_error("system.notFound")
        (await session.request(subject, {"query": 1})).assert_error("system.internalError")


@on_asyncio
async def test_with_resource_runs_after_the_groups_queued_requests(open_session):
    service = Service("test")
    order = []
    service.model("model.$id")(lambda r: order.append(r.rid) or {"id": r.path_params["id"]})
    async with open_session(service) as session:
        (await session.get("test.model.1")).assert_model({"id": "1"})
        result = await service.with_resource("test.model.1", lambda r: order.append("with") or r.path_params)
        assert result == {"id": "1"} and order == ["test.model.1", "with"]
        with pytest.raises(ValueError):
            await service.with_resource("test.unknown", lambda r: None)
