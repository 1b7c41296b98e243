"""System events, ``system.reset`` and ``system.tokenReset`` (Resgate's 11system_event scenarios).

| upstream test function | pytest test(s) here |
| --- | --- |
| TestSystemResetEvent | test_reset_with_nothing_cached_is_accepted |
| TestSystemResetTriggersGetRequestOnModel | test_reset_refetches_unchanged_resource_quietly[test.model] |
| TestSystemResetTriggersGetRequestOnCollection | test_reset_refetches_unchanged_resource_quietly[test.collection] |
| TestSystemReset_WithUpdatedResource_GeneratesEvents | test_reset_sends_events_for_what_changed (table, 8 rows) |
| TestSystemAccessEventTriggersAccessCallOnSubscribedResources | test_reset_access_granted_keeps_subscriptions |
| TestSystemResetEventTriggersUnsubscribeOnDeniedAccessCall | test_reset_access_denied_unsubscribes_matching_only |
| TestSystemResetTriggersGetRequestOnQueryModel | test_reset_refetches_query_model_with_normalized_query (table, 3 rows) |
| TestSystemReset_NotFoundResponseOnModel_GeneratesDeleteEvent | test_reset_not_found_deletes_and_unsubscribes[test.model] |
| TestSystemReset_NotFoundResponseOnCollection_GeneratesDeleteEvent | test_reset_not_found_deletes_and_unsubscribes[test.collection] |
| TestSystemReset_InternalErrorResponseOnModel_LogsError | test_reset_broken_get_response_is_logged_and_ignored[internal-error-model] |
| TestSystemReset_InternalErrorResponseOnCollection_LogsError | test_reset_broken_get_response_is_logged_and_ignored[internal-error-collection] |
| TestSystemReset_MismatchingResourceTypeResponseOnModel_LogsError | test_reset_broken_get_response_is_logged_and_ignored[mismatching-type-model] |
| TestSystemReset_MismatchingResourceTypeResponseOnCollection_LogsError | test_reset_broken_get_response_is_logged_and_ignored[mismatching-type-collection] |
| TestSystemReset_WithThrottle_ThrottlesRequests | test_reset_throttle_limits_requests_in_flight[resources] |
| TestSystemReset_WithAccessAndWithThrottle_ThrottlesAccessRequests | test_reset_throttle_limits_requests_in_flight[access] |
| TestSystemReset_WithResourcesAndAccessAndWithThrottle_ThrottlesAccessRequests | test_reset_throttle_limits_requests_in_flight[resources-and-access] |
| TestSystemReset_WithThrottleNotReachingLimit_NoThrottle | test_reset_throttle_above_request_count_sends_all_at_once |
| TestSystemReset_WithIndirectAccessAndWithThrottle_ThrottlesAccessRequests | test_reset_throttle_counts_referenced_resources_and_direct_access |
| TestSystemReset_WithAccessForTwoSubscribersWithThrottle_ThrottlesAccessRequests | test_reset_access_with_throttle_asks_each_connection |
| TestSystemReset_WithAccessForMultipleQueriesWithThrottle_ThrottlesAccessRequests | test_reset_access_with_throttle_asks_each_query |
| TestSystemTokenReset_WithNoMatchingTokenID_SendsNoAuthRequest | test_token_reset_without_token_id_sends_no_auth_request |
| TestSystemTokenReset_WithMismatchingTokenIDs_SendsNoAuthRequest | test_token_reset_with_other_token_ids_sends_no_auth_request |
| TestSystemTokenReset_WithMatchingTokenID_SendsAuthRequest | test_token_reset_with_matching_token_id_sends_auth_request |
| TestSystemTokenReset_WithBrokenEvent_LogsError | test_broken_token_reset_is_logged[tids-not-an-array] |
| TestSystemTokenReset_WithMissingSubject_LogsError | test_broken_token_reset_is_logged[missing-subject] |
| TestSystemTokenReset_WithNoTIDs_LogsNoError | test_token_reset_with_empty_token_ids_is_accepted |
| TestSystemTokenReset_WithAuthCustomErrorResponse_LogsNoError | test_token_reset_auth_error_response_is_not_logged |
| TestSystemTokenReset_WithTimeoutOnAuthRequest_LogsError | test_token_reset_auth_timeout_is_logged |

All ported. Differences from upstream:

* Upstream's mocked NATS hands an event to the gateway before the test goes
  on and can time a request out at once. Over a real nats-server, a test
  that must know the gateway has handled a system event without requests
  follows it with a custom event on a subscribed resource and waits for it
  on the client (the gateway handles NATS messages in order); "no request
  is sent" is then checked with the client's flushing ``auth`` request. The
  timeout scenario runs a gateway with a short ``request_timeout`` and
  leaves the request unanswered.
* Upstream's CountLogger counts logged errors; here the ``logged_errors``
  fixture watches the gateway's loggers for error and critical events, and
  (as upstream's teardown) fails any test that logged errors it did not
  expect.
* Token-reset auth requests on ``token.renew`` (not a subject the rig's fake
  service listens on) are taken by a NATS subscriber of this module.
* The throttle scenarios also check that each resource is asked for exactly
  once and that clients get no events from an unchanged reset; the scenario
  with references uses the same child data on subscribe and on reset
  (upstream's differ by a typo in a key the test does not look at).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.rig.aio import as_deferred, sleep, within
from tests.rig.buses import OVER_BOTH_BUSES
from tests.rig.natsbus import confirm_subscriptions
from tests.rig.resources import (
    ERR_INTERNAL_ERROR,
    ERR_NOT_FOUND,
    UNSUBSCRIBE_REASON_ACCESS_DENIED,
    UNSUBSCRIBE_REASON_DELETED,
    assert_no_event,
    connect_client,
    expect_custom_event,
    expect_no_custom_event,
    flush_requests,
    get_cid,
    get_result,
    subscribe_parent_and_collection,
    subscribe_query,
    subscribe_to,
)
from tests.rig.service import BusAddress, connect_service

#: request_timeout (ms) of the gateway in the scenario where a service never answers.
SHORT_TIMEOUT_MS = 300

TOKEN = {"user": "foo"}

pytestmark = [pytest.mark.usefixtures("logged_errors"), OVER_BOTH_BUSES]

# ---------------------------------------------------------------------------
# Helpers


def system_event(service, event: str, payload: Any) -> None:
    service.publish(f"system.{event}", payload)


def reset(service, resources: list[str] | None = None, access: list[str] | None = None) -> None:
    payload: dict[str, list[str]] = {}
    if resources is not None:
        payload["resources"] = resources
    if access is not None:
        payload["access"] = access
    system_event(service, "reset", payload)


async def handled(client, service, rid: str = "test.model") -> None:
    """Barrier: the gateway has handled every NATS message the service sent so far.

    A custom event on ``rid`` (which ``client`` subscribes to) reaches the
    client only after the gateway handled what the service published before it.
    """
    await expect_custom_event(client, service, rid)


async def subscribe_model(client, service, rid: str, model: dict) -> None:
    """Subscribe to ``rid`` served as ``model`` by the service."""
    pending = client.request(f"subscribe.{rid}")
    requests = await service.take(f"access.{rid}", f"get.{rid}")
    requests[f"access.{rid}"].respond_result({"get": True})
    requests[f"get.{rid}"].respond_result({"model": model})
    assert (await pending)["result"] == {"models": {rid: model}}


async def client_subscribed_to(gateway, service, rid: str = "test.model"):
    """A new client subscribed to fixture resource ``rid``."""
    client = await connect_client(gateway)
    await subscribe_to(client, service, rid)
    return client


async def reset_get_request(service, rid: str):
    """Send a reset of every ``test.>`` resource; the get request it makes for ``rid``."""
    reset(service, resources=["test.>"])
    return (await service.take(f"get.{rid}"))[f"get.{rid}"]


async def token_reset(client, service, payload: Any) -> None:
    """Publish ``system.tokenReset`` and wait until the gateway has handled it."""
    system_event(service, "tokenReset", payload)
    await handled(client, service)


def numbered(rid: str) -> str:
    """The number N of ``test.model.N`` (also in ``get.test.model.N``, ``test.model.N.child``)."""
    return rid.split("test.model.", 1)[1].split(".")[0]


class TokenRenewService:
    """A subscriber for requests on one subject the fake service does not serve."""

    def __init__(self, bus: BusAddress, subject: str) -> None:
        self.bus = bus
        self.subject = subject
        self.requests: defer.DeferredQueue = defer.DeferredQueue()
        self.count = 0
        self._nc = None

    async def start(self) -> "TokenRenewService":
        self._nc = await within(defer.ensureDeferred(connect_service(self.bus)))
        await within(as_deferred(self._nc.subscribe(self.subject, cb=self._received)))
        await confirm_subscriptions(self._nc)
        return self

    async def _received(self, msg) -> None:
        self.count += 1
        self.requests.put(msg)

    def next_request(self) -> defer.Deferred:
        return within(self.requests.get())

    async def respond(self, msg, payload: bytes) -> None:
        await within(as_deferred(msg.respond(payload)))

    async def stop(self) -> None:
        if self._nc is not None:
            await within(as_deferred(self._nc.close()))


@pytest_twisted.async_yield_fixture
async def token_renew(bus_address):
    """Requests the gateway sends on ``token.renew``."""
    service = await TokenRenewService(bus_address, "token.renew").start()
    yield service
    await service.stop()


async def client_with_tid(gateway, service, tid: str = "foo"):
    """A client subscribed to test.model whose token has token ID ``tid``; (client, cid)."""
    client = await client_subscribed_to(gateway, service)
    cid = await get_cid(client, service)
    service.publish(f"conn.{cid}.token", {"token": TOKEN, "tid": tid})
    await flush_requests(client, service)
    return client, cid


# ---------------------------------------------------------------------------
# system.reset: resources


@pytest_twisted.ensureDeferred
async def test_reset_with_nothing_cached_is_accepted(gateway, fake_service):
    reset(fake_service, resources=["test.>"])
    await fake_service.flush()
    client = await connect_client(gateway)
    await flush_requests(client, fake_service)
    assert client.inbox == []


@pytest.mark.parametrize("rid", ["test.model", "test.collection"])
@pytest_twisted.ensureDeferred
async def test_reset_refetches_unchanged_resource_quietly(gateway, fake_service, rid):
    client = await client_subscribed_to(gateway, fake_service, rid)
    (await reset_get_request(fake_service, rid)).respond_result(get_result(rid))
    await assert_no_event(client, fake_service, rid)


UPDATED = [
    ("test.model", {"model": {"string": "foo", "int": 42, "bool": True, "null": None}}, []),
    ("test.model", {"model": {"string": "bar", "int": 42, "bool": True}}, [
        ("change", {"values": {"string": "bar", "null": {"action": "delete"}}}),
    ]),
    ("test.model", {"model": {"string": "foo", "int": 42, "bool": True, "null": None,
                              "child": {"rid": "test.model", "soft": True}}}, [
        ("change", {"values": {"child": {"rid": "test.model", "soft": True}}}),
    ]),
    ("test.model.soft", {"model": {"name": "soft", "child": None}}, [
        ("change", {"values": {"child": None}}),
    ]),
    ("test.collection", {"collection": ["foo", 42, True, None]}, []),
    ("test.collection", {"collection": [42, "new", True, None]}, [
        ("remove", {"idx": 0}),
        ("add", {"idx": 1, "value": "new"}),
    ]),
    ("test.collection", {"collection": ["foo", 42, True, None, {"rid": "test.model", "soft": True}]}, [
        ("add", {"idx": 4, "value": {"rid": "test.model", "soft": True}}),
    ]),
    ("test.collection.soft", {"collection": ["soft"]}, [
        ("remove", {"idx": 1}),
    ]),
]


@pytest.mark.parametrize("rid,reset_result,expected", UPDATED, ids=[f"#{i + 1}" for i in range(len(UPDATED))])
@pytest_twisted.ensureDeferred
async def test_reset_sends_events_for_what_changed(gateway, fake_service, rid, reset_result, expected):
    client = await client_subscribed_to(gateway, fake_service, rid)
    (await reset_get_request(fake_service, rid)).respond_result(reset_result)
    for event, data in expected:
        assert await client.next_message() == {"event": f"{rid}.{event}", "data": data}
    await assert_no_event(client, fake_service, rid)


@pytest.mark.parametrize("query,normalized", [
    ("foo=bar", "foo=bar"),
    ("a=b&foo=bar", "foo=bar"),
    ("", "foo=bar"),
], ids=["#1", "#2", "#3"])
@pytest_twisted.ensureDeferred
async def test_reset_refetches_query_model_with_normalized_query(gateway, fake_service, query, normalized):
    client = await connect_client(gateway)
    await subscribe_query(client, fake_service, "test.model", query, normalized)
    reset(fake_service, resources=["test.>"])
    get = (await fake_service.take("get.test.model"))["get.test.model"]
    assert get.payload.get("query") == normalized, get.payload
    get.respond_result(get_result("test.model"))
    await flush_requests(client, fake_service, "test.model")
    await assert_no_event(client, fake_service, "test.model")


@pytest.mark.parametrize("rid", ["test.model", "test.collection"])
@pytest_twisted.ensureDeferred
async def test_reset_not_found_deletes_and_unsubscribes(gateway, fake_service, rid):
    client = await client_subscribed_to(gateway, fake_service, rid)
    (await reset_get_request(fake_service, rid)).respond_error(**ERR_NOT_FOUND)
    delete = await client.next_message()
    assert delete.get("event") == f"{rid}.delete" and delete.get("data") is None, delete
    assert await client.next_message() == {"event": f"{rid}.unsubscribe", "data": UNSUBSCRIBE_REASON_DELETED}
    await expect_no_custom_event(client, fake_service, rid)


BROKEN_RESET_RESPONSES = [
    pytest.param("test.model", {"error": ERR_INTERNAL_ERROR}, id="internal-error-model"),
    pytest.param("test.collection", {"error": ERR_INTERNAL_ERROR}, id="internal-error-collection"),
    pytest.param("test.model", {"result": {"collection": ["foo", 42, True, None]}},
                 id="mismatching-type-model"),
    pytest.param("test.collection", {"result": {"model": {"string": "foo", "int": 42, "bool": True, "null": None}}},
                 id="mismatching-type-collection"),
]


@pytest.mark.parametrize("rid,response", BROKEN_RESET_RESPONSES)
@pytest_twisted.ensureDeferred
async def test_reset_broken_get_response_is_logged_and_ignored(gateway, fake_service, logged_errors, rid, response):
    client = await client_subscribed_to(gateway, fake_service, rid)
    (await reset_get_request(fake_service, rid)).respond(response)
    await assert_no_event(client, fake_service, rid)
    # The resource keeps its subscription and its events.
    await expect_custom_event(client, fake_service, rid)
    await logged_errors.expect(1)


# ---------------------------------------------------------------------------
# system.reset: access


@pytest_twisted.ensureDeferred
async def test_reset_access_granted_keeps_subscriptions(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_parent_and_collection(client, fake_service)
    reset(fake_service, access=["test.model.>"])
    # Only the direct subscription matching the pattern is checked again.
    (await fake_service.take("access.test.model.parent"))["access.test.model.parent"].respond_result({"get": True})
    await assert_no_event(client, fake_service, "test.model.parent")
    for rid in ("test.model", "test.model.parent", "test.collection"):
        await expect_custom_event(client, fake_service, rid)


@pytest_twisted.ensureDeferred
async def test_reset_access_denied_unsubscribes_matching_only(gateway, fake_service):
    client = await connect_client(gateway)
    await subscribe_parent_and_collection(client, fake_service)
    reset(fake_service, access=["test.model.>"])
    (await fake_service.take("access.test.model.parent"))["access.test.model.parent"].respond_result({"get": False})
    assert await client.next_message() == {
        "event": "test.model.parent.unsubscribe", "data": UNSUBSCRIBE_REASON_ACCESS_DENIED,
    }
    for rid in ("test.model", "test.model.parent"):
        await expect_no_custom_event(client, fake_service, rid)
    await expect_custom_event(client, fake_service, "test.collection")


# ---------------------------------------------------------------------------
# system.reset: throttle

COUNT = 10
MODEL_RIDS = [f"test.model.{i}" for i in range(1, COUNT + 1)]


async def subscribe_numbered_models(client, service) -> None:
    for i, rid in enumerate(MODEL_RIDS, 1):
        await subscribe_model(client, service, rid, {"id": i})


def answer_reset_request(request) -> None:
    """Answer a reset's get (with unchanged data) or access request on test.model.N."""
    method = request.subject.split(".", 1)[0]
    if method == "get":
        request.respond_result({"model": {"id": int(numbered(request.subject))}})
    elif method == "access":
        request.respond_result({"get": True})
    else:
        raise AssertionError(f"expected a get or access request, got {request.subject}")


