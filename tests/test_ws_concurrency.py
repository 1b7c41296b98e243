"""Many WebSocket clients on the same resources while the service changes them.

100 clients subscribe to, and unsubscribe from, a handful of models and a
collection that reference each other, while the service mutates its state
and publishes the matching change/add/remove events. Each client keeps a
local copy of what it holds and applies what it receives exactly as a RES
client (ResClient) does:

* a response or event carries the resources the client did not hold yet
  (``models``/``collections``); they join its copy;
* ``change`` sets values (``{"action": "delete"}`` removes a key), ``add``
  inserts at ``idx``, ``remove`` deletes at ``idx``;
* the client holds what it subscribed to directly and everything reachable
  from there through (non-soft) references; anything else it drops, and a
  resource it dropped is sent again in full when it is referenced again.

Protocol violations are recorded as they happen: an event for a resource
the client does not hold, a reference to a resource it holds no copy of, a
resource sent again while the client still holds it, an index out of range,
an error. After the service stops and every client has made a round trip
through the service (the settle point), each client's copy must equal the
service's state, for exactly the resources it should hold.

The service is played by ``fake_service.on`` handlers that answer from a dict
of the service's truth; every mutation updates the dict and publishes its
event in the same step, so the order on the service's NATS connection is
the truth, as it is for a real service. Timing varies from run to run; the
random choices are seeded and the outcome does not depend on timing.

The scenario runs on three reference graphs (``GRAPHS``): a tree, a graph
with cycles and shared resources, and the same graph with references that
move. The last two find what the minimal scenarios at the end of this file
show on their own: which resources the gateway believes a client holds
drifts from what the client holds once a resource is reachable along more
than one path. Upstream Resgate 1.8.0 does the same.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.rig.aio import eventually, sleep, within
from tests.rig.ws import connect_ws

CLIENTS = 100
ACTIONS_PER_CLIENT = 12
SEED = 20240611
REQUEST_TIMEOUT = 10.0

MODELS = [f"conc.m.{i}" for i in range(5)]
COLLECTION = "conc.list"
RIDS = [*MODELS, COLLECTION]
SETTLE_SUBJECT = "auth.conc.settle"


def ref(rid: str) -> dict:
    return {"rid": rid}


def references(value: Any) -> list[str]:
    """The resources a resource value holds (non-soft references)."""
    if isinstance(value, dict) and "rid" in value and not value.get("soft"):
        return [value["rid"]]
    return []


def resource_refs(data: Any) -> list[str]:
    values = data.values() if isinstance(data, dict) else data
    return [rid for v in values for rid in references(v)]


def reachable(roots, resources: dict[str, Any]) -> set[str]:
    """Every resource reachable from ``roots`` through references."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        rid = stack.pop()
        if rid in seen:
            continue
        seen.add(rid)
        data = resources.get(rid)
        if data is not None:
            stack.extend(resource_refs(data))
    return seen


#: The service's starting state, by reference graph:
#: "tree"     references that never change, each resource referenced at most once;
#: "shared"   references that never change, with cycles and resources referenced
#:            from several places (m.0 -> m.1 -> m.2 -> m.0, m.1 -> list -> m.0, m.4 -> m.4);
#: "changing" the same start, and mutations also move references (a model's
#:            ``next``/``extra``, reference items added to and removed from the list).
GRAPHS: dict[str, dict[str, Any]] = {
    "tree": {
        "conc.m.0": {"n": 0, "s": "zero", "next": ref("conc.m.1")},
        "conc.m.1": {"n": 0, "s": "one", "next": None},
        "conc.m.2": {"n": 0, "s": "two", "next": ref("conc.m.4")},
        "conc.m.3": {"n": 0, "s": "three", "next": None, "list": ref(COLLECTION)},
        "conc.m.4": {"n": 0, "s": "four", "next": None},
        COLLECTION: ["first", ref("conc.m.0"), 7],
    },
    "shared": {
        "conc.m.0": {"n": 0, "s": "zero", "next": ref("conc.m.1")},
        "conc.m.1": {"n": 0, "s": "one", "next": ref("conc.m.2"), "list": ref(COLLECTION)},
        "conc.m.2": {"n": 0, "s": "two", "next": ref("conc.m.0")},
        "conc.m.3": {"n": 0, "s": "three", "next": None},
        "conc.m.4": {"n": 0, "s": "four", "next": ref("conc.m.4")},
        COLLECTION: ["first", ref("conc.m.3"), 7, ref("conc.m.0")],
    },
}
GRAPHS["changing"] = GRAPHS["shared"]


