"""Client unsubscribe requests over WebSocket (Resgate's 03unsubscribe scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestUnsubscribeModel | test_unsubscribe_stops_events[test.model] |
| TestUnsubscribeWithoutSubscription | test_unsubscribe_without_subscription_is_no_subscription |
| TestUnsubscribeLinkedModel | test_unsubscribe_linked_stops_events[model] |
| TestUnsubscribeOnOverlappingLinkedModel | test_overlapping_linked_resource_stays_subscribed[model] |
| TestUnsubscribeCollection | test_unsubscribe_stops_events[test.collection] |
| TestUnsubscribeLinkedCollection | test_unsubscribe_linked_stops_events[collection] |
| TestUnsubscribeOnOverlappingLinkedCollection | test_overlapping_linked_resource_stays_subscribed[collection] |
| TestUnsubscribe_FollowedByResourceResponse_IncludesResource | test_resource_response_after_unsubscribe_includes_resource |
| TestUnsubscribe_WithCount_UnsubscribesModel | test_unsubscribe_with_count_stops_events |
| TestUnsubscribe_WithInvalidPayload_DoesNotUnsubscribesModel | test_unsubscribe_with_invalid_params_keeps_subscription |
| TestUnsubscribe_Model_UnsubcribesFromCache | test_unsubscribed_model_leaves_cache |
| TestUnsubscribe_LinkedModel_UnsubscribesFromCache | test_unsubscribed_linked_models_leave_cache |

All ported. Upstream's loop over "useCount" in
TestUnsubscribe_FollowedByResourceResponse_IncludesResource only ever runs
its first case; both cases run here. Leaving the cache is observed as the
gateway dropping its ``event.<rid>.*`` subscription on the bus (the
``event_subscriptions`` fixture; this module's nats_server has a monitoring
endpoint), where upstream hooks the cache. Every test runs over the memory
bus and a real nats-server.

test_unsubscribe_before_subscribe_response_still_answers_the_subscribe has
no upstream counterpart (upstream leaves that subscribe unanswered).
"""

import pytest
import pytest_twisted

from tests.rig.aio import WAIT_TIMEOUT, sleep
from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.resources import (
    ERR_NO_SUBSCRIPTION,
    MonitoredNatsServer,
    client_result,
    connect_client,
    get_result,
    expect_custom_event,
    expect_no_custom_event,
    respond_get,
    subscribe_to,
)

pytestmark = OVER_BOTH_BUSES


@pytest.fixture(scope="module")
def nats_server():
    """This module's own nats-server, with monitoring to see the gateway's subscriptions."""
    server = MonitoredNatsServer().start()
    yield server
    server.cleanup()


def assert_unsubscribe_ok(response: dict) -> None:
    # Resgate answers a successful unsubscribe with no result at all.
    assert "error" not in response, response
    assert response.get("result") is None, response


async def wait_until_unsubscribed(event_subscriptions, *rids: str) -> None:
    """Wait (bounded) until the gateway has no event subscription for any of ``rids``."""
    for _ in range(int(WAIT_TIMEOUT / 0.05)):
        if not set(rids) & await event_subscriptions():
            return
        await sleep(0.05)
    raise AssertionError(f"gateway still subscribed to events of {sorted(set(rids) & await event_subscriptions())}")


@pytest.mark.parametrize("rid", ["test.model", "test.collection"])
@pytest_twisted.ensureDeferred
async def test_unsubscribe_stops_events(gateway, fake_service, rid):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)

    assert_unsubscribe_ok(await client.request(f"unsubscribe.{rid}"))

    await expect_no_custom_event(client, fake_service, rid)


@pytest_twisted.ensureDeferred
async def test_unsubscribe_without_subscription_is_no_subscription(gateway, fake_service):
    client = await connect_client(gateway)
    response = await client.request("unsubscribe.test.model")
    assert response["error"] == ERR_NO_SUBSCRIPTION


@pytest.mark.parametrize("parent, child", [
    ("test.model.parent", "test.model"),
    ("test.collection.parent", "test.collection"),
], ids=["model", "collection"])
@pytest_twisted.ensureDeferred
async def test_unsubscribe_linked_stops_events(gateway, fake_service, parent, child):
    client = await connect_client(gateway)
    response, _ = await subscribe_to(client, fake_service, parent)
    assert response["result"] == client_result(parent, child)

    assert_unsubscribe_ok(await client.request(f"unsubscribe.{parent}"))

    await expect_no_custom_event(client, fake_service, child)
    await expect_no_custom_event(client, fake_service, parent)


