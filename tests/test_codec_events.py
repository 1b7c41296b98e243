"""Custom and delete event payloads, from the service's bytes to the client's (issue #14).

A custom event's payload reaches the client without alteration, ``null`` and
other falsy values included; an event without a payload (empty, or a delete
the gateway makes itself) carries ``"data":null``, as Resgate's does.
"""

import pytest

from resgate import codec, errors
from resgate.cache.resources import ResourceEvent
from resgate.clientcodec import encode_event

# (payload the service publishes, the data member the client gets)
CUSTOM_PAYLOADS = [
    (b"null", b"null"),
    (b"false", b"false"),
    (b"0", b"0"),
    (b'""', b'""'),
    (b"{}", b"{}"),
    (b"[]", b"[]"),
    (b'{"a":null,"b":[null]}', b'{"a":null,"b":[null]}'),
    (b"", b"null"),
]


@pytest.mark.parametrize("payload, data", CUSTOM_PAYLOADS, ids=[p.decode() or "empty" for p, _ in CUSTOM_PAYLOADS])
def test_custom_event_payload_is_passed_through(payload, data):
    encoded = encode_event("test.model", "myEvent", codec.decode_event(payload))
    assert encoded == b'{"event":"test.model.myEvent","data":' + data + b"}"


def test_delete_event_without_payload_has_null_data():
    event = ResourceEvent("delete")
    assert encode_event("test.model", event.event, event.payload) == b'{"event":"test.model.delete","data":null}'


@pytest.mark.parametrize("payload", [b"nul", b"{", b'{"a":}', b"\xff"])
def test_malformed_event_payload_is_an_error(payload):
    with pytest.raises(errors.ResError):
        codec.decode_event(payload)
