"""Invariant 1: replies and events reach the gateway in connection order.

nats-py runs a task per subscription, which reorders messages across
subscriptions. resgate.natsbus hooks nats-py's per-message dispatch instead; these
tests fail if that hook stops being used or if any message is reordered.
"""

from __future__ import annotations

import itertools

import pytest_twisted
from twisted.internet.defer import gatherResults

from tests.rig.aio import as_deferred, within
from tests.rig.natsbus import connected_client, serve, service

REQUESTS = 3000
EVENTS_PER_REQUEST = 4
EVENT_SUBJECTS = ("order.ev.a", "order.ev.b", "order.ev.c")


@pytest_twisted.ensureDeferred
async def test_replies_and_events_keep_connection_order(nats_server):
    svc = await service(nats_server.url)
    sequence = itertools.count()

    async def on_request(msg):
        # Events on several subscriptions, then the reply: one global sequence.
        for _ in range(EVENTS_PER_REQUEST):
            n = next(sequence)
            await svc.publish(EVENT_SUBJECTS[n % len(EVENT_SUBJECTS)], b"%d" % n)
        await svc.publish(msg.reply, b"%d" % next(sequence))

    await serve(svc, "order.req", on_request)
    client = await connected_client(nats_server.url, request_timeout=10.0)
    try:
        observed = []
        for subject in EVENT_SUBJECTS:
            client.subscribe(subject, lambda subject, payload: observed.append(int(payload)))
        requests = [
            client.request("order.req", b"{}").addCallback(lambda payload: observed.append(int(payload)))
            for _ in range(REQUESTS)
        ]
        await within(gatherResults(requests), 20.0)

        total = REQUESTS * (EVENTS_PER_REQUEST + 1)
        out_of_order = sum(1 for a, b in itertools.pairwise(observed) if b != a + 1)
        assert (len(observed), out_of_order) == (total, 0)
        assert observed == list(range(total))
        assert client.dispatched == total, "messages did not come through the ordered dispatch hook"
    finally:
        await within(client.close())
        await within(as_deferred(svc.close()))


@pytest_twisted.ensureDeferred
async def test_subscription_is_in_place_before_a_later_request(nats_server):
    """A set call: the service sends the change event, then the response."""
    svc = await service(nats_server.url)

    async def on_set(msg):
        await svc.publish("event.order.model.change", b'{"values":{"n":1}}')
        await msg.respond(b'{"result":null}')

    await serve(svc, "order.model.set", on_set)
    client = await connected_client(nats_server.url)
    try:
        seen = []
        client.subscribe("event.order.model.*", lambda subject, payload: seen.append(subject))
        reply = client.request("order.model.set", b"{}").addCallback(lambda payload: seen.append("response"))
        await within(reply)
        assert seen == ["event.order.model.change", "response"]
    finally:
        await within(client.close())
        await within(as_deferred(svc.close()))
