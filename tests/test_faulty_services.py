"""Faulty services: what the gateway does when a service breaks the protocol (issue #8).

For each fault a test shows that (a) the client concerned gets the
protocol's error, or nothing changes for it; (b) the gateway goes on serving
everyone else: another client subscribes to another resource and gets its
events; (c) the gateway logs one clear line for the fault (naming the
subject or resource and what was wrong; no stack trace, no token), or none
where the fault changes nothing.

What the gateway does and logs (WebSocket and HTTP clients alike):

| fault | client gets | gateway logs | test |
| --- | --- | --- | --- |
| no answer to get, access, call, auth | ``system.timeout`` (HTTP 404, as Resgate); the request is forgotten | one warning, ``Request timeout on <subject>`` | test_unanswered_request_times_out_and_is_forgotten, test_http_request_fault_is_an_error_response |
| a service that is down: many requests time out | ``system.timeout`` each | the first one's warning, then ``Request timeout on get.<service>.*: N more in the last 10 s`` once a window while they go on | test_a_service_down_is_logged_once_then_counted_per_window, test_many_requests_to_a_service_that_is_down_make_one_line |
| garbage starting with a letter (read as a pre-response, as Resgate does) | ``system.timeout`` | one warning, the timeout | test_unanswered_request_times_out_and_is_forgotten[*-letter-garbage] |
| answer after the timeout | nothing more (it had ``system.timeout``); asking again works | nothing more: the timeout was the fault | test_answer_after_the_timeout_is_ignored |
| second answer to one request | nothing: the first answer stands, in the cache too | nothing (see below) | test_second_answer_is_ignored |
| broken response (not JSON, huge, wrong shape, invalid values) | ``system.internalError`` (HTTP 500) | one warning, ``Invalid response to <subject>: <reason>`` | test_broken_response_is_an_internal_error, test_http_request_fault_is_an_error_response |
| response with both result and error, error without code | the service's error as it wrote it | nothing: Resgate passes it on | test_service_error_is_passed_on_unlogged |
| huge valid model (600 kB) | the model | nothing | test_huge_valid_model_is_served |
| event for a resource nobody holds (never held, or evicted) | nothing; no get, no subscription | nothing: the gateway has no subscription for it | test_events_for_resources_nobody_holds_are_not_heard |
| malformed event (not JSON, bad or missing idx, wrong resource type, invalid value) | nothing; the cache is unchanged (a reset brings exactly the service's changes) | one error, ``Error processing event <rid>.<event>: <reason>`` | test_malformed_event_is_logged_and_changes_nothing |
| unknown event name (a custom event), change without ``values`` (RES 1.0 form) | the custom event as published; the legacy change applied | nothing | test_odd_but_valid_event_is_handled_quietly |
| ``system.reset`` storm (200 resets over 40 held resources) | change events, ending with the service's current state | nothing | test_reset_storm_is_throttled_and_ends_current |

With ``resetThrottle`` set, one throttle covers every reset event, so a
storm of resets naming different resources has no more than that many get
requests in flight (Resgate's throttle is per event; with it, the storm here
had all 40 in flight at once).

Resgate logs neither a timeout nor a broken response (the requester gets
the error, and Resgate's own suite asserts no error for them); the gateway
logs each as a *warning*, so that an operator learns which service fails
without Resgate-compatible error counts changing. Malformed events have no
requester to tell: Resgate logs them as errors, and so does the gateway.
A second answer is not logged: the gateway keeps no record of answered
requests (that record would grow without bound), so it cannot tell a
duplicate from any stray message on its reply inbox, and the client was
served by the first. Quoted payloads are cut to ``resgate.cache.faults.LOG_EXCERPT``
characters so that a huge payload makes one short line.

Single cases tested elsewhere, not repeated here (they check the client's
response; the tests here add the log line, the pending-request map and
that others are still served):

| case | test |
| --- | --- |
| timeout / broken access, get responses (client error) | test_ws_subscribe.py::test_response_to_get_and_subscribe |
| timeout / broken access and call responses | test_ws_call.py::test_call_on_resource, test_call_access_is_kept_unless_it_failed |
| timeout / broken auth, new responses | test_ws_auth.py::test_auth_on_resource, test_ws_new.py::test_legacy_new_on_resource |
| timeout / broken HTTP POST responses | test_http_post.py::test_post_responses |
| reset get that fails or has the wrong type (logged error, ignored) | test_ws_system_event.py::test_reset_broken_get_response_is_logged_and_ignored |
| broken system.tokenReset, token-reset auth timeout (logged error) | test_ws_system_event.py::test_broken_token_reset_is_logged, test_token_reset_auth_timeout_is_logged |
| reset throttle within one reset event | test_ws_system_event.py::test_reset_throttle_*, test_ws_bugs.py |
| events before a get response | test_ws_model_event.py, test_ws_invariants.py |
| malformed query events and query responses (logged error) | test_ws_query_event.py::test_invalid_query_event_sends_no_request_and_logs_error, test_invalid_query_response_logs_error |
| mq: request timeout, pre-response timeouts, a failing reply handler | test_mq.py |
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from resgate import errors
from resgate.cache.faults import LOG_EXCERPT, FaultLog
from resgate.windowedlog import LOG_WINDOW
from tests.rig.aio import eventually, sleep
from tests.rig.http import http_request
from tests.rig.replies import TIMEOUT_MS, model_get, raw, result
from tests.rig.resources import (
    ERR_INTERNAL_ERROR,
    ERR_TIMEOUT,
    assert_no_event,
    assert_no_nats_request,
    client_data,
    client_result,
    connect_client,
    event,
    expect_custom_event,
    get_cid,
    get_response,
    resource_tree,
    subscribe_to,
)

pytestmark = pytest.mark.usefixtures("logged_errors")

#: A token with a secret in it: no log line may show it.
SECRET = "s3cr3t-in-the-token"
TOKEN = {"user": "alice", "password": SECRET}

ACCESS = result({"get": True, "call": "*"})

#: A payload near NATS's default max_payload (1 MB).
HUGE = 600_000


# ---------------------------------------------------------------------------
# The gateway's log


class GatewayLog:
    """The gateway's warnings and errors (loggers ``resgate*``), as (level, text, failure)."""

    def __init__(self) -> None:
        self.lines: list[tuple[Any, str, Any]] = []

    def __call__(self, event: dict) -> None:
        level = event.get("log_level")
        if level in (LogLevel.warn, LogLevel.error, LogLevel.critical) \
                and str(event.get("log_namespace", "")).startswith("resgate"):
            self.lines.append((level, formatEvent(event), event.get("log_failure")))

    def take(self) -> list[str]:
        """The texts of the lines logged since the last take, forgotten."""
        taken, self.lines = self.lines, []
        return [text for _, text, _ in taken]


