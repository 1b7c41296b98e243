"""Collection add and remove events over WebSocket (Resgate's 08collection_event scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestAddAndRemoveEventOnSubscribedResource | test_add_and_remove_events_reach_subscriber |
| TestAddRemoveEventsOnCachedCollection | test_add_remove_event_updates_cached_collection |
| TestCollectionEvent_AddEventWithResourceReference_IncludesResource | test_add_event_with_reference_includes_resource |
| TestCollectionEvent_SequentialAddRemoveEventsWithResourceReference_ExpectedEvent | test_sequential_add_remove_of_reference |

All ported. Upstream's TestAddRemoveEventsOnCachedCollection loops over
"same client" but only ever runs with the same client; so does the port.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.rig.resources import (
    client_data,
    connect_client,
    event,
    get_response,
    resubscribe_from_cache,
    subscribe_to,
)


@pytest_twisted.ensureDeferred
async def test_add_and_remove_events_reach_subscriber(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.collection")

    fake_service.event("test.collection", "add", {"idx": 3, "value": "bar"})
    assert await client.next_message() == event("test.collection.add", {"idx": 3, "value": "bar"})

    fake_service.event("test.collection", "remove", {"idx": 2})
    assert await client.next_message() == event("test.collection.remove", {"idx": 2})


DATA = ["data", 12, {"data": {"foo": ["bar"]}}, {"data": [{"foo": "bar"}]}]

# (rid, event name, payload, client form of the collection after, event the client gets if not the payload)
CACHED_COLLECTION_CASES = [
    ("test.collection", "add", {"idx": 0, "value": "bar"}, ["bar", "foo", 42, True, None], None),
    ("test.collection", "add", {"idx": 1, "value": "bar"}, ["foo", "bar", 42, True, None], None),
    ("test.collection", "add", {"idx": 4, "value": "bar"}, ["foo", 42, True, None, "bar"], None),
    ("test.collection", "add", {"idx": 0, "value": {"rid": "test.collection.soft", "soft": True}},
     [{"rid": "test.collection.soft", "soft": True}, "foo", 42, True, None], None),
    ("test.collection", "add", {"idx": 0, "value": {"data": {"foo": ["bar"]}}},
     [{"data": {"foo": ["bar"]}}, "foo", 42, True, None], None),
    # A primitive data value is sent as the plain value.
    ("test.collection", "add", {"idx": 0, "value": {"data": 12}}, [12, "foo", 42, True, None],
     {"idx": 0, "value": 12}),
    ("test.collection", "remove", {"idx": 0}, [42, True, None], None),
    ("test.collection", "remove", {"idx": 1}, ["foo", True, None], None),
    ("test.collection", "remove", {"idx": 3}, ["foo", 42, True], None),
    ("test.collection.soft", "remove", {"idx": 1}, ["soft"], None),
    ("test.collection.data", "remove", {"idx": 1}, [DATA[0], DATA[2], DATA[3]], None),
    ("test.collection.data", "remove", {"idx": 2}, [DATA[0], DATA[1], DATA[3]], None),
    ("test.collection.data", "remove", {"idx": 3}, [DATA[0], DATA[1], DATA[2]], None),
]


@pytest.mark.parametrize("rid, name, payload, expected_collection, expected_event", CACHED_COLLECTION_CASES,
                         ids=[f"case{i:02d}" for i in range(1, len(CACHED_COLLECTION_CASES) + 1)])
@pytest_twisted.ensureDeferred
async def test_add_remove_event_updates_cached_collection(gateway, fake_service, rid, name, payload,
                                                          expected_collection, expected_event):
    """The event is applied to the cached collection: subscribing again after
    an unsubscribe gets the updated collection after only an access request."""
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)

    fake_service.event(rid, name, payload)
    assert await client.next_message() == event(f"{rid}.{name}", expected_event or payload)

    assert await resubscribe_from_cache(client, fake_service, rid) == {"collections": {rid: expected_collection}}
    fake_service.assert_no_request()


@pytest_twisted.ensureDeferred
async def test_add_event_with_reference_includes_resource(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.collection")

    fake_service.event("test.collection", "add", {"idx": 3, "value": {"rid": "test.model"}})
    get = (await fake_service.take("get.test.model"))["get.test.model"]
    get.respond(get_response("test.model"))

    assert await client.next_message() == event("test.collection.add", {
        "idx": 3,
        "value": {"rid": "test.model"},
        "models": {"test.model": client_data("test.model")},
    })


# Steps: ("add", idx) or ("remove", idx), each a reference to test.model.
SEQUENCES = [
    [("add", 0)],
    [("add", 0), ("remove", 0)],
    [("add", 0), ("remove", 0), ("add", 0)],
    [("add", 0), ("add", 0)],
    [("add", 0), ("add", 1)],
    [("add", 0), ("add", 1), ("remove", 0), ("remove", 0)],
    [("add", 0), ("add", 1), ("remove", 1), ("remove", 0), ("add", 0)],
]


@pytest.mark.parametrize("steps", SEQUENCES, ids=[f"case{i}" for i in range(1, len(SEQUENCES) + 1)])
@pytest_twisted.ensureDeferred
async def test_sequential_add_remove_of_reference(gateway, fake_service, steps):
    """An add event carries the referenced model only while the client holds no
    other reference to it; the model is fetched from the service only once."""
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.collection.empty")

    references = 0
    fetched = False
    for action, idx in steps:
        if action == "add":
            fake_service.event("test.collection.empty", "add", {"idx": idx, "value": {"rid": "test.model"}})
            if not fetched:
                get = (await fake_service.take("get.test.model"))["get.test.model"]
                get.respond(get_response("test.model"))
                fetched = True
            expected = {"idx": idx, "value": {"rid": "test.model"}}
            if references == 0:
                expected["models"] = {"test.model": client_data("test.model")}
            assert await client.next_message() == event("test.collection.empty.add", expected)
            references += 1
        else:
            fake_service.event("test.collection.empty", "remove", {"idx": idx})
            assert await client.next_message() == event("test.collection.empty.remove", {"idx": idx})
            references -= 1
    fake_service.assert_no_request()