@pytest.mark.parametrize("resources,access,methods", [
    (["test.>"], None, ("get",)),
    (None, ["test.>"], ("access",)),
    (["test.>"], ["test.>"], ("get", "access")),
], ids=["resources", "access", "resources-and-access"])
@pytest_twisted.ensureDeferred
async def test_reset_throttle_limits_requests_in_flight(gateway_factory, fake_service, resources, access, methods):
    throttle = 3
    gateway = await gateway_factory(reset_throttle=throttle)
    client = await connect_client(gateway)
    await subscribe_numbered_models(client, fake_service)
    reset(fake_service, resources=resources, access=access)

    expected = {f"{method}.{rid}" for method in methods for rid in MODEL_RIDS}
    in_flight = [await fake_service.next_request() for _ in range(throttle)]
    seen = [r.subject for r in in_flight]
    await flush_requests(client, fake_service, "test.model.1")
    # Each answer lets exactly one more request out.
    while in_flight:
        answer_reset_request(in_flight.pop(0))
        if len(seen) < len(expected):
            request = await fake_service.next_request()
            seen.append(request.subject)
            in_flight.append(request)
            await flush_requests(client, fake_service, "test.model.1")
    assert sorted(seen) == sorted(expected)
    await flush_requests(client, fake_service, "test.model.1")
    await assert_no_event(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_reset_throttle_above_request_count_sends_all_at_once(gateway_factory, fake_service):
    gateway = await gateway_factory(reset_throttle=40)
    client = await connect_client(gateway)
    await subscribe_numbered_models(client, fake_service)
    reset(fake_service, resources=["test.>"], access=["test.>"])
    expected = [f"{method}.{rid}" for method in ("get", "access") for rid in MODEL_RIDS]
    # All of them come before any is answered.
    requests = await fake_service.take(*expected)
    for request in requests.values():
        answer_reset_request(request)
    await flush_requests(client, fake_service, "test.model.1")
    await assert_no_event(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_reset_throttle_counts_referenced_resources_and_direct_access(gateway_factory, fake_service):
    gateway = await gateway_factory(reset_throttle=64)
    client = await connect_client(gateway)

    def parent(i: int) -> dict:
        return {"id": i, "child": {"rid": f"test.model.{i}.child"}}

    def child(i: int) -> dict:
        return {"childId": i}

    for i, rid in enumerate(MODEL_RIDS, 1):
        pending = client.request(f"subscribe.{rid}")
        requests = await fake_service.take(f"access.{rid}", f"get.{rid}")
        requests[f"access.{rid}"].respond_result({"get": True})
        requests[f"get.{rid}"].respond_result({"model": parent(i)})
        (await fake_service.take(f"get.{rid}.child"))[f"get.{rid}.child"].respond_result({"model": child(i)})
        assert (await pending)["result"] == {"models": {rid: parent(i), f"{rid}.child": child(i)}}

    reset(fake_service, resources=["test", "test.>"], access=["test", "test.>"])
    # A get for every cached resource, an access for every direct subscription.
    expected = ([f"get.{rid}" for rid in MODEL_RIDS] + [f"get.{rid}.child" for rid in MODEL_RIDS]
                + [f"access.{rid}" for rid in MODEL_RIDS])
    requests = await fake_service.take(*expected)
    await flush_requests(client, fake_service, "test.model.1")
    for subject, request in requests.items():
        method, rid = subject.split(".", 1)
        i = int(numbered(rid))
        if method == "access":
            request.respond_result({"get": True})
        elif rid.endswith(".child"):
            request.respond_result({"model": child(i)})
        else:
            request.respond_result({"model": parent(i)})
    await flush_requests(client, fake_service, "test.model.1")
    await assert_no_event(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_reset_access_with_throttle_asks_each_connection(gateway_factory, fake_service):
    gateway = await gateway_factory(reset_throttle=3)
    first = await connect_client(gateway)
    await subscribe_to(first, fake_service, "test.model")
    second = await connect_client(gateway)
    await subscribe_to(second, fake_service, "test.model", cached=["test.model"])

    reset(fake_service, access=["test.>"])
    cids = set()
    for _ in range(2):
        request = await fake_service.next_request()
        assert request.subject == "access.test.model"
        cids.add(request.payload["cid"])
        request.respond_result({"get": True})
    assert len(cids) == 2
    await flush_requests(first, fake_service, "test.model")
    await assert_no_event(first, fake_service)
    await assert_no_event(second, fake_service)


@pytest_twisted.ensureDeferred
async def test_reset_access_with_throttle_asks_each_query(gateway_factory, fake_service):
    gateway = await gateway_factory(reset_throttle=3)
    client = await connect_client(gateway)
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=1", "q=foo&f=1")
    await subscribe_query(client, fake_service, "test.model", "q=foo&f=2", "q=foo&f=2")

    reset(fake_service, access=["test.>"])
    queries = set()
    for _ in range(2):
        request = await fake_service.next_request()
        assert request.subject == "access.test.model"
        queries.add(request.payload.get("query"))
        request.respond_result({"get": True})
    assert queries == {"q=foo&f=1", "q=foo&f=2"}
    await flush_requests(client, fake_service, "test.model")
    await assert_no_event(client, fake_service)


# ---------------------------------------------------------------------------
# system.tokenReset


@pytest_twisted.ensureDeferred
async def test_token_reset_without_token_id_sends_no_auth_request(gateway, fake_service):
    client = await client_subscribed_to(gateway, fake_service)
    await token_reset(client, fake_service, {"tids": ["42"], "subject": "auth.token.renew"})
    await flush_requests(client, fake_service, "token")


@pytest_twisted.ensureDeferred
async def test_token_reset_with_other_token_ids_sends_no_auth_request(gateway, fake_service):
    client, _ = await client_with_tid(gateway, fake_service, "foo")
    await token_reset(client, fake_service, {"tids": ["bar", "baz"], "subject": "auth.token.renew"})
    await flush_requests(client, fake_service, "token")


@pytest_twisted.ensureDeferred
async def test_token_reset_with_matching_token_id_sends_auth_request(gateway, fake_service, token_renew):
    client, cid = await client_with_tid(gateway, fake_service, "foo")
    system_event(fake_service, "tokenReset", {"tids": ["bar", "foo"], "subject": "token.renew"})
    msg = await token_renew.next_request()
    payload = json.loads(msg.data)
    assert isinstance(payload["cid"], str) and payload["cid"] == cid, payload
    assert payload["token"] == TOKEN, payload
    await token_renew.respond(msg, b'{"result":null}')
    await handled(client, fake_service)
    await flush_requests(client, fake_service, "token")
    assert token_renew.count == 1


@pytest.mark.parametrize("payload", [
    pytest.param({"tids": "foo", "subject": "token.renew"}, id="tids-not-an-array"),
    pytest.param({"tids": ["foo"]}, id="missing-subject"),
])
@pytest_twisted.ensureDeferred
async def test_broken_token_reset_is_logged(gateway, fake_service, logged_errors, payload):
    client = await client_subscribed_to(gateway, fake_service)
    await token_reset(client, fake_service, payload)
    await logged_errors.expect(1)


@pytest_twisted.ensureDeferred
async def test_token_reset_with_empty_token_ids_is_accepted(gateway, fake_service):
    client = await client_subscribed_to(gateway, fake_service)
    await token_reset(client, fake_service, {"tids": [], "subject": "test"})
    await flush_requests(client, fake_service, "token")


@pytest_twisted.ensureDeferred
async def test_token_reset_auth_error_response_is_not_logged(gateway, fake_service, token_renew):
    client, _ = await client_with_tid(gateway, fake_service, "foo")
    system_event(fake_service, "tokenReset", {"tids": ["bar", "foo"], "subject": "token.renew"})
    msg = await token_renew.next_request()
    await token_renew.respond(msg, b'{"error":{"code":"system.accessDenied","message":"Access denied"}}')
    # The reply comes on another NATS connection: give the gateway a moment with it.
    await sleep(0.2)
    await assert_no_event(client, fake_service)


@pytest_twisted.ensureDeferred
async def test_token_reset_auth_timeout_is_logged(gateway_factory, fake_service, logged_errors, token_renew):
    gateway = await gateway_factory(request_timeout=SHORT_TIMEOUT_MS)
    client, _ = await client_with_tid(gateway, fake_service, "foo")
    system_event(fake_service, "tokenReset", {"tids": ["bar", "foo"], "subject": "token.renew"})
    await token_renew.next_request()  # never answered
    await logged_errors.expect(1)
    await assert_no_event(client, fake_service)