@pytest.fixture
def gateway_log(logged_errors):
    log = GatewayLog()
    globalLogPublisher.addObserver(log)
    yield log
    globalLogPublisher.removeObserver(log)
    assert log.lines == [], f"the gateway logged lines no test counted: {log.lines}"


async def expect_one_line(gateway_log, logged_errors, level, *words: str) -> str:
    """The gateway logged exactly one line since the last check, at ``level``, with ``words``.

    Called after the scenario has gone on through the gateway (another
    client served), so a second line for the same fault would be there.
    """
    await eventually(lambda: gateway_log.lines)
    lines, gateway_log.lines = gateway_log.lines, []
    assert len(lines) == 1, lines
    found, text, failure = lines[0]
    assert found == level, lines
    assert failure is None and "\n" not in text and "Traceback" not in text, text
    assert SECRET not in text, text
    assert len(text) < 2 * LOG_EXCERPT + 200, text
    for word in words:
        assert word in text, text
    logged_errors.assert_logged(1 if level == LogLevel.error else 0)
    return text


def assert_no_line(gateway_log, logged_errors) -> None:
    assert gateway_log.lines == [], gateway_log.lines
    logged_errors.assert_logged(0)


# ---------------------------------------------------------------------------
# Steps


async def still_serving(gateway, service, rid: str = "test.collection.data") -> None:
    """Another client subscribes to ``rid`` (not cached yet) and gets its events."""
    other = await connect_client(gateway)
    response, _ = await subscribe_to(other, service, rid)
    assert response["result"] == client_result(*resource_tree(rid))
    await expect_custom_event(other, service, rid)
    await other.close()


def assert_no_pending_requests(gateway) -> None:
    """The gateway waits for no reply: every request was answered or timed out and forgotten."""
    assert gateway.mq._requests == {}
    assert not gateway.mq._deadlines


async def client_with_token(gateway, service):
    """A client whose connection has TOKEN (set by a conn token event)."""
    client = await connect_client(gateway)
    cid = await get_cid(client, service)
    service.publish(f"conn.{cid}.token", {"token": TOKEN})
    # The token event and the client's requests take different ways in: ask
    # until a request carries the token.
    for _ in range(50):
        pending = client.request("auth.test.token")
        request = await service.next_request()
        assert request.subject == "auth.test.token", request.subject
        request.respond_result(None)
        await pending
        if request.payload["token"] == TOKEN:
            return client
        await sleep(0.02)
    raise AssertionError("the token event never reached the connection")


