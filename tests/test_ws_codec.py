"""Resource ID validity and legacy change events, seen from outside (Resgate's 17codec scenarios).

Upstream unit-tests two codec functions; here the same tables drive the
gateway as a client and a service would see it.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestIsValidRID (allowQuery true rows) | test_valid_rid_is_requested_from_service, test_invalid_rid_is_invalid_request |
| TestIsValidRID (allowQuery false rows) | test_rid_with_query_is_not_a_valid_auth_resource_setting |
| TestIsLegacyChangeEvent | test_change_event_format_detection, test_legacy_change_event_with_new_reference |

All ported. Resgate validates a rid without a query (allowQuery false) only
for the ``headerAuth``/``wsHeaderAuth`` settings, so those rows check
``resgate.config.Config``. The TestIsLegacyChangeEvent rows check what the
client receives for a model change event in each payload format: RES
service protocol 1.0 sent the changed values bare (``{"foo": "bar"}``), later
versions wrap them (``{"values": {...}}``); Resgate 1.8 still accepts both.
"""

import pytest
import pytest_twisted

from resgate.config import Config, ConfigError
from tests.rig.resources import (
    ERR_ACCESS_DENIED,
    ERR_INVALID_REQUEST,
    ERR_NOT_FOUND,
    connect_client,
    flush_requests,
    subscribe_to,
)

# (resource ID, the resource name the service is asked about, the query)
VALID_RIDS = [
    ("test", "test", None),
    ("test.model", "test.model", None),
    ("test.model._foo_", "test.model._foo_", None),
    ("test.model.<foo", "test.model.<foo", None),
    ("test.model.23", "test.model.23", None),
    ("test.model.23?", "test.model.23", None),
    ("test.model.23?foo=bar", "test.model.23", "foo=bar"),
    ("test.model.23?foo=test.bar", "test.model.23", "foo=test.bar"),
    ("test.model.23?foo=*&?", "test.model.23", "foo=*&?"),
]

INVALID_RIDS = [
    "",
    ".test",
    "test.",
    ".test.model",
    "test..model",
    "test.model.",
    "test\tmodel",
    "test\nmodel",
    "test\rmodel",
    "test model",
    "test\ufffdmodel",
    "täst.model",
    "test.*.model",
    "test.>.model",
    "test.model.>",
    "?foo=test.bar",
    ".test.model?foo=test.bar",
    "test..model?foo=test.bar",
    "test.model.?foo=test.bar",
    "test\tmodel?foo=test.bar",
    "test\nmodel?foo=test.bar",
    "test\rmodel?foo=test.bar",
    "test model?foo=test.bar",
    "test\ufffdmodel?foo=test.bar",
    "täst.model?foo=test.bar",
    "test.*.model?foo=test.bar",
    "test.>.model?foo=test.bar",
    "test.model.>?foo=test.bar",
]

# Valid only where a query is allowed (the valid rows with a query), plus the
# rows with a query that are invalid either way.
INVALID_WITHOUT_QUERY = [rid for rid, _, _ in VALID_RIDS if "?" in rid] + [rid for rid in INVALID_RIDS if "?" in rid]


@pytest.mark.parametrize("rid, name, query", VALID_RIDS, ids=[r for r, _, _ in VALID_RIDS])
@pytest_twisted.ensureDeferred
async def test_valid_rid_is_requested_from_service(gateway, fake_service, rid, name, query):
    client = await connect_client(gateway)
    pending = client.request(f"subscribe.{rid}")
    reqs = await fake_service.take(f"access.{name}", f"get.{name}")
    if query:
        assert reqs[f"access.{name}"].payload.get("query") == query
        assert reqs[f"get.{name}"].payload == {"query": query}
    reqs[f"get.{name}"].respond({"error": ERR_NOT_FOUND})
    reqs[f"access.{name}"].respond({"error": ERR_ACCESS_DENIED})
    assert (await pending)["error"] == ERR_ACCESS_DENIED


@pytest.mark.parametrize("rid", INVALID_RIDS, ids=[repr(r) for r in INVALID_RIDS])
@pytest_twisted.ensureDeferred
async def test_invalid_rid_is_invalid_request(gateway, fake_service, rid):
    client = await connect_client(gateway)
    response = await client.request(f"subscribe.{rid}")
    assert response["error"] == ERR_INVALID_REQUEST, response
    await flush_requests(client, fake_service)


@pytest.mark.parametrize("rid", INVALID_WITHOUT_QUERY, ids=[repr(r) for r in INVALID_WITHOUT_QUERY])
@pytest.mark.parametrize("setting", ["header_auth", "ws_header_auth"])
def test_rid_with_query_is_not_a_valid_auth_resource_setting(setting, rid):
    with pytest.raises(ConfigError):
        Config(**{setting: f"{rid}.login"})


# (change event payload as sent, the "values" the client gets, or None for no event)
CHANGE_EVENTS = [
    # Not JSON or not an object: dropped
    (b" [}", None),
    (b'"foo"', None),
    # Legacy: anything but a single "values" key holding an object
    (b'{ "foo": "bar", "faz": 42 }', {"foo": "bar", "faz": 42}),
    # ... "values" is then a property name: deleting it is a no-op here
    (b'{ "values": {"action": "delete"}, "faz": 42 }', {"faz": 42}),
    # ... and an object value that is not a RES value spoils the whole event
    (b'{ "values": {"foo": "bar"}, "faz": 42 }', None),
    (b'{ "foo": "bar" }', {"foo": "bar"}),
    (b'{ "values": "bar" }', {"values": "bar"}),
    (b' { "values": "bar" }', {"values": "bar"}),
    (b'\t\r\n { "values": "bar" }', {"values": "bar"}),
    # Current format
    (b'{ "values": { "foo": "bar" }}', {"foo": "bar"}),
    (b'{ "values": { "foo": "bar", "faz": 42 }}', {"foo": "bar", "faz": 42}),
    (b' { "values": { "foo": "bar" }}', {"foo": "bar"}),
    # Read in the current format although a 1.0 service may have meant a
    # property "values" (the two known false negatives)
    (b'{ "values": { "action": "delete" }}', {"action": "delete"}),
    (b'{ "values": { "rid": "example.foo" }}', {"rid": "example.foo"}),
]

SENTINEL = {"values": {"string": "sentinel"}}


@pytest.mark.parametrize("payload, values", CHANGE_EVENTS, ids=[p.decode() for p, _ in CHANGE_EVENTS])
@pytest_twisted.ensureDeferred
async def test_change_event_format_detection(gateway, fake_service, payload, values):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")

    fake_service.publish("event.test.model.change", payload)
    # A valid change afterwards: whatever the first event caused comes before it.
    fake_service.event("test.model", "change", SENTINEL)
    if values is not None:
        assert await client.next_message() == {"event": "test.model.change", "data": {"values": values}}
    assert await client.next_message() == {"event": "test.model.change", "data": SENTINEL}


@pytest_twisted.ensureDeferred
async def test_legacy_change_event_with_new_reference(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")

    fake_service.publish("event.test.model.change", b'{ "values": {"rid": "example.bar"}, "faz": 42 }')
    # The new reference is fetched (no access check: it is reached through test.model)
    get = await fake_service.next_request()
    assert get.subject == "get.example.bar"
    get.respond_result({"model": {"bar": True}})

    event = await client.next_message()
    assert event == {
        "event": "test.model.change",
        "data": {
            "values": {"values": {"rid": "example.bar"}, "faz": 42},
            "models": {"example.bar": {"bar": True}},
        },
    }
