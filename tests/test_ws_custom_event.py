"""Custom and delete event payloads through a live gateway (issue #14).

The service publishes each payload as raw bytes; the client must receive the
frame the gateway writes, byte for byte, with its ``data`` member: ``null``
and the other falsy payloads are payloads, and an empty one is ``null``, as
Resgate sends them.
"""

import pytest
import pytest_twisted

from tests.rig.resources import (
    UNSUBSCRIBE_REASON_DELETED,
    connect_client,
    subscribe_to,
)
from tests.test_codec_events import CUSTOM_PAYLOADS

RESOURCES = ["test.model", "test.collection"]
RESOURCE_IDS = ["model", "collection"]
PAYLOAD_IDS = [p.decode() or "empty" for p, _ in CUSTOM_PAYLOADS]
# A protocol version before 1.2, whose clients get values in the older form.
LEGACY_CLIENT_VERSION = "1.1.1"


def custom_frame(rid: str, data: bytes) -> bytes:
    return b'{"event":"' + rid.encode() + b'.myEvent","data":' + data + b"}"


async def next_frame(client) -> bytes:
    """The bytes of the client's next event message, as the gateway wrote them."""
    message = await client.next_message()
    # frames and messages are recorded together, one of each per frame.
    return next(frame for frame, seen in zip(client.frames, client.messages) if seen is message)


@pytest.mark.parametrize("payload, data", CUSTOM_PAYLOADS, ids=PAYLOAD_IDS)
@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_custom_event_payload_reaches_client_unaltered(gateway, fake_service, rid, payload, data):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)

    fake_service.publish(f"event.{rid}.myEvent", payload)
    assert await next_frame(client) == custom_frame(rid, data)


@pytest.mark.parametrize("payload, data", CUSTOM_PAYLOADS, ids=PAYLOAD_IDS)
@pytest_twisted.ensureDeferred
async def test_custom_event_payload_is_the_same_for_every_subscriber(gateway, fake_service, payload, data):
    # The first subscriber's encoding is shared with the rest, and with a
    # legacy client's own: each gets the payload, null included.
    first = await connect_client(gateway)
    await subscribe_to(first, fake_service, "test.model")
    second = await connect_client(gateway)
    await subscribe_to(second, fake_service, "test.model", cached=["test.model"])
    legacy = await connect_client(gateway, version=LEGACY_CLIENT_VERSION)
    await subscribe_to(legacy, fake_service, "test.model", cached=["test.model"])

    fake_service.publish("event.test.model.myEvent", payload)
    for client in (first, second, legacy):
        assert await next_frame(client) == custom_frame("test.model", data)


@pytest.mark.parametrize("payload", [b"null", b""], ids=["null", "empty"])
@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_delete_event_has_null_data(gateway, fake_service, rid, payload):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)

    fake_service.publish(f"event.{rid}.delete", payload)
    assert await next_frame(client) == b'{"event":"' + rid.encode() + b'.delete","data":null}'
    assert await client.next_message() == {"event": f"{rid}.unsubscribe", "data": UNSUBSCRIBE_REASON_DELETED}
