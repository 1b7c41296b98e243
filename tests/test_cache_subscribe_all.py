"""ResourceCache.subscribe_all: the subscriptions a resource's references bring, asked of the cache together.

A client's subscribe of a cached collection of 1,000 references makes 1,000
subscriptions at once; the ``loaded`` calls of those whose resource is
cached go through the work queue as one piece of work. What a subscriber
sees must be what ``subscribe`` gives each: ``loaded`` later, never inside
the call, in the order asked, with the cached resource, and an uncached one
requested and loaded once the service answers. Unit tests over the
in-memory bus, with a subscriber that records what it is told.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import task
from twisted.logger import globalLogPublisher

from resgate import errors
from resgate.cache.cache import CachedResource, ResourceCache
from resgate.cache.throttle import Throttle
from resgate.config import Config
from resgate.connection import Connection
from resgate.context import GatewayContext
from resgate.workqueue import WorkQueue
from tests.rig.logs import FailureLog
from tests.rig.memorybus import MemoryBroker


class Recorder:
    """A cache subscriber that records its ``loaded`` calls in a shared list."""

    cid = "c0"
    resource_query = ""

    def __init__(self, rid: str, told: list[tuple[str, Any]], *, fails: bool = False) -> None:
        self.resource_name = rid
        self.throttle: Throttle | None = None
        self.told = told
        self.fails = fails

    def loaded(self, resource: CachedResource | None, error: errors.ResError | None) -> None:
        assert (resource is None) != (error is None)
        if resource is not None:
            assert resource.model is not None  # every resource here is a model
            self.told.append((self.resource_name, orjson.loads(orjson.dumps(resource.model.json()))))
        else:
            self.told.append((self.resource_name, error.code))
        if self.fails:
            raise RuntimeError("a subscriber that fails")

    def event(self, event: Any) -> None:
        raise AssertionError("no event is published here")

    def reaccess(self, throttle: Throttle | None) -> None:
        raise AssertionError("no reaccess is published here")


class Cache:
    """A ResourceCache on a memory bus, and a service answering gets of ``test.m<n>``."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.broker = MemoryBroker(self.clock)
        bus = self.broker.bus(clock=self.clock)
        bus.connect()
        self.gets: list[str] = []
        self.broker.subscribe("get.>", self._answer)
        self.work = WorkQueue()
        self.cache = ResourceCache(bus, self.work, reactor=self.clock)
        self.clock.advance(0)

    def _answer(self, subject: str, _payload: bytes, reply: str, _headers: Any) -> None:
        self.gets.append(subject)
        rid = subject[len("get."):]
        if rid.startswith("test.missing"):
            self.broker.publish(reply, orjson.dumps({"error": {"code": "system.notFound", "message": "Not found"}}))
        else:
            self.broker.publish(reply, orjson.dumps({"result": {"model": {"rid": rid}}}))

    def run(self, work: Any) -> None:
        """``work`` through the queue, then what the bus delivers, until nothing is left."""
        self.work.enqueue(work)
        for _ in range(100):
            self.clock.advance(0)
            if not self.broker.pending:
                return
        raise AssertionError("the bus did not settle")


def cached(cache: Cache, rids: list[str]) -> list[tuple[str, Any]]:
    """Load ``rids`` into the cache (held by subscribers kept meanwhile); what those were told."""
    told: list[tuple[str, Any]] = []
    cache.run(lambda: cache.cache.subscribe_all([Recorder(rid, told) for rid in rids]))
    return told


def test_subscribers_of_cached_resources_are_told_after_the_call_in_order() -> None:
    cache = Cache()
    cached(cache, ["test.m1", "test.m2", "test.m3"])
    cache.gets.clear()
    told: list[tuple[str, Any]] = []
    told_during_the_call: list[int] = []

    def subscribe() -> None:
        cache.cache.subscribe_all([Recorder(rid, told) for rid in ("test.m3", "test.m1", "test.m2")])
        told_during_the_call.append(len(told))

    cache.run(subscribe)
    assert told_during_the_call == [0]
    assert told == [
        ("test.m3", {"rid": "test.m3"}), ("test.m1", {"rid": "test.m1"}), ("test.m2", {"rid": "test.m2"})]
    assert cache.gets == []  # all three were cached


