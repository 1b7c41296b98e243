"""Stores and their handlers: go-res's test/30 to 32 (store handlers, transformers, query handlers).

Every scenario runs on the in-memory store and on SQLite, over both buses.
"""

from __future__ import annotations

import pytest

from resservice import DELETE, Ref, Service, invalid_query
from resservice.sqlite import SQLiteStore
from resservice.store import MemoryStore, list_events, serve_models, serve_query
from tests.rig.svc import on_asyncio

BOOKS = {
    "1": {"title": "Animal Farm", "author": "Orwell"},
    "2": {"title": "Brave New World", "author": "Huxley"},
    "3": {"title": "1984", "author": "Orwell"},
}


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore(BOOKS)
        return
    sqlite = SQLiteStore(str(tmp_path / "books.db"), "books")
    for id, value in BOOKS.items():
        sqlite.create(id, value)
    yield sqlite
    sqlite.close()


def search(store, query):
    if set(query) - {"author"}:
        raise invalid_query("Only author")
    author = query.get("author", [None])[0]
    if isinstance(store, SQLiteStore):
        if author is None:
            return store.select("1 ORDER BY id")
        return store.select("json_extract(value, '$.author') = ? ORDER BY id", (author,))
    return sorted(id for id, value in store.items() if author is None or value["author"] == author)


def book_service(store) -> Service:
    service = Service("library")
    service.access(">")(lambda r: True)
    rid_of = serve_models(service, "book.$id", store, transform=lambda id, v: {**v, "id": int(id)})
    serve_query(service, "books", store, search, rid_of)
    return service


@on_asyncio
async def test_store_models_and_their_events(open_session, store):
    service = book_service(store)
    async with open_session(service) as session:
        await session.assert_event("system.reset")
        (await session.get("library.book.1")).assert_model({"title": "Animal Farm", "author": "Orwell", "id": 1})
        (await session.get("library.book.9")).assert_error("system.notFound")

        store.update("1", {"title": "Animal Farm (2nd ed)", "author": "Orwell"})
        await session.assert_event("event.library.book.1.change", {"values": {"title": "Animal Farm (2nd ed)"}})
        await session.assert_event("event.library.books.query")
        store.update("1", {"title": "Animal Farm (2nd ed)"})  # no change: no event
        store.update("2", {"author": DELETE})
        await session.assert_event("event.library.book.2.change", {"values": {"author": DELETE}})
        await session.assert_event("event.library.books.query")
        store.delete("3")
        await session.assert_event("event.library.book.3.delete")
        await session.assert_event("event.library.books.query")
        (await session.get("library.book.3")).assert_error("system.notFound")
        store.create("4", {"title": "Dune", "author": "Herbert"})
        await session.assert_event("event.library.books.query")  # a created model publishes no event itself
        (await session.get("library.book.4")).assert_model({"title": "Dune", "author": "Herbert", "id": 4})
        await session.assert_no_event()


@on_asyncio
async def test_query_collections_and_query_events(open_session, store):
    service = book_service(store)
    async with open_session(service) as session:
        await session.assert_event("system.reset")
        (await session.get("library.books", query="author=Orwell")).assert_collection(
            [Ref("library.book.1"), Ref("library.book.3")], query="author=Orwell")
        (await session.get("library.books", query="year=1")).assert_error("system.invalidQuery")

        store.update("2", {"author": "Orwell"})
        await session.assert_event("event.library.book.2.change")
        subject = (await session.assert_event("event.library.books.query"))["subject"]
        (await session.query(subject, "author=Orwell")).assert_collection(
            [Ref("library.book.1"), Ref("library.book.2"), Ref("library.book.3")])
        (await session.query(subject, "author=Huxley")).assert_collection([])
        (await session.query(subject, "bad=1")).assert_error("system.invalidQuery")


@on_asyncio
async def test_a_collection_got_without_query_gets_add_and_remove_events(open_session, store):
    service = book_service(store)
    async with open_session(service) as session:
        await session.assert_event("system.reset")
        (await session.get("library.books")).assert_collection([Ref(f"library.book.{i}") for i in (1, 2, 3)])
        store.delete("2")
        await session.assert_event("event.library.book.2.delete")
        await session.assert_event("event.library.books.query")
        await session.assert_event("event.library.books.remove", {"idx": 1})
        store.create("0", {"title": "Zero", "author": "Nobody"})
        await session.assert_event("event.library.books.query")
        await session.assert_event("event.library.books.add", {"value": Ref("library.book.0"), "idx": 0})


@pytest.mark.parametrize("before, after", [
    ([], [1, 2]), ([1, 2], []), ([1, 2, 3], [1, 3]), ([1, 2, 3], [3, 2, 1]), ([1, 2], [2, 3, 1]),
    ([1, 1, 2], [2, 1]), (["a"], ["a"]),
])
def test_list_events_turn_one_list_into_the_other(before, after):
    current = list(before)
    for name, value, idx in list_events(before, after):
        if name == "add":
            current.insert(idx, value)
        else:
            del current[idx]
    assert current == after


def test_store_patterns_name_the_id_once():
    with pytest.raises(ValueError):
        serve_models(Service("x"), "book.$id.$part", MemoryStore())
    with pytest.raises(ValueError):
        serve_models(Service("x"), "book", MemoryStore())


def test_sqlite_store_keeps_its_data_and_refuses_bad_names(tmp_path):
    path = str(tmp_path / "keep.db")
    first = SQLiteStore(path)
    first.create("a", {"x": Ref("r.1")})
    with pytest.raises(ValueError):
        first.create("a", {})
    first.close()
    again = SQLiteStore(path)
    assert again.read("a") == {"x": {"rid": "r.1"}}
    with pytest.raises(KeyError):
        again.update("missing", {"x": 1})
    with pytest.raises(KeyError):
        again.delete("missing")
    again.close()
    with pytest.raises(ValueError):
        SQLiteStore(":memory:", "bad; DROP TABLE x")
