"""The in-memory bus of the rig (tests/rig/memorybus.py) keeps the NATS semantics the gateway relies on.

On a ``task.Clock``: one delivery order across subscriptions and
publishers, delivery only on a later turn (never inside ``publish`` or
``send_request``), wildcards, system.notFound and system.timeout,
pre-responses, loss and close; hostile subjects and payloads get errors.
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.logger import globalLogPublisher

from resgate import errors
from resgate.bus import Bus
from tests.rig.aio import as_deferred, within
from tests.rig.logs import ErrorLog
from tests.rig.memorybus import (
    MAX_CONTROL_LINE,
    MAX_PAYLOAD,
    BusUnreachable,
    MemoryBroker,
    MemoryBus,
    MemoryConnection,
    matches,
)
from tests.rig.natsbus import confirm_subscriptions

TIMEOUT = 3.0
#: How many messages the ordering test publishes.
MESSAGES = 10_000
SEED = 20261201


class Outcomes:
    """The ``respond(reply, error)`` calls of requests, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes | None, errors.ResError | None]] = []

    def __call__(self, reply: bytes | None, error: errors.ResError | None) -> None:
        self.calls.append((reply, error))


def done(coro: Any) -> Any:
    """Run a service-side coroutine that must not wait; its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the memory connection waited")


@pytest.fixture
def clock() -> task.Clock:
    return task.Clock()


@pytest.fixture
def broker(clock) -> MemoryBroker:
    return MemoryBroker(clock)


@pytest.fixture
def bus(broker) -> MemoryBus:
    bus = broker.bus(request_timeout=TIMEOUT)
    bus.connect()
    return bus


@pytest.fixture
def service(broker) -> MemoryConnection:
    return broker.connect_service()


def serve(service: MemoryConnection, subject: str, reply: bytes) -> list:
    """Answer every request on ``subject`` with ``reply``; the requests seen."""
    seen: list = []

    async def answer(msg) -> None:
        seen.append(msg)
        await msg.respond(reply)

    done(service.subscribe(subject, cb=answer))
    return seen


# ---------------------------------------------------------------------------
# Subjects


@pytest.mark.parametrize("pattern, subject, expected", [
    ("a.b", "a.b", True),
    ("a.b", "a.b.c", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.>", "a.b", True),
    ("a.>", "a.b.c", True),
    ("a.>", "a", False),
    (">", "a", True),
    ("*", "a.b", False),
    ("event.test.model.*", "event.test.model.change", True),
    ("event.test.model.*", "event.test.model.parent.change", False),
])
def test_wildcards_match_as_in_nats(pattern, subject, expected):
    assert matches(pattern, subject) is expected


def test_a_message_reaches_every_matching_subscription_and_no_other(clock, bus):
    got: dict[str, list[str]] = {}
    for pattern in ("event.a.*", "event.>", "event.*.x", "event.a.x", "other.>"):
        bus.subscribe(pattern, lambda subject, payload, pattern=pattern: got.setdefault(pattern, []).append(subject))
    bus.publish("event.a.x", b"{}")
    bus.publish("event.b.y", b"{}")
    clock.advance(0)
    assert got == {
        "event.a.*": ["event.a.x"],
        "event.>": ["event.a.x", "event.b.y"],
        "event.*.x": ["event.a.x"],
        "event.a.x": ["event.a.x"],
    }


# ---------------------------------------------------------------------------
# Order and turns


def test_order_holds_over_interleaved_publishers_and_subscriptions(clock, broker, bus, service):
    """10,000 messages from the gateway and a service, on several subjects, some turns between."""
    rng = random.Random(SEED)
    delivered: list[tuple[str, int]] = []

    def record(name: str):
        return lambda subject, payload: delivered.append((name, int(payload)))

    patterns = {"a": "event.a.*", "b": "event.b.*", "all": "event.>", "x": "event.*.x"}
    for name, pattern in patterns.items():
        if name == "x":
            done(service.subscribe(pattern, cb=lambda msg: delivered.append(("x", int(msg.data)))))
        else:
            bus.subscribe(pattern, record(name))
    subjects = ["event.a.x", "event.a.y", "event.b.x", "event.b.y", "event.c.z"]
    published: list[tuple[int, str]] = []
    for seq in range(MESSAGES):
        subject = rng.choice(subjects)
        published.append((seq, subject))
        if rng.random() < 0.5:
            bus.publish(subject, str(seq).encode())
        else:
            done(service.publish(subject, str(seq).encode()))
        if rng.random() < 0.05:
            clock.advance(0)
    clock.advance(0)
    assert broker.pending == 0

    for name, pattern in patterns.items():
        expected = [seq for seq, subject in published if matches(pattern, subject)]
        assert [seq for got, seq in delivered if got == name] == expected, name
    sequence = [seq for _, seq in delivered]
    assert sequence == sorted(sequence), "a later message overtook an earlier one"


def test_nothing_is_delivered_inside_publish(clock, bus):
    got: list[bytes] = []
    after_nested_publish: list[list[bytes]] = []

    def handler(subject: str, payload: bytes) -> None:
        got.append(payload)
        if payload == b"1":
            bus.publish("event.a.b", b"2")
            after_nested_publish.append(list(got))

    bus.subscribe("event.a.b", handler)
    bus.publish("event.a.b", b"1")
    assert got == []
    # A task.Clock runs the next turn's delivery within the same advance(0).
    clock.advance(0)
    assert after_nested_publish == [[b"1"]]
    assert got == [b"1", b"2"]


def test_no_reply_is_given_inside_send_request(clock, bus, service):
    serve(service, "get.test", b'{"result":null}')
    answered = Outcomes()
    nobody = Outcomes()
    bus.send_request("get.test", b"{}", answered)
    bus.send_request("get.nobody", b"{}", nobody)
    assert answered.calls == [] and nobody.calls == []
    clock.advance(0)
    # The request reached the service on this turn; its reply comes on the next.
    assert nobody.calls == [(None, errors.NOT_FOUND)]
    clock.advance(0)
    assert answered.calls == [(b'{"result":null}', None)]


def test_a_subscription_gets_what_is_published_after_it_and_before_it_ends(clock, bus):
    got: list[bytes] = []
    bus.publish("event.a.b", b"before")
    sub = bus.subscribe("event.a.b", lambda subject, payload: got.append(payload))
    bus.publish("event.a.b", b"during")
    clock.advance(0)
    bus.publish("event.a.b", b"queued")
    sub.unsubscribe()
    sub.unsubscribe()
    clock.advance(0)
    assert got == [b"during"]


def test_a_failing_handler_is_logged_and_delivery_goes_on(clock, bus):
    log = ErrorLog()
    globalLogPublisher.addObserver(log)
    try:
        got: list[bytes] = []

        def fails(subject: str, payload: bytes) -> None:
            raise RuntimeError("handler bug")

        bus.subscribe("event.a.b", fails)
        bus.subscribe("event.a.b", lambda subject, payload: got.append(payload))
        bus.publish("event.a.b", b"1")
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(log)
    assert got == [b"1"]
    log.assert_logged(1)


# ---------------------------------------------------------------------------
# Requests


def test_the_service_sees_the_requests_in_order_with_their_reply_subjects(clock, bus, service):
    seen = serve(service, "get.>", b'{"result":null}')
    for n in range(3):
        bus.send_request(f"get.test.{n}", f'{{"n":{n}}}'.encode(), Outcomes())
    clock.advance(0)
    assert [(m.subject, m.data) for m in seen] == [(f"get.test.{n}", f'{{"n":{n}}}'.encode()) for n in range(3)]
    assert len({m.reply for m in seen}) == 3


def test_an_unanswered_request_times_out_on_the_clock(clock, bus, service):
    done(service.subscribe("get.>", cb=lambda msg: None))
    outcome = Outcomes()
    bus.send_request("get.test", b"{}", outcome)
    clock.advance(TIMEOUT - 0.001)
    assert outcome.calls == []
    clock.advance(0.001)
    assert outcome.calls == [(None, errors.TIMEOUT)]
    assert bus.pending_requests == 0


def test_a_reply_after_the_timeout_is_dropped(clock, bus, service):
    requests: list = []
    done(service.subscribe("get.>", cb=requests.append))
    outcome = Outcomes()
    bus.send_request("get.test", b"{}", outcome)
    clock.advance(0)
    clock.advance(TIMEOUT)
    done(requests[0].respond(b'{"result":null}'))
    clock.advance(0)
    assert outcome.calls == [(None, errors.TIMEOUT)]


def test_a_pre_response_restarts_the_wait_with_its_timeout(clock, bus, service):
    requests: list = []
    done(service.subscribe("get.>", cb=requests.append))
    outcome = Outcomes()
    bus.send_request("get.test", b"{}", outcome)
    clock.advance(1)
    done(requests[0].respond(b'timeout:"5000"'))
    clock.advance(0)
    clock.advance(TIMEOUT)
    assert outcome.calls == []
    clock.advance(5 - TIMEOUT - 0.001)
    assert outcome.calls == []
    clock.advance(0.001)
    assert outcome.calls == [(None, errors.TIMEOUT)]


@pytest.mark.parametrize("meta", [b'foo:"bar"', b'timeout:"soon"', b"timeout"])
def test_a_pre_response_without_a_timeout_changes_nothing(clock, bus, service, meta):
    requests: list = []
    done(service.subscribe("get.>", cb=requests.append))
    outcome = Outcomes()
    bus.send_request("get.test", b"{}", outcome)
    clock.advance(0)
    done(requests[0].respond(meta))
    clock.advance(TIMEOUT)
    assert outcome.calls == [(None, errors.TIMEOUT)]


def test_a_cancelled_request_is_forgotten(clock, bus, service):
    requests: list = []
    done(service.subscribe("get.>", cb=requests.append))
    outcomes: list = []
    d = bus.request("get.test", b"{}")
    d.addBoth(outcomes.append)
    d.cancel()
    assert bus.pending_requests == 0
    clock.advance(0)
    done(requests[0].respond(b'{"result":null}'))
    clock.advance(TIMEOUT)
    assert len(outcomes) == 1 and outcomes[0].check(defer.CancelledError)


def test_request_gives_the_reply_as_a_deferred(clock, bus, service):
    serve(service, "call.test.ping", b'{"result":"pong"}')
    d = bus.request("call.test.ping", b"{}")
    clock.advance(0)
    clock.advance(0)
    assert d.result == b'{"result":"pong"}'


# ---------------------------------------------------------------------------
# Connection


def test_a_lost_connection_fails_its_requests_and_says_so_once(clock, broker, bus, service):
    done(service.subscribe("get.>", cb=lambda msg: None))
    lost: list[str] = []
    bus.on_lost = lost.append
    got: list[bytes] = []
    bus.subscribe("event.a.b", lambda subject, payload: got.append(payload))
    outcome = Outcomes()
    bus.send_request("get.test", b"{}", outcome)
    done(service.publish("event.a.b", b"queued"))

    bus.reachable = False
    bus.lose("node gone")
    bus.lose("node gone")
    assert lost == ["node gone"]
    assert not bus.is_connected
    assert outcome.calls == [(None, errors.internal_error("node gone"))]
    clock.advance(0)
    assert got == []
    assert broker.subjects() == ["get.>"]

    failure = []
    bus.connect().addErrback(failure.append)
    assert failure[0].check(BusUnreachable)
    bus.reachable = True
    bus.connect()
    assert bus.is_connected
    assert broker.subjects() == ["get.>"] + [s for s in broker.subjects() if s.startswith("_INBOX.")]


def test_close_fails_pending_requests_as_disposing_and_is_idempotent(clock, bus, service):
    done(service.subscribe("get.>", cb=lambda msg: None))
    outcome = Outcomes()
    bus.send_request("get.test", b"{}", outcome)
    bus.close()
    bus.close()
    assert outcome.calls == [(None, errors.DISPOSING)]
    clock.advance(TIMEOUT)
    assert outcome.calls == [(None, errors.DISPOSING)]


def test_a_closed_bus_refuses_work(bus):
    bus.close()
    outcome = Outcomes()
    assert bus.send_request("get.test", b"{}", outcome) == 0
    assert outcome.calls[0][1].code == errors.CODE_INTERNAL_ERROR
    with pytest.raises(errors.ResError):
        bus.subscribe("event.a.*", lambda subject, payload: None)
    with pytest.raises(errors.ResError):
        bus.publish("event.a.b", b"")


def test_connecting_twice_fails(bus):
    failure = []
    bus.connect().addErrback(failure.append)
    assert failure[0].check(BusUnreachable)


# ---------------------------------------------------------------------------
# Hostile input


BAD_SUBJECTS = ["", "a..b", ".a", "a.", "a b", "a\tb", "a\r\nb"]
BAD_PATTERNS = ["", "a..b", "a b", "a.>.b", "a.b>", "a*.b", ">.a"]


@pytest.mark.parametrize("subject", BAD_SUBJECTS)
def test_a_bad_request_subject_is_refused_at_once(bus, subject):
    outcome = Outcomes()
    assert bus.send_request(subject, b"{}", outcome) == 0
    assert outcome.calls[0][1].code == errors.CODE_INTERNAL_ERROR
    assert bus.pending_requests == 0


@pytest.mark.parametrize("subject", BAD_SUBJECTS)
def test_a_bad_publish_subject_is_refused(bus, service, subject):
    with pytest.raises(errors.ResError):
        bus.publish(subject, b"")
    with pytest.raises(errors.ResError):
        done(service.publish(subject, b""))


@pytest.mark.parametrize("pattern", BAD_PATTERNS)
def test_a_bad_subscription_is_refused(bus, service, pattern):
    with pytest.raises(errors.ResError):
        bus.subscribe(pattern, lambda subject, payload: None)
    with pytest.raises(errors.ResError):
        done(service.subscribe(pattern))


def test_an_oversized_payload_is_refused(bus):
    outcome = Outcomes()
    assert bus.send_request("get.test", b"x" * (MAX_PAYLOAD + 1), outcome) == 0
    assert "max_payload" in outcome.calls[0][1].message
    with pytest.raises(errors.ResError, match="max_payload"):
        bus.publish("event.a.b", b"x" * (MAX_PAYLOAD + 1))


def test_a_subject_longer_than_a_control_line_is_too_long(bus):
    subject = "get." + "a" * MAX_CONTROL_LINE
    outcome = Outcomes()
    assert bus.send_request(subject, b"{}", outcome) == 0
    assert outcome.calls == [(None, errors.SUBJECT_TOO_LONG)]
    with pytest.raises(errors.ResError) as raised:
        bus.subscribe(subject, lambda s, p: None)
    assert raised.value.code == errors.CODE_SUBJECT_TOO_LONG


# ---------------------------------------------------------------------------
# Both ends


def test_the_memory_bus_has_what_the_gateway_needs_of_a_bus():
    """Every member of resgate.bus.Bus, with the same parameters."""
    members = [name for name in vars(Bus) if not name.startswith("_")]
    assert {"send_request", "request", "subscribe", "publish", "connect", "close", "is_connected"} <= set(members)
    for name in members:
        wanted = vars(Bus)[name]
        if not callable(wanted):
            continue
        assert list(inspect.signature(getattr(MemoryBus, name)).parameters) == \
            list(inspect.signature(wanted).parameters), name
    bus = MemoryBroker(task.Clock()).bus()
    for name in Bus.__annotations__:
        assert hasattr(bus, name), name


@pytest_twisted.ensureDeferred
async def test_a_service_connection_speaks_nats_py():
    """What the rig's services do with nats-py works on a memory connection, on the reactor."""
    broker = MemoryBroker()
    service = broker.connect_service()
    bus = broker.bus()
    await within(bus.connect())
    await confirm_subscriptions(service)
    serve(service, "call.test.ping", b'{"result":"pong"}')
    assert await within(bus.request("call.test.ping", b"{}")) == b'{"result":"pong"}'

    sub = await within(as_deferred(service.subscribe("event.test.*")))
    bus.publish("event.test.change", b"{}")
    msg = await within(as_deferred(sub.next_msg()))
    assert (msg.subject, msg.data, msg.reply) == ("event.test.change", b"{}", "")

    await within(as_deferred(service.close()))
    assert broker.subjects() == [s for s in broker.subjects() if s.startswith("_INBOX.")]
    with pytest.raises(ConnectionError):
        await within(as_deferred(service.publish("event.test.change", b"{}")))
    await within(bus.close())