class Service:
    """The service's truth and the handlers that serve it."""

    def __init__(self, fake_service, seed: int, graph: str) -> None:
        self.fake = fake_service
        self.rng = random.Random(seed)
        self.changing_references = graph == "changing"
        self.state: dict[str, Any] = copy.deepcopy(GRAPHS[graph])
        self.events = 0
        for rid in RIDS:
            fake_service.on(f"access.{rid}", lambda r: r.respond_result({"get": True}))
            fake_service.on(f"get.{rid}", self._get)
        fake_service.on(SETTLE_SUBJECT, lambda r: r.respond_result(None))

    def _get(self, request) -> None:
        rid = request.subject[len("get."):]
        data = copy.deepcopy(self.state[rid])
        request.respond_result({"collection": data} if rid == COLLECTION else {"model": data})

    def _value(self, nullable: bool = True):
        rng = self.rng
        kind = rng.random()
        if kind < 0.45 and self.changing_references:
            return ref(rng.choice(MODELS))
        if kind < 0.55 and nullable:
            return None
        if kind < 0.8:
            return rng.randrange(100)
        return f"v{rng.randrange(1000)}"

    def mutate(self) -> None:
        """One change to the truth, published as its event in the same step."""
        rng = self.rng
        if rng.random() < 0.6:
            rid = rng.choice(MODELS)
            model = self.state[rid]
            keys = ["n", "s", "extra"] + (["next", "next"] if self.changing_references else [])
            values: dict[str, Any] = {}
            for _ in range(rng.randint(1, 2)):
                key = rng.choice(keys)
                if key == "n":
                    values["n"] = model["n"] + 1
                elif key == "s":
                    values["s"] = f"s{rng.randrange(1000)}"
                elif key == "next":
                    values["next"] = self._value()
                elif "extra" in model and "extra" not in values:
                    values["extra"] = {"action": "delete"}
                else:
                    values["extra"] = self._value()
            for key, value in values.items():
                if value == {"action": "delete"}:
                    del model[key]
                else:
                    model[key] = value
            self.fake.event(rid, "change", {"values": values})
        else:
            items = self.state[COLLECTION]
            removable = [i for i, v in enumerate(items) if self.changing_references or not references(v)]
            if removable and (len(items) >= 8 or rng.random() < 0.4):
                idx = rng.choice(removable)
                del items[idx]
                self.fake.event(COLLECTION, "remove", {"idx": idx})
            else:
                idx = rng.randint(0, len(items))
                value = self._value(nullable=False)
                items.insert(idx, value)
                self.fake.event(COLLECTION, "add", {"idx": idx, "value": value})
        self.events += 1