def test_one_subscriber_that_fails_does_not_keep_the_others_from_loading() -> None:
    cache = Cache()
    cached(cache, ["test.m1", "test.m2", "test.m3"])
    told: list[tuple[str, Any]] = []
    subs = [Recorder("test.m1", told), Recorder("test.m2", told, fails=True), Recorder("test.m3", told)]
    failures = FailureLog()
    globalLogPublisher.addObserver(failures)
    try:
        cache.run(lambda: cache.cache.subscribe_all(subs))
    finally:
        globalLogPublisher.removeObserver(failures)
    assert [rid for rid, _ in told] == ["test.m1", "test.m2", "test.m3"]
    assert failures.messages == ["Unexpected error in a subscriber's loaded resource"]
    # The queue went on: the next work runs.
    after: list[str] = []
    cache.run(lambda: after.append("ran"))
    assert after == ["ran"]


def test_uncached_resources_are_requested_once_and_told_when_the_service_answers() -> None:
    cache = Cache()
    cached(cache, ["test.m1"])
    cache.gets.clear()
    told: list[tuple[str, Any]] = []
    subs = [Recorder(rid, told) for rid in ("test.m2", "test.m1", "test.m2", "test.missing")]
    cache.run(lambda: cache.cache.subscribe_all(subs))
    assert sorted(cache.gets) == ["get.test.m2", "get.test.missing"]
    # The cached one first (its loaded was queued by the call), the others as their answers came.
    assert told[0] == ("test.m1", {"rid": "test.m1"})
    assert sorted(told[1:], key=repr) == [
        ("test.m2", {"rid": "test.m2"}), ("test.m2", {"rid": "test.m2"}), ("test.missing", "system.notFound")]


def test_a_resource_id_the_cache_refuses_is_told_as_an_error() -> None:
    cache = Cache()
    cached(cache, ["test.m1"])
    told: list[tuple[str, Any]] = []
    # A resource name NATS cannot carry as a subject: the cache cannot subscribe its events.
    cache.run(lambda: cache.cache.subscribe_all([Recorder("test.m1", told), Recorder("test. bad", told)]))
    assert sorted(told, key=repr) == [("test. bad", errors.CODE_INTERNAL_ERROR), ("test.m1", {"rid": "test.m1"})]


class Gateway(Cache):
    """Connections on the cache, with a service granting access and serving two collections.

    ``test.small`` references ``test.m0`` .. ``test.m99``; ``test.large``
    references ``test.m0`` .. ``test.m299``: more than two batches, the
    first of them cached once ``test.small`` is held.
    """

    def __init__(self, max_resources: int) -> None:
        super().__init__()
        self.broker.subscribe("access.>", self._answer)
        self.context = GatewayContext(self.cache, Config(max_resources=max_resources))

    def _answer(self, subject: str, _payload: bytes, reply: str, _headers: Any) -> None:
        kind, _, rid = subject.partition(".")
        if kind == "access":
            result: dict[str, Any] = {"get": True}
        elif rid in ("test.small", "test.large"):
            count = 100 if rid == "test.small" else 300
            result = {"collection": [{"rid": f"test.m{i}"} for i in range(count)]}
        else:
            result = {"model": {"rid": rid}}
        self.broker.publish(reply, orjson.dumps({"result": result}))

    def subscribe(self, rid: str) -> tuple[Connection, Any, Any]:
        """A new connection subscribing ``rid``: the connection, the result and the error."""
        conn = Connection(self.context, lambda _data: None)
        conn.set_version("1.2.3")
        answers: list[tuple[Any, Any]] = []
        self.work.enqueue(lambda: conn.subscribe_resource(rid, lambda result, error: answers.append((result, error))))
        for _ in range(100):
            self.clock.advance(0)
            if answers and not self.broker.pending:
                break
        assert len(answers) == 1, answers
        return conn, answers[0][0], answers[0][1]

    def counts(self) -> dict[str, int]:
        """How many subscriptions hold each cached name."""
        return {name: entry.count for name, entry in self.cache.names.items()}


def test_a_refusal_in_a_later_batch_releases_every_reference_before_it() -> None:
    gateway = Gateway(max_resources=200)
    small, result, error = gateway.subscribe("test.small")
    assert error is None and len(result["models"]) == 100
    held = gateway.counts()

    # 1 + 300 resources against a cap of 200: refused at the 200th, in the
    # second batch, with the first batch's (cached) loads still queued.
    large, result, error = gateway.subscribe("test.large")
    assert result is None and error.code == "system.resourceLimitExceeded"
    gateway.clock.advance(0)
    assert large.subs == {}
    counts = gateway.counts()
    # What only the refused subscribe held is held by nobody; the rest as before.
    assert {name: n for name, n in counts.items() if n} == held
    assert all(counts[f"test.m{i}"] == 0 for i in range(100, 199))

    gateway.work.enqueue(small.dispose)
    gateway.work.enqueue(large.dispose)
    gateway.clock.advance(0)
    assert set(gateway.counts().values()) == {0}
