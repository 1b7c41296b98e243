"""Client get requests over WebSocket (Resgate's 02get scenarios).

A get returns the resource like a subscribe does, but the client is not
subscribed: it gets no events for it.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestNoEventsOnPrimitiveModelGet | test_get_model_sends_no_events |
| TestNoEventOnLinkedModelGet | test_get_linked_model_sends_no_events |
| TestGet_WithCIDPlaceholder_ReplacesCID | test_get_with_cid_placeholder |
| TestGet_LongResourceID_ReturnsErrSubjectTooLong | test_get_long_resource_id_is_subject_too_long |

All ported.
"""

import pytest_twisted

from tests.rig.resources import (
    ERR_SUBJECT_TOO_LONG,
    client_result,
    connect_client,
    expect_no_custom_event,
    flush_requests,
    request_with_cid_placeholder,
    respond_get,
)


@pytest_twisted.ensureDeferred
async def test_get_model_sends_no_events(gateway, fake_service):
    client = await connect_client(gateway)
    pending = client.request("get.test.model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    # A WebSocket client's requests are not marked as HTTP.
    assert "isHttp" not in reqs["access.test.model"].payload
    assert "isHttp" not in reqs["get.test.model"].payload
    reqs["access.test.model"].respond_result({"get": True})
    respond_get(reqs["get.test.model"])

    response = await pending
    assert response["result"] == client_result("test.model")

    await expect_no_custom_event(client, fake_service, "test.model")


@pytest_twisted.ensureDeferred
async def test_get_linked_model_sends_no_events(gateway, fake_service):
    client = await connect_client(gateway)
    pending = client.request("get.test.model.parent")
    reqs = await fake_service.take("access.test.model.parent", "get.test.model.parent")
    respond_get(reqs["get.test.model.parent"])
    reqs["access.test.model.parent"].respond_result({"get": True})
    respond_get((await fake_service.take("get.test.model"))["get.test.model"])

    response = await pending
    assert response["result"] == client_result("test.model.parent", "test.model")

    await expect_no_custom_event(client, fake_service, "test.model")
    await expect_no_custom_event(client, fake_service, "test.model.parent")


@pytest_twisted.ensureDeferred
async def test_get_with_cid_placeholder(gateway, fake_service):
    client = await connect_client(gateway)
    cid = await request_with_cid_placeholder(client, fake_service, "get")

    await expect_no_custom_event(client, fake_service, f"test.{cid}.model")


@pytest_twisted.ensureDeferred
async def test_get_long_resource_id_is_subject_too_long(gateway, fake_service):
    client = await connect_client(gateway)
    response = await client.request("get.test." + "a" * 10000)
    assert response["error"] == ERR_SUBJECT_TOO_LONG
    await flush_requests(client, fake_service)
