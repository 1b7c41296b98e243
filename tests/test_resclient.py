"""The official JavaScript client, ResClient (npm ``resclient``), against the gateway.

Node runs ``tests/resclient/scenario.mjs``: ResClient gets a model and a
collection, listens for their events and calls a method, printing one JSON
line per observation. The test plays the service (``fake_service.on``
handlers answering from a dict of the service's truth), publishes events
once ResClient says it is listening, and checks what ResClient made of
them: its local objects must end up as the service's state.

Node and the packages come from ``scripts/setup`` (``npm ci`` in
tests/resclient); without them this test fails, it does not skip.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, error, protocol

from tests.rig.aio import within
from tests.test_codec_events import CUSTOM_PAYLOADS

SCENARIO_DIR = Path(__file__).parent / "resclient"
SCENARIO = SCENARIO_DIR / "scenario.mjs"
#: Node's own bound on the scenario (ms); the test's waits are shorter.
NODE_TIMEOUT_MS = 25000
WAIT = 10.0

MODEL = "resclient.model"
COLLECTION = "resclient.list"
CHILD = "resclient.child"
CHILD2 = "resclient.child2"
ITEM = "resclient.item.1"


def node_command() -> list[str]:
    """``[node, scenario.mjs]``, or fail the test saying how to get them."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (needed for the ResClient test): "
                    "install Node.js and npm, then run scripts/setup")
    for package in ("resclient", "ws"):
        if not (SCENARIO_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"tests/resclient/node_modules/{package} is missing: run scripts/setup "
                        "(it runs `npm ci` in tests/resclient)")
    return [node, str(SCENARIO)]


class NodeScenario(protocol.ProcessProtocol):
    """The node process: JSON lines out as they come, JSON commands in."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.seen: list[dict] = []
        self._waiting: list[defer.Deferred] = []
        self._buffer = b""
        self.stderr = b""
        self.ended: defer.Deferred = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"error": f"not a JSON line: {raw!r}"}
            self.seen.append(line)
            if self._waiting:
                self._waiting.pop(0).callback(line)
            else:
                self.lines.append(line)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.exit_code = reason.value.exitCode if isinstance(reason.value, error.ProcessTerminated) else 0
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(AssertionError(f"node exited ({self.exit_code}) early; {self.describe()}"))
        self.ended.callback(self.exit_code)

    def describe(self) -> str:
        return f"stdout lines: {self.seen!r}; stderr: {self.stderr.decode(errors='replace')}"

    def next_line(self, timeout: float = WAIT) -> defer.Deferred:
        if self.lines:
            return defer.succeed(self.lines.pop(0))
        if self.ended.called:
            return defer.fail(AssertionError(f"node has exited ({self.exit_code}); {self.describe()}"))
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        return within(d, timeout)

    async def expect(self, key: str, timeout: float = WAIT) -> dict:
        """The next line, which must carry ``key`` (an error line fails the test)."""
        return await self.expect_one_of(key, timeout=timeout)

    async def expect_one_of(self, *keys: str, timeout: float = WAIT) -> dict:
        """The next line, which must carry one of ``keys``."""
        try:
            line = await self.next_line(timeout)
        except defer.TimeoutError:
            raise AssertionError(f"no line from node within {timeout}s (wanted {keys}); {self.describe()}")
        assert "error" not in line, f"node reported an error: {line['error']}; {self.describe()}"
        assert any(key in line for key in keys), f"expected a {keys} line, got {line!r}; {self.describe()}"
        return line

    def send(self, command: dict) -> None:
        self.transport.write(json.dumps(command).encode() + b"\n")

    def kill(self) -> None:
        if not self.ended.called:
            try:
                self.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass


def spawn_node(ws_url: str) -> NodeScenario:
    from twisted.internet import reactor

    command = node_command()
    scenario = NodeScenario()
    args = [*command, ws_url, MODEL, COLLECTION, str(NODE_TIMEOUT_MS)]
    reactor.spawnProcess(scenario, command[0], args, env=dict(os.environ), path=str(SCENARIO_DIR))
    return scenario


class ServiceState:
    """The service's truth, served by ``fake_service.on`` handlers.

    Every mutation updates the dict and publishes the matching event in one
    step, so the order on the service's NATS connection is the truth.
    """

    def __init__(self, fake_service) -> None:
        self.service = fake_service
        self.resources: dict[str, dict] = {
            MODEL: {"model": {"name": "foo", "count": 1, "flag": True, "child": {"rid": CHILD}}},
            CHILD: {"model": {"label": "first child"}},
            CHILD2: {"model": {"label": "second child"}},
            ITEM: {"model": {"title": "one"}},
            COLLECTION: {"collection": ["a", "b"]},
        }
        for rid in self.resources:
            fake_service.on(f"access.{rid}", lambda r: r.respond_result({"get": True, "call": "*"}))
            fake_service.on(f"get.{rid}", self._get)
        fake_service.on(f"call.{MODEL}.increment", self._increment)

    def _get(self, request) -> None:
        rid = request.subject[len("get."):]
        request.respond_result(copy.deepcopy(self.resources[rid]))

    def _increment(self, request) -> None:
        by = request.payload["params"]["by"]
        model = self.resources[MODEL]["model"]
        model["count"] += by
        # The change first, then the response, as go-res does.
        self.service.event(MODEL, "change", {"values": {"count": model["count"]}})
        request.respond_result({"count": model["count"]})

    def change(self, values: dict) -> None:
        model = self.resources[MODEL]["model"]
        for key, value in values.items():
            if value == {"action": "delete"}:
                model.pop(key, None)
            else:
                model[key] = value
        self.service.event(MODEL, "change", {"values": values})

    def add(self, idx: int, value) -> None:
        self.resources[COLLECTION]["collection"].insert(idx, value)
        self.service.event(COLLECTION, "add", {"idx": idx, "value": value})

    def remove(self, idx: int) -> None:
        del self.resources[COLLECTION]["collection"][idx]
        self.service.event(COLLECTION, "remove", {"idx": idx})

    def as_client_sees(self, value):
        """A service value as ``scenario.mjs`` prints ResClient's copy of it."""
        if isinstance(value, dict) and "rid" in value:
            if value.get("soft"):
                return {"softRid": value["rid"]}
            resource = self.resources[value["rid"]]
            if "model" in resource:
                return {"rid": value["rid"],
                        "model": {k: self.as_client_sees(v) for k, v in resource["model"].items()}}
            return {"rid": value["rid"], "collection": [self.as_client_sees(v) for v in resource["collection"]]}
        if isinstance(value, dict) and "data" in value:
            return value["data"]
        return value

    def model(self) -> dict:
        return self.as_client_sees({"rid": MODEL})["model"]

    def collection(self) -> list:
        return self.as_client_sees({"rid": COLLECTION})["collection"]


