"""What serving a client makes is freed by reference counting, not left to the cyclic GC.

Every object in a reference cycle lives until a collection finds it, and
every collection walks all the objects the collector tracks: with thousands
of connections open, each young generation's pass takes tens of
milliseconds, and lands in whatever the gateway does then (bench/README.md).
A subscription loading its access once made two closures that referred to
each other, a cycle for every connection that subscribed; an answered HTTP
request and its ApiRequest referred to each other, 14 objects for the
collector per request; and a closed WebSocket connection (its protocol,
transport and buffers, about 9 KiB) waited for the oldest generation's next
collection, which may come minutes after a crowd of clients left.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import weakref
from typing import Any, Callable

import pytest_twisted

from resgate.cache.throttle import Throttle
from resgate.codec import Access
from resgate.subscription import Subscription
from tests.rig.aio import WAIT_TIMEOUT, as_deferred, eventually, within
from tests.rig.resources import VERSION_LATEST
from tests.rig.ws import connect_ws


class Owner:
    """The part of a connection a subscription asks for its access."""

    cid = "c0"

    def __init__(self) -> None:
        self.token: Any = None
        self.asked: list[Callable[[Access, Any], None]] = []

    def expand_cid(self, rid: str) -> str:
        return rid

    def request_access(self, sub: Subscription, callback: Callable[[Access, Any], None]) -> None:
        self.asked.append(callback)


def cyclic_garbage(run: Callable[[], None]) -> int:
    """How many unreachable objects the collector finds after ``run``, with it off meanwhile."""
    gc.collect()
    gc.disable()
    try:
        run()
        return gc.collect()
    finally:
        gc.enable()


def test_loading_access_makes_no_cycle() -> None:
    answers: list[Any] = []

    def run() -> None:
        owner = Owner()
        sub = Subscription(owner, "test.model", None)  # type: ignore[arg-type]  # Owner is the part used
        sub.can_get(answers.append)
        assert len(owner.asked) == 1
        owner.asked.pop()(Access(get=True), None)

    assert cyclic_garbage(run) == 0
    assert answers == [None]


def test_an_answer_for_an_old_token_asks_again_without_a_cycle() -> None:
    answers: list[Any] = []
    throttle = Throttle(1)

    def run() -> None:
        owner = Owner()
        sub = Subscription(owner, "test.model", throttle)  # type: ignore[arg-type]
        sub.can_call("set", answers.append)
        sub.can_get(answers.append)
        owner.token = {"user": "new"}
        owner.asked.pop()(Access(get=True, call="*"), None)  # spoke for the old token
        assert answers == [] and len(owner.asked) == 1
        owner.asked.pop()(Access(get=True), None)

    assert cyclic_garbage(run) == 0
    assert answers == [Access(get=True).can_call("set"), None]


async def _subscribed_client(gateway, fake_service):
    fake_service.on("access.test.model", lambda r: r.respond({"result": {"get": True, "call": "*"}}))
    fake_service.on("get.test.model", lambda r: r.respond({"result": {"model": {"a": 1}}}))
    client = await connect_ws(gateway.ws_url)
    await client.request("version", {"protocol": VERSION_LATEST})
    await client.request("subscribe.test.model")
    return client


async def _closed_and_freed(gateway, close: Callable[[], Any]) -> None:
    """Close the one client with ``close``; its protocol, transport and connection must then
    be freed with the collector off."""
    (protocol,) = gateway.clients.protocols
    refs = {"protocol": weakref.ref(protocol), "transport": weakref.ref(protocol.transport),
            "connection": weakref.ref(protocol.conn)}
    del protocol

    def alive() -> list[str]:
        return [name for name, ref in refs.items() if ref() is not None]

    gc.collect()
    gc.disable()
    try:
        close()
        await eventually(lambda: not gateway.clients.protocols)
        try:
            await eventually(lambda: not alive())
        except AssertionError:
            raise AssertionError(f"still alive without a collection: {alive()}") from None
    finally:
        gc.enable()


@pytest_twisted.ensureDeferred
async def test_a_client_that_closes_is_freed_without_a_collection(gateway, fake_service):
    client = await _subscribed_client(gateway, fake_service)
    await _closed_and_freed(gateway, client.sendClose)


@pytest_twisted.ensureDeferred
async def test_a_client_that_vanishes_is_freed_without_a_collection(gateway, fake_service):
    client = await _subscribed_client(gateway, fake_service)
    await _closed_and_freed(gateway, client.transport.abortConnection)


@pytest_twisted.ensureDeferred
async def test_a_client_the_gateway_drops_is_freed_without_a_collection(gateway, fake_service):
    client = await _subscribed_client(gateway, fake_service)
    # An unmasked frame from a client: Autobahn fails the connection (1002).
    await _closed_and_freed(gateway, lambda: client.transport.write(b"\x81\x02{}"))


def _gateway_garbage(found: list[object]) -> list[str]:
    """What of the gateway's own is among what a collection found unreachable: its objects,
    and its functions and bound methods (closures and callbacks)."""
    names = set()
    for o in found:
        owner = getattr(o, "__self__", None) if inspect.ismethod(o) else None
        module = (o.__module__ if inspect.isfunction(o) else type(owner if owner is not None else o).__module__)
        if module.startswith("resgate."):
            names.add(f"{module}.{getattr(o, '__qualname__', type(o).__qualname__)}")
    return sorted(names)


async def _gateway_garbage_of(run: Callable[[], Any]) -> list[str]:
    """The gateway's garbage left by ``await run()``, the collector saving what it finds meanwhile."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await run()
        gc.collect()
        return _gateway_garbage(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest_twisted.ensureDeferred
async def test_answered_http_requests_leave_no_cycle(gateway, fake_service):
    fake_service.on("access.test.model", lambda r: r.respond({"result": {"get": True, "call": "*"}}))
    fake_service.on("get.test.model", lambda r: r.respond({"result": {"model": {"a": 1}}}))
    fake_service.on("call.test.model.ping", lambda r: r.respond({"result": "pong"}))
    fake_service.on("access.test.denied", lambda r: r.respond({"result": {"get": False}}))

    async def exchange() -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        statuses = []
        try:
            for head in (b"GET /api/test/model", b"POST /api/test/model/ping", b"GET /api/test/denied"):
                writer.write(head + b" HTTP/1.1\r\nHost: gateway\r\nContent-Length: 0\r\n\r\n")
                response = await reader.readuntil(b"\r\n\r\n")
                statuses.append(response.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length: *(\d+)", response)
                await reader.readexactly(int(length.group(1)) if length else 0)
        finally:
            writer.close()
        return statuses

    statuses: list[bytes] = []

    async def run() -> None:
        statuses.extend(await within(as_deferred(exchange()), WAIT_TIMEOUT))
        await eventually(lambda: gateway.site.http_connections == 0)

    assert await _gateway_garbage_of(run) == []
    assert statuses == [b"200", b"200", b"401"]


@pytest_twisted.ensureDeferred
async def test_calls_and_events_leave_no_cycle(gateway, fake_service):
    fake_service.on("call.test.model.ping", lambda r: r.respond({"result": "pong"}))
    client = await _subscribed_client(gateway, fake_service)
    received: list[Any] = []

    async def run() -> None:
        for n in range(20):
            received.append(await client.request("call.test.model.ping", {"n": n}))
        for n in range(20):
            fake_service.event("test.model", "change", {"values": {"a": n + 2}})
            received.append(await client.next_message())

    assert await _gateway_garbage_of(run) == []
    assert all("result" in m for m in received[:20]), received[:20]
    assert [m["data"]["values"]["a"] for m in received[20:]] == list(range(2, 22))