class Mirror:
    """One client's copy of what it holds, built from its messages in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.direct: set[str] = set()
        self.held: dict[str, Any] = {}
        self.requests: dict[int, tuple[str, str]] = {}
        self.cursor = 0
        self.violations: list[str] = []
        self.applied = 0
        self.fresh_copies = 0

    def violation(self, text: str) -> None:
        if not self.violations:
            self.first_violation_at = self.cursor
            self.before_violation = (sorted(self.direct), self._before, copy.deepcopy(self.held))
        self.violations.append(f"{self.name}: {text}")

    def trace(self, messages: list, before: int = 12) -> str:
        """The messages that led to the first violation, for the failure report."""
        end = getattr(self, "first_violation_at", self.cursor)
        lines = [f"{self.name}, messages {max(0, end - before)}..{end - 1} (last one violates):"]
        lines += [f"  {m!r}" for m in messages[max(0, end - before):end]]
        if hasattr(self, "before_violation"):
            direct, before, held = self.before_violation
            lines.append(f"  direct subscriptions: {direct}; held before the last message: {before}; "
                         "copies when it was found:")
            lines += [f"    {rid}: {value!r}" for rid, value in sorted(held.items())]
        return "\n".join(lines)

    def sent(self, d: defer.Deferred, action: str, rid: str) -> defer.Deferred:
        """Remember what the response to ``d`` answers (it fires as it arrives)."""
        def note(message):
            self.requests[message.get("id")] = (action, rid)
            return message
        return d.addCallback(note)

    def pump(self, messages: list) -> None:
        while self.cursor < len(messages):
            message = messages[self.cursor]
            self.cursor += 1
            self._before = sorted(self.held)
            self._apply(message)

    def _apply(self, message: Any) -> None:
        if not isinstance(message, dict):
            self.violation(f"not an object: {message!r}")
        elif "event" in message:
            self._event(message["event"], message.get("data"))
        elif "id" in message:
            self._response(message)
        else:
            self.violation(f"unknown message {message!r}")

    def _add_resources(self, data: dict, context: str) -> None:
        if data.get("errors"):
            self.violation(f"{context}: errors {data['errors']!r}")
        for group in ("models", "collections"):
            for rid, value in (data.get(group) or {}).items():
                if rid in self.held:
                    self.violation(f"{context}: {rid} sent again while held")
                self.held[rid] = copy.deepcopy(value)
                self.fresh_copies += 1

    def _response(self, message: dict) -> None:
        action, rid = self.requests.pop(message["id"], (None, None))
        if "error" in message:
            self.violation(f"{action} {rid}: error {message['error']!r}")
            return
        if action == "subscribe":
            self._add_resources(message.get("result") or {}, f"subscribe {rid}")
            self.direct.add(rid)
        elif action == "unsubscribe":
            self.direct.discard(rid)
        self._collect(f"after {action} {rid}")

    def _event(self, name: str, data: Any) -> None:
        rid, _, event = name.rpartition(".")
        if rid not in self.held:
            self.violation(f"event {name} for a resource not held: {data!r}")
            return
        data = data or {}
        value = self.held[rid]
        self.applied += 1
        if event == "change" and isinstance(value, dict):
            self._add_resources(data, f"event {name}")
            for key, new in (data.get("values") or {}).items():
                if new == {"action": "delete"}:
                    value.pop(key, None)
                else:
                    value[key] = new
        elif event == "add" and isinstance(value, list):
            self._add_resources(data, f"event {name}")
            idx = data.get("idx")
            if not isinstance(idx, int) or not 0 <= idx <= len(value):
                self.violation(f"event {name}: idx {idx} out of range for {value!r}")
                return
            value.insert(idx, data.get("value"))
        elif event == "remove" and isinstance(value, list):
            idx = data.get("idx")
            if not isinstance(idx, int) or not 0 <= idx < len(value):
                self.violation(f"event {name}: idx {idx} out of range for {value!r}")
                return
            del value[idx]
        else:
            self.violation(f"unexpected event {name}: {data!r}")
            return
        self._collect(f"after event {name}")

    def _collect(self, context: str) -> None:
        """Drop what is no longer reachable; every reachable resource must be held."""
        keep = reachable(self.direct, self.held)
        missing = keep - set(self.held)
        if missing:
            self.violation(f"{context}: references {sorted(missing)} without their data")
        for rid in set(self.held) - keep:
            del self.held[rid]

    def differences(self, state: dict[str, Any]) -> list[str]:
        expected = reachable(self.direct, state)
        problems = []
        if set(self.held) != expected:
            problems.append(f"{self.name} holds {sorted(self.held)}, should hold {sorted(expected)}")
        for rid in sorted(expected & set(self.held)):
            if self.held[rid] != state[rid]:
                problems.append(f"{self.name} {rid}: {self.held[rid]!r} != service {state[rid]!r}")
        return problems


async def run_client(gateway, index: int, stats: dict) -> tuple[Any, Mirror]:
    rng = random.Random(SEED * 1000 + index)
    mirror = Mirror(f"client {index}")
    client = await connect_ws(gateway.ws_url, timeout=REQUEST_TIMEOUT)
    response = await client.request("version", {"protocol": "1.2.3"}, timeout=REQUEST_TIMEOUT)
    assert "result" in response, response
    for _ in range(ACTIONS_PER_CLIENT):
        await sleep(rng.uniform(0, 0.03))
        mirror.pump(client.messages)
        rid = rng.choice(RIDS)
        if rid in mirror.direct:
            action = "unsubscribe"
        else:
            action = "subscribe"
        stats[action] += 1
        if action == "subscribe" and rid in mirror.held:
            stats["subscribe_held"] += 1
        await mirror.sent(client.request(f"{action}.{rid}", timeout=REQUEST_TIMEOUT), action, rid)
        mirror.pump(client.messages)
    return client, mirror


async def mutate_until(service: Service, done: defer.Deferred, seed: int) -> None:
    rng = random.Random(seed)
    while not done.called or service.events < 300:
        service.mutate()
        await sleep(rng.uniform(0.0005, 0.004))


@pytest.mark.parametrize("graph", ["tree", "shared", "changing"])
@pytest_twisted.ensureDeferred
async def test_clients_copies_match_the_service_under_concurrent_changes(gateway_factory, fake_service, graph):
    # A short unsubscribe delay, so resources leave the cache and are fetched again.
    gateway = await gateway_factory(unsubscribe_delay=0.05)
    service = Service(fake_service, SEED, graph)
    stats: dict[str, Any] = {"subscribe": 0, "unsubscribe": 0, "subscribe_held": 0}

    clients_done: defer.Deferred = defer.Deferred()
    mutations = defer.ensureDeferred(mutate_until(service, clients_done, SEED + 1))
    runs = [defer.ensureDeferred(run_client(gateway, i, stats)) for i in range(CLIENTS)]
    results = await within(defer.gatherResults(runs, consumeErrors=True), 25)
    clients_done.callback(None)
    await within(mutations, 5)
    await within(fake_service.flush(), 5)

    # Settle: a round trip through the service per client. Its reply reaches
    # the gateway after every event the service published before it.
    async def settle() -> None:
        replies = [client.request(SETTLE_SUBJECT, timeout=REQUEST_TIMEOUT) for client, _ in results]
        await within(defer.gatherResults(replies, consumeErrors=True), 15)
        for client, mirror in results:
            mirror.pump(client.messages)

    def all_match() -> bool:
        for client, mirror in results:
            mirror.pump(client.messages)
        return not any(mirror.differences(service.state) for _, mirror in results)

    await settle()
    try:
        # An event whose new references the gateway must fetch first may still
        # be on its way; it cannot take long.
        await eventually(all_match, 5)
    except AssertionError:
        pass
    await settle()

    violations = [v for _, mirror in results for v in mirror.violations]
    first = next(((c, m) for c, m in results if m.violations), None)
    assert not violations, "\n".join(violations[:10] + [first[1].trace(first[0].messages)])
    differences = [d for _, mirror in results for d in mirror.differences(service.state)]
    assert not differences, "\n".join(differences[:20])

    # The scenario did what it is about.
    holding = sum(1 for _, mirror in results if mirror.direct)
    assert service.events >= 300
    assert stats["subscribe"] >= CLIENTS and stats["unsubscribe"] >= CLIENTS // 2, stats
    assert sum(mirror.applied for _, mirror in results) > 1000
    assert holding >= CLIENTS // 4

    await within(defer.gatherResults([client.close(REQUEST_TIMEOUT) for client, _ in results]), 15)


# ---------------------------------------------------------------------------
# Minimal reproductions of what the "shared" and "changing" scenarios find.
# Upstream Resgate 1.8.0 answers these the same way (its wsConnGC.go and
# subscription.go work the same); they are still wrong for a RES client.


def serve_state(fake_service, state: dict[str, Any]) -> None:
    """Grant access and answer gets from ``state`` (rid -> model dict or collection list)."""
    def get(request) -> None:
        data = copy.deepcopy(state[request.subject[len("get."):]])
        request.respond_result({"collection": data} if isinstance(data, list) else {"model": data})

    for rid in state:
        fake_service.on(f"access.{rid}", lambda r: r.respond_result({"get": True}))
        fake_service.on(f"get.{rid}", get)
    fake_service.on("auth.gc.sync", lambda r: r.respond_result(None))


async def versioned_client(gateway):
    client = await connect_ws(gateway.ws_url)
    await client.request("version", {"protocol": "1.2.3"})
    return client


@pytest_twisted.ensureDeferred
async def test_resource_still_referenced_by_a_held_resource_is_not_sent_again(gateway, fake_service):
    """gc.s -> gc.q <-> gc.p: unsubscribing gc.p directly leaves it held through gc.s.

    The gateway's collection of released subscriptions marks gc.p (and any
    resource reached only back through a kept one, cycle or not) as no longer
    sent, so it sends it again, with the data it had when it was loaded.
    """
    state = {
        "gc.s": {"q": ref("gc.q")},
        "gc.q": {"p": ref("gc.p")},
        "gc.p": {"q": ref("gc.q"), "n": 1},
    }
    serve_state(fake_service, state)
    client = await versioned_client(gateway)
    response = await client.request("subscribe.gc.s")
    assert response["result"] == {"models": state}
    response = await client.request("subscribe.gc.p")
    assert response["result"] == {}
    await client.request("unsubscribe.gc.p")
    # The client still holds gc.p (gc.s -> gc.q -> gc.p), so it gets this event.
    state["gc.p"]["n"] = 2
    fake_service.event("gc.p", "change", {"values": {"n": 2}})
    assert await client.next_message() == {"event": "gc.p.change", "data": {"values": {"n": 2}}}
    # Subscribing to a resource the client holds sends nothing new.
    response = await client.request("subscribe.gc.p")
    assert response["result"] == {}, f"gc.p sent again (and stale: the service has n=2): {response}"


@pytest_twisted.ensureDeferred
async def test_resource_the_client_dropped_gets_no_events_and_comes_back_current(gateway, fake_service):
    """A resource the client dropped, kept by the gateway for a loading reference.

    The client holds gc.a -> gc.b and gc.r. gc.r changes to reference gc.c,
    which references gc.b and gc.d; gc.d's get is held back, so gc.c is loaded
    and not yet sent. Then gc.a drops gc.b: the client no longer holds gc.b.
    A change of gc.b must not be sent to the client (ResClient throws
    "Resource not found in cache" on it), and when gc.r's change arrives it
    must carry gc.b as the service has it now.
    """
    state = {
        "gc.a": {"b": ref("gc.b")},
        "gc.r": {"x": None},
        "gc.b": {"v": 1},
        "gc.c": {"b": ref("gc.b"), "d": ref("gc.d")},
        "gc.d": {"w": 1},
    }
    serve_state(fake_service, {rid: v for rid, v in state.items() if rid != "gc.d"})
    client = await versioned_client(gateway)
    assert (await client.request("subscribe.gc.a"))["result"] == {
        "models": {"gc.a": state["gc.a"], "gc.b": state["gc.b"]}}
    assert (await client.request("subscribe.gc.r"))["result"] == {"models": {"gc.r": state["gc.r"]}}

    state["gc.r"]["x"] = ref("gc.c")
    fake_service.event("gc.r", "change", {"values": {"x": ref("gc.c")}})
    get_d = await fake_service.next_request()
    assert get_d.subject == "get.gc.d"
    state["gc.a"]["b"] = None
    fake_service.event("gc.a", "change", {"values": {"b": None}})
    state["gc.b"]["v"] = 2
    fake_service.event("gc.b", "change", {"values": {"v": 2}})
    await client.request("auth.gc.sync")  # every event above has reached the client
    get_d.respond_result({"model": state["gc.d"]})
    await eventually(lambda: any(m.get("event") == "gc.r.change" for m in client.messages))

    events = [m for m in client.messages if "event" in m]
    assert events == [
        {"event": "gc.a.change", "data": {"values": {"b": None}}},
        {"event": "gc.r.change", "data": {
            "values": {"x": ref("gc.c")},
            "models": {"gc.c": state["gc.c"], "gc.b": {"v": 2}, "gc.d": state["gc.d"]},
        }},
    ]
