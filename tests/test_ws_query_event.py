"""Query events over WebSocket (Resgate's 13query_event scenarios).

A service tells the gateway that query resources under a name may have
changed with ``event.<name>.query`` and ``{"subject": <reply subject>}``.
The gateway then sends one request per cached normalized query to that
subject (``{"query": <normalized query>}``) and applies the answer: a list
of events, or the whole model/collection (which it diffs into events). A
``system.notFound`` answer deletes the query resource. Other events for the
name wait until every query answer has been handled.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestModelQueryEvent | test_query_event_sends_query_request[model] |
| TestModelQueryEventWithOmittedEventsToQueryRequest | test_query_response_without_events_changes_nothing[model] |
| TestModelQueryEventOnMultipleQueries | test_query_event_sends_a_request_per_query[model] |
| TestModelQueryEventOnSameNormalizedQueryResultsInSingleQueryRequest | test_same_normalized_query_gets_a_single_request[model] |
| TestModelQueryEventResultingInChangeEvent | test_query_response_events_reach_client[model] |
| TestDifferentModelQueriesWithSameNormalizedQueryEachGetsClientChangeEvents | test_queries_with_same_normalization_each_get_events[model] |
| TestModelQueryEventResponseUpdatesTheCache | test_query_response_updates_the_cache[model] |
| TestModelQueryChangeEventOnMultipleQueries | test_each_query_gets_its_own_events[model] |
| TestModelQueryChangeEventOnNonQuerySubscription | test_query_event_without_query_subscription_sends_no_request |
| TestInvalidModelQueryEvent | test_invalid_query_event_sends_no_request_and_logs_error (table: 5 payloads) |
| TestCollectionQueryEvent | test_query_event_sends_query_request[collection] |
| TestCollectionQueryEventWithOmittedEventsToQueryRequest | test_query_response_without_events_changes_nothing[collection] |
| TestCollectionQueryEventOnMultipleQueries | test_query_event_sends_a_request_per_query[collection] |
| TestCollectionQueryEventOnSameNormalizedQueryResultsInSingleQueryRequest | test_same_normalized_query_gets_a_single_request[collection] |
| TestCollectionQueryEventResultingInAddRemoveEvent | test_query_response_events_reach_client[collection] |
| TestDifferentCollectionQueriesWithSameNormalizedQueryEachGetsClientChangeEvents | test_queries_with_same_normalization_each_get_events[collection] |
| TestCollectionQueryEventResponseUpdatesTheCache | test_query_response_updates_the_cache[collection] |
| TestCollectionQueryChangeEventOnMultipleQueries | test_each_query_gets_its_own_events[collection] |
| TestQueryEventQueuesOtherEventsUntilHandled | test_query_event_holds_other_events_until_handled |
| TestQueryEventWithMultipleQueryRequestsQueuesOtherEventsUntilHandled | test_query_event_with_several_requests_holds_other_events_until_handled |
| TestQueryEventDiscardedWhenPrecedingGetResponse | test_query_event_before_get_response_is_discarded |
| TestQueryEvent_ModelResponse_CausesChangeEvent | test_query_response_with_resource_causes_events[model] |
| TestQueryEvent_CollectionResponse_CausesAddRemoveEvents | test_query_response_with_resource_causes_events[collection] |
| TestQueryEvent_CollectionResponseOnModel_CausesErrorLog | test_query_response_of_other_resource_type_logs_error[model] |
| TestQueryEvent_ModelResponseOnCollection_CausesErrorLog | test_query_response_of_other_resource_type_logs_error[collection] |
| TestQueryEvent_InvalidResponseOnModelResource_CausesErrorLog | test_invalid_query_response_logs_error[model-*] (table: 7 responses) |
| TestQueryEvent_InvalidResponseOnCollectionResource_CausesErrorLog | test_invalid_query_response_logs_error[collection-*] (table: 7 responses) |
| TestQueryEvent_NotFoundResponseOnModel_GeneratesDeleteEvent | test_not_found_query_response_deletes_resource[model] |
| TestQueryEvent_NotFoundResponseOnCollection_GeneratesDeleteEvent | test_not_found_query_response_deletes_resource[collection] |
| TestQueryEvent_InternalErrorResponseOnModel_LogsError | test_internal_error_query_response_logs_error[model] |
| TestQueryEvent_InternalErrorResponseOnCollection_LogsError | test_internal_error_query_response_logs_error[collection] |
| TestQueryEvent_DeleteEventOnModel_DeletesFromCache | test_delete_in_query_response_deletes_resource[model] |
| TestQueryEvent_DeleteEventOnCollection_DeletesFromCache | test_delete_in_query_response_deletes_resource[collection] |
| TestQueryEvent_MultipleClientsWithDifferentQueries_SendsMultipleQueryRequest | test_clients_with_different_queries_each_get_a_request |

All ported. The fake service of this module also answers the query
request subjects (``_EVENT_01_``, ``_EVENT_02_``), so that "no request was
sent" covers them. Upstream's count of logged errors is read here from the
gateway's error-level log events (namespace ``resgate*``) by the
``logged_errors`` fixture, which also fails a test that requests it on
errors it did not count.
"""

