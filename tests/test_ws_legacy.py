"""Clients on RES protocol 1.2.0 (Resgate's 40legacy_1.2.0 scenarios).

Before protocol 1.2.1 clients knew neither soft references nor data values:
the gateway sends them a soft reference as its resource ID string and a data
value holding an object or array as ``"[Data]"``, in resources and in the
events it passes on, while the cache keeps the service's values.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestLegacy120ChangeEvent_OnCachedModel | test_change_event_on_cached_model (table: 4 rows) |
| TestLegacy120ChangeEvent_WithSoftReferenceReplacedByResourceReference_SubscribesReference | test_soft_reference_replaced_by_reference_subscribes_it |
| TestLegacy120AddRemoveEvents_OnCachedCollection | test_add_remove_event_on_cached_collection (table: 2 rows) |

All ported. The two table tests of upstream loop over "the same client
subscribes again" and "another client subscribes", but their loop
(``for sameClient := true; sameClient; sameClient = false``) stops after the
first round, so only the same-client round has ever run upstream; that is
the round ported here (the other one, with a latest-protocol second client,
would contradict the rows' legacy expectations).
"""

import pytest
import pytest_twisted

from tests.rig.resources import (
    assert_no_event,
    client_data,
    connect_client,
    expect_custom_event,
    get_result,
    resubscribe_from_cache,
)

LEGACY_VERSION = "1.2.0"


async def subscribe_legacy(client, service, rid: str) -> dict:
    pending = client.request(f"subscribe.{rid}")
    reqs = await service.take(f"access.{rid}", f"get.{rid}")
    reqs[f"access.{rid}"].respond_result({"get": True})
    reqs[f"get.{rid}"].respond_result(get_result(rid))
    response = await pending
    assert "result" in response, response
    return response["result"]


# (rid, change event, event the legacy client gets (None: none), model it gets afterwards)
CHANGE_EVENTS = [
    ("test.model", {"values": {"soft": {"rid": "test.model.soft", "soft": True}}},
     {"values": {"soft": "test.model.soft"}},
     {"string": "foo", "int": 42, "bool": True, "null": None, "soft": "test.model.soft"}),
    ("test.model.soft", {"values": {"child": None}}, {"values": {"child": None}},
     {"name": "soft", "child": None}),
    ("test.model.soft", {"values": {"child": {"action": "delete"}}}, {"values": {"child": {"action": "delete"}}},
     {"name": "soft"}),
    # The same soft reference again changes nothing.
    ("test.model.soft", {"values": {"child": {"rid": "test.model", "soft": True}}}, None,
     {"name": "soft", "child": "test.model"}),
]


@pytest.mark.parametrize("rid, event, expected_event, expected_model", CHANGE_EVENTS,
                         ids=["add-soft-reference", "soft-reference-to-null", "soft-reference-deleted",
                              "soft-reference-unchanged"])
@pytest_twisted.ensureDeferred
async def test_change_event_on_cached_model(gateway, fake_service, logged_errors, rid, event, expected_event,
                                            expected_model):
    client = await connect_client(gateway, version=LEGACY_VERSION)
    assert await subscribe_legacy(client, fake_service, rid) == {"models": {rid: client_data(rid, legacy=True)}}

    fake_service.event(rid, "change", event)
    if expected_event is None:
        await assert_no_event(client, fake_service, rid)
    else:
        assert await client.next_message() == {"event": f"{rid}.change", "data": expected_event}

    assert await resubscribe_from_cache(client, fake_service, rid) == {"models": {rid: expected_model}}
    logged_errors.assert_logged(0)


@pytest_twisted.ensureDeferred
async def test_soft_reference_replaced_by_reference_subscribes_it(gateway, fake_service):
    client = await connect_client(gateway, version=LEGACY_VERSION)
    await subscribe_legacy(client, fake_service, "test.model.soft")

    values = {"child": {"rid": "test.model", "soft": False}}
    fake_service.event("test.model.soft", "change", {"values": values})
    (await fake_service.take("get.test.model"))["get.test.model"].respond_result(get_result("test.model"))
    assert await client.next_message() == {"event": "test.model.soft.change", "data": {
        "values": values, "models": {"test.model": client_data("test.model", legacy=True)},
    }}

    # The client is now subscribed to the referenced model.
    await expect_custom_event(client, fake_service, "test.model")


# (rid, event name, event payload, what the legacy client gets, collection it gets afterwards)
COLLECTION_EVENTS = [
    ("test.collection", "add", {"idx": 0, "value": {"rid": "test.collection.soft", "soft": True}},
     {"idx": 0, "value": "test.collection.soft"}, ["test.collection.soft", "foo", 42, True, None]),
    ("test.collection.soft", "remove", {"idx": 1}, {"idx": 1}, ["soft"]),
]


@pytest.mark.parametrize("rid, name, payload, expected_event, expected_collection", COLLECTION_EVENTS,
                         ids=["add-soft-reference", "remove-soft-reference"])
@pytest_twisted.ensureDeferred
async def test_add_remove_event_on_cached_collection(gateway, fake_service, rid, name, payload, expected_event,
                                                     expected_collection):
    client = await connect_client(gateway, version=LEGACY_VERSION)
    assert await subscribe_legacy(client, fake_service, rid) == {
        "collections": {rid: client_data(rid, legacy=True)}
    }

    fake_service.event(rid, name, payload)
    assert await client.next_message() == {"event": f"{rid}.{name}", "data": expected_event}

    assert await resubscribe_from_cache(client, fake_service, rid) == {"collections": {rid: expected_collection}}