async def serve(service, answers: dict[str, Any]) -> list:
    """Take one request on each subject of ``answers``, in whatever order they come.

    An answer is a reply (``tests.rig.replies``) or None to leave the
    request unanswered; returns the unanswered requests.
    """
    seen: set[str] = set()
    held = []
    while len(seen) < len(answers):
        request = await service.next_request()
        assert request.subject in answers and request.subject not in seen, \
            f"unexpected request {request.subject}; expected {sorted(set(answers) - seen)}"
        seen.add(request.subject)
        reply = answers[request.subject]
        if reply is None:
            held.append(request)
        else:
            reply(request)
    return held


# ---------------------------------------------------------------------------
# A service that never answers, or answers too late

#: (client request, how the service answers each request, the subject left unanswered)
UNANSWERED = [
    pytest.param("subscribe.test.model", {"access.test.model": ACCESS, "get.test.model": None},
                 "get.test.model", id="get"),
    pytest.param("subscribe.test.model", {"access.test.model": None, "get.test.model": model_get},
                 "access.test.model", id="access"),
    pytest.param("call.test.model.method", {"access.test.model": ACCESS, "call.test.model.method": None},
                 "call.test.model.method", id="call"),
    pytest.param("auth.test.model.login", {"auth.test.model.login": None}, "auth.test.model.login", id="auth"),
]

#: A reply starting with a letter is a pre-response (``timeout:"ms"``), as in
#: Resgate; garbage that starts with one extends nothing and the request times out.
GARBAGE_PRE_RESPONSE = [
    pytest.param("subscribe.test.model", {"access.test.model": ACCESS, "get.test.model": raw(b"not json")},
                 "get.test.model", id="get-letter-garbage"),
    pytest.param("call.test.model.method",
                 {"access.test.model": ACCESS, "call.test.model.method": raw(b'timeout:"x" not json')},
                 "call.test.model.method", id="call-letter-garbage"),
]

#: A valid answer to each kind of request.
VALID_ANSWER = {
    "get.test.model": model_get,
    "access.test.model": ACCESS,
    "call.test.model.method": result({"ok": True}),
    "auth.test.model.login": result({"ok": True}),
}


def answered(answers: dict[str, Any]) -> dict[str, Any]:
    """``answers`` with every request answered validly."""
    return {subject: reply or VALID_ANSWER[subject] for subject, reply in answers.items()}


@pytest.mark.parametrize("method,answers,unanswered", UNANSWERED + GARBAGE_PRE_RESPONSE)
@pytest_twisted.ensureDeferred
async def test_unanswered_request_times_out_and_is_forgotten(gateway_factory, fake_service, gateway_log,
                                                             logged_errors, method, answers, unanswered):
    gateway = await gateway_factory(request_timeout=TIMEOUT_MS)
    client = await client_with_token(gateway, fake_service)

    pending = client.request(method)
    await serve(fake_service, answers)
    assert (await pending)["error"] == ERR_TIMEOUT

    await still_serving(gateway, fake_service)
    assert_no_pending_requests(gateway)
    await expect_one_line(gateway_log, logged_errors, LogLevel.warn, "timeout", unanswered)


@pytest.mark.parametrize("method,answers,unanswered", UNANSWERED)
@pytest_twisted.ensureDeferred
async def test_answer_after_the_timeout_is_ignored(gateway_factory, fake_service, gateway_log, logged_errors,
                                                   method, answers, unanswered):
    gateway = await gateway_factory(request_timeout=TIMEOUT_MS)
    client = await connect_client(gateway)
    pending = client.request(method)
    [late] = await serve(fake_service, answers)
    assert (await pending)["error"] == ERR_TIMEOUT

    # Late, and different from anything the client may get: it must go nowhere.
    late.respond({"result": {"model": {"late": True}}} if unanswered.startswith("get.") else {"result": "late"})
    await assert_no_event(client, fake_service)
    await still_serving(gateway, fake_service)
    assert_no_pending_requests(gateway)
    await expect_one_line(gateway_log, logged_errors, LogLevel.warn, "timeout", unanswered)

    # Asked again, the client gets what the service answers now (a get
    # answered in time is cached, and not asked for again).
    again = answered(answers)
    if unanswered != "get.test.model":
        again.pop("get.test.model", None)
    pending = client.request(method)
    await serve(fake_service, again)
    response = await pending
    assert "error" not in response, response
    if method == "subscribe.test.model":
        assert response["result"] == client_result("test.model")
    assert_no_line(gateway_log, logged_errors)