import json

import pytest
import pytest_twisted

from tests.rig.aio import as_deferred
from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.natsbus import confirm_subscriptions
from tests.rig.resources import (
    ERR_INTERNAL_ERROR,
    ERR_NOT_FOUND,
    UNSUBSCRIBE_REASON_DELETED,
    assert_no_event,
    assert_no_nats_request,
    client_data,
    connect_client,
    resource_data,
    subscribe_query,
    subscribe_to,
)
from tests.rig.service import FakeService

#: The reply subjects the scenarios' query events name.
QUERY_SUBJECT = "_EVENT_01_"
QUERY_SUBJECT_2 = "_EVENT_02_"

MODEL_CHANGE = {"values": {"string": "bar", "int": -12}}
COLLECTION_ADD = {"idx": 1, "value": "bar"}
COLLECTION_REMOVE = {"idx": 4}

RESOURCES = ["test.model", "test.collection"]
RESOURCE_IDS = ["model", "collection"]

pytestmark = OVER_BOTH_BUSES


class QueryEventService(FakeService):
    """The fake service, also answering requests on the query reply subjects."""

    async def start(self) -> "QueryEventService":
        await super().start()
        for subject in (QUERY_SUBJECT, QUERY_SUBJECT_2):
            await as_deferred(self._nc.subscribe(subject, cb=self._received))
        await confirm_subscriptions(self._nc)
        return self


@pytest_twisted.async_yield_fixture
async def fake_service(bus_address):
    service = await QueryEventService(bus_address).start()
    yield service
    await service.stop()


def query_event(service, rid: str, subject: str = QUERY_SUBJECT) -> None:
    service.event(rid, "query", {"subject": subject})


async def query_requests(service, count: int, subject: str = QUERY_SUBJECT) -> dict:
    """The next ``count`` requests, all query requests on ``subject``, by their query."""
    found = {}
    for _ in range(count):
        request = await service.next_request()
        assert request.subject == subject, f"expected a query request, got {request.subject}"
        assert set(request.payload) == {"query"}, request.payload
        assert request.payload["query"] not in found, f"query {request.payload['query']} requested twice"
        found[request.payload["query"]] = request
    return found


def events_result(*events: tuple) -> dict:
    """A query response result holding these (name, data) events."""
    return {"events": [{"event": name, "data": data} for name, data in events]}


def event_of(rid: str, name: str, data) -> dict:
    return {"event": f"{rid}.{name}", "data": data}


def delete_event(rid: str) -> dict:
    # The gateway makes this delete itself, without data: the client gets null.
    return {"event": f"{rid}.delete", "data": None}


