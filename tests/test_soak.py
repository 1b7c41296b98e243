"""Soak: many WebSocket clients doing random things while the service keeps changing.

200 clients on one in-process gateway subscribe, unsubscribe, call and set
at random on a small world of resources (models with references, some of
them changing and forming cycles, and two collections), while the service
emits change, add and remove events on its own. Clients also glance at rare
models (subscribe, unsubscribe at once), which leave the gateway's cache and
are got again, each get answered between two events of the service (docs/design.md,
invariant 2: the one before is part of the response, the one after is not).
Every client keeps its copy of what it holds the way a RES client does
(resources from responses and events, dropping what it no longer
references) and checks every message as it comes:

* a model's ``seq`` goes up by exactly one with each change event the client
  gets while it holds the model, starting from the copy it was sent;
* a collection, after each add or remove, is exactly the next state the
  service went through (its states never repeat, see ``ServiceWorld``);
* no event for a resource the client does not hold, no resource sent again
  while the client holds it, no reference to a resource it was never sent,
  no error response.

At the end every client's copies equal the service's resources, and so do
fresh gets through the gateway; the gateway logged no error; once the
clients are gone and the cache has evicted, the gateway's live objects are
back to (at most) what they were before the first client came; and the process's RSS
grew by less than a bound a leak over the run would exceed.

The run takes ``SOAK_DURATION`` seconds (``LONG_DURATION`` with ``--long``;
the environment variable ``SOAK_SECONDS`` changes the short one).
Random choices come from one seed, printed at the start and read from the
environment variable ``SOAK_SEED`` when set, so a failing run's operation
sequences (not its interleavings, which the scheduler decides) can be replayed:
``SOAK_SEED=<seed> .venv/bin/pytest tests/test_soak.py -s``.
"""

from __future__ import annotations

import collections
import json
import os
import random
import sys
import time
from typing import Any, Callable

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, task

from tests.rig.aio import eventually, sleep, within
from tests.rig.countedgateway import live_gateway_objects
from tests.rig.resources import PROTOCOL_VERSION, VERSION_LATEST
from tests.rig.service import serve_set_and_ping

pytestmark = pytest.mark.usefixtures("logged_errors")

CLIENTS = 200
#: How long the clients and the service keep going (seconds).
SOAK_DURATION = 60.0
LONG_DURATION = 600.0
#: When RSS and live objects are first sampled, as a share of the run (in
#: tenths): by then every client is connected and the caches are full.
WARM_UP_SHARE = 0.3
#: Events the service emits on its own each second (calls add their own).
EVENTS_PER_SECOND = 40
#: A client waits this long between two operations (seconds, uniform).
OPERATION_INTERVAL = (0.5, 3.0)
#: Operations and their weights; a "subscription" subscribes or unsubscribes
#: (see ``SUBSCRIPTIONS_AIMED_AT``).
OPERATIONS = {"subscription": 60, "set": 16, "call": 10, "push": 8, "glance": 8, "reconnect": 2}
#: A client tends to hold this many direct subscriptions: the more it holds,
#: the likelier it unsubscribes (none at twice this many).
SUBSCRIPTIONS_AIMED_AT = 3
#: How many direct subscriptions of one resource a client may hold.
MAX_DIRECT = 2
#: Bound on one client request, and on connecting (seconds): the machine is shared.
REQUEST_BOUND = 30.0
#: Bound on the end's waits: clients stopping, copies catching up, connections closing.
SETTLE_BOUND = 60.0
#: RSS growth from warm-up to the end that fails the run (kB). Runs grow by
#: 2-3 MiB, in 60 seconds as in 10 minutes; a leak of a hundred bytes per
#: event delivered (some 4,000 a second) goes past it. The live-object count
#: is the precise check; RSS catches a leak that dies with its connection.
RSS_GROWTH_BOUND_KB = 32 * 1024
#: Collection states each history keeps (plenty: copies are seconds behind at
#: most, and a collection changes some ten times a second).
HISTORY_KEPT = 2000
#: Violations each client keeps the text of (all are counted).
VIOLATIONS_KEPT = 20