# ---------------------------------------------------------------------------
# A service that is down: one line a window, not one a request


@pytest.fixture
def clocked_faults():
    """A FaultLog on a fake clock, and a GatewayLog of what it logs."""
    clock = task.Clock()
    faults = FaultLog(clock)
    log = GatewayLog()
    globalLogPublisher.addObserver(log)
    yield clock, faults, log
    globalLogPublisher.removeObserver(log)
    faults.stop()
    assert not clock.getDelayedCalls()


def test_a_service_down_is_logged_once_then_counted_per_window(clocked_faults):
    clock, faults, log = clocked_faults
    for n in range(200):
        faults.fault(f"get.library.book.{n}", errors.TIMEOUT)
    # Another request type, another kind of fault, another service: each its own first line.
    faults.fault("call.library.book.1.set", errors.TIMEOUT)
    faults.fault("get.library.book.7", errors.invalid_response("invalid value"))
    faults.fault("get.shelf.1", errors.TIMEOUT)
    # A service's own error is no fault of it.
    faults.fault("get.library.book.8", errors.ResError("system.notFound", "Not found"))
    assert log.take() == [
        "Request timeout on get.library.book.0",
        "Request timeout on call.library.book.1.set",
        "Invalid response to get.library.book.7: invalid value",
        "Request timeout on get.shelf.1",
    ]

    clock.advance(LOG_WINDOW)
    assert log.take() == [f"Request timeout on get.library.*: 199 more in the last {LOG_WINDOW:g} s"]
    # Still down: a count a window.
    for n in range(50):
        faults.fault(f"get.library.book.{n}", errors.TIMEOUT)
    clock.advance(LOG_WINDOW)
    assert log.take() == [f"Request timeout on get.library.*: 50 more in the last {LOG_WINDOW:g} s"]
    # A quiet window closes the count; the next fault is a first line again.
    clock.advance(LOG_WINDOW)
    assert log.take() == []
    faults.fault("get.library.book.3", errors.TIMEOUT)
    assert log.take() == ["Request timeout on get.library.book.3"]


@pytest_twisted.ensureDeferred
async def test_many_requests_to_a_service_that_is_down_make_one_line(gateway_factory, fake_service, gateway_log,
                                                                    logged_errors):
    gateway = await gateway_factory(request_timeout=TIMEOUT_MS)
    client = await connect_client(gateway)
    # Nothing answers auth.test.down*: every request times out within the window.
    pending = [client.request(f"auth.test.down{n}.login") for n in range(20)]
    await serve(fake_service, {f"auth.test.down{n}.login": None for n in range(20)})
    responses = await defer.gatherResults(pending)
    assert [response["error"] for response in responses] == [ERR_TIMEOUT] * 20
    await still_serving(gateway, fake_service)
    await expect_one_line(gateway_log, logged_errors, LogLevel.warn, "Request timeout on auth.test.down")
    assert_no_pending_requests(gateway)


# ---------------------------------------------------------------------------
# A service that answers twice


def twice(first: Any, second: Any):
    """Answer the request with ``first``, then again with ``second``."""
    def reply(request) -> None:
        request.respond(first)
        request.respond(second)
    return reply


SECOND_MODEL = {"result": {"model": {"second": True}}}

#: (client request, answers with one answered twice, what the client gets)
ANSWERED_TWICE = [
    pytest.param("subscribe.test.model",
                 {"access.test.model": ACCESS, "get.test.model": twice(get_response("test.model"), SECOND_MODEL)},
                 {"result": client_result("test.model")}, id="get"),
    pytest.param("subscribe.test.model",
                 {"access.test.model": twice({"result": {"get": True}}, {"result": {"get": False}}),
                  "get.test.model": model_get},
                 {"result": client_result("test.model")}, id="access"),
    pytest.param("call.test.model.method",
                 {"access.test.model": ACCESS,
                  "call.test.model.method": twice({"result": 1}, {"error": ERR_INTERNAL_ERROR})},
                 {"result": {"payload": 1}}, id="call"),
    pytest.param("auth.test.model.login",
                 {"auth.test.model.login": twice({"result": 1}, {"result": 2})}, {"result": {"payload": 1}},
                 id="auth"),
]


