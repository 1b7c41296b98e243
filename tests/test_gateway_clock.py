"""The gateway's waits on a fake clock, over the memory bus and a real nats-server.

The cache keeps a released resource for the unsubscribe delay (5 s by
default), a request waits 3 s for its reply, reconnects follow their delays.
Here the gateway runs on a ``ClockedReactor`` and the test advances its
clock instead of waiting: each wait is checked on both sides of its bound,
with WebSocket clients still real. Over NATS the gateway's subscriptions are
seen on the nats-server's monitoring port. Losing the bus on demand takes
the memory bus. Complements
test_ws_unsubscribe.py (eviction seen on nats-server's monitoring port),
test_ws_system_event.py (a short real timeout) and test_nats_loss.py.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.rig.aio import WAIT_TIMEOUT, eventually, sleep, within
from tests.rig.buses import ON_MEMORY_BUS, OVER_BOTH_BUSES
from tests.rig.clock import ClockedReactor
from tests.rig.resources import (
    ERR_TIMEOUT,
    MonitoredNatsServer,
    connect_client,
    expect_custom_event,
    flush_requests,
    subscribe_to,
)

pytestmark = pytest.mark.usefixtures("logged_errors")

#: The unsubscribe delay of these gateways (seconds): longer than any real test could wait.
EVICTION_DELAY = 30.0
#: The gateway's default request timeout (seconds).
REQUEST_TIMEOUT = 3.0
#: How far short of a bound the clock is first advanced (seconds).
JUST_BEFORE = 0.01
#: A pre-response's timeout (ms), longer than the default.
LONG_TIMEOUT_MS = 10_000
#: How often the nats-server's view of the subscriptions is polled (seconds).
POLL_INTERVAL = 0.05


@pytest.fixture(scope="module")
def nats_server():
    """This module's own nats-server, with monitoring to see the gateway's subscriptions."""
    server = MonitoredNatsServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def clocked() -> ClockedReactor:
    return ClockedReactor()


async def until_unsubscribed(event_subscriptions, *rids: str) -> None:
    """Wait (bounded) until the bus has no event subscription for any of ``rids``."""
    for _ in range(int(WAIT_TIMEOUT / POLL_INTERVAL)):
        if not set(rids) & await event_subscriptions():
            return
        await sleep(POLL_INTERVAL)
    raise AssertionError(f"still subscribed to events of {sorted(set(rids) & await event_subscriptions())}")


async def unsubscribe(client, service, rid: str) -> None:
    """Unsubscribe and make sure the gateway has handled it (an auth round trip)."""
    response = await client.request(f"unsubscribe.{rid}")
    assert "error" not in response, response
    await flush_requests(client, service)


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_released_resource_stays_cached_for_the_delay(gateway_factory, fake_service, event_subscriptions, clocked):
    gateway = await gateway_factory(unsubscribe_delay=EVICTION_DELAY, reactor=clocked)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    await unsubscribe(client, fake_service, "test.model")

    clocked.advance(EVICTION_DELAY - JUST_BEFORE)
    assert "test.model" in await event_subscriptions()
    clocked.advance(JUST_BEFORE)
    await until_unsubscribed(event_subscriptions, "test.model")
    # Gone from the cache: a new subscribe asks the service for it again.
    await subscribe_to(client, fake_service, "test.model")


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_subscribing_again_within_the_delay_keeps_the_cached_copy(gateway_factory, fake_service,
                                                                        event_subscriptions, clocked):
    gateway = await gateway_factory(unsubscribe_delay=EVICTION_DELAY, reactor=clocked)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    await unsubscribe(client, fake_service, "test.model")
    clocked.advance(EVICTION_DELAY - JUST_BEFORE)

    # Only access is asked: the resource comes from the cache.
    await subscribe_to(client, fake_service, "test.model", cached=["test.model"])
    clocked.advance(EVICTION_DELAY * 2)
    assert "test.model" in await event_subscriptions()
    await expect_custom_event(client, fake_service, "test.model")


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_the_delay_counts_from_the_last_release(gateway_factory, fake_service, event_subscriptions, clocked):
    # The eviction timer of the first release is moved, not left to fire early
    # (a resource released again and again, as by HTTP GETs, keeps one timer).
    gateway = await gateway_factory(unsubscribe_delay=EVICTION_DELAY, reactor=clocked)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    await unsubscribe(client, fake_service, "test.model")
    clocked.advance(EVICTION_DELAY / 2)
    await subscribe_to(client, fake_service, "test.model", cached=["test.model"])
    await unsubscribe(client, fake_service, "test.model")

    # Steps exact in binary: the sum lands on the second release's bound exactly.
    clocked.advance(EVICTION_DELAY - 0.25)
    assert "test.model" in await event_subscriptions()
    clocked.advance(0.25)
    await until_unsubscribed(event_subscriptions, "test.model")


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_references_leave_the_cache_with_their_last_holder(gateway_factory, fake_service, event_subscriptions,
                                                                 clocked):
    gateway = await gateway_factory(unsubscribe_delay=EVICTION_DELAY, reactor=clocked)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model.parent")
    await subscribe_to(client, fake_service, "test.model.secondparent", cached=["test.model"])
    await unsubscribe(client, fake_service, "test.model.parent")

    # Each released resource, and each reference it held, gets the delay in turn.
    for _ in range(3):
        clocked.advance(EVICTION_DELAY)
    await until_unsubscribed(event_subscriptions, "test.model.parent")
    # test.model is still held through test.model.secondparent.
    assert {"test.model", "test.model.secondparent"} <= await event_subscriptions()
    await expect_custom_event(client, fake_service, "test.model")

    await unsubscribe(client, fake_service, "test.model.secondparent")
    for _ in range(3):
        clocked.advance(EVICTION_DELAY)
    await until_unsubscribed(event_subscriptions, "test.model", "test.model.secondparent")


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_an_unanswered_request_times_out_on_the_clock(gateway_factory, fake_service, clocked):
    gateway = await gateway_factory(reactor=clocked)
    client = await connect_client(gateway)
    pending = client.request("get.test.model")
    await fake_service.take("access.test.model", "get.test.model")

    clocked.advance(REQUEST_TIMEOUT - JUST_BEFORE)
    await flush_requests(client, fake_service)
    assert not pending.called
    clocked.advance(JUST_BEFORE)
    assert (await pending)["error"] == ERR_TIMEOUT


@OVER_BOTH_BUSES
@pytest_twisted.ensureDeferred
async def test_a_pre_response_sets_the_timeout_of_its_request(gateway_factory, fake_service, clocked):
    gateway = await gateway_factory(reactor=clocked)
    client = await connect_client(gateway)
    pending = client.request("get.test.model")
    requests = await fake_service.take("access.test.model", "get.test.model")
    requests["access.test.model"].respond_result({"get": True})
    requests["get.test.model"].respond(f'timeout:"{LONG_TIMEOUT_MS}"'.encode())
    await flush_requests(client, fake_service)

    # Past the default timeout the request still waits, to the pre-response's bound.
    clocked.advance(LONG_TIMEOUT_MS / 1000 - JUST_BEFORE)
    await flush_requests(client, fake_service)
    assert not pending.called
    clocked.advance(JUST_BEFORE)
    assert (await pending)["error"] == ERR_TIMEOUT


@ON_MEMORY_BUS
@pytest_twisted.ensureDeferred
async def test_a_lost_bus_is_reconnected_on_the_clock(gateway_factory, fake_service, clocked, logged_errors):
    gateway = await gateway_factory(reactor=clocked)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")

    gateway.mq.reachable = False
    gateway.mq.lose("lost the memory bus")
    assert await within(client.closed) == 1001
    logged_errors.assert_logged(1)
    await eventually(lambda: not gateway.context.available)
    # Reconnecting waits for its delay, and fails while the bus cannot be reached.
    clocked.advance(1)
    assert not gateway.mq.is_connected

    gateway.mq.reachable = True
    clocked.advance(1)
    await eventually(lambda: gateway.context.available)
    again = await connect_client(gateway)
    await subscribe_to(again, fake_service, "test.model")
    await expect_custom_event(again, fake_service, "test.model")
