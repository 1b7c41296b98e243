"""A resource the client loses while a new reference to it is still loading
(Resgate's 30indirectsent scenarios, resgate issue #241).

The client holds test.model (directly or through a parent). A new resource
referring to test.model starts loading, and while one of its other
references is still pending, the client's hold on test.model ends (an
unsubscribe, or a change event dropping the reference). When the new
resource is finally sent, the client no longer has test.model, so it must
be included again.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestIndirectSent_SubscriptionReference_ContainsResource | test_subscribe_response_contains_resource_lost_meanwhile (6 ways to hold and lose test.model) |
| TestIndirectSent_ChangeEventReference_ContainsResource | test_change_event_contains_resource_lost_meanwhile (same 6 ways) |
| TestIndirectSent_AddEventReference_ContainsResource | test_add_event_contains_resource_lost_meanwhile (same 6 ways) |
| TestIndirectSent_SubscriptionReferenceToNestedResource_ContainsResource | test_subscribe_response_contains_nested_resources_lost_meanwhile |

All ported.
"""

import pytest
import pytest_twisted

from tests.rig.resources import (
    client_data,
    client_result,
    connect_client,
    expect_custom_event,
    get_result,
    subscribe_to,
)

MODEL = client_data("test.model")
DELAYED = {"name": "delayed"}
DELAYED_PARENT = {"name": "delayedparent", "child": {"rid": "test.model"}, "delayed": {"rid": "test.model.delayed"}}
PARENT_WITHOUT_CHILD = {"name": "parent", "child": None}


async def subscribe_custom(client, service, rid: str, result: dict, cached: bool = False) -> dict:
    """Subscribe to ``rid`` served with get ``result`` (only access is asked when ``cached``)."""
    pending = client.request(f"subscribe.{rid}")
    subjects = [f"access.{rid}"] + ([] if cached else [f"get.{rid}"])
    reqs = await service.take(*subjects)
    reqs[f"access.{rid}"].respond_result({"get": True})
    if not cached:
        reqs[f"get.{rid}"].respond_result(result)
    response = await pending
    assert "result" in response, response
    return response["result"]


async def unsubscribe(client, rid: str) -> None:
    response = await client.request(f"unsubscribe.{rid}")
    assert "error" not in response, response


async def change(client, service, rid: str, values: dict, **resources) -> None:
    """Send a change event on ``rid``; the client gets it (with ``resources`` it lacked)."""
    service.event(rid, "change", {"values": values})
    assert await client.next_message() == {"event": f"{rid}.change", "data": {"values": values, **resources}}


# ---------------------------------------------------------------------------
# Ways for the client to hold test.model, and to lose it again.


async def hold_direct(client, service):
    await subscribe_to(client, service, "test.model")


async def lose_direct(client, service):
    await unsubscribe(client, "test.model")


async def hold_through_parent(client, service):
    await subscribe_to(client, service, "test.model.parent")


async def lose_parent(client, service):
    await unsubscribe(client, "test.model.parent")


async def lose_parent_reference(client, service):
    await change(client, service, "test.model.parent", {"child": None})


async def hold_direct_then_through_changed_parent(client, service):
    await subscribe_to(client, service, "test.model")
    await subscribe_custom(client, service, "test.model.parent", {"model": PARENT_WITHOUT_CHILD})
    await change(client, service, "test.model.parent", {"child": {"rid": "test.model"}})


async def lose_direct_then_parent_reference(client, service):
    await unsubscribe(client, "test.model")
    await change(client, service, "test.model.parent", {"child": None})


async def hold_through_changed_parent(client, service):
    await subscribe_custom(client, service, "test.model.parent", {"model": PARENT_WITHOUT_CHILD})
    service.event("test.model.parent", "change", {"values": {"child": {"rid": "test.model"}}})
    (await service.take("get.test.model"))["get.test.model"].respond_result(get_result("test.model"))
    assert await client.next_message() == {"event": "test.model.parent.change", "data": {
        "values": {"child": {"rid": "test.model"}}, "models": {"test.model": MODEL},
    }}


async def hold_direct_and_through_parent(client, service):
    await subscribe_to(client, service, "test.model")
    await subscribe_to(client, service, "test.model.parent", cached=["test.model"])


async def lose_parent_reference_then_direct(client, service):
    await change(client, service, "test.model.parent", {"child": None})
    await unsubscribe(client, "test.model")


HOLD_AND_LOSE = [
    pytest.param(hold_direct, lose_direct, id="directly-unsubscribed"),
    pytest.param(hold_through_parent, lose_parent, id="indirectly-unsubscribed"),
    pytest.param(hold_through_parent, lose_parent_reference, id="reference-removed-by-change"),
    pytest.param(hold_direct_then_through_changed_parent, lose_direct_then_parent_reference,
                 id="direct-and-changed-reference-both-dropped"),
    pytest.param(hold_through_changed_parent, lose_parent_reference, id="reference-added-and-removed-by-change"),
    pytest.param(hold_direct_and_through_parent, lose_parent_reference_then_direct,
                 id="reference-removed-then-directly-unsubscribed"),
]