async def next_events(client, count: int) -> list:
    return [await client.next_message() for _ in range(count)]


def same_events(got: list, expected: list) -> bool:
    """Equal as multisets (for events whose order is not fixed)."""
    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    return sorted(map(key, got)) == sorted(map(key, expected))


async def client_with_query(gateway, service, rid: str, *queries: str):
    """A new client subscribed to ``rid`` with each query (``q=foo&f=bar`` if none),
    which the service keeps as it is (already normalized)."""
    client = await connect_client(gateway)
    for query in queries or ("q=foo&f=bar",):
        await subscribe_query(client, service, rid, query, query)
    return client


async def query_event_request(service, rid: str):
    """Send a query event on ``rid``; the next request the service gets (not checked)."""
    query_event(service, rid)
    return await service.next_request()


async def expect_query_request(service, query: str = "q=foo&f=bar"):
    """The next request: a query request on ``QUERY_SUBJECT`` for ``query`` only."""
    request = await service.next_request()
    assert request.subject == QUERY_SUBJECT
    assert request.payload == {"query": query}
    return request


async def expect_events(client, rid: str, events) -> None:
    """The client gets these (name, data) events on ``rid``, in this order."""
    for name, data in events:
        assert await client.next_message() == event_of(rid, name, data)


# Events a query response carries for each resource, what the client gets,
# and the cached resource after them.
QUERY_EVENTS = {
    "test.model": ([("change", MODEL_CHANGE)], {"string": "bar", "int": -12, "bool": True, "null": None}),
    "test.collection": ([("add", COLLECTION_ADD), ("remove", COLLECTION_REMOVE)], ["foo", "bar", 42, True]),
}


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_query_event_sends_query_request(gateway, fake_service, rid):
    await client_with_query(gateway, fake_service, rid)

    query_event(fake_service, rid)
    request = await expect_query_request(fake_service)
    request.respond_result({"events": []})


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_query_response_without_events_changes_nothing(gateway, fake_service, logged_errors, rid):
    client = await client_with_query(gateway, fake_service, rid)

    query_event(fake_service, rid)
    request = await expect_query_request(fake_service)
    request.respond_result({})

    await assert_no_event(client, fake_service, rid)
    logged_errors.assert_logged(0)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_query_event_sends_a_request_per_query(gateway, fake_service, logged_errors, rid):
    client = await client_with_query(gateway, fake_service, rid, "q=foo&f=bar", "q=foo&f=baz")

    query_event(fake_service, rid)
    requests = await query_requests(fake_service, 2)
    assert set(requests) == {"q=foo&f=bar", "q=foo&f=baz"}
    for request in requests.values():
        request.respond_result({})

    await assert_no_event(client, fake_service, rid)
    logged_errors.assert_logged(0)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_same_normalized_query_gets_a_single_request(gateway, fake_service, rid):
    client = await connect_client(gateway)
    await subscribe_query(client, fake_service, rid, "q=foo&f=bar", "f=bar&q=foo")
    await subscribe_query(client, fake_service, rid, "f=bar&q=foo&fake=1", "f=bar&q=foo")

    query_event(fake_service, rid)
    # The request carries the normalized query, once for both subscriptions.
    requests = await query_requests(fake_service, 1)
    assert set(requests) == {"f=bar&q=foo"}
    requests["f=bar&q=foo"].respond_result({})

    await assert_no_event(client, fake_service, rid)
    await assert_no_nats_request(client, fake_service, rid)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_query_response_events_reach_client(gateway, fake_service, rid):
    client = await client_with_query(gateway, fake_service, rid)

    events, _ = QUERY_EVENTS[rid]
    (await query_event_request(fake_service, rid)).respond_result(events_result(*events))

    full = f"{rid}?q=foo&f=bar"
    await expect_events(client, full, events)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_queries_with_same_normalization_each_get_events(gateway, fake_service, rid):
    client = await connect_client(gateway)
    await subscribe_query(client, fake_service, rid, "q=foo&f=bar", "f=bar&q=foo")
    await subscribe_query(client, fake_service, rid, "f=bar&q=foo&fake=1", "f=bar&q=foo")

    name, data = QUERY_EVENTS[rid][0][0]
    (await query_event_request(fake_service, rid)).respond_result(events_result((name, data)))

    got = await next_events(client, 2)
    assert same_events(got, [
        event_of(f"{rid}?q=foo&f=bar", name, data),
        event_of(f"{rid}?f=bar&q=foo&fake=1", name, data),
    ]), got
    await assert_no_nats_request(client, fake_service, rid)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_query_response_updates_the_cache(gateway, fake_service, rid):
    client = await client_with_query(gateway, fake_service, rid)

    events, after = QUERY_EVENTS[rid]
    (await query_event_request(fake_service, rid)).respond_result(events_result(*events))
    full = f"{rid}?q=foo&f=bar"
    await expect_events(client, full, events)

    other = await connect_client(gateway)
    pending = other.request(f"subscribe.{full}")
    (await fake_service.take(f"access.{rid}"))[f"access.{rid}"].respond_result({"get": True})
    group = "models" if rid == "test.model" else "collections"
    assert (await pending)["result"] == {group: {full: after}}


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_each_query_gets_its_own_events(gateway, fake_service, rid):
    client = await client_with_query(gateway, fake_service, rid, "q=foo&f=bar", "q=foo&f=baz")

    if rid == "test.model":
        name, for_bar, for_baz = "change", {"values": {"string": "barbar"}}, {"values": {"string": "barbaz"}}
    else:
        name, for_bar, for_baz = "add", {"idx": 1, "value": "bar"}, {"idx": 1, "value": "baz"}

    query_event(fake_service, rid)
    requests = await query_requests(fake_service, 2)
    requests["q=foo&f=bar"].respond_result(events_result((name, for_bar)))
    requests["q=foo&f=baz"].respond_result(events_result((name, for_baz)))

    got = await next_events(client, 2)
    assert same_events(got, [
        event_of(f"{rid}?q=foo&f=bar", name, for_bar),
        event_of(f"{rid}?q=foo&f=baz", name, for_baz),
    ]), got