@pytest_twisted.ensureDeferred
async def test_resclient_sees_data_events_and_call_results(gateway, fake_service):
    state = ServiceState(fake_service)
    node = spawn_node(gateway.ws_url)
    try:
        initial = (await node.expect("initial"))["initial"]
        assert initial == {
            "model": {"name": "foo", "count": 1, "flag": True,
                      "child": {"rid": CHILD, "model": {"label": "first child"}}},
            "collection": ["a", "b"],
        }
        await node.expect("ready")

        # Events, as the service changes its state.
        state.change({"name": "bar", "flag": {"action": "delete"}, "child": {"rid": CHILD2}})
        state.add(1, "x")
        state.add(3, {"rid": ITEM})
        state.remove(0)
        events = [await node.expect("event") for _ in range(4)]
        changes = [e for e in events if e["event"] == "change"]
        collection_events = [e for e in events if e["event"] != "change"]
        assert len(changes) == 1, events
        # ResClient reports the old values of what changed.
        assert changes[0]["changed"] == {
            "name": "foo", "flag": True, "child": {"rid": CHILD, "model": {"label": "first child"}},
        }
        assert [(e["event"], e["idx"], e["item"]) for e in collection_events] == [
            ("add", 1, "x"),
            ("add", 3, {"rid": ITEM, "model": {"title": "one"}}),
            ("remove", 0, "a"),
        ]

        node.send({"cmd": "snapshot"})
        snapshot = (await node.expect("snapshot"))["snapshot"]
        assert snapshot["model"] == {"name": "bar", "count": 1,
                                     "child": {"rid": CHILD2, "model": {"label": "second child"}}}
        assert snapshot["collection"] == ["x", "b", {"rid": ITEM, "model": {"title": "one"}}]
        assert snapshot == {"model": state.model(), "collection": state.collection()}

        # A call whose service sends a change event before its response: by
        # the time ResClient resolves the call it has applied the change.
        node.send({"cmd": "call", "rid": MODEL, "method": "increment", "params": {"by": 41}})
        # (ResClient emits events from a timer, so the change line may come
        # before or after the call line; the model's state is what counts.)
        lines = [await node.expect_one_of("call", "event") for _ in range(2)]
        call_line = next((line for line in lines if "call" in line), None)
        change = next((line for line in lines if "event" in line), None)
        assert call_line is not None and change is not None, lines
        assert call_line["call"] == {"count": 42}
        assert call_line["model"]["count"] == 42
        assert change["event"] == "change" and change["changed"] == {"count": 1}, change

        # The call request carried the params as given.
        call_request = next(r for r in fake_service.requests if r.subject == f"call.{MODEL}.increment")
        assert call_request.payload["params"] == {"by": 41}

        node.send({"cmd": "exit"})
        final = (await node.expect("snapshot"))["snapshot"]
        assert final == {"model": state.model(), "collection": state.collection()}
        assert final["model"]["count"] == 42
        code = await within(node.ended, WAIT)
        assert code == 0, node.describe()
        assert not node.lines, f"unexpected extra output: {node.lines!r}"
    finally:
        node.kill()
        if not node.ended.called:
            await within(node.ended, WAIT)


@pytest_twisted.ensureDeferred
async def test_resclient_gets_custom_event_payloads_as_sent(gateway, fake_service):
    # ResClient hands a custom event's data member to the listener as is, so
    # a dropped member (undefined) would differ from null.
    ServiceState(fake_service)
    node = spawn_node(gateway.ws_url)
    try:
        await node.expect("initial")
        await node.expect("ready")
        for rid in (MODEL, COLLECTION):
            for payload, data in CUSTOM_PAYLOADS:
                fake_service.publish(f"event.{rid}.myEvent", payload)
                line = await node.expect("custom")
                assert line == {"custom": "myEvent", "rid": rid, "defined": True, "data": json.loads(data)}, payload

        node.send({"cmd": "exit"})
        await node.expect("snapshot")
        code = await within(node.ended, WAIT)
        assert code == 0, node.describe()
        assert not node.lines, f"unexpected extra output: {node.lines!r}"
    finally:
        node.kill()
        if not node.ended.called:
            await within(node.ended, WAIT)