@pytest.mark.parametrize("method,answers,expected", ANSWERED_TWICE)
@pytest_twisted.ensureDeferred
async def test_second_answer_is_ignored(gateway, fake_service, gateway_log, logged_errors,
                                        method, answers, expected):
    client = await connect_client(gateway)
    pending = client.request(method)
    await serve(fake_service, answers)
    response = await pending
    assert {k: v for k, v in response.items() if k != "id"} == expected

    await assert_no_event(client, fake_service)
    if method == "subscribe.test.model":
        # The cache holds the first answer; the client keeps its subscription.
        other = await connect_client(gateway)
        pending = other.request("subscribe.test.model")
        await serve(fake_service, {"access.test.model": ACCESS})
        assert (await pending)["result"] == client_result("test.model")
        await expect_custom_event(client, fake_service, "test.model")
    await still_serving(gateway, fake_service)
    assert_no_pending_requests(gateway)
    assert_no_line(gateway_log, logged_errors)


# ---------------------------------------------------------------------------
# Garbage: responses that break the protocol

BROKEN_GET_RESPONSES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"\x00\xff" * (HUGE // 2), id="huge-not-json"),
    pytest.param(b'{"result":{"model":{"string":"' + b"x" * HUGE, id="huge-truncated-json"),
    pytest.param(b"[]", id="array"),
    pytest.param(b"{}", id="result-missing"),
    pytest.param(b'{"result":null}', id="result-null"),
    pytest.param(b'{"result":[]}', id="result-array"),
    pytest.param(b'{"result":{}}', id="neither-model-nor-collection"),
    pytest.param(b'{"result":{"model":{"a":1},"collection":[1]}}', id="model-and-collection"),
    pytest.param(b'{"result":{"model":[1,2]}}', id="model-is-array"),
    pytest.param(b'{"result":{"collection":{"a":1}}}', id="collection-is-object"),
    pytest.param(b'{"result":{"model":{"a":{"b":1}}}}', id="nested-object"),
    pytest.param(b'{"result":{"model":{"a":[1]}}}', id="nested-array"),
    pytest.param(b'{"result":{"model":{"a":{"action":"delete"}}}}', id="delete-action-in-model"),
    pytest.param(b'{"result":{"collection":[{"action":"delete"}]}}', id="delete-action-in-collection"),
    pytest.param(b'{"result":{"model":{"a":{"rid":""}}}}', id="empty-rid"),
    pytest.param(b'{"result":{"model":{"a":{"rid":"test..x"}}}}', id="invalid-rid"),
    pytest.param(b'{"result":{"model":{"a":{"rid":"test.x","data":1}}}}', id="ambiguous-value"),
    pytest.param(b'{"result":{"model":{"a":{"action":"forget"}}}}', id="unknown-action"),
    pytest.param(b'{"error":"not an object"}', id="error-not-object"),
    pytest.param(b'{"error":{"code":12,"message":"integer code"}}', id="error-code-not-string"),
]

BROKEN_ACCESS_RESPONSES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"{}", id="result-missing"),
    pytest.param(b'{"result":[]}', id="result-array"),
    pytest.param(b'{"result":{"get":"yes"}}', id="get-not-bool"),
    pytest.param(b'{"result":{"get":true,"call":5}}', id="call-not-string"),
]

BROKEN_CALL_RESPONSES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"{}", id="result-missing"),
    pytest.param(b'{"resource":"test.model"}', id="resource-not-object"),
    pytest.param(b'{"resource":{"rid":42}}', id="resource-rid-not-string"),
    pytest.param(b'{"error":[]}', id="error-not-object"),
]


def broken_cases():
    for case in BROKEN_GET_RESPONSES:
        yield pytest.param("subscribe.test.model",
                           {"access.test.model": ACCESS, "get.test.model": raw(case.values[0])},
                           "get.test.model", id=f"get-{case.id}")
    for case in BROKEN_ACCESS_RESPONSES:
        yield pytest.param("subscribe.test.model",
                           {"access.test.model": raw(case.values[0]), "get.test.model": model_get},
                           "access.test.model", id=f"access-{case.id}")
    for case in BROKEN_CALL_RESPONSES:
        yield pytest.param("call.test.model.method",
                           {"access.test.model": ACCESS, "call.test.model.method": raw(case.values[0])},
                           "call.test.model.method", id=f"call-{case.id}")
        yield pytest.param("auth.test.model.login", {"auth.test.model.login": raw(case.values[0])},
                           "auth.test.model.login", id=f"auth-{case.id}")


