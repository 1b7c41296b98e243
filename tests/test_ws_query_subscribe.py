"""Subscribing to query resources over WebSocket (Resgate's 12query_subscribe scenarios).

A resource ID may carry a query (``test.model?q=foo``). The gateway passes
the query on in the access and get requests; the service's get response
says, with its ``query`` field, that the resource is a query resource and
what the normalized query is. Query resources are cached per normalized
query, and ordinary resource events do not reach them.

| upstream test function | pytest test(s) here |
| --- | --- |
| TestSendingQueryToNonQueryModel | test_query_on_non_query_model_is_plain_model_under_query_rid |
| TestSendingNonQueryToQueryModel | test_query_model_response_to_request_without_query_gets_no_events |
| TestSubscribingToQueryModel | test_query_model_subscription_gets_no_plain_resource_events (param: query as normalized) |
| TestSubscribingToQueryModelWithNormalization | test_query_model_subscription_gets_no_plain_resource_events (param: query normalized by service) |
| TestQueryModelIsFetchedFromCache | test_same_query_is_fetched_from_cache |
| TestQueryModelIsFetchedFromCacheAfterQueryNormalization | test_queries_with_same_normalization_are_fetched_from_cache |
| TestDifferentQueriesTriggersGetAndAccessRequests | test_different_queries_each_get_access_and_get_requests |
| TestSubscribingToQuery_LongQuery_ReturnModel | test_long_query_returns_model |
| TestSubscribingModelWithRefToQueryModel | test_model_referencing_query_model_includes_it |

All ported. Clients connect with the version handshake of the latest
protocol, as upstream's ``Session.Connect`` does. Where upstream asserts
"no NATS request", the flush (an ``auth`` round trip that must be the next
request the service sees) is followed here by a check that nothing else
reached the fake service on any of its subscriptions meanwhile.

The helpers ``subscribe_query`` and ``assert_no_nats_request`` are in
``tests/rig/resources.py``.
"""

import pytest
import pytest_twisted

from tests.rig.resources import (
    CUSTOM_EVENT,
    assert_no_nats_request,
    client_data,
    client_result,
    connect_client,
    expect_no_custom_event,
    get_result,
    resource_data,
    subscribe_query,
)


async def expect_no_custom_event_nor_request(client, service) -> None:
    """A custom event on test.model reaches no query subscription; no request is made."""
    await expect_no_custom_event(client, service, "test.model")
    await assert_no_nats_request(client, service, "test.model")


async def subscribe_query_from_cache(client, service, query: str) -> None:
    """Subscribe to test.model with ``query``; only access is asked: the query model is in the cache."""
    pending = client.request(f"subscribe.test.model?{query}")
    (await service.take("access.test.model"))["access.test.model"].respond_result({"get": True})
    assert (await pending)["result"] == {"models": {f"test.model?{query}": client_data("test.model")}}


@pytest_twisted.ensureDeferred
async def test_query_on_non_query_model_is_plain_model_under_query_rid(gateway, fake_service):
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model?q=foo&f=bar")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    assert reqs["get.test.model"].payload.get("query") == "q=foo&f=bar"
    # No "query" in the response: the service ignores queries on this model.
    reqs["get.test.model"].respond_result(get_result("test.model"))
    reqs["access.test.model"].respond_result({"get": True})

    response = await pending
    assert response["result"] == {"models": {"test.model?q=foo&f=bar": client_data("test.model")}}

    # Events on the model reach the client under the rid it subscribed with.
    fake_service.event("test.model", "custom", CUSTOM_EVENT)
    assert await client.next_message() == {"event": "test.model?q=foo&f=bar.custom", "data": CUSTOM_EVENT}
    await assert_no_nats_request(client, fake_service, "test.model")


@pytest_twisted.ensureDeferred
async def test_query_model_response_to_request_without_query_gets_no_events(gateway, fake_service):
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["get.test.model"].respond_result({**get_result("test.model"), "query": "q=foo&f=bar"})
    reqs["access.test.model"].respond_result({"get": True})

    response = await pending
    assert response["result"] == client_result("test.model")

    # A query resource gets no ordinary events, even without a query in its rid.
    await expect_no_custom_event_nor_request(client, fake_service)


@pytest.mark.parametrize(
    "query, normalized",
    [("q=foo&f=bar", "q=foo&f=bar"), ("q=foo&f=bar&ignore=true", "q=foo&f=bar")],
    ids=["already-normalized", "normalized-by-service"],
)
@pytest_twisted.ensureDeferred
async def test_query_model_subscription_gets_no_plain_resource_events(gateway, fake_service, query, normalized):
    client = await connect_client(gateway)
    await subscribe_query(client, fake_service, "test.model", query, normalized)

    await expect_no_custom_event_nor_request(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_same_query_is_fetched_from_cache(gateway, fake_service):
    model = resource_data("test.model")
    first = await connect_client(gateway)
    pending = first.request("subscribe.test.model?q=foo&f=bar")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["get.test.model"].respond_result({"model": model, "query": "q=foo&f=bar"})
    reqs["access.test.model"].respond_result({"get": True})
    assert "result" in await pending

    second = await connect_client(gateway)
    await subscribe_query_from_cache(second, fake_service, "q=foo&f=bar")

    await expect_no_custom_event_nor_request(second, fake_service)


@pytest_twisted.ensureDeferred
async def test_queries_with_same_normalization_are_fetched_from_cache(gateway, fake_service):
    first = await connect_client(gateway)
    pending = first.request("subscribe.test.model?q=foo&f=bar&ignore=true")
    reqs = await fake_service.take("access.test.model", "get.test.model")
    reqs["get.test.model"].respond_result({**get_result("test.model"), "query": "f=bar&q=foo"})
    reqs["access.test.model"].respond_result({"get": True})
    assert "result" in await pending

    # The normalized query itself, then the original query again: both from the cache.
    for query in ("f=bar&q=foo", "q=foo&f=bar&ignore=true"):
        client = await connect_client(gateway)
        await subscribe_query_from_cache(client, fake_service, query)

        await expect_no_custom_event_nor_request(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_different_queries_each_get_access_and_get_requests(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=bar", "q=foo&f=bar")
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=baz", "q=foo&f=baz")


@pytest_twisted.ensureDeferred
async def test_long_query_returns_model(gateway, fake_service):
    client = await connect_client(gateway)
    query = "q=" + "abcdefghij" * 1000
    await subscribe_query(client, fake_service, "test.model", query, query)

    await expect_no_custom_event_nor_request(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_model_referencing_query_model_includes_it(gateway, fake_service):
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model.query.parent")
    reqs = await fake_service.take("access.test.model.query.parent", "get.test.model.query.parent")
    reqs["get.test.model.query.parent"].respond_result(get_result("test.model.query.parent"))
    reqs["access.test.model.query.parent"].respond_result({"get": True})

    child = (await fake_service.take("get.test.model"))["get.test.model"]
    assert child.payload.get("query") == "foo=bar"
    child.respond_result({**get_result("test.model"), "query": "foo=bar"})

    response = await pending
    assert response["result"] == {"models": {
        "test.model?foo=bar": client_data("test.model"),
        "test.model.query.parent": client_data("test.model.query.parent"),
    }}
