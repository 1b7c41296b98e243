"""Resource delete events over WebSocket (Resgate's 29delete_event scenarios).

A ``delete`` event tells subscribers the resource is gone: they get the
``delete`` event followed by ``unsubscribe`` with reason ``system.deleted``,
the resource leaves the cache (a later subscribe gets it anew), and events
after the delete are not passed on.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestDeleteEvent_OnModel_SentToClient | test_delete_event_is_sent_with_unsubscribe[model] |
| TestDeleteEvent_OnCollection_SentToClient | test_delete_event_is_sent_with_unsubscribe[collection] |
| TestDeleteEvent_AndCustomEventOnModel_CustomEventNotSentToClient | test_events_after_delete_are_not_sent[model] |
| TestDeleteEvent_AndCustomEventOnCollection_CustomEventNotSentToClient | test_events_after_delete_are_not_sent[collection] |
| TestDeleteEvent_PriorToGetResponse_IsDiscarded | test_delete_event_before_get_response_is_discarded |
| TestDeleteEvent_FollowedBySubscribe_IsNotCached | test_subscribe_after_delete_gets_resource_anew |
| TestDeleteEvent_FollowedByResubscribe_IsNotCached | test_resubscribe_after_delete_gets_resource_anew |
| TestDeleteEvent_OnModelQueuedForEviction_DoesNothing | test_delete_event_on_unsubscribed_resource_sends_nothing[model] |
| TestDeleteEvent_OnCollectionQueuedForEviction_DoesNothing | test_delete_event_on_unsubscribed_resource_sends_nothing[collection] |

All ported. The service's delete event has a ``null`` payload, as in
upstream's scenarios.
"""

import pytest
import pytest_twisted

from tests.rig.resources import (
    UNSUBSCRIBE_REASON_DELETED,
    assert_no_event,
    client_result,
    connect_client,
    expect_custom_event,
    expect_no_custom_event,
    get_result,
    subscribe_to,
)

RESOURCES = ["test.model", "test.collection"]
RESOURCE_IDS = ["model", "collection"]


def delete(service, rid: str) -> None:
    service.publish(f"event.{rid}.delete", b"null")


async def assert_deleted(client, rid: str) -> None:
    """The client gets the delete event (with null data), then unsubscribe for deletion."""
    assert await client.next_message() == {"event": f"{rid}.delete", "data": None}
    assert await client.next_message() == {"event": f"{rid}.unsubscribe", "data": UNSUBSCRIBE_REASON_DELETED}


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_delete_event_is_sent_with_unsubscribe(gateway, fake_service, rid):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)

    delete(fake_service, rid)
    await assert_deleted(client, rid)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_events_after_delete_are_not_sent(gateway, fake_service, rid):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)
    delete(fake_service, rid)
    await assert_deleted(client, rid)

    await expect_no_custom_event(client, fake_service, rid)


@pytest_twisted.ensureDeferred
async def test_delete_event_before_get_response_is_discarded(gateway, fake_service):
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    # The get response comes after the delete, so it already tells the state after it.
    delete(fake_service, "test.model")
    reqs["get.test.model"].respond_result(get_result("test.model"))
    reqs["access.test.model"].respond_result({"get": True})
    assert (await pending)["result"] == client_result("test.model")
    await assert_no_event(client, fake_service, "test.model")

    await expect_custom_event(client, fake_service, "test.model")


@pytest_twisted.ensureDeferred
async def test_subscribe_after_delete_gets_resource_anew(gateway, fake_service):
    first = await connect_client(gateway)
    second = await connect_client(gateway)
    await subscribe_to(first, fake_service, "test.model")
    delete(fake_service, "test.model")
    await assert_deleted(first, "test.model")

    # Not from the cache: access and get again.
    await subscribe_to(second, fake_service, "test.model")
    await expect_custom_event(second, fake_service, "test.model")
    await assert_no_event(first, fake_service, "test.model")


@pytest_twisted.ensureDeferred
async def test_resubscribe_after_delete_gets_resource_anew(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    delete(fake_service, "test.model")
    await assert_deleted(client, "test.model")
    await expect_no_custom_event(client, fake_service, "test.model")

    await subscribe_to(client, fake_service, "test.model")
    await expect_custom_event(client, fake_service, "test.model")


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_delete_event_on_unsubscribed_resource_sends_nothing(gateway, fake_service, rid):
    # The default unsubscribe delay keeps the resource cached, waiting for eviction.
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)
    assert "error" not in await client.request(f"unsubscribe.{rid}")

    delete(fake_service, rid)
    await assert_no_event(client, fake_service, rid)