@pytest.mark.parametrize("method,answers,subject", list(broken_cases()))
@pytest_twisted.ensureDeferred
async def test_broken_response_is_an_internal_error(gateway_factory, fake_service, gateway_log, logged_errors,
                                                    method, answers, subject):
    gateway = await gateway_factory()
    client = await client_with_token(gateway, fake_service)
    pending = client.request(method)
    await serve(fake_service, answers)
    assert (await pending)["error"]["code"] == "system.internalError"

    await still_serving(gateway, fake_service)
    assert_no_pending_requests(gateway)
    await expect_one_line(gateway_log, logged_errors, LogLevel.warn, "Invalid response", subject)


#: The same faults for HTTP clients: (method, API path, answers, status, error code, words of the line)
HTTP_FAULTS = [
    pytest.param("GET", "test/model", {"access.test.model": ACCESS, "get.test.model": None},
                 404, "system.timeout", ("Request timeout", "get.test.model"), id="get-timeout"),
    pytest.param("GET", "test/model", {"access.test.model": None, "get.test.model": model_get},
                 404, "system.timeout", ("Request timeout", "access.test.model"), id="access-timeout"),
    pytest.param("GET", "test/model", {"access.test.model": ACCESS, "get.test.model": raw(b'{"result":[]}')},
                 500, "system.internalError", ("Invalid response", "get.test.model"), id="get-broken"),
    pytest.param("POST", "test/model/method", {"access.test.model": ACCESS, "call.test.model.method": None},
                 404, "system.timeout", ("Request timeout", "call.test.model.method"), id="call-timeout"),
    pytest.param("POST", "test/model/method", {"access.test.model": ACCESS, "call.test.model.method": raw(b"{}")},
                 500, "system.internalError", ("Invalid response", "call.test.model.method"), id="call-broken"),
]


@pytest.mark.parametrize("method,path,answers,status,code,words", HTTP_FAULTS)
@pytest_twisted.ensureDeferred
async def test_http_request_fault_is_an_error_response(gateway_factory, fake_service, gateway_log, logged_errors,
                                                       method, path, answers, status, code, words):
    gateway = await gateway_factory(request_timeout=TIMEOUT_MS)
    pending = defer.ensureDeferred(http_request(method, gateway.api_url + path))
    await serve(fake_service, answers)
    response = await pending
    assert (response.status, response.json()["code"]) == (status, code)

    await still_serving(gateway, fake_service)
    assert_no_pending_requests(gateway)
    await expect_one_line(gateway_log, logged_errors, LogLevel.warn, *words)


#: Responses that are odd but pass on as the service wrote them, as in Resgate.
PASSED_ON = [
    pytest.param(b'{"result":{"model":{"a":1}},"error":{"code":"system.custom","message":"Custom"}}',
                 {"code": "system.custom", "message": "Custom"}, id="result-and-error"),
    pytest.param(b'{"error":{"message":"no code"}}', {"code": "", "message": "no code"}, id="error-without-code"),
]


@pytest.mark.parametrize("response,error", PASSED_ON)
@pytest_twisted.ensureDeferred
async def test_service_error_is_passed_on_unlogged(gateway, fake_service, gateway_log, logged_errors,
                                                   response, error):
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model")
    await serve(fake_service, {"access.test.model": ACCESS, "get.test.model": raw(response)})
    assert (await pending)["error"] == error

    await still_serving(gateway, fake_service)
    assert_no_line(gateway_log, logged_errors)


@pytest_twisted.ensureDeferred
async def test_huge_valid_model_is_served(gateway, fake_service, gateway_log, logged_errors):
    model = {"big": "x" * HUGE}
    client = await connect_client(gateway)
    pending = client.request("subscribe.test.model")
    await serve(fake_service, {"access.test.model": ACCESS, "get.test.model": result({"model": model})})
    assert (await pending)["result"] == {"models": {"test.model": model}}

    await still_serving(gateway, fake_service)
    assert_no_line(gateway_log, logged_errors)


# ---------------------------------------------------------------------------
# Events for resources nobody holds