MODELS = [f"soak.m.{i}" for i in range(6)]
#: Models with a ``ref`` field the service points at another model now and then.
REFERRING_MODELS = ["soak.m.0", "soak.m.1", "soak.m.5"]
COLLECTIONS = ["soak.c.0", "soak.c.1"]
RIDS = MODELS + COLLECTIONS
#: Models a client only glances at (subscribes and at once unsubscribes):
#: rarely held, they leave the gateway's cache and are got again, events racing
#: the get (see ``serve``).
RARE_MODELS = [f"soak.r.{i}" for i in range(100)]


def _key(values: list) -> str:
    return json.dumps(values, sort_keys=True)


def _references(data: Any) -> list[str]:
    """The non-soft references among a model's or collection's values."""
    values = data.values() if isinstance(data, dict) else data
    return [v["rid"] for v in values if isinstance(v, dict) and "rid" in v and not v.get("soft")]


class Stats:
    """What happened during the run, for the summary."""

    def __init__(self) -> None:
        self.operations: collections.Counter[str] = collections.Counter()
        self.emitted: collections.Counter[str] = collections.Counter()
        self.delivered: collections.Counter[str] = collections.Counter()
        self.resources_sent = 0
        #: Get requests the service answered between two events.
        self.raced_gets = 0
        self.violations = 0


class History:
    """The states a collection went through, numbered; old ones are forgotten."""

    def __init__(self, values: list) -> None:
        self.last = 0
        self.states: dict[int, str] = {0: _key(values)}
        self.index: dict[str, int] = {self.states[0]: 0}

    def record(self, values: list) -> None:
        self.last += 1
        key = _key(values)
        assert key not in self.index, "the service repeated a collection state"
        self.states[self.last] = key
        self.index[key] = self.last
        old = self.last - HISTORY_KEPT
        if old in self.states:
            del self.index[self.states.pop(old)]


class ServiceWorld:
    """The service's resources and the events that change them.

    Every change of a model raises its ``seq`` by one. A collection is a
    fixed head followed by items, each a string never used before: items are
    inserted after the first one and only the first one is removed, and at
    least one is always there, so the first item of a state is gone for good
    once removed and no state comes twice (``History`` relies on it).
    """

    def __init__(self, rng: random.Random, stats: Stats) -> None:
        self.rng = rng
        self.stats = stats
        self.publish: Callable[[str, str, dict], None] = lambda rid, event, payload: None
        self.models: dict[str, dict] = {}
        for i, rid in enumerate(MODELS):
            self.models[rid] = {"name": f"model {i}", "seq": 0, "value": 0, "tick": 0}
        self.models["soak.m.0"].update(ref={"rid": "soak.m.2"}, soft={"rid": "soak.m.5", "soft": True},
                                       data={"data": {"tags": ["a", "b"]}})
        self.models["soak.m.1"]["ref"] = {"rid": "soak.m.3"}
        self.models["soak.m.5"]["ref"] = {"rid": "soak.m.4"}
        for i, rid in enumerate(RARE_MODELS):
            self.models[rid] = {"name": f"rare {i}", "seq": 0, "tick": 0}
        self.heads = {"soak.c.0": 0, "soak.c.1": 2}
        self.collections = {
            "soak.c.0": ["soak.c.0#1", "soak.c.0#2", "soak.c.0#3"],
            "soak.c.1": [{"rid": "soak.m.4"}, "head", "soak.c.1#1"],
        }
        self.next_item = 100
        self.histories = {rid: History(values) for rid, values in self.collections.items()}
        #: Whether get requests are answered between two events (see ``serve``).
        self.racing = True

    def get_result(self, rid: str) -> dict:
        if rid in self.models:
            return {"model": self.models[rid]}
        return {"collection": self.collections[rid]}

    def change(self, rid: str, values: dict) -> None:
        model = self.models[rid]
        values = {**values, "seq": model["seq"] + 1}
        model.update(values)
        self.stats.emitted["change"] += 1
        self.publish(rid, "change", {"values": values})

    def add(self, rid: str) -> None:
        values = self.collections[rid]
        head = self.heads[rid]
        idx = self.rng.randint(head + 1, len(values))
        self.next_item += 1
        item = f"{rid}#{self.next_item}"
        values.insert(idx, item)
        self.histories[rid].record(values)
        self.stats.emitted["add"] += 1
        self.publish(rid, "add", {"idx": idx, "value": item})

    def remove(self, rid: str) -> None:
        values = self.collections[rid]
        head = self.heads[rid]
        del values[head]
        self.histories[rid].record(values)
        self.stats.emitted["remove"] += 1
        self.publish(rid, "remove", {"idx": head})

    def tick(self) -> None:
        """One event of the service's own."""
        roll = self.rng.random()
        if roll < 0.5:
            self.step(self.rng.choice(MODELS))
        elif roll < 0.6:
            self.step(self.rng.choice(RARE_MODELS))
        elif roll < 0.75:
            rid = self.rng.choice(REFERRING_MODELS)
            target = self.rng.choice([m for m in MODELS if m != rid])
            self.change(rid, {"ref": {"rid": target}})
        else:
            self.step(self.rng.choice(COLLECTIONS))

    def step(self, rid: str) -> None:
        """An event that changes ``rid`` the way it changes on its own."""
        if rid in self.models:
            self.change(rid, {"tick": self.models[rid]["tick"] + 1})
            return
        items = len(self.collections[rid]) - self.heads[rid]
        if items > 1 and (items >= 12 or self.rng.random() < 0.5):
            self.remove(rid)
        else:
            self.add(rid)


