"""The examples' services, tested the way a team would test its own: with resservice.testing.

The browser tests (tests/test_examples.py) run them for real; these check
their requests and events one by one, with no NATS and no browser.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from resservice import Ref
from resservice.testing import Session
from tests.rig.svc import on_asyncio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    """examples/<name>/server.py as a module (its service unstarted)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", EXAMPLES / name / "server.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@on_asyncio
async def test_book_collection():
    example = load("book-collection")
    async with Session(example.service) as session:
        await session.assert_event("system.reset", {"resources": ["library.>"], "access": ["library.>"]})
        (await session.access("library.books")).assert_access(get=True, call="*")
        (await session.get("library.books")).assert_collection([Ref(f"library.book.{i}") for i in (1, 2, 3)])
        (await session.get("library.book.2")).assert_model({"id": 2, "title": "Brave New World",
                                                            "author": "Aldous Huxley"})
        (await session.get("library.book.x")).assert_error("system.notFound")

        (await session.call("library.book.2", "set", {"title": " 1984 "})).assert_result(None)
        await session.assert_event("event.library.book.2.change", {"values": {"title": "1984"}})
        (await session.call("library.book.2", "set", {"title": "   "})).assert_error("system.invalidParams")

        (await session.call("library.books", "new", {"title": "Dune", "author": "Frank Herbert"})).assert_result(None)
        await session.assert_event("event.library.books.add", {"value": Ref("library.book.4"), "idx": 3})
        (await session.call("library.books", "new", {"title": "Dune"})).assert_error("system.invalidParams")

        (await session.call("library.books", "delete", {"id": 1})).assert_result(None)
        await session.assert_event("event.library.books.remove", {"idx": 0})
        (await session.call("library.books", "delete", {"id": "1"})).assert_error("system.invalidParams")
        await session.assert_no_event()


@on_asyncio
async def test_password_authentication():
    example = load("password-authentication")
    async with Session(example.service) as session:
        await session.assert_event("system.reset")
        (await session.access("ticker.model")).assert_error("system.accessDenied")
        (await session.auth("passwd", "login", {"password": "wrong"})).assert_error("system.invalidParams")
        (await session.auth("passwd", "login", {"password": "secret"}, cid="c1")).assert_result(None)
        await session.assert_event("conn.c1.token", {"token": {"user": "demo"}})
        (await session.access("ticker.model", token={"user": "demo"})).assert_access(get=True)
        (await session.auth("passwd", "logout", cid="c1")).assert_result(None)
        await session.assert_event("conn.c1.token", {"token": None})


@on_asyncio
async def test_jwt_authentication():
    example = load("jwt-authentication")
    async with Session(example.service) as session:
        await session.assert_event("system.reset")
        jwt = example.sign_jwt({"user": "demo"})
        (await session.auth("auth", "jwtHeader", header={"Cookie": [f"access-token={jwt}"]}, cid="c2")) \
            .assert_result(None)
        await session.assert_event("conn.c2.token", {"token": {"user": "demo"}})
        (await session.auth("auth", "jwtHeader", header={"Cookie": ["access-token=forged.a.b"]})) \
            .assert_error("system.invalidParams")
        (await session.access("example.model", token={"user": "demo"})).assert_access(get=True, call="set")
        (await session.access("example.model")).assert_error("system.accessDenied")