@pytest_twisted.ensureDeferred
async def test_events_for_resources_nobody_holds_are_not_heard(gateway_factory, fake_service, gateway_log,
                                                               logged_errors):
    gateway = await gateway_factory(unsubscribe_delay=0.05)
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, "test.model")
    # A resource held once, released and evicted.
    await subscribe_to(client, fake_service, "test.collection")
    assert "error" not in await client.request("unsubscribe.test.collection")
    await eventually(lambda: "test.collection" not in gateway.cache.names)

    for rid in ("test.collection", "test.model.parent", "test.nobody"):
        fake_service.event(rid, "change", {"values": {"string": "bar"}})
        fake_service.event(rid, "add", {"idx": 0, "value": 1})
        fake_service.event(rid, "custom", {"foo": "bar"})
        fake_service.publish(f"event.{rid}.change", b"not json")
    await expect_custom_event(client, fake_service, "test.model")

    await assert_no_nats_request(client, fake_service, "test.model")
    assert set(gateway.cache.names) == {"test.model"}
    await still_serving(gateway, fake_service)
    assert_no_line(gateway_log, logged_errors)


# ---------------------------------------------------------------------------
# Malformed events

MODEL_ORIGINAL = client_data("test.model")
COLLECTION_ORIGINAL = client_data("test.collection")