@pytest_twisted.ensureDeferred
async def test_query_event_without_query_subscription_sends_no_request(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")

    query_event(fake_service, "test.model")
    await assert_no_nats_request(client, fake_service, "test.model")


@pytest.mark.parametrize(
    "payload",
    [b"", b"{}", b'{"subject":BROKEN}', b'{"subject":42}', b'{"subject":""}'],
    ids=["empty", "no-subject", "broken-json", "number-subject", "empty-subject"],
)
@pytest_twisted.ensureDeferred
async def test_invalid_query_event_sends_no_request_and_logs_error(gateway, fake_service, logged_errors, payload):
    client = await client_with_query(gateway, fake_service, "test.model")

    fake_service.publish("event.test.model.query", payload)
    await assert_no_nats_request(client, fake_service, "test.model")
    logged_errors.assert_logged(1)


@pytest_twisted.ensureDeferred
async def test_query_event_holds_other_events_until_handled(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=bar", "q=foo&f=bar")

    query_event(fake_service, "test.model")
    fake_service.event("test.model", "change", MODEL_CHANGE)
    request = await expect_query_request(fake_service)
    query_change = {"values": {"string": "baz", "int": -13}}
    request.respond_result(events_result(("change", query_change)))

    # The query resource's change first, then the change that came after the query event.
    assert await client.next_message() == event_of("test.model?q=foo&f=bar", "change", query_change)
    assert await client.next_message() == event_of("test.model", "change", MODEL_CHANGE)


@pytest_twisted.ensureDeferred
async def test_query_event_with_several_requests_holds_other_events_until_handled(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=bar", "q=foo&f=bar")
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=baz", "q=foo&f=baz")

    query_event(fake_service, "test.model")
    fake_service.event("test.model", "change", MODEL_CHANGE)
    requests = await query_requests(fake_service, 2)
    for_bar, for_baz = {"values": {"string": "barbar"}}, {"values": {"string": "barbaz"}}
    requests["q=foo&f=bar"].respond_result(events_result(("change", for_bar)))
    requests["q=foo&f=baz"].respond_result(events_result(("change", for_baz)))

    got = await next_events(client, 2)
    assert same_events(got, [
        event_of("test.model?q=foo&f=bar", "change", for_bar),
        event_of("test.model?q=foo&f=baz", "change", for_baz),
    ]), got
    assert await client.next_message() == event_of("test.model", "change", MODEL_CHANGE)


@pytest_twisted.ensureDeferred
async def test_query_event_before_get_response_is_discarded(gateway, fake_service, logged_errors):
    model = resource_data("test.model")
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model?foo=bar")
    reqs = await fake_service.take("access.test.model", "get.test.model")

    # The get response already reflects whatever the query event announced.
    query_event(fake_service, "test.model")
    reqs["get.test.model"].respond_result({"model": model, "query": "foo=baz"})
    reqs["access.test.model"].respond_result({"get": True})

    response = await pending
    assert response["result"] == {"models": {"test.model?foo=bar": client_data("test.model")}}
    await assert_no_event(client, fake_service, "test.model")
    fake_service.assert_no_request()
    logged_errors.assert_logged(0)


@pytest.mark.parametrize(
    "rid, resource, expected",
    [
        ("test.model", {"model": {"string": "bar", "int": -12, "bool": True}},
         [("change", {"values": {"string": "bar", "int": -12, "null": {"action": "delete"}}})]),
        ("test.collection", {"collection": ["foo", "bar", 42, True]},
         [("remove", {"idx": 3}), ("add", {"idx": 1, "value": "bar"})]),
    ],
    ids=RESOURCE_IDS,
)
@pytest_twisted.ensureDeferred
async def test_query_response_with_resource_causes_events(gateway, fake_service, rid, resource, expected):
    client = await client_with_query(gateway, fake_service, rid)

    (await query_event_request(fake_service, rid)).respond_result(resource)

    await expect_events(client, f"{rid}?q=foo&f=bar", expected)


@pytest.mark.parametrize(
    "rid, resource",
    [
        ("test.model", {"collection": ["foo", "bar", 42, True]}),
        ("test.collection", {"model": {"string": "bar", "int": -12, "bool": True}}),
    ],
    ids=RESOURCE_IDS,
)
@pytest_twisted.ensureDeferred
async def test_query_response_of_other_resource_type_logs_error(gateway, fake_service, logged_errors, rid, resource):
    client = await client_with_query(gateway, fake_service, rid)

    (await query_event_request(fake_service, rid)).respond_result(resource)

    await assert_no_event(client, fake_service, rid)
    logged_errors.assert_logged(1)


INVALID_QUERY_RESPONSES = [
    ("test.model", b'{"events":"foo"}'),
    ("test.model", b'{"model":[]}'),
    ("test.model", b'{"collection":[]}'),
    ("test.model", b'{"model":{},"events":[]}'),
    ("test.model", b'{"model":{"string":"bar"},"events":[]}'),
    ("test.model", b'{"model":{},"events":[{"event":"change","data":{"values":{"string":"bar","int":-12}}}]}'),
    ("test.model", b'{"model":{"string":"bar"},"events":[{"event":"change","data":{"values":{"string":"bar","int":-12}}}]}'),
    ("test.collection", b'{"events":"foo"}'),
    ("test.collection", b'{"collection":{}}'),
    ("test.collection", b'{"model":{}}'),
    ("test.collection", b'{"collection":[],"events":[]}'),
    ("test.collection", b'{"collection":["foo","bar"],"events":[]}'),
    ("test.collection", b'{"collection":[],"events":[{"event":"add","data":{"idx":1,"value":"bar"}}]}'),
    ("test.collection", b'{"collection":["foo","bar"],"events":[{"event":"add","data":{"idx":1,"value":"bar"}}]}'),
]


@pytest.mark.parametrize(
    "rid, result", INVALID_QUERY_RESPONSES,
    ids=[f"{rid.split('.')[1]}-{i % 7 + 1}" for i, (rid, _) in enumerate(INVALID_QUERY_RESPONSES)],
)
@pytest_twisted.ensureDeferred
async def test_invalid_query_response_logs_error(gateway, fake_service, logged_errors, rid, result):
    client = await client_with_query(gateway, fake_service, rid)

    (await query_event_request(fake_service, rid)).respond(b'{"result":' + result + b"}")

    await assert_no_event(client, fake_service, rid)
    logged_errors.assert_logged(1)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_not_found_query_response_deletes_resource(gateway, fake_service, rid):
    client = await client_with_query(gateway, fake_service, rid)

    (await query_event_request(fake_service, rid)).respond({"error": ERR_NOT_FOUND})
    assert await client.next_message() == delete_event(f"{rid}?q=foo&f=bar")

    # The deleted query resource is no longer asked about.
    query_event(fake_service, rid, QUERY_SUBJECT_2)
    await assert_no_nats_request(client, fake_service, rid)


@pytest.mark.parametrize("rid", RESOURCES, ids=RESOURCE_IDS)
@pytest_twisted.ensureDeferred
async def test_internal_error_query_response_logs_error(gateway, fake_service, logged_errors, rid):
    client = await client_with_query(gateway, fake_service, rid)

    (await query_event_request(fake_service, rid)).respond({"error": ERR_INTERNAL_ERROR})
    await assert_no_event(client, fake_service, rid)
    logged_errors.assert_logged(1)

    # The query resource is still there: the next query event asks about it.
    query_event(fake_service, rid, QUERY_SUBJECT_2)
    request = await fake_service.next_request()
    assert request.subject == QUERY_SUBJECT_2
    request.respond_result({"events": []})


@pytest.mark.parametrize(
    "rid, after_delete",
    [("test.model", ("change", MODEL_CHANGE)), ("test.collection", ("add", COLLECTION_ADD))],
    ids=RESOURCE_IDS,
)
@pytest_twisted.ensureDeferred
async def test_delete_in_query_response_deletes_resource(gateway, fake_service, rid, after_delete):
    client = await client_with_query(gateway, fake_service, rid)

    (await query_event_request(fake_service, rid)).respond_result(
        {"events": [{"event": "delete"}, {"event": after_delete[0], "data": after_delete[1]}]}
    )

    full = f"{rid}?q=foo&f=bar"
    assert await client.next_message() == delete_event(full)
    assert await client.next_message() == event_of(full, "unsubscribe", UNSUBSCRIBE_REASON_DELETED)
    # Nothing after the delete is applied or sent.
    await assert_no_event(client, fake_service, rid)
    query_event(fake_service, rid, QUERY_SUBJECT_2)
    await assert_no_nats_request(client, fake_service, rid)


@pytest_twisted.ensureDeferred
async def test_clients_with_different_queries_each_get_a_request(gateway, fake_service):
    first = await connect_client(gateway)
    second = await connect_client(gateway)
    await subscribe_query(first, fake_service, "test.collection", "q=foo&f=bar", "q=foo&f=bar")
    await subscribe_query(second, fake_service, "test.collection", "q=zoo&f=baz", "q=zoo&f=baz")

    query_event(fake_service, "test.collection")
    requests = await query_requests(fake_service, 2)
    assert set(requests) == {"q=foo&f=bar", "q=zoo&f=baz"}
    for request in requests.values():
        request.respond_result({"events": []})

    await assert_no_event(first, fake_service, "test.collection")
    await assert_no_event(second, fake_service, "test.collection")