def serve(service, world: ServiceWorld) -> None:
    """Script ``service`` (a FakeService) to play ``world``."""
    world.publish = service.event
    for rid in RIDS + RARE_MODELS:
        def get(request, rid=rid):
            # While the run lasts, an event comes just before the response
            # (already part of it: the gateway must drop it) and one just after.
            racing = world.racing
            if racing:
                world.step(rid)
            request.respond_result(world.get_result(rid))
            if racing:
                world.step(rid)
                world.stats.raced_gets += 1

        service.on(f"access.{rid}", lambda request: request.respond_result({"get": True, "call": "*"}))
        service.on(f"get.{rid}", get)
    serve_set_and_ping(service, MODELS, world.change)
    for rid in COLLECTIONS:
        def push(request, rid=rid):
            world.add(rid)
            request.respond_result(None)

        service.on(f"call.{rid}.push", push)
    service.on("auth.soak.sync", lambda request: request.respond_result(None))


class ClientView:
    """What one connection holds, kept as a RES client keeps it, checking every message."""

    def __init__(self, name: str, world: ServiceWorld, stats: Stats) -> None:
        self.name = name
        self.world = world
        self.stats = stats
        self.direct: collections.Counter[str] = collections.Counter()
        self.models: dict[str, dict] = {}
        self.collections: dict[str, list] = {}
        #: The History state number each held collection's copy is at.
        self.positions: dict[str, int] = {}
        self.violations: list[str] = []

    def violation(self, text: str) -> None:
        self.stats.violations += 1
        if len(self.violations) < VIOLATIONS_KEPT:
            self.violations.append(f"{self.name}: {text}")

    def closed(self) -> None:
        """The connection is gone, and with it what it held; the violations stay."""
        self.direct.clear()
        self.models.clear()
        self.collections.clear()
        self.positions.clear()

    def holds(self, rid: str) -> bool:
        return rid in self.models or rid in self.collections

    # -- responses

    def subscribed(self, rid: str, response: dict) -> None:
        if "result" not in response:
            self.violation(f"subscribe {rid}: {response}")
            return
        self.direct[rid] += 1
        self._add_resources(response["result"], f"subscribe {rid}")
        self._collect()

    def unsubscribed(self, rid: str, response: dict) -> None:
        if "error" in response:
            self.violation(f"unsubscribe {rid}: {response}")
            return
        self.direct[rid] -= 1
        self._collect()

    def _add_resources(self, resources: dict, why: str) -> None:
        for rid, data in (resources.get("models") or {}).items():
            if self.holds(rid):
                self.violation(f"{why}: {rid} sent again while held")
            self.stats.resources_sent += 1
            self.models[rid] = data
        for rid, data in (resources.get("collections") or {}).items():
            if self.holds(rid):
                self.violation(f"{why}: {rid} sent again while held")
            self.stats.resources_sent += 1
            self.collections[rid] = data
            position = self.world.histories[rid].index.get(_key(data))
            if position is None:
                self.violation(f"{why}: {rid} sent as {data}, never a state of the service")
                self.positions.pop(rid, None)
            else:
                self.positions[rid] = position
        if resources.get("errors"):
            self.violation(f"{why}: errors {resources['errors']}")

    # -- events

    def on_event(self, message: Any) -> None:
        name = message.get("event") if isinstance(message, dict) else None
        if not isinstance(name, str):
            self.violation(f"not an event: {message!r}")
            return
        rid, _, event = name.rpartition(".")
        self.stats.delivered[event] += 1
        data = message.get("data") or {}
        if not self.holds(rid):
            self.violation(f"event {name} for a resource not held: {data}")
            return
        if event == "change" and rid in self.models:
            self._change(rid, data)
        elif event in ("add", "remove") and rid in self.collections:
            self._collection_event(rid, event, data)
        else:
            self.violation(f"unexpected event {name}: {data}")
            return
        self._collect()

    def _change(self, rid: str, data: dict) -> None:
        self._add_resources(data, f"{rid}.change")
        model = self.models[rid]
        values = data.get("values") or {}
        seq = values.get("seq")
        if seq != model["seq"] + 1:
            self.violation(f"{rid}.change with seq {seq} on a copy at seq {model['seq']}")
        model = dict(model)
        for key, value in values.items():
            if isinstance(value, dict) and value.get("action") == "delete":
                model.pop(key, None)
            else:
                model[key] = value
        self.models[rid] = model

    def _collection_event(self, rid: str, event: str, data: dict) -> None:
        values = list(self.collections[rid])
        idx = data.get("idx")
        if event == "add":
            self._add_resources(data, f"{rid}.add")
            values.insert(idx, data.get("value"))
        else:
            del values[idx]
        self.collections[rid] = values
        history = self.world.histories[rid]
        key = _key(values)
        position = self.positions.get(rid)
        if position is not None and history.states.get(position + 1) != key:
            found = history.index.get(key)
            self.violation(f"{rid}.{event} {data} took the copy from state {position} to "
                           f"{'an unknown state' if found is None else f'state {found}'}")
        self.positions[rid] = history.index.get(key)

    # -- what is held

    def _collect(self) -> None:
        """Keep what the direct subscriptions reach through references; drop the rest."""
        held: set[str] = set()
        stack = [rid for rid, count in self.direct.items() if count > 0]
        while stack:
            rid = stack.pop()
            if rid in held:
                continue
            data = self.models.get(rid)
            if data is None:
                data = self.collections.get(rid)
            if data is None:
                self.violation(f"{rid} is held but was never sent")
                continue
            held.add(rid)
            stack.extend(_references(data))
        for store in (self.models, self.collections):
            for rid in [rid for rid in store if rid not in held]:
                del store[rid]
                self.positions.pop(rid, None)

    def mismatches(self) -> list[str]:
        """Where a copy differs from the service's resource."""
        found = []
        for rid, data in self.models.items():
            if data != self.world.models[rid]:
                found.append(f"{self.name}: {rid} is {data}, the service has {self.world.models[rid]}")
        for rid, data in self.collections.items():
            if data != self.world.collections[rid]:
                found.append(f"{self.name}: {rid} is {data}, the service has {self.world.collections[rid]}")
        return found


