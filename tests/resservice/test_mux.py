"""Registering handlers, routes and mounts: go-res's test/01 and 23."""

from __future__ import annotations

import pytest

from resservice import Mux, Service
from tests.rig.svc import on_asyncio


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.*", "a.$", "a.$1x", "a.b c", "a.$x.$x", "a?b"])
def test_invalid_patterns_are_refused(pattern):
    service = Service()
    with pytest.raises(ValueError):
        service.access(pattern)(lambda r: True)


@pytest.mark.parametrize("register", [
    lambda s: s.get("a.>")(lambda r: {}),
    lambda s: s.call("a.>", "x")(lambda r: None),
    lambda s: s.call("a", "b.c")(lambda r: None),
    lambda s: s.call("a", "*")(lambda r: None),
    lambda s: s.auth("a", "")(lambda r: None),
    lambda s: s.handle("a", kind="thing"),
    lambda s: s.handle("a", group="x.$y"),
])
def test_invalid_registrations_are_refused(register):
    with pytest.raises(ValueError):
        register(Service())


def test_a_handler_registered_twice_is_refused():
    service = Service()
    service.get("a")(lambda r: {})
    service.call("a", "set")(lambda r: None)
    service.access("a")(lambda r: True)  # another kind on the same pattern: fine
    with pytest.raises(ValueError):
        service.get("a")(lambda r: {})
    with pytest.raises(ValueError):
        service.call("a", "set")(lambda r: None)


@on_asyncio
async def test_patterns_matching_the_same_resources_are_refused_when_serving():
    from resservice import MemoryBus

    service = Service()
    service.model("a.$x")(lambda r: {})
    service.model("a.$y")(lambda r: {})
    with pytest.raises(ValueError):
        await service.start(MemoryBus())


@on_asyncio
async def test_routes_and_mounts_put_handlers_below_a_prefix(open_session):
    service = Service("test")
    books = service.route("book")
    books.model("$id")(lambda r: {"id": r.path_params["id"]})
    books.call("$id", "set")(lambda r: r.params)

    shelf = Mux("shelf")  # made elsewhere, with a path of its own
    shelf.collection("$name.books")(lambda r: [r.path_params["name"], r.path_params["floor"]])
    service.mount("floor.$floor", shelf)
    nested = shelf.route("deep")
    nested.model("x")(lambda r: {"deep": True})

    async with open_session(service) as session:
        (await session.get("test.book.7")).assert_model({"id": "7"})
        (await session.call("test.book.7", "set", {"a": 1})).assert_result({"a": 1})
        (await session.get("test.floor.2.shelf.scifi.books")).assert_collection(["scifi", "2"])
        (await session.get("test.floor.2.shelf.deep.x")).assert_model({"deep": True})


def test_a_mux_cannot_be_mounted_on_itself():
    mux = Mux()
    with pytest.raises(ValueError):
        mux.mount("x", mux)
