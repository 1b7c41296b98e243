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

import pytest_twisted

from tests.rig.resources import CUSTOM_PAYLOADS
from tests.rig.resclient import spawn_node

MODEL = "resclient.model"
COLLECTION = "resclient.list"
CHILD = "resclient.child"
CHILD2 = "resclient.child2"
ITEM = "resclient.item.1"


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
    node = spawn_node(gateway.ws_url, MODEL, COLLECTION)
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

        final = await node.exit_cleanly()
        assert final == {"model": state.model(), "collection": state.collection()}
        assert final["model"]["count"] == 42
    finally:
        await node.stop()


@pytest_twisted.ensureDeferred
async def test_resclient_gets_custom_event_payloads_as_sent(gateway, fake_service):
    # ResClient hands a custom event's data member to the listener as is, so
    # a dropped member (undefined) would differ from null.
    ServiceState(fake_service)
    node = spawn_node(gateway.ws_url, MODEL, COLLECTION)
    try:
        await node.expect("initial")
        await node.expect("ready")
        for rid in (MODEL, COLLECTION):
            for payload, data in CUSTOM_PAYLOADS:
                fake_service.publish(f"event.{rid}.myEvent", payload)
                line = await node.expect("custom")
                assert line == {"custom": "myEvent", "rid": rid, "defined": True, "data": json.loads(data)}, payload
        await node.exit_cleanly()
    finally:
        await node.stop()