#: (rid, event name, payload as published, words of the log line)
MALFORMED_EVENTS = [
    pytest.param("test.model", "change", b"not json", "malformed payload", id="change-not-json"),
    pytest.param("test.model", "change", b"\x00\xff" * (HUGE // 2), "malformed payload", id="change-huge-not-json"),
    pytest.param("test.model", "change", b'"string"', "invalid value", id="change-string"),
    pytest.param("test.model", "change", b'{"values":{"a":[1]}}', "nested json array", id="change-nested-array"),
    pytest.param("test.model", "change", b'{"values":{"a":{"rid":""}}}', "rid", id="change-empty-rid"),
    pytest.param("test.model", "change", b'{"values":{"a":{"rid":"x","data":1}}}', "ambiguous",
                 id="change-ambiguous-value"),
    pytest.param("test.model", "add", b'{"idx":0,"value":1}', "add event on model", id="add-on-model"),
    pytest.param("test.model", "remove", b'{"idx":0}', "remove event on model", id="remove-on-model"),
    pytest.param("test.model", "custom", b"not json", "malformed payload", id="custom-not-json"),
    pytest.param("test.collection", "change", b'{"values":{"a":1}}', "change event on collection",
                 id="change-on-collection"),
    pytest.param("test.collection", "add", b'{"value":1}', "invalid add event", id="add-without-idx"),
    pytest.param("test.collection", "add", b'{"idx":"0","value":1}', "invalid add event", id="add-idx-string"),
    pytest.param("test.collection", "add", b'{"idx":5,"value":1}', "out of bounds", id="add-idx-beyond-end"),
    pytest.param("test.collection", "add", b'{"idx":-1,"value":1}', "out of bounds", id="add-idx-negative"),
    pytest.param("test.collection", "add", b'{"idx":0,"value":{"action":"delete"}}', "invalid value",
                 id="add-delete-action"),
    pytest.param("test.collection", "add", b"[0,1]", "invalid add event", id="add-array"),
    pytest.param("test.collection", "remove", b"{}", "invalid remove event", id="remove-without-idx"),
    pytest.param("test.collection", "remove", b'{"idx":4}', "out of bounds", id="remove-idx-beyond-end"),
    pytest.param("test.collection", "remove", b'{"idx":-1}', "out of bounds", id="remove-idx-negative"),
    pytest.param("test.collection", "remove", b"null", "invalid remove event", id="remove-null"),
]

#: What the service holds after the fault, and the event a reset must bring the client.
STATE_AFTER = {
    "test.model": ({"model": {**MODEL_ORIGINAL, "string": "bar"}},
                   event("test.model.change", {"values": {"string": "bar"}})),
    "test.collection": ({"collection": [*COLLECTION_ORIGINAL, "new"]},
                        event("test.collection.add", {"idx": 4, "value": "new"})),
}


@pytest.mark.parametrize("rid,name,payload,words", MALFORMED_EVENTS)
@pytest_twisted.ensureDeferred
async def test_malformed_event_is_logged_and_changes_nothing(gateway, fake_service, gateway_log, logged_errors,
                                                             rid, name, payload, words):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)

    fake_service.publish(f"event.{rid}.{name}", payload)
    # The gateway handles NATS messages in order: once the next event is
    # through, the malformed one was handled, and sent nothing.
    await expect_custom_event(client, fake_service, rid)
    await expect_one_line(gateway_log, logged_errors, LogLevel.error, f"{rid}.{name}", words)

    # The cache is as before: a reset brings exactly the service's changes since the get.
    fake_service.publish("system.reset", {"resources": [rid]})
    state, expected = STATE_AFTER[rid]
    await serve(fake_service, {f"get.{rid}": result(state)})
    assert await client.next_message() == expected
    await assert_no_event(client, fake_service)
    await still_serving(gateway, fake_service)
    assert_no_line(gateway_log, logged_errors)


#: Events that look odd but are the protocol's: (rid, event, payload, what the client gets or None).
ODD_BUT_VALID_EVENTS = [
    # Any other event name is a custom event, passed on with its payload.
    pytest.param("test.model", "whatever", b'[1,{"a":null}]', event("test.model.whatever", [1, {"a": None}]),
                 id="custom-event-array"),
    pytest.param("test.collection", "foo_bar", b'"text"', event("test.collection.foo_bar", "text"),
                 id="custom-event-string"),
    pytest.param("test.model", "custom", b"", event("test.model.custom", None), id="custom-event-empty"),
    # A change without "values" is RES 1.0's change event: the object is the values.
    pytest.param("test.model", "change", b"{}", None, id="change-without-values"),
    pytest.param("test.model", "change", b'{"string":"bar"}', event("test.model.change", {"values": {"string": "bar"}}),
                 id="legacy-change"),
]


@pytest.mark.parametrize("rid,name,payload,expected", ODD_BUT_VALID_EVENTS)
@pytest_twisted.ensureDeferred
async def test_odd_but_valid_event_is_handled_quietly(gateway, fake_service, gateway_log, logged_errors,
                                                      rid, name, payload, expected):
    client = await connect_client(gateway)
    await subscribe_to(client, fake_service, rid)
    fake_service.publish(f"event.{rid}.{name}", payload)
    if expected is not None:
        assert await client.next_message() == expected
    await expect_custom_event(client, fake_service, rid)
    await still_serving(gateway, fake_service)
    assert_no_line(gateway_log, logged_errors)


# ---------------------------------------------------------------------------
# A reset storm

STORM_RESOURCES = 40
STORM_RESETS = 200
STORM_THROTTLE = 5


@pytest_twisted.ensureDeferred
async def test_reset_storm_is_throttled_and_ends_current(gateway_factory, fake_service, gateway_log, logged_errors):
    """200 resets, each for one of 40 resources clients hold, while the service
    changes them: at most ``resetThrottle`` gets are in flight at any time, the
    gateway serves others meanwhile, and every client ends with the service's
    current state."""
    gateway = await gateway_factory(reset_throttle=STORM_THROTTLE)
    rids = [f"test.storm.{i}" for i in range(STORM_RESOURCES)]
    state = {rid: 0 for rid in rids}
    # Get requests the service has and has not answered yet: never more than
    # the gateway has in flight.
    outstanding = [0]
    most = [0]

    def serve_get(request) -> None:
        outstanding[0] += 1
        most[0] = max(most[0], outstanding[0])

        def answer() -> None:
            outstanding[0] -= 1
            request.respond_result({"model": {"n": state[request.subject[4:]]}})

        # Answered on a later turn, so that requests sent together are seen together.
        from twisted.internet import reactor

        reactor.callLater(0.001, answer)

    for rid in rids:
        fake_service.on(f"get.{rid}", serve_get)
        fake_service.on(f"access.{rid}", lambda request: request.respond_result({"get": True}))

    # Two clients, each holding half the resources, and a third all of them.
    clients = [await connect_client(gateway) for _ in range(3)]
    held = [rids[::2], rids[1::2], rids]
    copies: list[dict[str, dict]] = [{} for _ in clients]
    for client, names, copy in zip(clients, held, copies):
        for rid in names:
            response = await client.request(f"subscribe.{rid}")
            copy[rid] = response["result"]["models"][rid]
    most[0] = 0

    for i in range(STORM_RESETS):
        rid = rids[i % STORM_RESOURCES]
        state[rid] += 1
        fake_service.publish("system.reset", {"resources": [rid]})

    # The gateway answers others during the storm.
    await still_serving(gateway, fake_service)

    def apply_events() -> bool:
        for client, copy in zip(clients, copies):
            while client.inbox:
                message = client.inbox.pop(0)
                rid, _, name = message["event"].rpartition(".")
                assert name == "change", message
                copy[rid].update(message["data"]["values"])
        return all(copy == {rid: {"n": state[rid]} for rid in copy} for copy in copies)

    await eventually(apply_events, 10)
    await eventually(lambda: not gateway.mq._requests)
    assert 0 < most[0] <= STORM_THROTTLE, most[0]
    for client in clients:
        await assert_no_event(client, fake_service)
    assert_no_line(gateway_log, logged_errors)