class SoakProtocol(WebSocketClientProtocol):
    """A WebSocket client that hands events to its ClientView as they arrive.

    A response's handler updates the view inside ``onMessage``, before any
    later message, so the view sees responses and events in wire order.
    Nothing is kept beyond the view: the run is long.
    """

    def __init__(self) -> None:
        super().__init__()
        self.view: ClientView | None = None
        self._next_id = 1
        self._pending: dict[int, tuple[defer.Deferred, Callable[[dict], None] | None]] = {}
        self.closed: defer.Deferred = defer.Deferred()

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        request_id = message.get("id") if isinstance(message, dict) else None
        if request_id is None:
            self.view.on_event(message)
            return
        d, handler = self._pending.pop(request_id, (None, None))
        if d is None:
            self.view.violation(f"response to no request: {message}")
            return
        if handler is not None:
            handler(message)
        if not d.called:
            d.callback(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"WebSocket closed: {code} {reason}"))
        pending, self._pending = self._pending, {}
        for d, _ in pending.values():
            if not d.called:
                d.errback(ConnectionError(f"WebSocket closed: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback(code)

    def request(self, method: str, params: Any = None,
                handler: Callable[[dict], None] | None = None) -> defer.Deferred:
        request_id = self._next_id
        self._next_id += 1
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        d: defer.Deferred = defer.Deferred()
        self._pending[request_id] = (d, handler)
        self.sendMessage(json.dumps(message).encode())
        return within(d, REQUEST_BOUND)

    def close(self) -> defer.Deferred:
        if not self.closed.called:
            self.sendClose()
        return within(self.closed, REQUEST_BOUND)


async def open_client(url: str, view: ClientView) -> SoakProtocol:
    factory = WebSocketClientFactory(url)
    factory.protocol = SoakProtocol
    factory.opened = defer.Deferred()
    connectWS(factory, timeout=REQUEST_BOUND)
    protocol = await within(factory.opened, REQUEST_BOUND)
    protocol.view = view
    response = await protocol.request("version", {"protocol": VERSION_LATEST})
    assert response.get("result") == {"protocol": PROTOCOL_VERSION}, response
    return protocol


class SoakClient:
    """One client's random walk: an operation, a pause, the next."""

    def __init__(self, index: int, url: str, world: ServiceWorld, stats: Stats, seed: str) -> None:
        self.index = index
        self.url = url
        self.world = world
        self.stats = stats
        self.rng = random.Random(f"{seed}-client-{index}")
        #: A view per connection the client opened, the current one last.
        self.views: list[ClientView] = []
        self.protocol: SoakProtocol | None = None
        self.running = True

    @property
    def view(self) -> ClientView:
        return self.views[-1]

    async def connect(self) -> None:
        self.views.append(ClientView(f"client {self.index} (connection {len(self.views) + 1})",
                                     self.world, self.stats))
        self.protocol = await open_client(self.url, self.view)

    async def run(self) -> None:
        while self.running:
            await sleep(self.rng.uniform(*OPERATION_INTERVAL))
            if not self.running:
                return
            operation = self.rng.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
            try:
                await getattr(self, operation)()
            except Exception as e:
                self.view.violation(f"{operation} failed: {e!r}")

    async def subscription(self) -> None:
        held = sum(self.view.direct.values())
        if self.rng.random() < held / (2 * SUBSCRIPTIONS_AIMED_AT):
            await self.unsubscribe()
        else:
            await self.subscribe()

    async def subscribe(self) -> None:
        view = self.view
        rid = self.rng.choice([rid for rid in RIDS if view.direct[rid] < MAX_DIRECT] or RIDS)
        self.stats.operations["subscribe"] += 1
        await self.protocol.request(f"subscribe.{rid}", handler=lambda response: view.subscribed(rid, response))

    async def unsubscribe(self) -> None:
        view = self.view
        held = sorted(rid for rid, count in view.direct.items() if count > 0)
        if not held:
            await self.subscribe()
            return
        rid = self.rng.choice(held)
        self.stats.operations["unsubscribe"] += 1
        await self.protocol.request(f"unsubscribe.{rid}", handler=lambda response: view.unsubscribed(rid, response))

    async def glance(self) -> None:
        """Subscribe to a rare model and let go of it at once."""
        view = self.view
        rid = self.rng.choice(RARE_MODELS)
        self.stats.operations["glance"] += 1
        response = await self.protocol.request(f"subscribe.{rid}",
                                               handler=lambda response: view.subscribed(rid, response))
        if "result" in response:
            await self.protocol.request(f"unsubscribe.{rid}",
                                        handler=lambda response: view.unsubscribed(rid, response))

    async def _call(self, kind: str, rid: str, method: str, params: Any = None) -> None:
        self.stats.operations[kind] += 1
        response = await self.protocol.request(f"call.{rid}.{method}", params)
        if "result" not in response:
            self.view.violation(f"call {rid}.{method}: {response}")

    async def set(self) -> None:
        await self._call("set", self.rng.choice(MODELS), "set", {"value": self.rng.randrange(1_000_000)})

    async def call(self) -> None:
        await self._call("call", self.rng.choice(MODELS), "ping")

    async def push(self) -> None:
        await self._call("push", self.rng.choice(COLLECTIONS), "push")

    async def reconnect(self) -> None:
        self.stats.operations["reconnect"] += 1
        await self.protocol.close()
        self.view.closed()
        await self.connect()

    async def sync(self) -> None:
        """A round trip through the service: every event it sent before has reached the gateway."""
        response = await self.protocol.request("auth.soak.sync")
        assert "error" not in response, response


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def soak_seed() -> str:
    return os.environ.get("SOAK_SEED") or os.urandom(6).hex()


async def soak(gateway, fake_service, duration: float) -> None:
    seed = soak_seed()
    print(f"\nsoak: seed {seed} (replay with SOAK_SEED={seed}), {CLIENTS} clients, {duration:.0f} s")
    stats = Stats()
    world = ServiceWorld(random.Random(f"{seed}-service"), stats)
    serve(fake_service, world)
    baseline = live_gateway_objects()

    clients = [SoakClient(i, gateway.ws_url, world, stats, seed) for i in range(CLIENTS)]
    for batch in range(0, CLIENTS, 20):
        await defer.gatherResults([defer.ensureDeferred(c.connect()) for c in clients[batch:batch + 20]],
                                  consumeErrors=True)
    started = time.monotonic()

    def emit() -> None:
        world.tick()
        # The fake service records every request; the soak has no use for them.
        fake_service.requests.clear()

    emitter = task.LoopingCall(emit)
    emitter.start(1 / EVENTS_PER_SECOND, now=False)
    runs = [defer.ensureDeferred(c.run()) for c in clients]
    # Every tenth of the run, for the summary: RSS, and the memory blocks
    # Python has allocated (RSS also counts what Python freed but kept).
    rss_series, blocks_series = [], []
    try:
        for tenth in range(1, 11):
            await sleep(duration / 10)
            rss_series.append(rss_kb())
            blocks_series.append(sys.getallocatedblocks())
            if tenth == round(10 * WARM_UP_SHARE):
                rss_warm = rss_series[-1]
                objects_warm = live_gateway_objects()
    finally:
        for c in clients:
            c.running = False
        emitter.stop()
        world.racing = False
    await within(defer.gatherResults(runs, consumeErrors=True), SETTLE_BOUND)
    ran = time.monotonic() - started
    rss_end = rss_kb()
    objects_end = live_gateway_objects()

    # Every event the service sent is at the gateway; the copies catch up.
    await within(defer.gatherResults([defer.ensureDeferred(c.sync()) for c in clients], consumeErrors=True),
                 SETTLE_BOUND)
    views = [c.view for c in clients]
    try:
        await eventually(lambda: not any(v.mismatches() for v in views), SETTLE_BOUND)
    except AssertionError:
        pass  # reported below
    mismatches = [m for v in views for m in v.mismatches()]
    held = sum(len(v.models) + len(v.collections) for v in views)

    # Fresh gets: the gateway's cache holds what the service holds.
    fresh_view = ClientView("fresh", world, stats)
    fresh = await open_client(gateway.ws_url, fresh_view)
    for rid in RIDS + RARE_MODELS:
        response = await fresh.request(f"get.{rid}")
        group = "models" if rid in world.models else "collections"
        expected = world.models[rid] if rid in world.models else world.collections[rid]
        got = response.get("result", {}).get(group, {}).get(rid)
        if got != expected:
            mismatches.append(f"fresh get {rid}: {response}, the service has {expected}")
    await fresh.close()

    for c in clients:
        await c.protocol.close()
    try:
        # Connections go at once, cached resources after the unsubscribe delay.
        await eventually(lambda: not gateway.context.conns and not gateway.cache.names, SETTLE_BOUND)
    except AssertionError:
        pass  # what is left is reported below
    objects_after = live_gateway_objects()

    print(f"soak: ran {ran:.1f} s with {CLIENTS} clients, {sum(len(c.views) for c in clients)} connections")
    print(f"soak: operations {dict(stats.operations)} ({sum(stats.operations.values())} in all)")
    print(f"soak: events emitted {dict(stats.emitted)} ({sum(stats.emitted.values())} in all, "
          f"{sum(stats.emitted.values()) / ran:.0f}/s); gets answered between two events {stats.raced_gets}")
    print(f"soak: events delivered {dict(stats.delivered)} ({sum(stats.delivered.values())} in all, "
          f"{sum(stats.delivered.values()) / ran:.0f}/s); resources sent {stats.resources_sent}; "
          f"held at the end {held}")
    print(f"soak: RSS at warm-up {rss_warm / 1024:.1f} MiB, at the end {rss_end / 1024:.1f} MiB "
          f"(+{(rss_end - rss_warm) / 1024:.1f} MiB); every tenth of the run "
          f"{' '.join(f'{kb / 1024:.1f}' for kb in rss_series)} MiB")
    print(f"soak: Python memory blocks allocated every tenth of the run "
          f"{' '.join(f'{blocks / 1000:.0f}k' for blocks in blocks_series)}")
    print(f"soak: live gateway objects before {baseline}")
    print(f"soak:   at warm-up {objects_warm}")
    print(f"soak:   at the end {objects_end}")
    print(f"soak:   after close and eviction {objects_after}")
    print(f"soak: violations {stats.violations}, mismatches at the end {len(mismatches)}")

    violations = [text for c in clients for v in c.views for text in v.violations] + fresh_view.violations
    assert not violations, f"{stats.violations} violations (seed {seed}), first ones:\n" + "\n".join(violations[:40])
    assert not mismatches, f"{len(mismatches)} mismatches (seed {seed}):\n" + "\n".join(mismatches[:40])
    # Not more than before: earlier tests' gateways may still hold some when the soak starts.
    left = {name: count for name, count in objects_after.items() if count > baseline[name]}
    assert not left, f"gateway objects left: {objects_after}, before: {baseline}"
    # At most one subscription per client and resource, whatever the history.
    assert objects_end["Subscription"] <= CLIENTS * (len(RIDS) + len(RARE_MODELS)), objects_end
    assert rss_end - rss_warm < RSS_GROWTH_BOUND_KB, f"RSS grew from {rss_warm} kB to {rss_end} kB"


# Sized for the long run; every wait inside is bounded on its own.
@pytest.mark.timeout(LONG_DURATION + 300)
@pytest_twisted.ensureDeferred
async def test_soak(gateway, fake_service, long_run):
    duration = LONG_DURATION if long_run else float(os.environ.get("SOAK_SECONDS") or SOAK_DURATION)
    await soak(gateway, fake_service, duration)