@pytest.mark.parametrize("kind", ["model", "collection"])
@pytest_twisted.ensureDeferred
async def test_overlapping_linked_resource_stays_subscribed(gateway, fake_service, kind):
    child, parent, second = f"test.{kind}", f"test.{kind}.parent", f"test.{kind}.secondparent"
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, parent)

    pending = client.request(f"subscribe.{second}")
    reqs = await fake_service.take(f"access.{second}", f"get.{second}")
    respond_get(reqs[f"get.{second}"])
    reqs[f"access.{second}"].respond_result({"get": True})
    assert (await pending)["result"] == client_result(second)

    assert_unsubscribe_ok(await client.request(f"unsubscribe.{parent}"))

    await expect_no_custom_event(client, fake_service, parent)
    await expect_custom_event(client, fake_service, second)
    # The child is still referenced by the second parent.
    await expect_custom_event(client, fake_service, child)


async def _call_get_model(client, service, expect_access_on_model: bool) -> dict:
    """``call.test.getModel``, which the service answers with a resource response of test.model."""
    pending = client.request("call.test.getModel")
    access = await service.next_request()
    assert access.subject == "access.test"
    access.respond_result({"get": True, "call": "*"})
    call = await service.next_request()
    assert call.subject == "call.test.getModel"
    call.respond({"resource": {"rid": "test.model"}})
    if expect_access_on_model:
        model_access = await service.next_request()
        assert model_access.subject == "access.test.model"
        model_access.respond_result({"get": True})
    return await pending


@pytest.mark.parametrize("unsubscribes", [
    [{"count": 2}],
    [{}, None],
], ids=["one_with_count_2", "two_without_count"])
@pytest_twisted.ensureDeferred
async def test_resource_response_after_unsubscribe_includes_resource(gateway, fake_service, unsubscribes):
    client = await connect_client(gateway)
    response, _ = await subscribe_to(client, fake_service, "test.model")
    assert response["result"] == client_result("test.model")

    # The client has test.model already: the call result only names it. That
    # resource response counts as a second direct subscription.
    response = await _call_get_model(client, fake_service, expect_access_on_model=False)
    assert response["result"] == {"rid": "test.model"}

    for params in unsubscribes:
        assert_unsubscribe_ok(await client.request("unsubscribe.test.model", params))

    # Now it no longer has it: access is checked and the resource is included.
    response = await _call_get_model(client, fake_service, expect_access_on_model=True)
    assert response["result"] == {"rid": "test.model", **client_result("test.model")}


@pytest_twisted.ensureDeferred
async def test_unsubscribe_with_count_stops_events(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")

    assert_unsubscribe_ok(await client.request("unsubscribe.test.model", {"count": 1}))

    await expect_no_custom_event(client, fake_service, "test.model")


@pytest.mark.parametrize("params, code", [
    ([], "system.invalidParams"),
    ({"count": "foo"}, "system.invalidParams"),
    ({"count": True}, "system.invalidParams"),
    ({"count": 0}, "system.invalidParams"),
    ({"count": -1}, "system.invalidParams"),
    ({"count": 2}, "system.noSubscription"),
])
@pytest_twisted.ensureDeferred
async def test_unsubscribe_with_invalid_params_keeps_subscription(gateway, fake_service, params, code):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")

    response = await client.request("unsubscribe.test.model", params)
    assert response["error"]["code"] == code, response

    await expect_custom_event(client, fake_service, "test.model")


@pytest_twisted.ensureDeferred
async def test_unsubscribed_model_leaves_cache(gateway_factory, fake_service, event_subscriptions):
    gateway = await gateway_factory(unsubscribe_delay=0)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    assert "test.model" in await event_subscriptions()

    assert_unsubscribe_ok(await client.request("unsubscribe.test.model"))
    await wait_until_unsubscribed(event_subscriptions, "test.model")


@pytest_twisted.ensureDeferred
async def test_unsubscribed_linked_models_leave_cache(gateway_factory, fake_service, event_subscriptions):
    gateway = await gateway_factory(unsubscribe_delay=0)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model.parent")
    assert {"test.model", "test.model.parent"} <= await event_subscriptions()

    assert_unsubscribe_ok(await client.request("unsubscribe.test.model.parent"))
    await wait_until_unsubscribed(event_subscriptions, "test.model", "test.model.parent")


@pytest_twisted.ensureDeferred
async def test_unsubscribe_before_subscribe_response_still_answers_the_subscribe(gateway, fake_service):
    """Unsubscribed while its access request is out, a subscribe gets an error, not silence."""
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model")
    reqs = await fake_service.take("access.test.model", "get.test.model")

    unsubscribed = await client.request("unsubscribe.test.model")
    assert "error" not in unsubscribed, unsubscribed
    reqs["access.test.model"].respond_result({"get": True})
    reqs["get.test.model"].respond_result(get_result("test.model"))

    response = await pending
    assert "error" in response, response
    await expect_no_custom_event(client, fake_service, "test.model")
