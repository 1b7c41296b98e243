"""The invariants 1-3 of docs/design.md over real WebSockets, on the memory bus and on a real nats-server.

Each scenario fails without the property it names: the change event must
reach the client before the call result that caused it (1), events racing a
pending get are neither applied twice nor lost (2), and all connections
share one cached copy (3). And the performance design's first rule: an
event broadcast to many clients is encoded once.
"""

import pytest_twisted

from resgate import subscription
from tests.rig.aio import sleep
from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.ws import connect_ws

pytestmark = OVER_BOTH_BUSES

MODEL = {"string": "foo", "int": 42}


async def subscribed_client(gateway, fake_service, rid="test.model", model=MODEL):
    client = await connect_ws(gateway.ws_url)
    await client.request("version", {"protocol": "1.2.3"})
    pending = client.request(f"subscribe.{rid}")
    requests = await fake_service.take(f"access.{rid}", f"get.{rid}")
    requests[f"access.{rid}"].respond_result({"get": True, "call": "*"})
    requests[f"get.{rid}"].respond_result({"model": model})
    response = await pending
    assert response["result"] == {"models": {rid: model}}
    return client


@pytest_twisted.ensureDeferred
async def test_change_event_reaches_client_before_the_call_result(gateway, fake_service):
    client = await subscribed_client(gateway, fake_service)
    pending = client.request("call.test.model.set", {"int": 43})
    call = (await fake_service.take("call.test.model.set"))["call.test.model.set"]
    # The service sends the change event, then the response, as go-res does.
    fake_service.event("test.model", "change", {"values": {"int": 43}})
    call.respond_result(None)
    await pending
    # Everything arrives on one socket: the event must already be there.
    assert client.messages[-2] == {"event": "test.model.change", "data": {"values": {"int": 43}}}
    assert client.messages[-1] == {"id": 3, "result": {"payload": None}}


@pytest_twisted.ensureDeferred
async def test_events_before_the_get_response_are_not_applied_again(gateway, fake_service):
    client = await connect_ws(gateway.ws_url)
    pending = client.request("subscribe.test.collection")
    requests = await fake_service.take("access.test.collection", "get.test.collection")
    requests["access.test.collection"].respond_result({"get": True})
    # This add happened before the service answered the get: the answer includes it,
    # so applying it as well would add "new" twice.
    fake_service.event("test.collection", "add", {"idx": 0, "value": "new"})
    await fake_service.flush()
    requests["get.test.collection"].respond_result({"collection": ["new", "old"]})
    response = await pending
    assert response["result"] == {"collections": {"test.collection": ["new", "old"]}}
    # An add after the response is applied to the cached copy and reaches the client once.
    fake_service.event("test.collection", "add", {"idx": 2, "value": "last"})
    assert await client.next_message() == {
        "event": "test.collection.add", "data": {"idx": 2, "value": "last"}
    }
    await sleep(0.1)
    assert client.inbox == []
    # A new client sees the cache as the service does: each add applied exactly once.
    other = await connect_ws(gateway.ws_url)
    pending = other.request("get.test.collection")
    (await fake_service.take("access.test.collection"))["access.test.collection"].respond_result({"get": True})
    assert (await pending)["result"] == {"collections": {"test.collection": ["new", "old", "last"]}}


@pytest_twisted.ensureDeferred
async def test_all_connections_share_one_cached_copy(gateway, fake_service):
    first = await subscribed_client(gateway, fake_service)
    second = await connect_ws(gateway.ws_url)
    pending = second.request("subscribe.test.model")
    # Only access is asked again: the resource comes from the cache.
    access = (await fake_service.take("access.test.model"))["access.test.model"]
    access.respond_result({"get": True})
    assert (await pending)["result"] == {"models": {"test.model": MODEL}}

    fake_service.event("test.model", "change", {"values": {"int": 7}})
    expected = {"event": "test.model.change", "data": {"values": {"int": 7}}}
    assert await first.next_message() == expected
    assert await second.next_message() == expected

    # A third connection gets the cached copy with the change applied.
    third = await connect_ws(gateway.ws_url)
    pending = third.request("get.test.model")
    (await fake_service.take("access.test.model"))["access.test.model"].respond_result({"get": True})
    assert (await pending)["result"] == {"models": {"test.model": {"string": "foo", "int": 7}}}
    await sleep(0.1)
    fake_service.assert_no_request()
    assert sum(1 for r in fake_service.requests if r.subject == "get.test.model") == 1


@pytest_twisted.ensureDeferred
async def test_an_event_is_encoded_once_for_all_its_subscribers(gateway, fake_service, monkeypatch):
    fake_service.on("access.test.model", lambda request: request.respond_result({"get": True}))
    fake_service.on("get.test.model", lambda request: request.respond_result({"model": MODEL}))
    clients = [await connect_ws(gateway.ws_url) for _ in range(3)]
    for client in clients:
        assert (await client.request("subscribe.test.model"))["result"] == {"models": {"test.model": MODEL}}
    encoded = []
    real_encode = subscription.encode_event
    monkeypatch.setattr(subscription, "encode_event", lambda *args: encoded.append(args) or real_encode(*args))
    fake_service.event("test.model", "change", {"values": {"int": 8}})
    for client in clients:
        assert await client.next_message() == {"event": "test.model.change", "data": {"values": {"int": 8}}}
    assert len(encoded) == 1
