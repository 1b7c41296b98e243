"""Connection token events, ``conn.<cid>.token`` (Resgate's 09conn_event scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestConnectionEvent | test_token_event_is_accepted |
| TestTokenOnAccessCall | test_token_is_sent_on_access_requests |
| TestLastTokenOnAccessCall | test_latest_token_is_sent_on_access_requests |
| TestTokenEventTriggersAccessCallOnSubscribedResources | test_token_change_rechecks_access_and_keeps_granted_subscriptions |
| TestTokenEventTriggersUnsubscribeOnDeniedAccessCall | test_token_change_unsubscribes_where_access_is_denied |

All ported. Differences from upstream:

* Upstream's mocked NATS hands an event to the gateway before the test goes
  on; over a real nats-server the test needs a barrier. After a token event
  that triggers no request, the client makes one ``auth`` round trip: the
  service publishes the reply after the event, and the gateway handles its
  NATS messages in order, so the token is set once the auth response is in.
* Upstream's teardown fails a test that made the gateway log an error; the
  ``logged_errors`` fixture here does the same for every test of the module.
* Where upstream only waits for the response of a call that access denied,
  the test also checks it is ``system.accessDenied``.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.resources import (
    ERR_ACCESS_DENIED,
    UNSUBSCRIBE_REASON_ACCESS_DENIED,
    assert_no_event,
    connect_client,
    expect_custom_event,
    expect_no_custom_event,
    flush_requests,
    get_cid,
    subscribe_parent_and_collection,
)

TOKEN = {"user": "foo"}

pytestmark = [pytest.mark.usefixtures("logged_errors"), OVER_BOTH_BUSES]

# ---------------------------------------------------------------------------
# Helpers


def send_token(service, cid: str, token: Any, **extra: Any) -> None:
    """Publish the connection event ``conn.<cid>.token`` with ``{"token": token, ...}``."""
    service.publish(f"conn.{cid}.token", {"token": token, **extra})


async def handled(client, service) -> None:
    """Barrier: every NATS message the service sent so far has reached the gateway.

    Only for moments when the gateway is not expected to send a request of
    its own (one would come before the auth request and fail the barrier).
    """
    await flush_requests(client, service)


async def set_token(client, service, cid: str, token: Any) -> None:
    """Send the token event and wait until the gateway has handled it."""
    send_token(service, cid, token)
    await handled(client, service)


async def client_with_token(gateway, service) -> tuple:
    """A new client whose connection has the token ``TOKEN``; ``(client, cid)``."""
    client = await connect_client(gateway)
    cid = await get_cid(client, service)
    await set_token(client, service, cid, TOKEN)
    return client, cid


async def token_change_access_requests(gateway, service) -> tuple:
    """A client with a token, subscribed to test.model.parent (with test.model)
    and test.collection, gets a new token; ``(client, the access requests of
    the two direct subscriptions by subject)``."""
    client, cid = await client_with_token(gateway, service)
    await subscribe_parent_and_collection(client, service)
    send_token(service, cid, TOKEN)
    return client, await service.take("access.test.model.parent", "access.test.collection")


async def call_is_denied(client, service, rid: str, token: Any) -> None:
    """A call on ``rid`` asks for access with ``token``; access without call is denied."""
    pending = client.request(f"call.{rid}.method")
    access = (await service.take(f"access.{rid}"))[f"access.{rid}"]
    assert access.payload["token"] == token, access.payload
    access.respond_result({"get": False})
    response = await pending
    assert response.get("error") == ERR_ACCESS_DENIED, response


# ---------------------------------------------------------------------------
# Scenarios


@pytest_twisted.ensureDeferred
async def test_token_event_is_accepted(gateway, fake_service):
    client, cid = await client_with_token(gateway, fake_service)
    # The connection carries on, with the token in its next request.
    pending = client.request("auth.test.method")
    auth = (await fake_service.take("auth.test.method"))["auth.test.method"]
    assert auth.payload["cid"] == cid
    assert auth.payload["token"] == TOKEN
    auth.respond_result(None)
    assert (await pending)["result"] == {"payload": None}
    assert client.inbox == []


@pytest_twisted.ensureDeferred
async def test_token_is_sent_on_access_requests(gateway, fake_service):
    client, cid = await client_with_token(gateway, fake_service)

    pending = client.request("subscribe.test.model")
    requests = await fake_service.take("access.test.model", "get.test.model")
    assert requests["access.test.model"].payload["token"] == TOKEN
    requests["access.test.model"].respond_result({"get": True})
    requests["get.test.model"].respond_result({"model": {"string": "foo"}})
    assert (await pending)["result"] == {"models": {"test.model": {"string": "foo"}}}

    # A call on a resource not subscribed to asks for access with the token too.
    await call_is_denied(client, fake_service, "test.callmodel", TOKEN)


@pytest_twisted.ensureDeferred
async def test_latest_token_is_sent_on_access_requests(gateway, fake_service):
    first = {"user": "foo", "token": 1}
    second = {"user": "bar", "token": 2}
    client = await connect_client(gateway)
    cid = await get_cid(client, fake_service)

    await set_token(client, fake_service, cid, first)
    await call_is_denied(client, fake_service, "test.model1", first)

    await set_token(client, fake_service, cid, second)
    await call_is_denied(client, fake_service, "test.model2", second)

    # A token event whose payload is JSON null clears the token.
    fake_service.publish(f"conn.{cid}.token", None)
    await handled(client, fake_service)
    await call_is_denied(client, fake_service, "test.model3", None)


@pytest_twisted.ensureDeferred
async def test_token_change_rechecks_access_and_keeps_granted_subscriptions(gateway, fake_service):
    # A new token: access is asked again for each directly subscribed resource.
    client, requests = await token_change_access_requests(gateway, fake_service)
    for request in requests.values():
        assert request.payload["token"] == TOKEN
        request.respond_result({"get": True})

    for rid in ("test.model", "test.model.parent", "test.collection"):
        await expect_custom_event(client, fake_service, rid)
    await assert_no_event(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_token_change_unsubscribes_where_access_is_denied(gateway, fake_service):
    client, requests = await token_change_access_requests(gateway, fake_service)
    # Denied one way and the other: no get access, or an access denied error.
    requests["access.test.model.parent"].respond_result({"get": False})
    requests["access.test.collection"].respond_error(**ERR_ACCESS_DENIED)

    events = [await client.next_message(), await client.next_message()]
    assert sorted(events, key=lambda e: e["event"]) == [
        {"event": "test.collection.unsubscribe", "data": UNSUBSCRIBE_REASON_ACCESS_DENIED},
        {"event": "test.model.parent.unsubscribe", "data": UNSUBSCRIBE_REASON_ACCESS_DENIED},
    ]

    for rid in ("test.model", "test.model.parent", "test.collection"):
        await expect_no_custom_event(client, fake_service, rid)