async def take_delayed_get(service):
    """The get request of test.model.delayed, left for the test to answer."""
    request = await service.next_request()
    assert request.subject == "get.test.model.delayed", request.subject
    return request


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("hold, lose", HOLD_AND_LOSE)
@pytest_twisted.ensureDeferred
async def test_subscribe_response_contains_resource_lost_meanwhile(gateway, fake_service, hold, lose):
    client = await connect_client(gateway)
    await hold(client, fake_service)

    pending = client.request("subscribe.test.model.delayedparent")
    reqs = await fake_service.take("access.test.model.delayedparent", "get.test.model.delayedparent")
    reqs["access.test.model.delayedparent"].respond_result({"get": True})
    reqs["get.test.model.delayedparent"].respond_result({"model": DELAYED_PARENT})
    delayed = await take_delayed_get(fake_service)

    await lose(client, fake_service)
    delayed.respond_result({"model": DELAYED})

    response = await pending
    assert response["result"] == {"models": {
        "test.model": MODEL,
        "test.model.delayedparent": DELAYED_PARENT,
        "test.model.delayed": DELAYED,
    }}


@pytest.mark.parametrize("hold, lose", HOLD_AND_LOSE)
@pytest_twisted.ensureDeferred
async def test_change_event_contains_resource_lost_meanwhile(gateway, fake_service, hold, lose):
    grandparent = {"name": "delayedgrandparent", "parent": None}
    client = await connect_client(gateway)
    await hold(client, fake_service)

    result = await subscribe_custom(client, fake_service, "test.model.delayedgrandparent", {"model": grandparent})
    assert result == {"models": {"test.model.delayedgrandparent": grandparent}}

    values = {"parent": {"rid": "test.model.delayedparent"}}
    fake_service.event("test.model.delayedgrandparent", "change", {"values": values})
    parent_get = (await fake_service.take("get.test.model.delayedparent"))["get.test.model.delayedparent"]
    parent_get.respond_result({"model": DELAYED_PARENT})
    delayed = await take_delayed_get(fake_service)

    await lose(client, fake_service)
    delayed.respond_result({"model": DELAYED})

    assert await client.next_message() == {"event": "test.model.delayedgrandparent.change", "data": {
        "values": values,
        "models": {"test.model": MODEL, "test.model.delayedparent": DELAYED_PARENT, "test.model.delayed": DELAYED},
    }}
    # The client is subscribed to the new parent.
    await expect_custom_event(client, fake_service, "test.model.delayedparent")


@pytest.mark.parametrize("hold, lose", HOLD_AND_LOSE)
@pytest_twisted.ensureDeferred
async def test_add_event_contains_resource_lost_meanwhile(gateway, fake_service, hold, lose):
    grandparent = ["delayedgrandparent"]
    client = await connect_client(gateway)
    await hold(client, fake_service)

    result = await subscribe_custom(client, fake_service, "test.collection.delayedgrandparent",
                                    {"collection": grandparent})
    assert result == {"collections": {"test.collection.delayedgrandparent": grandparent}}

    added = {"idx": 1, "value": {"rid": "test.model.delayedparent"}}
    fake_service.event("test.collection.delayedgrandparent", "add", added)
    parent_get = (await fake_service.take("get.test.model.delayedparent"))["get.test.model.delayedparent"]
    parent_get.respond_result({"model": DELAYED_PARENT})
    delayed = await take_delayed_get(fake_service)

    await lose(client, fake_service)
    delayed.respond_result({"model": DELAYED})

    assert await client.next_message() == {"event": "test.collection.delayedgrandparent.add", "data": {
        **added,
        "models": {"test.model": MODEL, "test.model.delayedparent": DELAYED_PARENT, "test.model.delayed": DELAYED},
    }}
    await expect_custom_event(client, fake_service, "test.model.delayedparent")


@pytest_twisted.ensureDeferred
async def test_subscribe_response_contains_nested_resources_lost_meanwhile(gateway, fake_service):
    grandparent = {"name": "delayedGrandparent", "child": {"rid": "test.model.parent"},
                   "delayed": {"rid": "test.model.delayed"}}
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model.parent")

    pending = client.request("subscribe.test.model.delayedGrandparent")
    reqs = await fake_service.take("access.test.model.delayedGrandparent", "get.test.model.delayedGrandparent")
    reqs["access.test.model.delayedGrandparent"].respond_result({"get": True})
    reqs["get.test.model.delayedGrandparent"].respond_result({"model": grandparent})
    delayed = await take_delayed_get(fake_service)

    await unsubscribe(client, "test.model.parent")
    delayed.respond_result({"model": DELAYED})

    response = await pending
    assert response["result"] == {"models": {
        **client_result("test.model", "test.model.parent")["models"],
        "test.model.delayedGrandparent": grandparent,
        "test.model.delayed": DELAYED,
    }}
