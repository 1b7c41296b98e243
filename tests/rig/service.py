"""A scripted fake RES service, over a real NATS connection or the in-memory bus.

It subscribes to the request subjects a RES service answers (get, access,
call, auth) and records every request. A test either scripts answers up
front (``on(subject, handler)``) or takes requests as they come
(``await next_request()``) and answers each as the scenario demands, the way
Resgate's own test suite plays services.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import nats
from twisted.internet import defer

from tests.rig.aio import WAIT_TIMEOUT, as_deferred, within
from tests.rig.memorybus import MemoryBroker, MemoryConnection
from tests.rig.natsbus import confirm_subscriptions

#: Where a service connects: a nats-server's URL, or a MemoryBroker.
BusAddress = str | MemoryBroker

REQUEST_SUBJECTS = ("get.>", "access.>", "call.>", "auth.>")


@dataclass
class ServiceRequest:
    """One request the fake service received."""

    subject: str
    raw: bytes
    reply: str
    service: "FakeService" = field(repr=False)
    #: The message's NATS headers (trace context), None when it had none.
    headers: dict[str, str] | None = None

    @property
    def payload(self) -> Any:
        """The request payload parsed as JSON (None for an empty payload)."""
        return json.loads(self.raw) if self.raw else None

    def respond(self, payload: Any) -> None:
        """Send a reply: bytes as they are, anything else JSON-encoded."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.service.publish(self.reply, data)

    def respond_result(self, result: Any) -> None:
        self.respond({"result": result})

    def respond_error(self, code: str, message: str, data: Any = None) -> None:
        error = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        self.respond({"error": error})


async def connect_service(bus: BusAddress, **options: Any) -> nats.NATS | MemoryConnection:
    """A service's connection: nats-py's client to a URL, or a MemoryConnection to a broker.

    Both offer what the rig's services use (subscribe, publish, flush,
    new_inbox, close), so a service runs unchanged on either bus.
    """
    if isinstance(bus, MemoryBroker):
        return bus.connect_service()
    return await as_deferred(nats.connect(bus, **options))


class FakeService:
    """A RES service played by a test, on the bus at ``bus`` (a NATS URL or a MemoryBroker)."""

    def __init__(self, bus: BusAddress) -> None:
        self.bus = bus
        self.requests: list[ServiceRequest] = []
        self._handlers: dict[str, Callable[[ServiceRequest], None]] = {}
        self._unhandled: list[ServiceRequest] = []
        self._waiting: list[defer.Deferred] = []
        self._nc: nats.NATS | MemoryConnection | None = None

    async def start(self) -> "FakeService":
        self._nc = await connect_service(self.bus)
        for subject in REQUEST_SUBJECTS:
            await as_deferred(self._nc.subscribe(subject, cb=self._received))
        await confirm_subscriptions(self._nc)
        return self

    async def stop(self) -> None:
        if self._nc is not None:
            await as_deferred(self._nc.close())
            self._nc = None

    def on(self, subject: str, handler: Callable[[ServiceRequest], None]) -> None:
        """Answer every request on ``subject`` with ``handler``."""
        self._handlers[subject] = handler

    def next_request(self, timeout: float = WAIT_TIMEOUT) -> defer.Deferred:
        """The oldest request no handler answered, waiting for one if needed."""
        if self._unhandled:
            return defer.succeed(self._unhandled.pop(0))
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return within(d, timeout)

    async def take(self, *subjects: str, timeout: float = WAIT_TIMEOUT) -> dict[str, ServiceRequest]:
        """The next requests on exactly these subjects, in whatever order they came.

        A gateway sends some requests in parallel (access and get for a
        subscribe), so a scenario must not depend on their order. Fails if a
        request on another subject comes first.
        """
        taken: dict[str, ServiceRequest] = {}
        while len(taken) < len(subjects):
            request = await self.next_request(timeout)
            if request.subject not in subjects or request.subject in taken:
                raise AssertionError(f"unexpected request {request.subject} {request.raw!r}; "
                                     f"expected {sorted(set(subjects) - set(taken))}")
            taken[request.subject] = request
        return taken

    def assert_no_request(self) -> None:
        """Fail if a request came that no handler or test took."""
        if self._unhandled:
            raise AssertionError(f"unexpected requests: {[r.subject for r in self._unhandled]}")

    def publish(self, subject: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        as_deferred(self._nc.publish(subject, data))

    def event(self, rid: str, event: str, payload: Any = None) -> None:
        """Publish a resource event, ``event.<rid>.<event>``."""
        self.publish(f"event.{rid}.{event}", payload if payload is not None else {})

    def flush(self) -> defer.Deferred:
        return as_deferred(self._nc.flush())

    async def _received(self, msg) -> None:
        request = ServiceRequest(msg.subject, msg.data, msg.reply, self, msg.headers)
        self.requests.append(request)
        handler = self._handlers.get(msg.subject)
        if handler is not None:
            handler(request)
            return
        while self._waiting:
            d = self._waiting.pop(0)
            if not d.called:
                d.callback(request)
                return
        self._unhandled.append(request)


def serve_set_and_ping(service: FakeService, rids: list[str], change: Callable[[str, dict], None]) -> None:
    """Script the calls of the long-running tests' models: ``call.<rid>.set``
    changes ``value`` through ``change(rid, values)`` (which emits the event)
    before it answers, ``call.<rid>.ping`` answers ``{"pong": rid}``."""
    for rid in rids:
        def set_value(request: ServiceRequest, rid: str = rid) -> None:
            change(rid, {"value": request.payload["params"]["value"]})
            request.respond_result(None)

        service.on(f"call.{rid}.set", set_value)
        service.on(f"call.{rid}.ping", lambda request, rid=rid: request.respond_result({"pong": rid}))
