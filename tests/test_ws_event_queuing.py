"""Events queued while referenced resources load (Resgate's 18event_queuing scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestEventWhileQueueing | test_event_waits_behind_event_loading_reference |
| TestReferenceEventWhileQueuing | test_queued_event_with_new_reference_loads_in_turn |
| TestCachedReferenceEventWhileQueuing | test_queued_event_with_cached_reference_follows_in_order |
| TestUnqueueEventWithLoadedReferenceResource | test_queues_are_per_resource_and_resources_sent_once |
| (none; docs/design.md, invariant 2) | test_event_after_get_response_follows_subscribe_response |

All ported. Where upstream flushes with an auth round trip to show that no
event came, these tests wait briefly instead. The extra scenario is the
counterpart of 07model_event's "event before the get response is discarded":
an event that arrives after the get response but while the subscribe still
waits for access is neither lost nor applied twice. The subscribe response
shows the resource as the get response had it, and the event follows.

Ordering in these scenarios comes from NATS: the fake service publishes
events and get responses on one connection, so the gateway receives them in
that order (docs/design.md, invariant 1). An event whose value references a resource
not yet sent to the client is held until that resource is loaded, and every
later event of the same resource waits behind it; events of other resources
do not wait.
"""

from __future__ import annotations

import pytest_twisted

from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.resources import (
    assert_quiet,
    client_data,
    connect_client,
    event,
    get_response,
    resource_data,
    subscribe_to,
)

pytestmark = OVER_BOTH_BUSES

MODEL = resource_data("test.model")
MODEL_CLIENT = client_data("test.model")


async def take_one(fake_service, subject: str):
    return (await fake_service.take(subject))[subject]


def answer_with_model(request) -> None:
    """Answer a get request with test.model's data (for any model rid)."""
    request.respond_result({"model": MODEL})


@pytest_twisted.ensureDeferred
async def test_event_waits_behind_event_loading_reference(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.collection")

    fake_service.event("test.collection", "add", {"idx": 1, "value": {"rid": "test.model"}})
    get = await take_one(fake_service, "get.test.model")

    fake_service.event("test.collection", "add", {"idx": 2, "value": "newValue"})
    await assert_quiet(client)

    get.respond(get_response("test.model"))
    assert await client.next_message() == event("test.collection.add", {
        "idx": 1, "value": {"rid": "test.model"}, "models": {"test.model": MODEL_CLIENT}})
    assert await client.next_message() == event("test.collection.add", {"idx": 2, "value": "newValue"})


@pytest_twisted.ensureDeferred
async def test_queued_event_with_new_reference_loads_in_turn(gateway, fake_service):
    """A queued event that needs another resource loads it only when its own
    turn comes, and holds the queue again until that resource is loaded."""
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.collection")

    fake_service.event("test.collection", "add", {"idx": 1, "value": {"rid": "test.model"}})
    get_model = await take_one(fake_service, "get.test.model")

    fake_service.event("test.collection", "add", {"idx": 2, "value": {"rid": "test.model2"}})
    fake_service.event("test.collection", "add", {"idx": 3, "value": "newValue"})

    get_model.respond(get_response("test.model"))
    assert await client.next_message() == event("test.collection.add", {
        "idx": 1, "value": {"rid": "test.model"}, "models": {"test.model": MODEL_CLIENT}})

    get_model2 = await take_one(fake_service, "get.test.model2")
    await assert_quiet(client)

    answer_with_model(get_model2)
    assert await client.next_message() == event("test.collection.add", {
        "idx": 2, "value": {"rid": "test.model2"}, "models": {"test.model2": MODEL_CLIENT}})
    assert await client.next_message() == event("test.collection.add", {"idx": 3, "value": "newValue"})


@pytest_twisted.ensureDeferred
async def test_queued_event_with_cached_reference_follows_in_order(gateway, fake_service):
    """A queued event referencing a resource the gateway still caches (but the
    client no longer holds) needs no get, yet still waits its turn and then
    carries the resource."""
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.collection.parent")

    fake_service.event("test.collection.parent", "remove", {"idx": 1})
    assert await client.next_message() == event("test.collection.parent.remove", {"idx": 1})

    fake_service.event("test.collection.parent", "add", {"idx": 1, "value": {"rid": "test.model"}})
    get = await take_one(fake_service, "get.test.model")

    fake_service.event("test.collection.parent", "add", {"idx": 2, "value": {"rid": "test.collection"}})

    get.respond(get_response("test.model"))
    assert await client.next_message() == event("test.collection.parent.add", {
        "idx": 1, "value": {"rid": "test.model"}, "models": {"test.model": MODEL_CLIENT}})
    assert await client.next_message() == event("test.collection.parent.add", {
        "idx": 2, "value": {"rid": "test.collection"},
        "collections": {"test.collection": client_data("test.collection")}})
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_queues_are_per_resource_and_resources_sent_once(gateway, fake_service):
    """A change on test.model waits for three new references; meanwhile the
    collection's events go out as soon as what they need is loaded, each
    carrying the resources the client does not have yet, and the change event
    then carries only what is still unsent."""
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    await subscribe_to(client, fake_service, "test.collection")

    fake_service.event("test.model", "change", {"values": {
        "a": {"rid": "test.model.a"}, "b": {"rid": "test.model.b"}, "c": {"rid": "test.model.c"}}})
    gets = await fake_service.take("get.test.model.a", "get.test.model.b", "get.test.model.c")
    answer_with_model(gets["get.test.model.a"])

    fake_service.event("test.collection", "add", {"idx": 1, "value": {"rid": "test.model.b"}})
    fake_service.event("test.collection", "add", {"idx": 2, "value": {"rid": "test.model.a"}})
    await assert_quiet(client)

    answer_with_model(gets["get.test.model.b"])
    assert await client.next_message() == event("test.collection.add", {
        "idx": 1, "value": {"rid": "test.model.b"}, "models": {"test.model.b": MODEL_CLIENT}})
    assert await client.next_message() == event("test.collection.add", {
        "idx": 2, "value": {"rid": "test.model.a"}, "models": {"test.model.a": MODEL_CLIENT}})

    answer_with_model(gets["get.test.model.c"])
    assert await client.next_message() == event("test.model.change", {
        "values": {"a": {"rid": "test.model.a"}, "b": {"rid": "test.model.b"},
                   "c": {"rid": "test.model.c"}},
        "models": {"test.model.c": MODEL_CLIENT}})
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_event_after_get_response_follows_subscribe_response(gateway, fake_service):
    client = await connect_client(gateway)

    pending = client.request("subscribe.test.model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    # One service connection: the gateway gets the get response, then the
    # event, then the access response.
    reqs["get.test.model"].respond(get_response("test.model"))
    fake_service.event("test.model", "change", {"values": {"string": "bar"}})
    reqs["access.test.model"].respond_result({"get": True})

    response = await pending
    assert response["result"] == {"models": {"test.model": MODEL_CLIENT}}
    change = event("test.model.change", {"values": {"string": "bar"}})
    assert await client.next_message() == change
    assert client.messages[-2:] == [response, change], "the event must follow the response"
    await assert_quiet(client)
